#!/usr/bin/env bash
# Add meshes-mcp to Claude Code. Pick one.

# 1. No account needed: the embedded local sandbox.
claude mcp add meshes -- uvx meshes-mcp --sandbox

# 2. Your Meshes organisation (machine key from the dashboard, Profile > API Keys).
claude mcp add meshes \
  -e MESHES_ACCESS_KEY="$MESHES_ACCESS_KEY" \
  -e MESHES_SECRET_KEY="$MESHES_SECRET_KEY" \
  -e MESHES_ORG_ID="$MESHES_ORG_ID" \
  -e MESHES_WORKSPACE_ID="$MESHES_WORKSPACE_ID" \
  -- uvx meshes-mcp

# 3. From a clone, until the package is published (run in the clone, after
#    `python3 -m venv .venv && .venv/bin/pip install -e .`): the clone's executable, by absolute path.
claude mcp add meshes -- "$PWD/.venv/bin/meshes-mcp" --sandbox
