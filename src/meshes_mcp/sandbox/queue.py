"""The sandbox's delivery job queue: rule events waiting for an attempt, and the moves between statuses.

The CRUD store (`meshes_mcp.sandbox.store`) writes events and their rule events; this module is
everything that moves a rule event along afterwards: claiming due work (`claim_due`), recording an
attempt's outcome (`finish_attempt`), recovering attempts a crash left open (`recover`), the manual
retry and cancel, and the event status derived from its rule events (`refresh_event`). It works on
the store's connection and transactions, so a claim and its attempt row commit together.

Statuses come from one definition (`meshes_mcp.api.models`): ACTIVE rule events are still queued or
in flight, TERMINAL ones are done.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshes_mcp.api.models import ACTIVE_STATUSES, TERMINAL_STATUSES
from meshes_mcp.sandbox.clock import iso, new_id, now, now_iso

if TYPE_CHECKING:
    from meshes_mcp.sandbox.store import Store

INTERRUPTED_ATTEMPT = "interrupted by a sandbox restart: the request may or may not have reached the destination"
INTERRUPTED_DELIVERY = "interrupted by a sandbox restart"
ACTIVE_SQL = ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)  # fixed words, never user input


@dataclass(slots=True)
class Job:
    """One claimed delivery attempt with everything a destination needs."""

    rule_event_id: str
    event_id: str
    rule_id: str
    attempt_id: str
    attempt_number: int
    workspace_id: str
    integration_type: str
    event: dict[str, Any]
    rule_metadata: dict[str, Any]
    connection: dict[str, Any] | None
    connection_id: str
    started: float


class DeliveryQueue:
    """The job queue over the store's `rule_events` and `attempts` tables."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def next_due(self, skip: Collection[str] = ()) -> float | None:
        """When the next queued attempt is due, leaving out connections in `skip` (those at their cap)."""
        marks, args = _not_in("connection_id", skip)
        row = self.store.one(
            f"SELECT next_attempt_at AS due FROM rule_events WHERE next_attempt_at IS NOT NULL{marks}"
            " ORDER BY next_attempt_at LIMIT 1",
            args,
        )
        return row["due"] if row else None

    def claim_due(self, limit: int, room: dict[str, int] | None = None) -> tuple[list[Job], bool]:
        """Take up to `limit` due rule events off the queue: mark them processing and open an attempt row
        for each, in one transaction, so a crash leaves a visible interrupted attempt behind.

        `room` caps how many more attempts each connection may start (a connection it leaves out has
        no cap; one at 0 is skipped): one slow destination cannot take every slot. Returns the jobs
        and whether due work was left behind because its connection ran out of room, so the caller
        claims again at once for the other connections."""
        room = dict(room or {})
        started = now()
        ts = iso(started)
        marks, args = _not_in("re.connection_id", [cid for cid, left in room.items() if left <= 0])
        rows = self.store.all(
            "SELECT re.id, re.event_id, re.rule_id, re.attempt_count, re.workspace_id, re.integration_type,"
            " re.connection_id, e.event, e.resource, e.resource_id, e.payload, e.created_at,"
            " r.metadata AS rule_metadata FROM rule_events re JOIN events e ON e.id = re.event_id"
            " LEFT JOIN rules r ON r.id = re.rule_id"
            f" WHERE re.next_attempt_at IS NOT NULL AND re.next_attempt_at <= ?{marks}"
            " ORDER BY re.next_attempt_at LIMIT ?",
            (started, *args, limit),
        )
        crowded = False
        if room:
            kept = []
            for row in rows:
                left = room.get(row["connection_id"])
                if left is not None:
                    if left <= 0:
                        crowded = True
                        continue
                    room[row["connection_id"]] = left - 1
                kept.append(row)
            rows = kept
        if not rows:
            return [], crowded
        jobs: list[Job] = []
        conns: dict[str, dict[str, Any] | None] = {}
        with self.store.tx():
            for row in rows:
                number = row["attempt_count"] + 1
                attempt_id = new_id()
                # Re-checked inside the write transaction: a row canceled or claimed since the read is skipped.
                claimed = self.store.db.execute(
                    "UPDATE rule_events SET status='processing', attempt_count=?, next_attempt_at=NULL,"
                    " started_at=COALESCE(started_at, ?) WHERE id=? AND attempt_count=?"
                    " AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?",
                    (number, ts, row["id"], row["attempt_count"], started),
                ).rowcount
                if not claimed:
                    continue
                self.store.db.execute(
                    "INSERT INTO attempts(id, rule_event_id, event_id, rule_id, attempt_number, started_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (attempt_id, row["id"], row["event_id"], row["rule_id"], number, ts),
                )
                self.store.db.execute(
                    "UPDATE events SET status='processing', started_at=COALESCE(started_at, ?) WHERE id=?"
                    " AND status IN ('pending', 'processing')",
                    (ts, row["event_id"]),
                )
                cid = row["connection_id"]
                if cid not in conns:
                    conns[cid] = self.store.get_connection(None, cid, include_deleted=True)
                jobs.append(
                    Job(
                        rule_event_id=row["id"],
                        event_id=row["event_id"],
                        rule_id=row["rule_id"],
                        attempt_id=attempt_id,
                        attempt_number=number,
                        workspace_id=row["workspace_id"],
                        integration_type=row["integration_type"],
                        event={
                            "id": row["event_id"],
                            "event": row["event"],
                            "resource": row["resource"],
                            "resource_id": row["resource_id"],
                            "payload": json.loads(row["payload"]),
                            "created_at": row["created_at"],
                        },
                        rule_metadata=json.loads(row["rule_metadata"]) if row["rule_metadata"] else {},
                        connection=conns[cid],
                        connection_id=cid,
                        started=started,
                    )
                )
        return jobs, crowded

    def finish_attempt(
        self,
        job: Job,
        outcome: str,
        http_status: int | None,
        message: str,
        response: dict[str, Any] | None,
        retryable: bool,
        retry_delay: float,
    ) -> str:
        """Record an attempt's outcome and move its rule event on; returns the rule event's new status.

        A rule event canceled while its request was in flight stays canceled, unless that request
        delivered: then it is `completed`, because the destination did receive it."""
        finished = now()
        ts = iso(finished)
        with self.store.tx():
            cur = self.store.one(
                "SELECT status, attempt_count, attempt_limit FROM rule_events WHERE id=?", (job.rule_event_id,)
            )
            assert cur is not None
            next_at: float | None = None
            if outcome == "delivered":
                status, last_error = "completed", None
            elif cur["status"] == "canceled":
                status, last_error = "canceled", message
            elif retryable and cur["attempt_count"] < cur["attempt_limit"]:
                status, last_error, next_at = "retrying", message, finished + retry_delay
            else:
                status, last_error = "failed", message
            # Compare-and-set: only the attempt still open, on a rule event still at this attempt, moves.
            # An attempt another process already closed (its recovery counted it as interrupted) keeps
            # that record, and the rule event keeps what that process decided.
            closed = self.store.db.execute(
                "UPDATE attempts SET outcome_code=?, http_status=?, message=?, completed_at=?, duration_ms=?,"
                " next_attempt_at=?, response=? WHERE id=? AND completed_at IS NULL",
                (
                    outcome,
                    http_status,
                    message,
                    ts,
                    round((finished - job.started) * 1000, 1),
                    iso(next_at) if next_at else None,
                    json.dumps(response) if response is not None else None,
                    job.attempt_id,
                ),
            ).rowcount
            if not closed or cur["attempt_count"] != job.attempt_number:
                return str(cur["status"])
            terminal = status in TERMINAL_STATUSES
            self.store.db.execute(
                "UPDATE rule_events SET status=?, last_error=?, next_attempt_at=?,"
                " completed_at=CASE WHEN ? THEN COALESCE(completed_at, ?) ELSE NULL END WHERE id=? AND attempt_count=?",
                (status, last_error, next_at, terminal, ts, job.rule_event_id, job.attempt_number),
            )
            refresh_event(self.store, job.event_id, ts)
        return status

    def recover(self) -> int:
        """After a crash or restart: close the attempts left open and count them against the budget.

        Such a request may or may not have reached the destination, so it is recorded as a
        `network_error` attempt, like a connection lost mid-request. Its rule event is requeued at once
        if attempts remain, else it ends `failed` (a manual retry still grants one more). Counting it
        is what bounds redelivery: a delivery in flight at every restart is sent at most `attempt_limit`
        times. Delivery is at least once; receivers deduplicate on `X-Meshes-Delivery-Id`.
        Returns how many deliveries were requeued; pending and retrying work is already queued."""
        resumed_at = now()
        ts = iso(resumed_at)
        with self.store.tx():
            interrupted = self.store.all(
                "SELECT id, event_id, attempt_count < attempt_limit AS can_retry FROM rule_events"
                " WHERE status='processing'"
            )
            retry_ids = [(r["id"],) for r in interrupted if r["can_retry"]]
            self.store.db.execute(
                "UPDATE attempts SET outcome_code='network_error', completed_at=?, message=?,"
                " next_attempt_at=(SELECT CASE WHEN re.attempt_count < re.attempt_limit THEN ? END"
                " FROM rule_events re WHERE re.id = attempts.rule_event_id AND re.status = 'processing')"
                " WHERE completed_at IS NULL",
                (ts, INTERRUPTED_ATTEMPT, ts),
            )
            self.store.db.executemany(
                "UPDATE rule_events SET status='retrying', next_attempt_at=?, last_error=? WHERE id=?"
                " AND status='processing'",
                [(resumed_at, INTERRUPTED_DELIVERY, rid) for (rid,) in retry_ids],
            )
            self.store.db.executemany(
                "UPDATE rule_events SET status='failed', next_attempt_at=NULL, last_error=?,"
                " completed_at=COALESCE(completed_at, ?) WHERE id=? AND status='processing'",
                [(INTERRUPTED_DELIVERY + "; no attempts left", ts, r["id"]) for r in interrupted if not r["can_retry"]],
            )
            for event_id in sorted({r["event_id"] for r in interrupted}):
                refresh_event(self.store, event_id, ts)
            return len(retry_ids)

    # -- manual retry and cancel ----------------------------------------------------------------

    def force_retry(self, rule_event_id: str, check: Callable[[dict[str, Any], float], None]) -> None:
        """Queue the next attempt now; a failed rule event is granted exactly one more attempt.

        `check` (the domain's refusal rule) judges the row as read inside the write transaction, and the
        update is guarded by the status and attempt count it judged: two retries of one rule event sent
        at once (through one sandbox or two on one data directory) cannot both pass. A retry judged on
        a row read earlier let a second "failed → retrying" land while the first retry's attempt was in
        flight, raising the attempt limit again and sending the delivery twice at once."""
        with self.store.tx():
            row = self.store.one("SELECT * FROM rule_events WHERE id=?", (rule_event_id,))
            assert row is not None  # rule events are never deleted
            at = now()
            check(row, at)
            if row["status"] == "failed":
                moved = self.store.db.execute(
                    "UPDATE rule_events SET status='retrying', next_attempt_at=?, completed_at=NULL,"
                    " attempt_limit=attempt_count + 1 WHERE id=? AND status='failed' AND attempt_count=?",
                    (at, rule_event_id, row["attempt_count"]),
                ).rowcount
                if moved:
                    refresh_event(self.store, row["event_id"], iso(at))
            else:
                self.store.db.execute(
                    "UPDATE rule_events SET next_attempt_at=? WHERE id=? AND status=? AND attempt_count=?"
                    " AND next_attempt_at IS NOT NULL",
                    (at, rule_event_id, row["status"], row["attempt_count"]),
                )

    def cancel_rule_event(self, rule_event_id: str, needs_cancel: Callable[[dict[str, Any]], bool]) -> None:
        """Cancel one rule event if `needs_cancel` (the domain rule) says so of the row as read inside the
        write transaction."""
        ts = now_iso()
        with self.store.tx():
            row = self.store.one("SELECT * FROM rule_events WHERE id=?", (rule_event_id,))
            assert row is not None
            if needs_cancel(row):
                cancel_active(self.store, "id=?", (rule_event_id,), ts)

    def cancel_event(self, event_id: str, check: Callable[[dict[str, Any], int], None]) -> None:
        """Cancel an event's active rule events; `check` judges the event as it is after the cancel,
        inside the same transaction (a refusal rolls nothing back, since nothing was canceled)."""
        ts = now_iso()
        with self.store.tx():
            canceled = len(cancel_active(self.store, "event_id=?", (event_id,), ts))
            row = self.store.one("SELECT * FROM events WHERE id=?", (event_id,))
            assert row is not None
            check(row, canceled)


