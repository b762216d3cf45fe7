"""Pydantic models mirroring the Meshes API reference.

Requests are strict: they carry every documented rule (enums, lengths, patterns, limits) so a bad
call is refused before it leaves. Responses are tolerant: unknown fields are kept (the API grows),
and status values are open strings because the sources disagree on their vocabulary.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from meshes_mcp.api.problems import UUID_EXAMPLE, InvalidRequest, Problem

# --- shared vocabulary -------------------------------------------------------------------------

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
RESOURCE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
WORKSPACE_NAME_PATTERN = r"^[a-zA-Z0-9 _-]+$"
# The connection-name charset is stated in prose only ("letters, digits, space, underscore, dash");
# the exact regex is undocumented, so this is that sentence written down.
CONNECTION_NAME_PATTERN = r"^[A-Za-z0-9 _-]+$"
SESSION_CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
PATH_SELECTOR_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*(\.[a-zA-Z0-9_]+)*$"
# Pragmatic address check (RFC 5322 is broader than any destination accepts): one @, a dotted domain.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

BULK_LIMIT = 100
PAGE_LIMIT_MAX = 200

Uuid = Annotated[str, StringConstraints(pattern=UUID_RE.pattern)]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]
ResourceId = Annotated[str, StringConstraints(pattern=RESOURCE_ID_PATTERN)]
Limit = Annotated[int, Field(ge=1, le=PAGE_LIMIT_MAX)]


def uuid_problem(param: str, value: object, where: str | None = None) -> Problem | None:
    """What is wrong with an id that must be a UUID (the rule of the `Uuid` field type), or None.
    `where` names the tool that lists valid ids, for an agent that guessed a name instead."""
    if isinstance(value, str) and UUID_RE.match(value):
        return None
    return Problem(param, f'must be a UUID, e.g. "{UUID_EXAMPLE}"' + (f" ({where})" if where else ""))


def require_uuid(param: str, value: str, where: str | None = None) -> str:
    """A path id, checked before it becomes part of a URL."""
    problem = uuid_problem(param, value, where)
    if problem is not None:
        raise InvalidRequest([problem])
    return value


def require_bulk_size(events: list[Any]) -> list[Any]:
    """A bulk ingestion carries 1 to BULK_LIMIT events (the API refuses the whole request otherwise)."""
    if not 1 <= len(events) <= BULK_LIMIT:
        raise InvalidRequest(
            [Problem("events", f'a bulk request carries 1 to {BULK_LIMIT} events, e.g. [{{"event": "user.signup"}}]')]
        )
    return events


def require_session_id(value: str) -> str:
    # Session ids are opaque strings (docs example: sess_<uuid>); only refuse what cannot be a path segment.
    if not isinstance(value, str) or not value or not all(c.isalnum() or c in "_-" for c in value):
        raise InvalidRequest([Problem("session_id", 'must be a session id, e.g. "sess_3f0c9a52-8d1e-4a7b-9c55"')])
    return value


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError('must not be blank, e.g. "user.signup"')
    return value


# Upstream documents no length limit for event names; we choose 256 characters. A name is a routing key
# like "user.signup", so a longer one is a mistake (a payload pasted as the name), and every event, rule
# event, catalogue entry and index row repeats it. The sandbox answers 400 beyond it and the tools refuse
# it before sending; this is the one place the bound is set.
EVENT_NAME_MAX = 256

# Events are matched to rules by name, so a blank one could never be routed (nor a rule for it fire).
EventName = Annotated[str, StringConstraints(min_length=1, max_length=EVENT_NAME_MAX), AfterValidator(not_blank)]
# An event name as a filter: no longer than a name could be.
EventFilter = Annotated[str, StringConstraints(max_length=EVENT_NAME_MAX)]


class IntegrationType(StrEnum):
    activecampaign = "activecampaign"
    aweber = "aweber"
    customer_io = "customer_io"
    discord = "discord"
    hubspot = "hubspot"
    intercom = "intercom"
    mailchimp = "mailchimp"
    mailerlite = "mailerlite"
    pipedrive = "pipedrive"
    resend = "resend"
    sendgrid = "sendgrid"
    salesforce = "salesforce"
    slack = "slack"
    webhook = "webhook"
    zoom = "zoom"


INTEGRATION_TYPES = tuple(t.value for t in IntegrationType)

# Only these four are documented as filter values; responses may carry the newer ones too.
EventStatusFilter = Literal["pending", "processing", "completed", "failed"]
EVENT_STATUSES = ("pending", "processing", "retrying", "completed", "failed", "canceled")
TERMINAL_STATUSES = frozenset({"completed", "failed", "canceled"})
# Still queued or in flight: what a cancel can stop. Derived, so the lists cannot disagree.
ACTIVE_STATUSES = tuple(status for status in EVENT_STATUSES if status not in TERMINAL_STATUSES)
OUTCOME_CODES = (
    "delivered",
    "rejected_client_error",
    "rejected_server_error",
    "rate_limited",
    "auth_failed",
    "timeout",
    "network_error",
    "mapping_error",
    "internal_error",
)
InactiveReason = Literal[
    "authentication_invalid", "oauth_authorization_revoked", "oauth_reauthorization_required", "manually_inactivated"
]
SessionRole = Literal["member", "admin", "owner"]
SessionType = Literal["workspace", "resource", "dashboard"]
SessionStatus = Literal["active", "revoked"]
SessionScope = Literal["events.payload:read"]
LaunchPage = Literal["dashboard", "connections", "rules", "events"]


class Request(BaseModel):
    """Base of every request body: unknown keys are refused so typos surface as errors."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    def body(self) -> dict[str, Any]:
        """The JSON body: omitted optional fields stay omitted (omitted differs from null)."""
        return self.model_dump(mode="json", exclude_unset=True)


