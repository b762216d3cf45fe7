"""Where deliveries go: real webhooks over HTTP, and simulated destinations for every other integration.

Webhook requests (reference §7; the undocumented parts chosen here):
- metadata keys: url, http_method (POST|PUT|PATCH), payload_mode (wrapped|raw), auth_scheme
  (none|basic|bearer|custom_header) with auth_username/auth_password, auth_token or
  auth_header_name/auth_header_value, signing_algorithm (none|sha256|sha512) with signing_secret and
  signing_header (default X-Meshes-Signature), custom_headers (a JSON object, or its JSON text, of
  ≤ 5 static headers) and skip_url_test ("true"|"false");
- wrapped body: `{uuid, event, resource, resource_id, payload, time_created, time_sent}` (epoch ms);
  raw body: the payload only;
- headers on every request, both modes: X-Meshes-Event-Id, X-Meshes-Event, X-Meshes-Resource,
  X-Meshes-Resource-Id (when set), X-Meshes-Timestamp (epoch ms, equal to `time_sent`),
  X-Meshes-Delivery-Id (the rule event id: stable across retries, a receiver's deduplication key)
  and X-Meshes-Attempt (1, 2, …);
- signature: HMAC over the exact body bytes, hex, sent as `sha256=<hex>` / `sha512=<hex>` in the
  signing header; the timestamp is not part of the signed string;
- outcome: 2xx/3xx delivered (redirects are not followed); 401/403 auth_failed and 4xx
  rejected_client_error (neither retried); 408 timeout and 429 rate_limited (retried; Retry-After
  honoured up to the backoff cap); 5xx rejected_server_error, timeouts and connection errors
  retried.

Simulated destinations fail on data, never on hidden switches:
- an inactive connection (`active=false`) → auth_failed without any request;
- a credential the provider rejects: any password-type (or secret-named) metadata value starting
  with "invalid" (case-insensitive) → auth_failed (HTTP 401), and the connection becomes inactive
  with inactive_reason `authentication_invalid` until its metadata is updated;
- a rule whose `id` is not in the connection's live action data, or whose `value` is not one of the
  property's options → rejected_client_error (HTTP 404 / 400), naming the id and the collection;
- a payload that cannot fill a required destination field (e.g. no `email` for a CRM) through the
  connection's default mapping → mapping_error (no request is made).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote, unquote, urlsplit

import httpx2

from meshes_mcp.api.catalog import Catalog, IntegrationSpec, validate_rule_metadata
from meshes_mcp.sandbox import provider_data
from meshes_mcp.sandbox.bodies import plain_json
from meshes_mcp.sandbox.clock import new_id, parse_iso
from meshes_mcp.sandbox.mapping import apply_mapping, resolve_path
from meshes_mcp.sandbox.queue import Job
from meshes_mcp.sandbox.store import Store

log = logging.getLogger("meshes_mcp.sandbox")

REDACTED = "********"
CAPTURE_LIMIT = 4096  # bytes of a response body kept for response-details
USER_AGENT = "Meshes-Sandbox/1.0 (+meshes-mcp)"
DEFAULT_SIGNING_HEADER = "X-Meshes-Signature"
RETRYABLE = frozenset({"rejected_server_error", "rate_limited", "timeout", "network_error", "internal_error"})

# Metadata keys whose values are credentials even when the catalogue does not mark them password.
SECRET_NAME = re.compile(r"(api_?key|apikey|secret|token|password|passwd|private_?key|credential)", re.I)
# Metadata values sent as credentials whatever their key looks like.
CREDENTIAL_FIELDS = ("auth_token", "auth_password", "auth_header_value", "signing_secret")
# Sent verbatim in a header (or the request line): visible ASCII and spaces only, as HTTP/1.1 carries them.
HEADER_TEXT_FIELDS = ("auth_header_name", "auth_header_value", "auth_token", "signing_header")
# Base64-encoded into the Authorization header, or IDNA/percent-encoded into the request line: any text,
# but no control characters.
NO_CONTROL_FIELDS = ("url", "auth_username", "auth_password")
_HEADER_TEXT = re.compile(r"[\x20-\x7e]*")
_NO_CONTROL = re.compile(r"[^\x00-\x1f\x7f-\x9f]*")
HEADER_TEXT_MSG = (
    "must be printable ASCII without control characters (CR, LF, NUL, tab): remove the line break a "
    'paste often adds, e.g. "sk_live_abc123"'
)
NO_CONTROL_MSG = (
    "must not contain control characters (CR, LF, NUL, tab): remove the line break a paste often adds, "
    'e.g. "s3cret-pass"'
)
CUSTOM_HEADERS_EXAMPLE = '{"X-Team": "growth"}'
SCRUBBED = "[redacted]"
# Captured headers whose values are withheld from response-details.
SENSITIVE_HEADER = re.compile(r"(authorization|cookie|token|secret|signature|api[-_]?key|password|session|auth)", re.I)

# Rules cannot be edited through the API, so a retry re-runs the same metadata: say both ways out.
NOT_RETRIED_PICK = (
    " (not retried: restore it at the provider and retry, or create a rule with an existing one and emit again)"
)


@dataclass(slots=True)
class Outcome:
    code: str
    http_status: int | None
    message: str
    response: dict[str, Any] | None = None
    retry_after: float | None = None
    deactivate: str | None = None  # inactive_reason to put on the connection

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


class Scrubber:
    """Masks every secret value a connection holds wherever it shows up in text we keep or return,
    whatever key it came from and whatever exception text carried it. Besides the exact value it
    masks the forms error messages quote: stripped of surrounding whitespace (a pasted token's CR/LF),
    each line, repr-escaped (`b'key_…\\r\\n'`) and percent-encoded (URL userinfo). Values shorter
    than `MIN_SECRET` characters are left alone: masking them would shred ordinary words."""

    MIN_SECRET = 4

    def __init__(self, values: set[str] | frozenset[str] = frozenset()) -> None:
        forms: set[str] = set()
        for value in values:
            forms |= {
                value,
                value.strip(),
                value.encode("unicode_escape").decode("ascii"),
                repr(value.encode("utf-8", "backslashreplace"))[2:-1],
                quote(value, safe=""),
                quote(value, safe="!$&'()*+,;=:"),
            }
            forms |= {line.strip() for line in value.splitlines()}
        self.forms = sorted((f for f in forms if len(f) >= self.MIN_SECRET), key=len, reverse=True)

    def text(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, SCRUBBED)
        return text

    def deep(self, value: Any) -> Any:
        """The same for every string of a JSON-like value (captured responses)."""
        if not self.forms:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.deep(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        return value

    def outcome(self, outcome: Outcome) -> Outcome:
        outcome.message = self.text(outcome.message)
        if outcome.response is not None:
            outcome.response = self.deep(outcome.response)
        return outcome


@dataclass(slots=True)
class WebhookRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    secret_headers: set[str] = field(default_factory=set)
    # Credential values sent with the request: a receiver that echoes its request back (debug endpoints,
    # some 401 pages) would otherwise put them in the captured body.
    scrubber: Scrubber = field(default_factory=Scrubber)

    def scrub(self, text: str) -> str:
        return self.scrubber.text(text)


# -- credentials and redaction --------------------------------------------------------------------


def secret_keys(spec: IntegrationSpec | None, metadata: dict[str, Any]) -> list[str]:
    """Metadata keys holding credentials: password-type auth fields, plus any secret-named key."""
    password = {f.key for f in (spec.authentication.fields or []) if f.type == "password"} if spec else set()
    return [k for k in metadata if k in password or SECRET_NAME.search(k)]


def redact_url(url: Any) -> Any:
    """`https://user:pw@host/…` → `https://user:********@host/…`: the password of URL userinfo is a credential."""
    if not isinstance(url, str) or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{userinfo.partition(':')[0]}:{REDACTED}@{host}").geturl()


def _header_map(raw: Any) -> dict[str, Any] | None:
    try:
        headers = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, RecursionError):
        return None
    return headers if isinstance(headers, dict) else None


def _same_form(original: Any, headers: dict[str, Any]) -> Any:
    """custom_headers come as an object or as its JSON text: answer in the form given."""
    return json.dumps(headers) if isinstance(original, str) else headers


def redact_custom_headers(raw: Any) -> Any:
    """Static webhook headers carry API keys more often than not: names shown, every value masked."""
    headers = _header_map(raw)
    if headers is None:
        return raw
    return _same_form(raw, {k: (REDACTED if v not in (None, "") else v) for k, v in headers.items()})


def redact_metadata(spec: IntegrationSpec | None, metadata: dict[str, Any]) -> dict[str, Any]:
    hidden = set(secret_keys(spec, metadata))
    shown = {k: (REDACTED if k in hidden and v not in (None, "") else v) for k, v in metadata.items()}
    if "url" in shown:
        shown["url"] = redact_url(shown["url"])
    if "custom_headers" in shown:
        shown["custom_headers"] = redact_custom_headers(shown["custom_headers"])
    return shown


def keep_redacted(spec: IntegrationSpec | None, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """On update, a credential sent back as the redaction mask keeps its stored value, so a client can
    PUT what it read without wiping the secrets (a URL read with its password masked, likewise)."""
    hidden = set(secret_keys(spec, new))
    kept = {k: (old.get(k) if k in hidden and v == REDACTED and k in old else v) for k, v in new.items()}
    if "url" in kept and kept["url"] != old.get("url") and kept["url"] == redact_url(old.get("url")):
        kept["url"] = old["url"]
    given, stored = _header_map(kept.get("custom_headers")), _header_map(old.get("custom_headers"))
    if given is not None and stored is not None and REDACTED in given.values():
        restored = {k: (stored[k] if v == REDACTED and k in stored else v) for k, v in given.items()}
        kept["custom_headers"] = _same_form(kept["custom_headers"], restored)
    return kept


def _userinfo(url: Any) -> set[str]:
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return set()
    found = {parts.username or "", parts.password or ""}
    return {unquote(v) for v in found if v} | {v for v in found if v}


def connection_secrets(spec: IntegrationSpec | None, metadata: dict[str, Any]) -> set[str]:
    """Every credential value a connection holds: password-type and secret-named metadata, the
    header-bound auth values, custom header values, URL userinfo and the Basic pair it turns into."""
    values = {str(metadata[k]) for k in secret_keys(spec, metadata) if metadata.get(k) not in (None, "")}
    values |= {str(metadata[k]) for k in CREDENTIAL_FIELDS if metadata.get(k) not in (None, "")}
    values |= {v for v in custom_headers(metadata).values() if v}
    values |= _userinfo(metadata.get("url", ""))
    if metadata.get("auth_password"):
        pair = f"{metadata.get('auth_username', '')}:{metadata.get('auth_password', '')}".encode()
        values.add(base64.b64encode(pair).decode())
    return values


def header_field_problems(metadata: dict[str, Any]) -> list[tuple[str, str]]:
    """Values that end up in HTTP request headers (or the request line) must be sendable: a pasted token's
    trailing CR/LF would otherwise fail every delivery with the token quoted in the error. Run before the
    catalogue's checks, which cannot parse a custom_headers text nested thousands of levels deep."""
    problems = [
        (f"metadata.{key}", HEADER_TEXT_MSG if key in HEADER_TEXT_FIELDS else NO_CONTROL_MSG)
        for key in (*HEADER_TEXT_FIELDS, *NO_CONTROL_FIELDS)
        if isinstance(metadata.get(key), str)
        and not (_HEADER_TEXT if key in HEADER_TEXT_FIELDS else _NO_CONTROL).fullmatch(metadata[key])
    ]
    raw = metadata.get("custom_headers")
    headers = raw
    if isinstance(raw, str):
        try:
            headers = json.loads(raw)
        except RecursionError:
            return [
                *problems,
                (
                    "metadata.custom_headers",
                    f"nests far too deeply: must be a flat JSON object, e.g. {CUSTOM_HEADERS_EXAMPLE}",
                ),
            ]
        except ValueError:
            return problems  # not JSON: the catalogue's check names the expected shape
    if isinstance(headers, dict):
        for name, value in headers.items():
            if not _HEADER_TEXT.fullmatch(str(name)):
                problems.append(
                    (
                        "metadata.custom_headers",
                        "a header name holds control or non-ASCII characters: "
                        f"use letters, digits and -, e.g. {CUSTOM_HEADERS_EXAMPLE}",
                    )
                )
            elif isinstance(value, str) and not _HEADER_TEXT.fullmatch(value):
                problems.append((f"metadata.custom_headers.{name}", HEADER_TEXT_MSG))
    return problems


def _redact_headers(headers: Any, also: set[str] = frozenset()) -> dict[str, str]:  # type: ignore[assignment]
    lowered = {h.lower() for h in also}
    return {k: ("[redacted]" if SENSITIVE_HEADER.search(k) or k.lower() in lowered else v) for k, v in headers.items()}


def _capture(status: int, headers: Any, body: bytes, total: int, request: WebhookRequest | None) -> dict[str, Any]:
    return {
        "status": status,
        "headers": _redact_headers(dict(headers)),
        "body": _scrubbed(body[:CAPTURE_LIMIT].decode("utf-8", errors="replace"), request),
        "body_truncated": total > CAPTURE_LIMIT,
        "body_size": total,
        "request": None
        if request is None
        else {
            "method": request.method,
            "url": request.scrub(request.url),
            "headers": _redact_headers(request.headers, request.secret_headers),
            "body_size": len(request.body),
        },
    }


def _scrubbed(text: str, request: WebhookRequest | None) -> str:
    return request.scrub(text) if request is not None else text


# -- webhook requests -----------------------------------------------------------------------------


def custom_headers(metadata: dict[str, Any]) -> dict[str, str]:
    raw = metadata.get("custom_headers")
    if not raw:
        return {}
    try:
        headers = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, RecursionError):
        return {}  # refused on save; a row stored before that check sends no custom headers
    return {str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}


