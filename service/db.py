"""The database: embedded server, pool, migrations and named queries."""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import random
import re
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec
import structlog

from service.errors import GUARDS

log = structlog.get_logger(__name__)

# A connection of the pool, for a use case; reads that need no transaction may
# go straight to the pool. Other layers name these, not asyncpg's own types.
Pool = asyncpg.Pool
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Queryable = Conn | Pool

# Any 64-bit number shared by every process of the service; it only names a lock.
_MIGRATION_LOCK = 7_146_520_334_801

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def sql_dir() -> Path:
    """The `sql/` folder: beside the package in a checkout, inside it in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise FileNotFoundError("sql/migrations not found next to the service package")


@cache
def queries() -> dict[str, str]:
    """Every named query block of `sql/queries/*.sql`, loaded once."""
    found: dict[str, str] = {}
    for path in sorted((sql_dir() / "queries").glob("*.sql")):
        parts = _NAME.split(path.read_text())
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise ValueError(f"query {name!r} is defined twice ({path.name})")
            found[name] = body.strip().rstrip(";")
    return found


def q(name: str) -> str:
    return queries()[name]


def start_embedded(data_dir: Path) -> str:
    """Starts (or joins) the embedded PostgreSQL keeping its data in `data_dir`
    and returns its dsn; service/embedded.py owns its lifecycle.

    The server is stopped at this process's exit if no other live process uses
    it. A process that can end by a signal should use `embedded.serving`
    instead (as the `points-ledger` command does), since atexit does not run then.
    """
    from service import embedded

    dsn = embedded.start(data_dir)
    atexit.register(embedded.stop, data_dir)
    return dsn


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda v: msgspec.json.encode(v).decode(),
            decoder=msgspec.json.decode,
            schema="pg_catalog",
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without RESET ALL: the service sets no session state, takes only
    transaction-scoped locks and listens to nothing, and asyncpg still rolls back
    an open transaction first. Saves a round trip on every release."""


class _Connection(asyncpg.Connection):
    """A connection that is dropped, not cancelled, when a statement outlives the
    client's timeout. That timeout is one second past PostgreSQL's own
    `statement_timeout`, so it fires only when the server does not answer at all
    (frozen, or the network gone); asyncpg would then send a cancel request and
    make the rollback and the release wait for it, which needs the same silent
    server to answer: a request would hang for several timeouts instead of getting
    its 503. The pool opens a new connection when it is next needed."""

    def _cancel_current_command(self, waiter: Any, cancel_waiter: Any = None) -> None:
        # Soon, not now: asyncpg fails the timed-out statement right after this
        # returns; the statement's task then finds the connection closed.
        self._loop.call_soon(self.terminate)  # type: ignore[attr-defined]


# What Citus raises when it refuses a query it cannot plan across shards: mostly
# 0A000 ("cannot push down this subquery", "complex joins are only supported when
# …"), some XX000 ("could not create distributed plan", "the query contains a join
# that requires repartitioning"). On one server either means a broken query.
_REFUSALS = (asyncpg.FeatureNotSupportedError, asyncpg.InternalServerError)


