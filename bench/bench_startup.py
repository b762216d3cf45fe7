"""Cold start of the stdio server to a completed `initialize`, and its resident memory.

Spawns `python -m meshes_mcp` (and `--sandbox` on a fresh data dir), writes one `initialize`
request on stdin and times until the response line arrives. Prints the median of N runs.

Then splits the import time of that same start between the MCP SDK and us, measured in one process
with `-X importtime`: the SDK modules the server uses are imported first (with everything they pull
in: pydantic, anyio, ...), then the server runs as `python -m meshes_mcp` would; every import after
that point is our share (our modules, and any library only we need). Medians of N runs.

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


# The SDK modules the stdio server imports; anything missing here would be counted as ours (overstating it).
SDK_MODULES = (
    "mcp.server.mcpserver",
    "mcp.server.mcpserver.exceptions",
    "mcp.server.mcpserver.resolve",
    "mcp.server.mcpserver.tools",
    "mcp.server.elicitation",
    "mcp.server.stdio",
    "mcp.shared.message",
    "mcp_types",
)
SDK_MARK, OURS_MARK = "-- sdk imports --", "-- our imports --"
SPLIT_PRELUDE = f"""
import sys
sys.stderr.write({SDK_MARK!r} + "\\n"); sys.stderr.flush()
{"; ".join(f"import {name}" for name in SDK_MODULES)}
sys.stderr.write({OURS_MARK!r} + "\\n"); sys.stderr.flush()
import runpy
sys.argv = ["meshes_mcp"]
runpy.run_module("meshes_mcp", run_name="__main__", alter_sys=True)
"""


def import_split() -> tuple[float, float, list[tuple[float, str]]]:
    """(SDK ms, our ms, our top-level imports by cost) for one cold start to `initialize`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHES_")}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", SPLIT_PRELUDE],
        input=(json.dumps(INITIALIZE) + "\n").encode(),
        capture_output=True,
        env=env,
        timeout=60,
    )
    if b'"result"' not in done.stdout:
        raise RuntimeError(f"unexpected answer: {done.stdout[:200]!r} {done.stderr[-500:]!r}")
    section, totals, ours = None, {SDK_MARK: 0.0, OURS_MARK: 0.0}, []
    for line in done.stderr.decode(errors="replace").splitlines():
        if line in totals:
            section = line
        elif section and line.startswith("import time:") and "|" in line and "self [us]" not in line:
            _, cumulative, name = line.split(":", 1)[1].split("|")
            if not name.startswith("  "):  # depth 0: its cumulative time covers everything nested in it
                totals[section] += int(cumulative) / 1000
                if section == OURS_MARK:
                    ours.append((int(cumulative) / 1000, name.strip()))
    return totals[SDK_MARK], totals[OURS_MARK], sorted(ours, reverse=True)


def bare_python_ms(runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure_split(runs: int) -> None:
    sdk, ours, biggest = [], [], []
    for _ in range(runs):
        sdk_ms, our_ms, top = import_split()
        sdk.append(sdk_ms)
        ours.append(our_ms)
        biggest = top
    print(f"python itself (-c pass): median {bare_python_ms(runs):.0f} ms")
    print(f"import time, MCP SDK (and what it pulls in): median {statistics.median(sdk):.0f} ms")
    print(f"import time, ours (everything imported after the SDK): median {statistics.median(ours):.0f} ms")
    print("  our biggest top-level imports (last run): " + ", ".join(f"{n} {ms:.1f} ms" for ms, n in biggest[:5]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {os.cpu_count()} cores")
    measure("stdio, no credentials", lambda i: [], args.runs)
    measure_split(args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        measure(
            "stdio --sandbox (fresh data dir each run)",
            lambda i: ["--sandbox", "--data-dir", str(Path(tmp) / str(i))],
            args.runs,
        )


if __name__ == "__main__":
    main()
