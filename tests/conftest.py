"""Shared fixtures: an embedded Meshes sandbox per test module, reached over real HTTP on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from meshes_mcp.api.auth import MachineKey
from meshes_mcp.sandbox import EmbeddedSandbox, SandboxInfo
from meshes_mcp.sandbox.receiver import WebhookReceiver


def _token(info: SandboxInfo) -> str:
    """The machine JWT our API client mints, for the sandbox's own key."""
    return MachineKey(info.access_key, info.secret_key, info.organization_id).mint()


class _FreshToken(httpx2.Auth):
    """A new 30 s machine JWT per request, as the official clients do."""

    def __init__(self, info: SandboxInfo) -> None:
        self.info = info

    def auth_flow(self, request: httpx2.Request) -> Iterator[httpx2.Request]:
        request.headers["Authorization"] = f"Bearer {_token(self.info)}"
        yield request


class SandboxApi(httpx2.Client):
    """httpx2 client on the sandbox's api_url (ends in /api/v1) with machine auth, plus a poll helper."""

    def __init__(self, info: SandboxInfo) -> None:
        super().__init__(base_url=info.api_url, auth=_FreshToken(info), timeout=10)
        self.info = info

    def webhook_rule(self, url: str, event: str, name: str | None = None, **metadata: Any) -> tuple[str, str]:
        """A webhook connection to `url` (with any further connection metadata: auth, signing, ...) and a rule
        sending `event` to it, in the sandbox's default workspace: (connection id, rule id)."""
        ws = self.info.workspace_id
        metadata = {"url": url, **metadata}
        hook = self.post(
            "/connections", json={"workspace": ws, "type": "webhook", "name": name or event, "metadata": metadata}
        )
        assert hook.status_code == 201, hook.text
        connection = hook.json()["connection"]["id"]
        rule = self.post(
            "/rules",
            json={"workspace": ws, "connection": connection, "event": event, "metadata": {"action": "send_webhook"}},
        )
        assert rule.status_code == 201, rule.text
        return connection, rule.json()["rule"]["id"]

    def wait_event(
        self, event_id: str, until: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Poll GET /events/{id} until `until(event)` (default: a terminal status)."""
        done = until or (lambda ev: ev["status"] in ("completed", "failed", "canceled"))
        deadline = time.monotonic() + timeout
        while True:
            event = self.get(f"/events/{event_id}").json()
            if done(event) or time.monotonic() > deadline:
                return event
            time.sleep(0.02)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests (`@pytest.mark.anyio`) run once, on asyncio: the backend the server runs on."""
    return "asyncio"


@pytest.fixture(scope="module")
def sandbox_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox")


@pytest.fixture(scope="module")
def sandbox(sandbox_dir: Path) -> Iterator[SandboxInfo]:
    """A running sandbox (fresh data dir per module, fast retries: 0.05 s base, 5 attempts)."""
    with EmbeddedSandbox(sandbox_dir, retry_base=0.05) as info:
        yield info


@pytest.fixture(scope="module")
def sandbox_api(sandbox: SandboxInfo) -> Iterator[SandboxApi]:
    with SandboxApi(sandbox) as api:
        yield api


@pytest.fixture(scope="module")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A local receiver whose answers are staged by path (see meshes_mcp.sandbox.receiver)."""
    with WebhookReceiver() as receiver:
        yield receiver
