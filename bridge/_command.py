"""The ``sig-bridge`` command itself (see :mod:`bridge.cli`, its entry point)."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from sig import VERSION
from sig_apps.options import LEVELS, ArgumentParser, CliError, Stopper, UsageError, parse_address, setup_logging

from .config import BridgeConfig, ConfigError, load_config
from .rules import Rules

if TYPE_CHECKING:
    from .service import BridgeSettings

__all__ = ["main", "build_parser"]

logger = logging.getLogger("sig.bridge.cli")


def build_parser() -> ArgumentParser:
    """The ``sig-bridge`` argument parser."""
    parser = ArgumentParser(prog="sig-bridge", description="Join pysig TCP clients, MQTT nodes and plain MQTT devices.")
    parser.add_argument("--mqtt", metavar="URL", action="append",
                        help="an existing broker: mqtt[s]://[user[:pass]@]host[:port][/prefix]; repeat it (or "
                             "write host:port,host:port) for the members of a cluster, to fail over among them")
    parser.add_argument("--embedded", action="store_true", help="always start the embedded broker")
    parser.add_argument("--broker-listen", metavar="HOST:PORT",
                        help="where to find or start the local broker (default 127.0.0.1:1883)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="pysig TCP address (default 127.0.0.1:3000)")
    parser.add_argument("--prefix", help="root of sig's MQTT topics (default sig)")
    parser.add_argument("--node-id", help="MQTT client id / node id (default sig-bridge-<hostname>-<listen port>)")
    parser.add_argument("--config", metavar="FILE", help="TOML config: [bridge], [[inbound]], [[outbound]], [auth]")
    parser.add_argument("--password-file", metavar="FILE", help="MQTT password (else $SIG_MQTT_PASSWORD)")
    parser.add_argument("--log-level", choices=list(LEVELS), help="default info")
    parser.add_argument("--ha-discovery", action="store_true",
                        help="announce every sender to Home Assistant (MQTT discovery; hints: [homeassistant])")
    parser.add_argument("--version", action="version", version="sig-bridge %s" % VERSION)
    return parser


def _acl_main(argv: list[str]) -> int:
    from .acl import mosquitto_acl

    parser = ArgumentParser(prog="sig-bridge acl", description="Write Mosquitto ACL blocks for the bridge config.")
    parser.add_argument("--config", required=True, metavar="FILE")
    parser.add_argument("--prefix", help="default: the config's, else sig")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print("sig-bridge: %s" % exc, file=sys.stderr)
        return 2
    sys.stdout.write(mosquitto_acl(config, args.prefix or config.bridge.prefix))
    return 0


def settings_from(args: Any, config: BridgeConfig | None) -> tuple[BridgeSettings, str]:
    """Merge options over the config file; return the settings and the log level."""
    from sig_mqtt import read_password_file

    from .service import BridgeSettings

    section = config.bridge if config is not None else None

    def pick(option: Any, key: str, default: Any) -> Any:
        if option is not None:
            return option
        value = getattr(section, key, None) if section is not None else None
        return default if value is None else value

    listen = parse_address(pick(args.listen, "listen", "127.0.0.1:3000"), what="--listen")
    broker_listen = parse_address(pick(args.broker_listen, "broker_listen", "127.0.0.1:1883"), "127.0.0.1", 1883,
                                  what="--broker-listen")
    password_file = pick(args.password_file, "password_file", None)
    password = None
    if password_file:
        try:
            password = read_password_file(password_file)
        except OSError as exc:
            raise UsageError("cannot read the password file %s: %s" % (password_file, exc.strerror)) from None
    mqtt_url = _mqtt_url(pick(args.mqtt, "mqtt", None))
    settings = BridgeSettings(
        listen=listen,
        mqtt_url=mqtt_url,
        broker_listen=broker_listen,
        embedded=bool(args.embedded or (section is not None and getattr(section, "embedded", False))),
        prefix=_prefix(args.prefix, mqtt_url, section),
        node_id=pick(args.node_id, "node_id", None),
        password=password or os.environ.get("SIG_MQTT_PASSWORD"),
        heartbeat=float(pick(None, "heartbeat", 30.0)),
        rules=Rules.from_config(config) if config is not None else None,
        access=config.access_dict() if config is not None else None,
        ha_discovery=_ha_discovery(args, config),
    )
    return settings, pick(args.log_level, "log_level", "info")


def _mqtt_url(value: Any) -> str | None:
    """One URL from ``--mqtt`` (repeated) or ``[bridge] mqtt`` (a string or a list): several are one cluster."""
    if value is None or isinstance(value, str):
        return value
    urls = list(value)
    if len(urls) == 1:
        return str(urls[0])
    from sig_mqtt import join_urls

    try:
        return join_urls(urls)
    except ValueError as exc:
        raise UsageError("--mqtt: %s" % exc) from None


def _ha_discovery(args: Any, config: BridgeConfig | None) -> Any:
    """The discovery settings when ``--ha-discovery`` or ``[homeassistant] discovery = true`` asks for it."""
    section = config.homeassistant if config is not None else None
    if getattr(args, "ha_discovery", False) or (section is not None and section.discovery):
        return section.settings if section is not None else True
    return None


def _prefix(option: str | None, url: str | None, section: Any) -> str:
    """``--prefix``, else the MQTT URL's path, else the config's ``prefix``, else ``sig``."""
    if option:
        return option
    if url:
        from sig_mqtt import parse_url

        try:
            from_url = parse_url(url).prefix
        except ValueError:
            from_url = None  # reported when the bridge starts
        if from_url:
            return from_url
    value = getattr(section, "prefix", None) if section is not None else None
    return value or "sig"


def main(argv: list[str] | None = None) -> int:
    """Run ``sig-bridge``; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["acl"]:
        return _acl_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config) if args.config else None
        settings, level = settings_from(args, config)
    except ConfigError as exc:
        print("sig-bridge: %s" % exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print("sig-bridge: cannot read %s: %s" % (args.config, exc.strerror or exc), file=sys.stderr)
        return 2
    except CliError as exc:
        print("sig-bridge: %s" % exc, file=sys.stderr)
        return exc.exit_code
    if level not in LEVELS:
        print("sig-bridge: bad log level %r (one of %s)" % (level, ", ".join(LEVELS)), file=sys.stderr)
        return 2
    from .service import Bridge, BridgeError

    setup_logging(level)
    stopper = Stopper().install()
    bridge = Bridge(settings)
    try:
        bridge.start()
    except BridgeError as exc:
        print("sig-bridge: %s" % exc, file=sys.stderr)
        return 2
    try:
        stopper.wait()
    finally:
        bridge.stop()
    return 0
