"""The sandbox's HTTP surface under hostile input: strict bodies, streamed size limit, query parsing,
header-bound credentials refused with control characters and scrubbed from everything stored or returned."""

from __future__ import annotations

import base64
import json
import logging
import select
import socket
import sqlite3
import time
import uuid

import httpx2
import jwt
import pytest

from meshes_mcp.sandbox import EmbeddedSandbox
from meshes_mcp.sandbox.auth import Authenticator
from meshes_mcp.sandbox.bodies import MAX_BODY
from meshes_mcp.sandbox.store import Store
from tests.conftest import SandboxApi

SECRET = "key_Zx81planted9Secret"


def params(response, status: int = 400) -> dict[str, str]:
    assert response.status_code == status, response.text
    return {d["param"]: d["msg"] for d in response.json()["error"].get("data", [])}


def raw_post(api: SandboxApi, path: str, body: bytes, content_type: str | None = "application/json"):
    headers = {"content-type": content_type} if content_type else {}
    return api.post(path, content=body, headers=headers)


def event_body(ws: str, payload_json: str, event: str = "hard.evt") -> bytes:
    return f'{{"workspace": "{ws}", "event": "{event}", "payload": {payload_json}}}'.encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


# -- item 5: payloads that JSON cannot carry faithfully -----------------------------------------------


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ('{"x": NaN}', "payload.x"),
        ('{"x": [1, Infinity]}', "payload.x[1]"),
        ('{"x": -Infinity}', "payload.x"),
        ('{"big": 1e999}', "payload.big"),
        ('{"name": "\\ud800"}', "payload.name"),
        ('{"a": {"\\udfff": 1}}', "payload.a.\\udfff"),
    ],
)
def test_unreadable_payloads_are_refused_at_ingest(sandbox, sandbox_api, payload, param):
    single = raw_post(sandbox_api, "/events", event_body(sandbox.workspace_id, payload))
    assert param in params(single)
    bulk_body = b"[" + event_body(sandbox.workspace_id, payload) + b"]"
    assert f"[0].{param}" in params(raw_post(sandbox_api, "/events/bulk", bulk_body))
    with httpx2.Client(base_url=sandbox.api_url, timeout=10) as client:  # publishable key: same rule
        refused = client.post(
            "/events",
            content=event_body(sandbox.workspace_id, payload),
            headers={"content-type": "application/json", "X-Meshes-Publishable-Key": sandbox.publishable_key},
        )
    assert param in params(refused)


def test_other_bodies_refuse_nan_and_surrogates(sandbox, sandbox_api):
    ws = sandbox.workspace_id
    rule = f'{{"workspace": "{ws}", "connection": "{uuid.uuid4()}", "event": "e", "metadata": {{"n": NaN}}}}'
    assert "metadata.n" in params(raw_post(sandbox_api, "/rules", rule.encode()))
    session = f'{{"workspace_id": "{ws}", "ttl_seconds": Infinity}}'
    assert "ttl_seconds" in params(raw_post(sandbox_api, "/sessions", session.encode()))
    conn = f'{{"workspace": "{ws}", "type": "webhook", "name": "S", "metadata": {{"url": "https://a.b/\\udc00"}}}}'
    assert "metadata.url" in params(raw_post(sandbox_api, "/connections", conn.encode()))


def test_control_characters_in_names_and_identifiers(sandbox, sandbox_api):
    ws = sandbox.workspace_id
    for field in ("event", "resource", "resource_id"):
        body = {"workspace": ws, "event": "ok.evt", "payload": {}, field: "bad\u0000name"}
        assert field in params(sandbox_api.post("/events", json=body))
    assert "name" in params(sandbox_api.post("/workspaces", json={"name": "Line\nBreak"}))
    # Free text inside a payload keeps its control characters, but NUL (which a database cannot store) is refused.
    nul = {"workspace": ws, "event": "ok.evt", "payload": {"note": "a\u0000b"}}
    assert "payload.note" in params(sandbox_api.post("/events", json=nul))
    fine = sandbox_api.post("/events", json={"workspace": ws, "event": "ok.evt", "payload": {"note": "a\nb\t\u001f"}})
    assert fine.status_code == 201, fine.text
    event_id = fine.json()["event"]["id"]
    assert sandbox_api.get(f"/events/{event_id}/payload").json()["payload"] == {"note": "a\nb\t\u001f"}


