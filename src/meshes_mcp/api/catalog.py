"""The integration catalogue, and validation of connection and rule metadata against it.

The catalogue says, per integration type, which keys a connection's metadata takes (its
authentication fields) and which keys a rule's metadata takes per action. We ship an offline copy
(`integrations.json`, shaped like `GET /api/v1/integrations`) and can refresh it from the live API,
which is the authoritative contract. Checks here return `Problem`s named `metadata.<key>` (or
`type`) whose messages list the valid choices; the API stays the final judge.
"""

from __future__ import annotations

import copy
import difflib
import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from meshes_mcp.api.problems import Problem, json_type_name

__all__ = [
    "ActionSpec",
    "AuthField",
    "AuthSpec",
    "Catalog",
    "DataItem",
    "DependsOn",
    "FieldOption",
    "IntegrationSpec",
    "describe_action",
    "example_rule_metadata",
    "is_loopback_url",
    "load_catalog",
    "validate_connection_metadata",
    "validate_rule_metadata",
]

# --- typed views of the catalogue records -------------------------------------------------------


class _Tolerant(BaseModel):
    """The live catalogue may carry keys we do not know yet: keep them, never fail on them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _as_text(value: Any) -> Any:
    # Option values are strings in every documented example; a live number is compared as text.
    return value if value is None or isinstance(value, str) else str(value)


class FieldOption(_Tolerant):
    label: str | None = None
    value: str

    @field_validator("value", "label", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _as_text(value)


class DependsOn(_Tolerant):
    field: str
    value: str | list[str]

    @field_validator("value", mode="before")
    @classmethod
    def _values_as_text(cls, value: Any) -> Any:
        return [_as_text(v) for v in value] if isinstance(value, list) else _as_text(value)

    @property
    def values(self) -> list[str]:
        return self.value if isinstance(self.value, list) else [self.value]


class AuthField(_Tolerant):
    """One key of a connection's metadata, as `authentication.fields[]` describes it."""

    key: str
    label: str | None = None
    type: str = "text"
    required: bool = False
    help_text: str | None = Field(default=None, alias="helpText")
    # `validate` would shadow a BaseModel method, hence the alias.
    validate_as: str | None = Field(default=None, alias="validate")
    regex: str | None = None
    default_value: str | None = Field(default=None, alias="defaultValue")
    options: list[FieldOption] | None = None
    depends_on: DependsOn | None = Field(default=None, alias="dependsOn")

    @field_validator("default_value", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _as_text(value)

    @property
    def option_values(self) -> list[str]:
        return [option.value for option in self.options or []]


class AuthSpec(_Tolerant):
    type: str = "none"
    # None (not given) differs from []: with no field list we cannot judge the metadata at all.
    fields: list[AuthField] | None = None

    def field(self, key: str) -> AuthField | None:
        return next((f for f in self.fields or [] if f.key == key), None)


PICK_KINDS = ("simple", "advanced")


class DataItem(_Tolerant):
    """One input of a rule action: an item picked from live action data, or a typed field."""

    kind: str
    key: str | None = None  # the live action-data collection (simple/advanced) or the field name
    field: str | None = None  # the rule-metadata key written
    label: str | None = None
    noun: str | None = None
    required: bool | None = None
    type: str | None = None
    regex: str | None = None
    regex_message: str | None = Field(default=None, alias="regexMessage")
    placeholder: str | None = None
    # An AdvancedOption object for kind "advanced", a list of {label, value} for kind "field".
    options: Any = None

    @property
    def is_pick(self) -> bool:
        return self.kind in PICK_KINDS

    @property
    def metadata_key(self) -> str:
        # Undocumented default: picks write metadata.id, typed fields write their own key.
        return self.field or ("id" if self.is_pick else (self.key or ""))

    @property
    def is_required(self) -> bool:
        # Undocumented default: an action that picks an item cannot work without one, while typed
        # fields are optional unless marked (Resend's subject/from are documented optional).
        return self.required if self.required is not None else self.is_pick

    @property
    def option_field(self) -> str | None:
        """The metadata key that takes the picked item's option (`value` for properties)."""
        if self.kind == "advanced" and isinstance(self.options, Mapping):
            return self.options.get("field") or "value"
        return None

    @property
    def options_key(self) -> str:
        """Where a live item keeps its options (`options` in the documented property items)."""
        key = self.options.get("key") if isinstance(self.options, Mapping) else None
        return key if isinstance(key, str) else "options"

    @property
    def choice_values(self) -> list[str]:
        """The allowed values of a kind-field select."""
        if self.kind != "field" or not isinstance(self.options, list):
            return []
        return [str(o["value"]) for o in self.options if isinstance(o, Mapping) and "value" in o]


class ActionSpec(_Tolerant):
    key: str
    label: str | None = None
    noun: str | None = None
    fields: list[str] | None = None
    data: list[DataItem] = Field(default_factory=list)

    @field_validator("data", mode="before")
    @classmethod
    def _data_list(cls, value: Any) -> Any:
        return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []

    @property
    def metadata_keys(self) -> list[str]:
        """Every rule-metadata key besides `action` this action uses, in catalogue order."""
        keys = list(self.fields or [])
        for item in self.data:
            keys.extend(k for k in (item.metadata_key, item.option_field) if k)
        return list(dict.fromkeys(k for k in keys if k != "action"))

    @property
    def picks(self) -> list[DataItem]:
        return [item for item in self.data if item.is_pick]


class IntegrationSpec(_Tolerant):
    name: str = ""
    type: str
    authentication: AuthSpec = Field(default_factory=AuthSpec)
    actions: dict[str, ActionSpec] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _fill_gaps(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        data.setdefault("name", data.get("type") or "")
        if not isinstance(data.get("authentication"), Mapping):
            data.pop("authentication", None)
        data["actions"] = _actions_by_key(data.get("actions"))
        return data

    @property
    def is_oauth(self) -> bool:
        return self.authentication.type == "oauth"

    @property
    def action_keys(self) -> list[str]:
        return list(self.actions)


def _actions_by_key(actions: Any) -> dict[str, Any]:
    """Actions keyed by action key, each carrying its `key` (a live record may omit either)."""
    if isinstance(actions, list):
        actions = {a.get("key"): a for a in actions if isinstance(a, Mapping) and a.get("key")}
    if not isinstance(actions, Mapping):
        return {}
    return {key: {"key": key, **action} for key, action in actions.items() if isinstance(action, Mapping)}


# --- the catalogue ------------------------------------------------------------------------------


class Catalog:
    """Integration specs by type, plus the API-shaped records they came from."""

    def __init__(self, records: Iterable[Mapping[str, Any]], *, source: str = "embedded", version: str | None = None):
        self.source = source
        self.version = version
        self._records: dict[str, dict[str, Any]] = {}
        self._specs: dict[str, IntegrationSpec] = {}
        for record in records:
            spec = _parse(record)
            if spec is not None:
                self._records[spec.type] = copy.deepcopy(dict(record))  # the caller keeps theirs
                self._specs[spec.type] = spec

    def get(self, integration_type: str) -> IntegrationSpec | None:
        return self._specs.get(str(integration_type))

    def types(self) -> list[str]:
        return list(self._specs)

    def records(self) -> list[dict[str, Any]]:
        """API-shaped integration records (copies: callers may change them freely)."""
        return copy.deepcopy(list(self._records.values()))

    def refreshed(self, records: Iterable[Mapping[str, Any]] | Mapping[str, Any]) -> Catalog:
        """A catalogue built from a live `GET /integrations` answer (records or the whole envelope).

        The live answer wins wherever it speaks; keys it leaves out are filled from ours, and types
        it lacks keep our entry (a partial or older deployment should not make them unknown).
        """
        if isinstance(records, Mapping):
            records = records.get("records") or []
        merged = dict(self._records)
        for live in records:
            if not isinstance(live, Mapping) or _parse(live) is None:
                continue  # a record we cannot read says nothing we could use
            kind = str(live["type"])
            candidate = _merge_record(self._records.get(kind, {}), live)
            merged[kind] = candidate if _parse(candidate) is not None else dict(live)
        return Catalog(merged.values(), source="live")


def _parse(record: Mapping[str, Any]) -> IntegrationSpec | None:
    try:
        return IntegrationSpec.model_validate(record)
    except ValidationError:
        return None


def _merge_record(ours: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """Live keys override ours; `authentication` merges key by key; the live action set is the
    truth, but an action missing keys (e.g. `data`) borrows them from our action of the same key."""
    merged = {**ours, **live}
    our_auth, live_auth = ours.get("authentication"), live.get("authentication")
    if isinstance(our_auth, Mapping):
        # A malformed live value is no answer: keep ours rather than lose the auth type.
        merged["authentication"] = {**our_auth, **live_auth} if isinstance(live_auth, Mapping) else our_auth
    live_actions = _actions_by_key(live.get("actions"))
    if live_actions:
        our_actions = _actions_by_key(ours.get("actions"))
        merged["actions"] = {key: {**our_actions.get(key, {}), **action} for key, action in live_actions.items()}
    elif "actions" in ours:
        merged["actions"] = ours["actions"]
    return merged


@functools.cache
def load_catalog() -> Catalog:
    """The embedded catalogue, read once on first use (nothing happens at import time)."""
    text = resources.files("meshes_mcp.api").joinpath("integrations.json").read_text(encoding="utf-8")
    document = json.loads(text)
    return Catalog(document.get("records", []), source="embedded", version=document.get("catalog_version"))


# --- shared message helpers ---------------------------------------------------------------------

LISTING_CAP = 20
ECHO_CAP = 64  # ids we quote back are capped so a pasted blob never fills a message


def _quote(value: str) -> str:
    return json.dumps(value if len(value) <= ECHO_CAP else value[:ECHO_CAP] + "…", ensure_ascii=False)


def _quoted_list(values: Iterable[str]) -> str:
    return ", ".join(_quote(v) for v in values)


def _capped(entries: list[str]) -> str:
    shown = ", ".join(entries[:LISTING_CAP])
    hidden = len(entries) - LISTING_CAP
    return f"{shown} and {hidden} more" if hidden > 0 else shown


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _given(value: Any) -> bool:
    """A form leaves hidden or blank fields empty: treat "" and null as not given."""
    return value is not None and value != ""


# --- URLs ---------------------------------------------------------------------------------------

URL_EXAMPLE = "https://example.com/hooks/meshes"


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is this machine: localhost, 127.0.0.0/8 or ::1."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_problem(url: str) -> str | None:
    """The rule an URL field breaks, or None. The URL itself is never quoted: it may hold a token."""
    rule = (
        f"must be an absolute https:// URL, e.g. {_quote(URL_EXAMPLE)} "
        "(http:// is accepted only for loopback hosts such as 127.0.0.1 or localhost)"
    )
    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return rule
    if not parts.hostname or any(ch.isspace() for ch in url.strip()):
        return rule
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_url(url)):
        return None
    return rule


# --- control characters ------------------------------------------------------------------------

# Connection metadata ends up in HTTP headers (keys, tokens, usernames, header values) and URLs, where a
# control character cannot go: a key pasted with its trailing newline is accepted by a lenient API, then
# every delivery fails with a header error quoting the key. No catalogue field takes multi-line text.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_CHAR_RULE = (
    "holds a control character (CR, LF, tab…), often a newline pasted with a key; HTTP headers and URLs cannot "
    "carry it: remove it"
)
SECRET_EXAMPLE = "key_live_123"


def _control_char_problem(field: AuthField, value: str) -> str | None:
    if not CONTROL_CHARS.search(value):
        return None
    example = URL_EXAMPLE if field.validate_as == "url" else _helptext_example(field.help_text) or SECRET_EXAMPLE
    return f"{CONTROL_CHAR_RULE}, e.g. {_quote(example)}"


# --- custom headers (webhook) -------------------------------------------------------------------

CUSTOM_HEADERS_KEY = "custom_headers"
MAX_CUSTOM_HEADERS = 5
# The docs' list of reserved names is cut off after Content-Type; we also refuse the headers an
# HTTP client owns (length, host, user agent) and the X-Meshes-* family Meshes writes itself.
RESERVED_HEADERS = frozenset({"authorization", "content-type", "content-length", "host", "user-agent"})
RESERVED_HEADER_PREFIX = "x-meshes-"
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
CUSTOM_HEADERS_EXAMPLE = '{"X-Team": "growth"}'
# Fields whose value is sent as a header name (webhook custom-header auth and signatures).
HEADER_NAME_FIELDS = frozenset({"auth_header_name", "signing_header"})


def _custom_headers_problems(value: Any) -> list[str]:
    """custom_headers: a JSON object (or its JSON text) of ≤ 5 string headers, none reserved."""
    shape = f"must be a JSON object of header names to string values, e.g. {CUSTOM_HEADERS_EXAMPLE}"
    headers = value
    if isinstance(value, str):
        try:
            headers = json.loads(value)
        except ValueError:
            return [shape]
    if not isinstance(headers, Mapping):
        return [f"{shape} (got {json_type_name(headers)})"]
    problems = []
    if len(headers) > MAX_CUSTOM_HEADERS:
        problems.append(f"has {len(headers)} headers; at most {MAX_CUSTOM_HEADERS} are allowed")
    for name, header_value in headers.items():
        problems.extend(_header_problems(str(name), header_value))
    return problems


def _header_problems(name: str, value: Any) -> list[str]:
    if not HEADER_NAME_RE.match(name):
        # Not quoted: a malformed name is often a whole header line, credentials included.
        return ['a header name is not a valid HTTP header name (letters, digits and -, e.g. "X-Team")']
    lowered = name.lower()
    if lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_HEADER_PREFIX):
        return [
            f"header {_quote(name)} is reserved (Authorization, Content-Type, Content-Length, Host, "
            "User-Agent and X-Meshes-* cannot be set; use auth_scheme for authentication)"
        ]
    if not isinstance(value, str):
        return [f"header {_quote(name)} must have a string value (got {json_type_name(value)})"]
    if CONTROL_CHARS.search(value):
        return [f'header {_quote(name)} value {CONTROL_CHAR_RULE}, e.g. {{{_quote(name)}: "key_live_123"}}']
    return []


