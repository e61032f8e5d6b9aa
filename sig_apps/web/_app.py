"""The aiohttp application of ``sig web``: the documented REST API, the live page and its event stream.

Endpoints (all GET, as documented; every one takes ``fmt=html|plain|json``):

``/``                        the log, oldest first (the page shows the newest first); ``sender``, ``event`` filter it
``/regs``, ``/registrations`` the subscriptions
``/clear``, ``/flush``       forget the logged events
``/config``, ``/cfg``        ``limit=N`` sets the queue limit; answers the configuration as JSON
``/add``                     subscribe to ``sender``:``event`` (a missing one is None = any)
``/remove``, ``/rem``        unsubscribe
``/stream``                  server-sent events for the page: ``entry``, ``regs``, ``config``, ``clear``, ``link``

A bad parameter is a 400 with a message; a ``Host`` or ``Origin`` that is
not this server is a 403 (see :class:`~sig_apps.web._guard.HostGuard`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sig import CarrierError, SigError

from ._eventlog import MAX_LIMIT, EventLog, plain_lines
from ._guard import HostGuard
from ._page import ident_label, render_message, render_page, render_regs
from ._sse import Streams
from ._subs import AlreadySubscribedError, NotSubscribedError, Subscriptions

__all__ = ["WebState", "STATE", "make_app"]

logger = logging.getLogger("sig.web.app")

FORMATS = ("html", "plain", "json")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebState:
    """What the handlers share: the log, the subscriptions, the host check and the open streams."""

    def __init__(self, log: EventLog, subscriptions: Subscriptions, server: str = "") -> None:
        self.log = log
        self.subscriptions = subscriptions
        self.server = server
        self.guard: HostGuard | None = None  # set once the port is known
        self.http = ""
        self.streams = Streams(log, subscriptions)
        #: the senders announced to Home Assistant, when the client can tell (``sig web --mqtt``)
        self.announced: Callable[[], list[Any]] | None = None

    def registrations(self) -> list[dict[str, Any]]:
        """The subscriptions as JSON."""
        return [{"sender": s, "event": e} for s, e in self.subscriptions.list()]

    def config(self) -> dict[str, Any]:
        """The configuration as JSON (``/config``)."""
        out = {"limit": self.log.limit, "entries": len(self.log), "server": self.server, "http": self.http,
               "registrations": self.registrations()}
        if self.announced is not None:
            out["announced"] = self.announced()
        return out


#: Where the application keeps its :class:`WebState`.
STATE = web.AppKey("sig_web_state", WebState)


class Refused(SigError):
    """A request answered with an error ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- answers -----------------------------------------------------------------------------


