"""The rules of docs/convention.md, judged on an :class:`Evidence` (pure: no I/O, no clock)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sig_mqtt import decode_level, encode_level

from ._evidence import Evidence, Message, cite, is_json, parse_json
from ._rules import FAIL, PASS, RULES, SKIP, Result, in_profile

__all__ = ["evaluate", "node_state", "DEFAULT_HEARTBEAT"]

#: seconds, when a node state does not say its heartbeat
DEFAULT_HEARTBEAT = 30.0


def _ident(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, int))


def state_problem(body: Any, online: bool) -> str | None:
    """What is wrong with a node state payload (``online``: the value it must say), or ``None``."""
    if not isinstance(body, dict):
        return "not a JSON object"
    if body.get("online") is not online:
        return '"online" is not %s' % str(online).lower()
    if not isinstance(body.get("session"), str) or not body["session"]:
        return 'no "session" string'
    if online and (body.get("proto") not in (4, 5) or isinstance(body.get("proto"), bool)):
        return '"proto" is not 4 or 5'
    heartbeat = body.get("heartbeat")
    if heartbeat is not None and (isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float))
                                  or not 0 < heartbeat < 1e6):
        return '"heartbeat" is not a number of seconds above 0'
    ts = body.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int) or ts < 0):
        return '"ts" is not an integer of milliseconds'
    return None


def birth_problem(body: Any, session: str | None) -> str | None:
    """What is wrong with a birth payload, or ``None``."""
    if not isinstance(body, dict):
        return "not a JSON object"
    events = body.get("events")
    if not isinstance(events, list) or not all(_ident(e) for e in events):
        return '"events" is not a list of identifiers (strings, integers, finite floats)'
    requests = body.get("requests", "missing")
    if requests is not None and (not isinstance(requests, list) or not all(r is None or _ident(r) for r in requests)):
        return '"requests" is neither null nor a list of identifiers (or null for a default handler)'
    retained = body.get("retained")
    if retained is not None and (not isinstance(retained, list) or any(e not in events for e in retained)):
        return '"retained" is not a list of the declared events'
    if body.get("session") != session:
        return '"session" %r is not the node\'s (%r): a stale birth' % (body.get("session"), session)
    return None


def node_state(evidence: Evidence, until: float = float("inf")) -> dict[str, Any] | None:
    """The last well-formed online state of the node received before ``until``."""
    for message in reversed(evidence.on(evidence.node_topic, until=until)):
        body = parse_json(message.payload)
        if state_problem(body, True) is None:
            return dict(body)
    return None


def _retained(evidence: Evidence, copies: list[Message]) -> str | None:
    """Why ``copies`` (of one topic) show it was not retained, or ``None``."""
    if not any(m.retain for m in copies):
        return "no copy came with the RETAIN flag (not retained)"
    if evidence.retain_as_published and not all(m.retain for m in copies):
        return "a copy was published without the RETAIN flag"
    return None


def check_node_state(evidence: Evidence) -> Result:
    """Rule node-state: a retained, well-formed online state (before the Will step)."""
    stop = evidence.will[0] if evidence.will else float("inf")
    copies = [m for m in evidence.on(evidence.node_topic, until=stop) if m.payload]
    if not copies:
        return Result("node-state", FAIL, "no node state on %s" % evidence.node_topic)
    for message in copies:
        problem = state_problem(parse_json(message.payload), True)
        if problem is not None:
            return Result("node-state", FAIL, "bad node state: %s" % problem, [cite(message)])
    problem = _retained(evidence, copies)
    if problem is not None:
        return Result("node-state", FAIL, "node state %s" % problem, [cite(m) for m in copies[:3]])
    body = parse_json(copies[-1].payload)
    missing = [name for name in ("ts", "heartbeat", "sig") if name not in body]
    detail = "retained, online, session %s, proto %s" % (body["session"], body["proto"])
    if missing:
        detail += "; SHOULD fields missing: %s" % ", ".join(missing)
    return Result("node-state", PASS, detail, [cite(copies[0])])


def _births(evidence: Evidence) -> dict[str, list[Message]]:
    root = evidence.node_topic + "/sender/"
    return {level: [m for m in evidence.on(root + level) if m.payload] for level in evidence.birth_levels()}


def check_birth(evidence: Evidence) -> Result:
    """Rule birth: every birth seen is retained, well-formed and of its node's session."""
    births = _births(evidence)
    if not any(births.values()):
        where = evidence.node_topic + "/sender/" + (evidence.sender or "+")
        return Result("birth", FAIL, "no birth on %s: a node MUST publish one per sender" % where)
    for copies in births.values():
        for message in copies:
            state = node_state(evidence, until=message.at) or node_state(evidence)
            session = state["session"] if state else None
            problem = birth_problem(parse_json(message.payload), session)
            if problem is not None:
                return Result("birth", FAIL, "bad birth: %s" % problem, [cite(message)])
        problem = _retained(evidence, copies)
        if problem is not None:
            return Result("birth", FAIL, "birth %s" % problem, [cite(m) for m in copies[:3]])
    return Result("birth", PASS, "%d sender(s): retained, well-formed, of the node's session" % len(births),
                  [cite(copies[0]) for copies in births.values() if copies][:5])


