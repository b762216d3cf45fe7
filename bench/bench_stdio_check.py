"""What checking each stdin line costs: `judge_line` (our pre-check, which runs the SDK's own message
adapter once more) next to the SDK's parse alone, for a small request and a 10,000-event emit_events call.

    python bench/bench_stdio_check.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import time

import mcp_types as types

from meshes_mcp.server.stdio import judge_line


def line_for(arguments: dict) -> bytes:
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x", "arguments": arguments}}
    return json.dumps(message).encode()


def best_of(repeat: int, fn) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    events = [
        {"event": "user.signup", "payload": {"email": f"user{i}@example.com", "plan": "pro"}} for i in range(10_000)
    ]
    for label, raw in [
        ("small request", line_for({"connection_id": "c"})),
        ("emit_events x10,000", line_for({"events": events})),
    ]:
        text = raw.decode()
        sdk = best_of(args.repeat, lambda text=text: types.jsonrpc_message_adapter.validate_json(text, by_name=False))
        ours = best_of(args.repeat, lambda raw=raw: judge_line(raw))
        print(f"{label} ({len(raw):,} bytes): SDK parse {sdk * 1e3:.3f} ms, our check {ours * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
