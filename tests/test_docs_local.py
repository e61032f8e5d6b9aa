"""Every documented local (single-process) example, asserting its documented output.

The examples are the pysig 0.7.x documents (Python 2 ``print`` turned into
``print()``); the expected lines are copied from the documents.
"""

from __future__ import annotations

import json

import pytest

import sig


def test_basics_example(capsys: pytest.CaptureFixture[str]) -> None:
    def listen_to_events(info, data):
        event = info.get("event")
        sender = info.get("sender")
        print("Received event '%s' from sender '%s' having data '%s'" % (event, sender, data))

    router = sig.Router()
    sender = router.addSender("my_sender", ["my_event_1", "my_event_2"])
    sig_ev1 = sender.getSignal("my_event_1")
    router.addListener(listen_to_events, "my_sender", "my_event_1")
    sig_ev1.trigger({"info1": "something", "info2": 2})

    assert capsys.readouterr().out.splitlines() == [
        "Received event 'my_event_1' from sender 'my_sender' having data '{'info1': 'something', 'info2': 2}'"
    ]


def test_one_line_trigger_and_sender_add_listener(capsys: pytest.CaptureFixture[str]) -> None:
    router = sig.Router()
    sender = router.addSender("my_sender", ["my_event_1", "my_event_2"])
    sender.addListener(lambda info, data: print(info, data), "my_event_1")
    router.getSender("my_sender").getSignal("my_event_1").trigger({"info1": "somedata", "info2": 2})
    assert capsys.readouterr().out.splitlines() == [
        "{'sender': 'my_sender', 'event': 'my_event_1'} {'info1': 'somedata', 'info2': 2}"
    ]


def test_identifiers_may_be_int_float_str() -> None:
    router = sig.Router()
    heard: list[tuple[object, object, object]] = []
    router.addListener(lambda info, data: heard.append((info["sender"], info["event"], data)), 20)
    sender = router.addSender(20, [1, 2.0, "2.0"])
    sender.getSignal(1).trigger("a")
    sender.getSignal(2.0).trigger("b")
    sender.getSignal("2.0").trigger("c")
    assert heard == [
        (20, sig.EVENT_CONNECT, {"events": [1, 2.0, "2.0"], "requests": None}),
        (20, 1, "a"),
        (20, 2.0, "b"),
        (20, "2.0", "c"),
    ]
    assert type(heard[2][1]) is float


def test_json_encoded_dict_identifier() -> None:
    router = sig.Router()
    sender_name = json.dumps({"id": 123, "source": "http://www.something.com"})
    sender = router.addSender(sender_name, [1, 2, 3])
    assert router.getSender(sender_name) is sender


def test_subscribe_before_sender_example(capsys: pytest.CaptureFixture[str]) -> None:
    def listen_to_connect_disconnect(info, data):
        event = info.get("event")
        state = "connected" if event == sig.EVENT_CONNECT else "disconnected"
        print("Sender connect/disconnect event, current state: ", state)

    def listen_to_events(info, data):
        event = info.get("event")
        sender = info.get("sender")
        print("Received event '%s' from sender '%s' having data '%s'" % (event, sender, data))

    def print_sender_state():
        print("Sender state: %s" % ("connected" if router.getSender("my_sender").isConnected() else "disconnected"))

    router = sig.Router()
    router.addListener(listen_to_events, "my_sender", "my_event_1")
    router.addListener(listen_to_connect_disconnect, "my_sender", sig.EVENT_CONNECT)
    router.addListener(listen_to_connect_disconnect, "my_sender", sig.EVENT_DISCONNECT)
    print_sender_state()
    my_events = ["my_event_1", "my_event_2"]
    sender = router.addSender("my_sender", my_events)
    print_sender_state()
    router.removeSender(sender)
    print_sender_state()
    sender = router.addSender("my_sender", my_events)
    print_sender_state()
    sender.getSignal(my_events[0]).trigger(None)

    assert capsys.readouterr().out.splitlines() == [
        "Sender state: disconnected",
        "Sender connect/disconnect event, current state:  connected",
        "Sender state: connected",
        "Sender connect/disconnect event, current state:  disconnected",
        "Sender state: disconnected",
        "Sender connect/disconnect event, current state:  connected",
        "Sender state: connected",
        "Received event 'my_event_1' from sender 'my_sender' having data 'None'",
    ]


