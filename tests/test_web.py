"""``sig web``: the documented REST API, its aliases and formats, the event stream, the Host / Origin check.

Real parts: a ServerRouter on TCP (127.0.0.1, free port), the web log's
ClientRouter on it, a WebLogger on aiohttp (127.0.0.1, free port) in a
thread of its own, and a sig sender (another ClientRouter) triggering events.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import html
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from netutil import wait_until
from test_cli import ROOT, Proc, _env, assert_one_error_line, cli, free_port, run, start

import sig
from sig.carrier.tcpclient import CarrierTCPClient
from sig.carrier.tcpserver import CarrierTCPServer
from sig_apps.web import EventLog, HostGuard, WebLogger

TIMEOUT = 10.0


class Sig:
    """A ServerRouter on TCP and connected ClientRouters."""

    def __init__(self, port: int = 0) -> None:
        self.server = sig.ServerRouter(request_timeout=5.0)
        self.tcp = CarrierTCPServer()
        self.server.attach(self.tcp)
        self.tcp.start("127.0.0.1", port)
        self.port = int(self.tcp.port or 0)
        self.carriers: list[CarrierTCPClient] = []

    def client(self) -> sig.ClientRouter:
        carrier = CarrierTCPClient()
        router = sig.ClientRouter(carrier, request_timeout=5.0)
        assert carrier.connect("127.0.0.1", self.port, auto_reconnect=False)
        self.carriers.append(carrier)
        return router

    def close(self) -> None:
        for carrier in self.carriers:
            carrier.disconnect()
        self.tcp.stop()


class Web:
    """A WebLogger served on 127.0.0.1:0 by an event loop in its own thread."""

    def __init__(self, router: sig.ClientRouter, **settings: Any) -> None:
        self.weblog = WebLogger(router, **settings)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(TIMEOUT), "the web server did not start: %r" % self.failure
        assert self.weblog.address is not None
        self.port = self.weblog.address[1]

    def _run(self) -> None:
        async def main() -> None:
            self.stop = asyncio.Event()
            await self.weblog.serve("127.0.0.1", 0, self.stop, ready=lambda url: self.ready.set())

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # reported by the constructor
            self.failure = exc
            self.ready.set()
        finally:
            self.loop.close()

    def close(self) -> None:
        if self.stop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()

    def get(self, path: str, headers: dict[str, str] | None = None,
            method: str = "GET") -> tuple[int, str, str]:
        """Return (status, content type, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read().decode("utf-8")
        finally:
            conn.close()

    def json(self, path: str, status: int = 200) -> Any:
        got, ctype, body = self.get(path)
        assert got == status, (path, got, body)
        assert ctype.startswith("application/json"), ctype
        return json.loads(body)


@pytest.fixture
def net() -> Iterator[Sig]:
    n = Sig()
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def web(net: Sig) -> Iterator[Web]:
    w = Web(net.client())
    try:
        yield w
    finally:
        w.close()


def entries(web: Web, query: str = "") -> list[dict[str, Any]]:
    return list(web.json("/?fmt=json" + query)["entries"])


def wait_entries(web: Web, count: int, query: str = "") -> list[dict[str, Any]]:
    assert wait_until(lambda: len(entries(web, query)) >= count, TIMEOUT), entries(web, query)
    return entries(web, query)


# -- the log ---------------------------------------------------------------------------------


def test_index_formats_and_connect_entries(net: Sig, web: Web) -> None:
    web.weblog.subscribe("lamp", "on")
    lamp = net.client().addRemoteSender("lamp", ["on"])
    lamp.getSignal("on").trigger({"level": 3})
    got = wait_entries(web, 2)
    assert [(e["sender"], e["event"], e["kind"], e["data"]) for e in got] == [
        ("lamp", "#connect", "connect", {"events": ["on"], "requests": None}),
        ("lamp", "on", "event", {"level": 3}),
    ]
    assert got[1]["id"] == got[0]["id"] + 1 and got[1]["text"] == '{"level": 3}'

    status, ctype, body = web.get("/?fmt=plain")
    assert status == 200 and ctype.startswith("text/plain")
    lines = body.splitlines()
    assert len(lines) == 2
    assert lines[1].endswith("""[lamp] Event on received with data '{"level": 3}'""")

    for path in ("/", "/?fmt=html"):
        status, ctype, body = web.get(path)
        assert status == 200 and ctype.startswith("text/html")
        assert "sig event log" in body and 'data-id="%d"' % got[1]["id"] in body
        assert "{&quot;level&quot;: 3}" in body


def test_html_escapes_event_data(net: Sig, web: Web) -> None:
    web.weblog.subscribe("evil", None)
    evil = net.client().addRemoteSender("evil", ["x", "</script><b>"])
    evil.getSignal("x").trigger("<script>alert(1)</script>")
    evil.getSignal("</script><b>").trigger({"a": "<img src=x onerror=alert(2)>"})
    wait_entries(web, 3)
    status, _, body = web.get("/")
    assert status == 200
    assert "<script>alert(1)" not in body and "<img src=x" not in body and "</script><b>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    # the only script elements are the page's own two; only the one with this answer's nonce may run
    assert body.count("<script") == 2
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        csp = response.getheader("Content-Security-Policy", "")
        page = response.read().decode("utf-8")
    finally:
        conn.close()
    nonce = csp.split("script-src 'nonce-", 1)[1].split("'", 1)[0]
    assert len(nonce) >= 16 and page.count('<script nonce="%s">' % nonce) == 1
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp


def test_filters(net: Sig, web: Web) -> None:
    web.weblog.subscribe(None, None)
    client = net.client()
    a = client.addRemoteSender("a", ["x", "y"])
    b = client.addRemoteSender("b", ["x"])
    a.getSignal("x").trigger(1)
    a.getSignal("y").trigger(2)
    b.getSignal("x").trigger(3)
    wait_entries(web, 2, "&event=x")
    assert [e["data"] for e in entries(web, "&sender=a&event=x")] == [1]
    assert [e["data"] for e in entries(web, "&event=x")] == [1, 3]
    assert [e["event"] for e in entries(web, "&sender=a")] == ["#connect", "x", "y"]
    assert len(entries(web, "&sender=None")) == len(entries(web))
    assert entries(web, "&sender=nobody") == []
    _, _, body = web.get("/?fmt=plain&sender=b&event=x")
    assert body.count("\n") == 1 and "[b] Event x received with data '3'" in body
    _, _, body = web.get("/?sender=b&event=x")
    assert "only sender b, event x" in body


def test_limit_drops_the_least_recent(net: Sig, web: Web) -> None:
    web.weblog.subscribe("t", "tick")
    tick = net.client().addRemoteSender("t", ["tick"]).getSignal("tick")
    assert web.json("/config?limit=3")["limit"] == 3
    for n in range(6):
        tick.trigger(n)
    assert wait_until(lambda: [e["data"] for e in entries(web)] == [3, 4, 5], TIMEOUT), entries(web)
    assert web.json("/?fmt=json")["limit"] == 3
    config = web.json("/cfg?limit=2")
    assert config["limit"] == 2 and config["entries"] == 2
    assert [e["data"] for e in entries(web)] == [4, 5]
    assert config["registrations"] == [{"sender": "t", "event": "tick"}]
    assert config["server"] == "" and config["http"] == "127.0.0.1:%d" % web.port
    # /config answers JSON whatever the format asked
    for fmt in ("json", "plain", "html"):
        assert web.json("/config?fmt=%s" % fmt)["limit"] == 2


def test_default_limit_is_20(net: Sig, web: Web) -> None:
    assert web.json("/config")["limit"] == 20
    web.weblog.subscribe("t", "tick")
    tick = net.client().addRemoteSender("t", ["tick"]).getSignal("tick")
    for n in range(25):
        tick.trigger(n)
    assert wait_until(lambda: entries(web) and entries(web)[-1]["data"] == 24, TIMEOUT)
    assert [e["data"] for e in entries(web)] == list(range(5, 25))


def test_clear_and_flush(net: Sig, web: Web) -> None:
    web.weblog.subscribe("t", "tick")
    tick = net.client().addRemoteSender("t", ["tick"]).getSignal("tick")
    tick.trigger(1)
    wait_entries(web, 2)
    assert web.json("/clear?fmt=json") == {"message": "Cleared 2 entries", "cleared": 2}
    assert entries(web) == []
    tick.trigger(2)
    wait_entries(web, 1)
    status, ctype, body = web.get("/flush?fmt=plain")
    assert (status, body) == (200, "Cleared 1 entries\n") and ctype.startswith("text/plain")
    status, ctype, body = web.get("/flush")
    assert status == 200 and ctype.startswith("text/html") and "Cleared 0 entries" in body
    tick.trigger(3)
    (entry,) = wait_entries(web, 1)
    assert entry["id"] == 4  # ids go on after a clear


# -- subscriptions -------------------------------------------------------------------------------


def test_regs_add_remove_and_aliases(net: Sig, web: Web) -> None:
    web.weblog.subscribe("ifttt", None)
    assert web.json("/regs?fmt=json") == {"registrations": [{"sender": "ifttt", "event": None}]}
    body = web.json("/add?sender=keros&event=ir&fmt=json")
    assert body["message"] == "Subscribed to keros:ir"
    body = web.json("/add?event=%23notify&fmt=json")  # a missing sender is None
    assert body["registrations"] == [{"sender": "ifttt", "event": None}, {"sender": "keros", "event": "ir"},
                                     {"sender": None, "event": "#notify"}]
    status, ctype, text = web.get("/registrations?fmt=plain")
    assert (status, text) == (200, "ifttt:None\nkeros:ir\nNone:#notify\n") and ctype.startswith("text/plain")
    status, ctype, text = web.get("/regs")
    assert status == 200 and ctype.startswith("text/html") and "<li>keros:ir</li>" in text

    # the new subscriptions work: keros:ir and anyone's #notify
    client = net.client()
    keros = client.addRemoteSender("keros", ["ir", "tv"])
    other = client.addRemoteSender("other", ["#notify"])
    keros.getSignal("tv").trigger("not listened")
    keros.getSignal("ir").trigger("power")
    other.getSignal("#notify").trigger("hello")
    got = wait_entries(web, 1, "&event=ir") + wait_entries(web, 1, "&event=%23notify")
    assert [(e["sender"], e["event"], e["data"]) for e in got] == [("keros", "ir", "power"),
                                                                   ("other", "#notify", "hello")]
    assert entries(web, "&event=tv") == []
    assert [e["event"] for e in entries(web, "&sender=keros")][:2] == ["#connect", "ir"]

    # duplicates and unknown ones
    assert web.json("/add?sender=keros&event=ir&fmt=json", 409)["error"] == "already subscribed to keros:ir"
    status, _, text = web.get("/add?sender=keros&event=ir")
    assert status == 409 and "already subscribed to keros:ir" in text
    assert web.json("/remove?sender=keros&event=ir&fmt=json")["message"] == "Unsubscribed from keros:ir"
    assert web.json("/rem?sender=keros&event=ir&fmt=json", 404)["error"] == "not subscribed to keros:ir"
    status, _, text = web.get("/rem?sender=None&event=%23notify&fmt=plain")
    assert (status, text) == (200, "Unsubscribed from None:#notify\n")
    status, _, text = web.get("/add?sender=timer&event=tick")
    assert status == 200 and "Subscribed to timer:tick" in text
    assert web.json("/regs?fmt=json")["registrations"] == [{"sender": "ifttt", "event": None},
                                                           {"sender": "timer", "event": "tick"}]

    # keros:ir is gone from the server too
    count = len(entries(web))
    keros.getSignal("ir").trigger("again")
    client.addRemoteSender("timer", ["tick"]).getSignal("tick").trigger("t")
    wait_entries(web, 1, "&sender=timer&event=tick")
    assert len(entries(web)) == count + 2  # timer's #connect and tick, not keros' ir


def test_overlapping_subscriptions_log_an_event_once(net: Sig, web: Web) -> None:
    for sub in (("ifttt", None), ("keros", "ir"), (None, "#notify")):  # the documented configuration
        web.weblog.subscribe(*sub)
    client = net.client()
    ifttt = client.addRemoteSender("ifttt", ["mail", "#notify"])
    keros = client.addRemoteSender("keros", ["ir", "#notify"])
    ifttt.getSignal("#notify").trigger(1)
    keros.getSignal("#notify").trigger(2)
    keros.getSignal("ir").trigger(3)
    ifttt.getSignal("mail").trigger(4)
    wait_entries(web, 1, "&event=mail")
    time.sleep(0.3)  # a duplicate would come right behind
    assert [(e["sender"], e["event"], e["data"] if e["kind"] == "event" else None) for e in entries(web)] == [
        ("ifttt", "#connect", None), ("keros", "#connect", None), ("ifttt", "#notify", 1), ("keros", "#notify", 2),
        ("keros", "ir", 3), ("ifttt", "mail", 4),
    ]


def test_subscriptions_survive_a_server_restart() -> None:
    first = Sig()
    port = first.port
    carrier = CarrierTCPClient()
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", port, auto_reconnect=True)
    web = Web(router)
    second: Sig | None = None
    try:
        web.weblog.subscribe("t", "tick")
        web.json("/add?sender=u&event=tock&fmt=json")
        first.close()
        assert wait_until(lambda: not carrier.isConnected(), TIMEOUT)
        web.json("/add?sender=v&event=x&fmt=json")  # accepted while the server is away, registered on return
        second = Sig(port)
        assert wait_until(carrier.isConnected, TIMEOUT)
        client = second.client()
        for name, event in (("t", "tick"), ("u", "tock"), ("v", "x")):
            fire = client.addRemoteSender(name, [event]).getSignal(event)
            # the web log's listeners are registered again a moment after the reconnection: trigger until heard
            deadline = time.monotonic() + TIMEOUT
            while not wait_until(lambda n=name, e=event: bool(entries(web, "&sender=%s&event=%s" % (n, e))), 0.2):
                assert time.monotonic() < deadline, "%s:%s never logged after the restart" % (name, event)
                fire.trigger(1)
    finally:
        web.close()
        carrier.disconnect()
        if second is not None:
            second.close()


def test_subscription_refused_by_a_gone_server(net: Sig) -> None:
    carrier = CarrierTCPClient()
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", net.port, auto_reconnect=False)
    web = Web(router)
    try:
        carrier.disconnect()
        answer = web.json("/add?sender=a&event=b&fmt=json", 503)
        assert answer["error"].startswith("the sig server cannot be reached")
        assert web.json("/regs?fmt=json")["registrations"] == []
    finally:
        web.close()


# -- bad requests -------------------------------------------------------------------------------

ENDPOINTS = ["/", "/regs", "/registrations", "/clear", "/flush", "/config", "/cfg", "/add", "/remove", "/rem"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_bad_format_is_400(web: Web, path: str) -> None:
    status, ctype, body = web.get(path + "?fmt=xml")
    assert status == 400 and ctype.startswith("text/plain")
    assert body == "400: fmt must be one of html, plain, json, not 'xml'\n"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_endpoint_answers_json(web: Web, path: str) -> None:
    query = "?fmt=json&sender=s&event=e"
    if path in ("/remove", "/rem"):
        web.json("/add" + query)
    assert isinstance(web.json(path + query), dict)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/?sender=", "sender must not be empty (leave it out, or None, for any)"),
        ("/?event=%20", "event must not be empty (leave it out, or None, for any)"),
        ("/add?sender=&event=e", "sender must not be empty (leave it out, or None, for any)"),
        ("/remove?sender=s&event=", "event must not be empty (leave it out, or None, for any)"),
        ("/config?limit=0", "the limit must be a whole number from 1 to 100000, not 0"),
        ("/cfg?limit=-5", "the limit must be a whole number from 1 to 100000, not -5"),
        ("/config?limit=many", "the limit must be a whole number from 1 to 100000, not 'many'"),
        ("/config?limit=100001", "the limit must be a whole number from 1 to 100000, not 100001"),
        ("/stream?after=x", "after must be an entry id (a whole number), not 'x'"),
    ],
)
def test_bad_parameters_are_400(web: Web, path: str, message: str) -> None:
    sep = "&" if "?" in path else "?"
    assert web.json(path + sep + "fmt=json", 400) == {"error": message, "status": 400}
    status, ctype, body = web.get(path)  # errors are plain text unless a format is asked
    assert (status, body) == (400, "400: %s\n" % message) and ctype.startswith("text/plain")
    if not path.startswith("/stream"):
        status, ctype, body = web.get(path + sep + "fmt=html")
        assert status == 400 and ctype.startswith("text/html") and html.escape(message) in body