def build_webhook_request(
    metadata: dict[str, Any],
    event: dict[str, Any],
    delivery_id: str,
    attempt: int,
    extra_headers: dict[str, str] | None = None,
) -> WebhookRequest:
    sent_ms = int(time.time() * 1000)
    created_ms = int(parse_iso(event["created_at"]) * 1000)
    if (metadata.get("payload_mode") or "wrapped") == "raw":
        document: Any = event["payload"]
    else:
        document = {
            "uuid": event["id"],
            "event": event["event"],
            "resource": event.get("resource"),
            "resource_id": event.get("resource_id"),
            "payload": event["payload"],
            "time_created": created_ms,
            "time_sent": sent_ms,
        }
    try:
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, UnicodeEncodeError):  # an event stored before ingest refused NaN and lone surrogates
        body = json.dumps(plain_json(document), separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Meshes-Event-Id": event["id"],
        "X-Meshes-Event": event["event"],
        "X-Meshes-Timestamp": str(sent_ms),
        "X-Meshes-Delivery-Id": delivery_id,
        "X-Meshes-Attempt": str(attempt),
    }
    if event.get("resource"):
        headers["X-Meshes-Resource"] = event["resource"]
    if event.get("resource_id"):
        headers["X-Meshes-Resource-Id"] = event["resource_id"]
    headers.update(extra_headers or {})
    headers.update(custom_headers(metadata))
    secret: set[str] = set()
    scheme = metadata.get("auth_scheme") or "none"
    if scheme == "basic":
        pair = f"{metadata.get('auth_username', '')}:{metadata.get('auth_password', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    elif scheme == "bearer":
        headers["Authorization"] = f"Bearer {metadata.get('auth_token', '')}"
    elif scheme == "custom_header" and metadata.get("auth_header_name"):
        headers[metadata["auth_header_name"]] = str(metadata.get("auth_header_value", ""))
        secret.add(metadata["auth_header_name"])
    algorithm = metadata.get("signing_algorithm") or "none"
    if algorithm in ("sha256", "sha512") and metadata.get("signing_secret"):
        digest = hmac.new(str(metadata["signing_secret"]).encode(), body, algorithm).hexdigest()
        name = metadata.get("signing_header") or DEFAULT_SIGNING_HEADER
        headers[name] = f"{algorithm}={digest}"
        secret.add(name)
    method = (metadata.get("http_method") or "POST").upper()
    scrubber = Scrubber(connection_secrets(None, metadata))
    return WebhookRequest(method, str(metadata.get("url", "")), headers, body, secret, scrubber)


