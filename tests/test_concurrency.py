"""Thread safety of the routing core.

Threads register and remove listeners and senders while others trigger; no
exception, no deadlock (every join is bounded), exact delivery counts for the
listeners that stay registered throughout, and no lock held while a listener
or a request handler runs.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

import sig

JOIN_TIMEOUT = 30.0
WAIT_TIMEOUT = 10.0


class Counter:
    """Thread-safe delivery counts per (name, sender, event)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: collections.Counter[tuple[str, Any, Any]] = collections.Counter()

    def listener(self, name: str) -> Callable[[dict, Any], None]:
        def listener(info: dict, data: Any) -> None:
            with self._lock:
                self.counts[(name, info["sender"], info["event"])] += 1

        return listener


def run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    """Run each target on its own thread; return the exceptions they raised."""
    errors: list[BaseException] = []

    def wrap(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    alive = [t for t in threads if t.is_alive()]
    assert not alive, "deadlock: %d thread(s) still running" % len(alive)
    return errors


@pytest.fixture
def no_logged_errors(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.ERROR, logger="sig")
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_churn_while_triggering_exact_counts(no_logged_errors: None) -> None:
    router = sig.Router()
    counter = Counter()
    stable = ["s0", "s1", 2, 3.5]
    churned = ["t0", "t1", 7]
    events = ["e", "#ch"]
    stable_senders = {name: router.addSender(name, events) for name in stable}
    # stable listeners of all four kinds, registered before any thread starts
    router.addListener(counter.listener("router"))
    router.addListener(counter.listener("channel"), None, "#ch")
    router.addListener(counter.listener("connect"), None, "#connect")
    for name in stable:
        router.addListener(counter.listener("sender"), name)
        router.addListener(counter.listener("specific"), name, "e")
        router.addListener(counter.listener("specific"), name, "#ch")

    triggers_per_thread = 1500
    trigger_threads = 4
    transient_calls = Counter()
    sender_ops: collections.Counter[str] = collections.Counter()
    stop = threading.Event()
    churners_running = [threading.Event() for _ in range(3)]
    min_churn = 200  # iterations each churner does at least, overlapping the triggers

    def plan(i: int) -> tuple[Any, str]:
        return stable[i % len(stable)], events[(i // len(stable)) % len(events)]

    def trigger(seed: int) -> Callable[[], None]:
        def run() -> None:
            rng = random.Random(seed)
            cached = {(n, e): stable_senders[n].getSignal(e) for n in stable for e in events}
            for i in range(triggers_per_thread):
                name, event = plan(i)
                if rng.random() < 0.5:
                    cached[(name, event)].trigger(i)
                else:
                    router.getSender(name).getSignal(event).trigger(i)

        return run

    def churn_listeners(seed: int, running: threading.Event) -> Callable[[], None]:
        def run() -> None:
            rng = random.Random(seed)
            done = 0
            keys: list[tuple[Any, Any]] = [(None, None), (None, "#ch"), (None, "#connect"), ("ghost", "e")]
            keys += [(n, e) for n in stable + churned for e in [None, *events]]
            while not stop.is_set() or done < min_churn:
                sender, event = rng.choice(keys)
                listener = transient_calls.listener("transient")
                router.addListener(listener, sender, event)
                router.removeListener(listener, sender, event)
                done += 1
                running.set()

        return run

    def churn_senders(seed: int, running: threading.Event) -> Callable[[], None]:
        def run() -> None:
            rng = random.Random(seed)
            while not stop.is_set() or sender_ops["add"] < min_churn:
                name = rng.choice(churned)
                try:
                    router.addSender(name, ["e"]).getSignal("e").trigger(None)
                    sender_ops["add"] += 1
                    router.removeSender(name)
                    sender_ops["remove"] += 1
                except (sig.SenderConnectedError, sig.UnknownSenderError):
                    sender_ops["conflict"] += 1
                running.set()

        return run

    def triggers_then_stop() -> None:
        try:
            for running in churners_running:
                assert running.wait(WAIT_TIMEOUT), "a churner did not start"
            errors = run_threads([trigger(i) for i in range(trigger_threads)])
            if errors:
                raise errors[0]
        finally:
            stop.set()

    churners = [
        churn_listeners(100, churners_running[0]),
        churn_listeners(101, churners_running[1]),
        churn_senders(200, churners_running[2]),
    ]
    errors = run_threads([triggers_then_stop, *churners])
    assert not errors, errors

    # exact counts for the stable listeners on the stable senders
    planned = collections.Counter(plan(i) for i in range(triggers_per_thread))
    for name in stable:
        for event in events:
            expected = planned[(name, event)] * trigger_threads
            assert expected > 0
            assert counter.counts[("specific", name, event)] == expected
            assert counter.counts[("sender", name, event)] == expected
            assert counter.counts[("router", name, event)] == expected
        assert counter.counts[("channel", name, "#ch")] == planned[(name, "#ch")] * trigger_threads
        assert counter.counts[("channel", name, "e")] == 0
    # one thread churned the senders: each add fired one #connect, each remove one #disconnect
    connects = sum(counter.counts[("router", n, "#connect")] for n in churned)
    disconnects = sum(counter.counts[("router", n, "#disconnect")] for n in churned)
    assert connects == sender_ops["add"] > 0
    assert disconnects == sender_ops["remove"] == sender_ops["add"]
    assert sum(counter.counts[("connect", n, "#connect")] for n in churned) == connects
    assert sum(counter.counts[("router", n, "e")] for n in churned) == connects

    # final state: every transient listener is gone, churned senders dropped
    assert {n for n in router.senders if n is not None} == set(stable)
    for name in stable:
        objsender = router.getSender(name)
        assert objsender.isConnected()
        assert objsender.countListeners() == 3
    assert len(router.getBroadcastEvent().getListeners()) == 1
    channel_event = router.getSender(None).getEvent("#ch")
    assert channel_event is not None and len(channel_event.getListeners()) == 1


def test_registration_is_visible_to_the_next_trigger_under_contention(no_logged_errors: None) -> None:
    """After addListener returns a trigger calls it; after removeListener returns it does not.

    Other threads trigger the same (cached) signal all the time, so the signal's
    listener cache is rebuilt concurrently with the changes.
    """
    router = sig.Router()
    sender = router.addSender("s", ["e"])
    signal = sender.getSignal("e")
    router.addListener(lambda i, d: None, "s")
    me = 0  # the toggling thread, set when it starts
    state = {"registered": False, "stale_calls": 0, "missed": 0}
    stop = threading.Event()

    def watched(info: dict, data: Any) -> None:
        if threading.get_ident() == me and not state["registered"]:
            state["stale_calls"] += 1

    heard: list[int] = []

    def probe(info: dict, data: Any) -> None:
        if threading.get_ident() == me:
            heard.append(1)

    def hammer() -> None:
        while not stop.is_set():
            signal.trigger(None)

    def toggler() -> None:
        try:
            for _ in range(3000):
                router.addListener(watched, "s", "e")
                state["registered"] = True
                router.addListener(probe, "s", "e")
                heard.clear()
                signal.trigger(None)
                if not heard:
                    state["missed"] += 1
                router.removeListener(probe, "s", "e")
                router.removeListener(watched, "s", "e")
                state["registered"] = False
                signal.trigger(None)
        finally:
            stop.set()

    def toggler_on_its_thread() -> None:
        nonlocal me
        me = threading.get_ident()
        toggler()

    errors = run_threads([hammer, hammer, toggler_on_its_thread])
    assert not errors, errors
    assert state == {"registered": False, "stale_calls": 0, "missed": 0}
    assert signal.getListeners() == router.getBroadcastEvent().getListeners() + sender.getEvent(None).getListeners()  # type: ignore[union-attr]


def test_concurrent_add_sender_same_name_connects_once() -> None:
    router = sig.Router()
    counter = Counter()
    router.addListener(counter.listener("connect"), None, "#connect")
    barrier = threading.Barrier(8, timeout=WAIT_TIMEOUT)
    outcome: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def add() -> None:
        barrier.wait()
        try:
            router.addSender("only", ["e"])
            result = "ok"
        except sig.SenderConnectedError:
            result = "refused"
        with lock:
            outcome[result] += 1

    errors = run_threads([add] * 8)
    assert not errors, errors
    assert outcome == {"ok": 1, "refused": 7}
    assert counter.counts[("connect", "only", "#connect")] == 1


def test_concurrent_add_listener_to_one_event_loses_none() -> None:
    router = sig.Router()
    sender = router.addSender("s", ["e"])
    counter = Counter()
    per_thread = 300
    listeners = [[counter.listener("l%d_%d" % (t, i)) for i in range(per_thread)] for t in range(6)]
    barrier = threading.Barrier(6, timeout=WAIT_TIMEOUT)

    def register(mine: list[Callable[[dict, Any], None]]) -> Callable[[], None]:
        def run() -> None:
            barrier.wait()
            for listener in mine:
                router.addListener(listener, "s", "e")

        return run

    errors = run_threads([register(mine) for mine in listeners])
    assert not errors, errors
    event = sender.getEvent("e")
    assert event is not None and len(event.getListeners()) == 6 * per_thread
    sender.getSignal("e").trigger(None)
    assert len(counter.counts) == 6 * per_thread
    assert set(counter.counts.values()) == {1}

    def unregister(mine: list[Callable[[dict, Any], None]]) -> Callable[[], None]:
        def run() -> None:
            for listener in mine:
                router.removeListener(listener, "s", "e")

        return run

    errors = run_threads([unregister(mine) for mine in listeners])
    assert not errors, errors
    assert event.getListeners() == ()


def test_no_lock_held_while_a_listener_runs() -> None:
    """A listener waits for another thread that registers a listener and changes senders."""
    router = sig.Router()
    sender = router.addSender("s", ["e"], requests={"ping": lambda p: "pong"})
    entered = threading.Event()
    released = threading.Event()
    result: dict[str, Any] = {}

    def blocking(info: dict, data: Any) -> None:
        entered.set()
        result["released"] = released.wait(WAIT_TIMEOUT)

    router.addListener(blocking, "s", "e")

    def trigger() -> None:
        sender.getSignal("e").trigger(None)

    def registrar() -> None:
        assert entered.wait(WAIT_TIMEOUT)
        # every one of these needs the router lock
        router.addListener(lambda i, d: None, "s", "e")
        router.addListener(lambda i, d: None, "other")
        other = router.addSender("other", ["x"])
        other.getSignal("x").trigger(None)
        router.removeSender("other")
        router.removeListener(blocking, "s", "e")
        result["request"] = router.request("s", "ping")
        released.set()

    errors = run_threads([trigger, registrar])
    assert not errors, errors
    assert result == {"released": True, "request": "pong"}


def test_no_lock_held_while_a_request_handler_runs() -> None:
    router = sig.Router()
    entered = threading.Event()
    released = threading.Event()
    answers: list[Any] = []

    def slow(params: Any) -> Any:
        entered.set()
        return released.wait(WAIT_TIMEOUT)

    router.addSender("s", ["e"], requests={"slow": slow})

    def requester() -> None:
        answers.append(router.request("s", "slow"))

    def registrar() -> None:
        assert entered.wait(WAIT_TIMEOUT)
        router.addListener(lambda i, d: None, "s", "e")
        router.addSender("t", ["e"])
        released.set()

    errors = run_threads([requester, registrar])
    assert not errors, errors
    assert answers == [True]


def test_listener_on_one_thread_waits_for_a_trigger_on_another() -> None:
    """Two triggers in flight at once on different threads, each waiting on the other's listener."""
    router = sig.Router()
    a = router.addSender("a", ["e"])
    b = router.addSender("b", ["e"])
    a_in, b_in = threading.Event(), threading.Event()
    waited: dict[str, bool] = {}

    def on_a(info: dict, data: Any) -> None:
        a_in.set()
        waited["a"] = b_in.wait(WAIT_TIMEOUT)

    def on_b(info: dict, data: Any) -> None:
        b_in.set()
        waited["b"] = a_in.wait(WAIT_TIMEOUT)

    router.addListener(on_a, "a", "e")
    router.addListener(on_b, "b", "e")
    errors = run_threads([lambda: a.getSignal("e").trigger(None), lambda: b.getSignal("e").trigger(None)])
    assert not errors, errors
    assert waited == {"a": True, "b": True}