# -- item 8: Content-Type, encoding, limit parsing ----------------------------------------------------


def test_bodies_must_be_utf8_json(sandbox, sandbox_api):
    body = {"name": "Typed Body"}
    text = json.dumps(body).encode()
    assert "Content-Type" in params(raw_post(sandbox_api, "/workspaces", text, "text/plain"))
    assert "Content-Type" in params(raw_post(sandbox_api, "/workspaces", text, None))
    assert "Content-Type" in params(raw_post(sandbox_api, "/workspaces", text, "application/json; charset=latin-1"))
    assert "body" in params(raw_post(sandbox_api, "/workspaces", json.dumps(body).encode("utf-16")))
    assert "body" in params(raw_post(sandbox_api, "/workspaces", '{"name": "Caf\u00e9 Ws"}'.encode("latin-1")))
    ok = raw_post(sandbox_api, "/workspaces", text, "application/json; charset=UTF-8")
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("limit", [" 5", "5 ", "1_0", "\u0665", "+5", "05a", "9" * 400])
def test_limit_must_be_ascii_digits(sandbox, sandbox_api, limit):
    for path in ("/events", f"/workspaces/{sandbox.workspace_id}/events", "/workspaces", "/rules"):
        assert "limit" in params(sandbox_api.get(path, params={"limit": limit})), path
    assert "limit" in params(
        sandbox_api.get("/sessions", params={"workspace_id": sandbox.workspace_id, "limit": limit})
    )


# -- item 4: 500s from bad input ------------------------------------------------------------------------


def test_deeply_nested_bodies_are_400(sandbox, sandbox_api):
    deep = b"[" * 10_000 + b"]" * 10_000
    assert "body" in params(raw_post(sandbox_api, "/events", deep))
    nested_payload = event_body(sandbox.workspace_id, '{"a": ' * 100 + "1" + "}" * 100)
    problems = params(raw_post(sandbox_api, "/events", nested_payload))
    assert any(p.startswith("payload.a.a") for p in problems)
    headers = "[" * 10_000 + "]" * 10_000
    conn = {
        "workspace": sandbox.workspace_id,
        "type": "webhook",
        "name": "Deep",
        "metadata": {"url": "https://hooks.example.com/x", "custom_headers": headers},
    }
    assert "metadata.custom_headers" in params(sandbox_api.post("/connections", json=conn))


@pytest.mark.parametrize(
    "inner",
    [
        "events:" + "9" * 5000,
        "events:99999999999999999999999",
        "events:\u0665",
        "events:\u00b2",
        "sessions:" + "9" * 30,
        "sessions:\u0661\u0662",
    ],
)
def test_forged_cursors_are_400(sandbox, sandbox_api, inner):
    cursor = cursor_of(inner)
    for path in ("/events", f"/workspaces/{sandbox.workspace_id}/events"):
        assert "cursor" in params(sandbox_api.get(path, params={"cursor": cursor})), path
    query = {"workspace_id": sandbox.workspace_id, "cursor": cursor}
    assert "cursor" in params(sandbox_api.get("/sessions", params=query))


# -- item 6: the body limit while streaming --------------------------------------------------------------


def _raw_exchange(sandbox, head: str, body_parts) -> bytes:
    """Send a hand-written request, stopping as soon as the server answers; return the answer's head
    (bounded by a socket timeout: a server waiting for the whole body fails the test)."""
    host, port = sandbox.api_url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for part in body_parts:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server has answered (and will close): stop sending
                sock.sendall(part)
        except OSError:
            pass  # the server stopped reading and closed once it had answered
        answer = b""
        while b"\r\n\r\n" not in answer:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    return answer


