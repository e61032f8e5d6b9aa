"""Mosquitto ACL blocks written from the bridge's TOML config (pure: returns text).

    mosquitto_acl(config: BridgeConfig, prefix: str | None = None, bridge_user: str | None = None) -> str

(``sig-bridge acl --config FILE [--prefix P]`` prints it.) Mosquitto ACL files
substitute only ``%u`` (user name) and ``%c`` (client id), so
``pattern write P/event/%u/#`` serves devices that are one sender named like
their user; a node that hosts several senders needs a ``user`` block that lists
them. This module writes, from the config:

* ``pattern`` lines every client needs: its own node state (``P/node/%c``),
  reading back its own births (``P/node/%c/#``), its replies (``P/reply/%c``), the
  rebirth command, and the one-sender-device rule (``P/event/%u/#`` and the birth
  ``P/node/%c/sender/%u``);
* one ``user`` block per ``[[acl]]`` entry naming a user: ``senders`` -> write its
  event topics and read the requests to them, ``listen`` -> read their events,
  births and node states, ``request`` -> write requests to them; entries for
  ``"*"`` become ``pattern`` lines (every user), ``"anonymous"`` ones go before the
  first ``user`` line (Mosquitto's anonymous section);
* a ``user`` block for the bridge itself (``readwrite P/#``, ``read`` each inbound
  filter, ``write`` each outbound topic with placeholders as ``+``).

Glob patterns: ``*`` (any sender) becomes the ``+`` level, a literal name its
topic level (escaped as sig_mqtt does); other globs (``kitchen.*``) match parts
of a level, which Mosquitto cannot express: they are written as a comment that
says so, and grant nothing.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote, urlsplit

from sig_mqtt import encode_level

from .config import AclEntry, BridgeConfig, Placeholder

__all__ = ["mosquitto_acl", "sender_level"]

logger = logging.getLogger("sig.bridge.acl")

_GLOB = set("*?[")


def sender_level(pattern: str) -> str | None:
    """The topic level an ACL glob stands for: ``*`` -> ``+``, a literal name -> its level, else ``None``."""
    if pattern == "*":
        return "+"
    if _GLOB & set(pattern):
        return None
    return str(encode_level(pattern))


def _bridge_user(config: BridgeConfig) -> str:
    if config.bridge.mqtt:
        url = config.bridge.mqtt if isinstance(config.bridge.mqtt, str) else config.bridge.mqtt[0]
        username = urlsplit(url).username
        if username:
            return unquote(username)
    return config.bridge.node_id or "sig-bridge"


def _grants(entry: AclEntry, prefix: str, keyword: str) -> list[str]:
    """ACL lines for one entry; ``keyword`` is ``topic`` (a user block) or ``pattern`` (every user)."""
    lines: list[str] = []

    def each(patterns: tuple[str, ...], what: str) -> list[str]:
        levels = []
        for pattern in patterns:
            level = sender_level(pattern)
            if level is None:
                lines.append("# %s %r: not expressible in Mosquitto (whole levels only), nothing granted" % (
                    what, pattern))
                logger.warning("[BRIDGE] ACL for %r: %s pattern %r is not expressible in Mosquitto", entry.user,
                               what, pattern)
            elif level not in levels:
                levels.append(level)
        return ["+"] if "+" in levels else levels

    for level in each(entry.senders, "senders"):
        lines.append("%s write %s/event/%s/#" % (keyword, prefix, level))
        lines.append("%s write %s/node/+/sender/%s" % (keyword, prefix, level))
        lines.append("%s read %s/request/%s/#" % (keyword, prefix, level))
    for level in each(entry.listen, "listen"):
        lines.append("%s read %s/event/%s/#" % (keyword, prefix, level))
        lines.append("%s read %s/node/+/sender/%s" % (keyword, prefix, level))
    if entry.listen:
        lines.append("%s read %s/node/+" % (keyword, prefix))
    for level in each(entry.request, "request"):
        lines.append("%s write %s/request/%s/#" % (keyword, prefix, level))
    if entry.request:
        lines.append("%s read %s/node/+" % (keyword, prefix))
    if entry.senders:
        lines.append("%s write %s/reply/+" % (keyword, prefix))
    return list(dict.fromkeys(lines))


def mosquitto_acl(config: BridgeConfig, prefix: str | None = None, bridge_user: str | None = None) -> str:
    """Return a Mosquitto ``acl_file`` for the nodes, users and rules of ``config``.

    Args:
        config: the bridge config (its ``[[acl]]`` entries, rules and ``[bridge]`` table).
        prefix: root of sig's topics; default the config's ``prefix``.
        bridge_user: the bridge's MQTT user; default the user of ``[bridge] mqtt``,
            else its ``node_id``, else ``sig-bridge``.
    """
    prefix = prefix or config.bridge.prefix
    bridge_user = bridge_user or _bridge_user(config)
    out = [
        "# Mosquitto ACL for sig (prefix %s), written by sig-bridge acl from %s" % (prefix, config.filename),
        "# Mosquitto substitutes only %u (user) and %c (client id = sig node id).",
        "",
    ]
    anonymous = [entry for entry in config.acl if entry.user == "anonymous"]
    if anonymous:
        out.append("# clients without a user name ([[acl]] user = \"anonymous\")")
        for entry in anonymous:
            out.extend(_grants(entry, prefix, "topic"))
        out.append("")
    out += [
        "# every client: its own node state, births and replies; the rebirth command",
        "pattern readwrite %s/node/%%c" % prefix,
        "pattern read %s/node/%%c/#" % prefix,
        "pattern read %s/reply/%%c" % prefix,
        "pattern read %s/cmd/rebirth" % prefix,
        "# a device that is one sender named like its user",
        "pattern write %s/event/%%u/#" % prefix,
        "pattern write %s/node/%%c/sender/%%u" % prefix,
        "pattern read %s/request/%%u/#" % prefix,
        "pattern write %s/reply/+" % prefix,
    ]
    for entry in config.acl:
        if entry.user == "*":
            out.append("# every user ([[acl]] user = \"*\")")
            out.extend(_grants(entry, prefix, "pattern"))
    out.append("")
    users = [entry for entry in config.acl if entry.user not in ("*", "anonymous")]
    for name in dict.fromkeys(entry.user for entry in users):
        if name == bridge_user:
            continue
        out.append("user %s" % name)
        lines: list[str] = []
        for entry in users:
            if entry.user == name:
                lines.extend(_grants(entry, prefix, "topic"))
        out.extend(dict.fromkeys(lines))
        out.append("")
    out.append("# the bridge: all of sig's tree, the foreign topics of its rules")
    out.append("user %s" % bridge_user)
    bridge_lines = ["topic readwrite %s/#" % prefix]
    bridge_lines += ["topic read %s" % spec.topic for spec in config.inbound]
    for outbound in config.outbound:
        text = "".join("\x00" if isinstance(part, Placeholder) else part for part in outbound.topic)
        topic = "/".join("+" if "\x00" in level else level for level in text.split("/"))
        bridge_lines.append("topic write %s" % topic)
    out.extend(dict.fromkeys(bridge_lines))
    out.append("")
    return "\n".join(out)
