"""Every metric that k8s/alerts.yaml and the dashboard read is one the service
really exports, of the type and with the labels they assume."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import C, Client, community
from tests.unit.test_monitoring import EXPECTED_METRICS


async def test_the_service_exports_every_metric_the_monitoring_reads(client: Client) -> None:
    await community(client, members=1)
    assert (await client.get(f"{C}/members/m0/balance")).status_code == 200
    r = await client.get("/metrics")
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name, expected in EXPECTED_METRICS.items():
        family_name = name.removesuffix("_total")
        assert family_name in families, f"/metrics has no {name}"
        family = families[family_name]
        assert family.type == expected.type, name
        for sample in family.samples:
            labels = set(sample.labels) - {"le"}
            assert labels == set(expected.labels), (name, labels)
