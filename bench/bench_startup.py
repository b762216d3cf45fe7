"""Cold start of the stdio server as a client sees it: process start → `initialize` answered →
`tools/list` answered → a request only the SDK answers, and the resident memory then.

Spawns `python -m meshes_mcp` (and `--sandbox` on a fresh data dir), writes `initialize`, then
`notifications/initialized` and `tools/list`, and times each answer (the stdio front answers these
while the SDK loads); then a `tools/list` with a progress token, which the front leaves to the SDK, so
its answer times the SDK's import and our build. Prints medians of N runs.

Our share is measured two ways, each against the SDK in the same run:
- the whole path: a bare SDK server (`MCPServer` with one tool, on the SDK's own stdio transport,
  importing the same SDK modules) is timed the same way, interleaved with ours; our share is the
  difference to the SDK answering (imports, building the server, listing), the SDK's is the bare
  server's time minus Python's own start;
- imports alone, in one process with `-X importtime`: the SDK modules the server uses are imported first
  (with everything they pull in: pydantic, anyio, ...), then the server runs as `python -m meshes_mcp`
  would; every import after that point is ours (our modules, and any library only we need).

Bytecode is written and used as after `pip install` (which compiles it): a warm-up run comes first, and
PYTHONDONTWRITEBYTECODE is dropped from the children's environment, else every run would time Python
compiling our sources.

    python bench/bench_startup.py [--runs 10]

Side by side with any other stdio MCP server (`--peer`), e.g. the official one built by the peers'
build script: both are pointed at one embedded sandbox (MESHES_ACCESS_KEY, MESHES_SECRET_KEY,
MESHES_ORG_ID, MESHES_API_URL), spawned alternately pair by pair (which goes first alternates too), and
timed from spawn to `initialize` answered, to `tools/list` answered, to the first `tools/call` answered,
and from stdin closed to the process gone; with the CPU time the process used and its peak RSS.
Prints each side's medians and the median of the pairwise ratios (ours / peer: below 1 is faster).

    python bench/bench_startup.py --peer 'node DIR/meshes-mcp-server/dist/index.js' \
        --peer-call meshes_list_workspaces [--pairs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

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
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
# The front answers plain lists; one with a progress token is the SDK's.
SDK_TOOLS_LIST = {"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {"_meta": {"progressToken": 1}}}


def child_env() -> dict[str, str]:
    """The environment of a server under test: no MESHES_ settings, bytecode as after an install."""
    drop = ("MESHES_", "PYTHONDONTWRITEBYTECODE")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def resident_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Start(NamedTuple):
    initialize_ms: float
    tools_list_ms: float
    sdk_ms: float
    tools: int
    rss_mb: float | None


def send(proc: subprocess.Popen[bytes], message: dict[str, object]) -> None:
    assert proc.stdin
    proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()


def answer(proc: subprocess.Popen[bytes]) -> dict[str, object]:
    assert proc.stdout
    line = proc.stdout.readline()
    if b'"result"' not in line:
        raise RuntimeError(f"unexpected answer: {line[:200]!r}")
    return json.loads(line)


def handshake_and_list(proc: subprocess.Popen[bytes], started: float) -> tuple[float, float, dict[str, object]]:
    """`initialize`, then `notifications/initialized` and `tools/list`: seconds from `started` to each
    answer, and the tool list."""
    send(proc, INITIALIZE)
    answer(proc)
    initialized = time.perf_counter() - started
    send(proc, INITIALIZED)
    send(proc, TOOLS_LIST)
    listed = answer(proc)
    return initialized, time.perf_counter() - started, listed


def one_run(command: list[str]) -> Start:
    """Start the server, ask what a client asks first, and time each answer from the process start."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=child_env()
    )
    try:
        initialized, tools_listed, listed = handshake_and_list(proc, started)
        tools = len(listed["result"]["tools"])  # type: ignore[index]
        send(proc, SDK_TOOLS_LIST)
        answer(proc)
        served = time.perf_counter() - started
        return Start(initialized * 1000, tools_listed * 1000, served * 1000, tools, resident_mb(proc.pid))
    finally:
        assert proc.stdin
        proc.stdin.close()
        proc.terminate()
        proc.wait(timeout=10)


