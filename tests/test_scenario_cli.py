"""The scenario from the command line, in real processes: `meshes-mcp --sandbox --scenario incident` over
stdio practises in the Incident workspace by default, and a kill -9 during the build never leaves half a
scenario behind."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import ok


@pytest.mark.anyio
async def test_stdio_server_with_the_scenario_defaults_to_the_incident_workspace(tmp_path):
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHES_")}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "meshes_mcp", "--sandbox", "--scenario", "incident", "--data-dir", str(tmp_path / "data")],
        env=env,
    )
    with open(os.devnull, "w") as quiet:
        async with Client(stdio_client(params, errlog=quiet)) as client:
            listed = ok(await client.call_tool("list_connections", {}))
    by_type = {c["type"]: c for c in listed["connections"]}
    assert set(by_type) == {"hubspot", "mailchimp", "webhook", "slack"}
    assert by_type["hubspot"]["active"] is False


def test_a_kill_during_the_build_leaves_all_or_nothing_and_the_next_start_completes_it(tmp_path):
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "meshes_mcp.sandbox", "--data-dir", str(data_dir), "--port", "0",
               "--scenario", "incident"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    database, wal = data_dir / "sandbox.db", data_dir / "sandbox.db-wal"
    deadline = time.monotonic() + 30
    # The build's one transaction spills pages into the WAL as it grows: kill it there, mid-write.
    while not (wal.exists() and wal.stat().st_size > 1_000_000) and time.monotonic() < deadline:
        assert proc.poll() is None
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert _incident_events(database) in (0, 2400)

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (data_dir / "sandbox.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the sandbox did not start again"
            time.sleep(0.05)
        assert _incident_events(database) == 2400
    finally:
        proc.terminate()
        proc.wait(10)


def _incident_events(database: Path) -> int:
    if not database.exists():
        return 0
    db = sqlite3.connect(database)
    try:
        row = db.execute(
            "SELECT count(*) FROM events WHERE workspace_id IN (SELECT id FROM workspaces WHERE name='Incident')"
        ).fetchone()
        return row[0]
    except sqlite3.OperationalError:  # killed before the schema was written
        return 0
    finally:
        db.close()
