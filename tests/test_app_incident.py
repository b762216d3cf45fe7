"""The incident view (MCP Apps, `ui://meshes/incident`), proven in a real browser.

Debian's chromium, driven by Playwright for Python, opens a test host page built on the official host side
(`AppBridge` from `@modelcontextprotocol/ext-apps`, bundled into `tests/apps/host.html` by `app/build.mjs`).
The host renders the view's HTML, read with resources/read, in a sandboxed iframe, and relays every tool
call the view makes to a real MCP client session over streamable HTTP, served on 127.0.0.1 the way
`meshes-mcp --transport http` serves it, on the sandbox's incident scenario (its tenth-size copy: the same
three causes). Confirmations the server asks for reach the session's elicitation callback.

With MESHES_APP_SCREENSHOT=<path.png> set, the browser test writes the rendered view there (light theme)
beside it as <path>-dark.png, after the retries as <path>-after.png, and a result with findings as
<path>-findings.png: the README's picture comes from this.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.extension import ClientExtension
from mcp.client.streamable_http import streamable_http_client
from mcp.server.apps import APP_MIME_TYPE
from mcp_types import ElicitResult

from meshes_mcp.config import HttpSettings
from meshes_mcp.sandbox import EmbeddedSandbox
from meshes_mcp.sandbox.scenarios.incident import INBOX_PATH
from meshes_mcp.server.app import build_server
from meshes_mcp.server.apps import INCIDENT_URI, TIMELINE_TOOL
from meshes_mcp.server.http import build_http_app
from tests.conftest import SandboxApi
from tests.support import ok, refused, settings_for

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"
VIEW = ROOT / "src/meshes_mcp/server/apps/incident.html"
HOST_PAGE = ROOT / "tests/apps/host.html"
# The documents app/build.mjs writes, each from its folder under app/.
BUILT = {"incident": VIEW, "test-host": HOST_PAGE}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MARKUP = "<img src=x onerror=document.title='injected'>"
SEND = {"action": "send_webhook"}
SNAPSHOT = ROOT / "tests/snapshots/tools_list.json"


# --- the committed documents ------------------------------------------------------------------------


def sources_hash(source: str) -> str:
    """What app/build.mjs embeds (`sourcesHash`): its folder's files, the build script and the lockfile."""
    folder = APP / source
    names = sorted(
        [f"{source}/{p.name}" for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        + ["build.mjs", "package-lock.json"]
    )
    digest = hashlib.sha256()
    for name in names:
        data = (APP / name).read_bytes()
        digest.update(f"{name}\n{len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


@pytest.mark.parametrize("source", sorted(BUILT))
def test_each_committed_document_is_built_from_the_current_sources(source):
    embedded = re.search(r"sources-sha256: ([0-9a-f]{64})", BUILT[source].read_text(encoding="utf-8"))
    assert embedded, f"{BUILT[source].name} carries no sources hash"
    assert embedded.group(1) == sources_hash(source), (
        f"{BUILT[source].relative_to(ROOT)} is stale: run `npm ci && npm run build` in app/ and commit it"
    )


def test_the_view_is_one_self_contained_document():
    html = VIEW.read_text(encoding="utf-8")
    assert len(html.encode()) <= 800_000
    assert html.startswith("<!doctype html>")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp and "default-src 'none'" in csp.group(1) and "http" not in csp.group(1)
    # Nothing is loaded from anywhere: no external script, stylesheet, image or font.
    assert not re.search(r"""<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=""", html, re.IGNORECASE)
    assert "@import" not in html and "url(http" not in html
    assert html.count("<script>") == 1 and html.count("<style>") == 1
    assert re.search(r"@modelcontextprotocol/ext-apps \S+ \(MIT\)", html)  # the bundled library's licence
    assert "Permission is hereby granted" in html


# --- an MCP session over streamable HTTP --------------------------------------------------------------


class AppsHost(ClientExtension):
    """What a host with MCP Apps declares: the extension, with the app MIME type it renders."""

    identifier = "io.modelcontextprotocol/ui"

    def settings(self) -> dict[str, Any]:
        return {"mimeTypes": [APP_MIME_TYPE]}


class User:
    """The person answering the server's confirmations: says yes, and remembers each question."""

    def __init__(self) -> None:
        self.questions: list[str] = []

    async def __call__(self, context: Any, params: Any) -> ElicitResult:
        self.questions.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    sandbox: EmbeddedSandbox
    url: str  # the MCP endpoint
    workspace: str
    api: SandboxApi
    user: User = field(default_factory=User)

    @property
    def base(self) -> str:
        assert self.sandbox.info is not None
        return self.sandbox.info.api_url.removesuffix("/api/v1")

    def client(self, *, apps: bool = True) -> Client:
        http = httpx2.AsyncClient(timeout=120, trust_env=False)
        return Client(
            streamable_http_client(self.url, http_client=http),
            extensions=[AppsHost()] if apps else None,
            elicitation_callback=self.user,
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    sandbox = EmbeddedSandbox(tmp_path_factory.mktemp("incident-view"), retry_base=0.05, scenario="incident-demo")
    info = sandbox.start()
    assert sandbox.scenario is not None
    workspace = sandbox.scenario["workspace_id"]
    http = HttpSettings(port=free_port())
    app = build_http_app(build_server(settings_for(info, workspace_id=workspace), http=http), http)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=http.port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the MCP server did not start"
        time.sleep(0.02)
    try:
        with SandboxApi(info) as api:
            yield Served(sandbox, f"http://127.0.0.1:{http.port}/mcp", workspace, api)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sandbox.stop()


@pytest.mark.anyio
async def test_a_host_with_apps_gets_the_view_and_its_tool_and_any_other_client_todays_server(served):
    model_visible = [tool["name"] for tool in json.loads(SNAPSHOT.read_text(encoding="utf-8"))]
    async with served.client(apps=False) as plain:
        listed = (await plain.list_tools()).tools
        assert [t.name for t in listed] == model_visible  # every toolset is on in these settings
        assert INCIDENT_URI not in {r.uri for r in (await plain.list_resources()).resources}
    async with served.client(apps=True) as host:
        tools = {t.name: t for t in (await host.list_tools()).tools}
        assert set(tools) == {*model_visible, TIMELINE_TOOL}
        assert tools["triage_failures"].meta == {"ui": {"resourceUri": INCIDENT_URI}, "ui/resourceUri": INCIDENT_URI}
        assert (tools[TIMELINE_TOOL].meta or {})["ui"] == {"resourceUri": INCIDENT_URI, "visibility": ["app"]}
        assert tools[TIMELINE_TOOL].annotations and tools[TIMELINE_TOOL].annotations.read_only_hint is True
        read = await host.read_resource(INCIDENT_URI)
        (content,) = read.contents
        assert content.mime_type == APP_MIME_TYPE
        assert content.text == VIEW.read_text(encoding="utf-8")  # type: ignore[union-attr]
        # The chart's data: triage_failures' groups, each counted per bucket; bad input named and refused.
        triage = ok(await host.call_tool("triage_failures", {}))
        timeline = ok(await host.call_tool(TIMELINE_TOOL, {"buckets": 12}))
        assert len(timeline["buckets"]) <= 12 and timeline["bucket_seconds"] % 60 == 0
        totals = {g["key"]: sum(g["counts"]) for g in timeline["groups"]}
        assert totals == {g["key"]: g["failed"] + g["retrying"] for g in triage["groups"]}
        assert "buckets: must be 6 to 96, e.g. 48" in refused(await host.call_tool(TIMELINE_TOOL, {"buckets": 500}))
        assert "Unknown argument(s) for triage_timeline: bucket" in refused(
            await host.call_tool(TIMELINE_TOOL, {"bucket": 5})
        )
        listed_resources = {r.uri: r for r in (await host.list_resources()).resources}
        assert listed_resources[INCIDENT_URI].meta == {"ui": {"csp": {}, "prefersBorder": False}}  # no domains


@pytest.mark.anyio
async def test_over_stdio_a_host_with_apps_is_listed_the_view_and_a_plain_client_is_not(tmp_path):
    """The stdio front answers the first lists from a packaged table with a view per client kind: a host with
    Apps (Claude Desktop, VS Code run servers over stdio) is listed the view's tool, a plain client is not."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "meshes_mcp", "--sandbox", "--data-dir", str(tmp_path / "sandbox")],
        env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
    )
    async with Client(params, extensions=[AppsHost()]) as host:
        assert TIMELINE_TOOL in {t.name for t in (await host.list_tools()).tools}
        assert INCIDENT_URI in {r.uri for r in (await host.list_resources()).resources}
    async with Client(params) as plain:
        assert TIMELINE_TOOL not in {t.name for t in (await plain.list_tools()).tools}


# --- the browser ------------------------------------------------------------------------------------


def browser_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed (pip install playwright; .ci/run installs it)"
    if not CHROMIUM.exists():
        return "Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium; .ci/run does)"
    return None


class MarkupReceiver(socketserver.ThreadingTCPServer):
    """A webhook receiver on 127.0.0.1 that refuses every delivery with markup in its HTTP reason phrase."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _MarkupAnswer)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hooks/probe"


class _MarkupAnswer(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        length = 0
        while (line := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        self.rfile.read(length)
        self.wfile.write(f"HTTP/1.1 422 {MARKUP}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())


def as_wire(result: Any) -> dict[str, Any]:
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


async def tool(session: Client, name: str, /, **args: Any) -> dict[str, Any]:
    return ok(await session.call_tool(name, args))


@pytest.mark.anyio
async def test_the_incident_view_in_a_real_browser(served, tmp_path):
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    from playwright.async_api import async_playwright

    async with served.client() as session, async_playwright() as playwright:
        first = await session.call_tool("triage_failures", {})
        triage = ok(first)
        html = (await session.read_resource(INCIDENT_URI)).contents[0].text  # type: ignore[union-attr]
        browser = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 960, "height": 2400},  # the whole view in one frame, for the screenshot
        )
        try:
            page = await browser.new_page()
            calls: list[tuple[str, dict[str, Any]]] = []

            async def relay(call_id: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
                """The host's tool bridge: each call the view makes, made on the MCP session."""
                calls.append((name, arguments))

                async def progress(done: float, total: float | None, message: str | None) -> None:
                    update = {"progress": done, "total": total, "message": message}
                    await page.evaluate("([id, p]) => window.hostProgress(id, p)", [call_id, update])

                return as_wire(await session.call_tool(name, arguments, progress_callback=progress))

            await page.expose_function("mcpCallTool", relay)
            await page.goto(HOST_PAGE.as_uri())
            start = {"html": html, "toolInput": {}, "toolResult": as_wire(first), "theme": "light", "width": 960}
            await page.evaluate("args => window.hostStart(args)", start)

            groups = await shows_the_causes_in_start_order(page, triage, calls)
            await shows_markup_from_outside_as_text(page, session)
            await retries_mailchimp_from_its_card(page, session, served, groups[0], calls)
            await retries_the_webhook_into_the_inbox(page, session, served, groups[1])
            await screenshot(page, "after")
            await shows_fields_it_does_not_know_yet_as_text(await browser.new_page(), relay, groups[0], html)
        finally:
            await browser.close()


def title(group: dict[str, Any]) -> str:
    return f"{group['connection']['name']} ({group['connection']['type']})"


async def shows_the_causes_in_start_order(
    page: Any, triage: dict[str, Any], calls: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The three causes, in the order they started, with triage_failures' counts, and the chart."""
    from playwright.async_api import expect

    view = page.frame_locator("iframe")
    by_start = sorted(triage["groups"], key=lambda g: g["first_seen"])
    assert [g["connection"]["type"] for g in by_start] == ["mailchimp", "webhook", "hubspot"]
    titles = [title(g) for g in by_start]
    cards = view.locator("article.card")
    await expect(cards).to_have_count(3)
    assert await cards.locator("h3").all_text_contents() == titles
    assert await cards.locator(".counts strong").all_text_contents() == [str(g["failed"]) for g in by_start]
    starts = await view.locator("ol.starts li").all_text_contents()
    assert [s.split(" failing since")[0] for s in starts] == [f"{i}. {t}" for i, t in enumerate(titles, 1)]
    summary = await view.locator("#summary").text_content()
    assert summary and summary.startswith(f"{triage['failing']} failing deliveries in 3 groups")
    # The chart comes from the app-only tool, over the same window; its caption is the text alternative.
    await expect(view.locator("svg.chart")).to_be_visible()
    caption = await view.locator("#chart-caption").text_content() or ""
    for group in by_start:
        assert f"{title(group)}: {group['failed']} since" in caption
    assert (TIMELINE_TOOL, {}) in calls
    await screenshot(page, "light")
    await page.evaluate("() => window.hostTheme('dark')")
    await expect(view.locator("html")).to_have_attribute("data-theme", "dark")
    await screenshot(page, "dark")
    await page.evaluate("() => window.hostTheme('light')")
    return by_start


async def shows_markup_from_outside_as_text(page: Any, session: Client) -> None:
    """A receiver's reason phrase and an event's payload that carry markup are shown as text."""
    from playwright.async_api import expect

    with MarkupReceiver() as receiver:
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        metadata = {"url": receiver.url}
        hook = await tool(session, "create_connection", type="webhook", name="Markup probe", metadata=metadata)
        await tool(session, "create_rule", connection=hook["id"], event="probe.markup", metadata=SEND)
        payload = {"email": "p@example.com", "note": MARKUP}
        emitted = await tool(session, "emit_event", event="probe.markup", payload=payload, wait_seconds=30)
        receiver.shutdown()
    view = page.frame_locator("iframe")
    await view.locator("#refresh").click()
    cards = view.locator("article.card")
    await expect(cards).to_have_count(4)
    probe = cards.filter(has_text="Markup probe")
    # The receiver's words are shown apart from ours, labelled as coming from outside.
    reason = probe.locator(":scope > .untrusted")
    await expect(reason.locator(".label")).to_have_text("reason (from outside, shown as text)")
    await expect(reason.locator("pre")).to_contain_text(f"answered HTTP 422 {MARKUP}")
    sample = probe.locator("button.sample").first
    assert await sample.get_attribute("data-event") == emitted["id"]
    await sample.click()
    await probe.locator("button.show-payload").click()
    await expect(probe.locator(".diagnosis .untrusted pre").last).to_contain_text(MARKUP)
    assert await view.locator("img").count() == 0
    assert await page.frames[1].evaluate("() => document.title") == "Meshes incident"  # no handler ran


async def shows_fields_it_does_not_know_yet_as_text(page: Any, relay: Any, group: dict[str, Any], html: str) -> None:
    """Parts of a triage result the view renders generically (a fix already in, silent findings and their
    kind-specific fields, `untrusted_*` text), each carrying markup: text, all of it."""
    from playwright.async_api import expect

    fixed = {**group, "fix_in": {"what": f"update_connection {MARKUP}", "at": group["last_seen"]}, "calls": []}
    fixed["untrusted_answer"] = {"body": MARKUP}
    finding = {"kind": "unrouted_event", "event": "order.paid", "count": 3, "first_seen": group["first_seen"],
               "last_seen": group["last_seen"], "reason": f"no rule routes it {MARKUP}", "fix": "create_rule",
               "calls": [f"create_rule event=order.paid {MARKUP}"], "then": f"replay_events {MARKUP}",
               "rules_for_other_events": MARKUP}  # fmt: skip
    result = {"groups": [fixed], "count": 1, "failing": group["failed"], "events_scanned": 1, "findings": [finding]}
    await page.expose_function("mcpCallTool", relay)
    await page.goto(HOST_PAGE.as_uri())
    start = {"html": html, "toolInput": {}, "toolResult": as_wire_dict(result), "theme": "dark", "width": 600}
    await page.evaluate("args => window.hostStart(args)", start)
    view = page.frame_locator("iframe")
    await expect(view.locator(".fix.in")).to_contain_text(f"Fix already in: update_connection {MARKUP}")
    answer = view.locator(".card .untrusted").filter(has_text="answer (from outside, shown as text)")
    await expect(answer.locator("pre")).to_contain_text(MARKUP)
    findings = view.locator("li.finding")
    await expect(findings).to_have_count(1)
    for text in (f"no rule routes it {MARKUP}", f"create_rule event=order.paid {MARKUP}", "3 events",
                 f"Then: replay_events {MARKUP}"):  # fmt: skip
        await expect(findings).to_contain_text(text)
    await expect(findings.locator("dd")).to_have_text(MARKUP)  # a field the view knows nothing about
    await expect(view.locator("#summary")).to_contain_text("1 silent finding")
    assert await view.locator("img").count() == 0
    await screenshot(page, "findings")
    await page.close()


def as_wire_dict(structured: dict[str, Any]) -> dict[str, Any]:
    """A tool result as a host hands it to the view: its text and its structured content."""
    text = json.dumps(structured, separators=(",", ":"), ensure_ascii=False)
    return {"content": [{"type": "text", "text": text}], "structuredContent": structured}


async def retries_mailchimp_from_its_card(
    page: Any, session: Client, served: Served, mailchimp: dict[str, Any], calls: list[tuple[str, dict[str, Any]]]
) -> None:
    """The fix through the MCP tool, then "Dry run" and "Retry this group" through the bridge."""
    from playwright.async_api import expect

    metadata = {"data_center": "us21", "api_key": "0a1b2c3d4e-us21"}
    await tool(session, "update_connection", connection_id=mailchimp["connection"]["id"], metadata=metadata)
    view = page.frame_locator("iframe")
    await view.locator("#refresh").click()  # the triage now sees the fix in
    card = view.locator("article.card").filter(has_text=title(mailchimp))
    await expect(card.locator(".fix.in")).to_contain_text("Fix already in: the Mailchimp connection was updated")
    failed = mailchimp["failed"]
    await card.locator("button.dry-run").click()
    await expect(card.locator(".result")).to_contain_text(f"would retry {failed} deliveries")
    await card.locator("button.retry").click()
    outcome = f"Retried {failed} · {failed} delivered · 0 still failing"
    await expect(card.locator(".outcome")).to_contain_text(outcome, timeout=90_000)
    sent = [args for name, args in calls if name == "retry_failed" and not args.get("dry_run")]
    assert sent == [{"group": mailchimp["key"], "event": "user.signup", "max_retries": failed, "wait_seconds": 60}]
    assert any(f"Retry {failed} failed deliveries" in question for question in served.user.questions)
    assert delivered_once(served, mailchimp["rule"]) == failed


async def retries_the_webhook_into_the_inbox(
    page: Any, session: Client, served: Served, webhook: dict[str, Any]
) -> None:
    """Pointed at the sandbox's inbox and retried from its card: the inbox counts each delivery once."""
    from playwright.async_api import expect

    inbox = served.base + INBOX_PATH
    await tool(session, "update_connection", connection_id=webhook["connection"]["id"], metadata={"url": inbox})
    card = page.frame_locator("iframe").locator("article.card").filter(has_text=title(webhook))
    await card.locator("button.retry").focus()
    await page.keyboard.press("Enter")  # by keyboard, this time
    await expect(card.locator(".outcome")).to_contain_text(f"{webhook['failed']} delivered", timeout=90_000)
    counts = httpx2.get(inbox, trust_env=False).json()
    assert (counts["deliveries"], counts["duplicates"]) == (webhook["failed"], 0)


def delivered_once(served: Served, rule: str) -> int:
    """How many of the rule's deliveries succeeded, each exactly once (one successful attempt, no second)."""
    delivered = 0
    cursor = None
    while True:
        params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        page = served.api.get(f"/workspaces/{served.workspace}/events", params=params).json()
        for event in page["records"]:
            for rule_event in event["rule_events"]:
                if rule_event["rule"] != rule:
                    continue
                attempts = served.api.get(f"/events/{event['id']}/rules/{rule}/attempts").json()["records"]
                successes = [a for a in attempts if a["outcome_code"] == "delivered"]
                assert len(successes) <= 1, (event["id"], attempts)
                delivered += len(successes) if len(attempts) > 1 else 0  # a retried delivery, delivered once
        cursor = page.get("next_cursor")
        if not cursor:
            return delivered


async def screenshot(page: Any, theme: str) -> None:
    """The rendered view as a PNG, where MESHES_APP_SCREENSHOT says (the dark one beside it)."""
    target = os.environ.get("MESHES_APP_SCREENSHOT")
    if not target:
        return
    path = Path(target)
    if theme != "light":
        path = path.with_name(f"{path.stem}-{theme}{path.suffix}")
    await page.locator("iframe").screenshot(path=str(path))
