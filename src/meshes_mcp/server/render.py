"""Compact, redacted results for agents.

Every byte of a result is paid for by the agent, so results are compact JSON with no nulls, and
the same dict is both the structured content and the text (clients feed the model one or the
other). Secrets never leave: credential fields are masked by name and by the integration's
password-type fields, configured secrets are scrubbed by value, and anything shaped like a JWT is
replaced wherever it appears, error messages included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from mcp_types import CallToolResult, TextContent

REDACTED = "[redacted]"
# Key names that always hold a credential, whatever the integration says.
SECRET_KEY_NAME = re.compile(
    r"(pass(word)?|secret|token|api_?key|apikey|private_?key|credential|authorization|auth_header_value)$", re.I
)
JWT_SHAPE = re.compile(r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{10,}")
LAUNCH_TOKEN_IN_URL = re.compile(r"([?&](launch|token|access_token)=)[^&#\s]+")
URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
# Credentials quoted in text, e.g. a captured response that echoes the request's Authorization header.
AUTH_CREDENTIAL = re.compile(r"\b(Basic|Bearer)(\s+)[A-Za-z0-9._~+/=-]{6,}", re.I)
# Static headers a webhook sends (API keys more often than not): names shown, values masked.
HEADER_MAP_KEYS = frozenset({"custom_headers"})


class Redactor:
    """Scrubs secrets from everything the server shows: results, resources and error messages."""

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        # Short values would scrub ordinary words; real keys are long.
        self._values = sorted({v for v in secret_values if v and len(v) >= 8}, key=len, reverse=True)

    def add(self, value: str | None) -> None:
        if value and len(value) >= 8 and value not in self._values:
            self._values.append(value)
            self._values.sort(key=len, reverse=True)

    def text(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        text = JWT_SHAPE.sub(REDACTED, text)
        text = URL_USERINFO.sub(lambda mo: mo.group(1) + REDACTED + "@", text)
        text = AUTH_CREDENTIAL.sub(lambda mo: mo.group(1) + mo.group(2) + REDACTED, text)
        return LAUNCH_TOKEN_IN_URL.sub(lambda mo: mo.group(1) + REDACTED, text)

    def data(self, value: Any, secret_keys: frozenset[str] = frozenset()) -> Any:
        """Deep copy of `value` with credential fields masked and secret strings scrubbed."""
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if isinstance(key, str) and (key in secret_keys or SECRET_KEY_NAME.search(key)):
                    out[key] = REDACTED if item not in (None, "") else item
                elif key in HEADER_MAP_KEYS and item:
                    out[key] = mask_header_values(item)
                else:
                    out[key] = self.data(item, secret_keys)
            return out
        if isinstance(value, list):
            return [self.data(item, secret_keys) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value


def mask_header_values(headers: Any) -> Any:
    """{"X-Api-Key": "abc"} (or its JSON text) → {"X-Api-Key": "[redacted]"}."""
    if isinstance(headers, str):
        try:
            headers = json.loads(headers)
        except ValueError:
            return REDACTED
    if not isinstance(headers, dict):
        return REDACTED
    return {str(name): REDACTED for name in headers}


def contains_mask(value: Any) -> bool:
    """Whether a value the agent sends back still holds a mask we showed in place of a secret."""
    if isinstance(value, dict):
        return any(contains_mask(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_mask(v) for v in value)
    return isinstance(value, str) and REDACTED in value


def prune(value: Any) -> Any:
    """Drop nulls and empty containers: absent says the same for fewer tokens."""
    if isinstance(value, dict):
        pruned = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def tool_result(data: dict[str, Any]) -> CallToolResult:
    """`data` is already redacted and pruned (list results carry `count`, so an empty list still says so)."""
    return CallToolResult(content=[TextContent(type="text", text=dumps(data))], structured_content=data)
