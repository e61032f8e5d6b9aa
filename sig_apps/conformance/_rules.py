"""The rules of docs/convention.md that ``sig conformance`` checks, and their profiles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PROFILES", "RULES", "Result", "Rule", "PASS", "FAIL", "SKIP"]

PASS = "PASS"
FAIL = "FAIL"
SKIP = "SKIP"

#: the profiles a device can claim; minimal is a subset of full
PROFILES = ("minimal", "full")


@dataclass(frozen=True)
class Rule:
    """One checked rule: its id (as in docs/convention.md), the smallest profile that needs it, what it says."""

    id: str
    profile: str
    text: str


RULES = (
    Rule("node-state", "minimal", "the node state on P/node/NID is retained, a JSON object, online, with a session"),
    Rule("birth", "minimal", "each birth on P/node/NID/sender/S is retained, well-formed, of the node's session"),
    Rule("escaping", "minimal", "every identifier is one topic level, escaped as the convention says (round trip)"),
    Rule("event", "minimal", "events are declared, their payload is JSON, retained only when the birth says so"),
    Rule("heartbeat", "minimal", "the node re-publishes its online state at least every `heartbeat` seconds"),
    Rule("will", "minimal", "the Last Will is set: retained, offline, same session, on P/node/NID"),
    Rule("rebirth", "full", "an empty P/cmd/rebirth gets the node state and every birth again"),
    Rule("request-envelope", "full", "an MQTT 3.1.1 envelope request is answered on reply_to with its id"),
    Rule("request-v5", "full", "an MQTT 5 request is answered on its Response Topic with its Correlation Data"),
    Rule("request-status", "full", "a request for an undeclared method is answered with a failure status"),
)


def in_profile(rule: Rule, profile: str) -> bool:
    """Tell whether ``rule`` belongs to ``profile``."""
    return PROFILES.index(rule.profile) <= PROFILES.index(profile)


@dataclass
class Result:
    """What one rule gave: PASS, FAIL or SKIP, why, and the messages that show it."""

    rule: str
    status: str
    detail: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    required: bool = True

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of ``--json``."""
        return {"rule": self.rule, "status": self.status, "required": self.required, "detail": self.detail,
                "evidence": self.evidence}
