"""Sandbox memory under hostile clients: oversized bodies and floods of bogus publishable keys.

    .venv/bin/python bench/bench_sandbox_limits.py [--posts 4] [--megabytes 200] [--keys 3000]

The sandbox runs in its own process; this process sends, with only the publishable key:
- `--posts` concurrent chunked POST /events bodies of `--megabytes` each (the limit is 10 MiB);
- `--keys` requests each carrying a different bogus 40 KB publishable key.
The sandbox's resident memory (VmRSS, Linux) is printed before and after each; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).parent))
from bench_sandbox import start_sandbox

CHUNK = b"x" * (1024 * 1024)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def oversized_posts(api_url: str, key: str, posts: int, megabytes: int) -> list[str]:
    async def body():
        for _ in range(megabytes):
            yield CHUNK

    async def one(client: httpx2.AsyncClient) -> str:
        try:
            response = await client.post(
                "/events", content=body(), headers={"content-type": "application/json", "x-meshes-publishable-key": key}
            )
            return str(response.status_code)
        except httpx2.HTTPError as exc:  # the server answered 413 and closed while we were still sending
            return type(exc).__name__

    async with httpx2.AsyncClient(base_url=api_url, timeout=60) as client:
        return list(await asyncio.gather(*(one(client) for _ in range(posts))))


def bogus_keys(api_url: str, keys: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    with httpx2.Client(base_url=api_url, timeout=30) as client:
        for i in range(keys):
            key = f"mesh_pub_{i:08d}_" + "k" * 40_000
            status = client.post(
                "/events", json={"event": "a", "payload": {}}, headers={"x-meshes-publishable-key": key}
            ).status_code
            statuses[status] = statuses.get(status, 0) + 1
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=4)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--keys", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, info = start_sandbox(Path(tmp))
        try:
            before = rss_mb(proc.pid)
            start = time.perf_counter()
            outcomes = asyncio.run(oversized_posts(info.api_url, info.publishable_key, args.posts, args.megabytes))
            took = time.perf_counter() - start
            print(
                f"{args.posts} concurrent {args.megabytes} MB POSTs: {outcomes} in {took:.1f} s;"
                f" sandbox RSS {before:.0f} → {rss_mb(proc.pid):.0f} MB"
            )
            before = rss_mb(proc.pid)
            start = time.perf_counter()
            statuses = bogus_keys(info.api_url, args.keys)
            print(
                f"{args.keys} bogus 40 KB publishable keys: {statuses} in {time.perf_counter() - start:.1f} s;"
                f" sandbox RSS {before:.0f} → {rss_mb(proc.pid):.0f} MB"
            )
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