class Response(BaseModel):
    """Base of every response model: fields the API adds later are kept, not dropped."""

    model_config = ConfigDict(extra="allow")


T = TypeVar("T")


class Page(Response, Generic[T]):
    """The list envelope shared by every paginated endpoint."""

    count: int = 0
    limit: int | None = None
    next_cursor: str | None = None
    records: list[T] = Field(default_factory=list)


# --- workspaces ----------------------------------------------------------------------------------

WorkspaceName = Annotated[str, StringConstraints(min_length=3, max_length=50, pattern=WORKSPACE_NAME_PATTERN)]


class CreateWorkspaceRequest(Request):
    name: WorkspaceName
    description: Annotated[str, StringConstraints(max_length=1024)] | None = None


class UpdateWorkspaceRequest(Request):
    name: WorkspaceName
    description: Annotated[str, StringConstraints(max_length=1024)] | None = None


class PublishableKey(Response):
    public_key: str
    name: str | None = None


class Workspace(Response):
    id: str
    name: str
    description: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    publishable_key: PublishableKey | None = None


class CatalogEntry(Response):
    """An entry of a workspace's event-type or resource catalogue."""

    id: str | None = None
    key: str
    label: str | None = None
    description: str | None = None
    active: bool | None = None
    created_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


# --- connections ---------------------------------------------------------------------------------

ConnectionName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=CONNECTION_NAME_PATTERN)]


class CreateConnectionRequest(Request):
    workspace: Uuid
    type: IntegrationType
    name: ConnectionName
    metadata: dict[str, Any]
    hidden: bool | None = None


class UpdateConnectionRequest(Request):
    name: ConnectionName
    metadata: dict[str, Any]
    hidden: bool | None = None


class DeleteConnectionRequest(Request):
    force_delete: bool | None = None


class Connection(Response):
    id: str
    workspace: str
    type: str
    name: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    action_data: dict[str, Any] | None = None
    active: bool | None = None
    inactive_reason: str | None = None
    hidden: bool | None = None
    created_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class DeletedConnection(Response):
    id: str
    type: str | None = None


# --- field catalogue and mappings ---------------------------------------------------------------

FieldType = Literal[
    "string", "number", "boolean", "date", "datetime", "enum", "multi_enum", "json", "object", "array", "unknown"
]


class FieldConstraints(Response):
    format: str | None = None
    required: bool | None = None
    read_only: bool | None = None
    max_length: int | None = None
    min_length: int | None = None
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    allowed_values: list[str] | None = None


class FieldDef(Response):
    key: str
    label: str | None = None
    type: str
    description: str | None = None
    constraints: FieldConstraints | None = None
    provider_meta: dict[str, Any] | None = None


class ConnectionFieldCatalog(Response):
    id: str | None = None
    workspace_id: str | None = None
    connection_id: str | None = None
    integration_type: str | None = None
    catalog_version: str | None = None
    refreshed_at: str | None = None
    fields: list[FieldDef] = Field(default_factory=list)
    created_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class StrictModel(BaseModel):
    """Mapping schema parts: exact shapes, no extra keys (the API answers 422 otherwise)."""

    model_config = ConfigDict(extra="forbid")


