"""The sandbox's domain rules: when a request is refused (400/409/422/425) whatever the HTTP around it.

The HTTP handlers (`meshes_mcp.sandbox.app`) read the request, load rows and call these; each rule
is a small function that raises the documented `ApiError` or returns. Field-level validation of
bodies is not here: it is the package's own request models and integration catalogue
(`meshes_mcp.api.models`, `meshes_mcp.api.catalog`), so the sandbox judges requests exactly as the
MCP layer expects the API to. Choices where the reference is silent are noted in `app`'s docstring
and at each rule.
"""

from __future__ import annotations

from typing import Any

from meshes_mcp.api.catalog import IntegrationSpec, validate_connection_metadata, validate_rule_metadata
from meshes_mcp.api.models import ACTIVE_STATUSES, TERMINAL_STATUSES
from meshes_mcp.sandbox.clock import iso
from meshes_mcp.sandbox.destinations import header_field_problems, secret_keys
from meshes_mcp.sandbox.errors import ApiError, bad_request, conflict, problems_error, summary, too_early, unprocessable

RETRY_IMMINENT = 1.0  # seconds: a retry due sooner than this answers 425

# -- connections ----------------------------------------------------------------------------------


def check_connection_metadata(spec: IntegrationSpec, metadata: dict[str, Any], *, for_update: bool = False) -> None:
    """Header-bound values first (their problems would make the catalogue's checks fail or mislead)."""
    header_problems = header_field_problems(metadata)
    if header_problems:
        raise ApiError(400, summary(header_problems), header_problems)
    problems = validate_connection_metadata(spec, metadata, for_update=for_update)
    if problems:
        raise problems_error(problems)


def check_connection_name_free(taken: bool, name: str) -> None:
    """Names are unique per workspace, case-insensitively (undocumented; a careful API refuses twins)."""
    if taken:
        raise conflict(f'a connection named "{name}" already exists in this workspace', "name")


def check_connection_deletable(active_rules: int, *, force: bool) -> None:
    """With active rules, deleting needs `force_delete` (the rules are then deactivated)."""
    if active_rules and not force:
        rules = f"{active_rules} active rule{'s' if active_rules != 1 else ''}"
        raise conflict(
            f"connection has {rules}: delete {'them' if active_rules != 1 else 'it'} first, or send "
            '{"force_delete": true} to delete anyway (its rules are deactivated and queued deliveries canceled)'
        )


def check_provider_reachable(spec: IntegrationSpec, row: dict[str, Any]) -> None:
    """Reading live data needs a working connection, like the real provider call would."""
    if not row["active"]:
        raise conflict(
            f"connection is inactive ({row['inactive_reason'] or 'inactive'}): reconnect it or update its "
            "credentials before reading live data"
        )
    for key in secret_keys(spec, row["metadata"]):
        value = row["metadata"].get(key)
        if isinstance(value, str) and value.lower().startswith("invalid"):
            raise unprocessable(
                f"{spec.name} rejected the connection's credentials (HTTP 401)",
                [(f"metadata.{key}", "was rejected by the provider: update the connection")],
            )


def should_reactivate(row: dict[str, Any], metadata_changed: bool) -> bool:
    """New metadata on a connection made inactive by rejected credentials gives it another chance."""
    return metadata_changed and not row["active"] and row["inactive_reason"] == "authentication_invalid"


# -- mappings -------------------------------------------------------------------------------------


def no_mapping(row: dict[str, Any]) -> ApiError:
    return unprocessable(f"{row['type']} connections send the event as-is and have no field mapping")