# --- connection metadata ------------------------------------------------------------------------


def _oauth_refusal(spec: IntegrationSpec) -> Problem:
    name = spec.name or spec.type
    return Problem(
        "type",
        f"{name} uses OAuth, so its connections can't be created through the API: connect {name} in "
        f"the Meshes dashboard (Connections → New connection → {name}), then find it with the "
        "list_connections tool.",
    )


def _controlling_value(auth: AuthSpec, metadata: Mapping[str, Any], key: str) -> str | None:
    """The value a dependsOn refers to: as given, else the controlling field's default."""
    value = metadata.get(key)
    if _given(value):
        return value if isinstance(value, str) else None
    controller = auth.field(key)
    return controller.default_value if controller else None


def _is_active(auth: AuthSpec, metadata: Mapping[str, Any], field: AuthField) -> bool:
    """Whether a field applies: no dependsOn, or the field it depends on has a matching value."""
    if field.depends_on is None:
        return True
    return _controlling_value(auth, metadata, field.depends_on.field) in field.depends_on.values


def _helptext_example(text: str | None) -> str | None:
    match = re.search(r"e\.g\.\s*([^\s;,]+?)[:;,]?(?:\s|$)", text or "")
    return match.group(1) if match else None


def _field_example(field: AuthField) -> str:
    if field.options:
        return f"one of {_quoted_list(field.option_values)}"
    example = _helptext_example(field.help_text)
    if example is None and field.validate_as == "url":
        example = URL_EXAMPLE
    described = field.label or field.key
    if field.help_text and _helptext_example(field.help_text) is None:
        described += f" ({field.help_text})"
    return described + (f", e.g. {_quote(example)}" if example else "")


