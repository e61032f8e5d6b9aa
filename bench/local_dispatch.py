"""Local dispatch cost of sig compared with blinker, in one run.

Prints nanoseconds per trigger for sig and for blinker with 1 and 10 listeners,
sig again with 10,000 unrelated senders registered (each with a listener),
bytes per registered listener, and the ratios the project aims for:

- sig / blinker, 1 listener: target <= 0.2
- sig with 10k unrelated senders / sig alone: target <= 1.1

Run: ``python3 bench/local_dispatch.py`` (about 30 s).
"""

from __future__ import annotations

import gc
import sys
import timeit
import tracemalloc
from collections.abc import Callable
from typing import Any

import sig

try:
    import blinker
except ImportError:  # pragma: no cover - blinker is a test dependency
    blinker = None

REPEAT = 5
ROUNDS = 3  # configurations are measured in turn, ROUNDS times, so drift hits them all alike
UNRELATED_SENDERS = 10_000
MEMORY_LISTENERS = 10_000


def measure(cases: dict[str, tuple[Callable[[Any], Any], Any]]) -> dict[str, float]:
    """Best timing of ``call(arg)`` per case, in nanoseconds per call.

    Each case is timed REPEAT times per round, the cases in turn, for ROUNDS rounds.
    """
    timers = {}
    for name, (call, arg) in cases.items():
        timer = timeit.Timer("call(arg)", globals={"call": call, "arg": arg})
        number, _ = timer.autorange()  # enough calls for >= 0.2 s
        timers[name] = (timer, number)
    best = {name: float("inf") for name in cases}
    for _ in range(ROUNDS):
        for name, (timer, number) in timers.items():
            best[name] = min(best[name], min(timer.repeat(repeat=REPEAT, number=number)) / number * 1e9)
    return best


def make_sig_listeners(count: int) -> list[Callable[[dict, Any], None]]:
    def make() -> Callable[[dict, Any], None]:
        def listener(info: dict, data: Any) -> None:
            pass

        return listener

    return [make() for _ in range(count)]


def make_blinker_receivers(count: int) -> list[Callable[..., None]]:
    def make() -> Callable[..., None]:
        def receiver(sender: Any, **kwargs: Any) -> None:
            pass

        return receiver

    return [make() for _ in range(count)]


def sig_trigger(listeners: int, unrelated: int = 0) -> tuple[sig.Router, Callable[[Any], None]]:
    router = sig.Router()
    noop = make_sig_listeners(1)[0]
    for i in range(unrelated):
        name = "unrelated%d" % i
        router.addSender(name, ["e"])
        router.addListener(noop, name, "e")
    sender = router.addSender("s", ["e"])
    for listener in make_sig_listeners(listeners):
        router.addListener(listener, "s", "e")
    return router, sender.getSignal("e").trigger


def blinker_send(receivers: int) -> tuple[Any, list[Any], Callable[[Any], Any]]:
    signal = blinker.Signal()
    kept = make_blinker_receivers(receivers)  # strong references: blinker connects weakly
    for receiver in kept:
        signal.connect(receiver)
    return signal, kept, signal.send


def bytes_per_listener(register: Callable[[], None], count: int) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        register()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / count


def memory_figures() -> dict[str, float]:
    noop = make_sig_listeners(1)[0]
    n = MEMORY_LISTENERS
    figures: dict[str, float] = {}

    # distinct (sender, event) pairs of senders that already exist (100 senders x 100 events)
    router = sig.Router()
    senders = ["s%d" % i for i in range(100)]
    events = ["e%d" % j for j in range(n // 100)]
    for name in senders:
        router.addSender(name, events)
    pairs = [(s, e) for s in senders for e in events]

    def on_existing_pairs() -> None:
        for s, e in pairs:
            router.addListener(noop, s, e)

    figures["distinct (sender, event) pairs, senders connected"] = bytes_per_listener(on_existing_pairs, n)

    # distinct (sender, event) pairs of senders nobody added: each needs its Sender object
    router = sig.Router()
    names = ["p%d" % i for i in range(n)]

    def on_new_senders() -> None:
        for name in names:
            router.addListener(noop, name, "e")

    figures["distinct (sender, event) pairs, senders not added yet"] = bytes_per_listener(on_new_senders, n)

    # many listeners on one event
    router = sig.Router()
    router.addSender("one", ["e"])
    listeners = make_sig_listeners(n)

    def on_one_event() -> None:
        for listener in listeners:
            router.addListener(listener, "one", "e")

    figures["one event (listener objects not counted)"] = bytes_per_listener(on_one_event, n)
    return figures


def main() -> int:
    print("sig %s, Python %s" % (sig.VERSION, sys.version.split()[0]))
    print("best of %d x %d runs; ns per trigger (sig: Signal.trigger, blinker: Signal.send)" % (ROUNDS, REPEAT))
    print()

    keep: list[Any] = []
    cases: dict[str, tuple[Callable[[Any], Any], Any]] = {}
    for count in (1, 10):
        router, trigger = sig_trigger(count)
        keep.append(router)
        cases["sig %d" % count] = (trigger, None)
        router, trigger = sig_trigger(count, unrelated=UNRELATED_SENDERS)
        keep.append(router)
        cases["sig %d, %dk senders" % (count, UNRELATED_SENDERS // 1000)] = (trigger, None)
        if blinker is not None:
            signal, receivers, send = blinker_send(count)
            keep.append((signal, receivers))
            cases["blinker %d" % count] = (send, object())
    results = measure(cases)

    for count in (1, 10):
        label = "%d listener%s" % (count, "" if count == 1 else "s")
        row = "%-12s  sig %7.1f ns" % (label, results["sig %d" % count])
        if blinker is not None:
            row += "   blinker %7.1f ns" % results["blinker %d" % count]
        row += "   sig with %dk unrelated senders %7.1f ns" % (
            UNRELATED_SENDERS // 1000,
            results["sig %d, %dk senders" % (count, UNRELATED_SENDERS // 1000)],
        )
        print(row)
    print()

    print("bytes per registered listener (tracemalloc, %d listeners):" % MEMORY_LISTENERS)
    for what, size in memory_figures().items():
        print("  %-55s %8.1f B" % (what, size))
    print()

    print("ratios:")
    if blinker is not None:
        ratio = results["sig 1"] / results["blinker 1"]
        print("  sig / blinker, 1 listener:                  %.3f  (target <= 0.2: %s)" % (ratio, verdict(ratio, 0.2)))
        ratio10 = results["sig 10"] / results["blinker 10"]
        print("  sig / blinker, 10 listeners:                %.3f" % ratio10)
    else:
        print("  sig / blinker: blinker is not installed")
    scale = results["sig 1, 10k senders"] / results["sig 1"]
    print("  sig with 10k senders / sig, 1 listener:     %.3f  (target <= 1.1: %s)" % (scale, verdict(scale, 1.1)))
    scale10 = results["sig 10, 10k senders"] / results["sig 10"]
    print("  sig with 10k senders / sig, 10 listeners:   %.3f" % scale10)
    return 0


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
