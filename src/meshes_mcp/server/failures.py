"""Turn API-layer failures into tool errors an agent can act on.

A problem the model can fix is a tool result with `isError` (raised as `ToolError`), never a
protocol error and never a traceback. Each message says what happened, whether anything was
changed, and the next call to make.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from meshes_mcp.api import errors as e
from meshes_mcp.api.problems import InvalidRequest
from meshes_mcp.config import CREDENTIALS_HELP

T = TypeVar("T")


class Failure:
    """What a tool knows about its call, to explain a failure in its own terms."""

    def __init__(self, *, write: bool, not_found: str | None = None, verify: str | None = None) -> None:
        self.write = write
        self.not_found = not_found  # what to call to find valid ids
        self.verify = verify  # how to check whether a write of unknown fate took effect

    def explain(self, exc: BaseException) -> str:
        if isinstance(exc, InvalidRequest):
            return "Invalid arguments, nothing was sent:\n" + str(exc)
        if isinstance(exc, e.ConfigurationError):
            return f"{exc} {CREDENTIALS_HELP}"
        if isinstance(exc, e.APIStatusError):
            return self._status(exc)
        if isinstance(exc, e.APIConnectionError):
            if not exc.sent or not self.write:
                return f"{exc}. Nothing was changed; check MESHES_API_URL and try again."
            return f"{exc}. The change may or may not have been applied: {self.verify or 'check'} before repeating it."
        raise exc

    def _status(self, exc: e.APIStatusError) -> str:
        status = exc.status
        detail = str(exc)
        unchanged = " Nothing was changed." if self.write else ""
        if status == 400:
            return f"Meshes rejected the request (400):{unchanged}\n{detail}"
        if status == 401:
            return f"Meshes refused the credentials (401): {detail}. {CREDENTIALS_HELP}"
        if status == 403:
            return f"Not permitted (403): {detail}. The machine key lacks the permission or workspace scope for this."
        if status == 404:
            hint = f" {self.not_found}" if self.not_found else ""
            return f"Not found (404): {detail}.{hint}"
        if status == 409:
            return f"Conflict (409):{unchanged} {detail}"
        if status == 422:
            return f"Meshes could not process the request (422):{unchanged}\n{detail}"
        if status == 425:
            return (
                f"Too early (425): {detail}. An attempt for this rule is due now or in flight;"
                " check get_event in a few seconds before retrying."
            )
        if status == 429:
            wait = f" Retry after {exc.retry_after:g} s." if exc.retry_after else " Wait a little and retry."
            return f"Rate limited by Meshes (429):{unchanged}{wait}"
        if status >= 500:
            if self.write:
                return (
                    f"Meshes failed with {status}: {detail}. The change may or may not have been applied:"
                    f" {self.verify or 'check'} before repeating it."
                )
            return f"Meshes failed with {status}: {detail}. Try again shortly."
        return f"Meshes answered {status}: {detail}"


async def attempt(call: Awaitable[T], failure: Failure) -> T:
    """Await an API call; anticipated failures become a ToolError with an actionable message."""
    try:
        return await call
    except (InvalidRequest, e.MeshesError) as exc:
        raise ToolError(failure.explain(exc)) from None
