"""The jobs users hire meshes-mcp for, scripted as an agent following the tools' `next` hints would.

    python bench/bench_jobs.py [--keep DIR]

Three processes, as in real use: the sandbox (`python -m meshes_mcp.sandbox --scenario incident`), the MCP
server over stdio (`python -m meshes_mcp`) and this script as the MCP client. Per job it prints the tool
calls made, the bytes of text returned, the failed calls and the wall time:

- wire: a HubSpot list rule and a webhook rule, a test event confirmed delivered (Demo workspace);
- debug one event: a webhook delivery refused by its receiver, diagnosed, fixed, retried, delivered;
- incident: the Incident workspace of the scenario (2,000 failing events, three causes), from "what is
  failing?" to "all delivered": triage → fix each cause (two through the API, HubSpot's reconnect as the
  person's step, which is not a tool call) → retry_failed with wait_seconds → triage shows nothing left;
- silent: 300 signups emitted as `user.signed_up` while the webhook rule listens for `user.signup` (no
  failed delivery anywhere), from "why didn't signups reach it?" to "all delivered": triage_failures
  event=user.signup → the finding's calls → its `then` (replay_events with wait_seconds).

Then the incident's figures: triage time, retry_failed rate, and the rule events retried twice (counted
from the store and at the sandbox's inbox; must be zero). Targets: incident ≤ 6 tool calls, ≤ 12 KB.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2

from meshes_mcp.sandbox import SandboxInfo
from meshes_mcp.sandbox.receiver import WebhookReceiver
from meshes_mcp.sandbox.scenarios.incident import INBOX_PATH
from meshes_mcp.sandbox.scenarios.practice import reconnect_from_cli

CALLS_TARGET, BYTES_TARGET = 6, 12 * 1024
SILENT_EVENTS, SILENT_CALLS_TARGET, SILENT_BYTES_TARGET = 300, 4, 4 * 1024
TRIAGE_TARGET, RATE_TARGET = 10.0, 200
NEW_MAILCHIMP_KEY = "5b3c9e0d7a214f68a1c2-us21"


@dataclass
class Tally:
    job: str
    calls: int = 0
    bytes: int = 0
    failed: int = 0
    seconds: float = 0.0
    person_steps: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        person = f", {self.person_steps} person step" if self.person_steps else ""
        return (
            f"{self.job:<16} {self.calls:>2} tool calls  {self.bytes / 1024:6.1f} KB text  {self.failed} failed"
            f"  {self.seconds:6.2f} s{person}"
        )


class Agent:
    """An MCP client session that counts what a model would read."""

    def __init__(self, client: Any, tally: Tally) -> None:
        self.client = client
        self.tally = tally

    async def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        result = await self.client.call_tool(name, args)
        text = "".join(getattr(c, "text", "") for c in result.content)
        self.tally.calls += 1
        self.tally.bytes += len(text.encode())
        if result.is_error:
            self.tally.failed += 1
            self.tally.notes.append(f"{name} failed: {text[:300]}")
            return {}
        return result.structured_content or {}


# -- processes ----------------------------------------------------------------------------------------


def start_sandbox(data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], SandboxInfo]:
    info_file = data_dir / "sandbox.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshes_mcp.sandbox", "--data-dir", str(data_dir), "--port", "0",
         "--scenario", "incident"],
        stdout=subprocess.DEVNULL, stderr=log.open("ab"),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not info_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the sandbox did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    return proc, SandboxInfo.model_validate_json(info_file.read_text())


def server_env(info: SandboxInfo, workspace_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHES_")}
    env.update({"MESHES_API_URL": info.api_url, "MESHES_ACCESS_KEY": info.access_key,
                "MESHES_SECRET_KEY": info.secret_key, "MESHES_ORG_ID": info.organization_id,
                "MESHES_WORKSPACE_ID": workspace_id})  # fmt: skip
    return env


async def session(info: SandboxInfo, workspace_id: str, job: Any, *args: Any) -> Tally:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "meshes_mcp"],
                                   env=server_env(info, workspace_id))  # fmt: skip
    with open(os.devnull, "w") as quiet:
        async with Client(stdio_client(params, errlog=quiet)) as client:
            return await job(client, info, *args)


def base(info: SandboxInfo) -> str:
    return info.api_url.removesuffix("/api/v1")


def inbox(info: SandboxInfo, name: str) -> dict[str, Any]:
    return httpx2.get(f"{base(info)}/sandbox/inbox/{name}", trust_env=False).json()


def settled(event: dict[str, Any]) -> bool:
    statuses = [r.get("status") for r in event.get("rule_events") or []]
    return bool(statuses) and all(s in ("completed", "failed", "canceled") for s in statuses)


def all_completed(event: dict[str, Any]) -> bool:
    return bool(event.get("rule_events")) and all(r.get("status") == "completed" for r in event["rule_events"])


# -- the jobs -------------------------------------------------------------------------------------------


async def wire(client: Any, info: SandboxInfo) -> Tally:
    tally = Tally("wire")
    agent = Agent(client, tally)
    started = time.perf_counter()
    connections = await agent.call("list_connections", {})
    hubspot = next(c for c in connections.get("connections", []) if c.get("type") == "hubspot")
    await agent.call("get_connection_actions", {"connection_id": hubspot["id"]})
    await agent.call("create_rule", {"connection": hubspot["id"], "event": "user.signup",
                                     "metadata": {"action": "add_to_list", "id": "5"}})  # fmt: skip
    webhook = await agent.call(
        "create_connection",
        {"type": "webhook", "name": "Signup webhook", "metadata": {"url": f"{base(info)}/sandbox/inbox/wire"}},
    )
    await agent.call("create_rule", {"connection": webhook["id"], "event": "user.signup",
                                     "metadata": {"action": "send_webhook"}})  # fmt: skip
    emitted = await agent.call(
        "emit_event",
        {"event": "user.signup", "wait_seconds": 20, "payload": {"email": "ada@example.com", "first_name": "Ada"}},
    )
    tally.seconds = time.perf_counter() - started
    if not all_completed(emitted):
        tally.notes.append(f"test event not confirmed delivered: {json.dumps(emitted)[:300]}")
    tally.notes.append(f"webhook inbox received {inbox(info, 'wire')['deliveries']} delivery")
    return tally


async def debug_one(client: Any, info: SandboxInfo, receiver: WebhookReceiver) -> Tally:
    tally = Tally("debug one event")
    agent = Agent(client, tally)
    event_id = await stage_refused_delivery(info, receiver)
    started = time.perf_counter()
    diagnosis = await agent.call("diagnose_event", {"event_id": event_id})
    troubled = diagnosis.get("deliveries") or []
    delivery = troubled[0]
    connection = delivery["connection"]
    await agent.call("update_connection", {"connection_id": connection,
                                           "metadata": {"url": f"{base(info)}/sandbox/inbox/debug"}})  # fmt: skip
    retried = await agent.call("retry_rule_event", {"event_id": event_id, "rule_id": delivery["rule"],
                                                    "wait_seconds": 20})  # fmt: skip
    tally.seconds = time.perf_counter() - started
    if retried.get("status") != "completed":
        tally.notes.append(f"retry not confirmed delivered ({connection}): {json.dumps(retried)[:300]}")
    return tally


async def stage_refused_delivery(info: SandboxInfo, receiver: WebhookReceiver) -> str:
    """Outside the job: a webhook whose receiver answers 404 (a typo in its path), one event, failed."""
    from meshes_mcp.api.auth import MachineKey

    key = MachineKey(info.access_key, info.secret_key, info.organization_id)
    with httpx2.Client(base_url=info.api_url, trust_env=False, timeout=10) as http:
        conn = http.post("/connections", headers=key.headers(), json={
            "workspace": info.workspace_id, "type": "webhook", "name": "Orders webhook",
            "metadata": {"url": f"{receiver.url}/status/404"}}).json()["connection"]  # fmt: skip
        http.post("/rules", headers=key.headers(), json={
            "workspace": info.workspace_id, "connection": conn["id"], "event": "order.created",
            "metadata": {"action": "send_webhook"}}).raise_for_status()  # fmt: skip
        event = http.post(
            "/events",
            headers=key.headers(),
            json={"workspace": info.workspace_id, "event": "order.created", "payload": {"order": 1042}},
        ).json()["event"]
        for _ in range(200):
            if settled(http.get(f"/events/{event['id']}", headers=key.headers()).json()):
                break
            await anyio.sleep(0.05)
    return event["id"]


async def incident(client: Any, info: SandboxInfo, data_dir: Path, figures: dict[str, Any]) -> Tally:
    tally = Tally("incident")
    agent = Agent(client, tally)
    started = time.perf_counter()
    triage = await agent.call("triage_failures", {})
    figures["triage_seconds"] = time.perf_counter() - started
    figures["groups"] = [(g.get("connection", {}).get("type"), g.get("outcome_code"), g.get("failed"))
                         for g in triage.get("groups", [])]  # fmt: skip
    figures["scanned"] = triage.get("events_scanned")
    figures["findings"] = [(f.get("kind"), f.get("event"), f.get("count")) for f in triage.get("findings", [])]
    figures["findings_scan"] = triage.get("findings_scan")
    fixed: set[str] = set()
    for group in triage.get("groups", []):
        conn = group.get("connection") or {}
        if conn.get("id") in fixed:
            continue
        fixed.add(conn.get("id"))
        await fix(agent, tally, info, data_dir, group)
    retry_started = time.perf_counter()
    figures["retry_from"] = time.time()
    # Everything that failed, once: the triage said how many, which sets the cap (default 1,000).
    failing = int(triage.get("failing") or 0)
    retried = await agent.call("retry_failed", {"wait_seconds": 120, "max_retries": max(1000, failing)})
    figures["retry_seconds"] = time.perf_counter() - retry_started
    figures["retried"] = retried.get("retried", 0)
    figures["outcome"] = retried.get("outcome")
    after = await agent.call("triage_failures", {})
    tally.seconds = time.perf_counter() - started
    figures["left"] = after.get("count", len(after.get("groups", [])))
    return tally


async def fix(agent: Agent, tally: Tally, info: SandboxInfo, data_dir: Path, group: dict[str, Any]) -> None:
    """What the group's `fix` says, done the way a person and an agent would."""
    conn = group.get("connection") or {}
    text = f"{group.get('fix', '')} {' '.join(group.get('calls', []))}"
    if "dashboard" in text.lower() or "reconnect" in text.lower():
        # The person's step: in Meshes, "Reconnect" in the dashboard; in the sandbox, its stand-in.
        await anyio.to_thread.run_sync(reconnect_from_cli, data_dir, conn["id"])
        tally.person_steps += 1
    elif conn.get("type") == "mailchimp":
        await agent.call(
            "update_connection",
            {"connection_id": conn["id"], "metadata": {"data_center": "us21", "api_key": NEW_MAILCHIMP_KEY}},
        )
    elif conn.get("type") == "webhook":
        await agent.call("update_connection", {"connection_id": conn["id"],
                                               "metadata": {"url": base(info) + INBOX_PATH}})  # fmt: skip
    else:
        tally.notes.append(f"no scripted fix for group {group.get('key')}: {text[:200]}")


