"""Every rule an input schema states is the rule the call enforces, and one declaration holds both.

The static test walks every tool's listed schema and compares each rule keyword with the declaration that
enforces it (`bounds.IntRange`, `bounds.RulesOf`, a `Literal`), read from the handler's annotations. The
end-to-end test breaks each stated rule in a real call against the sandbox and reads the refusal: the
parameter is named, the rule said, an example given, and nothing was sent.
"""

from __future__ import annotations

import re
import types
import typing
import uuid
from typing import Any

import pytest
from mcp import Client

from meshes_mcp.server import registry
from meshes_mcp.server.app import build_server
from meshes_mcp.server.bounds import RULE_KEYWORDS, IntRange, RulesOf
from tests.support import refused, settings_for

# Keywords that state a rule (RULE_KEYWORDS), plus the default an IntRange shows.
STATED = (*RULE_KEYWORDS, "default")


def _declarations(hint: Any) -> list[Any]:
    """The IntRange / RulesOf metadata and Literal types inside a parameter's annotation."""
    found: list[Any] = []
    if typing.get_origin(hint) is typing.Annotated:
        found += [meta for meta in hint.__metadata__ if isinstance(meta, IntRange | RulesOf)]
        found += _declarations(typing.get_args(hint)[0])
    elif typing.get_origin(hint) in (typing.Union, types.UnionType):
        for member in typing.get_args(hint):
            found += _declarations(member)
    elif typing.get_origin(hint) is typing.Literal:
        found.append(hint)
    return found


def declared_rules(handler: Any, param: str) -> dict[str, Any]:
    """The rule keywords a parameter's enforcing declarations stand for."""
    hint = typing.get_type_hints(handler, include_extras=True)[param]
    rules: dict[str, Any] = {}
    for declaration in _declarations(hint):
        if isinstance(declaration, IntRange):
            rules.update(minimum=declaration.low, maximum=declaration.high)
            if declaration.default is not None:
                rules["default"] = declaration.default
        elif isinstance(declaration, RulesOf):
            rules.update(declaration.keywords())
        else:
            rules["enum"] = list(typing.get_args(declaration))
    return rules


@pytest.fixture(scope="module")
async def listed(anyio_backend) -> dict[str, Any]:
    from meshes_mcp.config import Settings

    async with Client(build_server(Settings(toolsets="all", _env_file=None))) as client:
        return {tool.name: tool for tool in (await client.list_tools()).tools}


def test_every_stated_rule_is_the_enforcing_declaration(listed):
    bounded = 0
    for server_tool in registry.all_tools():
        properties = listed[server_tool.name].input_schema["properties"]
        for param, schema in properties.items():
            stated = {key: schema[key] for key in STATED if key in schema}
            if "items" in stated and set(stated["items"]) == {"type"}:
                del stated["items"]  # a list of plain strings or objects states no rule about its items
            declared = declared_rules(server_tool.handler, param)
            assert stated == declared, (server_tool.name, param)
            bounded += bool(stated)
    assert bounded >= 30  # the bounds are there at all


def test_the_server_bounds_are_stated(listed):
    """The bounds the server enforces itself, one declaration each, as a client reads them."""
    from meshes_mcp.server import params
    from meshes_mcp.server.tools import deliveries

    def bounds(tool: str, param: str) -> tuple[Any, Any]:
        schema = listed[tool].input_schema["properties"][param]
        return schema["minimum"], schema["maximum"]

    assert bounds("emit_event", "wait_seconds") == (params.WAIT.low, params.WAIT.high) == (0, 60)
    assert bounds("retry_failed", "wait_seconds") == (0, deliveries.RETRY_WAIT.high) == (0, 120)
    assert bounds("triage_failures", "max_events") == (1, deliveries.MAX_EVENTS.high)
    assert bounds("retry_failed", "max_retries") == (1, deliveries.MAX_RETRIES.high)
    assert bounds("list_events", "limit") == (1, 200)
    assert listed["list_events"].input_schema["properties"]["since"]["description"].startswith("ISO 8601")


