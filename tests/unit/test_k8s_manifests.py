"""Structural checks of k8s/*.yaml, offline: YAML only, no cluster, no database."""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from service.config import load_http_limits
from tests.helpers import K8S, ROOT

Doc = dict[str, Any]


@cache
def manifests() -> tuple[tuple[str, Doc], ...]:
    """Every document of every k8s/*.yaml but kustomization.yaml, with its file name."""
    found: list[tuple[str, Doc]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((path.name, doc))
    return tuple(found)


def of_kind(kind: str) -> list[Doc]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def named(kind: str, name: str) -> Doc:
    matches = [doc for doc in of_kind(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_spec(doc: Doc) -> Doc:
    if doc["kind"] == "CronJob":
        spec: Doc = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        spec = doc["spec"]["template"]["spec"]
        return spec
    raise AssertionError(f"{doc['kind']} has no pod template")


def workloads() -> list[Doc]:
    return [
        doc
        for _, doc in manifests()
        if doc["kind"] in ("Deployment", "Job", "CronJob", "StatefulSet", "DaemonSet")
    ]


def containers(doc: Doc) -> list[Doc]:
    spec = pod_spec(doc)
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_value(container: Doc, name: str) -> str | None:
    for var in container.get("env", []):
        if var["name"] == name:
            value: str | None = var.get("value")
            return value
    return None


@cache
def readme_settings() -> frozenset[str]:
    """Every variable named in the first column of README.md's configuration table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("|"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first))
    return frozenset(names)


def not_listed_in_kustomization() -> set[str]:
    """The files kustomization.yaml's header comment explains leaving out ("Not listed:",
    then one `#   name.yaml  why` line per file)."""
    header = (K8S / "kustomization.yaml").read_text().split("# Not listed:", 1)[1]
    return set(re.findall(r"^#   ([\w.-]+\.yaml)\s", header, flags=re.MULTILINE))


def test_every_file_parses_and_kustomization_lists_the_rest() -> None:
    assert manifests(), "no manifests found in k8s/"
    for name, doc in manifests():
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), name
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    left_out = not_listed_in_kustomization()
    assert {"secret.yaml", "monitoring.yaml", "alerts.yaml", "ingress.yaml"} <= left_out
    assert not left_out & listed, "a file is both listed and explained as left out"
    for path in K8S.glob("*.yaml"):
        if path.name == "kustomization.yaml" or path.name in left_out:
            continue
        assert path.name in listed, f"{path.name} is not in kustomization.yaml"
    for name in listed:
        assert (K8S / name).is_file(), f"kustomization.yaml lists a missing {name}"
    assert "secret.yaml" not in listed, "applying it would overwrite the real Secrets"


def test_every_namespaced_object_is_in_the_ledger_namespace() -> None:
    for name, doc in manifests():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "points-ledger", name


def test_every_deployment_probes_the_api() -> None:
    deployments = of_kind("Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {
        "points-ledger-api",
        "points-ledger-scheduler",
    }
    for deployment in deployments:
        (container,) = containers(deployment)
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["args"][0] == "serve"


def test_the_api_is_stateless_and_runs_no_jobs() -> None:
    api = named("Deployment", "points-ledger-api")
    (container,) = containers(api)
    assert env_value(container, "LEDGER_SCHEDULER") == "off"
    args = container["args"]
    assert args[args.index("--workers") + 1] == "2"
    assert "requests" in container["resources"] and "limits" in container["resources"]
    assert pod_spec(api)["topologySpreadConstraints"]
    hpa = named("HorizontalPodAutoscaler", "points-ledger-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "points-ledger-api"
    assert hpa["spec"]["minReplicas"] >= 2
    labels = api["spec"]["template"]["metadata"]["labels"]
    for selector in (
        named("Service", "points-ledger")["spec"]["selector"],
        named("PodDisruptionBudget", "points-ledger-api")["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()


def test_the_scheduler_is_one_replica_with_the_jobs_on() -> None:
    scheduler = named("Deployment", "points-ledger-scheduler")
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"]["type"] == "Recreate"
    (container,) = containers(scheduler)
    assert env_value(container, "LEDGER_SCHEDULER") == "on"
    args = container["args"]
    assert args[args.index("--workers") + 1] == "1"  # every worker would start a scheduler
    service_selector = named("Service", "points-ledger")["spec"]["selector"]
    labels = scheduler["spec"]["template"]["metadata"]["labels"]
    assert not service_selector.items() <= labels.items(), "the Service must not reach it"


def test_the_jobs_run_migrate_and_verify() -> None:
    (migrate,) = containers(named("Job", "points-ledger-migrate"))
    assert migrate["args"] == ["migrate"]
    verify_cron = named("CronJob", "points-ledger-verify")
    (verify,) = containers(verify_cron)
    assert verify["args"] == ["verify"]
    assert verify_cron["spec"]["concurrencyPolicy"] == "Forbid"


def test_every_container_runs_as_non_root_on_a_read_only_root() -> None:
    assert workloads()
    for doc in workloads():
        pod = pod_spec(doc).get("securityContext", {})
        for container in containers(doc):
            security = {**pod, **container.get("securityContext", {})}
            where = f"{doc['metadata']['name']}/{container['name']}"
            assert security.get("runAsNonRoot") is True, where
            assert security.get("runAsUser", 0) != 0, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where


def test_every_setting_named_in_the_manifests_is_documented() -> None:
    documented = readme_settings() | {"DATABASE_URL"}
    assert "LEDGER_SCHEDULER" in documented, "README's configuration table was not parsed"
    config_maps = {doc["metadata"]["name"]: doc for doc in of_kind("ConfigMap")}
    secrets = {doc["metadata"]["name"]: doc for doc in of_kind("Secret")}
    named_vars: set[str] = set()
    for doc in workloads():
        for container in containers(doc):
            named_vars.update(var["name"] for var in container.get("env", []))
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    named_vars.update(config_maps[source["configMapRef"]["name"]]["data"])
                if "secretRef" in source:
                    secret = secrets[source["secretRef"]["name"]]
                    named_vars.update({**secret.get("data", {}), **secret.get("stringData", {})})
    # The application Secret's keys are settings too, whether or not a pod uses them all.
    named_vars.update(secrets["points-ledger"]["stringData"])
    assert named_vars
    undocumented = sorted(named_vars - documented)
    assert not undocumented, f"not in README's configuration table: {undocumented}"


def test_secret_and_config_references_resolve() -> None:
    config_maps = {doc["metadata"]["name"]: doc["data"] for doc in of_kind("ConfigMap")}
    secrets = {doc["metadata"]["name"]: doc.get("stringData", {}) for doc in of_kind("Secret")}
    for doc in workloads():
        for container in containers(doc):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    key = ref["secretKeyRef"]
                    assert key["key"] in secrets[key["name"]], var["name"]
                if "configMapKeyRef" in ref:
                    key = ref["configMapKeyRef"]
                    assert key["key"] in config_maps[key["name"]], var["name"]


def test_the_database_is_a_synchronous_three_instance_cluster() -> None:
    (cluster,) = of_kind("Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    assert spec["instances"] == 3
    synchronous = spec["postgresql"].get("synchronous")
    if synchronous is not None:
        assert synchronous["number"] >= 1
    else:
        assert spec["minSyncReplicas"] >= 1
    assert spec["storage"]["size"]
    owner = named("Secret", "points-ledger-db-owner")
    assert spec["bootstrap"]["initdb"]["secret"]["name"] == "points-ledger-db-owner"
    assert owner["stringData"]["username"] == spec["bootstrap"]["initdb"]["owner"]


@pytest.mark.parametrize("kind", ["Deployment", "Job", "CronJob"])
def test_one_image_everywhere(kind: str) -> None:
    images = {c["image"] for doc in of_kind(kind) for c in containers(doc)}
    assert images == {"points-ledger:0.1.0"}


# --- Schemas ----------------------------------------------------------------------------

# Custom resources: their schemas come with their operators, not with Kubernetes, so
# kubernetes-validate has none. The operators' admission webhooks check them on apply;
# alerts.yaml's structure is checked in test_monitoring.py.
CUSTOM_RESOURCES = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
# The oldest and the newest Kubernetes whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version: str) -> None:
    validated = set()
    for name, doc in manifests():
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_RESOURCES:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = f"{name}: {doc['kind']} {doc['metadata']['name']}"
            raise AssertionError(f"{where}: {error}") from None
        validated.add(doc["kind"])
    assert {"Deployment", "CronJob", "NetworkPolicy", "Ingress"} <= validated


def test_the_schema_check_rejects_a_misspelt_field() -> None:
    """The validation above is not vacuous: strict mode refuses an unknown field."""
    broken = copy.deepcopy(named("Deployment", "points-ledger-api"))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


# --- Network policies -------------------------------------------------------------------


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector applied to one pod's labels (`{}` selects every pod)."""
    if not all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for term in selector.get("matchExpressions", []):
        key, operator, values = term["key"], term["operator"], term.get("values", [])
        present = key in labels
        matched = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not matched:
            return False
    return True


def pod_labels(doc: Doc) -> dict[str, str]:
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    labels: dict[str, str] = spec["template"]["metadata"]["labels"]
    return labels


@cache
def pods() -> dict[str, dict[str, str]]:
    """The labels of every kind of pod in the namespace: each workload's pod template,
    and the PostgreSQL instances, which CloudNativePG labels with the cluster's name."""
    found = {doc["metadata"]["name"]: pod_labels(doc) for doc in workloads()}
    (cluster,) = of_kind("Cluster")
    instance = {"cnpg.io/cluster": cluster["metadata"]["name"], "cnpg.io/podRole": "instance"}
    found["postgres"] = instance
    return found


def container_port_names(pod: str) -> set[str]:
    if pod == "postgres":
        return set()
    doc = next(d for d in workloads() if d["metadata"]["name"] == pod)
    return {port["name"] for c in containers(doc) for port in c.get("ports", []) if "name" in port}


def peers(peer: Doc) -> set[str]:
    """What one `from`/`to` entry admits: our own pods by name (a pod selector that
    matches none of them is an error), or `ns:<name>[/<labels>]` for another namespace."""
    if "namespaceSelector" in peer:
        namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        pod_selector = peer.get("podSelector", {}).get("matchLabels", {})
        suffix = ",".join(f"{k}={v}" for k, v in sorted(pod_selector.items()))
        return {f"ns:{namespace}" + (f"/{suffix}" if suffix else "")}
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        return {f"ip:{block['cidr']}" + "".join(f" -{c}" for c in sorted(block.get("except", [])))}
    matched = {name for name, labels in pods().items() if selects(peer["podSelector"], labels)}
    assert matched, f"pod selector {peer['podSelector']} matches no pod of the manifests"
    return matched


def allowed(pod: str, direction: str) -> set[tuple[str, str | int, str]]:
    """(peer, port, protocol) for every connection the policies let into (Ingress) or
    out of (Egress) one kind of pod; None if no policy of that direction selects it."""
    rules_key, peers_key = {"Ingress": ("ingress", "from"), "Egress": ("egress", "to")}[direction]
    found: set[tuple[str, str | int, str]] = set()
    for policy in of_kind("NetworkPolicy"):
        spec = policy["spec"]
        if direction not in spec["policyTypes"] or not selects(spec["podSelector"], pods()[pod]):
            continue
        for rule in spec.get(rules_key, []):
            assert rule.get(peers_key), f"{policy['metadata']['name']}: a rule open to all"
            assert rule.get("ports"), f"{policy['metadata']['name']}: a rule open on all ports"
            for peer in rule[peers_key]:
                for port in rule["ports"]:
                    for name in peers(peer):
                        found.add((name, port["port"], port.get("protocol", "TCP")))
    return found


def selected_by(direction: str) -> set[str]:
    return {
        pod
        for pod, labels in pods().items()
        for policy in of_kind("NetworkPolicy")
        if direction in policy["spec"]["policyTypes"]
        and selects(policy["spec"]["podSelector"], labels)
    }


APP_PODS = {
    "points-ledger-api",
    "points-ledger-scheduler",
    "points-ledger-migrate",
    "points-ledger-verify",
}


def test_the_network_policies_cover_every_pod_of_the_manifests() -> None:
    assert set(pods()) == {*APP_PODS, "postgres"}
    assert selected_by("Ingress") == set(pods()), "every pod is closed unless let in"
    # Egress is limited for the ledger's own processes; the database's stays open (its
    # instance manager talks to the Kubernetes API, backups go to object storage).
    assert selected_by("Egress") == APP_PODS


def test_the_api_takes_traffic_only_from_the_ingress_and_prometheus() -> None:
    assert allowed("points-ledger-api", "Ingress") == {
        ("ns:ingress-nginx", "http", "TCP"),
        ("ns:monitoring", "http", "TCP"),
    }
    assert allowed("points-ledger-scheduler", "Ingress") == {("ns:monitoring", "http", "TCP")}
    for pod in ("points-ledger-migrate", "points-ledger-verify"):
        assert allowed(pod, "Ingress") == set(), pod
    for pod in ("points-ledger-api", "points-ledger-scheduler"):
        named_ports = {port for _, port, _ in allowed(pod, "Ingress") if isinstance(port, str)}
        assert named_ports <= container_port_names(pod), pod


PRIVATE = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
)
INTERNET = "ip:0.0.0.0/0" + "".join(f" -{c}" for c in sorted(PRIVATE))


def test_the_ledger_processes_reach_only_postgres_dns_and_for_webhooks_the_internet() -> None:
    """Every process reaches PostgreSQL and DNS; only the scheduler, which delivers
    webhooks, also the internet on 443 and 80, never a private, link-local (the
    cloud's metadata service) or carrier-grade NAT address."""
    dns = "ns:kube-system/k8s-app=kube-dns"
    base = {("postgres", 5432, "TCP"), (dns, 53, "UDP"), (dns, 53, "TCP")}
    for pod in APP_PODS:
        webhooks = {(INTERNET, 443, "TCP"), (INTERNET, 80, "TCP")}
        expected = base | webhooks if pod == "points-ledger-scheduler" else base
        assert allowed(pod, "Egress") == expected, pod


def test_postgres_takes_connections_only_from_the_ledger_and_the_operator() -> None:
    operator = "ns:cnpg-system/app.kubernetes.io/name=cloudnative-pg"
    assert allowed("postgres", "Ingress") == {
        *((pod, 5432, "TCP") for pod in APP_PODS),
        ("postgres", 5432, "TCP"),  # replication between the instances
        ("postgres", 8000, "TCP"),
        (operator, 5432, "TCP"),
        (operator, 8000, "TCP"),
        ("ns:monitoring", 9187, "TCP"),  # the exporter monitoring.yaml scrapes
    }
    # The port and the cluster are the ones the application connects to.
    url = urlsplit(named("Secret", "points-ledger")["stringData"]["DATABASE_URL"])
    (cluster,) = of_kind("Cluster")
    assert url.port == 5432
    assert url.hostname is not None
    assert url.hostname.split(".")[0] == f"{cluster['metadata']['name']}-rw"


def test_selects_follows_the_kubernetes_rules() -> None:
    labels = {"app": "a", "tier": "web"}

    def expression(key: str, operator: str, *values: str) -> Doc:
        return {"matchExpressions": [{"key": key, "operator": operator, "values": [*values]}]}

    assert selects({}, labels)
    assert selects({"matchLabels": {"app": "a"}}, labels)
    assert not selects({"matchLabels": {"app": "b"}}, labels)
    assert selects(expression("tier", "In", "web", "db"), labels)
    assert not selects(expression("x", "In", "1"), labels)
    assert selects(expression("x", "NotIn", "1"), labels)
    assert not selects(expression("tier", "NotIn", "web"), labels)
    assert selects(expression("app", "Exists"), labels)
    assert not selects(expression("app", "DoesNotExist"), labels)


# --- Ingress ----------------------------------------------------------------------------

NGINX = "nginx.ingress.kubernetes.io/"


def nginx_size_bytes(size: str) -> int:
    """nginx's size syntax: a number with an optional k or m suffix (powers of 1024)."""
    found = re.fullmatch(r"(\d+)([kKmM]?)", size)
    assert found, size
    return int(found[1]) * {"": 1, "k": 1024, "m": 1024 * 1024}[found[2].lower()]


def controller_config_snippet() -> Doc:
    """The commented Helm values for the controller's ConfigMap in ingress.yaml."""
    lines = (K8S / "ingress.yaml").read_text().splitlines()
    start = lines.index("#   controller:")
    block = [line.removeprefix("#   ") for line in lines[start:] if line.startswith("#   ")]
    values: Doc = yaml.safe_load("\n".join(block))
    return values


def test_the_ingress_body_limit_is_the_services() -> None:
    ingress = named("Ingress", "points-ledger")
    annotations = ingress["metadata"]["annotations"]
    max_body = int(named("ConfigMap", "points-ledger-config")["data"]["LEDGER_MAX_BODY_BYTES"])
    assert nginx_size_bytes(annotations[NGINX + "proxy-body-size"]) == max_body
    assert nginx_size_bytes(annotations[NGINX + "client-body-buffer-size"]) >= max_body


def test_the_ingress_waits_longer_than_the_service_answers_an_outage() -> None:
    """The service answers a silent database within 2 x (LEDGER_DB_TIMEOUT_S + 1) s
    (tests/faults/test_outages.py): the ingress must wait for that answer."""
    annotations = named("Ingress", "points-ledger")["metadata"]["annotations"]
    config = named("ConfigMap", "points-ledger-config")["data"]
    worst_s = 2 * (float(config["LEDGER_DB_TIMEOUT_S"]) + 1)
    assert int(annotations[NGINX + "proxy-read-timeout"]) > worst_s
    assert int(annotations[NGINX + "proxy-connect-timeout"]) <= 10


def test_the_ingress_header_limits_and_client_timeouts_are_spelt_out() -> None:
    config = controller_config_snippet()["controller"]["config"]
    assert set(config) == {
        "client-header-buffer-size",
        "large-client-header-buffers",
        "client-header-timeout",
        "client-body-timeout",
        "upstream-keepalive-timeout",
    }
    assert nginx_size_bytes(config["client-header-buffer-size"]) <= 8 * 1024
    count, size = config["large-client-header-buffers"].split()
    assert int(count) * nginx_size_bytes(size) <= 64 * 1024
    assert 0 < int(config["client-header-timeout"]) <= 30
    assert 0 < int(config["client-body-timeout"]) <= 30
    # Below the service's keep-alive timeout (LEDGER_HTTP_KEEP_ALIVE_S, 5 s).
    assert int(config["upstream-keepalive-timeout"]) < load_http_limits().keep_alive_s


def test_the_ingress_routes_only_the_api_and_the_app_over_tls_to_the_service() -> None:
    ingress = named("Ingress", "points-ledger")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    tls_hosts = {host for entry in spec["tls"] for host in entry["hosts"]}
    assert all(entry["secretName"] for entry in spec["tls"])
    service = named("Service", "points-ledger")
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    for rule in spec["rules"]:
        assert rule["host"] in tls_hosts
        for path in rule["http"]["paths"]:
            routed = (path["path"], path["pathType"])
            assert routed in {("/v1", "Prefix"), ("/app", "Prefix"), ("/", "Exact")}, (
                "only the API and the app: /metrics, /health, /ready stay inside"
            )
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in service_ports
