"""HTML of ``sig web``: the live log page (``static/page.html``) and short answer pages.

Every value from a sender or a request is escaped here (:func:`html.escape`)
or, in the page's script, set with ``textContent``; event data never becomes markup.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterable
from importlib import resources
from typing import Any

from ._eventlog import Entry

__all__ = ["render_page", "render_message", "render_regs", "ident_label"]

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@functools.lru_cache(maxsize=1)
def _template() -> str:
    return resources.files(__package__).joinpath("static", "page.html").read_text(encoding="utf-8")


def ident_label(value: Any) -> str:
    """Show a sender or event name; ``None`` (any) as ``None``."""
    return "None" if value is None else str(value)


def _entry_html(entry: Entry) -> str:
    return ('<li class="entry kind-%s" data-id="%d"><span class="time">%s</span> <span class="sender">%s</span> '
            '<span class="event">%s</span> <span class="data">%s</span></li>'
            % (entry.kind, entry.id, html.escape(entry.time_text), html.escape(str(entry.sender)),
               html.escape(str(entry.event)), html.escape(entry.to_json()["text"])))


def _reg_html(sender: Any, event: Any) -> str:
    hidden = "".join('<input type="hidden" name="%s" value="%s">' % (name, html.escape(str(value)))
                     for name, value in (("sender", sender), ("event", event)) if value is not None)
    return ('<li><span class="sub">%s:%s</span><form action="remove" method="get">%s'
            '<button type="submit" class="secondary remove">Remove</button></form></li>'
            % (html.escape(ident_label(sender)), html.escape(ident_label(event)), hidden))


def _script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(entries: list[Entry], regs: list[tuple[Any, Any]], limit: int, last_id: int,
                sender: str | None = None, event: str | None = None) -> str:
    """Render the live log page: ``entries`` (oldest first) are shown newest first."""
    rows = "".join(_entry_html(entry) for entry in reversed(entries[-limit:]))
    shown = [("sender", sender), ("event", event)]
    filters = ", ".join("%s %s" % (name, value) for name, value in shown if value is not None)
    summary = "keeps the last %d; %s" % (limit, "only " + filters if filters else "all events")
    state = {"last": last_id, "limit": limit, "filter": {"sender": sender, "event": event}}
    values = {
        "regs": "".join(_reg_html(*reg) for reg in regs) or '<li class="empty">No subscriptions.</li>',
        "rows": rows or '<li class="empty">No events yet.</li>',
        "summary": html.escape(summary),
        "state": _script_json(state),
    }
    # one pass, so text inside a value is never taken for a placeholder
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], _template())


def _small_page(title: str, body: str) -> str:
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><title>%s</title></head>'
            '<body style="font: 16px/1.4 system-ui, sans-serif; margin: 1rem">%s'
            '<p><a href="./">Back to the event log</a></p></body></html>\n' % (html.escape(title), body))


def render_message(title: str, message: str) -> str:
    """A short HTML answer: ``message`` (escaped) and a link back to the log."""
    return _small_page(title, "<h1>%s</h1><p>%s</p>" % (html.escape(title), html.escape(message)))


def render_regs(regs: Iterable[tuple[Any, Any]]) -> str:
    """The subscriptions as an HTML list (``/regs?fmt=html``)."""
    items = "".join("<li>%s:%s</li>" % (html.escape(ident_label(s)), html.escape(ident_label(e))) for s, e in regs)
    return _small_page("Registrations", "<h1>Registrations</h1><ul>%s</ul>" % (items or "<li>none</li>"))
