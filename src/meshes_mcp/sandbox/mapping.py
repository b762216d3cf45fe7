"""Applying a default field mapping (reference §5.8) to an event payload, for simulated destinations.

Undocumented semantics, chosen here:
- a `path` source that does not resolve gives no value (not an error); the field is left out;
- transforms run in order; `default` fills a missing or empty value;
- when a transform cannot convert a value, `on_error` decides: `skip_field` (the default when
  omitted) leaves the field out, `warn_action` leaves it out and notes a warning on the attempt,
  `fail_action` fails the delivery with outcome `mapping_error`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MISSING = object()


class TransformError(ValueError):
    pass


def resolve_path(payload: Any, path: str) -> Any:
    current = payload
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        else:
            return _MISSING
    return current


def _as_datetime(value: Any, timezone: str | None) -> datetime:
    if isinstance(value, bool):
        raise TransformError("a boolean is not a date")
    if isinstance(value, int | float):
        stamp = value / 1000 if value > 10**11 else value  # epoch ms or s
        moment = datetime.fromtimestamp(stamp, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise TransformError(f"{value[:40]!r} is not an ISO 8601 date") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    else:
        raise TransformError("not a date")
    if timezone:
        try:
            moment = moment.astimezone(ZoneInfo(timezone))
        except ZoneInfoNotFoundError as exc:
            raise TransformError(f"unknown timezone {timezone}") from exc
    return moment


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TransformError(f"{name} needs a string")
    return value


def apply_transform(value: Any, transform: dict[str, Any]) -> Any:
    kind = transform["type"]
    params = transform.get("params") or {}
    if kind == "default":
        return params.get("value") if value is _MISSING or value is None or value == "" else value
    if value is _MISSING or value is None:
        return value
    if kind == "to_string":
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else str(value)
    if kind == "to_number":
        if isinstance(value, bool):
            raise TransformError("a boolean is not a number")
        if isinstance(value, int | float):
            return value
        try:
            number = float(str(value).strip())
        except ValueError as exc:
            raise TransformError("not a number") from exc
        return int(number) if number.is_integer() else number
    if kind == "to_boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "y", "on"):
            return True
        if text in ("false", "0", "no", "n", "off", ""):
            return False
        raise TransformError("not a boolean")
    if kind == "trim":
        return _string(value, "trim").strip()
    if kind == "lower":
        return _string(value, "lower").lower()
    if kind == "upper":
        return _string(value, "upper").upper()
    if kind == "to_date":
        return _as_datetime(value, params.get("timezone")).date().isoformat()
    if kind == "to_datetime":
        moment = _as_datetime(value, params.get("timezone"))
        if not params.get("timezone"):
            return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return moment.isoformat(timespec="milliseconds")
    if kind == "substring":
        text = _string(value, "substring")
        start = int(params.get("start", 0))
        length = params.get("length")
        return text[start:] if length is None else text[start : start + int(length)]
    raise TransformError(f"unknown transform {kind}")


def apply_mapping(schema: dict[str, Any], payload: dict[str, Any]) -> tuple[dict[str, Any], list[str], str | None]:
    """→ (mapped fields, warnings, fatal error or None)."""
    mapped: dict[str, Any] = {}
    warnings: list[str] = []
    for index, field in enumerate(schema.get("fields", [])):
        source = field["source"]
        value = source.get("value") if source["type"] == "literal" else resolve_path(payload, source["value"])
        try:
            for transform in field.get("transforms") or []:
                value = apply_transform(value, transform)
        except TransformError as exc:
            policy = field.get("on_error") or "skip_field"
            problem = f"fields[{index}] ({field['dest']}): {exc}"
            if policy == "fail_action":
                return mapped, warnings, problem
            if policy == "warn_action":
                warnings.append(problem)
            continue
        if value is not _MISSING and value is not None:
            mapped[field["dest"]] = value
    return mapped, warnings, None
