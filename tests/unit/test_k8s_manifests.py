"""Structural checks of k8s/*.yaml, offline: YAML only, no cluster, no database."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"

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


def test_every_file_parses_and_kustomization_lists_the_rest() -> None:
    assert manifests(), "no manifests found in k8s/"
    for name, doc in manifests():
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), name
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    for path in K8S.glob("*.yaml"):
        if path.name in ("kustomization.yaml", "monitoring.yaml", "secret.yaml"):
            continue  # the CRDs of monitoring.yaml may be missing; secret.yaml is a template
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
