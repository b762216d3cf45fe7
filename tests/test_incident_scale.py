"""Incidents while they change and past the defaults: a triage taken during a retry run names the same
groups (and keys) as one taken before it, and a 2,500-failure group is counted whole and retried whole in
one call, each delivery once, counted at a real receiver. Over real HTTP on a sandbox making one attempt
per delivery, in real MCP client sessions."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest
from mcp import Client

from meshes_mcp.server.app import build_server
from tests.support import ok, settings_for
from tests.test_incident_tools import RetryGate, args_of, emit, hook_rule, new_workspace, one_attempt, settle

__all__ = ["one_attempt"]  # the module's sandbox fixture, shared with the other incident tests


async def rename(client: Client, connection: str, name: str, url: str) -> dict[str, Any]:
    return ok(await client.call_tool("update_connection", {"connection_id": connection, "name": name,
                                                           "metadata": {"url": url}}))  # fmt: skip


async def received(rx: Any, path: str, count: int, timeout: float = 120.0) -> None:
    with anyio.fail_after(timeout):
        while sum(1 for r in rx.receipts if r.path == path) < count:
            await anyio.sleep(0.1)


@pytest.mark.anyio
async def test_a_triage_during_a_retry_run_keeps_the_groups_key_and_the_first_key_still_matches(
    one_attempt, webhook_receiver
):
    rx = webhook_receiver
    workspace = await new_workspace(one_attempt, "Stable Keys")
    direct = settings_for(one_attempt, workspace_id=workspace)
    async with Client(build_server(direct)) as first:
        hook, _ = await hook_rule(first, "Stable hook", f"{rx.url}/status/500", "stable.key")
        await emit(first, "stable.key", 40)
        await settle(one_attempt, workspace)
        (before,) = ok(await first.call_tool("triage_failures", {}))["groups"]
        await rename(first, hook, "Stable hook", f"{rx.url}/stable-fixed")
        with RetryGate(one_attempt.api_url) as gate:
            gate.hold_attempts = True
            proxied = settings_for(one_attempt, workspace_id=workspace, api_url=gate.url)
            async with Client(build_server(proxied)) as second, anyio.create_task_group() as group:
                mid: dict[str, Any] = {}

                async def triage_mid_run() -> None:
                    mid.update(ok(await second.call_tool("triage_failures", {})))

                group.start_soon(triage_mid_run)
                # The second session has read the failing deliveries and now reads the newest one's attempts:
                # meanwhile the run retries the newest deliveries, and they arrive.
                assert await anyio.to_thread.run_sync(gate.attempts_asked.wait, 30)
                run = ok(await first.call_tool("retry_failed", args_of(before["then"]) | {"max_retries": 15}))
                gate.release.set()
        again = ok(await first.call_tool("retry_failed", args_of(before["then"]) | {"dry_run": True}))
        (after,) = ok(await first.call_tool("triage_failures", {}))["groups"]

    assert before["failed"] == 40 and before["outcome_code"] == "rejected_server_error"
    assert 0 < run["retried"] <= 15 and run["outcome"]["delivered"] == run["retried"]
    (seen,) = mid["groups"]
    assert seen["key"] == before["key"] and seen["outcome_code"] == "rejected_server_error"
    still = 40 - run["retried"]
    assert again["matched"] == still and again["groups"][0]["key"] == before["key"]
    assert after["key"] == before["key"] and after["failed"] == still and after["outcome_code"] != "delivered"


@pytest.mark.anyio
async def test_a_2500_failure_group_is_counted_whole_and_retried_whole_in_one_call(one_attempt, webhook_receiver):
    rx = webhook_receiver
    failures = 2500
    workspace = await new_workspace(one_attempt, "Big Incident")
    async with Client(build_server(settings_for(one_attempt, workspace_id=workspace))) as client:
        # Nothing listens on port 9: each delivery fails at once.
        hook, _ = await hook_rule(client, "Big hook", "http://127.0.0.1:9/big", "big.incident")
        await emit(client, "big.incident", failures)
        await settle(one_attempt, workspace, timeout=120)
        whole = ok(await client.call_tool("triage_failures", {}))
        capped = ok(await client.call_tool("triage_failures", {"max_events": 1000}))
        await rename(client, hook, "Big hook", f"{rx.url}/big-fixed")
        (fixed,) = ok(await client.call_tool("triage_failures", {}))["groups"]
        dry = ok(await client.call_tool("retry_failed", args_of(fixed["then"]) | {"max_retries": 100, "dry_run": True}))
        # Counted at the receiver rather than awaited in the call: reading 2,500 outcomes back would double the time.
        send = {k: v for k, v in args_of(fixed["then"]).items() if k != "wait_seconds"}
        retry = ok(await client.call_tool("retry_failed", send))
        await received(rx, "/big-fixed", failures)
        await settle(one_attempt, workspace, timeout=120)
        left = ok(await client.call_tool("triage_failures", {}))

    (group,) = whole["groups"]
    assert group["failed"] == failures and whole["events_scanned"] == failures and "capped" not in whole
    assert whole["window"]["complete"] is True and "http://127.0.0.1:9/big could not be reached" in group["fix"]
    # Past max_events: said plainly, with the call that goes on.
    assert "lower bound" in capped["capped"] and capped["next"].startswith("triage_failures until=")
    assert capped["groups"][0]["failed"] <= 1000 and capped["window"]["complete"] is False
    # The fix is in: only the retry is left, and it does not claim the new URL is unreachable.
    assert fixed["key"] == group["key"] and "fix_in" in fixed and "calls" not in fixed
    assert "could not be reached" not in fixed["fix"] and "max_retries" not in fixed["then"]
    # A dry run past max_retries says it was capped and how to go on, keeping wait_seconds.
    assert dry["would_retry"] <= 100 and "lower bounds" in dry["capped"]
    assert "wait_seconds=60" in dry["next"].split("then the rest: ")[1]
    # One call, the whole group.
    assert retry["matched"] == failures and retry["retried"] == failures and "capped" not in retry
    assert left["count"] == 0
    arrived = Counter(r.delivery_id for r in rx.receipts if r.path == "/big-fixed")
    assert len(arrived) == failures and set(arrived.values()) == {1}


@pytest.mark.anyio
async def test_a_group_whose_rule_was_deleted_since_offers_no_retry(one_attempt):
    workspace = await new_workspace(one_attempt, "Rule Gone")
    async with Client(build_server(settings_for(one_attempt, workspace_id=workspace))) as client:
        _, rule = await hook_rule(client, "Gone hook", "http://127.0.0.1:9/gone", "gone.rule")
        await emit(client, "gone.rule", 3)
        await settle(one_attempt, workspace)
        (before,) = ok(await client.call_tool("triage_failures", {}))["groups"]
        ok(await client.call_tool("delete_rule", {"rule_id": rule}))
        after = ok(await client.call_tool("triage_failures", {}))

    assert before["then"].startswith(f"retry_failed group={before['key']}")
    (group,) = after["groups"]
    assert group["key"] == before["key"] and "then" not in group and "fix_in" not in group
    assert group["fix"].startswith("The rule is deleted now") and group["calls"] == ['list_rules event="gone.rule"']
    assert after["next"] == "for each group: run its calls"
