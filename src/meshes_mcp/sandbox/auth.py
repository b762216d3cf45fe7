"""Credential checks exactly as documented (reference §2).

Machine JWT (`Authorization: Bearer <jwt>`): header `alg` HS256 and `kid` = a known access key;
signature = HMAC-SHA256 keyed with that key's secret; claims `iss` = `urn:meshes:m2m:<access key>`,
`aud` = `meshes-api`, `org` = the key's organisation, `iat` and `exp` present, not expired and
`exp - iat` ≤ 60 s. Clock-skew tolerance is undocumented: we allow 5 s on `exp` and `iat`.

Publishable key (`X-Meshes-Publishable-Key`): accepted only where the endpoint allows it
(`POST /events`, `POST /events/bulk`); it identifies one workspace.

Every refusal is a 401 whose message says what to fix; secrets and tokens are never echoed.

Bounds (undocumented upstream; ours): a publishable key longer than 200 characters, an access key
(`kid`) longer than 200 or a bearer token longer than 8 KiB is refused as malformed before any lookup,
and the lookup caches keep at most `CACHE_SIZE` entries each (least recently used dropped), so bogus
keys cannot grow memory. `aud` must be the string "meshes-api": PyJWT would also take a list holding it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from meshes_mcp.sandbox.errors import ApiError, unauthorized
from meshes_mcp.sandbox.store import Store

AUDIENCE = "meshes-api"
ISSUER_PREFIX = "urn:meshes:m2m:"
MAX_LIFETIME = 60
LEEWAY = 5
PUBLISHABLE_HEADER = "x-meshes-publishable-key"
MAX_KEY_LENGTH = 200  # real keys: publishable ~60 characters, access keys 24
MAX_TOKEN_LENGTH = 8192
_MISSING = object()


class _BoundedCache:
    """A least-recently-used dict of at most `size` lookups (misses included)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def lookup(self, key: str, load: Any) -> Any:
        value = self._items.pop(key, _MISSING)
        if value is _MISSING:
            value = load(key)
        self._items[key] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return value


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "machine" | "publishable"
    org_id: str
    access_key: str | None = None
    workspace_id: str | None = None

    @property
    def created_by(self) -> str:
        if self.kind == "machine" and self.access_key:
            # Recognisable but shortened: an access key is not a secret, yet records need not repeat it.
            return f"machine_key:{self.access_key[:7]}…{self.access_key[-4:]}"
        return "publishable_key"


class Authenticator:
    CACHE_SIZE = 1024

    def __init__(self, store: Store) -> None:
        self.store = store
        # Keys are never changed or removed, only added (a new organisation) with fresh random values, so a
        # cached miss cannot hide a key made later, here or by another process; cache lookups, boundedly.
        self._keys = _BoundedCache(self.CACHE_SIZE)
        self._publishable = _BoundedCache(self.CACHE_SIZE)

    def _machine_key(self, access_key: str) -> dict[str, Any] | None:
        key: dict[str, Any] | None = self._keys.lookup(access_key, self.store.machine_key)
        return key

    def authenticate(self, headers: Any, allow_publishable: bool) -> Principal:
        authorization = headers.get("authorization")
        if authorization:
            return self._machine(authorization)
        publishable = headers.get(PUBLISHABLE_HEADER)
        if publishable:
            if not allow_publishable:
                raise unauthorized(
                    "publishable keys are accepted only by POST /api/v1/events and POST /api/v1/events/bulk; "
                    "call this endpoint with a machine JWT (Authorization: Bearer <token>)"
                )
            return self._publishable_key(publishable)
        hint = " or an X-Meshes-Publishable-Key header" if allow_publishable else ""
        raise unauthorized(f"missing credentials: send Authorization: Bearer <machine JWT>{hint}")

    def _publishable_key(self, key: str) -> Principal:
        if len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            raise unauthorized("malformed publishable key: copy it from GET /api/v1/workspaces/{workspace_id}")
        workspace = self._publishable.lookup(key, self.store.workspace_by_publishable_key)
        if workspace is None:
            raise unauthorized("unknown publishable key: copy it from GET /api/v1/workspaces/{workspace_id}")
        return Principal("publishable", workspace["org_id"], workspace_id=workspace["id"])

    def _machine(self, authorization: str) -> Principal:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("the Authorization header must be 'Bearer <machine JWT>'")
        if len(token) > MAX_TOKEN_LENGTH:
            raise unauthorized("the bearer token is not a well-formed JWT (far too long)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise unauthorized("the bearer token is not a well-formed JWT") from None
        if header.get("alg") != "HS256":
            raise unauthorized("the JWT must be signed with alg HS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KEY_LENGTH:
            raise unauthorized("the JWT header must carry kid = your access key")
        key = self._machine_key(kid)
        if key is None:
            raise unauthorized("unknown access key in the JWT kid header")
        try:
            claims = jwt.decode(
                token,
                key["secret_key"],
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER_PREFIX + kid,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "iss", "aud", "org"]},
            )
        except jwt.InvalidSignatureError:
            raise unauthorized("JWT signature does not verify: sign with the secret key of this access key") from None
        except jwt.ExpiredSignatureError:
            raise unauthorized("JWT expired: mint a fresh token (lifetime ≤ 60 s) for each request") from None
        except jwt.InvalidAudienceError:
            raise unauthorized(f'JWT aud must be "{AUDIENCE}"') from None
        except jwt.InvalidIssuerError:
            raise unauthorized(f'JWT iss must be "{ISSUER_PREFIX}<access key>" for the kid access key') from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized(f'JWT is missing the "{exc.claim}" claim') from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("JWT iat is in the future: check the clock of the machine minting tokens") from None
        except jwt.InvalidTokenError as exc:
            raise unauthorized(f"invalid JWT: {type(exc).__name__}") from None
        if claims.get("aud") != AUDIENCE:  # a list holding it passes PyJWT's own check
            raise unauthorized(f'JWT aud must be the string "{AUDIENCE}"')
        if claims.get("org") != key["org_id"]:
            raise unauthorized("JWT org claim does not match the organization of this access key")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            raise unauthorized("JWT iat and exp must be integer seconds since the epoch")
        lifetime = exp - iat
        if lifetime > MAX_LIFETIME:
            raise unauthorized(f"JWT lifetime (exp - iat) is {int(lifetime)} s; the maximum is {MAX_LIFETIME} s")
        return Principal("machine", key["org_id"], access_key=kid)


def require_machine(principal: Principal) -> None:
    if principal.kind != "machine":
        raise ApiError(401, "this endpoint needs a machine JWT")
