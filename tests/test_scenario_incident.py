"""The incident practice scenario, through the real path: an embedded sandbox on 127.0.0.1 built with
`scenario="incident"`, read and fixed over its HTTP API, deliveries retried by its own engine and counted
at the inbox it serves."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from meshes_mcp.cli import main as cli_main
from meshes_mcp.sandbox import EmbeddedSandbox, SandboxInfo
from meshes_mcp.sandbox.app import create_app
from meshes_mcp.sandbox.scenarios import install
from meshes_mcp.sandbox.scenarios.incident import GONE_URL, INBOX_PATH
from tests.conftest import SandboxApi

# The documented counts of the default seed (README, "practising failures").
SIGNUPS, FAILING_EVENTS = 2400, 2000
FAILED = {"hubspot": 517, "mailchimp": 2000, "webhook": 918, "slack": 0}


@dataclass
class Incident:
    """The running practice sandbox, how to reach it, and what the scenario built (ids and summary)."""

    sandbox: EmbeddedSandbox
    info: SandboxInfo
    scenario: dict[str, Any]


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Incident]:
    sandbox = EmbeddedSandbox(tmp_path_factory.mktemp("incident"), retry_base=0.05, scenario="incident")
    info = sandbox.start()
    assert sandbox.scenario is not None
    yield Incident(sandbox, info, sandbox.scenario)
    sandbox.stop()


@pytest.fixture(scope="module")
def api(incident: Incident) -> Iterator[SandboxApi]:
    with SandboxApi(incident.info) as client:
        yield client


def base_url(info: SandboxInfo) -> str:
    return info.api_url.removesuffix("/api/v1")


def all_events(api: SandboxApi, workspace_id: str, **query: str) -> list[dict[str, Any]]:
    events, cursor = [], None
    while True:
        params = {"limit": "200", **query, **({"cursor": cursor} if cursor else {})}
        page = api.get(f"/workspaces/{workspace_id}/events", params=params).json()
        events += page["records"]
        cursor = page.get("next_cursor")
        if not cursor:
            return events


def test_counts_and_causes_are_as_documented(incident, api):
    scenario = incident.scenario
    ws = scenario["workspace_id"]
    assert scenario["summary"]["signups"] == SIGNUPS
    assert scenario["summary"]["failing_events"] == FAILING_EVENTS
    assert {k: v["failed"] for k, v in scenario["summary"]["destinations"].items()} == FAILED

    failed = all_events(api, ws, status="failed")
    assert len(failed) == FAILING_EVENTS
    assert len(all_events(api, ws, status="completed")) == SIGNUPS - FAILING_EVENTS
    per_type: dict[str, int] = {}
    for event in failed:
        assert event["failed_count"] == sum(r["status"] == "failed" for r in event["rule_events"]) >= 1
        for rule_event in event["rule_events"]:
            if rule_event["status"] == "failed":
                per_type[rule_event["integration_type"]] = per_type.get(rule_event["integration_type"], 0) + 1
    assert per_type == {k: v for k, v in FAILED.items() if v}

    connections = {c["type"]: c for c in api.get(f"/workspaces/{ws}/connections").json()["records"]}
    assert (connections["hubspot"]["active"], connections["hubspot"]["inactive_reason"]) == (
        False,
        "oauth_reauthorization_required",
    )
    assert (connections["mailchimp"]["active"], connections["mailchimp"]["inactive_reason"]) == (
        False,
        "authentication_invalid",
    )
    assert connections["mailchimp"]["metadata"]["api_key"] == "********"  # the revoked key is still a secret
    assert connections["webhook"]["metadata"]["url"] == GONE_URL
    assert connections["slack"]["active"] is True


def test_history_spans_a_day_and_causes_start_at_different_times(incident, api):
    ws = incident.scenario["workspace_id"]
    events = all_events(api, ws)
    created = sorted(e["created_at"] for e in events)
    span = _epoch(created[-1]) - _epoch(created[0])
    assert 22 * 3600 < span < 24 * 3600
    first_failure: dict[str, float] = {}
    for event in events:
        for rule_event in event["rule_events"]:
            if rule_event["status"] == "failed":
                kind, at = rule_event["integration_type"], _epoch(event["created_at"])
                first_failure[kind] = min(first_failure.get(kind, at), at)
    # Mailchimp broke ~20 h ago, the webhook ~9 h ago, HubSpot ~5 h ago.
    ages = {k: (_epoch(created[-1]) - v) / 3600 for k, v in first_failure.items()}
    assert 19 < ages["mailchimp"] < 21 and 8 < ages["webhook"] < 10 and 4 < ages["hubspot"] < 6


def test_failed_attempts_carry_the_engines_codes_messages_and_whole_retry_budget(incident, api):
    ws = incident.scenario["workspace_id"]
    newest = api.get(f"/workspaces/{ws}/events", params={"status": "failed", "limit": "1"}).json()["records"][0]
    by_type = {r["integration_type"]: r for r in newest["rule_events"]}

    webhook = attempts(api, newest["id"], by_type["webhook"]["rule"])
    assert [a["attempt_number"] for a in webhook] == [1, 2, 3, 4, 5]
    assert {a["outcome_code"] for a in webhook} == {"network_error"}
    assert webhook[0]["message"] == "could not reach 127.0.0.1:9: ConnectError All connection attempts failed"
    starts = [_epoch(a["started_at"]) for a in webhook]
    assert starts == sorted(starts) and all(a["next_attempt_at"] for a in webhook[:-1])

    (hubspot,) = attempts(api, newest["id"], by_type["hubspot"]["rule"])
    assert hubspot["outcome_code"] == "auth_failed"
    assert "inactive (oauth_reauthorization_required)" in hubspot["message"]
    assert "reconnect HubSpot in the Meshes dashboard" in hubspot["message"]

    # The first Mailchimp failure met the provider's 401; every later one found the connection inactive.
    first_failing = all_events(api, ws, status="failed")[-1]
    mailchimp_rule = next(r for r in first_failing["rule_events"] if r["integration_type"] == "mailchimp")["rule"]
    (first,) = attempts(api, first_failing["id"], mailchimp_rule)
    assert (first["outcome_code"], first["http_status"]) == ("auth_failed", 401)
    details = api.get(f"/events/{first_failing['id']}/rules/{mailchimp_rule}/attempts/{first['id']}/response-details")
    assert details.status_code == 200 and details.json()["response"]["status"] == 401
    (later,) = attempts(api, newest["id"], by_type["mailchimp"]["rule"])
    assert "inactive (authentication_invalid)" in later["message"]


def test_fixing_each_cause_then_retrying_delivers_through_the_engine(incident, api):
    info = incident.info
    scenario = incident.scenario
    ws, connections = scenario["workspace_id"], scenario["connections"]
    newest = api.get(f"/workspaces/{ws}/events", params={"status": "failed", "limit": "1"}).json()["records"][0]
    rules = {r["integration_type"]: r["rule"] for r in newest["rule_events"]}

    # Before any fix, a retry fails the way the history did: the same cause, the same group.
    api.post(f"/events/{newest['id']}/rules/{rules['webhook']}/retry").raise_for_status()
    again = api.wait_event(newest["id"], until=lambda e: _status(e, "webhook") == "failed" and _attempts(e) > 5)
    assert _status(again, "webhook") == "failed"
    assert attempts(api, newest["id"], rules["webhook"])[-1]["message"].startswith("could not reach 127.0.0.1:9")

    # The fixes: two through the API, one person's step.
    mailchimp = api.get(f"/connections/{connections['mailchimp']}").json()
    fixed = api.put(
        f"/connections/{mailchimp['id']}",
        json={"name": mailchimp["name"], "metadata": {"data_center": "us21", "api_key": "a1b2c3d4e5f6-us21"}},
    )
    assert fixed.status_code == 200 and fixed.json()["active"] is True
    inbox_url = base_url(info) + INBOX_PATH
    assert inbox_url in api.get(f"/workspaces/{ws}").json()["description"]  # where the agent learns the URL
    webhook = api.get(f"/connections/{connections['webhook']}").json()
    api.put(
        f"/connections/{webhook['id']}",
        json={"name": webhook["name"], "metadata": {**webhook["metadata"], "url": inbox_url}},
    ).raise_for_status()
    reconnected = api.post(f"{base_url(info)}/sandbox/connections/{connections['hubspot']}/reconnect")
    assert reconnected.status_code == 200
    assert reconnected.json()["reconnected"] is True and reconnected.json()["connection"]["active"] is True

    for kind in ("mailchimp", "webhook", "hubspot"):
        api.post(f"/events/{newest['id']}/rules/{rules[kind]}/retry").raise_for_status()
    settled = api.wait_event(newest["id"])
    assert settled["status"] == "completed", settled
    assert settled["completed_count"] == 4 and settled["failed_count"] == 0
    counts = api.get(f"{base_url(info)}/sandbox/inbox/signups").json()
    assert (counts["deliveries"], counts["duplicates"]) == (1, 0)


def test_reconnect_is_for_oauth_connections_only_and_needs_the_machine_key(incident, api):
    info = incident.info
    connections = incident.scenario["connections"]
    url = f"{base_url(info)}/sandbox/connections/{{}}/reconnect"
    refused = api.post(url.format(connections["webhook"]))
    assert refused.status_code == 400
    problem = refused.json()["error"]
    assert problem["data"][0]["param"] == "connection_id" and "update_connection" in problem["data"][0]["msg"]
    assert api.post(url.format("00000000-0000-4000-8000-000000000000")).status_code == 404
    assert api.post(url.format("not-a-uuid")).status_code == 404
    import httpx2

    assert httpx2.post(url.format(connections["slack"]), trust_env=False).status_code == 401
    again = api.post(url.format(connections["slack"]))  # already active: nothing to do, said so
    assert again.status_code == 200 and again.json()["reconnected"] is False


def test_inbox_counts_deliveries_and_refuses_bad_input(incident):
    import httpx2

    base = base_url(incident.info)
    with httpx2.Client(base_url=base, trust_env=False) as http:
        for delivery in ("a", "b", "a"):
            assert http.post("/sandbox/inbox/probe", content=b"{}", headers={"X-Meshes-Delivery-Id": delivery}).json()
        counts = http.get("/sandbox/inbox/probe").json()
        assert (counts["received"], counts["deliveries"], counts["duplicates"]) == (3, 2, 1)
        for name in ("%00%0a", "a" * 65, "..%5c"):
            bad = http.post(f"/sandbox/inbox/{name}", content=b"{}")
            assert bad.status_code == 400, name
            assert bad.json()["error"]["data"][0]["param"] == "name"
        huge = http.post("/sandbox/inbox/probe", content=b"x" * (1024 * 1024 + 1))
        assert huge.status_code == 413
        assert http.get("/sandbox/inbox/probe").json()["received"] == 3


def test_a_second_start_adds_nothing_and_existing_data_is_untouched(tmp_path):
    data_dir = tmp_path / "data"
    with EmbeddedSandbox(data_dir, retry_base=0.05) as info, SandboxApi(info) as api:
        api.webhook_rule("http://127.0.0.1:9/mine", "user.signup", "Mine")
        event = api.post(
            "/events",
            json={"workspace": info.workspace_id, "event": "user.signup", "payload": {"email": "a@example.com"}},
        ).json()["event"]
        api.wait_event(event["id"])
    before = snapshot(data_dir)

    first = EmbeddedSandbox(data_dir, retry_base=0.05, scenario="incident")
    first_info = first.start()
    assert first.scenario and first.scenario["installed"] is True
    ws, webhook_id = first.scenario["workspace_id"], first.scenario["connections"]["webhook"]
    with SandboxApi(first_info) as api:  # the webhook fixed to this run's inbox
        webhook = api.get(f"/connections/{webhook_id}").json()
        api.put(
            f"/connections/{webhook_id}",
            json={"name": webhook["name"], "metadata": {"url": base_url(first_info) + INBOX_PATH}},
        ).raise_for_status()
    first.stop()
    after = snapshot(data_dir)
    for table, rows in before.items():
        assert {k: after[table][k] for k in rows} == rows, table  # every old row as it was

    # Started again on another port: nothing is added; only the inbox URLs follow the new address.
    second = EmbeddedSandbox(data_dir, retry_base=0.05, scenario="incident", port=free_port(first_info))
    second_info = second.start()
    try:
        assert second.scenario and second.scenario["installed"] is False
        assert second.scenario["workspace_id"] == ws
        with SandboxApi(second_info) as api:
            assert api.get(f"/connections/{webhook_id}").json()["metadata"]["url"] == base_url(second_info) + INBOX_PATH
            assert base_url(second_info) + INBOX_PATH in api.get(f"/workspaces/{ws}").json()["description"]
    finally:
        second.stop()
    again = snapshot(data_dir)
    changed = {(t, k) for t, rows in again.items() for k, row in rows.items() if after[t].get(k) != row}
    assert changed == {("workspaces", ws), ("connections", webhook_id)}
    assert {t: len(r) for t, r in again.items()} == {t: len(r) for t, r in after.items()}


def free_port(avoid: SandboxInfo) -> int:
    taken = int(base_url(avoid).rsplit(":", 1)[1])
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != taken:
            return port


def test_a_workspace_named_incident_that_the_scenario_did_not_make_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    with EmbeddedSandbox(data_dir) as info, SandboxApi(info) as api:
        api.post("/workspaces", json={"name": "Incident"}).raise_for_status()
    before = snapshot(data_dir)
    with pytest.raises(ValueError, match='workspace named "Incident" already exists'):
        EmbeddedSandbox(data_dir, scenario="incident").start()
    assert snapshot(data_dir) == before


@pytest.mark.anyio
async def test_the_build_is_deterministic_and_fast_enough_to_run_at_start(tmp_path):
    async def build(directory: Path) -> dict[str, list[tuple]]:
        app = create_app(directory)
        async with app.router.lifespan_context(app):
            install(app.state.sandbox, "incident", "http://127.0.0.1:8787", now=1_790_000_000.0)
        db = sqlite3.connect(directory / "sandbox.db")
        try:
            return {
                "connections": db.execute(
                    "SELECT id, type, name, metadata, active, inactive_reason, created_at,"
                    " updated_at FROM connections WHERE workspace_id IN (SELECT id FROM"
                    " workspaces WHERE name='Incident') ORDER BY seq"
                ).fetchall(),
                "rules": db.execute("SELECT id, connection_id, metadata FROM rules ORDER BY seq").fetchall(),
                "events": db.execute(
                    "SELECT id, workspace_id, resource_id, payload, status, completed_count,"
                    " failed_count, started_at, completed_at, created_at FROM events ORDER BY seq"
                ).fetchall(),
                "rule_events": db.execute("SELECT * FROM rule_events ORDER BY seq").fetchall(),
                "attempts": db.execute("SELECT * FROM attempts ORDER BY seq").fetchall(),
            }
        finally:
            db.close()

    one, two = await build(tmp_path / "one"), await build(tmp_path / "two")
    assert one == two
    assert len(one["events"]) == SIGNUPS


def test_cli_reconnect_and_scenario_flag_need_their_context(incident, tmp_path, capsys):
    sandbox = incident.sandbox
    hubspot = incident.scenario["connections"]["hubspot"]
    done = subprocess.run(
        [sys.executable, "-m", "meshes_mcp", "sandbox", "reconnect", hubspot, "--data-dir", str(sandbox.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HubSpot (hubspot): ")
    missing = subprocess.run(
        [sys.executable, "-m", "meshes_mcp", "sandbox", "reconnect", hubspot, "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and f"no sandbox data in {tmp_path}" in missing.stderr
    assert "Traceback" not in missing.stderr
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--scenario", "incident"])
    assert exit_info.value.code == 2
    assert "use it with --sandbox" in capsys.readouterr().err


# -- helpers ----------------------------------------------------------------------------------------


def attempts(api: SandboxApi, event_id: str, rule_id: str) -> list[dict[str, Any]]:
    return api.get(f"/events/{event_id}/rules/{rule_id}/attempts", params={"limit": "200"}).json()["records"]


def _status(event: dict[str, Any], kind: str) -> str:
    return next(r["status"] for r in event["rule_events"] if r["integration_type"] == kind)


def _attempts(event: dict[str, Any]) -> int:
    return sum(r.get("attempt_count") or 0 for r in event["rule_events"])


def _epoch(value: str) -> float:
    from meshes_mcp.sandbox.clock import parse_iso

    return parse_iso(value)


def snapshot(data_dir: Path) -> dict[str, dict[str, tuple]]:
    """Every row of the data tables, by id."""
    db = sqlite3.connect(data_dir / "sandbox.db")
    try:
        out: dict[str, dict[str, tuple]] = {}
        for table in ("workspaces", "connections", "rules", "events", "rule_events", "attempts", "catalog_entries"):
            out[table] = {
                row[1] if table != "catalog_entries" else row[0]: row for row in db.execute(f"SELECT * FROM {table}")
            }
        return out
    finally:
        db.close()
