"""`python -m bench`: the ledger's benchmark (issue 3). See docs/performance.md.

uv run python -m bench                  # full run, about 20 minutes
uv run python -m bench --quick          # about 2 minutes, small scale data
uv run python -m bench --quick --smoke  # CI: every scenario for 2 s; exit 1 on any error
uv run python -m bench --quick --no-scale --citus ../shared/citus   # on Citus
uv run python -m bench.tools.citus_compare --citus ../shared/citus  # both, one table
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.profiles import PROFILES, SCALE, SMALL, STACK
from bench.run import Bench, Options, Outcome, say, stamp

ROOT = Path(__file__).resolve().parent.parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short scenarios, small scale data")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CI check: a few seconds per scenario; exit 1 on any unexpected "
        "error or failed audit; no speed assertions",
    )
    parser.add_argument("--workers", type=int, default=1, help="service worker processes")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--seconds", type=float, help="measured seconds per scenario")
    parser.add_argument("--only", help="comma-separated scenario names (e.g. s1_transfer)")
    parser.add_argument("--no-scale", action="store_true", help="skip scenario 7")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each scenario wait up to SECONDS for other programs to leave the CPU",
    )
    parser.add_argument(
        "--verify-scale",
        action="store_true",
        help="run the audit's checks (all but sealing) on the scale data",
    )
    parser.add_argument(
        "--pgss",
        action="store_true",
        help="load pg_stat_statements and record each scenario's top statements",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="PATH",
        help="py-spy executable: sample the service's processes per scenario",
    )
    parser.add_argument(
        "--citus",
        type=Path,
        metavar="DIR",
        help="a Citus build (the folder of its `cluster` script): run on a coordinator "
        "and two workers instead of one server (no SQL floor, stack or scale scenarios)",
    )
    parser.add_argument("--citus-port", type=int, default=56600, help="the coordinator's port")
    parser.add_argument("--work-dir", type=Path, help="where the database lives (default: /tmp)")
    parser.add_argument("--keep-data", action="store_true", help="keep the database afterwards")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    return parser.parse_args(argv)


def smoke_failures(out: Outcome, expected: int) -> list[str]:
    failures = [
        f"{s.name}: {s.errors} errors, e.g. {s.error_samples[:2]}"
        for s in out.scenarios
        if s.errors
    ]
    failures += [f"{s.name}: completed no operation" for s in out.scenarios if s.ops == 0]
    for s in out.scenarios:
        hook = s.db.get("webhook")
        if hook is None:
            continue
        if not hook["received"]:
            failures.append(f"{s.name}: the webhook receiver got no delivery")
        if hook["left_pending"]:
            failures.append(f"{s.name}: {hook['left_pending']} deliveries never drained")
    if len(out.scenarios) != expected:
        failures.append(f"{len(out.scenarios)} of {expected} scenarios ran")
    if not out.audit.get("ok"):
        failures.append(f"audit/verify: {out.audit}")
    return failures


def _notes(out: Outcome) -> list[str]:
    busy = [
        f"{s.name} {s.cpu_cores.get('unattributed', 0.0):.2f}"
        for s in out.scenarios
        if s.cpu_cores.get("unattributed", 0.0) > 0.3
    ]
    if not busy:
        return []
    return [
        "Other programs (or the kernel) used this many cores during: "
        + ", ".join(busy)
        + ". Those scenarios had less than the whole machine; rerun with --wait-idle."
    ]


def _citus_notes(citus: Path | None) -> list[str]:
    if citus is None:
        return []
    return [
        f"On Citus: a coordinator and two workers on this machine ({citus}/cluster), the "
        "schema distributed by the service's migrate. No SQL floor, stack or scale "
        "scenarios. PostgreSQL's cores count the coordinator's backends and the workers'."
    ]


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds, so the service and PostgreSQL are stopped


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    args = parse(argv)
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.seconds:
        profile.seconds = args.seconds
    started, began = stamp(), time.perf_counter()
    commit = report.git_commit(ROOT)  # the code the service starts with
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="points-ledger-bench-"))
    ours = args.work_dir is None or not args.work_dir.exists()  # never delete a user's folder
    only = set(args.only.split(",")) if args.only else None
    opts = Options(
        profile=profile,
        workers=args.workers,
        work_dir=work,
        pgss=args.pgss,
        scale=not args.no_scale and args.citus is None,
        only=only,
        clients=args.clients,
        py_spy=args.py_spy,
        verify_scale=args.verify_scale,
        wait_idle_s=args.wait_idle,
        results_dir=args.out,
        stamp=started,
        citus=args.citus,
        citus_port=args.citus_port,
    )
    try:
        out = Bench(opts).run()
    finally:
        log = work / "service.log"
        if log.exists() and log.stat().st_size:
            args.out.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, args.out / f"{started}-service.log")
        if ours and not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    floor_tps = next((s.ops_per_s for s in out.scenarios if s.name == "floor_uniform"), 0.0)
    for s in out.scenarios:
        s.ratio_to_floor = round(s.ops_per_s / floor_tps, 3) if floor_tps else None
    run = report.Run(
        started_at=started,
        profile=profile.name,
        command=shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        git_commit=commit,
        machine=report.machine(),
        postgres=out.postgres,
        service={
            "workers": args.workers,
            "command": shlex.join(out.service_command),
            "seed_steps_s": out.seed,
        },
        floor_uniform_tps=floor_tps,
        scenarios=out.scenarios,
        scale=out.scale,
        targets=report.targets(out.scenarios, floor_tps, out.scale.get("bytes_per_posting")),
        audit=out.audit,
        seconds_total=round(time.perf_counter() - began, 1),
        notes=_notes(out) + _citus_notes(args.citus),
        consent=report.consent_costs(out.scenarios),
        outbox=report.outbox_costs(out.scenarios),
    )
    json_path, md_path, text = report.write(run, args.out, started)
    print(text)
    say(f"wrote {json_path} and {md_path} in {run.seconds_total} s")
    if args.smoke:
        on_one_server = 2 + len(STACK) if args.citus is None else 0  # floors and stack
        every = on_one_server + len(SMALL) + (len(SCALE) if opts.scale else 0)
        expected = every if only is None else len(out.scenarios)
        failures = smoke_failures(out, expected)
        for failure in failures:
            say(f"SMOKE FAILED: {failure}")
        if failures:
            return 1
        say("smoke: every scenario started and completed with no unexpected errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
