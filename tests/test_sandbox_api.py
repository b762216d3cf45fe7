"""Sandbox endpoints: bodies, status codes, error bodies with `param`, pagination, redaction."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"message", "error"} and body["error"]["name"] and body["error"]["message"]
    return body["error"]


def params(response, status: int = 400) -> dict[str, str]:
    return {d["param"]: d["msg"] for d in error(response, status).get("data", [])}


@pytest.fixture(scope="module")
def workspace(sandbox_api) -> str:
    response = sandbox_api.post("/workspaces", json={"name": "Api Tests", "description": "api module"})
    assert response.status_code == 201, response.text
    return response.json()["workspace"]["id"]


def connection_of(sandbox_api, workspace_id: str, type_: str) -> dict:
    records = sandbox_api.get(f"/workspaces/{workspace_id}/connections").json()["records"]
    return next(c for c in records if c["type"] == type_)


# -- workspaces -----------------------------------------------------------------------------------


def test_workspace_lifecycle(sandbox_api, workspace):
    got = sandbox_api.get(f"/workspaces/{workspace}").json()
    assert got["name"] == "Api Tests" and got["publishable_key"]["public_key"].startswith("mesh_pub_")
    listed = sandbox_api.get("/workspaces").json()
    assert all("publishable_key" not in w for w in listed["records"])

    assert "name" in params(sandbox_api.post("/workspaces", json={"name": "x"}))
    assert "name" in params(sandbox_api.post("/workspaces", json={"name": "bad/name"}))
    assert "color" in params(sandbox_api.post("/workspaces", json={"name": "Fine", "color": "red"}))
    assert params(sandbox_api.post("/workspaces", json={"name": "api tests"}), 409) == {
        "name": 'a workspace named "api tests" already exists'
    }
    assert "Content-Type" in params(sandbox_api.post("/workspaces", content=b"{nope", headers={"content-type": "x"}))
    assert "body" in params(
        sandbox_api.post("/workspaces", content=b"{nope", headers={"content-type": "application/json"})
    )

    updated = sandbox_api.put(f"/workspaces/{workspace}", json={"name": "Api Tests", "description": None})
    assert updated.status_code == 200 and updated.json()["description"] is None and "workspace" not in updated.json()
    error(sandbox_api.get(f"/workspaces/{UNKNOWN}"), 404)
    error(sandbox_api.get("/workspaces/not-a-uuid"), 404)


def test_unknown_route_and_method_use_the_error_body(sandbox_api):
    error(sandbox_api.get("/nothing-here"), 404)
    error(sandbox_api.delete("/workspaces"), 405)


# -- connections ----------------------------------------------------------------------------------


def test_seeded_oauth_connections_and_live_action_data(sandbox, sandbox_api):
    records = sandbox_api.get(f"/workspaces/{sandbox.workspace_id}/connections").json()["records"]
    assert {c["type"] for c in records} >= {
        "hubspot",
        "salesforce",
        "slack",
        "intercom",
        "zoom",
        "aweber",
        "discord",
        "pipedrive",
    }
    hubspot = next(c for c in records if c["type"] == "hubspot")
    actions = sandbox_api.get(f"/connections/{hubspot['id']}/actions").json()
    lists = {i["id"]: i["name"] for i in actions["lists"]}
    assert lists["5"] == "Newsletter Subscribers" and lists["8"] == "Active Subscriptions"
    stage = next(p for p in actions["properties"] if p["id"] == "lifecycle_stage")
    assert (
        stage["key"] == "lifecycle_stage"
        and {"key": "customer", "value": "customer", "label": "Customer"} in stage["options"]
    )
    assert sandbox_api.get(f"/connections/{hubspot['id']}/actions").json() == actions  # deterministic

    slack = next(c for c in records if c["type"] == "slack")
    channels = sandbox_api.get(f"/connections/{slack['id']}/actions").json()["channels"]
    assert channels and all(c["id"].startswith("C") and len(c["id"]) == 11 for c in channels)


def test_oauth_types_cannot_be_created(sandbox_api, workspace):
    response = sandbox_api.post(
        "/connections", json={"workspace": workspace, "type": "hubspot", "name": "Hub", "metadata": {}}
    )
    assert "OAuth" in params(response)["type"]


def test_connection_validation_names_params(sandbox_api, workspace):
    base = {"workspace": workspace, "type": "webhook", "name": "Hook"}
    insecure = sandbox_api.post("/connections", json={**base, "metadata": {"url": "http://example.com/hook"}})
    assert "https://" in params(insecure)["metadata.url"]
    missing = sandbox_api.post("/connections", json={**base, "metadata": {}})
    assert "metadata.url" in params(missing)
    bad_type = sandbox_api.post("/connections", json={**base, "type": "fax", "metadata": {}})
    assert "type" in params(bad_type)
    no_ws = sandbox_api.post("/connections", json={**base, "workspace": UNKNOWN, "metadata": {"url": "https://a.b"}})
    assert "workspace" in params(no_ws, 404)
    basic = sandbox_api.post(
        "/connections", json={**base, "metadata": {"url": "https://a.example", "auth_scheme": "basic"}}
    )
    assert {"metadata.auth_username", "metadata.auth_password"} <= set(params(basic))


def test_credentials_are_redacted_and_kept_on_update(sandbox_dir, sandbox_api, workspace):
    body = {
        "workspace": workspace,
        "type": "mailchimp",
        "name": "Mailchimp Main",
        "metadata": {"data_center": "us6", "api_key": "abcdef0123456789-us6"},
    }
    created = sandbox_api.post("/connections", json=body)
    assert created.status_code == 201, created.text
    conn = created.json()["connection"]
    assert conn["metadata"] == {"data_center": "us6", "api_key": "********"}
    assert "abcdef0123456789" not in sandbox_api.get(f"/connections/{conn['id']}").text
    assert "abcdef0123456789" not in sandbox_api.get("/connections").text
    assert params(sandbox_api.post("/connections", json=body), 409) == {
        "name": 'a connection named "Mailchimp Main" already exists in this workspace'
    }

    # PUT what was read: the masked key keeps its stored value.
    same = sandbox_api.put(
        f"/connections/{conn['id']}", json={"name": "Mailchimp Renamed", "metadata": conn["metadata"]}
    )
    assert same.status_code == 200 and same.json()["name"] == "Mailchimp Renamed"
    db = sqlite3.connect(sandbox_dir / "sandbox.db")
    stored = db.execute("SELECT metadata FROM connections WHERE id=?", (conn["id"],)).fetchone()[0]
    db.close()
    assert "abcdef0123456789-us6" in stored

    fields = sandbox_api.get(f"/connections/{conn['id']}/fields").json()
    assert fields["connection_id"] == conn["id"] and fields["catalog_version"]
    email = next(f for f in fields["fields"] if f["key"] == "email")
    assert email["constraints"] == {"required": True, "format": "email"}
    assert params(sandbox_api.get(f"/connections/{conn['id']}/fields?refresh=maybe")) == {
        "refresh": "must be true or false"
    }


def test_delete_connection_with_active_rules_needs_force(sandbox_api, workspace):
    conn = sandbox_api.post(
        "/connections",
        json={
            "workspace": workspace,
            "type": "webhook",
            "name": "Doomed",
            "metadata": {"url": "https://hooks.example.com/x"},
        },
    ).json()
    conn = conn["connection"]
    rule = sandbox_api.post(
        "/rules",
        json={
            "workspace": workspace,
            "connection": conn["id"],
            "event": "doomed.evt",
            "metadata": {"action": "send_webhook"},
        },
    ).json()["rule"]
    refused = error(sandbox_api.request("DELETE", f"/connections/{conn['id']}"), 409)
    assert "force_delete" in refused["message"] and "1 active rule" in refused["message"]
    forced = sandbox_api.request("DELETE", f"/connections/{conn['id']}", json={"force_delete": True})
    assert forced.status_code == 200 and forced.json() == {"id": conn["id"], "type": "webhook"}
    error(sandbox_api.get(f"/connections/{conn['id']}"), 404)
    assert sandbox_api.get(f"/rules/{rule['id']}").json()["active"] is False  # deactivated, still inspectable


# -- rules ----------------------------------------------------------------------------------------


def test_rule_validation_and_lifecycle(sandbox, sandbox_api):
    hubspot = connection_of(sandbox_api, sandbox.workspace_id, "hubspot")
    base = {"workspace": sandbox.workspace_id, "connection": hubspot["id"], "event": f"rule.{uuid.uuid4().hex[:6]}"}
    assert "metadata.action" in params(sandbox_api.post("/rules", json={**base, "metadata": {"action": "subscribe"}}))
    assert "metadata.id" in params(sandbox_api.post("/rules", json={**base, "metadata": {"action": "add_to_list"}}))
    assert "resource_id" in params(
        sandbox_api.post(
            "/rules", json={**base, "resource_id": "bad id!", "metadata": {"action": "add_to_list", "id": "5"}}
        )
    )
    assert "connection" in params(
        sandbox_api.post("/rules", json={**base, "connection": UNKNOWN, "metadata": {"action": "add_to_list"}}), 404
    )
    # Permissive on ids: a list that does not exist is accepted here and fails at delivery.
    created = sandbox_api.post("/rules", json={**base, "metadata": {"action": "add_to_list", "id": "999"}})
    assert created.status_code == 201, created.text
    rule = created.json()["rule"]
    assert rule["type"] == "hubspot" and rule["active"] is True and "resource" not in rule
    error(sandbox_api.post("/rules", json={**base, "metadata": {"action": "add_to_list", "id": "999"}}), 409)
    listed = sandbox_api.get("/rules", params={"event": base["event"]}).json()
    assert [r["id"] for r in listed["records"]] == [rule["id"]]
    deleted = sandbox_api.delete(f"/rules/{rule['id']}").json()
    assert deleted == {"id": rule["id"], "connection": hubspot["id"], "event": base["event"], "type": "hubspot"}
    error(sandbox_api.get(f"/rules/{rule['id']}"), 404)


# -- pagination -----------------------------------------------------------------------------------


def test_cursor_pagination_walks_every_record_once(sandbox_api, workspace):
    bulk = sandbox_api.post(
        "/events/bulk", json=[{"workspace": workspace, "event": "page.test", "payload": {"n": i}} for i in range(7)]
    )
    assert bulk.status_code == 201
    emitted = [r["id"] for r in bulk.json()["records"]]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 3, "event": "page.test"} | ({"cursor": cursor} if cursor else {})
        page = sandbox_api.get(f"/workspaces/{workspace}/events", params=query).json()
        assert page["limit"] == 3 and page["count"] == len(page["records"]) <= 3
        seen += [e["id"] for e in page["records"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and sorted(seen) == sorted(emitted) and len(set(seen)) == 7
    assert seen == list(reversed(emitted))  # newest first

    ws_page = sandbox_api.get("/workspaces", params={"limit": 1}).json()
    assert ws_page["count"] == 1 and ws_page["next_cursor"]
    second = sandbox_api.get("/workspaces", params={"limit": 1, "cursor": ws_page["next_cursor"]}).json()
    assert second["records"][0]["id"] != ws_page["records"][0]["id"]

    assert "limit" in params(sandbox_api.get("/events", params={"limit": 0}))
    assert "limit" in params(sandbox_api.get("/events", params={"limit": 201}))
    assert "cursor" in params(sandbox_api.get("/events", params={"cursor": "garbage!"}))
    assert "cursor" in params(sandbox_api.get("/events", params={"cursor": ws_page["next_cursor"]}))
    assert "status" in params(sandbox_api.get("/events", params={"status": "lost"}))


def test_integrations_event_types_and_resources(sandbox_api, workspace):
    integrations = sandbox_api.get("/integrations").json()
    assert integrations["count"] == 15 and integrations["next_cursor"] is None
    assert {"webhook", "hubspot", "pipedrive"} <= {i["type"] for i in integrations["records"]}
    first = sandbox_api.get("/integrations", params={"limit": 10}).json()
    rest = sandbox_api.get("/integrations", params={"limit": 10, "cursor": first["next_cursor"]}).json()
    assert first["count"] + rest["count"] == 15 and rest["next_cursor"] is None

    sandbox_api.post(
        "/events",
        json={
            "workspace": workspace,
            "event": "order.paid",
            "resource": "order",
            "resource_id": "ord_1",
            "payload": {"total": 5},
        },
    )
    types = sandbox_api.get(f"/workspaces/{workspace}/event-types").json()
    assert isinstance(types, list)
    paid = next(t for t in types if t["key"] == "order.paid")
    assert paid["label"] == "Order Paid" and uuid.UUID(paid["id"])
    resources = sandbox_api.get(f"/workspaces/{workspace}/resources").json()
    assert [r["key"] for r in resources] == ["order"]


# -- sessions -------------------------------------------------------------------------------------


def test_session_lifecycle(sandbox_api, workspace):
    created = sandbox_api.post("/sessions", json={"workspace_id": workspace, "role": "admin", "ttl_seconds": 600})
    assert created.status_code == 200, created.text
    session = created.json()
    assert session["session_id"].startswith("sess_") and session["access_token"] and session["expires_in"] == 600
    assert session["launch_url"].endswith(session["launch_token"]) and session["role"] == "admin"

    listed = sandbox_api.get("/sessions", params={"workspace_id": workspace}).json()
    assert [s["session_id"] for s in listed["records"]] == [session["session_id"]]
    assert listed["records"][0]["is_expired"] is False and "access_token" not in listed["records"][0]
    assert "workspace_id" in params(sandbox_api.get("/sessions"))
    assert "ttl_seconds" in params(sandbox_api.post("/sessions", json={"workspace_id": workspace, "ttl_seconds": 5}))
    assert params(sandbox_api.post("/sessions", json={"workspace_id": workspace, "session_type": "resource"}))

    refreshed = sandbox_api.post(f"/sessions/{session['session_id']}/refresh").json()
    assert refreshed["session_id"] == session["session_id"] and refreshed["access_token"] != session["access_token"]
    assert "launch_url" not in refreshed

    assert sandbox_api.delete(f"/sessions/{session['session_id']}").json() == {"revoked": True}
    assert sandbox_api.delete(f"/sessions/{session['session_id']}").json() == {"revoked": False}
    assert "revoked" in error(sandbox_api.post(f"/sessions/{session['session_id']}/refresh"), 409)["message"]
    assert sandbox_api.get("/sessions", params={"workspace_id": workspace, "status": "revoked"}).json()["count"] == 1
    error(sandbox_api.post("/sessions/sess_nope/refresh"), 404)


# -- mappings -------------------------------------------------------------------------------------


def test_default_mapping_generated_then_stored_with_versions(sandbox, sandbox_api):
    conn = connection_of(sandbox_api, sandbox.workspace_id, "salesforce")
    url = f"/connections/{conn['id']}/mappings/default"
    generated = sandbox_api.get(url).json()
    assert generated["status"] == "generated" and generated["mapping"]["version"] == 0
    assert {"dest": "Email", "source": {"type": "path", "value": "email"}} in generated["mapping"]["schema"]["fields"]

    schema = {
        "schema_version": 1,
        "fields": [
            {"dest": "Email", "source": {"type": "path", "value": "user.email"}, "transforms": [{"type": "lower"}]},
            {"dest": "LeadSource", "source": {"type": "literal", "value": "Web"}},
        ],
    }
    stored = sandbox_api.put(url, json={"schema": schema}).json()
    assert stored["status"] == "stored" and stored["mapping"]["version"] == 1
    assert sandbox_api.get(url).json()["mapping"]["schema"]["fields"][0]["source"]["value"] == "user.email"

    stale = sandbox_api.put(url, json={"schema": schema, "expected_version": 7})
    assert "expected_version" in params(stale, 409)
    again = sandbox_api.put(url, json={"schema": schema, "expected_version": 1}).json()
    assert again["mapping"]["version"] == 2 and again["mapping"]["mapping_id"] == stored["mapping"]["mapping_id"]

    invalid = sandbox_api.put(url, json={"schema": {"schema_version": 2, "fields": []}})
    assert "schema.schema_version" in params(invalid, 422)
    bad_path = sandbox_api.put(
        url,
        json={
            "schema": {
                "schema_version": 1,
                "fields": [{"dest": "Email", "source": {"type": "path", "value": "not a path"}}],
            }
        },
    )
    assert params(bad_path, 422)
    unknown_dest = sandbox_api.put(
        url,
        json={
            "schema": {
                "schema_version": 1,
                "fields": [{"dest": "Shoe_Size__c", "source": {"type": "path", "value": "size"}}],
            }
        },
    )
    assert "schema.fields[0].dest" in params(unknown_dest, 422)
    assert "workspace_id" in params(sandbox_api.put(url, json={"schema": schema, "workspace_id": "nope"}))


def test_webhooks_have_no_field_mapping(sandbox_api, workspace):
    conn = sandbox_api.post(
        "/connections",
        json={
            "workspace": workspace,
            "type": "webhook",
            "name": "No Map",
            "metadata": {"url": "https://hooks.example.com/m"},
        },
    ).json()
    cid = conn["connection"]["id"]
    error(sandbox_api.get(f"/connections/{cid}/mappings/default"), 422)
    error(sandbox_api.get(f"/connections/{cid}/fields"), 422)
    assert sandbox_api.get(f"/connections/{cid}/actions").json() == {}