def test_router_broadcast_example(capsys: pytest.CaptureFixture[str]) -> None:
    def listen_to_any(info, data):
        event = info.get("event")
        sender = info.get("sender")
        if event == sig.EVENT_CONNECT:
            print("Sender '%s' is now connected" % (sender))
        elif event == sig.EVENT_DISCONNECT:
            print("Sender '%s' is now disconnected" % (sender))
        else:
            print("Sender '%s' triggered event '%s' with data '%s'" % (sender, event, data))

    router = sig.Router()
    router.addListener(listen_to_any)
    my_events = ["my_event_1", "my_event_2"]
    sender = router.addSender("my_sender", my_events)
    router.removeSender(sender)
    sender = router.addSender("my_sender", my_events)
    sender2 = router.addSender("my_second_sender", my_events)
    sender.getSignal(my_events[0]).trigger(None)
    sender2.getSignal(my_events[1]).trigger(None)

    assert capsys.readouterr().out.splitlines() == [
        "Sender 'my_sender' is now connected",
        "Sender 'my_sender' is now disconnected",
        "Sender 'my_sender' is now connected",
        "Sender 'my_second_sender' is now connected",
        "Sender 'my_sender' triggered event 'my_event_1' with data 'None'",
        "Sender 'my_second_sender' triggered event 'my_event_2' with data 'None'",
    ]


def test_sender_broadcast_example() -> None:
    router = sig.Router()
    heard: list[object] = []
    router.addListener(lambda info, data: heard.append(info["event"]), "my_sender")
    sender = router.addSender("my_sender", ["my_event_1", "my_event_2"])
    router.addSender("other", ["my_event_1"]).getSignal("my_event_1").trigger(None)
    sender.getSignal("my_event_2").trigger(None)
    sender.getSignal("my_event_1").trigger(None)
    assert heard == [sig.EVENT_CONNECT, "my_event_2", "my_event_1"]


def test_channel_examples() -> None:
    router = sig.Router()
    heard: dict[str, list[tuple[object, object]]] = {"channel": [], "cold": [], "temp#changed": [], "connects": []}
    router.addListener(lambda i, d: heard["channel"].append((i["sender"], d)), event="#changed")
    router.addListener(lambda i, d: heard["cold"].append((i["sender"], d)), event="cold")
    router.addListener(lambda i, d: heard["temp#changed"].append((i["sender"], d)), "temp", "#changed")
    router.addListener(lambda i, d: heard["connects"].append((i["sender"], d)), event=sig.EVENT_CONNECT)
    temp = router.addSender("temp", ["#changed", "cold", "hot"])
    humidity = router.addSender("humidity", ["#changed", "dry", "wet"])
    temp.getSignal("#changed").trigger(21.5)
    humidity.getSignal("#changed").trigger(40)
    temp.getSignal("cold").trigger(1)
    assert heard["channel"] == [("temp", 21.5), ("humidity", 40)]
    assert heard["cold"] == []
    assert heard["temp#changed"] == [("temp", 21.5)]
    assert heard["connects"] == [
        ("temp", {"events": ["#changed", "cold", "hot"], "requests": None}),
        ("humidity", {"events": ["#changed", "dry", "wet"], "requests": None}),
    ]


def test_requests_example(capsys: pytest.CaptureFixture[str]) -> None:
    class Weather:
        def getCurrentTemperature(self, params):
            return "29.5"

        def isHot(self, params):
            return True

        def isCold(self, params):
            return False

    def default_request_handler(method, params):
        return "Unknown method %s (params: %s)" % (method, params)

    router = sig.Router()
    weather = Weather()
    requests = {
        "temperature": weather.getCurrentTemperature,
        "ishot": weather.isHot,
        "iscold": weather.isCold,
        None: default_request_handler,
    }
    sender = router.addSender("my_sender", ["weather_change"], requests=requests)
    response = sender.request("temperature")
    print("temperature is now: %s" % (response))
    response = router.request("my_sender", "ishot")
    print("Hot: %s" % (response))
    response = router.request("my_sender", "unknown_method", {"lorem": "ipsum"})
    print(response)
    assert capsys.readouterr().out.splitlines() == [
        "temperature is now: 29.5",
        "Hot: True",
        "Unknown method unknown_method (params: {'lorem': 'ipsum'})",
    ]


