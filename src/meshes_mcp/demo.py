"""`meshes-mcp demo`: a short guided walk-through on a throwaway sandbox.

It starts the embedded sandbox and a local webhook receiver, then drives the MCP server through a
real stdio client session, exactly as an IDE would: wire a HubSpot list and a webhook, emit an
event, watch the webhook delivery fail, fix the receiver, retry, and see it delivered.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio

WIDTH = 100


class Receiver:
    """A webhook endpoint on 127.0.0.1 that fails until it is 'fixed'."""

    def __init__(self) -> None:
        self.healthy = False
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.healthy:
                    receiver.received.append(json.loads(body or b"{}"))
                    self.send_response(200)
                else:
                    self.send_response(500)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/meshes"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()


def say(text: str) -> None:
    print(textwrap.fill(text, WIDTH), flush=True)


def show(label: str, result: Any) -> dict[str, Any]:
    text = result.content[0].text if result.content else ""
    marker = "✗" if result.is_error else "→"
    shown = text if len(text) <= 600 else text[:600] + f"… ({len(text)} bytes)"
    print(f"  {label}\n  {marker} {shown}\n", flush=True)
    return result.structured_content or {}


async def walk_through(env: dict[str, str], receiver: Receiver) -> None:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=["-m", "meshes_mcp"], env=env)
    async with Client(params) as client:
        tools = await client.list_tools()
        say(f"Connected to meshes-mcp over stdio: {len(tools.tools)} tools.\n")

        async def call(name: str, args: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            result = await client.call_tool(name, args)
            return result, show(f"{name} {json.dumps(args)}", result)

        say("1. Find the HubSpot connection (OAuth connections come from the dashboard; the sandbox seeds them).")
        _, connections = await call("list_connections", {})
        hubspot = next(c for c in connections.get("records", []) if c.get("type") == "hubspot")

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

        say(f"4. Add a webhook to a local receiver ({receiver.url}), which is broken for now.")
        _, webhook = await call(
            "create_connection", {"type": "webhook", "name": "Signup webhook", "metadata": {"url": receiver.url}}
        )
        await call(
            "create_rule", {"connection": webhook["id"], "event": "user.signup", "metadata": {"action": "send_webhook"}}
        )

        say("5. Emit a signup. Meshes fans it out to both rules.")
        _, emitted = await call(
            "emit_event",
            {"event": "user.signup", "payload": {"email": "jane@example.com", "first_name": "Jane", "plan": "pro"}},
        )
        event_id = emitted["id"]
        diagnosis = await wait_until_settled(client, event_id)
        show(f"diagnose_event {json.dumps({'event_id': event_id})}", diagnosis)

        say("6. Fix the receiver, then retry only the failed delivery.")
        receiver.healthy = True
        failed = [r for r in (diagnosis.structured_content or {}).get("rule_events", []) if r.get("status") == "failed"]
        for rule_event in failed:
            await call("retry_rule_event", {"event_id": event_id, "rule_id": rule_event["rule"]})
        await wait_until_settled(client, event_id)
        await call("get_event", {"event_id": event_id})
        say(f"The receiver got {len(receiver.received)} delivery: the event is delivered everywhere.")


async def wait_until_settled(client: Any, event_id: str) -> Any:
    """Poll until no delivery is pending; the sandbox retries quickly in the demo."""
    result = None
    for _ in range(60):
        result = await client.call_tool("diagnose_event", {"event_id": event_id})
        statuses = {r.get("status") for r in (result.structured_content or {}).get("rule_events", [])}
        if statuses and statuses <= {"completed", "failed", "canceled"}:
            return result
        await anyio.sleep(0.5)
    return result


def run_demo(data_dir: Path | None = None) -> None:
    from meshes_mcp.sandbox import EmbeddedSandbox

    with tempfile.TemporaryDirectory(prefix="meshes-demo-") as tmp:
        directory = Path(data_dir) if data_dir else Path(tmp)
        say("Starting the embedded Meshes sandbox (retries shortened for the demo)…")
        sandbox = EmbeddedSandbox(directory, retry_base=0.3, max_attempts=2)
        info = sandbox.start()
        receiver = Receiver()
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
            anyio.run(walk_through, env, receiver)
        finally:
            receiver.stop()
            sandbox.stop()
        say("\nThat is the whole loop. Point your editor at `meshes-mcp --sandbox` to try it yourself.")
