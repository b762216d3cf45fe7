"""Practice scenarios: realistic history written into a new workspace of a running sandbox.

`install(sandbox, "incident", base_url)` adds the scenario once per data directory:
- it writes a new workspace (never touching existing rows) in one transaction, straight through the
  store: configuration, events, rule events and every attempt, then the event statuses and counters
  through the queue's own `refresh_event`, so they agree with the rule events by construction;
- a later start finds its marker in the `meta` table and adds nothing. It only re-points the
  scenario's webhook at this run's sandbox address when the port changed (an embedded sandbox picks a
  free port per start), so the receiving inbox keeps working; history is anchored at the first build
  (a fresh data directory gives a fresh day);
- a workspace of the same name that the scenario did not make is never reused or changed: the start
  fails with a clear message instead.
"""

from __future__ import annotations

import json
from typing import Any

from meshes_mcp.sandbox.clock import new_id
from meshes_mcp.sandbox.clock import now as clock_now
from meshes_mcp.sandbox.queue import refresh_event
from meshes_mcp.sandbox.scenarios.incident import INCIDENT, INCIDENT_DEMO, Built, Generator, Scenario

SCENARIOS: dict[str, Scenario] = {"incident": INCIDENT, "incident-demo": INCIDENT_DEMO}
NAMES = ("incident",)  # offered on the command line; incident-demo is the demo's tenth-size copy


class ScenarioError(ValueError):
    """A scenario that cannot be installed; the message says why and what to do."""


def marker_key(name: str) -> str:
    return f"scenario:{name}"


def install(sandbox: Any, name: str, base_url: str, now: float | None = None) -> dict[str, Any]:
    """Install scenario `name` (or find it installed). Returns its marker: workspace_id, base_url, built_at,
    summary (the counts it wrote) and `installed` (True when this call wrote it)."""
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise ScenarioError(f"unknown scenario {name!r}: choose one of {', '.join(SCENARIOS)}")
    store = sandbox.store
    org_id = sandbox.seed["organization_id"]
    with store.tx():  # BEGIN IMMEDIATE: two sandboxes starting on one data directory install it once
        existing = store.get_meta(marker_key(name))
        if existing:
            marker = json.loads(existing)
            _follow_address(store, scenario, marker, base_url)
            store.set_meta(marker_key(name), json.dumps(marker))
            return {**marker, "installed": False}
        if store.workspace_name_taken(org_id, scenario.workspace):
            raise ScenarioError(
                f'a workspace named "{scenario.workspace}" already exists and was not made by the {name} scenario; '
                "rename it, or start the sandbox on another --data-dir to practise"
            )
        moment = clock_now() if now is None else now
        generator = Generator(scenario, sandbox, org_id, base_url, moment)
        workspace_id = generator.new_id()
        built = generator.build(workspace_id, new_publishable_key(org_id, workspace_id))
        _write(store, built)
        marker = {
            "scenario": name,
            "workspace_id": workspace_id,
            "base_url": base_url,
            "built_at": moment,
            "connections": {c["key"]: c["id"] for c in built.connections},
            "rules": {r["key"]: r["id"] for r in built.rules},
            "summary": built.summary,
        }
        store.set_meta(marker_key(name), json.dumps(marker))
    store._rules_cache.pop(workspace_id, None)  # new active rules: the next ingest must see them
    return {**marker, "installed": True}


def new_publishable_key(org_id: str, workspace_id: str) -> str:
    from meshes_mcp.sandbox.seed import new_publishable_key as make

    return make(org_id, workspace_id)


def _write(store: Any, built: Built) -> None:
    ws = built.workspace
    db = store.db
    db.execute(
        "INSERT INTO workspaces(id, org_id, name, description, pub_key, pub_key_name, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ws["id"],
            built.connections[0]["org_id"],
            ws["name"],
            ws["description"],
            ws["pub_key"],
            "Default publishable key",
            ws["created_at"],
            ws["created_at"],
        ),
    )
    db.executemany(
        "INSERT INTO connections(id, org_id, workspace_id, type, name, metadata, hidden, active, inactive_reason,"
        " created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
        [
            (
                c["id"],
                c["org_id"],
                c["workspace_id"],
                c["type"],
                c["name"],
                json.dumps(c["metadata"]),
                c["active"],
                c["inactive_reason"],
                c["created_by"],
                c["created_at"],
                c["updated_at"],
            )
            for c in built.connections
        ],
    )
    db.executemany(
        "INSERT INTO rules(id, org_id, workspace_id, connection_id, type, event, metadata, active, hidden,"
        " created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, 0, ?, ?, ?)",
        [
            (
                r["id"],
                r["org_id"],
                r["workspace_id"],
                r["connection_id"],
                r["type"],
                r["event"],
                json.dumps(r["metadata"]),
                r["created_by"],
                r["created_at"],
                r["created_at"],
            )
            for r in built.rules
        ],
    )
    for kind, key in (("event", built.rules[0]["event"]), ("resource", "user")):
        db.execute(
            "INSERT OR IGNORE INTO catalog_entries(id, workspace_id, kind, key, created_by, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (new_id(), ws["id"], kind, key, "system", ws["created_at"], ws["created_at"]),
        )
    db.executemany(
        "INSERT INTO events(id, org_id, workspace_id, event, resource, resource_id, payload, status, total_rules,"
        " started_at, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        built.events,
    )
    db.executemany(
        "INSERT INTO rule_events(id, event_id, rule_id, workspace_id, connection_id, integration_type, event,"
        " resource, resource_id, status, attempt_count, attempt_limit, next_attempt_at, started_at, completed_at,"
        " last_error, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        built.rule_events,
    )
    db.executemany(
        "INSERT INTO attempts(id, rule_event_id, event_id, rule_id, attempt_number, outcome_code, http_status,"
        " message, started_at, completed_at, duration_ms, next_attempt_at, response)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        built.attempts,
    )
    # Status and counters come from the store's own rule: they agree with the rule events by construction.
    for event_id, (_, settled) in built.event_times.items():
        refresh_event(store, event_id, settled)


def _follow_address(store: Any, scenario: Scenario, marker: dict[str, Any], base_url: str) -> None:
    """Point the scenario's loopback inbox URLs (webhook metadata, workspace text) at this run's address."""
    old = marker.get("base_url")
    if not old or old == base_url:
        return
    workspace_id = marker["workspace_id"]
    for row in store.all(
        "SELECT id, metadata FROM connections WHERE workspace_id=? AND type='webhook' AND deleted_at IS NULL",
        (workspace_id,),
    ):
        metadata = json.loads(row["metadata"])
        url = metadata.get("url")
        if isinstance(url, str) and url.startswith(old + "/sandbox/inbox/"):
            metadata["url"] = base_url + url[len(old) :]
            store.db.execute("UPDATE connections SET metadata=? WHERE id=?", (json.dumps(metadata), row["id"]))
    row = store.one("SELECT description FROM workspaces WHERE id=?", (workspace_id,))
    if row and row["description"]:
        store.db.execute(
            "UPDATE workspaces SET description=? WHERE id=?",
            (row["description"].replace(old + "/", base_url + "/"), workspace_id),
        )
    marker["base_url"] = base_url
