"""Reading a request body: the size limit while streaming, then strict JSON.

The reference documents `Content-Type: application/json` on bodies and is silent on the rest; the
sandbox chooses what a careful API would do, each a 400 (413 for size) naming what to fix:
- a non-empty body must be sent as `application/json` (an optional `charset` must be utf-8) and be
  valid UTF-8 text (no BOM-less UTF-16, no Latin-1);
- the 10 MiB limit is applied before the body is in memory: a declared Content-Length over it is
  refused at once, a chunked body is read with a running count and abandoned at the limit;
- JSON that parses but cannot be stored or sent on faithfully is refused, naming the field:
  `NaN`/`Infinity` (and numbers overflowing to infinity), lone surrogates (`"\\ud800"`) in keys or
  strings, and nesting deeper than `MAX_DEPTH` levels;
- the names and identifiers at the top of a body (or of each bulk item) may not hold control characters
  (`event`, `resource`, `resource_id`, `name`, `workspace`, …): they end up in headers, logs and URLs.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any

from starlette.requests import Request

from meshes_mcp.api.problems import is_plain_json
from meshes_mcp.sandbox.errors import ApiError, bad_request

MAX_BODY = 10 * 1024 * 1024
MAX_DEPTH = 64  # JSON nesting levels; deep enough for any real payload, far from the parser's recursion limit
PARAM_LIMIT = 200  # characters of a field path quoted back in an error

# Top-level string fields that are names or identifiers (never free text such as `description`).
IDENTIFIER_FIELDS = frozenset(
    {
        "event",
        "resource",
        "resource_id",
        "name",
        "workspace",
        "workspace_id",
        "connection",
        "type",
        "external_user_id",
        "role",
        "session_type",
        "launch_page",
        "mapping_id",
    }
)

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
JSON_EXAMPLE = '{"event": "user.signup", "payload": {"email": "jane@example.com"}}'


class _NonFinite:
    """What the parser returns for NaN/Infinity, so the walk can name the field that held it."""


_NON_FINITE = _NonFinite()


def too_large() -> ApiError:
    return ApiError(
        413,
        f"request body is larger than {MAX_BODY // (1024 * 1024)} MiB",
        [("body", f"must be at most {MAX_BODY} bytes; split large batches")],
    )


def _check_content_type(request: Request) -> None:
    value = request.headers.get("content-type")
    fix = "must be application/json (UTF-8), e.g. Content-Type: application/json"
    if value is None:
        raise bad_request("a JSON body needs Content-Type: application/json", "Content-Type", fix)
    media, *params = (part.strip() for part in value.split(";"))
    if media.lower() != "application/json":
        raise bad_request("the request body must be sent as application/json", "Content-Type", fix)
    for param in params:
        key, _, charset = param.partition("=")
        if key.strip().lower() == "charset" and charset.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise bad_request("the request body must be UTF-8", "Content-Type", fix)


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not (declared.isascii() and declared.isdigit()):
        raise bad_request("invalid Content-Length header", "Content-Length", "must be a byte count, e.g. 42")
    return int(declared)


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed the limit. Kept on the request,
    so a handler run again (after the store's write lock refused it) reads the same body."""
    kept: bytes | None = getattr(request.state, "raw_body", None)
    if kept is not None:
        return kept
    declared = _declared_length(request)
    if declared is not None and declared > MAX_BODY:
        raise too_large()
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    if declared or chunked:
        _check_content_type(request)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY:
            raise too_large()  # stop reading: the server closes the connection after this answer
        chunks.append(chunk)
    raw = b"".join(chunks)
    if raw and declared is None and not chunked:
        _check_content_type(request)  # a body without either header (HTTP/1.0 style): same rule
    request.state.raw_body = raw
    return raw


def _refuse_constant(name: str) -> _NonFinite:
    return _NON_FINITE


