"""The service's domain metrics (the request metrics are in `middleware`).

Their names are a contract with `k8s/alerts.yaml` and `k8s/grafana-dashboard.json`;
a test reads both and checks each name against a live `/metrics`. Gauges say how
several worker processes add up (prometheus_client's multiprocess mode, see `serve`).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SEAL_LAG = Gauge(
    "ledger_seal_lag_seconds",
    "Age of the oldest final transaction not yet sealed into its hash chain (0: none)",
    multiprocess_mode="livemax",
)
HOLDS_EXPIRED = Counter("ledger_holds_expired_total", "Pending transactions voided at their ttl")
JOB_RUNS = Counter("ledger_job_runs_total", "Scheduled job runs", ("job",))
JOB_FAILURES = Counter("ledger_job_failures_total", "Scheduled job runs that failed", ("job",))
POOL_IN_USE = Gauge(
    "ledger_db_pool_connections_in_use",
    "Database connections taken from the pool",
    multiprocess_mode="livesum",
)
POOL_MAX = Gauge(
    "ledger_db_pool_connections_max",
    "The pool's maximum size",
    multiprocess_mode="livesum",
)
STATEMENT_TIMEOUTS = Counter(
    "ledger_db_statement_timeouts_total",
    "Requests and jobs whose database statement ran past LEDGER_DB_TIMEOUT_S",
)
DB_UNAVAILABLE = Counter(
    "ledger_db_unavailable_total",
    "Requests and jobs refused because the database could not be reached",
)
RATE_LIMITED = Counter(
    "ledger_rate_limited_total",
    "Requests refused with 429, by limit",
    ("limit",),
)
HTTP_REFUSED = Counter(
    "ledger_http_refused_total",
    "Connections answered by the HTTP limits before any request ran (408, 414, 431, 503)",
    ("status",),
)
