"""What went wrong with a delivery and the exact calls that fix it: the one place that maps a cause
(outcome code, connection state, refused rule metadata) to a fix.

`diagnose_event` explains one event's troubled deliveries; `triage_failures` explains a whole group
of them through the same `advice`, given the group's newest delivery as evidence and the group's
`retry_failed` call in place of a single `retry_rule_event`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from meshes_mcp.api import errors as e
from meshes_mcp.api import models as m
from meshes_mcp.api.problems import InvalidRequest, Problem
from meshes_mcp.server import fixes
from meshes_mcp.server.failures import Failure, attempt
from meshes_mcp.server.fixes import OAUTH_REASONS, auth_type, failure_time, reconnect_text, recorded_failure
from meshes_mcp.server.incident.window import timestamp
from meshes_mcp.server.render import bound_text, is_header_error

if TYPE_CHECKING:
    from datetime import datetime

    from meshes_mcp.api.catalog import Catalog, IntegrationSpec
    from meshes_mcp.api.client import MeshesClient
    from meshes_mcp.server.registry import EnabledTools
    from meshes_mcp.server.runtime import Runtime

NOT_FOUND = "list_events shows recent events; get_event lists an event's rule ids."
NEEDS_ATTENTION = frozenset({"failed", "retrying"})
EVENT_SUMMARY_FIELDS = {
    "id", "event", "resource", "resource_id", "status", "total_rules", "completed_count", "failed_count",
    "created_at", "completed_at",
}  # fmt: skip
ATTEMPTS_READ = 200  # far more than any retry schedule makes: the last one is on the first page


class Evidence:
    """What is known about one troubled delivery (for a group: its newest one)."""

    def __init__(self, event: m.Event, rule_event: m.RuleEvent) -> None:
        self.event = event
        self.rule_event = rule_event
        # The recorded failure: the latest attempt that failed (never one still open or delivered since).
        self.latest: m.Attempt | None = None
        self.connection: m.Connection | None = None  # as it is now
        self.spec: IntegrationSpec | None = None  # the integration, for its authentication type
        self.request_url: str | None = None  # where the recorded failure's request went (captured response)
        # When the delivery (for a group: its newest-failing delivery) last failed; None: the failure's own time.
        self.last_failure: datetime | None = None
        self.rule_problems: list[Problem] = []
        self.rule_off: str | None = None  # "deleted" or "inactive": the rule as it is now
        # A group retries all its deliveries with one retry_failed call; 1 means a single delivery.
        self.group_retry: str | None = None
        self.group_size = 1
        # A group whose every delivery is still in Meshes' retry loop (None: judge by this delivery).
        self.retrying_only: bool | None = None

    @property
    def retrying(self) -> bool:
        if self.retrying_only is not None:
            return self.retrying_only
        return self.rule_event.status == "retrying"

    @property
    def code(self) -> str | None:
        return self.latest.outcome_code if self.latest else None

    @property
    def http_status(self) -> Any:
        return (self.latest.model_extra or {}).get("http_status") if self.latest else None

    @property
    def reported(self) -> str | None:
        """The failure as Meshes recorded it: it may quote the destination, so it is shown only as
        `untrusted_reason` and read here only for its shape (a refused header)."""
        message = (self.latest.model_extra or {}).get("message") if self.latest else None
        return message if isinstance(message, str) and message else self.rule_event.last_error

    @property
    def header_refused(self) -> bool:
        """No request could be formed (a header value with a line break): only when nothing answered, so a
        destination cannot pass its own words off as our transport's refusal."""
        no_answer = self.http_status is None
        return self.code in ("network_error", "rejected_client_error") and no_answer and is_header_error(self.reported)

    @property
    def untrusted_reason(self) -> str | None:
        return bound_text(self.reported)

    @property
    def cause(self) -> str:
        """What happened, in our words: from the outcome code, the HTTP status and the connection's state."""
        return what_happened(self)

    @property
    def failed_at(self) -> datetime | None:
        return self.last_failure or failure_time(self.latest, self.rule_event, self.event)

    @property
    def failed_url(self) -> str | None:
        """The URL the failing request went to: captured with the failure, or the connection's own when it
        has not changed since (then it is the same one). None when neither can be known."""
        if self.request_url:
            return self.request_url
        conn = self.connection
        url = conn.metadata.get("url") if conn is not None else None
        updated = timestamp(conn.updated_at) if conn is not None else None
        failed = self.failed_at
        if isinstance(url, str) and updated is not None and failed is not None and updated <= failed:
            return url
        return None

    @property
    def fix_in(self) -> dict[str, str] | None:
        """What changed since the last failure, when the connection now carries the fix (None otherwise)."""
        if self.rule_problems or self.rule_off:
            return None  # a refused or switched-off rule is fixed by a new rule, never by the connection
        return fixes.fix_in(self.connection, self.spec, self.code, self.failed_at, self.failed_url)

    def calls(self) -> dict[str, str]:
        ids = self.rule_event
        event_id, rule, connection = self.event.id, ids.rule, ids.connection
        return {
            "retry": self.group_retry or f"retry_rule_event event_id={event_id} rule_id={rule}",
            "credentials": f"update_connection connection_id={connection} metadata=<all fields, valid credentials>",
            "connection": f"get_connection connection_id={connection}",
            "actions": f"get_connection_actions connection_id={connection}",
            "response": (
                f"get_rule_attempt event_id={event_id} rule_id={rule} attempt_id={self.latest.id} include_response=true"
                if self.latest
                else f"list_rule_attempts event_id={event_id} rule_id={rule}"
            ),
        }


