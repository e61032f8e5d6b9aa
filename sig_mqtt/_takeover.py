"""Telling a session takeover from an ordinary drop, and when to stop fighting over a client id.

Two MQTT clients with one client id knock each other off: the broker hands the
session to the newer one, the older reconnects at once and takes it back, and so
on, forever, with no event crossing. An MQTT 5 broker says so (DISCONNECT with
reason 0x8E, "Session taken over"); a 3.1.1 broker just closes the socket, so
the only sign is a connection that ends shortly after every CONNACK.

:class:`DropGuard` is the decision, without I/O: the link tells it when a
connection came up and when it ended (time passed in as a number); it answers
with a :class:`Verdict` saying what the drop was and how long to wait before the
next attempt. After ``limit`` short-lived connections in a row it backs off
(doubling, capped, with jitter) instead of fighting; a connection that lives
longer than ``window`` seconds ends the streak. The same back-off serves a broker
that accepts a client and closes it right after CONNACK for another reason (a
clustered broker whose member lost the client's queue).
"""

from __future__ import annotations

from dataclasses import dataclass

from sig import InvalidArgumentError

__all__ = ["SESSION_TAKEN_OVER", "DropGuard", "Verdict"]

#: MQTT 5 DISCONNECT reason code "Session taken over".
SESSION_TAKEN_OVER = 0x8E


@dataclass(frozen=True)
class Verdict:
    """What a dropped connection was.

    Attributes:
        takeover: True when the broker said "Session taken over" (MQTT 5).
        suspected: True when ``streak`` connections in a row ended within the
            window after their CONNACK (the 3.1.1 pattern of a takeover).
        streak: short-lived connections in a row, this one included.
        delay: seconds to wait before reconnecting instead of the usual
            back-off, or None for the usual one.
    """

    takeover: bool
    suspected: bool
    streak: int
    delay: float | None

    def message(self, client_id: str, clustered: bool = False) -> str | None:
        """The log line for this drop, or None when it is an ordinary one.

        ``clustered``: the link has several brokers (members of a cluster), which gives the
        3.1.1 pattern a second likely cause.
        """
        if not (self.takeover or self.suspected):
            return None
        what = ("the broker handed the session of client id %r to another client (session taken over)" % client_id
                if self.takeover else
                "the connection of client id %r ended right after CONNACK %d times in a row: probably another "
                "client with the same id (session takeover)" % (client_id, self.streak))
        if clustered and not self.takeover:
            what += (", or a cluster member that cannot resume our session while the member holding it is down "
                     "(RabbitMQ: a clean session's QoS 1 queue; quorum queues and session_expiry avoid it)")
        advice = ("; give each node its own id (sig-bridge --node-id, node_id in bridge.toml, "
                  "or CarrierMQTTClient(client_id=...))")
        if self.delay is not None:
            return "%s%s; waiting %.0f s before trying again" % (what, advice, self.delay)
        return what + advice


class DropGuard:
    """Counts short-lived connections and decides when to back off.

    Args:
        window: a connection that ends within this many seconds of its CONNACK is short-lived.
        limit: after this many short-lived connections (or takeovers) in a row, back off.
        backoff: the first back-off delay, in seconds; it doubles with each further drop.
        backoff_max: the longest back-off delay.
    """

    def __init__(self, window: float = 3.0, limit: int = 3, backoff: float = 10.0, backoff_max: float = 300.0) -> None:
        if limit < 1:
            raise InvalidArgumentError("limit must be at least 1, not %r" % (limit,))
        self.window = window
        self.limit = limit
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.streak = 0
        self.takeovers = 0  # takeovers the broker reported, in all
        self._up_since: float | None = None

    def connected(self, now: float) -> None:
        """A CONNACK accepted us at ``now``."""
        self._up_since = now

    def dropped(self, now: float, reason_code: int | None, jitter: float = 0.0) -> Verdict:
        """The connection ended at ``now`` with ``reason_code`` (None when the broker gave none).

        Args:
            jitter: a number in [0, 1) that spreads the back-off by up to +25 %, so two
                clients that back off together do not come back together.
        """
        up_since, self._up_since = self._up_since, None
        takeover = reason_code == SESSION_TAKEN_OVER
        short = up_since is not None and now - up_since < self.window
        if takeover:
            self.takeovers += 1
        if takeover or short:
            self.streak += 1
        else:
            self.streak = 0
        suspected = not takeover and short and self.streak >= self.limit
        delay = None
        if self.streak >= self.limit:
            delay = min(self.backoff * 2 ** (self.streak - self.limit), self.backoff_max)
            delay *= 1.0 + 0.25 * min(max(jitter, 0.0), 1.0)
        return Verdict(takeover, suspected, self.streak, delay)
