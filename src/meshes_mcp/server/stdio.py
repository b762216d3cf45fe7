"""Stdio with an answer for every line: malformed JSON-RPC gets a JSON-RPC error instead of silence.

The SDK's `stdio_server` parses each stdin line and, when it fails, hands the exception to the session,
which drops it: the client waits for an answer that never comes. We keep the SDK transport for stdout
(its writer and its fd-1 diversion) and read stdin ourselves: each line is parsed once, with the SDK's
own message adapter, and either handed to the session or answered through the SDK's write stream:

- -32700 Parse error: not UTF-8, not JSON, or JSON the SDK's parser refuses (nesting deeper than about
  200 levels, a lone surrogate escape). The request's id is included when the standard library's more
  lenient parser can still read it, so the client's pending call ends.
- -32600 Invalid Request: valid JSON that is not a message: a batch array (MCP has no batching since
  2025-06-18; each request in it gets its own error), a scalar, `params` that is not an object, an id
  that is neither string nor integer (the SDK would take such a request for a notification and never
  answer it), a wrong `jsonrpc`.

What is not answered, by design: blank lines (skipped), and a malformed *response* from the client (no
`method`): its id belongs to a request the server sent, and an error under that id could be taken by the
client as the answer to one of its own requests. Those are logged and dropped.
Messages that parse are the SDK's business: unknown methods, bad tool arguments and the like get the
SDK's own -32601 / -32602 answers. Lines are not length-limited (neither are the SDK's): the client is
the parent process.

Usually the session starts behind the stdio front (`server/front.py`), which answers the first requests
while the SDK loads: `serve_stdio` then gets its wire (the lines the front did not answer still to read)
and drops the SDK's answers to the requests the front replays to open the same session.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import anyio
import mcp_types as types
from pydantic import ValidationError

from meshes_mcp.server.front import Handover, claim_stdin

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from meshes_mcp.server.runtime import Runtime

log = logging.getLogger("meshes_mcp.stdio")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603
BATCH_REFUSED = "Invalid Request: batches are not supported (MCP removed JSON-RPC batching); send one message per line"


class Refusal(NamedTuple):
    """A line that is not passed on: the errors to answer (maybe none) and a reason for the log."""

    code: int
    message: str
    ids: tuple[types.RequestId | None, ...]


# --- judging one line --------------------------------------------------------------------------


def judge_line(raw: bytes) -> types.JSONRPCMessage | Refusal | None:
    """The message for the session, the refusal to answer instead, or None for a blank line."""
    line = raw.rstrip(b"\r\n")
    if not line.strip():
        return None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        parsed = _lenient_parse(line.decode("utf-8", "replace"))
        return _refusal(PARSE_ERROR, f"Parse error: the line is not valid UTF-8 (byte {exc.start})", parsed)
    try:
        message = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
    except ValidationError as exc:
        return _diagnose(text, exc)
    if isinstance(message, types.JSONRPCNotification) and not message.method.startswith("notifications/"):
        return _request_posing_as_notification(text) or message
    return message


def _request_posing_as_notification(text: str) -> Refusal | None:
    """The SDK reads `{"id": 1.5, "method": "tools/list"}` (or `"id": null`) as a notification, ignoring
    the id, and never answers; its sender waits for one. Only methods that are not notifications by name
    get here (a sloppy `"id": null` on `notifications/initialized` still works), and those are few and
    small: reading them again costs nothing."""
    parsed = _lenient_parse(text)
    if isinstance(parsed, dict) and "id" in parsed:
        problem = _envelope_problem(parsed, [])
        return _refusal(INVALID_REQUEST, f"Invalid Request: {problem}")
    return None


def _diagnose(text: str, exc: ValidationError) -> Refusal:
    from meshes_mcp.api.problems import json_type_name  # deferred: only a malformed line needs it

    errors = exc.errors(include_url=False, include_input=False)
    parsed = _lenient_parse(text)
    if errors and errors[0]["type"] == "json_invalid":
        message = errors[0]["msg"]
        return _refusal(PARSE_ERROR, f"Parse error: {message}{_parse_hint(message, parsed)}", parsed)
    if isinstance(parsed, list):
        return _refusal(INVALID_REQUEST, BATCH_REFUSED, parsed)
    if not isinstance(parsed, dict):
        return _refusal(INVALID_REQUEST, f"Invalid Request: a message is a JSON object, not {json_type_name(parsed)}")
    if "method" not in parsed and ("result" in parsed or "error" in parsed):
        return Refusal(INVALID_REQUEST, "Invalid Request: a malformed response (not answered)", ())
    return _refusal(INVALID_REQUEST, f"Invalid Request: {_envelope_problem(parsed, errors)}", parsed)


def _envelope_problem(message: dict[str, Any], errors: list[Any]) -> str:
    """The first thing wrong with a request or notification, said as a rule with a valid example."""
    from meshes_mcp.api.problems import json_type_name

    if message.get("jsonrpc") != "2.0":
        return '"jsonrpc" must be "2.0"'
    if "method" not in message:
        return '"method" is required, e.g. "tools/list"'
    if not isinstance(message["method"], str):
        return f'"method" must be a string, e.g. "tools/list" (got {json_type_name(message["method"])})'
    if "id" in message and _readable_id(message["id"]) is None:
        return f'"id" must be a string or an integer, e.g. 1 (got {json_type_name(message["id"])})'
    params = message.get("params")
    if params is not None and not isinstance(params, dict):
        return f'"params" must be an object, e.g. {{}} (got {json_type_name(params)})'
    # Anything else: the SDK's own finding for the branch this message was meant to be.
    branch = "JSONRPCRequest" if "id" in message else "JSONRPCNotification"
    for error in errors:
        if error["loc"][:1] == (branch,):
            where = ".".join(str(part) for part in error["loc"][1:]) or "message"
            return f"{where}: {error['msg']}"
    return "not a JSON-RPC request or notification"


def _parse_hint(message: str, parsed: Any) -> str:
    """Why the SDK's parser refused the line, when its own message does not say it plainly."""
    if "recursion limit" in message:
        return " (nested too deeply: at most about 200 levels)"
    if parsed is not _UNREADABLE and _has_lone_surrogate(parsed):
        return " (a \\ud800-\\udfff escape must be half of a surrogate pair)"
    return ""


