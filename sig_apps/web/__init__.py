"""The web event log of ``sig web`` (pysig's documented web_events_logger.py), on aiohttp.

Needs the ``web`` extra: ``pip install 'sig[web]'``.

    from sig_apps.web import WebLogger

    weblog = WebLogger(router, limit=200)      # router: a connected sig.ClientRouter
    weblog.subscribe("keros", "ir")
    weblog.run("127.0.0.1", 8080)              # until Ctrl-C / SIGTERM
"""

from __future__ import annotations

from ._app import make_app
from ._eventlog import DEFAULT_LIMIT, Entry, EventLog
from ._guard import HostGuard
from ._serve import DEFAULT_HTTP_PORT, WebLogger
from ._subs import Subscriptions

__all__ = ["WebLogger", "EventLog", "Entry", "Subscriptions", "HostGuard", "make_app", "DEFAULT_LIMIT",
           "DEFAULT_HTTP_PORT"]
