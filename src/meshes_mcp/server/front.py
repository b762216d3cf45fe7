"""The stdio front: what a client asks first is answered while the SDK is still loading.

An editor starts every MCP server when it opens a window and lists their tools at once. Importing the
MCP SDK (and pydantic under it) is most of a cold start, yet the first answers — `initialize` (or, on
the 2026-07-28 protocol, `server/discover`), `ping`, and the tool, prompt, resource and template lists —
depend only on the protocol version and on which tools this configuration registers. They are generated
from the SDK itself at build time (`server/answers.py`, `python -m meshes_mcp.server.docs`, packaged as
`tools/answers.json`) and the test suite compares them with a real SDK server's answers for every
protocol version and every packaged configuration.

So the start is split, standard library only on the critical path:

- the main thread claims stdin as the SDK transport does (a private duplicate of fd 0; fd 0 then reads
  the null device) and answers those requests from the packaged table, byte-identical after JSON
  normalisation to what the SDK would say;
- a background thread imports the SDK and builds the server (settings, credential checks, the sandbox
  with `--sandbox`: everything `cli.prepare_server` does);
- the first line the table does not cover (a tool call, a malformed line, an unusual `initialize`,
  anything after it) is not read past: the front stops, waits for the SDK and hands it the wire. The SDK
  also takes over on its own as soon as it has loaded, so the first `tools/call` finds it running, as
  before. With the wire it gets the session state the front created: the client's `initialize` (and
  `notifications/initialized`) or its first enveloped 2026-07-28 request, replayed under an id of ours
  whose answer is dropped, so the SDK's session is the one a direct client would have made.

A configuration the table has no answers for (a toolsets choice other than the default or all, an
unreadable `MESHES_READ_ONLY`) is served by the SDK from the first line, exactly as before.

Exit: when stdin closes, nothing the client can still receive is pending (the SDK cancels in-flight
requests at EOF too), so the process leaves with `os._exit` after stdout and stderr are flushed and the
`atexit` handlers have run: no interpreter teardown of the SDK's modules, no waiting on the import
thread. With `--sandbox` the sandbox is stopped first (it may be delivering).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import select
import sys
import threading
from collections.abc import Callable, Mapping
from contextlib import suppress
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger("meshes_mcp.front")

ANSWERS = Path(__file__).with_name("tools") / "answers.json"
# What the table answers, besides `initialize` (the handshake) and `notifications/initialized`.
FRONT_METHODS = ("ping", "server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list")
# The 2026-07-28 per-request envelope's keys (`params._meta`).
PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_INFO_KEY = "io.modelcontextprotocol/clientInfo"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
# Ids of the requests replayed into the SDK: a client's ids are its own, these cannot collide with them.
REPLAY_ID_PREFIX = "meshes-mcp-front-replay-"
# What pydantic reads as a boolean (`MESHES_READ_ONLY`); anything else is left to the SDK's own error.
_BOOLEANS = {"1": True, "true": True, "t": True, "yes": True, "y": True, "on": True}
_BOOLEANS |= {"0": False, "false": False, "f": False, "no": False, "n": False, "off": False}
# A `\ud800`-`\udfff` escape: the SDK's JSON parser refuses lone surrogates, the standard library's does not.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB]")
_SAFE_INTEGER = 2**53


# --- the packaged answers ---------------------------------------------------------------------------


@cache
def packaged_answers() -> dict[str, Any]:
    return json.loads(ANSWERS.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def answer_for(configuration: str, version: str, method: str, table: Mapping[str, Any] | None = None) -> Any:
    """The SDK's answer (`{"result": …}` or `{"error": …}`) to `method` at `version` for a server with
    this configuration, or None when the table has none. Lists are stored once and shared (`lists`)."""
    table = packaged_answers() if table is None else table
    index = table["configurations"].get(configuration, {}).get(version, {}).get(method)
    if index is None:
        return None
    stored = table["answers"][index]
    if "error" in stored:
        return {"error": stored["error"]}
    items = table["items"]
    lists = {key: [items[i] for i in indexes] for key, indexes in stored.get("lists", {}).items()}
    return {"result": {**stored["result"], **lists}}


def configuration(options: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """The table's key for this server's flags and environment, read the way `Settings` reads them
    (flags first; variable names without regard to case), or None when that is not certain."""
    from meshes_mcp.server.toolsets import configuration_key, parse_toolsets

    toolsets = options["toolsets"] if "toolsets" in options else _variable(environ, "MESHES_TOOLSETS", "")
    read_only: Any = True if options.get("read_only") else _variable(environ, "MESHES_READ_ONLY", "false")
    if toolsets is None or read_only is None:
        return None
    if isinstance(read_only, str):
        read_only = _BOOLEANS.get(read_only.lower())
        if read_only is None:
            return None
    try:
        return configuration_key(parse_toolsets(toolsets), read_only)
    except ValueError:
        return None  # the SDK side says what is wrong with it, as before


def _variable(environ: Mapping[str, str], name: str, default: str) -> str | None:
    values = {value for key, value in environ.items() if key.upper() == name}
    if len(values) > 1:
        return None  # set twice, in different cases: which one wins is pydantic's business
    return values.pop() if values else default


# --- the wire ---------------------------------------------------------------------------------------


def claim_stdin() -> tuple[int, Callable[[], None]] | None:
    """A private duplicate of fd 0 to read the wire from, with fd 0 pointed at the null device while
    serving, as the SDK's stdio transport does (handlers and child processes then read EOF instead of
    stealing protocol bytes); and how to point fd 0 back. None where that cannot be done (Windows, a
    replaced sys.stdin)."""
    if sys.platform == "win32":
        return None
    import fcntl

    try:
        if sys.stdin.buffer.fileno() != 0:
            return None
        private = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    except (AttributeError, OSError, ValueError):
        return None
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    except OSError:
        os.close(private)
        return None

    def restore() -> None:
        with suppress(OSError):
            os.dup2(private, 0)

    # Never closed: a worker thread may still block reading it after the session ends.
    return private, restore


class Wire:
    """Lines from a file descriptor, with what was read but not yet used kept for the next reader.
    `readline` is what the SDK side reads with (in a worker thread); the front uses `next_line`."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.eof = False

    def fill(self) -> None:
        chunk = os.read(self.fd, 65536)
        self.buffer += chunk
        self.eof = not chunk

    def next_line(self) -> bytes | None:
        """A complete line from what was read (the last one may lack its newline at EOF), else None."""
        end = self.buffer.find(b"\n")
        if end < 0 and not (self.eof and self.buffer):
            return None
        end = len(self.buffer) - 1 if end < 0 else end
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    def unread(self, lines: list[bytes]) -> None:
        """Put lines back in front of whatever is buffered, for the next reader."""
        self.buffer[:0] = b"".join(lines)

    def readline(self) -> bytes:
        """The next line; b"" at EOF (as a binary file's readline)."""
        while (line := self.next_line()) is None:
            if self.eof:
                return b""
            self.fill()
        return line