_UNREADABLE = object()


def _lenient_parse(text: str) -> Any:
    """The standard library's reading of the line (it accepts lone surrogates and deep nesting), to
    find the request id when the SDK's stricter parser gave up; `_UNREADABLE` when it cannot either."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _UNREADABLE


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:  # iterative: the value may be nested hundreds of levels deep
        item = stack.pop()
        if isinstance(item, str):
            if any(0xD800 <= ord(char) <= 0xDFFF for char in item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _refusal(code: int, message: str, parsed: Any = _UNREADABLE) -> Refusal:
    """Answer each request the line holds under its own id, so its caller stops waiting; else one
    error with a null id, as JSON-RPC prescribes when no id can be read."""
    messages = parsed if isinstance(parsed, list) else [parsed]
    ids = tuple(_request_id(item) for item in messages)
    readable = tuple(request_id for request_id in ids if request_id is not None)
    return Refusal(code, message, readable or (None,))


def _request_id(message: Any) -> types.RequestId | None:
    # Only requests (with a method) are answered by id: a response's id names one of *our* requests.
    if isinstance(message, dict) and "method" in message:
        return _readable_id(message.get("id"))
    return None


def _readable_id(value: Any) -> types.RequestId | None:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


# --- the transport -------------------------------------------------------------------------------


async def read_lines(source: Any, session: Any, replies: Any) -> None:
    """Feed the session one message per good line and answer the others; end at EOF or when the
    session is gone. `source` is an anyio AsyncFile over the binary wire."""
    from mcp.shared.message import SessionMessage

    async with session:
        while raw := await source.readline():
            try:
                verdict = judge_line(raw)
            except Exception:  # a bug in the checks must cost one line, never the session
                log.exception("could not check a stdin line")
                verdict = Refusal(INTERNAL_ERROR, "Internal error while reading the message", (None,))
            try:
                if isinstance(verdict, Refusal):
                    await _answer(replies, verdict, len(raw))
                elif verdict is not None:
                    await session.send(SessionMessage(verdict))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return


async def _answer(replies: Any, refusal: Refusal, size: int) -> None:
    from mcp.shared.message import SessionMessage

    # The line itself is never logged: it may carry tool arguments with credentials.
    log.warning("refused a %d-byte stdin line: %s", size, refusal.message)
    for request_id in refusal.ids:
        error = types.ErrorData(code=refusal.code, message=refusal.message)
        await replies.send(SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error)))


class _NoLines:
    """The stdin handed to the SDK's stdio_server: empty, since we read the real one ourselves."""

    def __aiter__(self) -> _NoLines:
        return self

    async def __anext__(self) -> str:
        raise StopAsyncIteration