def what_happened(ev: Evidence) -> str:
    """Our own one-line account of a troubled delivery, e.g. "HTTP 503 from the receiver". Built only from
    codes, statuses and states, so nothing a destination wrote can pass for our diagnosis."""
    kind = ev.rule_event.integration_type or "destination"
    who = "the receiver" if kind == "webhook" else kind
    status = ev.http_status if isinstance(ev.http_status, int) else None
    http = f"HTTP {status} from {who}" if status else None
    code = ev.code
    conn = ev.connection
    if ev.header_refused:
        return f"no request could be sent to {who}: a header of the connection holds a character HTTP forbids"
    accounts = {
        "auth_failed": f"{who} rejected the connection's credentials" + (f" (HTTP {status})" if status else ""),
        "rejected_client_error": http or f"no request could be sent to {who}",
        "rejected_server_error": http or f"{who} failed on its side",
        "rate_limited": f"{http or who}: rate limited",
        "timeout": f"no answer from {who} in time",
        "network_error": f"{who} could not be reached (network error)",
        "mapping_error": f"the event's payload could not be mapped to {kind}'s fields",
        "internal_error": "Meshes failed internally while delivering",
    }
    if code in accounts:
        said = accounts[code]
    elif code is not None:
        said = f"attempt outcome {code}" + (f", {http}" if http else "")
    elif ev.rule_event.status == "retrying":
        said = "waiting for its next automatic attempt"
    else:
        said = f"{ev.rule_event.status} with no attempt recorded"
    state = connection_state(conn)
    return f"{said}; the connection is {state}" if state else said


# How a destination that never answered failed, as the fix says it (the outcome code tells the two apart).
REACH = {"timeout": "did not answer in time", "network_error": "could not be reached"}


