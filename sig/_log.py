"""Logging helpers kept from pysig: ``LOG_LEVELS``, ``SimpleLogger``, ``setup_logger``.

sig itself logs through standard module loggers under the ``"sig"`` logger.
:func:`setup_logger` routes those records to another destination: a
:class:`logging.Logger`, a :class:`SimpleLogger`, or any object with
``debug``/``info``/``warning``/``error``/``critical`` methods, as pysig did.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
from typing import Any, ClassVar

__all__ = ["LOG_LEVELS", "SimpleLogger", "setup_logger", "TRACE", "worth_logging"]

#: pysig's ``trace`` level, below ``logging.DEBUG``.
TRACE = 5

_SIG_LOGGER = "sig"


class LOG_LEVELS:
    """Log levels of pysig, with the values of the standard :mod:`logging` levels."""

    LEVEL_TRACE = TRACE
    LEVEL_DEBUG = logging.DEBUG
    LEVEL_INFO = logging.INFO
    LEVEL_WARNING = logging.WARNING
    LEVEL_ERROR = logging.ERROR
    LEVEL_CRITICAL = logging.CRITICAL
    LEVEL_NONE = 100

    #: Level of each name, as ``--log-level`` and config files spell them (the one table of them).
    BY_NAME: ClassVar[dict[str, int]] = {
        "trace": TRACE,
        "debug": logging.DEBUG,
        "info": logging.INFO,
        "warning": logging.WARNING,
        "error": logging.ERROR,
        "critical": logging.CRITICAL,
        "none": 100,
    }
    #: Name of each level that a log line can carry (``none`` is only a threshold).
    LEVEL_NAMES: ClassVar[dict[int, str]] = {level: name for name, level in BY_NAME.items() if name != "none"}


class SimpleLogger:
    """Print log lines in pysig's shape: ``[tag][line][function][level]-text``.

    Args:
        tag: printed first on every line.
        level: lines below this level (one of :class:`LOG_LEVELS`) are dropped.
        stream: where to print; ``sys.stdout`` (looked up at print time) by default.
    """

    def __init__(self, tag: str = "[sig]", level: int = LOG_LEVELS.LEVEL_INFO, stream: Any = None) -> None:
        self.tag = tag
        self.level = level
        self.stream = stream

    def do_print(self, level: int, text: str, lineno: int | None = None, funcname: str | None = None) -> None:
        """Print ``text`` at ``level``; line and function default to the caller's caller."""
        if level < self.level:
            return
        if lineno is None or funcname is None:
            frame = inspect.currentframe()
            caller = frame.f_back.f_back if frame and frame.f_back else None  # skip trace()/info()...
            lineno = caller.f_lineno if caller else 0
            funcname = caller.f_code.co_name if caller else "?"
        level_str = LOG_LEVELS.LEVEL_NAMES.get(level, "")
        line = "%s[%4.4s][%20.40s][%8.8s]-%s" % (self.tag, lineno, funcname, level_str, text)
        print(line, file=self.stream if self.stream is not None else sys.stdout)

    def trace(self, text: str) -> None:
        """Print at trace level."""
        self.do_print(LOG_LEVELS.LEVEL_TRACE, text)

    def debug(self, text: str) -> None:
        """Print at debug level."""
        self.do_print(LOG_LEVELS.LEVEL_DEBUG, text)

    def info(self, text: str) -> None:
        """Print at info level."""
        self.do_print(LOG_LEVELS.LEVEL_INFO, text)

    def warning(self, text: str) -> None:
        """Print at warning level."""
        self.do_print(LOG_LEVELS.LEVEL_WARNING, text)

    def error(self, text: str) -> None:
        """Print at error level."""
        self.do_print(LOG_LEVELS.LEVEL_ERROR, text)

    def critical(self, text: str) -> None:
        """Print at critical level."""
        self.do_print(LOG_LEVELS.LEVEL_CRITICAL, text)


class _RouteHandler(logging.Handler):
    """Hands sig's log records to a pysig-style logger object."""

    def __init__(self, target: Any) -> None:
        super().__init__(logging.NOTSET)
        self.target = target
        self._busy = threading.local()  # a target under "sig" hands records back up: do not loop

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            text = record.getMessage()
            if record.exc_info:
                text = "%s\n%s" % (text, logging.Formatter().formatException(record.exc_info))
            target = self.target
            if isinstance(target, logging.Logger):
                if target.isEnabledFor(record.levelno):
                    target.handle(record)
            elif isinstance(target, SimpleLogger):
                target.do_print(record.levelno, text, lineno=record.lineno, funcname=record.funcName)
            else:
                name = LOG_LEVELS.LEVEL_NAMES.get(record.levelno, "info")
                method = getattr(target, name, None) or target.info
                method(text)
        except Exception:  # a broken log target must never break routing
            self.handleError(record)
        finally:
            self._busy.on = False


def setup_logger(objlogger: Any) -> None:
    """Route sig's log records to ``objlogger``.

    Args:
        objlogger: a :class:`logging.Logger`, a :class:`SimpleLogger`, any object
            with ``debug``/``info``/``warning``/``error``/``critical`` methods, or
            ``None`` to return to the standard behaviour (records propagate to the
            root logger).
    """
    sig_logger = logging.getLogger(_SIG_LOGGER)
    for handler in list(sig_logger.handlers):
        if isinstance(handler, _RouteHandler):
            sig_logger.removeHandler(handler)
    sig_logger.propagate = True
    sig_logger.setLevel(logging.NOTSET)
    if objlogger is None:
        return
    if isinstance(objlogger, logging.Logger):
        name = objlogger.name
        if objlogger is logging.getLogger() or name == _SIG_LOGGER or _SIG_LOGGER.startswith(name + "."):
            return  # records reach it by propagation already
    sig_logger.addHandler(_RouteHandler(objlogger))
    sig_logger.propagate = False
    level = getattr(objlogger, "level", None)
    if isinstance(objlogger, logging.Logger):
        level = objlogger.getEffectiveLevel()
    sig_logger.setLevel(level if isinstance(level, int) and level > 0 else TRACE)


def worth_logging(count: int) -> bool:
    """Tell whether the ``count``-th drop of a kind deserves a log line.

    The 1st, 10th, 100th, then every 1,000th: a burst is told, not flooded.
    """
    return count in (1, 10, 100) or count % 1000 == 0
