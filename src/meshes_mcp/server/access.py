"""One structured log line per HTTP request, on stderr.

    {"ts":"2026-11-25T17:02:03.123Z","request_id":"9f…","http":"POST /mcp","method":"tools/call",
     "tool":"list_events","status":200,"ms":41.7}

What a line may hold is fixed here and nothing else: the request id (the caller's `X-Request-Id` when it
is a plain token, so an nginx `$request_id` ties both logs together; else a fresh one), the JSON-RPC
method, the tool name, the HTTP status and the duration. Never a header value or an argument value:
the method must look like one and the tool must be a tool this server registered, so a misplaced
`"name"` inside a tool's arguments can never reach the log. The id is sent back as `X-Request-Id`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("meshes_mcp.access")

REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_METHOD = re.compile(r"[a-z][A-Za-z/_]{0,63}")
# The JSON-RPC envelope is read from at most this much of the body (a tools/call of emit_events can be
# megabytes; its method and name come first in every client we know, and are then found in a prefix).
BODY_PEEK_BYTES = 64 * 1024
_PREFIX_METHOD = re.compile(rb'^\s*\{.{0,200}?"method"\s*:\s*"([^"\\]{1,64})"', re.S)
_PREFIX_NAME = re.compile(rb'"params"\s*:\s*\{\s*"name"\s*:\s*"([^"\\]{1,128})"')


def configure_access_log() -> None:
    """The access lines are JSON on their own: no timestamp/level prefix, not repeated by the root logger."""
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


class AccessLog:
    def __init__(self, app: ASGIApp, tool_names: frozenset[str]) -> None:
        self.app = app
        self.tool_names = tool_names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        given = headers.get(REQUEST_ID_HEADER, b"")
        request_id = given.decode() if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        peek = bytearray()
        status = 0

        async def peeking_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(peek) < BODY_PEEK_BYTES:
                peek.extend(message.get("body", b"")[: BODY_PEEK_BYTES - len(peek)])
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, peeking_receive, send_with_id)
        except BaseException:
            status = status or 500
            raise
        finally:
            method, tool = self.envelope(headers, bytes(peek))
            line = {
                "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "request_id": request_id,
                "http": f"{scope['method']} {scope['path']}",
                "method": method,
                "tool": tool,
                # No response at all: the client went away first (nginx's 499).
                "status": status or 499,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            }
            access_log.info(json.dumps(line, separators=(",", ":")))

    def envelope(self, headers: dict[bytes, bytes], body: bytes) -> tuple[str | None, str | None]:
        """The JSON-RPC method and tool name: from the 2026-07-28 routing headers (the SDK refuses a request
        whose headers disagree with its body), else from the body, else from the body's first bytes."""
        method: Any = headers.get(b"mcp-method", b"").decode("latin-1") or None
        name: Any = headers.get(b"mcp-name", b"").decode("latin-1") or None
        if method is None:
            method, name = _from_body(body)
        method = method if isinstance(method, str) and _METHOD.fullmatch(method) else None
        tool = name if method == "tools/call" and name in self.tool_names else None
        return method, tool


def _from_body(body: bytes) -> tuple[Any, Any]:
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        method, name = _PREFIX_METHOD.search(body), _PREFIX_NAME.search(body)
        return _text(method), _text(name)
    if not isinstance(message, dict):
        return None, None
    params = message.get("params")
    return message.get("method"), params.get("name") if isinstance(params, dict) else None


def _text(match: re.Match[bytes] | None) -> str | None:
    return match[1].decode(errors="replace") if match else None
