"""sig: pysig's event dispatching in modern Python 3.

Named *senders* declare *events*; *listeners* subscribe to one event of one
sender, to every event of a sender, to every event of every sender, or to a
``#channel`` event of any sender; ``#connect`` / ``#disconnect`` tell who is
online; senders answer *requests*.

    >>> import sig
    >>> router = sig.Router()
    >>> sender = router.addSender("my_sender", ["my_event_1", "my_event_2"])
    >>> router.addListener(lambda info, data: print(info["event"], data), "my_sender", "my_event_1")
    >>> sender.getSignal("my_event_1").trigger({"info1": "something"})
    my_event_1 {'info1': 'something'}
"""

from __future__ import annotations

from ._access import AccessControl
from ._access import access_dict
from ._carrier import Carrier
from ._carrier import ClientId
from ._carrier import log_failed_post
from ._client import ClientRouter
from ._codec import Status
from ._codec import make_reply
from ._codec import reply_error
from ._json import compact_encoder
from ._pool import WorkerPool
from ._errors import AccessDeniedError
from ._errors import ArgumentTypeError
from ._errors import CarrierError
from ._errors import InvalidArgumentError
from ._errors import InvalidIdentifierError
from ._errors import LimitExceededError
from ._errors import MissingExtraError
from ._errors import NotRegisteredError
from ._errors import ProtocolError
from ._errors import RemoteAccessError
from ._errors import RemoteError
from ._errors import RemoteLookupError
from ._errors import RemoteNameError
from ._errors import RemoteTimeoutError
from ._errors import RequestTimeout
from ._errors import SenderConnectedError
from ._errors import SigError
from ._errors import StateError
from ._errors import UnknownEventError
from ._errors import UnknownMethodError
from ._errors import UnknownSenderError
from ._event import Event
from ._event import Signal
from ._ident import BUILTIN_EVENTS
from ._ident import CHANNEL_DECORATOR
from ._ident import EVENT_CONNECT
from ._ident import EVENT_DISCONNECT
from ._ident import Ident
from ._ident import is_channel
from ._log import LOG_LEVELS
from ._log import SimpleLogger
from ._log import setup_logger
from ._log import worth_logging
from ._outbox import DropOldestBuffer
from ._router import Router
from ._sender import Sender
from ._server import ServerRouter

#: The version of sig.
VERSION = "0.1.0"
__version__ = VERSION

__all__ = [
    "VERSION",
    "EVENT_CONNECT",
    "EVENT_DISCONNECT",
    "CHANNEL_DECORATOR",
    "LOG_LEVELS",
    "SimpleLogger",
    "setup_logger",
    "Router",
    "ServerRouter",
    "ClientRouter",
    "Carrier",
    "Sender",
    "Event",
    "Signal",
    "SigError",
    "InvalidArgumentError",
    "InvalidIdentifierError",
    "ArgumentTypeError",
    "StateError",
    "MissingExtraError",
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
    "RemoteAccessError",
    "AccessDeniedError",
    "LimitExceededError",
    "AccessControl",
    "access_dict",
    # for the layers above (sig_mqtt, the applications) and custom carriers
    "BUILTIN_EVENTS",
    "Ident",
    "is_channel",
    "ClientId",
    "log_failed_post",
    "Status",
    "make_reply",
    "reply_error",
    "compact_encoder",
    "WorkerPool",
    "worth_logging",
    "DropOldestBuffer",
]
