"""The HTTP transport's limits: names, sources and defaults, in one table read by the flags and the settings.

Kept free of imports so that the command line can list them without loading the settings machinery.
"""

# Limits: each (flag, variable, default, lowest, highest, integer?). Per caller (machine key) in team mode;
# per connection for every HTTP server.
HTTP_LIMITS: dict[str, tuple[str, str, float, float, float, bool]] = {
    "caller_calls": ("--caller-calls", "MESHES_MCP_CALLER_CALLS", 64, 1, 100_000, True),
    "caller_waits": ("--caller-waits", "MESHES_MCP_CALLER_WAITS", 16, 0, 100_000, True),
    "idle_tenants": ("--idle-tenants", "MESHES_MCP_IDLE_TENANTS", 256, 0, 1_000_000, True),
    "max_connections": ("--max-connections", "MESHES_MCP_MAX_CONNECTIONS", 1000, 1, 1_000_000, True),
    "header_timeout": ("--header-timeout", "MESHES_MCP_HEADER_TIMEOUT", 10.0, 0.1, 3600, False),
    "body_timeout": ("--body-timeout", "MESHES_MCP_BODY_TIMEOUT", 30.0, 0.1, 3600, False),
}
