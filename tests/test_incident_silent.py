"""Silent causes: events that never became a delivery, found by triage_failures, replayed once by
replay_events, and named by emit_event, emit_events and get_event. Each through a real MCP client session
on the sandbox over HTTP (one over stdio), deliveries counted at a real webhook receiver."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp_types import ElicitResult

from meshes_mcp.server.app import build_server
from tests.support import ok, refused, settings_for
from tests.test_incident_tools import User, args_of, new_workspace, settle

SEND = {"action": "send_webhook"}


async def hook(client: Client, url: str, event: str, **rule: Any) -> tuple[str, str]:
    metadata = {"url": url}
    made = ok(await client.call_tool("create_connection", {"type": "webhook", "name": url.rsplit("/", 1)[-1],
                                                           "metadata": metadata}))  # fmt: skip
    created = ok(await client.call_tool("create_rule", {"connection": made["id"], "event": event, "metadata": SEND,
                                                         **rule}))  # fmt: skip
    return made["id"], created["id"]


async def emit(client: Client, event: str, count: int, **extra: Any) -> None:
    batch = [{"event": event, "payload": {"email": f"u{n}@example.com"}, **extra} for n in range(count)]
    assert ok(await client.call_tool("emit_events", {"events": batch}))["accepted"] == count


def finding(result: dict[str, Any], kind: str, event: str) -> dict[str, Any]:
    found = [f for f in result.get("findings", []) if f["kind"] == kind and f["event"] == event]
    assert len(found) == 1, result
    return found[0]


@pytest.mark.anyio
async def test_a_near_miss_name_is_found_and_replayed_once_and_only_once(sandbox, webhook_receiver):
    rx, ws, user = webhook_receiver, await new_workspace(sandbox, "Near miss"), User()
    async with Client(build_server(settings_for(sandbox, workspace_id=ws)), elicitation_callback=user) as client:
        connection, rule = await hook(client, f"{rx.url}/near-miss", "user.signup")
        await emit(client, "user.signed_up", 30)
        by_connection = ok(await client.call_tool("triage_failures", {"connection": connection}))
        by_event = ok(await client.call_tool("triage_failures", {"event": "user.signup"}))
        by_rule = ok(await client.call_tool("triage_failures", {"rule": rule}))
        unfiltered = ok(await client.call_tool("triage_failures", {}))
        dry = ok(await client.call_tool("replay_events", {"event": "user.signed_up", "dry_run": True}))
        first = ok(await client.call_tool("replay_events", {"event": "user.signed_up", "as_event": "user.signup",
                                                            "wait_seconds": 30}))  # fmt: skip
        second = ok(await client.call_tool("replay_events", {"event": "user.signed_up", "as_event": "user.signup",
                                                             "wait_seconds": 30}))  # fmt: skip
        after = ok(await client.call_tool("triage_failures", {"connection": connection}))

    for result in (by_connection, by_event, by_rule, unfiltered):
        unrouted = finding(result, "unrouted", "user.signed_up")
        assert unrouted["count"] == 30 and unrouted["first_seen"] <= unrouted["last_seen"]
        assert unrouted["rules"][0] == {"id": rule, "event": "user.signup", "connection": connection,
                                        "type": "webhook", "why": "near_miss"}  # fmt: skip
        assert "near miss" in unrouted["reason"] and "as_event=user.signup" in unrouted["fix"]
        assert "replays the 30 missed" in unrouted["fix"] and "replayed" not in unrouted
        assert unrouted["calls"] == [f'create_rule connection={connection} event=user.signed_up metadata={{"action":'
                                     '"send_webhook"}']  # fmt: skip
        assert unrouted["then"].startswith("replay_events event=user.signed_up")
    for result in (by_connection, by_event, by_rule):
        missing = finding(result, "no_events", "user.signup")
        assert missing["arrived"][0] == {"event": "user.signed_up", "count": 30} and "last_seen" not in missing
        assert "user.signed_up" in missing["fix"]
    assert len(str(by_connection)) < 4000  # 30 events or 30,000: one finding each
    assert dry["would_replay"] == 30 and dry["unrouted"] == 30 and "replayed" not in dry
    assert first["replayed"] == 30 and first["outcome"]["delivered"] == 30 and first["outcome"]["settled"]
    assert len(user.questions) == 1 and "30 events that matched no rule" in user.questions[0]
    assert second["unrouted"] == 30 and second["already_replayed"] == 30 and second["replayed"] == 0
    assert len(rx.matching("/near-miss")) == 30
    replayed = finding(after, "unrouted", "user.signed_up")  # still unrouted, but no longer to replay
    assert replayed["replayed"] == 30 and "then" not in replayed and "all replayed already" in replayed["fix"]
    assert "(30 replayed since)" in replayed["reason"]
    bodies = [receipt.json() for receipt in rx.matching("/near-miss")]
    assert all("_meshes_replay_of" in str(body) for body in bodies)


@pytest.mark.anyio
async def test_inactive_rule_resource_filter_and_rule_created_after_are_each_named(sandbox, webhook_receiver):
    rx, ws = webhook_receiver, await new_workspace(sandbox, "Silent rules")
    async with Client(build_server(settings_for(sandbox, workspace_id=ws))) as client:
        _, inactive = await hook(client, f"{rx.url}/inactive", "order.paid", active=False)
        _, filtered = await hook(client, f"{rx.url}/filtered", "invoice.paid", resource="order")
        await emit(client, "order.paid", 4)
        await emit(client, "invoice.paid", 3, resource="user")
        await emit(client, "plan.upgraded", 5)
        _, later = await hook(client, f"{rx.url}/later", "plan.upgraded")
        triage = ok(await client.call_tool("triage_failures", {}))
        capped = ok(await client.call_tool("triage_failures", {"max_events": 6}))
        replay_capped = ok(await client.call_tool("replay_events", {"max_events": 3, "dry_run": True}))
        replayed = ok(await client.call_tool("replay_events", args_of(finding(triage, "unrouted", "plan.upgraded")
                                                                       ["then"])))  # fmt: skip
        again = ok(await client.call_tool("replay_events", {"event": "plan.upgraded"}))

    off = finding(triage, "unrouted", "order.paid")
    assert off["count"] == 4 and off["rules"][0]["id"] == inactive and off["rules"][0]["why"] == "inactive"
    assert "inactive" in off["reason"] and off["calls"][0].startswith("create_rule ")
    res = finding(triage, "unrouted", "invoice.paid")
    assert res["resource"] == "user" and res["rules"][0]["id"] == filtered
    assert res["rules"][0]["rule_resource"] == "order" and res["rules"][0]["event_resource"] == "user"
    assert "resource=user" in res["calls"][0]
    late = finding(triage, "unrouted", "plan.upgraded")
    assert late["rules"][0]["id"] == later and late["rules"][0]["why"] == "created_after"
    assert late["rules"][0]["events_before"] == 5 and "after 5 of them" in late["reason"] and "calls" not in late
    assert replayed["replayed"] == 5 and replayed["outcome"]["delivered"] == 5
    assert again["already_replayed"] == 5 and again["replayed"] == 0
    assert len(rx.matching("/later")) == 5 and not rx.matching("/inactive") and not rx.matching("/filtered")
    # The window holds 12 events: read 6 at most, the counts are lower bounds and `next` reads on.
    scan = capped["findings_scan"]
    assert scan["complete"] is False and "lower bounds" in scan["note"] and scan["events_read"] <= 6
    assert scan["next"].startswith("triage_failures until=") and "max_events=6" in scan["next"]
    assert sum(f["count"] for f in capped["findings"]) <= 6
    assert replay_capped["complete"] is False and replay_capped["would_replay"] <= 3
    assert "then the older ones: replay_events until=" in replay_capped["next"]


@pytest.mark.anyio
async def test_events_sent_to_another_workspace_and_a_quiet_window(sandbox, webhook_receiver):
    rx = webhook_receiver
    production, staging = await new_workspace(sandbox, "Production"), await new_workspace(sandbox, "Staging")
    async with Client(build_server(settings_for(sandbox, workspace_id=staging))) as client:
        await emit(client, "trial.started", 4)
    async with Client(build_server(settings_for(sandbox, workspace_id=production))) as client:
        connection, _ = await hook(client, f"{rx.url}/trials", "trial.started")
        triage = ok(await client.call_tool("triage_failures", {"connection": connection}))
        await emit(client, "trial.started", 2)
        quiet = ok(await client.call_tool("triage_failures", {"since": "1h"}))

    missing = finding(triage, "no_events", "trial.started")
    assert "none ever" in missing["reason"] and "arrived" not in missing
    # `next` says only what the findings hold: calls where one has calls, a `then` where one has it.
    held = [
        step
        for step, key in (("run its calls", "calls"), ("`then`", "then"))
        if any(key in f for f in triage["findings"])
    ]
    assert all(step in triage["next"] for step in held)
    assert ("run its calls" in triage["next"]) == any("calls" in f for f in triage["findings"])
    elsewhere = finding(triage, "other_workspace", "trial.started")
    assert elsewhere["count"] == 4 and elsewhere["workspace"] == {"id": staging, "name": "Staging"}
    assert "Staging" in elsewhere["reason"]
    assert set(quiet) <= {"summary", "count", "events_scanned", "window"}
    assert quiet["summary"] == "No failing deliveries and no unrouted events in the window (2 events read)."


@pytest.mark.anyio
async def test_emits_and_get_event_say_when_an_event_matched_no_rule(sandbox, webhook_receiver):
    rx, ws = webhook_receiver, await new_workspace(sandbox, "Zero rules")
    async with Client(build_server(settings_for(sandbox, workspace_id=ws))) as client:
        await hook(client, f"{rx.url}/zero", "user.signup")
        payload = {"email": "jane@example.com"}
        plain = ok(await client.call_tool("emit_event", {"event": "user.signed_up", "payload": payload}))
        waited = ok(await client.call_tool("emit_event", {"event": "user.signed_up", "payload": payload,
                                                          "wait_seconds": 5}))  # fmt: skip
        routed = ok(await client.call_tool("emit_event", {"event": "user.signup", "payload": payload}))
        three = [{"event": "user.signed_up", "payload": payload}] * 3
        bulk = ok(await client.call_tool("emit_events", {"events": three}))
        read = ok(await client.call_tool("get_event", {"event_id": plain["id"]}))
        await hook(client, f"{rx.url}/zero-orders", "order.shipped", resource="order")
        other = {"event": "order.shipped", "payload": payload, "resource": "user", "wait_seconds": 5}
        filtered = ok(await client.call_tool("emit_event", other))

    for result in (plain, waited, read):
        assert result["matched_no_rule"] is True and result["closest_rule_events"] == ["user.signup"]
        assert "no active rule listens for `user.signed_up`" in result["warning"]
        assert "replay_events event=user.signed_up" in result["next"] and "as_event=user.signup" in result["next"]
    assert waited["waited"] == "nothing to wait for: it matched no rule"
    assert filtered["matched_no_rule"] is True and "take only resource=order resource_id=*" in filtered["warning"]
    assert "matched_no_rule" not in routed and "warning" not in routed
    (note,) = bulk["unrouted"]
    assert note["event"] == "user.signed_up" and note["count"] == 3 and "these 3 events" in note["warning"]


@pytest.mark.anyio
async def test_a_declined_replay_sends_nothing(sandbox, webhook_receiver):
    rx, ws, user = webhook_receiver, await new_workspace(sandbox, "Declined"), User("decline")
    async with Client(build_server(settings_for(sandbox, workspace_id=ws)), elicitation_callback=user) as client:
        await emit(client, "lead.created", 12)
        await hook(client, f"{rx.url}/declined", "lead.created")
        declined = await client.call_tool("replay_events", {"event": "lead.created"})
        dry = ok(await client.call_tool("replay_events", {"event": "lead.created", "dry_run": True}))

    assert declined.is_error and "Not replayed" in declined.content[0].text
    assert "12 events that matched no rule (12 `lead.created`)" in user.questions[0]
    assert dry["would_replay"] == 12 and not rx.matching("/declined")


@pytest.mark.anyio
async def test_events_other_rules_took_are_named_for_the_rule_that_missed_them_and_never_replayed(
    sandbox, webhook_receiver
):
    rx, ws = webhook_receiver, await new_workspace(sandbox, "Passed over")
    async with Client(build_server(settings_for(sandbox, workspace_id=ws))) as client:
        await hook(client, f"{rx.url}/won-crm", "deal.won")
        off, off_rule = await hook(client, f"{rx.url}/won-off", "deal.won", active=False)
        await emit(client, "deal.won", 3)
        triage = ok(await client.call_tool("triage_failures", {"connection": off}))
        replay = ok(await client.call_tool("replay_events", {"event": "deal.won", "dry_run": True}))

    missed = finding(triage, "passed_over", "deal.won")
    assert missed["count"] == 3 and missed["rules"][0]["id"] == off_rule and missed["rules"][0]["why"] == "inactive"
    assert "3 `deal.won` events reached other rules only" in missed["reason"] and "is inactive" in missed["reason"]
    assert "then" not in missed and "does not re-emit them" in missed["fix"]
    assert missed["calls"][0].startswith(f"create_rule connection={off} event=deal.won")
    assert replay["unrouted"] == 0 and replay["would_replay"] == 0
    assert len(rx.matching("/won-crm")) == 3 and not rx.matching("/won-off")


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"since": "yesterday-ish"}, "since"),
        ({"max_events": 0}, "max_events"),
        ({"max_events": 20_001}, "max_events"),
        ({"wait_seconds": 121}, "wait_seconds"),
        ({"as_event": " "}, "as_event"),
        ({"as_event": "a\nb"}, "as_event"),
        ({"workspace": "nope"}, "workspace"),
        ({"event": " "}, "event"),
    ],
)
@pytest.mark.anyio
async def test_replay_refuses_bad_input_naming_the_field(sandbox, arguments, field):
    async with Client(build_server(settings_for(sandbox))) as client:
        text = refused(await client.call_tool("replay_events", arguments))

    assert field in text and "Traceback" not in text


@pytest.mark.parametrize(("mode", "seen_as"), [("auto", "already_replayed"), ("legacy", "replayed_meanwhile")])
@pytest.mark.anyio
async def test_a_replay_run_while_the_user_confirms_another_is_not_sent_twice(sandbox, webhook_receiver, mode, seen_as):
    """Over 2026-07-28 the answer comes back in a new round that plans again; mid-call (older protocols) the
    tool looks for copies again after the answer. Either way the second replay sends nothing."""
    rx, ws = webhook_receiver, await new_workspace(sandbox, f"Racing {mode}")
    settings = settings_for(sandbox, workspace_id=ws)
    meanwhile: list[dict[str, Any]] = []

    async def replay_elsewhere_then_accept(context: Any, params: Any) -> ElicitResult:
        async with Client(build_server(settings)) as other:  # another agent, no confirmation asked
            meanwhile.append(ok(await other.call_tool("replay_events", {"event": "trial.ended"})))
        return ElicitResult(action="accept", content={"confirm": True})

    async with Client(build_server(settings), elicitation_callback=replay_elsewhere_then_accept, mode=mode) as client:
        await emit(client, "trial.ended", 12)
        await hook(client, f"{rx.url}/racing-{mode}", "trial.ended")
        late = ok(await client.call_tool("replay_events", {"event": "trial.ended", "wait_seconds": 30}))
        await settle(sandbox, ws)

    assert meanwhile[0]["replayed"] == 12
    assert late["replayed"] == 0 and late[seen_as] == 12, late
    assert len(rx.matching(f"/racing-{mode}")) == 12


def call_of(text: str) -> tuple[str, dict[str, Any]]:
    """`create_rule connection=… metadata={"action":"send_webhook"}` → the tool and its typed arguments."""
    name, *parts = text.split(" ")
    args: dict[str, Any] = {}
    for part in parts:
        key, _, value = part.partition("=")
        args[key] = json.loads(value) if value[:1] == "{" or value.isdigit() else value
    return name, args


@pytest.mark.anyio
async def test_the_silent_loop_over_stdio_following_the_hints(tmp_path, webhook_receiver):
    rx = webhook_receiver
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "meshes_mcp", "--sandbox", "--data-dir", str(tmp_path / "sandbox")],
        env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
    )
    async with Client(params) as client:
        await hook(client, f"{rx.url}/stdio-silent", "user.signup")
        await emit(client, "user.signed_up", 20)
        triage = ok(await client.call_tool("triage_failures", {"event": "user.signup"}))
        unrouted = finding(triage, "unrouted", "user.signed_up")
        for call in unrouted["calls"]:
            ok(await client.call_tool(*call_of(call)))
        first = ok(await client.call_tool(*call_of(unrouted["then"])))
        second = ok(await client.call_tool(*call_of(unrouted["then"])))

    assert unrouted["count"] == 20 and unrouted["calls"][0].startswith("create_rule ")
    assert first["replayed"] == 20 and first["outcome"]["delivered"] == 20
    assert second["replayed"] == 0 and second["already_replayed"] == 20
    assert len(rx.matching("/stdio-silent")) == 20
