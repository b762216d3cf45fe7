"""The `incident` scenario: a day of signups fanned out to four destinations, three of them broken.

Everything here is data plus one deterministic generator. The story (times are before the moment the
scenario is first built; the numbers are those of the default seed):

- 2,400 `user.signup` events over the last 24 hours, each routed by four rules: HubSpot (add to the
  "Newsletter Subscribers" list), Mailchimp (add to an audience list), a webhook to the sandbox's
  own inbox, and Slack (a message in #signups).
- ~20 h ago Mailchimp's API key was revoked: the first delivery after that got HTTP 401 and made the
  connection inactive (`authentication_invalid`); every later one failed at once, nothing sent. The
  last 2,000 signups failed there. Fix: `update_connection` with a new `api_key`.
- ~9 h ago someone re-pointed the webhook at the old signup service's address, which no longer
  listens: every delivery since failed with `network_error` after the whole retry budget. Fix:
  `update_connection` with the inbox URL (`<sandbox>/sandbox/inbox/signups`).
- ~5 h ago HubSpot's OAuth grant needed re-authorisation (`oauth_reauthorization_required`): a
  person must reconnect it in the dashboard; in the sandbox that step is
  `POST /sandbox/connections/{id}/reconnect` (or `meshes-mcp sandbox reconnect <id>`).
- Slack kept delivering; a few webhook deliveries before the break needed a second attempt after a
  503 (noise that a triage must not report, since they were delivered).

Attempts carry the exact outcome codes and messages the sandbox's delivery engine writes, and the
retry schedule (delays, attempt budget) of the sandbox that builds the scenario.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from typing import Any

from meshes_mcp.sandbox import provider_data
from meshes_mcp.sandbox.clock import iso
from meshes_mcp.sandbox.destinations import _capture, _simulated_response, build_webhook_request, render_template
from meshes_mcp.sandbox.mapping import apply_mapping
from meshes_mcp.sandbox.queue import Job

HOUR = 3600.0
WORKSPACE = "Incident"
EVENT = "user.signup"
SEED = 20260415
INBOX_PATH = "/sandbox/inbox/signups"
# The address the webhook was wrongly re-pointed at. Port 9 (discard) on loopback has no listener on any
# ordinary machine, so a retry before the fix fails the same way the history did, and never leaves loopback.
GONE_HOST = "127.0.0.1:9"
GONE_URL = f"http://{GONE_HOST}/hooks/signups"
DASHBOARD = "user:sandbox-owner"  # who created the dashboard-made rows (same as the first-start seed)
SIGNUP_SOURCE = "publishable_key"  # signups come from the web app's publishable key


@dataclass(frozen=True)
class Destination:
    """A connection and the rule routing every signup to it."""

    key: str
    type: str
    name: str
    metadata: dict[str, Any]
    rule: dict[str, Any]
    pick: str | None = None  # the live item (list, channel) whose id the rule uses, by name


@dataclass(frozen=True)
class Cause:
    """What broke a destination, and when (hours before the build)."""

    destination: str
    kind: str  # "revoked_api_key" | "url_moved" | "oauth_expired"
    hours_ago: float
    fix: str


@dataclass(frozen=True)
class Scenario:
    workspace: str
    description: str
    destinations: list[Destination]
    causes: list[Cause]
    # Signups before the first cause began, and after it (every one of these fails somewhere).
    healthy_signups: int = 400
    failing_signups: int = 2000
    window_hours: float = 24.0
    webhook_503_rate: float = 0.015
    seed: int = SEED


INCIDENT = Scenario(
    workspace=WORKSPACE,
    description=(
        "Practice incident seeded by the local sandbox: yesterday's signups did not reach Mailchimp, the "
        "signup webhook or HubSpot. The signup webhook's receiver lives at {inbox_url}. A HubSpot reconnect "
        "(a person's step in the dashboard) is POST /sandbox/connections/<id>/reconnect here, or "
        "`meshes-mcp sandbox reconnect <id>`."
    ),
    destinations=[
        Destination(
            "hubspot",
            "hubspot",
            "HubSpot",
            {"portal_id": "48211937", "account_name": "Acme Signups"},
            {"action": "add_to_list", "id": "5"},
        ),
        Destination(
            "mailchimp",
            "mailchimp",
            "Mailchimp",
            {"data_center": "us21", "api_key": "invalid-revoked-6f1c0a9e52d84b7f-us21"},
            {"action": "add_to_list"},
            pick="Newsletter",
        ),
        Destination(
            "webhook",
            "webhook",
            "Signup webhook",
            {"url": "{inbox_url}", "http_method": "POST"},
            {"action": "send_webhook"},
        ),
        Destination(
            "slack",
            "slack",
            "Slack",
            {"team_id": "T07ACME0001", "team_name": "Acme"},
            {"action": "send_message", "template": "New signup: {{first_name}} {{last_name}} ({{plan}})"},
            pick="signups",
        ),
    ],
    causes=[
        Cause("mailchimp", "revoked_api_key", 20.0, "update_connection with a new api_key (it reactivates)"),
        Cause("webhook", "url_moved", 9.0, f"update_connection with metadata.url = <sandbox>{INBOX_PATH}"),
        Cause("hubspot", "oauth_expired", 5.0, "a person reconnects it: POST /sandbox/connections/<id>/reconnect"),
    ],
)

# The same story at a tenth of the size, so `meshes-mcp demo` retries it in a few seconds.
INCIDENT_DEMO = replace(INCIDENT, healthy_signups=40, failing_signups=200)

# fmt: off
FIRST_NAMES = ["Ada", "Ben", "Chloe", "Dev", "Elena", "Femi", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Liam", "Maya",
               "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Uma", "Victor", "Wen", "Yara"]
LAST_NAMES = ["Okafor", "Lindqvist", "Moreau", "Patel", "Novak", "Garcia", "Tanaka", "Schmidt", "Rossi", "Kim",
              "Haddad", "Silva", "Byrne", "Ivanova", "Mensah", "Costa", "Nguyen", "Fischer"]
# fmt: on
PLANS = [("free", 0.62), ("pro", 0.3), ("enterprise", 0.08)]
SOURCES = ["website", "website", "website", "mobile_app", "referral", "webinar"]


class Ids:
    """UUID4-shaped ids from the scenario's RNG: the same seed builds the same rows."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def __call__(self) -> str:
        # Version 4 and RFC 4122 variant bits set by hand: what uuid.UUID(version=4) does, several times faster.
        bits = self.rng.getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48) | (0x4000 << 64) | (0x8000 << 48)
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class Built:
    """Rows ready to insert, and what they add up to (the scenario's documented counts)."""

    workspace: dict[str, Any]
    connections: list[dict[str, Any]]
    rules: list[dict[str, Any]]
    events: list[tuple[Any, ...]] = field(default_factory=list)
    rule_events: list[tuple[Any, ...]] = field(default_factory=list)
    attempts: list[tuple[Any, ...]] = field(default_factory=list)
    event_times: dict[str, tuple[str, str]] = field(default_factory=dict)  # event id → (started, settled)
    summary: dict[str, Any] = field(default_factory=dict)


