"""Compact, redacted results for agents.

Every byte of a result is paid for by the agent, so results are compact JSON with no nulls, and
the same dict is both the structured content and the text (clients feed the model one or the
other). Secrets never leave: credential fields are masked by name and by the integration's
password-type fields, configured secrets are scrubbed by value, and anything shaped like a JWT is
replaced wherever it appears, error messages included.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import weakref
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

from mcp_types import CallToolResult, TextContent

REDACTED = "[redacted]"
# Key names that always hold a credential, whatever the integration says.
SECRET_KEY_NAME = re.compile(
    r"(pass(word)?|secret|token|api_?key|apikey|private_?key|credential|authorization|auth_header_value)$", re.I
)
JWT_SHAPE = re.compile(r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{10,}")
LAUNCH_TOKEN_IN_URL = re.compile(r"([?&](launch|token|access_token)=)[^&#\s]+")
URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
# Credentials quoted in text, e.g. a captured response that echoes the request's Authorization header.
AUTH_CREDENTIAL = re.compile(r"\b(Basic|Bearer)(\s+)[A-Za-z0-9._~+/=-]{6,}", re.I)
# Not password-typed in the catalogue, yet half of a credential: the Basic-auth username.
CREDENTIAL_KEYS = frozenset({"auth_username"})
# Static headers a webhook sends (API keys more often than not): names shown, values masked.
HEADER_MAP_KEYS = frozenset({"custom_headers"})

# An HTTP stack refusing a header quotes the offending value: h11 `Illegal header value b'key_…\r\n'`,
# requests `Invalid … in header value: 'key_…\n'`. The quoted part is dropped (it is usually a credential,
# and may belong to a connection this process never read); the hint says what is wrong instead.
QUOTED_HEADER_ERROR = re.compile(
    r"((?:illegal|invalid)\b[^'\"\n]{0,80}?\bheader\b[^'\"\n]{0,24}?)b?(['\"])(?:\\.|(?!\2)[^\n])*(?:\2|$)", re.I
)
HEADER_ERROR_HINT = (
    "(a header of the connection holds a character HTTP forbids, such as a CR/LF from a pasted value: "
    "update_connection with the clean value)"
)
HEADER_ERROR = re.compile(r"(?:illegal|invalid)\b[^\n]{0,80}?\bheader\b", re.I)

# Values shorter than this would scrub ordinary words; real keys are long.
MIN_SECRET_LENGTH = 8
# Messages get cut (an exception text capped at N characters, a repr shortened in the middle), so a secret
# may appear only as its start or its end: this many characters of either are masked wherever they appear.
SECRET_PREFIX_LENGTH = 10
# Bounded memory for a long-running server: past this many forms the oldest learned are forgotten.
MAX_SECRET_FORMS = 8192
# What APIs show in place of a secret ("********", "••••"): never learned as a secret itself.
MASK_ONLY = re.compile(r"^[*•·xX#.\s-]*$")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
HEADER_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110: a header name that cannot hide a value
URL_SECRET_PARAM = re.compile(r"(token|key|secret|sig|signature|password|auth)", re.I)


def is_secret_value(value: Any) -> bool:
    """Worth learning: long enough to be a credential, and not itself a mask."""
    return (
        isinstance(value, str)
        and len(value) >= MIN_SECRET_LENGTH
        and REDACTED not in value
        and not MASK_ONLY.match(value)
    )


def secret_forms(value: str) -> set[str]:
    """Every way `value` shows up in text we pass on: as is, trimmed, its printable runs (a pasted key
    with a trailing newline), and quoted as Python str/bytes reprs, JSON (also JSON inside JSON) and URLs."""
    forms = {value, value.strip(), *CONTROL_CHARS.split(value)}
    for form in list(forms):
        raw = form.encode("utf-8", "surrogatepass")
        forms.update(
            {
                repr(form)[1:-1],
                repr(form.encode("utf-8", "backslashreplace"))[2:-1],
                json.dumps(form)[1:-1],
                json.dumps(form, ensure_ascii=False)[1:-1],
                json.dumps(json.dumps(form)[1:-1])[1:-1],
                quote(raw, safe=""),
                quote_plus(raw, safe=""),
            }
        )
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def connection_secrets(metadata: Any, secret_keys: frozenset[str] = frozenset()) -> list[str]:
    """The secret values a connection's metadata holds, whatever key they sit under: password-type and
    credential-named fields, custom header values (and names that are not plain header names), URL
    userinfo and token-like query values, and the Basic credential built from username and password."""
    if not isinstance(metadata, dict):
        return []
    found: list[str] = []
    for key, value in metadata.items():
        if key in HEADER_MAP_KEYS:
            found.extend(header_secrets(value))
        elif isinstance(key, str) and (key in secret_keys or SECRET_KEY_NAME.search(key)):
            found.extend(scalar_text(value))
        elif key == "url" and isinstance(value, str):
            found.extend(url_secrets(value))
    username, password = metadata.get("auth_username"), metadata.get("auth_password")
    if isinstance(username, str) and is_secret_value(password):
        found.append(base64.b64encode(f"{username}:{password}".encode("utf-8", "surrogatepass")).decode())
    return [value for value in found if is_secret_value(value)]


def scalar_text(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [str(value)]
    return []


def header_secrets(headers: Any) -> list[str]:
    if isinstance(headers, str):
        try:
            headers = json.loads(headers)
        except ValueError:
            return [headers]  # unreadable: the whole text may be a header line
    if not isinstance(headers, dict):
        return []
    found = [value for value in headers.values() if isinstance(value, str)]
    found += [name for name in headers if isinstance(name, str) and not HEADER_TOKEN.match(name)]
    return found


def url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
        found += [value for name, value in parse_qsl(parts.query) if URL_SECRET_PARAM.search(name)]
    except ValueError:
        return []
    return found


def is_header_error(text: Any) -> bool:
    """Whether a delivery error says a header could not be sent (a control character in its value...)."""
    return isinstance(text, str) and bool(HEADER_ERROR.search(text))


class Redactor:
    """Scrubs secrets from everything the server shows: results, resources and error messages.

    Known secrets (configured keys, and every secret of every connection the server has seen) are masked
    by value in all their quoted forms; JWTs, URL userinfo and token parameters, Basic/Bearer credentials
    and the values HTTP stacks quote in header errors are masked by shape, secrets we never saw included.
    """

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        self._forms: dict[str, None] = {}  # insertion-ordered: the oldest are forgotten first
        self._matchers: tuple[Matcher, Matcher] | None = None
        for value in secret_values:
            self.add(value)

    def add(self, value: str | None) -> None:
        if not is_secret_value(value):
            return
        new = secret_forms(value) - self._forms.keys()  # type: ignore[arg-type]
        if not new:
            return
        self._forms.update(dict.fromkeys(sorted(new)))
        while len(self._forms) > MAX_SECRET_FORMS:
            del self._forms[next(iter(self._forms))]
        self._matchers = None

    def learn_metadata(self, metadata: Any, secret_keys: frozenset[str] = frozenset()) -> None:
        """Remember every secret a connection's metadata holds (as sent by the agent or read back)."""
        for value in connection_secrets(metadata, secret_keys):
            self.add(value)

    def text(self, text: str) -> str:
        text = self._mask_known(text)
        text = QUOTED_HEADER_ERROR.sub(lambda mo: f"{mo.group(1)}{REDACTED} {HEADER_ERROR_HINT}", text)
        text = JWT_SHAPE.sub(REDACTED, text)
        text = URL_USERINFO.sub(lambda mo: mo.group(1) + REDACTED + "@", text)
        text = AUTH_CREDENTIAL.sub(lambda mo: mo.group(1) + mo.group(2) + REDACTED, text)
        return LAUNCH_TOKEN_IN_URL.sub(lambda mo: mo.group(1) + REDACTED, text)

    def _compiled(self) -> tuple[Matcher, Matcher]:
        if self._matchers is None:
            self._matchers = (Matcher(self._forms), Matcher(form[::-1] for form in self._forms))
        return self._matchers

    def _mask_known(self, text: str) -> str:
        """Known secrets, whole or cut: their start (a message cut short) and their end (a repr shortened
        in the middle, as pydantic does) are masked too when at least SECRET_PREFIX_LENGTH long."""
        if not self._forms or len(text) < MIN_SECRET_LENGTH:
            return text
        heads, tails = self._compiled()
        text = heads.mask(text, REDACTED)
        return tails.mask(text[::-1], REDACTED[::-1])[::-1]

    def data(self, value: Any, secret_keys: frozenset[str] = frozenset()) -> Any:
        """Deep copy of `value` with credential fields masked and secret strings scrubbed."""
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if isinstance(key, str) and (key in secret_keys or SECRET_KEY_NAME.search(key)):
                    out[key] = REDACTED if item not in (None, "") else item
                elif key in HEADER_MAP_KEYS and item:
                    out[key] = mask_header_values(item)
                else:
                    out[self.text(key) if isinstance(key, str) else key] = self.data(item, secret_keys)
            return out
        if isinstance(value, list):
            return [self.data(item, secret_keys) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value


class Matcher:
    """Finds where any of `forms` starts in a text, by its first SECRET_PREFIX_LENGTH characters."""

    def __init__(self, forms: Iterable[str]) -> None:
        self.by_head: dict[str, list[str]] = {}
        for form in forms:
            self.by_head.setdefault(form[:SECRET_PREFIX_LENGTH], []).append(form)
        heads = sorted(self.by_head, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(head) for head in heads))

    def mask(self, text: str, mask: str) -> str:
        pieces: list[str] = []
        done = 0
        found = self.pattern.search(text)
        while found is not None:
            start = found.start()
            end = start + max(common_prefix(text, start, form) for form in self.by_head[found.group()])
            pieces += [text[done:start], mask]
            done = end
            found = self.pattern.search(text, end)
        return "".join(pieces) + text[done:] if pieces else text


