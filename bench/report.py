"""The run's result: JSON for machines, a markdown table for people, and the
issue-3 targets with their measured ratios."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import psutil  # type: ignore[import-untyped]

from bench.cpu import postgres_cores
from bench.profiles import WEBHOOKS
from bench.stats import ScenarioResult


class Target(msgspec.Struct, kw_only=True):
    name: str
    measured: float | None
    limit: float
    unit: str
    passed: bool | None


class ConsentCost(msgspec.Struct, kw_only=True):
    """A flow with the consent a store or property key needs (SPEC section 10),
    against the same flow by the admin key, which needs none: the same run."""

    flow: str
    consented: str  # scenario names
    trusted: str
    ops_per_s: float
    trusted_ops_per_s: float
    ratio: float | None  # consented ops/s ÷ trusted ops/s
    service_ms_per_op: float | None  # service CPU per op
    trusted_service_ms_per_op: float | None
    extra_service_ms_per_op: float | None
    requests_per_op: float | None  # the consented flow's requests per op
    p50_ms_by_kind: dict[str, float]  # the consented flow's requests
    trusted_p50_ms_by_kind: dict[str, float]


# flow, scenario with consent, the admin key's scenario
CONSENT_PAIRS = [
    ("offset: mandate", "s9_offset", "s9_offset_operator"),
    ("redemption: spend code", "s10_redemption", "s10_redemption_operator"),
]


class OutboxCost(msgspec.Struct, kw_only=True):
    """A write scenario while a webhook listens to its events (SPEC section 12),
    against the same scenario with nobody listening: the same run."""

    listened: str  # scenario names
    twin: str
    events: list[str]
    ops_per_s: float
    twin_ops_per_s: float
    ratio: float | None  # listened ops/s ÷ twin ops/s
    pg_ms_per_op: float | None  # PostgreSQL CPU per op, in the measured window
    twin_pg_ms_per_op: float | None
    service_ms_per_op: float | None  # service CPU per op (the worker's deliveries too)
    twin_service_ms_per_op: float | None
    deliveries: int  # made while the scenario ran (warm-up and grace included)
    delivered_at_end: int
    pending_at_end: int
    drain_s: float | None
    left_pending: int  # still pending when the drain's bound ran out
    drain_service_ms_per_delivery: float | None
    drain_pg_ms_per_delivery: float | None


class Run(msgspec.Struct, kw_only=True):
    started_at: str
    profile: str
    command: str
    git_commit: str
    machine: dict[str, Any]
    postgres: dict[str, str]
    service: dict[str, Any]
    floor_uniform_tps: float
    scenarios: list[ScenarioResult]
    scale: dict[str, Any]
    targets: list[Target]
    audit: dict[str, Any]
    seconds_total: float
    notes: list[str]
    consent: list[ConsentCost] = msgspec.field(default_factory=list)
    outbox: list[OutboxCost] = msgspec.field(default_factory=list)


def git_commit(root: Path) -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return out.stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "service", "sql")
    return commit + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": model,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _by_name(scenarios: list[ScenarioResult]) -> dict[str, ScenarioResult]:
    return {s.name: s for s in scenarios}


def _target(name: str, measured: float | None, limit: float, unit: str, at_most: bool) -> Target:
    passed = None if measured is None else (measured <= limit if at_most else measured >= limit)
    value = None if measured is None else round(measured, 3)
    return Target(name=name, measured=value, limit=limit, unit=unit, passed=passed)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(
    scenarios: list[ScenarioResult], floor_tps: float, bytes_per_posting: float | None
) -> list[Target]:
    s = _by_name(scenarios)

    def ops(name: str) -> float | None:
        return s[name].ops_per_s if name in s else None

    def p99(name: str) -> float | None:
        return s[name].latency.p99 if name in s else None

    found = [
        _target(
            "1 transfer ≥ 1.0 × uniform SQL floor",
            _ratio(ops("s1_transfer"), floor_tps),
            1.0,
            "×",
            at_most=False,
        ),
        _target(
            "2 hot account ≥ 0.9 × scenario 1",
            _ratio(ops("s2_hot"), ops("s1_transfer")),
            0.9,
            "×",
            at_most=False,
        ),
        _target(
            "6 batch postings/s ≥ 20 × scenario 1",
            _ratio(ops("s6_batch"), ops("s1_transfer")),
            20.0,
            "×",
            at_most=False,
        ),
        _target("1 write p99 ≤ 25 ms", p99("s1_transfer"), 25.0, "ms", at_most=True),
        _target("2 write p99 ≤ 25 ms", p99("s2_hot"), 25.0, "ms", at_most=True),
        _target("5 balance read p99 ≤ 10 ms", p99("s5_balance"), 10.0, "ms", at_most=True),
        _target("5 statement read p99 ≤ 10 ms", p99("s5_statement"), 10.0, "ms", at_most=True),
        # Issue 19: a redemption across two communities against the same one within one.
        _target(
            "11 redemption across communities ≥ 0.5 × 10b",
            _ratio(ops("s11_network_redemption"), ops("s10_redemption_operator")),
            0.5,
            "×",
            at_most=False,
        ),
    ]
    for small, large in (("s5_balance", "s7_balance"), ("s5_statement", "s7_statement")):
        if small in s and large in s:
            for q in ("p50", "p95", "p99"):
                ratio = _ratio(getattr(s[large].latency, q), getattr(s[small].latency, q))
                found.append(
                    _target(f"7 {large[3:]} {q} ≤ 1.5 × scenario 5", ratio, 1.5, "×", at_most=True)
                )
    found.append(_target("7 bytes per posting ≤ 400", bytes_per_posting, 400.0, "B", at_most=True))
    return found


def _service_ms_per_op(s: ScenarioResult) -> float | None:
    service = s.cpu_cores.get("service", 0.0)
    return round(1000 * service / s.ops_per_s, 3) if service and s.ops_per_s else None


def consent_costs(scenarios: list[ScenarioResult]) -> list[ConsentCost]:
    """What consent costs per op, for each pair of CONSENT_PAIRS that ran."""
    s = _by_name(scenarios)
    found = []
    for flow, with_consent, trusted in CONSENT_PAIRS:
        if with_consent not in s or trusted not in s:
            continue
        a, b = s[with_consent], s[trusted]
        ms_a, ms_b = _service_ms_per_op(a), _service_ms_per_op(b)
        found.append(
            ConsentCost(
                flow=flow,
                consented=with_consent,
                trusted=trusted,
                ops_per_s=a.ops_per_s,
                trusted_ops_per_s=b.ops_per_s,
                ratio=None if not b.ops_per_s else round(a.ops_per_s / b.ops_per_s, 3),
                service_ms_per_op=ms_a,
                trusted_service_ms_per_op=ms_b,
                extra_service_ms_per_op=(
                    None if ms_a is None or ms_b is None else round(ms_a - ms_b, 3)
                ),
                requests_per_op=round(a.requests / a.ops, 2) if a.ops else None,
                p50_ms_by_kind={k: v.p50 for k, v in a.by_kind.items()},
                trusted_p50_ms_by_kind={k: v.p50 for k, v in b.by_kind.items()},
            )
        )
    return found


def _pg_ms_per_op(s: ScenarioResult) -> float | None:
    pg = postgres_cores(s.cpu_cores)
    return round(1000 * pg / s.ops_per_s, 3) if pg and s.ops_per_s else None


def outbox_costs(scenarios: list[ScenarioResult]) -> list[OutboxCost]:
    """What a listening webhook costs per write, for each of WEBHOOKS that ran
    with its twin."""
    s = _by_name(scenarios)
    found = []
    for listened, (events, twin) in WEBHOOKS.items():
        if listened not in s or twin not in s or "webhook" not in s[listened].db:
            continue
        a, b = s[listened], s[twin]
        hook = a.db["webhook"]
        end, per_delivery = hook["at_end"], hook["drain_ms_per_delivery"]
        found.append(
            OutboxCost(
                listened=listened,
                twin=twin,
                events=events,
                ops_per_s=a.ops_per_s,
                twin_ops_per_s=b.ops_per_s,
                ratio=None if not b.ops_per_s else round(a.ops_per_s / b.ops_per_s, 3),
                pg_ms_per_op=_pg_ms_per_op(a),
                twin_pg_ms_per_op=_pg_ms_per_op(b),
                service_ms_per_op=_service_ms_per_op(a),
                twin_service_ms_per_op=_service_ms_per_op(b),
                deliveries=end["made"],
                delivered_at_end=end["delivered"],
                pending_at_end=end["pending"],
                drain_s=hook["drain_s"],
                left_pending=hook["left_pending"],
                drain_service_ms_per_delivery=per_delivery["service"],
                drain_pg_ms_per_delivery=per_delivery["pg"],
            )
        )
    return found


def _pair(a: float | None, b: float | None) -> str:
    return f"{a or 0:.3f} / {b or 0:.3f}"


def _outbox_lines(costs: list[OutboxCost]) -> list[str]:
    if not costs:
        return []
    lines = [
        "",
        "| outbox (SPEC 12) | ops/s listened / not | ratio | pg ms/op listened / not "
        "| svc ms/op listened / not | deliveries: made, delivered, pending at end "
        "| drain s (left) | drain ms/delivery svc / pg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in costs:
        ratio = "" if c.ratio is None else f"{c.ratio:.2f}"
        drain = "" if c.drain_s is None else f"{c.drain_s:.1f} ({c.left_pending:,})"
        lines.append(
            f"| {c.listened} ({', '.join(c.events)}) | {c.ops_per_s:,.0f} / "
            f"{c.twin_ops_per_s:,.0f} | {ratio} | {_pair(c.pg_ms_per_op, c.twin_pg_ms_per_op)} "
            f"| {_pair(c.service_ms_per_op, c.twin_service_ms_per_op)} "
            f"| {c.deliveries:,}, {c.delivered_at_end:,}, {c.pending_at_end:,} | {drain} "
            f"| {_pair(c.drain_service_ms_per_delivery, c.drain_pg_ms_per_delivery)} |"
        )
    return lines


def _kinds(p50: dict[str, float]) -> str:
    return ", ".join(f"{kind} {ms:.1f}" for kind, ms in p50.items())


def _consent_lines(costs: list[ConsentCost]) -> list[str]:
    if not costs:
        return []
    lines = [
        "",
        "| consent (SPEC 10) | ops/s with / admin key | ratio | svc ms/op with / admin "
        "| extra svc ms/op | req/op | p50 ms by request, with | p50 ms, admin key |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for c in costs:
        ratio = "" if c.ratio is None else f"{c.ratio:.2f}"
        ms = f"{c.service_ms_per_op or 0:.3f} / {c.trusted_service_ms_per_op or 0:.3f}"
        extra = "" if c.extra_service_ms_per_op is None else f"{c.extra_service_ms_per_op:+.3f}"
        lines.append(
            f"| {c.flow} | {c.ops_per_s:,.0f} / {c.trusted_ops_per_s:,.0f} | {ratio} | {ms} "
            f"| {extra} | {c.requests_per_op or ''} | {_kinds(c.p50_ms_by_kind)} "
            f"| {_kinds(c.trusted_p50_ms_by_kind)} |"
        )
    return lines


def _cores(cpu: dict[str, float]) -> str:
    pg = postgres_cores(cpu)
    service = cpu.get("service", 0.0)
    client = cpu.get("loadgen", 0.0) + cpu.get("pgbench", 0.0) + cpu.get("receiver", 0.0)
    other = cpu.get("unattributed", 0.0) + cpu.get("harness", 0.0) + cpu.get("idle_service", 0.0)
    return f"{pg:.2f} / {service:.2f} / {client:.2f} / {other:.2f}"


def _per_request(s: ScenarioResult) -> str:
    """Milliseconds of service CPU per HTTP request (none for pgbench)."""
    service = s.cpu_cores.get("service", 0.0)
    if not service or not s.requests_per_s:
        return ""
    return f"{1000 * service / s.requests_per_s:.3f}"


def markdown(run: Run) -> str:
    m, pg = run.machine, run.postgres
    lines = [
        f"## Benchmark {run.started_at} ({run.profile})",
        "",
        f"`{run.command}` · commit `{run.git_commit}` · {m['cores']} cores, "
        f"{m['memory_gib']} GiB, {m['cpu']} · PostgreSQL {pg.get('server_version')} "
        f"(fsync={pg.get('fsync')}, synchronous_commit={pg.get('synchronous_commit')}, "
        f"shared_buffers={pg.get('shared_buffers')}, fdatasync/s on this disk "
        f"{pg.get('fdatasync_per_s', 'not measured')}) · service workers "
        f"{run.service.get('workers')} · {run.scenarios[0].clients if run.scenarios else 0} "
        "clients",
        "",
        "| scenario | ops/s | × floor | req/s | p50 ms | p95 ms | p99 ms | errors | 409 expected "
        "| unfinished | xid/op | cores pg / svc / client / other | svc ms/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for s in run.scenarios:
        ratio = "" if s.ratio_to_floor is None else f"{s.ratio_to_floor:.2f}"
        xid = s.db.get("xids_per_op") if s.db else None
        lines.append(
            f"| {s.title} | {s.ops_per_s:,.0f} | {ratio} | {s.requests_per_s:,.0f} "
            f"| {s.latency.p50:.1f} | {s.latency.p95:.1f} | {s.latency.p99:.1f} | {s.errors} "
            f"| {s.expected} | {s.unfinished} | {'' if xid is None else f'{xid:.2f}'} "
            f"| {_cores(s.cpu_cores)} | {_per_request(s)} |"
        )
    lines += _consent_lines(run.consent)
    lines += _outbox_lines(run.outbox)
    lines += ["", "| target (issues 3, 19) | measured | limit | met |", "|---|---:|---:|:---:|"]
    for t in run.targets:
        value = "n/a" if t.measured is None else f"{t.measured:,.2f} {t.unit}"
        met = {True: "yes", False: "**no**", None: "–"}[t.passed]
        lines.append(f"| {t.name} | {value} | {t.limit:g} {t.unit} | {met} |")
    if run.scale:
        sc = run.scale
        lines += [
            "",
            f"Scale data: {sc.get('members', 0):,} members, "
            f"{sc.get('postings', 0):,} postings, loaded in {sc.get('load_s')} s; "
            f"{sc.get('bytes_per_posting')} bytes per posting on disk.",
        ]
    lines += ["", f"Audit of `bench`: {run.audit.get('summary', 'not run')}."]
    lines += [f"- {note}" for note in run.notes]
    return "\n".join(lines) + "\n"


def write(run: Run, out_dir: Path, stamp: str) -> tuple[Path, Path, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stamp}.json"
    md_path = out_dir / f"{stamp}.md"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(run), indent=2))
    text = markdown(run)
    md_path.write_text(text)
    return json_path, md_path, text
