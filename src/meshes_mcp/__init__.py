"""meshes-mcp: an MCP server for the Meshes outbound integration platform."""

__version__ = "0.1.0"
