"""The sandbox's data directory must be writable before anything is served from it.

SQLite opens a database in a read-only directory and fails only at the first write (deep inside
start-up, as a long traceback), so the directory is probed first: created if missing, a scratch file
written and removed, and an existing database opened for writing. A failure is one `ValueError` line
naming the directory and the fix, which the command line prints and exits 2 on.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DATABASE = "sandbox.db"


class DataDirNotWritable(ValueError):
    """The data directory (or its database) cannot be written: the message names it and the fix."""


def ensure_writable(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir, prefix=".write-probe-"):
            pass
        database = data_dir / DATABASE
        if database.exists():
            os.close(os.open(database, os.O_RDWR))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DataDirNotWritable(
            f"the sandbox data directory {data_dir} is not writable ({reason}): make it writable, or choose "
            "another with --data-dir"
        ) from None