def test_declared_oversized_body_is_refused_before_it_is_sent(sandbox):
    head = (
        f"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Meshes-Publishable-Key: {sandbox.publishable_key}\r\nContent-Length: {200 * 1024 * 1024}\r\n\r\n"
    )
    answer = _raw_exchange(sandbox, head, [b'{"event": "big", "payload": {"x": "'])  # and nothing more
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_chunked_body_is_cut_at_the_limit(sandbox):
    head = (
        f"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Meshes-Publishable-Key: {sandbox.publishable_key}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    parts = [framed] * (MAX_BODY // len(chunk) + 2)  # just over the limit, never terminated
    answer = _raw_exchange(sandbox, head, parts)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


# -- item 8: authentication bounds ---------------------------------------------------------------------


def test_oversized_publishable_key_is_malformed(sandbox):
    with httpx2.Client(base_url=sandbox.api_url, timeout=10) as client:
        response = client.post(
            "/events",
            json={"event": "a", "payload": {}},
            headers={"X-Meshes-Publishable-Key": "mesh_pub_" + "a" * 40_000},
        )
    assert response.status_code == 401 and "malformed" in response.json()["error"]["message"]


def test_key_caches_are_bounded(tmp_path):
    store = Store(tmp_path / "sandbox.db")
    try:
        auth = Authenticator(store)
        for i in range(5000):
            with pytest.raises(Exception, match="publishable key"):
                auth.authenticate({"x-meshes-publishable-key": f"mesh_pub_bogus_{i:06d}"}, True)
        assert len(auth._publishable) <= auth.CACHE_SIZE
    finally:
        store.close()


def test_jwt_aud_must_be_the_documented_string(sandbox):
    now = int(time.time())
    claims = {
        "iss": f"urn:meshes:m2m:{sandbox.access_key}",
        "aud": ["meshes-api"],
        "org": sandbox.organization_id,
        "iat": now,
        "exp": now + 30,
    }
    token = jwt.encode(claims, sandbox.secret_key, algorithm="HS256", headers={"kid": sandbox.access_key})
    with httpx2.Client(base_url=sandbox.api_url, timeout=10) as client:
        response = client.get("/workspaces", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and "aud" in response.json()["error"]["message"]


# -- item 3: header-bound credentials ------------------------------------------------------------------


def webhook_body(ws: str, name: str, **metadata) -> dict:
    return {
        "workspace": ws,
        "type": "webhook",
        "name": name,
        "metadata": {"url": "https://hooks.example.com/x", **metadata},
    }


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({"custom_headers": {"X-Api-Key": SECRET + "\r\n"}}, "metadata.custom_headers.X-Api-Key"),
        ({"custom_headers": json.dumps({"X-Api-Key": SECRET + "\n"})}, "metadata.custom_headers.X-Api-Key"),
        ({"auth_scheme": "bearer", "auth_token": SECRET + "\r\n"}, "metadata.auth_token"),
        (
            {"auth_scheme": "custom_header", "auth_header_name": "X-Key", "auth_header_value": SECRET + "\x00"},
            "metadata.auth_header_value",
        ),
        (
            {"auth_scheme": "custom_header", "auth_header_name": "X-Key\r\nEvil: 1", "auth_header_value": SECRET},
            "metadata.auth_header_name",
        ),
        ({"auth_scheme": "basic", "auth_username": "me\t", "auth_password": SECRET}, "metadata.auth_username"),
        ({"auth_scheme": "basic", "auth_username": "me", "auth_password": SECRET + "\n"}, "metadata.auth_password"),
        (
            {"signing_algorithm": "sha256", "signing_secret": SECRET, "signing_header": "X-Sig\n"},
            "metadata.signing_header",
        ),
    ],
)
def test_control_characters_in_header_fields_are_refused(sandbox, sandbox_api, metadata, param):
    name = f"ctl-{uuid.uuid4().hex[:8]}"
    response = sandbox_api.post("/connections", json=webhook_body(sandbox.workspace_id, name, **metadata))
    problems = params(response)
    assert param in problems and SECRET not in response.text
    clean = sandbox_api.post("/connections", json=webhook_body(sandbox.workspace_id, name))
    assert clean.status_code == 201, clean.text
    updated = sandbox_api.put(
        f"/connections/{clean.json()['connection']['id']}",
        json={"name": name, "metadata": webhook_body("", "", **metadata)["metadata"]},
    )
    assert param in params(updated) and SECRET not in updated.text


