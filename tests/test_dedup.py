"""Broker redeliveries never reach listeners (sig_mqtt._dedup), and the fast MQTT 5 PUBLISH reader.

Unit tests of the window and of the packet reader, then a private Mosquitto: redeliveries
injected by real clients (paho publishing the same PUBLISH twice with the same User
Property, ``mosquitto_pub -D publish user-property``) reach a listener once; another
session or number, and plain publishers without the property, still pass.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mqttutil import mosquitto_pub, mosquitto_sub
from netutil import Recorder, wait_until
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import sig
from sig_mqtt import CarrierMQTTClient
from sig_mqtt._dedup import SEQ_PROPERTY, Dedup, Sequencer
from sig_mqtt._fastprops import decode_publish, pack_user_property

# -- the window (pure) ----------------------------------------------------------------------------


def test_a_number_seen_once_passes_and_again_is_dropped() -> None:
    dedup = Dedup(window=8)
    assert dedup.fresh("s", 1) and dedup.fresh("s", 2)
    assert not dedup.fresh("s", 1) and not dedup.fresh("s", 2)
    assert dedup.dropped == 2
    assert dedup.fresh("t", 1)  # another session
    assert dedup.fresh("s", 3)


def test_numbers_out_of_order_within_the_window_pass_once() -> None:
    dedup = Dedup(window=8)
    assert dedup.fresh("s", 5)
    assert dedup.fresh("s", 3) and dedup.fresh("s", 4)  # late, not seen: pass
    assert not dedup.fresh("s", 3) and not dedup.fresh("s", 5)
    assert dedup.fresh("s", 20)  # a jump past the window forgets the bits
    assert dedup.fresh("s", 5)  # older than the window: cannot tell, passes (at-least-once)
    assert dedup.fresh("s", 13) and not dedup.fresh("s", 13)  # the window's oldest number


def test_the_window_is_bounded_in_sessions() -> None:
    dedup = Dedup(window=8, publishers=2)
    for session in ("a", "b", "c"):
        assert dedup.fresh(session, 1)
    assert len(dedup._seen) == 2
    assert dedup.fresh("a", 1)  # forgotten (the oldest): passes again
    assert not dedup.fresh("c", 1)


def test_the_property_value_is_read_leniently() -> None:
    dedup = Dedup()
    assert dedup.fresh_message([("other", "x"), (SEQ_PROPERTY, "abc:7")])
    assert not dedup.fresh_message([(SEQ_PROPERTY, "abc:7")])
    for odd in ("abc", ":7", "abc:x", "abc:-1", ""):
        assert dedup.fresh_message([(SEQ_PROPERTY, odd)]) and dedup.fresh_message([(SEQ_PROPERTY, odd)])
    assert dedup.fresh_message([])


@given(st.lists(st.integers(1, 60), max_size=200))
def test_the_window_drops_exactly_what_was_seen_within_it(numbers: list[int]) -> None:
    dedup = Dedup(window=16)
    seen: set[int] = set()
    top = 0
    for n in numbers:
        expected = n not in seen or top - n >= 16
        assert dedup.fresh("s", n) == expected, (n, top, sorted(seen))
        seen.add(n)
        top = max(top, n)


def test_the_sequence_counts_per_session_and_packs_as_paho() -> None:
    sequencer = Sequencer("sess")
    first, second = sequencer.next(), sequencer.next()
    assert first.UserProperty == [(SEQ_PROPERTY, "sess:1")] and second.UserProperty == [(SEQ_PROPERTY, "sess:2")]
    reference = Properties(PacketTypes.PUBLISH)
    reference.UserProperty = [(SEQ_PROPERTY, "sess:2")]
    assert second.pack() == reference.pack()
    assert str(second) == str(reference) and second.json() == reference.json()


# -- the PUBLISH reader (pure) --------------------------------------------------------------------


def _packet_bytes(topic: bytes, mid: int | None, props: bytes, payload: bytes) -> bytearray:
    return bytearray(len(topic).to_bytes(2, "big") + topic + (b"" if mid is None else mid.to_bytes(2, "big"))
                     + props + payload)


def test_the_reader_reads_what_paho_reads() -> None:
    full = Properties(PacketTypes.PUBLISH)
    full.PayloadFormatIndicator = 1
    full.MessageExpiryInterval = 30
    full.ContentType = "application/json"
    full.ResponseTopic = "sig/reply/n1"
    full.CorrelationData = b"\x00\xffid"
    full.SubscriptionIdentifier = [3]
    full.SubscriptionIdentifier = [300]
    full.UserProperty = [("a", "1"), ("b", "é")]
    cases = [(0x30, None, b"\x00", b""), (0x32, 7, b"\x00", b"21.5"), (0x33, 65535, full.pack(), b"\x00{}"),
             (0x3B, 1, pack_user_property(SEQ_PROPERTY, "s:1"), b"x" * 300)]
    for header, mid, props, payload in cases:
        packet = _packet_bytes(b"sig/event/a/b", mid, props, payload)
        ours = decode_publish(header, packet)
        theirs = _packet.decode_publish(header, bytes(packet), paho.MQTTv5)
        assert (ours.topic, ours.mid, ours.qos, ours.retain, ours.dup, ours.payload) == (
            theirs.topic.decode(), theirs.mid, theirs.qos, theirs.retain, theirs.dup, theirs.payload)
        assert ours.properties.json() == theirs.properties.json()
        assert str(ours.properties) == str(theirs.properties)


def test_the_reader_refuses_malformed_packets() -> None:
    for props in (b"\x05\x26\x00\x01a", b"\x02\x11\x00", b"\x04\x02\x00\x00\x00\x01\x02",
                  b"\x06\x08\x00\x03a\x00b", b"\x03\x09\x00\x05", b"\x80\x80\x80\x80\x01"):
        with pytest.raises(MalformedPacket):
            decode_publish(0x32, _packet_bytes(b"t", 1, props, b""))
    with pytest.raises(MalformedPacket):
        decode_publish(0x32, bytearray(b"\x00\x09abc"))


# -- on a broker ----------------------------------------------------------------------------------


@pytest.fixture
def listening(mosquitto: Any) -> Iterator[tuple[Any, str, Recorder, CarrierMQTTClient]]:
    prefix = "d%s/sig" % uuid.uuid4().hex[:8]
    carrier = CarrierMQTTClient(prefix=prefix, protocol=5)
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    try:
        assert carrier.connect("127.0.0.1", mosquitto.port, auto_reconnect=False), carrier.last_error
        rec = Recorder()
        router.addRemoteListener(rec.listener(), "dev", "temp")
        yield mosquitto, prefix, rec, carrier
    finally:
        carrier.disconnect()


def _paho_v5(port: int) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="raw-" + uuid.uuid4().hex[:6], protocol=paho.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _publish(client: paho.Client, topic: str, payload: str, seq: str | None) -> None:
    props = None
    if seq is not None:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [(SEQ_PROPERTY, seq)]
    client.publish(topic, payload, qos=1, properties=props).wait_for_publish(5.0)


def test_a_redelivered_event_reaches_the_listener_once(listening: Any) -> None:
    broker, prefix, rec, carrier = listening
    client = _paho_v5(broker.port)
    try:
        topic = prefix + "/event/dev/temp"
        _publish(client, topic, "1", "s1:1")
        _publish(client, topic, "1", "s1:1")  # the same PUBLISH again: a redelivery
        _publish(client, topic, "2", "s1:2")  # the next number
        _publish(client, topic, "3", "s2:1")  # another session's first
        _publish(client, topic, "4", None)  # a plain publisher: no property, no dedup
        _publish(client, topic, "4", None)
        _publish(client, topic, "5", "s2:1")  # a duplicate again, last: everything before it is in
        _publish(client, topic, "6", "s2:2")
    finally:
        client.disconnect()
        client.loop_stop()
    rec.wait_for(6, 5.0)
    assert [call[3] for call in rec.settle(0.3)] == [1, 2, 3, 4, 4, 6]
    assert carrier.node.dedup.dropped == 2


def test_mosquitto_pub_with_the_same_user_property_twice_is_heard_once(listening: Any) -> None:
    broker, prefix, rec, carrier = listening
    topic = prefix + "/event/dev/temp"
    for payload, seq in (("10", "cli:7"), ("10", "cli:7"), ("11", "cli:8")):
        mosquitto_pub(broker.port, topic, payload, "-V", "mqttv5", "-D", "publish", "user-property",
                      SEQ_PROPERTY, seq)
    rec.wait_for(2, 5.0)
    assert [call[3] for call in rec.settle(0.3)] == [10, 11]
    assert carrier.node.dedup.dropped == 1


def _pair(carriers: list[Any], port: int, listener_protocol: int = 5) -> tuple[
        CarrierMQTTClient, sig.ClientRouter, CarrierMQTTClient, sig.ClientRouter]:
    """A hosting node (MQTT 5) and a listening node on one fresh prefix: (carrier, router) of each."""
    prefix = "d%s/sig" % uuid.uuid4().hex[:8]
    made = []
    for protocol in (5, listener_protocol):
        carrier = CarrierMQTTClient(prefix=prefix, protocol=protocol)
        carriers.append(carrier)
        made += [carrier, sig.ClientRouter(carrier, request_timeout=5.0)]
        assert carrier.connect("127.0.0.1", port, auto_reconnect=False), carrier.last_error
    return made[0], made[1], made[2], made[3]


@pytest.mark.parametrize("listener_protocol", [5, 4])
def test_sig_events_carry_their_sequence_beside_a_plain_payload(mosquitto: Any, carriers: list[Any],
                                                                listener_protocol: int) -> None:
    hosting, sender_router, _, listener_router = _pair(carriers, mosquitto.port, listener_protocol)
    prefix = hosting.node.topics.prefix
    rec = Recorder()
    listener_router.addRemoteListener(rec.listener(), "dev", "temp")
    dev = sender_router.addRemoteSender("dev", ["temp"])
    with mosquitto_sub.background(mosquitto.port, prefix + "/event/#", "-V", "mqttv5", "-F", "%t|%p|%P") as v5, \
            mosquitto_sub.background(mosquitto.port, prefix + "/event/#") as v311:
        for value in (20.5, {"t": 1}):
            dev.getSignal("temp").trigger(value)
        lines5 = v5.wait_for(2, 5.0)
        lines311 = v311.wait_for(2, 5.0)
    session = hosting.node.session
    assert lines5 == ['%s/event/dev/temp|20.5|%s:%s:1' % (prefix, SEQ_PROPERTY, session),
                      '%s/event/dev/temp|{"t":1}|%s:%s:2' % (prefix, SEQ_PROPERTY, session)]
    assert lines311 == ['%s/event/dev/temp 20.5' % prefix, '%s/event/dev/temp {"t":1}' % prefix]
    assert [call[3] for call in rec.wait_for(2, 5.0)] == [20.5, {"t": 1}]


def test_on_3_1_1_a_redelivery_is_not_recognised(mosquitto: Any, carriers: list[Any]) -> None:
    """What 3.1.1 gets (documented): no User Properties, so a duplicate passes."""
    _, _, listening, router = _pair(carriers, mosquitto.port, 4)
    rec = Recorder()
    router.addRemoteListener(rec.listener(), "dev", "temp")
    client = _paho_v5(mosquitto.port)
    try:
        for _ in range(2):
            _publish(client, listening.node.topics.prefix + "/event/dev/temp", "1", "s1:1")
    finally:
        client.disconnect()
        client.loop_stop()
    assert [call[3] for call in rec.wait_for(2, 5.0)] == [1, 1]


def test_a_burst_from_several_threads_is_heard_once_each(mosquitto: Any, carriers: list[Any]) -> None:
    """Numbers taken by several threads at once go out in any order: none is dropped as a duplicate."""
    _, sender_router, listening, listener_router = _pair(carriers, mosquitto.port)
    rec = Recorder()
    listener_router.addRemoteListener(rec.listener(), "dev", None)
    dev = sender_router.addRemoteSender("dev", ["a", "b", "c", "d"])

    def burst(event: str) -> None:
        for value in range(300):
            dev.getSignal(event).trigger(value)

    threads = [threading.Thread(target=burst, args=(event,)) for event in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert wait_until(lambda: sum(call[2] in "abcd" for call in rec.calls) >= 1200, 20.0)
    calls = [call for call in rec.settle(0.3) if call[2] in "abcd"]
    assert sorted(calls) == sorted(("", "dev", event, value) for event in "abcd" for value in range(300))
    assert listening.node.dedup.dropped == 0
