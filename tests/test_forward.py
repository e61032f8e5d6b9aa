"""Requests the server only passes on to another client's sender: started on the reader, no pool thread each."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from netutil import wait_until

import sig
from sig._forward import Deadlines
from sig.carrier.tcpclient import CarrierTCPClient
from sig.carrier.tcpserver import CarrierTCPServer


class Site:
    """A TCP ServerRouter with carrier settings, and connected ClientRouters."""

    def __init__(self, request_timeout: float = 5.0, **settings: Any) -> None:
        self.tcp = CarrierTCPServer(**settings)
        self.server = sig.ServerRouter(self.tcp, request_timeout=request_timeout)
        self.tcp.start("127.0.0.1", 0)
        self.carriers: list[CarrierTCPClient] = []

    def client(self) -> sig.ClientRouter:
        carrier = CarrierTCPClient()
        self.carriers.append(carrier)
        router = sig.ClientRouter(carrier, request_timeout=5.0)
        assert carrier.connect("127.0.0.1", self.tcp.port or 0, auto_reconnect=False)
        return router

    def close(self) -> None:
        for carrier in self.carriers:
            carrier.disconnect()
        self.tcp.stop()


@pytest.fixture
def sites() -> Iterator[list[Site]]:
    made: list[Site] = []
    try:
        yield made
    finally:
        for site in made:
            site.close()


def in_thread(fn: Any, *args: Any) -> Future[Any]:
    """Run ``fn(*args)`` on a thread of its own; the future gets its result or exception."""
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to the test
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future


def waiting_handler(result: str) -> tuple[Callable[[Any], str], threading.Event, threading.Event]:
    """A request handler that answers ``result`` once released; and the events: it runs, release it."""
    running, release = threading.Event(), threading.Event()

    def handler(params: Any) -> str:
        running.set()
        release.wait(10.0)
        return result

    return handler, running, release


def test_a_forwarded_request_needs_no_free_server_pool_thread(sites: list[Site]) -> None:
    site = Site(request_workers=1)
    sites.append(site)
    hold, holding, release = waiting_handler("held")
    site.server.addSender("busy", ["e"], requests={"hold": hold})  # runs on the server's only pool thread
    holder, device, asker = site.client(), site.client(), site.client()

    def fail(params: Any) -> None:
        raise ValueError("no such thing")

    device.addRemoteSender("device", ["e"], requests={"echo": lambda p: p, "fail": fail})
    device.addRemoteSender("any", ["e"], requests={None: lambda m, p: [m, p]})
    held = in_thread(holder.remoteRequest, "busy", "hold")
    try:
        assert holding.wait(5.0)
        started = time.monotonic()
        assert asker.remoteRequest("device", "echo", {"n": 1}, timeout=3.0) == {"n": 1}
        assert asker.remoteRequest("any", "other", 2, timeout=3.0) == ["other", 2]  # a default handler
        with pytest.raises(sig.RemoteError, match="no such thing"):  # the device's own error, passed back
            asker.remoteRequest("device", "fail", timeout=3.0)
        assert time.monotonic() - started < 3.0
    finally:
        release.set()
    assert held.result(5.0) == "held"


def test_a_forwarded_request_whose_sender_leaves_fails_as_name_error_and_frees_its_place(
    sites: list[Site],
) -> None:
    site = Site(max_pending_requests=1)
    sites.append(site)
    slow, answering, release = waiting_handler("late")
    device, other, asker = site.client(), site.client(), site.client()
    device.addRemoteSender("device", ["e"], requests={"slow": slow})
    other.addRemoteSender("other", ["e"], requests={"echo": lambda p: p})
    pending = in_thread(asker.remoteRequest, "device", "slow")
    try:
        assert answering.wait(5.0)
        device.carrier._conn.close("test: the device vanishes")  # type: ignore[attr-defined]
        with pytest.raises(NameError, match="disconnected before answering"):
            pending.result(5.0)
    finally:
        release.set()
    assert asker.remoteRequest("other", "echo", 3) == 3  # its place among the asker's pending requests is free


def test_a_late_forwarded_request_times_out_and_frees_its_place(sites: list[Site]) -> None:
    site = Site(request_timeout=0.3, max_pending_requests=1)
    sites.append(site)
    release = threading.Event()
    device, asker = site.client(), site.client()
    device.addRemoteSender("device", ["e"], requests={"wait": lambda p: release.wait(5.0), "echo": lambda p: p})
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no reply to request in 0\.3 s") as late:
        asker.remoteRequest("device", "wait")
    assert isinstance(late.value, sig.RemoteTimeoutError)
    assert time.monotonic() - started < 3.0
    release.set()  # its reply comes late and is dropped
    assert asker.remoteRequest("device", "echo", 4) == 4
    assert site.server.request("device", "echo", 5) == 5  # the server's own (waiting) requests too


def test_deadlines_cancel_what_is_late_drop_what_is_done_and_the_thread_ends_when_idle() -> None:
    deadlines = Deadlines()
    deadlines.IDLE = 0.2
    late: Future[Any] = Future()
    answered: Future[Any] = Future()
    cancelled = threading.Event()
    late.add_done_callback(lambda f: cancelled.set())
    deadlines.add(answered, 0.2)
    deadlines.add(late, 0.1)
    answered.set_result("done")
    assert cancelled.wait(5.0) and late.cancelled()
    assert answered.result() == "done"
    assert wait_until(lambda: len(deadlines) == 0 and not deadlines._running, 5.0)
    again: Future[Any] = Future()
    deadlines.add(again, 0.05)  # a new thread for a new deadline
    assert wait_until(again.cancelled, 5.0)


def test_deadlines_wake_their_thread_only_for_an_earlier_deadline() -> None:
    """A request's deadline after the one the thread sleeps to wakes nobody (one wake-up per request saved);
    an earlier one wakes it, and is kept."""

    class Counting(threading.Condition):
        notified = 0

        def notify(self, n: int = 1) -> None:
            Counting.notified += 1
            super().notify(n)

    deadlines = Deadlines()
    deadlines._cond = Counting()
    first: Future[Any] = Future()
    deadlines.add(first, 30.0)  # starts the thread, which sleeps to its deadline
    assert wait_until(lambda: deadlines._until > 0, 5.0)
    for _ in range(50):  # answered requests, each followed by the next: later deadlines, nobody woken
        first.set_result("answered")
        first = Future()
        deadlines.add(first, 30.0)
    assert Counting.notified == 0
    early: Future[Any] = Future()
    deadlines.add(early, 0.05)
    assert wait_until(early.cancelled, 5.0)
    assert Counting.notified == 1
    assert not first.done()
    first.cancel()