def _texts_of_event(api: SandboxApi, event_id: str) -> str:
    """Everything the API shows about one event's deliveries, as one string."""
    event = api.get(f"/events/{event_id}")
    texts = [event.text, api.get("/events").text, api.get(f"/events/{event_id}/payload").text]
    for rule_event in event.json()["rule_events"]:
        page = api.get(f"/events/{event_id}/rules/{rule_event['rule']}/attempts")
        texts.append(page.text)
        for attempt in page.json()["records"]:
            base = f"/events/{event_id}/rules/{rule_event['rule']}/attempts/{attempt['id']}"
            texts += [api.get(base).text, api.get(base + "/response-details").text]
    return "\n".join(texts)


@pytest.mark.parametrize("target", ["receiver", "dead port"])
def test_url_userinfo_never_reaches_attempts_or_logs(sandbox, sandbox_api, webhook_receiver, caplog, target):
    ws, password = sandbox.workspace_id, f"pw_Userinfo77secret{uuid.uuid4().hex[:6]}"
    where = f"{webhook_receiver.url[7:]}/status/401" if target == "receiver" else f"127.0.0.1:{free_port()}/hook"
    url = f"http://hookuser:{password}@{where}"
    name = f"userinfo-{uuid.uuid4().hex[:6]}"
    conn = sandbox_api.post(
        "/connections", json={"workspace": ws, "type": "webhook", "name": name, "metadata": {"url": url}}
    )
    assert conn.status_code == 201 and password not in conn.text
    shown = conn.json()["connection"]
    assert shown["metadata"]["url"] == url.replace(password, "********")
    # PUT what was read: the masked password keeps its stored value.
    same = sandbox_api.put(f"/connections/{shown['id']}", json={"name": name, "metadata": shown["metadata"]})
    assert same.status_code == 200 and same.json()["metadata"] == shown["metadata"]
    event = f"userinfo.{uuid.uuid4().hex[:6]}"
    rule = sandbox_api.post(
        "/rules",
        json={"workspace": ws, "connection": shown["id"], "event": event, "metadata": {"action": "send_webhook"}},
    )
    assert rule.status_code == 201
    with caplog.at_level(logging.DEBUG):
        emitted = sandbox_api.post("/events", json={"workspace": ws, "event": event, "payload": {}}).json()
        done = sandbox_api.wait_event(emitted["event"]["id"])
    assert done["status"] == "failed", done
    text = _texts_of_event(sandbox_api, done["id"])
    assert ("auth_failed" if target == "receiver" else "network_error") in text and "127.0.0.1" in text
    assert password not in text and password not in caplog.text


def test_planted_crlf_credentials_are_scrubbed_at_delivery(tmp_path, webhook_receiver):
    """A connection saved before the save-time check existed still holds a CRLF-terminated token:
    every delivery fails, and no text the sandbox keeps or returns shows the token."""
    data = tmp_path / "planted"
    with EmbeddedSandbox(data, retry_base=0.01, max_attempts=2) as info, SandboxApi(info) as api:
        conn_id, _ = api.webhook_rule(
            f"{webhook_receiver.url}/planted",
            "planted.evt",
            "Planted",
            auth_scheme="bearer",
            auth_token="placeholder",
            custom_headers={"X-Api-Key": "placeholder"},
        )
    db = sqlite3.connect(data / "sandbox.db")
    metadata = json.loads(db.execute("SELECT metadata FROM connections WHERE id=?", (conn_id,)).fetchone()[0])
    metadata["custom_headers"] = json.dumps({"X-Api-Key": SECRET + "\r\n"})
    metadata["auth_token"] = SECRET + "tok\n"
    db.execute("UPDATE connections SET metadata=? WHERE id=?", (json.dumps(metadata), conn_id))
    db.commit()
    db.close()
    with EmbeddedSandbox(data, retry_base=0.01, max_attempts=2) as info, SandboxApi(info) as api:
        emitted = api.post("/events", json={"workspace": info.workspace_id, "event": "planted.evt", "payload": {}})
        done = api.wait_event(emitted.json()["event"]["id"])
        assert done["status"] == "failed", done
        text = _texts_of_event(api, done["id"])
        assert "rejected_client_error" in text and "LocalProtocolError" in text, text
        assert SECRET not in text
    assert not webhook_receiver.matching("/planted")


