"""What redaction by value costs: scrubbing a large result while many connection secrets are known.

Every string of every result passes through the redactor; each learned secret adds ~a dozen quoted forms
(repr, JSON, URL-encoded...) matched by their first and last characters. This measures one
list_rule_attempts-sized result (200 attempts) scrubbed with 0 to 1000 learned secrets.

    python bench/bench_redaction.py [--attempts 200] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

from meshes_mcp.server.render import Redactor


def attempts_result(count: int) -> dict:
    return {
        "attempts": [
            {
                "id": f"9b1c0a2e-0000-4000-8000-{i:012d}",
                "outcome_code": "network_error",
                "attempt_number": i,
                "message": "could not reach hooks.example.com:443: ConnectError All connection attempts failed",
                "started_at": "2026-11-25T13:27:48.077Z",
            }
            for i in range(count)
        ],
        "count": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attempts", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    data = attempts_result(args.attempts)
    for secrets in (0, 10, 100, 1000):
        redactor = Redactor()
        for n in range(secrets):
            redactor.learn_metadata({"custom_headers": {"X-Api-Key": f"key_live_{n:06d}_Zx81Qp4Lm2\r\n"}})
        redactor.data(data)  # compile the matchers once, as the first result after learning does
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            redactor.data(data)
            times.append(time.perf_counter() - start)
        per_result = statistics.median(times) * 1000
        print(f"{secrets:5d} secrets learned: {per_result:7.2f} ms per {args.attempts}-attempt result")


if __name__ == "__main__":
    main()
