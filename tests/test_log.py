"""Logging helpers: LOG_LEVELS, SimpleLogger and setup_logger's destinations."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

import sig

LINE = re.compile(r"^\[sig\]\[\s*\d+\]\[\s*\w+\]\[ *(trace|debug|info|warning|error|critical)\]-")
INFO_LINE = re.compile(r"^\[sig\]\[\s*\d+\]\[\s*\w+\]\[    info\]-")


@pytest.fixture(autouse=True)
def reset_logging() -> Iterator[None]:
    """Leave the "sig" logger exactly as found, whatever a test routed it to."""
    sig_logger = logging.getLogger("sig")
    saved = (list(sig_logger.handlers), sig_logger.level, sig_logger.propagate, sig_logger.disabled)
    try:
        yield
    finally:
        sig.setup_logger(None)
        sig_logger.handlers[:] = saved[0]
        sig_logger.setLevel(saved[1])
        sig_logger.propagate = saved[2]
        sig_logger.disabled = saved[3]


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class DuckLogger:
    """Anything with debug/info/warning/error/critical, as pysig accepted."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def debug(self, text: str) -> None:
        self.lines.append(("debug", text))

    def info(self, text: str) -> None:
        self.lines.append(("info", text))

    def warning(self, text: str) -> None:
        self.lines.append(("warning", text))

    def error(self, text: str) -> None:
        self.lines.append(("error", text))

    def critical(self, text: str) -> None:
        self.lines.append(("critical", text))


def failing_trigger() -> None:
    """Make sig log an error with a traceback (a raising listener)."""
    router = sig.Router()
    sender = router.addSender("s", ["e"])

    def broken(info: dict, data: Any) -> None:
        raise RuntimeError("broken listener")

    router.addListener(broken, "s", "e")
    sender.getSignal("e").trigger(None)


def test_log_levels_values() -> None:
    levels = sig.LOG_LEVELS
    assert levels.LEVEL_TRACE == 5
    assert levels.LEVEL_DEBUG == logging.DEBUG
    assert levels.LEVEL_INFO == logging.INFO
    assert levels.LEVEL_WARNING == logging.WARNING
    assert levels.LEVEL_ERROR == logging.ERROR
    assert levels.LEVEL_CRITICAL == logging.CRITICAL
    assert levels.LEVEL_NONE > logging.CRITICAL
    assert levels.LEVEL_TRACE < levels.LEVEL_DEBUG


def test_sig_loggers_are_children_of_sig(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="sig"):
        sig.Router().addSender("s", ["e"])
    assert caplog.records
    assert all(r.name == "sig" or r.name.startswith("sig.") for r in caplog.records)


def test_setup_logger_with_sig_logger_keeps_propagation(caplog: pytest.LogCaptureFixture) -> None:
    sig_logger = logging.getLogger("sig")
    handlers_before = list(sig_logger.handlers)
    sig.setup_logger(sig_logger)
    assert sig_logger.handlers == handlers_before  # nothing added: records reach it already
    assert sig_logger.propagate
    with caplog.at_level(logging.ERROR):
        failing_trigger()
    assert [r.name for r in caplog.records] == ["sig.event"]
    assert "broken listener" in caplog.text


def test_setup_logger_with_root_logger_is_a_no_op() -> None:
    sig.setup_logger(logging.getLogger())
    sig_logger = logging.getLogger("sig")
    assert sig_logger.propagate
    assert not [h for h in sig_logger.handlers if type(h).__name__ == "_RouteHandler"]


def test_setup_logger_with_foreign_logger(caplog: pytest.LogCaptureFixture) -> None:
    app = logging.getLogger("test_log.app")
    handler = ListHandler()
    app.addHandler(handler)
    app.setLevel(logging.WARNING)
    app.propagate = False
    try:
        sig.setup_logger(app)
        with caplog.at_level(logging.DEBUG):  # root captures everything it gets
            logging.getLogger("sig.router").debug("below the app's level")
            logging.getLogger("sig.router").warning("a warning for the app")
            failing_trigger()
        # routed to the app's logger, not propagated to the root any more
        assert not [r for r in caplog.records if r.name.startswith("sig")]
        messages = [r.getMessage() for r in handler.records]
        assert "a warning for the app" in messages
        assert "below the app's level" not in messages
        errors = [r for r in handler.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is not None
        assert errors[0].name == "sig.event"
    finally:
        app.removeHandler(handler)
        app.setLevel(logging.NOTSET)
        app.propagate = True


def test_simple_logger_direct_line_shape() -> None:
    stream = io.StringIO()
    logger = sig.SimpleLogger(level=sig.LOG_LEVELS.LEVEL_TRACE, stream=stream)
    logger.info("hello")
    logger.trace("deep")
    logger.critical("bad")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert INFO_LINE.match(lines[0]), lines[0]
    assert lines[0].endswith("]-hello")
    assert "test_simple_logger_direct_line_shape" in lines[0]  # the calling function
    assert re.match(r"^\[sig\]\[\s*\d+\]\[\s*\w+\]\[   trace\]-deep$", lines[1]), lines[1]
    assert re.match(r"^\[sig\]\[\s*\d+\]\[\s*\w+\]\[critical\]-bad$", lines[2]), lines[2]


def test_simple_logger_exact_format() -> None:
    stream = io.StringIO()
    logger = sig.SimpleLogger(stream=stream)
    logger.do_print(sig.LOG_LEVELS.LEVEL_WARNING, "text", lineno=42, funcname="fn")
    assert stream.getvalue() == "[sig][  42][                  fn][ warning]-text\n"


def test_simple_logger_level_filter_and_default_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    logger = sig.SimpleLogger(level=sig.LOG_LEVELS.LEVEL_WARNING)
    logger.info("dropped")
    logger.debug("dropped too")
    logger.error("kept")
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].endswith("]-kept")