def refused(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it was raised from, is a refused query (`_REFUSALS`)."""
    for _ in range(4):  # the error, and what a domain error was raised from
        if exc is None:
            return False
        if isinstance(exc, _REFUSALS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _Acquired(asyncpg.pool.PoolAcquireContext):
    """`pool.acquire()` (also under `pool.fetch()` and the like): a connection that a
    refused query escaped from (`refused`) is terminated, not given back for reuse.
    On Citus a refusal raised during its recursive planning can leave the backend
    unable to delegate a function call again (docs/scaling.md, "Why some ids came
    from the coordinator"): every later unit of work on it would run on the
    coordinator, statement by statement. The pool opens a new connection when it
    is next needed. A block that ends without an error pays one comparison."""

    __slots__ = ()

    async def __aexit__(self, *exc_info: Any) -> None:
        error = exc_info[1] if len(exc_info) > 1 else None
        if error is not None and self.connection is not None and refused(error):
            log.warning("connection_dropped", reason="refused_query", error=type(error).__name__)
            self.connection.terminate()
        await super().__aexit__(*exc_info)


class BoundedPool(asyncpg.Pool):
    """A pool whose `acquire()` gives up after `acquire_timeout_s` when the caller
    names no timeout of its own: when the database freezes, every connection is
    stuck in a statement, and a request queued behind them must get its 503 within
    the configured time, not after all of theirs. No timer when an open idle
    connection is there to take. `asyncio.timeout` rather than
    asyncpg's own `acquire(timeout=…)`, which starts a task per acquire (a few
    percent of a balance read's CPU)."""

    acquire_timeout_s: float | None = None
    # Whether the database is a Citus coordinator's (`on_citus`), asked once.
    citus: bool | None = None

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Also when a dropped connection (see `_Connection`) handed its holder back
        while this release was on its way: then there is nothing left to release."""
        try:
            await super().release(connection, timeout=timeout)
        except asyncpg.InternalClientError:
            if connection._holder._in_use is not None:
                raise

    def acquire(self, *, timeout: float | None = None) -> Any:
        return _Acquired(self, timeout)

    def _idle_connection(self) -> bool:
        """Whether the next acquire takes an open idle connection: no wait, so no
        timer to arm (the usual case). A holder without one would connect first,
        which a frozen server never answers."""
        holders = self._queue._queue  # type: ignore[attr-defined] # LifoQueue: its top is last
        if not holders:
            return False
        con = holders[-1]._con
        return con is not None and not con.is_closed()

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109 (asyncpg's own)
        if timeout is not None or self.acquire_timeout_s is None or self._idle_connection():
            return await super()._acquire(timeout)  # type: ignore[misc]
        async with asyncio.timeout(self.acquire_timeout_s):
            return await super()._acquire(None)  # type: ignore[misc]


async def create_pool(
    dsn: str,
    *,
    min_size: int,
    max_size: int,
    timeout_s: float | None = None,
    connect_timeout_s: float = 10.0,
) -> asyncpg.Pool:
    """The pool. With `timeout_s`, PostgreSQL cancels a statement that runs longer
    (`statement_timeout`), the client gives up one second after that in case the
    server cannot even answer (frozen, or the network gone), and taking a
    connection from the pool waits at most `timeout_s`. Without it (the CLI's
    `verify`, tests), statements may run as long as they need."""
    server_settings = {"application_name": "points-ledger", "jit": "off"}
    if timeout_s is not None:
        server_settings["statement_timeout"] = str(int(timeout_s * 1000))
    pool = BoundedPool(
        dsn,
        connection_class=_Connection if timeout_s is not None else asyncpg.Connection,
        record_class=asyncpg.Record,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300,
        loop=None,
        reset=_keep_session,
        init=_init_connection,
        command_timeout=None if timeout_s is None else timeout_s + 1,
        timeout=connect_timeout_s,
        statement_cache_size=256,
        server_settings=server_settings,
    )
    pool.acquire_timeout_s = timeout_s
    await pool
    return pool


async def on_citus(pool: Any) -> bool:
    """Whether `pool`'s database has the `citus` extension (docs/scaling.md): the
    few statements Citus refuses take another form there. Asked once per pool."""
    found: bool | None = getattr(pool, "citus", None)
    if found is None:
        async with pool.acquire() as conn:
            found = await _has_citus(conn)
        if isinstance(pool, BoundedPool):
            pool.citus = found
    return found


async def ping(pool: Pool) -> None:
    """`SELECT 1` on a connection of the pool: the readiness probe's question, whether
    the database answers at all."""
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")


def migration_files() -> list[Path]:
    return sorted((sql_dir() / "migrations").glob("*.sql"))


def function_files() -> list[Path]:
    """`sql/functions/*.sql`, in name order (ledger.sql first: the others use it)."""
    return sorted(
        (sql_dir() / "functions").glob("*.sql"), key=lambda p: (p.name != "ledger.sql", p.name)
    )


_REPLACES = re.compile(r"^-- replaces:(.*)$", re.MULTILINE)


def replaced_by(text: str) -> list[str]:
    """The migrations a squashed migration replaces (its `-- replaces:` lines)."""
    return [name for line in _REPLACES.findall(text) for name in line.split()]


def _checksum(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


async def migrate(dsn: str) -> list[str]:
    """Applies pending migrations, each in its own transaction, then every file of
    `sql/functions` whose checksum changed (all of them after a migration, which
    may have dropped what they define); returns the names of what it applied.

    Safe to run from many processes at once: a session advisory lock serialises
    the runners. A migration already applied is checked against its checksum, so
    an edited migration is refused rather than silently ignored. A migration that
    replaces others (`-- replaces:`, a squash) counts as applied where all of
    them were, and is refused where only some were.
    """
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   name text PRIMARY KEY,
                   checksum bytea NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now());
               CREATE TABLE IF NOT EXISTS schema_functions (
                   name text PRIMARY KEY,
                   checksum bytea NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        citus = await _has_citus(conn)
        if citus:
            # The function files re-create the append-only triggers of tables that
            # are distributed by now: Citus takes triggers on them only with this;
            # and it replaces distributed functions only over one connection per
            # node in a transaction that touched distributed tables.
            await conn.execute(
                "SET citus.enable_unsafe_triggers = on;"
                " SET citus.multi_shard_modify_mode = 'sequential'"
            )
        run = _run_each_statement if citus else _run_text
        done = await _apply_migrations(conn, run)
        done += await _apply_functions(conn, run, every=bool(done))
        if citus:
            await _distribute(conn)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()


async def _has_citus(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'citus'"))


async def _distribute(conn: asyncpg.Connection) -> None:
    """On a Citus cluster, `sql/citus/distribute.sql`: every community table
    distributed by `community_id`, the global ones reference tables, every
    function distributed by its community argument (docs/scaling.md). Idempotent,
    so it runs on every `migrate` and only works when something is new."""
    async with conn.transaction():
        await _run_each_statement(conn, (sql_dir() / "citus" / "distribute.sql").read_text())
    log.info("citus_distributed")


_Run = Callable[[asyncpg.Connection, str], Awaitable[None]]


async def _run_text(conn: asyncpg.Connection, text: str) -> None:
    await conn.execute(text)


async def _run_each_statement(conn: asyncpg.Connection, text: str) -> None:
    """On Citus, a file one statement at a time: Citus passes some DDL (CREATE
    TRIGGER on a distributed table) on to the shards as the text of the statement
    that ran it, and a text of several statements is refused there ("cannot insert
    multiple commands into a prepared statement")."""
    for statement in sql_statements(text):
        await conn.execute(statement)


# What a statement may hold a semicolon in: comments, strings, quoted names, dollar quotes.
_TOKEN = re.compile(
    r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$([A-Za-z_]\w*)?\$|;", re.S
)


def sql_statements(text: str) -> list[str]:
    """The statements of a SQL file, split at the semicolons outside quotes,
    dollar quotes and comments (the files of `sql/` are plain PostgreSQL)."""
    out: list[str] = []
    start = pos = 0
    while (m := _TOKEN.search(text, pos)) is not None:
        token = m.group(0)
        if token == ";":
            out.append(text[start : m.end()])
            start = pos = m.end()
        elif token.startswith("$"):
            end = text.find(token, m.end())
            if end < 0:
                raise ValueError(f"unterminated dollar quote {token}")
            pos = end + len(token)
        else:
            pos = m.end()
    out.append(text[start:])
    return [s for s in out if _COMMENT.sub("", s).strip(" \n\t;")]


_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)  # (only to tell a comment-only tail)


async def _apply_migrations(conn: asyncpg.Connection, run: _Run) -> list[str]:
    rows = await conn.fetch("SELECT name, checksum FROM schema_migrations")
    applied = {r["name"]: bytes(r["checksum"]) for r in rows}
    done: list[str] = []
    for path in migration_files():
        text = path.read_text()
        checksum = _checksum(text)
        if path.name in applied:
            if applied[path.name] != checksum:
                raise RuntimeError(f"migration {path.name} changed after it was applied")
            continue
        replaced = replaced_by(text)
        found = [name for name in replaced if name in applied]
        if found and len(found) < len(replaced):
            missing = ", ".join(n for n in replaced if n not in applied)
            raise RuntimeError(
                f"{path.name} replaces migrations of which this database lacks {missing}: "
                "upgrade it with the release that has them first"
            )
        async with conn.transaction():
            if not found:  # on a database that has what it replaces, it is recorded only
                await run(conn, text)
            await conn.execute(
                "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                path.name,
                checksum,
            )
        done.append(path.name)
        log.info("migration_applied", migration=path.name, replaced=bool(found))
    return done


async def _apply_functions(conn: asyncpg.Connection, run: _Run, *, every: bool) -> list[str]:
    rows = await conn.fetch("SELECT name, checksum FROM schema_functions")
    applied = {r["name"]: bytes(r["checksum"]) for r in rows}
    done: list[str] = []
    for path in function_files():
        text = path.read_text()
        checksum = _checksum(text)
        name = f"functions/{path.name}"
        if not every and applied.get(name) == checksum:
            continue
        async with conn.transaction():
            await run(conn, text)
            await conn.execute(
                """INSERT INTO schema_functions (name, checksum) VALUES ($1, $2)
                   ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum,
                                                    applied_at = now()""",
                name,
                checksum,
            )
        done.append(name)
        log.info("functions_applied", file=name)
    return done


T = TypeVar("T")
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


async def unit_of_work(
    conn: Any, work: Callable[[], Awaitable[T]], *, atomic: bool = True, tries: int = 5
) -> T:
    """A use case's database work, owned at the use case's entry: BEGIN, `work()`,
    COMMIT, and the whole of it again after a deadlock or a serialization failure
    (everything it did was rolled back). Nothing inside a unit of work retries or
    begins a transaction of its own.

    With `atomic=False` each statement of `work` is its own transaction, which
    spares the BEGIN and COMMIT round trips: for work whose one writing statement
    takes its locks and decides under them (its reads only plan it). A unit of
    work nests in no other: one that would is a bug, refused.

    A refusal by one of the database's own guards (`GUARDS`: a write that got past
    the service's check of the same rule, e.g. by racing it) comes out as its domain
    error, from whichever statement of `work` met it.
    """
    if conn.is_in_transaction():
        raise RuntimeError("a unit of work cannot run inside another transaction")
    for n in range(tries):
        try:
            if not atomic:
                return await work()
            async with conn.transaction():
                return await work()
        except _RETRYABLE:
            if n == tries - 1:
                raise
            await asyncio.sleep(random.uniform(0, 0.005 * 2**n))
        except asyncpg.PostgresError as err:
            guard = GUARDS.get(getattr(err, "sqlstate", None) or "")
            if guard is None:
                raise
            raise guard(str(err)) from err
    raise AssertionError("unreachable")
