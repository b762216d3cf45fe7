"""Destructive tools ask the user first when the client can be asked, and change nothing on a no."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp_types import ElicitResult

from meshes_mcp.server.app import build_server
from tests.support import ok, settings_for


class User:
    """An elicitation callback that records each question and answers as told."""

    def __init__(self, action: str, confirm: bool = True) -> None:
        self.action = action
        self.confirm = confirm
        self.questions: list[str] = []
        self.schemas: list[dict[str, Any]] = []

    async def __call__(self, context: Any, params: Any) -> ElicitResult:
        self.questions.append(params.message)
        self.schemas.append(params.requested_schema)
        content = {"confirm": self.confirm} if self.action == "accept" else None
        return ElicitResult(action=self.action, content=content)


async def make_hook(client: Client, name: str, url: str) -> tuple[str, str]:
    hook = ok(await client.call_tool("create_connection", {"type": "webhook", "name": name, "metadata": {"url": url}}))
    rule = ok(await client.call_tool("create_rule", {"connection": hook["id"], "event": "confirm.test",
                                                     "metadata": {"action": "send_webhook"}}))  # fmt: skip
    return hook["id"], rule["id"]


@pytest.mark.parametrize(
    ("user", "deleted"),
    [
        (User("decline"), False),
        (User("cancel"), False),
        (User("accept", confirm=False), False),  # accepted the form, but left "yes" unticked
        (User("accept"), True),
        (None, True),  # a client without elicitation is not asked: its own approval UI gates the call
    ],
    ids=["declined", "dismissed", "unticked", "confirmed", "no-elicitation"],
)
@pytest.mark.anyio
async def test_delete_connection_asks_first(sandbox, webhook_receiver, user, deleted, request):
    name = f"Ask me first {request.node.callspec.id}"

    async with Client(build_server(settings_for(sandbox)), elicitation_callback=user) as client:
        hook, _ = await make_hook(client, name, webhook_receiver.url)
        result = await client.call_tool("delete_connection", {"connection_id": hook, "force_delete": True})
        after = await client.call_tool("get_connection", {"connection_id": hook})

    if user is not None:
        (question,) = user.questions
        forced = "Any active rules stop working (force_delete)."
        assert question == f'Delete webhook connection "{name}" ({hook})? {forced}'
        assert list(user.schemas[0]["properties"]) == ["confirm"]
    if deleted:
        assert ok(result) == {"deleted": hook, "type": "webhook"} and after.is_error
    else:
        assert result.is_error and result.structured_content is None
        text = result.content[0].text
        assert text.startswith("Not deleted: the user") and "Nothing was changed" in text
        assert ok(after)["id"] == hook  # still there


@pytest.mark.anyio
async def test_delete_rule_revoke_session_and_cancels_ask_and_respect_a_no(sandbox, webhook_receiver):
    no, yes = User("decline"), User("accept")

    async with Client(build_server(settings_for(sandbox)), elicitation_callback=no) as client:
        hook, rule = await make_hook(client, "Kept rule", webhook_receiver.url)
        session = ok(await client.call_tool("create_session", {}))["session_id"]
        event = ok(await client.call_tool("emit_event", {"event": "confirm.test", "payload": {"n": 1}}))["id"]
        refusals = [
            await client.call_tool("delete_rule", {"rule_id": rule}),
            await client.call_tool("revoke_session", {"session_id": session}),
            await client.call_tool("cancel_rule_event", {"event_id": event, "rule_id": rule}),
            await client.call_tool("cancel_event", {"event_id": event}),
        ]
        still = ok(await client.call_tool("get_rule", {"rule_id": rule}))
        sessions = ok(await client.call_tool("list_sessions", {"status": "active"}))
    async with Client(build_server(settings_for(sandbox)), elicitation_callback=yes) as client:
        deleted = ok(await client.call_tool("delete_rule", {"rule_id": rule}))
        revoked = ok(await client.call_tool("revoke_session", {"session_id": session}))

    texts = [r.content[0].text for r in refusals]
    assert all(r.is_error for r in refusals)
    assert texts[0].startswith("Not deleted: the user declined")
    assert texts[1].startswith("Not revoked: the user declined")
    assert texts[2].startswith("Not canceled") and texts[3].startswith("Not canceled")
    assert no.questions[0] == f'Delete rule {rule}, which sends "confirm.test" to webhook {hook} (send_webhook)?'
    assert no.questions[1] == f"Revoke embed session {session}? Its user loses access at once."
    assert f'"confirm.test" event {event}' in no.questions[2] and "webhook" in no.questions[2]
    assert no.questions[3].startswith(f'Cancel "confirm.test" event {event}?')
    assert still["id"] == rule and session in {s["session_id"] for s in sessions["sessions"]}
    assert deleted["deleted"] == rule and revoked == {"session_id": session, "revoked": True}
    assert len(yes.questions) == 2


@pytest.mark.anyio
async def test_confirmation_works_over_the_older_protocol_too(sandbox, webhook_receiver):
    """Before 2026-07-28 the question is a standalone elicitation request sent mid-call."""
    no = User("decline")

    server = build_server(settings_for(sandbox))
    async with Client(server, elicitation_callback=no, mode="legacy") as client:
        hook, rule = await make_hook(client, "Legacy client", webhook_receiver.url)
        refused = await client.call_tool("delete_rule", {"rule_id": rule})
        still = ok(await client.call_tool("get_rule", {"rule_id": rule}))
        version = client.protocol_version

    assert version < "2026-07-28"
    assert refused.is_error and refused.content[0].text.startswith("Not deleted: the user declined")
    assert no.questions == [f'Delete rule {rule}, which sends "confirm.test" to webhook {hook} (send_webhook)?']
    assert still["id"] == rule
