"""Settings from the environment and command-line flags (flags win).

Variable names match the official Meshes MCP server so an existing client configuration works
unchanged: MESHES_ACCESS_KEY, MESHES_SECRET_KEY, MESHES_ORG_ID (or MESHES_ORGANIZATION_ID),
MESHES_API_URL; ours add MESHES_WORKSPACE_ID, MESHES_PUBLISHABLE_KEY, MESHES_TOOLSETS and
MESHES_READ_ONLY. The HTTP transport's exposure rules (`HttpSettings`) read MESHES_MCP_HTTP_TOKEN,
MESHES_MCP_ALLOWED_HOSTS and MESHES_MCP_ALLOWED_ORIGINS.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from meshes_mcp.api.auth import MachineKey, credential_problems, mask

DEFAULT_API_URL = "https://api.meshes.io"
_VERSIONED = re.compile(r"/api/v\d+$")

CREDENTIALS_HELP = (
    "Set MESHES_ACCESS_KEY, MESHES_SECRET_KEY and MESHES_ORG_ID (a machine key from the Meshes "
    "dashboard, Profile → API Keys), or start the server with --sandbox to use the embedded local "
    "sandbox with no account."
)


CREDENTIAL_VARIABLES = {
    "access_key": "MESHES_ACCESS_KEY",
    "secret_key": "MESHES_SECRET_KEY",
    "org_id": "MESHES_ORG_ID",
    "workspace_id": "MESHES_WORKSPACE_ID",
}


def api_base_url(url: str) -> str:
    """`https://api.meshes.io` → `https://api.meshes.io/api/v1`; a URL already ending in /api/vN is kept."""
    url = url.strip().rstrip("/")
    return url if _VERSIONED.search(url) else f"{url}/api/v1"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESHES_", extra="ignore", populate_by_name=True)

    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    org_id: str | None = Field(
        default=None, validation_alias=AliasChoices("org_id", "MESHES_ORG_ID", "MESHES_ORGANIZATION_ID")
    )
    api_url: str = DEFAULT_API_URL
    workspace_id: str | None = None
    publishable_key: SecretStr | None = None
    toolsets: str | None = None
    read_only: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    @field_validator("access_key", "secret_key", "publishable_key", "org_id", "workspace_id", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # An empty variable in a client config file means "not set", not "set to nothing".
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def base_url(self) -> str:
        return api_base_url(self.api_url)

    def machine_key(self) -> MachineKey | None:
        if self.access_key and self.secret_key and self.org_id:
            return MachineKey(self.access_key.get_secret_value(), self.secret_key.get_secret_value(), self.org_id)
        return None

    def credential_problems(self) -> list[str]:
        """Malformed credentials, one line each, named by their variables (never quoting a value)."""
        values = {
            "access_key": self.access_key.get_secret_value() if self.access_key else None,
            "secret_key": self.secret_key.get_secret_value() if self.secret_key else None,
            "org_id": self.org_id,
            "workspace_id": self.workspace_id,
        }
        return credential_problems(values, CREDENTIAL_VARIABLES)

    def missing_credentials(self) -> list[str]:
        names = {
            "MESHES_ACCESS_KEY": self.access_key,
            "MESHES_SECRET_KEY": self.secret_key,
            "MESHES_ORG_ID": self.org_id,
        }
        return [name for name, value in names.items() if not value]

    def describe(self) -> dict[str, str]:
        """Where the server points and with what, credentials masked: safe to log."""
        return {
            "api_url": self.base_url,
            "access_key": mask(self.access_key.get_secret_value() if self.access_key else None),
            "secret_key": "set" if self.secret_key else "(not set)",
            "org_id": self.org_id or "(not set)",
            "workspace_id": self.workspace_id or "(not set)",
            # Masked like the access key: a publishable key is meant for browsers, but still names a workspace.
            "publishable_key": mask(self.publishable_key.get_secret_value() if self.publishable_key else None),
            "toolsets": self.toolsets or "default",
            "read_only": str(self.read_only).lower(),
        }


# --- the embedded sandbox ------------------------------------------------------------------------

SANDBOX_PORT_VARIABLE = "MESHES_MCP_SANDBOX_PORT"


def sandbox_port(flag: str | int | None, environ: Mapping[str, str]) -> int | None:
    """`--sandbox-port` (or MESHES_MCP_SANDBOX_PORT): the embedded sandbox's fixed loopback port, so URLs made
    against it (a practice inbox) stay valid across restarts; None for a free port chosen at each start."""
    source = "--sandbox-port" if flag is not None else SANDBOX_PORT_VARIABLE
    value = flag if flag is not None else environ.get(SANDBOX_PORT_VARIABLE)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{source} must be a port from 1 to 65535, e.g. {source}{' ' if flag else '='}8788")
    return int(text)


# --- HTTP transport exposure -------------------------------------------------------------------

TOKEN_VARIABLE = "MESHES_MCP_HTTP_TOKEN"
HOSTS_VARIABLE = "MESHES_MCP_ALLOWED_HOSTS"
ORIGINS_VARIABLE = "MESHES_MCP_ALLOWED_ORIGINS"
STATELESS_VARIABLE = "MESHES_MCP_STATELESS"
CREDENTIALS_VARIABLE = "MESHES_MCP_CREDENTIALS"
STATE_KEY_VARIABLE = "MESHES_MCP_STATE_KEY"
DRAIN_VARIABLE = "MESHES_MCP_DRAIN_SECONDS"
CREDENTIAL_MODES = ("env", "request")
HTTP_VARIABLES = (
    TOKEN_VARIABLE,
    HOSTS_VARIABLE,
    ORIGINS_VARIABLE,
    STATELESS_VARIABLE,
    CREDENTIALS_VARIABLE,
    STATE_KEY_VARIABLE,
    DRAIN_VARIABLE,
)
MIN_STATE_KEY_LENGTH = 32
# Long enough for the longest call to finish (retry_failed may wait 120 s for outcomes).
DEFAULT_DRAIN_SECONDS = 150.0
MIN_TOKEN_LENGTH = 16
TOKEN_EXAMPLE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'

# The names a loopback client may use. The SDK matches `host:*` as "this host, any port" and compares
# everything else exactly, so both the bare name (port 80 behind a proxy) and the wildcard are listed.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
LOOPBACK_HOSTS = tuple(pattern for name in LOOPBACK_NAMES for pattern in (name, f"{name}:*"))
LOOPBACK_ORIGINS = tuple(f"{scheme}://{host}" for scheme in ("http", "https") for host in LOOPBACK_HOSTS)

# RFC 6750 b64token: what a Bearer credential may contain, so it survives every HTTP client unchanged.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_HOST_PATTERN = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[^:\[\]]+)(?::(?P<port>\*|\d{1,5}))?")
_ORIGIN_PATTERN = re.compile(r"(?P<scheme>https?)://(?P<host>[^/?#]+)")


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: only this machine can connect."""
    name = host.strip().lower().strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_header(host: str, port: int | None = None) -> str:
    """How a client names `host` in its Host header: IPv6 addresses in brackets, the port appended."""
    name = host.strip().lower()
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return name if port is None else f"{name}:{port}"