def breaking(schema: dict[str, Any]) -> list[tuple[str, Any]]:
    """One value per rule that breaks exactly that rule."""
    values: list[tuple[str, Any]] = []
    if "minimum" in schema:
        values.append(("minimum", schema["minimum"] - 1))
    if "maximum" in schema:
        values.append(("maximum", schema["maximum"] + 1))
    if "exclusiveMinimum" in schema:
        values.append(("exclusiveMinimum", schema["exclusiveMinimum"]))
    if schema.get("minLength", 0) > 0:
        values.append(("minLength", "a" * (schema["minLength"] - 1)))
    if "maxLength" in schema:
        values.append(("maxLength", "a" * (schema["maxLength"] + 1)))
    if "pattern" in schema:
        assert not re.search(schema["pattern"], "no!")
        values.append(("pattern", "no!"))
    if "enum" in schema:
        values.append(("enum", "not_one_of_them"))
    if "maxItems" in schema:
        item = schema["items"].get("const") or "https://app.example.com"
        values.append(("maxItems", [item] * (schema["maxItems"] + 1)))
    if "pattern" in schema.get("items", {}):
        assert not re.search(schema["items"]["pattern"], "no!")
        values.append(("items.pattern", ["no!"]))
    return values


def required_args(tool: Any, ids: dict[str, str]) -> dict[str, Any]:
    """Valid values for a tool's required parameters (sandbox ids where it needs existing ones)."""
    samples: dict[str, Any] = {
        "event": "user.signup",
        "payload": {"email": "jane@example.com"},
        "metadata": {"url": "https://example.com/hooks/meshes"},
        "type": "webhook",
        "name": "Bounds",
        "schema": {"schema_version": 1, "fields": [{"dest": "email", "source": {"type": "path", "value": "email"}}]},
        "events": [{"event": "user.signup", "payload": {}}],
        **ids,
    }
    if tool.name == "create_rule":
        samples["metadata"] = {"action": "send_webhook"}
    return {param: samples.get(param, str(uuid.uuid4())) for param in tool.input_schema.get("required", [])}


def problem_line(text: str, param: str) -> str | None:
    """The refusal's line about `param` or one of its items (`param[0]: rule, e.g. example`), if any."""
    return next((line for line in text.splitlines() if re.match(rf"{re.escape(param)}(\[\d+\])?: ", line)), None)


def said(number: int, line: str) -> bool:
    return re.search(rf"\b({number}|{number:,})\b", line) is not None


@pytest.mark.anyio
async def test_a_value_of_the_wrong_type_gets_an_example_inside_the_stated_range(listed, sandbox):
    checked = 0
    async with Client(build_server(settings_for(sandbox))) as client:
        for name, tool in listed.items():
            for param, schema in tool.input_schema["properties"].items():
                if schema.get("type") != "integer" or "maximum" not in schema:
                    continue
                args = {**required_args(tool, {}), param: "ten"}
                line = problem_line(refused(await client.call_tool(name, args)), param)
                assert line is not None and "must be an integer" in line, (name, param)
                example = int(line.rsplit("e.g. ", 1)[1])
                assert schema["minimum"] <= example <= schema["maximum"], (name, param, line)
                checked += 1
    assert checked >= 10  # limit on every list, wait_seconds, max_events, max_retries, session TTLs


@pytest.mark.anyio
async def test_breaking_a_stated_rule_is_refused_naming_the_parameter(listed, sandbox, sandbox_api, webhook_receiver):
    connection, rule = sandbox_api.webhook_rule(f"{webhook_receiver.url}/hooks/bounds", "bounds.checked", "Bounds")
    ids = {"connection_id": connection, "connection": connection, "rule_id": rule}
    checked = 0
    async with Client(build_server(settings_for(sandbox))) as client:
        for name, tool in listed.items():
            for param, schema in tool.input_schema["properties"].items():
                for rule_name, value in breaking(schema):
                    args = {**required_args(tool, ids), param: value}
                    text = refused(await client.call_tool(name, args))
                    where = f"{name}.{param} ({rule_name})"
                    line = problem_line(text, param)
                    assert line is not None and "nothing was sent" in text, (where, text)
                    if rule_name in ("minimum", "maximum"):  # the whole range is said, as the schema states it
                        assert said(schema["minimum"], line) and said(schema["maximum"], line), (where, line)
                    if rule_name != "maxItems":  # a list too long is answered with its length, not an example
                        assert "e.g." in line, (where, line)
                    checked += 1
    assert checked >= 40
