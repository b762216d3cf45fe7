"""What a running sandbox tells its clients: where it listens and the seeded credentials."""

from __future__ import annotations

from pydantic import BaseModel


class SandboxInfo(BaseModel):
    """Connection details of a running sandbox (also written to `<data_dir>/sandbox.json`).

    `api_url` includes the version prefix, e.g. `http://127.0.0.1:8787/api/v1` (the form the Node SDK
    uses; clients that append `/api/v1` to a bare host keep a URL that already ends in it).
    """

    api_url: str
    organization_id: str
    access_key: str
    secret_key: str
    workspace_id: str
    publishable_key: str
