#!/usr/bin/env bash
# Serve meshes-mcp over streamable HTTP, then point a client at it. Pick one.

# 1. This machine only (127.0.0.1): no token needed; Host/Origin are still checked.
meshes-mcp --sandbox --transport http --port 8000 &
claude mcp add --transport http meshes http://127.0.0.1:8000/mcp

# 2. Reachable from other machines: a bearer token is required (the server refuses to start without one),
#    and the name clients use must be allowed (loopback names always are).
export MESHES_MCP_HTTP_TOKEN="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
export MESHES_MCP_ALLOWED_HOSTS="mcp.internal.example.com:*"
meshes-mcp --transport http --host 0.0.0.0 --port 8000 &
claude mcp add --transport http meshes http://mcp.internal.example.com:8000/mcp \
  --header "Authorization: Bearer $MESHES_MCP_HTTP_TOKEN"

# Check what the server will accept (the token is shown masked):
meshes-mcp doctor --transport http --host 0.0.0.0