def check_mapping_target(row: dict[str, Any], stored: dict[str, Any] | None, request: Any) -> None:
    """The write names this connection's workspace and mapping, at the version the caller last read.

    `expected_version` must equal the stored version (0 when nothing is stored yet) or be omitted.
    """
    if request.workspace_id and request.workspace_id.lower() != row["workspace_id"]:
        raise bad_request(
            "workspace_id does not match the connection's workspace",
            "workspace_id",
            f"must be {row['workspace_id']} (the connection's workspace) or omitted",
        )
    current_version = stored["version"] if stored else 0
    if request.mapping_id and (stored is None or request.mapping_id.lower() != stored["mapping_id"]):
        raise conflict(
            "mapping_id is not this connection's stored default mapping; omit it or read it again", "mapping_id"
        )
    if request.expected_version is not None and request.expected_version != current_version:
        raise conflict(
            f"the default mapping is at version {current_version}, not {request.expected_version}: read it "
            "again, re-apply your change and retry (omit expected_version when nothing is stored yet)",
            "expected_version",
        )


def check_mapping_fields(row: dict[str, Any], schema: dict[str, Any], fields: list[dict[str, Any]]) -> None:
    """Every destination is a writable field of this connection, mapped once (422 otherwise)."""
    known = {f["key"]: f for f in fields}
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, field in enumerate(schema["fields"]):
        param = f"schema.fields[{index}].dest"
        dest = field["dest"]
        if dest not in known:
            problems.append(
                (param, f"is not a field of this {row['type']} connection; fields are {', '.join(known) or 'none'}")
            )
        elif dest in seen:
            problems.append((param, "maps the same destination field twice"))
        elif (known[dest].get("constraints") or {}).get("read_only"):
            problems.append((param, "is read-only at the destination"))
        seen.add(dest)
    if problems:
        raise ApiError(422, summary(problems), problems)


# -- rules ----------------------------------------------------------------------------------------


def check_rule_target(workspace: dict[str, Any], connection: dict[str, Any]) -> None:
    if connection["workspace_id"] != workspace["id"]:
        raise bad_request(
            "the connection belongs to another workspace",
            "connection",
            f"must be a connection of workspace {workspace['id']}; list them with "
            "GET /api/v1/workspaces/{workspace_id}/connections",
        )


def check_rule_metadata(spec: IntegrationSpec, metadata: dict[str, Any]) -> None:
    problems = validate_rule_metadata(spec, metadata)
    if problems:
        raise problems_error(problems)


def check_rule_unique(identical_exists: bool) -> None:
    if identical_exists:
        raise conflict("an identical rule already exists for this connection and event")


# -- deliveries -----------------------------------------------------------------------------------


def check_retry(rule_event: dict[str, Any], at: float) -> None:
    """409 when nothing is left to retry (completed or canceled; a failed one gets one more attempt);
    425 when an attempt is in flight or the next one is due within RETRY_IMMINENT seconds."""
    status = rule_event["status"]
    if status in TERMINAL_STATUSES and status != "failed":
        raise conflict(f"this delivery is {status}: there is nothing to retry (emit a new event to deliver again)")
    if status == "processing":
        raise too_early("an attempt for this delivery is in flight: wait for it, then read the rule event again")
    due = rule_event["next_attempt_at"]
    if status in ACTIVE_STATUSES and due is not None and due - at <= RETRY_IMMINENT:
        raise too_early(f"the next attempt is due at {iso(due)} (within {RETRY_IMMINENT:g} s): no need to force it")


def rule_event_needs_cancel(rule_event: dict[str, Any]) -> bool:
    """409 when it already finished (completed or failed); False when already canceled (idempotent)."""
    status = rule_event["status"]
    if status in TERMINAL_STATUSES and status != "canceled":
        raise conflict(f"this delivery already {status}: there is nothing to cancel")
    return status in ACTIVE_STATUSES


def check_event_canceled(event: dict[str, Any], canceled: int) -> None:
    """Canceling an event that had nothing left to cancel is a 409 if it finished, idempotent if canceled."""
    status = event["status"]
    if not canceled and status in TERMINAL_STATUSES and status != "canceled":
        raise conflict(f"this event already {status}: there is nothing left to cancel")


# -- sessions -------------------------------------------------------------------------------------


def check_session_refreshable(row: dict[str, Any], at: float) -> None:
    if row["status"] == "revoked":
        raise conflict("the session was revoked: create a new session")
    if at >= row["expires_epoch"]:
        raise conflict(f"the session expired at {row['expires_at']}: create a new session")