def _controller_state(auth: AuthSpec, metadata: Mapping[str, Any], key: str) -> str:
    """` (it is "none")` / ` (it defaults to "none")`, or "" when the value should not be quoted."""
    current = _controlling_value(auth, metadata, key)
    controller = auth.field(key)
    # Only a known option is quoted back: anything else could be a pasted secret.
    if current is None or (controller is not None and current not in controller.option_values):
        return ""
    verb = "is" if _given(metadata.get(key)) else "defaults to"
    return f" (it {verb} {_quote(current)})"


def _condition(field: AuthField) -> str:
    """` when auth_scheme is "basic"` for a field that depends on another one."""
    if field.depends_on is None:
        return ""
    return f" when {field.depends_on.field} is " + " or ".join(_quote(v) for v in field.depends_on.values)


def _inactive_field_problem(auth: AuthSpec, metadata: Mapping[str, Any], field: AuthField) -> Problem:
    assert field.depends_on is not None
    controller_key = field.depends_on.field
    wanted = " or ".join(_quote(v) for v in field.depends_on.values)
    now = _controller_state(auth, metadata, controller_key)
    return Problem(
        f"metadata.{field.key}",
        f"is only used when {controller_key} is {wanted}{now}; set {controller_key} to {wanted} "
        f"or leave {field.key} out",
    )


