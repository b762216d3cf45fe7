"""A cold start does no more than the first requests need: `initialize` and `tools/list` are answered from
the packaged manifest, and a tool's module (with the request models, triage and views it uses) is imported
on its first call. Checked on the real stdio path, in a fresh process; how long it takes is for
bench/bench_startup.py, not for a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from meshes_mcp.server import docs, registry

ROOT = Path(__file__).resolve().parents[1]

# Runs the server as `python -m meshes_mcp` does and, when it ends at EOF, lists what it imported.
SERVER_REPORTING_IMPORTS = """
import atexit, json, runpy, sys
atexit.register(lambda: sys.stderr.write("IMPORTED " + json.dumps(sorted(sys.modules)) + "\\n"))
sys.argv = ["meshes_mcp"]
runpy.run_module("meshes_mcp", run_name="__main__", alter_sys=True)
"""
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
# Imported by a tool call, never for listing.
CALL_TIME_MODULES = {
    "meshes_mcp.api.models",
    "meshes_mcp.api.client",
    "meshes_mcp.server.incident.scan",
    "meshes_mcp.server.diagnosis",
    "meshes_mcp.server.views",
    "meshes_mcp.server.params",
}


def serve_and_report(requests: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], set[str]]:
    """Each request's answer, in order, and the modules the server process had imported when it ended."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHES_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_REPORTING_IMPORTS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin and proc.stdout
    watchdog = threading.Timer(60, proc.kill)  # a hung server fails the test instead of hanging it
    watchdog.start()
    try:
        answers = []
        for request in [INITIALIZE, *requests]:
            proc.stdin.write((json.dumps(request) + "\n").encode())
            proc.stdin.flush()
            answers.append(json.loads(proc.stdout.readline()))
            if request is INITIALIZE:
                proc.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
        _, stderr = proc.communicate(timeout=60)  # EOF on stdin: the server ends and reports
    finally:
        watchdog.cancel()
        proc.kill()
    reports = [line for line in stderr.decode(errors="replace").splitlines() if line.startswith("IMPORTED ")]
    assert reports, stderr[-2000:]
    return answers[1:], set(json.loads(reports[-1].removeprefix("IMPORTED ")))


def tool_modules(imported: set[str]) -> set[str]:
    return {name for name in imported if name.startswith("meshes_mcp.server.tools.")}


def test_initialize_and_tools_list_import_no_tool_module():
    (listed,), imported = serve_and_report([{"jsonrpc": "2.0", "id": 2, "method": "tools/list"}])
    assert len(listed["result"]["tools"]) == len(registry.enabled_tools(registry.DEFAULT_TOOLSETS, False))
    assert tool_modules(imported) == set()
    assert CALL_TIME_MODULES & imported == set()


def test_a_call_imports_only_its_own_toolset():
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_integrations"}}
    (_, called), imported = serve_and_report([{"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, call])
    # Answered by the handler itself (no credentials here): its module was imported and its tool built.
    assert "credentials are not configured" in called["result"]["content"][0]["text"], called
    assert tool_modules(imported) == {"meshes_mcp.server.tools.integrations"}


def test_the_packaged_manifest_is_what_the_handlers_declare():
    # The manifest lists the tools; the handlers validate and run the calls. They must agree.
    expected = docs.generated(ROOT)[docs.MANIFEST]
    assert registry.MANIFEST.read_text(encoding="utf-8") == expected, (
        "the tool manifest is stale: python -m meshes_mcp.server.docs"
    )
