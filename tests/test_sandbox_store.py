"""The sandbox store's memory of shared database state stays true to the database: what other connections
(processes) change, and what a rolled-back transaction never wrote."""

from __future__ import annotations

import pytest

from meshes_mcp.sandbox.clock import new_id, now_iso
from meshes_mcp.sandbox.seed import ensure_seed
from meshes_mcp.sandbox.store import NewEvent, Store


def event(seed: dict, name: str, resource: str | None = None) -> NewEvent:
    return NewEvent(
        new_id(), seed["organization_id"], seed["workspace_id"], name, resource, None, {}, "test", now_iso()
    )


def test_a_rolled_back_event_does_not_leave_its_type_out_of_the_catalogue(tmp_path):
    store = Store(tmp_path / "sandbox.db")
    try:
        seed = ensure_seed(store)
        with pytest.raises(RuntimeError), store.tx():  # e.g. a later statement of the same request fails
            store.insert_events([event(seed, "rolled.back", "invoice")], 5)
            raise RuntimeError("abort")
        assert store.catalog(seed["workspace_id"], "event") == []
        store.insert_events([event(seed, "rolled.back", "invoice")], 5)
        assert [e["key"] for e in store.catalog(seed["workspace_id"], "event")] == ["rolled.back"]
        assert [e["key"] for e in store.catalog(seed["workspace_id"], "resource")] == ["invoice"]
    finally:
        store.close()


def test_routing_sees_rules_changed_through_another_connection(tmp_path):
    mine, theirs = Store(tmp_path / "sandbox.db"), Store(tmp_path / "sandbox.db")
    try:
        seed = ensure_seed(mine)
        ws, org = seed["workspace_id"], seed["organization_id"]
        first = event(seed, "routed")
        mine.insert_events([first], 5)  # routes (and remembers) the workspace with no rules
        assert first.rules == []
        hook = theirs.create_connection(org, ws, "webhook", "hook", {"url": "http://127.0.0.1:9/"}, False, "test")
        rule = theirs.create_rule(org, ws, hook["id"], "webhook", "routed", None, None, {}, True, False, "test")
        second = event(seed, "routed")
        mine.insert_events([second], 5)
        assert [r.id for r in second.rules] == [rule["id"]]
        theirs.delete_rule(rule["id"])
        third = event(seed, "routed")
        mine.insert_events([third], 5)
        assert third.rules == []
        # Even a change made without this code (another version, a hand edit) is seen: triggers keep count.
        theirs.db.execute("UPDATE rules SET deleted_at=NULL, active=1 WHERE id=?", (rule["id"],))
        fourth = event(seed, "routed")
        mine.insert_events([fourth], 5)
        assert [r.id for r in fourth.rules] == [rule["id"]]
    finally:
        theirs.close()
        mine.close()


def test_each_status_list_is_defined_once_and_they_partition_the_statuses():
    from meshes_mcp.api import models
    from meshes_mcp.sandbox import app, domain, queue

    assert set(models.ACTIVE_STATUSES) | models.TERMINAL_STATUSES == set(models.EVENT_STATUSES)
    assert not set(models.ACTIVE_STATUSES) & models.TERMINAL_STATUSES
    # The sandbox uses the API's lists rather than its own copies.
    assert queue.ACTIVE_STATUSES is models.ACTIVE_STATUSES and domain.TERMINAL_STATUSES is models.TERMINAL_STATUSES
    assert app.EVENT_STATUSES is models.EVENT_STATUSES
