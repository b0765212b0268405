"""One schema, however it was reached: a database built from scratch and one
upgraded from the last release (migrations 0001-0011, kept as they were released in
tests/fixtures/release_0011) end up identical: tables and columns, constraints,
indexes, types, functions and triggers. And the ways an upgrade can go wrong are
refused: an edited migration, a squash over part of what it replaces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from service.db import function_files, migrate, sql_dir
from tests.helpers import with_database

RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "release_0011"

# Everything a schema is, each as sorted rows of text.
CATALOG = {
    "columns": """
        SELECT c.table_name, c.ordinal_position, c.column_name, c.data_type, c.udt_name,
               c.is_nullable, coalesce(c.column_default, ''), c.is_identity
          FROM information_schema.columns c
         WHERE c.table_schema = 'public'""",
    "constraints": """
        SELECT r.conrelid::regclass::text, r.conname, pg_get_constraintdef(r.oid), r.convalidated
          FROM pg_constraint r JOIN pg_namespace n ON n.oid = r.connamespace
         WHERE n.nspname = 'public' AND r.conrelid <> 0""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "types": """
        SELECT t.typname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod)
          FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
          JOIN pg_class k ON k.oid = t.typrelid AND k.relkind = 'c'
          JOIN pg_attribute a ON a.attrelid = k.oid AND a.attnum > 0
         WHERE n.nspname = 'public'""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'public'""",
    "triggers": """
        SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid)
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND NOT t.tgisinternal""",
    "sequences": "SELECT sequence_name, data_type FROM information_schema.sequences",
}


async def schema_of(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            part: sorted(tuple(str(v) for v in row) for row in await conn.fetch(sql))
            for part, sql in CATALOG.items()
        }
    finally:
        await conn.close()


@pytest.fixture
async def fresh_dsns(server_dsn: str) -> AsyncIterator[list[str]]:
    """Two empty databases, dropped afterwards."""
    names = ["schema_scratch", "schema_upgraded"]
    admin = await asyncpg.connect(server_dsn)
    try:
        for name in names:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {name}")
        yield [with_database(server_dsn, name) for name in names]
    finally:
        for name in names:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def apply_release(dsn: str) -> None:
    """The last release's migrations, applied as its own `migrate` did."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """CREATE TABLE schema_migrations (
                   name text PRIMARY KEY,
                   checksum bytea NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        for path in sorted(RELEASE.glob("*.sql")):
            text = path.read_text()
            async with conn.transaction():
                await conn.execute(text)
                await conn.execute(
                    "INSERT INTO schema_migrations (name, checksum) VALUES ($1, sha256($2))",
                    path.name,
                    text.encode(),
                )
    finally:
        await conn.close()


async def test_a_database_upgraded_from_the_last_release_equals_one_built_from_scratch(
    fresh_dsns: list[str],
) -> None:
    scratch, upgraded = fresh_dsns
    await migrate(scratch)
    await apply_release(upgraded)
    applied = await migrate(upgraded)
    assert "0001_schema.sql" in applied  # recorded, not run: the release has its tables
    first, second = await schema_of(scratch), await schema_of(upgraded)
    assert first.keys() == second.keys()
    for part in first:
        only_scratch = sorted(set(first[part]) - set(second[part]))
        only_upgraded = sorted(set(second[part]) - set(first[part]))
        assert not only_scratch and not only_upgraded, (part, only_scratch, only_upgraded)
    assert any(row[0] == "ledger_write" for row in first["functions"])
    assert not any(row[0] == "ledger_create_one" for row in second["functions"])


async def test_each_function_name_is_defined_once_in_sql() -> None:
    """The live definition of a function is the one in sql/functions, and only there
    (on a Citus cluster, sql/citus/distribute.sql replaces some after them: its own
    file, applied only there; docs/scaling.md)."""
    import re

    pattern = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+)", re.IGNORECASE)
    seen: dict[str, str] = {}
    for path in sorted(sql_dir().rglob("*.sql")):
        if path.parent.name == "citus":
            continue
        for name in pattern.findall(path.read_text()):
            assert name not in seen, f"{name} is defined in {seen[name]} and {path}"
            seen[name] = str(path.relative_to(sql_dir()))
    assert all(where.startswith("functions/") for where in seen.values()), seen
    assert {p.name for p in function_files()} >= {"ledger.sql", "rules.sql"}


async def test_an_edited_migration_is_refused(fresh_dsns: list[str]) -> None:
    dsn = fresh_dsns[0]
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE schema_migrations SET checksum = '\\x00' WHERE name = '0002_write_engine.sql'"
        )
    finally:
        await conn.close()
    with pytest.raises(RuntimeError, match=r"0002_write_engine\.sql changed after it was applied"):
        await migrate(dsn)


async def test_a_squash_over_part_of_what_it_replaces_is_refused(fresh_dsns: list[str]) -> None:
    """A database of an older release (here: only the first migration applied) has
    none of the later tables; recording the squash there would leave it without them."""
    dsn = fresh_dsns[1]
    await apply_release(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM schema_migrations WHERE name <> '0001_ledger_core.sql'")
    finally:
        await conn.close()
    with pytest.raises(RuntimeError, match=r"lacks 0002_ledger_functions\.sql"):
        await migrate(dsn)


async def test_a_changed_functions_file_is_applied_again_and_only_then(
    fresh_dsns: list[str],
) -> None:
    dsn = fresh_dsns[0]
    await migrate(dsn)
    assert await migrate(dsn) == []
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP FUNCTION ledger_fits(bigint, bigint, bigint)")
        await conn.execute(
            "UPDATE schema_functions SET checksum = '\\x00' WHERE name = 'functions/ledger.sql'"
        )
    finally:
        await conn.close()
    assert await migrate(dsn) == ["functions/ledger.sql"]
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT ledger_fits(10, -5, 5)") is True
        assert await conn.fetchval("SELECT ledger_fits(10, -6, 5)") is False
    finally:
        await conn.close()
