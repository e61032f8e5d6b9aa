"""The worker pool that runs request calls: a thread per busy task up to its limit, then tasks wait."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from netutil import wait_until

from sig._pool import WorkerPool


def test_tasks_run_on_idle_threads_and_new_ones_start_only_when_all_are_busy() -> None:
    pool = WorkerPool(3, "test-pool")
    done: list[int] = []
    for n in range(20):  # one after the other: one thread is enough
        finished = threading.Event()
        pool.submit(lambda n=n, f=finished: (done.append(n), f.set()))
        assert finished.wait(5.0)
    assert wait_until(lambda: pool.threads == 1, 5.0), pool.threads
    release = threading.Event()
    started = threading.Semaphore(0)

    def block() -> None:
        started.release()
        release.wait(10.0)

    for _ in range(3):
        pool.submit(block)
    for _ in range(3):
        assert started.acquire(timeout=5.0)
    assert pool.threads == 3
    waited = threading.Event()
    pool.submit(waited.set)  # every thread is busy and none may start: it waits
    assert not waited.wait(0.2) and pool.threads == 3
    release.set()
    assert waited.wait(5.0)
    assert done == list(range(20))


def test_a_failing_task_is_logged_and_its_thread_goes_on(caplog: Any) -> None:
    pool = WorkerPool(1, "test-pool")

    def fail() -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="sig.pool"):
        pool.submit(fail)
        ran = threading.Event()
        pool.submit(ran.set)
        assert ran.wait(5.0)
    assert "boom" in caplog.text and pool.threads == 1
    with pytest.raises(ValueError):
        WorkerPool(0)


def test_shutdown_drops_waiting_tasks_refuses_new_ones_and_ends_the_threads() -> None:
    pool = WorkerPool(1, "test-pool-shutdown")
    release, started = threading.Event(), threading.Event()
    ran: list[str] = []

    def block() -> None:
        started.set()
        release.wait(10.0)
        ran.append("block")

    pool.submit(block)
    assert started.wait(5.0)
    pool.submit(lambda: ran.append("dropped"))
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: ran.append("refused"))
    release.set()
    assert wait_until(lambda: "test-pool-shutdown_0" not in {t.name for t in threading.enumerate()}, 5.0)
    assert ran == ["block"]