class LiteralSource(StrictModel):
    type: Literal["literal"]
    value: Annotated[str, StringConstraints(min_length=1, max_length=256)] | float | bool | None


class PathSource(StrictModel):
    type: Literal["path"]
    value: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=PATH_SELECTOR_PATTERN)]


Timezone = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class PlainTransform(StrictModel):
    type: Literal["to_string", "to_number", "to_boolean", "trim", "lower", "upper"]


class DateTransformParams(StrictModel):
    timezone: Timezone | None = None


class DateTransform(StrictModel):
    type: Literal["to_date", "to_datetime"]
    params: DateTransformParams | None = None


class DefaultTransformParams(StrictModel):
    value: Annotated[str, StringConstraints(min_length=1, max_length=128)] | float | bool | None


class DefaultTransform(StrictModel):
    type: Literal["default"]
    params: DefaultTransformParams


class SubstringTransformParams(StrictModel):
    start: Annotated[int, Field(ge=0)]
    length: Annotated[int, Field(gt=0)] | None = None


class SubstringTransform(StrictModel):
    type: Literal["substring"]
    params: SubstringTransformParams


Transform = Annotated[
    PlainTransform | DateTransform | DefaultTransform | SubstringTransform, Field(discriminator="type")
]
Note = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class MappingField(StrictModel):
    dest: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    source: Annotated[LiteralSource | PathSource, Field(discriminator="type")]
    transforms: Annotated[list[Transform], Field(max_length=10)] | None = None
    on_error: Literal["skip_field", "warn_action", "fail_action"] | None = None
    notes: Note | None = None