def advice(ev: Evidence) -> tuple[str, list[str]]:
    """The fix for a troubled delivery (or group), and the exact calls that carry it out."""
    kind = ev.rule_event.integration_type or "destination"
    calls = ev.calls()
    retrying = ev.retrying
    conn = ev.connection
    if ev.rule_off:
        # A retry re-runs the rule as it is now: one switched off since must not deliver again unasked.
        return (
            f"The rule is {ev.rule_off} now: no retry is offered, since it would re-run a rule that is off. If these"
            " events must still arrive, route them with an active rule and re-emit them.",
            [f'list_rules event="{ev.event.event}"'],
        )
    fixed = ev.fix_in
    if fixed is not None:
        return f"The fix is in: {fixed['what']}. Nothing left to fix: retry.", [calls["retry"]]
    auth = auth_type(ev.spec)
    code = ev.code
    inactive = conn is not None and conn.active is False
    reason = conn.inactive_reason if conn is not None and inactive else None
    if reason == "manually_inactivated":
        return "The connection was switched off in the dashboard: reactivate it there, then retry.", [calls["retry"]]
    if (auth == "oauth" and (code == "auth_failed" or inactive)) or reason in OAUTH_REASONS:
        # No API call renews an OAuth grant: the person's step, then the retry.
        return f"The OAuth grant needs renewing: {reconnect_text(ev.spec, kind)}, then retry.", [calls["retry"]]
    if auth == "none" and code == "auth_failed":
        where = f" at {ev.failed_url}" if ev.failed_url else ""
        return (
            f"The receiver{where} refused the request's authentication{_http(ev)}: update the connection's auth"
            " fields (auth_scheme and its values) to what it expects, then retry.",
            [calls["connection"], calls["credentials"], calls["retry"]],
        )
    if code == "auth_failed" or reason == "authentication_invalid":
        return f"{kind} rejected the connection's credentials: update them, then retry.", [
            calls["credentials"],
            calls["retry"],
        ]
    if ev.header_refused:
        # No request could be formed (a header value with a line break saved before such values were refused):
        # the receiver is fine, the connection is not.
        return (
            "A header of the connection (custom_headers or its auth fields) holds a character HTTP forbids, "
            "such as a trailing newline from a pasted key: update the connection with the clean value, then retry.",
            [calls["connection"], calls["credentials"], calls["retry"]],
        )
    if code == "rejected_client_error":
        return client_error_advice(ev, kind, calls)
    if code == "mapping_error":
        c = ev.rule_event.connection
        return (
            "The payload could not fill a destination field through the connection's default mapping: fix the "
            "mapping (or send the field in the payload), then retry.",
            [
                f"get_connection_mappings connection_id={c}",
                f"update_connection_mappings connection_id={c}",
                calls["retry"],
            ],
        )
    if code in REACH:
        where = f" {ev.failed_url}" if ev.failed_url else ""
        auto = " Meshes is still retrying." if retrying else ""
        return (
            f"The destination{where} {REACH[code]}: check the URL and that the receiver is up.{auto}",
            [calls["connection"], calls["retry"]],
        )
    if code in ("rate_limited", "rejected_server_error", "internal_error"):
        what = {"rate_limited": "rate-limited the delivery", "rejected_server_error": "failed on its side"}
        cause = f"The destination {what[code]}" if code in what else "Meshes failed internally"
        if retrying:
            return f"{cause}; Meshes retries automatically, nothing to fix yet.", []
        if kind == "webhook" and code == "rejected_server_error":
            where = f" at {ev.failed_url}" if ev.failed_url else ""
            return f"The receiver{where} answered{_status(ev)}: fix the receiver, then retry.", [
                calls["response"],
                calls["retry"],
            ]
        return f"{cause}; the retries ran out. Retry once it recovers.", [calls["retry"]]
    if ev.latest is None:
        if retrying:
            return "Waiting for its next automatic attempt; check again shortly.", []
        return "No attempt was recorded; see the cause, then retry.", [calls["retry"]]
    return "See the cause and the captured response.", [calls["response"], calls["retry"]]


def _http(ev: Evidence) -> str:
    return f" (HTTP {ev.http_status})" if ev.http_status else ""


def _status(ev: Evidence) -> str:
    return f" {ev.http_status}" if ev.http_status else " an error"


def client_error_advice(ev: Evidence, kind: str, calls: dict[str, str]) -> tuple[str, list[str]]:
    status = f" {ev.http_status}" if ev.http_status else " a 4xx"
    if kind == "webhook":
        where = f" at {ev.failed_url}" if ev.failed_url else ""
        return (
            f"The receiver{where} answered{status}: check that it accepts the request (path, auth, body), then retry.",
            [calls["response"], calls["connection"], calls["retry"]],
        )
    if not ev.rule_problems:
        return (
            f"{kind} refused the delivery ({status.strip()}): see the cause and the captured response.",
            [calls["response"], calls["retry"]],
        )
    return replace_rule_advice(ev, kind, calls)


