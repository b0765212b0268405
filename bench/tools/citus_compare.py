"""The benchmark's scenarios on one server and on a Citus coordinator with two
workers, in one run, and one table of both (issue 18, docs/scaling.md).

    uv run python -m bench.tools.citus_compare --citus ../shared/citus \\
        --seconds 10 --wait-idle 20 --only s1_transfer,s10_redemption

Runs `python -m bench --quick --no-scale` twice with the same options, first on
the embedded server, then with `--citus`, and writes both runs' own reports and
`<stamp>-citus.md`/`.json` beside them in bench/results: per scenario, ops/s on
each and their ratio, p50 and p99, errors, and where PostgreSQL's cores went
(the coordinator's backends, the workers', background) against the service's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench import __main__ as bench
from bench.run import say, stamp

ROOT = Path(__file__).resolve().parents[2]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tools.citus_compare")
    parser.add_argument("--citus", type=Path, required=True, help="the folder of `cluster`")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--wait-idle", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    return parser.parse_args(argv)


def _run(common: list[str], out: Path) -> dict[str, Any]:
    """One `python -m bench` run in this process; its JSON report."""
    before = set(out.glob("*.json"))
    if bench.main(common) != 0:
        raise SystemExit(f"python -m bench {' '.join(common)} failed")
    (made,) = set(out.glob("*.json")) - before
    found: dict[str, Any] = json.loads(made.read_text())
    found["file"] = made.name
    return found


def _pg_split(cpu: dict[str, float]) -> str:
    parts = (cpu.get(k, 0.0) for k in ("pg_coordinator", "pg_backends", "pg_background"))
    return " / ".join(f"{v:.2f}" for v in parts)


def rows(one: dict[str, Any], citus: dict[str, Any]) -> list[dict[str, Any]]:
    """Per scenario that ran on both: the two runs side by side."""
    theirs = {s["name"]: s for s in citus["scenarios"]}
    found = []
    for a in one["scenarios"]:
        b = theirs.get(a["name"])
        if b is None:
            continue
        found.append(
            {
                "name": a["name"],
                "title": a["title"],
                "ops_per_s": (a["ops_per_s"], b["ops_per_s"]),
                "ratio": round(b["ops_per_s"] / a["ops_per_s"], 2) if a["ops_per_s"] else None,
                "p50_ms": (a["latency"]["p50"], b["latency"]["p50"]),
                "p99_ms": (a["latency"]["p99"], b["latency"]["p99"]),
                "errors": (a["errors"], b["errors"]),
                "cpu": (a["cpu_cores"], b["cpu_cores"]),
                "pg_ms_per_op": tuple(_pg_ms(s) for s in (a, b)),
                "service_ms_per_op": tuple(_service_ms(s) for s in (a, b)),
            }
        )
    return found


def _pg_ms(s: dict[str, Any]) -> float | None:
    cpu = s["cpu_cores"]
    pg = sum(cpu.get(k, 0.0) for k in ("pg_coordinator", "pg_backends", "pg_background"))
    return round(1000 * pg / s["ops_per_s"], 2) if s["ops_per_s"] else None


def _service_ms(s: dict[str, Any]) -> float | None:
    service = s["cpu_cores"].get("service", 0.0)
    return round(1000 * service / s["ops_per_s"], 2) if s["ops_per_s"] else None


def markdown(one: dict[str, Any], citus: dict[str, Any], table: list[dict[str, Any]]) -> str:
    lines = [
        f"One server (`{one['file']}`) against a Citus coordinator with two workers "
        f"(`{citus['file']}`), one run of `{citus['command']}` and its twin without "
        f"`--citus`, commit `{one['git_commit'][:12]}`, {one['machine'].get('cores')} cores "
        "shared by PostgreSQL (every node), the service and the load generator.",
        "",
        "| scenario | ops/s one server | ops/s Citus | Citus / one | p50 ms one / Citus "
        "| p99 ms one / Citus | errors | PG ms of CPU per op one / Citus "
        "| Citus PG cores: coordinator / workers / background | service ms per op one / Citus |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in table:
        lines.append(
            f"| {r['title']} | {r['ops_per_s'][0]:,.0f} | {r['ops_per_s'][1]:,.0f} "
            f"| {r['ratio']} | {r['p50_ms'][0]} / {r['p50_ms'][1]} "
            f"| {r['p99_ms'][0]} / {r['p99_ms'][1]} | {r['errors'][0]} / {r['errors'][1]} "
            f"| {r['pg_ms_per_op'][0]} / {r['pg_ms_per_op'][1]} | {_pg_split(r['cpu'][1])} "
            f"| {r['service_ms_per_op'][0]} / {r['service_ms_per_op'][1]} |"
        )
    lines += [
        "",
        f"Audit of `bench`: one server {one['audit'].get('summary')}; "
        f"Citus {citus['audit'].get('summary')}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    common = ["--quick", "--no-scale", "--seconds", str(args.seconds)]
    common += ["--wait-idle", str(args.wait_idle), "--clients", str(args.clients)]
    common += ["--out", str(args.out)] + (["--only", args.only] if args.only else [])
    began = stamp()
    say("one server")
    one = _run(common, args.out)
    say("Citus: a coordinator and two workers")
    citus = _run([*common, "--citus", str(args.citus)], args.out)
    table = rows(one, citus)
    text = markdown(one, citus, table)
    (args.out / f"{began}-citus.md").write_text(text)
    both = {"one_server": one["file"], "citus": citus["file"], "rows": table}
    (args.out / f"{began}-citus.json").write_text(json.dumps(both, indent=1))
    print(text)
    say(f"wrote {args.out / f'{began}-citus.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
