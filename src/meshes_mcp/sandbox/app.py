"""The sandbox's HTTP face: the 38 documented endpoints under /api/v1, as a Starlette app.

Handlers read the request, load rows and answer; when a request is refused for a domain reason
(409/425, mapping and metadata rules) the rule lives in `meshes_mcp.sandbox.domain`, and the
delivery queue's moves (retry, cancel) in `meshes_mcp.sandbox.queue`.

Request bodies are validated with the package's own request models (`meshes_mcp.api.models`) and
integration catalogue (`meshes_mcp.api.catalog`), so the sandbox judges requests exactly as the MCP
layer expects the API to; a validation failure is a 400 whose `error.data` names each `param`.

Behaviour chosen where the reference is silent (each also noted at its handler):
- ids in paths that are not UUIDs answer 404, like unknown ids;
- an id of another organisation (in a path or a body) answers 404 word for word like an unknown id: the
  reference lists 403 and 404 without saying which, and a 403 would tell the caller the id exists.
  A publishable key naming a workspace other than its own is a 403 whatever the id (it reveals nothing);
- duplicate names (workspace per organisation, connection per workspace, case-insensitive) and an
  identical rule (same workspace, connection, event, filters and metadata) answer 409;
- OAuth integrations cannot be created through POST /connections (400 on `type`), as documented;
- a webhook connection is tested on save (a `meshes.url_test` request) only when skip_url_test is
  explicitly "false" (omitted counts as skipped); a failing test is a 422 on `metadata.url`;
- DELETE /connections/{id} with active rules is a 409 unless `{"force_delete": true}`; forcing
  deactivates those rules and cancels deliveries still queued through the connection;
- DELETE /rules/{id} cancels the rule's queued deliveries;
- bulk ingestion: 201 when all items are accepted, 207 when some are, 400 when none are — each
  with `{count, error_count, records}` in input order; error records carry the documented error
  object plus the item's `index`;
- retry: 409 when the rule event is completed or canceled; 425 when an attempt is in flight or
  the next one is due within 1 s; a failed rule event gets one more attempt; 200 with the RuleEvent;
- cancel (rule event): 409 when completed or failed, idempotent when already canceled;
  cancel (event): 409 when the event already finished (completed or failed) with nothing left to
  cancel, idempotent when canceled; both return the updated object;
- event names (and the `event` filter) longer than `models.EVENT_NAME_MAX` (256, our choice) answer 400;
- a store that refuses a write: after waiting up to LOCK_PATIENCE for another process's write lock, 503
  with Retry-After; a data directory gone read-only 503; a full disk 507 (Insufficient Storage); each
  says whether anything was written;
- session refresh: 409 when the session is revoked or expired; revoke: `{"revoked": false}` when it
  already was;
- mappings: GET answers `generated` (version 0) until a PUT stores one (version 1, 2, …);
  `expected_version` must equal the stored version (409 otherwise; omit it for the first store);
  an invalid schema is a 422; webhooks have no field mapping (422 on fields and mappings).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import re
import secrets
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from meshes_mcp.api import models
from meshes_mcp.api.catalog import (
    Catalog,
    IntegrationSpec,
    load_catalog,
)
from meshes_mcp.api.models import EVENT_STATUSES
from meshes_mcp.api.problems import InvalidRequest, check
from meshes_mcp.sandbox import provider_data, views
from meshes_mcp.sandbox.auth import Authenticator, Principal
from meshes_mcp.sandbox.bodies import read_json
from meshes_mcp.sandbox.clock import is_uuid, iso, new_id, now, now_iso
from meshes_mcp.sandbox.delivery import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PER_CONNECTION,
    DEFAULT_RETRY_BASE,
    DeliveryEngine,
    RetryPolicy,
)
from meshes_mcp.sandbox.destinations import (
    Destinations,
    Scrubber,
    connection_secrets,
    keep_redacted,
    redact_metadata,
)
from meshes_mcp.sandbox.domain import (
    check_connection_deletable,
    check_connection_metadata,
    check_connection_name_free,
    check_event_canceled,
    check_mapping_fields,
    check_mapping_target,
    check_provider_reachable,
    check_retry,
    check_rule_metadata,
    check_rule_target,
    check_rule_unique,
    check_session_refreshable,
    no_mapping,
    rule_event_needs_cancel,
    should_reactivate,
)
from meshes_mcp.sandbox.enginelock import EngineLock
from meshes_mcp.sandbox.errors import (
    ApiError,
    bad_request,
    conflict,
    error_body,
    lock_refused,
    not_found,
    problems_error,
    store_refusal,
    summary,
    unprocessable,
)
from meshes_mcp.sandbox.infofile import withdraw
from meshes_mcp.sandbox.queue import DeliveryQueue
from meshes_mcp.sandbox.seed import ensure_seed, new_publishable_key
from meshes_mcp.sandbox.store import LOOP_BUSY_MS, NewEvent, Store

log = logging.getLogger("meshes_mcp.sandbox")

DEFAULT_DELIVERY_TIMEOUT = 10.0
DEFAULT_CONCURRENCY = 64


class HideUrlUserinfo(logging.Filter):
    """Webhook URLs may carry `user:password@`; the HTTP client logs every request URL at INFO. Every log
    record of the loggers the sandbox drives has any URL userinfo replaced before a handler sees it."""

    USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.USERINFO.sub(r"\1[redacted]@", message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_USERINFO_FILTER = HideUrlUserinfo()
LOGGERS_WITH_URLS = ("meshes_mcp.sandbox", "httpx2", "uvicorn.error")


def hide_url_userinfo_in_logs() -> None:
    for name in LOGGERS_WITH_URLS:
        logger = logging.getLogger(name)
        if _USERINFO_FILTER not in logger.filters:
            logger.addFilter(_USERINFO_FILTER)


@dataclass
class Sandbox:
    """Everything a handler needs; lives on `app.state.sandbox` between startup and shutdown."""

    store: Store
    auth: Authenticator
    catalog: Catalog
    records: list[dict[str, Any]]
    destinations: Destinations
    engine: DeliveryEngine
    policy: RetryPolicy
    seed: dict[str, Any]

    @functools.cached_property
    def queue(self) -> DeliveryQueue:
        """The delivery queue on the loop's store: manual retry and cancel go through it (the engine
        claims from the same tables through its own connection)."""
        return DeliveryQueue(self.store)

    def spec(self, integration_type: str) -> IntegrationSpec:
        spec = self.catalog.get(integration_type)
        if spec is None:
            raise ApiError(500, f"integration {integration_type} is missing from the catalogue")
        return spec


Handler = Callable[[Request, Sandbox, Principal], Awaitable[Any]]


# -- plumbing -------------------------------------------------------------------------------------


def validate(model: type[Any], data: Any, status: int = 400, prefix: str = "") -> Any:
    try:
        return check(model, data, prefix=prefix)
    except InvalidRequest as exc:
        problems = [(p.param, p.msg) for p in exc.problems]
    raise ApiError(status, summary(problems), problems)


def created(body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=201)


# How long a request keeps trying while another process holds the database's write lock. Each try
# blocks the loop at most `store.LOOP_BUSY_MS`; between tries the loop serves everything else.
LOCK_PATIENCE = 5.0


def api(publishable: bool = False) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Authenticate, run the handler, render ApiError as the documented error body.

    A request refused by the store's write lock is run again (after an asynchronous pause) as long
    as it wrote nothing, for up to LOCK_PATIENCE seconds; then, like a full disk (507) or a data
    directory that became read-only, it is answered with what happened and whether anything was
    written, never a bare 500."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            sandbox: Sandbox = request.app.state.sandbox
            give_up, pause = time.monotonic() + LOCK_PATIENCE, 0.01
            while True:
                before = sandbox.store.kept_changes
                try:
                    principal = sandbox.auth.authenticate(request.headers, publishable)
                    result = await handler(request, sandbox, principal)
                except ApiError as exc:
                    # After a 413 the rest of the body is not wanted: close rather than drain it.
                    close = {"connection": "close"} if exc.status == 413 else None
                    return JSONResponse(exc.body(), status_code=exc.status, headers=close)
                except ClientDisconnect:  # the caller left while sending its body: nobody to answer, no fault
                    log.info("%s %s: the client disconnected mid-request", request.method, request.url.path)
                    return Response(status_code=400)
                except sqlite3.Error as exc:
                    wrote = sandbox.store.kept_changes != before
                    if lock_refused(exc) and not wrote and time.monotonic() < give_up:
                        await asyncio.sleep(pause)
                        pause = min(pause * 2, 0.2)
                        continue
                    refusal = store_refusal(exc, wrote)
                    if refusal is None:
                        log.exception("unhandled error on %s %s", request.method, request.url.path)
                        return JSONResponse(error_body(500, "internal error in the sandbox (see its log)"), 500)
                    log.warning("%s %s refused: %s", request.method, request.url.path, refusal.message)
                    retry = {"retry-after": "1"} if refusal.status == 503 else None
                    return JSONResponse(refusal.body(), status_code=refusal.status, headers=retry)
                except Exception:
                    log.exception("unhandled error on %s %s", request.method, request.url.path)
                    return JSONResponse(error_body(500, "internal error in the sandbox (see its log)"), status_code=500)
                return result if isinstance(result, Response) else JSONResponse(result)

        return endpoint

    return wrap


def path_id(request: Request, name: str, what: str) -> str:
    value: str = request.path_params[name]
    if not is_uuid(value):
        raise not_found(what, value[:64])
    return value.lower()


def workspace_or_404(sb: Sandbox, principal: Principal, workspace_id: str, param: str | None = None) -> dict[str, Any]:
    row = sb.store.get_workspace(principal.org_id, workspace_id) if is_uuid(workspace_id) else None
    if row is None:
        raise not_found("workspace", workspace_id[:64], param)
    return row


def connection_or_404(
    sb: Sandbox, principal: Principal, connection_id: str, param: str | None = None
) -> dict[str, Any]:
    row = sb.store.get_connection(principal.org_id, connection_id) if is_uuid(connection_id) else None
    if row is None:
        raise not_found("connection", connection_id[:64], param)
    return row


def rule_or_404(sb: Sandbox, principal: Principal, request: Request) -> dict[str, Any]:
    rule_id = path_id(request, "rule_id", "rule")
    row = sb.store.get_rule(principal.org_id, rule_id)
    if row is None:
        raise not_found("rule", rule_id)
    return row


def event_or_404(sb: Sandbox, principal: Principal, request: Request) -> dict[str, Any]:
    event_id = path_id(request, "event_id", "event")
    row = sb.store.get_event(principal.org_id, event_id)
    if row is None:
        raise not_found("event", event_id)
    return row


def rule_event_or_404(sb: Sandbox, principal: Principal, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    event = event_or_404(sb, principal, request)
    rule_id = path_id(request, "rule_id", "rule")
    row = sb.store.get_rule_event(event["id"], rule_id)
    if row is None:
        raise ApiError(
            404,
            f"rule {rule_id} has no delivery for event {event['id']}: use the `rule` field of one of "
            "the event's rule_events",
        )
    return event, row


def connection_view(sb: Sandbox, row: dict[str, Any]) -> dict[str, Any]:
    return views.connection(row, redact_metadata(sb.catalog.get(row["type"]), row["metadata"]))


def query_filters(request: Request, *keys: str) -> dict[str, str]:
    filters = {k: v for k in keys if (v := request.query_params.get(k))}
    if len(filters.get("event", "")) > models.EVENT_NAME_MAX:  # no stored name is longer
        raise bad_request(
            "event filter too long", "event", f'must be at most {models.EVENT_NAME_MAX} characters, e.g. "user.signup"'
        )
    return filters


def list_page(request: Request, scope: str) -> tuple[int | None, int]:
    return views.decode_cursor(scope, request.query_params.get("cursor")), views.parse_limit(
        request.query_params.get("limit")
    )


def status_filter(request: Request) -> dict[str, str]:
    filters = query_filters(request, "event", "resource", "resource_id", "status")
    if "status" in filters and filters["status"] not in EVENT_STATUSES:
        raise bad_request("invalid status filter", "status", f"must be one of {', '.join(EVENT_STATUSES)}")
    return filters


class StoredText:
    """Delivery outcomes are scrubbed of the connection's secrets before they are stored; rows written
    before that (or by an older sandbox on the same data directory) may still quote one, so the text of
    rule events and attempts is scrubbed again on the way out. One per request: scrubbers are cached."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self._scrubbers: dict[str, Scrubber] = {}

    def scrubber(self, connection_id: str) -> Scrubber:
        if connection_id not in self._scrubbers:
            row = self.sb.store.get_connection(None, connection_id, include_deleted=True)
            self._scrubbers[connection_id] = Scrubber(
                connection_secrets(self.sb.catalog.get(row["type"]), row["metadata"]) if row else set()
            )
        return self._scrubbers[connection_id]

    def rule_event(self, row: dict[str, Any]) -> dict[str, Any]:
        if not row.get("last_error"):
            return row
        return {**row, "last_error": self.scrubber(row["connection_id"]).text(row["last_error"])}

    def rule_events(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.rule_event(r) for r in rows]

    def attempt(self, row: dict[str, Any], connection_id: str) -> dict[str, Any]:
        scrubber = self.scrubber(connection_id)
        if not scrubber.forms:
            return row
        response = row["response"] and json.dumps(scrubber.deep(json.loads(row["response"])))
        return {**row, "message": row["message"] and scrubber.text(row["message"]), "response": response}


