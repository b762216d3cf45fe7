"""What triage_failures says about a group: its view, fix and the calls this server can make."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshes_mcp.server.diagnosis import advice, connection_state, retry_helps
from meshes_mcp.server.incident.groups import Group, one_line

if TYPE_CHECKING:
    from meshes_mcp.server.registry import EnabledTools


def group_view(group: Group, retry_call: str, enabled: EnabledTools) -> dict[str, Any]:
    """A group as triage_failures shows it; its calls (and the `then` retry) are those this server can make."""
    ev = group.evidence
    ev.group_retry = retry_call
    fix, calls = advice(ev)
    conn = ev.connection
    connection: dict[str, Any] = {"id": group.connection, "type": group.integration_type}
    if conn is not None:
        connection.update({"name": conn.name, "active": conn.active, "state": connection_state(conn)})
    view: dict[str, Any] = {
        "key": group.key,
        "rule": group.rule,
        "connection": connection,
        "event": group.event_name,
        "outcome_code": group.outcome_code,
        "http_status": ev.http_status,
        "cause": one_line(ev.cause),
        "untrusted_reason": ev.untrusted_reason,
        "failed": group.failed,
        "retrying": group.retrying,
        "first_seen": group.first_seen,
        "last_seen": group.last_seen,
        "samples": group.samples,
        "fix_in": ev.fix_in,
        "fix": fix,
        "calls": enabled.calls([c for c in calls if c != retry_call]),
    }
    if retry_helps(ev) and retry_call in calls and enabled.allows(retry_call):
        view["then"] = retry_call
    return view
