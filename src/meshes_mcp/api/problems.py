"""One vocabulary for validation failures: a parameter path and a message an agent can act on.

Every check in the package (pydantic request models, the integration catalogue, the API's own
400/422 bodies) ends up as a list of `Problem(param, msg)`, the same shape as the documented error
body's `error.data[]` items. A message states the rule and shows a valid value; it never repeats the
rejected value, which may be a secret (at most its JSON type is named).
"""

from __future__ import annotations

import json
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError

__all__ = [
    "InvalidRequest",
    "Problem",
    "check",
    "join_param",
    "json_type_name",
    "json_value_problems",
    "problems_from_validation_error",
]

ModelT = TypeVar("ModelT", bound=BaseModel)


class Problem(NamedTuple):
    """One thing wrong with a request: the dotted field path the API would name, and the fix."""

    param: str
    msg: str


class InvalidRequest(ValueError):
    """A request refused before it was sent; `str()` gives one `param: msg` line per problem."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        return "\n".join(f"{p.param}: {p.msg}" if p.param else p.msg for p in self.problems)

    def __str__(self) -> str:
        return self._render()

    def error_data(self) -> list[dict[str, str]]:
        """The problems in the documented error-body shape: `[{"param": …, "msg": …}]`."""
        return [{"param": p.param, "msg": p.msg} for p in self.problems]


# --- examples and plain-words rules, by field name ----------------------------------------------


class FieldHint(NamedTuple):
    example: Any
    # Replaces pydantic's wording for pattern and numeric-range errors, which would otherwise quote
    # a regex or a bare bound.
    rule: str | None = None


UUID_EXAMPLE = "3f0c9a52-8d1e-4a7b-9c55-0e4b1f2a6d10"
_UUID = FieldHint(UUID_EXAMPLE, "must be a UUID")
_NAME_RULE = "may contain only letters, digits, spaces, _ or -"
_RESOURCE_ID_RE = "^[A-Za-z0-9._:-]{1,64}$"
_MAPPING_FIELD = {"dest": "email", "source": {"type": "path", "value": "email"}}

FIELD_HINTS: dict[str, FieldHint] = {
    "workspace": _UUID,
    "workspace_id": _UUID,
    "connection": _UUID,
    "connection_id": _UUID,
    "event_id": _UUID,
    "rule_id": _UUID,
    "mapping_id": _UUID,
    "event": FieldHint("user.signup", "must be a non-empty event name"),
    "resource": FieldHint("user"),
    "resource_id": FieldHint("usr_2048", f"must be 1–64 letters, digits, '.', '_', ':' or '-' ({_RESOURCE_ID_RE})"),
    "name": FieldHint("Production", _NAME_RULE),
    "description": FieldHint("Production events"),
    "email": FieldHint("jane@example.com", "must be an email address"),
    "url": FieldHint("https://example.com/hooks/meshes", "must be an https:// URL"),
    "limit": FieldHint(50, "must be an integer from 1 to 200"),
    "cursor": FieldHint("eyJvZmZzZXQiOjUwfQ", "must be the next_cursor returned by the previous page"),
    "metadata": FieldHint({"action": "add_to_list", "id": "5"}),
    "action": FieldHint("add_to_list"),
    "payload": FieldHint({"email": "jane@example.com"}),
    "events": FieldHint([{"event": "user.signup", "payload": {"email": "jane@example.com"}}]),
    "status": FieldHint("failed"),
    # Inside every tool's range (the schemas state each range; tests check these examples fit them).
    "wait_seconds": FieldHint(10),
    "max_events": FieldHint(5000),
    "max_retries": FieldHint(500),
    "expected_version": FieldHint(3, "must be a positive integer"),
    "active": FieldHint(True),
    "hidden": FieldHint(False),
    "force_delete": FieldHint(True),
    "refresh": FieldHint(True),
    # mapping schema
    "schema": FieldHint({"schema_version": 1, "fields": [_MAPPING_FIELD]}),
    "schema_version": FieldHint(1),
    "fields": FieldHint([_MAPPING_FIELD]),
    "dest": FieldHint("email"),
    "source": FieldHint(_MAPPING_FIELD["source"]),
    "value": FieldHint("user.email", "must be a payload path such as email or user.email"),
    "transforms": FieldHint([{"type": "trim"}, {"type": "lower"}]),
    "on_error": FieldHint("skip_field"),
    "notes": FieldHint("Synced from the signup form"),
    "timezone": FieldHint("Europe/Paris"),
    "start": FieldHint(0, "must be an integer ≥ 0"),
    "length": FieldHint(10, "must be an integer > 0"),
    # sessions
    "role": FieldHint("member"),
    "session_type": FieldHint("workspace"),
    "launch_page": FieldHint("dashboard"),
    "external_user_id": FieldHint("user_123"),
    "ttl_seconds": FieldHint(900, "must be from 300 to 3600 seconds"),
    "launch_ttl_seconds": FieldHint(30, "must be from 15 to 60 seconds"),
    "allowed_origins": FieldHint(["https://app.example.com"]),
    "scopes": FieldHint(["events.payload:read"]),
}

# Where one field name means different things in different requests, `Model.field` wins.
MODEL_FIELD_HINTS: dict[str, FieldHint] = {
    "CreateConnectionRequest.metadata": FieldHint({"url": "https://example.com/hooks/meshes"}),
    "UpdateConnectionRequest.metadata": FieldHint({"url": "https://example.com/hooks/meshes"}),
    "CreateConnectionRequest.type": FieldHint("webhook"),
    "CreateConnectionRequest.name": FieldHint("HubSpot Production", _NAME_RULE),
    "UpdateConnectionRequest.name": FieldHint("HubSpot Production", _NAME_RULE),
    "LiteralSource.value": FieldHint("pro"),
    "DefaultTransformParams.value": FieldHint("unknown"),
}

# When no field hint applies, an example of the expected JSON type is still better than none.
_TYPE_EXAMPLES: dict[str, Any] = {
    "int_type": 1,
    "int_parsing": 1,
    "int_from_float": 1,
    "float_type": 1.5,
    "float_parsing": 1.5,
    "bool_type": True,
    "bool_parsing": True,
    "dict_type": {},
    "list_type": [],
    "string_type": "text",
}

_TYPE_RULES: dict[str, str] = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be a list",
    "none_required": "must be null",
}

_RANGE_RULES: dict[str, str] = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
}


def json_type_name(value: Any) -> str:
    """The JSON name of a value's type: all we ever say about a rejected value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple | set):
        return "array"
    return type(value).__name__


