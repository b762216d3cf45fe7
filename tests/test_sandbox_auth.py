"""Sandbox authentication exactly as documented: machine JWT checks and publishable-key scope."""

from __future__ import annotations

import time

import httpx2
import jwt
import pytest


def mint(
    info, *, secret=None, kid=None, iss=None, aud="meshes-api", org=None, iat=None, lifetime=30, drop=(), alg="HS256"
):
    now = int(time.time()) if iat is None else iat
    kid = kid or info.access_key
    claims = {
        "iss": iss or f"urn:meshes:m2m:{kid}",
        "aud": aud,
        "org": org or info.organization_id,
        "iat": now,
        "exp": now + lifetime,
    }
    for claim in drop:
        claims.pop(claim)
    return jwt.encode(claims, secret or info.secret_key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def http(sandbox):
    with httpx2.Client(base_url=sandbox.api_url, timeout=10) as client:
        yield client


def get_workspaces(http, token):
    return http.get("/workspaces", headers={"Authorization": f"Bearer {token}"})


def unauthorized(response) -> str:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["message"] == "Unauthorized" and body["error"]["name"] == "Unauthorized"
    return body["error"]["message"]


def test_valid_token_is_accepted(sandbox, http):
    response = get_workspaces(http, mint(sandbox))
    assert response.status_code == 200
    assert [w["name"] for w in response.json()["records"]] == ["Demo"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"secret": "x" * 64}, "signature"),
        ({"kid": "mk_unknownunknownunknown00"}, "unknown access key"),
        ({"iss": "urn:meshes:m2m:someone-else"}, "iss"),
        ({"aud": "another-api"}, "aud"),
        ({"org": "00000000-0000-4000-8000-000000000000"}, "org"),
        ({"iat": int(time.time()) - 120}, "expired"),
        ({"lifetime": 61}, "lifetime"),
        ({"lifetime": 3600}, "maximum is 60"),
        ({"drop": ("exp",)}, '"exp"'),
        ({"drop": ("org",)}, '"org"'),
        ({"alg": "HS512"}, "HS256"),
    ],
    ids=[
        "bad-signature",
        "unknown-kid",
        "wrong-iss",
        "wrong-aud",
        "wrong-org",
        "expired",
        "lifetime-61",
        "lifetime-hour",
        "no-exp",
        "no-org",
        "alg",
    ],
)
def test_bad_machine_tokens_are_refused(sandbox, http, change, expected):
    message = unauthorized(get_workspaces(http, mint(sandbox, **change)))
    assert expected in message
    assert sandbox.secret_key not in message


def test_missing_and_malformed_credentials(http):
    assert "missing credentials" in unauthorized(http.get("/workspaces"))
    assert "well-formed JWT" in unauthorized(get_workspaces(http, "not-a-jwt"))
    assert "Bearer" in unauthorized(http.get("/workspaces", headers={"Authorization": "Basic abc"}))


def test_publishable_key_is_refused_on_management_endpoints(sandbox, http):
    key = {"X-Meshes-Publishable-Key": sandbox.publishable_key}
    for method, path in [
        ("GET", "/workspaces"),
        ("GET", "/events"),
        ("GET", "/integrations"),
        ("GET", f"/workspaces/{sandbox.workspace_id}/events"),
        ("POST", "/rules"),
    ]:
        message = unauthorized(http.request(method, path, headers=key))
        assert "POST /api/v1/events" in message


def test_publishable_key_emits_into_its_own_workspace(sandbox, http):
    key = {"X-Meshes-Publishable-Key": sandbox.publishable_key}
    single = http.post("/events", headers=key, json={"event": "page.viewed", "payload": {"path": "/"}})
    assert single.status_code == 201, single.text
    assert single.json()["event"]["workspace"] == sandbox.workspace_id
    assert single.json()["event"]["created_by"] == "publishable_key"

    items = [{"event": "page.viewed", "payload": {"n": i}} for i in range(3)]
    bulk = http.post("/events/bulk", headers=key, json=items)
    assert bulk.status_code == 201
    assert {r["workspace"] for r in bulk.json()["records"]} == {sandbox.workspace_id}

    other = http.post(
        "/events",
        headers=key,
        json={"event": "page.viewed", "payload": {}, "workspace": "00000000-0000-4000-8000-000000000000"},
    )
    assert other.status_code == 403 and other.json()["error"]["data"][0]["param"] == "workspace"

    unknown = http.post(
        "/events", headers={"X-Meshes-Publishable-Key": "mesh_pub_a_b_c"}, json={"event": "page.viewed", "payload": {}}
    )
    assert "unknown publishable key" in unauthorized(unknown)


def test_machine_token_needs_a_workspace_on_emit(sandbox, http):
    headers = {"Authorization": f"Bearer {mint(sandbox)}"}
    response = http.post("/events", headers=headers, json={"event": "user.signup", "payload": {}})
    assert response.status_code == 400
    assert response.json()["error"]["data"][0]["param"] == "workspace"
