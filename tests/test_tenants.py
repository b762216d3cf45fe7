"""The pool of per-caller API clients: one per whole machine key, bounded, never shared across keys."""

from __future__ import annotations

import pytest

from meshes_mcp.api.auth import MachineKey
from meshes_mcp.server.render import Redactor
from meshes_mcp.server.tenants import (
    BadCredentials,
    Caller,
    MissingCredentials,
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
        self.closed = True


def caller(secret: str = "s" * 43, access: str = ACCESS, workspace: str | None = None) -> Caller:
    return Caller(MachineKey(access, secret, ORG), workspace)


def pool(max_idle: int = 256) -> TenantPool:
    return TenantPool(Closable, max_idle=max_idle)  # type: ignore[arg-type]


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
