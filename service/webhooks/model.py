"""Pure parts of webhooks: event types, signatures, the retry schedule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import secrets
from typing import Final

EVENT_TYPES: Final = frozenset(
    {
        "offset.held",
        "offset.applied",
        "offset.cancelled",
        "offset.expired",
        "redemption.created",
        "redemption.returned",
        "volunteer_hours.logged",
        "volunteer_hours.approved",
        "volunteer_hours.rejected",
        "points.expiring",
        "points.expired",
        "rule_set.published",
        "transaction.posted",
        "chain.head",
    }
)

SECRET_PREFIX: Final = "whsec_"
# An attempt is a success on any 2xx within this many seconds.
ATTEMPT_TIMEOUT_S: Final = 10.0
# Retries after the first attempt: 5 s × 3^k, capped at 10 h, each ±10 %. The
# eleventh attempt, the last, comes about 23.7 h after the first; then `failed`.
FIRST_RETRY_S: Final = 5.0
RETRY_FACTOR: Final = 3.0
MAX_RETRY_S: Final = 10 * 3600.0
MAX_ATTEMPTS: Final = 11
JITTER: Final = 0.1


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 24 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed by the secret's bytes."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def retry_delay_s(attempts: int, rand: random.Random | None = None) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones; None: give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    base = min(FIRST_RETRY_S * RETRY_FACTOR ** (attempts - 1), MAX_RETRY_S)
    return base * (1 + (rand or random).uniform(-JITTER, JITTER))
