"""The sandbox's data directory: refused in one line when it cannot be written, and `sandbox.json` naming a
live sandbox when several share the directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from meshes_mcp.sandbox import SandboxInfo
from tests.test_sandbox_restart import start


def mount_namespaces() -> bool:
    """Whether this machine lets a process make private mounts (`unshare -rm`)."""
    unshare = shutil.which("unshare")
    return unshare is not None and subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode == 0


def run_read_only(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m …args` with `data_dir` read-only: by its mode for an ordinary user; for root (whom modes do
    not stop) inside a private mount namespace where the directory is bind-mounted read-only."""
    command = [sys.executable, "-m", *args]
    if os.geteuid() == 0:
        if not mount_namespaces():
            pytest.skip("running as root without unprivileged mount namespaces: cannot make a directory read-only")
        script = 'mount -o bind,ro "$0" "$0" && exec "$@"'
        command = ["unshare", "-rm", "sh", "-c", script, str(data_dir), *command]
    else:
        data_dir.chmod(0o555)
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"}
        )
    finally:
        data_dir.chmod(0o755)


@pytest.mark.parametrize(
    "args",
    [
        ("meshes_mcp", "sandbox", "--port", "0"),
        ("meshes_mcp", "--sandbox"),  # the stdio server refuses before serving
        ("meshes_mcp.sandbox", "--port", "0"),
    ],
    ids=["meshes-mcp sandbox", "meshes-mcp --sandbox", "python -m meshes_mcp.sandbox"],
)
@pytest.mark.parametrize("existing", [False, True], ids=["new", "with a database"])
def test_a_read_only_data_dir_is_one_line_naming_it_and_the_fix(tmp_path: Path, args: tuple[str, ...], existing):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if existing:
        (data_dir / "sandbox.db").write_bytes(b"")
    done = run_read_only(data_dir, *args, "--data-dir", str(data_dir))
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert f"the sandbox data directory {data_dir} is not writable" in lines[0]
    assert "choose another with --data-dir" in lines[0]


def test_sandbox_json_names_a_running_sandbox_after_the_one_it_named_stops(tmp_path: Path):
    data_dir, log = tmp_path / "data", tmp_path / "sandbox.log"
    data_dir.mkdir()
    first, a = start(data_dir, log)
    second, b = start(data_dir, log)

    def named() -> str:
        return SandboxInfo.model_validate_json((data_dir / "sandbox.json").read_text()).api_url

    try:
        assert named() == b.api_url  # the last one started
        second.terminate()
        second.wait(10)
        assert named() == a.api_url  # handed to the survivor
        info = SandboxInfo.model_validate_json((data_dir / "sandbox.json").read_text())
        assert info.model_dump(exclude={"api_url"}) == b.model_dump(exclude={"api_url"})
        assert httpx2.get(named().removesuffix("/api/v1") + "/healthz").status_code == 200

        third, c = start(data_dir, log)  # names the newest again; stopping the other one changes nothing
        first.terminate()
        first.wait(10)
        assert named() == c.api_url
        third.terminate()
        third.wait(10)
        assert named() == c.api_url  # nobody left to name: the keys stay for the next start
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
    assert "Traceback" not in log.read_text()