def test_unknown_path_and_method(web: Web) -> None:
    assert web.get("/nope")[0] == 404
    assert web.get("/add?sender=a", method="POST")[0] == 405
    assert web.get("/", method="HEAD")[0] == 200
    assert web.get("/stream", method="HEAD")[:2] == (200, "text/event-stream")


# -- Host and Origin -------------------------------------------------------------------------------


def test_foreign_host_or_origin_is_refused(web: Web) -> None:
    port = web.port
    for host in ("evil.example", "evil.example:%d" % port, "127.0.0.1:%d" % (port + 1), "127.0.0.1",
                 "localhost.evil.example:%d" % port, "user@127.0.0.1:%d" % port):
        status, _, body = web.get("/add?sender=a&event=b", headers={"Host": host})
        assert status == 403, host
        assert "this server does not answer for host" in body
    for host in ("127.0.0.1:%d" % port, "localhost:%d" % port, "LOCALHOST:%d" % port, "[::1]:%d" % port):
        assert web.get("/regs", headers={"Host": host})[0] == 200, host
    for origin in ("http://evil.example", "http://evil.example:%d" % port, "null", "file://",
                   "http://127.0.0.1:%d.evil.example" % port, "https://127.0.0.1:%d" % (port + 1)):
        status, _, body = web.get("/clear?fmt=json", headers={"Origin": origin})
        assert status == 403, origin
        assert json.loads(body)["error"] == "requests from origin %r are not allowed" % origin
    for origin in ("http://127.0.0.1:%d" % port, "http://localhost:%d" % port):
        assert web.get("/clear?fmt=json", headers={"Origin": origin})[0] == 200
    assert web.json("/regs?fmt=json")["registrations"] == []  # the refused /add did nothing


