"""Credentials: the HS256 machine token minted per request, and the publishable key.

The token is exactly what the Meshes docs prescribe: header `{alg: HS256, typ: JWT, kid: <access
key>}`, claims `iss = urn:meshes:m2m:<access key>`, `aud = meshes-api`, `org`, `iat`, and
`exp = iat + 30 s` (the API refuses lifetimes over 60 s). A fresh one is minted for every request,
as every official client does, so no token is ever cached or logged.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

AUDIENCE = "meshes-api"
TOKEN_LIFETIME_SECONDS = 30
PUBLISHABLE_KEY_HEADER = "X-Meshes-Publishable-Key"


def issuer_for(access_key: str) -> str:
    return f"urn:meshes:m2m:{access_key}"


@dataclass(frozen=True, repr=False)
class MachineKey:
    """An organisation's machine key. `repr` is masked so it never leaks into logs or tracebacks."""

    access_key: str
    secret_key: str
    organization_id: str

    def __repr__(self) -> str:
        return f"MachineKey(access_key={mask(self.access_key)}, organization_id={self.organization_id})"

    def mint(self, *, now: float | None = None, lifetime: int = TOKEN_LIFETIME_SECONDS) -> str:
        import jwt  # deferred: only calls that reach the API pay for it

        issued = int(now if now is not None else time.time())
        claims = {
            "iss": issuer_for(self.access_key),
            "aud": AUDIENCE,
            "org": self.organization_id,
            "iat": issued,
            "exp": issued + lifetime,
        }
        return jwt.encode(claims, self.secret_key, algorithm="HS256", headers={"kid": self.access_key, "typ": "JWT"})

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.mint()}"}


def mask(secret: str | None) -> str:
    """Show just enough of a credential to recognise it: `mk_ab…(26)`."""
    if not secret:
        return "(not set)"
    return f"{secret[:5]}…({len(secret)})"


# The formats the official Node client checks before any request (see the API reference); the Go client
# only requires the values to be present. Checking them here turns a typo into one clear line instead
# of a 401 that says nothing about which value was wrong. Lengths are capped so a header or variable can
# never make us hold or hash megabytes.
ACCESS_KEY_FORMAT = re.compile(r"mk_[A-Za-z0-9_-]{22,253}")
SECRET_KEY_FORMAT = re.compile(r"[A-Za-z0-9_-]{43,512}")
UUID_FORMAT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
CREDENTIAL_RULES = {
    "access_key": (ACCESS_KEY_FORMAT, "mk_ followed by at least 22 of A-Z a-z 0-9 _ -", "mk_abcdefghijklmnopqrstuv"),
    "secret_key": (SECRET_KEY_FORMAT, "at least 43 of A-Z a-z 0-9 _ -", "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"),
    "org_id": (UUID_FORMAT, "a UUID", "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b"),
    "workspace_id": (UUID_FORMAT, "a UUID", "9b2e7c1a-3d4f-4a5b-8c6d-7e8f9a0b1c2d"),
}


def credential_problems(values: dict[str, str | None], names: dict[str, str]) -> list[str]:
    """One line per malformed credential, naming it as the caller knows it (`names`: field → variable or
    header name). Values are never quoted, not even in part: these lines reach logs and HTTP answers."""
    problems = []
    for field, value in values.items():
        if value is None:
            continue
        pattern, rule, example = CREDENTIAL_RULES[field]
        if not pattern.fullmatch(value):
            problems.append(f"{names[field]} must be {rule}, e.g. {example}")
    return problems
