"""sig_mqtt._batch.JobQueue: what paho's network thread queues during one read goes to the dispatcher as one job."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import pytest

from sig_mqtt._batch import JobQueue


def drain(jobs: JobQueue) -> int:
    """Run every queued job; how many ``get`` returned (wake-ups of the dispatcher)."""
    got = 0
    while True:
        try:
            job = jobs.get(timeout=0)
        except queue.Empty:
            return got
        got += 1
        assert job is not None
        job()


def test_a_batch_is_one_job_in_order() -> None:
    jobs, ran = JobQueue(), []
    jobs.begin()
    for i in range(5):
        jobs.put(lambda i=i: ran.append(i))
    assert drain(jobs) == 0  # nothing reaches the dispatcher before the batch ends
    jobs.end()
    assert drain(jobs) == 1
    assert ran == [0, 1, 2, 3, 4]


def test_outside_a_batch_each_job_goes_at_once() -> None:
    jobs, ran = JobQueue(), []
    jobs.put(lambda: ran.append("a"))
    jobs.begin()
    jobs.put(lambda: ran.append("b"))
    jobs.end()
    jobs.put(lambda: ran.append("c"))
    assert drain(jobs) == 3
    assert ran == ["a", "b", "c"]


def test_another_threads_job_goes_after_the_open_batch() -> None:
    """connect() waits for a job it queues after the CONNACK: it must run after the CONNACK's own job."""
    jobs, ran = JobQueue(), []
    jobs.begin()
    jobs.put(lambda: ran.append("online"))
    other = threading.Thread(target=jobs.put, args=(lambda: ran.append("connect returns"),))
    other.start()
    other.join(5.0)
    jobs.put(lambda: ran.append("next message"))
    jobs.end()
    drain(jobs)
    assert ran == ["online", "connect returns", "next message"]


def test_stop_is_never_held_back() -> None:
    jobs = JobQueue()
    jobs.begin()
    jobs.put(None)
    assert jobs.get(timeout=0) is None
    jobs.end()


def test_a_failing_job_does_not_lose_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    jobs, ran = JobQueue(), []

    def fail() -> None:
        raise RuntimeError("listener bug")

    batch: list[Callable[[], None]] = [lambda: ran.append(1), fail, lambda: ran.append(2)]
    jobs.begin()
    for job in batch:
        jobs.put(job)
    jobs.end()
    drain(jobs)
    assert ran == [1, 2]
    assert "MQTT dispatcher job failed" in caplog.text
