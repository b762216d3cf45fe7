"""The practice loop: each silent cause of the README's practising table, made in the sandbox with exactly the
tool calls the table gives (through an MCP session), checked with get_event: the event matched no rule.
Then the sandbox's own command line: a pinned port, reconnect with the sandbox stopped, where sandbox.json is.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from meshes_mcp.config import SANDBOX_PORT_VARIABLE, sandbox_port
from meshes_mcp.sandbox import EmbeddedSandbox
from meshes_mcp.sandbox.store import Store
from meshes_mcp.server.app import build_server
from tests.conftest import SandboxApi
from tests.support import ok, settings_for

README = Path(__file__).resolve().parent.parent / "README.md"
CALL = re.compile(r"`([a-z_]+)((?: [a-z_]+=(?:\{[^}`]*\}|\S+))+)`")
ARGUMENT = re.compile(r"([a-z_]+)=(\{[^}]*\}|\S+)")


def silent_causes() -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """The README's practising table for silent causes: (cause, [(tool, raw arguments), ...]) per row."""
    text = README.read_text()
    section = text[text.index("**Practising silent causes.**") : text.index("**An incident to practise on.**")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    causes = []
    for row in rows:
        cause, recipe = (cell.strip() for cell in row.strip("|").split(" | ", 1))
        calls = [(tool, dict(ARGUMENT.findall(arguments))) for tool, arguments in CALL.findall(recipe)]
        causes.append((cause, calls))
    return causes


def value(raw: str, names: dict[str, str]) -> Any:
    if raw in names:
        return names[raw]
    if raw.startswith("{") or raw in ("true", "false"):
        return json.loads(raw)
    return raw


def test_the_table_has_every_silent_cause():
    causes = [cause for cause, _ in silent_causes()]
    assert len(causes) == 6 and all(calls for _, calls in silent_causes())
    for word in ("near miss", "inactive", "resource", "created after", "another workspace", "window"):
        assert any(word in cause for cause in causes), (word, causes)


@pytest.mark.anyio
@pytest.mark.parametrize(("cause", "calls"), silent_causes(), ids=[c for c, _ in silent_causes()])
async def test_each_silent_cause_is_made_as_the_table_says(sandbox, cause, calls):
    """A fresh workspace and its webhook to the sandbox's inbox, then the row's calls exactly: every event it
    emits matched no rule (get_event), and a window it lists holds no such event."""
    start = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    async with Client(build_server(settings_for(sandbox))) as admin:
        name = re.sub(r"[^A-Za-z0-9 _-]", "", cause)[:50]  # a workspace name takes letters, digits, space, _ -
        workspace = ok(await admin.call_tool("create_workspace", {"name": name}))["id"]
    inbox = sandbox.api_url.removesuffix("/api/v1") + "/sandbox/inbox/signups"
    emitted, listed = [], []
    async with Client(build_server(settings_for(sandbox, workspace_id=workspace))) as client:
        hook = {"type": "webhook", "name": "Signups hook", "metadata": {"url": inbox}}
        names = {"<hook>": ok(await client.call_tool("create_connection", hook))["id"]}
        names |= {"<workspace>": workspace, "<start>": start}
        for tool, raw in calls:
            result = ok(await client.call_tool(tool, {key: value(text, names) for key, text in raw.items()}))
            if tool == "create_workspace":
                names[f"<{raw['name'].lower()}>"] = result["id"]
            emitted += [result["id"]] if tool == "emit_event" else []
            listed += [result] if tool == "list_events" else []
        events = [ok(await client.call_tool("get_event", {"event_id": event_id})) for event_id in emitted]

    assert events, "each row emits at least one event"
    for event in events:
        assert event["total_rules"] == 0 and "rule_events" not in event, event
    assert all(page["count"] == 0 for page in listed)


# --- the command line -----------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshes_mcp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sandbox_port_is_pinned_and_a_taken_one_is_refused_in_one_line(tmp_path):
    port = free_port()
    pinned = run_cli("doctor", "--sandbox", "--sandbox-port", str(port), "--data-dir", str(tmp_path))
    assert pinned.returncode == 0, pinned.stderr[-2000:]
    assert f"127.0.0.1:{port}/api/v1" in (tmp_path / "sandbox.json").read_text()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        refused = run_cli("--sandbox", "--sandbox-port", str(port), "--data-dir", str(tmp_path))
        alone_taken = run_cli("sandbox", "--port", str(port), "--data-dir", str(tmp_path))
    assert refused.returncode == 2
    (line,) = [line for line in refused.stderr.splitlines() if line.startswith("meshes-mcp:")]
    assert f"--sandbox-port {port}: 127.0.0.1:{port} is already in use" in line
    assert f"--sandbox-port {port + 1}" in line and "Traceback" not in refused.stderr

    assert alone_taken.returncode == 2 and "Traceback" not in alone_taken.stderr
    assert f"meshes-mcp: --port {port}: 127.0.0.1:{port} is already in use" in alone_taken.stderr

    alone = run_cli("--sandbox-port", str(port))
    assert alone.returncode == 2 and "use it with --sandbox" in alone.stderr


def test_sandbox_port_setting_names_its_source():
    assert sandbox_port(None, {}) is None and sandbox_port(None, {SANDBOX_PORT_VARIABLE: " "}) is None
    assert sandbox_port("8788", {SANDBOX_PORT_VARIABLE: "9000"}) == 8788  # the flag wins
    assert sandbox_port(None, {SANDBOX_PORT_VARIABLE: "9000"}) == 9000
    with pytest.raises(ValueError, match=r"--sandbox-port must be a port from 1 to 65535, e.g. --sandbox-port 8788"):
        sandbox_port("70000", {})
    with pytest.raises(ValueError, match=f"{SANDBOX_PORT_VARIABLE} must be a port .* {SANDBOX_PORT_VARIABLE}=8788"):
        sandbox_port(None, {SANDBOX_PORT_VARIABLE: "eighty"})


@pytest.fixture
def stopped_sandbox(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A sandbox started once and stopped, whose HubSpot connection needs a person's reconnect."""
    with EmbeddedSandbox(tmp_path):
        pass  # seeded: the dashboard's OAuth connections exist
    store = Store(tmp_path / "sandbox.db")
    try:
        hubspot = store.all("SELECT id FROM connections WHERE type='hubspot' AND deleted_at IS NULL")[0]["id"]
    finally:
        store.close()
    revoke(str(tmp_path), hubspot)
    yield {"hubspot": hubspot, "data_dir": str(tmp_path)}


def revoke(data_dir: str, connection_id: str) -> None:
    """What the provider does when a grant is withdrawn (the sandbox's API has no such call)."""
    store = Store(Path(data_dir) / "sandbox.db")
    try:
        with store.tx():
            store.set_connection_state(connection_id, False, "oauth_reauthorization_required")
    finally:
        store.close()


def connection_state(data_dir: str, connection_id: str) -> tuple[int, str | None]:
    store = Store(Path(data_dir) / "sandbox.db")
    try:
        row = store.one("SELECT active, inactive_reason FROM connections WHERE id=?", (connection_id,))
    finally:
        store.close()
    assert row is not None
    return row["active"], row["inactive_reason"]


def test_reconnect_works_with_the_sandbox_stopped(stopped_sandbox):
    data_dir, hubspot = stopped_sandbox["data_dir"], stopped_sandbox["hubspot"]
    done = run_cli("sandbox", "reconnect", hubspot, "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "HubSpot (hubspot): reconnected\n"
    assert connection_state(data_dir, hubspot) == (1, None)
    again = run_cli("sandbox", "reconnect", hubspot, "--data-dir", data_dir)
    assert again.returncode == 0 and again.stdout == "HubSpot (hubspot): was already active\n"

    wrong = run_cli("sandbox", "reconnect", "not-a-uuid", "--data-dir", data_dir)
    assert wrong.returncode == 2 and "connection_id" in wrong.stderr and "Traceback" not in wrong.stderr

    with EmbeddedSandbox(Path(data_dir)) as info, SandboxApi(info) as api:  # and with it running
        assert api.get(f"/connections/{hubspot}").json()["active"] is True
        revoke(data_dir, hubspot)
        assert run_cli("sandbox", "reconnect", hubspot, "--data-dir", data_dir).stdout.endswith(": reconnected\n")
        assert api.get(f"/connections/{hubspot}").json()["active"] is True


def test_the_sandbox_command_logs_where_sandbox_json_is(tmp_path):
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshes_mcp", "sandbox", "--port", "0", "--data-dir", str(tmp_path / "d")],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={"PATH": "/usr/bin:/bin"},
        )
        try:
            deadline = time.monotonic() + 30
            while not (tmp_path / "d" / "sandbox.json").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert f"sandbox.json (API URL and keys, for curl and the SDKs): {tmp_path / 'd' / 'sandbox.json'}" in (
        log.read_text()
    )