def event_view(sb: Sandbox, row: dict[str, Any], with_payload: bool = False) -> dict[str, Any]:
    rule_events = StoredText(sb).rule_events(sb.store.rule_events_for([row["id"]])[row["id"]])
    return views.event(row, rule_events, with_payload=with_payload)


def events_page(sb: Sandbox, rows: list[dict[str, Any]], limit: int, scope: str) -> dict[str, Any]:
    shown = rows[:limit]
    by_event = sb.store.rule_events_for([r["id"] for r in shown])
    text = StoredText(sb)
    return views.page(rows, limit, scope, lambda r: views.event(r, text.rule_events(by_event.get(r["id"], []))))


# -- workspaces -----------------------------------------------------------------------------------


@api()
async def list_workspaces(request: Request, sb: Sandbox, p: Principal) -> Any:
    after, limit = list_page(request, "workspaces")
    return views.page(sb.store.list_workspaces(p.org_id, after, limit), limit, "workspaces", views.workspace)


@api()
async def create_workspace(request: Request, sb: Sandbox, p: Principal) -> Any:
    req = validate(models.CreateWorkspaceRequest, await read_json(request))
    if sb.store.workspace_name_taken(p.org_id, req.name):
        raise conflict(f'a workspace named "{req.name}" already exists', "name")
    wid = new_id()
    row = sb.store.create_workspace(
        p.org_id, req.name, req.description, new_publishable_key(p.org_id, wid), "Default publishable key"
    )
    return created({"workspace": views.workspace(row)})


