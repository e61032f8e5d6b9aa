"""The worker threads that run ``request`` calls off a connection's reader.

Lighter than ``concurrent.futures.ThreadPoolExecutor``, which makes a Future and a work item
per task and takes a semaphore's Condition to find an idle thread: here a task is one tuple on
a ``SimpleQueue`` and one small lock counts the idle threads. Nobody waits for a task's result
(its reply is sent by the task itself).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

__all__ = ["WorkerPool"]

logger = logging.getLogger("sig.pool")


def _stop() -> None:
    """Ends the worker thread that takes it (:meth:`WorkerPool.shutdown`)."""


_STOP: tuple[Callable[..., Any], tuple[Any, ...]] = (_stop, ())


class WorkerPool:
    """Runs ``fn(*args)`` on up to ``max_workers`` daemon threads, each started when a task finds none idle.

    A task waits only when ``max_workers`` threads are busy; threads are kept once started.
    """

    def __init__(self, max_workers: int, name: str = "sig-request") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.name = name
        self._tasks: SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]] = SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads that finished a task and will take the next one without another start
        self._threads = 0
        self.closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a worker thread (what it raises is logged).

        Raises:
            RuntimeError: the pool is shut down, or no thread could be started for it (then it does not run).
        """
        if self.closed:
            raise RuntimeError("the worker pool %s is shut down" % self.name)
        with self._lock:
            if self._idle:
                self._idle -= 1
                start = False
            else:
                start = self._threads < self.max_workers
                if start:
                    self._threads += 1
                    number = self._threads
        if start:
            try:
                threading.Thread(target=self._work, name="%s_%d" % (self.name, number - 1), daemon=True).start()
            except RuntimeError:  # no thread can be started: the task is not taken
                with self._lock:
                    self._threads -= 1
                raise
        self._tasks.put((fn, args))

    def shutdown(self) -> None:
        """Take no more tasks, drop those waiting, and let the threads end (after their task, if busy)."""
        with self._lock:
            self.closed = True
            threads = self._threads
        try:
            while True:
                self._tasks.get_nowait()
        except Empty:
            pass
        for _ in range(threads):
            self._tasks.put(_STOP)

    @property
    def waiting(self) -> int:
        """How many tasks wait for a thread (not counting those running)."""
        return self._tasks.qsize()

    @property
    def threads(self) -> int:
        """How many worker threads were started."""
        return self._threads

    def _work(self) -> None:
        tasks, lock = self._tasks, self._lock
        while True:
            fn, args = tasks.get()
            if fn is _stop:
                return
            try:
                fn(*args)
            except BaseException:
                logger.exception("task %r failed", fn)
            del fn, args
            with lock:
                self._idle += 1
