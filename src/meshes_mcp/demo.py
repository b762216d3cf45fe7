"""`meshes-mcp demo`: a short guided walk-through on a throwaway sandbox.

It starts the embedded sandbox (with the `incident` practice scenario) and a local webhook receiver,
then drives the MCP server through a real stdio client session, exactly as an IDE would.
Act one: wire a HubSpot list and a webhook (with a typo in its URL), emit an event, watch the webhook
delivery fail, diagnose it, fix the URL, retry, and see it delivered (outcomes awaited with the tools'
`wait_seconds` where the build has it, else by reading the event back).
Act two, the incident: triage a day of failing signups into causes, fix each (two through the API, a
HubSpot reconnect as the person's step), retry them all once while waiting for the outcome, and triage
again to see nothing left.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import anyio

WIDTH = 100


def say(text: str) -> None:
    print(textwrap.fill(text, WIDTH), flush=True)


def show(label: str, result: Any) -> dict[str, Any]:
    text = result.content[0].text if result.content else ""
    marker = "✗" if result.is_error else "→"
    shown = text if len(text) <= 600 else text[:600] + f"… ({len(text)} bytes)"
    print(f"  {label}\n  {marker} {shown}\n", flush=True)
    return result.structured_content or {}


async def walk_through(env: dict[str, str], receiver: Any, incident: dict[str, Any], sandbox: Any) -> None:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "meshes_mcp"], env=env)
    with open(os.devnull, "w") as quiet:  # the server's stderr log would interleave with the story
        async with Client(stdio_client(params, errlog=quiet)) as client:
            await story(client, receiver)
            await incident_act(client, incident, sandbox)


async def story(client: Any, receiver: Any) -> None:
    tools = await client.list_tools()
    say(f"Connected to meshes-mcp over stdio: {len(tools.tools)} tools.\n")
    # Builds whose tools take wait_seconds report outcomes themselves; older ones are polled with get_event.
    waits = {t.name for t in tools.tools if "wait_seconds" in (t.input_schema.get("properties") or {})}

    async def call(name: str, args: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        result = await client.call_tool(name, args)
        return result, show(f"{name} {json.dumps(args)}", result)

    say("1. Find the HubSpot connection (OAuth connections come from the dashboard; the sandbox seeds them).")
    _, connections = await call("list_connections", {})
    hubspot = next(c for c in connections.get("connections", []) if c.get("type") == "hubspot")

    say("2. Read its live action data: the lists and properties a rule can use.")
    await call("get_connection_actions", {"connection_id": hubspot["id"]})

    say("3. A wrong list id is refused before anything is sent, with the valid ones listed.")
    await call(
        "create_rule",
        {"connection": hubspot["id"], "event": "user.signup", "metadata": {"action": "add_to_list", "id": "9"}},
    )
    await call(
        "create_rule",
        {"connection": hubspot["id"], "event": "user.signup", "metadata": {"action": "add_to_list", "id": "5"}},
    )

    # The receiver answers 404 on /status/404: a typo in the webhook path, as happens in real life.
    typo, right = f"{receiver.url}/status/404", f"{receiver.url}/hooks/meshes"
    say("4. Add a webhook to a local receiver, with a typo in its URL path.")
    _, webhook = await call(
        "create_connection", {"type": "webhook", "name": "Signup webhook", "metadata": {"url": typo}}
    )
    await call(
        "create_rule", {"connection": webhook["id"], "event": "user.signup", "metadata": {"action": "send_webhook"}}
    )

    say("5. Emit a signup. Meshes fans it out to both rules.")
    signup = {"event": "user.signup", "payload": {"email": "jane@example.com", "first_name": "Jane", "plan": "pro"}}
    _, emitted = await call("emit_event", {**signup, "wait_seconds": 10} if "emit_event" in waits else signup)
    event_id = emitted["id"]
    settled = emitted if emitted.get("rule_events") else await wait_until_settled(client, event_id)
    say("   The webhook delivery failed. One call explains why:")
    await call("diagnose_event", {"event_id": event_id})

    say("6. Fix the URL, then retry only the failed delivery.")
    await call(
        "update_connection",
        {"connection_id": webhook["id"], "name": "Signup webhook", "metadata": {"url": right}},
    )
    failed = [r for r in settled.get("rule_events", []) if r.get("status") == "failed"]
    for rule_event in failed:
        retry = {"event_id": event_id, "rule_id": rule_event["rule"]}
        await call("retry_rule_event", {**retry, "wait_seconds": 10} if "retry_rule_event" in waits else retry)
    if "retry_rule_event" not in waits:
        await wait_until_settled(client, event_id)
        await call("get_event", {"event_id": event_id})
    delivered = receiver.matching("/hooks/meshes")
    say(f"The receiver got {len(delivered)} delivery at the right URL: the event reached every destination.")


INCIDENT_TOOLS = {"triage_failures", "retry_failed"}


async def incident_act(client: Any, incident: dict[str, Any], sandbox: Any) -> None:
    from meshes_mcp.sandbox.scenarios.incident import INBOX_PATH
    from meshes_mcp.sandbox.scenarios.practice import reconnect_from_cli

    print()
    say(
        'Act two: an incident. The sandbox also holds a workspace "Incident": a day of signups fanned out to '
        "HubSpot, Mailchimp, a webhook and Slack, and since yesterday three of them broke (the `incident` practice "
        "scenario at a tenth of its size: `meshes-mcp --sandbox --scenario incident` has it in full).\n"
    )
    names = {tool.name for tool in (await client.list_tools()).tools}
    if not names >= INCIDENT_TOOLS:
        say(f"This build has no {' / '.join(sorted(INCIDENT_TOOLS - names))} tool: act two needs them.")
        return
    workspace = incident["workspace_id"]

    async def call(name: str, args: dict[str, Any], brief: Any) -> dict[str, Any]:
        result = await client.call_tool(name, args)
        data = result.structured_content or {}
        text = result.content[0].text if result.content else ""
        shown = brief(data) if not result.is_error else text[:600]
        print(f"  {name} {json.dumps(args)}\n  {'✗' if result.is_error else '→'} {shown}\n", flush=True)
        return data

    say("1. What is failing? One call groups every failing delivery of the day by cause.")
    triage = await call("triage_failures", {"workspace": workspace}, triage_brief)
    say("2. Fix each cause. Two are fixed through the API; HubSpot's needs a person to reconnect it.")
    fixed: set[str | None] = set()
    for group in triage.get("groups", []):
        conn = group.get("connection") or {}
        if conn.get("id") in fixed:
            continue
        fixed.add(conn.get("id"))
        if conn.get("type") == "mailchimp":
            metadata = {"data_center": "us21", "api_key": "5b3c9e0d7a214f68a1c2-us21"}
            await call("update_connection", {"connection_id": conn["id"], "metadata": metadata}, connection_brief)
        elif conn.get("type") == "webhook":
            url = sandbox.info.api_url.removesuffix("/api/v1") + INBOX_PATH
            await call("update_connection", {"connection_id": conn["id"], "metadata": {"url": url}}, connection_brief)
        elif conn.get("id"):
            say(
                f"   The person's step: reconnect {conn.get('name') or conn.get('type')} in the dashboard. In the "
                f"sandbox: `meshes-mcp sandbox reconnect {conn['id']}`."
            )
            done = reconnect_from_cli(sandbox.data_dir, conn["id"])
            print(f"  → reconnected: {done.get('reconnected')}\n", flush=True)
    say("3. Retry every failed delivery once, and wait for the outcome instead of polling.")
    failing = int(triage.get("failing") or 0)
    await call(
        "retry_failed", {"workspace": workspace, "max_retries": max(failing, 1000), "wait_seconds": 120}, retry_brief
    )
    say("4. Anything left?")
    after = await call("triage_failures", {"workspace": workspace}, triage_brief)
    left = after.get("count", len(after.get("groups", [])))
    say(
        "Nothing left: every delivery of the incident reached its destination."
        if not left
        else f"{left} group(s) still failing."
    )


def triage_brief(data: dict[str, Any]) -> str:
    groups = data.get("groups") or []
    if not groups:
        return data.get("summary") or "no failing deliveries"
    lines = [
        f"{data.get('failing')} failing deliveries in {len(groups)} groups ({data.get('events_scanned')} events "
        "scanned):"
    ]
    for g in groups:
        conn = g.get("connection") or {}
        lines.append(f"    {g.get('failed')} × {conn.get('type')} {g.get('outcome_code')}: {g.get('fix')}")
    return "\n".join(lines)


def connection_brief(data: dict[str, Any]) -> str:
    return f"{data.get('name')} ({data.get('type')}) updated, active: {data.get('active')}"


def retry_brief(data: dict[str, Any]) -> str:
    outcome = json.dumps(data.get("outcome"))
    return f"retried {data.get('retried')}, already due {data.get('already_due')}; outcome {outcome}"


async def wait_until_settled(client: Any, event_id: str) -> dict[str, Any]:
    """Poll get_event until no delivery is pending; the sandbox retries quickly in the demo."""
    event: dict[str, Any] = {}
    for _ in range(100):
        event = (await client.call_tool("get_event", {"event_id": event_id})).structured_content or {}
        statuses = {r.get("status") for r in event.get("rule_events", [])}
        if statuses and statuses <= {"completed", "failed", "canceled"}:
            break
        await anyio.sleep(0.2)
    return event


def run_demo(data_dir: Path | None = None) -> None:
    from meshes_mcp.sandbox import EmbeddedSandbox
    from meshes_mcp.sandbox.receiver import WebhookReceiver

    with tempfile.TemporaryDirectory(prefix="meshes-demo-") as tmp:
        directory = Path(data_dir) if data_dir else Path(tmp)
        say("Starting the embedded Meshes sandbox (retries shortened for the demo)…")
        sandbox = EmbeddedSandbox(directory, retry_base=0.3, max_attempts=2, scenario="incident-demo")
        info = sandbox.start()
        assert sandbox.scenario is not None
        receiver = WebhookReceiver().start()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MESHES_")},
            "MESHES_API_URL": info.api_url,
            "MESHES_ACCESS_KEY": info.access_key,
            "MESHES_SECRET_KEY": info.secret_key,
            "MESHES_ORG_ID": info.organization_id,
            "MESHES_WORKSPACE_ID": info.workspace_id,
        }
        say(f"Sandbox API at {info.api_url}, demo workspace {info.workspace_id}.\n")
        try:
            anyio.run(walk_through, env, receiver, sandbox.scenario, sandbox)
        finally:
            receiver.stop()
            sandbox.stop()
        print()
        say("That is the whole loop. Point your editor at `meshes-mcp --sandbox` to try it yourself.")
