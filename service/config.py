"""One settings struct, read from the environment once."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None
    data_dir: Path
    admin_key: str | None
    pool_min_size: int
    pool_max_size: int
    max_body_bytes: int
    log_level: str
    scheduler_enabled: bool
    expiry_interval_s: float
    seal_interval_s: float
    rules_interval_s: float
    key_cache_ttl_s: float


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def load_settings() -> Settings:
    """Reads every setting the service knows; the README's configuration table lists them."""
    env = os.environ
    return Settings(
        database_url=env.get("DATABASE_URL") or None,
        data_dir=Path(env.get("LEDGER_DATA_DIR", "./.ledger-data")),
        admin_key=env.get("LEDGER_ADMIN_KEY") or None,
        pool_min_size=_int("LEDGER_POOL_MIN", 2),
        pool_max_size=_int("LEDGER_POOL_MAX", 20),
        max_body_bytes=_int("LEDGER_MAX_BODY_BYTES", 1_048_576),
        log_level=env.get("LEDGER_LOG_LEVEL", "info"),
        scheduler_enabled=env.get("LEDGER_SCHEDULER", "on") != "off",
        expiry_interval_s=_float("LEDGER_EXPIRY_INTERVAL_S", 1.0),
        seal_interval_s=_float("LEDGER_SEAL_INTERVAL_S", 1.0),
        rules_interval_s=_float("LEDGER_RULES_INTERVAL_S", 60.0),
        key_cache_ttl_s=_float("LEDGER_KEY_CACHE_TTL_S", 5.0),
    )
