"""SQLite store of the sandbox: a connection per user, WAL mode, short transactions.

Threading model: the HTTP handlers use one `Store` on the server's event loop; every method is
synchronous and short (a handful of indexed statements inside one transaction), so the loop stays
responsive without a thread hop per query. What could make it wait is another process holding the
write lock (a second sandbox, a `sqlite3` shell): so the loop's connection waits at most
`LOOP_BUSY_MS` for the lock and the HTTP layer retries a refused write asynchronously (see
`meshes_mcp.sandbox.app.api`), instead of SQLite's busy wait freezing the loop for seconds. The
delivery engine has its own `Store`, used from a worker thread, where waiting is harmless.

Durability: `synchronous=NORMAL` in WAL mode makes a commit a write to the WAL without an fsync. That
survives the sandbox process dying at any point (kill -9 included: tests/test_sandbox_crash.py), but
an OS crash or power cut can lose the last commits, acknowledged events among them (the database
itself stays consistent). `FULL` would close that gap at an fsync per commit: measured 4-5x the cost
of a commit and less than half the webhook delivery throughput (bench/bench_sandbox.py --synchronous
FULL), too much for a local development sandbox; the README says so.

The delivery queue (claiming due work, recording outcomes, recovery, manual retry and cancel) works
on the same tables but lives in `meshes_mcp.sandbox.queue`; this module is the CRUD side.

Rows are soft-deleted (`deleted_at`) for connections and rules so that rule events keep pointing at
what they were created from; the API never shows deleted rows.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshes_mcp.sandbox.clock import new_id, now, now_iso
from meshes_mcp.sandbox.queue import cancel_active

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS organizations (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS machine_keys (
    access_key TEXT PRIMARY KEY, secret_key TEXT NOT NULL, org_id TEXT NOT NULL, name TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workspaces (
    seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, org_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT,
    pub_key TEXT UNIQUE NOT NULL, pub_key_name TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS connections (
    seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, org_id TEXT NOT NULL, workspace_id TEXT NOT NULL,
    type TEXT NOT NULL, name TEXT NOT NULL, metadata TEXT NOT NULL, hidden INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1, inactive_reason TEXT, created_by TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, deleted_at TEXT);
CREATE INDEX IF NOT EXISTS ix_connections_ws ON connections(workspace_id, seq);
CREATE TABLE IF NOT EXISTS rules (
    seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, org_id TEXT NOT NULL, workspace_id TEXT NOT NULL,
    connection_id TEXT NOT NULL, type TEXT NOT NULL, event TEXT NOT NULL, resource TEXT, resource_id TEXT,
    metadata TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1, hidden INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, deleted_at TEXT);
CREATE INDEX IF NOT EXISTS ix_rules_ws ON rules(workspace_id, event);
CREATE INDEX IF NOT EXISTS ix_rules_conn ON rules(connection_id);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, org_id TEXT NOT NULL, workspace_id TEXT NOT NULL,
    event TEXT NOT NULL, resource TEXT, resource_id TEXT, payload TEXT NOT NULL, status TEXT NOT NULL,
    total_rules INTEGER NOT NULL, completed_count INTEGER NOT NULL DEFAULT 0,
    failed_count INTEGER NOT NULL DEFAULT 0, started_at TEXT, completed_at TEXT,
    created_by TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_events_ws ON events(workspace_id, seq);
CREATE TABLE IF NOT EXISTS rule_events (
    seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, event_id TEXT NOT NULL, rule_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL, connection_id TEXT NOT NULL, integration_type TEXT NOT NULL,
    event TEXT NOT NULL, resource TEXT, resource_id TEXT, status TEXT NOT NULL,
    attempt_count INTEGER NOT NULL DEFAULT 0, attempt_limit INTEGER NOT NULL,
    next_attempt_at REAL, started_at TEXT, completed_at TEXT, last_error TEXT,
    created_by TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS ix_rule_events_event ON rule_events(event_id, rule_id);
CREATE INDEX IF NOT EXISTS ix_rule_events_conn ON rule_events(connection_id, status);
CREATE INDEX IF NOT EXISTS ix_rule_events_rule ON rule_events(rule_id, status);
-- The delivery queue: a rule event is queued exactly while next_attempt_at is set.
CREATE INDEX IF NOT EXISTS ix_rule_events_due ON rule_events(next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, rule_event_id TEXT NOT NULL, event_id TEXT NOT NULL,
    rule_id TEXT NOT NULL, attempt_number INTEGER NOT NULL, outcome_code TEXT, http_status INTEGER,
    message TEXT, started_at TEXT NOT NULL, completed_at TEXT, duration_ms REAL, next_attempt_at TEXT,
    response TEXT);
CREATE INDEX IF NOT EXISTS ix_attempts_rule_event ON attempts(rule_event_id, seq);
CREATE INDEX IF NOT EXISTS ix_attempts_open ON attempts(completed_at) WHERE completed_at IS NULL;
CREATE TABLE IF NOT EXISTS catalog_entries (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
    created_by TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, UNIQUE(workspace_id, kind, key));
CREATE TABLE IF NOT EXISTS mappings (
    connection_id TEXT PRIMARY KEY, id TEXT NOT NULL, mapping_id TEXT NOT NULL, version INTEGER NOT NULL,
    workspace_id TEXT NOT NULL, integration_type TEXT NOT NULL, name TEXT NOT NULL, schema TEXT NOT NULL,
    catalog_version TEXT, created_by TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS field_catalogs (
    connection_id TEXT PRIMARY KEY, id TEXT NOT NULL, refreshed_at TEXT NOT NULL, created_by TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, org_id TEXT NOT NULL, workspace_id TEXT NOT NULL,
    role TEXT NOT NULL, session_type TEXT NOT NULL, external_user_id TEXT, resource TEXT, resource_id TEXT,
    launch_page TEXT NOT NULL, allowed_origins TEXT, scopes TEXT, status TEXT NOT NULL,
    token_hash TEXT NOT NULL, ttl_seconds INTEGER NOT NULL, expires_epoch REAL NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_sessions_ws ON sessions(workspace_id, seq);
-- Bumped by every change to `rules`, whichever process (or version of this code) makes it: routing
-- reads it inside the ingest transaction to tell whether its cached rules are still current.
CREATE TABLE IF NOT EXISTS rules_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
INSERT OR IGNORE INTO rules_version(id, version) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS rules_version_on_insert AFTER INSERT ON rules
    BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS rules_version_on_update AFTER UPDATE ON rules
    BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS rules_version_on_delete AFTER DELETE ON rules
    BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;
"""