async def silent(client: Any, info: SandboxInfo, figures: dict[str, Any]) -> Tally:
    """Follow the hints from triage_failures to the replay's outcome, running each call as written."""
    tally = Tally("silent")
    agent = Agent(client, tally)
    started = time.perf_counter()
    triage = await agent.call("triage_failures", {"event": "user.signup"})
    figures["silent_triage_seconds"] = time.perf_counter() - started
    found = next((f for f in triage.get("findings", []) if f.get("kind") == "unrouted"), {})
    for call in found.get("calls", []):
        await agent.call(*parse_call(call))
    replay_started = time.perf_counter()
    replayed = await agent.call(*parse_call(found["then"])) if found.get("then") else {}
    figures["silent_replay_seconds"] = time.perf_counter() - replay_started
    tally.seconds = time.perf_counter() - started
    figures["silent_outcome"] = replayed.get("outcome")
    figures["silent_inbox"] = inbox(info, "silent")
    return tally


def parse_call(call: str) -> tuple[str, dict[str, Any]]:
    """`create_rule connection=… metadata={"action":"send_webhook"}` → the tool and its typed arguments."""
    name, *parts = call.split(" ")
    args: dict[str, Any] = {}
    for part in parts:
        key, _, value = part.partition("=")
        args[key] = json.loads(value) if value[:1] in "{[" or value.isdigit() else value
    return name, args