def join_param(prefix: str, param: str) -> str:
    """`events[3]` + `payload.email` → `events[3].payload.email`; list indexes need no dot."""
    if not prefix:
        return param
    if not param:
        return prefix
    return prefix + param if param.startswith("[") else f"{prefix}.{param}"


def _render_loc(parts: Iterable[str | int]) -> str:
    path = ""
    for part in parts:
        path = join_param(path, f"[{part}]" if isinstance(part, int) else str(part))
    return path


def _example_text(example: Any) -> str:
    return json.dumps(example, ensure_ascii=False)


def _with_example(rule: str, example: Any) -> str:
    if example is None or "e.g." in rule:
        return rule
    return f"{rule}, e.g. {_example_text(example)}"


# --- loc cleaning: drop the tags pydantic inserts for union members ------------------------------

# Labels pydantic gives to members of a plain (non-discriminated) union and to wrapped validators,
# e.g. `constrained-str`, `float`, `function-after[...]`, or a model's class name.
_INTERNAL_TAG = re.compile(
    r"^(constrained-)?(str|int|float|bool|none|bytes|decimal|dict|list|tuple|set|date|datetime|"
    r"json-or-python|lax-or-strict|is-instance)$|\[|^[A-Z][A-Za-z0-9]*$"
)


def _looks_internal(part: str | int) -> bool:
    return isinstance(part, str) and bool(_INTERNAL_TAG.search(part))


