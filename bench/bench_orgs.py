"""A flood of `POST /sandbox/organizations` on a fresh sandbox: `--requests` requests from `--threads`
threads over keep-alive connections. Prints how many were created and refused (the sandbox keeps at most
100 organisations), the wall time and the request rate, and the latency of creating one.

    .venv/bin/python bench/bench_orgs.py [--requests 1000] [--threads 8]

The same flood, smaller, is tests/test_sandbox_orgs.py::test_a_flood_of_requests_stops_at_the_limit_exactly.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from meshes_mcp.sandbox import EmbeddedSandbox
from tests.test_sandbox_orgs import add_org, organization_count


def main(requests: int, threads: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedSandbox(Path(tmp)) as info:
        client = httpx2.Client(trust_env=False, timeout=30, limits=httpx2.Limits(max_connections=threads))
        latencies: list[float] = []

        def one(_: int) -> int:
            started = time.perf_counter()
            status = add_org(info, client).status_code
            if status == 201:
                latencies.append(time.perf_counter() - started)
            return status

        with client, concurrent.futures.ThreadPoolExecutor(threads) as pool:
            started = time.perf_counter()
            codes = collections.Counter(pool.map(one, range(requests)))
            elapsed = time.perf_counter() - started
        stored = organization_count(Path(tmp))
    print(f"{requests} requests from {threads} threads in {elapsed:.2f} s ({requests / elapsed:.0f}/s): {dict(codes)}")
    print(f"organisations stored: {stored}; median creation {statistics.median(latencies) * 1000:.1f} ms under load")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    main(args.requests, args.threads)
