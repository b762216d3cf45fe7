"""Command line: serve the MCP server (stdio or HTTP), optionally on the embedded sandbox; run the
sandbox alone; a guided demo; a configuration check.

Only argparse is imported up front: a stdio server is judged by how fast it answers `initialize`.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

# Settings a flag can set. Flags override the environment; unset flags leave it alone.
SETTING_FLAGS = ("access_key", "secret_key", "org_id", "api_url", "workspace_id", "publishable_key", "toolsets")


def default_data_dir() -> Path:
    """Per-user data directory for the sandbox's database (XDG on Linux, the platform's own elsewhere)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "meshes-mcp" / "sandbox"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshes-mcp",
        description="MCP server for Meshes. With no command it serves MCP over stdio.",
    )
    parser.add_argument("--version", action="version", version=_version())
    add_server_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve MCP (default command)")
    add_server_options(serve)

    about = "serve the local Meshes sandbox API alone (for curl and SDKs)"
    sandbox = commands.add_parser("sandbox", help=about, description=about[0].upper() + about[1:] + ".")
    sandbox.usage = "%(prog)s [options] [ACTION ...]"
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    sandbox.add_argument("--port", type=int, default=8787, help="port to listen on (default: %(default)s)")
    sandbox.add_argument("--data-dir", type=Path, help="where the sandbox keeps its database")
    add_delivery_options(sandbox)
    add_scenario_option(sandbox)
    sandbox_commands = sandbox.add_subparsers(
        dest="sandbox_command", metavar="ACTION", title="actions (optional: without one, the sandbox is served)"
    )
    reconnect = sandbox_commands.add_parser(
        "reconnect", help="a person's dashboard step: reconnect an OAuth connection of the running sandbox"
    )
    reconnect.add_argument("connection_id", help="the connection's UUID")
    reconnect.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help="the running sandbox's data dir")
    add_org = sandbox_commands.add_parser(
        "add-org",
        help="add an organisation (own machine key, Demo workspace, connections) to a sandbox, running or not; "
        "prints its credentials as one line of JSON",
    )
    add_org.add_argument("--name", default=None, help='the organisation\'s name, e.g. "Acme"')
    add_org.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help="the sandbox's data dir")

    demo = commands.add_parser("demo", help="a guided walk-through on a throwaway sandbox")
    demo.add_argument("--data-dir", type=Path, help="keep the demo's sandbox data here")

    doctor = commands.add_parser("doctor", help="check configuration and reach the Meshes API")
    add_server_options(doctor)

    nginx = commands.add_parser("nginx-config", help="print an nginx config for stateless HTTP replicas")
    nginx.add_argument(
        "--replica", action="append", default=[], metavar="HOST:PORT", help="a replica's address (repeat)"
    )
    nginx.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="where nginx listens")
    nginx.add_argument("--server-name", default="_", help="the public host name, e.g. mcp.example.com")
    return parser


