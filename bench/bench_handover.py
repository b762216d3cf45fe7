"""Hand-over latency between two sandboxes on one data directory (two editor windows): how long an event
ingested through the process that does not deliver waits before the delivering one sends it.

    .venv/bin/python bench/bench_handover.py [--events 40]

Sandbox A starts first and holds the delivery lock; B serves the API only. One webhook rule; events
are emitted one at a time (each waits for its receipt), through A and then through B. Printed: the
time from the 201 to the webhook's arrival at a local receiver, median and worst. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sandbox import auth, start_sandbox

from meshes_mcp.sandbox.receiver import WebhookReceiver


def latencies(api_url: str, info, receiver: WebhookReceiver, events: int, tag: str) -> list[float]:
    out: list[float] = []
    with httpx2.Client(base_url=api_url, timeout=10, trust_env=False) as client:
        for n in range(events):
            before = len(receiver.matching("/handover"))
            body = {"workspace": info.workspace_id, "event": "bench.handover", "payload": {"via": tag, "n": n}}
            response = client.post("/events", json=body, headers=auth(info))
            assert response.status_code == 201, response.text
            acknowledged = time.time()
            deadline = time.monotonic() + 10
            while len(receiver.matching("/handover")) <= before and time.monotonic() < deadline:
                time.sleep(0.0005)
            receipt = receiver.matching("/handover")[-1]
            out.append((receipt.received_at - acknowledged) * 1000)
            time.sleep(0.05)  # let each event find the engine idle, as a person clicking would
    return out


def main(events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, WebhookReceiver() as receiver:
        data_dir = Path(tmp)
        proc_a, info_a = start_sandbox(data_dir)
        (data_dir / "sandbox.json").unlink()
        proc_b, info_b = start_sandbox(data_dir)
        try:
            with httpx2.Client(base_url=info_a.api_url, timeout=10, trust_env=False) as client:
                hook = client.post(
                    "/connections",
                    headers=auth(info_a),
                    json={
                        "workspace": info_a.workspace_id,
                        "type": "webhook",
                        "name": "handover",
                        "metadata": {"url": f"{receiver.url}/handover"},
                    },
                )
                hook.raise_for_status()
                client.post(
                    "/rules",
                    headers=auth(info_a),
                    json={
                        "workspace": info_a.workspace_id,
                        "connection": hook.json()["connection"]["id"],
                        "event": "bench.handover",
                        "metadata": {"action": "send_webhook"},
                    },
                ).raise_for_status()
            for label, info in (("A (delivering)", info_a), ("B (API only)", info_b)):
                ms = latencies(info.api_url, info, receiver, events, label)
                print(
                    f"ingested through {label}: 201 → webhook received, median {statistics.median(ms):.1f} ms,"
                    f" worst {max(ms):.1f} ms ({events} events)"
                )
        finally:
            for proc in (proc_b, proc_a):
                proc.terminate()
                proc.wait(10)
    print(f"(machine: {os.cpu_count()} CPUs; each sandbox in its own process)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=40, help="events emitted through each sandbox")
    main(parser.parse_args().events)
