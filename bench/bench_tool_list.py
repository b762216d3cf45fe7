"""How many bytes the tool list costs an agent: tools/list measured through a real MCP session.

The model-visible part of a tool is its name, title, description and input schema; that is what every
conversation pays for, so it is what the budget (DESIGN §6) is about. The full listing, with output
schemas and annotations, is printed for information.

    python bench/bench_tool_list.py [--toolsets all] [--top 8]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio
from mcp import Client

from meshes_mcp.config import Settings
from meshes_mcp.server.app import build_server

MODEL_VISIBLE = ("name", "title", "description", "inputSchema")


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def model_visible(tool: dict[str, Any]) -> dict[str, Any]:
    return {key: tool[key] for key in MODEL_VISIBLE if key in tool}


async def list_tools(toolsets: str, read_only: bool = False) -> list[dict[str, Any]]:
    """tools/list as a client receives it, each tool as its wire JSON."""
    settings = Settings(toolsets=toolsets, read_only=read_only, _env_file=None)
    async with Client(build_server(settings)) as client:
        result = await client.list_tools()
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in result.tools]


def measure(tools: list[dict[str, Any]]) -> dict[str, Any]:
    sizes = {tool["name"]: len(compact(model_visible(tool)).encode()) for tool in tools}
    total = sum(sizes.values())
    return {
        "tools": len(tools),
        "total_bytes": total,
        "bytes_per_tool": total / len(tools) if tools else 0.0,
        "full_bytes": sum(len(compact(tool).encode()) for tool in tools),
        "sizes": sizes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toolsets", default="all")
    parser.add_argument("--top", type=int, default=8, help="how many of the largest tools to list")
    args = parser.parse_args()
    report = measure(anyio.run(list_tools, args.toolsets))
    print(f"toolsets: {args.toolsets}")
    print(f"tools: {report['tools']}")
    print(f"model-visible bytes (name+title+description+inputSchema): {report['total_bytes']}")
    print(f"bytes/tool: {report['bytes_per_tool']:.1f}")
    print(f"full tools/list bytes (with outputSchema and annotations): {report['full_bytes']}")
    print("largest tools:")
    for name, size in sorted(report["sizes"].items(), key=lambda item: -item[1])[: args.top]:
        print(f"  {size:5d}  {name}")


if __name__ == "__main__":
    main()
