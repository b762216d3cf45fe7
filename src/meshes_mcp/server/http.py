"""Streamable HTTP: the SDK's app behind our own guards, served by uvicorn.

The SDK checks Host/Origin (DNS rebinding) only on its MCP endpoint, and only when asked to or when it
binds a loopback name; it has no shared-secret authentication. Here the SDK's Starlette app is built
with our allow-lists and wrapped in two pure-ASGI guards that run on every route, whatever the bind
address:

    BearerTokenGuard -> 401 unless `Authorization: Bearer <token>` (when a token is configured), first,
                        so a caller without the token learns nothing else, not even the allow-lists
    HostOriginGuard  -> 421 / 403 (the SDK's own matching rules)
    the SDK's streamable-HTTP app (/mcp)

Later modes slot in here: a stateless flag is an argument of `streamable_http_app`, and per-request
Meshes credentials would be one more guard between the token check and the SDK app.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING

from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from meshes_mcp.config import HOSTS_VARIABLE, ORIGINS_VARIABLE, HttpSettings

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from meshes_mcp.server.runtime import Runtime

log = logging.getLogger("meshes_mcp.http")

# uvicorn waits this long for open streams (SSE) to finish on shutdown before closing them.
GRACEFUL_SHUTDOWN_SECONDS = 5


def transport_security(settings: HttpSettings) -> TransportSecuritySettings:
    """The SDK's DNS-rebinding settings, always enabled (the SDK disables them for non-loopback binds)."""
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(settings.allowed_hosts),
        allowed_origins=list(settings.allowed_origins),
    )


class Guard:
    """A pure-ASGI layer that answers an HTTP request itself when `refusal` says so. Lifespan events pass
    through; websockets are refused outright (nothing here serves them, so no guard may be skipped)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
        elif scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
        elif (refused := await self.refusal(scope)) is not None:
            await refused(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def refusal(self, scope: Scope) -> Response | None:
        raise NotImplementedError


class HostOriginGuard(Guard):
    """Refuses a request whose Host or Origin is not allowed, on every route, with the SDK's matching."""

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings) -> None:
        super().__init__(app)
        self.checker = TransportSecurityMiddleware(security)

    async def refusal(self, scope: Scope) -> Response | None:
        refused = await self.checker.validate_request(Request(scope), is_post=False)
        if refused is None:
            return None
        # The SDK logged which header failed; the answer tells the operator where the list is set.
        if refused.status_code == 421:
            text = f"Host header not allowed; the server's allowed hosts are set with {HOSTS_VARIABLE}"
        else:
            text = f"Origin header not allowed; the server's allowed origins are set with {ORIGINS_VARIABLE}"
        return PlainTextResponse(text, status_code=refused.status_code)


class BearerTokenGuard(Guard):
    """401 for every request that does not carry `Authorization: Bearer <token>` (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        super().__init__(app)
        self.expected = token.encode()

    async def refusal(self, scope: Scope) -> Response | None:
        presented = _bearer_credentials(Headers(scope=scope).getlist("authorization"))
        if presented is not None and hmac.compare_digest(presented, self.expected):
            return None
        # Neither the expected nor the presented token is ever logged or echoed.
        log.warning("refused an HTTP request without the right bearer token (%s %s)", scope["method"], scope["path"])
        challenge = 'Bearer realm="meshes-mcp"' + (', error="invalid_token"' if presented is not None else "")
        return PlainTextResponse(
            "Unauthorized: send Authorization: Bearer <token>, the value of MESHES_MCP_HTTP_TOKEN",
            status_code=401,
            headers={"WWW-Authenticate": challenge},
        )


def _bearer_credentials(values: list[str]) -> bytes | None:
    """The credentials of exactly one `Bearer` Authorization header; None when absent or ambiguous."""
    if len(values) != 1:
        return None  # two Authorization headers: which one would a proxy have checked?
    scheme, _, credentials = values[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    # Header values arrive as latin-1; encoding back gives the bytes as sent.
    return credentials.strip().encode("latin-1")


def build_http_app(server: MCPServer[Runtime], settings: HttpSettings) -> ASGIApp:
    """The SDK's streamable-HTTP Starlette app with our allow-lists, wrapped in the guards."""
    security = transport_security(settings)
    # The SDK gets the same allow-lists: left to itself it would use loopback-only lists for a loopback
    # bind (refusing hosts the operator added) and no checks at all for any other bind.
    app = server.streamable_http_app(transport_security=security, host=settings.host)
    # add_middleware puts each new layer outermost: the token check runs first.
    app.add_middleware(HostOriginGuard, security=security)
    if settings.token is not None:
        app.add_middleware(BearerTokenGuard, token=settings.token)
    return app


def serve_http(server: MCPServer[Runtime], settings: HttpSettings) -> None:
    """Serve until interrupted. Logging stays as the command line configured it (stderr only)."""
    import anyio
    import uvicorn

    config = uvicorn.Config(
        build_http_app(server, settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep our handlers and levels; uvicorn's own config would reset them
        log_level=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    log.info("serving MCP over streamable HTTP at %s (%s)", settings.url, _summary(settings))
    anyio.run(uvicorn.Server(config).serve)


def _summary(settings: HttpSettings) -> str:
    token = "bearer token required" if settings.token else "no token (loopback only)"
    return f"{token}; allowed hosts: {', '.join(settings.allowed_hosts)}"
