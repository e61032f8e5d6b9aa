"""The wire format of the stream carriers: framing, message shapes, status codes.

No I/O here: :class:`FrameDecoder` takes bytes and gives messages, and
:func:`encode` gives the bytes of one message.

Framing (DESIGN.md): each message is one JSON object followed by ``\\n``. The
reader also accepts JSON objects back to back with no separator, which is what
pysig 0.7.3 peers send (one ``json.dumps`` per ``sendall``).

Messages and replies are pysig's: ``{"id", "method", "params"}`` and
``{"id", "status", "response"[, "exception"]}``. sig adds an optional
``"error"`` field to failed replies naming the built-in exception family
(``"LookupError"``, ``"NameError"`` ...) so the caller can raise the same kind.
"""

from __future__ import annotations

import codecs
import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._errors import RemoteAccessError, RemoteError, RemoteLookupError, RemoteNameError, RemoteTimeoutError
from ._json import compact_encoder

__all__ = [
    "Status",
    "CAPABILITIES",
    "PROTOCOL_VERSION",
    "DEFAULT_MAX_FRAME",
    "BadFrame",
    "FrameDecoder",
    "encode",
    "is_reply",
    "make_reply",
    "error_family",
    "reply_error",
]

#: The protocol version pysig 0.7.3 servers answer to ``get_version``.
PROTOCOL_VERSION = "1.01"
#: What a sig peer announces in ``get_version``.
CAPABILITIES = ("ndjson", "pipeline", "ping")
#: Default largest frame accepted, in bytes.
DEFAULT_MAX_FRAME = 1024 * 1024


class Status(enum.IntEnum):
    """Reply status codes (the pysig values, kept on the wire)."""

    #: the method ran
    OK = 0
    #: no such method
    UNKNOWN_METHOD = -1
    #: the method raised
    METHOD_FAILED = -2
    #: the message has no method field (or could not be read at all)
    NO_METHOD = -3
    #: refused by authentication or ACL
    REFUSED = -4


@dataclass(frozen=True)
class BadFrame:
    """A frame that could not be used: its reason, and its ``id`` if one could be read."""

    reason: str
    id: Any = None


_ID_RE = re.compile(r'"id"\s*:\s*("(?:[^"\\]|\\.){0,64}"|-?\d{1,20})')
_WS = " \t\r\n"


def _sniff_id(text: str) -> Any:
    match = _ID_RE.search(text[:4096])
    if match is None:
        return None
    try:
        return json.loads(match.group(1))
    except ValueError:
        return None