def replace_rule_advice(ev: Evidence, kind: str, calls: dict[str, str]) -> tuple[str, list[str]]:
    """The rule names something the account lacks (a deleted list...). Rules cannot be edited, and a retry
    re-runs the old rule, so the way out is a new rule and the event sent again."""
    problems = "; ".join(f"{p.param} {p.msg}" for p in ev.rule_problems)
    others = (ev.event.total_rules or 0) - 1
    rerun = (
        f"re-emitting also re-delivers to its {others} other rule(s)"
        if others > 0
        else "re-emitting reaches only the new rule"
    )
    event_id, rule, connection = ev.event.id, ev.rule_event.rule, ev.rule_event.connection
    if ev.group_size > 1:
        rerun = f"the {ev.group_size} events of this group; " + rerun
        reemit = f"get_event event_id=<each sample> include_payload=true, e.g. {event_id}; then emit_events"
    else:
        reemit = f"get_event event_id={event_id} include_payload=true, then emit_event with that event and payload"
    return (
        f"{kind} refused the rule's metadata ({problems}). Rules cannot be edited: replace it with one using a valid"
        f" id. A retry would re-run the old rule, so re-emit the event instead ({rerun}).",
        [
            calls["actions"],
            f"delete_rule rule_id={rule}",
            f'create_rule connection={connection} event="{ev.event.event}" metadata=<valid id>',
            reemit,
        ],
    )


def retry_helps(ev: Evidence) -> bool:
    """Whether retrying re-runs something that can now succeed (not when the rule itself must be replaced)."""
    if ev.rule_off:
        return False
    return not (ev.code == "rejected_client_error" and ev.rule_problems and ev.rule_event.integration_type != "webhook")


def connection_state(conn: m.Connection | None) -> str | None:
    return f"inactive ({conn.inactive_reason})" if conn is not None and conn.active is False else None


def delivery_report(ev: Evidence, enabled: EnabledTools) -> dict[str, Any]:
    """One troubled delivery, its fix and the calls that carry it out (those this server can make)."""
    fix, next_calls = advice(ev)
    return {
        "rule": ev.rule_event.rule,
        "connection": ev.rule_event.connection,
        "type": ev.rule_event.integration_type,
        "status": ev.rule_event.status,
        "attempts": ev.rule_event.attempt_count,
        "outcome_code": ev.code,
        "http_status": ev.http_status,
        "cause": ev.cause,
        "untrusted_reason": ev.untrusted_reason,
        "connection_state": connection_state(ev.connection),
        "fix_in": ev.fix_in,
        "next_attempt_at": (ev.rule_event.model_extra or {}).get("next_attempt_at"),
        "fix": fix,
        "next": enabled.calls(next_calls),
    }


def summary_line(event: m.Event, troubled: list[Evidence], enabled: EnabledTools) -> str:
    rule_events = event.rule_events or []
    if not rule_events:
        hints = enabled.calls([f"list_rules event={event.event} shows the rules", "create_rule routes it"])
        return f'No active rule matched "{event.event}"' + (f": {'; '.join(hints)}." if hints else ".")
    if not troubled:
        waiting = sum(1 for r in rule_events if r.status not in m.TERMINAL_STATUSES)
        if waiting:
            return f"{waiting} of {len(rule_events)} deliveries are still in progress; check again shortly."
        return f"No failed deliveries: {len(rule_events)} rule(s), statuses as listed."
    causes = ", ".join(f"{ev.code or ev.rule_event.status} ({ev.rule_event.integration_type})" for ev in troubled)
    return f"{len(troubled)} of {len(rule_events)} deliveries need attention: {causes}."


async def read_recorded_failure(client: MeshesClient, ev: Evidence) -> None:
    try:
        page = await client.list_rule_attempts(ev.event.id, ev.rule_event.rule, limit=ATTEMPTS_READ)
        ev.latest = recorded_failure(page.records)
    except (e.MeshesError, InvalidRequest):
        ev.latest = None  # the diagnosis still stands on the rule event's last_error


