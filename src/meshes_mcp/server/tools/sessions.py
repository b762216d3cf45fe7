"""sessions toolset."""

from __future__ import annotations

from typing import Any


def register(box: Any) -> None:
    return None
