"""Errors raised by the API layer, one type per meaningful status.

Each carries the HTTP status, the documented error `name`, the human message and the per-parameter
`details` of the documented error body (`{message, error: {name, message, data: [{param, msg}]}}`).
The body schema only promises `message`, so everything else is read defensively.
"""

from __future__ import annotations

from typing import Any

from meshes_mcp.api.problems import Problem


class MeshesError(Exception):
    """Base of every error the API layer raises."""


class ConfigurationError(MeshesError):
    """Credentials or settings needed for a call are missing or malformed."""


class APIConnectionError(MeshesError):
    """The request could not be sent or no answer came back (DNS, refused connection, reset)."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        # Whether the request may have reached the server: a write whose fate is unknown must say so.
        self.sent = sent


class APITimeoutError(APIConnectionError):
    """The connect or read timeout expired."""


class APIStatusError(MeshesError):
    """The API answered with a non-success status."""

    status: int = 0

    def __init__(
        self,
        status: int,
        message: str,
        *,
        name: str | None = None,
        details: list[Problem] | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body  # the decoded response body, for callers that read more than the error (bulk)
        self.name = name
        self.message = message
        self.details = details or []
        self.retry_after = retry_after

    def __str__(self) -> str:
        lines = [self.message]
        lines += [f"{d.param}: {d.msg}" for d in self.details]
        return "\n".join(lines)


class BadRequestError(APIStatusError):
    status = 400


class AuthenticationError(APIStatusError):
    status = 401


class PermissionDeniedError(APIStatusError):
    status = 403


class NotFoundError(APIStatusError):
    status = 404


class ConflictError(APIStatusError):
    status = 409


class UnprocessableEntityError(APIStatusError):
    status = 422


class TooEarlyError(APIStatusError):
    status = 425


class RateLimitError(APIStatusError):
    status = 429


class InternalServerError(APIStatusError):
    status = 500


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    425: TooEarlyError,
    429: RateLimitError,
}


def error_for_status(status: int, body: Any, *, retry_after: float | None = None) -> APIStatusError:
    """Build the typed error for a failed response from its (possibly non-JSON) body."""
    message, name, details = _read_error_body(body)
    if not message:
        message = f"HTTP {status}"
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    return cls(status, message, name=name, details=details, retry_after=retry_after, body=body)


def _read_error_body(body: Any) -> tuple[str, str | None, list[Problem]]:
    if not isinstance(body, dict):
        # Plain-text or empty bodies happen on proxies and crashes; keep a short, single line.
        text = str(body or "").strip().splitlines()
        return (text[0][:200] if text else ""), None, []
    outer = body.get("message")
    error = body.get("error")
    name = inner = None
    details: list[Problem] = []
    if isinstance(error, dict):
        name = error.get("name") if isinstance(error.get("name"), str) else None
        inner = error.get("message") if isinstance(error.get("message"), str) else None
        for item in error.get("data") or []:
            if isinstance(item, dict) and item.get("msg"):
                details.append(Problem(str(item.get("param") or "request"), str(item["msg"])))
    elif isinstance(error, str):
        inner = error
    # The inner message is the specific one; the outer is often just the status phrase.
    message = inner or (outer if isinstance(outer, str) else "") or ""
    return message, name, details