def add_server_options(parser: argparse.ArgumentParser) -> None:
    d = argparse.SUPPRESS  # so a subcommand's absent flag does not overwrite the top-level one
    parser.add_argument("--access-key", default=d, help="machine access key (MESHES_ACCESS_KEY)")
    parser.add_argument("--secret-key", default=d, help="machine secret key (MESHES_SECRET_KEY)")
    parser.add_argument("--org-id", default=d, help="organization UUID (MESHES_ORG_ID)")
    parser.add_argument("--api-url", default=d, help="API base URL (MESHES_API_URL, default https://api.meshes.io)")
    parser.add_argument("--workspace", dest="workspace_id", default=d, help="default workspace (MESHES_WORKSPACE_ID)")
    parser.add_argument("--publishable-key", default=d, help="workspace publishable key (MESHES_PUBLISHABLE_KEY)")
    parser.add_argument("--toolsets", default=d, help="comma list of toolsets, or all (MESHES_TOOLSETS)")
    parser.add_argument(
        "--read-only", action="store_true", default=d, help="only tools that change nothing (MESHES_READ_ONLY)"
    )
    parser.add_argument("--sandbox", action="store_true", default=d, help="run against the embedded local sandbox")
    parser.add_argument("--data-dir", type=Path, default=d, help="sandbox data directory (with --sandbox)")
    parser.add_argument(
        "--sandbox-port",
        default=d,
        help="with --sandbox: a fixed loopback port, so its URLs stay valid across restarts (MESHES_MCP_SANDBOX_PORT)",
    )
    parser.add_argument("--transport", choices=("stdio", "http"), default=d, help="stdio (default) or streamable HTTP")
    parser.add_argument("--host", default=d, help="HTTP host (default 127.0.0.1; others need a token)")
    parser.add_argument("--port", type=int, default=d, help="HTTP port (default 8000)")
    parser.add_argument(
        "--http-token",
        default=d,
        help="HTTP: require Authorization: Bearer <token> (MESHES_MCP_HTTP_TOKEN; prefer the variable, "
        "flags show in the process list)",
    )
    parser.add_argument(
        "--allowed-hosts",
        default=d,
        help="HTTP: comma list of Host values allowed besides loopback, e.g. mcp.example.com:* "
        "(MESHES_MCP_ALLOWED_HOSTS)",
    )
    parser.add_argument(
        "--allowed-origins",
        default=d,
        help="HTTP: comma list of Origin values allowed besides loopback, e.g. https://app.example.com "
        "(MESHES_MCP_ALLOWED_ORIGINS)",
    )
    parser.add_argument(
        "--stateless",
        action="store_true",
        default=d,
        help="HTTP: no session state, any replica answers any request (MESHES_MCP_STATELESS)",
    )
    parser.add_argument(
        "--credentials",
        choices=("env", "request"),
        default=d,
        help="HTTP: env (the MESHES_* keys) or request (each request's X-Meshes-* headers; needs --stateless) "
        "(MESHES_MCP_CREDENTIALS)",
    )
    parser.add_argument(
        "--state-key",
        default=d,
        help="HTTP: secret sealing confirmation state, the same on every replica (MESHES_MCP_STATE_KEY; prefer "
        "the variable)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=d,
        help="HTTP: on SIGTERM, how long in-flight requests may finish (MESHES_MCP_DRAIN_SECONDS, default 150)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", default=d, help="debug logging on stderr")
    add_delivery_options(parser)
    add_scenario_option(parser)


def add_scenario_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        choices=("incident",),
        default=argparse.SUPPRESS,
        help="sandbox: add practice history once (incident: a workspace Incident with a day of failing signups)",
    )


