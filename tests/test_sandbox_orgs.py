"""Several organisations in one sandbox, over real HTTP on 127.0.0.1: each a tenant of its own.

Organisation B's credentials never reach anything of organisation A's: every id of A's answers B exactly
as an id that does not exist would (404, not 403, so B cannot even learn that A's ids exist), A's
lists never show in B's, and nothing B sends changes A's rows.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from meshes_mcp.api.auth import MachineKey
from meshes_mcp.cli import main
from meshes_mcp.sandbox import EmbeddedSandbox, SandboxInfo
from meshes_mcp.sandbox.organizations import ORGANIZATION_LIMIT
from meshes_mcp.sandbox.seed import OAUTH_CONNECTIONS, ensure_seed
from meshes_mcp.sandbox.store import Store
from tests.conftest import SandboxApi

SEED_FIELDS = {"organization_id", "access_key", "secret_key", "workspace_id", "publishable_key"}
JSON = "application/json"
HOOK = {"metadata": {"action": "send_webhook"}}
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def base_of(info: SandboxInfo) -> str:
    return info.api_url.removesuffix("/api/v1")


def token(access_key: str, secret_key: str, org: str) -> str:
    """A machine JWT from any three parts, matching or not (the forged cases mix two organisations')."""
    return MachineKey(access_key, secret_key, org).mint()


def add_org(info: SandboxInfo, client: httpx2.Client | None = None, **kwargs: Any) -> httpx2.Response:
    """POST /sandbox/organizations with the first organisation's machine key."""
    auth = {"Authorization": f"Bearer {token(info.access_key, info.secret_key, info.organization_id)}"}
    kwargs["headers"] = {**auth, **kwargs.get("headers", {})}
    url = f"{base_of(info)}/sandbox/organizations"
    if client is not None:
        return client.post(url, **kwargs)
    return httpx2.post(url, trust_env=False, timeout=30, **kwargs)


def info_of(api_url: str, created: dict[str, Any]) -> SandboxInfo:
    return SandboxInfo(api_url=api_url, **{k: created[k] for k in SEED_FIELDS})


def organization_count(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "sandbox.db") as db:
        return int(db.execute("SELECT count(*) FROM organizations").fetchone()[0])


@pytest.fixture(scope="module")
def org_b(sandbox: SandboxInfo) -> dict[str, Any]:
    answer = add_org(sandbox, json={"name": "Acme"})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


@pytest.fixture(scope="module")
def api_b(sandbox: SandboxInfo, org_b: dict[str, Any]) -> Iterator[SandboxApi]:
    with SandboxApi(info_of(sandbox.api_url, org_b)) as api:
        yield api


@pytest.fixture(scope="module")
def a_world(sandbox: SandboxInfo, sandbox_api: SandboxApi) -> dict[str, str]:
    """Organisation A's rows of every kind: a webhook connection and rule, a delivered event (with its rule
    event and attempt), a seeded OAuth connection with a stored mapping, a session."""
    api, ws = sandbox_api, sandbox.workspace_id
    connection, rule = api.webhook_rule(f"{base_of(sandbox)}/sandbox/inbox/tenant-a", "order.paid", "A hook")
    emitted = api.post("/events", json={"workspace": ws, "event": "order.paid", "payload": {"total": 12}})
    assert emitted.status_code == 201, emitted.text
    event = api.wait_event(emitted.json()["event"]["id"])
    assert event["status"] == "completed", event
    attempts = api.get(f"/events/{event['id']}/rules/{rule}/attempts").json()["records"]
    hubspot = next(c for c in api.get("/connections").json()["records"] if c["type"] == "hubspot")
    mapping = api.get(f"/connections/{hubspot['id']}/mappings/default").json()["mapping"]
    stored = api.put(f"/connections/{hubspot['id']}/mappings/default", json={"schema": mapping["schema"]})
    assert stored.status_code == 200, stored.text
    session = api.post("/sessions", json={"workspace_id": ws})
    assert session.status_code == 200, session.text
    return {
        "workspace": ws,
        "connection": connection,
        "rule": rule,
        "event": event["id"],
        "attempt": attempts[0]["id"],
        "hubspot": hubspot["id"],
        "session": session.json()["session_id"],
    }


def a_snapshot(api: SandboxApi, world: dict[str, str]) -> list[Any]:
    """What A sees of its own rows (timestamps that move on reads left out)."""
    return [
        api.get(f"/workspaces/{world['workspace']}").json(),
        api.get(f"/connections/{world['connection']}").json(),
        api.get(f"/connections/{world['hubspot']}").json(),
        api.get(f"/connections/{world['hubspot']}/mappings/default").json(),
        api.get(f"/rules/{world['rule']}").json(),
        api.get(f"/events/{world['event']}").json(),
        api.get(f"/events/{world['event']}/rules/{world['rule']}/attempts").json(),
        api.get("/sessions", params={"workspace_id": world["workspace"]}).json(),
    ]


# -- each organisation is a full tenant -------------------------------------------------------------


def test_a_new_organization_is_seeded_like_the_first_and_answers_its_secret_once(
    sandbox: SandboxInfo, org_b: dict[str, Any], api_b: SandboxApi, sandbox_api: SandboxApi
):
    assert set(org_b) == SEED_FIELDS | {"name"} and org_b["name"] == "Acme"
    assert org_b["organization_id"] != sandbox.organization_id and org_b["access_key"] != sandbox.access_key
    workspaces = api_b.get("/workspaces").json()["records"]
    assert [(w["id"], w["name"]) for w in workspaces] == [(org_b["workspace_id"], "Demo")]
    workspace = api_b.get(f"/workspaces/{org_b['workspace_id']}").json()
    assert workspace["publishable_key"]["public_key"] == org_b["publishable_key"]
    connections = api_b.get("/connections").json()["records"]
    assert sorted(c["type"] for c in connections) == sorted(kind for kind, _, _ in OAUTH_CONNECTIONS)
    assert {c["workspace"] for c in connections} == {org_b["workspace_id"]}
    # B's publishable key emits into B's workspace.
    emitted = httpx2.post(
        f"{sandbox.api_url}/events",
        json={"event": "user.signup", "payload": {"email": "b@acme.test"}},
        headers={"X-Meshes-Publishable-Key": org_b["publishable_key"]},
        trust_env=False,
    )
    assert emitted.status_code == 201 and emitted.json()["event"]["workspace"] == org_b["workspace_id"]
    # A's view did not grow: B's workspace and connections are B's alone.
    assert org_b["workspace_id"] not in {w["id"] for w in sandbox_api.get("/workspaces").json()["records"]}
    assert not {c["id"] for c in connections} & {c["id"] for c in sandbox_api.get("/connections").json()["records"]}


def test_the_secret_key_is_in_the_answer_only(sandbox: SandboxInfo, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.DEBUG):
        answer = add_org(sandbox, json={"name": "Logged Co"})
    assert answer.status_code == 201 and answer.headers["cache-control"] == "no-store"
    created = answer.json()
    with SandboxApi(info_of(sandbox.api_url, created)) as api:
        seen = [api.get("/workspaces").text, api.get(f"/workspaces/{created['workspace_id']}").text]
        seen.append(api.get("/connections").text)
    assert all(created["secret_key"] not in text for text in seen)
    assert created["secret_key"] not in caplog.text and created["organization_id"] in caplog.text


# -- B's machine key never reaches A's rows -----------------------------------------------------------

# (method, path template, JSON body): every endpoint that takes an id of A's in its path.
BY_ID = [
    ("GET", "/workspaces/{workspace}", None),
    ("PUT", "/workspaces/{workspace}", {"name": "Taken Over"}),
    ("GET", "/workspaces/{workspace}/connections", None),
    ("GET", "/workspaces/{workspace}/event-types", None),
    ("GET", "/workspaces/{workspace}/resources", None),
    ("GET", "/workspaces/{workspace}/events", None),
    ("GET", "/workspaces/{workspace}/rules", None),
    ("GET", "/connections/{connection}", None),
    ("PUT", "/connections/{connection}", {"name": "Taken Over", "metadata": {"url": "http://127.0.0.1:9/x"}}),
    ("DELETE", "/connections/{connection}", {"force_delete": True}),
    ("GET", "/connections/{hubspot}/actions", None),
    ("GET", "/connections/{hubspot}/fields", None),
    ("GET", "/connections/{hubspot}/mappings/default", None),
    ("PUT", "/connections/{hubspot}/mappings/default", {"schema": {"schema_version": 1, "fields": []}}),
    ("POST", "/sandbox/connections/{hubspot}/reconnect", None),
    ("GET", "/rules/{rule}", None),
    ("DELETE", "/rules/{rule}", None),
    ("GET", "/events/{event}", None),
    ("GET", "/events/{event}/payload", None),
    ("POST", "/events/{event}/cancel", None),
    ("POST", "/events/{event}/rules/{rule}/retry", None),
    ("POST", "/events/{event}/rules/{rule}/cancel", None),
    ("GET", "/events/{event}/rules/{rule}/attempts", None),
    ("GET", "/events/{event}/rules/{rule}/attempts/{attempt}", None),
    ("GET", "/events/{event}/rules/{rule}/attempts/{attempt}/response-details", None),
    ("POST", "/sessions/{session}/refresh", None),
    ("DELETE", "/sessions/{session}", None),
]


def call(api: SandboxApi, method: str, template: str, ids: dict[str, str], body: Any) -> httpx2.Response:
    path = template.format(**ids)
    url = base_of(api.info) + path if path.startswith("/sandbox/") else path
    return api.request(method, url, json=body) if body is not None else api.request(method, url)


def without(text: str, ids: dict[str, str]) -> str:
    for value in sorted(ids.values(), key=len, reverse=True):
        text = text.replace(value, "<id>")
    return text


@pytest.mark.parametrize(("method", "template", "body"), BY_ID, ids=[f"{m} {t}" for m, t, _ in BY_ID])
def test_b_meets_each_of_a_s_ids_as_one_that_does_not_exist(
    a_world: dict[str, str], api_b: SandboxApi, method: str, template: str, body: Any
):
    unknown = {key: UNKNOWN for key in a_world}
    unknown["session"] = f"sess_{UNKNOWN}"
    answer = call(api_b, method, template, a_world, body)
    assert answer.status_code == 404, answer.text
    # Word for word the answer for ids that exist nowhere: nothing tells B that A's ids are real.
    assert without(answer.text, a_world) == without(call(api_b, method, template, unknown, body).text, unknown)


def test_b_s_lists_never_show_a_s_rows_and_a_s_rows_survive_b(
    sandbox_api: SandboxApi, a_world: dict[str, str], api_b: SandboxApi
):
    before = a_snapshot(sandbox_api, a_world)
    for method, template, body in BY_ID:  # every write B could aim at A's ids, all refused
        assert call(api_b, method, template, a_world, body).status_code == 404
    listed = [
        api_b.get(path).text
        for path in ("/workspaces", "/connections", "/rules", "/events", "/events?status=completed")
    ]
    assert not any(value in text for value in a_world.values() for text in listed)
    assert a_snapshot(sandbox_api, a_world) == before


def test_b_cannot_aim_its_own_writes_at_a_s_workspace_or_connection(
    a_world: dict[str, str], api_b: SandboxApi, org_b: dict[str, Any]
):
    ws_a, ws_b = a_world["workspace"], org_b["workspace_id"]
    hook = {"workspace": ws_a, "type": "webhook", "name": "Into A", "metadata": {"url": "http://127.0.0.1:9/"}}
    cases = [
        ("/connections", hook, "workspace"),
        (
            "/rules",
            {"workspace": ws_a, "connection": a_world["connection"], "event": "order.paid", **HOOK},
            "workspace",
        ),
        (
            "/rules",
            {"workspace": ws_b, "connection": a_world["connection"], "event": "order.paid", **HOOK},
            "connection",
        ),
        ("/events", {"workspace": ws_a, "event": "order.paid", "payload": {}}, "workspace"),
        ("/sessions", {"workspace_id": ws_a}, "workspace_id"),
    ]
    for path, body, param in cases:
        answer = api_b.post(path, json=body)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["error"]["data"][0]["param"] == param
    bulk = api_b.post("/events/bulk", json=[{"workspace": ws_a, "event": "order.paid", "payload": {}}])
    assert bulk.status_code == 400 and bulk.json()["records"][0]["error"]["name"] == "NotFound"
    listed = api_b.get("/sessions", params={"workspace_id": ws_a})
    assert listed.status_code == 404
    assert api_b.get("/events", params={"event": "order.paid"}).json()["records"] == []
    types_b = api_b.get(f"/workspaces/{ws_b}/event-types").json()
    assert "order.paid" not in {t["key"] for t in types_b}


def test_names_are_unique_per_organization_only(sandbox_api: SandboxApi, api_b: SandboxApi):
    """A name A uses is free for B: a 409 would tell B what A's workspaces are called."""
    assert sandbox_api.post("/workspaces", json={"name": "Payments Core"}).status_code == 201
    mine = api_b.post("/workspaces", json={"name": "payments core"})
    assert mine.status_code == 201, mine.text
    again = api_b.post("/workspaces", json={"name": "Payments Core"})
    assert again.status_code == 409  # B's own name is taken, within B


def test_b_s_publishable_key_cannot_emit_into_a_s_workspace(
    sandbox: SandboxInfo, a_world: dict[str, str], org_b: dict[str, Any]
):
    """403, the documented answer to a publishable key naming a workspace that is not its own; the same for
    any workspace id at all, so it tells nothing about A's."""

    def emit(workspace: str) -> httpx2.Response:
        return httpx2.post(
            f"{sandbox.api_url}/events",
            json={"workspace": workspace, "event": "order.paid", "payload": {}},
            headers={"X-Meshes-Publishable-Key": org_b["publishable_key"]},
            trust_env=False,
        )

    into_a, into_nothing = emit(a_world["workspace"]), emit(UNKNOWN)
    assert into_a.status_code == 403 and into_a.text == into_nothing.text
    assert "another workspace" in into_a.json()["error"]["message"]


def test_a_jwt_is_refused_unless_its_org_claim_is_its_key_s_own(
    sandbox: SandboxInfo, a_world: dict[str, str], org_b: dict[str, Any]
):
    a_key_b_org = token(sandbox.access_key, sandbox.secret_key, org_b["organization_id"])
    b_key_a_org = token(org_b["access_key"], org_b["secret_key"], sandbox.organization_id)
    a_kid_b_secret = token(sandbox.access_key, org_b["secret_key"], sandbox.organization_id)
    for forged in (a_key_b_org, b_key_a_org, a_kid_b_secret):
        for path in ("/workspaces", f"/workspaces/{a_world['workspace']}", f"/workspaces/{org_b['workspace_id']}"):
            answer = httpx2.get(f"{sandbox.api_url}{path}", headers={"Authorization": f"Bearer {forged}"})
            assert answer.status_code == 401, answer.text
            assert sandbox.secret_key not in answer.text and org_b["secret_key"] not in answer.text


# -- the endpoint's own guard and input --------------------------------------------------------------


def test_adding_an_organization_needs_a_machine_key_from_this_machine(sandbox: SandboxInfo, sandbox_dir: Path):
    before = organization_count(sandbox_dir)
    url = f"{base_of(sandbox)}/sandbox/organizations"
    assert httpx2.post(url, trust_env=False).status_code == 401
    publishable = httpx2.post(url, headers={"X-Meshes-Publishable-Key": sandbox.publishable_key}, trust_env=False)
    assert publishable.status_code == 401
    # Through a proxy, the real client may be anywhere: even one that claims to be local is refused.
    for relay in ({"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "127.0.0.1"}, {"Forwarded": "for=::1"}):
        relayed = add_org(sandbox, headers=relay)
        assert relayed.status_code == 403 and "loopback" in relayed.json()["error"]["message"]
    assert httpx2.get(url, trust_env=False).status_code == 405
    assert organization_count(sandbox_dir) == before


def test_ipv6_loopback_is_this_machine_too(tmp_path: Path):
    try:
        sandbox = EmbeddedSandbox(tmp_path, host="::1")
        info = sandbox.start()
    except (OSError, RuntimeError):
        pytest.skip("no IPv6 loopback here")
    try:
        assert info.api_url.startswith("http://[::1]:")
        assert add_org(info).status_code == 201
    finally:
        sandbox.stop()


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("long name", {"json": {"name": "x" * 101}}, "name"),
    ("blank name", {"json": {"name": "   "}}, "name"),
    ("empty name", {"json": {"name": ""}}, "name"),
    ("number name", {"json": {"name": 42}}, "name"),
    ("newline", {"json": {"name": "Acme\nInc"}}, "name"),
    ("NUL", {"json": {"name": "Acme\u0000"}}, "name"),
    ("bidi override", {"json": {"name": "Acme\u202egnp.exe"}}, "name"),
    ("zero width", {"json": {"name": "Ac\u200bme"}}, "name"),
    ("line separator", {"json": {"name": "Acme\u2028Inc"}}, "name"),
    ("lone surrogate", {"content": b'{"name": "\\ud800"}', "headers": {"content-type": JSON}}, "name"),
    ("unknown field", {"json": {"name": "Acme", "plan": "enterprise"}}, "plan"),
    ("array", {"json": [{"name": "Acme"}]}, "body"),
    ("string", {"json": "Acme"}, "body"),
    ("NaN", {"content": b'{"name": NaN}', "headers": {"content-type": JSON}}, "name"),
    ("not JSON", {"content": b'{"name": ', "headers": {"content-type": JSON}}, "body"),
    ("not UTF-8", {"content": b'{"name": "\xff"}', "headers": {"content-type": JSON}}, "body"),
    ("text/plain", {"content": b'{"name": "Acme"}', "headers": {"content-type": "text/plain"}}, "Content-Type"),
    ("deep", {"content": b'{"name": ' + b"[" * 100 + b"]" * 100 + b"}", "headers": {"content-type": JSON}}, "name[0]"),
    (
        "too deep to parse",
        {"content": b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}", "headers": {"content-type": JSON}},
        "body",
    ),
]


@pytest.mark.parametrize(("case", "request_args", "param"), BAD_BODIES, ids=[c for c, _, _ in BAD_BODIES])
def test_a_bad_body_is_a_400_naming_the_field(
    sandbox: SandboxInfo, sandbox_dir: Path, case: str, request_args: dict[str, Any], param: str
):
    before = organization_count(sandbox_dir)
    answer = add_org(sandbox, **request_args)
    assert answer.status_code == 400, answer.text
    problems = answer.json()["error"]["data"]
    assert problems[0]["param"].startswith(param), problems  # a deep value is named by its full path
    if param == "name" and case not in ("NaN", "lone surrogate"):
        assert "e.g." in problems[0]["msg"]
    assert organization_count(sandbox_dir) == before


def test_a_huge_body_is_refused_unread(sandbox: SandboxInfo, sandbox_dir: Path):
    before = organization_count(sandbox_dir)
    huge = b'{"name": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    answer = add_org(sandbox, content=huge, headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert organization_count(sandbox_dir) == before


def test_no_body_or_a_null_name_picks_a_numbered_default(sandbox: SandboxInfo, sandbox_dir: Path):
    first = add_org(sandbox)
    assert first.status_code == 201, first.text
    assert first.json()["name"] == f"Sandbox Organization {organization_count(sandbox_dir)}"
    assert add_org(sandbox, json={"name": None}).json()["name"].startswith("Sandbox Organization ")
    unicode_name = add_org(sandbox, json={"name": "Société Générale & Fils, Ltd."})
    assert unicode_name.status_code == 201 and unicode_name.json()["name"] == "Société Générale & Fils, Ltd."


# -- the limit ---------------------------------------------------------------------------------------


def test_a_flood_of_requests_stops_at_the_limit_exactly(tmp_path: Path):
    """Hundreds of requests from eight threads at once: exactly up to the limit are created, every other
    one is a 409 that says why, and the command line meets the same limit."""
    with EmbeddedSandbox(tmp_path) as info:
        limits = httpx2.Limits(max_connections=8)
        client = httpx2.Client(trust_env=False, timeout=30, limits=limits)
        with client, concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: add_org(info, client), range(ORGANIZATION_LIMIT + 100)))
        codes = [a.status_code for a in answers]
        assert codes.count(201) == ORGANIZATION_LIMIT - 1 and codes.count(409) == 101, set(codes)
        refusal = next(a for a in answers if a.status_code == 409).json()["error"]["message"]
        assert f"({ORGANIZATION_LIMIT})" in refusal and "fresh data directory" in refusal
        assert organization_count(tmp_path) == ORGANIZATION_LIMIT
        # Every organisation created got keys of its own.
        keys = {a.json()["access_key"] for a in answers if a.status_code == 201} | {info.access_key}
        assert len(keys) == ORGANIZATION_LIMIT
        cli = run_add_org("--data-dir", str(tmp_path))
    assert cli.returncode == 2 and "organizations" in cli.stderr and "Traceback" not in cli.stderr
    assert cli.stdout == "" and organization_count(tmp_path) == ORGANIZATION_LIMIT


