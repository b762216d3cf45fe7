"""Crash consistency under repeated SIGKILL: ingest and deliver while the sandbox is killed `--restarts`
times at random moments, then check that every acknowledged event was delivered, that no delivery reached
the receiver more often than its recorded attempts (never beyond the budget of 5), and that the
database passes `PRAGMA integrity_check`.

    .venv/bin/python bench/bench_crash.py [--restarts 12] [--seed 7]

The scenario and its checks are those of tests/test_sandbox_crash.py (which runs 3 restarts in CI).
Figures are printed; a broken invariant stops the run with an AssertionError.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from meshes_mcp.sandbox.receiver import WebhookReceiver
from tests.test_sandbox_crash import check, crash_run


def main(restarts: int, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, WebhookReceiver() as receiver:
        started = time.monotonic()
        run = crash_run(Path(tmp), receiver, restarts, seed)
        figures = check(Path(tmp) / "data", receiver, run)
        elapsed = time.monotonic() - started
    print(
        f"survived {figures['restarts']} kill -9 restarts in {elapsed:.0f} s: integrity_check ok, "
        f"{figures['acknowledged']} acknowledged events all delivered ({figures['stored']} stored)"
    )
    print(
        f"{figures['receipts']} receipts for {figures['deliveries']} deliveries: "
        f"{figures['sent_twice_or_more']} sent more than once (at most {figures['max_sends']} times; budget 5), "
        f"{figures['interrupted_attempts']} attempts interrupted, {figures['unanswered_requests']} requests cut off"
    )
    print(f"(machine: {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--restarts", type=int, default=12, help="kill -9 and restart this many times")
    parser.add_argument("--seed", type=int, default=7, help="seed of the kill timing")
    args = parser.parse_args()
    main(args.restarts, args.seed)
