"""sig_mqtt._batch.JobQueue: what paho's network thread queues during one read goes to the dispatcher as one job."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest
from netutil import wait_until

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


# -- the paho releases the overrides were written for -----------------------------------------------


def test_client_class_follows_the_paho_release(caplog: pytest.LogCaptureFixture) -> None:
    import paho.mqtt.client as paho

    from sig_mqtt._batch import BatchingClient, client_class

    assert client_class("2.2.0") is BatchingClient
    assert client_class("2.1.0") is BatchingClient
    with caplog.at_level("WARNING", logger="sig.mqtt.dispatch"):
        assert client_class("3.0.0") is paho.Client


def test_an_untested_paho_release_still_carries_events_and_requests(
        monkeypatch: pytest.MonkeyPatch, mosquitto: Any, carriers: list[Any]) -> None:
    """On a paho release outside PAHO_TESTED the node runs on paho's own Client: same behaviour."""
    import sig
    import sig_mqtt._batch as batch
    from sig_mqtt import CarrierMQTTClient

    monkeypatch.setattr(batch, "PAHO_TESTED", ())
    routers = []
    for _ in range(2):
        carrier = CarrierMQTTClient(prefix="plainpaho")
        carriers.append(carrier)
        routers.append(sig.ClientRouter(carrier))
        assert carrier.connect("127.0.0.1", mosquitto.port)
    heard: list[Any] = []
    routers[1].addRemoteListener(lambda info, data: heard.append(data), "dev", "e")
    signal = routers[0].addRemoteSender("dev", ["e"], requests={"echo": lambda params: params}).getSignal("e")
    for n in range(50):
        signal.trigger(n)
    assert wait_until(lambda: len(heard) >= 50)
    assert heard == list(range(50))
    assert wait_until(lambda: carriers[1].isSenderConnected("dev"))  # its birth may trail its events
    assert routers[1].remoteRequest("dev", "echo", {"x": 1}) == {"x": 1}