def add_delivery_options(parser: argparse.ArgumentParser) -> None:
    d = argparse.SUPPRESS
    parser.add_argument("--retry-base", type=float, default=d, help="sandbox: first retry delay in seconds")
    parser.add_argument("--max-attempts", type=int, default=d, help="sandbox: delivery attempts per rule event")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    options = vars(args)
    # Logs go to stderr: stdout belongs to the MCP protocol.
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if options.get("verbose") else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not options.get("verbose"):
        # One line per HTTP request drowns what matters; --verbose brings them back.
        for noisy in ("httpx2", "uvicorn.access", "uvicorn.error", "mcp.server.streamable_http"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    command = options.get("command") or "serve"
    try:
        if command == "sandbox":
            run_sandbox_command(options)
        elif command == "demo":
            from meshes_mcp.demo import run_demo

            run_demo(options.get("data_dir"))
        elif command == "doctor":
            sys.exit(doctor(options))
        elif command == "nginx-config":
            from meshes_mcp.deploy import nginx_config

            print(nginx_config(options["replica"], options["listen"], options["server_name"]), end="")
        else:
            serve(options)
    except KeyboardInterrupt:
        pass
    except ValueError as exc:  # configuration mistakes: one clear line, no traceback
        print(f"meshes-mcp: {exc}", file=sys.stderr)
        sys.exit(2)


# The machine key's parts, as named on the command line / in the environment → the Settings field.
CREDENTIAL_SETTINGS = {
    "MESHES_ACCESS_KEY": "access_key",
    "MESHES_SECRET_KEY": "secret_key",
    "MESHES_ORG_ID": "org_id",
    "MESHES_PUBLISHABLE_KEY": "publishable_key",
}


def settings_from(options: dict[str, Any], **overrides: Any) -> Any:
    from meshes_mcp.config import Settings

    values = {field: options[field] for field in SETTING_FLAGS if field in options}
    if options.get("read_only"):
        values["read_only"] = True
    values.update(overrides)
    return Settings(**values)


def http_settings_from(options: dict[str, Any]) -> Any:
    from meshes_mcp.config import HttpSettings

    return HttpSettings.from_sources(options, os.environ)


def _http_configured(options: dict[str, Any]) -> bool:
    """Whether doctor should check the HTTP transport: asked for, or configured by flag or variable."""
    from meshes_mcp.config import HTTP_VARIABLES

    flags = ("http_token", "allowed_hosts", "allowed_origins", "stateless", "credentials", "state_key", "drain_seconds")
    return (
        options.get("transport") == "http"
        or any(flag in options for flag in flags)
        or any(name in os.environ for name in HTTP_VARIABLES)
    )


def http_settings_or_error(options: dict[str, Any]) -> Any:
    """For doctor: the HTTP settings, or the one-line reason they would refuse to start."""
    try:
        return http_settings_from(options)
    except ValueError as exc:
        return str(exc)


class Prepared(NamedTuple):
    """A server ready to serve, and the embedded sandbox it runs on (with --sandbox)."""

    server: Any
    sandbox: Any


def serve(options: dict[str, Any]) -> None:
    # Checked before anything starts: an exposed server without a token must not come up at all.
    http = http_settings_from(options) if options.get("transport") == "http" else None
    if http is None:
        if options.get("stateless") or options.get("credentials") == "request":
            raise ValueError("--stateless and --credentials request are HTTP modes: add --transport http")
        check_sandbox_options(options)
        from meshes_mcp.server.front import serve_fronted

        # Answers the first requests while the SDK loads on another thread (see server/front.py).
        serve_fronted(options, lambda: prepare_server(options, None), serve_prepared_stdio)
        return
    prepared = prepare_server(options, http)
    try:
        from meshes_mcp.server.http import serve_http

        serve_http(prepared.server, http)
    finally:
        if prepared.sandbox is not None:
            prepared.sandbox.stop()


def serve_prepared_stdio(prepared: Prepared, handover: Any) -> None:
    from meshes_mcp.server.stdio import serve_stdio

    serve_stdio(prepared.server, handover)


def prepare_server(options: dict[str, Any], http: Any) -> Prepared:
    """Settings checked, the sandbox started (with --sandbox), the server built."""
    log = logging.getLogger("meshes_mcp")
    per_request = http is not None and http.per_request_credentials
    sandbox, overrides = start_sandbox(options, keys=not per_request)
    try:
        settings = settings_from(options, **overrides)
        check_credentials(settings, http)
        from meshes_mcp.server.app import build_server, parse_toolsets

        parse_toolsets(settings.toolsets)  # fail fast on a typo, before a client connects
        log.info("%s: %s", _version(), settings.describe())
        if per_request:
            log.info("Meshes keys come with each request (X-Meshes-* headers); the server holds none")
        elif not settings.machine_key():
            log.warning("no Meshes credentials: tools will explain how to configure them (or use --sandbox)")
        if http is not None and http.stateless and http.state_key is None:
            log.warning(
                "stateless, without MESHES_MCP_STATE_KEY: a confirmation must be answered by the replica that asked"
            )
        return Prepared(build_server(settings, http=http), sandbox)
    except BaseException:
        if sandbox is not None:
            sandbox.stop()
        raise


def check_credentials(settings: Any, http: Any) -> None:
    """Malformed keys stop the start with one line naming the variable; a server taking keys per request
    must hold none of its own (a request without headers must never act with the server's keys)."""
    problems = settings.credential_problems()
    if problems:
        raise ValueError("; ".join(problems))
    if http is not None and http.per_request_credentials:
        if not http.stateless:
            raise ValueError(
                "--credentials request needs --stateless: a session would otherwise outlive the keys that opened it"
            )
        held = [name for name, value in CREDENTIAL_SETTINGS.items() if getattr(settings, value)]
        if held:
            raise ValueError(
                f"--credentials request takes Meshes keys from each request only, but {', '.join(held)} "
                "is set: unset it (and its flag)"
            )


def check_sandbox_options(options: dict[str, Any]) -> None:
    """Options that only mean something with --sandbox: refused without it, before anything starts."""
    if options.get("scenario") and not options.get("sandbox"):
        raise ValueError("--scenario adds practice history to the local sandbox: use it with --sandbox")
    if "sandbox_port" in options and not options.get("sandbox"):
        raise ValueError("--sandbox-port pins the embedded sandbox's port: use it with --sandbox")


def start_sandbox(options: dict[str, Any], *, keys: bool = True) -> tuple[Any, dict[str, Any]]:
    """With --sandbox: the running embedded sandbox and the settings that point at it; else (None, {}).
    `keys=False` (per-request credentials): only the API URL points at the sandbox; callers bring keys."""
    check_sandbox_options(options)
    from meshes_mcp.config import sandbox_port

    port = sandbox_port(options.get("sandbox_port"), os.environ)
    if not options.get("sandbox"):
        return None, {}
    from meshes_mcp.sandbox import EmbeddedSandbox

    data_dir = Path(options.get("data_dir") or default_data_dir())
    sandbox = EmbeddedSandbox(
        data_dir,
        port=port or 0,
        retry_base=options.get("retry_base"),
        max_attempts=options.get("max_attempts"),
        scenario=options.get("scenario"),
    )
    try:
        info = sandbox.start()
    except RuntimeError as exc:
        cause = exc.__cause__
        if port is not None and isinstance(cause, OSError):  # the port could not be bound
            if cause.errno == errno.EADDRINUSE:
                raise ValueError(port_taken(port)) from None
            raise ValueError(f"--sandbox-port {port}: cannot listen on 127.0.0.1:{port} ({cause.strerror})") from None
        raise
    # Practising a scenario: its workspace is the default one, unless --workspace says otherwise.
    practice = sandbox.scenario["workspace_id"] if sandbox.scenario else None
    logging.getLogger("meshes_mcp").info("sandbox at %s (data in %s)", info.api_url, data_dir)
    log_info_file(data_dir)
    if not keys:
        return sandbox, {"api_url": info.api_url}
    workspace = options.get("workspace_id") or practice or info.workspace_id
    overrides = {
        "api_url": info.api_url,
        "access_key": info.access_key,
        "secret_key": info.secret_key,
        "org_id": info.organization_id,
        "workspace_id": workspace,
    }
    # The sandbox's publishable key belongs to its own workspace: it is the default only with that workspace.
    if not options.get("publishable_key") and workspace == info.workspace_id:
        overrides["publishable_key"] = info.publishable_key
    return sandbox, overrides


def port_taken(port: int, flag: str = "--sandbox-port", host: str = "127.0.0.1") -> str:
    """One line for a sandbox port already bound: which, by what likely, and the flag that moves it."""
    other = port + 1 if port < 65535 else 8788
    return (
        f"{flag} {port}: {host}:{port} is already in use (another meshes-mcp sandbox on this port, or another "
        f"program); close it, or pick a free port, e.g. {flag} {other}"
    )


def log_info_file(data_dir: Path) -> None:
    """Where the sandbox's API URL and keys are written, for curl and the SDKs."""
    from meshes_mcp.sandbox.server import INFO_FILE

    path = data_dir.resolve() / INFO_FILE
    logging.getLogger("meshes_mcp").info("sandbox.json (API URL and keys, for curl and the SDKs): %s", path)


def doctor(options: dict[str, Any]) -> int:
    """`doctor`, and with --sandbox the sandbox itself: started on its data dir and reached like the API."""
    from meshes_mcp.doctor import run_doctor

    http = http_settings_or_error(options) if _http_configured(options) else None
    per_request = not isinstance(http, str) and http is not None and http.per_request_credentials
    sandbox, overrides = start_sandbox(options, keys=not per_request)
    try:
        return run_doctor(settings_from(options, **overrides), http)
    finally:
        if sandbox is not None:
            sandbox.stop()


def run_sandbox_command(options: dict[str, Any]) -> None:
    if options.get("sandbox_command") == "add-org":
        from meshes_mcp.sandbox.organizations import add_org_from_cli, one_line

        data_dir = Path(options.get("data_dir") or default_data_dir())
        print(one_line(add_org_from_cli(data_dir, options.get("name"))))  # holds the new secret key: shown once
        return
    if options.get("sandbox_command") == "reconnect":
        from meshes_mcp.sandbox.scenarios.practice import reconnect_from_cli

        data_dir = Path(options.get("data_dir") or default_data_dir())
        body = reconnect_from_cli(data_dir, options["connection_id"])
        conn = body.get("connection", {})
        done = "reconnected" if body.get("reconnected") else "was already active"
        print(f"{conn.get('name', options['connection_id'])} ({conn.get('type')}): {done}")
        return
    from meshes_mcp.sandbox import run_sandbox

    data_dir = Path(options.get("data_dir") or default_data_dir())
    host = options.get("host") or "127.0.0.1"
    port = 8787 if options.get("port") is None else options["port"]  # 0 asks for a free port
    log_info_file(data_dir)  # written once the sandbox listens
    try:
        run_sandbox(
            host=host,
            port=port,
            data_dir=data_dir,
            retry_base=options.get("retry_base"),
            max_attempts=options.get("max_attempts"),
            scenario=options.get("scenario"),
        )
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise ValueError(port_taken(port, "--port", host)) from None


def _version() -> str:
    from meshes_mcp import __version__

    return f"meshes-mcp {__version__}"
