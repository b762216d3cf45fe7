"""A receiver that answers 200 and then trickles its body a byte at a time cannot stall delivery: each attempt
has an overall deadline, one connection gets only its share of the slots, and canceling frees a slot."""

from __future__ import annotations

from pathlib import Path

from meshes_mcp.sandbox import EmbeddedSandbox
from meshes_mcp.sandbox.receiver import WebhookReceiver
from tests.conftest import SandboxApi
from tests.test_sandbox_restart import wait


def emit(api: SandboxApi, event: str) -> str:
    response = api.post("/events", json={"workspace": api.info.workspace_id, "event": event, "payload": {}})
    assert response.status_code == 201, response.text
    return str(response.json()["event"]["id"])


def test_an_attempt_that_never_finishes_reading_times_out_at_its_deadline(tmp_path: Path):
    with (
        WebhookReceiver() as receiver,
        EmbeddedSandbox(tmp_path, retry_base=60, max_attempts=1, delivery_timeout=1.0) as info,
        SandboxApi(info) as api,
    ):
        # a byte every 0.3 s: no single read waits as long as the 1 s timeout
        _, rule_id = api.webhook_rule(f"{receiver.url}/trickle/0.3", "trickle")
        event_id = emit(api, "trickle")
        event = api.wait_event(event_id, timeout=10)
        assert event["status"] == "failed", event
        attempt = api.get(f"/events/{event_id}/rules/{rule_id}/attempts").json()["records"][0]
        assert attempt["outcome_code"] == "timeout"
        assert "did not finish answering within the 1 s deadline" in attempt["message"]


def test_a_slow_destination_cannot_take_every_delivery_slot(tmp_path: Path):
    with (
        WebhookReceiver() as receiver,
        EmbeddedSandbox(tmp_path, retry_base=60, delivery_timeout=60, concurrency=4, per_connection=2) as info,
        SandboxApi(info) as api,
    ):
        api.webhook_rule(f"{receiver.url}/trickle/2", "slow", "slow destination")
        api.webhook_rule(f"{receiver.url}/hooks/fast", "fast", "fast destination")
        slow = [emit(api, "slow") for _ in range(6)]
        wait(lambda: len(receiver.matching("/trickle")) == 2)  # its share of the 4 slots, taken for good
        fast = emit(api, "fast")
        assert api.wait_event(fast, timeout=10)["status"] == "completed"
        assert len(receiver.matching("/trickle")) == 2  # the slow ones still wait their turn
        assert [api.get(f"/events/{e}").json()["status"] for e in slow].count("pending") == 4


def test_canceling_a_delivery_in_flight_frees_its_slot(tmp_path: Path):
    with (
        WebhookReceiver() as receiver,
        EmbeddedSandbox(tmp_path, retry_base=60, delivery_timeout=60, concurrency=2, per_connection=2) as info,
        SandboxApi(info) as api,
    ):
        _, slow_rule = api.webhook_rule(f"{receiver.url}/trickle/2", "slow", "slow destination")
        api.webhook_rule(f"{receiver.url}/hooks/fast", "fast", "fast destination")
        slow = [emit(api, "slow") for _ in range(2)]
        wait(lambda: len(receiver.matching("/trickle")) == 2)  # both slots held
        fast = emit(api, "fast")
        for event_id in slow:
            assert api.post(f"/events/{event_id}/rules/{slow_rule}/cancel").status_code == 200
        assert api.wait_event(fast, timeout=10)["status"] == "completed"
        for event_id in slow:
            attempts = api.get(f"/events/{event_id}/rules/{slow_rule}/attempts").json()["records"]
            assert [(a["outcome_code"], a["message"]) for a in attempts] == [
                ("network_error", "canceled while in flight: the request may or may not have reached the destination")
            ]
            assert api.get(f"/events/{event_id}").json()["status"] == "canceled"