def write_stdout(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


# --- judging a line -----------------------------------------------------------------------------------


class Request(NamedTuple):
    id: str | int | None  # None: a notification
    method: str
    params: dict[str, Any] | None


def plain_message(line: bytes) -> Request | None:
    """The line as a request or notification when it is plainly one (what the SDK would read the same
    way); None for anything the SDK must judge (malformed lines keep the SDK side's answers)."""
    if _SURROGATE_ESCAPE.search(line):
        return None
    try:
        message = json.loads(line, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.keys() - {"jsonrpc", "id", "method", "params"}:
        return None
    if message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"), str):
        return None
    params = message.get("params")
    if params is not None and not isinstance(params, dict):
        return None
    if "id" not in message:
        return Request(None, message["method"], params)
    request_id = message["id"]
    if isinstance(request_id, str) or (
        type(request_id) is int and -_SAFE_INTEGER < request_id < _SAFE_INTEGER  # bool is no id
    ):
        return Request(request_id, message["method"], params)
    return None


def _refuse(constant: str) -> Any:
    raise ValueError(constant)  # NaN, Infinity: not JSON to the SDK


# A client declaring MCP Apps (what the SDK's `mcp.server.apps.client_supports_apps` looks for: this
# extension, this MIME type among its `mimeTypes`) is also listed the incident view's tool and document, so
# its answers are stored apart: under the configuration's key plus APPS_VIEW. The suite checks these
# constants against the SDK's.
APPS_EXTENSION = "io.modelcontextprotocol/ui"
APPS_MIME_TYPE = "text/html;profile=mcp-app"
APPS_VIEW = "+apps"


def client_view(value: Any) -> str | None:
    """Which stored answers fit a client declaring these capabilities: "" (no extensions), APPS_VIEW (MCP Apps
    and nothing else), or None when the SDK must judge them. The answers depend on nothing else a client
    declares (the suite checks several); odd shapes and other extensions are the SDK's."""
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        return None
    roots = value.get("roots", {})
    if not (roots.keys() <= {"listChanged"} and isinstance(roots.get("listChanged", True), bool)):
        return None
    extensions = value.get("extensions")
    if extensions is None:
        return ""
    settings = extensions.get(APPS_EXTENSION) if extensions.keys() == {APPS_EXTENSION} else None
    if not isinstance(settings, dict) or settings.keys() != {"mimeTypes"}:
        return None
    mime_types = settings["mimeTypes"]
    if not isinstance(mime_types, list) or not all(isinstance(m, str) for m in mime_types):
        return None
    return APPS_VIEW if APPS_MIME_TYPE in mime_types else None


def _plain_client_info(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.keys() <= {"name", "version", "title"}
        and all(isinstance(value.get(k, ""), str) for k in ("name", "version", "title"))
        and "name" in value
        and "version" in value
    )


def _plain_envelope(params: dict[str, Any] | None, versions: Mapping[str, Any]) -> tuple[str, str] | None:
    """The protocol version and client view of a plain 2026-07-28 request (`params` only its `_meta`
    envelope); None when the SDK must judge it."""
    if params is None or params.keys() != {"_meta"} or not isinstance(params["_meta"], dict):
        return None
    meta = params["_meta"]
    version = meta.get(PROTOCOL_VERSION_KEY)
    if meta.keys() - {PROTOCOL_VERSION_KEY, CLIENT_INFO_KEY, CLIENT_CAPABILITIES_KEY}:
        return None
    if not isinstance(version, str) or "initialize" in versions.get(version, {"initialize": 0}):
        return None  # unknown here, or a handshake version
    view = client_view(meta.get(CLIENT_CAPABILITIES_KEY))
    if view is None:
        return None
    if CLIENT_INFO_KEY in meta and not _plain_client_info(meta[CLIENT_INFO_KEY]):
        return None
    return version, view


# --- the front ------------------------------------------------------------------------------------------


class Front:
    """Answers from the table while it can; collects what the SDK must be handed (see the module docstring)."""

    def __init__(self, configuration: str, table: Mapping[str, Any]) -> None:
        self.versions: Mapping[str, Any] = table["configurations"].get(configuration, {})
        self.configuration = configuration
        self.table = table
        self.version: str | None = None  # the session's protocol version, once the front opened it
        self.view = ""  # the handshake's client view (a 2026-07-28 request carries its own)
        self.replay: list[bytes] = []  # what recreates that session in the SDK
        self.answered = 0

    def take(self, line: bytes) -> bool:
        """Answer or note the line; False when the SDK must take it (and everything after it)."""
        request = plain_message(line)
        if request is None or not self.versions:
            return False
        if self.version is None:
            return self._open(request)
        if request.id is None:
            # `notifications/initialized` completes the handshake: the SDK sees it too.
            if request.method == "notifications/initialized" and not request.params and not self.modern:
                self.replay.append(line)
                return True
            return False
        view = self.view
        if self.modern:
            opened = _plain_envelope(request.params, self.versions)
            if opened is None or opened[0] != self.version:
                return False
            view = opened[1]
        elif request.params:  # `{}` and none read alike; a cursor or a progress token are the SDK's
            return False
        return self._answer(request, request.method, view)

    @property
    def modern(self) -> bool:
        return self.version is not None and "initialize" not in self.versions[self.version]

    def _open(self, request: Request) -> bool:
        """The first request decides the session: the handshake, or a 2026-07-28 enveloped request."""
        if request.id is None:
            return False
        if request.method == "initialize":
            params = request.params or {}
            version = params.get("protocolVersion")
            if (
                params.keys() != {"protocolVersion", "capabilities", "clientInfo"}
                or not isinstance(version, str)
                or "initialize" not in self.versions.get(version, {})
                or client_view(params["capabilities"]) is None
                or not _plain_client_info(params["clientInfo"])
            ):
                return False
            self.version, self.view = version, client_view(params["capabilities"]) or ""
        else:
            opened = _plain_envelope(request.params, self.versions)
            if opened is None:
                return False
            self.version, self.view = opened
        self._record_replay(request)
        return self._answer(request, request.method, self.view)

    def _record_replay(self, request: Request) -> None:
        """What opens the same session in the SDK: the client's `initialize`, or a `server/discover` with
        the client's envelope (any enveloped request opens a 2026-07-28 session; this one always succeeds)."""
        method = "initialize" if request.method == "initialize" else "server/discover"
        replayed = {"jsonrpc": "2.0", "id": f"{REPLAY_ID_PREFIX}{len(self.replay)}", "method": method}
        self.replay.append(json.dumps({**replayed, "params": request.params}).encode() + b"\n")

    def _answer(self, request: Request, method: str, view: str) -> bool:
        assert self.version is not None
        answer = answer_for(self.configuration + view, self.version, method, self.table)
        if answer is None:
            return False
        reply = {"jsonrpc": "2.0", "id": request.id, **answer}
        try:
            write_stdout(json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        except BrokenPipeError:
            log.debug("stdout is closed: the client is gone")
            leave(0)
        self.answered += 1
        log.debug("answered %s before the SDK loaded", method)
        return True


class Handover(NamedTuple):
    """What the SDK side starts from: the wire (with the lines it must read first) and the ids of the
    replayed requests, whose answers the client already has."""

    wire: Wire
    replayed_ids: frozenset[str]


class Loader:
    """The SDK's import and the server's build, on a background thread; wakes the front when done."""

    def __init__(self, prepare: Callable[[], Any]) -> None:
        self.prepare = prepare
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.wake_read, self.wake_write = os.pipe()
        self.thread = threading.Thread(target=self._run, name="meshes-mcp-sdk-loader", daemon=True)

    def start(self) -> Loader:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = self.prepare()
        except BaseException as exc:  # re-raised on the main thread, where the command line reports it
            self.error = exc
        finally:
            self.done.set()
            os.write(self.wake_write, b"!")

    def wait(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


def front_until_handover(wire: Wire, front: Front, loader: Loader) -> bool:
    """Answer what the front can until the SDK is needed or ready; False when stdin closed first."""
    while True:
        while (line := wire.next_line()) is not None:
            if not line.strip():
                continue  # blank lines are skipped on either side
            if not front.take(line):
                wire.unread([line])
                log.debug("a request needs the SDK: waiting for it")
                return True
        if wire.eof:
            return False
        ready, _, _ = select.select([wire.fd, loader.wake_read], [], [])
        if loader.wake_read in ready:
            return True  # loaded (or failed): the SDK takes over from here
        wire.fill()


def serve_fronted(
    options: Mapping[str, Any], prepare: Callable[[], Any], serve: Callable[[Any, Handover | None], None]
) -> None:
    """Serve stdio with the front (see the module docstring). `prepare` imports and builds (on the
    loader thread) and returns what `serve(prepared, handover)` runs the SDK session with."""
    key = configuration(options, os.environ)
    claimed = claim_stdin() if key is not None else None
    if key is None or claimed is None:
        # Nothing to answer early: the SDK serves from the first line, as without a front.
        prepared = prepare()
        try:
            serve(prepared, None)
        finally:
            stop_prepared_result(prepared)
        leave(0)
        return
    fd, restore = claimed
    loader = Loader(prepare).start()
    try:
        handover = run_front(Wire(fd), key, loader, sandbox=bool(options.get("sandbox")))
        prepared = loader.wait()
        try:
            serve(prepared, handover)
        finally:
            stop_prepared_result(prepared)
    finally:
        restore()
    leave(0)


def run_front(wire: Wire, key: str, loader: Loader, *, sandbox: bool) -> Handover:
    """Answer from the table until the SDK is needed or ready; what the SDK starts from. Ends the process
    when stdin closes first. The table is let go of here: the session no longer needs it."""
    front = Front(key, packaged_answers())
    if not front_until_handover(wire, front, loader):
        log.debug("stdin closed before the SDK took over, after %d answers", front.answered)
        if sandbox:
            stop_prepared(loader)  # re-raises a failed start (a taken --sandbox-port): one line, exit 2
        elif loader.done.is_set() and loader.error is not None:
            raise loader.error  # a configuration refused already is reported, not swallowed
        leave(0)
    packaged_answers.cache_clear()
    wire.unread(front.replay)
    log.debug("the SDK takes over after %d answers", front.answered)
    return Handover(wire, frozenset(f"{REPLAY_ID_PREFIX}{i}" for i in range(len(front.replay))))


def stop_prepared(loader: Loader) -> None:
    """With --sandbox: let the build finish, then stop the sandbox it started (it may be delivering). A build
    that failed is re-raised, so the command line reports why it did not start."""
    stop_prepared_result(loader.wait())


def stop_prepared_result(prepared: Any) -> None:
    sandbox = getattr(prepared, "sandbox", None)
    if sandbox is not None:
        sandbox.stop()


def leave(code: int) -> None:
    """End the process now: everything the client can still receive has been written (see the module
    docstring). `atexit` handlers still run (logging's flush among them)."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
