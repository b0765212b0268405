"""RFC 9457 problem documents: one shape for every error, in responses and batch results."""

from __future__ import annotations

from typing import Any, Final

from service.errors import DomainError

PROBLEM_MEDIA_TYPE = "application/problem+json"
# The codes of the problems for Litestar's own HTTP exceptions, by status (any
# other status is `http_error`), and for an unexpected failure (a 500).
HTTP_CODES: Final = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "validation_error",
}
INTERNAL_ERROR: Final = "internal_error"


def problem_body(status: int, code: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": f"urn:points-ledger:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


def domain_problem(error: DomainError) -> dict[str, Any]:
    return problem_body(error.status, error.code, error.title, error.detail, **error.extra)
