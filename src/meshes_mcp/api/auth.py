"""Credentials: the HS256 machine token minted per request, and the publishable key.

The token is exactly what the Meshes docs prescribe: header `{alg: HS256, typ: JWT, kid: <access
key>}`, claims `iss = urn:meshes:m2m:<access key>`, `aud = meshes-api`, `org`, `iat`, and
`exp = iat + 30 s` (the API refuses lifetimes over 60 s). A fresh one is minted for every request,
as every official client does, so no token is ever cached or logged.
"""

from __future__ import annotations

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