def classify_status(status: int) -> tuple[str, bool]:
    """HTTP status → (outcome_code, delivered?)."""
    if 200 <= status < 400:
        return "delivered", True
    if status in (401, 403):
        return "auth_failed", False
    if status == 408:
        return "timeout", False
    if status == 429:
        return "rate_limited", False
    if 400 <= status < 500:
        return "rejected_client_error", False
    return "rejected_server_error", False


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare; the backoff schedule applies


def _host(url: str) -> str:
    """Where a request went, for messages: host and port, never the URL's userinfo."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        netloc = ""
    return netloc.rpartition("@")[2] or "the webhook URL"


async def send_webhook(client: httpx2.AsyncClient, request: WebhookRequest, deadline: float) -> Outcome:
    """One request, finished (status, headers and body) within `deadline` seconds or given up as `timeout`.

    The client's own timeout bounds each read, not the whole answer: a receiver that answers 200 and
    then sends a byte every few seconds would otherwise hold a delivery slot for as long as it likes."""
    try:
        async with asyncio.timeout(deadline):
            return await _send(client, request)
    except TimeoutError:
        return Outcome(
            "timeout", None, f"{_host(request.url)} did not finish answering within the {deadline:g} s deadline"
        )


async def _send(client: httpx2.AsyncClient, request: WebhookRequest) -> Outcome:
    try:
        # Header values outside ASCII (an event or resource named in another script) go out as their UTF-8
        # bytes: the HTTP client would otherwise refuse to encode them and every attempt would fail.
        headers = {k: (v if v.isascii() else v.encode()) for k, v in request.headers.items()}
        # httpx2 takes str and bytes values mixed in one mapping; its annotation lists only one or the other.
        async with client.stream(
            request.method, request.url, headers=cast(Any, headers), content=request.body
        ) as response:
            kept = bytearray()
            total = 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if len(kept) < CAPTURE_LIMIT + 1:
                    kept += chunk[: CAPTURE_LIMIT + 1 - len(kept)]
                if total > 1024 * 1024:  # a runaway body: stop reading, we keep only the start
                    break
            status = response.status_code
            captured = _capture(status, response.headers, bytes(kept), total, request)
            reason = response.reason_phrase or ""
            retry_after = _retry_after(response.headers.get("retry-after"))
    except httpx2.TimeoutException as exc:
        return Outcome("timeout", None, f"no response from {_host(request.url)} in time ({type(exc).__name__})")
    except (httpx2.LocalProtocolError, httpx2.InvalidURL, httpx2.UnsupportedProtocol, UnicodeEncodeError) as exc:
        # The connection's own settings cannot make a valid request (a header value with a line break, saved
        # before such values were refused): retrying cannot help. Scrubbed before cutting, so no prefix of a
        # secret survives the cut.
        detail = request.scrub(str(exc))[:160]
        return Outcome(
            "rejected_client_error",
            None,
            f"no request could be sent to {_host(request.url)}: {type(exc).__name__} {detail} (not retried: "
            "fix the connection's URL or headers, then retry)",
        )
    except httpx2.TransportError as exc:
        detail = request.scrub(str(exc))[:160]
        return Outcome(
            "network_error", None, f"could not reach {_host(request.url)}: {type(exc).__name__} {detail}".strip()
        )
    code, delivered = classify_status(status)
    where = _host(request.url)
    if delivered:
        message = f"delivered: {where} answered HTTP {status} {reason}".rstrip()
    else:
        message = f"{where} answered HTTP {status} {reason}".rstrip()
        if code in ("auth_failed", "rejected_client_error"):
            message += " (not retried: fix the receiver or the connection's auth, then retry)"
    return Outcome(code, status, message, captured, retry_after=retry_after)


# -- simulated providers ---------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


def render_template(template: str, payload: dict[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        found = resolve_path(payload, match.group(1))
        if isinstance(found, str | int | float | bool):
            return str(found)
        return ""

    return _PLACEHOLDER.sub(value, template)


def _simulated_response(status: int, body: dict[str, Any], operation: str, provider: str) -> dict[str, Any]:
    text = json.dumps(body, separators=(",", ":")).encode()
    captured = _capture(status, {"content-type": "application/json", "x-request-id": new_id()}, text, len(text), None)
    captured["request"] = {"simulated": True, "provider": provider, "operation": operation}
    captured["simulated"] = True
    return captured


class Destinations:
    """Delivers one claimed job and says how it went; never raises for a destination's failure."""

    def __init__(self, catalog: Catalog, store: Store, client: httpx2.AsyncClient, deadline: float) -> None:
        self.deadline = deadline  # seconds a webhook request may take from start to the last body byte
        self.catalog = catalog
        self.records = {r["type"]: r for r in catalog.records()}
        self.store = store
        self.client = client

    async def deliver(self, job: Job) -> Outcome:
        """Scrubbed of the connection's secrets, whatever path produced the outcome."""
        conn = job.connection or {}
        scrubber = Scrubber(connection_secrets(self.catalog.get(conn.get("type", "")), conn.get("metadata") or {}))
        try:
            outcome = await self._deliver(job)
        except Exception as exc:
            # Logged without the traceback's frames' text: an exception message may quote a credential.
            log.error(
                "delivery %s failed unexpectedly: %s",
                job.rule_event_id,
                scrubber.text(f"{type(exc).__name__}: {exc}")[:500],
            )
            outcome = Outcome("internal_error", None, f"internal error while delivering: {type(exc).__name__}")
        return scrubber.outcome(outcome)

    async def _deliver(self, job: Job) -> Outcome:
        conn = job.connection
        if conn is None or conn.get("deleted_at"):
            return Outcome("rejected_client_error", None, "the rule's connection was deleted; nothing to deliver to")
        if not conn["active"]:
            return self._inactive(conn)
        if job.integration_type == "webhook":
            request = build_webhook_request(conn["metadata"], job.event, job.rule_event_id, job.attempt_number)
            return await send_webhook(self.client, request, self.deadline)
        return self._simulated(job, conn)

    def _inactive(self, conn: dict[str, Any]) -> Outcome:
        spec = self.catalog.get(conn["type"])
        name = spec.name if spec else conn["type"]
        reason = conn.get("inactive_reason") or "inactive"
        fix = (
            "update the connection's credentials"
            if reason == "authentication_invalid"
            else f"reconnect {name} in the Meshes dashboard"
        )
        return Outcome(
            "auth_failed",
            None,
            f'{name} connection "{conn["name"]}" is inactive ({reason}): nothing was sent; {fix}, then retry',
        )

    def _simulated(self, job: Job, conn: dict[str, Any]) -> Outcome:
        spec = self.catalog.get(conn["type"])
        record = self.records.get(conn["type"])
        if spec is None or record is None:
            return Outcome("internal_error", None, f"integration {conn['type']} is not in the catalogue")
        name = spec.name or spec.type
        metadata = job.rule_metadata
        action_key = str(metadata.get("action", ""))
        operation = f"{spec.type}.{action_key or 'unknown'}"

        for key in secret_keys(spec, conn["metadata"]):
            value = conn["metadata"].get(key)
            if isinstance(value, str) and value.lower().startswith("invalid"):
                body = {"status": 401, "error": "unauthorized", "message": f"{name} rejected the credentials"}
                return Outcome(
                    "auth_failed",
                    401,
                    f"{name} rejected the connection's credentials (metadata.{key}) with HTTP 401; the connection is "
                    "now inactive (authentication_invalid): update it with a valid value, then retry",
                    _simulated_response(401, body, operation, spec.type),
                    deactivate="authentication_invalid",
                )

        problems = [p for p in validate_rule_metadata(spec, metadata) if p.param != "metadata"]
        if problems:
            text = "; ".join(f"{p.param} {p.msg}" for p in problems)
            body = {"status": 400, "error": "bad_request", "message": text}
            return Outcome(
                "rejected_client_error",
                400,
                f"{name} refused the rule's metadata: {text}",
                _simulated_response(400, body, operation, spec.type),
            )

        action = spec.actions[action_key]
        live = provider_data.action_data(record, conn["id"])
        targets: list[str] = []
        for item in action.picks:
            collection = live.get(item.key or "", [])
            chosen = str(metadata.get(item.metadata_key, ""))
            match = next((i for i in collection if str(i.get("id")) == chosen), None)
            noun = (item.noun or action.noun or item.key or "item").rstrip("s")
            if match is None:
                known = ", ".join(f"{i['id']} {i.get('name', '')}".strip() for i in collection[:20]) or "none"
                text = (
                    f'{noun} "{chosen}" does not exist in {item.key} of {name} connection "{conn["name"]}"; '
                    f"{item.key} are: {known}"
                )
                body = {"status": 404, "error": "not_found", "message": f"{noun} {chosen} not found"}
                return Outcome(
                    "rejected_client_error",
                    404,
                    text + NOT_RETRIED_PICK,
                    _simulated_response(404, body, operation, spec.type),
                )
            option_field = item.option_field
            if option_field:
                options = [str(o.get("value")) for o in match.get(item.options_key) or []]
                picked = str(metadata.get(option_field, ""))
                if picked not in options:
                    text = (
                        f'"{picked}" is not an option of {noun} {match["id"]} ({match.get("name")}); options '
                        f"are: {', '.join(options)}"
                    )
                    body = {"status": 400, "error": "invalid_option", "message": text}
                    return Outcome(
                        "rejected_client_error",
                        400,
                        text + NOT_RETRIED_PICK,
                        _simulated_response(400, body, operation, spec.type),
                    )
            targets.append(f"{noun} {match['id']} ({match.get('name')})")

        payload = job.event["payload"]
        fields = provider_data.field_defs(record, conn["id"])
        stored = self.store.get_mapping(conn["id"])
        schema = stored["schema"] if stored else provider_data.generated_schema(fields)
        mapped, warnings, fatal = apply_mapping(schema, payload)
        if fatal:
            return Outcome("mapping_error", None, f"field mapping failed: {fatal} (on_error fail_action)")
        missing = [f["key"] for f in fields if (f.get("constraints") or {}).get("required") and f["key"] not in mapped]
        if missing:
            which = ", ".join(missing)
            return Outcome(
                "mapping_error",
                None,
                f"{name} needs {which} but the event gives none through the connection's default mapping: "
                f"include payload.{missing[0]} (or map it), then retry",
            )

        result: dict[str, Any] = {"ok": True, "action": action_key, "contact": mapped}
        if metadata.get("template"):
            result["text"] = render_template(str(metadata["template"]), payload)
        if metadata.get("title"):
            result["title"] = render_template(str(metadata["title"]), payload)
        if spec.type == "slack":
            result = {
                "ok": True,
                "channel": metadata.get("id"),
                "ts": f"{time.time():.6f}",
                "message": {"text": result.get("text", "")},
            }
        target = f" to {', '.join(targets)}" if targets else ""
        message = f"delivered to {name}: {action.label or action_key}{target}"
        if warnings:
            message += "; mapping warnings: " + "; ".join(warnings)
        return Outcome("delivered", 200, message, _simulated_response(200, result, operation, spec.type))

    async def test_url(self, metadata: dict[str, Any]) -> str | None:
        """The save-time URL test Meshes runs unless skip_url_test is "true": a signed `meshes.url_test`
        event (header X-Meshes-Test: true). Returns what went wrong, or None."""
        event: dict[str, Any] = {
            "id": new_id(),
            "event": "meshes.url_test",
            "resource": None,
            "resource_id": None,
            "payload": {"test": True, "message": "Meshes webhook URL test"},
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        }
        request = build_webhook_request(metadata, event, event["id"], 1, {"X-Meshes-Test": "true"})
        outcome = request.scrubber.outcome(await send_webhook(self.client, request, self.deadline))
        if outcome.code == "delivered":
            return None
        return (
            f"the URL test request failed ({outcome.code}): {outcome.message}; fix the receiver or set "
            'skip_url_test to "true"'
        )