def test_host_guard_rules() -> None:
    loopback = HostGuard("127.0.0.1", 8080)
    assert loopback.host_ok("127.0.0.1:8080") and loopback.host_ok("localhost:8080")
    assert not loopback.host_ok("192.168.1.2:8080") and not loopback.host_ok(None) and not loopback.host_ok("")
    assert not loopback.host_ok("127.0.0.1")  # port 80
    wildcard = HostGuard("0.0.0.0", 8080)
    assert wildcard.host_ok("192.168.1.2:8080") and wildcard.host_ok("[fe80::1]:8080")
    assert not wildcard.host_ok("attacker.example:8080")  # DNS rebinding needs a name
    lan = HostGuard("192.168.1.2", 80, allow=["sig.home.arpa", "proxy.example:443"])
    assert lan.host_ok("192.168.1.2") and lan.host_ok("sig.home.arpa:1234")
    assert lan.origin_ok("https://proxy.example") and not lan.origin_ok("http://proxy.example")
    assert not lan.host_ok("localhost:80")
    with pytest.raises(ValueError, match="bad host name"):
        HostGuard("127.0.0.1", 80, allow=["a/b"])


# -- the event stream -----------------------------------------------------------------------------


def read_events(response: http.client.HTTPResponse, until: str, limit: float = TIMEOUT) -> list[tuple[str, str]]:
    """Read server-sent events until one of type ``until``; return (event, data) pairs."""
    found: list[tuple[str, str]] = []
    event, data = "message", ""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        line = response.readline().decode("utf-8").rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            found.append((event, data))
            if event == until:
                return found
            event, data = "message", ""
    raise AssertionError("no %r event in %r" % (until, found))