def test_setup_logger_with_simple_logger() -> None:
    stream = io.StringIO()
    sig.setup_logger(sig.SimpleLogger(level=sig.LOG_LEVELS.LEVEL_INFO, stream=stream))
    logging.getLogger("sig").info("routed info")
    logging.getLogger("sig.router").debug("below info: dropped")
    failing_trigger()
    text = stream.getvalue()
    lines = text.splitlines()
    assert INFO_LINE.match(lines[0]), lines[0]
    assert lines[0].endswith("]-routed info")
    assert "test_setup_logger_with_simple_logger" in lines[0]  # the function that logged
    assert "below info" not in text
    error_lines = [line for line in lines if LINE.match(line) and "[   error]-" in line]
    assert len(error_lines) == 1
    assert "Traceback" in text and "RuntimeError: broken listener" in text  # traceback follows the line


def test_setup_logger_with_simple_logger_at_trace_level() -> None:
    stream = io.StringIO()
    sig.setup_logger(sig.SimpleLogger(level=sig.LOG_LEVELS.LEVEL_TRACE, stream=stream))
    logging.getLogger("sig.test").log(sig.LOG_LEVELS.LEVEL_TRACE, "a trace record")
    sig.Router().addSender("s", ["e"])  # logs at debug
    lines = stream.getvalue().splitlines()
    assert re.match(r"^\[sig\]\[\s*\d+\]\[\s*\w+\]\[   trace\]-a trace record$", lines[0]), lines[0]
    assert any("[   debug]-" in line and "'s'" in line for line in lines[1:])
    assert all(LINE.match(line) for line in lines)


def test_setup_logger_with_duck_typed_object() -> None:
    duck = DuckLogger()
    sig.setup_logger(duck)
    sig_logger = logging.getLogger("sig")
    sig_logger.log(sig.LOG_LEVELS.LEVEL_TRACE, "trace goes to info")  # no trace method: falls back to info
    sig_logger.debug("a debug line")
    sig_logger.warning("a warning line")
    sig_logger.critical("a critical line")
    failing_trigger()
    assert duck.lines[:4] == [
        ("info", "trace goes to info"),
        ("debug", "a debug line"),
        ("warning", "a warning line"),
        ("critical", "a critical line"),
    ]
    errors = [text for level, text in duck.lines if level == "error"]
    assert len(errors) == 1
    assert "broken listener" in errors[0] and "Traceback" in errors[0]


def test_setup_logger_with_duck_typed_trace_method() -> None:
    class TraceDuck(DuckLogger):
        def trace(self, text: str) -> None:
            self.lines.append(("trace", text))

    duck = TraceDuck()
    sig.setup_logger(duck)
    logging.getLogger("sig").log(5, "fine grained")
    assert duck.lines == [("trace", "fine grained")]


def test_broken_log_target_never_breaks_routing(capsys: pytest.CaptureFixture[str]) -> None:
    class Broken(DuckLogger):
        def debug(self, text: str) -> None:
            raise RuntimeError("log target down")

    sig.setup_logger(Broken())
    raise_exceptions = logging.raiseExceptions
    logging.raiseExceptions = False  # handleError stays quiet
    try:
        router = sig.Router()
        sender = router.addSender("s", ["e"])  # logs at debug
        router.removeSender(sender)
    finally:
        logging.raiseExceptions = raise_exceptions
    assert not sender.isConnected()


def test_setup_logger_replaces_previous_destination() -> None:
    first, second = DuckLogger(), DuckLogger()
    sig.setup_logger(first)
    sig.setup_logger(second)
    logging.getLogger("sig").warning("only once")
    assert first.lines == []
    assert second.lines == [("warning", "only once")]
    routes = [h for h in logging.getLogger("sig").handlers if type(h).__name__ == "_RouteHandler"]
    assert len(routes) == 1


def test_setup_logger_none_restores(caplog: pytest.LogCaptureFixture) -> None:
    sig_logger = logging.getLogger("sig")
    handlers_before = list(sig_logger.handlers)
    duck = DuckLogger()
    sig.setup_logger(duck)
    assert not sig_logger.propagate
    sig.setup_logger(None)
    assert sig_logger.handlers == handlers_before
    assert sig_logger.propagate
    assert sig_logger.level == logging.NOTSET
    with caplog.at_level(logging.WARNING):
        sig_logger.warning("back to the root")
    assert duck.lines == []
    assert "back to the root" in caplog.text