@api()
async def get_workspace(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = workspace_or_404(sb, p, path_id(request, "workspace_id", "workspace"))
    return views.workspace(row, with_key=True)


@api()
async def update_workspace(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = workspace_or_404(sb, p, path_id(request, "workspace_id", "workspace"))
    req = validate(models.UpdateWorkspaceRequest, await read_json(request))
    if sb.store.workspace_name_taken(p.org_id, req.name, except_id=row["id"]):
        raise conflict(f'a workspace named "{req.name}" already exists', "name")
    # An omitted description keeps the current one; an explicit null clears it.
    description = req.description if "description" in req.model_fields_set else row["description"]
    return views.workspace(sb.store.update_workspace(p.org_id, row["id"], req.name, description))


@api()
async def workspace_connections(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = workspace_or_404(sb, p, path_id(request, "workspace_id", "workspace"))
    after, limit = list_page(request, "connections")
    rows = sb.store.list_connections(p.org_id, row["id"], after, limit)
    return views.page(rows, limit, "connections", lambda r: connection_view(sb, r))


@api()
async def workspace_event_types(request: Request, sb: Sandbox, p: Principal) -> Any:
    """Bare array, derived from the events and rules seen in the workspace."""
    row = workspace_or_404(sb, p, path_id(request, "workspace_id", "workspace"))
    return [views.catalog_entry(r) for r in sb.store.catalog(row["id"], "event")]


@api()
async def workspace_resources(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = workspace_or_404(sb, p, path_id(request, "workspace_id", "workspace"))
    return [views.catalog_entry(r) for r in sb.store.catalog(row["id"], "resource")]


@api()
async def workspace_events(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = workspace_or_404(sb, p, path_id(request, "workspace_id", "workspace"))
    after, limit = list_page(request, "events")
    rows = sb.store.list_events(p.org_id, row["id"], status_filter(request), after, limit)
    return events_page(sb, rows, limit, "events")


@api()
async def workspace_rules(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = workspace_or_404(sb, p, path_id(request, "workspace_id", "workspace"))
    after, limit = list_page(request, "rules")
    filters = query_filters(request, "event", "resource", "resource_id")
    return views.page(sb.store.list_rules(p.org_id, row["id"], filters, after, limit), limit, "rules", views.rule)


# -- connections ----------------------------------------------------------------------------------


@api()
async def list_connections(request: Request, sb: Sandbox, p: Principal) -> Any:
    after, limit = list_page(request, "connections")
    rows = sb.store.list_connections(p.org_id, None, after, limit)
    return views.page(rows, limit, "connections", lambda r: connection_view(sb, r))


async def _url_test(sb: Sandbox, spec: IntegrationSpec, metadata: dict[str, Any]) -> None:
    """Meshes tests a webhook URL on save unless skip_url_test is on. The sandbox runs that test only
    when skip_url_test is explicitly "false": left out, it counts as skipped, so a local receiver
    sees only real deliveries (tests count them)."""
    if spec.type != "webhook" or str(metadata.get("skip_url_test", "")).lower() != "false":
        return
    problem = await sb.destinations.test_url(metadata)
    if problem:
        raise unprocessable("the webhook URL test failed", [("metadata.url", problem)])


@api()
async def create_connection(request: Request, sb: Sandbox, p: Principal) -> Any:
    req = validate(models.CreateConnectionRequest, await read_json(request))
    workspace = workspace_or_404(sb, p, req.workspace.lower(), "workspace")
    spec = sb.spec(req.type.value)
    check_connection_metadata(spec, req.metadata)
    check_connection_name_free(sb.store.connection_name_taken(workspace["id"], req.name), req.name)
    await _url_test(sb, spec, req.metadata)
    row = sb.store.create_connection(
        p.org_id, workspace["id"], spec.type, req.name, req.metadata, bool(req.hidden), p.created_by
    )
    return created({"connection": connection_view(sb, row)})


@api()
async def get_connection(request: Request, sb: Sandbox, p: Principal) -> Any:
    return connection_view(sb, connection_or_404(sb, p, path_id(request, "connection_id", "connection")))


@api()
async def update_connection(request: Request, sb: Sandbox, p: Principal) -> Any:
    """PUT takes the full metadata; credentials sent back as "********" keep their stored values.
    Changing the metadata of a connection made inactive by rejected credentials reactivates it."""
    row = connection_or_404(sb, p, path_id(request, "connection_id", "connection"))
    req = validate(models.UpdateConnectionRequest, await read_json(request))
    spec = sb.spec(row["type"])
    metadata = keep_redacted(spec, req.metadata, row["metadata"])
    check_connection_metadata(spec, metadata, for_update=True)
    check_connection_name_free(
        sb.store.connection_name_taken(row["workspace_id"], req.name, except_id=row["id"]), req.name
    )
    changed = metadata != row["metadata"]
    if changed:
        await _url_test(sb, spec, metadata)
    reactivate = should_reactivate(row, changed)
    hidden = bool(req.hidden) if req.hidden is not None else bool(row["hidden"])
    sb.store.update_connection(row["id"], req.name, metadata, hidden, reactivate)
    return connection_view(sb, sb.store.get_connection(p.org_id, row["id"]))  # type: ignore[arg-type]


@api()
async def delete_connection(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = connection_or_404(sb, p, path_id(request, "connection_id", "connection"))
    body = await read_json(request, required=False)
    req = validate(models.DeleteConnectionRequest, body if body is not None else {})
    check_connection_deletable(sb.store.active_rule_count(row["id"]), force=bool(req.force_delete))
    sb.store.delete_connection(row["id"])
    return {"id": row["id"], "type": row["type"]}


@api()
async def connection_actions(request: Request, sb: Sandbox, p: Principal) -> Any:
    """Live action data keyed by collection; webhooks have none (`{}`)."""
    row = connection_or_404(sb, p, path_id(request, "connection_id", "connection"))
    spec = sb.spec(row["type"])
    check_provider_reachable(spec, row)
    record = next(r for r in sb.records if r["type"] == row["type"])
    return provider_data.action_data(record, row["id"])


def _fields_of(sb: Sandbox, row: dict[str, Any]) -> list[dict[str, Any]]:
    record = next(r for r in sb.records if r["type"] == row["type"])
    return provider_data.field_defs(record, row["id"])


@api()
async def connection_fields(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = connection_or_404(sb, p, path_id(request, "connection_id", "connection"))
    if not provider_data.has_field_mapping(row["type"]):
        raise no_mapping(row)
    refresh_text = request.query_params.get("refresh", "false").lower()
    if refresh_text not in ("true", "false", "1", "0"):
        raise bad_request("invalid refresh flag", "refresh", "must be true or false")
    refresh = refresh_text in ("true", "1")
    if refresh:
        check_provider_reachable(sb.spec(row["type"]), row)
    fields = _fields_of(sb, row)
    meta = sb.store.field_catalog_row(row["id"], refresh, p.created_by)
    return {
        "id": meta["id"],
        "workspace_id": row["workspace_id"],
        "connection_id": row["id"],
        "integration_type": row["type"],
        "catalog_version": provider_data.catalog_version(fields),
        "refreshed_at": meta["refreshed_at"],
        "created_by": meta["created_by"],
        "created_at": meta["created_at"],
        "updated_at": meta["updated_at"],
        "fields": fields,
    }


def _mapping_view(row: dict[str, Any], mapping: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": mapping["id"],
        "mapping_id": mapping["mapping_id"],
        "version": mapping["version"],
        "workspace_id": mapping["workspace_id"],
        "connection_id": row["id"],
        "integration_type": mapping["integration_type"],
        "name": mapping["name"],
        "schema": mapping["schema"],
        "catalog_version": mapping["catalog_version"],
        "created_by": mapping["created_by"],
        "created_at": mapping["created_at"],
        "updated_at": mapping["updated_at"],
    }


@api()
async def get_mapping(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = connection_or_404(sb, p, path_id(request, "connection_id", "connection"))
    if not provider_data.has_field_mapping(row["type"]):
        raise no_mapping(row)
    stored = sb.store.get_mapping(row["id"])
    if stored is not None:
        return {"status": "stored", "mapping": _mapping_view(row, stored)}
    fields = _fields_of(sb, row)
    generated_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"meshes-sandbox:mapping:{row['id']}"))
    mapping = {
        "id": generated_id,
        "mapping_id": generated_id,
        "version": 0,
        "workspace_id": row["workspace_id"],
        "integration_type": row["type"],
        "name": "Default mapping",
        "schema": provider_data.generated_schema(fields),
        "catalog_version": provider_data.catalog_version(fields),
        "created_by": "system",
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    return {"status": "generated", "mapping": _mapping_view(row, mapping)}


@api()
async def put_mapping(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = connection_or_404(sb, p, path_id(request, "connection_id", "connection"))
    if not provider_data.has_field_mapping(row["type"]):
        raise no_mapping(row)
    body = await read_json(request)
    try:
        req = check(models.UpdateMappingsRequest, body)
    except InvalidRequest as exc:
        # Schema problems are "invalid mapping schema" (422); anything else is a bad request (400).
        status = 422 if all(pr.param.startswith("schema") for pr in exc.problems) else 400
        raise problems_error(exc.problems, status) from None
    stored = sb.store.get_mapping(row["id"])
    check_mapping_target(row, stored, req)
    fields = _fields_of(sb, row)
    schema = req.mapping_schema.model_dump(mode="json", exclude_none=True)
    check_mapping_fields(row, schema, fields)
    name = req.name or (schema.get("meta") or {}).get("name") or "Default mapping"
    mapping = sb.store.put_mapping(row, schema, name, provider_data.catalog_version(fields), p.created_by)
    return {"status": "stored", "mapping": _mapping_view(row, mapping)}


# -- rules ----------------------------------------------------------------------------------------


@api()
async def list_rules(request: Request, sb: Sandbox, p: Principal) -> Any:
    after, limit = list_page(request, "rules")
    filters = query_filters(request, "event", "resource", "resource_id")
    return views.page(sb.store.list_rules(p.org_id, None, filters, after, limit), limit, "rules", views.rule)


@api()
async def create_rule(request: Request, sb: Sandbox, p: Principal) -> Any:
    """The rule's ids are not checked against live action data (the API is permissive there): a rule
    pointing at a list that does not exist fails at delivery with rejected_client_error."""
    req = validate(models.CreateRuleRequest, await read_json(request))
    workspace = workspace_or_404(sb, p, req.workspace.lower(), "workspace")
    conn = connection_or_404(sb, p, req.connection.lower(), "connection")
    check_rule_target(workspace, conn)
    metadata = req.metadata.model_dump(mode="json")
    check_rule_metadata(sb.spec(conn["type"]), metadata)
    identical = sb.store.find_identical_rule(
        workspace["id"], conn["id"], req.event, req.resource, req.resource_id, metadata
    )
    check_rule_unique(identical is not None)
    row = sb.store.create_rule(
        p.org_id,
        workspace["id"],
        conn["id"],
        conn["type"],
        req.event,
        req.resource,
        req.resource_id,
        metadata,
        req.active is not False,
        bool(req.hidden),
        p.created_by,
    )
    return created({"rule": views.rule(row)})


@api()
async def get_rule(request: Request, sb: Sandbox, p: Principal) -> Any:
    return views.rule(rule_or_404(sb, p, request))


@api()
async def delete_rule(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = rule_or_404(sb, p, request)
    sb.store.delete_rule(row["id"])
    return views.deleted_rule(row)


# -- events ---------------------------------------------------------------------------------------


class _WorkspaceCache:
    """Per-request workspace lookups (a bulk request names the same workspace a hundred times)."""

    def __init__(self, sb: Sandbox, principal: Principal) -> None:
        self.sb, self.principal = sb, principal
        self.known: dict[str, dict[str, Any]] = {}

    def get(self, workspace_id: str) -> dict[str, Any]:
        if workspace_id not in self.known:
            self.known[workspace_id] = workspace_or_404(self.sb, self.principal, workspace_id, "workspace")
        return self.known[workspace_id]


def prepare_event(sb: Sandbox, p: Principal, item: Any, workspaces: _WorkspaceCache) -> NewEvent:
    """Validate one event body and find its workspace (publishable key → its own; JWT → `workspace`)."""
    if not isinstance(item, dict):
        raise bad_request(
            "an event must be a JSON object",
            "body",
            'must be an object like {"event": "user.signup", "payload": {...}}',
        )
    req = validate(models.EmitEventRequest, item)
    if p.kind == "publishable":
        if req.workspace and req.workspace.lower() != p.workspace_id:
            raise ApiError(
                403,
                "the publishable key belongs to another workspace",
                [("workspace", "must be omitted or be the publishable key's own workspace")],
            )
        workspace_id = p.workspace_id
    else:
        if not req.workspace:
            raise bad_request(
                "workspace is required with a machine token",
                "workspace",
                "is required when emitting with a machine JWT: the workspace id to emit into",
            )
        workspace_id = workspaces.get(req.workspace.lower())["id"]
    assert workspace_id is not None
    # Routed (its `rules` filled in) by `Store.insert_events`, inside the transaction that stores it.
    return NewEvent(
        new_id(), p.org_id, workspace_id, req.event, req.resource, req.resource_id, req.payload, p.created_by, now_iso()
    )


def _created_view(ev: NewEvent) -> dict[str, Any]:
    return views.event_created(
        {
            "id": ev.id,
            "event": ev.event,
            "resource": ev.resource,
            "resource_id": ev.resource_id,
            "workspace_id": ev.workspace_id,
            "created_by": ev.created_by,
            "created_at": ev.created_at,
        }
    )


@api(publishable=True)
async def emit_event(request: Request, sb: Sandbox, p: Principal) -> Any:
    ev = prepare_event(sb, p, await read_json(request), _WorkspaceCache(sb, p))
    sb.store.insert_events([ev], sb.policy.max_attempts)
    if ev.rules:
        sb.engine.wake()
    return created({"event": _created_view(ev)})


@api(publishable=True)
async def emit_bulk(request: Request, sb: Sandbox, p: Principal) -> Any:
    body = await read_json(request)
    if not isinstance(body, list):
        raise bad_request(
            "the bulk body must be a JSON array of events",
            "body",
            'must be an array of 1–100 events, e.g. [{"event": "user.signup", "payload": {...}}]',
        )
    if not 1 <= len(body) <= models.BULK_LIMIT:
        raise bad_request(
            f"a bulk request takes 1 to {models.BULK_LIMIT} events (got {len(body)})",
            "body",
            f"must hold 1 to {models.BULK_LIMIT} events; split larger batches",
        )
    workspaces = _WorkspaceCache(sb, p)
    accepted: list[NewEvent] = []
    records: list[dict[str, Any]] = []
    for index, item in enumerate(body):
        try:
            ev = prepare_event(sb, p, item, workspaces)
        except ApiError as exc:
            records.append({**exc.body(), "index": index})
            continue
        accepted.append(ev)
        records.append(_created_view(ev))
    if accepted:
        sb.store.insert_events(accepted, sb.policy.max_attempts)
        if any(ev.rules for ev in accepted):
            sb.engine.wake()
    errors = len(body) - len(accepted)
    result = {"count": len(accepted), "error_count": errors, "records": records}
    if not accepted:
        first = next(r for r in records if "error" in r)
        data = [(f"[{r['index']}].{d['param']}", d["msg"]) for r in records for d in r["error"].get("data", [])]
        body_400 = error_body(400, f"all {errors} events were rejected; first: {first['error']['message']}", data)
        return JSONResponse({**body_400, **result}, status_code=400)
    return JSONResponse(result, status_code=201 if not errors else 207)


@api()
async def list_events(request: Request, sb: Sandbox, p: Principal) -> Any:
    after, limit = list_page(request, "events")
    rows = sb.store.list_events(p.org_id, None, status_filter(request), after, limit)
    return events_page(sb, rows, limit, "events")


@api()
async def get_event(request: Request, sb: Sandbox, p: Principal) -> Any:
    return event_view(sb, event_or_404(sb, p, request))


@api()
async def get_event_payload(request: Request, sb: Sandbox, p: Principal) -> Any:
    return event_view(sb, event_or_404(sb, p, request), with_payload=True)


@api()
async def retry_rule_event(request: Request, sb: Sandbox, p: Principal) -> Any:
    _, rule_event = rule_event_or_404(sb, p, request)
    sb.queue.force_retry(rule_event["id"], check_retry)  # judged inside the write transaction
    sb.engine.wake()
    return rule_event_now(sb, rule_event)


def rule_event_now(sb: Sandbox, rule_event: dict[str, Any]) -> dict[str, Any]:
    """The rule event's view as stored now (rule events are never deleted, so the re-read finds it)."""
    row = sb.store.get_rule_event(rule_event["event_id"], rule_event["rule_id"])
    assert row is not None
    return views.rule_event(StoredText(sb).rule_event(row))


@api()
async def list_attempts(request: Request, sb: Sandbox, p: Principal) -> Any:
    _, rule_event = rule_event_or_404(sb, p, request)
    after, limit = list_page(request, "attempts")
    text, connection_id = StoredText(sb), rule_event["connection_id"]
    return views.page(
        sb.store.list_attempts(rule_event["id"], after, limit),
        limit,
        "attempts",
        lambda r: views.attempt(text.attempt(r, connection_id)),
    )


def _attempt_or_404(sb: Sandbox, p: Principal, request: Request) -> dict[str, Any]:
    _, rule_event = rule_event_or_404(sb, p, request)
    attempt_id = path_id(request, "attempt_id", "attempt")
    row = sb.store.get_attempt(rule_event["id"], attempt_id)
    if row is None:
        raise not_found("attempt", attempt_id)
    return StoredText(sb).attempt(row, rule_event["connection_id"])


@api()
async def get_attempt(request: Request, sb: Sandbox, p: Principal) -> Any:
    return views.attempt(_attempt_or_404(sb, p, request))


@api()
async def attempt_response_details(request: Request, sb: Sandbox, p: Principal) -> Any:
    return views.response_details(_attempt_or_404(sb, p, request))


@api()
async def cancel_rule_event(request: Request, sb: Sandbox, p: Principal) -> Any:
    """A request in flight may finish within a grace (see `delivery.CANCEL_GRACE`); if it delivers, the rule
    event ends `completed` after all. Past the grace it is cut off, freeing its delivery slot."""
    _, rule_event = rule_event_or_404(sb, p, request)
    sb.queue.cancel_rule_event(rule_event["id"], rule_event_needs_cancel)
    sb.engine.wake()  # an attempt in flight for it is cut off after the grace, freeing its slot
    return rule_event_now(sb, rule_event)


@api()
async def cancel_event(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = event_or_404(sb, p, request)
    sb.queue.cancel_event(row["id"], check_event_canceled)
    sb.engine.wake()
    fresh = sb.store.get_event(p.org_id, row["id"])
    return event_view(sb, fresh)  # type: ignore[arg-type]


# -- integrations ---------------------------------------------------------------------------------


@api()
async def list_integrations(request: Request, sb: Sandbox, p: Principal) -> Any:
    after, limit = list_page(request, "integrations")
    rows: list[dict[str, Any]] = [{"seq": i + 1, "record": r} for i, r in enumerate(sb.records)]
    rows = [r for r in rows if after is None or r["seq"] > after][: limit + 1]
    return views.page(rows, limit, "integrations", lambda r: r["record"])


# -- sessions -------------------------------------------------------------------------------------


def _token() -> tuple[str, str]:
    token = "mst_" + secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


def _session_token_view(row: dict[str, Any], token: str) -> dict[str, Any]:
    out = {
        "session_id": row["id"],
        "access_token": token,
        "expires_in": row["ttl_seconds"],
        "expires_at": row["expires_at"],
        "workspace_id": row["workspace_id"],
        "role": row["role"],
        "session_type": row["session_type"],
    }
    for key in ("resource", "resource_id"):
        if row[key] is not None:
            out[key] = row[key]
    return out


@api()
async def create_session(request: Request, sb: Sandbox, p: Principal) -> Any:
    req = validate(models.CreateSessionRequest, await read_json(request))
    workspace = workspace_or_404(sb, p, req.workspace_id.lower(), "workspace_id")
    token, token_hash = _token()
    ttl = req.ttl_seconds or 1800
    launch_ttl = req.launch_ttl_seconds or 30
    start = now()
    page = req.launch_page or "dashboard"
    row = sb.store.create_session(
        {
            "id": f"sess_{uuid.uuid4()}",
            "org_id": p.org_id,
            "workspace_id": workspace["id"],
            "role": req.role or "member",
            "session_type": req.session_type or "workspace",
            "external_user_id": req.external_user_id,
            "resource": req.resource,
            "resource_id": req.resource_id,
            "launch_page": page,
            "allowed_origins": json.dumps(req.allowed_origins or []),
            "scopes": json.dumps(req.scopes or []),
            "status": "active",
            "token_hash": token_hash,
            "ttl_seconds": ttl,
            "expires_epoch": start + ttl,
            "created_at": iso(start),
            "expires_at": iso(start + ttl),
            "updated_at": iso(start),
        }
    )
    launch_token = "mlt_" + secrets.token_urlsafe(24)
    base = str(request.base_url).rstrip("/")
    return {
        **_session_token_view(row, token),
        "launch_token": launch_token,
        "launch_expires_at": iso(start + launch_ttl),
        "launch_url": f"{base}/embed/workspace/{page}?launch={launch_token}",
    }


@api()
async def list_sessions(request: Request, sb: Sandbox, p: Principal) -> Any:
    fields = set(models.SessionListQuery.model_fields) - {"limit"}
    limit = views.parse_limit(request.query_params.get("limit"))  # stricter than the model's int coercion
    query = validate(models.SessionListQuery, {k: v for k, v in request.query_params.items() if k in fields})
    workspace = workspace_or_404(sb, p, query.workspace_id.lower(), "workspace_id")
    after = views.decode_cursor("sessions", query.cursor)
    filters = {k: v for k in ("status", "resource", "resource_id") if (v := getattr(query, k))}
    rows = sb.store.list_sessions(p.org_id, workspace["id"], filters, after, limit)
    moment = now()
    return views.page(rows, limit, "sessions", lambda r: views.session_summary(r, moment))


def _session_or_404(sb: Sandbox, p: Principal, request: Request) -> dict[str, Any]:
    session_id = request.path_params["session_id"]
    row = sb.store.get_session(p.org_id, session_id)
    if row is None:
        raise not_found("session", session_id[:80])
    return row


@api()
async def refresh_session(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = _session_or_404(sb, p, request)
    check_session_refreshable(row, now())
    token, token_hash = _token()
    start = now()
    sb.store.update_session(
        row["id"],
        token_hash=token_hash,
        expires_epoch=start + row["ttl_seconds"],
        expires_at=iso(start + row["ttl_seconds"]),
        updated_at=iso(start),
    )
    return _session_token_view(sb.store.get_session(p.org_id, row["id"]), token)  # type: ignore[arg-type]


@api()
async def revoke_session(request: Request, sb: Sandbox, p: Principal) -> Any:
    row = _session_or_404(sb, p, request)
    if row["status"] == "revoked":
        return {"revoked": False}
    sb.store.update_session(row["id"], status="revoked", updated_at=now_iso())
    return {"revoked": True}


# -- outside the API ------------------------------------------------------------------------------


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def embed(request: Request) -> Response:
    """Where launch_url points: the embedded dashboard is not emulated, so say so plainly."""
    return HTMLResponse(
        "<!doctype html><title>Meshes sandbox</title><p>The Meshes embedded dashboard is not "
        "emulated by the local sandbox. The session API works; use the REST endpoints.</p>"
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        message = f"no endpoint {request.method} {request.url.path} (the API lives under /api/v1)"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = "request failed"
    return JSONResponse(error_body(status, message), status_code=status)


V1 = "/api/v1"
ROUTES = [
    Route(f"{V1}/workspaces", list_workspaces, methods=["GET"]),
    Route(f"{V1}/workspaces", create_workspace, methods=["POST"]),
    Route(f"{V1}/workspaces/{{workspace_id}}", get_workspace, methods=["GET"]),
    Route(f"{V1}/workspaces/{{workspace_id}}", update_workspace, methods=["PUT"]),
    Route(f"{V1}/workspaces/{{workspace_id}}/connections", workspace_connections, methods=["GET"]),
    Route(f"{V1}/workspaces/{{workspace_id}}/event-types", workspace_event_types, methods=["GET"]),
    Route(f"{V1}/workspaces/{{workspace_id}}/resources", workspace_resources, methods=["GET"]),
    Route(f"{V1}/workspaces/{{workspace_id}}/events", workspace_events, methods=["GET"]),
    Route(f"{V1}/workspaces/{{workspace_id}}/rules", workspace_rules, methods=["GET"]),
    Route(f"{V1}/connections", list_connections, methods=["GET"]),
    Route(f"{V1}/connections", create_connection, methods=["POST"]),
    Route(f"{V1}/connections/{{connection_id}}", get_connection, methods=["GET"]),
    Route(f"{V1}/connections/{{connection_id}}", update_connection, methods=["PUT"]),
    Route(f"{V1}/connections/{{connection_id}}", delete_connection, methods=["DELETE"]),
    Route(f"{V1}/connections/{{connection_id}}/actions", connection_actions, methods=["GET"]),
    Route(f"{V1}/connections/{{connection_id}}/fields", connection_fields, methods=["GET"]),
    Route(f"{V1}/connections/{{connection_id}}/mappings/default", get_mapping, methods=["GET"]),
    Route(f"{V1}/connections/{{connection_id}}/mappings/default", put_mapping, methods=["PUT"]),
    Route(f"{V1}/rules", list_rules, methods=["GET"]),
    Route(f"{V1}/rules", create_rule, methods=["POST"]),
    Route(f"{V1}/rules/{{rule_id}}", get_rule, methods=["GET"]),
    Route(f"{V1}/rules/{{rule_id}}", delete_rule, methods=["DELETE"]),
    Route(f"{V1}/events", list_events, methods=["GET"]),
    Route(f"{V1}/events", emit_event, methods=["POST"]),
    Route(f"{V1}/events/bulk", emit_bulk, methods=["POST"]),
    Route(f"{V1}/events/{{event_id}}", get_event, methods=["GET"]),
    Route(f"{V1}/events/{{event_id}}/payload", get_event_payload, methods=["GET"]),
    Route(f"{V1}/events/{{event_id}}/cancel", cancel_event, methods=["POST"]),
    Route(f"{V1}/events/{{event_id}}/rules/{{rule_id}}/retry", retry_rule_event, methods=["POST"]),
    Route(f"{V1}/events/{{event_id}}/rules/{{rule_id}}/cancel", cancel_rule_event, methods=["POST"]),
    Route(f"{V1}/events/{{event_id}}/rules/{{rule_id}}/attempts", list_attempts, methods=["GET"]),
    Route(f"{V1}/events/{{event_id}}/rules/{{rule_id}}/attempts/{{attempt_id}}", get_attempt, methods=["GET"]),
    Route(
        f"{V1}/events/{{event_id}}/rules/{{rule_id}}/attempts/{{attempt_id}}/response-details",
        attempt_response_details,
        methods=["GET"],
    ),
    Route(f"{V1}/integrations", list_integrations, methods=["GET"]),
    Route(f"{V1}/sessions", create_session, methods=["POST"]),
    Route(f"{V1}/sessions", list_sessions, methods=["GET"]),
    Route(f"{V1}/sessions/{{session_id}}/refresh", refresh_session, methods=["POST"]),
    Route(f"{V1}/sessions/{{session_id}}", revoke_session, methods=["DELETE"]),
    Route("/healthz", health, methods=["GET"]),
    Route("/embed/{rest:path}", embed, methods=["GET"]),
]


def create_app(
    data_dir: Path,
    retry_base: float | None = None,
    max_attempts: int | None = None,
    delivery_timeout: float | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    shutdown_grace: float = 2.0,
    per_connection: int = DEFAULT_PER_CONNECTION,
) -> Starlette:
    """The sandbox app; state (store, worker, HTTP client) is built in its lifespan."""
    policy = RetryPolicy(
        base=retry_base if retry_base is not None else DEFAULT_RETRY_BASE,
        max_attempts=max_attempts if max_attempts is not None else DEFAULT_MAX_ATTEMPTS,
    )
    timeout = delivery_timeout if delivery_timeout is not None else DEFAULT_DELIVERY_TIMEOUT

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hide_url_userinfo_in_logs()
        data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(data_dir / "sandbox.db")
        seed = ensure_seed(store)
        store.wait_for_lock(LOOP_BUSY_MS)  # from here on this connection serves requests on the loop
        engine_store = Store(data_dir / "sandbox.db")  # the delivery engine's own, used off the loop
        catalog = load_catalog()
        # trust_env=False: deliveries to loopback receivers must never detour through a proxy.
        client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            follow_redirects=False,
            trust_env=False,
        )
        destinations = Destinations(catalog, store, client, deadline=timeout)
        engine = DeliveryEngine(
            engine_store, destinations, policy, concurrency, EngineLock(data_dir / "delivery.lock"), per_connection
        )
        app.state.sandbox = Sandbox(
            store, Authenticator(store), catalog, catalog.records(), destinations, engine, policy, seed
        )
        engine.start()
        try:
            yield
        finally:
            if hasattr(app.state, "announced"):
                withdraw(*app.state.announced)
            await engine.stop(shutdown_grace)
            await client.aclose()
            engine_store.close()
            store.close()

    # Their modules import this one.
    from meshes_mcp.sandbox.organizations import ROUTES as ORGANIZATION_ROUTES
    from meshes_mcp.sandbox.scenarios.practice import ROUTES as PRACTICE_ROUTES

    app = Starlette(
        routes=[*ROUTES, *PRACTICE_ROUTES, *ORGANIZATION_ROUTES],
        lifespan=lifespan,
        exception_handlers={404: _http_error, 405: _http_error},
    )
    # No redirect for a trailing slash (Starlette's default): an API client gets a 404 error body, not an
    # empty 307 it may not follow.
    app.router.redirect_slashes = False
    return app
