"""Which broker to try next: failover among the members of a clustered broker.

A node may be given several broker addresses (``connect([("h1", 1883), ("h2", 1883)])``,
``mqtt://h1:1883,h2:1883/sig``, repeated ``sig-bridge --mqtt``). :class:`Failover`
is the decision, without I/O: the link tells it when a connection came up and when
an attempt failed or an established connection ended; it answers with a
:class:`Step`, the address to try next and how long to wait first.

The policy: after a failure, move on to the next address in the list (round
robin), waiting ``backoff_min`` seconds; once every address failed in a row
(a full round without a connection), wait longer: ``backoff_min`` doubled per
failed round, capped at ``backoff_max``, spread by up to +25 % of jitter so
nodes knocked off together do not come back together. A connection that came up
ends the streak. With one address this is an ordinary reconnect back-off
(``backoff_min``, doubling, capped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sig import ArgumentTypeError, InvalidArgumentError

__all__ = ["Failover", "Step", "broker_list"]

Address = tuple[str, int]


@dataclass(frozen=True)
class Step:
    """What to do after a failure.

    Attributes:
        address: the broker to try next.
        delay: seconds to wait before trying it.
        round_done: True when every address failed since the last connection
            (a first ``connect()`` may stop waiting then).
    """

    address: Address
    delay: float
    round_done: bool


class Failover:
    """Round robin over broker addresses, with back-off after each full round of failures.

    Args:
        addresses: the brokers, in order of preference (the first is tried first).
        backoff_min: seconds before trying the next address.
        backoff_max: the longest wait after full rounds of failures.
    """

    def __init__(self, addresses: Sequence[Address], backoff_min: float = 0.25, backoff_max: float = 5.0) -> None:
        if not addresses:
            raise InvalidArgumentError("at least one broker address is needed")
        self.addresses = [(str(host), int(port)) for host, port in addresses]
        self.backoff_min = backoff_min
        self.backoff_max = max(backoff_max, backoff_min)
        self.index = 0
        self.failures = 0  # failures in a row since the last connection
        self.moves = 0  # how many times we moved to another address, in all

    @property
    def current(self) -> Address:
        """The address tried now (or connected to)."""
        return self.addresses[self.index]

    def connected(self) -> None:
        """The current address accepted us: the streak ends, the next failure starts a new round."""
        self.failures = 0

    def failed(self, jitter: float = 0.0) -> Step:
        """The attempt on the current address failed, or its connection ended.

        Args:
            jitter: a number in [0, 1) that spreads the wait after a full round by up to +25 %.
        """
        self.failures += 1
        count = len(self.addresses)
        if count > 1:
            self.index = (self.index + 1) % count
            self.moves += 1
        round_done = self.failures % count == 0
        if round_done:
            rounds = self.failures // count - 1
            delay = min(self.backoff_min * 2 ** min(rounds, 30), self.backoff_max)
            delay *= 1.0 + 0.25 * min(max(jitter, 0.0), 1.0)
        else:
            delay = self.backoff_min
        return Step(self.current, delay, round_done)


def broker_list(host: Any, port: int | None, default: Sequence[Address]) -> list[Address]:
    """The broker addresses of a ``connect(host, port)`` / ``connect([(host, port), ...])`` call
    (or ``connect((host, port))``).

    ``host`` None means ``default`` (with ``port`` replacing the first one's port when given).

    Raises:
        ArgumentTypeError: ``host`` is neither a string nor a list of ``(host, port)``.
        InvalidArgumentError: an empty list, or a port given with a list.
    """
    if host is None:
        addresses = list(default) or [("127.0.0.1", 1883)]
        if port:
            addresses[0] = (addresses[0][0], port)
        return addresses
    if isinstance(host, str):
        return [(host, port or (default[0][1] if default else 1883))]
    if isinstance(host, tuple) and len(host) == 2 and isinstance(host[0], str) and isinstance(host[1], int):
        host = [host]  # one (host, port)
    if port is not None:
        raise InvalidArgumentError("give the ports inside the list of brokers, not as port=")
    try:
        addresses = [(str(item[0]), int(item[1])) for item in host]
    except (TypeError, ValueError, IndexError):
        raise ArgumentTypeError("brokers must be a host name or a list of (host, port), not %r" % (host,)) from None
    if not addresses:
        raise InvalidArgumentError("the list of brokers is empty")
    return addresses
