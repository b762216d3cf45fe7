"""One delivery engine per data directory.

Two sandboxes may share a data directory (two IDE windows both running `meshes-mcp --sandbox` use
the per-user one). Both serve the API from the same database, but only the holder of this lock
claims deliveries and recovers interrupted ones; otherwise one process would requeue the other's
in-flight work at start-up and a delivery could be made twice. The others keep trying to take the
lock, so delivery carries on when the holder exits.

The holder also writes its wake-up port into the lock file (`publish_wake_port`): a process that queues
work without delivering it sends one empty UDP datagram to 127.0.0.1 on that port, so the holder starts
on that work within milliseconds instead of at its next poll (see `DeliveryEngine.wake`).
"""

from __future__ import annotations

import os
from pathlib import Path

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class EngineLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never blocks. The OS releases it if this process dies."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
        self._fd = fd
        return True

    def publish_wake_port(self, port: int | None) -> None:
        """Holder only: the loopback UDP port it listens on for wake-ups (None: it no longer does)."""
        if self._fd is None:
            return
        data = b"" if port is None else f"{port}\n".encode()
        os.ftruncate(self._fd, 0)
        if data:
            os.lseek(self._fd, 0, os.SEEK_SET)  # (not os.pwrite: that is POSIX only)
            os.write(self._fd, data)

    def wake_port(self) -> int | None:
        """The holder's wake-up port as published, or None (no holder, or none published yet)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            text = os.read(fd, 16)
        finally:
            os.close(fd)
        try:
            port = int(text)
        except ValueError:  # empty, or caught mid-write: the poll still finds the work
            return None
        return port if 0 < port < 65536 else None

    def release(self) -> None:
        if self._fd is not None:
            self.publish_wake_port(None)  # nobody listens on it any more
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