# -- item 8: the test receiver ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "broken",
    [
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789",  # dies mid-body
        b"POST /x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 70_000,  # a header line past the stream limit
        b"NONSENSE\r\n\r\n",
    ],
)
def test_receiver_drops_broken_senders_quietly(webhook_receiver, caplog, broken):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with socket.create_connection((webhook_receiver.host, webhook_receiver.port), timeout=10) as sock:
            sock.sendall(broken)
        # A well-formed request afterwards still gets its answer, and by then the broken one was handled.
        answer = httpx2.post(f"{webhook_receiver.url}/after-broken", json={"ok": True}, timeout=10)
        assert answer.status_code == 200
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


@pytest.mark.parametrize("as_text", [False, True])
def test_custom_header_values_are_masked_and_kept_on_update(sandbox, sandbox_dir, sandbox_api, as_text):
    headers = {"X-Api-Key": SECRET, "X-Team": "growth"}
    name = f"masked-{uuid.uuid4().hex[:6]}"
    given = json.dumps(headers) if as_text else headers
    created = sandbox_api.post("/connections", json=webhook_body(sandbox.workspace_id, name, custom_headers=given))
    assert created.status_code == 201 and SECRET not in created.text
    shown = created.json()["connection"]
    masked = {"X-Api-Key": "********", "X-Team": "********"}
    assert shown["metadata"]["custom_headers"] == (json.dumps(masked) if as_text else masked)
    metadata = dict(shown["metadata"])
    changed = {"X-Api-Key": "********", "X-Team": "platform"}
    metadata["custom_headers"] = json.dumps(changed) if as_text else changed
    updated = sandbox_api.put(f"/connections/{shown['id']}", json={"name": name, "metadata": metadata})
    assert updated.status_code == 200 and SECRET not in updated.text
    db = sqlite3.connect(sandbox_dir / "sandbox.db")
    stored = json.loads(db.execute("SELECT metadata FROM connections WHERE id=?", (shown["id"],)).fetchone()[0])
    db.close()
    kept = stored["custom_headers"]
    assert (json.loads(kept) if as_text else kept) == {"X-Api-Key": SECRET, "X-Team": "platform"}


def test_non_ascii_event_names_are_delivered(sandbox, sandbox_api, webhook_receiver):
    ws, name = sandbox.workspace_id, f"usuário.criado.{uuid.uuid4().hex[:6]}"
    sandbox_api.webhook_rule(f"{webhook_receiver.url}/utf8", name, f"utf8-{uuid.uuid4().hex[:6]}")
    emitted = sandbox_api.post("/events", json={"workspace": ws, "event": name, "resource": "usuário", "payload": {}})
    done = sandbox_api.wait_event(emitted.json()["event"]["id"])
    assert done["status"] == "completed", done
    receipt = webhook_receiver.matching(event_id=done["id"])[0]
    assert receipt.headers["x-meshes-event"].encode("latin-1").decode() == name
    assert receipt.json()["event"] == name


def test_trailing_slash_is_a_404_error_body_not_a_redirect(sandbox_api):
    for path in ("/connections/", "/connections/%2F", "/workspaces/"):
        response = sandbox_api.get(path)
        assert response.status_code == 404 and response.json()["error"]["name"] == "NotFound", path


