"""The domain's expected rejections.

Each error carries a stable machine `code` from SPEC section 3 and the HTTP status it
maps to; `app.py` turns them into RFC 9457 problem documents in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final


class DomainError(Exception):
    """An expected rejection: the caller can act on `code` and `detail`."""

    code: ClassVar[str] = "invalid_state"
    status: ClassVar[int] = 409
    title: ClassVar[str] = "Invalid state"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class ValidationFailed(DomainError):
    code = "validation_error"
    status = 422
    title = "Validation failed"


class NotFound(DomainError):
    code = "not_found"
    status = 404
    title = "Not found"


class InsufficientPoints(DomainError):
    code = "insufficient_points"
    status = 409
    title = "Insufficient balance"


class IdempotencyConflict(DomainError):
    code = "idempotency_conflict"
    status = 409
    title = "Idempotency conflict"


class InvalidState(DomainError):
    code = "invalid_state"
    status = 409
    title = "Invalid state"


class MemberClosed(DomainError):
    """The member moved out and was closed: its accounts take no more credits,
    debits or holds, and it stays in the household it left."""

    code = "member_closed"
    status = 409
    title = "Member closed"


class CapExceeded(DomainError):
    code = "cap_exceeded"
    status = 409
    title = "Cap exceeded"


class OutOfStock(DomainError):
    code = "out_of_stock"
    status = 409
    title = "Out of stock"


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class ConsentRequired(DomainError):
    """A store's redemption or a property company's offset without the member's
    consent, or with consent that is wrong, expired, used or too small (SPEC
    section 10); `detail` says which."""

    code = "consent_required"
    status = 403
    title = "Consent required"


# The SQLSTATEs that the database's own guards raise for a rule of the domain (the
# second guard behind a service's check, sql/functions/*.sql): the error each one is.
GUARDS: Final[Mapping[str, type[DomainError]]] = {"LG409": MemberClosed}


class RetryLater(DomainError):
    """A refusal that passes: `retry_after_s` (the response's `Retry-After`) says
    when the same request may be sent again."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class RateLimited(RetryLater):
    """Too many requests of one kind from one key or address."""

    code = "rate_limited"
    status = 429
    title = "Too many requests"


class Unavailable(RetryLater):
    """The database cannot be reached or did not answer in time: nothing is wrong
    with the request, and the same request (same client id) may be sent again."""

    code = "unavailable"
    status = 503
    title = "Service unavailable"
