"""Authentication, ACL and per-client limits of the pysig TCP server.

Unit tests of :class:`sig.AccessControl` (pure), then a ServerRouter with ``access=`` on a
CarrierTCPServer: sig clients with and without credentials, a fake pysig 0.7.3 client
(bare socket, 0.7.3 frames, no ``get_version`` capabilities), refusals with status -4,
logs without secrets, limits that refuse and keep the client connected.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netutil import Recorder, wait_until

import sig
from sig._codec import Status
from sig.carrier.tcpclient import CarrierTCPClient
from sig.carrier.tcpserver import CarrierTCPServer

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent

PASSWORD = "correct horse battery staple"
TOKEN = "tok-8f1d2e3c4b5a"

CONFIG: dict[str, Any] = {
    "anonymous": False,
    "users": {
        "kitchen": {"password": PASSWORD, "token": None},
        "panel": {"password": None, "token": TOKEN},
        "admin": {"password": "admin-pw", "token": None},
    },
    "acl": [
        {"user": "kitchen", "senders": ["kitchen/*"], "listen": ["kitchen/*", "weather"], "request": ["kitchen/*"]},
        {"user": "panel", "senders": [], "listen": ["*"], "request": ["kitchen/*"]},
        {"user": "admin", "senders": ["*"], "listen": ["*"], "request": ["*"]},
        {"user": "*", "listen": ["public"]},
        {"user": "anonymous", "listen": ["public"], "senders": ["guest-*"]},
    ],
}


# -- AccessControl, pure -------------------------------------------------------------------


def test_from_dict_and_constructor_agree() -> None:
    a = sig.AccessControl.from_dict(CONFIG)
    b = sig.AccessControl(anonymous=False, users=CONFIG["users"], acl=CONFIG["acl"])
    for user in ("kitchen", "panel", "admin", None):
        for right in ("senders", "listen", "request"):
            for sender in ("kitchen/lamp", "weather", "public", "garage", "guest-1", None, 42):
                assert a.allowed(user, right, sender) == b.allowed(user, right, sender)
    assert a.users == ["admin", "kitchen", "panel"]
    assert PASSWORD not in repr(a) and TOKEN not in repr(a)


def test_authenticate_password_and_token() -> None:
    access = sig.AccessControl.from_dict(CONFIG)
    assert access.authenticate({"user": "kitchen", "password": PASSWORD}) == "kitchen"
    assert access.authenticate({"token": TOKEN}) == "panel"
    for params in (
        {"user": "kitchen", "password": "wrong"},
        {"user": "nobody", "password": PASSWORD},
        {"user": "panel", "password": TOKEN},  # a token is not a password
        {"token": PASSWORD},
        {"token": 5},
        {"user": "kitchen"},
        {},
        {"user": 1, "password": 2},
    ):
        with pytest.raises(sig.AccessDeniedError) as refused:
            access.authenticate(params)
        assert PASSWORD not in str(refused.value) and TOKEN not in str(refused.value)
        assert isinstance(refused.value, PermissionError) and isinstance(refused.value, sig.SigError)


def test_acl_rules() -> None:
    access = sig.AccessControl.from_dict(CONFIG)
    assert access.allowed("kitchen", "senders", "kitchen/lamp")
    assert not access.allowed("kitchen", "senders", "garage/door")
    assert not access.allowed("kitchen", "senders", "Kitchen/lamp")  # case-sensitive
    assert access.allowed("kitchen", "listen", "weather")
    assert access.allowed("kitchen", "listen", "public")  # from "*"
    assert not access.allowed("kitchen", "listen", None)  # any sender needs "*"
    assert access.allowed("panel", "listen", None)
    assert not access.allowed("panel", "senders", "anything")
    assert access.allowed(None, "listen", "public")
    assert access.allowed(None, "senders", "guest-7")
    assert not access.allowed(None, "request", "kitchen/lamp")  # "*" does not cover anonymous
    assert access.allowed("admin", "senders", 42) and access.allowed("admin", "request", 1.0)
    with pytest.raises(sig.AccessDeniedError, match="user 'kitchen' may not register sender 'garage'"):
        access.check("kitchen", "senders", "garage")
    with pytest.raises(sig.AccessDeniedError, match="anonymous clients may not listen to any sender"):
        access.check(None, "listen", None)


def test_numeric_identifiers_match_as_text() -> None:
    access = sig.AccessControl(users={"u": {"password": "p"}}, acl=[{"user": "u", "senders": ["1*"]}])
    assert access.allowed("u", "senders", 12)
    assert access.allowed("u", "senders", 1.0)  # 1.0 == 1 is one key
    assert not access.allowed("u", "senders", 2)


def test_no_acl_entries_allow_everything() -> None:
    access = sig.AccessControl(anonymous=True, users={"u": {"password": "p"}})
    for user in ("u", None):
        for right in ("senders", "listen", "request"):
            assert access.allowed(user, right, "x") and access.allowed(user, right, None)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"anonymous": "yes"}, "anonymous"),
        ({"users": []}, "users"),
        ({"users": {"u": {}}}, "neither a password nor a token"),
        ({"users": {"u": {"password": ""}}}, "password"),
        ({"users": {"u": {"password": 5}}}, "password"),
        ({"users": {"anonymous": {"password": "p"}}}, "bad user name"),
        ({"users": {"u": {"pasword": "p"}}}, "unknown key"),
        ({"acl": {"user": "u"}}, "acl"),
        ({"acl": [{"senders": ["*"]}]}, "needs a user"),
        ({"acl": [{"user": "u", "senders": "*"}]}, "list of glob patterns"),
        ({"acl": [{"user": "u", "senders": [""]}]}, "non-empty"),
        ({"acl": [{"user": "u", "publish": ["*"]}]}, "unknown key"),
        ({"auth": {}}, "unknown key"),
    ],
)
def test_bad_configurations_say_where(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        sig.AccessControl.from_dict(data)


# -- over TCP -------------------------------------------------------------------------------------


class Site:
    """A ServerRouter with access control on TCP, and factories of clients."""

    def __init__(self, config: dict[str, Any], **router_settings: Any) -> None:
        self.tcp = CarrierTCPServer()
        self.server = sig.ServerRouter(self.tcp, access=sig.AccessControl.from_dict(config), request_timeout=5.0,
                                       **router_settings)
        self.tcp.start("127.0.0.1", 0)
        assert self.tcp.port
        self.port: int = self.tcp.port
        self.carriers: list[CarrierTCPClient] = []
        self.socks: list[socket.socket] = []

    def carrier(self, **settings: Any) -> CarrierTCPClient:
        carrier = CarrierTCPClient(**settings)
        self.carriers.append(carrier)
        return carrier

    def client(self, **settings: Any) -> sig.ClientRouter:
        carrier = self.carrier(**settings)
        router = sig.ClientRouter(carrier, request_timeout=5.0)
        assert carrier.connect("127.0.0.1", self.port, auto_reconnect=False), carrier.last_error
        return router

    def legacy(self) -> Legacy:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5.0)
        self.socks.append(sock)
        return Legacy(sock)

    def close(self) -> None:
        for carrier in self.carriers:
            carrier.disconnect()
        for sock in self.socks:
            sock.close()
        self.tcp.stop()


class Legacy:
    """A fake pysig 0.7.3 client: ``json.dumps`` frames, no newline, one call at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ids = iter(range(1, 10**6))

    def call(self, method: str, params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        self.sock.sendall(json.dumps({"method": method, "params": params, "id": message_id}).encode())
        reply: dict[str, Any] = json.loads(self.sock.recv(4096))
        assert reply["id"] == message_id
        return reply


@pytest.fixture
def siglog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    sig_logger = logging.getLogger("sig")
    propagate = sig_logger.propagate
    sig_logger.propagate = True
    caplog.set_level(logging.DEBUG, logger="sig")
    try:
        yield caplog
    finally:
        sig_logger.propagate = propagate


@pytest.fixture
def sites() -> Iterator[Any]:
    made: list[Site] = []

    def make(config: dict[str, Any] = CONFIG, **settings: Any) -> Site:
        site = Site(config, **settings)
        made.append(site)
        return site

    try:
        yield make
    finally:
        for site in made:
            site.close()


def no_secret_logged(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        text = record.getMessage()
        assert PASSWORD not in text and TOKEN not in text and "admin-pw" not in text, text


def test_password_and_token_clients_work_within_their_acl(sites: Any, siglog: Any) -> None:
    site = sites()
    kitchen = site.client(username="kitchen", password=PASSWORD)
    panel = site.client(token=TOKEN)
    lamp = kitchen.addRemoteSender("kitchen/lamp", ["on"], requests={"state": lambda params: "on"})
    rec = Recorder()
    panel.addRemoteListener(rec.listener("panel"), None, None)
    lamp.getSignal("on").trigger(1)
    rec.wait_for(1)
    assert panel.remoteRequest("kitchen/lamp", "state") == "on"
    assert kitchen.remoteRequest("kitchen/lamp", "state") == "on"
    no_secret_logged(siglog)


@pytest.mark.parametrize(
    "who, call, fragment",
    [
        ("kitchen", lambda r: r.addRemoteSender("garage/door", ["open"]), "may not register sender 'garage/door'"),
        ("kitchen", lambda r: r.addRemoteListener(lambda i, d: None, None, "#alarm"), "may not listen to any sender"),
        ("kitchen", lambda r: r.addRemoteListener(lambda i, d: None, "garage/door"), "may not listen to sender"),
        ("panel", lambda r: r.remoteRequest("admin/x", "m"), "may not send requests to sender 'admin/x'"),
        ("panel", lambda r: r.addRemoteSender("kitchen/fake", ["on"]), "user 'panel' may not register"),
    ],
)
def test_acl_refusals_are_status_minus_4_with_a_clear_message(sites: Any, siglog: Any, who: str, call: Any,
                                                              fragment: str) -> None:
    site = sites()
    client = site.client(username="kitchen", password=PASSWORD) if who == "kitchen" else site.client(token=TOKEN)
    with pytest.raises(sig.RemoteAccessError, match=fragment) as refused:
        call(client)
    error = refused.value
    assert error.status == Status.REFUSED == -4
    assert isinstance(error, sig.AccessDeniedError) and isinstance(error, PermissionError)
    assert isinstance(error, sig.RemoteError) and isinstance(error, sig.SigError)
    assert any("refused" in r.getMessage() and fragment in r.getMessage() for r in siglog.records
               if r.levelno >= logging.WARNING)
    assert client.carrier.isConnected()  # refused, not dropped
    assert client.carrier.isConnected()
    no_secret_logged(siglog)


@pytest.mark.parametrize("settings", [{"username": "kitchen", "password": "wrong"}, {"token": "nope"},
                                      {"username": "ghost", "password": PASSWORD}, {}])
def test_bad_or_missing_credentials_make_connect_return_false(sites: Any, siglog: Any,
                                                              settings: dict[str, Any]) -> None:
    site = sites()
    carrier = site.carrier(**settings)
    sig.ClientRouter(carrier)
    started = time.monotonic()
    assert carrier.connect("127.0.0.1", site.port, auto_reconnect=False) is False
    assert time.monotonic() - started < 3.0
    assert isinstance(carrier.last_error, sig.AccessDeniedError)
    text = str(carrier.last_error)
    assert ("authentication refused" in text) if settings else ("requires authentication" in text)
    assert not carrier.isConnected()
    assert any(r.name.startswith("sig.carrier") and r.levelno == logging.INFO and text in r.getMessage()
               for r in siglog.records)
    no_secret_logged(siglog)
    assert wait_until(lambda: not site.tcp.clients())


def test_credentials_go_before_anything_is_registered_on_every_reconnect(sites: Any) -> None:
    site = sites()
    carrier = site.carrier(username="kitchen", password=PASSWORD, reconnect_min=0.05, reconnect_max=0.1)
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", site.port, auto_reconnect=True)
    router.addRemoteSender("kitchen/lamp", ["on"])
    rec = Recorder()
    router.addRemoteListener(rec.listener(), "kitchen/lamp", "on")
    port = site.port
    site.tcp.stop()
    assert wait_until(lambda: not carrier.isConnected())
    site.tcp.start("127.0.0.1", port)
    assert wait_until(lambda: carrier.isConnected() and site.server.getSender("kitchen/lamp").isConnected(), 5.0)
    router.getSender("kitchen/lamp").getSignal("on").trigger("again")
    assert rec.wait_for(1)[-1][-1] == "again"


def test_unauthenticated_calls_are_refused_until_auth(sites: Any) -> None:
    site = sites()
    legacy = site.legacy()
    assert legacy.call("get_version", {})["response"] == "1.01"
    refused = legacy.call("add_sender", {"sender": "guest-1", "events": ["e"]})
    assert refused["status"] == Status.REFUSED and "authentication required" in refused["exception"]
    assert refused["error"] == "PermissionError"
    bad = legacy.call("auth", {"user": "kitchen", "password": "nope"})
    assert bad["status"] == Status.REFUSED and "nope" not in bad["exception"]
    assert legacy.call("auth", {"user": "kitchen", "password": PASSWORD}) == {
        "id": 4, "status": 0, "response": {"user": "kitchen"}}
    assert legacy.call("add_sender", {"sender": "kitchen/x", "events": ["e"]})["status"] == Status.OK
    again = legacy.call("auth", {"token": TOKEN})
    assert again["status"] == Status.REFUSED and "already authenticated" in again["exception"]


def test_repeated_auth_failures_are_cut_short(sites: Any) -> None:
    site = sites()
    legacy = site.legacy()
    for _ in range(5):
        assert legacy.call("auth", {"user": "kitchen", "password": "x"})["status"] == Status.REFUSED
    last = legacy.call("auth", {"user": "kitchen", "password": PASSWORD})
    assert last["status"] == Status.REFUSED and "reconnect" in last["exception"]


def test_pysig_073_client_works_when_anonymous_is_allowed(sites: Any) -> None:
    config = dict(CONFIG, anonymous=True)
    site = sites(config)
    legacy = site.legacy()
    assert legacy.call("get_version", {})["response"] == "1.01"
    assert legacy.call("add_sender", {"sender": "guest-1", "events": ["e"], "requests": None})["status"] == 0
    assert legacy.call("add_listener", {"sender": "public", "event": None})["status"] == 0
    assert legacy.call("signal", {"info": {"sender": "guest-1", "event": "e"}, "data": 1})["status"] == 0
    refused = legacy.call("add_sender", {"sender": "kitchen/lamp", "events": ["on"]})
    assert refused["status"] == Status.REFUSED and "anonymous clients may not register" in refused["exception"]
    # and a sig client without credentials is anonymous too
    anon = site.client()
    with pytest.raises(sig.RemoteAccessError):
        anon.addRemoteListener(lambda i, d: None, None, None)
    anon.addRemoteListener(lambda i, d: None, "public", None)


def test_no_acl_entries_everything_allowed_for_authenticated(sites: Any) -> None:
    site = sites({"anonymous": False, "users": {"u": {"password": "p"}}})
    client = site.client(username="u", password="p")
    client.addRemoteSender("any", ["e"], requests={"m": lambda params: 1})
    client.addRemoteListener(lambda i, d: None, None, None)
    assert client.remoteRequest("any", "m") == 1


def test_list_senders_shows_only_what_the_client_may_use(sites: Any) -> None:
    site = sites()
    site.server.addSender("kitchen/oven", ["hot"])
    site.server.addSender("garage/door", ["open"])
    legacy = site.legacy()
    assert legacy.call("auth", {"user": "kitchen", "password": PASSWORD})["status"] == 0
    names = [entry["sender"] for entry in legacy.call("list_senders", {})["response"]]
    assert names == ["kitchen/oven"]


def test_credentials_to_a_server_without_access_control_are_not_sent(siglog: Any) -> None:
    tcp = CarrierTCPServer()
    server = sig.ServerRouter(tcp)
    tcp.start("127.0.0.1", 0)
    seen: list[Any] = []
    tcp.callback_rx = lambda clientid, message: seen.append(message.get("method"))
    carrier = CarrierTCPClient(username="kitchen", password=PASSWORD)
    try:
        sig.ClientRouter(carrier)
        assert carrier.connect("127.0.0.1", tcp.port, auto_reconnect=False)
        assert "auth" not in seen
        assert any("does not check credentials" in r.getMessage() for r in siglog.records)
    finally:
        carrier.disconnect()
        tcp.stop()
    assert server.access is None
    no_secret_logged(siglog)


def test_credential_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        CarrierTCPClient(username="u")
    with pytest.raises(ValueError):
        CarrierTCPClient(username="u", password="p", token="t")


# -- limits -----------------------------------------------------------------------------------------


def test_registration_limit_refuses_and_keeps_the_client(sites: Any) -> None:
    site = sites({"anonymous": True}, max_registrations=5)
    client = site.client()
    for n in range(3):
        client.addRemoteSender("s%d" % n, ["e"])
    client.addRemoteListener(lambda i, d: None, "s0")
    client.addRemoteListener(lambda i, d: None, "s1")
    with pytest.raises(sig.RemoteError, match="too many registrations") as refused:
        client.addRemoteSender("s9", ["e"])
    assert refused.value.status == Status.METHOD_FAILED
    with pytest.raises(sig.RemoteError, match="limit 5"):
        client.addRemoteListener(lambda i, d: None, "s2")
    client.removeRemoteSender("s0")
    client.addRemoteSender("s9", ["e"])  # room again
    assert client.carrier.isConnected()


def test_limits_spare_in_process_clients() -> None:
    from sig.carrier.local import LocalCarrier

    server = sig.ServerRouter(max_registrations=2, max_payload=10)
    server_end, client_end = LocalCarrier(), LocalCarrier()
    server.attach(server_end)
    client = sig.ClientRouter(client_end)
    client_end.connect(server_end)
    for n in range(5):
        client.addRemoteSender("s%d" % n, ["e"])
    client.getSender("s0").getSignal("e").trigger("x" * 100)


def test_default_limits() -> None:
    assert sig.ServerRouter().max_registrations == 1000
    assert CarrierTCPServer().max_pending_requests == 100
    assert CarrierTCPClient().max_pending_requests is None


def test_payload_limit(sites: Any) -> None:
    site = sites({"anonymous": True}, max_payload=1000)
    client = site.client()
    client.addRemoteSender("big", ["e"], requests={"m": lambda params: len(params)})
    legacy = site.legacy()
    assert legacy.call("add_sender", {"sender": "old", "events": ["e"]})["status"] == 0
    refused = legacy.call("signal", {"info": {"sender": "old", "event": "e"}, "data": "x" * 2000})
    assert refused["status"] == Status.METHOD_FAILED and "signal data too large" in refused["exception"]
    assert legacy.call("signal", {"info": {"sender": "old", "event": "e"}, "data": "x" * 500})["status"] == 0
    with pytest.raises(sig.RemoteError, match="request params too large"):
        client.remoteRequest("big", "m", "y" * 5000)
    assert client.remoteRequest("big", "m", "y" * 10) == 10


def test_pending_request_limit_refuses_the_flood_and_serves_others(sites: Any, siglog: Any) -> None:
    site = sites({"anonymous": True})
    site.tcp.max_pending_requests = 5  # before the clients connect
    release = threading.Event()
    slow = site.client()
    slow.addRemoteSender("slow", [], requests={"wait": lambda params: release.wait(10.0)})
    flood = site.client()
    results: list[Any] = []

    def ask() -> None:
        try:
            results.append(flood.remoteRequest("slow", "wait", timeout=10.0))
        except sig.RemoteError as exc:
            results.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: len(results) >= 7, 5.0)
    refused = [r for r in results if isinstance(r, sig.RemoteError)]
    assert len(refused) == 7 and all("too many pending requests" in str(r) for r in refused)
    other = site.client()  # another client is served meanwhile
    other.addRemoteSender("fast", [], requests={"now": lambda params: "ok"})
    assert other.remoteRequest("fast", "now") == "ok"
    release.set()
    for thread in threads:
        thread.join(10.0)
    assert results.count(True) == 5
    assert flood.remoteRequest("fast", "now") == "ok"  # the flooder stays connected and is served again
    assert sum("too many pending requests" in r.getMessage() for r in siglog.records
               if r.levelno == logging.WARNING and r.name == "sig.limits") == 1


def test_refused_in_the_background_warns_once_and_keeps_trying(sites: Any, siglog: Any) -> None:
    site = sites()
    carrier = site.carrier(username="kitchen", password=PASSWORD, reconnect_min=0.05, reconnect_max=0.05)
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", site.port, auto_reconnect=True)
    router.addRemoteSender("kitchen/lamp", ["on"])
    changed = dict(CONFIG, users=dict(CONFIG["users"], kitchen={"password": "rotated"}))
    site.server.access = sig.AccessControl.from_dict(changed)
    port = site.port
    site.tcp.stop()
    site.tcp.start("127.0.0.1", port)
    assert wait_until(lambda: sum("authentication refused" in r.getMessage() for r in siglog.records) >= 4)
    warnings = [r for r in siglog.records
                if r.levelno == logging.WARNING and "authentication refused" in r.getMessage()]
    assert len(warnings) == 1
    assert not carrier.isConnected() and isinstance(carrier.last_error, sig.AccessDeniedError)
    site.server.access = sig.AccessControl.from_dict(CONFIG)  # the old password works again
    assert wait_until(lambda: carrier.isConnected() and site.server.senders.get("kitchen/lamp") is not None
                      and site.server.senders["kitchen/lamp"].isConnected())  # registered again: a moment later
    no_secret_logged(siglog)


# -- command line -------------------------------------------------------------------------------------

ACCESS_TOML = """
[auth]
anonymous = false

[[auth.users]]
name = "kitchen"
password = "%s"

[[auth.users]]
name = "panel"
token = "%s"

[[acl]]
user = "kitchen"
senders = ["kitchen/*"]
listen = ["*"]
request = ["*"]
""" % (PASSWORD, TOKEN)


def test_access_toml_shape(tmp_path: Any) -> None:
    from sig_apps._access_options import load_access

    path = tmp_path / "access.toml"
    path.write_text(ACCESS_TOML)
    access = load_access(str(path))
    assert access.users == ["kitchen", "panel"] and not access.anonymous
    assert access.allowed("kitchen", "senders", "kitchen/lamp") and not access.allowed("panel", "senders", "x")
    assert access.authenticate({"token": TOKEN}) == "panel"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sig ARGS`` with ``env`` added (SIG_PASSWORD / SIG_TOKEN removed unless given)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("SIG_PASSWORD", "SIG_TOKEN", "PYTHONWARNINGS")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "sig", *args], cwd=str(ROOT), env=environ, capture_output=True,
                          text=True, timeout=20, stdin=subprocess.DEVNULL)