def _unwrap(tp: Any) -> Any:
    """Strip `Annotated[...]` and a trailing `| None` (pydantic validates those without a tag)."""
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    members = _union_members(tp)
    if members is not None and len(members) == 1:
        return _unwrap(members[0])
    return tp


def _union_members(tp: Any) -> list[Any] | None:
    if get_origin(tp) in (typing.Union, types.UnionType):
        return [arg for arg in get_args(tp) if arg is not type(None)]
    return None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _literal_tags(model: type[BaseModel]) -> set[str]:
    """The literal values a model's fields accept: the tags of a discriminated union of models."""
    tags: set[str] = set()
    for info in model.model_fields.values():
        annotation = _unwrap(info.annotation)
        if get_origin(annotation) is Literal:
            tags.update(str(arg) for arg in get_args(annotation))
    return tags


_UNKNOWN = object()  # a tag was recognised but the member's type cannot be told apart


def _member_for_tag(members: list[Any], part: str) -> Any:
    """The union member `part` tags, `_UNKNOWN` for an internal scalar tag, or None if not a tag."""
    for member in members:
        member = _unwrap(member)
        if _is_model(member) and (part == member.__name__ or part in _literal_tags(member)):
            return member
    return _UNKNOWN if _looks_internal(part) else None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _child_type(tp: Any, part: str | int) -> Any:
    if _is_model(tp) and isinstance(part, str):
        for name, info in tp.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    origin = get_origin(tp)
    if origin in (list, tuple, set) and get_args(tp):
        return get_args(tp)[0]
    if origin is dict and len(get_args(tp)) == 2:
        return get_args(tp)[1]
    return None


class _Loc(NamedTuple):
    parts: list[str | int]
    parent: Any  # the type holding the last part (for "allowed fields" of extra_forbidden)
    target: Any  # the type at the location (for the tags of union_tag_not_found)
    union_member: bool  # the error is about one member of a plain union


def _clean_loc(loc: tuple[str | int, ...], root: Any) -> _Loc:
    """Drop union tags from a pydantic loc, using the model's annotations when we have them.

    Without a model, only the shapes pydantic uses for internal labels are recognised; the tags of
    discriminated unions (`literal`, `path`) are indistinguishable from field names then.
    """
    parts: list[str | int] = []
    current, parent = root, None
    dropped_last = False
    for part in loc:
        current = _unwrap(current)
        members = _union_members(current)
        member = _member_for_tag(members, part) if members and isinstance(part, str) else None
        if member is not None:
            current, dropped_last = (None if member is _UNKNOWN else member), True
            continue
        if current is None and _looks_internal(part):
            dropped_last = True
            continue
        parent, dropped_last = current, False
        parts.append(part)
        current = _child_type(current, part) if current is not None else None
    return _Loc(parts, _unwrap(parent), _unwrap(current), dropped_last)


# --- one pydantic error → one problem -----------------------------------------------------------


def _last_name(parts: list[str | int]) -> str:
    names = [p for p in parts if isinstance(p, str)]
    return names[-1] if names else ""


def _expected_values(expected: str) -> str:
    return f"must be one of {expected}" if (" or " in expected or "," in expected) else f"must be {expected}"


def _strip_quotes(text: str) -> str:
    return text.strip("'\"")


