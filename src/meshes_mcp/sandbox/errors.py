"""The documented error body, raised from anywhere in the sandbox and rendered by the app.

Shape (reference §3.3)::

    {"message": "Bad Request",
     "error": {"name": "BadRequest", "message": "…", "data": [{"param": "…", "msg": "…"}]}}

`error.data` is present only for parameter-level problems, as documented.
"""

from __future__ import annotations

import sqlite3
from typing import Any

# status → (top-level message, error.name)
_NAMES: dict[int, tuple[str, str]] = {
    400: ("Bad Request", "BadRequest"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "Forbidden"),
    404: ("Not Found", "NotFound"),
    405: ("Method Not Allowed", "MethodNotAllowed"),
    409: ("Conflict", "Conflict"),
    413: ("Payload Too Large", "PayloadTooLarge"),
    422: ("Unprocessable Entity", "UnprocessableEntity"),
    425: ("Too Early", "TooEarly"),
    429: ("Too Many Requests", "TooManyRequests"),
    500: ("Internal Server Error", "GeneralError"),
    503: ("Service Unavailable", "Unavailable"),
    507: ("Insufficient Storage", "InsufficientStorage"),
}


class ApiError(Exception):
    """An HTTP error with the documented body; `data` lists `(param, msg)` problems."""

    def __init__(self, status: int, message: str, data: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data or []

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.data)


def error_body(status: int, message: str, data: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    top, name = _NAMES.get(status, ("Error", "Error"))
    error: dict[str, Any] = {"name": name, "message": message}
    if data:
        error["data"] = [{"param": p, "msg": m} for p, m in data]
    return {"message": top, "error": error}


def summary(problems: list[tuple[str, str]]) -> str:
    """One line for many problems: the first, and how many more."""
    first = f"{problems[0][0]} {problems[0][1]}" if problems[0][0] else problems[0][1]
    more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
    return f"invalid request: {first}{more}"


def problems_error(problems: list[Any], status: int = 400) -> ApiError:
    """An error from the package's validation `Problem`s (anything with `param` and `msg`)."""
    data = [(p.param, p.msg) for p in problems]
    return ApiError(status, summary(data), data)


def bad_request(message: str, param: str | None = None, msg: str | None = None) -> ApiError:
    return ApiError(400, message, [(param, msg or message)] if param else None)


def not_found(what: str, ident: str, param: str | None = None) -> ApiError:
    message = f"{what} {ident} was not found"
    return ApiError(404, message, [(param, message)] if param else None)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message)


def conflict(message: str, param: str | None = None) -> ApiError:
    return ApiError(409, message, [(param, message)] if param else None)


def unprocessable(message: str, data: list[tuple[str, str]] | None = None) -> ApiError:
    return ApiError(422, message, data)


def too_early(message: str) -> ApiError:
    return ApiError(425, message)


def lock_refused(exc: sqlite3.Error) -> bool:
    """SQLite gave up waiting for another connection's write lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def store_refusal(exc: sqlite3.Error, wrote: bool) -> ApiError | None:
    """The answer to a request whose store work SQLite refused, or None for errors that are bugs (a 500).

    `wrote`: whether this request already committed something before the refusal, so the caller
    knows whether it may simply send it again."""
    extended = getattr(exc, "sqlite_errorcode", None)
    code = None if extended is None else extended & 0xFF  # the primary code of an extended one
    done = (
        "part of this request may already be stored: read the state again before retrying"
        if wrote
        else "nothing was written"
    )
    if code == sqlite3.SQLITE_FULL:
        return ApiError(507, f"the sandbox's disk is full: free space on its data directory's disk, then retry; {done}")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return ApiError(
            503, f"the sandbox database is locked by another process (a second sandbox, a sqlite3 shell); {done}"
        )
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR):
        return ApiError(
            503,
            f"the sandbox cannot write its data directory ({getattr(exc, 'sqlite_errorname', 'I/O error')}): make it "
            f"writable or restart the sandbox with another --data-dir; {done}",
        )
    return None
