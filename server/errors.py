"""Domain errors, turned into HTTP responses in one middleware (server/views/middleware.py).

Each carries a stable ``code`` for clients and an English ``message``; pages
translate the code.
"""

from __future__ import annotations

from typing import Any


# The error code of an HTTP error that carries none of its own (aiohttp's, a router's 404 or 405).
HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_failed",
    429: "too_many_requests",
}


def error_body(code: str, message: str, details: object = None) -> dict[str, object]:
    """The one error shape of every JSON answer (the hub's and a relay's)."""
    error: dict[str, object] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


class AppError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(AppError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class ServiceUnavailable(AppError):
    """Not now, through no fault of the request: try again after ``retry_after`` seconds."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class ValidationFailed(AppError):
    """Input failed validation; ``errors`` lists each field's problem."""

    status = 422
    code = "validation_failed"

    def __init__(self, errors: list[dict[str, str]], message: str = "the input is not valid") -> None:
        super().__init__(message, details=errors)
        self.errors = errors

    @classmethod
    def one(cls, field: str, code: str, message: str) -> ValidationFailed:
        return cls([{"field": field, "code": code, "message": message}])

    def by_field(self) -> dict[str, str]:
        return {error["field"]: error["code"] for error in self.errors}