def _rule_for(err: Mapping[str, Any], loc: _Loc, hint: FieldHint | None) -> tuple[str, Any]:
    """The plain-words rule and the example to show for one pydantic error."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    example = hint.example if hint else _TYPE_EXAMPLES.get(kind)
    if kind == "missing":
        return "is required", example
    if kind == "string_pattern_mismatch":
        return (hint.rule if hint and hint.rule else f"must match {ctx.get('pattern')}"), example
    if kind == "string_too_short":
        min_length = ctx.get("min_length", 1)
        return ("must not be empty" if min_length == 1 else f"must be at least {min_length} characters"), example
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters", example
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items (got {ctx.get('actual_length')})", None
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} items", example
    if kind in _RANGE_RULES:
        return (hint.rule if hint and hint.rule else _RANGE_RULES[kind].format(**ctx)), example
    if kind in ("literal_error", "enum"):
        # The choices are the rule; with several, a field's own example shows the likely one.
        expected = str(ctx.get("expected", ""))
        several = " or " in expected or "," in expected
        return _expected_values(expected), (hint.example if hint and several else None)
    if kind in _TYPE_RULES:
        return f"{_TYPE_RULES[kind]} (got {json_type_name(err.get('input'))})", example
    if kind == "extra_forbidden":
        if _is_model(loc.parent):
            return f"unknown field; allowed: {', '.join(_field_names(loc.parent))}", None
        return "not a field of this request", None
    if kind == "union_tag_invalid":
        return _expected_values(str(ctx.get("expected_tags", ""))), None
    if kind == "union_tag_not_found":
        tags = _tags_of(loc.target)
        return ("is required" + (f": one of {tags}" if tags else "")), None
    # pydantic's own sentence names the rule, never the input; drop its "Input should" voice.
    return re.sub(r"^Input should", "should", str(err.get("msg", "is invalid"))), example


def _tags_of(tp: Any) -> str:
    members = _union_members(tp) or []
    tags = sorted({tag for m in members if _is_model(_unwrap(m)) for tag in _literal_tags(_unwrap(m))})
    return ", ".join(f"'{t}'" for t in tags)


def _value_error_problem(message: str, path: str, model: Any) -> tuple[str, str]:
    """Use a validator's own message, re-targeting it when it names a more precise field.

    Our validators write messages like `payload.email must be an email address, e.g. …`; the
    error's loc is only `payload`, so the leading dotted path is promoted to the param.
    """
    message = re.sub(r"^(Value error|Assertion failed), ", "", message)
    head, _, rest = message.partition(" ")
    if path and rest and (head == path or head.startswith((path + ".", path + "["))):
        return head, rest
    if not path and rest and _is_model(model) and head in _field_names(model):
        return head, message
    return path, message


class _Draft(NamedTuple):
    param: str
    rule: str
    example: Any
    union_member: bool


def _hint(loc: _Loc) -> FieldHint | None:
    name = _last_name(loc.parts)
    owner = loc.parent.__name__ if _is_model(loc.parent) else ""
    return MODEL_FIELD_HINTS.get(f"{owner}.{name}") or FIELD_HINTS.get(name)


def _draft(err: Mapping[str, Any], model: Any, prefix: str) -> _Draft:
    loc = _clean_loc(tuple(err.get("loc", ())), model)
    path = _render_loc(loc.parts)
    if err["type"] in ("value_error", "assertion_error"):
        owner = model if not loc.parts else loc.target
        param, msg = _value_error_problem(str(err.get("msg", "")), path, owner)
        return _Draft(join_param(prefix, param) or "request", msg, None, False)
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        discriminator = _strip_quotes(str((err.get("ctx") or {}).get("discriminator", "type")))
        path = join_param(path, discriminator)
    rule, example = _rule_for(err, loc, _hint(loc))
    return _Draft(join_param(prefix, path) or "request", rule, example, loc.union_member)


def _merge(drafts: list[_Draft]) -> list[Problem]:
    """A value that fits no member of a plain union yields one error per member: say it once."""
    kept: list[_Draft] = []
    member_rules: dict[str, list[str]] = {}  # param → the rules of each union member it failed
    for draft in drafts:
        if not draft.union_member:
            kept.append(draft)
        elif draft.param not in member_rules:
            member_rules[draft.param] = [draft.rule]
            kept.append(draft)
        elif draft.rule not in member_rules[draft.param]:
            member_rules[draft.param].append(draft.rule)
    problems = []
    for draft in kept:
        rules = member_rules.get(draft.param, []) if draft.union_member else []
        rule = "fits none of the accepted forms: " + "; or ".join(rules) if len(rules) > 1 else draft.rule
        problems.append(Problem(draft.param, _with_example(rule, draft.example)))
    return list(dict.fromkeys(problems))  # dedupe, keep order


def problems_from_validation_error(
    exc: ValidationError, *, prefix: str = "", model: type[BaseModel] | None = None
) -> list[Problem]:
    """Friendly problems from a pydantic error: field path, rule in plain words, a valid example.

    `model` (the class that was validated) lets union tags be told from field names and lets an
    unknown field be answered with the allowed ones; without it a best effort is made.
    """
    return _merge([_draft(err, model, prefix) for err in exc.errors(include_url=False)])


# --- values JSON cannot carry -------------------------------------------------------------------

# Python accepts these in a dict, but the wire cannot carry them: NaN and ±Infinity are not JSON numbers
# (a receiver's strict parser refuses the whole body), a lone surrogate is not Unicode (it cannot be
# encoded as UTF-8), and NUL, while valid JSON, cannot be stored by Postgres text/jsonb columns. Other
# control characters are legal in JSON strings (a message template's newline) and are judged per field.
NOT_FINITE = "must be a finite number: NaN and Infinity are not valid JSON, e.g. 12.5"
LONE_SURROGATE = (
    "holds a lone surrogate (half of a UTF-16 pair such as \\ud800), which is not valid text: send whole "
    'characters, e.g. "café"'
)
NUL_CHAR = 'holds a NUL character (\\u0000), which cannot be stored: remove it, e.g. "text"'
KEY_SHOWN_MAX = 64
PROBLEMS_SHOWN_MAX = 20
SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """The rule a string breaks as JSON text, or None."""
    if SURROGATE.search(text):
        return LONE_SURROGATE
    if "\x00" in text:
        return NUL_CHAR
    return None


def shown_key(key: Any) -> str:
    """A dict key as a path segment: printable keys as they are, others escaped (never raw control
    characters or surrogates, which would break the message itself), long ones cut."""
    text = str(key)
    if not text.isprintable():
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= KEY_SHOWN_MAX else text[:KEY_SHOWN_MAX] + "…"


def is_plain_json(value: Any) -> bool:
    """Whether `value` is JSON that any strict reader takes: no NaN/±Infinity, lone surrogate or NUL
    anywhere, keys included. The C encoder answers this several times faster than a walk in Python that
    names paths, so the walk runs only for a value that has something to name. False means "look
    closer" (a false alarm, such as a value that is not JSON at all, only costs that walk)."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, check_circular=False)
        text.encode("utf-8")  # a lone surrogate cannot be encoded
    except (ValueError, TypeError, UnicodeEncodeError, RecursionError):
        return False
    return "\\u0000" not in text  # the encoder escapes NUL as \u0000