def stage_silent(info: SandboxInfo) -> str:
    """Outside the job: a workspace whose webhook rule listens for `user.signup`, and 300 signups the app
    emitted as `user.signed_up`: none routed, none failed."""
    from meshes_mcp.api.auth import MachineKey

    key = MachineKey(info.access_key, info.secret_key, info.organization_id)
    with httpx2.Client(base_url=info.api_url, trust_env=False, timeout=30) as http:
        ws = http.post("/workspaces", headers=key.headers(), json={"name": "Silent"}).json()
        ws = ws.get("workspace", ws)["id"]
        conn = http.post("/connections", headers=key.headers(), json={
            "workspace": ws, "type": "webhook", "name": "Signups",
            "metadata": {"url": f"{base(info)}/sandbox/inbox/silent"}}).json()["connection"]  # fmt: skip
        http.post("/rules", headers=key.headers(), json={
            "workspace": ws, "connection": conn["id"], "event": "user.signup",
            "metadata": {"action": "send_webhook"}}).raise_for_status()  # fmt: skip
        for start in range(0, SILENT_EVENTS, 100):
            batch = [{"workspace": ws, "event": "user.signed_up", "payload": {"email": f"u{n}@example.com"}}
                     for n in range(start, start + 100)]  # fmt: skip
            http.post("/events/bulk", headers=key.headers(), json=batch).raise_for_status()
    return ws


