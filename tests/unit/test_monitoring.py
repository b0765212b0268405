"""Offline checks of the monitoring files: k8s/alerts.yaml (a PrometheusRule) and
k8s/grafana-dashboard.json. No Prometheus and no Grafana: every PromQL expression is
parsed with promql-parser, and every metric it reads must be one the service exports
(EXPECTED_METRICS) or one of kube-state-metrics' (KUBE_STATE_METRICS)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import promql_parser
import pytest
import yaml

from tests.helpers import K8S, ROOT

Doc = dict[str, Any]


class Metric(NamedTuple):
    """One metric of the service's /metrics: its Prometheus type and its labels, each
    with its closed set of values, or None where the values are open (paths, pods)."""

    type: str
    labels: dict[str, frozenset[str] | None]


_REQUEST_LABELS: dict[str, frozenset[str] | None] = dict.fromkeys(
    ("method", "path", "status_code", "app_name")
)
_JOBS = frozenset({"expire_holds", "seal_chains", "settle_rules"})
_LIMITS = frozenset({"auth_address", "auth_key", "writes"})

# THE list of the service's metrics that the alerts and the dashboard rely on, by the
# name a query uses (counters with their _total; a histogram by its base name, queried
# as _bucket, _sum and _count). A test against a live /metrics should read this
# constant. With several workers, gauges may also carry prometheus_client's `pid`.
EXPECTED_METRICS: dict[str, Metric] = {
    "ledger_requests_total": Metric("counter", _REQUEST_LABELS),
    "ledger_requests_error_total": Metric("counter", _REQUEST_LABELS),
    "ledger_request_duration_seconds": Metric("histogram", _REQUEST_LABELS),
    "ledger_requests_in_progress": Metric("gauge", dict.fromkeys(("method", "path", "app_name"))),
    "ledger_seal_lag_seconds": Metric("gauge", {}),
    "ledger_holds_expired_total": Metric("counter", {}),
    "ledger_job_runs_total": Metric("counter", {"job": _JOBS}),
    "ledger_job_failures_total": Metric("counter", {"job": _JOBS}),
    "ledger_db_pool_connections_in_use": Metric("gauge", {}),
    "ledger_db_pool_connections_max": Metric("gauge", {}),
    "ledger_db_statement_timeouts_total": Metric("counter", {}),
    "ledger_db_unavailable_total": Metric("counter", {}),
    "ledger_rate_limited_total": Metric("counter", {"limit": _LIMITS}),
    "ledger_http_refused_total": Metric(
        "counter", {"status": frozenset({"408", "414", "431", "503"})}
    ),
}

# kube-state-metrics series the alerts read (the Jobs and Deployments of k8s/).
KUBE_STATE_METRICS: dict[str, Metric] = {
    "kube_job_status_failed": Metric("gauge", dict.fromkeys(("namespace", "job_name", "reason"))),
    "kube_deployment_status_replicas_available": Metric(
        "gauge", dict.fromkeys(("namespace", "deployment"))
    ),
}

# Labels Prometheus attaches to every series it scrapes through a PodMonitor.
TARGET_LABELS = frozenset({"namespace", "pod", "container", "endpoint", "instance", "job"})

# Grafana's variables as the dashboard uses them, replaced by a value before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": "points-ledger"}

HISTOGRAM_SERIES = {"_bucket": {"le"}, "_sum": set(), "_count": set()}


# --- PromQL --------------------------------------------------------------------------


def nodes(expr: promql_parser.Expr) -> list[promql_parser.Expr]:
    """Every node of an expression's syntax tree, depth first."""
    found: list[promql_parser.Expr] = []
    promql_parser.walk(expr, found.append)
    return found


def known_metric(name: str) -> tuple[str, Metric, set[str]]:
    """(metric, its description, labels its series adds) for one series name."""
    for known in (EXPECTED_METRICS, KUBE_STATE_METRICS):
        if name in known:
            return name, known[name], set()
    for suffix, extra in HISTOGRAM_SERIES.items():
        base = name.removesuffix(suffix)
        if base != name and EXPECTED_METRICS.get(base, Metric("", {})).type == "histogram":
            return base, EXPECTED_METRICS[base], extra
    raise AssertionError(f"{name} is neither in EXPECTED_METRICS nor in KUBE_STATE_METRICS")


def labels_of(expr: promql_parser.Expr) -> set[str]:
    """Every label any series read under this node can carry."""
    found = set(TARGET_LABELS)
    for node in nodes(expr):
        if isinstance(node, promql_parser.VectorSelector):
            _, metric, extra = known_metric(node.name)
            found |= set(metric.labels) | extra
    return found


def metrics_read(expr: promql_parser.Expr) -> set[str]:
    return {
        known_metric(node.name)[0]
        for node in nodes(expr)
        if isinstance(node, promql_parser.VectorSelector)
    }


