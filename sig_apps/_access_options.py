"""Credentials and access control for the ``sig`` command line (no network I/O).

Client subcommands: ``--user NAME`` with the password from ``--password-file FILE``
(its first line) or the ``SIG_PASSWORD`` environment variable, or a token from
``--token-file FILE`` or ``SIG_TOKEN``; never on the command line itself, where
``ps`` would show it. ``sig server --access FILE`` reads a TOML file with ``[auth]``
and ``[[acl]]`` tables (see :func:`sig._access.access_dict`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from sig import AccessControl, access_dict

from .options import CliError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["add_credential_options", "client_credentials", "load_access"]

#: Environment variable holding the password of ``--user``.
PASSWORD_ENV = "SIG_PASSWORD"
#: Environment variable holding a token.
TOKEN_ENV = "SIG_TOKEN"


def add_credential_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--user``, ``--password-file`` and ``--token-file`` to a client subcommand's parser."""
    parser.add_argument("--user", metavar="NAME",
                        help="authenticate as NAME; the password comes from --password-file or $%s" % PASSWORD_ENV)
    parser.add_argument("--password-file", metavar="FILE", help="file whose first line is the password of --user")
    parser.add_argument("--token-file", metavar="FILE",
                        help="authenticate with the token in FILE's first line (or $%s)" % TOKEN_ENV)


def _first_line(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            line = file.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError("cannot read the %s file %s: %s" % (what, path, getattr(exc, "strerror", None) or exc)) from None
    if not line:
        raise CliError("the %s file %s is empty" % (what, path))
    return line


def client_credentials(args: argparse.Namespace) -> dict[str, Any]:
    """Return the keywords of :class:`~sig.carrier.tcpclient.CarrierTCPClient` for the credentials given.

    Raises:
        UsageError: ``--user`` without a password, or a token and a user at once.
    """
    user = getattr(args, "user", None)
    password_file = getattr(args, "password_file", None)
    token_file = getattr(args, "token_file", None)
    if token_file is not None or (user is None and os.environ.get(TOKEN_ENV)):
        if user is not None:
            raise UsageError("give --user (with a password) or a token, not both")
        token = _first_line(token_file, "token") if token_file is not None else os.environ[TOKEN_ENV]
        return {"token": token}
    if user is None:
        if password_file is not None:
            raise UsageError("--password-file needs --user")
        return {}
    if password_file is not None:
        return {"username": user, "password": _first_line(password_file, "password")}
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        raise UsageError("--user needs a password: --password-file FILE or $%s" % PASSWORD_ENV)
    return {"username": user, "password": password}


def load_access(path: str) -> AccessControl:
    """Read ``sig server --access FILE`` (TOML with ``[auth]`` and ``[[acl]]`` tables).

    Raises:
        CliError: the file cannot be read, is not TOML, or is not a valid access configuration.
    """
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise CliError("cannot read --access file %s: %s" % (path, exc.strerror or exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise CliError("--access file %s is not valid TOML: %s" % (path, exc)) from None
    try:
        return AccessControl.from_dict(access_dict(document))
    except ValueError as exc:
        raise CliError("--access file %s: %s" % (path, exc)) from None