def _host_pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not `host`, `host:port` or `host:*`; None when it is one."""
    match = _HOST_PATTERN.fullmatch(pattern)
    if not match:
        return "is not host, host:port or host:* (any port)"
    name, port = match["name"], match["port"]
    if name == "*" or "*" in name:
        return "has a wildcard host; list each host instead (host:* allows any port)"
    if name.startswith("["):
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return "is not a valid bracketed IPv6 address"
    elif not _HOSTNAME.fullmatch(name):
        return "is not a host name or IPv4 address"
    if port not in (None, "*") and not 1 <= int(port) <= 65535:
        return "has a port outside 1-65535"
    return None


def parse_allowed_hosts(value: str | None, source: str = HOSTS_VARIABLE) -> tuple[str, ...]:
    """A comma list of Host header patterns (`mcp.example.com`, `10.0.0.5:8000`, `myhost:*`)."""
    patterns = []
    for raw in _comma_list(value):
        pattern = raw.lower()
        problem = _host_pattern_problem(pattern)
        if problem:
            raise ValueError(f"{source}: {raw!r} {problem}; e.g. mcp.example.com:8000 or mcp.example.com:*")
        patterns.append(pattern)
    return tuple(patterns)


def parse_allowed_origins(value: str | None, source: str = ORIGINS_VARIABLE) -> tuple[str, ...]:
    """A comma list of Origin patterns (`https://app.example.com`, `http://10.0.0.5:*`)."""
    patterns = []
    for raw in _comma_list(value):
        pattern = raw.lower()
        match = _ORIGIN_PATTERN.fullmatch(pattern)
        problem = _host_pattern_problem(match["host"]) if match else "is not scheme://host[:port]"
        if problem:
            raise ValueError(
                f"{source}: {raw!r} {problem} (an origin is http(s)://host[:port|:*], no path); "
                "e.g. https://app.example.com or http://localhost:*"
            )
        patterns.append(pattern)
    return tuple(patterns)


def _comma_list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def check_http_token(token: str, source: str = TOKEN_VARIABLE) -> str:
    """The bearer token as given, or a one-line error naming the rule and how to make a good one."""
    if not token.strip():
        raise ValueError(f"{source} is set but empty; set a random secret, e.g. the output of {TOKEN_EXAMPLE}")
    if len(token) < MIN_TOKEN_LENGTH or not _B64TOKEN.fullmatch(token):
        # The token is never repeated, not even in part: this line goes to logs.
        raise ValueError(
            f"{source} must be at least {MIN_TOKEN_LENGTH} characters of letters, digits and -._~+/ "
            f"(a Bearer token); e.g. the output of {TOKEN_EXAMPLE}"
        )
    return token


def parse_flag(value: str | bool | None, source: str) -> bool:
    """A boolean flag or variable: 1/true/yes/on or 0/false/no/off (any case); unset is false."""
    if value is None or isinstance(value, bool):
        return bool(value)
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{source} must be true or false (1/0, yes/no, on/off), e.g. {source}=1")


def parse_credential_mode(value: str | None, source: str = CREDENTIALS_VARIABLE) -> str:
    mode = (value or "env").strip().lower()
    if mode not in CREDENTIAL_MODES:
        raise ValueError(
            f"{source} must be env (the server's own MESHES_* keys) or request (each request brings "
            f"X-Meshes-* headers), e.g. {source}=request"
        )
    return mode


def parse_drain_seconds(value: float | str | None, source: str = DRAIN_VARIABLE) -> float:
    if value is None:
        return DEFAULT_DRAIN_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 <= seconds <= 3600):
        raise ValueError(f"{source} must be a number of seconds from 0 to 3600, e.g. {source}=150")
    return seconds


def check_state_key(key: str, source: str = STATE_KEY_VARIABLE) -> str:
    """The secret that seals confirmation state: shared by every replica, never logged."""
    if len(key.encode()) < MIN_STATE_KEY_LENGTH or not key.isprintable() or key != key.strip():
        raise ValueError(
            f"{source} must be at least {MIN_STATE_KEY_LENGTH} printable characters, the same on every "
            f"replica; e.g. the output of {TOKEN_EXAMPLE}"
        )
    return key


@dataclass(frozen=True)
class HttpSettings:
    """Who may reach the streamable-HTTP transport and how it serves them.

    Host/Origin validation is always on, whatever the bind address: the loopback names, plus the bind
    host itself when it is a specific address, plus what MESHES_MCP_ALLOWED_HOSTS / _ORIGINS add.
    `stateless`: no session state, any replica answers any request. `credentials="request"`: the server
    holds no Meshes keys; each request brings its caller's. `state_key`: seals confirmation state so a
    confirmation answered on another replica (or after a restart) is still accepted.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = field(default=None, repr=False)
    extra_hosts: tuple[str, ...] = ()
    extra_origins: tuple[str, ...] = ()
    stateless: bool = False
    credentials: str = "env"
    state_key: str | None = field(default=None, repr=False)
    drain_seconds: float = DEFAULT_DRAIN_SECONDS

    @property
    def per_request_credentials(self) -> bool:
        return self.credentials == "request"

    @classmethod
    def from_sources(cls, flags: Mapping[str, Any], environ: Mapping[str, str]) -> HttpSettings:
        """Flags (`host`, `port`, `http_token`, `allowed_hosts`, `allowed_origins`) win over the environment.

        Raises ValueError with one line naming the variable, the rule and a valid example.
        """
        host = str(flags.get("host") or "127.0.0.1").strip()
        port = flags.get("port") or 8000
        if not host or _host_pattern_problem(host_header(host)) is not None:
            raise ValueError(f"--host {host!r} is not a host name or IP address; e.g. 127.0.0.1 or 0.0.0.0")
        if not 1 <= port <= 65535:
            raise ValueError(f"--port must be 1-65535, e.g. 8000 (got {port})")
        token = _first_set(flags.get("http_token"), environ.get(TOKEN_VARIABLE))
        state_key = _first_set(flags.get("state_key"), environ.get(STATE_KEY_VARIABLE))
        settings = cls(
            host=host,
            port=port,
            token=None if token is None else check_http_token(token),
            extra_hosts=parse_allowed_hosts(_first_set(flags.get("allowed_hosts"), environ.get(HOSTS_VARIABLE))),
            extra_origins=parse_allowed_origins(
                _first_set(flags.get("allowed_origins"), environ.get(ORIGINS_VARIABLE))
            ),
            stateless=flags.get("stateless") or parse_flag(environ.get(STATELESS_VARIABLE), STATELESS_VARIABLE),
            credentials=parse_credential_mode(
                flags.get("credentials") or environ.get(CREDENTIALS_VARIABLE),
                "--credentials" if flags.get("credentials") else CREDENTIALS_VARIABLE,
            ),
            state_key=None if state_key is None else check_state_key(state_key),
            drain_seconds=parse_drain_seconds(
                _first_set(flags.get("drain_seconds"), environ.get(DRAIN_VARIABLE)),
                "--drain-seconds" if flags.get("drain_seconds") is not None else DRAIN_VARIABLE,
            ),
        )
        settings.check_exposure()
        return settings

    def check_exposure(self) -> None:
        """A server reachable from other machines drives every tool with the configured Meshes keys:
        it must demand a token. With per-request credentials it holds no keys: each caller's own Meshes
        keys are the credential, so no token is needed (one may still be set)."""
        if self.token is None and not self.per_request_credentials and not is_loopback_host(self.host):
            raise ValueError(
                f"refusing to serve HTTP on {self.host} without a token: set {TOKEN_VARIABLE} (or --http-token) "
                f"to a random secret, e.g. the output of {TOKEN_EXAMPLE}, or bind --host 127.0.0.1"
            )

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        hosts = list(LOOPBACK_HOSTS)
        if not self._binds_every_interface():
            # Binding one named address says clients will use that name. A rebinding attack needs a
            # name the attacker controls, so allowing the operator's own one keeps the protection.
            hosts += [host_header(self.host), host_header(self.host, self.port)]
        return tuple(dict.fromkeys([*hosts, *self.extra_hosts]))

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*LOOPBACK_ORIGINS, *self.extra_origins]))

    def _binds_every_interface(self) -> bool:
        return self.host.strip("[]") in ("0.0.0.0", "::", "")

    @property
    def url(self) -> str:
        connect_to = "127.0.0.1" if self._binds_every_interface() else self.host
        return f"http://{host_header(connect_to, self.port)}/mcp"

    def describe(self) -> dict[str, str]:
        """Safe to log and print: the token shows only whether it is set and its length."""
        return {
            "http_bind": host_header(self.host, self.port),
            "http_token": f"set ({len(self.token)} characters)" if self.token else "(not set)",
            "allowed_hosts": ", ".join(self.allowed_hosts),
            "allowed_origins": ", ".join(self.allowed_origins),
            "http_sessions": "stateless" if self.stateless else "stateful",
            "credentials": "per request (X-Meshes-* headers)" if self.per_request_credentials else "env",
            "state_key": "set" if self.state_key else "(not set: per-process key)",
            "drain_seconds": f"{self.drain_seconds:g}",
        }


def _first_set(*values: str | None) -> str | None:
    """The first value that was given at all (an empty string counts: it is checked, not skipped)."""
    return next((value for value in values if value is not None), None)
