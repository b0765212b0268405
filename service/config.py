"""One settings struct, read from the environment once."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

import msgspec

# A bootstrap admin key is as strong as its length: refuse a guessable one.
MIN_ADMIN_KEY_CHARS: Final = 32
# `serve --demo` on a loopback address sets this so that its workers accept the
# README's short demo key (see `__main__`); nothing else should set it.
DEMO_LOOPBACK_ENV: Final = "LEDGER_DEMO_LOOPBACK"


class ConfigError(ValueError):
    """A setting that the service refuses to start with; the message names it."""


class Rate(msgspec.Struct, frozen=True, kw_only=True):
    """`count` events per `per_s` seconds, with bursts of up to `count`."""

    count: int
    per_s: float


class RateLimits(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool
    auth_failures_per_address: Rate
    auth_failures_per_key: Rate
    writes_per_key: Rate


class HttpLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one server process accepts from clients (see `service.http_limits`)."""

    max_header_bytes: int
    max_headers: int
    max_url_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    keep_alive_s: int
    max_connections: int


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None
    data_dir: Path
    admin_key: str | None
    pool_min_size: int
    pool_max_size: int
    db_timeout_s: float
    db_connect_timeout_s: float
    max_body_bytes: int
    log_level: str
    scheduler_enabled: bool
    expiry_interval_s: float
    seal_interval_s: float
    rules_interval_s: float
    key_cache_ttl_s: float
    rate_limits: RateLimits
    http: HttpLimits
    # Webhook endpoints on loopback, link-local or private addresses (tests, labs).
    webhook_allow_private: bool = False
    # Browser origins allowed to call the API (CORS); none, CORS off.
    cors_origins: tuple[str, ...] = ()
    # Where the service is reached from outside (sign-in links point there); unset:
    # the address each request came to.
    public_url: str | None = None


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*s?\s*$")


def _rate(name: str, default: str) -> Rate:
    """A rate written `COUNT/SECONDS`, e.g. `30/60` for thirty a minute."""
    text = os.environ.get(name, default)
    match = _RATE.match(text)
    if match is None or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
        raise ConfigError(f"{name} must read COUNT/SECONDS, e.g. 30/60, not {text!r}")
    return Rate(count=int(match.group(1)), per_s=float(match.group(2)))


def _admin_key() -> str | None:
    key = os.environ.get("LEDGER_ADMIN_KEY") or None
    if key is None or len(key) >= MIN_ADMIN_KEY_CHARS or os.environ.get(DEMO_LOOPBACK_ENV):
        return key
    raise ConfigError(
        f"LEDGER_ADMIN_KEY must be at least {MIN_ADMIN_KEY_CHARS} characters "
        "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
    )


def load_rate_limits() -> RateLimits:
    return RateLimits(
        enabled=os.environ.get("LEDGER_RATE_LIMITS", "on") != "off",
        auth_failures_per_address=_rate("LEDGER_RATE_AUTH_FAILURES_PER_ADDRESS", "30/60"),
        auth_failures_per_key=_rate("LEDGER_RATE_AUTH_FAILURES_PER_KEY", "10/60"),
        writes_per_key=_rate("LEDGER_RATE_WRITES_PER_KEY", "3000/10"),
    )


def load_http_limits() -> HttpLimits:
    return HttpLimits(
        max_header_bytes=_int("LEDGER_HTTP_MAX_HEADER_BYTES", 16_384),
        max_headers=_int("LEDGER_HTTP_MAX_HEADERS", 64),
        max_url_bytes=_int("LEDGER_HTTP_MAX_URL_BYTES", 8_192),
        header_timeout_s=_float("LEDGER_HTTP_HEADER_TIMEOUT_S", 10.0),
        body_timeout_s=_float("LEDGER_HTTP_BODY_TIMEOUT_S", 30.0),
        keep_alive_s=_int("LEDGER_HTTP_KEEP_ALIVE_S", 5),
        max_connections=_int("LEDGER_HTTP_MAX_CONNECTIONS", 1000),
    )


def load_settings() -> Settings:
    """Reads every setting the service knows; the README's configuration table lists them."""
    env = os.environ
    return Settings(
        database_url=env.get("DATABASE_URL") or None,
        data_dir=Path(env.get("LEDGER_DATA_DIR", "./.ledger-data")),
        admin_key=_admin_key(),
        pool_min_size=_int("LEDGER_POOL_MIN", 2),
        pool_max_size=_int("LEDGER_POOL_MAX", 20),
        db_timeout_s=_float("LEDGER_DB_TIMEOUT_S", 5.0),
        db_connect_timeout_s=_float("LEDGER_DB_CONNECT_TIMEOUT_S", 2.0),
        max_body_bytes=_int("LEDGER_MAX_BODY_BYTES", 1_048_576),
        log_level=env.get("LEDGER_LOG_LEVEL", "info"),
        scheduler_enabled=env.get("LEDGER_SCHEDULER", "on") != "off",
        expiry_interval_s=_float("LEDGER_EXPIRY_INTERVAL_S", 1.0),
        seal_interval_s=_float("LEDGER_SEAL_INTERVAL_S", 1.0),
        rules_interval_s=_float("LEDGER_RULES_INTERVAL_S", 60.0),
        key_cache_ttl_s=_float("LEDGER_KEY_CACHE_TTL_S", 5.0),
        rate_limits=load_rate_limits(),
        http=load_http_limits(),
        webhook_allow_private=env.get("LEDGER_WEBHOOK_ALLOW_PRIVATE", "0") == "1",
        cors_origins=tuple(
            o.strip() for o in env.get("LEDGER_CORS_ORIGINS", "").split(",") if o.strip()
        ),
        public_url=env.get("LEDGER_PUBLIC_URL") or None,
    )
