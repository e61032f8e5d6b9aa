"""The reader passes reading on to the standby reader and runs the last request of a read itself.

Unit tests of :class:`sig._baton.Baton` (the hand-off, no I/O), then over TCP: requests run off the
thread that reads (a handler may wait for a reply on its own connection), one that blocks leaves
reading and the next requests to others, and a connection closing while one runs still ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from netutil import wait_until
from test_forward import Site, in_thread

import sig
from sig._baton import Baton


def standby_thread(baton: Baton) -> tuple[threading.Thread, list[bool]]:
    got: list[bool] = []
    thread = threading.Thread(target=lambda: got.append(baton.wait()), daemon=True)
    thread.start()
    assert wait_until(lambda: baton.standby, 5.0)
    return thread, got


def test_no_standby_nothing_to_claim() -> None:
    assert not Baton().claim()


def test_a_claimed_standby_reads_once_reading_is_passed_on() -> None:
    baton = Baton()
    thread, got = standby_thread(baton)
    assert baton.claim()
    assert not baton.standby and not baton.claim()  # one standby, claimed once
    baton.pass_on()
    thread.join(5.0)
    assert got == [True]


def test_close_ends_the_wait_and_nothing_is_claimed_after_it() -> None:
    baton = Baton()
    thread, got = standby_thread(baton)
    baton.close()
    thread.join(5.0)
    assert got == [False]
    assert not baton.claim()


def test_a_pass_after_the_standby_left_on_close_goes_to_the_next_waiter() -> None:
    """Claimed, then closed before the pass: the standby leaves; the passing thread, once it is the
    standby, takes its own pass and reads (and meets the closed stream), so somebody ends the reading."""
    baton = Baton()
    thread, got = standby_thread(baton)
    assert baton.claim()
    baton.close()
    thread.join(5.0)
    assert got == [False]
    baton.pass_on()
    assert baton.wait() is True


@pytest.fixture
def site() -> Iterator[Site]:
    made = Site()
    yield made  # pytest runs the rest as teardown, whatever the test did
    made.close()


def test_requests_run_off_the_reading_thread_and_may_wait_on_their_own_connection(site: Site) -> None:
    requester, responder, other = site.client(), site.client(), site.client()
    other.addRemoteSender("other", ["x"], requests={"echo": lambda params: params})
    threads: list[str] = []

    def ask(params: Any) -> Any:
        threads.append(threading.current_thread().name)
        return responder.remoteRequest("other", "echo", params)  # its reply is read by the standby

    responder.addRemoteSender("dev", ["x"], requests={"ask": ask})
    for i in range(20):
        assert requester.remoteRequest("dev", "ask", i) == i
    # the first starts the standby reader (run on the pool), later ones run on whichever thread read them
    assert sum(name.endswith(("-rx", "-rx2")) for name in threads) >= 15, threads


def test_a_request_that_blocks_leaves_reading_and_the_next_requests_to_others(site: Site) -> None:
    requester, responder = site.client(), site.client()
    release = threading.Event()
    events: list[Any] = []
    responder.addRemoteSender("dev", ["tick"], requests={
        "block": lambda params: release.wait(10.0) and "released",
        "echo": lambda params: params,
    })
    requester.addRemoteListener(lambda info, data: events.append(data), "dev", "tick")
    for i in range(3):  # the standby is started, and later requests run on the reading threads
        assert requester.remoteRequest("dev", "echo", i) == i
    blocked = in_thread(requester.remoteRequest, "dev", "block")
    try:
        for i in range(10):  # read by the other thread, run on the pool
            assert requester.remoteRequest("dev", "echo", i) == i
        for i in range(5):
            responder.getSender("dev").getSignal("tick").trigger(i)  # type: ignore[union-attr]
        assert wait_until(lambda: events == list(range(5)), 5.0), events
        assert not blocked.done()
    finally:
        release.set()
    assert blocked.result(5.0) == "released"


def test_a_connection_closing_while_its_reader_runs_a_request_still_ends(site: Site) -> None:
    requester, responder = site.client(), site.client()
    started, release = threading.Event(), threading.Event()
    gone = threading.Event()

    def block(params: Any) -> str:
        started.set()
        release.wait(10.0)
        return "late"

    responder.addRemoteSender("dev", ["x"], requests={"block": block, "echo": lambda params: params})
    requester.addRemoteListener(lambda info, data: gone.set(), "dev", sig.EVENT_DISCONNECT)
    for i in range(3):
        assert requester.remoteRequest("dev", "echo", i) == i
    blocked = in_thread(requester.remoteRequest, "dev", "block")
    try:
        assert started.wait(5.0)
        responder_carrier = site.carriers[1]
        closing = in_thread(responder_carrier.disconnect)
        assert gone.wait(5.0)  # the server saw the client go: its sender is disconnected
        with pytest.raises(Exception, match=r"disconnect|closed"):
            blocked.result(5.0)
    finally:
        release.set()
    closing.result(10.0)
    assert not responder_carrier.isConnected()
