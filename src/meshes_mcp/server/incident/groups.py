"""Failing deliveries grouped by cause: what went wrong, not where.

A group is rule, connection, outcome code and the cause with ids, numbers, timestamps and addresses
normalised away. Its `key` is a short hash of exactly that tuple, so `retry_failed group=<key>`
re-derives the group by scanning again: no state is kept between calls, and any replica of the server
can answer.

The key holds only what stays put while the group's deliveries are retried: the rule, the connection,
the rule event's recorded failure (`last_error`) and the outcome code of its latest *failed* attempt. An
attempt that is still open, or one a retry in flight has just delivered, is newer than the failure: it
never decides the key, so a triage taken during a retry run names the same groups as one taken before.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import StringConstraints

from meshes_mcp.api import models as m
from meshes_mcp.api.problems import InvalidRequest, Problem
from meshes_mcp.server.diagnosis import NEEDS_ATTENTION, Evidence
from meshes_mcp.server.fixes import failure_time

if TYPE_CHECKING:
    from datetime import datetime

    from meshes_mcp.api.client import MeshesClient


CAUSE_CHARS = 200
SAMPLES = 3


ATTEMPT_READS = 200  # per scan: beyond this many distinct causes, groups go without an outcome code
SAME_CAUSE_CODES = frozenset({"auth_failed"})
KEY_RE = re.compile(r"^[0-9a-f]{8}$")
# The rules `check_filters` enforces, as types the tool schemas show (`bounds.RulesOf`).
GroupKey = Annotated[str, StringConstraints(pattern=KEY_RE.pattern)]
FAILING_OUTCOMES = tuple(code for code in m.OUTCOME_CODES if code != "delivered")
FailingOutcome = Literal[FAILING_OUTCOMES]  # type: ignore[valid-type]


# --- cause signatures and groups ----------------------------------------------------------------

_NORMALISE = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+\.[A-Za-z]{2,}"), "<email>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"\b[A-Za-z0-9_-]{24,}\b"), "<token>"),
    # An HTTP status is part of the cause (500 is not 503); any other number is an id or a count.
    (re.compile(r"(?<!HTTP )(?<!status )(?<!\d)\d+(\.\d+)?", re.I), "#"),
]


def cause_signature(text: str | None) -> str:
    """The cause with what varies per event normalised away: ids, numbers, times, emails, hex, tokens."""
    signature = " ".join((text or "").split())[:2000]
    for pattern, replacement in _NORMALISE:
        signature = pattern.sub(replacement, signature)
    return signature[: CAUSE_CHARS * 2]


def group_key(rule: str, connection: str | None, outcome_code: str | None, signature: str) -> str:
    material = "\x1f".join((rule, connection or "", outcome_code or "", signature))
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def one_line(text: str | None) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= CAUSE_CHARS else line[: CAUSE_CHARS - 1] + "…"


@dataclass
class Group:
    rule: str
    connection: str | None
    integration_type: str | None
    event_name: str
    signature: str
    evidence: Evidence  # the newest delivery: its recorded failure gives the group's outcome code
    key: str = ""
    failed: int = 0
    retrying: int = 0
    first_seen: str | None = None
    last_seen: str | None = None
    samples: list[str] = field(default_factory=list)
    last_failure: datetime | None = None  # the latest time any of its deliveries is known to have failed

    @property
    def outcome_code(self) -> str | None:
        return self.evidence.code

    def add(self, event: m.Event, rule_event: m.RuleEvent) -> None:
        if rule_event.status == "failed":
            self.failed += 1
        else:
            self.retrying += 1
        if len(self.samples) < SAMPLES and event.id not in self.samples:
            self.samples.append(event.id)
        # Newest first: the first seen is the last in time.
        self.last_seen = self.last_seen or event.created_at
        self.first_seen = event.created_at or self.first_seen
        failed = failure_time(None, rule_event, event)
        if failed is not None and (self.last_failure is None or failed > self.last_failure):
            self.last_failure = failed

    @property
    def count(self) -> int:
        return self.failed + self.retrying


@dataclass
class Filters:
    workspace: str
    event: str | None = None
    connection: str | None = None
    rule: str | None = None
    outcome_code: str | None = None
    group: str | None = None

    def wants_delivery(self, rule_event: m.RuleEvent) -> bool:
        return (self.connection is None or rule_event.connection == self.connection) and (
            self.rule is None or rule_event.rule == self.rule
        )

    def wants_group(self, group: Group) -> bool:
        return (self.group is None or group.key == self.group) and (
            self.outcome_code is None or group.outcome_code == self.outcome_code
        )


def check_filters(
    workspace: str,
    *,
    event: str | None = None,
    connection: str | None = None,
    rule: str | None = None,
    outcome_code: str | None = None,
    group: str | None = None,
) -> Filters:
    problems = [
        problem
        for param, value in (("connection", connection), ("rule", rule))
        if value is not None and (problem := m.uuid_problem(param, value)) is not None
    ]
    if outcome_code is not None and outcome_code not in FAILING_OUTCOMES:
        problems.append(Problem("outcome_code", f"must be one of {', '.join(FAILING_OUTCOMES)}, e.g. auth_failed"))
    if group is not None and not KEY_RE.match(group):
        problems.append(Problem("group", 'must be a triage_failures key: 8 hex digits, e.g. "3f9a2c1d"'))
    if event is not None and not event.strip():
        problems.append(Problem("event", 'must not be blank, e.g. "user.signup"'))
    if problems:
        raise InvalidRequest(problems)
    return Filters(workspace, event, connection, rule, outcome_code, group)


class Classifier:
    """Puts each failing delivery in its group; a group's outcome code is read once, from its newest delivery."""

    def __init__(self, client: MeshesClient, filters: Filters) -> None:
        self.client = client
        self.filters = filters
        self.groups: dict[tuple[str, str | None, str], Group] = {}  # by rule, connection and cause signature
        self.by_key: dict[str, Group] = {}
        self.reads = 0

    async def group_of(self, event: m.Event, rule_event: m.RuleEvent) -> Group | None:
        """The delivery's group when it is failing and matches the filters, else None."""
        if rule_event.status not in NEEDS_ATTENTION or not self.filters.wants_delivery(rule_event):
            return None
        from meshes_mcp.server.diagnosis import read_recorded_failure

        signature = cause_signature(rule_event.last_error)
        slot = (rule_event.rule, rule_event.connection, signature)
        group = self.groups.get(slot)
        if group is None:
            evidence = Evidence(event, rule_event)
            if self.reads < ATTEMPT_READS:  # causes that defy normalisation must not cost a read each
                self.reads += 1
                await read_recorded_failure(self.client, evidence)
            code = evidence.code
            # Rejected credentials are one cause however the destination words it (the first refusal, then
            # "connection inactive" for every delivery after it): one fix, one group.
            cause = "" if code in SAME_CAUSE_CODES else signature
            key = group_key(rule_event.rule, rule_event.connection, code, cause)
            group = self.by_key.get(key)
            if group is None:
                group = Group(rule_event.rule, rule_event.connection, rule_event.integration_type, event.event,
                              cause, evidence, key)  # fmt: skip
                self.by_key[key] = group
            self.groups[slot] = group
        return group if self.filters.wants_group(group) else None

    def matched(self) -> list[Group]:
        return sorted((g for g in self.by_key.values() if g.count), key=lambda g: -g.count)
