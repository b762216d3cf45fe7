"""Starting and restarting the embedded sandbox: the seed, sandbox.json, and state kept across restarts."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
import time

from meshes_mcp.sandbox import EmbeddedSandbox, SandboxInfo
from tests.conftest import SandboxApi


def test_seed_is_created_once_and_kept(tmp_path):
    with EmbeddedSandbox(tmp_path, retry_base=0.05) as first, SandboxApi(first) as api:
        assert re.fullmatch(r"mk_[A-Za-z0-9_-]{22,}", first.access_key)
        assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", first.secret_key)
        assert re.fullmatch(r"mesh_pub_([A-Za-z0-9\-.]+)_([A-Za-z0-9\-.]+)_([^_]+)", first.publishable_key)
        assert first.api_url.startswith("http://127.0.0.1:") and first.api_url.endswith("/api/v1")
        written = SandboxInfo.model_validate(json.loads((tmp_path / "sandbox.json").read_text()))
        assert written == first
        assert stat.S_IMODE((tmp_path / "sandbox.json").stat().st_mode) == 0o600
        workspace = api.post("/workspaces", json={"name": "Kept"}).json()["workspace"]["id"]
        connections = api.get(f"/workspaces/{first.workspace_id}/connections").json()["count"]
        assert connections == 8

    with EmbeddedSandbox(tmp_path) as second, SandboxApi(second) as api:
        assert second.model_dump(exclude={"api_url"}) == first.model_dump(exclude={"api_url"})
        assert api.get(f"/workspaces/{workspace}").status_code == 200
        assert api.get(f"/workspaces/{second.workspace_id}/connections").json()["count"] == connections


def test_expired_sessions_cannot_be_refreshed(tmp_path):
    with EmbeddedSandbox(tmp_path) as info, SandboxApi(info) as api:
        session = api.post("/sessions", json={"workspace_id": info.workspace_id}).json()["session_id"]
        db = sqlite3.connect(tmp_path / "sandbox.db")
        with db:
            db.execute("UPDATE sessions SET expires_epoch=? WHERE id=?", (time.time() - 1, session))
        db.close()
        listed = api.get("/sessions", params={"workspace_id": info.workspace_id}).json()["records"]
        assert listed[0]["is_expired"] is True
        refused = api.post(f"/sessions/{session}/refresh")
        assert refused.status_code == 409 and "expired" in refused.json()["error"]["message"]
