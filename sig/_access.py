"""Authentication and access control for a :class:`~sig.ServerRouter` (pure: no I/O).

    access = sig.AccessControl.from_dict({
        "anonymous": False,
        "users": {"kitchen": {"password": "s3cret", "token": None}},
        "acl": [{"user": "kitchen", "senders": ["kitchen/*"], "listen": ["*"], "request": ["lamp*"]}],
    })
    router = sig.ServerRouter(CarrierTCPServer(), access=access)

A client authenticates with the RPC method ``auth`` (params ``{"user", "password"}``
or ``{"token"}``) before any other method but ``get_version``; without it the
client is *anonymous*, admitted only when ``anonymous`` is true (which keeps
pysig 0.7.3 clients working).

ACL entries grant, per principal, glob patterns (:func:`fnmatch.fnmatchcase`,
case-sensitive) of sender names it may register (``senders``), listen to
(``listen``) and send requests to (``request``). An entry's ``user`` is a user
name, ``"*"`` (every authenticated user) or ``"anonymous"`` (clients that did not
authenticate; ``"*"`` does not include them). What a principal may do is the
union of its entries. With no entries at all, every admitted client may do
everything. Listening to any sender (``sender=None``, a ``#channel`` of every
sender included) needs a pattern that matches every name: ``"*"``.

Secrets are compared with :func:`hmac.compare_digest` and never logged nor shown
in a ``repr``.
"""

from __future__ import annotations

import fnmatch
import hmac
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ._errors import AccessDeniedError, InvalidArgumentError

__all__ = ["AccessControl", "ANONYMOUS", "EVERYONE", "RIGHTS", "access_dict"]

logger = logging.getLogger("sig.access")

#: The ACL ``user`` of clients that did not authenticate.
ANONYMOUS = "anonymous"
#: The ACL ``user`` that stands for every authenticated user.
EVERYONE = "*"
#: The rights an ACL entry grants: register senders, listen to senders, request senders.
RIGHTS = ("senders", "listen", "request")

_VERBS = {"senders": "register", "listen": "listen to", "request": "send requests to"}
_DUMMY = b"\0" * 32  # compared against when the user is unknown, so timing says nothing