PATIENT_BUSY_MS = 5000  # a connection off the loop (the delivery engine's, start-up) waits this long
LOOP_BUSY_MS = 100  # the event loop's connection: blocks the loop at most this long per try

CATALOG_MEMORY = 10_000  # catalogue marks remembered per process before the memory starts over


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cursor.description, values, strict=True)}


@dataclass(slots=True)
class MatchedRule:
    id: str
    connection_id: str
    type: str
    event: str
    resource: str | None
    resource_id: str | None


@dataclass(slots=True)
class NewEvent:
    """An accepted event ready to be written, with its id and timestamp already chosen."""

    id: str
    org_id: str
    workspace_id: str
    event: str
    resource: str | None
    resource_id: str | None
    payload: dict[str, Any]
    created_by: str
    created_at: str
    rules: list[MatchedRule] = field(default_factory=list)


class Store:
    """All persistent state. Methods return plain dicts of column values (JSON columns decoded)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.row_factory = _row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.wait_for_lock(PATIENT_BUSY_MS)
        self.db.execute("PRAGMA temp_store=MEMORY")
        self.db.executescript(SCHEMA)
        # Active rules per workspace, valid only while `rules_version` still reads `_rules_version`.
        # Other processes may share the database (two editor windows on one data directory), so this
        # process's own rule writes are not the only ones: the version row, bumped by triggers and read
        # inside the ingest transaction, is what keeps the cache honest. (`PRAGMA data_version` would
        # also see other processes' commits, but any commit at all, so it would empty the cache on
        # every event another process ingests.)
        self._rules_cache: dict[str, list[MatchedRule]] = {}
        self._rules_version: int | None = None
        # (workspace, kind, key) known to be in the event-type / resource catalogue. Safe to keep per
        # process because catalogue entries are never removed; recorded only after the commit that
        # wrote them, and bounded, since clients choose the names.
        self._catalog_known: set[tuple[str, str, str]] = set()
        self.undone_changes = 0  # rows changed inside transactions that were then rolled back

    def close(self) -> None:
        self.db.close()

    @property
    def kept_changes(self) -> int:
        """Rows this connection has changed and not rolled back: whether a request wrote anything is
        whether this moved while it ran (SQLite's own count also keeps rolled-back rows)."""
        return self.db.total_changes - self.undone_changes

    def wait_for_lock(self, milliseconds: int) -> None:
        """How long a write waits for another connection's write lock before failing with "locked"."""
        self.db.execute(f"PRAGMA busy_timeout={int(milliseconds)}")

    @contextlib.contextmanager
    def patiently(self) -> Iterator[None]:
        """Wait the full `PATIENT_BUSY_MS` for the write lock inside this block (one-off work such as
        installing a practice scenario, which has no request to answer "busy" to)."""
        self.wait_for_lock(PATIENT_BUSY_MS)
        try:
            yield
        finally:
            self.wait_for_lock(LOOP_BUSY_MS)

    # -- plumbing ---------------------------------------------------------------------------------

    def tx(self) -> _Tx:
        return _Tx(self)

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        row: dict[str, Any] | None = self.db.execute(sql, args).fetchone()  # rows are dicts: see _row
        return row

    def all(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return self.db.execute(sql, args).fetchall()

    def get_meta(self, key: str) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key=?", (key,))
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @staticmethod
    def _page_sql(after: int | None, descending: bool) -> tuple[str, str]:
        cond = "" if after is None else " AND seq < ?" if descending else " AND seq > ?"
        return cond, " ORDER BY seq DESC" if descending else " ORDER BY seq ASC"

    def _page(
        self, table: str, where: str, args: list[Any], after: int | None, limit: int, descending: bool = False
    ) -> list[dict[str, Any]]:
        """Keyset page: `limit + 1` rows so the caller can tell whether a next page exists."""
        cond, order = self._page_sql(after, descending)
        if after is not None:
            args = [*args, after]
        return self.all(f"SELECT * FROM {table} WHERE {where}{cond}{order} LIMIT ?", (*args, limit + 1))

    # -- organisation and keys ----------------------------------------------------------------------

    def create_org(self, org_id: str, name: str) -> None:
        self.db.execute("INSERT INTO organizations(id, name, created_at) VALUES (?, ?, ?)", (org_id, name, now_iso()))

    def organization_count(self) -> int:
        row = self.one("SELECT count(*) AS n FROM organizations")
        return int(row["n"]) if row else 0

    def add_machine_key(self, access_key: str, secret_key: str, org_id: str, name: str) -> None:
        self.db.execute(
            "INSERT INTO machine_keys(access_key, secret_key, org_id, name, created_at) VALUES (?, ?, ?, ?, ?)",
            (access_key, secret_key, org_id, name, now_iso()),
        )

    def machine_key(self, access_key: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM machine_keys WHERE access_key=?", (access_key,))

    def workspace_by_publishable_key(self, key: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM workspaces WHERE pub_key=?", (key,))

    # -- workspaces -------------------------------------------------------------------------------

    def list_workspaces(self, org_id: str, after: int | None, limit: int) -> list[dict[str, Any]]:
        return self._page("workspaces", "org_id=?", [org_id], after, limit)

    def get_workspace(self, org_id: str, workspace_id: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM workspaces WHERE id=? AND org_id=?", (workspace_id, org_id))

    def workspace_name_taken(self, org_id: str, name: str, except_id: str | None = None) -> bool:
        row = self.one(
            "SELECT id FROM workspaces WHERE org_id=? AND lower(name)=lower(?) AND id IS NOT ?",
            (org_id, name, except_id),
        )
        return row is not None

    def create_workspace(
        self, org_id: str, name: str, description: str | None, pub_key: str, pub_key_name: str
    ) -> dict[str, Any]:
        ts = now_iso()
        wid = new_id()
        self.db.execute(
            "INSERT INTO workspaces(id, org_id, name, description, pub_key, pub_key_name, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (wid, org_id, name, description, pub_key, pub_key_name, ts, ts),
        )
        return self.get_workspace(org_id, wid)  # type: ignore[return-value]

    def update_workspace(self, org_id: str, workspace_id: str, name: str, description: str | None) -> dict[str, Any]:
        self.db.execute(
            "UPDATE workspaces SET name=?, description=?, updated_at=? WHERE id=? AND org_id=?",
            (name, description, now_iso(), workspace_id, org_id),
        )
        return self.get_workspace(org_id, workspace_id)  # type: ignore[return-value]

    # -- connections ------------------------------------------------------------------------------

    @staticmethod
    def _connection(row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is not None:
            row["metadata"] = json.loads(row["metadata"])
        return row

    def list_connections(
        self, org_id: str, workspace_id: str | None, after: int | None, limit: int
    ) -> list[dict[str, Any]]:
        where, args = "org_id=? AND deleted_at IS NULL", [org_id]
        if workspace_id:
            where, args = where + " AND workspace_id=?", [*args, workspace_id]
        return [self._connection(r) for r in self._page("connections", where, args, after, limit)]  # type: ignore[misc]

    def get_connection(
        self, org_id: str | None, connection_id: str, include_deleted: bool = False
    ) -> dict[str, Any] | None:
        sql = "SELECT * FROM connections WHERE id=?"
        args: tuple[Any, ...] = (connection_id,)
        if org_id is not None:
            sql, args = sql + " AND org_id=?", (*args, org_id)
        if not include_deleted:
            sql += " AND deleted_at IS NULL"
        return self._connection(self.one(sql, args))

    def connection_name_taken(self, workspace_id: str, name: str, except_id: str | None = None) -> bool:
        row = self.one(
            "SELECT id FROM connections WHERE workspace_id=? AND lower(name)=lower(?) AND deleted_at IS NULL"
            " AND id IS NOT ?",
            (workspace_id, name, except_id),
        )
        return row is not None

    def create_connection(
        self,
        org_id: str,
        workspace_id: str,
        type_: str,
        name: str,
        metadata: dict[str, Any],
        hidden: bool,
        created_by: str,
        active: bool = True,
        inactive_reason: str | None = None,
    ) -> dict[str, Any]:
        ts = now_iso()
        cid = new_id()
        self.db.execute(
            "INSERT INTO connections(id, org_id, workspace_id, type, name, metadata, hidden, active, inactive_reason,"
            " created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cid,
                org_id,
                workspace_id,
                type_,
                name,
                json.dumps(metadata),
                int(hidden),
                int(active),
                inactive_reason,
                created_by,
                ts,
                ts,
            ),
        )
        return self.get_connection(org_id, cid)  # type: ignore[return-value]

    def update_connection(
        self, connection_id: str, name: str, metadata: dict[str, Any], hidden: bool, reactivate: bool
    ) -> None:
        sql = "UPDATE connections SET name=?, metadata=?, hidden=?, updated_at=?"
        if reactivate:
            sql += ", active=1, inactive_reason=NULL"
        self.db.execute(sql + " WHERE id=?", (name, json.dumps(metadata), int(hidden), now_iso(), connection_id))

    def set_connection_state(self, connection_id: str, active: bool, reason: str | None) -> None:
        self.db.execute(
            "UPDATE connections SET active=?, inactive_reason=?, updated_at=? WHERE id=?",
            (int(active), reason, now_iso(), connection_id),
        )

    def active_rule_count(self, connection_id: str) -> int:
        row = self.one(
            "SELECT count(*) AS n FROM rules WHERE connection_id=? AND active=1 AND deleted_at IS NULL",
            (connection_id,),
        )
        return int(row["n"]) if row else 0

    def delete_connection(self, connection_id: str) -> None:
        """Soft-delete; deactivate its rules and cancel the deliveries still queued through it.

        Forced deletion is undocumented beyond "force": we keep the rules (inactive, so they never
        match again and stay inspectable) and cancel queued work, since its destination is gone.
        """
        ts = now_iso()
        with self.tx():
            self.db.execute("UPDATE connections SET deleted_at=?, updated_at=? WHERE id=?", (ts, ts, connection_id))
            self.db.execute(
                "UPDATE rules SET active=0, updated_at=? WHERE connection_id=? AND active=1", (ts, connection_id)
            )
            cancel_active(self, "connection_id=?", (connection_id,), ts)

    # -- rules ------------------------------------------------------------------------------------

    @staticmethod
    def _rule(row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is not None:
            row["metadata"] = json.loads(row["metadata"])
        return row

    def list_rules(
        self, org_id: str, workspace_id: str | None, filters: dict[str, str], after: int | None, limit: int
    ) -> list[dict[str, Any]]:
        where, args = "org_id=? AND deleted_at IS NULL", [org_id]
        if workspace_id:
            where, args = where + " AND workspace_id=?", [*args, workspace_id]
        for key in ("event", "resource", "resource_id"):
            if filters.get(key):
                where, args = where + f" AND {key}=?", [*args, filters[key]]
        return [self._rule(r) for r in self._page("rules", where, args, after, limit)]  # type: ignore[misc]

    def get_rule(self, org_id: str, rule_id: str) -> dict[str, Any] | None:
        return self._rule(
            self.one("SELECT * FROM rules WHERE id=? AND org_id=? AND deleted_at IS NULL", (rule_id, org_id))
        )

    def find_identical_rule(
        self,
        workspace_id: str,
        connection_id: str,
        event: str,
        resource: str | None,
        resource_id: str | None,
        metadata: dict[str, Any],
    ) -> dict[str, Any] | None:
        rows = self.all(
            "SELECT * FROM rules WHERE workspace_id=? AND connection_id=? AND event=? AND resource IS ?"
            " AND resource_id IS ? AND deleted_at IS NULL",
            (workspace_id, connection_id, event, resource, resource_id),
        )
        for row in rows:
            if json.loads(row["metadata"]) == metadata:
                return self._rule(row)
        return None

    def create_rule(
        self,
        org_id: str,
        workspace_id: str,
        connection_id: str,
        type_: str,
        event: str,
        resource: str | None,
        resource_id: str | None,
        metadata: dict[str, Any],
        active: bool,
        hidden: bool,
        created_by: str,
    ) -> dict[str, Any]:
        ts = now_iso()
        rid = new_id()
        noted: set[tuple[str, str, str]] = set()
        with self.tx():
            self.db.execute(
                "INSERT INTO rules(id, org_id, workspace_id, connection_id, type, event, resource, resource_id,"
                " metadata, active, hidden, created_by, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rid,
                    org_id,
                    workspace_id,
                    connection_id,
                    type_,
                    event,
                    resource,
                    resource_id,
                    json.dumps(metadata),
                    int(active),
                    int(hidden),
                    created_by,
                    ts,
                    ts,
                ),
            )
            self._note_catalog(noted, workspace_id, "event", event, created_by, ts)
            if resource:
                self._note_catalog(noted, workspace_id, "resource", resource, created_by, ts)
        self._remember_catalog(noted)
        return self.get_rule(org_id, rid)  # type: ignore[return-value]

    def delete_rule(self, rule_id: str) -> None:
        """Soft-delete; deliveries still queued through the rule are canceled (it no longer routes)."""
        ts = now_iso()
        with self.tx():
            self.db.execute("UPDATE rules SET deleted_at=?, active=0, updated_at=? WHERE id=?", (ts, ts, rule_id))
            cancel_active(self, "rule_id=?", (rule_id,), ts)

    def _check_rules_cache(self) -> None:
        """Drop the cached rules if any process changed a rule since they were read. Call inside the
        write transaction that routes with them, so nothing can change them in between."""
        version = self.one("SELECT version FROM rules_version WHERE id = 1")["version"]  # type: ignore[index]
        if version != self._rules_version:
            self._rules_cache.clear()
            self._rules_version = version

    def _rules_for_workspace(self, workspace_id: str) -> list[MatchedRule]:
        cached = self._rules_cache.get(workspace_id)
        if cached is None:
            rows = self.all(
                "SELECT id, connection_id, type, event, resource, resource_id FROM rules"
                " WHERE workspace_id=? AND active=1 AND deleted_at IS NULL ORDER BY seq",
                (workspace_id,),
            )
            cached = [
                MatchedRule(r["id"], r["connection_id"], r["type"], r["event"], r["resource"], r["resource_id"])
                for r in rows
            ]
            self._rules_cache[workspace_id] = cached
        return cached

    def _match_rules(
        self, workspace_id: str, event: str, resource: str | None, resource_id: str | None
    ) -> list[MatchedRule]:
        """Active rules routing this event (after `_check_rules_cache`). A rule's `resource` / `resource_id`
        filter applies only when the rule sets it (the reference leaves this undocumented; a rule without
        them matches any)."""
        return [
            r
            for r in self._rules_for_workspace(workspace_id)
            if r.event == event
            and (r.resource is None or r.resource == resource)
            and (r.resource_id is None or r.resource_id == resource_id)
        ]

    # -- event-type / resource catalogue ------------------------------------------------------------

    def _note_catalog(
        self, noted: set[tuple[str, str, str]], workspace_id: str, kind: str, key: str, created_by: str | None, ts: str
    ) -> None:
        """Add an event type or resource to the catalogue (inside the caller's transaction); `noted`
        collects what this transaction added, for `_remember_catalog` once it has committed."""
        mark = (workspace_id, kind, key)
        if mark in self._catalog_known or mark in noted:
            return
        self.db.execute(
            "INSERT OR IGNORE INTO catalog_entries(id, workspace_id, kind, key, created_by, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (new_id(), workspace_id, kind, key, created_by, ts, ts),
        )
        noted.add(mark)

    def _remember_catalog(self, noted: set[tuple[str, str, str]]) -> None:
        """After the commit only: a mark kept from a rolled-back transaction would hide a missing entry."""
        if self.db.in_transaction:  # an outer transaction may still roll back
            return
        if len(self._catalog_known) + len(noted) > CATALOG_MEMORY:
            self._catalog_known.clear()
        self._catalog_known |= noted

    def catalog(self, workspace_id: str, kind: str) -> list[dict[str, Any]]:
        return self.all(
            "SELECT * FROM catalog_entries WHERE workspace_id=? AND kind=? ORDER BY key", (workspace_id, kind)
        )

    # -- events -----------------------------------------------------------------------------------

    def insert_events(self, events: list[NewEvent], attempt_limit: int) -> None:
        """Route accepted events and write them with their rule events (the fan-out) in one transaction.

        Each event's `rules` are matched here, inside the write transaction, so an event is routed by the
        rules as they are when it is stored, even when another process changed them a moment ago.
        Each rule event is queued for an immediate first attempt. An event matching no rule is
        `completed` at once (nothing to deliver)."""
        now_epoch = now()
        ev_rows, re_rows = [], []
        noted: set[tuple[str, str, str]] = set()
        with self.tx():
            self._check_rules_cache()
            for ev in events:
                ev.rules = self._match_rules(ev.workspace_id, ev.event, ev.resource, ev.resource_id)
                total = len(ev.rules)
                status = "pending" if total else "completed"
                ev_rows.append(
                    (
                        ev.id,
                        ev.org_id,
                        ev.workspace_id,
                        ev.event,
                        ev.resource,
                        ev.resource_id,
                        json.dumps(ev.payload, separators=(",", ":")),
                        status,
                        total,
                        None if total else ev.created_at,
                        ev.created_by,
                        ev.created_at,
                    )
                )
                for rule in ev.rules:
                    re_rows.append(
                        (
                            new_id(),
                            ev.id,
                            rule.id,
                            ev.workspace_id,
                            rule.connection_id,
                            rule.type,
                            ev.event,
                            ev.resource,
                            ev.resource_id,
                            attempt_limit,
                            now_epoch,
                            ev.created_by,
                            ev.created_at,
                        )
                    )
                self._note_catalog(noted, ev.workspace_id, "event", ev.event, ev.created_by, ev.created_at)
                if ev.resource:
                    self._note_catalog(noted, ev.workspace_id, "resource", ev.resource, ev.created_by, ev.created_at)
            self.db.executemany(
                "INSERT INTO events(id, org_id, workspace_id, event, resource, resource_id, payload, status,"
                " total_rules, completed_at, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ev_rows,
            )
            if re_rows:
                self.db.executemany(
                    "INSERT INTO rule_events(id, event_id, rule_id, workspace_id, connection_id, integration_type,"
                    " event, resource, resource_id, status, attempt_limit, next_attempt_at, created_by, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                    re_rows,
                )
        self._remember_catalog(noted)

    def list_events(
        self, org_id: str, workspace_id: str | None, filters: dict[str, str], after: int | None, limit: int
    ) -> list[dict[str, Any]]:
        where, args = "org_id=?", [org_id]
        if workspace_id:
            where, args = where + " AND workspace_id=?", [*args, workspace_id]
        for key in ("event", "resource", "resource_id", "status"):
            if filters.get(key):
                where, args = where + f" AND {key}=?", [*args, filters[key]]
        return self._page("events", where, args, after, limit, descending=True)

    def get_event(self, org_id: str, event_id: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM events WHERE id=? AND org_id=?", (event_id, org_id))

    def rule_events_for(self, event_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {eid: [] for eid in event_ids}
        if not event_ids:
            return out
        marks = ",".join("?" * len(event_ids))
        for row in self.all(f"SELECT * FROM rule_events WHERE event_id IN ({marks}) ORDER BY seq", tuple(event_ids)):
            out[row["event_id"]].append(row)
        return out

    def get_rule_event(self, event_id: str, rule_id: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM rule_events WHERE event_id=? AND rule_id=?", (event_id, rule_id))

    # -- attempts ---------------------------------------------------------------------------------

    def list_attempts(self, rule_event_id: str, after: int | None, limit: int) -> list[dict[str, Any]]:
        return self._page("attempts", "rule_event_id=?", [rule_event_id], after, limit)

    def get_attempt(self, rule_event_id: str, attempt_id: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM attempts WHERE id=? AND rule_event_id=?", (attempt_id, rule_event_id))

    # -- mappings and field catalogues ----------------------------------------------------------------

    def get_mapping(self, connection_id: str) -> dict[str, Any] | None:
        row = self.one("SELECT * FROM mappings WHERE connection_id=?", (connection_id,))
        if row is not None:
            row["schema"] = json.loads(row["schema"])
        return row

    def put_mapping(
        self, connection: dict[str, Any], schema: dict[str, Any], name: str, catalog_version: str, created_by: str
    ) -> dict[str, Any]:
        ts = now_iso()
        current = self.get_mapping(connection["id"])
        with self.tx():
            if current is None:
                mid = new_id()
                self.db.execute(
                    "INSERT INTO mappings(connection_id, id, mapping_id, version, workspace_id, integration_type,"
                    " name, schema, catalog_version, created_by, created_at, updated_at)"
                    " VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        connection["id"],
                        mid,
                        mid,
                        connection["workspace_id"],
                        connection["type"],
                        name,
                        json.dumps(schema),
                        catalog_version,
                        created_by,
                        ts,
                        ts,
                    ),
                )
            else:
                self.db.execute(
                    "UPDATE mappings SET version=version + 1, name=?, schema=?, catalog_version=?, updated_at=?"
                    " WHERE connection_id=?",
                    (name, json.dumps(schema), catalog_version, ts, connection["id"]),
                )
        return self.get_mapping(connection["id"])  # type: ignore[return-value]

    def field_catalog_row(self, connection_id: str, refresh: bool, created_by: str) -> dict[str, Any]:
        row = self.one("SELECT * FROM field_catalogs WHERE connection_id=?", (connection_id,))
        ts = now_iso()
        if row is None:
            self.db.execute(
                "INSERT INTO field_catalogs(connection_id, id, refreshed_at, created_by, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (connection_id, new_id(), ts, created_by, ts, ts),
            )
        elif refresh:
            self.db.execute(
                "UPDATE field_catalogs SET refreshed_at=?, updated_at=? WHERE connection_id=?",
                (ts, ts, connection_id),
            )
        return self.one("SELECT * FROM field_catalogs WHERE connection_id=?", (connection_id,))  # type: ignore

    # -- sessions ---------------------------------------------------------------------------------

    def create_session(self, values: dict[str, Any]) -> dict[str, Any]:
        cols = ",".join(values)
        self.db.execute(f"INSERT INTO sessions({cols}) VALUES ({','.join('?' * len(values))})", tuple(values.values()))
        return self.get_session(values["org_id"], values["id"])  # type: ignore[return-value]

    def get_session(self, org_id: str, session_id: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM sessions WHERE id=? AND org_id=?", (session_id, org_id))

    def list_sessions(
        self, org_id: str, workspace_id: str, filters: dict[str, str], after: int | None, limit: int
    ) -> list[dict[str, Any]]:
        where, args = "org_id=? AND workspace_id=?", [org_id, workspace_id]
        for key in ("status", "resource", "resource_id"):
            if filters.get(key):
                where, args = where + f" AND {key}=?", [*args, filters[key]]
        return self._page("sessions", where, args, after, limit, descending=True)

    def update_session(self, session_id: str, **values: Any) -> None:
        sets = ", ".join(f"{k}=?" for k in values)
        self.db.execute(f"UPDATE sessions SET {sets} WHERE id=?", (*values.values(), session_id))


class _Tx:
    """`with store.tx():` — BEGIN IMMEDIATE … COMMIT (ROLLBACK on error); nests as a no-op."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db
        self.outer = False
        self.changes_before = 0

    def __enter__(self) -> _Tx:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True
            self.changes_before = self.db.total_changes
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self.outer:
            return
        if exc_type is not None:
            self._roll_back()
            return
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error:
            # A commit refused (disk full, lock) may leave the transaction open: end it, so the next
            # statement does not run inside a transaction that can never commit.
            self._roll_back()
            raise

    def _roll_back(self) -> None:
        self.store.undone_changes += self.db.total_changes - self.changes_before
        if self.db.in_transaction:  # SQLite ends some transactions itself (SQLITE_FULL, SQLITE_IOERR)
            self.db.execute("ROLLBACK")
