"""Several organisations in one sandbox (outside the Meshes API, which has no such endpoint): each one is
a separate tenant with its own machine key, Demo workspace, publishable key and OAuth connections, seeded
exactly like the first (`meshes_mcp.sandbox.seed.seed_organization`).

- `POST /sandbox/organizations`, optional body `{"name": "Acme"}`: 201 with `organization_id`,
  `access_key`, `secret_key`, `workspace_id`, `publishable_key` and `name`.
- `meshes-mcp sandbox add-org [--name N] [--data-dir D]`: the same, written straight into the data
  directory's database, so it works whether the sandbox is running (it sees the new keys at once: key
  lookups read the shared database) or stopped.

Choices (the real API has no equivalent to copy):
- The endpoint answers only a client on this machine: a 403, checked before anything else, when the peer
  address is not loopback or the request went through a proxy (it carries `Forwarded`, `X-Forwarded-For`
  or `X-Real-IP`: the real client may be anywhere, and a remote client could write 127.0.0.1 there
  itself if uvicorn were told to trust such headers from everyone).
- It also needs a machine JWT of an organisation already in the sandbox (the one in sandbox.json does),
  like the practice endpoints: a web page open in a browser on this machine cannot add a header
  cross-origin, so it cannot create organisations, and only a holder of a secret gets a new one.
- At most `ORGANIZATION_LIMIT` organisations per sandbox (the first included), counted inside the write
  transaction so two processes cannot pass it together; beyond it a 409 (a fixed limit, not a rate: 429
  would invite a retry that can never succeed) that says to use another data directory.
- Names are 1–100 characters of printable text, not blank; they need not be unique (two companies may
  share a name; the id tells them apart). Omitted or null: "Sandbox Organization <n>".
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sqlite3
import unicodedata
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshes_mcp.sandbox.app import Sandbox, api
from meshes_mcp.sandbox.auth import Principal
from meshes_mcp.sandbox.bodies import read_json
from meshes_mcp.sandbox.errors import ApiError, bad_request, conflict
from meshes_mcp.sandbox.seed import FIRST_ORGANIZATION, SEED_KEY, seed_organization
from meshes_mcp.sandbox.store import Store

log = logging.getLogger("meshes_mcp.sandbox")

ORGANIZATION_LIMIT = 100
NAME_LIMIT = 100
NAME_EXAMPLE = '"Acme"'
# Characters a name may not hold: controls, invisible format characters (bidi overrides, zero-width),
# line and paragraph separators, surrogates, unassigned and private-use code points.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


class OrganizationLimitReached(ValueError):
    """The sandbox already holds `ORGANIZATION_LIMIT` organisations."""


def name_problem(name: Any) -> str | None:
    """Why `name` cannot name an organisation (the rule and an example), or None when it can."""
    if not isinstance(name, str):
        return f"must be a string, e.g. {NAME_EXAMPLE}"
    if not 1 <= len(name) <= NAME_LIMIT:
        return f"must be 1 to {NAME_LIMIT} characters (got {len(name)}), e.g. {NAME_EXAMPLE}"
    if not name.strip():
        return f"must not be blank, e.g. {NAME_EXAMPLE}"
    if any(unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in name):
        return f"must be printable text without control or invisible characters, e.g. {NAME_EXAMPLE}"
    return None


def add_organization(store: Store, name: str | None = None) -> dict[str, Any]:
    """Create a seeded organisation in one transaction; its seed values plus `name`.

    The answer holds the new machine key's secret: the endpoint and the command line show it once and
    nothing else ever does (the store keeps it only to verify JWT signatures)."""
    with store.tx():  # BEGIN IMMEDIATE: the count and the writes see no other writer in between
        count = store.organization_count()
        if count >= ORGANIZATION_LIMIT:
            raise OrganizationLimitReached(
                f"this sandbox already holds {count} organizations, the most it keeps "
                f"({ORGANIZATION_LIMIT}); start another sandbox on a fresh data directory for more"
            )
        chosen = name if name is not None else f"{FIRST_ORGANIZATION} {count + 1}"
        seed = seed_organization(store, chosen)
    log.info("organization %s added (%d of at most %d)", seed["organization_id"], count + 1, ORGANIZATION_LIMIT)
    return {**seed, "name": chosen}


# -- the endpoint ---------------------------------------------------------------------------------


RELAY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def from_this_machine(request: Request) -> bool:
    """Whether the client is loopback (127.0.0.0/8, ::1, or IPv4-mapped 127.x) and talks to us directly."""
    if any(header in request.headers for header in RELAY_HEADERS):
        return False
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _requested_name(body: Any) -> str | None:
    if body is None:
        return None
    if not isinstance(body, dict):
        raise bad_request(
            "the body must be a JSON object", "body", f'must be an object like {{"name": {NAME_EXAMPLE}}}, or empty'
        )
    for key in body:
        if key != "name":
            shown = key.encode("unicode_escape").decode("ascii")[:64]
            raise bad_request(f"unknown field {shown}", shown, "unknown field; allowed: name")
    name = body.get("name")
    if name is None:
        return None
    problem = name_problem(name)
    if problem:
        raise bad_request(f"invalid request: name {problem}", "name", problem)
    return name  # type: ignore[no-any-return]


@api()
async def _create(request: Request, sb: Sandbox, p: Principal) -> Any:
    name = _requested_name(await read_json(request, required=False))
    try:
        created = add_organization(sb.store, name)
    except OrganizationLimitReached as exc:
        raise conflict(str(exc)) from None
    # The only answer that ever shows this secret key: never cached on the way.
    return JSONResponse(created, status_code=201, headers={"cache-control": "no-store"})


async def create_organization(request: Request) -> Response:
    if not from_this_machine(request):
        refusal = ApiError(403, "organizations can be added only from the machine the sandbox runs on (loopback)")
        return JSONResponse(refusal.body(), status_code=403)
    return await _create(request)


ROUTES = [Route("/sandbox/organizations", create_organization, methods=["POST"])]


# -- from a terminal ------------------------------------------------------------------------------


def add_org_from_cli(data_dir: Path, name: str | None) -> dict[str, Any]:
    """`meshes-mcp sandbox add-org`: the organisation, written into `data_dir`'s database (running sandbox
    or not). Raises ValueError with a one-line reason on failure; never creates a database."""
    if name is not None and (problem := name_problem(name)):
        raise ValueError(f"--name {problem}")
    database = Path(data_dir) / "sandbox.db"
    start_first = f"start the sandbox once with `meshes-mcp sandbox --data-dir {data_dir}`"
    if not database.is_file():
        raise ValueError(f"no sandbox data in {data_dir}: {start_first}")
    try:
        store = Store(database)
    except sqlite3.Error as exc:
        raise ValueError(f"cannot open the sandbox database in {data_dir}: {exc}") from None
    try:
        if store.get_meta(SEED_KEY) is None:
            raise ValueError(f"the sandbox in {data_dir} was never started: {start_first}")
        return add_organization(store, name)
    except sqlite3.Error as exc:
        raise ValueError(f"cannot write to the sandbox database in {data_dir}: {exc}") from None
    finally:
        store.close()


def one_line(created: dict[str, Any]) -> str:
    """The answer as one line of JSON (ASCII-escaped: a terminal's encoding cannot break it)."""
    return json.dumps(created, separators=(",", ":"))
