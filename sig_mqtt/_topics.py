"""The MQTT topic tree of sig: pure functions, no I/O.

Every pysig identifier becomes exactly one topic level, reversibly:

* ``str``: literal, except that ``%``, ``/``, ``+``, ``#``, control characters
  (U+0000-001F, U+007F-009F), Unicode noncharacters and a leading ``$`` or ``!``
  are percent-encoded as UTF-8 bytes (``"#changed"`` -> ``%23changed``);
* ``""`` -> ``!e``; ``int`` -> ``!i:42``; ``float`` -> ``!f:<repr>``, except an
  integral float, which takes its int's token (``1.0 == 1`` is one key);
* ``bool`` and other types are refused with ``TypeError``.

Portable levels (``Topics(portable=True)``, the carriers' ``portable_ids=True``;
off by default, so today's topics do not change) also percent-encode ``.``,
space, ``*`` and ``>``, which NATS (subject separators and wildcards) and
RabbitMQ (``.`` and ``*`` in its topic exchange) cannot carry in a topic level:
``"a.b c"`` -> ``a%2Eb%20c``. Both forms decode the same way, so a portable node
reads a plain node's topics; the two must still agree on one form to meet on the
same topic, so every node of a network takes the same setting.

The tree under the prefix ``P``::

    P/node/NID                 node state (retained; its Last Will says offline)
    P/node/NID/sender/S        sender birth (retained; empty = removed)
    P/event/S/E                event data, plain JSON
    P/request/S/M              request to sender S, method M
    P/reply/NID                replies to node NID's requests
    P/cmd/rebirth              ask every node to publish its births again
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sig import InvalidArgumentError, InvalidIdentifierError

__all__ = [
    "Parsed",
    "Topics",
    "check_prefix",
    "decode_level",
    "encode_level",
    "filter_matches",
    "check_filter",
    "is_topic_name",
]

# What must be escaped anywhere in a level: % / + #, C0 and C1 controls, noncharacters.
_UNSAFE = re.compile(
    "[%/+#\x00-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff"
    + "".join("\\U%08x\\U%08x" % (plane + 0xFFFE, plane + 0xFFFF) for plane in range(0x10000, 0x110000, 0x10000))
    + "]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_PORTABLE = re.compile("[. *>]")  # NATS and RabbitMQ take these as separators or wildcards
_PERCENT = re.compile("(?:%[0-9A-Fa-f]{2})+")
_CACHE_LIMIT = 4096
_encoded: dict[tuple[type, Any], str] = {}
_decoded: dict[str, Any] = {}


def _escape(match: re.Match[str]) -> str:
    return "".join("%%%02X" % byte for byte in match.group().encode("utf-8"))


def encode_level(ident: Any, portable: bool = False) -> str:
    """Return the topic level of a pysig identifier (str, int or float).

    ``portable`` also escapes ``.``, space, ``*`` and ``>`` (see the module's docstring).

    Raises:
        TypeError: ``ident`` is a bool or not a str, int or float.
        ValueError: a str holds a lone surrogate (it has no UTF-8 form).
    """
    if portable:
        return _NOT_PORTABLE.sub(_escape, encode_level(ident))
    key = (type(ident), ident)
    try:
        return _encoded[key]
    except KeyError:
        pass
    except TypeError:  # unhashable
        raise InvalidIdentifierError("an identifier must be str, int or float, not %s" % type(ident).__name__) from None
    if isinstance(ident, bool) or not isinstance(ident, (str, int, float)):
        raise InvalidIdentifierError("an identifier must be str, int or float, not %s" % type(ident).__name__)
    if isinstance(ident, str):
        if not ident:
            token = "!e"
        else:
            if _SURROGATE.search(ident):
                raise InvalidArgumentError("identifier %r holds a lone surrogate" % (ident,))
            token = _UNSAFE.sub(_escape, ident)
            if token[0] in "$!":
                token = "%%%02X" % ord(token[0]) + token[1:]
    elif isinstance(ident, int):
        token = "!i:%d" % ident
    elif ident.is_integer():
        token = "!i:%d" % int(ident)
    else:
        token = "!f:%r" % ident
    if len(_encoded) >= _CACHE_LIMIT:
        _encoded.clear()
    _encoded[key] = token
    return token


def decode_level(token: str) -> Any:
    """Return the identifier a topic level stands for (the inverse of :func:`encode_level`).

    Levels that sig did not write (a plain device's topic) are read leniently:
    a ``%`` that starts no valid UTF-8 escape and an unknown ``!`` tag stay literal.
    """
    try:
        return _decoded[token]
    except KeyError:
        pass
    value: Any = token
    if token.startswith("!"):
        if token == "!e":
            value = ""
        elif token.startswith("!i:"):
            try:
                value = int(token[3:])
            except ValueError:
                pass
        elif token.startswith("!f:"):
            try:
                value = float(_PERCENT.sub(_unescape, token[3:]))  # a portable level escapes the dot
            except ValueError:
                pass
    elif "%" in token:
        value = _PERCENT.sub(_unescape, token)
    if len(_decoded) >= _CACHE_LIMIT:
        _decoded.clear()
    _decoded[token] = value
    return value


def _unescape(match: re.Match[str]) -> str:
    text = match.group()
    try:
        return bytes.fromhex(text.replace("%", "")).decode("utf-8")
    except UnicodeDecodeError:
        return text


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can root sig's topic tree.

    Raises:
        ValueError: it is empty, has an empty level, holds ``+``, ``#`` or a
            control character, or starts with ``$``.
    """
    if not isinstance(prefix, str) or not prefix:
        raise InvalidArgumentError("the MQTT prefix must be a non-empty string, not %r" % (prefix,))
    if prefix.startswith("$") or re.search("[+#\x00-\x1f\x7f-\x9f]", prefix):
        raise InvalidArgumentError("bad MQTT prefix %r: no '+', '#' or control characters, and no leading '$'" % prefix)
    if "" in prefix.split("/"):
        raise InvalidArgumentError("bad MQTT prefix %r: it has an empty level" % (prefix,))
    return prefix


def is_topic_name(topic: Any) -> bool:
    """Tell whether ``topic`` can be published to: a non-empty str without wildcards,
    control characters, noncharacters or surrogates, at most 65,535 UTF-8 bytes
    (Mosquitto drops a client that publishes anything else)."""
    if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic:
        return False
    if _SURROGATE.search(topic) or _UNSAFE.sub("", topic.replace("%", "").replace("/", "")) != topic.replace(
        "%", ""
    ).replace("/", ""):
        return False
    return len(topic.encode("utf-8")) <= 65535


def check_filter(topic_filter: str) -> str:
    """Return ``topic_filter`` if it is a valid MQTT subscription filter.

    Raises:
        ValueError: empty, or a wildcard that is not a whole level, or ``#`` not last.
    """
    if not topic_filter or "\x00" in topic_filter:
        raise InvalidArgumentError("an MQTT filter must be a non-empty string without NUL")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise InvalidArgumentError("bad MQTT filter %r: '#' must be the whole last level" % topic_filter)
        if "+" in level and level != "+":
            raise InvalidArgumentError("bad MQTT filter %r: '+' must be a whole level" % topic_filter)
    return topic_filter


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Tell whether an MQTT topic name matches a subscription filter (MQTT 3.1.1 / 5 rules)."""
    if topic_filter == topic:
        return True
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    flevels = topic_filter.split("/")
    tlevels = topic.split("/")
    for index, flevel in enumerate(flevels):
        if flevel == "#":
            return True
        if index >= len(tlevels):
            return False
        if flevel != "+" and flevel != tlevels[index]:
            return False
    return len(flevels) == len(tlevels)


@dataclass(frozen=True)
class Parsed:
    """What a topic of sig's tree says.

    ``kind`` is one of ``"node"``, ``"birth"``, ``"event"``, ``"request"``,
    ``"reply"``, ``"rebirth"``.
    """

    kind: str
    nid: str | None = None
    sender: Any = None
    name: Any = None  # the event or request method


class Topics:
    """Builds and parses the topics of one prefix.

    Args:
        prefix: the root of the tree (default ``sig``; may have several levels).
        portable: identifiers also escape ``.``, space, ``*`` and ``>`` (NATS, RabbitMQ).
    """

    def __init__(self, prefix: str = "sig", portable: bool = False) -> None:
        self.prefix = check_prefix(prefix)
        self.portable = portable
        self._root = prefix + "/"
        self._depth = prefix.count("/") + 1
        self.node_filter = self._root + "node/+"
        self.event_root = self._root + "event/"
        self.rebirth = self._root + "cmd/rebirth"
        self._events: dict[tuple[Any, Any], str] = {}
        self._parsed: dict[str, Parsed] = {}

    # -- names ----------------------------------------------------------------

    def _level(self, ident: Any) -> str:
        return encode_level(ident, self.portable)

    def node(self, nid: str) -> str:
        """``P/node/NID``: the node state."""
        return "%snode/%s" % (self._root, self._level(nid))

    def birth(self, nid: str, sender: Any) -> str:
        """``P/node/NID/sender/S``: a sender's birth."""
        return "%snode/%s/sender/%s" % (self._root, self._level(nid), self._level(sender))

    def event(self, sender: Any, event: Any) -> str:
        """``P/event/S/E``: an event."""
        key = (sender, event)
        topic = self._events.get(key) if type(sender) is str and type(event) is str else None
        if topic is None:
            topic = "%sevent/%s/%s" % (self._root, self._level(sender), self._level(event))
            if type(sender) is str and type(event) is str:
                if len(self._events) >= _CACHE_LIMIT:
                    self._events.clear()
                self._events[key] = topic
        return topic

    def request(self, sender: Any, method: Any) -> str:
        """``P/request/S/M``: a request."""
        return "%srequest/%s/%s" % (self._root, self._level(sender), self._level(method))

    def reply(self, nid: str) -> str:
        """``P/reply/NID``: where node NID gets its replies."""
        return "%sreply/%s" % (self._root, self._level(nid))

    # -- filters --------------------------------------------------------------

    def birth_filter(self, sender: Any = None, nid: str | None = None) -> str:
        """Births of ``sender`` (``None``: any) on node ``nid`` (``None``: any)."""
        return "%snode/%s/sender/%s" % (
            self._root,
            "+" if nid is None else self._level(nid),
            "+" if sender is None else self._level(sender),
        )

    def event_filter(self, sender: Any = None, event: Any = None) -> str:
        """Events ``(sender, event)``, ``None`` meaning any (one ``+`` level)."""
        return "%sevent/%s/%s" % (
            self._root,
            "+" if sender is None else self._level(sender),
            "+" if event is None else self._level(event),
        )

    def request_filter(self, sender: Any) -> str:
        """Requests to ``sender``, any method."""
        return "%srequest/%s/+" % (self._root, self._level(sender))

    # -- parsing ----------------------------------------------------------------

    def parse(self, topic: str) -> Parsed | None:
        """Tell what a topic of this tree is; ``None`` for a topic outside it."""
        parsed = self._parsed.get(topic)
        if parsed is None:
            parsed = self._parse(topic)
            if parsed is not None and parsed.kind == "event":  # the hot path: few topics, many messages
                if len(self._parsed) >= _CACHE_LIMIT:
                    self._parsed.clear()
                self._parsed[topic] = parsed
        return parsed

    def _parse(self, topic: str) -> Parsed | None:
        if not topic.startswith(self._root):
            return None
        levels = topic[len(self._root):].split("/")
        head, count = levels[0], len(levels)
        if head == "event" and count == 3:
            return Parsed("event", sender=decode_level(levels[1]), name=decode_level(levels[2]))
        if head == "node":
            if count == 2:
                return Parsed("node", nid=decode_level(levels[1]))
            if count == 4 and levels[2] == "sender":
                return Parsed("birth", nid=decode_level(levels[1]), sender=decode_level(levels[3]))
        elif head == "request" and count == 3:
            return Parsed("request", sender=decode_level(levels[1]), name=decode_level(levels[2]))
        elif head == "reply" and count == 2:
            return Parsed("reply", nid=decode_level(levels[1]))
        elif topic == self.rebirth:
            return Parsed("rebirth")
        return None