def one_error_line(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1, (result.returncode, result.stderr)
    assert PASSWORD not in result.stderr + result.stdout
    return lines[0]


@pytest.mark.parametrize("text, fragment", [
    ("[auth\n", "not valid TOML"),
    ("[auth]\nanonymous = 1\n", "anonymous must be true or false"),
    ("[[auth.users]]\npassword = 'x'\n", "needs a name"),
    ("[[acl]]\nuser = 'u'\nsenders = 'x'\n", "list of glob patterns"),
])
def test_bad_access_file_is_one_clear_line(tmp_path: Any, text: str, fragment: str) -> None:
    path = tmp_path / "access.toml"
    path.write_text(text)
    line = one_error_line(run_cli("server", "--bind", "127.0.0.1:0", "--access", str(path)))
    assert fragment in line and line.startswith("sig server: error: --access file")


def test_cli_credentials(sites: Any, tmp_path: Any) -> None:
    site = sites()
    address = "127.0.0.1:%d" % site.port
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    send = ["send", "--server", address, "--sender", "kitchen/lamp", "--event", "on"]
    assert run_cli(*send, "--user", "kitchen", "--password-file", str(password_file)).returncode == 0
    assert run_cli(*send, "--user", "kitchen", SIG_PASSWORD=PASSWORD).returncode == 0
    assert "authentication refused" in one_error_line(run_cli(*send, "--user", "kitchen", SIG_PASSWORD="wrong"))
    assert "requires authentication" in one_error_line(run_cli(*send))
    assert "--password-file FILE or $SIG_PASSWORD" in one_error_line(run_cli(*send, "--user", "kitchen"), 2)
    request = ["request", "--server", address, "--sender", "x", "--method", "m"]
    assert "may not send requests to sender 'x'" in one_error_line(run_cli(*request, SIG_TOKEN=TOKEN))


def test_a_malformed_auth_message_does_not_log_the_secret(sites: Any, siglog: Any) -> None:
    site = sites()
    legacy = site.legacy()
    reply = legacy.call("", {})  # warm up: an empty method
    assert reply["status"] != 0
    message_id = next(legacy.ids)
    legacy.sock.sendall(json.dumps({"id": message_id, "params": {"user": "kitchen", "password": PASSWORD,
                                                                  "token": TOKEN}}).encode())
    assert json.loads(legacy.sock.recv(4096))["status"] == Status.NO_METHOD
    assert any("no method in message" in r.getMessage() and "***" in r.getMessage() for r in siglog.records)
    no_secret_logged(siglog)