class FrameDecoder:
    """Split a byte stream into JSON objects.

    Args:
        max_frame: the largest frame accepted, in bytes (well, characters);
            a larger one becomes a :class:`BadFrame` and is skipped up to the
            next newline.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._buffer = ""
        self._skipping = False  # inside an oversized frame, skipping to the next newline
        self._decoder = json.JSONDecoder()
        self._scan: Callable[[str, int], tuple[Any, int]] = self._decoder.scan_once  # type: ignore[attr-defined]
        self._held = False  # the UTF-8 decoder holds the start of a character split by the previous read

    def feed(self, data: bytes) -> list[dict[str, Any] | BadFrame]:
        """Add received bytes; return the complete messages (and bad frames) they finish."""
        if not self._held:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:  # a character split by the read, or bad bytes: the careful way
                pass
            else:
                if not self._skipping:
                    lines = self._whole_lines(text)
                    if lines is not None:
                        return lines
                return self._feed_text(text)
        out = self._feed_bytes(data)
        self._held = bool(self._utf8.getstate()[0])
        return out

    def _whole_lines(self, text: str) -> list[dict[str, Any] | BadFrame] | None:
        """The objects of the whole lines the buffer and ``text`` hold, keeping the unfinished one after
        them; None (nothing done) if they are not all plain, or if what follows may be a whole object."""
        buf = self._buffer + text if self._buffer else text
        cut = buf.rfind("\n") + 1
        if not cut:
            return None
        rest = buf[cut:]
        if rest and (len(rest) > self.max_frame or rest.rstrip(_WS)[-1:] == "}"):
            return None  # too large, or maybe a whole object without a newline (0.7.3): the careful way
        lines = self._lines(buf[:cut] if rest else buf)
        if lines is not None:
            self._buffer = rest
        return lines

    def _lines(self, text: str) -> list[dict[str, Any] | BadFrame] | None:
        """Whole lines of one object each (the usual case): their objects; None if any is otherwise."""
        out: list[dict[str, Any] | BadFrame] = []
        scan, limit = self._scan, self.max_frame
        for line in text.split("\n"):
            if not line:
                continue
            if len(line) > limit:
                return None
            try:
                obj, end = scan(line, 0)
            except (StopIteration, ValueError):
                return None
            if end != len(line) or type(obj) is not dict:
                return None
            out.append(obj)
        return out

    def _feed_bytes(self, data: bytes) -> list[dict[str, Any] | BadFrame]:
        out: list[dict[str, Any] | BadFrame] = []
        view, offset = memoryview(data), 0
        while True:
            held = self._utf8.getstate()[0]  # the start of a character split by the previous read
            try:
                text = self._utf8.decode(view[offset:])
            except UnicodeDecodeError as exc:
                # The frames before the bad bytes are used; the bad one is dropped up to the
                # next newline, as malformed JSON is; what follows is used.
                self._utf8.reset()
                bad = offset + exc.start - len(held)  # where the bad bytes start in data
                good = (held[: exc.start] + data[offset : max(offset, bad)]).decode("utf-8")
                cut = good.rfind("\n") + 1
                out.extend(self._feed_text(good[:cut]))
                if not self._skipping:  # else it is part of an oversized frame, already reported
                    out.append(BadFrame("frame is not UTF-8 (%s)" % exc.reason, _sniff_id(self._buffer + good[cut:])))
                self._buffer = ""
                newline = data.find(b"\n", max(offset, bad))
                self._skipping = newline < 0
                if newline < 0:
                    return out
                offset = newline + 1
                continue
            out.extend(self._feed_text(text))
            return out

    def _feed_text(self, text: str) -> list[dict[str, Any] | BadFrame]:
        out: list[dict[str, Any] | BadFrame] = []
        buf = self._buffer + text if self._buffer else text
        pos, end = 0, len(buf)
        last = end - 1  # the last non-blank character: a complete object ends in "}"
        while last >= 0 and buf[last] in _WS:
            last -= 1
        maybe_complete = last >= 0 and buf[last] in '}]"'
        while True:
            while pos < end and buf[pos] in _WS:
                pos += 1
            if pos >= end:
                break
            newline = buf.find("\n", pos)
            if self._skipping:
                if newline < 0:
                    pos = end
                    break
                pos, self._skipping = newline + 1, False
                continue
            if newline < 0 and not maybe_complete:
                break  # not worth a parse yet: wait for more
            try:
                obj, after = self._decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if exc.pos > last or exc.msg.startswith("Unterminated string"):
                    break  # incomplete: wait for the rest
                stop = newline + 1 if newline >= 0 else end
                out.append(BadFrame("malformed JSON: %s" % exc.msg, _sniff_id(buf[pos:stop])))
                pos = stop
                continue
            if after - pos > self.max_frame:  # arrived whole, but too large all the same
                message_id = obj.get("id") if isinstance(obj, dict) else None
                out.append(BadFrame("frame larger than %d bytes" % self.max_frame, message_id))
            elif isinstance(obj, dict):
                out.append(obj)
            else:
                out.append(BadFrame("a message must be a JSON object, not %s" % type(obj).__name__))
            pos = after
        rest = buf[pos:]
        if len(rest) > self.max_frame:
            out.append(BadFrame("frame larger than %d bytes" % self.max_frame, _sniff_id(rest)))
            newline = rest.find("\n")
            rest, self._skipping = ("", True) if newline < 0 else (rest[newline + 1 :], False)
        self._buffer = rest
        return out

    @property
    def pending(self) -> int:
        """How many characters of an unfinished frame are buffered."""
        return len(self._buffer)


def encode(message: dict[str, Any]) -> bytes:
    """Return the frame of ``message``: compact JSON and a newline.

    Raises:
        TypeError: ``message`` holds something JSON cannot carry.
        ValueError: ``message`` holds nan/inf or a circular reference.
    """
    if message.get("method") == "signal" and len(message) == 2:
        # A signal's frame by template (the encoder costs most per object), the bytes it would give.
        params = message.get("params")
        if type(params) is dict and "data" in params:
            info = params.get("info")
            if type(info) is dict:
                size = len(params)
                if size == 2:
                    return b'{"method":"signal","params":{"info":%b,"data":%b}}\n' % (
                        _info(info), _ENCODE(params["data"]).encode("utf-8"))
                listener_id = params.get("listener_id")
                if size == 3 and type(listener_id) is int:
                    return signal_frame(listener_id, info, params["data"])
    return (_ENCODE(message) + "\n").encode("utf-8")


def signal_message(listener_id: int, info: dict[str, Any], data: Any) -> dict[str, Any]:
    """The ``signal`` notification of an event to the remote listener ``listener_id``."""
    return {"method": "signal", "params": {"listener_id": listener_id, "info": info, "data": data}}


def signal_frame(listener_id: int, info: dict[str, Any], data: Any) -> bytes:
    """The frame of :func:`signal_message` (what :func:`encode` gives for it), by template."""
    return b'{"method":"signal","params":{"listener_id":%d,"info":%b,"data":%b}}\n' % (
        listener_id, _info(info), _ENCODE(data).encode("utf-8"))


#: One encoder for every frame: ``json.dumps`` with options builds a new one per call.
_ENCODE = compact_encoder(allow_nan=False)


#: Encoded ``info`` dicts of a sender and an event, each a str or an int (keyed with their types:
#: ``1 == 1.0 == True`` in a dict key, not in JSON).
_INFOS: dict[tuple[type, Any, type, Any], bytes] = {}
_PLAIN = (str, int)


def _info(info: dict[str, Any]) -> bytes:
    """``info`` encoded; the usual ``{"sender": s, "event": e}`` once per (s, e)."""
    if len(info) == 2 and next(iter(info)) == "sender":
        sender, event = info["sender"], info.get("event")
        sender_type, event_type = type(sender), type(event)
        if sender_type in _PLAIN and event_type in _PLAIN:
            key = (sender_type, sender, event_type, event)
            encoded = _INFOS.get(key)
            if encoded is None:
                if len(_INFOS) >= 4096:
                    _INFOS.clear()
                encoded = _INFOS[key] = _ENCODE(info).encode("utf-8")
            return encoded
    return _ENCODE(info).encode("utf-8")


def is_reply(message: dict[str, Any]) -> bool:
    """Tell a reply (it has ``status`` and no ``method``) from a call."""
    return "status" in message and "method" not in message


_FAMILIES: tuple[type[BaseException], ...] = (
    LookupError, NameError, TimeoutError, TypeError, ValueError, PermissionError
)


def error_family(exc: BaseException) -> str | None:
    """Return the name of the built-in family of ``exc`` worth telling the far side."""
    for family in _FAMILIES:
        if isinstance(exc, family):
            return family.__name__
    return None


def make_reply(message_id: Any, status: int, response: Any = None, exc: BaseException | None = None) -> dict[str, Any]:
    """Build a reply in pysig's format (plus sig's optional ``error`` field)."""
    reply: dict[str, Any] = {"id": message_id, "status": int(status), "response": response}
    if exc is not None:
        # A failure relayed from a third peer keeps that peer's own text, not our wrapping of it.
        text = exc.exception if isinstance(exc, RemoteError) and exc.exception else str(exc)
        reply["exception"] = text or type(exc).__name__
        family = error_family(exc)
        if family is not None:
            reply["error"] = family
    return reply


_REMOTE_ERRORS: dict[str, type[RemoteError]] = {
    "LookupError": RemoteLookupError,
    "NameError": RemoteNameError,
    "TimeoutError": RemoteTimeoutError,
    "PermissionError": RemoteAccessError,
}


def reply_error(reply: dict[str, Any], what: str) -> RemoteError:
    """Return the :class:`RemoteError` that a failed ``reply`` to ``what`` stands for."""
    status = reply.get("status")
    exception = reply.get("exception")
    family = reply.get("error")
    if status == Status.UNKNOWN_METHOD and family is None:
        family = "LookupError"
    elif status == Status.REFUSED:
        family = "PermissionError"  # refused by authentication or the ACL, whatever the far side named
    message = "%s failed on the far side (status %s)%s" % (what, status, ": %s" % exception if exception else "")
    status_code = status if isinstance(status, int) else Status.METHOD_FAILED
    cls = _REMOTE_ERRORS.get(family, RemoteError) if isinstance(family, str) else RemoteError
    return cls(message, status_code, exception if isinstance(exception, str) else None, family)