async def read_request_url(client: MeshesClient, ev: Evidence) -> None:
    """For a webhook, where the failing request went, from its captured response (when one was kept)."""
    failure = ev.latest
    if failure is None or ev.rule_event.integration_type != "webhook":
        return
    if (failure.model_extra or {}).get("has_response_details") is False:
        return
    try:
        details = await client.get_attempt_response(ev.event.id, ev.rule_event.rule, failure.id)
    except (e.MeshesError, InvalidRequest):
        return
    request = (details.model_extra or {}).get("request")
    url = request.get("url") if isinstance(request, dict) else None
    ev.request_url = url if isinstance(url, str) and url else None


async def gather_evidence(
    client: MeshesClient, catalog: Catalog, ev: Evidence, connections: dict[str, m.Connection | None]
) -> None:
    """The recorded failure, the connection and rule as they are now, and for a refused rule the metadata
    problems against live data."""
    from meshes_mcp.api.catalog import validate_rule_metadata

    rule_event = ev.rule_event
    if ev.latest is None:
        await read_recorded_failure(client, ev)
    await read_request_url(client, ev)
    ev.connection = connections.get(rule_event.connection or "")
    spec = ev.spec = catalog.get(rule_event.integration_type or "") or offline_spec(rule_event.integration_type)
    try:
        rule = await client.get_rule(rule_event.rule)
    except e.APIStatusError as exc:
        ev.rule_off = "deleted" if exc.status == 404 else None
        return
    except (e.MeshesError, InvalidRequest):
        return
    if rule.active is False:
        ev.rule_off = "inactive"
        return
    if ev.code != "rejected_client_error" or spec is None or rule_event.integration_type == "webhook":
        return
    try:
        live = await client.get_connection_actions(rule_event.connection or "")
    except (e.MeshesError, InvalidRequest):
        return
    ev.rule_problems = validate_rule_metadata(spec, rule.metadata, live)


def offline_spec(type_: str | None) -> IntegrationSpec | None:
    """The integration from the catalogue shipped with this server, when the live one lacks it."""
    from meshes_mcp.api.catalog import load_catalog

    return load_catalog().get(type_ or "")


async def load_connections(client: MeshesClient, connection_ids: set[str]) -> dict[str, m.Connection | None]:
    """Each connection once, concurrently; one that cannot be read is None (the advice copes)."""
    connections: dict[str, m.Connection | None] = {}

    async def load(connection_id: str) -> None:
        try:
            connections[connection_id] = await client.get_connection(connection_id)
        except (e.MeshesError, InvalidRequest):
            connections[connection_id] = None

    async with anyio.create_task_group() as group:
        for connection_id in connection_ids:
            group.start_soon(load, connection_id)
    return connections


async def gather_all(client: MeshesClient, catalog: Catalog, evidence: list[Evidence]) -> None:
    connections = await load_connections(
        client, {ev.rule_event.connection for ev in evidence if ev.rule_event.connection}
    )
    limiter = anyio.CapacityLimiter(8)

    async def gather(ev: Evidence) -> None:
        async with limiter:
            await gather_evidence(client, catalog, ev, connections)

    async with anyio.create_task_group() as group:
        for ev in evidence:
            group.start_soon(gather, ev)


async def diagnose(rt: Runtime, event_id: str) -> dict[str, Any]:
    client = rt.client()
    event = await attempt(client.get_event(event_id), Failure(write=False, not_found=NOT_FOUND))
    catalog = await rt.catalog()
    troubled = [Evidence(event, r) for r in event.rule_events or [] if r.status in NEEDS_ATTENTION]
    await gather_all(client, catalog, troubled)
    others = [
        {"rule": r.rule, "type": r.integration_type, "status": r.status}
        for r in event.rule_events or []
        if r.status not in NEEDS_ATTENTION
    ]
    return {
        "event": event.model_dump(mode="json", include=EVENT_SUMMARY_FIELDS),
        "summary": summary_line(event, troubled, rt.enabled),
        "deliveries": [delivery_report(ev, rt.enabled) for ev in troubled] + others,
    }
