"""The one drop-oldest buffer of sig's clients (ClientRouter signals, MQTT node events), without I/O."""

from __future__ import annotations

import logging

import pytest

import sig


def test_keeps_the_newest_and_counts_the_dropped(caplog: pytest.LogCaptureFixture) -> None:
    buffer: sig.DropOldestBuffer[int] = sig.DropOldestBuffer(3, "event", logging.getLogger("sig.test"))
    with caplog.at_level(logging.WARNING, "sig.test"):
        dropped = [buffer.append(n) for n in range(1, 1006)]
    assert dropped[:3] == [False, False, False] and all(dropped[3:])
    assert list(buffer) == [1003, 1004, 1005] and buffer.dropped == 1002
    told = [r.getMessage() for r in caplog.records]
    assert len(told) == 4  # the 1st, 10th, 100th and 1,000th drop: told, not flooded
    assert told[0] == "event buffer full (3): dropped the oldest event (1 dropped so far)"


def test_take_and_put_back_keep_the_order() -> None:
    buffer: sig.DropOldestBuffer[str] = sig.DropOldestBuffer(10)
    for item in "abcd":
        buffer.append(item)
    taken = buffer.take()
    assert taken == ["a", "b", "c", "d"] and len(buffer) == 0
    buffer.append("e")
    buffer.put_back(taken[2:])  # c and d were not sent: they go before e
    assert list(buffer) == ["c", "d", "e"]


def test_a_buffer_holds_at_least_one_item() -> None:
    with pytest.raises(ValueError):
        sig.DropOldestBuffer(0)
