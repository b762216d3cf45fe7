"""Cold start of the stdio server to a completed `initialize`, and its resident memory.

Spawns `python -m meshes_mcp` (and `--sandbox` on a fresh data dir), writes one `initialize`
request on stdin and times until the response line arrives. Prints the median of N runs.

    python bench/bench_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    },
}


def resident_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def one_run(extra: list[str]) -> tuple[float, float | None]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHES_")}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshes_mcp", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write((json.dumps(INITIALIZE) + "\n").encode())
    proc.stdin.flush()
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - started
    if b'"result"' not in line:
        raise RuntimeError(f"unexpected answer: {line[:200]!r}")
    rss = resident_mb(proc.pid)
    proc.stdin.close()
    proc.terminate()
    proc.wait(timeout=10)
    return elapsed, rss


def measure(label: str, extra_for_run, runs: int) -> None:
    times, memory = [], []
    for i in range(runs):
        elapsed, rss = one_run(extra_for_run(i))
        times.append(elapsed)
        if rss:
            memory.append(rss)
    mem = f", RSS after initialize {statistics.median(memory):.0f} MB" if memory else ""
    print(
        f"{label}: median {statistics.median(times) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms "
        f"over {runs} runs{mem}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {os.cpu_count()} cores")
    measure("stdio, no credentials", lambda i: [], args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        measure(
            "stdio --sandbox (fresh data dir each run)",
            lambda i: ["--sandbox", "--data-dir", str(Path(tmp) / str(i))],
            args.runs,
        )


if __name__ == "__main__":
    main()
