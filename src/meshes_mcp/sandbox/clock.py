"""Time and id helpers: ISO 8601 UTC timestamps with `Z` and millisecond precision, UUID4 ids."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime


def iso(epoch: float) -> str:
    """`2026-02-20T05:17:49.969Z` for an epoch in seconds."""
    whole = int(epoch)
    ms = int((epoch - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def now() -> float:
    return time.time()


def now_iso() -> str:
    return iso(time.time())


def parse_iso(value: str) -> float:
    """Epoch seconds of a timestamp written by `iso` (or any ISO 8601 string with an offset or `Z`)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def new_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    if len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