def summary(label: str, starts: list[Start]) -> str:
    init = [s.initialize_ms for s in starts]
    listed = [s.tools_list_ms for s in starts]
    memory = [s.rss_mb for s in starts if s.rss_mb]
    mem = f", RSS {statistics.median(memory):.0f} MB" if memory else ""
    return (
        f"{label}: initialize median {statistics.median(init):.0f} ms (min {min(init):.0f}), "
        f"tools/list ({starts[0].tools} tools) median {statistics.median(listed):.0f} ms "
        f"(min {min(listed):.0f}), the SDK serving median {statistics.median(s.sdk_ms for s in starts):.0f} ms "
        f"over {len(starts)} runs{mem}"
    )


def measure(label: str, extra_for_run, runs: int) -> None:
    one_run([sys.executable, "-m", "meshes_mcp", *extra_for_run("warm-up")])  # writes bytecode, untimed
    print(summary(label, [one_run([sys.executable, "-m", "meshes_mcp", *extra_for_run(i)]) for i in range(runs)]))


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
    "anyio._backends._asyncio",  # anyio.run imports its backend (sockets, TLS streams) when the server starts
)
# The yardstick: the SDK alone serving one tool, on its own stdio transport.
BARE_SDK_SERVER = f"""
{"; ".join(f"import {name}" for name in SDK_MODULES)}
from mcp.server.mcpserver import MCPServer
server = MCPServer("bare")

@server.tool()
def ping() -> str:
    \"\"\"Answer pong.\"\"\"
    return "pong"

server.run()
"""
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
    """(SDK ms, our ms, our top-level imports by cost) for one cold start to the SDK serving."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", SPLIT_PRELUDE],
        input=(json.dumps(INITIALIZE) + "\n" + json.dumps(SDK_TOOLS_LIST) + "\n").encode(),
        capture_output=True,
        env=child_env(),
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


def measure_path_split(runs: int) -> None:
    """Ours against the bare SDK server, interleaved run by run so both see the same machine."""
    ours_cmd = [sys.executable, "-m", "meshes_mcp"]
    bare_cmd = [sys.executable, "-c", BARE_SDK_SERVER]
    one_run(ours_cmd), one_run(bare_cmd)  # warm-up: bytecode written, untimed
    ours, bare = [], []
    for _ in range(runs):
        ours.append(one_run(ours_cmd))
        bare.append(one_run(bare_cmd))
    python_ms = bare_python_ms(runs)
    ours_ms = statistics.median(s.sdk_ms for s in ours)
    bare_ms = statistics.median(s.sdk_ms for s in bare)
    print(summary("stdio, no credentials", ours))
    print(summary("bare SDK server (yardstick)", bare))
    print(f"python itself (-c pass): median {python_ms:.0f} ms")
    print(
        f"start to the SDK answering: SDK {bare_ms - python_ms:.0f} ms (bare server minus python), "
        f"ours {ours_ms - bare_ms:.0f} ms ({(ours_ms - bare_ms) / (bare_ms - python_ms):.1%} of the SDK's)"
    )
    # On a loaded machine the medians wander; the fastest runs are the least disturbed ones.
    ours_min, bare_min = min(s.sdk_ms for s in ours), min(s.sdk_ms for s in bare)
    print(
        f"  by the fastest runs: SDK {bare_min - python_ms:.0f} ms, ours {ours_min - bare_min:.0f} ms "
        f"({(ours_min - bare_min) / (bare_min - python_ms):.1%} of the SDK's)"
    )


def measure_split(runs: int) -> None:
    import_split()  # warm-up: bytecode written, untimed
    sdk, ours, biggest = [], [], []
    for _ in range(runs):
        sdk_ms, our_ms, top = import_split()
        sdk.append(sdk_ms)
        ours.append(our_ms)
        biggest = top
    print(f"import time, MCP SDK (and what it pulls in): median {statistics.median(sdk):.0f} ms")
    print(f"import time, ours (everything imported after the SDK): median {statistics.median(ours):.0f} ms")
    print("  our biggest top-level imports (last run): " + ", ".join(f"{n} {ms:.1f} ms" for ms, n in biggest[:5]))


class Session(NamedTuple):
    """One server's start-up as a client sees it, in ms from spawn (exit: from stdin closed)."""

    initialize_ms: float
    tools_list_ms: float
    tools_call_ms: float
    exit_ms: float
    cpu_ms: float
    peak_rss_mb: float