def _round_trip(level: str) -> str | None:
    try:
        again = encode_level(decode_level(level))
    except (TypeError, ValueError) as exc:
        return "level %r decodes to no identifier (%s)" % (level, exc)
    if again != level:
        return "level %r decodes to %r, which is written %r" % (level, decode_level(level), again)
    return None


def check_escaping(evidence: Evidence) -> Result:
    """Rule escaping: the node's, senders' and events' levels round trip; an event is one level."""
    assert evidence.node is not None
    checked: list[tuple[str, Message | None]] = [(evidence.node, None)]
    for level, copies in _births(evidence).items():
        checked.append((level, copies[0] if copies else None))
    for _, rest, message in evidence.event_messages(evidence.birth_levels()):
        if len(rest) != 1:
            return Result("escaping", FAIL, "event topic with %d levels after the sender: an identifier is one "
                          "level ('/' is written %%2F)" % len(rest), [cite(message)])
        checked.append((rest[0], message))
    for level, seen in checked:
        problem = _round_trip(level)
        if problem is not None:
            return Result("escaping", FAIL, problem, [cite(seen)] if seen else [])
    levels = sorted({level for level, _ in checked})
    return Result("escaping", PASS, "%d level(s) round trip: %s" % (len(levels), ", ".join(levels[:10])))


def check_event(evidence: Evidence) -> Result:
    """Rule event: declared, JSON, retained only when the birth lists it."""
    declared: dict[str, tuple[list[Any], list[Any]]] = {}
    for level, copies in _births(evidence).items():
        body = parse_json(copies[-1].payload) if copies else None
        if isinstance(body, dict) and isinstance(body.get("events"), list) and all(map(_ident, body["events"])):
            declared[level] = (body["events"], body.get("retained") or [])
    events = [(s, r, m) for s, r, m in evidence.event_messages(list(declared)) if len(r) == 1 and m.payload]
    if not events:
        return Result("event", SKIP, "no event seen during the check")
    for sender, rest, message in events:
        event = decode_level(rest[0])
        names, retained = declared[sender]
        if event not in names:
            return Result("event", FAIL, "event %r is not declared in the birth (%s)" % (event, names),
                          [cite(message)])
        if not is_json(parse_json(message.payload)):
            return Result("event", FAIL, "the payload is not JSON (an event's payload is its data as JSON)",
                          [cite(message)])
        if message.retain and event not in retained:
            return Result("event", FAIL, "event %r is retained but its birth does not list it in "
                          '"retained"' % (event,), [cite(message)])
    return Result("event", PASS, "%d event(s): declared, JSON, retained only as declared" % len(events),
                  [cite(m) for _, _, m in events[:3]])


def check_heartbeat(evidence: Evidence) -> Result:
    """Rule heartbeat: an online state of the same session came during the wait."""
    if evidence.heartbeat is None:
        return Result("heartbeat", SKIP, evidence.skips.get("heartbeat", "not checked"))
    start, end = evidence.heartbeat
    before = node_state(evidence, until=start)
    period = float(before.get("heartbeat", DEFAULT_HEARTBEAT)) if before else DEFAULT_HEARTBEAT
    fresh = [m for m in evidence.on(evidence.node_topic, since=start, until=end)
             if state_problem(parse_json(m.payload), True) is None]
    if not fresh:
        return Result("heartbeat", FAIL, "no online node state in %.1f s (its heartbeat: %g s)" % (end - start,
                                                                                                  period))
    body = parse_json(fresh[0].payload)
    if before is not None and body["session"] != before["session"]:
        return Result("heartbeat", FAIL, "the re-published state has another session", [cite(fresh[0])])
    if before is not None and isinstance(before.get("ts"), int) and body.get("ts", 0) < before["ts"]:
        return Result("heartbeat", FAIL, '"ts" went back in time', [cite(fresh[0])])
    return Result("heartbeat", PASS, "state re-published %.1f s into a %.1f s wait (heartbeat %g s)" % (
        fresh[0].at - start, end - start, period), [cite(fresh[0])])


