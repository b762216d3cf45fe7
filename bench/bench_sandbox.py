"""Sandbox throughput on this machine: event ingestion (single and bulk, machine JWT per request) and
webhook deliveries to a local receiver.

    .venv/bin/python bench/bench_sandbox.py [--seconds 3] [--deliveries 3000] [--synchronous FULL]

The sandbox runs in its own process (as `meshes-mcp sandbox` would); this process is the client and
the webhook receiver. Figures are printed; nothing is asserted (targets: > 1,000 ingests/s and
> 500 webhook deliveries/s on 2 cores). `--synchronous FULL` measures the sandbox with an fsync of the
write-ahead log at every commit (the sandbox itself uses NORMAL; see `meshes_mcp.sandbox.store`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

from meshes_mcp.api.auth import MachineKey
from meshes_mcp.sandbox import SandboxInfo
from meshes_mcp.sandbox.receiver import WebhookReceiver

# `python -c` prelude running the sandbox with another `PRAGMA synchronous` (measurement only).
SYNCHRONOUS_PRELUDE = """
import sys
from meshes_mcp.sandbox import store
opened = store.Store.__init__
def reopened(self, path):
    opened(self, path)
    self.db.execute("PRAGMA synchronous={mode}")
store.Store.__init__ = reopened
from meshes_mcp.sandbox.__main__ import main
main(sys.argv[1:])
"""


def start_sandbox(data_dir: Path, synchronous: str | None = None) -> tuple[subprocess.Popen, SandboxInfo]:
    entry = (
        ["-m", "meshes_mcp.sandbox"] if synchronous is None else ["-c", SYNCHRONOUS_PRELUDE.format(mode=synchronous)]
    )
    proc = subprocess.Popen(
        [sys.executable, *entry, "--data-dir", str(data_dir), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    info_file = data_dir / "sandbox.json"
    deadline = time.monotonic() + 20
    while not info_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the sandbox did not start")
        time.sleep(0.02)
    return proc, SandboxInfo.model_validate(json.loads(info_file.read_text()))


def token(info: SandboxInfo) -> str:
    return MachineKey(info.access_key, info.secret_key, info.organization_id).mint()


def auth(info: SandboxInfo) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(info)}"}


async def ingest(info: SandboxInfo, client: httpx2.AsyncClient, seconds: float, batch: int, workers: int) -> float:
    """Events accepted per second, `batch` events per request (1 = POST /events, else /events/bulk)."""
    ws = info.workspace_id
    accepted = 0
    stop = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal accepted
        i = 0
        while time.perf_counter() < stop:
            i += 1
            if batch == 1:
                body = {"workspace": ws, "event": "bench.ingest", "payload": {"email": "b@example.com", "i": i}}
                response = await client.post("/events", json=body, headers=auth(info))
                assert response.status_code == 201, response.text
                accepted += 1
            else:
                payload = {"email": "b@example.com", "i": i}
                body = [
                    {"workspace": ws, "event": "bench.ingest", "payload": {**payload, "j": j}} for j in range(batch)
                ]
                response = await client.post("/events/bulk", json=body, headers=auth(info))
                assert response.status_code == 201, response.text
                accepted += response.json()["count"]

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(workers)))
    return accepted / (time.perf_counter() - started)


async def deliveries(info: SandboxInfo, client: httpx2.AsyncClient, receiver: WebhookReceiver, total: int) -> tuple:
    ws = info.workspace_id
    created = await client.post(
        "/connections",
        headers=auth(info),
        json={
            "workspace": ws,
            "type": "webhook",
            "name": "Bench hook",
            "metadata": {"url": f"{receiver.url}/bench", "signing_algorithm": "sha256", "signing_secret": "bench"},
        },
    )
    created.raise_for_status()
    rule = await client.post(
        "/rules",
        headers=auth(info),
        json={
            "workspace": ws,
            "connection": created.json()["connection"]["id"],
            "event": "bench.deliver",
            "metadata": {"action": "send_webhook"},
        },
    )
    rule.raise_for_status()
    started = time.perf_counter()
    for offset in range(0, total, 100):
        body = [
            {"workspace": ws, "event": "bench.deliver", "payload": {"n": offset + j}}
            for j in range(min(100, total - offset))
        ]
        (await client.post("/events/bulk", json=body, headers=auth(info))).raise_for_status()
    emitted = time.perf_counter()
    deadline = emitted + 120
    while len(receiver.matching("/bench")) < total and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    done = time.perf_counter()
    receipts = receiver.matching("/bench")
    first, last = receipts[0].received_at, receipts[-1].received_at
    return len(receipts), total / (done - started), (len(receipts) - 1) / max(last - first, 1e-9), emitted - started


async def main(seconds: float, total: int, synchronous: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp, WebhookReceiver() as receiver:
        proc, info = start_sandbox(Path(tmp), synchronous)
        try:
            limits = httpx2.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx2.AsyncClient(base_url=info.api_url, limits=limits, timeout=30, trust_env=False) as client:
                single = await ingest(info, client, seconds, batch=1, workers=16)
                print(f"ingest, POST /events (1 event/request, 16 concurrent): {single:,.0f} events/s")
                bulk = await ingest(info, client, seconds, batch=100, workers=4)
                print(f"ingest, POST /events/bulk (100 events/request, 4 concurrent): {bulk:,.0f} events/s")
                count, overall, steady, emit_time = await deliveries(info, client, receiver, total)
                print(
                    f"webhook deliveries: {count:,} delivered, {overall:,.0f}/s end to end "
                    f"(emit → last receipt; emitting took {emit_time:.2f} s), {steady:,.0f}/s first → last receipt"
                )
        finally:
            proc.terminate()
            proc.wait(10)
    mode = f"synchronous={synchronous}" if synchronous else "the sandbox's own synchronous mode"
    print(f"(machine: {os.cpu_count()} CPUs; sandbox in its own process, {mode}; client and receiver in this one)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each ingest measurement")
    parser.add_argument("--deliveries", type=int, default=3000, help="webhook deliveries to measure")
    parser.add_argument(
        "--synchronous",
        choices=["NORMAL", "FULL"],
        default=None,
        help="run the sandbox with this PRAGMA synchronous instead of its own",
    )
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.deliveries, args.synchronous))
