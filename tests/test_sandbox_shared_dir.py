"""Two sandboxes on one data directory (two IDE windows on the per-user one) deliver each event once."""

from __future__ import annotations

import collections
import time

from meshes_mcp.sandbox import EmbeddedSandbox
from meshes_mcp.sandbox.receiver import WebhookReceiver
from tests.conftest import SandboxApi


def test_second_sandbox_on_a_data_dir_does_not_deliver_twice(tmp_path):
    with WebhookReceiver() as receiver:
        first = EmbeddedSandbox(tmp_path, retry_base=0.05)
        second = EmbeddedSandbox(tmp_path, retry_base=0.05)
        info = first.start()
        other = second.start()
        try:
            assert other.access_key == info.access_key  # one organisation, one database
            with SandboxApi(info) as api, SandboxApi(other) as api2:
                api.webhook_rule(f"{receiver.url}/hooks/shared", "shared.test", "shared")
                for batch in range(3):  # ingested through both processes
                    client = api if batch % 2 else api2
                    items = [
                        {"event": "shared.test", "payload": {"n": batch * 100 + i}, "workspace": info.workspace_id}
                        for i in range(100)
                    ]
                    assert client.post("/events/bulk", json=items).status_code == 201
            receipts = receiver.wait_for(300, "/hooks/shared", timeout=20)
            time.sleep(0.5)  # a duplicate, if any, would arrive now
            receipts = receiver.matching("/hooks/shared")
        finally:
            second.stop()
            first.stop()
    per_delivery = collections.Counter(r.delivery_id for r in receipts)
    assert len(per_delivery) == 300
    assert max(per_delivery.values()) == 1
