"""Text-level helpers of the bridge config (pure): templates, MQTT filter and topic checks,
HOST:PORT / URL / prefix checks, and the line numbers of TOML tables and keys.

:mod:`bridge.config` re-exports the public ones (:class:`Placeholder`, :data:`Template`,
:func:`check_filter`, :func:`parse_template`, :func:`template_text`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Placeholder",
    "Template",
    "TomlLines",
    "check_address",
    "check_filter",
    "check_prefix",
    "check_topic_text",
    "check_url",
    "parse_template",
    "template_text",
]


@dataclass(frozen=True)
class Placeholder:
    """A ``{name}`` in a template: ``"1"``..``"n"``, ``"#"``, ``"sender"`` or ``"event"``."""

    name: str


#: A parsed template: literal text and placeholders, in order.
Template = tuple[str | Placeholder, ...]


# -- topics and templates --------------------------------------------------------------------------


def check_filter(topic_filter: str) -> str | None:
    """Return why ``topic_filter`` is not a valid MQTT subscription filter, or ``None`` when it is."""
    if not topic_filter:
        return "it is empty"
    if "\x00" in topic_filter:
        return "it holds a NUL character"
    if len(topic_filter.encode("utf-8", "surrogatepass")) > 65535:
        return "it is longer than 65535 bytes"
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "'#' must be the whole last level"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


def check_topic_text(text: str) -> str | None:
    """Return why literal ``text`` cannot be part of an MQTT topic name, or ``None`` when it can."""
    if "+" in text or "#" in text:
        return "a topic name cannot hold '+' or '#'"
    if "\x00" in text:
        return "a topic name cannot hold a NUL character"
    return None


_TEMPLATE_PART = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def parse_template(text: str, allowed: Callable[[str], str | None]) -> Template:
    """Split ``text`` into literals and placeholders; ``allowed(name)`` says why a name is refused, or ``None``.

    Raises:
        ValueError: a lone brace or a placeholder ``allowed`` refuses.
    """
    parts: list[str | Placeholder] = []
    literal: list[str] = []
    pos = 0
    for match in _TEMPLATE_PART.finditer(text):
        literal.append(text[pos:match.start()])
        pos = match.end()
        token = match.group()
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif token in ("{", "}"):
            raise ValueError("lone %r (write %s for a literal brace)" % (token, token * 2))
        else:
            name = match.group(1).strip()
            why = allowed(name)
            if why is not None:
                raise ValueError(why)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Placeholder(name))
    literal.append(text[pos:])
    if "".join(literal):
        parts.append("".join(literal))
    return tuple(p for p in parts if p != "")


def template_text(template: Template) -> str:
    """Write a parsed template back as text (for messages)."""
    return "".join(
        "{%s}" % p.name if isinstance(p, Placeholder) else p.replace("{", "{{").replace("}", "}}") for p in template
    )


# -- line numbers -------------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*(\]\]?)\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_\-]+)\s*[=.]""")


_STRING_OR_COMMENT = re.compile(r"""("(?:[^"\\]|\\.)*"|'[^']*'|#.*)""")


def _depth(text: str) -> int:
    """How many brackets ``text`` leaves open (strings and comments skipped)."""
    bare = _STRING_OR_COMMENT.sub("", text)
    return bare.count("[") + bare.count("{") - bare.count("]") - bare.count("}")


def _unquote_key(key: str) -> str:
    if key[:1] in "\"'":
        return key[1:-1]
    return key


class TomlLines:
    """Line numbers of tables and keys, found by scanning the TOML text."""

    def __init__(self, text: str) -> None:
        self.tables: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int, str], int] = {}
        counts: dict[str, int] = {}
        current = ("", 0)
        in_multiline: str | None = None
        depth = 0  # open brackets of a multi-line array or inline table value
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            if depth > 0:
                depth = max(0, depth + _depth(line))
                continue
            header = _HEADER.match(line)
            if header:
                name = ".".join(_unquote_key(p.strip()) for p in header.group(2).split("."))
                if header.group(1) == "[[":
                    index = counts.get(name, 0)
                    counts[name] = index + 1
                else:
                    index = 0
                current = (name, index)
                self.tables.setdefault(current, number)
                continue
            key = _KEY.match(line)
            if key:
                self.keys.setdefault((current[0], current[1], _unquote_key(key.group(1))), number)
                for quote in ('"""', "'''"):
                    if line.count(quote) % 2 == 1:
                        in_multiline = quote
                if in_multiline is None:
                    depth = max(0, _depth(line[line.index("="):] if "=" in line else ""))

    def table(self, name: str, index: int = 0) -> int | None:
        """The line of the header of the ``index``-th ``name`` table."""
        return self.tables.get((name, index))

    def key(self, name: str, index: int, key: str) -> int | None:
        """The line of ``key`` in the ``index``-th ``name`` table (else the table's header)."""
        found = self.keys.get((name, index, key))
        return found if found is not None else self.table(name, index)


def check_address(text: str) -> str | None:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return "missing ']'"
        host, rest = text[1:end], text[end + 1:]
        if not rest.startswith(":"):
            return "no port"
        port = rest[1:]
    else:
        if text.count(":") != 1:
            return "not HOST:PORT"
        host, port = text.split(":")
    if not host:
        return "no host"
    if not (port.isdigit() and port.isascii()) or not 0 <= int(port) <= 65535:
        return "the port must be a number from 0 to 65535"
    return None


def check_url(url: str) -> str | None:
    match = re.match(r"^(mqtts?)://(?:([^@/]*)@)?([^/@]*)(/.*)?$", url)
    if not match:
        return "not an MQTT URL (mqtt[s]://[user[:pass]@]host[:port][/prefix])"
    for hostport in match.group(3).split(","):  # several: the members of a clustered broker
        why = _check_hostport(hostport)
        if why:
            return why
    path = (match.group(4) or "").strip("/")
    if path:
        return check_prefix(path)
    return None


def _check_hostport(hostport: str) -> str | None:
    if not hostport:
        return "no host"
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return "missing ']'"
        rest = hostport[end + 1:]
        if rest and (not rest.startswith(":") or _bad_port(rest[1:])):
            return "bad port"
    elif ":" in hostport:
        host, port = hostport.rsplit(":", 1)
        if not host or ":" in host:
            return "bad host"
        if _bad_port(port):
            return "the port must be a number from 1 to 65535"
    return None


def _bad_port(port: str) -> bool:
    return not (port.isdigit() and port.isascii()) or not 1 <= int(port) <= 65535


def check_prefix(prefix: str) -> str | None:
    if prefix.startswith("$"):
        return "a prefix must not start with '$'"
    if re.search("[+#\x00-\x1f\x7f-\x9f]", prefix):
        return "a prefix cannot hold '+', '#' or control characters"
    if "" in prefix.split("/"):
        return "a prefix cannot have an empty level"
    return None