def _not_in(column: str, values: Collection[str]) -> tuple[str, tuple[str, ...]]:
    """An `AND column NOT IN (?, …)` clause and its arguments; nothing when `values` is empty."""
    if not values:
        return "", ()
    return f" AND {column} NOT IN ({','.join('?' * len(values))})", tuple(values)


def refresh_event(store: Store, event_id: str, ts: str) -> None:
    """Recompute an event's status and counters from its rule events (they stay true by construction).

    completed: every rule event completed (or none exist); failed: one failed and none is still
    active; canceled: nothing failed and the rest were canceled; otherwise pending (nothing
    started yet) or processing."""
    counts = {
        r["status"]: r["n"]
        for r in store.all(
            "SELECT status, count(*) AS n FROM rule_events WHERE event_id=? GROUP BY status", (event_id,)
        )
    }
    active = sum(counts.get(s, 0) for s in ACTIVE_STATUSES)
    if active:
        started = any(counts.get(s, 0) for s in ("processing", "retrying", *sorted(TERMINAL_STATUSES)))
        status = "processing" if started else "pending"
    elif counts.get("failed"):
        status = "failed"
    elif counts.get("canceled"):
        status = "canceled"
    else:
        status = "completed"
    terminal = status in TERMINAL_STATUSES
    store.db.execute(
        "UPDATE events SET status=?, completed_count=?, failed_count=?,"
        " completed_at=CASE WHEN ? THEN COALESCE(completed_at, ?) ELSE NULL END WHERE id=?",
        (status, counts.get("completed", 0), counts.get("failed", 0), terminal, ts, event_id),
    )


def cancel_active(store: Store, where: str, args: tuple[Any, ...], ts: str) -> list[str]:
    """Cancel the still-active rule events matching `where` (inside the caller's transaction); returns
    the ids of the events whose status changed with them."""
    rows = store.all(
        f"SELECT id, event_id FROM rule_events WHERE {where} AND status IN ({ACTIVE_SQL})",
        args,
    )
    if not rows:
        return []
    store.db.executemany(
        f"UPDATE rule_events SET status='canceled', next_attempt_at=NULL, completed_at=? WHERE id=?"
        f" AND status IN ({ACTIVE_SQL})",
        [(ts, r["id"]) for r in rows],
    )
    event_ids = sorted({r["event_id"] for r in rows})
    for eid in event_ids:
        refresh_event(store, eid, ts)
    return event_ids