def test_stream_sends_backlog_then_live_changes(net: Sig, web: Web) -> None:
    web.weblog.subscribe("t", "tick")
    tick = net.client().addRemoteSender("t", ["tick"]).getSignal("tick")
    tick.trigger("one")
    first = wait_entries(web, 2)
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/stream", headers={"Last-Event-ID": str(first[0]["id"])})
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        got = read_events(response, "entry")
        assert got[0] == ("link", '{"connected": true}')
        assert got[1] == ("regs", '[{"sender": "t", "event": "tick"}]')
        assert json.loads(got[2][1])["data"] == "one"  # the backlog after Last-Event-ID
        tick.trigger("<two>")
        assert json.loads(read_events(response, "entry")[-1][1])["data"] == "<two>"
        assert web.get("/add?sender=x&event=y")[0] == 200
        assert json.loads(read_events(response, "regs")[-1][1])[-1] == {"sender": "x", "event": "y"}
        web.get("/clear")
        read_events(response, "clear")
        web.get("/config?limit=5")
        assert json.loads(read_events(response, "config")[-1][1]) == {"limit": 5}
    finally:
        conn.close()


def test_stream_tells_when_the_sig_server_is_lost(net: Sig, web: Web) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/stream")
        response = conn.getresponse()
        assert read_events(response, "link")[-1] == ("link", '{"connected": true}')
        net.carriers[0].disconnect()  # the web log's own link to the sig server
        assert read_events(response, "link")[-1] == ("link", '{"connected": false}')
    finally:
        conn.close()


