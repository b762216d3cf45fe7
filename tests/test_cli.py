"""The command line as a new user meets it: the demo, the sandbox command, flags and doctor."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import httpx2

from meshes_mcp.cli import build_parser, settings_from


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshes_mcp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_demo_walks_through_both_jobs(tmp_path):
    done = run_cli("demo", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert 'list "9" does not exist' in out  # validation before any request
    assert "rejected_client_error" in out  # the failed webhook, diagnosed
    assert "The receiver got 1 delivery at the right URL" in out  # fixed and retried exactly once
    assert "Act two: an incident" in out
    if "act two needs them" not in out:  # the incident tools are in this build: the whole loop ran
        assert "reconnected: True" in out and "Nothing left" in out


def test_sandbox_command_serves_the_api_and_writes_its_credentials(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshes_mcp", "sandbox", "--port", str(port), "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        info_file = tmp_path / "sandbox.json"
        deadline = time.monotonic() + 20
        while not info_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        info = json.loads(info_file.read_text())
        assert info["api_url"] == f"http://127.0.0.1:{port}/api/v1"
        assert set(info) >= {"organization_id", "access_key", "secret_key", "workspace_id", "publishable_key"}
        # The publishable key works for ingestion, exactly as with the real API.
        answer = httpx2.post(
            f"{info['api_url']}/events",
            json={"event": "user.signup", "payload": {"email": "a@b.co"}},
            headers={"X-Meshes-Publishable-Key": info["publishable_key"]},
        )
        assert answer.status_code == 201 and answer.json()["event"]["workspace"] == info["workspace_id"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_flags_override_environment(monkeypatch):
    monkeypatch.setenv("MESHES_API_URL", "https://env.example.com")
    monkeypatch.setenv("MESHES_ORGANIZATION_ID", "from-env")
    options = vars(build_parser().parse_args(["--api-url", "https://flag.example.com/", "--read-only"]))
    settings = settings_from(options)
    assert settings.base_url == "https://flag.example.com/api/v1"
    assert settings.org_id == "from-env"  # the alias is honoured
    assert settings.read_only is True


def test_unknown_toolset_is_one_clear_line():
    done = run_cli("--toolsets", "rules,bogus")
    assert done.returncode == 2
    assert "unknown toolset(s) bogus" in done.stderr and "Traceback" not in done.stderr


def test_doctor_without_credentials_says_what_is_missing():
    done = run_cli("doctor")
    assert done.returncode == 1
    assert "MESHES_ACCESS_KEY" in done.stderr and "--sandbox" in done.stderr
    assert done.stdout == ""
