"""`GET /healthz` (the process answers) and `GET /readyz` (the configured Meshes API answers).

Both are for load balancers and orchestrators: they need neither the bearer token nor Meshes keys and
say nothing a stranger could use, but they are behind the same Host/Origin check as everything else.
Readiness asks the API once per `READY_CACHE_SECONDS` at most, so a probe every second costs the API
nothing much; any HTTP answer below 500 (a 401 for our key-less request included) means reachable.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("meshes_mcp.http")

HEALTH_PATHS = ("/healthz", "/readyz")
READY_CACHE_SECONDS = 2.0
READY_TIMEOUT_SECONDS = 2.0


class HealthRoutes:
    """Sends /healthz and /readyz to `health`, everything else to `app`."""

    def __init__(self, app: ASGIApp, health: ASGIApp) -> None:
        self.app = app
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in HEALTH_PATHS:
            await self.health(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class Readiness:
    """The two endpoints. `base_url` is the API's (`…/api/v1`); only `GET /workspaces` is asked, unsigned."""

    def __init__(self, base_url: str) -> None:
        self.probe_url = f"{base_url}/workspaces"
        self._checked_at = -READY_CACHE_SECONDS
        self._problem: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            response: Response = Response(status_code=405, headers={"Allow": "GET, HEAD"})
        elif scope["path"] == "/healthz":
            response = JSONResponse({"status": "ok"})
        else:
            problem = await self.problem()
            body = {"status": "ready"} if problem is None else {"status": "not ready", "reason": problem}
            response = JSONResponse(body, status_code=200 if problem is None else 503)
        await response(scope, receive, send)

    async def problem(self) -> str | None:
        """Why the API cannot be used now, or None; remembered for READY_CACHE_SECONDS."""
        now = time.monotonic()
        if now - self._checked_at >= READY_CACHE_SECONDS:
            self._problem = await self._ask_api()
            self._checked_at = time.monotonic()
        return self._problem

    async def _ask_api(self) -> str | None:
        import httpx2

        try:
            async with httpx2.AsyncClient(timeout=READY_TIMEOUT_SECONDS) as client:
                answer = await client.get(self.probe_url)
        except httpx2.HTTPError as exc:
            # The exception's class says enough (ConnectError, ReadTimeout); its text may quote the URL.
            log.warning("readiness: the Meshes API did not answer (%s)", type(exc).__name__)
            return f"the Meshes API did not answer ({type(exc).__name__})"
        if answer.status_code >= 500:
            return f"the Meshes API answered {answer.status_code}"
        return None