def _fmt(request: web.Request) -> str:
    fmt = request.query.get("fmt", "html")
    if fmt not in FORMATS:
        raise Refused(400, "fmt must be one of html, plain, json, not %r" % fmt)
    return fmt


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def _plain(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/plain", charset="utf-8")


def _html(text: str, status: int = 200, nonce: str = "") -> web.Response:
    scripts = "'nonce-%s'" % nonce if nonce else "'none'"
    csp = ("default-src 'none'; script-src %s; style-src 'unsafe-inline'; connect-src 'self'; "
           "form-action 'self'; base-uri 'none'; frame-ancestors 'none'" % scripts)
    headers = {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=headers)


def _answer(fmt: str, message: str, json_value: dict[str, Any], title: str = "sig web") -> web.Response:
    if fmt == "json":
        return _json({"message": message, **json_value})
    if fmt == "plain":
        return _plain(message + "\n")
    return _html(render_message(title, message))


def _error(request: web.Request, status: int, message: str) -> web.Response:
    fmt = request.query.get("fmt", "plain")
    if fmt == "json":
        return _json({"error": message, "status": status}, status)
    if fmt == "html":
        return _html(render_message("Error %d" % status, message), status)
    return _plain("%d: %s\n" % (status, message), status)


def _ident(request: web.Request, name: str) -> str | None:
    """A sender / event parameter: missing or ``None`` is None (any); empty is refused."""
    value = request.query.get(name)
    if value is None or value == "None":
        return None
    if not value.strip():
        raise Refused(400, "%s must not be empty (leave it out, or None, for any)" % name)
    return value


# -- middleware --------------------------------------------------------------------------


@web.middleware
async def guard_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse foreign ``Host`` / ``Origin`` headers; turn :class:`Refused` into its answer."""
    guard = request.app[STATE].guard
    if guard is not None:
        if not guard.host_ok(request.headers.get("Host")):
            logger.warning("Refused a request for host %r", request.headers.get("Host"))
            return _error(request, 403, "this server does not answer for host %r" % request.headers.get("Host"))
        if not guard.origin_ok(request.headers.get("Origin")):
            logger.warning("Refused a request from origin %r", request.headers.get("Origin"))
            return _error(request, 403, "requests from origin %r are not allowed" % request.headers.get("Origin"))
    try:
        return await handler(request)
    except Refused as refused:
        return _error(request, refused.status, refused.message)


# -- handlers ----------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    """``/``: the log (``fmt``, ``sender``, ``event``)."""
    state = request.app[STATE]
    fmt = _fmt(request)
    sender, event = _ident(request, "sender"), _ident(request, "event")
    entries = state.log.entries(sender, event)
    if fmt == "json":
        return _json({"limit": state.log.limit, "entries": [e.to_json() for e in entries]})
    if fmt == "plain":
        return _plain(plain_lines(e.to_plain() for e in entries))
    nonce = secrets.token_urlsafe(16)
    page = render_page(entries, state.subscriptions.list(), state.log.limit, state.log.last_id, sender, event)
    return _html(page.replace("<script>", '<script nonce="%s">' % nonce), nonce=nonce)


async def regs(request: web.Request) -> web.StreamResponse:
    """``/regs``, ``/registrations``: the subscriptions."""
    state = request.app[STATE]
    fmt = _fmt(request)
    subs = state.subscriptions.list()
    if fmt == "json":
        return _json({"registrations": state.registrations()})
    if fmt == "plain":
        return _plain(plain_lines("%s:%s" % (ident_label(s), ident_label(e)) for s, e in subs))
    return _html(render_regs(subs))


async def clear(request: web.Request) -> web.StreamResponse:
    """``/clear``, ``/flush``: forget the logged events."""
    fmt = _fmt(request)
    count = request.app[STATE].log.clear()
    return _answer(fmt, "Cleared %d entries" % count, {"cleared": count})


async def config(request: web.Request) -> web.StreamResponse:
    """``/config``, ``/cfg``: set the queue limit (``limit``); answer the configuration as JSON."""
    state = request.app[STATE]
    _fmt(request)
    text = request.query.get("limit")
    if text is not None:
        try:
            limit = int(text)
        except ValueError:
            raise Refused(400, "the limit must be a whole number from 1 to %d, not %r" % (MAX_LIMIT, text)) from None
        try:
            state.log.limit = limit
        except ValueError as exc:
            raise Refused(400, str(exc)) from None
        logger.info("Queue limit is now %d", state.log.limit)
    return _json(state.config())


async def announced(request: web.Request) -> web.StreamResponse:
    """``/announced``: the senders that Home Assistant knows through sig's MQTT discovery."""
    state = request.app[STATE]
    fmt = _fmt(request)
    if state.announced is None:
        raise Refused(404, "which senders are announced is known over MQTT only (sig web --mqtt URL)")
    senders = state.announced()
    message = "Announced to Home Assistant: %s" % (", ".join(ident_label(s) for s in senders) or "none")
    if fmt == "plain":
        return _plain(plain_lines(ident_label(s) for s in senders))
    return _answer(fmt, message, {"announced": senders})


async def _change(request: web.Request, adding: bool) -> web.StreamResponse:
    state = request.app[STATE]
    fmt = _fmt(request)
    sender, event = _ident(request, "sender"), _ident(request, "event")
    action = state.subscriptions.add if adding else state.subscriptions.remove
    label = "%s:%s" % (ident_label(sender), ident_label(event))
    try:
        await asyncio.get_running_loop().run_in_executor(None, action, sender, event)
    except AlreadySubscribedError:
        raise Refused(409, "already subscribed to %s" % label) from None
    except NotSubscribedError:
        raise Refused(404, "not subscribed to %s" % label) from None
    except CarrierError as exc:
        raise Refused(503, "the sig server cannot be reached: %s" % exc) from None
    except SigError as exc:
        raise Refused(502, "the sig server refused %s: %s" % (label, exc)) from None
    message = ("Subscribed to %s" if adding else "Unsubscribed from %s") % label
    return _answer(fmt, message, {"registrations": state.registrations()})


async def add(request: web.Request) -> web.StreamResponse:
    """``/add``: subscribe to ``sender``:``event`` (a missing one is None)."""
    return await _change(request, adding=True)


async def remove(request: web.Request) -> web.StreamResponse:
    """``/remove``, ``/rem``: unsubscribe from ``sender``:``event`` (a missing one is None)."""
    return await _change(request, adding=False)


async def stream(request: web.Request) -> web.StreamResponse:
    """``/stream``: server-sent events, from the entries after ``Last-Event-ID`` (or ``after``) on."""
    if request.method == "HEAD":
        return web.Response(content_type="text/event-stream")
    text = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    try:
        after = int(text)
    except ValueError:
        raise Refused(400, "after must be an entry id (a whole number), not %r" % text) from None
    return await request.app[STATE].streams.serve(request, after)


async def _close_streams(app: web.Application) -> None:
    app[STATE].streams.close_all()


def make_app(state: WebState) -> web.Application:
    """Build the aiohttp application over ``state`` (every documented path and alias)."""
    app = web.Application(middlewares=[guard_and_errors])
    app[STATE] = state
    for paths, handler in ((["/"], index), (["/regs", "/registrations"], regs), (["/clear", "/flush"], clear),
                           (["/config", "/cfg"], config), (["/add"], add), (["/remove", "/rem"], remove),
                           (["/stream"], stream), (["/announced"], announced)):
        for path in paths:
            app.router.add_get(path, handler)
    app.on_shutdown.append(_close_streams)
    return app

