"""`python -m meshes_mcp.sandbox --data-dir DIR [--port 8787]`: serve the sandbox alone."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meshes_mcp.sandbox.server import run_sandbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m meshes_mcp.sandbox", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True, help="where the SQLite store and sandbox.json live")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787, help="0 picks a free port (see sandbox.json)")
    parser.add_argument("--retry-base", type=float, default=None, help="first retry delay in seconds (default 2)")
    parser.add_argument("--max-attempts", type=int, default=None, help="attempts per delivery (default 5)")
    parser.add_argument("--scenario", choices=("incident",), default=None, help="add practice history once")
    args = parser.parse_args(argv)
    try:
        run_sandbox(
            args.host,
            args.port,
            args.data_dir,
            retry_base=args.retry_base,
            max_attempts=args.max_attempts,
            scenario=args.scenario,
        )
    except ValueError as exc:  # a data directory that cannot be written, a bad scenario: one line
        print(f"python -m meshes_mcp.sandbox: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