def test_stream_closes_when_the_server_stops(net: Sig) -> None:
    web = Web(net.client())
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/stream?after=0")
        response = conn.getresponse()
        read_events(response, "regs")
        began = time.monotonic()
        web.close()
        assert response.read() == b""  # ends, not hangs
        assert time.monotonic() - began < 5.0
    finally:
        conn.close()


# -- the pure model ------------------------------------------------------------------------------


def test_event_log_model() -> None:
    log = EventLog(limit=2)
    seen: list[tuple[str, Any]] = []
    stop = log.watch(lambda what, entry: seen.append((what, entry and entry.id)))
    for n in range(3):
        log.add("s", "e", n, when=1000.0 + n)
    assert [e.data for e in log.entries()] == [1, 2] and log.last_id == 3
    assert [e.id for e in log.entries(after=2)] == [3]
    log.limit = 1
    assert [e.data for e in log.entries()] == [2]
    assert log.clear() == 1 and len(log) == 0 and log.last_id == 3
    stop()
    log.add("s", "#connect", None, when=0.0)
    assert seen == [("entry", 1), ("entry", 2), ("entry", 3), ("config", None), ("clear", None)]
    assert log.entries()[0].kind == "connect"
    for bad in (0, -1, 100_001, True, 2.5):
        with pytest.raises(ValueError, match="the limit must be"):
            EventLog(bad)  # type: ignore[arg-type]