def _value_problem(field: AuthField, value: Any) -> str | None:
    """What is wrong with one given value (type, select choice, URL, regex), never quoting it."""
    if not isinstance(value, str):
        expected = f"one of {_quoted_list(field.option_values)}" if field.options else "text"
        return f"must be a string, {expected} (got {json_type_name(value)})"
    control = _control_char_problem(field, value)
    if control:
        return control
    if field.key in HEADER_NAME_FIELDS and not HEADER_NAME_RE.match(value):
        return 'must be a valid HTTP header name (letters, digits and -), e.g. "X-Api-Key"'
    if field.options:
        return _select_problem(field, value)
    if field.validate_as == "url":
        return _url_problem(value)
    if field.regex:
        return _regex_problem(field.regex, value, _helptext_example(field.help_text))
    return None


def _select_problem(field: AuthField, value: str) -> str | None:
    values = field.option_values
    if value in values:
        return None
    # Strict on purpose (the API stores values, not labels), but point at the likely intent.
    hint = next(
        (o.value for o in field.options or [] if value.lower() in (o.value.lower(), (o.label or "").lower())), None
    )
    suggestion = f" (did you mean {_quote(hint)}?)" if hint else ""
    return f"must be one of {_quoted_list(values)}{suggestion}"


def _regex_problem(pattern: str, value: str, example: str | None) -> str | None:
    try:
        # JavaScript's RegExp.test semantics (the catalogue is written for a JS front end): search.
        if re.search(pattern, value):
            return None
    except re.error:
        return None  # a pattern we cannot read is not ours to enforce
    return f"must match {pattern}" + (f", e.g. {_quote(example)}" if example else "")