def common_prefix(text: str, start: int, form: str) -> int:
    """How many leading characters of `form` appear in `text` at `start`."""
    length = 0
    for expected, actual in zip(form, text[start : start + len(form)], strict=False):
        if expected != actual:
            break
        length += 1
    return length


class RedactingLogFilter(logging.Filter):
    """Log records pass through the redactor of every live server: the SDK logs a tool's error text
    (`Tool 'x' failed: …`) and tracebacks before our own scrubbing of the result runs."""

    def __init__(self) -> None:
        super().__init__()
        self.redactors: weakref.WeakSet[Redactor] = weakref.WeakSet()

    def scrub(self, text: str) -> str:
        for redactor in list(self.redactors):
            text = redactor.text(text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactors:
            return True
        record.msg, record.args = self.scrub(record.getMessage()), ()
        if record.exc_info:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


LOG_FILTER = RedactingLogFilter()
# Filters do not apply to records of child loggers, so each logger that may quote a tool's error is named.
REDACTED_LOGGERS = (
    "meshes_mcp",
    "mcp.server.mcpserver.server",
    "mcp.server.mcpserver.tools.tool_manager",
    "mcp.server.mcpserver.resources.resource_manager",
    "mcp.server.mcpserver.prompts.manager",
    "mcp.server.mcpserver.resolve",
    "mcp.server.lowlevel.server",
    "mcp.server.streamable_http",
    "mcp.server.stdio",
)


# Causes and questions quote what a destination or transport said: a host with its userinfo (no scheme in
# front, so the URL rule above misses it) or a URL whose query carries a key. These wider shapes are not
# applied to every text the Redactor sees: in customer data they would mask ordinary values
# ("mailto:jane@example.com", "10:30@office"). They run on what describes a delivery failure (diagnosis,
# triage, retry results), before the Redactor runs on the whole result.
BARE_USERINFO = re.compile(r"(^|[\s(\"'=,;])([^\s/@:\"']+):[^\s/@\"']+@")
SECRET_QUERY = re.compile(
    r"([?&][A-Za-z0-9_.-]*(?:key|secret|token|password|passwd|pwd|sig|signature|auth)[A-Za-z0-9_.-]*=)[^&#\s\"']+",
    re.I,
)


def scrub_failure_text(value: Any) -> Any:
    """Deep copy of a failure description with credentials quoted in causes and URLs masked."""
    if isinstance(value, str):
        value = BARE_USERINFO.sub(lambda mo: f"{mo.group(1)}{REDACTED}@", value)
        return SECRET_QUERY.sub(lambda mo: mo.group(1) + REDACTED, value)
    if isinstance(value, dict):
        return {key: scrub_failure_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub_failure_text(item) for item in value]
    return value


def redact_logs(redactor: Redactor) -> None:
    """Scrub the server's and the SDK's log records with `redactor` for as long as it lives."""
    LOG_FILTER.redactors.add(redactor)
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if LOG_FILTER not in logger.filters:
            logger.addFilter(LOG_FILTER)


def mask_header_values(headers: Any) -> Any:
    """{"X-Api-Key": "abc"} (or its JSON text) → {"X-Api-Key": "[redacted]"}."""
    if isinstance(headers, str):
        try:
            headers = json.loads(headers)
        except ValueError:
            return REDACTED
    if not isinstance(headers, dict):
        return REDACTED
    return {str(name): REDACTED for name in headers}


def contains_mask(value: Any) -> bool:
    """Whether a value the agent sends back still holds a mask we showed in place of a secret."""
    if isinstance(value, dict):
        return any(contains_mask(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_mask(v) for v in value)
    return isinstance(value, str) and REDACTED in value


def prune(value: Any) -> Any:
    """Drop nulls and empty containers: absent says the same for fewer tokens."""
    if isinstance(value, dict):
        pruned = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def tool_result(data: dict[str, Any]) -> CallToolResult:
    """`data` is already redacted and pruned (list results carry `count`, so an empty list still says so)."""
    return CallToolResult(content=[TextContent(type="text", text=dumps(data))], structured_content=data)


# --- a destination's words ---------------------------------------------------------------------------
# What a destination answered (its reason phrase, body and headers) and any error text that quotes it reaches
# the model only under `untrusted_*` fields and only this large: a receiver controls every byte of it, so it is
# data that could read like instructions, and a 60 KB reason phrase must not make a 60 KB result. Our own
# `cause` and `fix` say what happened from codes and statuses, never by quoting it.
UNTRUSTED_PHRASE_CHARS = 300  # a reason phrase, an attempt message, a `last_error` quoting a destination
UNTRUSTED_RESPONSE_BYTES = 4096  # a captured response: headers and body together (UTF-8 bytes)
UNTRUSTED_HEADER_SHARE = UNTRUSTED_RESPONSE_BYTES // 2  # headers alone never crowd the body out entirely
# Fields of an attempt or a captured response that carry the destination's own text (or quote it).
DESTINATION_TEXT_KEYS = ("message", "error", "reason", "reason_phrase", "last_error")


def cut_marker(size: int, unit: str) -> str:
    return f" …[cut: {size:,} {unit} in all]"


def bound_text(text: Any, limit: int = UNTRUSTED_PHRASE_CHARS) -> str | None:
    """`text` at most `limit` characters; a longer one is cut and ends with a marker giving its original size."""
    if text is None:
        return None
    text = text if isinstance(text, str) else str(text)
    if len(text) <= limit:
        return text
    marker = cut_marker(len(text), "characters")
    return text[: max(0, limit - len(marker))] + marker


def bound_lines(text: str) -> str:
    """Each line of an API error cut to a phrase: such an error may quote a destination (a webhook URL test
    answered with a 60 KB reason phrase) and a tool error has no field to set it apart, only its size."""
    return "\n".join(bound_text(line) or "" for line in text.split("\n"))


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def cut_bytes(text: str, limit: int) -> str:
    """The longest start of `text` whose UTF-8 form fits in `limit` bytes (no character split)."""
    return text.encode("utf-8", "surrogatepass")[: max(0, limit)].decode("utf-8", "ignore")


def bound_headers(headers: Any, budget: int) -> tuple[Any, int, bool]:
    """Headers kept in order while they fit `budget` bytes (each value also cut to a phrase): (kept, bytes
    used, whether any were dropped or cut)."""
    if isinstance(headers, str):
        kept = bound_text(cut_bytes(headers, budget), UNTRUSTED_PHRASE_CHARS) or ""
        return kept, utf8_size(kept), kept != headers
    if isinstance(headers, list):  # [[name, value], ...] or ["Name: value", ...]
        headers = {str(i): item for i, item in enumerate(headers)}
        as_list = True
    elif isinstance(headers, dict):
        as_list = False
    else:
        return headers, 0, False
    out: dict[str, Any] = {}
    used, cut = 2, False  # the braces
    for name, value in headers.items():
        shown_name = bound_text(str(name), 100) or ""
        shown = bound_text(value if isinstance(value, str) else dumps(value)) or ""
        size = utf8_size(dumps({shown_name: shown})) - 1  # as the model reads it: `"name":"value",`
        if used + size > budget:
            cut = True
            break
        cut = cut or shown_name != str(name) or (isinstance(value, str) and shown != value)
        out[shown_name] = shown
        used += size
    return (list(out.values()) if as_list else out), used, cut


def bound_captured(captured: dict[str, Any], budget: int = UNTRUSTED_RESPONSE_BYTES) -> dict[str, Any]:
    """A captured answer `{status, headers, body, ...}` within `budget` bytes for headers and body together,
    each cut part marked: `headers_truncated` with `headers_size` (bytes received), the body ending in a
    marker with `body_truncated` and `body_size`. Other text fields are cut to a phrase."""
    out = {key: bound_value(value) for key, value in captured.items() if key not in ("headers", "body")}
    body = captured.get("body")
    body_text = body if isinstance(body, str) or body is None else dumps(body)
    headers = captured.get("headers")
    if headers is not None:
        share = UNTRUSTED_HEADER_SHARE if body_text else budget
        headers_size = utf8_size(headers if isinstance(headers, str) else dumps(headers))
        out["headers"], used, headers_cut = bound_headers(headers, min(share, budget))
        if headers_cut:
            out["headers_truncated"] = True
            out["headers_size"] = headers_size
        budget -= used
    if body_text is not None:
        size = utf8_size(body_text)
        if size <= budget:
            out["body"] = body_text if isinstance(body, str) else body
        else:
            # The size the destination sent when the API says so (it may have kept only the start already).
            known = captured.get("body_size")
            original = known if isinstance(known, int) and known > size else size
            marker = cut_marker(original, "bytes")
            out["body"] = cut_bytes(body_text, budget - utf8_size(marker)) + marker
            out["body_truncated"] = True
            out["body_size"] = original
    return out


def bound_value(value: Any) -> Any:
    """Any shape a destination's answer may take: strings cut to a phrase, captured answers bounded."""
    if isinstance(value, str):
        return bound_text(value)
    if isinstance(value, dict):
        if "headers" in value or "body" in value:
            return bound_captured(value)
        return {key: bound_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [bound_value(item) for item in value]
    return value


def bound_response(details: dict[str, Any]) -> dict[str, Any]:
    """An attempt's captured response as the API sends it (schema undocumented): the answer (`response`, or
    the top level when it holds `headers`/`body`) within UNTRUSTED_RESPONSE_BYTES, every other text cut to a
    phrase."""
    return bound_value(details)  # type: ignore[no-any-return]


def untrusted_fields(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with each field that carries a destination's words renamed `untrusted_<name>` and bounded."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in DESTINATION_TEXT_KEYS or key.startswith("response"):
            out[f"untrusted_{key}"] = bound_value(value)
        else:
            out[key] = value
    return out
