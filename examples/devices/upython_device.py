# A sig device in MicroPython style (docs/convention.md, full profile): one file, umqtt.simple's API.
#
#   micropython upython_device.py [HOST] [PORT] [PREFIX] [NODE_ID] [HEARTBEAT]
#   python3 examples/devices/upython_device.py ...      (CPython: umqtt_paho.py stands in for umqtt)
#
# Node NODE_ID (default upy-1, also its MQTT client id) hosts the sender "boiler/1" with the
# events "#temperature" (a channel) and "state", and the requests "read" and "set". QoS 0 events,
# retained QoS 1 state and birth, a retained Last Will, a heartbeat, rebirth, 3.1.1 envelopes.
# Check it with: sig conformance --mqtt mqtt://HOST:PORT/PREFIX --node NODE_ID --profile full
import sys
import time

try:
    import ujson as json
except ImportError:
    import json
try:
    from umqtt.simple import MQTTClient
except ImportError:
    from umqtt_paho import MQTTClient

try:
    ticks_ms, ticks_diff = time.ticks_ms, time.ticks_diff
except AttributeError:  # CPython
    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

SENDER = "boiler/1"
EVENTS = ["#temperature", "state"]
REQUESTS = ["read", "set"]
EVENT_EVERY_MS = 1000


def level(ident):
    """A string identifier as one topic level: % / + # and controls as %XX, a leading $ or ! too."""
    if ident == "":
        return "!e"
    out = ""
    for i, ch in enumerate(ident):
        code = ord(ch)
        if ch in "%/+#" or code < 0x20 or 0x7F <= code <= 0x9F or (i == 0 and ch in "$!"):
            out += "".join("%%%02X" % b for b in ch.encode("utf-8"))
        else:
            out += ch
    return out


def unlevel(text):
    """The identifier of a topic level (strings only: enough for this device's methods)."""
    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%" and i + 2 < len(text):
            try:
                raw.append(int(text[i + 1:i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        raw.extend(text[i].encode("utf-8"))
        i += 1
    return raw.decode("utf-8")


class Device:
    def __init__(self, host, port, prefix, nid, heartbeat):
        self.host, self.port, self.prefix, self.nid = host, port, prefix, nid
        self.heartbeat = heartbeat
        self.session = "%08x%08x" % (ticks_ms() & 0xFFFFFFFF, id(self) & 0xFFFFFFFF)
        self.node_topic = "%s/node/%s" % (prefix, level(nid))
        self.birth_topic = "%s/node/%s/sender/%s" % (prefix, level(nid), level(SENDER))
        self.request_root = "%s/request/%s/" % (prefix, level(SENDER))
        self.setpoint = 55.0
        self.temperature = 20.0
        self.client = None

    def state(self, online):
        body = {"online": online, "session": self.session, "proto": 4, "heartbeat": self.heartbeat, "sig": "1.0"}
        if online:
            body["ts"] = int(time.time() * 1000)
        return json.dumps(body).encode()

    def announce(self):
        self.client.publish(self.node_topic.encode(), self.state(True), True, 1)
        birth = {"events": EVENTS, "requests": REQUESTS, "session": self.session}
        self.client.publish(self.birth_topic.encode(), json.dumps(birth).encode(), True, 1)

    def event(self, name, data):
        topic = "%s/event/%s/%s" % (self.prefix, level(SENDER), level(name))
        self.client.publish(topic.encode(), json.dumps(data).encode())

    def on_message(self, topic, msg):
        topic = topic.decode()
        if topic == self.prefix + "/cmd/rebirth":
            self.announce()
        elif topic.startswith(self.request_root):
            self.answer(unlevel(topic[len(self.request_root):]), msg)

    def answer(self, method, msg):
        try:
            envelope = json.loads(msg)
            reply_to, request_id = envelope["reply_to"], envelope["id"]
        except (ValueError, KeyError, TypeError):
            return  # not an MQTT 3.1.1 envelope: there is nowhere to answer
        reply = {"id": request_id, "status": 0}
        if method == "read":
            reply["response"] = {"temperature": self.temperature, "setpoint": self.setpoint}
        elif method == "set" and isinstance(envelope.get("params"), (int, float)):
            self.setpoint = float(envelope["params"])
            reply["response"] = self.setpoint
        elif method == "set":
            reply["status"], reply["exception"] = -2, "set needs a number"
        else:
            reply["status"], reply["exception"] = -1, "no method %s" % method
        self.client.publish(reply_to.encode(), json.dumps(reply).encode(), False, 1)

    def run_once(self):
        self.client = MQTTClient(self.nid, self.host, self.port, keepalive=max(10, int(self.heartbeat * 3)))
        self.client.set_last_will(self.node_topic.encode(), self.state(False), True, 1)
        self.client.set_callback(self.on_message)
        self.client.connect()
        self.client.subscribe((self.prefix + "/cmd/rebirth").encode())
        self.client.subscribe((self.request_root + "+").encode())
        self.announce()
        last_beat = last_event = ticks_ms()
        while True:
            self.client.check_msg()
            now = ticks_ms()
            if ticks_diff(now, last_beat) >= self.heartbeat * 1000:
                last_beat = now
                self.client.publish(self.node_topic.encode(), self.state(True), True, 1)
            if ticks_diff(now, last_event) >= EVENT_EVERY_MS:
                last_event = now
                self.temperature = round(self.temperature + (0.1 if self.temperature < self.setpoint else -0.1), 1)
                self.event("#temperature", self.temperature)
            time.sleep(0.02)

    def run(self):
        while True:
            try:
                self.run_once()
            except OSError as exc:  # the broker went away or took our client id: connect again
                print("connection lost:", exc)
                time.sleep(0.5)


def main(argv):
    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    port = int(argv[2]) if len(argv) > 2 else 1883
    prefix = argv[3] if len(argv) > 3 else "sig"
    nid = argv[4] if len(argv) > 4 else "upy-1"
    heartbeat = float(argv[5]) if len(argv) > 5 else 30.0
    Device(host, port, prefix, nid, heartbeat).run()


if __name__ == "__main__":
    main(sys.argv)
