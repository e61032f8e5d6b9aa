"""The bounded buffer of what waits for a connection: oldest dropped first, drops counted and told.

Both clients keep one: the ClientRouter holds signals while its server is away (TCP,
serial, local), the MQTT node holds events while its broker is away. A plain object,
without a lock of its own: its owner already holds one around the decisions the
buffer is part of.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from ._errors import InvalidArgumentError
from ._log import worth_logging

__all__ = ["DropOldestBuffer"]

T = TypeVar("T")


class DropOldestBuffer(Generic[T]):
    """A FIFO of at most ``size`` items; when full, :meth:`append` drops the oldest one.

    Args:
        size: the most items kept (10,000 by default in sig's clients).
        what: what an item is, for the log line (``"signal"``, ``"event"``).
        logger: where the drops are told: the 1st, 10th, 100th, then every 1,000th.

    Attributes:
        dropped: items dropped since the buffer was made.
    """

    def __init__(self, size: int, what: str = "message", logger: logging.Logger | None = None) -> None:
        if size < 1:
            raise InvalidArgumentError("a buffer holds at least 1 item, not %r" % (size,))
        self.size = size
        self.what = what
        self.dropped = 0
        self._items: deque[T] = deque()
        self._logger = logger or logging.getLogger("sig")

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def append(self, item: T) -> bool:
        """Keep ``item``; return True when the oldest item was dropped to make room."""
        dropped = len(self._items) >= self.size
        if dropped:
            self._items.popleft()
            self.dropped += 1
            if worth_logging(self.dropped):
                self._logger.warning("%s buffer full (%d): dropped the oldest %s (%d dropped so far)",
                                     self.what, self.size, self.what, self.dropped)
        self._items.append(item)
        return dropped

    def take(self) -> list[T]:
        """Remove and return every item, oldest first."""
        items = list(self._items)
        self._items.clear()
        return items

    def put_back(self, items: Iterable[T]) -> None:
        """Return ``items`` (taken earlier, not sent) to the front, in their order."""
        self._items.extendleft(reversed(list(items)))