def validate_connection_metadata(
    spec: IntegrationSpec, metadata: Mapping[str, Any], *, for_update: bool = False
) -> list[Problem]:
    """Check a connection's metadata against the integration's authentication fields.

    The same checks apply to updates, because the API's PUT takes the full metadata; only the OAuth
    refusal is skipped there, since those connections exist and their metadata is Meshes' own.
    """
    if spec.is_oauth:
        return [] if for_update else [_oauth_refusal(spec)]
    if not isinstance(metadata, Mapping):
        return [Problem("metadata", f"must be an object (got {json_type_name(metadata)})")]
    auth = spec.authentication
    if auth.fields is None:
        return []  # the catalogue does not describe this integration's metadata: nothing to judge
    problems = _unknown_connection_keys(spec, metadata)
    for field in auth.fields:
        problems.extend(_connection_field_problems(auth, metadata, field))
    return problems


def _unknown_connection_keys(spec: IntegrationSpec, metadata: Mapping[str, Any]) -> list[Problem]:
    valid = [f.key for f in spec.authentication.fields or []]
    listing = f"valid keys: {', '.join(valid)}" if valid else "it takes no metadata keys"
    return [
        Problem(
            f"metadata.{key}",
            f"is not a {spec.name or spec.type} connection field; {listing}" + _did_you_mean(str(key), valid),
        )
        for key in metadata
        if key not in valid
    ]


def _connection_field_problems(auth: AuthSpec, metadata: Mapping[str, Any], field: AuthField) -> list[Problem]:
    param = f"metadata.{field.key}"
    value = metadata.get(field.key)
    if not _is_active(auth, metadata, field):
        return [_inactive_field_problem(auth, metadata, field)] if _given(value) else []
    if not _given(value):
        if not field.required:
            return []
        return [Problem(param, f"is required{_condition(field)}: {_field_example(field)}")]
    if field.key == CUSTOM_HEADERS_KEY:
        return [Problem(param, msg) for msg in _custom_headers_problems(value)]
    problem = _value_problem(field, value)
    return [Problem(param, problem)] if problem else []


# --- rule metadata ------------------------------------------------------------------------------

# Documented example ids per live collection [integrations.md §1]; anything else gets a neutral id.
PICK_EXAMPLES: dict[str, str] = {
    "lists": "5",
    "tags": "123",
    "channels": "C0123456789",
    "properties": "lifecycle_stage",
}
OPTION_EXAMPLES: dict[str, str] = {"properties": "customer"}
TYPED_FIELD_EXAMPLES: dict[str, str] = {
    "title": "New signup",
    "template": "New signup: {{email}}",
    "subject": "Welcome to Acme",
    "from": "Team <team@example.com>",
    "body": "<p>Hi {{first_name}}, welcome!</p>",
    "event_name_override": "user.signup",
}
ACTIONS_TOOL = "get_connection_actions"


