"""Stateful property test of the subscription rules against a small pure model.

Hypothesis drives addSender / removeSender / addListener / removeListener /
trigger over small alphabets (int and float senders, '#channel' and plain
events) and compares the exact sequence of listener calls, ``#connect`` /
``#disconnect`` included, with what the model says pysig does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import sig

# 1 and 1.0 are one key, as in pysig (Python dicts).
SENDERS: list[Any] = ["a", "b", 1, 1.0, 2]
EVENTS: list[Any] = ["x", "y", 3, "#c", "#d"]
# what listeners may subscribe to: also "any", the built-ins, a channel and a plain
# event nobody declares
LISTEN_SENDERS: list[Any] = [None, *SENDERS]
LISTEN_EVENTS: list[Any] = [None, *EVENTS, "#connect", "#disconnect", "#nobody", "z"]
LISTENER_IDS = [0, 1, 2]
LIDS = st.sampled_from(LISTENER_IDS)
REQUESTS: list[dict[Any, Callable[..., Any]] | None] = [
    None,
    {"m": lambda params: params},
    {"m": lambda params: params, None: lambda method, params: method},
]

Call = tuple[int, dict[str, Any], Any]


def is_channel(event: Any) -> bool:
    return isinstance(event, str) and event.startswith("#")


class Model:
    """What should happen, with plain dicts and lists."""

    def __init__(self) -> None:
        self.connected: dict[Any, dict[str, Any]] = {}  # sender -> #connect data
        self.regs: dict[tuple[Any, Any], list[int]] = {}  # (sender, event) -> listener ids, in order

    def listeners(self, sender: Any, event: Any) -> list[int]:
        return self.regs.get((sender, event), [])

    def fire(self, sender: Any, event: Any, data: Any) -> list[Call]:
        ids = list(self.listeners(None, None)) + self.listeners(sender, None)
        if is_channel(event):
            ids += self.listeners(None, event)
        ids += self.listeners(sender, event)
        return [(lid, {"sender": sender, "event": event}, data) for lid in ids]

    def known_senders(self) -> set[Any]:
        listened = {s for (s, _e), ids in self.regs.items() if ids and s is not None}
        return set(self.connected) | listened


class SubscriptionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.router = sig.Router()
        self.model = Model()
        self.log: list[Call] = []
        self.listeners = {lid: self._make_listener(lid) for lid in LISTENER_IDS}
        self.signals: dict[tuple[Any, Any], sig.Signal] = {}  # cached signals, as users keep them
        self.counter = 0

    def _make_listener(self, lid: int) -> Callable[[dict, Any], None]:
        def listener(info: dict, data: Any) -> None:
            self.log.append((lid, dict(info), data))

        return listener

    def _take(self) -> list[Call]:
        log, self.log = self.log, []
        return log

    def _check(self, expected: list[Call]) -> None:
        actual = self._take()
        assert actual == expected, "calls differ:\n actual   %r\n expected %r" % (actual, expected)

    # -- senders ------------------------------------------------------------

    @rule(
        sender=st.sampled_from(SENDERS),
        events=st.lists(st.sampled_from(EVENTS), max_size=6),
        requests=st.sampled_from(REQUESTS),
    )
    def add_sender(self, sender: Any, events: list[Any], requests: dict | None) -> None:
        declared: list[Any] = []
        for event in events:
            if event not in declared:
                declared.append(event)
        if not declared and requests is None:
            try:
                self.router.addSender(sender, events, requests=requests)
            except sig.InvalidArgumentError:
                pass
            else:
                raise AssertionError("addSender with no events nor requests must fail")
        elif sender in self.model.connected:
            try:
                self.router.addSender(sender, events, requests=requests)
            except sig.SenderConnectedError:
                pass
            else:
                raise AssertionError("addSender of a connected sender must fail")
        else:
            objsender = self.router.addSender(sender, events, requests=requests)
            assert objsender.isConnected()
            data = {"events": declared, "requests": None if requests is None else list(requests)}
            self.model.connected[sender] = data
            self._check(self.model.fire(sender, "#connect", data))
            return
        self._check([])

    @rule(sender=st.sampled_from(SENDERS), by_object=st.booleans())
    def remove_sender(self, sender: Any, by_object: bool) -> None:
        if sender not in self.model.connected:
            try:
                self.router.removeSender(sender)
            except sig.UnknownSenderError:
                pass
            else:
                raise AssertionError("removeSender of a disconnected sender must fail")
            self._check([])
            return
        self.router.removeSender(self.router.getSender(sender) if by_object else sender)
        data = self.model.connected.pop(sender)
        for key in [key for key in self.signals if key[0] == sender]:
            del self.signals[key]  # the sender object may be dropped: old signals go stale
        self._check(self.model.fire(sender, "#disconnect", data))

    # -- listeners ------------------------------------------------------------

    @rule(lid=LIDS, sender=st.sampled_from(LISTEN_SENDERS), event=st.sampled_from(LISTEN_EVENTS))
    def add_listener(self, lid: int, sender: Any, event: Any) -> None:
        self.router.addListener(self.listeners[lid], sender, event)
        self.model.regs.setdefault((sender, event), []).append(lid)
        self._check([])

    @rule(lid=LIDS, sender=st.sampled_from(LISTEN_SENDERS), event=st.sampled_from(LISTEN_EVENTS))
    def remove_listener(self, lid: int, sender: Any, event: Any) -> None:
        ids = self.model.regs.get((sender, event), [])
        if lid in ids:
            self.router.removeListener(self.listeners[lid], sender, event)
            ids.remove(lid)
        else:
            try:
                self.router.removeListener(self.listeners[lid], sender, event)
            except sig.NotRegisteredError:
                pass
            else:
                raise AssertionError("removeListener of an unregistered listener must fail")
        self._check([])

    # -- triggers ----------------------------------------------------------------

    @precondition(lambda self: any(d["events"] for d in self.model.connected.values()))
    @rule(data=st.data(), cached=st.booleans())
    def trigger(self, data: st.DataObject, cached: bool) -> None:
        sender = data.draw(st.sampled_from([s for s, d in self.model.connected.items() if d["events"]]))
        event = data.draw(st.sampled_from(self.model.connected[sender]["events"]))
        self.counter += 1
        key = (sender, event)
        if cached and key in self.signals:
            signal = self.signals[key]
        else:
            signal = self.router.getSender(sender).getSignal(event)
            self.signals[key] = signal
        signal.trigger(self.counter)
        self._check(self.model.fire(sender, event, self.counter))

    @rule(sender=st.sampled_from(SENDERS), event=st.sampled_from([e for e in LISTEN_EVENTS if e is not None]))
    def get_signal_of_undeclared(self, sender: Any, event: Any) -> None:
        declared = self.model.connected.get(sender, {}).get("events")
        if declared is None or event in declared or event in ("#connect", "#disconnect"):
            return
        try:
            self.router.getSender(sender).getSignal(event)
        except sig.UnknownEventError:
            pass
        else:
            raise AssertionError("getSignal of an undeclared event must fail")

    # -- invariants -------------------------------------------------------------

    @invariant()
    def senders_kept_while_connected_or_listened(self) -> None:
        known = {name for name in self.router.senders if name is not None}
        assert known == self.model.known_senders()
        for name in known:
            objsender = self.router.getSender(name)
            assert objsender.isConnected() == (name in self.model.connected)
            expected = sum(len(ids) for (s, _e), ids in self.model.regs.items() if s is not None and s == name)
            assert objsender.countListeners() == expected

    @invariant()
    def broadcast_listeners_match(self) -> None:
        broadcast = self.router.getBroadcastEvent().getListeners()
        assert [self.listeners[lid] for lid in self.model.listeners(None, None)] == list(broadcast)


SubscriptionMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestSubscriptions = SubscriptionMachine.TestCase
