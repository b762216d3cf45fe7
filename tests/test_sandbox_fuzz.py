"""Generated requests thrown at every sandbox endpoint over real HTTP: never a 500, never a traceback,
never a secret (the machine secret key, a planted connection credential) in a response, and the
sandbox still answers afterwards.

Bounded for CI by `MESHES_FUZZ_EXAMPLES` (default 600 cases); run more with e.g.
`MESHES_FUZZ_EXAMPLES=5000 python -m pytest tests/test_sandbox_fuzz.py -s`.
Every webhook URL the suite can create points at a closed loopback port: nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any
from urllib.parse import quote

import httpx2
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("MESHES_FUZZ_EXAMPLES", "600"))
PLANTED = {
    "auth_token": "tok_PlantedFuzz0Token9",
    "header": "hdr_PlantedFuzz0Value7",
    "password": "pw_PlantedFuzz0Pass5",
    "api_key": "PlantedFuzz0ApiKey0123-us6",
}
UNKNOWN = "00000000-0000-4000-8000-000000000000"

ROUTES: list[tuple[str, str]] = [
    ("GET", "/workspaces"),
    ("POST", "/workspaces"),
    ("GET", "/workspaces/{workspace}"),
    ("PUT", "/workspaces/{workspace}"),
    ("GET", "/workspaces/{workspace}/connections"),
    ("GET", "/workspaces/{workspace}/event-types"),
    ("GET", "/workspaces/{workspace}/resources"),
    ("GET", "/workspaces/{workspace}/events"),
    ("GET", "/workspaces/{workspace}/rules"),
    ("GET", "/connections"),
    ("POST", "/connections"),
    ("GET", "/connections/{connection}"),
    ("PUT", "/connections/{connection}"),
    ("DELETE", "/connections/{connection}"),
    ("GET", "/connections/{connection}/actions"),
    ("GET", "/connections/{connection}/fields"),
    ("GET", "/connections/{connection}/mappings/default"),
    ("PUT", "/connections/{connection}/mappings/default"),
    ("GET", "/rules"),
    ("POST", "/rules"),
    ("GET", "/rules/{rule}"),
    ("DELETE", "/rules/{rule}"),
    ("GET", "/events"),
    ("POST", "/events"),
    ("POST", "/events/bulk"),
    ("GET", "/events/{event}"),
    ("GET", "/events/{event}/payload"),
    ("POST", "/events/{event}/cancel"),
    ("POST", "/events/{event}/rules/{rule}/retry"),
    ("POST", "/events/{event}/rules/{rule}/cancel"),
    ("GET", "/events/{event}/rules/{rule}/attempts"),
    ("GET", "/events/{event}/rules/{rule}/attempts/{attempt}"),
    ("GET", "/events/{event}/rules/{rule}/attempts/{attempt}/response-details"),
    ("GET", "/integrations"),
    ("POST", "/sessions"),
    ("GET", "/sessions"),
    ("POST", "/sessions/{session}/refresh"),
    ("DELETE", "/sessions/{session}"),
]

# Text with the characters that break parsers: controls, NUL, non-ASCII digits, RTL marks, emoji.
NASTY = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40) | st.sampled_from(
    [
        "",
        " 5",
        "1_0",
        "\u0665",
        "-1",
        "0",
        "201",
        "9" * 40,
        "\x00",
        "a\r\nb",
        "../..",
        "%00",
        "NaN",
        "null",
        "true",
        "\u202e",
        "😀" * 5,
        "events:1",
        "c2Vzc2lvbnM6MQ",
        "ZXZlbnRzOjk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5",
    ]
)
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | NASTY | st.text(alphabet=st.characters(), max_size=10)
)  # lone surrogates too
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NASTY, inner, max_size=4), max_leaves=12
)
DEEP = st.integers(50, 20_000).map(lambda n: "[" * n + "]" * n)


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _token(info: Any, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": f"urn:meshes:m2m:{info.access_key}",
        "aud": "meshes-api",
        "org": info.organization_id,
        "iat": now,
        "exp": now + 30,
    } | changes
    return jwt.encode(claims, info.secret_key, algorithm="HS256", headers={"kid": info.access_key})


@pytest.fixture(scope="module")
def world(sandbox, sandbox_api) -> dict[str, Any]:
    """Real ids to aim at, and connections holding planted credentials, with failed attempts on record."""
    ws = sandbox.workspace_id
    url = f"http://svc:{PLANTED['password']}@127.0.0.1:{_dead_port()}/planted"
    hook_id, rule = sandbox_api.webhook_rule(
        url,
        "fuzz.planted",
        "Fuzz planted",
        auth_scheme="bearer",
        auth_token=PLANTED["auth_token"],
        custom_headers={"X-Api-Key": PLANTED["header"]},
    )
    mail = sandbox_api.post(
        "/connections",
        json={
            "workspace": ws,
            "type": "mailchimp",
            "name": "Fuzz mail",
            "metadata": {"data_center": "us6", "api_key": PLANTED["api_key"]},
        },
    )
    assert mail.status_code == 201, mail.text
    mail_id = mail.json()["connection"]["id"]
    event = sandbox_api.post("/events", json={"workspace": ws, "event": "fuzz.planted", "payload": {}})
    event_id = event.json()["event"]["id"]
    done = sandbox_api.wait_event(event_id)
    attempts = sandbox_api.get(f"/events/{event_id}/rules/{rule}/attempts").json()["records"]
    session = sandbox_api.post("/sessions", json={"workspace_id": ws}).json()["session_id"]
    assert done["status"] in ("failed", "retrying", "pending") and attempts
    return {
        "workspace": [ws, UNKNOWN],
        "connection": [hook_id, mail_id, UNKNOWN],
        "rule": [rule, UNKNOWN],
        "event": [event_id, UNKNOWN],
        "attempt": [attempts[0]["id"], UNKNOWN],
        "session": [session, "sess_x"],
        "dead_url": f"http://127.0.0.1:{_dead_port()}/fuzz",
    }


def templates(world: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any] | list[Any]]:
    """A valid body per writing endpoint, for the fuzzer to mutate one field at a time."""
    ws, hook = world["workspace"][0], world["connection"][0]
    event = {
        "workspace": ws,
        "event": "fuzz.evt",
        "resource": "user",
        "resource_id": "u1",
        "payload": {"email": "jo@example.com", "n": 1},
    }
    webhook = {
        "url": world["dead_url"],
        "auth_scheme": "custom_header",
        "auth_header_name": "X-Key",
        "auth_header_value": "abcd1234",
        "custom_headers": {"X-Team": "growth"},
        "skip_url_test": "true",
    }
    return {
        ("POST", "/workspaces"): {"name": "Fuzz Ws", "description": "d"},
        ("PUT", "/workspaces/{workspace}"): {"name": "Demo", "description": "d"},
        ("POST", "/connections"): {"workspace": ws, "type": "webhook", "name": "Fuzz hook", "metadata": webhook},
        ("PUT", "/connections/{connection}"): {"name": "Fuzz planted", "metadata": webhook},
        ("DELETE", "/connections/{connection}"): {"force_delete": False},
        ("PUT", "/connections/{connection}/mappings/default"): {
            "schema": {"fields": [{"dest": "email", "source": "payload.email"}]}
        },
        ("POST", "/rules"): {
            "workspace": ws,
            "connection": hook,
            "event": "fuzz.rule",
            "metadata": {"action": "send_webhook"},
        },
        ("POST", "/events"): event,
        ("POST", "/events/bulk"): [event, event],
        ("POST", "/sessions"): {"workspace_id": ws, "ttl_seconds": 60, "role": "member"},
    }


def _mutate(template: Any, where: list[str], value: Any) -> Any:
    """`template` with the field at `where` (keys into nested objects) replaced by `value`."""
    if not where or not isinstance(template, dict):
        return value
    head, *rest = where
    return {**template, head: _mutate(template.get(head), rest, value)}


def _paths(template: Any, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    if not isinstance(template, dict):
        return []
    found = []
    for key, value in template.items():
        found.append([*prefix, key])
        found += _paths(value, (*prefix, key))
    return found


@st.composite
def requests(draw: st.DrawFn, world: dict[str, Any]) -> dict[str, Any]:
    method, template_path = draw(st.sampled_from(ROUTES))
    path = template_path
    for name in ("workspace", "connection", "rule", "event", "attempt", "session"):
        if "{" + name + "}" in path:
            real = st.sampled_from(world[name][:1] * 6 + world[name])  # mostly ids that exist
            ident = draw(real | NASTY.filter(lambda s: s.strip() not in ("", ".", "..")))
            path = path.replace("{" + name + "}", quote(ident, safe=""))
    query = draw(
        st.dictionaries(
            st.sampled_from(
                ["limit", "cursor", "status", "event", "resource", "resource_id", "workspace_id", "refresh", "bogus"]
            ),
            NASTY,
            max_size=3,
        )
    )
    if "workspace_id" in query and draw(st.booleans()):
        query["workspace_id"] = world["workspace"][0]
    body: bytes | None = None
    content_type = "application/json"
    template = templates(world).get((method, template_path))
    kind = draw(st.sampled_from(["template", "mutated", "mutated", "mutated", "json", "deep", "bytes", "none"]))
    if kind == "template" and template is not None:
        body = json.dumps(template).encode()
    elif kind == "mutated" and template is not None:
        root = template[0] if isinstance(template, list) else template
        where = draw(st.sampled_from(_paths(root)))
        mutated = _mutate(root, where, draw(JSON | DEEP))
        document = [mutated] if isinstance(template, list) else mutated
        text = json.dumps(document, ensure_ascii=draw(st.booleans()))  # NaN/Infinity come through as-is
        body = text.encode("utf-8", "surrogatepass")
    elif kind == "json":
        body = json.dumps(draw(JSON)).encode("utf-8", "surrogatepass")
    elif kind == "deep":
        body = draw(DEEP).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=200))
    if body is not None:
        content_type = draw(
            st.sampled_from(
                ["application/json"] * 8
                + ["application/json; charset=utf-8", "text/plain", "application/json; charset=utf-16", ""]
            )
        )
    auth = draw(st.sampled_from(["jwt"] * 12 + ["publishable", "none", "garbage", "aud-list"]))
    return {"method": method, "path": path, "query": query, "body": body, "content_type": content_type, "auth": auth}


def _headers(info: Any, case: dict[str, Any]) -> dict[str, str]:
    headers = {"content-type": case["content_type"]} if case["body"] is not None and case["content_type"] else {}
    auth = case["auth"]
    if auth == "jwt":
        headers["authorization"] = f"Bearer {_token(info)}"
    elif auth == "aud-list":
        headers["authorization"] = f"Bearer {_token(info, aud=['meshes-api'])}"
    elif auth == "publishable":
        headers["x-meshes-publishable-key"] = info.publishable_key
    elif auth == "garbage":
        headers["authorization"] = "Bearer " + "eyJ" + "A" * 300
    return headers


# The sandbox's delivery thread draws retry jitter from `random` while hypothesis generates: harmless here.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_no_endpoint_fails_or_leaks_on_generated_requests(sandbox, world):
    secrets = [sandbox.secret_key, *PLANTED.values()]
    seen = {"cases": 0, "statuses": {}}

    with httpx2.Client(base_url=sandbox.api_url, timeout=30) as client:

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=requests(world))
        def one(case: dict[str, Any]) -> None:
            response = client.request(
                case["method"],
                case["path"],
                params=case["query"],
                content=case["body"],
                headers=_headers(sandbox, case),
            )
            seen["cases"] += 1
            seen["statuses"][response.status_code] = seen["statuses"].get(response.status_code, 0) + 1
            described = f"{case['method']} {case['path']} {case['query']} {(case['body'] or b'')[:200]!r}"
            assert response.status_code < 500, f"{described} → {response.status_code} {response.text[:300]}"
            assert "Traceback" not in response.text, described
            for secret in secrets:
                assert secret not in response.text, f"{described} leaked a secret"
            if case["path"].startswith("/"):
                assert isinstance(response.json(), dict | list), described

        one()
        assert client.get(sandbox.api_url.removesuffix("/api/v1") + "/healthz").json() == {"status": "ok"}
        assert client.get("/workspaces", headers={"authorization": f"Bearer {_token(sandbox)}"}).status_code == 200
    print(f"\nsandbox fuzz: {seen['cases']} cases, statuses {dict(sorted(seen['statuses'].items()))}")
    assert seen["cases"] >= min(EXAMPLES, 50)
