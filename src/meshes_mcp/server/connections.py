"""Slow and half-open connections: what the HTTP server does so that they cannot use up its descriptors.

uvicorn (h11) has no deadline for a request's headers: a connection that sends nothing, or one byte now
and then, is held forever, and its keep-alive timer is cancelled by any byte that arrives. Nor does it
cap connections: `limit_concurrency` answers 503 only once a whole request has arrived. Exposed
directly, enough such connections exhaust the descriptor limit; then every accept fails, a valid caller
waits, and asyncio logs a traceback per failed accept. Here:

- `guarded_protocol`: uvicorn's h11 protocol with a connection cap and a header deadline. At the cap, the
  oldest connection that never sent a whole request is closed to make room (so half-open connections
  cannot lock valid callers out); when none has been silent for a second, the new one is answered 503
  and closed at once, its descriptor given back. (A burst of connections faster than the server runs can
  still use the last descriptors for a moment; asyncio then pauses accepting for a second.) A connection
  with no request in progress that has not completed a request's headers within `header_timeout` is
  closed: a fresh connection, or an idle keep-alive one.
- `BodyDeadline`: an ASGI layer that reads a request's body within `body_timeout` (else 408) and at most
  the SDK's body limit (else 413), before any handler runs.
- `quiet_accept_errors`: one log line per interval, with a count, for accept() failures.
"""

from __future__ import annotations

import errno
import logging
import resource
import time
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from starlette.responses import PlainTextResponse

if TYPE_CHECKING:
    import asyncio

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("meshes_mcp.http")

# Descriptors kept for everything but client connections: the API connection pool, log files, the sandbox.
DESCRIPTOR_RESERVE = 200
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Where the body read here is left for layers below (the credentials guard reads `wait_seconds` from it).
BODY_SCOPE_KEY = "meshes_mcp.body"
LATE_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 61\r\n\r\n"
    b"Too many open connections to this server; retry in a second.\n"
)
ACCEPT_LOG_INTERVAL = 10.0
# At the cap, a connection silent for this long may be closed to make room (a younger one may simply not
# have been read yet).
UNASKED_GRACE_SECONDS = 1.0
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def connection_cap(configured: int) -> int:
    """`configured`, lowered so that client connections alone can never reach the descriptor limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    reserve = min(DESCRIPTOR_RESERVE, soft // 4)
    return max(1, min(configured, soft - reserve))


def guarded_protocol(max_connections: int, header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol class with the connection cap and the header deadline."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _opened_at = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._opened_at = self.loop.time()
            if len(self.connections) > max_connections and not self._make_room():
                # Refused before a byte is read: the descriptor is given back at once.
                self.connections.discard(self)
                transport.write(BUSY_RESPONSE)
                transport.close()
                return
            self._arm_header_deadline()

        def _make_room(self) -> bool:
            """At the cap, the connection that has waited longest without ever sending a whole request
            (a half-open or slow one) makes room for the new one: a valid caller connecting during a
            flood of such connections is served at once, not after their header deadline."""
            idle = [
                c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol) and c._never_asked()
            ]
            if not idle:
                return False  # every connection is serving a request: the new one is refused
            oldest = min(idle, key=lambda c: c._opened_at)
            self.connections.discard(oldest)
            oldest._close_unasked()
            return True

        def _never_asked(self) -> bool:
            """Open a while (not one whose request is still on its way) and never sent a whole request."""
            settled = self.loop.time() - self._opened_at >= UNASKED_GRACE_SECONDS
            return (
                settled and self.cycle is None and self.conn.their_state is h11.IDLE and not self.transport.is_closing()
            )

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_deadline()  # the next request's headers get the same time

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _headers_late(self) -> None:
            self._header_timer = None
            waiting = self.cycle is None or self.cycle.response_complete  # no request is being served
            if waiting and not self.transport.is_closing():
                self._close_unasked()

        def _close_unasked(self) -> None:
            # Part of a request's headers arrived (h11 holds them unparsed): say why it ends. After an
            # answered request whose body was left unread, there is nothing more to say.
            if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
                self.transport.write(LATE_RESPONSE)
            self.transport.close()

    return GuardedH11Protocol


class BodyDeadline:
    """Reads a request's whole body within `timeout` seconds before the app runs (408 otherwise; 413 beyond
    `limit` bytes), then hands the app the same messages. A client sending its body a byte at a time holds
    a connection for `timeout` at most, and no handler waits on it."""

    def __init__(self, app: ASGIApp, timeout: float, limit: int = DEFAULT_MAX_REQUEST_BODY_SIZE) -> None:
        self.app = app
        self.timeout = timeout
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        size = 0
        with anyio.move_on_after(self.timeout) as deadline:
            while True:
                message = await receive()
                received.append(message)
                if message["type"] != "http.request":
                    break  # the client went away: the app sees that as it would have
                size += len(message.get("body", b""))
                if size > self.limit:
                    await _closing(f"Request body too large: at most {self.limit} bytes", 413)(scope, receive, send)
                    return
                if not message.get("more_body", False):
                    break
        if deadline.cancelled_caught:
            text = f"Request Timeout: the body did not arrive within {self.timeout:g} s"
            await _closing(text, 408)(scope, receive, send)
            return
        body = b"".join(m.get("body", b"") for m in received if m["type"] == "http.request")
        scope[BODY_SCOPE_KEY] = body
        replay: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        replay += [m for m in received if m["type"] != "http.request"]

        async def replayed() -> Message:
            return replay.pop(0) if replay else await receive()

        await self.app(scope, replayed, send)


def _closing(text: str, status: int) -> PlainTextResponse:
    """A refusal that ends the connection: what is left of the request is never read."""
    return PlainTextResponse(text, status_code=status, headers={"Connection": "close"})


class AcceptErrorFilter(logging.Filter):
    """asyncio logs every accept() that fails for want of descriptors, with a traceback, again each time
    it retries. One line per `interval` says it instead, with how many were left out."""

    def __init__(self, interval: float = ACCEPT_LOG_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self._last = -interval
        self._left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not _is_accept_failure(record):
            return True
        now = time.monotonic()
        if now - self._last < self.interval:
            self._left_out += 1
            return False
        exc = record.exc_info[1] if record.exc_info else None
        reason = f" ({exc.strerror})" if isinstance(exc, OSError) and exc.strerror else ""
        more = f"; {self._left_out} more since the last line" if self._left_out else ""
        record.msg, record.args = f"accept() failed: out of system resources{reason}{more}", None
        record.exc_info = record.exc_text = None
        self._last, self._left_out = now, 0
        return True


def _is_accept_failure(record: logging.LogRecord) -> bool:
    exc: Any = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
        return True
    return "out of system resource" in str(record.msg)


def quiet_accept_errors() -> None:
    """Installs the filter on asyncio's logger (once)."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, AcceptErrorFilter) for f in logger.filters):
        logger.addFilter(AcceptErrorFilter())