def _noun(action: ActionSpec, item: DataItem) -> str:
    """What one picked item is called ("list", "property"), for messages."""
    if item.noun:
        return item.noun
    if action.noun and len(action.picks) == 1:
        return action.noun
    return (item.label or item.key or "item").lower()


def _pick_example(item: DataItem) -> str:
    return PICK_EXAMPLES.get(item.key or "", "123")


def _typed_example(item: DataItem) -> str:
    if item.choice_values:
        return item.choice_values[0]
    return TYPED_FIELD_EXAMPLES.get(item.metadata_key) or item.placeholder or "text"


def _requirement(spec: IntegrationSpec, action: ActionSpec, item: DataItem, key: str) -> str:
    """What a required rule-metadata key holds, with an example."""
    name = spec.name or spec.type
    if item.is_pick and key == item.option_field:
        example = OPTION_EXAMPLES.get(item.key or "", "value")
        return f"one of the chosen {_noun(action, item)}'s option values from {ACTIONS_TOOL}, e.g. {_quote(example)}"
    if item.is_pick:
        return f"the id of a {name} {_noun(action, item)} from {ACTIONS_TOOL}, e.g. {_quote(_pick_example(item))}"
    return f"{item.label or item.metadata_key}, e.g. {_quote(_typed_example(item))}"


def example_rule_metadata(spec: IntegrationSpec, action_key: str) -> dict[str, str]:
    """A valid-looking rule metadata for an action (required keys only), for error messages."""
    action = spec.actions[action_key]
    example = {"action": action.key}
    for item in action.data:
        if not item.is_required:
            continue
        if item.is_pick:
            example[item.metadata_key] = _pick_example(item)
            if item.option_field:
                example[item.option_field] = OPTION_EXAMPLES.get(item.key or "", "value")
        else:
            example[item.metadata_key] = _typed_example(item)
    return example


def describe_action(spec: IntegrationSpec, action_key: str) -> str:
    """One line on what metadata an action takes, e.g. `add_to_list: id (a list id from …)`."""
    action = spec.actions[action_key]
    parts: dict[str, str] = {}
    for item in action.data:
        noun = _noun(action, item)
        if item.is_pick:
            parts[item.metadata_key] = f"a {noun} id from {ACTIONS_TOOL}"
            if item.option_field:
                parts[item.option_field] = f"one of that {noun}'s option values"
        else:
            need = "required" if item.is_required else "optional"
            choices = f", one of {', '.join(item.choice_values)}" if item.choice_values else ""
            parts[item.metadata_key] = f"{need} {(item.label or item.metadata_key).lower()}{choices}"
    for key in action.metadata_keys:
        parts.setdefault(key, "string")
    if not parts:
        return f"{action.key}: no fields beyond action"
    return f"{action.key}: " + ", ".join(f"{key} ({what})" for key, what in parts.items())


def validate_rule_metadata(
    spec: IntegrationSpec, metadata: Mapping[str, Any], action_data: Mapping[str, Any] | None = None
) -> list[Problem]:
    """Check a rule's metadata against the chosen action, and against live action data if given."""
    if not isinstance(metadata, Mapping):
        return [Problem("metadata", f"must be an object (got {json_type_name(metadata)})")]
    action, problems = _chosen_action(spec, metadata.get("action"))
    if action is None:
        return problems
    problems.extend(_rule_key_problems(spec, action, metadata))
    for item in action.data:
        problems.extend(_item_problems(spec, action, item, metadata))
    if action_data is not None:
        for item in action.picks:
            problems.extend(_live_problems(action, item, metadata, action_data))
    return problems


