"""Values JSON cannot carry (NaN, Infinity, lone surrogates, NUL) are refused before anything is sent."""

from __future__ import annotations

import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client

from meshes_mcp.api import models as m
from meshes_mcp.api.problems import InvalidRequest, check, json_value_problems
from meshes_mcp.server.app import build_server
from tests.support import ok, refused, settings_for


def problems_of(model: Any, data: Any, prefix: str = "") -> dict[str, str]:
    with pytest.raises(InvalidRequest) as caught:
        check(model, data, prefix=prefix)
    return {p.param: p.msg for p in caught.value.problems}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_by_path(bad):
    found = problems_of(m.EmitEventRequest, {"event": "order.paid", "payload": {"amount": bad}})
    assert "NaN and Infinity" in found["payload.amount"] and "e.g. 12.5" in found["payload.amount"]
    nested = {"event": "order.paid", "payload": {"items": [{"price": 1}, {"price": bad}]}}
    assert "payload.items[1].price" in problems_of(m.EmitEventRequest, nested)


def test_lone_surrogates_and_nul_are_refused_in_values_and_keys():
    found = problems_of(
        m.EmitEventRequest,
        {"event": "user.signup", "payload": {"name": "Ren\ud800e", "note": "a\x00b", "bad\udfffkey": 1}},
        prefix="events[3]",
    )
    assert "lone surrogate" in found["events[3].payload.name"]
    assert "NUL" in found["events[3].payload.note"]
    (key_param,) = [p for p in found if "bad" in p]
    assert key_param == "events[3].payload.bad\\udfffkey"  # escaped: the message itself stays valid UTF-8
    assert found[key_param].startswith("the key holds a lone surrogate")
    for message in found.values():
        message.encode("utf-8")  # no lone surrogate leaks into the message


def test_ordinary_control_characters_stay_allowed_in_payloads():
    request = check(m.EmitEventRequest, {"event": "note.added", "payload": {"text": "line 1\nline 2\ttab"}})
    assert request.payload["text"] == "line 1\nline 2\ttab"


def test_every_request_model_is_covered():
    schema = {"schema_version": 1, "fields": [{"dest": "plan", "source": {"type": "literal", "value": math.nan}}]}
    assert "schema.fields[0].source.value" in problems_of(m.MappingSchema, schema, prefix="schema")
    rule = {
        "workspace": "3f0c9a52-8d1e-4a7b-9c55-0e4b1f2a6d10",
        "connection": "3f0c9a52-8d1e-4a7b-9c55-0e4b1f2a6d10",
        "event": "user.signup",
        "metadata": {"action": "send_message", "template": "Hi \ud83d"},
    }
    assert "metadata.template" in problems_of(m.CreateRuleRequest, rule)
    session = {"workspace_id": "3f0c9a52-8d1e-4a7b-9c55-0e4b1f2a6d10", "external_user_id": "u\x00"}
    assert "external_user_id" in problems_of(m.CreateSessionRequest, session)


def test_deep_nesting_is_walked_without_recursion():
    value: Any = math.nan
    for _ in range(50_000):
        value = [value]
    (problem,) = json_value_problems(value, "payload")
    assert problem.param.startswith("payload[0][0]") and problem.param.endswith("[0]")


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(alphabet=st.characters(codec=None)),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=20,
    )
)
def test_whatever_is_accepted_encodes_as_strict_json(value):
    """The property behind the check: no problem reported ⇔ the value survives strict JSON and UTF-8."""
    problems = json_value_problems(value, "payload")
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
        strict_ok = "\x00" not in json.dumps(value, allow_nan=False)
        strict_ok = strict_ok and "\\u0000" not in json.dumps(value, allow_nan=False)
    except (ValueError, UnicodeEncodeError):
        strict_ok = False
    assert (not problems) == strict_ok, problems
    for problem in problems:
        f"{problem.param}: {problem.msg}".encode()  # every message is itself valid text


# --- over stdio the transport parses NaN and Infinity into the arguments (pydantic's JSON parser accepts
# them), so the tools must refuse them; lone surrogates reach the tools through other transports (the
# in-memory one here, streamable HTTP's json.loads) ---

RAW_LINES = [
    '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
    '"capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}',
    '{"jsonrpc":"2.0","method":"notifications/initialized"}',
    '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"emit_event",'
    '"arguments":{"event":"order.paid","payload":{"amount":NaN,"items":[{"price":Infinity}]}}}}',
    '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"emit_events","arguments":{"events":['
    '{"event":"order.paid","payload":{"amount":1}},'
    '{"event":"order.paid","payload":{"amount":-Infinity}},'
    '{"event":"order.paid","payload":{"total":NaN}}]}}}',
]


def stdio_answers(sandbox: Any, lines: list[str], wanted: set[int], timeout: float = 30) -> dict[int, Any]:
    """Raw JSON-RPC lines to `python -m meshes_mcp` over stdio; the answers with the wanted ids."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONUNBUFFERED": "1", "MESHES_TOOLSETS": "all"}
    env |= {
        "MESHES_API_URL": sandbox.api_url,
        "MESHES_ACCESS_KEY": sandbox.access_key,
        "MESHES_SECRET_KEY": sandbox.secret_key,
        "MESHES_ORG_ID": sandbox.organization_id,
        "MESHES_WORKSPACE_ID": sandbox.workspace_id,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshes_mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
        encoding="utf-8",
    )
    lines_out: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines_out.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    answers: dict[int, Any] = {}
    try:
        assert proc.stdin
        proc.stdin.write("\n".join(lines) + "\n")
        proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while wanted - answers.keys() and time.monotonic() < deadline:
            try:
                message = json.loads(lines_out.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                break
            if message.get("id") in wanted:
                answers[message["id"]] = message
    finally:
        proc.kill()
        proc.wait(timeout=10)
    return answers


def test_stdio_arguments_holding_nan_or_infinity_are_refused_per_item(sandbox, sandbox_api):
    before = sandbox_api.get("/events", params={"limit": 200}).json()["count"]
    answers = stdio_answers(sandbox, RAW_LINES, {2, 3})
    single = answers[2]["result"]
    assert single["isError"]
    text = single["content"][0]["text"]
    assert "payload.amount" in text and "NaN and Infinity" in text and "payload.items[0].price" in text
    bulk = answers[3]["result"]["structuredContent"]
    assert bulk["total"] == 3 and bulk["accepted"] == 1
    reasons = {item["index"]: item["reason"] for item in bulk["rejected"]}
    assert "events[1].payload.amount" in reasons[1] and "events[2].payload.total" in reasons[2]
    after = sandbox_api.get("/events", params={"limit": 200}).json()["count"]
    assert after == before + 1  # only the valid item was sent


@pytest.mark.anyio
async def test_lone_surrogates_are_refused_per_item_through_a_client_session(sandbox, sandbox_api):
    before = sandbox_api.get("/events", params={"limit": 200}).json()["count"]
    async with Client(build_server(settings_for(sandbox))) as client:
        single = refused(await client.call_tool("emit_event", {"event": "user.signup", "payload": {"name": "\ud800"}}))
        events = [{"event": "user.signup", "payload": {"n": i}} for i in range(3)]
        events[1]["payload"] = {"name": "Zo\udc00e"}
        bulk = ok(await client.call_tool("emit_events", {"events": events}))

    assert "payload.name" in single and "lone surrogate" in single
    assert bulk["accepted"] == 2 and [r["index"] for r in bulk["rejected"]] == [1]
    assert "events[1].payload.name" in bulk["rejected"][0]["reason"]
    assert sandbox_api.get("/events", params={"limit": 200}).json()["count"] == before + 2
