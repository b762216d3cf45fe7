"""An incident at scale: triage_failures and retry_failed on 2,000 failed deliveries.

    python bench/bench_incident.py [--events 2000]

Builds its own incident: a sandbox in a subprocess (one attempt per delivery, so failures are final at
once), a local webhook receiver answering 500, one webhook rule, --events events. Then, through an
in-memory MCP session, as an agent would:

1. `triage_failures max_events=<events>`: wall time (target: under 10 s for 2,000) and result bytes;
2. the receiver is fixed (`update_connection` to a path answering 200);
3. `retry_failed group=<key> max_retries=<events>`: wall time of the call, which scans, then sends every
   retry (target: 200 or more rule events per second);
4. the deliveries are awaited, then counted at the receiver by X-Meshes-Delivery-Id: every delivery
   must arrive exactly once after the fix (target: zero retried twice).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from meshes_mcp.config import Settings
from meshes_mcp.sandbox import SandboxInfo
from meshes_mcp.sandbox.receiver import WebhookReceiver
from meshes_mcp.server.app import build_server


def start_sandbox(data_dir: Path) -> tuple[subprocess.Popen[bytes], SandboxInfo]:
    command = [sys.executable, "-m", "meshes_mcp.sandbox", "--data-dir", str(data_dir), "--port", "0",
               "--max-attempts", "1"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    info_file = data_dir / "sandbox.json"
    deadline = time.monotonic() + 30
    while not info_file.exists():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise SystemExit("the sandbox did not start")
        time.sleep(0.05)
    return process, SandboxInfo.model_validate(json.loads(info_file.read_text()))


def result(answer: Any) -> dict[str, Any]:
    if answer.is_error:
        raise SystemExit(answer.content[0].text)
    return answer.structured_content


async def wait_until(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        await anyio.sleep(0.2)


async def measure(info: SandboxInfo, rx: WebhookReceiver, events: int) -> None:
    settings = Settings(
        api_url=info.api_url, access_key=info.access_key, secret_key=info.secret_key, org_id=info.organization_id,
        workspace_id=info.workspace_id, _env_file=None,
    )  # fmt: skip
    async with Client(build_server(settings)) as client:
        failing = {"type": "webhook", "name": "Bench hook", "metadata": {"url": f"{rx.url}/status/500"}}
        hook = result(await client.call_tool("create_connection", failing))
        result(await client.call_tool("create_rule", {"connection": hook["id"], "event": "bench.incident",
                                                      "metadata": {"action": "send_webhook"}}))  # fmt: skip
        batch = [{"event": "bench.incident", "payload": {"n": n, "email": f"u{n}@example.com"}} for n in range(events)]
        result(await client.call_tool("emit_events", {"events": batch}))
        started = time.perf_counter()
        await wait_until(lambda: _received(rx, "/status/500", events), timeout=600)
        print(f"{events} failures built in {time.perf_counter() - started:.1f} s (sandbox delivery)")
        await anyio.sleep(1.0)  # the last attempts are recorded just after the receiver answers

        arguments = {"event": "bench.incident", "max_events": events}
        started = time.perf_counter()
        answer = await client.call_tool("triage_failures", arguments)
        triage_s = time.perf_counter() - started
        triage = result(answer)
        print(
            f"triage_failures: {triage['events_scanned']} events scanned, {triage['count']} group(s), "
            f"{triage['failing']} failing, {len(answer.content[0].text.encode())} bytes, {triage_s:.2f} s"
        )

        group = triage["groups"][0]
        result(await client.call_tool("update_connection", {"connection_id": hook["id"], "name": "Bench hook",
                                                            "metadata": {"url": f"{rx.url}/fixed"}}))  # fmt: skip
        sending: list[float] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            if "retries sent" in (message or ""):
                sending.append(time.perf_counter())

        started, cpu = time.perf_counter(), time.process_time()
        arguments = {"group": group["key"], "event": "bench.incident", "max_retries": events}
        retry = result(await client.call_tool("retry_failed", arguments, progress_callback=on_progress))
        retry_s = time.perf_counter() - started
        cpu = time.process_time() - cpu
        print(
            f"retry_failed: {retry['retried']} retried, {retry['already_due']} already due, "
            f"{retry['skipped']} skipped in {retry_s:.2f} s = {retry['retried'] / retry_s:,.0f} rule events/s "
            f"(scan included; this process used {cpu:.1f} s of CPU, the rest is the sandbox)"
        )
        if len(sending) > 1:
            send_s = sending[-1] - sending[0]
            print(f"  sending phase alone: {send_s:.2f} s = {retry['retried'] / send_s:,.0f} rule events/s")
        await wait_until(lambda: _received(rx, "/fixed", retry["retried"]), timeout=600)
        await anyio.sleep(1.0)  # anything sent twice would arrive now
    fixed = Counter(r.delivery_id for r in rx.receipts if r.path == "/fixed")
    twice = sum(1 for n in fixed.values() if n > 1)
    print(f"delivered after the fix: {len(fixed)} deliveries, retried twice: {twice}")


async def _received(rx: WebhookReceiver, path: str, count: int) -> bool:
    return sum(1 for r in rx.receipts if r.path == path) >= count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=None, help="override retries in flight (tuning)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per request would be measured too
    if args.in_flight:
        from meshes_mcp.server.incident import retry

        retry.RETRIES_IN_FLIGHT = args.in_flight
    with tempfile.TemporaryDirectory() as tmp, WebhookReceiver() as rx:
        process, info = start_sandbox(Path(tmp))
        try:
            anyio.run(measure, info, rx, args.events)
        finally:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