def parse(text: str) -> promql_parser.Expr:
    """Parses one expression and checks each selector against the known metrics: a
    metric name, matchers only on labels the series has, values from a closed set
    where there is one, and aggregation only by labels the series under it have."""
    try:
        expr = promql_parser.parse(text)
    except ValueError as error:
        raise AssertionError(f"{text!r} does not parse: {error}") from None
    for node in nodes(expr):
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"{text!r}: select by metric name"
            _, metric, extra = known_metric(node.name)
            labels = set(metric.labels) | extra | TARGET_LABELS
            for matcher in node.matchers.matchers:
                assert matcher.name in labels, f"{text!r}: {node.name} has no {matcher.name}"
                closed = metric.labels.get(matcher.name)
                if closed is not None and matcher.op == promql_parser.MatchOp.Equal:
                    assert matcher.value in closed, f"{text!r}: {matcher.name}={matcher.value}"
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            unknown = set(node.modifier.labels) - labels_of(node.expr)
            assert not unknown, f"{text!r}: grouped by {unknown}, which no series under it has"
    return expr


def output_labels(expr: promql_parser.Expr) -> set[str]:
    """The labels an alert's result keeps, for the expression shapes used here: an
    aggregation by some labels, compared with a number or divided by a like one."""
    if isinstance(expr, promql_parser.ParenExpr):
        return output_labels(expr.expr)
    if isinstance(expr, promql_parser.BinaryExpr):
        return output_labels(expr.lhs)
    assert isinstance(expr, promql_parser.AggregateExpr), f"{expr}: aggregate it"
    assert expr.modifier is not None, f"{expr}: aggregate by the labels to keep"
    assert expr.modifier.type == promql_parser.AggModifierType.By, f"{expr}: use by (...)"
    return set(expr.modifier.labels)


def test_the_parser_check_refuses_what_it_should() -> None:
    """The checks above are not vacuous."""
    parse('sum by (path) (rate(ledger_requests_total{status_code="503"}[5m]))')
    bad = [
        "sum(rate(ledger_requests_total[5m])",  # unbalanced
        "rate(ledger_request_total[5m])",  # not a known metric (missing s)
        'ledger_requests_total{status="503"}',  # the label is status_code
        'ledger_job_runs_total{job="seal_chain"}',  # not one of the jobs
        "sum by (route) (ledger_requests_total)",  # no such label to group by
        "rate(ledger_requests_total[$__rate_interval])",  # a Grafana variable left in
    ]
    for text in bad:
        with pytest.raises(AssertionError):
            parse(text)


# --- Alerts ----------------------------------------------------------------------------


@cache
def prometheus_rule() -> Doc:
    (doc,) = yaml.safe_load_all((K8S / "alerts.yaml").read_text())
    rule: Doc = doc
    return rule


def alerts() -> Iterator[Doc]:
    for group in prometheus_rule()["spec"]["groups"]:
        yield from group["rules"]


# Every alert of issue 12 (and the scheduler's own), with the metric it reads, the
# comparison and threshold of its condition, and how long it must hold.
EXPECTED_ALERTS = {
    "LedgerAuditFailed": ("kube_job_status_failed", ">", 0, "1m"),
    "LedgerSealLag": ("ledger_seal_lag_seconds", ">", 60, "5m"),
    "LedgerSchedulerJobFailing": ("ledger_job_failures_total", ">", 0, "1m"),
    "LedgerSchedulerDown": ("kube_deployment_status_replicas_available", "<", 1, "5m"),
    "LedgerHighErrorRate": ("ledger_requests_error_total", ">", 0.01, "5m"),
    "LedgerHigh503Rate": ("ledger_requests_total", ">", 0.05, "5m"),
    "LedgerRateLimitSpike": ("ledger_rate_limited_total", ">", 1, "1m"),
    "LedgerDbPoolSaturated": ("ledger_db_pool_connections_in_use", ">", 0.9, "5m"),
    "LedgerStatementTimeouts": ("ledger_db_statement_timeouts_total", ">", 0, "1m"),
    "LedgerDatabaseUnavailable": ("ledger_db_unavailable_total", ">", 0, "1m"),
}


def test_the_rule_has_the_prometheus_operators_shape() -> None:
    doc = prometheus_rule()
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["kind"] == "PrometheusRule"
    assert doc["metadata"]["namespace"] == "points-ledger"
    assert set(doc["spec"]) == {"groups"}
    group_names = [group["name"] for group in doc["spec"]["groups"]]
    assert len(group_names) == len(set(group_names)), "group names are unique"
    for group in doc["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}, group["name"]
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"Ledger[A-Z][A-Za-z0-9]+", rule["alert"]), rule["alert"]
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
            assert all(value.strip() for value in rule["annotations"].values())
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)), "alert names are unique"


def test_the_alerts_are_the_ones_asked_for() -> None:
    found = {}
    for rule in alerts():
        expr = parse(rule["expr"])
        assert isinstance(expr, promql_parser.BinaryExpr), rule["alert"]
        assert expr.modifier is None or not expr.modifier.return_bool, "a condition, not 0/1"
        assert isinstance(expr.rhs, promql_parser.NumberLiteral), rule["alert"]
        first = next(n for n in nodes(expr) if isinstance(n, promql_parser.VectorSelector))
        found[rule["alert"]] = (first.name, str(expr.op), expr.rhs.val, rule["for"])
    assert found == EXPECTED_ALERTS


