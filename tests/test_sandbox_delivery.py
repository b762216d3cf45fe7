"""Fan-out, the delivery engine, retries, cancel and the destinations, over real HTTP end to end."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
import uuid

import pytest

from meshes_mcp.sandbox import EmbeddedSandbox
from meshes_mcp.sandbox.receiver import verify_signature
from tests.conftest import SandboxApi


def unique(prefix: str = "evt") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def ws(sandbox) -> str:
    return sandbox.workspace_id


def webhook(api, ws, url: str, **metadata) -> str:
    name = unique("hook").replace(".", "-")
    response = api.post(
        "/connections", json={"workspace": ws, "type": "webhook", "name": name, "metadata": {"url": url, **metadata}}
    )
    assert response.status_code == 201, response.text
    return response.json()["connection"]["id"]


def rule(api, ws, connection: str, event: str, metadata=None, **extra) -> str:
    response = api.post(
        "/rules",
        json={
            "workspace": ws,
            "connection": connection,
            "event": event,
            "metadata": metadata or {"action": "send_webhook"},
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["rule"]["id"]


def emit(api, ws, event: str, payload=None, **extra) -> str:
    response = api.post(
        "/events",
        json={
            "workspace": ws,
            "event": event,
            "payload": payload if payload is not None else {"email": "jo@example.com"},
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["event"]["id"]


def attempts(api, event_id: str, rule_id: str) -> list[dict]:
    page = api.get(f"/events/{event_id}/rules/{rule_id}/attempts").json()
    return page["records"]


def one_rule_event(event: dict) -> dict:
    assert len(event["rule_events"]) == 1, event
    return event["rule_events"][0]


def wire(api: SandboxApi, url: str, **metadata: str) -> tuple[str, str]:
    """A webhook connection and a rule for a fresh event name (see SandboxApi.webhook_rule) → (event name, rule id)."""
    name = unique()
    return name, api.webhook_rule(url, name, name.replace(".", "-"), **metadata)[1]


# -- fan-out --------------------------------------------------------------------------------------


def test_fan_out_matches_filters_and_counts_stay_true(sandbox_api: SandboxApi, ws, webhook_receiver):
    api, rx = sandbox_api, webhook_receiver
    name = unique()
    ok = webhook(api, ws, f"{rx.url}/fanout/ok")
    bad = webhook(api, ws, f"{rx.url}/status/400")
    matching = {
        rule(api, ws, ok, name),
        rule(api, ws, ok, name, metadata={"action": "send_webhook"}, resource="order"),
        rule(api, ws, ok, name, resource="order", resource_id="ord_1"),
        rule(api, ws, bad, name),
    }
    rule(api, ws, ok, name, resource="invoice")  # another resource
    rule(api, ws, ok, name, resource_id="ord_2")  # another id
    rule(api, ws, bad, name, resource="order", active=False)  # inactive
    rule(api, ws, ok, unique())  # another event

    event_id = emit(api, ws, name, {"email": "a@example.com"}, resource="order", resource_id="ord_1")
    event = api.wait_event(event_id)
    assert {r["rule"] for r in event["rule_events"]} == matching
    assert (event["status"], event["total_rules"], event["completed_count"], event["failed_count"]) == (
        "failed",
        4,
        3,
        1,
    )
    assert event["started_at"] and event["completed_at"]
    failed = api.get(f"/workspaces/{ws}/events", params={"status": "failed", "event": name}).json()
    assert [e["id"] for e in failed["records"]] == [event_id]

    nothing = api.get(f"/events/{emit(api, ws, unique())}").json()
    assert (nothing["status"], nothing["total_rules"], nothing["rule_events"]) == ("completed", 0, [])

    payload = api.get(f"/events/{event_id}/payload").json()
    assert payload["payload"] == {"email": "a@example.com"} and payload["resource_id"] == "ord_1"


def test_bulk_reports_each_item_in_order(sandbox_api, ws):
    items = [
        {"workspace": ws, "event": "bulk.ok", "payload": {"n": 1}},
        {"workspace": ws, "payload": {"n": 2}},
        {"workspace": ws, "event": "bulk.ok", "payload": {"email": "not-an-email"}},
        {"workspace": "00000000-0000-4000-8000-000000000000", "event": "bulk.ok", "payload": {}},
        "not an object",
        {"workspace": ws, "event": "bulk.ok", "payload": {"n": 6}},
    ]
    response = sandbox_api.post("/events/bulk", json=items)
    assert response.status_code == 207, response.text
    body = response.json()
    assert (body["count"], body["error_count"], len(body["records"])) == (2, 4, 6)
    records = body["records"]
    assert records[0]["event"] == "bulk.ok" and records[5]["event"] == "bulk.ok"
    assert [r.get("index") for r in records] == [None, 1, 2, 3, 4, None]
    assert records[1]["error"]["data"][0]["param"] == "event"
    assert records[2]["error"]["data"][0]["param"] == "payload.email"
    assert records[3]["error"]["name"] == "NotFound" and records[3]["error"]["data"][0]["param"] == "workspace"

    rejected = sandbox_api.post("/events/bulk", json=[{"payload": {}}, {"event": "x"}])
    assert rejected.status_code == 400 and rejected.json()["error_count"] == 2
    assert {d["param"] for d in rejected.json()["error"]["data"]} == {"[0].event", "[1].payload"}
    assert sandbox_api.post("/events/bulk", json=[]).status_code == 400
    too_many = sandbox_api.post("/events/bulk", json=[{"workspace": ws, "event": "x", "payload": {}}] * 101)
    assert too_many.status_code == 400 and "100" in too_many.json()["error"]["message"]
    assert sandbox_api.post("/events/bulk", json={"event": "x"}).status_code == 400


# -- retries and outcomes -------------------------------------------------------------------------


def test_500_then_200_is_retried_with_backoff_and_recorded(sandbox_api, ws, webhook_receiver):
    name, rule_id = wire(sandbox_api, f"{webhook_receiver.url}/flaky/1/500")
    event_id = emit(sandbox_api, ws, name)
    event = sandbox_api.wait_event(event_id)
    rule_event = one_rule_event(event)
    assert (event["status"], rule_event["status"], rule_event["attempt_count"]) == ("completed", "completed", 2)
    assert rule_event["last_error"] is None and rule_event["next_attempt_at"] is None

    first, second = attempts(sandbox_api, event_id, rule_id)
    assert (first["attempt_number"], first["outcome_code"], first["http_status"]) == (1, "rejected_server_error", 500)
    assert (second["attempt_number"], second["outcome_code"], second["http_status"]) == (2, "delivered", 200)
    assert first["next_attempt_at"] and second["next_attempt_at"] is None
    assert second["started_at"] >= first["next_attempt_at"]  # waited for the backoff
    assert all(a["duration_ms"] >= 0 and a["completed_at"] >= a["started_at"] for a in (first, second))
    assert first["rule_event_id"] == rule_event["id"] and first["event_id"] == event_id and first["rule"] == rule_id
    assert sandbox_api.get(f"/events/{event_id}/rules/{rule_id}/attempts/{first['id']}").json() == first

    details = sandbox_api.get(f"/events/{event_id}/rules/{rule_id}/attempts/{first['id']}/response-details").json()
    assert details["response"]["status"] == 500 and "staged failure" in details["response"]["body"]
    assert details["request"]["headers"]["X-Meshes-Delivery-Id"] == rule_event["id"]
    receipts = webhook_receiver.matching(event_id=event_id)
    assert [r.status for r in receipts] == [500, 200]
    assert {r.delivery_id for r in receipts} == {rule_event["id"]}


@pytest.mark.parametrize(
    ("path", "outcome", "http_status"),
    [
        ("status/400", "rejected_client_error", 400),
        ("status/404", "rejected_client_error", 404),
        ("status/401", "auth_failed", 401),
        ("status/403", "auth_failed", 403),
    ],
)
def test_client_errors_are_final(sandbox_api, ws, webhook_receiver, path, outcome, http_status):
    name, rule_id = wire(sandbox_api, f"{webhook_receiver.url}/{path}")
    event_id = emit(sandbox_api, ws, name)
    event = sandbox_api.wait_event(event_id)
    rule_event = one_rule_event(event)
    assert (event["status"], rule_event["status"], rule_event["attempt_count"]) == ("failed", "failed", 1)
    assert str(http_status) in rule_event["last_error"]
    [only] = attempts(sandbox_api, event_id, rule_id)
    assert (only["outcome_code"], only["http_status"], only["next_attempt_at"]) == (outcome, http_status, None)


def test_retried_outcomes(sandbox_api, ws, webhook_receiver):
    # 429 → rate_limited, then delivered; 5xx until the attempts run out; refused connections.
    name, rule_id = wire(sandbox_api, f"{webhook_receiver.url}/flaky/1/429?retry_after=0")
    limited = emit(sandbox_api, ws, name)
    assert sandbox_api.wait_event(limited)["status"] == "completed"
    assert [a["outcome_code"] for a in attempts(sandbox_api, limited, rule_id)] == ["rate_limited", "delivered"]

    name, rule_id = wire(sandbox_api, f"{webhook_receiver.url}/status/503")
    down = emit(sandbox_api, ws, name)
    event = sandbox_api.wait_event(down)
    assert event["status"] == "failed" and one_rule_event(event)["attempt_count"] == 5
    assert [a["outcome_code"] for a in attempts(sandbox_api, down, rule_id)] == ["rejected_server_error"] * 5

    name, rule_id = wire(sandbox_api, "http://127.0.0.1:9/closed")
    unreachable = emit(sandbox_api, ws, name)
    event = sandbox_api.wait_event(unreachable)
    assert event["status"] == "failed"
    outcomes = attempts(sandbox_api, unreachable, rule_id)
    assert {a["outcome_code"] for a in outcomes} == {"network_error"} and len(outcomes) == 5
    assert outcomes[0]["http_status"] is None
    details = sandbox_api.get(f"/events/{unreachable}/rules/{rule_id}/attempts/{outcomes[0]['id']}/response-details")
    assert details.json()["captured"] is False and details.json()["response"] is None


def test_redirects_count_as_delivered(sandbox_api, ws, webhook_receiver):
    name, rule_id = wire(sandbox_api, f"{webhook_receiver.url}/status/302")
    event_id = emit(sandbox_api, ws, name)
    assert sandbox_api.wait_event(event_id)["status"] == "completed"
    assert attempts(sandbox_api, event_id, rule_id)[0]["http_status"] == 302


def test_timeouts_are_retried(tmp_path, webhook_receiver):
    with (
        EmbeddedSandbox(tmp_path, retry_base=0.05, max_attempts=2, delivery_timeout=0.3) as info,
        SandboxApi(info) as api,
    ):
        name, rule_id = wire(api, f"{webhook_receiver.url}/slow/1")
        event_id = emit(api, info.workspace_id, name)
        event = api.wait_event(event_id)
        assert event["status"] == "failed"
        assert [a["outcome_code"] for a in attempts(api, event_id, rule_id)] == ["timeout", "timeout"]


# -- manual retry and cancel ----------------------------------------------------------------------


def test_manual_retry_gives_a_failed_delivery_one_more_attempt(sandbox_api, ws, webhook_receiver):
    name, rule_id = wire(sandbox_api, f"{webhook_receiver.url}/flaky/1/400")
    event_id = emit(sandbox_api, ws, name)
    assert sandbox_api.wait_event(event_id)["status"] == "failed"

    retried = sandbox_api.post(f"/events/{event_id}/rules/{rule_id}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["rule"] == rule_id and retried.json()["status"] in ("retrying", "processing", "completed")
    event = sandbox_api.wait_event(event_id, until=lambda ev: ev["status"] == "completed")
    assert (event["status"], event["completed_count"], event["failed_count"]) == ("completed", 1, 0)
    assert one_rule_event(event)["attempt_count"] == 2

    again = sandbox_api.post(f"/events/{event_id}/rules/{rule_id}/retry")
    assert again.status_code == 409 and again.json()["error"]["name"] == "Conflict"
    assert sandbox_api.post(f"/events/{event_id}/rules/{rule_id}/cancel").status_code == 409
    assert sandbox_api.post(f"/events/{event_id}/cancel").status_code == 409
    assert sandbox_api.post(f"/events/{event_id}/rules/{uuid.uuid4()}/retry").status_code == 404


def test_retry_is_too_early_while_an_attempt_is_in_flight(sandbox_api, ws, webhook_receiver):
    name, rule_id = wire(sandbox_api, f"{webhook_receiver.url}/slow/1.5")
    event_id = emit(sandbox_api, ws, name)
    webhook_receiver.wait_for(1, "/slow/1.5")
    early = sandbox_api.post(f"/events/{event_id}/rules/{rule_id}/retry")
    assert early.status_code == 425 and early.json()["error"]["name"] == "TooEarly"
    # Cancel while in flight: the request finishes, and since it delivered the rule event completes.
    canceled = sandbox_api.post(f"/events/{event_id}/rules/{rule_id}/cancel").json()
    assert canceled["status"] == "canceled"
    event = sandbox_api.wait_event(event_id, until=lambda ev: ev["rule_events"][0]["status"] == "completed")
    assert event["status"] == "completed" and one_rule_event(event)["attempt_count"] == 1

    name, rule_id = wire(sandbox_api, f"{webhook_receiver.url}/status/500")
    soon = emit(sandbox_api, ws, name)
    sandbox_api.wait_event(soon, until=lambda ev: ev["rule_events"][0]["attempt_count"] >= 1)
    assert sandbox_api.post(f"/events/{soon}/rules/{rule_id}/retry").status_code in (425, 200)


def test_force_retry_and_cancel_a_retrying_delivery(sandbox_api, ws, webhook_receiver):
    name, rule_id = wire(sandbox_api, f"{webhook_receiver.url}/status/500?retry_after=30")
    event_id = emit(sandbox_api, ws, name)
    event = sandbox_api.wait_event(event_id, until=lambda ev: ev["rule_events"][0]["status"] == "retrying")
    assert event["status"] == "processing" and one_rule_event(event)["next_attempt_at"]

    forced = sandbox_api.post(f"/events/{event_id}/rules/{rule_id}/retry")
    assert forced.status_code == 200
    event = sandbox_api.wait_event(
        event_id,
        until=lambda ev: ev["rule_events"][0]["attempt_count"] == 2 and ev["rule_events"][0]["status"] == "retrying",
    )
    assert one_rule_event(event)["attempt_count"] == 2

    canceled = sandbox_api.post(f"/events/{event_id}/rules/{rule_id}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert canceled.json()["next_attempt_at"] is None
    event = sandbox_api.get(f"/events/{event_id}").json()
    assert (event["status"], event["completed_count"], event["failed_count"]) == ("canceled", 0, 0)
    assert sandbox_api.post(f"/events/{event_id}/rules/{rule_id}/cancel").status_code == 200  # idempotent
    assert sandbox_api.post(f"/events/{event_id}/rules/{rule_id}/retry").status_code == 409
    assert sandbox_api.post(f"/events/{event_id}/cancel").json()["status"] == "canceled"
    time.sleep(0.2)
    assert len(attempts(sandbox_api, event_id, rule_id)) == 2  # nothing more was attempted


def test_cancel_event_cancels_every_pending_rule(sandbox_api, ws, webhook_receiver):
    name = unique()
    hook = webhook(sandbox_api, ws, f"{webhook_receiver.url}/status/503?retry_after=30")
    rules = {rule(sandbox_api, ws, hook, name), rule(sandbox_api, ws, hook, name, resource="user")}
    event_id = emit(sandbox_api, ws, name, resource="user")
    sandbox_api.wait_event(event_id, until=lambda ev: all(r["status"] == "retrying" for r in ev["rule_events"]))
    event = sandbox_api.post(f"/events/{event_id}/cancel").json()
    assert event["status"] == "canceled" and {r["rule"] for r in event["rule_events"]} == rules
    assert {r["status"] for r in event["rule_events"]} == {"canceled"}


# -- webhook requests -----------------------------------------------------------------------------


def test_wrapped_webhook_is_signed_and_authenticated(sandbox_api, ws, webhook_receiver):
    secret = "whsec_test_0123456789"
    name, rule_id = wire(
        sandbox_api,
        f"{webhook_receiver.url}/signed",
        auth_scheme="bearer",
        auth_token="tok_abc123",
        signing_algorithm="sha256",
        signing_secret=secret,
        custom_headers='{"X-Team": "growth"}',
    )
    event_id = emit(
        sandbox_api, ws, name, {"email": "sig@example.com", "plan": "pro"}, resource="user", resource_id="usr_1"
    )
    assert sandbox_api.wait_event(event_id)["status"] == "completed"
    [receipt] = webhook_receiver.matching(event_id=event_id)
    assert receipt.method == "POST"
    assert receipt.headers["x-meshes-signature"].startswith("sha256=")
    assert verify_signature(receipt.body, receipt.headers["x-meshes-signature"], secret)
    assert not verify_signature(receipt.body + b" ", receipt.headers["x-meshes-signature"], secret)
    assert receipt.headers["authorization"] == "Bearer tok_abc123" and receipt.headers["x-team"] == "growth"
    body = receipt.json()
    assert set(body) == {"uuid", "event", "resource", "resource_id", "payload", "time_created", "time_sent"}
    assert (body["uuid"], body["event"], body["resource"], body["resource_id"]) == (event_id, name, "user", "usr_1")
    assert body["payload"] == {"email": "sig@example.com", "plan": "pro"}
    assert str(body["time_sent"]) == receipt.headers["x-meshes-timestamp"] and body["time_sent"] >= body["time_created"]

    conn = sandbox_api.get(f"/events/{event_id}").json()["rule_events"][0]["connection"]
    metadata = sandbox_api.get(f"/connections/{conn}").json()["metadata"]
    assert metadata["auth_token"] == metadata["signing_secret"] == "********"
    [first] = attempts(sandbox_api, event_id, rule_id)
    details = sandbox_api.get(f"/events/{event_id}/rules/{rule_id}/attempts/{first['id']}/response-details").text
    assert "tok_abc123" not in details and secret not in details


def test_raw_webhook_carries_metadata_in_headers(sandbox_api, ws, webhook_receiver):
    secret = "raw-secret"
    name, _ = wire(
        sandbox_api,
        f"{webhook_receiver.url}/raw",
        payload_mode="raw",
        http_method="PUT",
        auth_scheme="basic",
        auth_username="meshes",
        auth_password="p@ss",
        signing_algorithm="sha512",
        signing_secret=secret,
        signing_header="X-Signature",
    )
    event_id = emit(sandbox_api, ws, name, {"id": "u1", "email": "raw@example.com"}, resource="user", resource_id="u1")
    assert sandbox_api.wait_event(event_id)["status"] == "completed"
    [receipt] = webhook_receiver.matching(event_id=event_id)
    assert receipt.method == "PUT" and receipt.json() == {"id": "u1", "email": "raw@example.com"}
    assert (
        receipt.headers["x-meshes-event"],
        receipt.headers["x-meshes-resource"],
        receipt.headers["x-meshes-resource-id"],
    ) == (name, "user", "u1")
    assert receipt.headers["x-meshes-timestamp"].isdigit()
    assert base64.b64decode(receipt.headers["authorization"].split()[1]) == b"meshes:p@ss"
    assert receipt.headers["x-signature"].startswith("sha512=")
    assert verify_signature(receipt.body, receipt.headers["x-signature"], secret)

    name, _ = wire(
        sandbox_api,
        f"{webhook_receiver.url}/custom",
        auth_scheme="custom_header",
        auth_header_name="X-API-Key",
        auth_header_value="sk-abc123",
    )
    event_id = emit(sandbox_api, ws, name)
    sandbox_api.wait_event(event_id)
    assert webhook_receiver.matching(event_id=event_id)[0].headers["x-api-key"] == "sk-abc123"


def test_url_test_runs_only_when_asked(sandbox_api, ws, webhook_receiver):
    before = len(webhook_receiver.matching("/url-test"))
    webhook(sandbox_api, ws, f"{webhook_receiver.url}/url-test/ok", skip_url_test="false")
    [probe] = webhook_receiver.matching("/url-test")[before:]
    assert probe.headers["x-meshes-test"] == "true" and probe.json()["event"] == "meshes.url_test"
    failing = sandbox_api.post(
        "/connections",
        json={
            "workspace": ws,
            "type": "webhook",
            "name": "Failing test",
            "metadata": {"url": f"{webhook_receiver.url}/status/500", "skip_url_test": "false"},
        },
    )
    assert failing.status_code == 422 and failing.json()["error"]["data"][0]["param"] == "metadata.url"


# -- simulated destinations -----------------------------------------------------------------------


def seeded(api, ws, type_: str) -> dict:
    return next(c for c in api.get(f"/workspaces/{ws}/connections").json()["records"] if c["type"] == type_)


def test_unknown_list_id_and_option_are_client_errors(sandbox_api, ws):
    hubspot = seeded(sandbox_api, ws, "hubspot")["id"]
    name = unique()
    good = rule(sandbox_api, ws, hubspot, name, {"action": "add_to_list", "id": "8"})
    bad = rule(sandbox_api, ws, hubspot, name, {"action": "add_to_list", "id": "9"})
    option = rule(
        sandbox_api, ws, hubspot, name, {"action": "update_property", "id": "lifecycle_stage", "value": "royalty"}
    )
    event_id = emit(sandbox_api, ws, name, {"email": "crm@example.com"})
    event = sandbox_api.wait_event(event_id)
    by_rule = {r["rule"]: r for r in event["rule_events"]}
    assert by_rule[good]["status"] == "completed"
    assert by_rule[bad]["status"] == by_rule[option]["status"] == "failed"
    assert '"9"' in by_rule[bad]["last_error"] and "lists" in by_rule[bad]["last_error"]
    assert "5 Newsletter Subscribers" in by_rule[bad]["last_error"]
    [attempt] = attempts(sandbox_api, event_id, bad)
    assert (attempt["outcome_code"], attempt["http_status"]) == ("rejected_client_error", 404)
    assert "customer" in by_rule[option]["last_error"]
    delivered = attempts(sandbox_api, event_id, good)[0]
    details = sandbox_api.get(f"/events/{event_id}/rules/{good}/attempts/{delivered['id']}/response-details").json()
    assert details["simulated"] is True and details["response"]["status"] == 200


def test_missing_email_is_a_mapping_error(sandbox_api, ws):
    hubspot = seeded(sandbox_api, ws, "hubspot")["id"]
    name = unique()
    rule_id = rule(sandbox_api, ws, hubspot, name, {"action": "add_to_list", "id": "5"})
    event_id = emit(sandbox_api, ws, name, {"plan": "pro"})
    event = sandbox_api.wait_event(event_id)
    assert event["status"] == "failed" and "email" in one_rule_event(event)["last_error"]
    assert attempts(sandbox_api, event_id, rule_id)[0]["outcome_code"] == "mapping_error"


def test_rejected_credential_is_auth_failed_until_fixed(sandbox_api, ws):
    created = sandbox_api.post(
        "/connections",
        json={
            "workspace": ws,
            "type": "activecampaign",
            "name": "AC",
            "metadata": {"api_url": "https://demo.api-us1.com", "api_key": "good-key-123"},
        },
    ).json()["connection"]
    lists = sandbox_api.get(f"/connections/{created['id']}/actions").json()["lists"]
    name = unique()
    rule_id = rule(sandbox_api, ws, created["id"], name, {"action": "add_to_list", "id": lists[0]["id"]})
    metadata = {"api_url": "https://demo.api-us1.com", "api_key": "invalid-key-123"}
    updated = sandbox_api.put(f"/connections/{created['id']}", json={"name": "AC", "metadata": metadata})
    assert updated.status_code == 200

    event_id = emit(sandbox_api, ws, name)
    event = sandbox_api.wait_event(event_id)
    assert event["status"] == "failed"
    [attempt] = attempts(sandbox_api, event_id, rule_id)
    assert (attempt["outcome_code"], attempt["http_status"]) == ("auth_failed", 401)
    conn = sandbox_api.get(f"/connections/{created['id']}").json()
    assert (conn["active"], conn["inactive_reason"]) == (False, "authentication_invalid")
    assert sandbox_api.get(f"/connections/{created['id']}/actions").status_code == 409

    metadata["api_key"] = "good-key-456"
    fixed = sandbox_api.put(f"/connections/{created['id']}", json={"name": "AC", "metadata": metadata}).json()
    assert fixed["active"] is True and fixed["inactive_reason"] is None
    assert sandbox_api.post(f"/events/{event_id}/rules/{rule_id}/retry").status_code == 200
    assert sandbox_api.wait_event(event_id, until=lambda ev: ev["status"] == "completed")["status"] == "completed"


def test_inactive_connection_fails_without_delivering(sandbox_api, sandbox_dir, ws):
    zoom = seeded(sandbox_api, ws, "zoom")
    meeting = sandbox_api.get(f"/connections/{zoom['id']}/actions").json()["meetings"][0]["id"]
    name = unique()
    rule_id = rule(sandbox_api, ws, zoom["id"], name, {"action": "add_meeting_registrant", "id": meeting})
    db = sqlite3.connect(sandbox_dir / "sandbox.db")
    try:
        with db:
            db.execute(
                "UPDATE connections SET active=0, inactive_reason='oauth_reauthorization_required' WHERE id=?",
                (zoom["id"],),
            )
        event_id = emit(sandbox_api, ws, name)
        event = sandbox_api.wait_event(event_id)
        assert "oauth_reauthorization_required" in one_rule_event(event)["last_error"]
        [attempt] = attempts(sandbox_api, event_id, rule_id)
        assert (attempt["outcome_code"], attempt["http_status"], attempt["has_response_details"]) == (
            "auth_failed",
            None,
            False,
        )
    finally:
        with db:
            db.execute("UPDATE connections SET active=1, inactive_reason=NULL WHERE id=?", (zoom["id"],))
        db.close()


def test_slack_message_is_rendered_from_the_payload(sandbox_api, ws):
    slack = seeded(sandbox_api, ws, "slack")["id"]
    channel = sandbox_api.get(f"/connections/{slack}/actions").json()["channels"][0]["id"]
    name = unique()
    rule_id = rule(
        sandbox_api,
        ws,
        slack,
        name,
        {"action": "send_message", "id": channel, "template": "New signup: {{email}} on {{user.plan}}"},
    )
    event_id = emit(sandbox_api, ws, name, {"email": "s@example.com", "user": {"plan": "pro"}})
    assert sandbox_api.wait_event(event_id)["status"] == "completed"
    attempt = attempts(sandbox_api, event_id, rule_id)[0]
    details = sandbox_api.get(f"/events/{event_id}/rules/{rule_id}/attempts/{attempt['id']}/response-details").json()
    body = json.loads(details["response"]["body"])
    assert body["channel"] == channel and body["message"]["text"] == "New signup: s@example.com on pro"


def test_every_simulated_integration_delivers(sandbox_api, ws):
    """One rule per action of every non-webhook integration, built from the catalogue and live data."""
    catalog = {i["type"]: i for i in sandbox_api.get("/integrations").json()["records"]}
    connections = {c["type"]: c["id"] for c in sandbox_api.get(f"/workspaces/{ws}/connections").json()["records"]}
    name = unique()
    expected = set()
    for kind, integration in catalog.items():
        if kind == "webhook":
            continue
        if kind not in connections:  # an api_key integration: create it from its auth fields
            metadata = {}
            for field in integration["authentication"].get("fields", []):
                if field.get("options"):
                    metadata[field["key"]] = field["options"][0]["value"]
                elif field["key"] == "data_center":
                    metadata[field["key"]] = "us6"
                else:
                    metadata[field["key"]] = "https://acct.example.com" if field.get("validate") == "url" else "k-1"
            created = sandbox_api.post(
                "/connections", json={"workspace": ws, "type": kind, "name": f"All {kind}", "metadata": metadata}
            )
            assert created.status_code == 201, created.text
            connections[kind] = created.json()["connection"]["id"]
        live = sandbox_api.get(f"/connections/{connections[kind]}/actions").json()
        for action in integration["actions"].values():
            metadata = {"action": action["key"]}
            for item in action.get("data", []):
                if item["kind"] in ("simple", "advanced"):
                    picked = live[item["key"]][0]
                    metadata[item["field"]] = picked["id"]
                    if item["kind"] == "advanced":
                        metadata[item["options"]["field"]] = picked["options"][0]["value"]
                elif item.get("required"):
                    metadata[item["field"]] = "Team <team@example.com>" if item["field"] == "from" else "Hi {{email}}"
            expected.add(rule(sandbox_api, ws, connections[kind], name, metadata))
    event = sandbox_api.wait_event(emit(sandbox_api, ws, name, {"email": "all@example.com", "name": "Al"}))
    failures = {r["integration_type"]: r["last_error"] for r in event["rule_events"] if r["status"] != "completed"}
    assert not failures and {r["rule"] for r in event["rule_events"]} == expected
    assert event["total_rules"] == event["completed_count"] == len(expected) > 25