def retried_twice(data_dir: Path, since: float) -> tuple[int, int]:
    """(rule events with more than one attempt since `since`, rule events with any) — from the store."""
    from meshes_mcp.sandbox.clock import iso

    db = sqlite3.connect(f"file:{data_dir / 'sandbox.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT rule_event_id, count(*) FROM attempts WHERE started_at >= ? GROUP BY 1",
                          (iso(since),)).fetchall()  # fmt: skip
    finally:
        db.close()
    return sum(1 for _, n in rows if n > 1), len(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", type=Path, help="keep the sandbox's data here instead of a temp dir")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="meshes-bench-jobs-") as tmp:
        data_dir = args.keep or Path(tmp) / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        build_started = time.perf_counter()
        proc, info = start_sandbox(data_dir, Path(tmp) / "sandbox.log")
        print(f"sandbox with the incident scenario up in {time.perf_counter() - build_started:.2f} s")
        try:
            run_jobs(info, data_dir)
        finally:
            proc.terminate()
            proc.wait(10)


def run_jobs(info: SandboxInfo, data_dir: Path) -> None:
    marker = json.loads(sqlite_meta(data_dir, "scenario:incident"))
    figures: dict[str, Any] = {}
    with WebhookReceiver() as receiver:
        tallies = [
            anyio.run(session, info, info.workspace_id, wire),
            anyio.run(session, info, info.workspace_id, debug_one, receiver),
            anyio.run(session, info, marker["workspace_id"], incident, data_dir, figures),
            anyio.run(session, info, stage_silent(info), silent, figures),
        ]
    for tally in tallies:
        print(tally.line())
        for note in tally.notes:
            print(f"    {note}")
    job, quiet = tallies[2], tallies[3]
    twice, touched = retried_twice(data_dir, figures.get("retry_from", time.time()))
    counts = inbox(info, "signups")
    summary = marker["summary"]
    print(f"incident: {summary['failing_events']:,} failing events, "
          f"{sum(d['failed'] for d in summary['destinations'].values()):,} failing deliveries")  # fmt: skip
    print(f"  triage: {figures.get('triage_seconds', 0):.2f} s for {figures.get('scanned')} events scanned, "
          f"groups {figures.get('groups')}")  # fmt: skip
    retried, spent = figures.get("retried", 0), figures.get("retry_seconds", 0.0)
    waited = float((figures.get("outcome") or {}).get("waited_s") or 0.0)
    # Sending: the call's time less the wait for outcomes it reports (what is left includes its own scan).
    rate = retried / (spent - waited) if spent > waited else 0.0
    print(
        f"  retry_failed: {retried:,} retried in {spent:.2f} s, of which {waited:.1f} s waiting for outcomes"
        f" = {rate:,.0f} rule events/s sent; outcome {json.dumps(figures.get('outcome'))}"
    )
    print(f"  retried twice: {twice} of {touched} rule events (store); webhook inbox: {counts['deliveries']} "
          f"deliveries, {counts['duplicates']} duplicates")  # fmt: skip
    print(f"  after: {figures.get('left')} groups left; findings {figures.get('findings')}, "
          f"window read {figures.get('findings_scan')}")  # fmt: skip
    checks = {
        f"incident ≤ {CALLS_TARGET} tool calls": job.calls <= CALLS_TARGET,
        f"incident ≤ {BYTES_TARGET // 1024} KB text": job.bytes <= BYTES_TARGET,
        "no failed calls": job.failed == 0,
        "nothing left": figures.get("left") == 0,
        "nothing retried twice": twice == 0 and counts["duplicates"] == 0,
        f"triage of {summary['failing_events']:,} failing events < {TRIAGE_TARGET:g} s":
            figures.get("triage_seconds", 1e9) < TRIAGE_TARGET,
        f"retry_failed ≥ {RATE_TARGET} rule events/s": rate >= RATE_TARGET,
    }  # fmt: skip
    for name, met in checks.items():
        print(f"  target {name}: {'met' if met else 'NOT met'}")
    got = figures.get("silent_inbox") or {}
    print(f"silent: {SILENT_EVENTS} events under a near-miss name; replay outcome "
          f"{json.dumps(figures.get('silent_outcome'))}; inbox {got.get('deliveries')} deliveries, "
          f"{got.get('duplicates')} duplicates; triage {figures.get('silent_triage_seconds', 0):.2f} s, "
          f"replay_events {figures.get('silent_replay_seconds', 0):.2f} s")  # fmt: skip
    silent_checks = {
        f"silent ≤ {SILENT_CALLS_TARGET} tool calls": quiet.calls <= SILENT_CALLS_TARGET,
        f"silent ≤ {SILENT_BYTES_TARGET // 1024} KB text": quiet.bytes <= SILENT_BYTES_TARGET,
        "silent: all delivered, once": got.get("deliveries") == SILENT_EVENTS and got.get("duplicates") == 0,
    }
    for name, met in silent_checks.items():
        print(f"  target {name}: {'met' if met else 'NOT met'}")


def sqlite_meta(data_dir: Path, key: str) -> str:
    db = sqlite3.connect(f"file:{data_dir / 'sandbox.db'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0]
    finally:
        db.close()


if __name__ == "__main__":
    main()