def json_value_problems(value: Any, prefix: str = "") -> list[Problem]:
    """Every place in `value` (keys too) JSON cannot faithfully carry, named by path like `payload.amount`
    or `events[3].payload.name`. Iterative, so a deeply nested value cannot exhaust the stack."""
    if is_plain_json(value):
        return []
    problems: list[Problem] = []
    stack: list[tuple[str, Any]] = [(prefix, value)]
    while stack and len(problems) < PROBLEMS_SHOWN_MAX:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            problems.append(Problem(path or "request", NOT_FINITE))
        elif isinstance(item, str):
            rule = text_problem(item)
            if rule:
                problems.append(Problem(path or "request", rule))
        elif isinstance(item, Mapping):
            children = []
            for key, child in item.items():
                rule = text_problem(key) if isinstance(key, str) else None
                child_path = join_param(path, shown_key(key))
                if rule:
                    problems.append(Problem(child_path, "the key " + rule))
                children.append((child_path, child))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(join_param(path, f"[{i}]"), child) for i, child in enumerate(item)]))
    return problems


def check(model_cls: type[ModelT], data: Any, *, prefix: str = "") -> ModelT:
    """Validate `data` as `model_cls`, raising `InvalidRequest` with friendly problems."""
    problems = json_value_problems(data, prefix)
    try:
        validated = model_cls.model_validate(data)
    except ValidationError as exc:
        problems += problems_from_validation_error(exc, prefix=prefix, model=model_cls)
    else:
        if not problems:
            return validated
    # Raised outside the except block on purpose: pydantic's own error text quotes the input, and a
    # chained cause would carry it into any traceback that gets logged.
    raise InvalidRequest(problems)
