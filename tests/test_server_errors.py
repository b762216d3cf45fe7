"""Tool errors as the model sees them: actionable, isError, never a traceback or a secret."""

from __future__ import annotations

import pytest
from mcp import Client

from meshes_mcp.config import Settings
from meshes_mcp.server.app import build_server
from tests.http_double import ACCESS_KEY, ORG, SECRET_KEY, ApiDouble, Scripted

EVENT = "0b6f3c1e-2d4a-4b5c-8d6e-7f8091a2b3c4"
RULE = "1c7a4d2f-3e5b-4c6d-9e7f-8091a2b3c4d5"
CONNECTION = "2d8b5e3a-4f6c-4d7e-af80-91a2b3c4d5e6"
WORKSPACE = "3e9c6f4b-5a7d-4e8f-b091-a2b3c4d5e6f7"
RETRY_PATH = f"/events/{EVENT}/rules/{RULE}/retry"


@pytest.fixture
def double():
    server = ApiDouble().start()
    yield server
    server.stop()


def settings_for(double: ApiDouble) -> Settings:
    return Settings(api_url=double.url, access_key=ACCESS_KEY, secret_key=SECRET_KEY, org_id=ORG)


async def call(settings: Settings, tool: str, arguments: dict):
    """One tool call in a fresh client session."""
    async with Client(build_server(settings)) as client:
        return await client.call_tool(tool, arguments)


def error_text(result) -> str:
    assert result.is_error, result
    assert result.structured_content is None
    text = result.content[0].text
    assert "Traceback" not in text and "Error executing tool" not in text
    assert SECRET_KEY not in text
    return text


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, ["rejected the request (400)", "Nothing was changed", "id: unknown list"]),
        (401, ["refused the credentials (401)", "MESHES_ACCESS_KEY"]),
        (404, ["Not found (404)", "list_events"]),
        (409, ["Conflict (409)", "Nothing was changed"]),
        (422, ["could not process the request (422)", "id: unknown list"]),
        (425, ["Too early (425)", "get_event"]),
        (429, ["Rate limited", "Retry after 1 s"]),
        (500, ["failed with 500", "may or may not have been applied", f"get_event event_id={EVENT}"]),
    ],
)
@pytest.mark.anyio
async def test_api_statuses_become_actionable_tool_errors(double, status, expected):
    body = {
        "message": "x",
        "error": {"name": "E", "message": "it went wrong", "data": [{"param": "id", "msg": "unknown list"}]},
    }
    # The client honours Retry-After before giving up (twice): one second keeps the test short.
    headers = {"Retry-After": "1"} if status == 429 else {}
    double.script("POST", RETRY_PATH, Scripted(status, body, headers=headers))
    settings = settings_for(double)
    text = error_text(await call(settings, "retry_rule_event", {"event_id": EVENT, "rule_id": RULE}))
    for fragment in expected:
        assert fragment in text


@pytest.mark.anyio
async def test_read_errors_do_not_claim_a_change_might_have_happened(double):
    double.script("GET", f"/connections/{CONNECTION}", Scripted(500, {"message": "boom"}))
    text = error_text(await call(settings_for(double), "get_connection_actions", {"connection_id": CONNECTION}))
    assert "Try again" in text and "may or may not" not in text


@pytest.mark.anyio
async def test_bad_arguments_never_reach_the_api(double):
    settings = settings_for(double)
    text = error_text(await call(settings, "retry_rule_event", {"event_id": "42", "rule_id": RULE}))
    assert "event_id" in text and "UUID" in text
    text = error_text(
        await call(
            settings, "emit_event", {"event": "user.signup", "payload": {"email": "nope"}, "workspace": WORKSPACE}
        )
    )
    assert "payload.email" in text and "jane@example.com" in text
    text = error_text(await call(settings, "emit_event", {"event": "user.signup", "payload": [1, 2]}))
    assert "payload" in text and "object" in text
    assert double.requests == []


@pytest.mark.anyio
async def test_without_credentials_every_tool_explains_how_to_configure(monkeypatch):
    for name in (
        "MESHES_ACCESS_KEY",
        "MESHES_SECRET_KEY",
        "MESHES_ORG_ID",
        "MESHES_ORGANIZATION_ID",
        "MESHES_PUBLISHABLE_KEY",
        "MESHES_WORKSPACE_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    arguments = {
        "emit_event": {"event": "user.signup", "payload": {"email": "a@b.co"}, "workspace": WORKSPACE},
        "list_integrations": {},
        "create_connection": {
            "type": "webhook",
            "name": "hook",
            "metadata": {"url": "https://example.com/h"},
            "workspace": WORKSPACE,
        },
        "get_connection_actions": {"connection_id": CONNECTION},
        "create_rule": {"connection": CONNECTION, "event": "user.signup", "metadata": {"action": "send_webhook"}},
        "retry_rule_event": {"event_id": EVENT, "rule_id": RULE},
    }

    async with Client(build_server(settings)) as client:
        results = {name: await client.call_tool(name, args) for name, args in arguments.items()}

    for name, result in results.items():
        text = error_text(result)
        for needed in ("MESHES_ACCESS_KEY", "MESHES_SECRET_KEY", "MESHES_ORG_ID", "--sandbox"):
            assert needed in text, (name, text)
