"""The protocol surface over real streamable HTTP (`meshes-mcp --sandbox --transport http` in a subprocess):
capabilities on both protocol eras, 2026-07-28 cache hints, unknown tool names, and the official MCP
conformance suite's server scenarios that apply to this server.

The conformance suite is an npm package that needs Node ≥ 22; `.ci/run` installs both (the npm package
`node` brings that Node) into `.conformance/`. Without them the conformance test is skipped, saying so.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from meshes_mcp.server.caching import CATALOG_TTL_MS, LIST_TTL_MS
from tests.test_http_transport import free_port, start_server, stop, wait_until_serving

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT / ".conformance" / "node_modules"
NODE = CONFORMANCE / ".bin" / "node"
SUITE = CONFORMANCE / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
# The server scenarios that apply to a real server; the others call test tools, prompts and resources
# (`test_simple_text`…) that only the suite's reference server has, or logging this server does not offer.
SCENARIOS = (
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "completion-complete",
    "dns-rebinding-protection",
)
MODERN = "2026-07-28"


@pytest.fixture(scope="module")
def mcp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = start_server("--sandbox", "--data-dir", str(tmp_path_factory.mktemp("http")), "--port", str(port))
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        wait_until_serving(proc, url)
        yield url
    finally:
        stop(proc)


@pytest.mark.anyio
async def test_both_eras_advertise_the_same_capabilities_and_nothing_the_server_does_not_do(mcp_url):
    advertised = {}
    for mode in ("legacy", "auto"):  # initialize, then server/discover
        async with (
            httpx2.AsyncClient(timeout=30) as http,
            Client(streamable_http_client(mcp_url, http_client=http), mode=mode) as client,
        ):
            advertised[client.protocol_version] = client.server_capabilities.model_dump(
                by_alias=True, exclude_none=True
            )
    assert MODERN in advertised and len(advertised) == 2
    legacy, modern = advertised.values()
    # MCP Apps (the incident view) is an extension: the SDK advertises extensions on the 2026 era only. A
    # host of the older era finds the view through triage_failures' `_meta.ui`, as the Apps spec has it.
    assert modern.pop("extensions") == {"io.modelcontextprotocol/ui": {}}
    assert legacy == modern
    # The lists never change while the process runs and no resource publishes updates.
    assert modern["tools"] == {"listChanged": False}
    assert modern["prompts"] == {"listChanged": False}
    assert modern["resources"] == {"subscribe": False, "listChanged": False}


@pytest.mark.anyio
async def test_fixed_lists_and_the_catalogue_carry_cache_hints_on_2026(mcp_url):
    async with (
        httpx2.AsyncClient(timeout=30) as http,
        Client(streamable_http_client(mcp_url, http_client=http), mode=MODERN) as client,
    ):
        lists = [
            await client.list_tools(),
            await client.list_prompts(),
            await client.list_resources(),
            await client.list_resource_templates(),
        ]
        catalogue = await client.read_resource("meshes://integrations")
        one_integration = await client.read_resource("meshes://integrations/webhook")
        mapping_doc = await client.read_resource("meshes://docs/mapping-schema")
    # tools/list and resources/list differ with the client's MCP Apps support: kept an hour, but per client.
    scopes = ["private", "public", "private", "public"]
    for result, scope in zip(lists, scopes, strict=True):
        assert (result.ttl_ms, result.cache_scope) == (LIST_TTL_MS, scope), type(result).__name__
    assert (catalogue.ttl_ms, catalogue.cache_scope) == (CATALOG_TTL_MS, "private")
    assert (one_integration.ttl_ms, one_integration.cache_scope) == (CATALOG_TTL_MS, "private")
    assert (mapping_doc.ttl_ms, mapping_doc.cache_scope) == (0, "private")


@pytest.mark.anyio
async def test_an_unknown_tool_answers_with_the_closest_names(mcp_url):
    async with (
        httpx2.AsyncClient(timeout=30) as http,
        Client(streamable_http_client(mcp_url, http_client=http)) as client,
    ):
        typo = await client.call_tool("triage", {})
        near = await client.call_tool("retry_faild", {})
        nothing = await client.call_tool("frobnicate", {})
        off = await client.call_tool("create_session", {})  # the sessions toolset is off by default
    assert typo.is_error and typo.content[0].text == "Unknown tool: triage; did you mean triage_failures?"
    assert near.is_error and "did you mean retry_failed" in near.content[0].text
    assert nothing.is_error and re.fullmatch(
        r"Unknown tool: frobnicate; tools/list shows the \d+ tools\.", nothing.content[0].text
    )
    assert off.is_error and "toolset sessions is off" in off.content[0].text


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_official_conformance_scenarios_pass(mcp_url, scenario, tmp_path):
    if not (NODE.exists() and SUITE.exists()):
        pytest.skip("MCP conformance suite not installed: .ci/run installs it into .conformance/ (needs npm)")
    run = subprocess.run(
        [str(NODE), str(SUITE), "server", "--url", mcp_url, "--scenario", scenario, "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)
    passed = re.search(r"Passed: (\d+)/(\d+), (\d+) failed", output)
    assert run.returncode == 0 and passed, output
    assert passed.group(1) == passed.group(2) and passed.group(3) == "0", output
