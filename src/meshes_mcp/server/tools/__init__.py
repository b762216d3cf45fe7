"""One module per toolset; each lists its tools in `TOOLS` (see `meshes_mcp.server.registry`)."""
