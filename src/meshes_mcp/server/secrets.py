"""The API client as the tools see it: every secret a connection holds is taught to the redactor.

Redaction by value only works for values we know. A connection's secrets pass through this process when
an agent creates or updates it and whenever it is read (APIs mask password fields but often return
custom header values as they are). Before anything that may quote a connection's secret is returned (an
event's `last_error`, an attempt's message or captured response), a connection this process has not
read lately is fetched once, so a secret set from the dashboard or by another process is known too.
Those look-ups are cached per process and capped per call; a connection we cannot read still has its
header errors masked by shape (see `render.QUOTED_HEADER_ERROR`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import anyio

from meshes_mcp.server.render import Redactor

if TYPE_CHECKING:
    from meshes_mcp.api.client import MeshesClient

    # To the type checker the wrapper is the client it wraps: every method it does not override passes
    # through (`__getattr__`) with the client's own signature. At run time it is a plain wrapper, so
    # building one costs no client (no HTTP pool) and importing this module imports no HTTP library.
    _ClientSurface = MeshesClient
else:
    _ClientSurface = object

# A connection read this recently is not read again before rendering its deliveries.
FRESH_SECONDS = 600.0
# Look-ups one call may add: a page of events spanning many connections costs at most this many reads
# (four at a time); the rest rely on redaction by shape until a later call reads them.
LOOKUPS_PER_CALL = 8
PARALLEL_LOOKUPS = 4
# Bounded caches for a long-running server (rules never change connection: that mapping never expires).
MAX_REMEMBERED = 2048


class BoundedCache(OrderedDict[str, Any]):
    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > MAX_REMEMBERED:
            self.popitem(last=False)


class LearningClient(_ClientSurface):
    """Wraps the API client; unknown attributes pass through unchanged."""

    def __init__(
        self, client: MeshesClient, redactor: Redactor, secret_keys: Callable[[str | None], frozenset[str]]
    ) -> None:
        self._client = client
        self._redactor = redactor
        self._secret_keys = secret_keys
        self._read_at = BoundedCache()  # connection id → when its secrets were last learned
        self._types = BoundedCache()  # connection id → integration type (for updates)
        self._rule_connection = BoundedCache()  # rule id → connection id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    # --- learning -------------------------------------------------------------------------------

    def learn(self, connection: Any) -> Any:
        """Learn a connection's secrets (a `Connection` model); returns it for chaining."""
        metadata = getattr(connection, "metadata", None)
        type_ = getattr(connection, "type", None)
        self._redactor.learn_metadata(metadata, self._secret_keys(type_))
        connection_id = getattr(connection, "id", None)
        if connection_id:
            self._read_at.put(connection_id, time.monotonic())
            self._types.put(connection_id, type_)
        return connection

    def learn_request(self, metadata: Any, type_: str | None) -> None:
        """Secrets the agent is about to send: known before the request, so an echo in its error is masked."""
        self._redactor.learn_metadata(metadata, self._secret_keys(type_))

    async def know_connections(self, connection_ids: Iterable[str | None]) -> None:
        """Read the connections not read lately (capped), so their secrets can be masked by value."""
        now = time.monotonic()
        stale = [
            cid
            for cid in dict.fromkeys(c for c in connection_ids if c)
            if now - self._read_at.get(cid, -FRESH_SECONDS) >= FRESH_SECONDS
        ][:LOOKUPS_PER_CALL]
        if not stale:
            return
        limiter = anyio.CapacityLimiter(PARALLEL_LOOKUPS)

        async def read(connection_id: str) -> None:
            async with limiter:
                try:
                    self.learn(await self._client.get_connection(connection_id))
                except Exception:  # deleted, forbidden, unreachable: redaction by shape still applies
                    self._read_at.put(connection_id, time.monotonic())

        async with anyio.create_task_group() as group:
            for connection_id in stale:
                group.start_soon(read, connection_id)

    async def know_rule(self, rule_id: str) -> None:
        connection_id = self._rule_connection.get(rule_id)
        if connection_id is None:
            try:
                connection_id = (await self._client.get_rule(rule_id)).connection
            except Exception:
                return
            self._rule_connection.put(rule_id, connection_id)
        await self.know_connections([connection_id])

    async def know_events(self, events: Iterable[Any]) -> None:
        rule_events = [r for event in events for r in getattr(event, "rule_events", None) or []]
        for r in rule_events:
            if r.connection:
                self._rule_connection.put(r.rule, r.connection)
        await self.know_connections(r.connection for r in rule_events)

    # --- connections: learn what passes by ------------------------------------------------------

    async def create_connection(self, request: Any) -> Any:
        self.learn_request(request.metadata, str(request.type))
        return self.learn(await self._client.create_connection(request))

    async def update_connection(self, connection_id: str, request: Any) -> Any:
        self.learn_request(request.metadata, self._types.get(connection_id))
        return self.learn(await self._client.update_connection(connection_id, request))

    async def get_connection(self, connection_id: str) -> Any:
        return self.learn(await self._client.get_connection(connection_id))

    async def list_connections(self, **kwargs: Any) -> Any:
        page = await self._client.list_connections(**kwargs)
        for connection in page.records:
            self.learn(connection)
        return page

    async def list_workspace_connections(self, *args: Any, **kwargs: Any) -> Any:
        page = await self._client.list_workspace_connections(*args, **kwargs)
        for connection in page.records:
            self.learn(connection)
        return page

    async def get_rule(self, rule_id: str) -> Any:
        rule = await self._client.get_rule(rule_id)
        self._rule_connection.put(rule.id, rule.connection)
        return rule

    # --- deliveries: know the connection before its errors are shown ------------------------------

    async def get_event(self, *args: Any, **kwargs: Any) -> Any:
        event = await self._client.get_event(*args, **kwargs)
        await self.know_events([event])
        return event

    async def cancel_event(self, *args: Any, **kwargs: Any) -> Any:
        event = await self._client.cancel_event(*args, **kwargs)
        await self.know_events([event])
        return event

    async def list_events(self, *args: Any, **kwargs: Any) -> Any:
        page = await self._client.list_events(*args, **kwargs)
        await self.know_events(page.records)
        return page

    async def list_workspace_events(self, *args: Any, **kwargs: Any) -> Any:
        page = await self._client.list_workspace_events(*args, **kwargs)
        await self.know_events(page.records)
        return page

    # The call goes first: ids it refuses (or a failed call) cost no look-up.

    async def retry_rule_event(self, event_id: str, rule_id: str) -> Any:
        rule_event = await self._client.retry_rule_event(event_id, rule_id)
        await self.know_events([SimpleNamespace(rule_events=[rule_event])])
        return rule_event

    async def cancel_rule_event(self, event_id: str, rule_id: str) -> Any:
        answer = await self._client.cancel_rule_event(event_id, rule_id)
        await self.know_rule(rule_id)
        return answer

    async def list_rule_attempts(self, event_id: str, rule_id: str, **kwargs: Any) -> Any:
        page = await self._client.list_rule_attempts(event_id, rule_id, **kwargs)
        await self.know_rule(rule_id)
        return page

    async def get_rule_attempt(self, event_id: str, rule_id: str, attempt_id: str) -> Any:
        found = await self._client.get_rule_attempt(event_id, rule_id, attempt_id)
        await self.know_rule(rule_id)
        return found

    async def get_attempt_response(self, event_id: str, rule_id: str, attempt_id: str) -> Any:
        details = await self._client.get_attempt_response(event_id, rule_id, attempt_id)
        await self.know_rule(rule_id)
        return details
