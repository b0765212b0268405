"""One benchmark run, start to end: server, service, seed, floor, scenarios,
scale, audit, results."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bulk, dbstats, floor, outbox, pg, pyspy
from bench.cpu import postgres_groups, wait_idle
from bench.driver import LoadGenerator
from bench.profiles import STACK, Profile, scale_specs, small_specs, stack_spec
from bench.scenarios import Spec
from bench.seed import audit, seed
from bench.service_proc import Service, StackServer
from bench.stats import ScenarioResult


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Options:
    profile: Profile
    workers: int
    work_dir: Path
    pgss: bool
    scale: bool
    only: set[str] | None
    clients: int = 32
    py_spy: Path | None = None
    verify_scale: bool = False
    wait_idle_s: float = 0.0
    results_dir: Path = Path("bench/results")
    stamp: str = "run"
    # A Citus build (the folder of `cluster`): run on a coordinator and two workers.
    citus: Path | None = None
    citus_port: int = 56600


@dataclass
class Outcome:
    postgres: dict[str, str] = field(default_factory=dict)
    scenarios: list[ScenarioResult] = field(default_factory=list)
    scale: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    seed: dict[str, float] = field(default_factory=dict)
    service_command: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.key = secrets.token_urlsafe(24)
        self.run_id = secrets.token_hex(3)
        self.out = Outcome()
        self.server: pg.Server | None = None
        self.cluster: pg.Cluster | None = None
        self.service: Service | None = None
        self.stack: StackServer | None = None  # while a stack scenario runs
        self.loadgen: LoadGenerator | None = None
        self.receiver: outbox.Receiver | None = None  # from the first webhook scenario on

    # -- lifecycle -------------------------------------------------------------

    def run(self) -> Outcome:
        try:
            self._start()
            self._small()
            if self.opts.scale:
                self._scale()
        finally:
            self.close()
        return self.out

    def close(self) -> None:
        if self.loadgen is not None:
            self.loadgen.close()
        if self.receiver is not None:
            self.receiver.close()
        if self.service is not None:
            self.service.stop()
        if self.server is not None:
            self.server.stop()
        if self.cluster is not None:
            self.cluster.stop()

    def _start(self) -> None:
        pgdata = self.opts.work_dir / "pgdata"
        database_url = None
        if self.opts.citus is not None:
            where = self.opts.work_dir / "citus" / "c"
            self.opts.work_dir.chmod(0o755)  # mkdtemp's is private; the servers' user must pass
            say(f"starting a Citus coordinator and two workers in {where}")
            self.cluster = pg.Cluster(self.opts.citus, where, self.opts.citus_port)
            self.dsn = database_url = self.cluster.dsn()
        else:
            say(f"starting PostgreSQL in {pgdata}")
            self.server = pg.Server(pgdata, pg_stat_statements=self.opts.pgss)
            self.dsn = self.server.dsn()
        self.out.postgres = asyncio.run(pg.settings(self.dsn))
        pg.check_durable(self.out.postgres)
        if self.opts.profile.name == "full":
            rate = pg.fsync_rate(self.opts.work_dir)
            self.out.postgres["fdatasync_per_s"] = "n/a" if rate is None else f"{rate:.0f}"
        if self.server is not None:
            asyncio.run(floor.create(self.dsn, self.server.dsn("floor")))
        say(f"starting the service ({self.opts.workers} workers)")
        self.service = Service(
            pgdata,
            self.key,
            self.opts.workers,
            self.opts.work_dir / "service.log",
            database_url=database_url,
        )
        self.service.wait_ready()
        self.out.service_command = self.service.command
        if self.opts.pgss:
            asyncio.run(dbstats.pgss_enable(self.dsn))
        self.loadgen = LoadGenerator()

    def groups(self) -> dict[str, list[int]]:
        assert self.service is not None
        found = self._postgres_groups()
        if self.stack is not None:
            found["service"] = self.stack.pids()
            found["idle_service"] = self.service.pids()
        else:
            found["service"] = self.service.pids()
        found["loadgen"] = [self.loadgen.pid] if self.loadgen else []
        found["receiver"] = [self.receiver.pid] if self.receiver else []
        found["harness"] = [os.getpid()]
        return found

    def _postgres_groups(self) -> dict[str, list[int]]:
        """PostgreSQL's processes; on a cluster the coordinator's backends apart
        (`pg_coordinator`) from the workers' (`pg_backends`)."""
        if self.server is not None:
            return postgres_groups(self.server.postmaster_pid)
        assert self.cluster is not None
        found: dict[str, list[int]] = {"pg_backends": [], "pg_coordinator": [], "pg_background": []}
        for node in self.cluster.nodes:
            of_node = postgres_groups(self.cluster.postmaster_pid(node))
            backends = "pg_coordinator" if node == "coordinator" else "pg_backends"
            found[backends] += of_node.get("pg_backends", [])
            found["pg_background"] += of_node.get("pg_background", [])
        return found

    # -- phases ----------------------------------------------------------------

    def _idle(self) -> float | None:
        """With --wait-idle: waits for other programs to leave the CPU; the seconds."""
        if not self.opts.wait_idle_s:
            return None
        waited = wait_idle(self.groups, self.opts.wait_idle_s)
        if waited >= 5:
            say(f"  waited {waited} s for other programs to leave the CPU")
        return waited

    def _wanted(self, name: str) -> bool:
        return self.opts.only is None or name in self.opts.only

    def _small(self) -> None:
        assert self.service is not None
        p = self.opts.profile
        say(f"seeding {p.members:,} members through the API")
        self.out.seed, keys = asyncio.run(
            seed(self.service.port, self.key, p.members, p.statement_entries)
        )
        self.out.seed["sealing"] = asyncio.run(dbstats.wait_sealed(self.dsn))
        self.out.seed["analyze"] = asyncio.run(dbstats.analyze(self.dsn))
        say(f"  seeded: {self.out.seed} (seconds)")
        if self.cluster is not None:
            say("on Citus: no SQL floor (pgbench's tables would be the coordinator's own)")
            say("  and no stack scenarios (they measure the HTTP stack, not the database)")
        for mode in ("uniform", "hot") if self.server is not None else ():
            if self._wanted(f"floor_{mode}"):
                self._floor(mode)
        for name, title, app in STACK if self.server is not None else ():
            if self._wanted(name):
                self._stack_scenario(stack_spec(p, name, title, self.run_id, 0), app)
        for spec in small_specs(p, self.run_id, self.service.port, self.key, keys):
            if self._wanted(spec.name):
                self._scenario(spec)
        self._audit()

    def _floor(self, mode: str) -> None:
        assert self.server is not None
        p = self.opts.profile
        say(f"SQL floor ({mode}) with pgbench, {self.opts.clients} clients")
        waited = self._idle()
        before = asyncio.run(dbstats.snapshot(self.dsn))
        result = floor.run(
            pg.bin_dir() / "pgbench",
            self.server.socket_dir,
            mode,
            self.opts.clients,
            p.seconds,
            p.warmup_s,
            self.groups,
        )
        after = asyncio.run(dbstats.snapshot(self.dsn))
        result.db.update(dbstats.delta(before, after, result.all_ops))
        result.db["waited_for_idle_s"] = waited
        self.out.scenarios.append(result)
        _summary(result)

    def _scenario(self, spec: Spec) -> None:
        assert self.loadgen is not None
        spec.clients = self.opts.clients
        say(f"{spec.title}")
        if self.opts.pgss:
            asyncio.run(dbstats.pgss_reset(self.dsn))
        waited = self._idle()
        listening = self._listen(spec)
        before = asyncio.run(dbstats.snapshot(self.dsn))
        spy = self._spy(spec)
        result = self.loadgen.run(spec, self.groups)
        if listening is not None:
            listening.at_end = asyncio.run(outbox.counts(self.dsn, listening.webhook_id))
        after = asyncio.run(dbstats.snapshot(self.dsn))
        result.db.update(dbstats.delta(before, after, result.all_ops))
        result.db["waited_for_idle_s"] = waited
        if spy is not None:
            result.db["service_profile"] = spy.summary()
        if self.opts.pgss:
            result.db["top_statements"] = asyncio.run(dbstats.pgss_top(self.dsn))
        result.db["drain_s"] = asyncio.run(dbstats.wait_quiet(self.dsn))
        if result.db["xids"] > 0:
            result.settle_s = asyncio.run(dbstats.wait_sealed(self.dsn))
        if listening is not None:
            result.db["webhook"] = self._unlisten(listening)
        self.out.scenarios.append(result)
        _summary(result)

    def _listen(self, spec: Spec) -> outbox.Listening | None:
        """A webhook scenario's endpoint, created right before it runs."""
        if not spec.webhook:
            return None
        assert self.service is not None
        if self.receiver is None:
            self.receiver = outbox.Receiver()
        wid = outbox.webhook_id(self.run_id, spec.name)
        return asyncio.run(
            outbox.create(self.service.port, self.key, wid, spec.webhook, self.receiver)
        )

    def _unlisten(self, listening: outbox.Listening) -> dict[str, Any]:
        """Waits for the endpoint's backlog, then deletes it (what is still pending
        becomes failed), so that the next scenario writes no events."""
        assert self.service is not None and self.receiver is not None
        timeout_s = self.opts.profile.webhook_drain_s
        found = outbox.drain(self.dsn, listening, self.receiver, self.groups, timeout_s)
        asyncio.run(outbox.delete(self.service.port, self.key, listening.webhook_id))
        end = found["at_end"]
        say(
            f"  webhook: {end['made']:,} deliveries, {end['delivered']:,} delivered and "
            f"{end['pending']:,} pending at the end; drained in {found['drain_s']} s: "
            f"{found['after_drain']['delivered']:,} delivered, {found['left_pending']:,} left, "
            f"{found['received']:,} received"
        )
        return found

    def _stack_scenario(self, spec: Spec, app: str) -> None:
        """A scenario against a stack server instead of the service (which idles)."""
        log = self.opts.work_dir / f"{spec.name}.log"
        self.stack = StackServer(app, self.dsn, log)
        try:
            self.stack.wait_ready()
            spec.port = self.stack.port
            self._scenario(spec)
        finally:
            self.stack.stop()
            self.stack = None

    def _spy(self, spec: Spec) -> pyspy.Recorder | None:
        server = self.stack or self.service
        if self.opts.py_spy is None or server is None:
            return None
        prefix = self.opts.results_dir / f"{self.opts.stamp}-pyspy" / spec.name
        prefix.parent.mkdir(parents=True, exist_ok=True)
        seconds = spec.warmup_s + spec.seconds
        return pyspy.Recorder(self.opts.py_spy, server.pids(), seconds, prefix)

    def _audit(self) -> None:
        assert self.service is not None
        say("audit/verify of the bench community")
        start = time.perf_counter()

        try:
            report = asyncio.run(audit(self.service.port, self.key))
        except SystemExit as err:
            self.out.audit = {"ok": False, "summary": f"failed: {err}"}
            return
        seconds = round(time.perf_counter() - start, 1)
        problems = report.get("problems", [])
        summary = "ok" if report.get("ok") else f"{len(problems)} problems"
        self.out.audit = {
            "ok": bool(report.get("ok")),
            "checked": report.get("checked"),
            "problems": problems[:10],
            "seconds": seconds,
            "summary": f"{summary}, {seconds} s",
        }
        say(f"  audit: {self.out.audit['summary']}")

    def _scale(self) -> None:
        assert self.service is not None
        p = self.opts.profile
        say(f"bulk-loading {p.scale_members:,} members and {p.scale_postings:,} postings")
        quiet_s = asyncio.run(dbstats.wait_quiet(self.dsn))
        if quiet_s >= 1:
            say(f"  waited {quiet_s} s for the service's running statements to finish")
        before = asyncio.run(dbstats.ledger_bytes(self.dsn))
        start = time.perf_counter()
        timings = asyncio.run(
            bulk.load(self.dsn, p.scale_members, p.scale_postings, p.scale_statement_entries, say)
        )
        load_s = round(time.perf_counter() - start, 1)
        after = asyncio.run(dbstats.ledger_bytes(self.dsn))
        grown = {k: after[k] - before.get(k, 0) for k in after}
        self.out.scale = {
            "members": p.scale_members,
            "postings": p.scale_postings,
            "load_s": load_s,
            "load_steps_s": timings,
            "bytes_by_relation": grown,
            "bytes_per_posting": round(sum(grown.values()) / p.scale_postings, 1),
            "sealed": False,
        }
        if self.opts.verify_scale:
            self.out.scale["verified"] = asyncio.run(bulk.verify(self.dsn, say))
        say(f"  loaded in {load_s} s; {self.out.scale['bytes_per_posting']} bytes per posting")
        for spec in scale_specs(p, self.run_id, self.service.port, self.key):
            if self._wanted(spec.name):
                self._scenario(spec)


def _summary(r: ScenarioResult) -> None:
    say(
        f"  {r.ops_per_s:,.0f} ops/s, p50 {r.latency.p50} ms, p99 {r.latency.p99} ms, "
        f"errors {r.errors}, expected 409 {r.expected}, cpu {r.cpu_cores}"
    )
    for sample in r.error_samples[:3]:
        say(f"    error: {sample}")


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
