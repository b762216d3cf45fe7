"""Helpers shared by the end-to-end tests: settings for a sandbox, and reading tool results."""

from __future__ import annotations

import json
from typing import Any

from meshes_mcp.config import Settings


def settings_for(info: Any, **extra: Any) -> Settings:
    """Settings pointing at a running sandbox, every toolset on, its demo workspace as the default."""
    values = {
        "api_url": info.api_url,
        "access_key": info.access_key,
        "secret_key": info.secret_key,
        "org_id": info.organization_id,
        "workspace_id": info.workspace_id,
        "toolsets": "all",
        **extra,
    }
    return Settings(**values)


def ok(result: Any) -> dict[str, Any]:
    """A successful result: compact JSON text carrying exactly the structured content."""
    assert not result.is_error, result.content[0].text
    text = result.content[0].text
    assert text == json.dumps(result.structured_content, separators=(",", ":"), ensure_ascii=False)
    assert not has_null(result.structured_content), text  # nulls cost tokens and say nothing
    return result.structured_content


def has_null(value: Any) -> bool:
    if isinstance(value, dict):
        return any(v is None or has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(v is None or has_null(v) for v in value)
    return value is None


def refused(result: Any) -> str:
    """A tool error the model can read: no structured content, no traceback."""
    assert result.is_error, result.content[0].text
    assert result.structured_content is None
    text = result.content[0].text
    assert "Traceback" not in text
    return text
