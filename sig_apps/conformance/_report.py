"""Printing a check's results: text lines for people, JSON for CI, and the exit status."""

from __future__ import annotations

import json
from typing import Any

from ._rules import FAIL, Result

__all__ = ["passed", "as_json", "as_text"]


def passed(results: list[Result]) -> bool:
    """The profile passes when none of its rules failed (a SKIP says why it could not apply)."""
    return not any(r.status == FAIL and r.required for r in results)


def as_json(results: list[Result], header: dict[str, Any]) -> str:
    """One JSON document: the header, ``passed``, and every rule's result."""
    return json.dumps(dict(header, passed=passed(results), results=[r.as_dict() for r in results]),
                      ensure_ascii=False, indent=2)


def as_text(results: list[Result], header: dict[str, Any]) -> str:
    """``PASS rule  detail`` lines, each with its evidence below it, then the verdict."""
    lines = ["sig conformance (convention %s): %s on %s, profile %s" % (
        header["convention"], header["target"], header["broker"], header["profile"])]
    for result in results:
        lines.append("%s %-16s %s%s" % (result.status, result.rule, result.detail,
                                        "" if result.required else "  (not in this profile)"))
        for item in result.evidence:
            lines.append("     %s %s%s%s" % (item["topic"], item["payload"], " (retained)" if item["retain"] else "",
                                            " [correlation %s]" % item["correlation"] if "correlation" in item
                                            else ""))
    failed = [r.rule for r in results if r.status == FAIL and r.required]
    lines.append("%s profile: %s" % (header["profile"], "FAIL (%s)" % ", ".join(failed) if failed else "PASS"))
    return "\n".join(lines)
