"""A client no one here wrote: `openapi-python-client` generates one from the
document the running service serves, and the property company's and the till's
flows run through it against the real app served by uvicorn on a free port.

Every call must come back typed (`parsed` is a model, never None), problems
included, and generation must print no warning. Generation needs no network.
The document offers a rule set as YAML too, a media type the generator does not
know: the config maps it to a file upload, as an integrator would.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import msgspec
import pytest

from service.app import create_app
from service.config import load_settings
from tests.citus_support import Databases
from tests.conftest import audit_all
from tests.helpers import ADMIN_KEY, served

PACKAGE = "ledger_client"
CONFIG = """\
post_hooks: []
content_type_overrides:
  application/yaml: application/octet-stream
"""


@pytest.fixture(scope="module")
def base_url(databases: Databases) -> Iterator[str]:
    """The app under uvicorn on a database of its own; audited when it stops."""
    dsn = asyncio.run(databases.create(f"genclient_{os.getpid()}"))
    settings = msgspec.structs.replace(
        load_settings(), admin_key=ADMIN_KEY, pool_min_size=1, pool_max_size=4
    )
    try:
        with served(create_app(settings, dsn=dsn, scheduler=False)) as url:
            yield url
    finally:
        try:
            asyncio.run(audit_all(dsn))
        finally:
            asyncio.run(databases.drop(dsn))


@pytest.fixture(scope="module")
def generated(base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The client generated from the served document, imported."""
    root = tmp_path_factory.mktemp("generated")
    document = root / "openapi.json"
    document.write_bytes(httpx.get(f"{base_url}/schema/openapi.json").content)
    (root / "config.yaml").write_text(CONFIG)
    generator = Path(sys.executable).with_name("openapi-python-client")
    run = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(root / PACKAGE),
            "--config",
            str(root / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for module in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[module]


class Calls:
    """The generated package, with a call that asserts a typed answer."""

    def __init__(self, package: ModuleType, base_url: str) -> None:
        self.package = package
        self.base_url = base_url
        self.models = importlib.import_module(f"{PACKAGE}.models")

    def client(self, key: str) -> Any:
        return self.package.AuthenticatedClient(
            base_url=self.base_url, token=key, raise_on_unexpected_status=True
        )

    def call(self, operation: str, client: Any, status: int, model: str, **kwargs: Any) -> Any:
        """`operation` (tag.operation_module) answers `status` with a `model`."""
        tag, name = operation.split(".")
        module = importlib.import_module(f"{PACKAGE}.api.{tag}.{name}")
        response = module.sync_detailed(client=client, **kwargs)
        assert response.status_code == status, (operation, response.status_code, response.content)
        expected = getattr(self.models, model)
        assert isinstance(response.parsed, expected), (operation, type(response.parsed))
        return response

    def problem(self, operation: str, client: Any, status: int, code: str, **kwargs: Any) -> Any:
        response = self.call(operation, client, status, "ProblemDetails", **kwargs)
        assert response.parsed.code == self.models.ProblemDetailsCode(code)
        assert response.parsed.status == status
        return response.parsed


@pytest.fixture(scope="module")
def api(generated: ModuleType, base_url: str) -> Calls:
    """The generated client, and community `green` set up through it."""
    calls = Calls(generated, base_url)
    m = calls.models
    admin = calls.client(ADMIN_KEY)
    calls.call(
        "setup.create_community",
        admin,
        201,
        "Community",
        body=m.CommunityIn(id="green", name="Green Court"),
    )
    for h, company in (("h0", "acme"), ("h1", "other")):
        body = m.WireHouseholdIn(id=h, property_company=company)
        calls.call("setup.create_household", admin, 201, "Household", c="green", body=body)
    for member, household in (("m0", "h0"), ("m1", "h0"), ("m2", "h1")):
        body = m.MemberIn(id=member, household=household)
        calls.call("setup.create_member", admin, 201, "Member", c="green", body=body)
        posting = m.PostingIn(
            source="system:issuance:points",
            destination=f"member:{member}:points",
            asset=m.PostingInAsset.POINTS,
            amount=500,
        )
        award = m.TransactionIn(id=f"award-{member}", postings=[posting])
        calls.call("ledger.create_transaction", admin, 201, "TransactionOut", c="green", body=award)
    return calls


def _key(api: Calls, role: str, **scope: Any) -> Any:
    m = api.models
    body = m.ApiKeyIn(role=m.ApiKeyInRole(role), community="green", **scope)
    out = api.call("keys.create_key", api.client(ADMIN_KEY), 201, "ApiKeyOut", body=body)
    return api.client(out.parsed.key)


def test_the_property_companys_flow(api: Calls) -> None:
    m = api.models
    acme = _key(api, "property", property_company="acme")
    resident = _key(api, "resident", member="m0")
    mandate = m.MandateIn(max_points_per_bill=200)
    args = {"c": "green", "m": "m0", "company": "acme", "body": mandate}
    api.call("consent.put_mandate", resident, 200, "MandateOut", **args)

    quote = m.QuoteIn(member="m0", household="h0", bill_amount_fen=36_000)
    quoted = api.call("offsets.quote_offset", acme, 200, "QuoteOut", c="green", body=quote)
    assert quoted.parsed.max_points > 0
    hold = m.OffsetIn(
        id="bill-1", member="m0", household="h0", bill_amount_fen=36_000, points=50, hold=True
    )
    created = api.call("offsets.create_offset", acme, 201, "OffsetOut", c="green", body=hold)
    assert created.parsed.status == m.OffsetOutStatus.HELD
    replay = api.call("offsets.create_offset", acme, 200, "OffsetOut", c="green", body=hold)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.parsed.to_dict() == created.parsed.to_dict()
    applied = api.call("offsets.apply_offset", acme, 200, "OffsetOut", c="green", o="bill-1")
    assert applied.parsed.status == m.OffsetOutStatus.APPLIED
    cancelled = api.call("offsets.cancel_offset", acme, 200, "OffsetOut", c="green", o="bill-1")
    assert cancelled.parsed.status != m.OffsetOutStatus.APPLIED
    api.call("offsets.get_offset", acme, 200, "OffsetOut", c="green", o="bill-1")
    api.call("offsets.list_offsets", acme, 200, "OffsetPage", c="green")

    hold.points = 60  # the same id with another body
    api.problem("offsets.create_offset", acme, 409, "idempotency_conflict", c="green", body=hold)
    args = {"c": "green", "property_company": "other"}
    api.problem("offsets.list_offsets", acme, 403, "forbidden", **args)
    api.problem("offsets.get_offset", acme, 404, "not_found", c="green", o="no-such-bill")
    api.problem("offsets.get_offset", api.client("x" * 40), 401, "unauthorized", c="green", o="b")


def test_the_tills_flow(api: Calls) -> None:
    m = api.models
    till = _key(api, "store", store="s1")
    resident = _key(api, "resident", member="m1")
    item = m.ItemIn(name="Rice, 5 kg", points=20, stock=10)
    args = {"c": "green", "s": "s1", "sku": "rice"}
    api.call("supermarket.put_item", till, 201, "ItemOut", body=item, **args)
    api.call("supermarket.put_item", till, 200, "ItemOut", body=item, **args)
    api.call("supermarket.list_items", till, 200, "ItemPage", c="green", s="s1")

    code = m.SpendCodeIn(max_points=100, store="s1")
    issued = api.call(
        "consent.issue_spend_code", resident, 201, "SpendCodeOut", c="green", m="m1", body=code
    )
    basket = [m.BasketItem(sku="rice", qty=2)]
    redemption = m.RedemptionIn(
        id="receipt-1",
        store="s1",
        member="m1",
        items=basket,
        consent=m.ConsentIn(spend_code=issued.parsed.code),
    )
    done = api.call(
        "supermarket.create_redemption", till, 201, "RedemptionOut", c="green", body=redemption
    )
    replay = api.call(
        "supermarket.create_redemption", till, 200, "RedemptionOut", c="green", body=redemption
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.parsed.to_dict() == done.parsed.to_dict()
    api.call("supermarket.get_redemption", till, 200, "RedemptionOut", c="green", r="receipt-1")

    unconsented = m.RedemptionIn(id="receipt-2", store="s1", member="m1", items=basket)
    api.problem(
        "supermarket.create_redemption", till, 403, "consent_required", c="green", body=unconsented
    )
    back = m.ReturnIn(id="return-1", items=[m.BasketItem(sku="rice", qty=1)])
    api.call(
        "supermarket.return_redemption",
        till,
        201,
        "ReturnOut",
        c="green",
        r="receipt-1",
        body=back,
    )
    api.call(
        "supermarket.return_redemption",
        till,
        200,
        "ReturnOut",
        c="green",
        r="receipt-1",
        body=back,
    )