def _secret(value: Any, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError("%s must be a non-empty string or None" % where)
    return value.encode("utf-8")


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidArgumentError("%s must be a list of glob patterns" % where)
    patterns = tuple(value)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise InvalidArgumentError("%s: every pattern must be a non-empty string, not %r" % (where, pattern))
    return patterns


def _name(ident: Any) -> str:
    """The text an identifier is matched as (an integral float as its int: 1.0 == 1)."""
    if isinstance(ident, float) and ident.is_integer():
        return str(int(ident))
    return ident if isinstance(ident, str) else str(ident)


class _Entry:
    __slots__ = ("user", "rights")

    def __init__(self, user: str, rights: dict[str, tuple[str, ...]]) -> None:
        self.user = user
        self.rights = rights


class AccessControl:
    """Who may connect to a :class:`~sig.ServerRouter`, and what each client may do.

    Args:
        anonymous: admit clients that do not authenticate (pysig 0.7.3 clients cannot).
        users: ``{name: {"password": str | None, "token": str | None}}``.
        acl: ``[{"user": name | "*" | "anonymous", "senders": [globs],
            "listen": [globs], "request": [globs]}]``; none: admitted clients may do everything.

    Raises:
        ValueError: the configuration is malformed (the message says where).
    """

    def __init__(
        self,
        anonymous: bool = False,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        acl: Iterable[Mapping[str, Any]] | None = None,
    ) -> None:
        if not isinstance(anonymous, bool):
            raise InvalidArgumentError("anonymous must be true or false, not %r" % (anonymous,))
        self.anonymous = anonymous
        self._passwords: dict[str, bytes] = {}
        self._tokens: list[tuple[bytes, str]] = []
        for name, entry in (users or {}).items():
            where = "user %r" % (name,)
            if not isinstance(name, str) or not name or name in (ANONYMOUS, EVERYONE):
                raise InvalidArgumentError("bad user name %r (not empty, not %r, not %r)" % (name, ANONYMOUS, EVERYONE))
            if not isinstance(entry, Mapping):
                raise InvalidArgumentError("%s must be a table with password and/or token" % where)
            unknown = set(entry) - {"password", "token", "name"}
            if unknown:
                raise InvalidArgumentError("%s: unknown key(s) %s" % (where, ", ".join(sorted(map(str, unknown)))))
            password = _secret(entry.get("password"), "%s: password" % where)
            token = _secret(entry.get("token"), "%s: token" % where)
            if password is None and token is None:
                raise InvalidArgumentError("%s has neither a password nor a token" % where)
            if password is not None:
                self._passwords[name] = password
            if token is not None:
                self._tokens.append((token, name))
        self._entries: list[_Entry] = []
        for index, item in enumerate(acl or ()):
            where = "acl entry %d" % (index + 1)
            if not isinstance(item, Mapping):
                raise InvalidArgumentError("%s must be a table" % where)
            unknown = set(item) - {"user", *RIGHTS}
            if unknown:
                raise InvalidArgumentError("%s: unknown key(s) %s" % (where, ", ".join(sorted(map(str, unknown)))))
            user = item.get("user")
            if not isinstance(user, str) or not user:
                raise InvalidArgumentError("%s needs a user (a name, %r or %r)" % (where, EVERYONE, ANONYMOUS))
            rights = {right: _patterns(item.get(right), "%s: %s" % (where, right)) for right in RIGHTS}
            self._entries.append(_Entry(user, rights))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccessControl:
        """Build from plain data: ``{"anonymous": bool, "users": {...}, "acl": [...]}`` (e.g. parsed TOML).

        Raises:
            ValueError: the configuration is malformed.
        """
        if not isinstance(data, Mapping):
            raise InvalidArgumentError("the access configuration must be a table")
        unknown = set(data) - {"anonymous", "users", "acl"}
        if unknown:
            raise InvalidArgumentError("access configuration: unknown key(s) %s" % ", ".join(sorted(map(str, unknown))))
        users = data.get("users")
        if users is not None and not isinstance(users, Mapping):
            raise InvalidArgumentError("users must be a table {name: {password, token}}")
        acl = data.get("acl")
        if acl is not None and (isinstance(acl, (str, Mapping)) or not isinstance(acl, Iterable)):
            raise InvalidArgumentError("acl must be a list of tables")
        return cls(anonymous=data.get("anonymous", False), users=users, acl=acl)

    @property
    def users(self) -> list[str]:
        """The names of the users that can authenticate."""
        return sorted(set(self._passwords) | {name for _, name in self._tokens})

    def __repr__(self) -> str:
        return "<AccessControl anonymous=%s users=%d acl=%d>" % (self.anonymous, len(self.users), len(self._entries))

    # -- authentication ------------------------------------------------------------------

    def authenticate(self, params: Mapping[str, Any]) -> str:
        """Check the params of an ``auth`` call; return the user name.

        Raises:
            AccessDeniedError: unknown user, wrong password or token, or malformed params
                (the message never says which secret was wrong).
        """
        token = params.get("token")
        if token is not None:
            if not isinstance(token, str):
                raise AccessDeniedError("authentication failed: token must be a string")
            given = token.encode("utf-8")
            found = None
            for secret, name in self._tokens:  # every one, so timing says nothing
                if hmac.compare_digest(secret, given) and found is None:
                    found = name
            if found is None:
                raise AccessDeniedError("authentication failed: unknown token")
            return found
        user, password = params.get("user"), params.get("password")
        if not isinstance(user, str) or not isinstance(password, str):
            raise AccessDeniedError('authentication failed: auth needs {"user", "password"} or {"token"}')
        expected = self._passwords.get(user)
        matches = hmac.compare_digest(expected if expected is not None else _DUMMY, password.encode("utf-8"))
        if expected is None or not matches:
            raise AccessDeniedError("authentication failed for user %r: wrong user name or password" % user)
        return user

    # -- authorization --------------------------------------------------------------------

    def principal(self, user: str | None) -> str:
        """The ACL name of a client: its user name, or ``"anonymous"``."""
        return ANONYMOUS if user is None else user

    def _patterns_of(self, user: str | None, right: str) -> list[str]:
        patterns: list[str] = []
        for entry in self._entries:
            if entry.user == self.principal(user) or (user is not None and entry.user == EVERYONE):
                patterns.extend(entry.rights[right])
        return patterns

    def allowed(self, user: str | None, right: str, sender: Any) -> bool:
        """Tell whether ``user`` (``None``: anonymous) has ``right`` on ``sender`` (``None``: any sender)."""
        if right not in RIGHTS:
            raise InvalidArgumentError("unknown right %r (one of %s)" % (right, ", ".join(RIGHTS)))
        if not self._entries:
            return True
        patterns = self._patterns_of(user, right)
        if sender is None:
            return any(pattern.strip("*") == "" for pattern in patterns)
        name = _name(sender)
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)

    def check(self, user: str | None, right: str, sender: Any) -> None:
        """Raise :class:`~sig.AccessDeniedError` unless :meth:`allowed`."""
        if not self.allowed(user, right, sender):
            who = "anonymous clients" if user is None else "user %r" % (user,)
            target = "any sender" if sender is None else "sender %r" % (sender,)
            raise AccessDeniedError("access denied: %s may not %s %s" % (who, _VERBS[right], target))

    @property
    def has_acl(self) -> bool:
        """Whether there are ACL entries (else admitted clients may do everything)."""
        return bool(self._entries)


def access_dict(document: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a TOML access document into the plain shape :meth:`AccessControl.from_dict` takes.

    The document has an ``[auth]`` table (``anonymous = true``, users as ``[[auth.users]]``
    tables with ``name``, ``password``, ``token``, or as ``[auth.users.NAME]`` tables) and
    ``[[acl]]`` tables (``user``, ``senders``, ``listen``, ``request``); other top-level
    tables are ignored (the file may be a larger config).

    Raises:
        ValueError: the document is malformed (the message says where).
    """
    auth = document.get("auth", {})
    if not isinstance(auth, Mapping):
        raise InvalidArgumentError("[auth] must be a table")
    unknown = set(auth) - {"anonymous", "users"}
    if unknown:
        raise InvalidArgumentError("[auth]: unknown key(s) %s" % ", ".join(sorted(map(str, unknown))))
    users = auth.get("users", {})
    if isinstance(users, list):
        table: dict[str, Any] = {}
        for index, entry in enumerate(users):
            name = entry.get("name") if isinstance(entry, Mapping) else None
            if not isinstance(name, str) or not name:
                raise InvalidArgumentError("[[auth.users]] number %d needs a name" % (index + 1))
            if name in table:
                raise InvalidArgumentError("[[auth.users]]: user %r is given twice" % name)
            table[name] = {key: value for key, value in entry.items() if key != "name"}
        users = table
    return {"anonymous": auth.get("anonymous", False), "users": users, "acl": document.get("acl", [])}
