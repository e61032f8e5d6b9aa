"""Helpers shared by ServerRouter and ClientRouter: parameter checks and remote calls."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from ._carrier import Carrier, ClientId
from ._codec import Status, reply_error
from ._errors import InvalidArgumentError, RequestTimeout
from ._ident import Ident, check_ident, check_optional_ident

__all__ = ["param", "ident_param", "remote_call", "response_of"]

_MISSING = object()


def param(params: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
    """Return ``params[name]`` if it has the right type.

    Raises:
        InvalidArgumentError: it is missing (and has no default) or has another type.
    """
    value = params.get(name, default)
    if value is _MISSING:
        raise InvalidArgumentError("missing parameter %r" % name)
    if value is not default and not isinstance(value, kind):
        raise InvalidArgumentError("parameter %r must be %s, not %s" % (name, _kind_name(kind), type(value).__name__))
    return value


def ident_param(params: dict[str, Any], name: str, optional: bool = False) -> Ident | None:
    """Return the identifier ``params[name]`` (``None`` allowed when ``optional``)."""
    if name not in params and not optional:
        raise InvalidArgumentError("missing parameter %r" % name)
    value = params.get(name)
    return check_optional_ident(value, name) if optional else check_ident(value, name)


def remote_call(carrier: Carrier, clientid: ClientId, message: dict[str, Any], timeout: float) -> Any:
    """Send ``message``, wait for the reply and return its response.

    Raises:
        RequestTimeout: no reply in ``timeout`` seconds.
        RemoteError: the far side failed (a ``LookupError`` / ``NameError`` too when it said so).
        CarrierError: the message could not be sent.
    """
    future = carrier.call(clientid, message, timeout)
    try:
        reply = future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise RequestTimeout("no reply to %s in %.1f s" % (message.get("method"), timeout)) from None
    return response_of(reply, str(message.get("method")))


def response_of(reply: Any, what: str) -> Any:
    """Return the response of a ``reply`` to ``what``; raise the :class:`RemoteError` of a failed one."""
    if not isinstance(reply, dict) or reply.get("status") != Status.OK:
        raise reply_error(reply if isinstance(reply, dict) else {"status": None}, what)
    return reply.get("response")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
