"""Per-request Meshes credentials: who is calling, and the API client that acts for them.

With `--credentials request` the server holds no Meshes keys. Each HTTP request carries its caller's
in `X-Meshes-Access-Key`, `X-Meshes-Secret-Key`, `X-Meshes-Org-Id` (and optionally
`X-Meshes-Workspace-Id`); the HTTP layer checks them (`caller_from_headers`), leases that caller's
`Tenant` from the pool for the length of the request and makes it current (`current_tenant`), so the
runtime's `client()`, `redactor` and default workspace are the caller's.

A tenant is an API client plus a redactor of its own. Secrets learned while serving one caller are
masked only in that caller's results: one shared redactor would let a caller probe another's secrets
by sending guesses and watching which come back masked.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING

from meshes_mcp.api.auth import MachineKey, credential_problems
from meshes_mcp.limits import HTTP_LIMITS
from meshes_mcp.server.render import Redactor, redact_logs

if TYPE_CHECKING:
    from meshes_mcp.api.client import MeshesClient

log = logging.getLogger("meshes_mcp.tenants")

ACCESS_KEY_HEADER = "X-Meshes-Access-Key"
SECRET_KEY_HEADER = "X-Meshes-Secret-Key"
ORG_ID_HEADER = "X-Meshes-Org-Id"
WORKSPACE_ID_HEADER = "X-Meshes-Workspace-Id"
HEADERS = {
    "access_key": ACCESS_KEY_HEADER,
    "secret_key": SECRET_KEY_HEADER,
    "org_id": ORG_ID_HEADER,
    "workspace_id": WORKSPACE_ID_HEADER,
}
REQUIRED = ("access_key", "secret_key", "org_id")
CREDENTIAL_HEADERS_HELP = (
    f"send your Meshes machine key in {ACCESS_KEY_HEADER}, {SECRET_KEY_HEADER} and {ORG_ID_HEADER} "
    f"(optionally {WORKSPACE_ID_HEADER} for a default workspace)"
)
# Idle callers' tenants are dropped beyond this many; a caller whose tenant is in use is never dropped.
MAX_IDLE_TENANTS = int(HTTP_LIMITS["idle_tenants"][2])
# Per caller (machine key): requests in progress at once, and of those, tool calls that wait (wait_seconds).
MAX_CALLER_CALLS = int(HTTP_LIMITS["caller_calls"][2])
MAX_CALLER_WAITS = int(HTTP_LIMITS["caller_waits"][2])
# Seconds a refused caller is told to wait: a call ends within a request's time; a wait lasts longer.
CALLS_RETRY_AFTER = 1
WAITS_RETRY_AFTER = 5


class MissingCredentials(Exception):
    """No, or only some, credential headers: the answer is 401."""


class BadCredentials(Exception):
    """Credential headers present but malformed or repeated: the answer is 400."""


class CallerBusy(Exception):
    """The caller already has its limit of requests (or waits) in progress: the answer is 429."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, repr=False)
