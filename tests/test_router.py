"""Unit tests of the local routing core: Router, Sender, Event, Signal.

Covers the public API, every error (type and message), the PEP 8 aliases,
identifiers, subscriptions of the four kinds and their call order, listeners
that change registrations while being called, failing listeners, requests.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import pytest

import sig

Call = tuple[str, Any, Any, Any]


class Recorder:
    """Makes named listeners that append ``(name, sender, event, data)`` to one shared list."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def __call__(self, name: str) -> Callable[[dict, Any], None]:
        def listener(info: dict, data: Any) -> None:
            self.calls.append((name, info["sender"], info["event"], data))

        listener.__name__ = "listener_%s" % name
        return listener

    def take(self) -> list[Call]:
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def connect_data(events: list[Any], requests: list[Any] | None = None) -> dict[str, Any]:
    return {"events": events, "requests": requests}


# -- public names ------------------------------------------------------------


def test_public_constants() -> None:
    assert sig.EVENT_CONNECT == "#connect"
    assert sig.EVENT_DISCONNECT == "#disconnect"
    assert sig.CHANNEL_DECORATOR == "#"
    assert isinstance(sig.VERSION, str) and sig.VERSION


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (sig.SenderConnectedError, NameError),
        (sig.UnknownSenderError, NameError),
        (sig.UnknownMethodError, LookupError),
        (sig.NotRegisteredError, LookupError),
        (sig.UnknownEventError, LookupError),
        (sig.InvalidIdentifierError, TypeError),
        (sig.InvalidArgumentError, ValueError),
    ],
)
def test_error_hierarchy(error: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(error, sig.SigError)
    assert issubclass(error, builtin)


# -- senders ----------------------------------------------------------------


def test_add_sender_returns_connected_sender() -> None:
    router = sig.Router()
    sender = router.addSender("s", ["a", "b"])
    assert isinstance(sender, sig.Sender)
    assert sender.isConnected()
    assert sender.getName() == "s"
    assert sender.getRouter() is router
    assert router.getSender("s") is sender
    assert router.getSenders() == [sender]
    assert "s" in router.senders


def test_add_sender_single_event_identifier_is_a_list_of_one(rec: Recorder) -> None:
    router = sig.Router()
    router.addListener(rec("all"))
    router.addSender("s", "only")
    assert rec.take() == [("all", "s", "#connect", connect_data(["only"]))]


def test_add_sender_drops_duplicate_and_builtin_events(rec: Recorder) -> None:
    router = sig.Router()
    router.addListener(rec("all"))
    router.addSender("s", ["a", "#connect", "a", 1, 1.0, "#disconnect", "b"])
    assert rec.take() == [("all", "s", "#connect", connect_data(["a", 1, "b"]))]


def test_add_sender_twice_raises_sender_connected_error() -> None:
    router = sig.Router()
    router.addSender("dup", ["a"])
    with pytest.raises(sig.SenderConnectedError, match=r"sender 'dup' is already connected") as excinfo:
        router.addSender("dup", ["b"])
    assert isinstance(excinfo.value, NameError)
    assert isinstance(excinfo.value, sig.SigError)
    # the first registration is untouched
    assert router.getSender("dup").getSignal("a") is not None
    with pytest.raises(sig.UnknownEventError):
        router.getSender("dup").getSignal("b")


def test_add_sender_without_name_events_or_requests() -> None:
    router = sig.Router()
    with pytest.raises(sig.InvalidArgumentError, match="no given sender name"):
        router.addSender(None, ["a"])  # type: ignore[arg-type]
    with pytest.raises(sig.InvalidArgumentError, match=r"no events or requests registered for sender 's'"):
        router.addSender("s", [])
    with pytest.raises(sig.InvalidArgumentError, match="no events or requests"):
        router.addSender("s", None)
    with pytest.raises(sig.InvalidArgumentError, match="an event cannot be None"):
        router.addSender("s", ["a", None])
    assert router.getSenders() == []


def test_add_sender_with_requests_only() -> None:
    router = sig.Router()
    sender = router.addSender("s", [], requests={"m": lambda params: params})
    assert router.request("s", "m", 3) == 3
    assert sender.describe() == connect_data([], ["m"])


def test_add_sender_bad_requests() -> None:
    router = sig.Router()
    with pytest.raises(sig.InvalidArgumentError, match="requests must be a dict"):
        router.addSender("s", ["a"], requests=[lambda p: p])  # type: ignore[arg-type]
    with pytest.raises(sig.InvalidArgumentError, match=r"request handler for 'm' is not callable"):
        router.addSender("s", ["a"], requests={"m": 42})  # type: ignore[dict-item]
    with pytest.raises(sig.InvalidIdentifierError, match="request method must be a str, int or float, not bool"):
        router.addSender("s", ["a"], requests={True: lambda p: p})
    assert router.getSenders() == []


def test_add_sender_bad_events_type() -> None:
    router = sig.Router()
    with pytest.raises(sig.InvalidIdentifierError, match="events must be a list of identifiers, not dict"):
        router.addSender("s", {"a": 1})
    with pytest.raises(sig.InvalidIdentifierError, match=r"event must be a str, int or float, not list"):
        router.addSender("s", [["a"]])


def test_remove_sender_by_name_and_by_object(rec: Recorder) -> None:
    router = sig.Router()
    router.addListener(rec("all"))
    a = router.addSender("a", ["x"])
    router.addSender("b", ["y"], requests={"m": lambda p: p, None: lambda m, p: p})
    rec.take()
    router.removeSender("b")
    router.removeSender(a)
    assert rec.take() == [
        ("all", "b", "#disconnect", connect_data(["y"], ["m", None])),
        ("all", "a", "#disconnect", connect_data(["x"])),
    ]
    assert not a.isConnected()
    assert router.getSenders() == []  # nobody listens to them: dropped


def test_remove_sender_without_announcing_it(rec: Recorder) -> None:
    """announce=False: the sender is about to come back at once (an MQTT node adopting a shared sender)."""
    router = sig.Router()
    router.addListener(rec("all"))
    sender = router.addSender("a", ["x"], announce=False)
    router.removeSender("a", announce=False)
    assert rec.take() == [] and not sender.isConnected()
    router.addSender("a", ["x"])
    assert rec.take() == [("all", "a", "#connect", connect_data(["x"]))]


def test_sender_remove_method(rec: Recorder) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"])
    sender.addListener(rec("s"))
    sender.remove()
    assert rec.take() == [("s", "s", "#disconnect", connect_data(["x"]))]
    assert not sender.isConnected()


def test_remove_unknown_or_disconnected_sender_raises() -> None:
    router = sig.Router()
    with pytest.raises(sig.UnknownSenderError, match=r"sender 'ghost' is not connected") as excinfo:
        router.removeSender("ghost")
    assert isinstance(excinfo.value, NameError)
    sender = router.addSender("s", ["x"])
    router.removeSender(sender)
    with pytest.raises(sig.UnknownSenderError, match=r"sender 's' is not connected"):
        router.removeSender(sender)
    with pytest.raises(sig.UnknownSenderError, match=r"sender 's' is not connected"):
        router.removeSender("s")
    with pytest.raises(sig.InvalidArgumentError, match="cannot remove the broadcast sender"):
        router.removeSender(None)  # type: ignore[arg-type]


def test_remove_sender_with_stale_object_raises() -> None:
    router = sig.Router()
    old = router.addSender("s", ["x"])
    router.removeSender(old)  # no listeners: the object is dropped
    new = router.addSender("s", ["x"])
    assert new is not old
    with pytest.raises(sig.UnknownSenderError):
        router.removeSender(old)
    assert new.isConnected()


def test_remove_sender_of_another_router_raises() -> None:
    one, two = sig.Router(), sig.Router()
    foreign = one.addSender("s", ["x"])
    two.addSender("s", ["x"])
    with pytest.raises(sig.InvalidArgumentError, match="belongs to another router"):
        two.removeSender(foreign)
    assert foreign.isConnected() and two.getSender("s").isConnected()


def test_readding_sender_keeps_listeners_and_reuses_object(rec: Recorder) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"])
    router.addListener(rec("x"), "s", "x")
    router.removeSender("s")
    assert router.getSender("s") is sender  # kept: it has listeners
    assert not router.getSender("s").isConnected()
    again = router.addSender("s", ["x"])
    assert again is sender
    again.getSignal("x").trigger(1)
    assert rec.take() == [("x", "s", "x", 1)]


def test_sender_dropped_only_when_disconnected_and_unlistened() -> None:
    router = sig.Router()
    listener = lambda info, data: None  # noqa: E731
    router.addListener(listener, "s", "x")  # listener first: sender object exists, not connected
    assert [s.getName() for s in router.getSenders()] == ["s"]
    assert not router.getSender("s").isConnected()
    router.addSender("s", ["x"])
    router.removeListener(listener, "s", "x")
    assert "s" in router.senders  # connected: stays
    router.removeSender("s")
    assert "s" not in router.senders
    with pytest.raises(sig.UnknownSenderError, match=r"unknown sender 's'"):
        router.getSender("s")
    router.addListener(listener, "t")
    router.removeListener(listener, "t")
    assert "t" not in router.senders


def test_get_sender_create() -> None:
    router = sig.Router()
    created = router.getSender("later", create=True)
    assert not created.isConnected()
    assert router.addSender("later", ["x"]) is created
    assert router.getSender(None).getName() is None  # the broadcaster


def test_request_to_unknown_or_disconnected_sender() -> None:
    router = sig.Router()
    with pytest.raises(sig.UnknownSenderError, match=r"sender 'nobody' is not connected"):
        router.request("nobody", "m")
    router.addSender("s", ["x"], requests={"m": lambda p: 1})
    router.addListener(lambda i, d: None, "s")
    router.removeSender("s")
    with pytest.raises(sig.UnknownSenderError, match=r"sender 's' is not connected") as excinfo:
        router.request("s", "m")
    assert isinstance(excinfo.value, NameError)
    with pytest.raises(sig.UnknownSenderError):
        router.request(None, "m")  # type: ignore[arg-type]


def test_readded_sender_without_requests_answers_none() -> None:
    router = sig.Router()
    router.addSender("s", ["x"], requests={"m": lambda p: 1})
    router.removeSender("s")
    router.addSender("s", ["x"])
    with pytest.raises(sig.UnknownMethodError, match=r"sender 's' does not answer requests"):
        router.request("s", "m")


# -- requests ---------------------------------------------------------------


def test_request_named_and_default_handlers() -> None:
    router = sig.Router()
    seen: list[Any] = []

    def get_weather(params: Any) -> Any:
        seen.append(("named", params))
        return {"temp": 21}

    def default(method: Any, params: Any) -> Any:
        seen.append(("default", method, params))
        return "default:%s" % (method,)

    sender = router.addSender("w", ["changed"], requests={"getWeather": get_weather, None: default, 7: lambda p: p * 2})
    assert router.request("w", "getWeather", {"when": "now"}) == {"temp": 21}
    assert router.request("w", "getWether") == "default:getWether"
    assert sender.request("other", [1]) == "default:other"
    assert router.request("w", 7, 4) == 8
    assert router.request("w", 7.0, 5) == 10  # 7.0 and 7 are one key
    assert seen == [("named", {"when": "now"}), ("default", "getWether", None), ("default", "other", [1])]


def test_request_unknown_method_without_default() -> None:
    router = sig.Router()
    router.addSender("s", ["x"], requests={"known": lambda p: p})
    with pytest.raises(sig.UnknownMethodError, match=r"sender 's' has no handler for method 'unknown'") as excinfo:
        router.request("s", "unknown", {"a": 1})
    assert isinstance(excinfo.value, LookupError)


def test_request_to_sender_without_requests() -> None:
    router = sig.Router()
    router.addSender("s", ["x"])
    with pytest.raises(sig.UnknownMethodError, match=r"sender 's' does not answer requests"):
        router.request("s", "m")


def test_request_method_must_be_identifier() -> None:
    router = sig.Router()
    router.addSender("s", ["x"], requests={None: lambda m, p: m})
    with pytest.raises(sig.InvalidArgumentError, match="request method undefined"):
        router.request("s", None)  # type: ignore[arg-type]
    with pytest.raises(sig.InvalidIdentifierError, match="not bool"):
        router.request("s", True)
    with pytest.raises(sig.InvalidIdentifierError, match="not list"):
        router.request("s", ["m"])  # type: ignore[arg-type]


class CustomError(Exception):
    pass


def test_handler_exception_reaches_caller_unchanged() -> None:
    router = sig.Router()
    boom = CustomError("boom")

    def handler(params: Any) -> Any:
        raise boom

    def default(method: Any, params: Any) -> Any:
        raise KeyError(method)

    router.addSender("s", ["x"], requests={"m": handler, None: default})
    with pytest.raises(CustomError) as excinfo:
        router.request("s", "m")
    assert excinfo.value is boom
    with pytest.raises(KeyError) as excinfo2:
        router.request("s", "other")
    assert type(excinfo2.value) is KeyError  # not wrapped in a SigError


def test_set_requests_replaces_handlers() -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"])
    sender.setRequests({"m": lambda p: "new"})
    assert router.request("s", "m") == "new"
    sender.setRequests(None)
    with pytest.raises(sig.UnknownMethodError):
        router.request("s", "m")


# -- signals and events -----------------------------------------------------


def test_get_signal_of_undeclared_event() -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"])
    with pytest.raises(sig.UnknownEventError, match=r"sender 's' does not declare event 'y'") as excinfo:
        sender.getSignal("y")
    assert isinstance(excinfo.value, LookupError)
    with pytest.raises(sig.InvalidArgumentError, match="a signal needs a named sender and a named event"):
        sender.getSignal(None)  # type: ignore[arg-type]
    with pytest.raises(sig.InvalidArgumentError, match="a signal needs a named sender"):
        router.getSender(None).getSignal("x")


def test_builtin_events_have_signals(rec: Recorder) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"])
    router.addListener(rec("c"), "s", "#connect")
    sender.getSignal("#connect").trigger("manual")
    assert rec.take() == [("c", "s", "#connect", "manual")]


def test_trigger_default_data_is_none(rec: Recorder) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"])
    router.addListener(rec("x"), "s", "x")
    sender.getSignal("x").trigger()
    assert rec.take() == [("x", "s", "x", None)]


def test_event_objects() -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x", "#ch"])
    listener = lambda i, d: None  # noqa: E731
    sender.addListener(listener, "x")
    event = sender.getEvent("x")
    assert isinstance(event, sig.Event)
    assert event.getName() == "x"
    assert event.getSender() is sender
    assert event.getListeners() == (listener,)
    assert not event.isChannel()
    channel = sender.getEvent("#ch")
    assert channel is not None and channel.isChannel()
    assert sender.getEvent("nope") is None
    assert set(sender.getEvents()) == {None, "#connect", "#disconnect", "x", "#ch"}
    assert sender.countListeners() == 1 and sender.hasListeners()
    assert router.getBroadcastEvent().getName() is None
    assert "s" in repr(sender) and "x" in repr(event)


def test_signal_get_listeners_in_call_order() -> None:
    router = sig.Router()
    sender = router.addSender("s", ["#ch"])

    def make(name: str) -> Callable[[dict, Any], None]:
        def listener(info: dict, data: Any) -> None:
            pass

        listener.__qualname__ = name
        return listener

    specific, channel, sender_bc, router_bc = make("specific"), make("channel"), make("sender"), make("router")
    router.addListener(specific, "s", "#ch")
    router.addListener(channel, None, "#ch")
    router.addListener(sender_bc, "s")
    router.addListener(router_bc)
    signal = sender.getSignal("#ch")
    assert isinstance(signal, sig.Signal)
    assert signal.getListeners() == (router_bc, sender_bc, channel, specific)
    assert "s" in repr(signal)


# -- identifiers ------------------------------------------------------------


@pytest.mark.parametrize("ident", ["name", "", "#", 0, -3, 2**70, 1.5, -0.25, "ünïcode/+#"])
def test_valid_identifiers(ident: Any, rec: Recorder) -> None:
    router = sig.Router()
    router.addListener(rec("l"), ident, ident)
    sender = router.addSender(ident, [ident], requests={ident: lambda p: p})
    sender.getSignal(ident).trigger("d")
    assert rec.take() == [("l", ident, ident, "d")]
    assert router.request(ident, ident, 5) == 5
    router.removeSender(ident)
    assert router.getSender(ident) is sender  # still listened to


def test_int_and_integral_float_are_one_key(rec: Recorder) -> None:
    router = sig.Router()
    router.addListener(rec("float"), 1.0, 2.0)
    sender = router.addSender(1, [2])
    assert router.getSender(1.0) is sender
    sender.getSignal(2.0).trigger("a")
    assert rec.take() == [("float", 1, 2, "a")]  # 1 == 1.0: whichever spelling the object kept
    with pytest.raises(sig.SenderConnectedError):
        router.addSender(1.0, ["x"])
    router.removeSender(1.0)
    assert not sender.isConnected()


def test_int_float_key_delivery(rec: Recorder) -> None:
    router = sig.Router()
    listener = rec("l")
    router.addListener(listener, 1.0, 2.0)
    sender = router.addSender(1, [2])
    sender.getSignal(2).trigger("a")
    calls = rec.take()
    assert len(calls) == 1
    assert calls[0][1] == 1 and calls[0][2] == 2 and calls[0][3] == "a"
    router.removeListener(listener, 1, 2)  # removed under the other spelling
    sender.getSignal(2).trigger("b")
    assert rec.take() == []


BAD_TYPES: list[Any] = [True, False, ["a"], ("a",), {"a": 1}, b"bytes", object()]


@pytest.mark.parametrize("bad", BAD_TYPES, ids=lambda v: type(v).__name__)
def test_bad_identifier_types_refused_everywhere(bad: Any) -> None:
    router = sig.Router()
    sender = router.addSender(1, [1, "x"], requests={1: lambda p: "one"})
    router.addListener(lambda i, d: None, 1, 1)
    type_name = type(bad).__name__
    message = re.compile(r"must be a str, int or float, not %s" % re.escape(type_name))
    calls: list[Callable[[], Any]] = [
        lambda: router.addSender(bad, ["x"]),
        lambda: router.addSender("s", [bad]),
        lambda: router.addListener(lambda i, d: None, bad),
        lambda: router.addListener(lambda i, d: None, "s", bad),
        lambda: router.removeListener(lambda i, d: None, bad, 1),
        lambda: router.removeListener(lambda i, d: None, 1, bad),
        lambda: router.removeSender(bad),
        lambda: router.getSender(bad),
        lambda: router.request(bad, 1),
        lambda: router.request(1, bad),
        lambda: sender.getSignal(bad),
        lambda: sender.request(bad),
    ]
    for call in calls:
        with pytest.raises(sig.InvalidIdentifierError, match=message) as excinfo:
            call()
        assert isinstance(excinfo.value, TypeError)
    # nothing changed: True never aliased sender or event 1
    assert sender.isConnected()
    assert len(sender.getEvent(1).getListeners()) == 1  # type: ignore[union-attr]
    assert router.request(1, 1) == "one"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_refused(bad: float) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"], requests={None: lambda m, p: m})
    for call in [
        lambda: router.addSender(bad, ["x"]),
        lambda: router.addSender("t", [bad]),
        lambda: router.addListener(lambda i, d: None, bad),
        lambda: router.addListener(lambda i, d: None, "s", bad),
        lambda: router.request("s", bad),
        lambda: router.request(bad, "m"),
        lambda: sender.getSignal(bad),
        lambda: router.removeSender(bad),
    ]:
        with pytest.raises(sig.SigError, match="must be a finite number") as excinfo:
            call()
        assert isinstance(excinfo.value, ValueError)


def test_none_sender_refused_where_a_name_is_needed() -> None:
    router = sig.Router()
    with pytest.raises(sig.InvalidArgumentError):
        router.addSender(None, ["x"])  # type: ignore[arg-type]
    with pytest.raises(sig.InvalidArgumentError):
        router.removeSender(None)  # type: ignore[arg-type]
    with pytest.raises(sig.UnknownSenderError):
        router.request(None, "m")  # type: ignore[arg-type]


def test_listener_must_be_callable() -> None:
    router = sig.Router()
    with pytest.raises(sig.InvalidIdentifierError, match="listener must be callable, not str"):
        router.addListener("not callable", "s", "x")  # type: ignore[arg-type]


# -- subscriptions ----------------------------------------------------------


def test_specific_subscription(rec: Recorder) -> None:
    router = sig.Router()
    a = router.addSender("a", ["x", "y"])
    b = router.addSender("b", ["x"])
    router.addListener(rec("ax"), "a", "x")
    a.getSignal("x").trigger(1)
    a.getSignal("y").trigger(2)
    b.getSignal("x").trigger(3)
    assert rec.take() == [("ax", "a", "x", 1)]


def test_sender_broadcast_subscription(rec: Recorder) -> None:
    router = sig.Router()
    router.addListener(rec("a*"), "a")
    a = router.addSender("a", ["x", "#ch"])
    b = router.addSender("b", ["x"])
    a.getSignal("x").trigger(1)
    a.getSignal("#ch").trigger(2)
    b.getSignal("x").trigger(3)
    router.removeSender("a")
    assert rec.take() == [
        ("a*", "a", "#connect", connect_data(["x", "#ch"])),
        ("a*", "a", "x", 1),
        ("a*", "a", "#ch", 2),
        ("a*", "a", "#disconnect", connect_data(["x", "#ch"])),
    ]


def test_router_broadcast_subscription(rec: Recorder) -> None:
    router = sig.Router()
    router.addListener(rec("*"))
    a = router.addSender("a", ["x"])
    b = router.addSender(2, ["#ch"])
    a.getSignal("x").trigger(1)
    b.getSignal("#ch").trigger(2)
    assert rec.take() == [
        ("*", "a", "#connect", connect_data(["x"])),
        ("*", 2, "#connect", connect_data(["#ch"])),
        ("*", "a", "x", 1),
        ("*", 2, "#ch", 2),
    ]


def test_channel_subscription(rec: Recorder) -> None:
    router = sig.Router()
    router.addListener(rec("#changed"), None, "#changed")
    temp = router.addSender("temp", ["#changed", "plain"])
    hum = router.addSender("hum", ["#changed"])
    other = router.addSender("other", ["#other"])
    temp.getSignal("#changed").trigger(20)
    hum.getSignal("#changed").trigger(50)
    temp.getSignal("plain").trigger(0)
    other.getSignal("#other").trigger(0)
    assert rec.take() == [("#changed", "temp", "#changed", 20), ("#changed", "hum", "#changed", 50)]


def test_named_sender_channel_hears_only_that_sender(rec: Recorder) -> None:
    router = sig.Router()
    router.addListener(rec("temp#changed"), "temp", "#changed")
    temp = router.addSender("temp", ["#changed"])
    hum = router.addSender("hum", ["#changed"])
    temp.getSignal("#changed").trigger(1)
    hum.getSignal("#changed").trigger(2)
    assert rec.take() == [("temp#changed", "temp", "#changed", 1)]


def test_plain_event_of_any_sender_never_fires(rec: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    router = sig.Router()
    with caplog.at_level(logging.WARNING, logger="sig"):
        router.addListener(rec("plain"), None, "plain")
    assert "never fires" in caplog.text
    sender = router.addSender("s", ["plain"])
    sender.getSignal("plain").trigger(1)
    assert rec.take() == []


def test_connect_disconnect_channels(rec: Recorder) -> None:
    router = sig.Router()
    router.addListener(rec("on"), None, "#connect")
    router.addListener(rec("off"), None, sig.EVENT_DISCONNECT)
    router.addSender("a", ["x"], requests={"m": lambda p: p})
    router.addSender(3, ["y"])
    router.removeSender("a")
    assert rec.take() == [
        ("on", "a", "#connect", connect_data(["x"], ["m"])),
        ("on", 3, "#connect", connect_data(["y"])),
        ("off", "a", "#disconnect", connect_data(["x"], ["m"])),
    ]


def test_listener_before_sender_exists_hears_connect(rec: Recorder) -> None:
    router = sig.Router()
    router.addListener(rec("connect"), "s", "#connect")
    router.addListener(rec("x"), "s", "x")
    sender = router.addSender("s", ["x"])
    sender.getSignal("x").trigger(1)
    assert rec.take() == [("connect", "s", "#connect", connect_data(["x"])), ("x", "s", "x", 1)]


def test_idle_listener_fires_after_redeclaration(rec: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    router = sig.Router()
    router.addSender("s", ["x"])
    with caplog.at_level(logging.WARNING, logger="sig"):
        router.addListener(rec("y"), "s", "y")
    assert "does not declare event 'y'" in caplog.text
    assert router.getSender("s").getEvent("y") is not None  # registered, idle
    router.removeSender("s")
    sender = router.addSender("s", ["x", "y"])
    sender.getSignal("y").trigger(5)
    assert rec.take() == [("y", "s", "y", 5)]
    # and idle again when re-added without it; still registered
    router.removeSender("s")
    sender = router.addSender("s", ["x"])
    with pytest.raises(sig.UnknownEventError):
        sender.getSignal("y")
    assert len(sender.getEvent("y").getListeners()) == 1  # type: ignore[union-attr]


def test_call_order_across_all_four_kinds(rec: Recorder) -> None:
    router = sig.Router()
    # registered in scrambled order, two of each kind
    router.addListener(rec("specific1"), "temp", "#changed")
    router.addListener(rec("channel1"), None, "#changed")
    router.addListener(rec("sender1"), "temp")
    router.addListener(rec("router1"))
    router.addListener(rec("specific2"), "temp", "#changed")
    router.addListener(rec("router2"), None, None)
    router.addListener(rec("channel2"), None, "#changed")
    router.addListener(rec("sender2"), "temp", None)
    temp = router.addSender("temp", ["#changed", "plain"])
    rec.take()
    temp.getSignal("#changed").trigger(1)
    assert [c[0] for c in rec.take()] == [
        "router1",
        "router2",
        "sender1",
        "sender2",
        "channel1",
        "channel2",
        "specific1",
        "specific2",
    ]
    temp.getSignal("plain").trigger(2)
    assert [c[0] for c in rec.take()] == ["router1", "router2", "sender1", "sender2"]


def test_connect_call_order(rec: Recorder) -> None:
    router = sig.Router()
    router.addListener(rec("specific"), "s", "#connect")
    router.addListener(rec("channel"), None, "#connect")
    router.addListener(rec("sender"), "s")
    router.addListener(rec("router"))
    router.addSender("s", ["x"])
    assert [c[0] for c in rec.take()] == ["router", "sender", "channel", "specific"]


def test_same_listener_twice_is_called_twice_and_removed_once(rec: Recorder) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"])
    listener = rec("twice")
    router.addListener(listener, "s", "x")
    router.addListener(listener, "s", "x")
    sender.getSignal("x").trigger(1)
    assert len(rec.take()) == 2
    router.removeListener(listener, "s", "x")
    sender.getSignal("x").trigger(2)
    assert rec.take() == [("twice", "s", "x", 2)]
    router.removeListener(listener, "s", "x")
    with pytest.raises(sig.NotRegisteredError):
        router.removeListener(listener, "s", "x")


def test_remove_listener_keeps_order_of_the_others(rec: Recorder) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"])
    a, b, c = rec("a"), rec("b"), rec("c")
    for listener in (a, b, c):
        router.addListener(listener, "s", "x")
    router.removeListener(b, "s", "x")
    router.addListener(b, "s", "x")
    sender.getSignal("x").trigger(None)
    assert [call[0] for call in rec.take()] == ["a", "c", "b"]


def test_remove_listener_not_registered() -> None:
    router = sig.Router()
    router.addSender("s", ["x"])
    registered = lambda i, d: None  # noqa: E731
    stranger = lambda i, d: None  # noqa: E731
    router.addListener(registered, "s", "x")
    with pytest.raises(sig.NotRegisteredError, match=r"is not registered to \('s', 'x'\)") as excinfo:
        router.removeListener(stranger, "s", "x")
    assert isinstance(excinfo.value, LookupError)
    with pytest.raises(sig.NotRegisteredError, match=r"\('s', None\)"):
        router.removeListener(registered, "s")  # registered to (s, x), not to (s, None)
    with pytest.raises(sig.NotRegisteredError, match=r"\('ghost', 'x'\)"):
        router.removeListener(registered, "ghost", "x")
    with pytest.raises(sig.NotRegisteredError, match=r"\(None, None\)"):
        router.removeListener(registered)
    with pytest.raises(sig.NotRegisteredError, match=r"\(None, '#nothing'\)"):
        router.removeListener(registered, None, "#nothing")
    router.removeListener(registered, "s", "x")


def test_sender_add_and_remove_listener(rec: Recorder) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x", "y"])
    all_events, only_x = rec("all"), rec("x")
    sender.addListener(all_events)
    sender.addListener(only_x, "x")
    sender.getSignal("x").trigger(1)
    assert [c[0] for c in rec.take()] == ["all", "x"]
    sender.removeListener(only_x, "x")
    sender.removeListener(all_events)
    sender.getSignal("x").trigger(2)
    assert rec.take() == []
    with pytest.raises(sig.NotRegisteredError):
        sender.removeListener(only_x, "x")


def test_listening_context_manager(rec: Recorder) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"])
    listener = rec("ctx")
    with router.listening(listener, "s", "x") as got:
        assert got is listener
        sender.getSignal("x").trigger(1)
    sender.getSignal("x").trigger(2)
    assert rec.take() == [("ctx", "s", "x", 1)]


def test_listening_removes_on_exception(rec: Recorder) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"])
    with pytest.raises(CustomError), router.listening(rec("ctx")):
        raise CustomError()
    sender.getSignal("x").trigger(2)
    assert rec.take() == []
    assert not router.getBroadcastEvent().getListeners()


def test_listening_for_sender_not_yet_there(rec: Recorder) -> None:
    router = sig.Router()
    with router.listening(rec("late"), "late"):
        router.addSender("late", ["x"]).getSignal("x").trigger(1)
        router.removeSender("late")
    assert [c[2] for c in rec.take()] == ["#connect", "x", "#disconnect"]
    assert "late" not in router.senders


# -- listeners that change registrations while being called ---------------------


def test_listener_added_during_trigger_is_called_from_next_trigger(rec: Recorder) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"])
    late = rec("late")

    def adder(info: dict, data: Any) -> None:
        rec.calls.append(("adder", info["sender"], info["event"], data))
        router.addListener(late, "s", "x")

    router.addListener(adder, "s", "x")
    signal = sender.getSignal("x")
    signal.trigger(1)
    assert [c[0] for c in rec.take()] == ["adder"]  # a trigger calls who was there when it started
    router.removeListener(adder, "s", "x")
    signal.trigger(2)
    assert rec.take() == [("late", "s", "x", 2)]


def test_listener_removing_itself_and_others_during_trigger(rec: Recorder) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"])
    other = rec("other")

    def once(info: dict, data: Any) -> None:
        rec.calls.append(("once", info["sender"], info["event"], data))
        router.removeListener(once, "s", "x")
        router.removeListener(other, "s", "x")

    router.addListener(once, "s", "x")
    router.addListener(other, "s", "x")
    signal = sender.getSignal("x")
    signal.trigger(1)
    # the snapshot taken at the start still calls "other" this time
    assert [c[0] for c in rec.take()] == ["once", "other"]
    signal.trigger(2)
    assert rec.take() == []


def test_listener_removing_its_sender_and_triggering_nested(rec: Recorder) -> None:
    router = sig.Router()
    a = router.addSender("a", ["x"])
    b = router.addSender("b", ["y"])
    router.addListener(rec("b"), "b")

    def relay(info: dict, data: Any) -> None:
        b.getSignal("y").trigger(data)  # nested trigger from inside a listener
        router.removeSender("b")

    router.addListener(relay, "a", "x")
    a.getSignal("x").trigger(7)
    assert rec.take() == [("b", "b", "y", 7), ("b", "b", "#disconnect", connect_data(["y"]))]


def test_cached_signal_sees_later_registrations(rec: Recorder) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["#ch"])
    signal = sender.getSignal("#ch")
    signal.trigger(0)
    for name, args in [("router", ()), ("sender", ("s",)), ("channel", (None, "#ch")), ("specific", ("s", "#ch"))]:
        router.addListener(rec(name), *args)
        signal.trigger(name)
    assert [(c[0], c[3]) for c in rec.take()] == [
        ("router", "router"),
        ("router", "sender"),
        ("sender", "sender"),
        ("router", "channel"),
        ("sender", "channel"),
        ("channel", "channel"),
        ("router", "specific"),
        ("sender", "specific"),
        ("channel", "specific"),
        ("specific", "specific"),
    ]


# -- failing listeners -----------------------------------------------------


def test_raising_listener_is_logged_and_others_still_run(rec: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    router = sig.Router()
    sender = router.addSender("s", ["x"])

    def broken(info: dict, data: Any) -> None:
        raise CustomError("listener exploded")

    router.addListener(rec("before"), "s")
    router.addListener(broken, "s", "x")
    router.addListener(rec("after"), "s", "x")
    with caplog.at_level(logging.ERROR, logger="sig"):
        sender.getSignal("x").trigger(1)
    assert rec.take() == [("before", "s", "x", 1), ("after", "s", "x", 1)]
    records = [r for r in caplog.records if r.name == "sig.event"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert "broken" in record.getMessage() and "'s'" in record.getMessage() and "'x'" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is CustomError
    assert "Traceback" in caplog.text and "listener exploded" in caplog.text


def test_raising_connect_listener_does_not_break_add_sender(caplog: pytest.LogCaptureFixture) -> None:
    router = sig.Router()

    def broken(info: dict, data: Any) -> None:
        raise RuntimeError("nope")

    router.addListener(broken)
    with caplog.at_level(logging.ERROR, logger="sig"):
        sender = router.addSender("s", ["x"])
        router.removeSender(sender)
    assert not sender.isConnected()
    assert len([r for r in caplog.records if r.name == "sig.event"]) == 2


# -- PEP 8 aliases ------------------------------------------------------------

DOCUMENTED_ALIASES: dict[type, list[tuple[str, str]]] = {
    sig.Router: [
        ("addListener", "add_listener"),
        ("removeListener", "remove_listener"),
        ("addSender", "add_sender"),
        ("removeSender", "remove_sender"),
        ("getSender", "get_sender"),
        ("getSenders", "get_senders"),
        ("getBroadcastEvent", "get_broadcast_event"),
    ],
    sig.Sender: [
        ("isConnected", "is_connected"),
        ("getRouter", "get_router"),
        ("getName", "get_name"),
        ("getEvents", "get_events"),
        ("getEvent", "get_event"),
        ("countListeners", "count_listeners"),
        ("hasListeners", "has_listeners"),
        ("getSignal", "get_signal"),
        ("addListener", "add_listener"),
        ("removeListener", "remove_listener"),
        ("setRequests", "set_requests"),
    ],
    sig.Event: [
        ("getListeners", "get_listeners"),
        ("getSender", "get_sender"),
        ("getName", "get_name"),
        ("isChannel", "is_channel"),
    ],
    sig.Signal: [("getListeners", "get_listeners")],
}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


@pytest.mark.parametrize(
    ("cls", "camel", "snake_name"),
    [(cls, camel, snake_name) for cls, pairs in DOCUMENTED_ALIASES.items() for camel, snake_name in pairs],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_documented_alias_is_same_function(cls: type, camel: str, snake_name: str) -> None:
    assert getattr(cls, snake_name) is getattr(cls, camel)
    assert snake(camel) == snake_name


@pytest.mark.parametrize("cls", [sig.Router, sig.Sender, sig.Event, sig.Signal], ids=lambda c: c.__name__)
def test_every_camel_case_method_has_a_snake_case_alias(cls: type) -> None:
    camel_names = [n for n, v in vars(cls).items() if re.fullmatch(r"[a-z]+[A-Z]\w*", n) and callable(v)]
    assert camel_names, cls
    for name in camel_names:
        assert getattr(cls, snake(name)) is getattr(cls, name), name
    documented = {camel for camel, _ in DOCUMENTED_ALIASES[cls]}
    assert documented <= set(camel_names)


def test_aliases_raise_the_same_errors() -> None:
    router = sig.Router()
    sender = router.add_sender("s", ["x"])
    with pytest.raises(sig.SenderConnectedError, match="already connected"):
        router.add_sender("s", ["x"])
    with pytest.raises(sig.UnknownSenderError, match="not connected"):
        router.remove_sender("ghost")
    with pytest.raises(sig.UnknownSenderError, match="unknown sender"):
        router.get_sender("ghost")
    with pytest.raises(sig.NotRegisteredError, match="not registered"):
        router.remove_listener(lambda i, d: None, "s", "x")
    with pytest.raises(sig.UnknownEventError, match="does not declare"):
        sender.get_signal("nope")
    with pytest.raises(sig.InvalidIdentifierError, match="not bool"):
        router.add_listener(lambda i, d: None, True)
    with pytest.raises(sig.NotRegisteredError):
        sender.remove_listener(lambda i, d: None, "x")


def test_aliases_work_like_camel_case(rec: Recorder) -> None:
    router = sig.Router()
    listener = rec("l")
    router.add_listener(listener, "s", "x")
    sender = router.add_sender("s", ["x"])
    assert router.get_sender("s") is sender and sender.is_connected()
    assert router.get_senders() == [sender]
    assert sender.get_event("x").get_listeners() == (listener,)  # type: ignore[union-attr]
    sender.get_signal("x").trigger(1)
    router.remove_listener(listener, "s", "x")
    router.remove_sender(sender)
    assert rec.take() == [("l", "s", "x", 1)]
    assert "s" not in router.senders


# -- extension classes ---------------------------------------------------------


def test_signal_subclass_can_add_info_keys(rec: Recorder) -> None:
    class StampedSignal(sig.Signal):
        def trigger(self, data: Any = None) -> None:
            self.event_info["stamp"] = "S"
            sig.Signal.trigger(self, data)

    router = sig.Router(class_signal=StampedSignal)
    infos: list[dict] = []
    router.addListener(lambda info, data: infos.append(dict(info)))
    router.addSender("s", ["x"]).getSignal("x").trigger(None)
    assert infos[-1] == {"sender": "s", "event": "x", "stamp": "S"}
    assert infos[0] == {"sender": "s", "event": "#connect", "stamp": "S"}


def test_repr_of_router() -> None:
    router = sig.Router()
    router.addSender("a", ["x"])
    assert repr(router) == "<Router 1 senders>"


# -- hooks for carriers that bring events from elsewhere (MQTT) -------------------------


def test_dispatch_reaches_listeners_of_unregistered_senders_in_pysig_order() -> None:
    router = sig.Router()
    calls: list[tuple[str, dict, object]] = []

    def rec(tag: str):  # type: ignore[no-untyped-def]
        return lambda info, data: calls.append((tag, info, data))

    router.addListener(rec("specific"), "dev", "#temp")
    router.addListener(rec("channel"), None, "#temp")
    router.addListener(rec("sender"), "dev")
    router.addListener(rec("router"))
    router.addListener(rec("other"), "dev", "other")
    assert router.dispatch("dev", "#temp", 21, {"retained": True}) == 4
    assert [c[0] for c in calls] == ["router", "sender", "channel", "specific"]
    assert calls[0][1] == {"sender": "dev", "event": "#temp", "retained": True}
    calls.clear()
    assert router.dispatch("nobody", "plain", 1) == 1  # only the router broadcast
    with pytest.raises(TypeError):
        router.dispatch(True, "e")  # type: ignore[arg-type]


def test_add_sender_without_announcing() -> None:
    router = sig.Router()
    heard: list[object] = []
    router.addListener(lambda i, d: heard.append(i["event"]), "s")
    sender = router.addSender("s", ["e"], announce=False)
    assert sender.isConnected() and heard == []
    router.removeSender("s")
    assert heard == ["#disconnect"]


def test_watch_listeners() -> None:
    router = sig.Router()
    seen: list[tuple[object, object, bool]] = []
    router.watchListeners(lambda s, e, added: seen.append((s, e, added)))

    def cb(info: dict, data: object) -> None:
        pass

    router.addListener(cb, "s", "e")
    router.addListener(cb)
    router.removeListener(cb, "s", "e")
    assert seen == [("s", "e", True), (None, None, True), ("s", "e", False)]
    router.unwatchListeners(router._watchers[0])
    router.removeListener(cb)
    assert len(seen) == 3
