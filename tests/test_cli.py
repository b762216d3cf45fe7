"""The command line as a new user meets it: the demo, the sandbox command, flags and doctor."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from meshes_mcp.cli import SETTING_FLAGS, build_parser, main, settings_from


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


@contextlib.contextmanager
def sandbox_command(data_dir: Path, port: int) -> Iterator[dict[str, Any]]:
    """`meshes-mcp sandbox --port PORT` in a subprocess, with nothing from this environment: its sandbox.json."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshes_mcp", "sandbox", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        info_file = data_dir / "sandbox.json"
        deadline = time.monotonic() + 20
        while not info_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield json.loads(info_file.read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_sandbox_command_takes_port_zero_as_any_free_port(tmp_path):
    with sandbox_command(tmp_path, 0) as info:
        port = int(info["api_url"].split(":")[2].split("/")[0])
        assert port not in (0, 8787)


def test_sandbox_command_serves_the_api_and_writes_its_credentials(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with sandbox_command(tmp_path, port) as info:
        assert info["api_url"] == f"http://127.0.0.1:{port}/api/v1"
        assert set(info) >= {"organization_id", "access_key", "secret_key", "workspace_id", "publishable_key"}
        # The publishable key works for ingestion, exactly as with the real API.
        answer = httpx2.post(
            f"{info['api_url']}/events",
            json={"event": "user.signup", "payload": {"email": "a@b.co"}},
            headers={"X-Meshes-Publishable-Key": info["publishable_key"]},
        )
        assert answer.status_code == 201 and answer.json()["event"]["workspace"] == info["workspace_id"]


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


def test_doctor_sandbox_checks_the_sandbox_instead_of_ignoring_the_flag(tmp_path):
    done = run_cli("doctor", "--sandbox", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((tmp_path / "sandbox.json").read_text())
    assert "API reachable: 1 workspace(s)" in done.stderr
    assert info["api_url"] in done.stderr  # the sandbox's own address was checked, not api.meshes.io
    assert info["secret_key"] not in done.stderr and info["access_key"] not in done.stderr
    # The sandbox's publishable key is configured too, shown masked: its start and its length.
    (shown,) = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("publishable_key ")]
    assert shown == f"{info['publishable_key'][:5]}…({len(info['publishable_key'])})"
    assert info["publishable_key"] not in done.stderr
    assert done.stdout == ""


def test_sandbox_help_shows_defaults_and_an_optional_action():
    done = run_cli("sandbox", "--help")
    assert done.returncode == 0
    help_text = " ".join(done.stdout.split())
    assert "usage: meshes-mcp sandbox [options] [ACTION ...]" in help_text
    assert "--host HOST address to listen on (default: 127.0.0.1)" in help_text
    assert "--port PORT port to listen on (default: 8787)" in help_text
    assert "optional: without one, the sandbox is served" in help_text


def test_every_flag_with_a_variable_names_it_in_its_help():
    parser = build_parser()
    helps = {action.dest: action.help or "" for action in parser._actions}
    for dest in (*SETTING_FLAGS, "read_only"):
        variable = "MESHES_" + dest.upper()
        assert variable in helps[dest], f"--{dest.replace('_', '-')} help should name {variable}"


def http_refusal(capsys, *args: str) -> str:
    """What `meshes-mcp --transport http …` says when its HTTP settings are refused (before anything starts)."""
    with pytest.raises(SystemExit) as exited:
        main(["--transport", "http", *args])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    return lines[0]


def test_http_settings_are_checked_with_one_clear_line(capsys, monkeypatch):
    for name in ("MESHES_MCP_HTTP_TOKEN", "MESHES_MCP_ALLOWED_HOSTS", "MESHES_MCP_ALLOWED_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    line = http_refusal(capsys, "--allowed-hosts", "localhost:*,http://mcp.example.com")
    assert "MESHES_MCP_ALLOWED_HOSTS" in line and "'http://mcp.example.com'" in line and "e.g." in line
    assert "wildcard host" in http_refusal(capsys, "--allowed-hosts", "*.example.com")
    assert "outside 1-65535" in http_refusal(capsys, "--allowed-hosts", "example.com:70000")
    line = http_refusal(capsys, "--allowed-origins", "https://app.example.com/path")
    assert "MESHES_MCP_ALLOWED_ORIGINS" in line and "no path" in line
    monkeypatch.setenv("MESHES_MCP_HTTP_TOKEN", "")
    assert "MESHES_MCP_HTTP_TOKEN is set but empty" in http_refusal(capsys)
    monkeypatch.setenv("MESHES_MCP_HTTP_TOKEN", "short-Secret")
    line = http_refusal(capsys)
    assert "at least 16 characters" in line and "short-Secret" not in line and "short" not in line
    line = http_refusal(capsys, "--http-token", "has spaces in it, 16+ chars")
    assert "letters, digits and -._~+/" in line and "spaces" not in line
    monkeypatch.delenv("MESHES_MCP_HTTP_TOKEN")
    assert "refusing to serve HTTP on ::" in http_refusal(capsys, "--host", "::")
    assert "--host" in http_refusal(capsys, "--host", "bad host!")


def test_allowed_names_add_to_loopback_and_the_bind_address():
    from meshes_mcp.config import HttpSettings

    flags = {"host": "10.1.2.3", "port": 9000, "http_token": "x" * 20, "allowed_hosts": " MCP.Example.com:* , "}
    http = HttpSettings.from_sources(flags, {"MESHES_MCP_ALLOWED_ORIGINS": "https://app.example.com"})
    assert http.allowed_hosts[:2] == ("127.0.0.1", "127.0.0.1:*")
    assert {"10.1.2.3:9000", "mcp.example.com:*"} <= set(http.allowed_hosts)
    assert "https://app.example.com" in http.allowed_origins and "http://localhost:*" in http.allowed_origins
    assert "x" * 20 not in repr(http) + str(http.describe())
    # Every interface: only what is listed, never "whatever Host the request names".
    everywhere = HttpSettings.from_sources({"host": "0.0.0.0", "http_token": "y" * 16}, {})
    assert "0.0.0.0:8000" not in everywhere.allowed_hosts and everywhere.url == "http://127.0.0.1:8000/mcp"
    assert HttpSettings.from_sources({"host": "::1"}, {}).url == "http://[::1]:8000/mcp"  # loopback: no token needed
