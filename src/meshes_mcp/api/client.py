"""MeshesClient: one typed async method per documented endpoint (38), nothing MCP-specific.

Callers pass validated request models; path ids are checked (by the models' `require_uuid`) so a
malformed id never becomes a request. Every call mints a fresh machine token. Reads are retried with
exponential backoff and jitter on 429/502/503/504 and transport failures; writes are retried only when
the request certainly did not take effect (429, or a connection that was never established), so a
write happens once or fails with an error that says whether it may have been applied. The policy is
the small predicates at the bottom of this module (`should_retry`, `retry_delay`, ...).
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import anyio
import httpx2

from meshes_mcp import __version__
from meshes_mcp.api import models as m
from meshes_mcp.api.auth import PUBLISHABLE_KEY_HEADER, MachineKey
from meshes_mcp.api.errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    error_for_status,
)
from meshes_mcp.api.models import require_bulk_size, require_session_id, require_uuid

# `require_uuid` lives with the models (validation has one home); it stays importable from here.
__all__ = [
    "MeshesClient",
    "SharedTransport",
    "iterate_pages",
    "require_uuid",
    "retry_after_seconds",
    "retry_delay",
    "should_retry",
]

USER_AGENT = f"meshes-mcp/{__version__} (+https://pypi.org/project/meshes-mcp/)"
RETRYABLE_READ_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 20.0

R = TypeVar("R")


def _query(params: dict[str, Any]) -> dict[str, Any]:
    """Drop unset filters; booleans travel as true/false."""
    return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items() if v is not None}


class MeshesClient:
    def __init__(
        self,
        base_url: str,
        *,
        machine_key: MachineKey | None = None,
        publishable_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_retries: int = 2,
        retry_base: float = 0.5,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.machine_key = machine_key
        self.publishable_key = publishable_key
        self.max_retries = max_retries
        self.retry_base = retry_base
        self._http = httpx2.AsyncClient(
            base_url=self.base_url,
            timeout=httpx2.Timeout(read_timeout, connect=connect_timeout),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_settings(
        cls, settings: Any, machine_key: MachineKey | None = None, transport: httpx2.AsyncBaseTransport | None = None
    ) -> MeshesClient:
        """A client for the configured API; `machine_key` acts for a caller instead of the configured key;
        `transport`: connections shared with other clients (a `SharedTransport`)."""
        return cls(
            settings.base_url,
            machine_key=machine_key if machine_key is not None else settings.machine_key(),
            publishable_key=settings.publishable_key.get_secret_value() if settings.publishable_key else None,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> MeshesClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- transport ----------------------------------------------------------------------------

    def _auth_headers(self, *, publishable_ok: bool) -> dict[str, str]:
        if self.machine_key is not None:
            return self.machine_key.headers()
        if publishable_ok and self.publishable_key:
            return {PUBLISHABLE_KEY_HEADER: self.publishable_key}
        raise ConfigurationError("No Meshes machine key is configured.")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        publishable_ok: bool = False,
    ) -> Any:
        idempotent = method in ("GET", "HEAD")
        attempt = 0
        while True:
            headers = self._auth_headers(publishable_ok=publishable_ok)  # fresh token per attempt
            try:
                response = await self._http.request(
                    method, path, json=json, params=_query(params or {}), headers=headers
                )
            except httpx2.TransportError as exc:
                failure = self._transport_failure(method, path, exc)
                if attempt < self.max_retries and should_retry_failure(failure, idempotent=idempotent):
                    attempt += 1
                    await anyio.sleep(retry_delay(attempt, base=self.retry_base))
                    continue
                raise failure from exc

            if response.status_code < 400:
                return _decode(response)
            retry_after = retry_after_seconds(response.headers)
            if attempt < self.max_retries and should_retry(response.status_code, idempotent=idempotent):
                attempt += 1
                await anyio.sleep(retry_delay(attempt, base=self.retry_base, retry_after=retry_after))
                continue
            raise error_for_status(response.status_code, _decode(response), retry_after=retry_after)

    def _transport_failure(self, method: str, path: str, exc: httpx2.TransportError) -> APIConnectionError:
        """The error a transport failure becomes, saying whether the request may have reached the API."""
        if isinstance(exc, httpx2.ConnectError):
            return APIConnectionError(f"Could not connect to {self.base_url}: {exc}", sent=False)
        if isinstance(exc, httpx2.TimeoutException):
            # A connect or pool timeout fires before a byte is written; a read/write timeout may follow a send.
            sent = not isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout)
            return APITimeoutError(f"{method} {path} timed out", sent=sent)
        return APIConnectionError(f"{method} {path} failed: {type(exc).__name__}", sent=True)

    # --- integrations -------------------------------------------------------------------------

    async def list_integrations(self) -> m.Page[m.Integration]:
        return m.Page[m.Integration].model_validate(await self._request("GET", "/integrations"))

    # --- workspaces ---------------------------------------------------------------------------

    async def list_workspaces(self, *, limit: int | None = None, cursor: str | None = None) -> m.Page[m.Workspace]:
        # Paging parameters are undocumented for this list; sent only when the caller asks.
        data = await self._request("GET", "/workspaces", params={"limit": limit, "cursor": cursor})
        return m.Page[m.Workspace].model_validate(data)

    async def create_workspace(self, request: m.CreateWorkspaceRequest) -> m.Workspace:
        data = await self._request("POST", "/workspaces", json=request.body())
        return m.Workspace.model_validate(_unwrap(data, "workspace"))

    async def get_workspace(self, workspace_id: str) -> m.Workspace:
        require_uuid("workspace_id", workspace_id)
        return m.Workspace.model_validate(await self._request("GET", f"/workspaces/{workspace_id}"))

    async def update_workspace(self, workspace_id: str, request: m.UpdateWorkspaceRequest) -> m.Workspace:
        require_uuid("workspace_id", workspace_id)
        body = request.body()
        body.setdefault("description", request.description)  # the API's PUT always carries it; null clears
        data = await self._request("PUT", f"/workspaces/{workspace_id}", json=body)
        return m.Workspace.model_validate(_unwrap(data, "workspace"))

    async def list_workspace_connections(
        self, workspace_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> m.Page[m.Connection]:
        require_uuid("workspace_id", workspace_id)
        data = await self._request(
            "GET", f"/workspaces/{workspace_id}/connections", params={"limit": limit, "cursor": cursor}
        )
        return m.Page[m.Connection].model_validate(data)

    async def list_event_types(self, workspace_id: str) -> list[m.CatalogEntry]:
        require_uuid("workspace_id", workspace_id)
        data = await self._request("GET", f"/workspaces/{workspace_id}/event-types")
        return [m.CatalogEntry.model_validate(item) for item in _records(data)]

    async def list_resources(self, workspace_id: str) -> list[m.CatalogEntry]:
        require_uuid("workspace_id", workspace_id)
        data = await self._request("GET", f"/workspaces/{workspace_id}/resources")
        return [m.CatalogEntry.model_validate(item) for item in _records(data)]

    async def list_workspace_events(
        self, workspace_id: str, query: m.WorkspaceEventQuery | None = None
    ) -> m.Page[m.Event]:
        require_uuid("workspace_id", workspace_id)
        params = query.body() if query else {}
        data = await self._request("GET", f"/workspaces/{workspace_id}/events", params=params)
        return m.Page[m.Event].model_validate(data)

    async def list_workspace_rules(
        self,
        workspace_id: str,
        filters: m.RuleFilters | None = None,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> m.Page[m.Rule]:
        require_uuid("workspace_id", workspace_id)
        params = {**(filters.body() if filters else {}), "limit": limit, "cursor": cursor}
        data = await self._request("GET", f"/workspaces/{workspace_id}/rules", params=params)
        return m.Page[m.Rule].model_validate(data)

    # --- connections --------------------------------------------------------------------------

    async def list_connections(self, *, limit: int | None = None, cursor: str | None = None) -> m.Page[m.Connection]:
        data = await self._request("GET", "/connections", params={"limit": limit, "cursor": cursor})
        return m.Page[m.Connection].model_validate(data)

    async def create_connection(self, request: m.CreateConnectionRequest) -> m.Connection:
        data = await self._request("POST", "/connections", json=request.body())
        return m.Connection.model_validate(_unwrap(data, "connection"))

    async def get_connection(self, connection_id: str) -> m.Connection:
        require_uuid("connection_id", connection_id)
        return m.Connection.model_validate(await self._request("GET", f"/connections/{connection_id}"))

    async def update_connection(self, connection_id: str, request: m.UpdateConnectionRequest) -> m.Connection:
        require_uuid("connection_id", connection_id)
        data = await self._request("PUT", f"/connections/{connection_id}", json=request.body())
        return m.Connection.model_validate(_unwrap(data, "connection"))

    async def delete_connection(self, connection_id: str, *, force_delete: bool = False) -> m.DeletedConnection:
        require_uuid("connection_id", connection_id)
        # Like the official clients, a body is sent only when forcing.
        body = {"force_delete": True} if force_delete else None
        return m.DeletedConnection.model_validate(
            await self._request("DELETE", f"/connections/{connection_id}", json=body)
        )

    async def get_connection_actions(self, connection_id: str) -> dict[str, Any]:
        require_uuid("connection_id", connection_id)
        data = await self._request("GET", f"/connections/{connection_id}/actions")
        return data if isinstance(data, dict) else {}

    async def get_connection_fields(self, connection_id: str, *, refresh: bool = False) -> m.ConnectionFieldCatalog:
        require_uuid("connection_id", connection_id)
        data = await self._request(
            "GET", f"/connections/{connection_id}/fields", params={"refresh": True if refresh else None}
        )
        return m.ConnectionFieldCatalog.model_validate(data)

    async def get_connection_mappings(self, connection_id: str) -> m.DefaultMappingResult:
        require_uuid("connection_id", connection_id)
        data = await self._request("GET", f"/connections/{connection_id}/mappings/default")
        return m.DefaultMappingResult.model_validate(data)

    async def update_connection_mappings(
        self, connection_id: str, request: m.UpdateMappingsRequest
    ) -> m.DefaultMappingResult:
        require_uuid("connection_id", connection_id)
        data = await self._request("PUT", f"/connections/{connection_id}/mappings/default", json=request.body())
        return m.DefaultMappingResult.model_validate(data)

    # --- rules --------------------------------------------------------------------------------

    async def list_rules(
        self, filters: m.RuleFilters | None = None, *, limit: int | None = None, cursor: str | None = None
    ) -> m.Page[m.Rule]:
        params = {**(filters.body() if filters else {}), "limit": limit, "cursor": cursor}
        return m.Page[m.Rule].model_validate(await self._request("GET", "/rules", params=params))

    async def create_rule(self, request: m.CreateRuleRequest) -> m.Rule:
        data = await self._request("POST", "/rules", json=request.body())
        return m.Rule.model_validate(_unwrap(data, "rule"))

    async def get_rule(self, rule_id: str) -> m.Rule:
        require_uuid("rule_id", rule_id)
        return m.Rule.model_validate(await self._request("GET", f"/rules/{rule_id}"))

    async def delete_rule(self, rule_id: str) -> m.DeletedRule:
        require_uuid("rule_id", rule_id)
        return m.DeletedRule.model_validate(await self._request("DELETE", f"/rules/{rule_id}"))

    # --- events -------------------------------------------------------------------------------

    async def list_events(self, query: m.EventListQuery | None = None) -> m.Page[m.Event]:
        params = query.body() if query else {}
        return m.Page[m.Event].model_validate(await self._request("GET", "/events", params=params))

    async def emit_event(self, request: m.EmitEventRequest) -> m.Event:
        data = await self._request("POST", "/events", json=request.body(), publishable_ok=True)
        return m.Event.model_validate(_unwrap(data, "event"))

    async def emit_events(self, requests: list[m.EmitEventRequest]) -> m.BulkResult:
        require_bulk_size(requests)
        body = [r.body() for r in requests]
        return m.BulkResult.model_validate(await self._request("POST", "/events/bulk", json=body, publishable_ok=True))

    async def get_event(self, event_id: str, *, include_payload: bool = False) -> m.Event:
        require_uuid("event_id", event_id)
        path = f"/events/{event_id}/payload" if include_payload else f"/events/{event_id}"
        return m.Event.model_validate(await self._request("GET", path))

    async def retry_rule_event(self, event_id: str, rule_id: str) -> m.RuleEvent:
        require_uuid("event_id", event_id)
        require_uuid("rule_id", rule_id)
        return m.RuleEvent.model_validate(await self._request("POST", f"/events/{event_id}/rules/{rule_id}/retry"))

    async def cancel_rule_event(self, event_id: str, rule_id: str) -> m.RuleEvent:
        require_uuid("event_id", event_id)
        require_uuid("rule_id", rule_id)
        return m.RuleEvent.model_validate(await self._request("POST", f"/events/{event_id}/rules/{rule_id}/cancel"))

    async def cancel_event(self, event_id: str) -> m.Event:
        require_uuid("event_id", event_id)
        data = await self._request("POST", f"/events/{event_id}/cancel")
        return m.Event.model_validate(_unwrap(data, "event"))

    async def list_rule_attempts(
        self, event_id: str, rule_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> m.Page[m.Attempt]:
        require_uuid("event_id", event_id)
        require_uuid("rule_id", rule_id)
        data = await self._request(
            "GET", f"/events/{event_id}/rules/{rule_id}/attempts", params={"limit": limit, "cursor": cursor}
        )
        return m.Page[m.Attempt].model_validate(data)

    async def get_rule_attempt(self, event_id: str, rule_id: str, attempt_id: str) -> m.Attempt:
        require_uuid("event_id", event_id)
        require_uuid("rule_id", rule_id)
        require_uuid("attempt_id", attempt_id)
        return m.Attempt.model_validate(
            await self._request("GET", f"/events/{event_id}/rules/{rule_id}/attempts/{attempt_id}")
        )

    async def get_attempt_response(self, event_id: str, rule_id: str, attempt_id: str) -> m.ResponseDetails:
        require_uuid("event_id", event_id)
        require_uuid("rule_id", rule_id)
        require_uuid("attempt_id", attempt_id)
        # Path inferred from the docs' "companion /response-details endpoint".
        path = f"/events/{event_id}/rules/{rule_id}/attempts/{attempt_id}/response-details"
        return m.ResponseDetails.model_validate(await self._request("GET", path))

    # --- sessions -----------------------------------------------------------------------------

    async def create_session(self, request: m.CreateSessionRequest) -> m.CreatedSession:
        return m.CreatedSession.model_validate(await self._request("POST", "/sessions", json=request.body()))

    async def list_sessions(self, query: m.SessionListQuery) -> m.Page[m.SessionSummary]:
        return m.Page[m.SessionSummary].model_validate(await self._request("GET", "/sessions", params=query.body()))

    async def refresh_session(self, session_id: str) -> m.SessionToken:
        require_session_id(session_id)
        return m.SessionToken.model_validate(await self._request("POST", f"/sessions/{session_id}/refresh"))

    async def revoke_session(self, session_id: str) -> m.RevokedSession:
        require_session_id(session_id)
        return m.RevokedSession.model_validate(await self._request("DELETE", f"/sessions/{session_id}"))


class SharedTransport(httpx2.AsyncBaseTransport):
    """One connection pool (and one TLS context) for many clients: one client per caller would otherwise
    build its own, about 0.8 MiB each, and keep its connections open while idle.

    Requests go where a client of our own would send them (its pool, or the proxy the environment names
    for the URL). Closing a client that uses it leaves it open; its owner closes it with `close`."""

    def __init__(self, *, max_connections: int = 100) -> None:
        limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections // 5)
        self._router = httpx2.AsyncClient(limits=limits)  # honours HTTPS_PROXY / NO_PROXY like any client

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self._router._transport_for_url(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        """A client closing: the pool stays for the others."""

    async def close(self) -> None:
        await self._router.aclose()


async def iterate_pages(
    fetch: Callable[..., Awaitable[m.Page[R]]], *args: Any, max_pages: int = 1000, **kwargs: Any
) -> AsyncIterator[R]:
    """Every record of a paginated list, following `next_cursor` so callers never hand-roll the loop."""
    cursor: str | None = None
    for _ in range(max_pages):
        page = await fetch(*args, cursor=cursor, **kwargs)
        for record in page.records:
            yield record
        if not page.next_cursor or page.next_cursor == cursor:
            return
        cursor = page.next_cursor


def _decode(response: httpx2.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _unwrap(data: Any, key: str) -> Any:
    """Creates answer `{"<key>": {...}}`; other writes answer the object itself. Either is accepted.

    Checking for an object matters: an unwrapped event has an `event` key too, holding its name.
    """
    inner = data.get(key) if isinstance(data, dict) else None
    return inner if isinstance(inner, dict) else data


def _records(data: Any) -> list[Any]:
    # Documented as a bare array; accept the list envelope too in case the API aligns it later.
    if isinstance(data, dict):
        return list(data.get("records") or [])
    return list(data or [])


# --- retry policy --------------------------------------------------------------------------------
# Small predicates, as openai-python's client has them, so the policy reads in one place and each rule
# is tested on its own through real HTTP.


def should_retry(status: int, *, idempotent: bool) -> bool:
    """Whether an error answer is worth another attempt.

    A 429 means the request was refused before it took effect, so even a write may go again; a 502/503/504
    may follow a write that landed, so only reads are repeated.
    """
    return status == 429 or (idempotent and status in RETRYABLE_READ_STATUSES)


def should_retry_failure(failure: APIConnectionError, *, idempotent: bool) -> bool:
    """Whether a transport failure is worth another attempt: a read always, a write only if never sent."""
    return idempotent or not failure.sent


def retry_delay(attempt: int, *, base: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based).

    The server's Retry-After wins, capped so one answer cannot park an agent for minutes; without one
    (or with 0), full jitter spreads simultaneous retries from many agents instead of synchronising them.
    """
    if retry_after:
        return min(retry_after, MAX_RETRY_AFTER)
    return random.uniform(0, base * 2 ** (attempt - 1))


def retry_after_seconds(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds, whether sent as delay-seconds or as an HTTP date (RFC 9110 §10.2.3).

    A date in the past means "now" (0); anything unreadable is ignored (None) rather than trusted.
    """
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    seconds: float | None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _seconds_until_http_date(value, now=now)
    if seconds is None or math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _seconds_until_http_date(value: str, *, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT; obsolete forms may parse without a zone
        when = when.replace(tzinfo=UTC)
    return (when - (now or datetime.now(UTC))).total_seconds()
