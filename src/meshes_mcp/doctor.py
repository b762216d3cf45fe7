"""`meshes-mcp doctor`: where the configuration comes from, masked, and whether the API answers."""

from __future__ import annotations

import sys
from typing import Any

import anyio

from meshes_mcp.config import CREDENTIALS_HELP


def run_doctor(settings: Any, http: Any = None) -> int:
    """`http`: the HTTP transport's settings, or the one-line reason they are invalid (a str)."""

    def out(line: str) -> None:
        print(line, file=sys.stderr)  # stdout stays clean even here: the same binary serves stdio

    for key, value in settings.describe().items():
        out(f"{key:16} {value}")
    if isinstance(http, str):
        out(f"\nHTTP transport would not start: {http}")
        return 1
    if http is not None:
        for key, value in http.describe().items():
            out(f"{key:16} {value}")
    problems = settings.credential_problems()
    if problems:
        out("\n" + "\n".join(problems))
        return 1
    if http is not None and http.per_request_credentials:
        # The server holds no keys: all it can check is that the API answers.
        return anyio.run(_api_answers, settings, out)
    if settings.machine_key() is None:
        out(f"\nmissing: {', '.join(settings.missing_credentials())}. {CREDENTIALS_HELP}")
        return 1
    return anyio.run(_reach_api, settings, out)


async def _reach_api(settings: Any, out: Any) -> int:
    from meshes_mcp.api.client import MeshesClient
    from meshes_mcp.api.errors import MeshesError

    async with MeshesClient.from_settings(settings) as client:
        try:
            workspaces = await client.list_workspaces()
        except MeshesError as exc:
            out(f"\nAPI check failed: {type(exc).__name__}: {exc}")
            return 1
    out(f"\nAPI reachable: {workspaces.count} workspace(s) visible to this machine key.")
    return 0


async def _api_answers(settings: Any, out: Any) -> int:
    from meshes_mcp.server.health import Readiness

    problem = await Readiness(settings.base_url).problem()
    if problem is not None:
        out(f"\nAPI check failed: {problem}")
        return 1
    out("\nAPI reachable; each request brings its own Meshes keys (X-Meshes-* headers).")
    return 0