def check_will(evidence: Evidence) -> Result:
    """Rule will: the takeover brought a retained offline state of the node's session."""
    if evidence.will is None:
        return Result("will", SKIP, evidence.skips.get("will", "not checked"))
    start, end = evidence.will
    state = node_state(evidence, until=start)
    session = state["session"] if state else None
    offline = [m for m in evidence.on(evidence.node_topic, since=start, until=end)
               if isinstance(parse_json(m.payload), dict) and parse_json(m.payload).get("online") is False]
    if not offline:
        return Result("will", FAIL, "no offline state on %s after the broker dropped client id %r: no Last Will "
                      "(or the client id is not the node id)" % (evidence.node_topic, decode_level(str(evidence.node))))
    problem = state_problem(parse_json(offline[0].payload), False)
    if problem is None and parse_json(offline[0].payload)["session"] != session:
        problem = "its session is not the node's (%r)" % session
    if problem is None:
        problem = _retained(evidence, offline)
    if problem is not None:
        return Result("will", FAIL, "Last Will: %s" % problem, [cite(m) for m in offline[:3]])
    detail = "the broker published the Will on a session takeover: retained, offline, session %s" % session
    if "will" in evidence.notes:
        detail += "; " + evidence.notes["will"]
    return Result("will", PASS, detail, [cite(offline[0])])


def check_rebirth(evidence: Evidence) -> Result:
    """Rule rebirth: the state and every birth came again after the rebirth."""
    if evidence.rebirth is None:
        return Result("rebirth", SKIP, evidence.skips.get("rebirth", "not checked"))
    start, end = evidence.rebirth
    root = evidence.node_topic + "/sender/"
    wanted = [evidence.node_topic] + [root + level for level, copies in _births(evidence).items() if copies]
    missing = [topic for topic in wanted if not [m for m in evidence.on(topic, since=start, until=end) if m.payload]]
    if missing:
        return Result("rebirth", FAIL, "not published again within %.1f s of the rebirth: %s" % (
            end - start, ", ".join(missing)))
    return Result("rebirth", PASS, "state and %d birth(s) published again" % (len(wanted) - 1))


def _reply_problem(body: Any, must_fail: bool) -> str | None:
    if not isinstance(body, dict):
        return "the reply is not a JSON object"
    status = body.get("status")
    if isinstance(status, bool) or not isinstance(status, int):
        return 'no integer "status"'
    if status == 0 and must_fail:
        return "status 0 for an undeclared method"
    if status == 0 and "response" not in body:
        return 'status 0 without "response"'
    if status != 0 and not isinstance(body.get("exception"), str):
        return 'status %d without an "exception" text' % status
    return None


def _check_request(evidence: Evidence, kind: str, rule: str) -> Result:
    sent = [s for s in evidence.requests if s.kind == kind]
    if not sent:
        return Result(rule, SKIP, evidence.skips.get(rule, "not checked"))
    request = sent[0]
    end = evidence.requests_until if evidence.requests_until is not None else float("inf")
    replies = evidence.on(evidence.reply_topic, since=request.at, until=end)
    replies = [m for m in replies if not (isinstance(parse_json(m.payload), dict) and "sync" in parse_json(m.payload))]
    what = "request on %s" % request.topic
    for message in replies:
        body = parse_json(message.payload)
        if kind == "v5":
            matches = message.correlation == request.correlation.encode()
        else:
            matches = isinstance(body, dict) and body.get("id") == request.correlation
        if matches:
            problem = _reply_problem(body, kind == "unknown")
            if problem is not None:
                return Result(rule, FAIL, "%s: %s" % (what, problem), [cite(message)])
            return Result(rule, PASS, "%s answered, status %s" % (what, body["status"]), [cite(message)])
    if replies:
        return Result(rule, FAIL, "%s: replies came without its correlation (%s)" % (
            what, "Correlation Data" if kind == "v5" else '"id"'), [cite(m) for m in replies[:3]])
    return Result(rule, FAIL, "%s: no reply on %s" % (what, evidence.reply_topic))


_CHECKS: dict[str, Callable[[Evidence], Result]] = {
    "node-state": check_node_state,
    "birth": check_birth,
    "escaping": check_escaping,
    "event": check_event,
    "heartbeat": check_heartbeat,
    "will": check_will,
    "rebirth": check_rebirth,
    "request-envelope": lambda e: _check_request(e, "envelope", "request-envelope"),
    "request-v5": lambda e: _check_request(e, "v5", "request-v5"),
    "request-status": lambda e: _check_request(e, "unknown", "request-status"),
}


def evaluate(evidence: Evidence, profile: str) -> list[Result]:
    """Judge every rule; ``required`` tells which ones the profile needs."""
    results = []
    for rule in RULES:
        if evidence.node is None:
            result = Result(rule.id, FAIL if rule.id == "birth" else SKIP,
                            evidence.skips.get("node", "no node found"))
        else:
            result = _CHECKS[rule.id](evidence)
        result.required = in_profile(rule, profile)
        results.append(result)
    return results