def _claim_stdin() -> tuple[BinaryIO, Callable[[], None]]:
    """Read the wire from a private duplicate of fd 0 (see `front.claim_stdin`); where that cannot be
    done (Windows, a replaced sys.stdin), the wire is read in place."""
    claimed = claim_stdin()
    if claimed is None:
        return sys.stdin.buffer, lambda: None
    private, restore = claimed
    # closefd=False: a worker thread may still block in readline on it after the session ends.
    return os.fdopen(private, "rb", closefd=False), restore


@asynccontextmanager
async def checked_stdio_server(handover: Handover | None = None) -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's stdio_server for stdout, our `read_lines` for stdin: (read_stream, write_stream).
    With a `handover`, stdin is the front's wire (already claimed), and the answers to the requests it
    replays are dropped: the client has had them from the front."""
    from mcp.server.stdio import stdio_server
    from mcp.shared.message import SessionMessage

    source: Any
    if handover is None:
        source, restore = _claim_stdin()
    else:
        source, restore = handover.wire, lambda: None
    session_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    try:
        no_lines: Any = _NoLines()  # all of AsyncFile[str] that stdio_server uses: it only iterates its stdin
        async with stdio_server(stdin=no_lines) as (unused_reader, write_stream), anyio.create_task_group() as tg:
            await unused_reader.aclose()
            tg.start_soon(read_lines, anyio.wrap_file(source), session_writer, write_stream)
            if handover is not None and handover.replayed_ids:
                write_stream = _Dropping(write_stream, set(handover.replayed_ids))
            yield read_stream, write_stream
    finally:
        restore()


class _Dropping:
    """The SDK's write stream, less the answers to the given request ids (each dropped once)."""

    def __init__(self, inner: Any, ids: set[str]) -> None:
        self.inner = inner
        self.ids = ids

    async def send(self, item: Any) -> None:
        message = item.message
        if isinstance(message, types.JSONRPCResponse | types.JSONRPCError) and message.id in self.ids:
            self.ids.discard(message.id)  # type: ignore[arg-type]
            if isinstance(message, types.JSONRPCError):
                log.warning("the SDK refused a request the front had answered: %s", message.error.message)
            return
        await self.inner.send(item)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> _Dropping:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def serve_stdio(server: MCPServer[Runtime], handover: Handover | None = None) -> None:
    anyio.run(_serve, server, handover)


async def _serve(server: MCPServer[Runtime], handover: Handover | None) -> None:
    # What MCPServer.run_stdio_async does, with our stdin; the SDK offers no public hook for it.
    lowlevel = server._lowlevel_server
    async with checked_stdio_server(handover) as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
