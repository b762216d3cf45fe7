"""A small local webhook receiver, for trying webhook connections against the sandbox.

It records every request and answers according to its path, so failures can be staged by URL:

- ``/status/<code>``            always answer <code> (e.g. 500, 401, 400, 302)
- ``/flaky/<n>/<code>``         answer <code> to the first <n> requests of each delivery
                                (X-Meshes-Delivery-Id), then 200
- ``/slow/<seconds>``           wait, then answer 200
- anything else                 200 ``{"ok": true}``
- ``?retry_after=<s>``          add a Retry-After header to the answer
- a path given to ``stage()``   the staged status, reason phrase, headers and body (a hostile receiver)

Runs in a background thread on its own asyncio loop (``with WebhookReceiver() as rx: rx.url``);
the HTTP/1.1 handling is deliberately minimal (Content-Length bodies, keep-alive).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class Receipt:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int  # what the receiver answered
    received_at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def delivery_id(self) -> str | None:
        return self.headers.get("x-meshes-delivery-id")

    @property
    def event_id(self) -> str | None:
        return self.headers.get("x-meshes-event-id")


def verify_signature(body: bytes, header_value: str | None, secret: str) -> bool:
    """Check an `X-Meshes-Signature` value (`sha256=<hex>` or `sha512=<hex>`) over the exact body."""
    if not header_value or "=" not in header_value:
        return False
    algorithm, _, received = header_value.partition("=")
    if algorithm not in ("sha256", "sha512"):
        return False
    expected = hmac.new(secret.encode(), body, algorithm).hexdigest()
    return hmac.compare_digest(expected, received)


@dataclass
class Staged:
    """An answer chosen in full by the caller, to play a destination that says whatever it likes."""

    status: int
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class WebhookReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.receipts: list[Receipt] = []
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], int] = {}
        self._staged: dict[str, Staged] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(target=self._run, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("the webhook receiver did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        if self._thread is not None:
            self._thread.join(5)
        self._thread = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stage(
        self,
        path: str,
        status: int,
        *,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> str:
        """Answer every request to `path` with exactly this status line, headers and body; returns its URL."""
        with self._lock:
            self._staged[path] = Staged(status, reason, dict(headers or {}), body)
        return self.url + path

    def matching(self, path_prefix: str = "", event_id: str | None = None) -> list[Receipt]:
        with self._lock:
            return [
                r
                for r in self.receipts
                if r.path.startswith(path_prefix) and (event_id is None or r.event_id == event_id)
            ]

    def wait_for(self, count: int, path_prefix: str = "", timeout: float = 10.0) -> list[Receipt]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(path_prefix)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    # -- serving --------------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            async with self._server:
                await self._server.serve_forever()

    def _answer(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, float, dict[str, str]]:
        parts = urlsplit(target)
        segments = [s for s in parts.path.split("/") if s]
        extra: dict[str, str] = {}
        query = parse_qs(parts.query)
        if "retry_after" in query:
            extra["Retry-After"] = query["retry_after"][0]
        status, delay = 200, 0.0
        if len(segments) >= 2 and segments[0] == "status":
            status = int(segments[1])
            if 300 <= status < 400:
                extra["Location"] = "/elsewhere"
        elif len(segments) >= 3 and segments[0] == "flaky":
            key = (parts.path, headers.get("x-meshes-delivery-id", ""))
            with self._lock:
                seen = self._seen.get(key, 0)
                self._seen[key] = seen + 1
            status = int(segments[2]) if seen < int(segments[1]) else 200
        elif len(segments) >= 2 and segments[0] == "slow":
            delay = float(segments[1])
        return status, delay, extra

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                with self._lock:
                    staged = self._staged.get(urlsplit(target).path)
                status, delay, extra = (staged.status, 0.0, {}) if staged else self._answer(method, target, headers)
                # Recorded on arrival, so a caller can see a slow request while it is still in flight.
                with self._lock:
                    self.receipts.append(Receipt(method, urlsplit(target).path, headers, body, status))
                if delay:
                    await asyncio.sleep(delay)
                payload = b'{"ok":true}' if status < 400 else b'{"ok":false,"error":"staged failure"}'
                reason = _REASONS.get(status, "Status")
                if staged is not None:
                    payload, reason = staged.body, staged.reason or reason
                    extra = staged.headers
                out = [
                    f"HTTP/1.1 {status} {reason}",
                    "Content-Type: application/json",
                    f"Content-Length: {len(payload)}",
                ]
                out += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + payload)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return  # a sender that died mid-request, or one that sent no HTTP: drop the connection quietly
        except asyncio.CancelledError:
            return  # the receiver is stopping with this connection open
        finally:
            writer.close()
