"""A parameter's rules, declared once: the input schema shows them and one check enforces them.

Two kinds of declaration, each put in a tool parameter's `Annotated[...]` metadata:

- `IntRange`: a bound the server itself enforces (`wait_seconds`, `max_events`…). `check` refuses a value
  out of range with the field, the rule and an example; the schema gets `minimum`/`maximum` (and `default`)
  from the same object.
- `RulesOf`: the rules of an API-layer type (`api.models`: `Limit`, `WorkspaceName`…), enforced by the
  request model the value goes into; the schema gets that type's own JSON-schema keywords.

Neither validates in the SDK's argument model: the check that answers stays the server's own, whose message
names field, rule and example (pydantic's would say "Input should be less than or equal to 60").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import GetJsonSchemaHandler, TypeAdapter
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from meshes_mcp.api.problems import InvalidRequest, Problem
from meshes_mcp.server.schema import compact_schema

# The JSON-schema keywords that state a rule; a type's `title` or `description` is left to the parameter.
RULE_KEYWORDS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "enum",
    "minItems",
    "maxItems",
    "items",  # what each item of a list must be (an allowed origin's pattern)
)


@dataclass(frozen=True)
class IntRange:
    """An integer parameter the server bounds itself: `low` to `high`, `default` when it is left out."""

    low: int
    high: int
    example: int
    default: int | None = None

    def check(self, param: str, value: int | None) -> int:
        """The value, or the default (0 without one) when left out; out of range, refused before any work."""
        if value is None:
            return self.default or 0
        if isinstance(value, bool) or not self.low <= value <= self.high:
            raise InvalidRequest([Problem(param, f"must be {self.low} to {self.high:,}, e.g. {self.example}")])
        return value

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(minimum=self.low, maximum=self.high)
        if self.default is not None:
            schema["default"] = self.default
        return schema


@dataclass(frozen=True)
class RulesOf:
    """Shows the rules of an API-layer type on a tool parameter (or, with `field`, of a request model's field);
    the request model the value goes into checks them."""

    source: Any
    field: str | None = None

    def keywords(self) -> dict[str, Any]:
        if self.field is None:
            schema = TypeAdapter(self.source).json_schema()
        else:
            schema = compact_schema(self.source.model_json_schema()["properties"][self.field])
        return {key: schema[key] for key in RULE_KEYWORDS if key in schema}

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(self.keywords())
        return schema
