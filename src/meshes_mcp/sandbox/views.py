"""Response shapes: store rows → the documented JSON objects, plus the pagination envelope.

Choices where the reference is silent:
- `count` is the number of records on this page;
- `next_cursor` is an opaque base64url token (matches `^[A-Za-z0-9_-]+$`) naming the last row seen
  and the list it belongs to; a cursor from another list, or a mangled one, is a 400 on `cursor`;
- optional string fields (`resource`, `resource_id`) are omitted when unset, timestamps that have
  not happened yet (`started_at`, `completed_at`) are null;
- rule events also carry `next_attempt_at` (when the next automatic attempt is due, or null);
- attempt records: `{id, event_id, rule, rule_event_id, attempt_number, outcome_code, http_status,
  message, started_at, completed_at, duration_ms, next_attempt_at, has_response_details}`;
  `outcome_code` and `completed_at` are null while the attempt is in flight.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from meshes_mcp.sandbox.bodies import plain_json
from meshes_mcp.sandbox.clock import iso
from meshes_mcp.sandbox.errors import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


# -- pagination -----------------------------------------------------------------------------------


def encode_cursor(scope: str, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{scope}:{seq}".encode()).rstrip(b"=").decode()


# Row sequence numbers are SQLite INTEGERs: at most 19 digits, ASCII only (`str.isdigit` also accepts
# "٥" and "²", which `int()` then refuses or reads as another number).
_SEQ = re.compile(r"[0-9]{1,18}")
_LIMIT = re.compile(r"[0-9]{1,3}")
MAX_CURSOR = 128  # characters: a real cursor is ~30


def decode_cursor(scope: str, cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    problem = ApiError(400, "invalid cursor", [("cursor", "must be the next_cursor of the previous page, unchanged")])
    if len(cursor) > MAX_CURSOR or not re.fullmatch(r"[A-Za-z0-9_-]+", cursor):
        raise problem
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise problem from None
    kind, _, seq = text.partition(":")
    if kind != scope or not _SEQ.fullmatch(seq):
        raise problem
    return int(seq)


def parse_limit(value: str | None) -> int:
    """ASCII digits only: no sign, spaces, underscores or other scripts' digits (all of which `int()` takes)."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    limit = int(value) if _LIMIT.fullmatch(value) else 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "invalid limit", [("limit", f"must be an integer from 1 to {MAX_LIMIT}, e.g. 50")])
    return limit


def page(rows: list[dict[str, Any]], limit: int, scope: str, render: Any) -> dict[str, Any]:
    """Envelope of a keyset page fetched with `limit + 1` rows."""
    more = len(rows) > limit
    rows = rows[:limit]
    records = [render(r) for r in rows]
    return {
        "count": len(records),
        "limit": limit,
        "next_cursor": encode_cursor(scope, rows[-1]["seq"]) if more and rows else None,
        "records": records,
    }


