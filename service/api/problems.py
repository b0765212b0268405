"""RFC 9457 problem documents: one shape for every error, in responses and batch results."""

from __future__ import annotations

from typing import Any

from service.errors import DomainError

PROBLEM_MEDIA_TYPE = "application/problem+json"


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
