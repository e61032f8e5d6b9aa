"""The exception tree of sig.

Every error sig raises is a :class:`SigError` and, where pysig 0.7.3 users
already catch a built-in type, also that built-in type: an unknown request
method is a :class:`LookupError`, an unknown or disconnected sender a
:class:`NameError`, a timeout a :class:`TimeoutError`, a bad argument a
:class:`ValueError` or :class:`TypeError`.
"""

from __future__ import annotations

__all__ = [
    "SigError",
    "InvalidArgumentError",
    "InvalidIdentifierError",
    "UnknownSenderError",
    "SenderConnectedError",
    "UnknownEventError",
    "UnknownMethodError",
    "NotRegisteredError",
    "ProtocolError",
    "CarrierError",
    "RequestTimeout",
    "RemoteError",
    "RemoteLookupError",
    "RemoteNameError",
    "RemoteTimeoutError",
    "AccessDeniedError",
    "RemoteAccessError",
    "LimitExceededError",
]


class SigError(Exception):
    """Base class of every exception raised by sig."""


class InvalidArgumentError(SigError, ValueError):
    """An argument has the right type but a value sig cannot use."""


class InvalidIdentifierError(SigError, TypeError):
    """A sender, event or method identifier is not a str, int or float."""


class UnknownSenderError(SigError, NameError):
    """The sender is not known to the router, or is not connected."""


class SenderConnectedError(SigError, NameError):
    """A sender of that name is already connected."""


class UnknownEventError(SigError, LookupError):
    """The sender does not declare that event."""


class UnknownMethodError(SigError, LookupError):
    """The sender has no handler for that request method."""


class NotRegisteredError(SigError, LookupError):
    """The listener is not registered where it was asked to be removed from."""


class ArgumentTypeError(SigError, TypeError):
    """An argument (other than an identifier) has a type sig cannot use."""


class StateError(SigError, RuntimeError):
    """The object is not in a state that allows the call (not attached yet, attached already, ...)."""


class MissingExtraError(SigError, ImportError):
    """An optional part is not installed; the message names the extra to install (``sig[mqtt]``, ...)."""


class ProtocolError(SigError, ValueError):
    """A peer sent a frame or message that breaks the wire protocol."""


class CarrierError(SigError, ConnectionError):
    """The carrier cannot move the message (not connected, peer gone, ...)."""


class AccessDeniedError(SigError, PermissionError):
    """Refused by authentication or the access control list (pysig status ``-4`` on the wire)."""


class LimitExceededError(SigError, ValueError):
    """A client went over a limit of the server (registrations, pending requests, payload size)."""


class RequestTimeout(SigError, TimeoutError):
    """No reply arrived in time."""


class RemoteError(SigError):
    """The far side reported a failure.

    Attributes:
        status: the pysig status code of the reply (``-1`` unknown method,
            ``-2`` the method raised, ``-3`` no method field, ``-4`` refused).
        exception: the exception text the far side sent, if any.
        error_type: the name of the built-in exception family the far side
            reported (``"LookupError"``, ``"NameError"`` ...), if it said so.
    """

    def __init__(
        self, message: str, status: int, exception: str | None = None, error_type: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.exception = exception
        self.error_type = error_type


class RemoteLookupError(RemoteError, LookupError):
    """The far side failed with a :class:`LookupError` (e.g. unknown method)."""


class RemoteNameError(RemoteError, NameError):
    """The far side failed with a :class:`NameError` (e.g. unknown sender)."""


class RemoteTimeoutError(RemoteError, TimeoutError):
    """The far side timed out (e.g. the server waited in vain for the sender's client)."""


class RemoteAccessError(RemoteError, AccessDeniedError):
    """The far side refused the call: authentication failed or required, or the ACL forbids it (status -4)."""