# -- meshes-mcp sandbox add-org ----------------------------------------------------------------------


def run_add_org(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshes_mcp", "sandbox", "add-org", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_add_org_on_a_running_sandbox_prints_keys_it_takes_at_once(sandbox: SandboxInfo, sandbox_dir: Path):
    done = run_add_org("--name", "Cli Co", "--data-dir", str(sandbox_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1  # one line of JSON
    created = json.loads(done.stdout)
    assert set(created) == SEED_FIELDS | {"name"} and created["name"] == "Cli Co"
    assert created["secret_key"] not in done.stderr
    with SandboxApi(info_of(sandbox.api_url, created)) as api:
        assert [w["id"] for w in api.get("/workspaces").json()["records"]] == [created["workspace_id"]]


def test_add_org_on_a_stopped_sandbox_is_there_at_the_next_start(tmp_path: Path):
    with EmbeddedSandbox(tmp_path):
        pass
    done = run_add_org("--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["name"] == "Sandbox Organization 2"
    with EmbeddedSandbox(tmp_path) as info, SandboxApi(info_of(info.api_url, created)) as api:
        assert info.organization_id != created["organization_id"]  # sandbox.json keeps the first organisation
        assert api.get(f"/workspaces/{created['workspace_id']}").status_code == 200


def refusal(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """`meshes-mcp sandbox add-org ARGS` in this process: exit status 2 and one line on stderr."""
    with pytest.raises(SystemExit) as exited:
        main(["sandbox", "add-org", *args])
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_add_org_refuses_with_one_line_and_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    missing = tmp_path / "typo"
    assert "no sandbox data" in refusal(capsys, "--data-dir", str(missing))
    assert not missing.exists()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "sandbox.db").write_bytes(b"this is not SQLite" * 100)
    assert "cannot open the sandbox database" in refusal(capsys, "--data-dir", str(junk))
    real = tmp_path / "real"
    with EmbeddedSandbox(real):
        pass
    for bad in ("", " ", "x" * 101, "Acme\x1b[31m", "Acme\udcff"):  # the last: undecodable bytes in argv
        err = refusal(capsys, "--name", bad, "--data-dir", str(real))
        assert "--name must" in err and "e.g." in err, err
    assert organization_count(real) == 1


# -- the first organisation ---------------------------------------------------------------------------


def test_two_stores_seeding_a_new_data_directory_at_once_make_one_organization(tmp_path: Path):
    """Two sandboxes starting on one new data directory: the one that waits for the other's seed uses it
    instead of adding a second organisation (whose keys would be in one process's sandbox.json only)."""
    first, second = Store(tmp_path / "sandbox.db"), Store(tmp_path / "sandbox.db")
    waiting = threading.Event()
    second.db.set_trace_callback(lambda sql: waiting.set() if sql.startswith("BEGIN") else None)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool, first.tx():
            # `second` finds no seed, then waits for the write lock `first` holds while it seeds.
            seeded_second = pool.submit(ensure_seed, second)
            assert waiting.wait(10)
            seeded_first = ensure_seed(first)
        assert seeded_second.result(10) == seeded_first
        assert organization_count(tmp_path) == 1
    finally:
        first.close()
        second.close()
