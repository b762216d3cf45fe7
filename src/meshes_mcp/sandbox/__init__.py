"""An embedded, local implementation of the Meshes REST API (no account needed).

`SandboxInfo` is cheap to import; `run_sandbox` and `EmbeddedSandbox` load the server stack
(Starlette, uvicorn, SQLite) on first use, so importing `meshes_mcp` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshes_mcp.sandbox.info import SandboxInfo

if TYPE_CHECKING:
    from meshes_mcp.sandbox.server import EmbeddedSandbox, run_sandbox

__all__ = ["EmbeddedSandbox", "SandboxInfo", "run_sandbox"]


def __getattr__(name: str) -> Any:
    if name in ("EmbeddedSandbox", "run_sandbox"):
        from meshes_mcp.sandbox import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