# -- the command line and the example ----------------------------------------------------------------


def sig_server(procs: list[Proc]) -> str:
    proc = start(procs, *cli("server", "--bind", "127.0.0.1:0"))
    return proc.wait_for(r"Listening on (127\.0\.0\.1:\d+)$", "stderr").group(1)


def fetch(url: str, path: str) -> tuple[int, str]:
    host_port = url.split("//", 1)[1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8")
    finally:
        conn.close()


def test_cli_web(procs: list[Proc]) -> None:
    address = sig_server(procs)
    web = start(procs, *cli("web", "--server", address, "--http", "127.0.0.1:0", "--limit", "5",
                            "--listen", "lamp:on", "--listen", r"a\:b:None"))
    url = web.wait_for(r"^(http://127\.0\.0\.1:\d+/)$").group(1)
    status, body = fetch(url, "/regs?fmt=plain")
    assert (status, body) == (200, "lamp:on\na:b:None\n")
    result = run("send", "--server", address, "--sender", "lamp", "--event", "on", "--data", "<b>hi</b>")
    assert result.returncode == 0, result
    assert wait_until(lambda: "#disconnect" in fetch(url, "/?fmt=plain")[1], TIMEOUT)
    status, body = fetch(url, "/?fmt=plain&event=on")
    assert status == 200 and body.endswith("[lamp] Event on received with data '\"<b>hi</b>\"'\n")
    assert json.loads(fetch(url, "/config")[1])["limit"] == 5
    assert json.loads(fetch(url, "/config")[1])["server"] == address
    assert web.stop(signal.SIGTERM) == 0
    assert "Traceback" not in web.text("stderr")


def test_cli_web_errors(procs: list[Proc]) -> None:
    unreachable = "127.0.0.1:%d" % free_port()
    result = run("web", "--server", unreachable, "--http", "127.0.0.1:0", timeout=TIMEOUT)
    assert "cannot connect to %s" % unreachable in assert_one_error_line(result, "web")
    result = run("web", "--limit", "0", timeout=TIMEOUT)
    assert "bad --limit: the limit must be" in assert_one_error_line(result, "web", code=2)
    result = run("web", "--listen", "nope", timeout=TIMEOUT)
    assert "bad --listen 'nope'" in assert_one_error_line(result, "web", code=2)
    result = run("web", "--http", "127.0.0.1:http", timeout=TIMEOUT)
    assert "bad --http" in assert_one_error_line(result, "web", code=2)
    address = sig_server(procs)
    result = run("web", "--server", address, "--allow-host", "a/b", timeout=TIMEOUT)
    assert "bad host name to allow" in assert_one_error_line(result, "web", code=2)
    with __import__("socket").socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = "127.0.0.1:%d" % busy.getsockname()[1]
        result = run("web", "--server", address, "--http", taken, timeout=TIMEOUT)
        assert "cannot listen on %s" % taken in assert_one_error_line(result, "web")


def test_cli_web_defaults() -> None:
    from sig_apps.cli import build_parser

    args = build_parser().parse_args(["web"])
    assert (args.http, args.limit, args.listen, args.server) == ("127.0.0.1:8080", 20, None, "127.0.0.1:3000")


@pytest.mark.parametrize("command", ["web", "alert"])
def test_cli_version(command: str) -> None:
    result = run(command, "--version")
    assert result.returncode == 0 and result.stdout.strip() == "sig %s" % sig.VERSION


def test_example_web_events_logger(procs: list[Proc]) -> None:
    address = sig_server(procs)
    port = address.rsplit(":", 1)[1]
    answers = ["", port, "200", "ifttt", "None", "", "keros", "ir", "", "None", "#notify", "", ""]
    example = start(procs, sys.executable, str(ROOT / "examples" / "web_events_logger.py"), "127.0.0.1:0",
                    stdin="".join(a + "\n" for a in answers))
    url = example.wait_for(r"(http://127\.0\.0\.1:\d+/)$").group(1)
    prompts = example.text()
    for prompt in ("Server IP   (default: 127.0.0.1):", "Server port (default: 3000):",
                   "Queue limit (default: 20):", "Sender 1:", "Event  1:", "Event  2:", "Sender 4:"):
        assert prompt in prompts
    for sub in ("ifttt:None", "keros:ir", "None:#notify"):
        example.wait_for(r"\]-Registering to %s$" % sub, "stdout")
    assert fetch(url, "/regs?fmt=plain") == (200, "ifttt:None\nkeros:ir\nNone:#notify\n")
    assert json.loads(fetch(url, "/cfg")[1])["limit"] == 200
    result = run("send", "--server", address, "--sender", "keros", "--event", "ir", "--data", "power")
    assert result.returncode == 0, result
    assert wait_until(lambda: "[keros] Event ir received" in fetch(url, "/?fmt=plain")[1], TIMEOUT)
    assert example.stop(signal.SIGINT) == 0
    assert "Traceback" not in example.text() + example.text("stderr")


def test_aiohttp_is_needed_only_by_sig_web() -> None:
    code = "import sys, sig_apps.cli; sig_apps.cli.build_parser(); print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert (out.returncode, out.stdout.strip()) == (0, "False"), out
