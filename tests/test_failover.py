"""Failover among broker addresses: the decision (no socket), URLs with several hosts, and
``connect([...])`` arguments."""

from __future__ import annotations

import pytest

from sig import ArgumentTypeError, InvalidArgumentError
from sig_mqtt import join_urls, parse_url
from sig_mqtt._failover import Failover, broker_list

A, B, C = ("a", 1), ("b", 2), ("c", 3)


def test_moves_to_the_next_member_at_once_then_backs_off_after_each_full_round() -> None:
    failover = Failover([A, B, C], backoff_min=0.25, backoff_max=2.0)
    assert failover.current == A
    steps = [failover.failed() for _ in range(9)]
    assert [step.address for step in steps] == [B, C, A] * 3
    assert [step.round_done for step in steps] == [False, False, True] * 3
    assert [step.delay for step in steps] == [0.25, 0.25, 0.25, 0.25, 0.25, 0.5, 0.25, 0.25, 1.0]
    for _ in range(30):
        step = failover.failed()
    assert step.delay <= 2.0  # capped


def test_a_connection_ends_the_streak_and_the_next_failure_moves_on() -> None:
    failover = Failover([A, B], backoff_min=0.5, backoff_max=8.0)
    failover.failed()
    failover.failed()
    failover.failed()
    assert failover.current == B
    failover.connected()
    step = failover.failed()  # B died under us: A next, without the round's back-off
    assert (step.address, step.delay, step.round_done) == (A, 0.5, False)
    assert failover.moves == 4


def test_one_address_is_an_ordinary_doubling_back_off_with_jitter() -> None:
    failover = Failover([A], backoff_min=0.25, backoff_max=5.0)
    delays = [failover.failed().delay for _ in range(7)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert failover.current == A and failover.moves == 0
    assert failover.failed(jitter=0.999).delay == pytest.approx(5.0 * 1.24975)
    failover.connected()
    assert failover.failed(jitter=5.0).delay == pytest.approx(0.25 * 1.25)  # jitter clamped to +25 %


def test_broker_list_of_connect_arguments() -> None:
    assert broker_list("h", 1884, []) == [("h", 1884)]
    assert broker_list("h", None, [("x", 1999)]) == [("h", 1999)]
    assert broker_list(None, None, []) == [("127.0.0.1", 1883)]
    assert broker_list(None, 1900, [A, B]) == [("a", 1900), B]
    assert broker_list([("h1", "1883"), ["h2", 1884]], None, []) == [("h1", 1883), ("h2", 1884)]
    with pytest.raises(InvalidArgumentError):
        broker_list([], None, [])
    with pytest.raises(InvalidArgumentError):
        broker_list([A], 1883, [])
    with pytest.raises(ArgumentTypeError):
        broker_list([("h1",)], None, [])
    with pytest.raises(InvalidArgumentError):
        Failover([])


def test_urls_with_several_hosts() -> None:
    url = parse_url("mqtt://u:p@h1:1883,h2:1884,[::1],h4/sig")
    assert url.brokers == (("h1", 1883), ("h2", 1884), ("::1", 1883), ("h4", 1883))
    assert (url.host, url.port, url.username, url.password, url.prefix) == ("h1", 1883, "u", "p", "sig")
    assert str(url) == "mqtt://u:***@h1:1883,h2:1884,[::1]:1883,h4:1883/sig"
    assert parse_url("mqtts://h1,h2").brokers == (("h1", 8883), ("h2", 8883))
    assert parse_url("mqtt://h").brokers == (("h", 1883),)
    for bad in ("mqtt://h1:x,h2", "mqtt://h1,:5", "mqtt://h1:70000"):
        with pytest.raises(InvalidArgumentError):
            parse_url(bad)


def test_join_urls_of_repeated_mqtt_options() -> None:
    assert join_urls(["mqtt://u:p@h1:1/sig", "mqtt://h2:2", "mqtt://u@h3:3/sig"]) == "mqtt://u:p@h1:1,h2:2,h3:3/sig"
    for other in ("mqtt://h2/other", "mqtts://h2", "mqtt://v@h2"):
        with pytest.raises(InvalidArgumentError, match="differ"):
            join_urls(["mqtt://u@h1/sig", other])


def test_sig_bridge_takes_repeated_mqtt_and_a_list_in_bridge_toml() -> None:
    from bridge._command import build_parser, settings_from
    from bridge.config import ConfigError, parse_config

    args = build_parser().parse_args(["--mqtt", "mqtt://u:p@h1:1884/home", "--mqtt", "mqtt://h2:1885"])
    settings, _ = settings_from(args, None)
    assert settings.mqtt_url == "mqtt://u:p@h1:1884,h2:1885/home"
    assert settings.prefix == "home"
    config = parse_config('[bridge]\nmqtt = ["mqtt://h1:1883/p", "mqtt://h2:1883"]\n')
    assert config.bridge.mqtt == ("mqtt://h1:1883/p", "mqtt://h2:1883")
    settings, _ = settings_from(build_parser().parse_args([]), config)
    assert parse_url(settings.mqtt_url or "").brokers == (("h1", 1883), ("h2", 1883))
    assert parse_config('[bridge]\nmqtt = "mqtt://h1:1,h2:2/p"\n').bridge.mqtt == "mqtt://h1:1,h2:2/p"
    with pytest.raises(ConfigError, match="port"):
        parse_config('[bridge]\nmqtt = ["mqtt://h1:1883", "mqtt://h2:99999"]\n')
    with pytest.raises(ConfigError):
        parse_config('[bridge]\nmqtt = [1, 2]\n')