class MappingMeta(StrictModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    notes: Note | None = None


class MappingSchema(StrictModel):
    schema_version: Literal[1]
    fields: Annotated[list[MappingField], Field(max_length=250)]
    meta: MappingMeta | None = None


class UpdateMappingsRequest(Request):
    # `schema` shadows a BaseModel attribute, hence the alias.
    mapping_schema: MappingSchema = Field(alias="schema")
    workspace_id: Uuid | None = None
    mapping_id: Uuid | None = None
    expected_version: Annotated[int, Field(gt=0)] | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


class ConnectionDefaultMapping(Response):
    id: str | None = None
    mapping_id: str | None = None
    version: int | None = None
    workspace_id: str | None = None
    connection_id: str | None = None
    integration_type: str | None = None
    name: str | None = None
    mapping_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    catalog_version: str | None = None
    created_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class DefaultMappingResult(Response):
    status: str
    mapping: ConnectionDefaultMapping


# --- rules ---------------------------------------------------------------------------------------


class RuleMetadata(BaseModel):
    """`action` plus action-specific string fields (id, value, subject, from, template, …)."""

    model_config = ConfigDict(extra="allow")

    action: NonEmpty

    @model_validator(mode="after")
    def _extra_values_are_strings(self) -> RuleMetadata:
        for key, value in (self.model_extra or {}).items():
            if not isinstance(value, str):
                raise ValueError(f'metadata.{key} must be a string, e.g. "{key}": "5"')
        return self


class CreateRuleRequest(Request):
    workspace: Uuid
    connection: Uuid
    event: EventName
    metadata: RuleMetadata
    resource: NonEmpty | None = None
    resource_id: ResourceId | None = None
    active: bool | None = None
    hidden: bool | None = None


class RuleFilters(Request):
    event: EventFilter | None = None
    resource: str | None = None
    resource_id: str | None = None


class Rule(Response):
    id: str
    connection: str
    workspace: str
    type: str | None = None
    event: str
    resource: str | None = None
    resource_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    active: bool | None = None
    hidden: bool | None = None
    created_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class DeletedRule(Response):
    id: str
    connection: str | None = None
    event: str | None = None
    type: str | None = None
    resource: str | None = None
    resource_id: str | None = None


# --- events --------------------------------------------------------------------------------------


def check_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """`email`, when present, must be an address: CRM and email destinations match contacts on it."""
    email = payload.get("email")
    if email is not None and (not isinstance(email, str) or not EMAIL_RE.match(email)):
        raise ValueError('payload.email must be an email address, e.g. "jane@example.com"')
    return payload


class EmitEventRequest(Request):
    event: EventName
    payload: dict[str, Any]
    workspace: Uuid | None = None
    resource: NonEmpty | None = None
    resource_id: ResourceId | None = None
    type: Literal["event"] | None = None

    @field_validator("payload")
    @classmethod
    def _payload_shape(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_payload(value)


class EventListQuery(Request):
    limit: Limit | None = None
    cursor: NonEmpty | None = None


class WorkspaceEventQuery(EventListQuery):
    event: EventFilter | None = None
    resource: str | None = None
    resource_id: str | None = None
    status: EventStatusFilter | None = None


class RuleEvent(Response):
    id: str
    type: str | None = None
    workspace: str | None = None
    event: str | None = None
    event_id: str | None = None
    resource: str | None = None
    resource_id: str | None = None
    connection: str | None = None
    rule: str
    integration_type: str | None = None
    status: str
    attempt_count: int | None = None
    started_at: str | None = None
    completed_at: str | None = None
    last_error: str | None = None
    created_by: str | None = None
    created_at: str | None = None


class Event(Response):
    id: str
    type: str | None = None
    workspace: str
    event: str
    resource: str | None = None
    resource_id: str | None = None
    status: str | None = None
    total_rules: int | None = None
    completed_count: int | None = None
    failed_count: int | None = None
    started_at: str | None = None
    completed_at: str | None = None
    created_by: str | None = None
    created_at: str | None = None
    rule_events: list[RuleEvent] | None = None
    payload: dict[str, Any] | None = None


class BulkResult(Response):
    count: int = 0
    error_count: int | None = None
    records: list[dict[str, Any]] = Field(default_factory=list)


class Attempt(Response):
    """One delivery attempt. Only `outcome_code` is documented; the rest is tolerated as it comes."""

    id: str
    outcome_code: str | None = None


class ResponseDetails(Response):
    """The captured response of an attempt (schema undocumented: kept as the API sends it)."""


# --- integrations --------------------------------------------------------------------------------


class Integration(Response):
    name: str
    type: str
    authentication: dict[str, Any] = Field(default_factory=dict)
    actions: dict[str, Any] = Field(default_factory=dict)


# --- sessions ------------------------------------------------------------------------------------


Origin = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+$")]


class CreateSessionRequest(Request):
    workspace_id: Uuid
    role: SessionRole | None = None
    session_type: SessionType | None = None
    external_user_id: Annotated[str, StringConstraints(max_length=255)] | None = None
    ttl_seconds: Annotated[int, Field(ge=300, le=3600)] | None = None
    launch_ttl_seconds: Annotated[int, Field(ge=15, le=60)] | None = None
    launch_page: LaunchPage | None = None
    resource: NonEmpty | None = None
    resource_id: NonEmpty | None = None
    allowed_origins: Annotated[list[Origin], Field(max_length=10)] | None = None
    scopes: Annotated[list[SessionScope], Field(max_length=20)] | None = None

    @model_validator(mode="after")
    def _session_type_rules(self) -> CreateSessionRequest:
        kind = self.session_type or "workspace"
        scoped = self.resource is not None or self.resource_id is not None
        if kind == "resource" and (self.resource is None or self.resource_id is None):
            raise ValueError('session_type "resource" needs both resource and resource_id, e.g. "user" and "usr_42"')
        if kind != "resource" and scoped:
            raise ValueError('resource and resource_id are only allowed with session_type "resource"')
        if kind == "resource" and self.launch_page == "connections":
            raise ValueError('a "resource" session cannot launch on "connections"; use dashboard, rules or events')
        if kind == "dashboard" and self.launch_page not in (None, "dashboard"):
            raise ValueError('a "dashboard" session must launch on "dashboard"')
        return self


class SessionListQuery(Request):
    workspace_id: Uuid
    limit: Limit | None = None
    cursor: Annotated[str, StringConstraints(pattern=SESSION_CURSOR_PATTERN)] | None = None
    status: SessionStatus | None = None
    resource: NonEmpty | None = None
    resource_id: NonEmpty | None = None


class SessionToken(Response):
    session_id: str
    access_token: str | None = None
    expires_in: float | None = None
    expires_at: str | None = None
    workspace_id: str | None = None
    role: str | None = None
    session_type: str | None = None
    resource: str | None = None
    resource_id: str | None = None


class CreatedSession(SessionToken):
    launch_token: str | None = None
    launch_expires_at: str | None = None
    launch_url: str | None = None


class SessionSummary(Response):
    session_id: str
    workspace_id: str | None = None
    role: str | None = None
    external_user_id: str | None = None
    status: str | None = None
    created_at: str | None = None
    expires_at: str | None = None
    is_expired: bool | None = None
    session_type: str | None = None
    resource: str | None = None
    resource_id: str | None = None


class RevokedSession(Response):
    revoked: bool