class Caller:
    key: MachineKey
    workspace_id: str | None = None

    @property
    def fingerprint(self) -> str:
        """Identifies the whole key, secret included: a caller who knows only the access key (it travels
        in every token's `kid`) must never be handed a client built with somebody else's secret."""
        material = "\0".join((self.key.access_key, self.key.secret_key, self.key.organization_id))
        return hashlib.sha256(material.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"Caller({self.key!r}, workspace_id={self.workspace_id})"


def caller_from_headers(headers: Mapping[str, list[str]]) -> Caller:
    """The caller named by the request's headers (`headers`: lower-case name → every value sent)."""
    values: dict[str, str | None] = {}
    for field_name, header in HEADERS.items():
        sent = headers.get(header.lower(), [])
        if len(sent) > 1:
            # Two values: which one did a proxy in front of us look at?
            raise BadCredentials(f"{header} was sent {len(sent)} times; send it once")
        values[field_name] = sent[0].strip() if sent and sent[0].strip() else None
    missing = [HEADERS[name] for name in REQUIRED if values[name] is None]
    if missing:
        raise MissingCredentials(f"missing {', '.join(missing)}: {CREDENTIAL_HEADERS_HELP}")
    problems = credential_problems(values, HEADERS)
    if problems:
        raise BadCredentials("; ".join(problems))
    access, secret, org = (values[name] or "" for name in REQUIRED)
    return Caller(MachineKey(access, secret, org.lower()), (values["workspace_id"] or "").lower() or None)


@dataclass(eq=False)
class Tenant:
    """One machine key's API client and redactor, shared by its concurrent requests."""

    client: MeshesClient  # a LearningClient, which passes every call through to the caller's MeshesClient
    redactor: Redactor
    leases: int = field(default=0)  # requests in progress with this key
    waits: int = field(default=0)  # of those, tool calls that wait for outcomes


# The caller and tenant of the request being served (unset outside per-request mode). The caller is per
# request: two requests with one key may name different default workspaces.
current_caller: ContextVar[Caller | None] = ContextVar("meshes_current_caller", default=None)
current_tenant: ContextVar[Tenant | None] = ContextVar("meshes_current_tenant", default=None)


class TenantPool:
    """Tenants by key fingerprint, least recently used first; idle ones beyond `max_idle` are dropped.

    `build` must return clients that own no connections (they share one `SharedTransport`): dropping a
    tenant is then just forgetting it, with nothing to close. So eviction never awaits: choosing the idle
    tenants and removing them is one step that no other request can interleave with, a tenant leased
    again is never removed, and nothing in a lease's cleanup can fail after its response has begun.
    """

    def __init__(
        self,
        build: Callable[[Caller, Redactor], MeshesClient],
        max_idle: int = MAX_IDLE_TENANTS,
        *,
        max_calls: int = MAX_CALLER_CALLS,
        max_waits: int = MAX_CALLER_WAITS,
    ) -> None:
        self._build = build
        self._max_idle = max_idle
        self.max_calls = max_calls
        self.max_waits = max_waits
        self._tenants: OrderedDict[str, Tenant] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tenants)

    def admit(self, caller: Caller, *, waits: bool = False) -> None:
        """Raises CallerBusy when the caller is at its limit of concurrent requests (or of waits)."""
        tenant = self._tenants.get(caller.fingerprint)
        if tenant is None:
            return
        if tenant.leases >= self.max_calls:
            raise CallerBusy(
                f"this Meshes key already has {tenant.leases} requests in progress on this server, its limit; "
                f"retry in {CALLS_RETRY_AFTER} s",
                CALLS_RETRY_AFTER,
            )
        if waits and tenant.waits >= self.max_waits:
            raise CallerBusy(
                f"this Meshes key already has {tenant.waits} tool calls waiting (wait_seconds) on this server, "
                f"its limit; retry in {WAITS_RETRY_AFTER} s, or call without wait_seconds and check later",
                WAITS_RETRY_AFTER,
            )

    @asynccontextmanager
    async def lease(self, caller: Caller, *, waits: bool = False) -> AsyncIterator[Tenant]:
        """The caller's tenant, current for the body of the `async with` (the whole HTTP request).
        Raises CallerBusy, before anything is leased, when the caller is at its limit."""
        self.admit(caller, waits=waits)
        tenant = self._tenant(caller)
        tenant.leases += 1
        tenant.waits += waits
        tenant_token, caller_token = current_tenant.set(tenant), current_caller.set(caller)
        try:
            yield tenant
        finally:
            current_caller.reset(caller_token)
            current_tenant.reset(tenant_token)
            tenant.leases -= 1
            tenant.waits -= waits
            self._drop_idle_beyond_bound()

    def _tenant(self, caller: Caller) -> Tenant:
        fingerprint = caller.fingerprint
        tenant = self._tenants.get(fingerprint)
        if tenant is None:
            redactor = Redactor((caller.key.access_key, caller.key.secret_key))
            redact_logs(redactor)  # held weakly by the log filter: gone with the tenant
            tenant = Tenant(self._build(caller, redactor), redactor)
            self._tenants[fingerprint] = tenant
        self._tenants.move_to_end(fingerprint)
        return tenant

    def _drop_idle_beyond_bound(self) -> None:
        # No await from here to the end: the choice and the removal see the same pool.
        excess = len(self._tenants) - self._max_idle
        if excess <= 0:
            return
        idle = (fingerprint for fingerprint, tenant in self._tenants.items() if tenant.leases == 0)
        for fingerprint in list(islice(idle, excess)):
            del self._tenants[fingerprint]

    def clear(self) -> None:
        self._tenants.clear()


def caller_principal(_ctx: object) -> str | None:
    """Binds sealed confirmation state to the machine key of the request (None outside per-request mode)."""
    caller = current_caller.get()
    return caller.fingerprint if caller is not None else None