def _chosen_action(spec: IntegrationSpec, action_key: Any) -> tuple[ActionSpec | None, list[Problem]]:
    listing = ", ".join(spec.action_keys)
    name = spec.name or spec.type
    if not _given(action_key):
        first = spec.action_keys[0] if spec.action_keys else None
        example = f", e.g. {json.dumps(example_rule_metadata(spec, first))}" if first else ""
        return None, [Problem("metadata.action", f"is required: one of {listing}{example}")]
    if not isinstance(action_key, str):
        return None, [
            Problem("metadata.action", f"must be a string, one of {listing} (got {json_type_name(action_key)})")
        ]
    if action_key not in spec.actions:
        hint = _did_you_mean(action_key, spec.action_keys)
        return None, [Problem("metadata.action", f"is not an action of {name}; actions are {listing}{hint}")]
    return spec.actions[action_key], []


def _rule_key_problems(spec: IntegrationSpec, action: ActionSpec, metadata: Mapping[str, Any]) -> list[Problem]:
    allowed = action.metadata_keys
    takes = f"it takes {', '.join(allowed)}" if allowed else "it takes no fields beyond action"
    problems = []
    for key, value in metadata.items():
        if key == "action":
            continue
        if key not in allowed:
            hint = _did_you_mean(str(key), allowed)
            problems.append(Problem(f"metadata.{key}", f"is not used by {action.key}; {takes}{hint}"))
        elif not isinstance(value, str):
            problems.append(Problem(f"metadata.{key}", f"must be a string (got {json_type_name(value)})"))
    return problems


def _item_problems(
    spec: IntegrationSpec, action: ActionSpec, item: DataItem, metadata: Mapping[str, Any]
) -> list[Problem]:
    problems = []
    for key in (item.metadata_key, item.option_field):
        if key and item.is_required and not _given(metadata.get(key)):
            problems.append(Problem(f"metadata.{key}", f"is required: {_requirement(spec, action, item, key)}"))
    value = metadata.get(item.metadata_key)
    if item.kind == "field" and isinstance(value, str) and _given(value):
        problem = _typed_value_problem(item, value)
        if problem:
            problems.append(Problem(f"metadata.{item.metadata_key}", problem))
    return problems


def _typed_value_problem(item: DataItem, value: str) -> str | None:
    if item.choice_values and value not in item.choice_values:
        return f"must be one of {_quoted_list(item.choice_values)}"
    if item.regex:
        problem = _regex_problem(item.regex, value, item.placeholder)
        if problem and item.regex_message:
            return f"{item.regex_message} ({problem})"
        return problem
    return None


# --- live action data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _LiveItem:
    id: str
    name: str | None
    raw: Mapping[str, Any]

    @property
    def entry(self) -> str:
        return f"{self.id} {self.name}" if self.name else self.id


def _live_items(collection: list[Any]) -> list[_LiveItem]:
    return [
        _LiveItem(str(raw["id"]), raw.get("name") if isinstance(raw.get("name"), str) else None, raw)
        for raw in collection
        if isinstance(raw, Mapping) and raw.get("id") is not None
    ]


def _live_problems(
    action: ActionSpec, item: DataItem, metadata: Mapping[str, Any], action_data: Mapping[str, Any]
) -> list[Problem]:
    collection = action_data.get(item.key or "")
    chosen = metadata.get(item.metadata_key)
    if not isinstance(collection, list) or not isinstance(chosen, str) or not _given(chosen):
        return []  # the collection was not fetched (or is not a list): we cannot judge
    items = _live_items(collection)
    match = next((live for live in items if live.id == chosen), None)
    noun = _noun(action, item)
    if match is None:
        known = f"{item.key} are {_capped([i.entry for i in items])}" if items else f"this connection has no {item.key}"
        return [Problem(f"metadata.{item.metadata_key}", f"{noun} {_quote(chosen)} does not exist; {known}")]
    if item.option_field:
        return _option_problems(item, noun, match, metadata.get(item.option_field))
    return []


def _option_problems(item: DataItem, noun: str, match: _LiveItem, chosen: Any) -> list[Problem]:
    options = match.raw.get(item.options_key)
    if not isinstance(options, list) or not isinstance(chosen, str) or not _given(chosen):
        return []
    entries = [(str(o.get("value", o.get("key"))), o.get("label")) for o in options if isinstance(o, Mapping)]
    if any(value == chosen for value, _ in entries):
        return []
    param = f"metadata.{item.option_field}"
    if not entries:
        return [Problem(param, f"{noun} {match.id} has no options to choose from")]
    listing = _capped([f"{value} ({label})" if label else value for value, label in entries])
    return [Problem(param, f"{_quote(chosen)} is not an option of {noun} {match.id}; options are {listing}")]
