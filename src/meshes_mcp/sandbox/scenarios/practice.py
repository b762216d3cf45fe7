"""Sandbox-only endpoints that make a practice loop complete (outside the Meshes API, under /sandbox):

- `POST /sandbox/inbox/{name}` — a webhook receiver the sandbox serves itself on its own loopback
  address: answers 200 `{"ok": true}` and counts what arrived. `GET /sandbox/inbox/{name}` reads the
  counts: `received` (requests), `deliveries` (distinct X-Meshes-Delivery-Id values), `duplicates`
  (requests repeating a delivery id already received: a delivery that reached the receiver twice).
  Counts live in memory, per sandbox process, and start at zero with each start.
- `POST /sandbox/connections/{id}/reconnect` — the person's step of an OAuth connection (in Meshes:
  "Reconnect" in the dashboard, going through the provider's consent screen). Machine-key auth like
  the API; only OAuth integrations (others are fixed through the API with new credentials); answers
  `{"reconnected": bool, "connection": {...}}` (false when it was already active).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshes_mcp.sandbox.app import Sandbox, api, connection_or_404, connection_view, path_id
from meshes_mcp.sandbox.clock import now_iso
from meshes_mcp.sandbox.errors import ApiError, bad_request
from meshes_mcp.sandbox.store import Store

INBOX_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
INBOX_BODY_LIMIT = 1024 * 1024
TRACKED_DELIVERIES = 200_000  # distinct delivery ids remembered per inbox; beyond that only requests count
NOT_OAUTH = "connections authenticate with credentials, not OAuth: nothing to reconnect"


@dataclass
class InboxCounts:
    received: int = 0
    duplicates: int = 0
    last_received_at: str | None = None
    seen: set[str] = field(default_factory=set)
    capped: bool = False

    def view(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": name,
            "received": self.received,
            "deliveries": len(self.seen),
            "duplicates": self.duplicates,
            "last_received_at": self.last_received_at,
        }
        if self.capped:
            out["note"] = f"only the first {TRACKED_DELIVERIES} distinct deliveries are tracked for duplicates"
        return out


class Inboxes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._boxes: dict[str, InboxCounts] = {}

    def record(self, name: str, delivery_id: str | None) -> None:
        with self._lock:
            box = self._boxes.setdefault(name, InboxCounts())
            box.received += 1
            box.last_received_at = now_iso()
            if not delivery_id:
                return
            if delivery_id in box.seen:
                box.duplicates += 1
            elif len(box.seen) < TRACKED_DELIVERIES:
                box.seen.add(delivery_id)
            else:
                box.capped = True

    def view(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self._boxes.get(name, InboxCounts()).view(name)


def _inboxes(request: Request) -> Inboxes:
    state = request.app.state
    boxes = getattr(state, "inboxes", None)
    if boxes is None:
        boxes = state.inboxes = Inboxes()
    return boxes


def _inbox_name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not INBOX_NAME.fullmatch(name):
        raise bad_request("invalid inbox name", "name", 'must be 1–64 of A-Z a-z 0-9 . _ -, e.g. "signups"')
    return name


async def inbox_receive(request: Request) -> Response:
    try:
        name = _inbox_name(request)
        size = 0
        async for chunk in request.stream():  # read (and drop) the body, bounded
            size += len(chunk)
            if size > INBOX_BODY_LIMIT:
                raise ApiError(413, f"the inbox takes bodies up to {INBOX_BODY_LIMIT // 1024} KiB")
    except ApiError as exc:
        return JSONResponse(exc.body(), status_code=exc.status)
    _inboxes(request).record(name, request.headers.get("x-meshes-delivery-id"))
    return JSONResponse({"ok": True})


async def inbox_counts(request: Request) -> Response:
    try:
        name = _inbox_name(request)
    except ApiError as exc:
        return JSONResponse(exc.body(), status_code=exc.status)
    return JSONResponse(_inboxes(request).view(name))


@api()
async def reconnect(request: Request, sb: Sandbox, p: Any) -> Any:
    row = connection_or_404(sb, p, path_id(request, "connection_id", "connection"))
    spec = sb.spec(row["type"])
    if not spec.is_oauth:
        raise bad_request(
            f"{spec.name} {NOT_OAUTH}",
            "connection_id",
            f"update its credentials instead: PUT /api/v1/connections/{row['id']} (update_connection) with new "
            "metadata reactivates it",
        )
    was_inactive = not row["active"]
    if was_inactive:
        reconnect_connection(sb.store, row["id"])
    fresh = sb.store.get_connection(p.org_id, row["id"])
    return {"reconnected": was_inactive, "connection": connection_view(sb, fresh)}  # type: ignore[arg-type]


def reconnect_connection(store: Store, connection_id: str) -> None:
    """What completing the provider's consent screen does: a fresh grant, the connection active again."""
    with store.tx():
        store.set_connection_state(connection_id, True, None)


ROUTES = [
    Route("/sandbox/inbox/{name}", inbox_receive, methods=["POST", "PUT", "PATCH"]),
    Route("/sandbox/inbox/{name}", inbox_counts, methods=["GET"]),
    Route("/sandbox/connections/{connection_id}/reconnect", reconnect, methods=["POST"]),
]


# -- the person's step from a terminal ------------------------------------------------------------


def reconnect_from_cli(data_dir: Path, connection_id: str) -> dict[str, Any]:
    """`meshes-mcp sandbox reconnect <id>`: the person's step, written into `data_dir`'s database directly, so
    it works whether the sandbox is stopped or running. Reading the connection and reactivating it is one
    `BEGIN IMMEDIATE` transaction: SQLite serialises it with a sandbox that runs or starts meanwhile (they
    read connection state from the database for every delivery, so the change is seen at once). Never
    creates a database. Raises ValueError with a one-line reason on failure."""
    import sqlite3

    from meshes_mcp.api.catalog import load_catalog
    from meshes_mcp.api.models import require_uuid
    from meshes_mcp.api.problems import InvalidRequest

    try:
        require_uuid("connection_id", connection_id)
    except InvalidRequest as exc:
        raise ValueError(str(exc).replace("\n", " ")) from None
    database = Path(data_dir) / "sandbox.db"
    if not database.is_file():
        start = f"meshes-mcp sandbox --data-dir {data_dir}"
        raise ValueError(f"no sandbox data in {data_dir}: start the sandbox once with `{start}`")
    try:
        store = Store(database)
    except sqlite3.Error as exc:
        raise ValueError(f"cannot open the sandbox database in {data_dir}: {exc}") from None
    try:
        with store.tx():
            row = store.get_connection(None, connection_id)
            if row is None:
                where = f"the sandbox in {data_dir}"
                raise ValueError(f"no connection {connection_id} in {where} (list_connections shows the ids)")
            spec = load_catalog().get(row["type"])
            if spec is None or not spec.is_oauth:
                name = spec.name if spec is not None else row["type"]
                raise ValueError(f"{name} {NOT_OAUTH}; update_connection with new credentials reactivates it")
            was_inactive = not row["active"]
            if was_inactive:
                reconnect_connection(store, connection_id)  # inside this transaction (tx nests)
    except sqlite3.Error as exc:
        raise ValueError(f"cannot write to the sandbox database in {data_dir}: {exc}") from None
    finally:
        store.close()
    return {"reconnected": was_inactive, "connection": {"id": row["id"], "name": row["name"], "type": row["type"]}}