def test_stored_text_that_quotes_a_credential_is_scrubbed_on_the_way_out(tmp_path, webhook_receiver):
    """Attempt messages, captured responses and last_error written before outcomes were scrubbed."""
    data = tmp_path / "old-rows"
    with EmbeddedSandbox(data, retry_base=0.01, max_attempts=1) as info, SandboxApi(info) as api:
        api.webhook_rule(
            f"{webhook_receiver.url}/status/401", "old.rows", "Old rows", auth_scheme="bearer", auth_token=SECRET
        )
        emitted = api.post("/events", json={"workspace": info.workspace_id, "event": "old.rows", "payload": {}})
        event_id = emitted.json()["event"]["id"]
        assert api.wait_event(event_id)["status"] == "failed"
        assert SECRET not in _texts_of_event(api, event_id)
    db = sqlite3.connect(data / "sandbox.db")
    leak = f"LocalProtocolError Illegal header value b'{SECRET}\\r\\n'"
    db.execute("UPDATE attempts SET message=?, response=json_set(response, '$.body', ?)", (leak, leak))
    db.execute("UPDATE rule_events SET last_error=?", (leak,))
    db.commit()
    db.close()
    with EmbeddedSandbox(data, retry_base=0.01, max_attempts=1) as info, SandboxApi(info) as api:
        text = _texts_of_event(api, event_id)
        assert "Illegal header value" in text and SECRET not in text
        canceled = api.post(f"/events/{event_id}/cancel")
        assert SECRET not in canceled.text


def test_header_checks_leave_legitimate_values_alone(sandbox, sandbox_api):
    metadata = {
        "url": "https://bücher.example/hook",
        "auth_scheme": "basic",
        "auth_username": "jürgen",
        "auth_password": "pässwort with spaces",
        "custom_headers": {"X-Team": "growth team"},
    }
    response = sandbox_api.post("/connections", json=webhook_body(sandbox.workspace_id, "Legit", **metadata))
    assert response.status_code == 201, response.text


def _strict_json(raw: bytes):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


def test_events_stored_with_nan_or_lone_surrogates_stay_readable_and_deliverable(tmp_path, webhook_receiver):
    """Events ingested before NaN and lone surrogates were refused: the payload endpoint answers and a
    retried delivery sends strict JSON (NaN → null, lone surrogate → U+FFFD)."""
    data = tmp_path / "legacy"
    with EmbeddedSandbox(data, retry_base=60, max_attempts=5) as info, SandboxApi(info) as api:
        conn_id, rule_id = api.webhook_rule(f"{webhook_receiver.url}/status/503", "legacy.evt", "Legacy")
        emitted = api.post("/events", json={"workspace": info.workspace_id, "event": "legacy.evt", "payload": {}})
        event_id = emitted.json()["event"]["id"]
        api.wait_event(event_id, until=lambda ev: ev["rule_events"][0]["status"] == "retrying")
    db = sqlite3.connect(data / "sandbox.db")
    db.execute("UPDATE events SET payload=? WHERE id=?", ('{"x":NaN,"big":Infinity,"s":"a\\ud800b"}', event_id))
    metadata = json.loads(db.execute("SELECT metadata FROM connections WHERE id=?", (conn_id,)).fetchone()[0])
    metadata["url"] = f"{webhook_receiver.url}/legacy"
    db.execute("UPDATE connections SET metadata=? WHERE id=?", (json.dumps(metadata), conn_id))
    db.commit()
    db.close()
    with EmbeddedSandbox(data, retry_base=60, max_attempts=5) as info, SandboxApi(info) as api:
        payload = api.get(f"/events/{event_id}/payload")
        assert payload.status_code == 200, payload.text
        assert _strict_json(payload.content)["payload"] == {"x": None, "big": None, "s": "a\ufffdb"}
        assert api.post(f"/events/{event_id}/rules/{rule_id}/retry").status_code == 200
        done = api.wait_event(event_id)
        assert done["status"] == "completed", done
    receipt = webhook_receiver.wait_for(1, "/legacy")[0]
    assert _strict_json(receipt.body)["payload"] == {"x": None, "big": None, "s": "a\ufffdb"}


def test_a_client_leaving_mid_body_is_no_error(sandbox, caplog):
    caplog.set_level(logging.INFO, logger="meshes_mcp.sandbox")
    host, port = sandbox.api_url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-Meshes-Publishable-Key: {sandbox.publishable_key}\r\nContent-Length: 1000\r\n\r\n"
            '{"event": "gone", '.encode()
        )
        time.sleep(0.2)  # the sandbox is reading the body
    deadline = time.monotonic() + 5
    while "disconnected mid-request" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "the client disconnected mid-request" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text
