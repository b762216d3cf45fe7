"""The sandbox under a held write lock and a slow receiver: how long its API stalls, and whether work completes.

    .venv/bin/python bench/bench_sandbox_faults.py [--hold 8] [--slow 80]

1. This process (another one to the sandbox) holds its write lock for --hold seconds while a delivery is in flight and
   a write request waits: the slowest of the GET /healthz answers polled every 50 ms during the hold,
   how the write was answered, and whether the delivery completed once the lock was free (attempts
   recorded, requests the receiver saw).
2. --slow events to a receiver that answers 200 and then sends one body byte every 2 s, then one event
   to another destination: seconds until that one completes.

The sandbox runs in its own process (`python -m meshes_mcp.sandbox`); figures are printed, nothing asserted.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import httpx2
from bench_sandbox import auth, start_sandbox

from meshes_mcp.sandbox import SandboxInfo
from meshes_mcp.sandbox.receiver import WebhookReceiver


def rule(http: httpx2.Client, info: SandboxInfo, url: str, event: str) -> None:
    ws = info.workspace_id
    hook = http.post(
        "/connections",
        headers=auth(info),
        json={"workspace": ws, "type": "webhook", "name": event, "metadata": {"url": url}},
    )
    connection = hook.json()["connection"]["id"]
    http.post(
        "/rules",
        headers=auth(info),
        json={"workspace": ws, "connection": connection, "event": event, "metadata": {"action": "send_webhook"}},
    ).raise_for_status()


def emit(http: httpx2.Client, info: SandboxInfo, event: str) -> httpx2.Response:
    return http.post(
        "/events", headers=auth(info), json={"workspace": info.workspace_id, "event": event, "payload": {}}
    )


def status(http: httpx2.Client, info: SandboxInfo, event_id: str) -> dict:
    return http.get(f"/events/{event_id}", headers=auth(info)).json()


def held_lock(data_dir: Path, hold: float) -> None:
    proc, info = start_sandbox(data_dir)
    base = info.api_url.removesuffix("/api/v1")
    try:
        with WebhookReceiver() as receiver, httpx2.Client(base_url=info.api_url, timeout=60) as http:
            rule(http, info, f"{receiver.url}/slow/1", "held")
            event_id = emit(http, info, "held").json()["event"]["id"]
            while not receiver.matching("/slow"):
                time.sleep(0.01)
            # This process is "another process" to the sandbox: hold its write lock from here.
            holder = sqlite3.connect(data_dir / "sandbox.db", isolation_level=None, check_same_thread=False)
            holder.execute("BEGIN IMMEDIATE")
            release = threading.Timer(hold, holder.execute, ("ROLLBACK",))
            release.start()
            answer: dict[str, httpx2.Response] = {}
            writer = threading.Thread(target=lambda: answer.setdefault("write", emit(http, info, "held")))
            writer.start()
            slowest = 0.0
            while release.is_alive():
                started = time.perf_counter()
                httpx2.get(f"{base}/healthz", timeout=60)
                slowest = max(slowest, time.perf_counter() - started)
                time.sleep(0.05)
            writer.join()
            deadline = time.monotonic() + 30
            while status(http, info, event_id)["status"] != "completed" and time.monotonic() < deadline:
                time.sleep(0.05)
            final = status(http, info, event_id)
            write = answer["write"]
            print(f"lock held {hold:g} s: slowest /healthz {slowest * 1000:.0f} ms")
            print(
                f"  write during the hold: HTTP {write.status_code} {write.json().get('error', {}).get('message', '')}"
            )
            print(
                f"  delivery in flight: {final['status']}, {final['rule_events'][0]['attempt_count']} attempt(s), "
                f"{len(receiver.matching('/slow'))} request(s) at the receiver"
            )
    finally:
        proc.terminate()
        proc.wait(10)


def slow_receiver(data_dir: Path, slow: int) -> None:
    proc, info = start_sandbox(data_dir)
    try:
        with WebhookReceiver() as receiver, httpx2.Client(base_url=info.api_url, timeout=60) as http:
            rule(http, info, f"{receiver.url}/trickle/2", "slow")
            rule(http, info, f"{receiver.url}/fast", "fast")
            for _ in range(slow):
                emit(http, info, "slow")
            while len(receiver.matching("/trickle")) < min(slow, 16):
                time.sleep(0.01)
            started = time.perf_counter()
            event_id = emit(http, info, "fast").json()["event"]["id"]
            deadline = time.monotonic() + 30
            while status(http, info, event_id)["status"] != "completed" and time.monotonic() < deadline:
                time.sleep(0.02)
            done = status(http, info, event_id)["status"]
            print(
                f"{slow} events to a trickling receiver, then one elsewhere: {done} after "
                f"{time.perf_counter() - started:.2f} s ({len(receiver.matching('/trickle'))} trickling requests open)"
            )
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hold", type=float, default=8.0, help="seconds the other process holds the write lock")
    parser.add_argument("--slow", type=int, default=80, help="events sent to the trickling receiver")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        held_lock(Path(tmp) / "lock", args.hold)
        slow_receiver(Path(tmp) / "slow", args.slow)


if __name__ == "__main__":
    main()
