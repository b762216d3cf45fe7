"""`sandbox.json`: how clients (curl, the SDKs, `meshes-mcp sandbox reconnect`) find a running sandbox of a
data directory, with its seeded keys."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from meshes_mcp.sandbox.info import SandboxInfo

INFO_FILE = "sandbox.json"


def write_info(data_dir: Path, info: SandboxInfo) -> None:
    """`sandbox.json`, readable by its owner only: it holds the sandbox's secret key."""
    path = data_dir / INFO_FILE
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")  # two sandboxes may write at once
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(info.model_dump_json(indent=2))
    os.replace(tmp, path)


# Every sandbox serving a data directory leaves its address in RUNNING_DIR (one file per sandbox, named
# `<pid>-<port>`), so the one `sandbox.json` names can hand that file to a survivor when it stops: with two
# sandboxes on one directory (two editor windows), `sandbox.json` names the last one started, and would
# otherwise point at a dead port once that one stops while the other still serves.
RUNNING_DIR = "running"


def announce(app: Any, data_dir: Path, info: SandboxInfo, port: int) -> None:
    """This sandbox listens: name it in `sandbox.json` and in the running list. The app's shutdown calls
    `withdraw` (there, not after the server returns: on a signal, uvicorn re-raises it as it returns)."""
    app.state.announced = (data_dir, info, port)
    running = data_dir / RUNNING_DIR
    running.mkdir(exist_ok=True)
    (running / f"{os.getpid()}-{port}").write_text(info.api_url)
    write_info(data_dir, info)


def withdraw(data_dir: Path, info: SandboxInfo, port: int) -> None:
    """This sandbox stopped: leave the running list, and if `sandbox.json` names it, name a sandbox still
    running on the directory instead. With none left the file stays (its keys stay valid for the next
    start; its address answers nothing until then)."""
    running = data_dir / RUNNING_DIR
    try:
        (running / f"{os.getpid()}-{port}").unlink(missing_ok=True)
        current = SandboxInfo.model_validate_json((data_dir / INFO_FILE).read_text())
    except (OSError, ValueError):
        return
    if current.api_url != info.api_url:
        return
    for entry in sorted(running.iterdir()):
        pid = entry.name.partition("-")[0]
        if pid.isdigit() and _alive(int(pid)):
            with contextlib.suppress(OSError, ValueError):
                write_info(data_dir, current.model_copy(update={"api_url": entry.read_text().strip()}))
                return
        else:  # a sandbox killed without stopping
            entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