def test_every_alert_reads_known_metrics_and_keeps_the_labels_it_names() -> None:
    for rule in alerts():
        expr = parse(rule["expr"])
        kept = output_labels(expr)
        assert "namespace" in kept, f"{rule['alert']}: keep the namespace"
        for text in rule["annotations"].values():
            named = set(re.findall(r"\$labels\.(\w+)", text))
            assert named <= kept, f"{rule['alert']}: {named - kept} is aggregated away"
            assert text.count("{{") == text.count("}}"), rule["alert"]


def test_the_ratios_compare_like_with_like() -> None:
    """A ratio's two sides read series of one kind, grouped the same way."""
    for rule in alerts():
        condition = parse(rule["expr"])
        assert isinstance(condition, promql_parser.BinaryExpr)
        ratio = condition.lhs
        if isinstance(ratio, promql_parser.BinaryExpr) and str(ratio.op) == "/":
            assert output_labels(ratio.lhs) == output_labels(ratio.rhs), rule["alert"]


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a Markdown file's headings (outside code blocks)."""
    anchors = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = re.match(r"#{1,6} (.+)", line)
        if heading and not in_code:
            text = re.sub(r"[^\w\- ]", "", heading[1].strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_runbook_is_a_section_of_the_operations_guide() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    anchors = heading_anchors(guide)
    assert "alerts" in anchors
    alerts_section = guide.split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    bases = set()
    for rule in alerts():
        url = urlsplit(rule["annotations"]["runbook_url"])
        assert url.scheme == "https" and url.path.endswith("/docs/operations.md"), url
        bases.add(url._replace(fragment="").geturl())
        assert url.fragment in anchors, f"no section #{url.fragment} in docs/operations.md"
        assert f"### {rule['alert']}\n" in alerts_section, f"{rule['alert']} has no runbook"
    assert len(bases) == 1, "one place for the runbooks"


def test_the_scrape_keeps_the_metrics_own_job_label() -> None:
    """ledger_job_*_total carry `job`, a label Prometheus also sets; the PodMonitor
    must honour the service's, or the alerts and the dashboard find `exported_job`."""
    collide = {
        label for metric in EXPECTED_METRICS.values() for label in metric.labels
    } & TARGET_LABELS
    assert collide == {"job"}
    documents = yaml.safe_load_all((K8S / "monitoring.yaml").read_text())
    (app,) = [doc for doc in documents if doc["metadata"]["name"] == "points-ledger"]
    for endpoint in app["spec"]["podMetricsEndpoints"]:
        assert endpoint.get("honorLabels") is True


# --- Dashboard -------------------------------------------------------------------------

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


@cache
def dashboard() -> Doc:
    board: Doc = json.loads((K8S / "grafana-dashboard.json").read_text())
    return board


def panels() -> list[Doc]:
    found: list[Doc] = dashboard()["panels"]
    return found


def dashboard_expressions() -> Iterator[tuple[str, promql_parser.Expr]]:
    for panel in panels():
        for target in panel["targets"]:
            text = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                text = text.replace(variable, value)
            assert "$" not in text, f"{panel['title']}: an unknown variable in {text!r}"
            yield panel["title"], parse(text)


def test_the_dashboard_takes_its_data_source_as_an_input() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"] and board["title"]
    (source,) = board["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )
    # Grafana's sidecar and file provisioning do not fill __inputs in: a data source
    # variable of the same name lets the dashboard work when provisioned too.
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["namespace"]["datasource"] == DATASOURCE
    assert "label_values(ledger_requests_total, namespace)" in json.dumps(variables["namespace"])


def test_every_panel_has_an_id_a_data_source_and_targets() -> None:
    assert panels()
    ids = [panel["id"] for panel in panels()]
    assert all(isinstance(panel_id, int) for panel_id in ids)
    assert len(ids) == len(set(ids)), "panel ids are unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels():
        assert panel["title"] and panel["type"] == "timeseries", panel["id"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        columns = range(grid["x"], grid["x"] + grid["w"])
        area = {(x, y) for x in columns for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_the_dashboard_shows_every_metric_as_asked() -> None:
    read: set[str] = set()
    grouped: set[tuple[str, frozenset[str]]] = set()
    quantiles: set[float] = set()
    for _, expr in dashboard_expressions():
        read |= metrics_read(expr)
        for node in nodes(expr):
            if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
                for metric in metrics_read(node.expr):
                    grouped.add((metric, frozenset(node.modifier.labels)))
            if isinstance(node, promql_parser.Call) and node.func.name == "histogram_quantile":
                quantiles.add(node.args[0].val)
    assert read == set(EXPECTED_METRICS), "the dashboard shows each of the service's metrics"
    assert quantiles == {0.5, 0.99}
    for metric, by in [
        ("ledger_requests_total", "path"),  # request rate by route
        ("ledger_request_duration_seconds", "le"),
        ("ledger_job_runs_total", "job"),
        ("ledger_job_failures_total", "job"),
        ("ledger_rate_limited_total", "limit"),
    ]:
        assert (metric, frozenset({by})) in grouped, (metric, by)
