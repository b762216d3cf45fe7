"""Streamable HTTP: the SDK's app behind our own guards, served by uvicorn.

The SDK checks Host/Origin (DNS rebinding) only on its MCP endpoint, and only when asked to or when it
binds a loopback name; it has no shared-secret authentication. Here the SDK's Starlette app is built
with our allow-lists and wrapped in two pure-ASGI guards that run on every route, whatever the bind
address:

    AccessLog        -> one JSON line per request on stderr (see `access.py`)
    /healthz, /readyz   answered here, after the Host/Origin check, without token or Meshes keys
    BearerTokenGuard -> 401 unless `Authorization: Bearer <token>` (when a token is configured), first,
                        so a caller without the token learns nothing else, not even the allow-lists
    HostOriginGuard  -> 421 / 403 (the SDK's own matching rules)
    BodyDeadline     -> 408 unless the body arrives within MESHES_MCP_BODY_TIMEOUT (see `connections.py`);
                        with per-request credentials it runs inside the next guard, after the headers
    CredentialsGuard -> with per-request credentials: 401 / 400 unless the X-Meshes-* headers name a
                        well-formed machine key; 429 when that key already has its limit of requests (or
                        of waits) in progress; the caller's tenant is current for the whole request
    the SDK's streamable-HTTP app (/mcp), stateful or stateless

Below ASGI, uvicorn runs our h11 protocol (`connections.guarded_protocol`): a connection cap and a
deadline for each request's headers.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import signal
from typing import TYPE_CHECKING, Any

from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from meshes_mcp.config import HOSTS_VARIABLE, ORIGINS_VARIABLE, HttpSettings
from meshes_mcp.server.connections import BODY_SCOPE_KEY, BodyDeadline
from meshes_mcp.server.tenants import (
    HEADERS,
    BadCredentials,
    CallerBusy,
    MissingCredentials,
    TenantPool,
    caller_from_headers,
)

if TYPE_CHECKING:
    from meshes_mcp.server.app import MeshesServer

log = logging.getLogger("meshes_mcp.http")
CALLER_SCOPE_KEY = "meshes_mcp.caller"


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


class CredentialsGuard(Guard):
    """Per-request Meshes credentials: 401 without the X-Meshes-* headers, 400 when they are malformed,
    429 when the caller is at its limit, else the caller's tenant (API client, redactor) is current while
    the SDK serves the request. The 429 is answered before anything is streamed: never a cut response."""

    def __init__(self, app: ASGIApp, tenants: TenantPool, body_timeout: float) -> None:
        super().__init__(app)
        self.tenants = tenants
        # The body is read (within its deadline) only once the headers are found in order: a request
        # without keys is refused at once, however slowly its body would come.
        self.leased = BodyDeadline(self._leased, body_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            caller = caller_from_headers({name.lower(): headers.getlist(name) for name in HEADERS.values()})
        except MissingCredentials as exc:
            await PlainTextResponse(f"Unauthorized: {exc}", status_code=401)(scope, receive, send)
            return
        except BadCredentials as exc:  # the text names headers and rules, never a value
            await PlainTextResponse(f"Bad Meshes credentials: {exc}", status_code=400)(scope, receive, send)
            return
        scope[CALLER_SCOPE_KEY] = caller
        await self.leased(scope, receive, send)

    async def _leased(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = scope[CALLER_SCOPE_KEY]
        waiting = waits(scope.get(BODY_SCOPE_KEY, b""))
        try:
            # Checked again by the lease, with no await in between: the lease itself never refuses.
            self.tenants.admit(caller, waits=waiting)
        except CallerBusy as exc:  # the access line records the 429; a line more per refusal would flood
            retry = {"Retry-After": str(exc.retry_after)}
            await PlainTextResponse(f"Too many requests: {exc}", status_code=429, headers=retry)(scope, receive, send)
            return
        async with self.tenants.lease(caller, waits=waiting):
            await self.app(scope, receive, send)


def waits(body: bytes) -> bool:
    """Whether a request body is a tool call that waits for outcomes (`wait_seconds` above 0)."""
    if b'"wait_seconds"' not in body:
        return False  # most bodies: no parse
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return False  # the SDK answers it
    params = message.get("params") if isinstance(message, dict) else None
    arguments = params.get("arguments") if isinstance(params, dict) else None
    wait = arguments.get("wait_seconds") if isinstance(arguments, dict) else None
    return message.get("method") == "tools/call" and isinstance(wait, int | float) and wait > 0


def build_http_app(server: MeshesServer, settings: HttpSettings) -> ASGIApp:
    """The SDK's streamable-HTTP Starlette app with our allow-lists, wrapped in the guards."""
    from meshes_mcp.server.access import AccessLog
    from meshes_mcp.server.health import HealthRoutes, Readiness

    security = transport_security(settings)
    # The SDK gets the same allow-lists: left to itself it would use loopback-only lists for a loopback
    # bind (refusing hosts the operator added) and no checks at all for any other bind.
    app = server.streamable_http_app(transport_security=security, host=settings.host, stateless_http=settings.stateless)
    # add_middleware puts each new layer outermost: the token check runs first.
    tenants = server.runtime.tenants
    if tenants is not None:
        app.add_middleware(CredentialsGuard, tenants=tenants, body_timeout=settings.body_timeout)
    else:
        app.add_middleware(BodyDeadline, timeout=settings.body_timeout)
    app.add_middleware(HostOriginGuard, security=security)
    if settings.token is not None:
        app.add_middleware(BearerTokenGuard, token=settings.token)
    health = HealthRoutes(app, HostOriginGuard(Readiness(server.runtime.settings.base_url), security))
    return AccessLog(health, tool_names=frozenset(server.runtime.enabled.names))