class Generator:
    """Builds the rows of one scenario for one sandbox (its catalogue, retry policy and address)."""

    def __init__(self, scenario: Scenario, sandbox: Any, org_id: str, base_url: str, now: float) -> None:
        self.sc = scenario
        self.sb = sandbox
        self.org_id = org_id
        self.now = now
        self.inbox_url = base_url + INBOX_PATH
        self.host = base_url.split("//", 1)[-1]
        self.rng = random.Random(scenario.seed)
        self.new_id = Ids(self.rng)
        self.starts = {c.destination: now - c.hours_ago * HOUR for c in scenario.causes}
        self.kinds = {c.destination: c.kind for c in scenario.causes}
        self._delivered: dict[str, str] = {}  # connection id → the message of a delivered attempt
        self._schemas: dict[str, dict[str, Any]] = {}

    # -- configuration rows ---------------------------------------------------------------------------

    def build(self, workspace_id: str, pub_key: str) -> Built:
        created = iso(self.now - 30 * 24 * HOUR)
        workspace = {
            "id": workspace_id,
            "name": self.sc.workspace,
            "description": self.sc.description.format(inbox_url=self.inbox_url),
            "pub_key": pub_key,
            "created_at": created,
        }
        connections, rules = [], []
        for dest in self.sc.destinations:
            conn = self._connection(dest, workspace_id, created)
            connections.append(conn)
            rules.append(self._rule(dest, conn, workspace_id, created))
        built = Built(workspace, connections, rules)
        self._history(built)
        return built

    def _connection(self, dest: Destination, workspace_id: str, created: str) -> dict[str, Any]:
        metadata = {
            k: (v.format(inbox_url=self.inbox_url) if isinstance(v, str) else v) for k, v in dest.metadata.items()
        }
        conn = {
            "id": self.new_id(),
            "org_id": self.org_id,
            "workspace_id": workspace_id,
            "type": dest.type,
            "name": dest.name,
            "metadata": metadata,
            "active": 1,
            "inactive_reason": None,
            "created_by": DASHBOARD,
            "created_at": created,
            "updated_at": created,
            "key": dest.key,
        }
        return conn

    def _rule(self, dest: Destination, conn: dict[str, Any], workspace_id: str, created: str) -> dict[str, Any]:
        metadata = dict(dest.rule)
        if dest.pick:
            record = next(r for r in self.sb.records if r["type"] == dest.type)
            live = provider_data.action_data(record, conn["id"])
            items = [i for items in live.values() for i in items]
            chosen = next((i for i in items if dest.pick.lower() in str(i.get("name", "")).lower()), items[0])
            metadata["id"] = str(chosen["id"])
        return {
            "id": self.new_id(),
            "org_id": self.org_id,
            "workspace_id": workspace_id,
            "connection_id": conn["id"],
            "type": dest.type,
            "event": EVENT,
            "metadata": metadata,
            "created_by": DASHBOARD,
            "created_at": created,
            "key": dest.key,
        }

    # -- history ------------------------------------------------------------------------------------

    def _signup_times(self) -> list[float]:
        first_cause = min(self.starts.values())
        window_start = self.now - self.sc.window_hours * HOUR
        last = self.now - 120.0  # two minutes ago: every delivery has settled
        times = [self.rng.uniform(window_start, first_cause) for _ in range(self.sc.healthy_signups)]
        times += [self.rng.uniform(first_cause + 1.0, last) for _ in range(self.sc.failing_signups)]
        return sorted(times)

    def _payload(self, index: int) -> dict[str, Any]:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        plan = self.rng.choices([p for p, _ in PLANS], [w for _, w in PLANS])[0]
        return {
            "email": f"{first}.{last}.{index}@example.com".lower(),
            "first_name": first,
            "last_name": last,
            "plan": plan,
            "source": self.rng.choice(SOURCES),
        }

    def _history(self, built: Built) -> None:
        counts: dict[str, dict[str, int]] = {c["key"]: {"delivered": 0, "failed": 0} for c in built.connections}
        failing_events = 0
        pairs = list(zip(built.connections, built.rules, strict=True))
        for index, created in enumerate(self._signup_times()):
            event_id = self.new_id()
            payload = self._payload(index)
            resource_id = f"usr_{self.rng.getrandbits(48):012x}"
            event = {
                "id": event_id,
                "event": EVENT,
                "resource": "user",
                "resource_id": resource_id,
                "payload": payload,
                "created_at": iso(created),
            }
            first_start, settled, any_failed = float("inf"), created, False
            for conn, rule in pairs:
                status, start, end = self._deliver(built, event, created, conn, rule)
                counts[conn["key"]]["delivered" if status == "completed" else "failed"] += 1
                any_failed |= status == "failed"
                first_start, settled = min(first_start, start), max(settled, end)
            failing_events += any_failed
            built.events.append(
                (
                    event_id,
                    self.org_id,
                    built.workspace["id"],
                    EVENT,
                    "user",
                    resource_id,
                    json.dumps(payload, separators=(",", ":")),
                    "pending",
                    len(pairs),
                    iso(first_start),
                    SIGNUP_SOURCE,
                    event["created_at"],
                )
            )
            built.event_times[event_id] = (iso(first_start), iso(settled))
        self._final_connection_states(built)
        causes = [{"destination": c.destination, "kind": c.kind, "started_at": iso(self.starts[c.destination]),
                   "fix": c.fix} for c in self.sc.causes]  # fmt: skip
        built.summary = {
            "signups": len(built.events),
            "failing_events": failing_events,
            "destinations": counts,
            "attempts": len(built.attempts),
            "causes": causes,
        }

    def _deliver(
        self, built: Built, event: dict[str, Any], created: float, conn: dict[str, Any], rule: dict[str, Any]
    ) -> tuple[str, float, float]:
        """One rule event and its attempts; returns its final status, when it started and when it settled."""
        rule_event_id = self.new_id()
        started = created + self.rng.uniform(0.03, 0.4)
        event["sent"] = started
        broken = created >= self.starts.get(conn["key"], float("inf"))
        if broken:
            plan = self._failure_plan(conn, event, rule, rule_event_id)
        else:
            plan = self._success_plan(conn, event, rule, rule_event_id)
        at = started
        rows = []
        for number, (code, http_status, message, response, duration) in enumerate(plan, start=1):
            end = at + duration
            retry_at = None
            if number < len(plan):
                retry_at = end + self.sb.policy.base * 2 ** (number - 1) * self.rng.uniform(0.8, 1.2)
            self._as_sent(response, at)
            rows.append(
                (
                    self.new_id(),
                    rule_event_id,
                    event["id"],
                    rule["id"],
                    number,
                    code,
                    http_status,
                    message,
                    iso(at),
                    iso(end),
                    round(duration * 1000, 1),
                    iso(retry_at) if retry_at else None,
                    json.dumps(response) if response is not None else None,
                )
            )
            at = retry_at if retry_at is not None else end
        final_code = plan[-1][0]
        status = "completed" if final_code == "delivered" else "failed"
        last_error = None if status == "completed" else plan[-1][2]
        attempt_limit = max(self.sb.policy.max_attempts, len(plan))
        built.attempts.extend(rows)
        built.rule_events.append(
            (
                rule_event_id,
                event["id"],
                rule["id"],
                conn["workspace_id"],
                conn["id"],
                conn["type"],
                EVENT,
                event["resource"],
                event["resource_id"],
                status,
                len(plan),
                attempt_limit,
                None,
                iso(started),
                rows[-1][9],
                last_error,
                SIGNUP_SOURCE,
                event["created_at"],
            )
        )
        return status, started, end

    def _as_sent(self, response: dict[str, Any] | None, at: float) -> None:
        """Captured evidence as of the attempt's own time, with the scenario's ids: the helpers that build it
        stamp the current time and a random request id."""
        if not response:
            return
        headers = response.get("headers") or {}
        if "x-request-id" in headers:
            headers["x-request-id"] = self.new_id()
        sent = (response.get("request") or {}).get("headers") or {}
        if "X-Meshes-Timestamp" in sent:
            sent["X-Meshes-Timestamp"] = str(int(at * 1000))

    # Each plan is a list of attempts: (outcome_code, http_status, message, response, seconds taken).

    def _success_plan(
        self, conn: dict[str, Any], event: dict[str, Any], rule: dict[str, Any], rule_event_id: str
    ) -> list[tuple[Any, ...]]:
        if conn["type"] != "webhook":
            code, message, response = self._simulated_delivery(conn, event, rule, rule_event_id)
            return [(code, 200, message, response, self.rng.uniform(0.06, 0.35))]
        plan: list[tuple[Any, ...]] = []
        if self.rng.random() < self.sc.webhook_503_rate:
            plan.append(self._webhook_answer(conn, event, rule_event_id, 1, 503, "Service Unavailable"))
        plan.append(self._webhook_answer(conn, event, rule_event_id, len(plan) + 1, 200, "OK"))
        return plan

    def _simulated_delivery(
        self, conn: dict[str, Any], event: dict[str, Any], rule: dict[str, Any], rule_event_id: str
    ) -> tuple[str, str, dict[str, Any]]:
        """A delivered simulated attempt. The first one per connection runs the sandbox's own simulated
        destination (proving the scenario's configuration delivers) for its message; every one builds only
        its per-event response, which keeps a build of ~10,000 deliveries well under 2 s."""
        first = self._delivered.get(conn["id"])
        if first is None:
            outcome = self.sb.destinations._simulated(self._job(conn, event, rule, rule_event_id), self._healthy(conn))
            if outcome.code != "delivered":
                raise ValueError(f"the scenario's {conn['name']} rule does not deliver: {outcome.message}")
            first = self._delivered[conn["id"]] = outcome.message
        payload = event["payload"]
        metadata = rule["metadata"]
        if conn["type"] == "slack":
            result: dict[str, Any] = {
                "ok": True,
                "channel": metadata.get("id"),
                "ts": f"{event['sent']:.6f}",
                "message": {"text": render_template(str(metadata.get("template", "")), payload)},
            }
        else:
            mapped, _, _ = apply_mapping(self._schema(conn), payload)
            result = {"ok": True, "action": metadata.get("action"), "contact": mapped}
        operation = f"{conn['type']}.{metadata.get('action')}"
        return "delivered", first, _simulated_response(200, result, operation, conn["type"])

    def _schema(self, conn: dict[str, Any]) -> dict[str, Any]:
        schema = self._schemas.get(conn["id"])
        if schema is None:
            record = next(r for r in self.sb.records if r["type"] == conn["type"])
            schema = provider_data.generated_schema(provider_data.field_defs(record, conn["id"]))
            self._schemas[conn["id"]] = schema
        return schema

    def _webhook_answer(
        self, conn: dict[str, Any], event: dict[str, Any], rule_event_id: str, number: int, status: int, reason: str
    ) -> tuple[Any, ...]:
        metadata = {**conn["metadata"], "url": self.inbox_url}
        request = build_webhook_request(metadata, event, rule_event_id, number)
        body = b'{"ok":true}' if status < 400 else b'{"ok":false,"error":"upstream unavailable"}'
        headers = {"content-type": "application/json", "content-length": str(len(body))}
        response = _capture(status, headers, body, len(body), request)
        if status < 400:
            return (
                "delivered",
                status,
                f"delivered: {self.host} answered HTTP {status} {reason}",
                response,
                self.rng.uniform(0.003, 0.025),
            )
        return (
            "rejected_server_error",
            status,
            f"{self.host} answered HTTP {status} {reason}",
            response,
            self.rng.uniform(0.003, 0.025),
        )

    def _failure_plan(
        self, conn: dict[str, Any], event: dict[str, Any], rule: dict[str, Any], rule_event_id: str
    ) -> list[tuple[Any, ...]]:
        kind = self.kinds[conn["key"]]
        if kind == "url_moved":
            # What the engine writes for a refused connection (httpx's ConnectError text).
            message = f"could not reach {GONE_HOST}: ConnectError All connection attempts failed"
            return [
                ("network_error", None, message, None, self.rng.uniform(0.0005, 0.003))
                for _ in range(self.sb.policy.max_attempts)
            ]
        if kind == "revoked_api_key" and conn["active"]:
            # The first delivery after the revocation meets the provider's 401 and deactivates the connection,
            # exactly as the delivery engine does; every later one fails without a request.
            outcome = self.sb.destinations._simulated(self._job(conn, event, rule, rule_event_id), conn)
            conn.update(active=0, inactive_reason=outcome.deactivate, updated_at=event["created_at"])
            return [(outcome.code, outcome.http_status, outcome.message, outcome.response, self.rng.uniform(0.08, 0.3))]
        if kind == "oauth_expired" and conn["active"]:
            conn.update(active=0, inactive_reason="oauth_reauthorization_required", updated_at=event["created_at"])
        outcome = self.sb.destinations._inactive(conn)
        return [(outcome.code, outcome.http_status, outcome.message, outcome.response, self.rng.uniform(0.001, 0.004))]

    def _healthy(self, conn: dict[str, Any]) -> dict[str, Any]:
        """The connection as it was before its cause: credentials the provider still accepted."""
        if conn["type"] == "mailchimp":
            return {**conn, "metadata": {**conn["metadata"], "api_key": "accepted-before-revocation"}}
        return conn

    def _job(self, conn: dict[str, Any], event: dict[str, Any], rule: dict[str, Any], rule_event_id: str) -> Job:
        return Job(
            rule_event_id=rule_event_id,
            event_id=event["id"],
            rule_id=rule["id"],
            attempt_id="",
            attempt_number=1,
            workspace_id=conn["workspace_id"],
            integration_type=conn["type"],
            event=event,
            rule_metadata=rule["metadata"],
            connection=conn,
            connection_id=conn["id"],
            started=0.0,
        )

    def _final_connection_states(self, built: Built) -> None:
        """What each cause left behind on its connection, at the moment it began."""
        for conn in built.connections:
            kind = self.kinds.get(conn["key"])
            if kind == "url_moved":
                conn["metadata"] = {**conn["metadata"], "url": GONE_URL}
                conn["updated_at"] = iso(self.starts[conn["key"]])
            elif kind == "oauth_expired" and conn["active"]:  # no signup came after it began
                conn.update(
                    active=0, inactive_reason="oauth_reauthorization_required", updated_at=iso(self.starts[conn["key"]])
                )
