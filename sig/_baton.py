"""Which thread reads a connection: the reader may pass reading on to a standby thread.

A request a connection reads must not run on the thread that reads (its handler may wait for a
reply that thread has to read), so it goes to a worker: one thread wake-up on the way of every
request, and on a machine with idle CPUs the slowest step of the request's hop. Instead, the
reader can pass reading on to a standby thread of the same connection and run the request
itself: the standby's wake-up is then off the request's way (it only has to be reading again
before the next message comes). Once the request ran, its thread is the standby.

:class:`Baton` is that hand-off, with no I/O: the reader :meth:`claim`\\ s the standby, then
:meth:`passes <pass_on>` reading to it; the standby :meth:`wait`\\ s.
"""

from __future__ import annotations

import threading

__all__ = ["Baton"]


class Baton:
    """The hand-off of reading between a connection's reader and its (one) standby thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._standby = False  # a thread waits in wait() and nobody claimed it
        self._passed = False  # reading was passed on: the waiting thread reads now
        self._closed = False

    @property
    def standby(self) -> bool:
        """Whether a standby thread waits, unclaimed."""
        return self._standby

    def claim(self) -> bool:
        """The reader: reserve the standby thread (True), which then waits for :meth:`pass_on`."""
        with self._cond:
            if not self._standby or self._closed:
                return False
            self._standby = False
            return True

    def pass_on(self) -> None:
        """The reader: the claimed standby reads from now on (call after :meth:`claim` returned True)."""
        with self._cond:
            self._passed = True
            self._cond.notify()

    def wait(self) -> bool:
        """The standby: wait until reading is passed on to this thread (True) or :meth:`close` (False)."""
        with self._cond:
            self._standby = True
            while not self._passed:
                if self._closed:
                    self._standby = False
                    return False
                self._cond.wait()
            self._passed = False
            return True

    def close(self) -> None:
        """End the wait of the standby thread (the connection closed)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
