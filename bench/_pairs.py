"""Paired rounds: sig and its raw peer measured in turn, one ratio per pair, the goal judged on the median.

A benchmark runs raw and sig alternately (raw first in odd rounds, sig first in even ones, so that
neither always gets the warmer or the quieter slot), adds each round's two figures to a :class:`Row`,
and prints :func:`table`: per row the medians and ranges of raw and sig, every pair's sig/raw ratio,
their median and range, and the goal marked ``met`` or ``MISSED``. Shared by bench/mqtt.py,
bench/bridge.py and bench/tcp.py (issue 13's table).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from _children import verdict


def order(round_: int) -> tuple[str, str]:
    """Which kind runs first in this round (1-based): raw in odd rounds, sig in even ones."""
    return ("raw", "sig") if round_ % 2 else ("sig", "raw")


def spread(values: list[float], fmt: str) -> str:
    """``median (min-max)`` of ``values`` with ``fmt``."""
    if not values:
        return "-"
    return "%s (%s-%s)" % (fmt % statistics.median(values), fmt % min(values), fmt % max(values))


class Row:
    """One row of the table: pairs of (raw, sig) figures and the goal on their ratios.

    Args:
        label: what is measured, e.g. ``"events/s QoS 0"``.
        goal: the goal as text, e.g. ``">= 1.0x"``; empty: a row for information, not judged.
        met: judges the row from the median ratio and the sig figures (e.g. ``lambda r, s: r >= 1.0``).
        fmt: how to print one figure.
        extra: a callable giving more text for the verdict (e.g. events lost).
    """

    def __init__(self, label: str, goal: str, met: Callable[[float, list[float]], bool], fmt: str = "%.0f",
                 extra: Callable[[], str] | None = None) -> None:
        self.label = label
        self.goal = goal
        self.met = met
        self.fmt = fmt
        self.extra = extra
        self.raw: list[float] = []
        self.sig: list[float] = []

    def add(self, raw: float | None, sig: float) -> None:
        """One round's figures (``raw`` None: a row without a raw peer)."""
        if raw is not None:
            self.raw.append(raw)
        self.sig.append(sig)

    def ratios(self) -> list[float]:
        return [s / r for r, s in zip(self.raw, self.sig, strict=False) if r]

    def verdict(self) -> tuple[bool, str]:
        ratios = self.ratios()
        median = statistics.median(ratios) if ratios else 0.0
        if not self.goal:
            return True, "(no goal: where the time goes)"
        ok = bool(self.sig) and self.met(median, self.sig)
        text = "%s %s" % (self.goal, verdict(ok))
        if self.extra is not None:
            text += " (%s)" % self.extra()
        return ok, text


def table(rows: list[Row], title: str = "") -> bool:
    """Print the rows; True if every goal was met."""
    print()
    print("issue 13's table%s: median (min-max) of %d paired rounds" % (
        title, max((len(row.sig) for row in rows), default=0)))
    every = True
    for row in rows:
        ok, text = row.verdict()
        every = every and ok
        ratios = row.ratios()
        print("  %s" % row.label)
        print("    raw %-28s sig %-28s" % (spread(row.raw, row.fmt), spread(row.sig, row.fmt)))
        if ratios:
            print("    sig/raw per pair: %s -> %s" % (" ".join("%.2f" % r for r in ratios), spread(ratios, "%.2f")))
        print("    goal %s" % text)
    print("all goals: %s" % verdict(every))
    print()
    print(markdown(rows))
    return every


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table (for bench/README.md)."""
    lines = ["| measure | raw | sig | sig/raw (median, range) | goal |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        ratios = row.ratios()
        lines.append("| %s | %s | %s | %s | %s |" % (row.label, spread(row.raw, row.fmt), spread(row.sig, row.fmt),
                                                      spread(ratios, "%.2f") if ratios else "-", row.verdict()[1]))
    return "\n".join(lines)