STAGES = ("initialize_ms", "tools_list_ms", "tools_call_ms", "exit_ms", "cpu_ms", "peak_rss_mb")


def one_session(command: list[str], env: dict[str, str], tool: str) -> Session:
    """Spawn, handshake, list the tools, call `tool` with no arguments, close stdin, wait for the exit."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        initialized, listed, _ = handshake_and_list(proc, started)
        send(proc, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
        called_answer = answer(proc)
        called = time.perf_counter() - started
        if called_answer["result"].get("isError"):  # type: ignore[union-attr]
            raise RuntimeError(f"{tool} failed: {json.dumps(called_answer)[:300]}")
        assert proc.stdin
        closing = time.perf_counter()
        proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own CPU time and peak RSS
        exited = time.perf_counter() - closing
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    return Session(
        initialized * 1000,
        listed * 1000,
        called * 1000,
        exited * 1000,
        (usage.ru_utime + usage.ru_stime) * 1000,
        usage.ru_maxrss / 1024,
    )


def side_by_side(peer: list[str], peer_call: str, pairs: int) -> None:
    from meshes_mcp.sandbox import EmbeddedSandbox

    ours = [sys.executable, "-m", "meshes_mcp"]
    with tempfile.TemporaryDirectory() as tmp, EmbeddedSandbox(Path(tmp)) as info:
        env = child_env() | {
            "MESHES_ACCESS_KEY": info.access_key,
            "MESHES_SECRET_KEY": info.secret_key,
            "MESHES_ORG_ID": info.organization_id,
            "MESHES_API_URL": info.api_url,
        }
        one_session(ours, env, "list_workspaces"), one_session(peer, env, peer_call)  # warm-up, untimed
        mine: list[Session] = []
        theirs: list[Session] = []
        for pair in range(pairs):
            runs = [(ours, "list_workspaces", mine), (peer, peer_call, theirs)]
            for command, tool, into in runs if pair % 2 == 0 else runs[::-1]:
                into.append(one_session(command, env, tool))
    print(f"side by side, {pairs} pairs alternated; load average {os.getloadavg()[0]:.2f} at the end")
    print(f"  ours: {shlex.join(ours)}\n  peer: {shlex.join(peer)}")
    print(f"  {'':<16}{'ours':>10}{'peer':>10}{'ratio (median of pairs)':>26}")
    for stage in STAGES:
        a = [getattr(s, stage) for s in mine]
        b = [getattr(s, stage) for s in theirs]
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
        print(f"  {stage:<16}{statistics.median(a):>10.1f}{statistics.median(b):>10.1f}{ratio:>26.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--peer", help="another stdio MCP server's command, to run side by side")
    parser.add_argument("--peer-call", default="list_workspaces", help="the peer's tool to call first")
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {os.cpu_count()} cores")
    if args.peer:
        side_by_side(shlex.split(args.peer), args.peer_call, args.pairs)
        return
    measure_path_split(args.runs)
    measure_split(args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        measure(
            "stdio --sandbox (fresh data dir each run)",
            lambda i: ["--sandbox", "--data-dir", str(Path(tmp) / str(i))],
            args.runs,
        )


if __name__ == "__main__":
    main()
