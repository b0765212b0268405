"""The SQL floor: the textbook per-call transfer in plain SQL, driven by pgbench.

Database `floor` on the same server: 10,000 accounts and an entries table with an
index by account. Each transaction locks both accounts in id order with
`SELECT … FOR UPDATE`, updates both balances, inserts the two entries and commits
(prepared statements, one statement per round trip). `uniform` picks two
different accounts at random; `hot` moves between accounts 1 and 2 only.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg

from bench.cpu import CpuMeter, Groups
from bench.stats import ScenarioResult, latency

ACCOUNTS = 10_000
SCHEMA = f"""
CREATE TABLE fl_accounts (id bigint PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE fl_entries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES fl_accounts (id),
    amount bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX fl_entries_by_account ON fl_entries (account_id, id);
INSERT INTO fl_accounts SELECT g, 1000000 FROM generate_series(1, {ACCOUNTS}) g;
"""
PICK = {
    "uniform": f"\\set a random(1, {ACCOUNTS})\n\\set d random(1, {ACCOUNTS - 1})\n"
    f"\\set b 1 + (:a - 1 + :d) % {ACCOUNTS}\n",
    "hot": "\\set a random(1, 2)\n\\set b 3 - :a\n",
}
TRANSFER = """\\set lo least(:a, :b)
\\set hi greatest(:a, :b)
BEGIN;
SELECT id, balance FROM fl_accounts WHERE id IN (:lo, :hi) ORDER BY id FOR UPDATE;
UPDATE fl_accounts SET balance = balance - 1 WHERE id = :a;
UPDATE fl_accounts SET balance = balance + 1 WHERE id = :b;
INSERT INTO fl_entries (account_id, amount) VALUES (:a, -1), (:b, 1);
COMMIT;
"""


async def create(admin_dsn: str, floor_dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute("CREATE DATABASE floor")
    finally:
        await conn.close()
    conn = await asyncpg.connect(floor_dsn)
    try:
        await conn.execute(SCHEMA)
        await conn.execute("VACUUM ANALYZE fl_accounts")
    finally:
        await conn.close()


def run(
    pgbench: Path,
    socket_dir: Path,
    mode: str,
    clients: int,
    seconds: float,
    warmup_s: float,
    groups: Groups,
) -> ScenarioResult:
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as tmp:
        script = Path(tmp) / f"{mode}.sql"
        script.write_text(PICK[mode] + TRANSFER)
        command = [
            str(pgbench),
            "-h",
            str(socket_dir),
            "-U",
            "postgres",
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(round(warmup_s + seconds)),
            "-P",
            "5",
            "-f",
            str(script),
            "-l",
            "--log-prefix",
            f"{tmp}/log",
            "floor",
        ]
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        meter = CpuMeter(lambda: {**groups(), "pgbench": [proc.pid]})
        assert proc.stdout is not None
        output: list[str] = []
        for line in proc.stdout:
            output.append(line)
            if line.startswith("progress:"):
                sys.stderr.write(f"  floor_{mode:<8} {line}")
        if proc.wait() != 0:
            raise SystemExit("pgbench failed:\n" + "".join(output[-20:]))
        cores = meter.stop()
        result = _from_logs(Path(tmp), mode, clients, warmup_s, "".join(output))
    result.cpu_cores = cores
    return result


def _from_logs(tmp: Path, mode: str, clients: int, warmup_s: float, output: str) -> ScenarioResult:
    """Counts the transactions that finished after the warm-up, from pgbench's
    per-transaction logs (client, n, latency µs, script, epoch s, µs)."""
    done: list[tuple[float, float]] = []
    for path in tmp.glob("log*"):
        for line in path.read_text().splitlines():
            fields = line.split()
            finished = int(fields[4]) + int(fields[5]) / 1e6
            done.append((finished, int(fields[2]) / 1e6))
    if not done:
        raise SystemExit("pgbench logged no transactions:\n" + output[-2000:])
    first = min(f - lat for f, lat in done)
    measure_from = first + warmup_s
    last = max(f for f, _ in done)
    kept = [lat for f, lat in done if f >= measure_from]
    seconds = max(last - measure_from, 1e-9)
    return ScenarioResult(
        name=f"floor_{mode}",
        title=f"SQL floor (pgbench), {mode}",
        clients=clients,
        seconds=round(seconds, 2),
        requests=len(kept),
        ok=len(kept),
        expected=0,
        errors=_failed(output),
        unfinished=0,
        error_samples=[],
        ops=len(kept),
        ops_per_s=round(len(kept) / seconds, 1),
        all_ops=len(done),
        requests_per_s=round(len(kept) / seconds, 1),
        latency=latency(kept),
        by_kind={},
    )


def _failed(output: str) -> int:
    """pgbench's 'number of failed transactions: N (…)' line, if it printed one."""
    for line in output.splitlines():
        if line.startswith("number of failed transactions:"):
            return int(line.split(":", 1)[1].split()[0])
    return 0