def parse_json(raw: bytes) -> Any:
    """Strict JSON from UTF-8 bytes; every refusal names the field (or `body`)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request(
            "the request body is not UTF-8 text", "body", f"must be JSON encoded as UTF-8, e.g. {JSON_EXAMPLE}"
        ) from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep("body") from None
    except ValueError:
        raise bad_request(
            "the request body is not valid JSON", "body", f"must be a JSON document, e.g. {JSON_EXAMPLE}"
        ) from None
    problem = first_problem(document)
    if problem:
        param, msg = problem
        raise ApiError(400, f"invalid request: {param} {msg}", [(param, msg)])
    return document


def _too_deep(param: str) -> ApiError:
    msg = f"nests deeper than {MAX_DEPTH} levels of objects and arrays: flatten it"
    return ApiError(400, f"invalid request: {param} {msg}", [(param, msg)])


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _SURROGATE.search(key) or _CONTROL.search(key):
        key = key.encode("unicode_escape", "backslashreplace").decode("ascii")  # quoted, never echoed raw
    shown = key
    return f"{path}.{shown}" if path else shown


def _param(path: str) -> str:
    return (path or "body")[:PARAM_LIMIT]


def _text_problem(text: str) -> str | None:
    if _SURROGATE.search(text):
        return 'holds a lone surrogate (\\ud800-\\udfff), which is not Unicode text: send valid UTF-8, e.g. "café"'
    return None


def _identifier_problem(text: str) -> str | None:
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        return 'must not contain control characters (NUL, CR, LF, tab, …), e.g. "user.signup"'
    return None


def _is_identifier(path: str, depth: int, root_is_list: bool) -> bool:
    """Names and ids sit at the top of an object body, or at the top of each bulk item."""
    top = 2 if root_is_list else 1
    return depth == top and path.rsplit(".", 1)[-1] in IDENTIFIER_FIELDS


def _within_depth(document: Any) -> bool:
    """No container nested `MAX_DEPTH` levels deep (only containers are visited: cheap for real bodies)."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if depth >= MAX_DEPTH:
            return False
        children = value.values() if isinstance(value, dict) else value
        stack.extend((item, depth + 1) for item in children if isinstance(item, dict | list))
    return True


def _identifiers_clean(document: Any) -> bool:
    """No control character in the names and ids at the top of the body (or of each bulk item)."""
    items = document if isinstance(document, list) else [document]
    return not any(
        isinstance(value, str) and _identifier_problem(value)
        for item in items
        if isinstance(item, dict)
        for key, value in item.items()
        if key in IDENTIFIER_FIELDS
    )


def first_problem(document: Any) -> tuple[str, str] | None:
    """The first value that strict JSON cannot carry, as `(param, msg)`. Iterative: no recursion limit."""
    if not isinstance(document, dict | list):
        return None if is_plain_json(document) else _walk_for_problem(document)
    if is_plain_json(document) and _within_depth(document) and _identifiers_clean(document):
        return None  # the common case, checked without building a path for every value
    return _walk_for_problem(document)


def _walk_for_problem(document: Any) -> tuple[str, str] | None:
    root_is_list = isinstance(document, list)
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list) and depth >= MAX_DEPTH:
            msg = f"nests deeper than {MAX_DEPTH} levels of objects and arrays: flatten it"
            return _param(path), msg
        if isinstance(value, dict):
            for key, item in value.items():
                sub = _join(path, key)
                if problem := _text_problem(key):
                    return _param(sub), "has a key that " + problem.removeprefix("holds ")
                stack.append((item, sub, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, _join(path, index), depth + 1) for index, item in enumerate(value))
        elif isinstance(value, str):
            problem = _text_problem(value)
            if problem is None and _is_identifier(path, depth, root_is_list):
                problem = _identifier_problem(value)
            if problem:
                return _param(path), problem
        elif value is _NON_FINITE or (isinstance(value, float) and not math.isfinite(value)):
            return _param(path), "must be a finite number (NaN and Infinity are not JSON), e.g. 1.5"
    return None


async def read_json(request: Request, required: bool = True) -> Any:
    raw = await read_body(request)
    if not raw.strip():
        if required:
            raise bad_request(
                "a JSON request body is required", "body", f"must be a JSON document, e.g. {JSON_EXAMPLE}"
            )
        return None
    return parse_json(raw)


def plain_json(value: Any, depth: int = 0) -> Any:
    """A copy that strict JSON can carry: non-finite numbers become null, lone surrogates U+FFFD.

    Ingest refuses both now; events stored before that still hold them, and would otherwise answer
    GET /events/{id}/payload with a 500 and reach a webhook as invalid JSON (or not at all)."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth > 900:  # stored by the old parser, at most ~1,000 levels: never reached in practice
        return None
    if isinstance(value, dict):
        return {plain_json(k): plain_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_json(v, depth + 1) for v in value]
    return value