def draining_server(config: Any, drain_seconds: float) -> Any:
    """uvicorn's server, saying on stderr when a signal starts the drain (uvicorn's own line is muted)."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:
                log.info("signal %s: draining in-flight requests (up to %g s), then exiting", sig, drain_seconds)
            super().handle_exit(sig, frame)

    return DrainingServer(config)


def serve_http(server: MeshesServer, settings: HttpSettings) -> None:
    """Serve until SIGTERM/SIGINT, then drain: no new connections, in-flight requests finish (up to
    `drain_seconds`), then the lifespan closes the API clients. Logs go to stderr only."""
    import anyio
    import uvicorn

    from meshes_mcp.server.access import configure_access_log
    from meshes_mcp.server.connections import connection_cap, guarded_protocol, quiet_accept_errors

    configure_access_log()
    quiet_accept_errors()
    cap = connection_cap(settings.max_connections)
    if cap < settings.max_connections:
        log.info("at most %d connections at once: the file-descriptor limit leaves no room for more", cap)
    config = uvicorn.Config(
        build_http_app(server, settings),
        host=settings.host,
        port=settings.port,
        http=guarded_protocol(cap, settings.header_timeout),
        log_config=None,  # keep our handlers and levels; uvicorn's own config would reset them
        log_level=None,
        timeout_graceful_shutdown=math.ceil(settings.drain_seconds),  # 0 cancels at once; None would wait forever
    )
    log.info("serving MCP over streamable HTTP at %s (%s)", settings.url, _summary(settings))
    # uvicorn raises the signal again once it has drained, so that the previous handler decides how the
    # process ends. Ours ends it normally (exit 0): a drained stop is a clean stop.
    previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: log.info("drained; exiting"))
    try:
        anyio.run(draining_server(config, settings.drain_seconds).serve)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _summary(settings: HttpSettings) -> str:
    if settings.per_request_credentials:
        token = "Meshes keys per request" + (" + bearer token" if settings.token else "")
    else:
        token = "bearer token required" if settings.token else "no token (loopback only)"
    sessions = "stateless" if settings.stateless else "stateful sessions"
    return f"{token}; {sessions}; allowed hosts: {', '.join(settings.allowed_hosts)}"
