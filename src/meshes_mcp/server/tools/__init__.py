"""One module per toolset; each exposes `register(box)`."""

from meshes_mcp.server.tools import connections, deliveries, events, integrations, rules, sessions, workspaces

TOOLSET_MODULES = (integrations, events, connections, rules, deliveries, workspaces, sessions)