def test_request_without_default_handler_raises_lookup_error() -> None:
    router = sig.Router()
    router.addSender("my_sender", ["weather_change"], requests={"get_ticks": lambda params: 5})
    assert router.request("my_sender", "get_ticks") == 5
    with pytest.raises(LookupError, match="unknown_method"):
        router.request("my_sender", "unknown_method", {"lorem": "ipsum"})


def test_extension_classes_example() -> None:
    class MySender(sig.Sender):
        pass

    class MySignal(sig.Signal):
        pass

    class MyEvent(sig.Event):
        pass

    router = sig.Router(class_sender=MySender, class_event=MyEvent, class_signal=MySignal)
    sender = router.addSender("my_sender", ["e"])
    assert type(sender) is MySender
    assert type(sender.getSignal("e")) is MySignal
    assert type(sender.getEvent("e")) is MyEvent

    class OtherSignal(sig.Signal):
        pass

    router.class_signal = OtherSignal
    assert type(router.addSender("late", ["e"]).getSignal("e")) is OtherSignal
    sender.class_signal = OtherSignal
    assert type(sender.getSignal("e")) is OtherSignal


def test_my_signal_counting_example(capsys: pytest.CaptureFixture[str]) -> None:
    count_dict: dict[str, int] = {}

    def count_message_from(key):
        value = count_dict.get(key, 0)
        value += 1
        count_dict[key] = value
        return value

    class MySignal(sig.Signal):
        def __init__(self, objevent, broad_events):
            sig.Signal.__init__(self, objevent, broad_events)

        def trigger(self, data):
            event_name = self.objevent.getName()
            sender_name = self.objsender.getName()
            value = count_message_from("%s:%s" % (sender_name, event_name))
            self.event_info["count"] = value
            sig.Signal.trigger(self, data)

    def listen_to_any(info, data):
        sender = info.get("sender")
        event = info.get("event")
        occur = info.get("count")
        print("Sender: %17.17s Event: %12.12s Occurrence: %u times" % (sender, event, occur))

    def print_statistics():
        print("\nEvent statistics:")
        for key, value in count_dict.items():
            print("%30.30s was triggered %u times" % (key, value))

    router = sig.Router(class_signal=MySignal)
    router.addListener(listen_to_any)
    my_events = ["my_event_1", "my_event_2"]
    sender = router.addSender("my_sender", my_events)
    router.removeSender(sender)
    sender = router.addSender("my_sender", my_events)
    sender2 = router.addSender("my_second_sender", my_events)
    sender.getSignal(my_events[0]).trigger(None)
    sender2.getSignal(my_events[1]).trigger(None)
    router.removeSender(sender)
    router.removeSender(sender2)
    print_statistics()

    lines = capsys.readouterr().out.splitlines()
    assert lines[:10] == [
        "Sender:         my_sender Event:     #connect Occurrence: 1 times",
        "Sender:         my_sender Event:  #disconnect Occurrence: 1 times",
        "Sender:         my_sender Event:     #connect Occurrence: 2 times",
        "Sender:  my_second_sender Event:     #connect Occurrence: 1 times",
        "Sender:         my_sender Event:   my_event_1 Occurrence: 1 times",
        "Sender:  my_second_sender Event:   my_event_2 Occurrence: 1 times",
        "Sender:         my_sender Event:  #disconnect Occurrence: 2 times",
        "Sender:  my_second_sender Event:  #disconnect Occurrence: 1 times",
        "",
        "Event statistics:",
    ]
    # The documented statistics block is a Python 2 dict dump: any order.
    assert sorted(lines[10:]) == sorted(
        [
            "     my_second_sender:#connect was triggered 1 times",
            "         my_sender:#disconnect was triggered 2 times",
            "  my_second_sender:#disconnect was triggered 1 times",
            "            my_sender:#connect was triggered 2 times",
            "   my_second_sender:my_event_2 was triggered 1 times",
            "          my_sender:my_event_1 was triggered 1 times",
        ]
    )
