"""Reading one table of the bridge's TOML config: typed getters whose errors name the file, line and key."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from sig import InvalidArgumentError

__all__ = ["ConfigError", "Table"]


class ConfigError(InvalidArgumentError):
    """A mistake in the config file; the message is ``FILE:LINE: what is wrong``."""

    def __init__(self, filename: str, line: int | None, message: str) -> None:
        self.filename = filename
        self.line = line
        self.detail = message
        super().__init__("%s:%s: %s" % (filename, line, message) if line else "%s: %s" % (filename, message))


_TYPE_NAMES = {bool: "a boolean", str: "a string", int: "an integer", float: "a number", list: "a list",
               dict: "a table"}


class Table:
    """One table being read: typed getters that raise :class:`ConfigError` with file, line and key."""

    def __init__(self, reader: Any, name: str, index: int, data: Mapping[str, Any], header: str) -> None:
        self.reader = reader
        self.name = name
        self.index = index
        self.data = data
        self.header = header
        self.line = reader.lines.table(name, index) or 0

    def fail(self, key: str | None, message: str) -> ConfigError:
        line = self.reader.lines.key(self.name, self.index, key) if key else self.line
        where = "%s key '%s'" % (self.header, key) if key else self.header
        return ConfigError(self.reader.filename, line, "%s %s" % (where, message))

    def check_keys(self, known: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = " (did you mean '%s'?)" % close[0] if close else " (known: %s)" % ", ".join(known)
                raise self.fail(key, "is unknown" + hint)

    def get(self, key: str, kind: type, default: Any = None, required: bool = False) -> Any:
        if key not in self.data:
            if required:
                raise self.fail(None, "needs key '%s'" % key)
            return default
        value = self.data[key]
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise self.fail(key, "must be %s, not %r" % (_TYPE_NAMES[kind], value))
        return value

    def text(self, key: str, default: str | None = None, required: bool = False, empty: bool = False) -> Any:
        value = self.get(key, str, default, required)
        if value is not None and not value and not empty:
            raise self.fail(key, "must not be empty")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value: str = self.get(key, str, default)
        if value not in choices:
            raise self.fail(key, "must be one of %s, not %r" % (", ".join(choices), value))
        return value

    def patterns(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list, [])
        for item in value:
            if not isinstance(item, str) or not item:
                raise self.fail(key, "must be a list of non-empty strings (glob patterns), not %r" % (value,))
        return tuple(value)

    def field_path(self, key: str) -> tuple[str, ...] | None:
        value = self.text(key)
        if value is None:
            return None
        path = tuple(value.split("."))
        if "" in path:
            raise self.fail(key, "must be a key or a dotted path of keys such as 'a.b', not %r" % value)
        return path
