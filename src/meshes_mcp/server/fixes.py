"""A connection as it is now, set against a failure as it was recorded: which fix its authentication type
takes, what its inactive state means, and whether the fix is already in.

The fix follows the integration's authentication type in the catalogue: an OAuth grant is renewed by a
person reconnecting the account in the dashboard, an API key is replaced with `update_connection`, a
webhook is corrected at the URL that actually failed (read from the failure record, never the current
one, which may already be the corrected one).

A fix is in when the connection's `updated_at` (documented on every connection; an update and a
reconnect move it, as do deactivations, which leave it inactive) is later than the last recorded failure,
and it is active now. Then nothing is left to fix: the only call left is the retry. A delivery still in
Meshes' retry loop is judged by when it started (its later attempts' times are not on the rule event).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from meshes_mcp.api import models as m
from meshes_mcp.server.incident.window import iso, timestamp

if TYPE_CHECKING:
    from meshes_mcp.api.catalog import IntegrationSpec

OAUTH_REASONS = frozenset({"oauth_authorization_revoked", "oauth_reauthorization_required"})
FAILING_CODES = frozenset(m.OUTCOME_CODES) - {"", "delivered"}
# Causes an update of the connection cannot fix: a mapping lives on its own record, a refused rule needs a
# new rule, and Meshes' own failures are not the connection's.
NOT_FIXED_BY_CONNECTION = frozenset({"mapping_error", "internal_error"})


def recorded_failure(attempts: list[m.Attempt]) -> m.Attempt | None:
    """The latest attempt that ended in a failure: the delivery's recorded failure. An attempt still open
    (no outcome yet) or delivered by a retry in flight is newer than the failure and says nothing about it."""

    def number(item: m.Attempt) -> int:
        value = (item.model_extra or {}).get("attempt_number")
        return value if isinstance(value, int) else 0

    failed = [a for a in attempts if a.outcome_code in FAILING_CODES]
    return max(failed, key=number) if failed else None


def failure_time(attempt: m.Attempt | None, rule_event: m.RuleEvent, event: m.Event) -> datetime | None:
    """When a delivery last failed: its recorded failure's end, else the rule event's own times."""
    extra = (attempt.model_extra or {}) if attempt is not None else {}
    for text in (extra.get("completed_at"), extra.get("started_at"), rule_event.completed_at):
        moment = timestamp(text)
        if moment is not None:
            return moment
    # A delivery still retrying has no end yet: its start (or the event's) is the earliest it can have failed.
    return timestamp(rule_event.started_at) or timestamp(event.created_at)


def auth_type(spec: IntegrationSpec | None) -> str | None:
    """ "oauth", "api_key" or "none" (webhooks), from the catalogue; None for a type it does not know."""
    return spec.authentication.type if spec is not None and spec.authentication.type else None


def reconnect_text(spec: IntegrationSpec | None, kind: str) -> str:
    name = spec.name if spec is not None and spec.name else kind
    return f"a person reconnects the {name} account in the Meshes dashboard (OAuth)"


def inactive_warning(connection: m.Connection, spec: IntegrationSpec | None) -> str | None:
    """What an inactive connection's reason means for its type, and the step that makes it active again."""
    if connection.active is not False:
        return None
    reason = connection.inactive_reason or "unknown reason"
    kind = auth_type(spec)
    if connection.inactive_reason == "manually_inactivated":
        step = "it was switched off in the Meshes dashboard: reactivate it there"
    elif connection.inactive_reason in OAUTH_REASONS or kind == "oauth":
        step = f"the OAuth grant needs renewing: {reconnect_text(spec, connection.type)}"
    elif connection.inactive_reason == "authentication_invalid" and kind == "none":
        step = "the destination refused its authentication: update_connection with the auth fields it expects"
    elif connection.inactive_reason == "authentication_invalid":
        step = "the destination rejected its credentials: update_connection with valid ones reactivates it"
    else:
        step = "see the connection in the Meshes dashboard"
    return f"inactive ({reason}): deliveries through it fail until then; {step}"


def fix_in(
    connection: m.Connection | None,
    spec: IntegrationSpec | None,
    code: str | None,
    last_failure: datetime | None,
    failed_url: str | None,
) -> dict[str, str] | None:
    """`{"what", "at"}` when the connection changed after the last failure and is active now, else None."""
    if connection is None or connection.active is False or last_failure is None or code in NOT_FIXED_BY_CONNECTION:
        return None
    updated = timestamp(connection.updated_at)
    if updated is None or updated <= last_failure:
        return None
    name = spec.name if spec is not None and spec.name else connection.type
    kind = auth_type(spec)
    if kind == "oauth" and code == "auth_failed":
        # An OAuth connection that refused deliveries becomes active again only through a reconnect.
        what = f"the {name} connection was reconnected and is active"
    elif kind == "none":
        url = connection.metadata.get("url")
        if failed_url and isinstance(url, str) and url != failed_url:
            what = f"the {name} URL was changed from {failed_url}, the one that failed"
        elif failed_url:
            what = f"the {name} connection was updated; its URL is still {failed_url}, the one that failed"
        else:
            what = f"the {name} connection was updated"
    elif code == "auth_failed":
        what = f"the {name} connection was updated (its credentials had been rejected) and is active"
    else:
        what = f"the {name} connection was updated and is active"
    return {"what": f"{what}, after the last failure at {iso(last_failure)}", "at": connection.updated_at or ""}
