"""Shrink the input schemas pydantic generates without changing what they accept.

Pydantic adds a `title` to every schema and spells an optional parameter as
`anyOf: [X, {type: null}]` with `default: null`. Agents pay for those bytes on every turn and learn
nothing from them: an optional parameter is simply one that is not in `required`.
"""

from __future__ import annotations

from typing import Any

_NULL = {"type": "null"}


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key == "default" and value is None:
            continue
        if key == "additionalProperties" and value is True:
            continue  # JSON Schema's own default
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: compact_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = compact_schema(value)
        elif key in ("anyOf", "oneOf", "allOf") and isinstance(value, list):
            options = [compact_schema(v) for v in value if v != _NULL]
            if len(options) == 1 and key == "anyOf":
                # The only non-null branch stands for the whole: omission already means "none".
                out.update({k: v for k, v in options[0].items() if k not in out})
            else:
                out[key] = options
        else:
            out[key] = value
    return out
