"""Running the sandbox: blocking (`run_sandbox`) or in a background thread (`EmbeddedSandbox`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import uvicorn

from meshes_mcp.sandbox.app import create_app
from meshes_mcp.sandbox.datadir import ensure_writable
from meshes_mcp.sandbox.delivery import DEFAULT_PER_CONNECTION
from meshes_mcp.sandbox.info import SandboxInfo
from meshes_mcp.sandbox.infofile import announce

log = logging.getLogger("meshes_mcp.sandbox")

START_TIMEOUT = 15.0


def _bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so the real port (for port 0) is known and written out once listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    return sock


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(app: Any) -> uvicorn.Server:
    # log_config=None and no access log: the sandbox may share a process whose stdout is a protocol.
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="asyncio",
        timeout_graceful_shutdown=3,
        server_header=False,
    )
    return uvicorn.Server(config)


def _info(app: Any, host: str, port: int) -> SandboxInfo:
    seed = app.state.sandbox.seed
    return SandboxInfo(api_url=_base_url(host, port) + "/api/v1", **seed)


def _install_scenario(app: Any, name: str | None, host: str, port: int) -> dict[str, Any] | None:
    """Add a practice scenario once the address is known (its webhook inbox lives on this sandbox)."""
    if not name:
        return None
    from meshes_mcp.sandbox.scenarios import install

    with app.state.sandbox.store.patiently():  # no request to answer "busy" to: wait for the lock
        marker = install(app.state.sandbox, name, _base_url(host, port))
    done = "installed" if marker["installed"] else "already installed"
    log.info("scenario %s %s: workspace %s", name, done, marker["workspace_id"])
    return marker


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while not server.started:
        if task.done():
            task.result()  # re-raise why it stopped
            raise RuntimeError("the sandbox server stopped during start-up")
        if loop.time() > deadline:
            raise TimeoutError("the sandbox did not start in time")
        await asyncio.sleep(0.002)


def run_sandbox(
    host: str = "127.0.0.1",
    port: int = 8787,
    data_dir: Path | None = None,
    retry_base: float | None = None,
    max_attempts: int | None = None,
    scenario: str | None = None,
) -> None:
    """Serve the sandbox until interrupted; writes `data_dir/sandbox.json` once listening.

    `scenario` adds a practice scenario (see `meshes_mcp.sandbox.scenarios`). Logs go to stderr only."""
    if data_dir is None:
        raise ValueError("run_sandbox needs a data_dir")
    data_dir = Path(data_dir)
    ensure_writable(data_dir)
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        # A line per delivery request would flood stderr, and a webhook URL can carry a token in its query.
        logging.getLogger("httpx2").setLevel(logging.WARNING)

    async def main() -> None:
        app = create_app(data_dir, retry_base=retry_base, max_attempts=max_attempts)
        sock = _bind(host, port)
        server = _server(app)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        await _wait_started(server, task)
        bound_port = sock.getsockname()[1]
        try:
            _install_scenario(app, scenario, host, bound_port)
        except BaseException:
            server.should_exit = True
            await task
            raise
        announce(app, data_dir, _info(app, host, bound_port), bound_port)
        log.info("Meshes sandbox listening on %s (data in %s)", _base_url(host, bound_port), data_dir)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


class EmbeddedSandbox:
    """The sandbox in a background thread on a loopback port (0 = a free one).

    ``with EmbeddedSandbox(tmp) as info: ...`` or ``info = sandbox.start(); …; sandbox.stop()``.
    Extra keywords: `delivery_timeout` (seconds a webhook request may take, start to last byte, default
    10), `concurrency` (deliveries in flight, default 64), `per_connection` (of those, to one connection,
    default 16) and `scenario` (a practice scenario to add; its marker is then in
    `self.scenario`).
    """

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        retry_base: float | None = None,
        max_attempts: int | None = None,
        *,
        delivery_timeout: float | None = None,
        concurrency: int = 64,
        per_connection: int = DEFAULT_PER_CONNECTION,
        shutdown_grace: float = 1.0,
        scenario: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self._app_args: dict[str, Any] = {
            "retry_base": retry_base,
            "max_attempts": max_attempts,
            "delivery_timeout": delivery_timeout,
            "concurrency": concurrency,
            "per_connection": per_connection,
            "shutdown_grace": shutdown_grace,
        }
        self.scenario_name = scenario
        self.scenario: dict[str, Any] | None = None
        self.info: SandboxInfo | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> SandboxInfo:
        if self.info is not None:
            return self.info
        ensure_writable(self.data_dir)  # a clear refusal before any thread starts
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._thread_main, name="meshes-sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise TimeoutError("the embedded sandbox did not start in time")
        if self._error is not None:
            self._thread.join(1)
            if isinstance(self._error, ValueError):  # a clear refusal (e.g. a scenario's): pass it on as is
                raise self._error
            raise RuntimeError(f"the embedded sandbox failed to start: {self._error}") from self._error
        assert self.info is not None
        return self.info

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("the embedded sandbox stopped with an error")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        app = create_app(self.data_dir, **self._app_args)
        sock = _bind(self.host, self.port)
        self._server = server = _server(app)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        await _wait_started(server, task)
        try:
            self.scenario = _install_scenario(app, self.scenario_name, self.host, sock.getsockname()[1])
        except BaseException:
            server.should_exit = True
            await task
            raise
        port = sock.getsockname()[1]
        self.info = _info(app, self.host, port)
        announce(app, self.data_dir, self.info, port)
        self._ready.set()
        await task

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._server is not None and self._loop is not None and not self._loop.is_closed():
            server = self._server
            with contextlib.suppress(RuntimeError):  # the loop may have just closed
                self._loop.call_soon_threadsafe(setattr, server, "should_exit", True)
        self._thread.join(timeout)
        self._thread = None
        self._server = None
        self._loop = None
        self.info = None

    def __enter__(self) -> SandboxInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
