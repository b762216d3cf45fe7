"""How long a 2026-07-28 client may keep what it read (`ttlMs`/`cacheScope`, SEP-2549).

The tool, prompt and resource lists (and what `server/discover` says) are built once from the settings
and never change while the process runs: a client may keep them for an hour (a restart with other
toolsets is the only change, and an hour bounds how long a client shows the old list). Prompts, resource
templates and `server/discover` are the same for every caller: `public`. tools/list and resources/list
are not: a client that declares MCP Apps is also listed the incident view's tool and document, and a
shared cache is not bound to key its entries by what each request declared, so they stay `private`. The
integration catalogue is refreshed from the API at most once per process, on its first read, with the
caller's credentials: after that read it is fixed too, but it stays `private` (per caller). Every other
read (events, a workspace's history) is live data: immediately stale, and private.
"""

from __future__ import annotations

from typing import Any

from mcp.server import CacheHint
from mcp.server.caching import CacheableMethod

LIST_TTL_MS = 3_600_000
CATALOG_TTL_MS = LIST_TTL_MS
CATALOG_URI_PREFIX = "meshes://integrations"

LIST_HINTS: dict[CacheableMethod, CacheHint] = {
    "server/discover": CacheHint(ttl_ms=LIST_TTL_MS, scope="public"),  # capabilities and instructions: fixed too
    "tools/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="private"),  # differs with the client's MCP Apps support
    "prompts/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="public"),
    "resources/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="private"),  # so does this one
    "resources/templates/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="public"),
    "resources/read": CacheHint(ttl_ms=0, scope="private"),
}


def read_hint(uri: str, result: Any) -> Any:
    """A resources/read result with the catalogue's freshness; other reads keep the immediately-stale default."""
    catalogue = uri == CATALOG_URI_PREFIX or uri.startswith(CATALOG_URI_PREFIX + "/")
    if catalogue and hasattr(result, "model_copy"):  # not an input-required interim result
        return result.model_copy(update={"ttl_ms": CATALOG_TTL_MS, "cache_scope": "private"})
    return result
