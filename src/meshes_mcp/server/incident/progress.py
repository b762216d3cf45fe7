"""Progress notifications for long incident calls, throttled so thousands of items cost a few dozen messages."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


class Throttle:
    """Progress notifications at most every `every` seconds: thousands of items, a few dozen messages."""

    def __init__(self, report: Callable[[float, float | None, str], Awaitable[None]], every: float = 0.25) -> None:
        self.report = report
        self.every = every
        self.last = 0.0

    async def __call__(self, done: float, total: float | None, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            # A client that cannot take notifications still gets its result.
            with contextlib.suppress(Exception):
                await self.report(done, total, message)
