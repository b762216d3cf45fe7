"""Drive meshes-mcp with the official MCP Python client over stdio, on the embedded sandbox.

    python examples/drive_server.py

It starts `meshes-mcp --sandbox` as a subprocess (as an IDE would), routes `user.signup` to the
sandbox's HubSpot "Newsletter Subscribers" list, emits a test event and prints its delivery.
"""

from __future__ import annotations

import json
import sys
import tempfile

import anyio
from mcp import Client, StdioServerParameters


def data(result) -> dict:
    if result.is_error:
        raise SystemExit(result.content[0].text)
    return result.structured_content


async def main(data_dir: str) -> None:
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "meshes_mcp", "--sandbox", "--data-dir", data_dir]
    )
    async with Client(server) as client:
        connections = data(await client.call_tool("list_connections", {}))
        hubspot = next(c for c in connections["connections"] if c["type"] == "hubspot")
        actions = data(await client.call_tool("get_connection_actions", {"connection_id": hubspot["id"]}))
        newsletter = next(item for item in actions["data"]["lists"] if item["name"] == "Newsletter Subscribers")

        rule = data(
            await client.call_tool(
                "create_rule",
                {
                    "connection": hubspot["id"],
                    "event": "user.signup",
                    "metadata": {"action": "add_to_list", "id": newsletter["id"]},
                },
            )
        )
        print("rule:", rule["id"])
        event = data(
            await client.call_tool("emit_event", {"event": "user.signup", "payload": {"email": "jane@example.com"}})
        )
        for _ in range(50):
            detail = data(await client.call_tool("get_event", {"event_id": event["id"]}))
            if detail.get("status") in ("completed", "failed"):
                break
            await anyio.sleep(0.2)
        print(json.dumps(detail, indent=2))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(main, tmp)
