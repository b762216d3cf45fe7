"""Turn API-layer failures into tool errors an agent can act on.

A problem the model can fix is a tool result with `isError` (raised as `ToolError`), never a
protocol error and never a traceback. Each message says what happened, whether anything was
changed, and the next call to make: a hint naming a tool this server did not register (read-only
mode, a toolset left out) is left out, as `Runtime.result` does for `next`. The call sites do not know
what is registered; the server does, and words the message again from the `FailureError` it catches.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from meshes_mcp.api import errors as e
from meshes_mcp.api.problems import InvalidRequest
from meshes_mcp.config import CREDENTIALS_HELP
from meshes_mcp.server.render import bound_lines

if TYPE_CHECKING:
    from meshes_mcp.server.registry import EnabledTools

T = TypeVar("T")


class Failure:
    """What a tool knows about its call, to explain a failure in its own terms."""

    def __init__(self, *, write: bool, not_found: str | None = None, verify: str | None = None) -> None:
        self.write = write
        self.not_found = not_found  # what to call to find valid ids
        self.verify = verify  # how to check whether a write of unknown fate took effect
        self.enabled: EnabledTools | None = None  # hints name only these tools (None: any)

    def hint(self, text: str | None) -> str | None:
        """`text`, unless it names a tool this server did not register."""
        return self.enabled.hint(text) if self.enabled is not None else text

    def explain(self, exc: BaseException, enabled: EnabledTools | None = None) -> str:
        # A copy knows the enabled tools: a Failure may be shared by many calls (a module constant).
        bound = copy.copy(self)
        bound.enabled = enabled
        return bound._explain(exc)

    def _explain(self, exc: BaseException) -> str:
        verify = self.hint(self.verify) or "check"
        if isinstance(exc, InvalidRequest):
            return "Invalid arguments, nothing was sent:\n" + str(exc)
        if isinstance(exc, e.ConfigurationError):
            return f"{exc} {CREDENTIALS_HELP}"
        if isinstance(exc, e.APIStatusError):
            return self._status(exc)
        if isinstance(exc, e.APIConnectionError):
            if not exc.sent or not self.write:
                return f"{exc}. Nothing was changed; check MESHES_API_URL and try again."
            return f"{exc}. The change may or may not have been applied: {verify} before repeating it."
        raise exc

    def _status(self, exc: e.APIStatusError) -> str:
        status = exc.status
        detail = bound_lines(str(exc))
        unchanged = " Nothing was changed." if self.write else ""
        if status == 400:
            return f"Meshes rejected the request (400):{unchanged}\n{detail}"
        if status == 401:
            return f"Meshes refused the credentials (401): {detail}. {CREDENTIALS_HELP}"
        if status == 403:
            return f"Not permitted (403): {detail}. The machine key lacks the permission or workspace scope for this."
        if status == 404:
            not_found = self.hint(self.not_found)
            hint = f" {not_found}" if not_found else ""
            return f"Not found (404): {detail}.{hint}"
        if status == 409:
            return f"Conflict (409):{unchanged} {detail}"
        if status == 422:
            return f"Meshes could not process the request (422):{unchanged}\n{detail}"
        if status == 425:
            check = self.hint("check get_event") or "check again"
            return (
                f"Too early (425): {detail}. An attempt for this rule is due now or in flight;"
                f" {check} in a few seconds before retrying."
            )
        if status == 429:
            wait = f" Retry after {exc.retry_after:g} s." if exc.retry_after else " Wait a little and retry."
            return f"Rate limited by Meshes (429):{unchanged}{wait}"
        if status >= 500:
            if self.write:
                return (
                    f"Meshes failed with {status}: {detail}. The change may or may not have been applied:"
                    f" {self.hint(self.verify) or 'check'} before repeating it."
                )
            return f"Meshes failed with {status}: {detail}. Try again shortly."
        return f"Meshes answered {status}: {detail}"


class FailureError(ToolError):
    """A failed API call as a tool error. Its text names every hint; the server words it again with only
    the tools it registered (`explain`)."""

    def __init__(self, failure: Failure, cause: InvalidRequest | e.MeshesError) -> None:
        super().__init__(failure.explain(cause))
        self.failure = failure
        self.cause = cause

    def explain(self, enabled: EnabledTools) -> str:
        return self.failure.explain(self.cause, enabled)


async def attempt(call: Awaitable[T], failure: Failure) -> T:
    """Await an API call; anticipated failures become a ToolError with an actionable message."""
    try:
        return await call
    except (InvalidRequest, e.MeshesError) as exc:
        raise FailureError(failure, exc) from None
