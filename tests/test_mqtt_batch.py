"""sig_mqtt._batch: what paho's network thread queues during one read goes to the dispatcher as one job
(JobQueue); a request or reply is written by the thread that publishes it (BatchingClient.writing_now)."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netutil import wait_until
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes

from sig_mqtt._batch import BatchingClient, JobQueue
from sig_mqtt._packets import properties, publish_properties


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


# -- BatchingClient: a request or reply written by the thread that publishes it ------------------------------


class Wire:
    """A BatchingClient on one end of a socketpair, as if its network thread ran elsewhere."""

    def __init__(self) -> None:
        self.client = BatchingClient(CallbackAPIVersion.VERSION2, client_id="batch-test")
        self.client.batch = JobQueue()
        self.near, self.far = socket.socketpair()
        self.far.settimeout(0.2)
        self.client._sock = self.near
        self.client._thread = threading.Thread(target=lambda: None)  # the network thread: not this one
        self.wake_r, self.client._sockpairW = socket.socketpair()
        self.wake_r.setblocking(False)

    def queue(self, packet: bytes, qos: int, command: int = paho.PUBLISH, now: bool = False) -> None:
        if now:
            with self.client.writing_now():
                self.client._packet_queue(command | (qos << 1), packet, 1, qos)
        else:
            self.client._packet_queue(command | (qos << 1), packet, 1, qos)

    def received(self) -> bytes:
        try:
            return self.far.recv(1000)
        except TimeoutError:
            return b""

    def woken(self) -> bool:
        try:
            return bool(self.wake_r.recv(10))
        except BlockingIOError:
            return False

    def close(self) -> None:
        for sock in (self.near, self.far, self.wake_r, self.client._sockpairW):
            sock.close()  # type: ignore[union-attr]


def test_a_qos1_publish_inside_writing_now_is_written_by_its_thread_without_waking_the_loop() -> None:
    wire = Wire()
    try:
        wire.queue(b"request", 1, now=True)
        assert wire.received() == b"request" and not wire.client._out_packet
        assert not wire.woken()
        wire.queue(b"event", 1)  # outside writing_now: the network thread writes it
        assert wire.woken() and list(p["packet"] for p in wire.client._out_packet) == [b"event"]
        assert wire.received() == b""
    finally:
        wire.close()


def test_writing_now_leaves_qos0_publishes_and_a_busy_writer_to_the_network_thread() -> None:
    wire = Wire()
    try:
        wire.client._woken = False
        wire.queue(b"qos0", 0, now=True)  # paho calls on_publish once written: its network thread does
        assert wire.received() == b"" and wire.woken()
        wire.client._out_packet.clear()
        with wire.client.write_lock:  # the network thread is writing: never wait for it
            wire.client._woken = False
            wire.queue(b"reply", 1, now=True)
        assert wire.received() == b"" and wire.woken()
        assert [p["packet"] for p in wire.client._out_packet] == [b"reply"]
    finally:
        wire.close()


def test_what_the_network_thread_queues_while_reading_is_written_when_the_read_ends() -> None:
    wire = Wire()
    try:
        wire.client._thread = threading.current_thread()  # this thread plays the network thread
        wire.client._reading = True
        wire.queue(b"puback", 0, command=paho.PUBACK)
        assert not wire.woken() and wire.received() == b""  # no wake-up of its own loop
        wire.client._reading = False
        wire.client.loop_write()  # what loop_read does once the socket is read dry
        assert wire.received() == b"puback" and not wire.client._out_packet
    finally:
        wire.close()


# -- request properties packed at once -------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(topic=st.one_of(st.none(), st.text(max_size=40)), correlation=st.one_of(st.none(), st.binary(max_size=300)),
       expiry=st.one_of(st.none(), st.integers(0, 2**32 - 1)))
def test_publish_properties_pack_as_paho_does(topic: str | None, correlation: bytes | None, expiry: int | None) -> None:
    values = {name: value for name, value in (("ResponseTopic", topic), ("CorrelationData", correlation),
                                               ("MessageExpiryInterval", expiry)) if value is not None}
    quick = publish_properties(**values)
    assert quick.pack() == properties(PacketTypes.PUBLISH, **values).pack()
    for name, value in values.items():
        assert getattr(quick, name) == value
    quick.ContentType = "text/plain"  # changed afterwards: packed again, the paho way
    assert quick.pack() == properties(PacketTypes.PUBLISH, **values, ContentType="text/plain").pack()


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
