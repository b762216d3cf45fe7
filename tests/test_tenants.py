"""The pool of per-caller API clients: one per whole machine key, bounded, never shared across keys."""

from __future__ import annotations

import anyio
import pytest

from meshes_mcp.api.auth import MachineKey
from meshes_mcp.server.render import Redactor
from meshes_mcp.server.tenants import (
    BadCredentials,
    Caller,
    MissingCredentials,
    Tenant,
    TenantPool,
    caller_from_headers,
    current_caller,
    current_tenant,
)

ORG = "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b"
ACCESS = "mk_" + "a" * 22


class Closable:
    def __init__(self, caller: Caller, redactor: Redactor) -> None:
        self.caller, self.redactor, self.closed = caller, redactor, False

    async def aclose(self) -> None:
        await anyio.sleep(0)  # as a real close does: other requests run meanwhile
        self.closed = True


def caller(secret: str = "s" * 43, access: str = ACCESS, workspace: str | None = None) -> Caller:
    return Caller(MachineKey(access, secret, ORG), workspace)


def pool(max_idle: int = 256, **limits: int) -> TenantPool:
    return TenantPool(Closable, max_idle, **limits)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_one_key_one_client_and_a_different_secret_never_gets_it() -> None:
    tenants = pool()
    async with tenants.lease(caller()) as first, tenants.lease(caller(workspace=ORG)) as again:
        assert first is again  # the default workspace is per request, not part of the key
    async with tenants.lease(caller(secret="x" * 43)) as other:
        assert other is not first  # knowing the access key (it is every token's kid) is not enough
    assert len(tenants) == 2


@pytest.mark.anyio
async def test_the_lease_makes_caller_and_tenant_current_then_restores() -> None:
    tenants = pool()
    async with tenants.lease(caller(workspace=ORG)) as tenant:
        assert current_tenant.get() is tenant
        assert current_caller.get().workspace_id == ORG  # type: ignore[union-attr]
    assert current_tenant.get() is None and current_caller.get() is None


@pytest.mark.anyio
async def test_idle_clients_beyond_the_bound_are_closed_oldest_first_but_never_one_in_use() -> None:
    tenants = pool(max_idle=2)
    async with tenants.lease(caller(secret="0" * 43)) as busy:
        for n in range(1, 5):
            async with tenants.lease(caller(secret=str(n) * 43)):
                pass
        assert not busy.client.closed  # type: ignore[attr-defined]
    assert len(tenants) == 2
    survivors = {t.client.caller.key.secret_key[0] for t in tenants._tenants.values()}  # type: ignore[attr-defined]
    assert survivors == {"4", "0"}  # the newest idle one, and the busy one although it is the oldest


@pytest.mark.anyio
async def test_requests_ending_together_at_the_bound_never_fail_nor_drop_a_tenant_in_use() -> None:
    """Many distinct keys at once, each request ending while others evict: every lease ends cleanly and a
    tenant is never removed (nor closed) while a request holds it."""
    tenants = pool(max_idle=2)
    seen: list[Tenant] = []

    async def request(n: int) -> None:
        who = caller(secret=f"{n:043d}")
        for _ in range(3):
            async with tenants.lease(who) as tenant:
                seen.append(tenant)
                for _ in range(n % 4):
                    await anyio.sleep(0)
                    assert tenants._tenants.get(who.fingerprint) is tenant, "a leased tenant was evicted"
                    assert not tenant.client.closed  # type: ignore[attr-defined]

    async with anyio.create_task_group() as group:
        for n in range(64):
            group.start_soon(request, n)
    assert len(tenants) == 2
    assert not any(t.client.closed for t in tenants._tenants.values())  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_a_caller_at_its_limit_is_refused_before_anything_is_leased() -> None:
    from meshes_mcp.server.tenants import CallerBusy

    tenants = pool(max_calls=2, max_waits=1)
    async with tenants.lease(caller(), waits=True), tenants.lease(caller()):
        with pytest.raises(CallerBusy, match="already has 2 requests in progress") as busy:
            async with tenants.lease(caller()):
                pass
        assert busy.value.retry_after == 1
        async with tenants.lease(caller(secret="t" * 43)):
            pass  # another key has its own count
    async with tenants.lease(caller(), waits=True):
        with pytest.raises(CallerBusy, match="1 tool calls waiting") as busy:
            async with tenants.lease(caller(), waits=True):
                pass
        assert busy.value.retry_after == 5
        async with tenants.lease(caller()):
            pass  # a call that does not wait still goes
    (tenant,) = [t for t in tenants._tenants.values() if t.client.caller == caller()]  # type: ignore[attr-defined]
    assert (tenant.leases, tenant.waits) == (0, 0)


@pytest.mark.anyio
async def test_each_tenant_has_its_own_redactor_holding_its_keys() -> None:
    tenants = pool()
    async with tenants.lease(caller()) as a, tenants.lease(caller(secret="t" * 43)) as b:
        a.redactor.add("only-tenant-a-knows-this")
        assert "[redacted]" in a.redactor.text("x only-tenant-a-knows-this y")
        assert b.redactor.text("x only-tenant-a-knows-this y") == "x only-tenant-a-knows-this y"
        assert "s" * 43 not in a.redactor.text("secret " + "s" * 43)


def test_headers_parse_and_refuse() -> None:
    headers = {"x-meshes-access-key": [ACCESS], "x-meshes-secret-key": ["s" * 43], "x-meshes-org-id": [ORG.upper()]}
    parsed = caller_from_headers(headers)
    assert parsed.key.organization_id == ORG and parsed.workspace_id is None
    assert "s" * 43 not in repr(parsed)
    with pytest.raises(MissingCredentials, match="missing X-Meshes-Org-Id"):
        caller_from_headers({**headers, "x-meshes-org-id": ["  "]})
    with pytest.raises(BadCredentials, match="X-Meshes-Access-Key was sent 2 times"):
        caller_from_headers({**headers, "x-meshes-access-key": [ACCESS, ACCESS]})
