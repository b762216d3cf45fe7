"""First-start seed: an organisation, a machine key, a demo workspace and OAuth connections.

Idempotent: the seed is written once, in one transaction, and remembered in the `meta` table; later
starts read it back. Keys are random per data directory (never fixed values in code).
`seed_organization` is also how further organisations are added (`meshes_mcp.sandbox.organizations`).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from meshes_mcp.sandbox.clock import new_id
from meshes_mcp.sandbox.store import Store

SEED_KEY = "seed"
FIRST_ORGANIZATION = "Sandbox Organization"
DEMO_WORKSPACE = "Demo"
SEEDED_BY = "user:sandbox-owner"
# The OAuth integrations a dashboard user would have connected (they cannot be created through the
# API). Metadata holds only the non-secret account details a dashboard shows; tokens live elsewhere.
OAUTH_CONNECTIONS: list[tuple[str, str, dict[str, str]]] = [
    ("hubspot", "HubSpot", {"portal_id": "48211937", "account_name": "Demo Co"}),
    ("salesforce", "Salesforce", {"instance_url": "https://demo-co.my.salesforce.com", "org_name": "Demo Co"}),
    ("slack", "Slack", {"team_id": "T04DEMO1234", "team_name": "Demo Co"}),
    ("intercom", "Intercom", {"app_id": "demo8k2x", "workspace_name": "Demo Co"}),
    ("zoom", "Zoom", {"account_id": "dEmOaCcT-1", "account_name": "Demo Co"}),
    ("aweber", "AWeber", {"account_id": "1784512", "account_name": "Demo Co"}),
    ("discord", "Discord", {"guild_id": "1187263549812763648", "guild_name": "Demo Co Community"}),
    ("pipedrive", "Pipedrive", {"company_domain": "democo", "company_name": "Demo Co"}),
]


def new_access_key() -> str:
    return "mk_" + secrets.token_urlsafe(18)  # 24 chars of [A-Za-z0-9_-]


def new_secret_key() -> str:
    return secrets.token_urlsafe(48)  # 64 chars of [A-Za-z0-9_-]


def new_publishable_key(org_id: str, workspace_id: str) -> str:
    """`mesh_pub_<org>_<workspace>_<random>`, the shape the events SDK validates."""
    return f"mesh_pub_{org_id[:8]}_{workspace_id[:8]}_{secrets.token_hex(16)}"


def ensure_seed(store: Store) -> dict[str, Any]:
    """The seed values (organization_id, access_key, secret_key, workspace_id, publishable_key)."""
    existing = store.get_meta(SEED_KEY)
    if existing:
        return _seed_values(existing)
    with store.tx():
        # Read again under the write lock: another process starting on this new data directory may have
        # seeded it since; a second seed would be an organisation only that process's sandbox.json knows.
        existing = store.get_meta(SEED_KEY)
        if existing:
            return _seed_values(existing)
        seed = seed_organization(store, FIRST_ORGANIZATION)
        store.set_meta(SEED_KEY, json.dumps(seed))
    return seed


def _seed_values(stored: str) -> dict[str, Any]:
    seed: dict[str, Any] = json.loads(stored)
    return seed


def seed_organization(store: Store, name: str) -> dict[str, Any]:
    """One organisation as a new account holds it: a machine key, the Demo workspace with its publishable
    key and the OAuth connections a dashboard user would have made. Call inside `store.tx()` (the caller
    may add its own rows to the same transaction). Returns the seed values: organization_id, access_key,
    secret_key, workspace_id, publishable_key."""
    org_id = new_id()
    access_key, secret_key = new_access_key(), new_secret_key()
    store.create_org(org_id, name)
    store.add_machine_key(access_key, secret_key, org_id, "Sandbox machine key")
    workspace = store.create_workspace(
        org_id,
        DEMO_WORKSPACE,
        "Demo workspace seeded by the local sandbox",
        new_publishable_key(org_id, "pending0"),
        "Default publishable key",
    )
    # The key embeds the workspace id's prefix, known only now.
    publishable = new_publishable_key(org_id, workspace["id"])
    store.db.execute("UPDATE workspaces SET pub_key=? WHERE id=?", (publishable, workspace["id"]))
    for kind, connection_name, metadata in OAUTH_CONNECTIONS:
        store.create_connection(org_id, workspace["id"], kind, connection_name, metadata, False, SEEDED_BY)
    return {
        "organization_id": org_id,
        "access_key": access_key,
        "secret_key": secret_key,
        "workspace_id": workspace["id"],
        "publishable_key": publishable,
    }