def _optional(out: dict[str, Any], row: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        if row.get(key) is not None:
            out[key] = row[key]
    return out


# -- objects --------------------------------------------------------------------------------------


def workspace(row: dict[str, Any], with_key: bool = False) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    if with_key:
        out["publishable_key"] = {"name": row["pub_key_name"], "public_key": row["pub_key"]}
    return out


def connection(row: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """`metadata` is passed already redacted: a connection response never holds a credential."""
    return {
        "id": row["id"],
        "workspace": row["workspace_id"],
        "type": row["type"],
        "name": row["name"],
        "metadata": metadata,
        "active": bool(row["active"]),
        "inactive_reason": row["inactive_reason"],
        "hidden": bool(row["hidden"]),
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def rule(row: dict[str, Any]) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "connection": row["connection_id"],
        "workspace": row["workspace_id"],
        "type": row["type"],
        "event": row["event"],
    }
    _optional(out, row, "resource", "resource_id")
    out.update(
        {
            "metadata": row["metadata"],
            "active": bool(row["active"]),
            "hidden": bool(row["hidden"]),
            "created_by": row["created_by"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }
    )
    return out


def deleted_rule(row: dict[str, Any]) -> dict[str, Any]:
    return _optional(
        {"id": row["id"], "connection": row["connection_id"], "event": row["event"], "type": row["type"]},
        row,
        "resource",
        "resource_id",
    )


def event_created(row: dict[str, Any]) -> dict[str, Any]:
    """The 201 body's event: `{id, event, resource?, resource_id?, type, workspace, created_by, created_at}`."""
    out = {"id": row["id"], "type": "event", "event": row["event"]}
    _optional(out, row, "resource", "resource_id")
    out.update({"workspace": row["workspace_id"], "created_by": row["created_by"], "created_at": row["created_at"]})
    return out


def _iso_or_none(epoch: float | None) -> str | None:
    return iso(epoch) if epoch is not None else None


def rule_event(row: dict[str, Any]) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "type": "rule",
        "workspace": row["workspace_id"],
        "event": row["event"],
        "event_id": row["event_id"],
    }
    _optional(out, row, "resource", "resource_id")
    out.update(
        {
            "connection": row["connection_id"],
            "rule": row["rule_id"],
            "integration_type": row["integration_type"],
            "status": row["status"],
            "attempt_count": row["attempt_count"],
            "started_at": row["started_at"],
            "completed_at": row["completed_at"],
            "last_error": row["last_error"],
            "next_attempt_at": _iso_or_none(row["next_attempt_at"]),
            "created_by": row["created_by"],
            "created_at": row["created_at"],
        }
    )
    return out


def event(
    row: dict[str, Any], rule_events: list[dict[str, Any]] | None = None, with_payload: bool = False
) -> dict[str, Any]:
    out = {"id": row["id"], "type": "event", "workspace": row["workspace_id"], "event": row["event"]}
    _optional(out, row, "resource", "resource_id")
    out.update(
        {
            "status": row["status"],
            "total_rules": row["total_rules"],
            "completed_count": row["completed_count"],
            "failed_count": row["failed_count"],
            "started_at": row["started_at"],
            "completed_at": row["completed_at"],
            "created_by": row["created_by"],
            "created_at": row["created_at"],
        }
    )
    if rule_events is not None:
        out["rule_events"] = [rule_event(r) for r in rule_events]
    if with_payload:
        out["payload"] = plain_json(json.loads(row["payload"]))
    return out


def attempt(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "event_id": row["event_id"],
        "rule": row["rule_id"],
        "rule_event_id": row["rule_event_id"],
        "attempt_number": row["attempt_number"],
        "outcome_code": row["outcome_code"],
        "http_status": row["http_status"],
        "message": row["message"],
        "started_at": row["started_at"],
        "completed_at": row["completed_at"],
        "duration_ms": row["duration_ms"],
        "next_attempt_at": row["next_attempt_at"],
        "has_response_details": row["response"] is not None,
    }


def response_details(row: dict[str, Any]) -> dict[str, Any]:
    """Captured response of one attempt: `{attempt_id, event_id, rule, attempt_number, outcome_code,
    http_status, message, captured, request, response}` where `response` is `{status, headers, body,
    body_truncated, body_size}` (headers carrying secrets are withheld, body cut at 4 KB) or null when
    nothing came back (timeout, network error, mapping error, in flight)."""
    captured = plain_json(json.loads(row["response"])) if row["response"] else None
    request = captured.pop("request", None) if captured else None
    simulated = captured.pop("simulated", False) if captured else False
    return {
        "attempt_id": row["id"],
        "event_id": row["event_id"],
        "rule": row["rule_id"],
        "attempt_number": row["attempt_number"],
        "outcome_code": row["outcome_code"],
        "http_status": row["http_status"],
        "message": row["message"],
        "captured": captured is not None,
        "simulated": simulated,
        "request": request,
        "response": captured,
    }


def catalog_entry(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "key": row["key"],
        "label": humanize(row["key"]),
        "description": None,
        "active": True,
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def humanize(key: str) -> str:
    """`user.signup` → `User Signup`."""
    words = re.split(r"[._:\-\s]+", key)
    return " ".join(w[:1].upper() + w[1:] for w in words if w) or key


def session_summary(row: dict[str, Any], now_epoch: float) -> dict[str, Any]:
    out = {
        "session_id": row["id"],
        "workspace_id": row["workspace_id"],
        "role": row["role"],
        "status": row["status"],
        "created_at": row["created_at"],
        "expires_at": row["expires_at"],
        "is_expired": now_epoch >= row["expires_epoch"],
        "session_type": row["session_type"],
    }
    return _optional(out, row, "external_user_id", "resource", "resource_id")
