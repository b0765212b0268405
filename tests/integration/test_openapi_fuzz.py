"""Schemathesis over the app's own OpenAPI document: nothing a client can send is a 500.

Every operation in the document (one test each) is called with path parameters,
query parameters and JSON bodies drawn from its schema: boundary and
schema-invalid values and methods the path does not have first (schemathesis'
coverage phase), then examples of both kinds drawn by Hypothesis, derandomized
so that every run sends the same requests.

The app runs on one database for the whole run, seeded through the API with a
community, households, members, a rule set, a store and its items, transactions,
holds, offsets, redemptions and volunteer hours. Seven generated path parameters
in eight are swapped for ids of those resources (`_aim`), and schemathesis
dictionaries put ids, small amounts and extreme timestamps into query parameters
and body fields, so that requests reach real logic rather than a 404. A third of
the requests carry the community operator's key, the rest the admin key.

Every answer must be below 500 and conform to the document: its status, media
type and body documented (schemathesis' conformance checks, what a generated
client relies on). Every 4xx must be an `application/problem+json` document with
a string `code` and the same `status`; every 405 must name the allowed methods
(schemathesis' `unsupported_method`). When the run ends, the ledger's
audit must pass for every community.

The schema is loaded eagerly from the document the app builds (the fixture
checks that it is the one served): `schemathesis.pytest.from_fixture` sets
`Function._nodeid`, which pytest 9.2 no longer has.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from service.api.openapi import document
from service.app import create_app
from service.config import load_settings
from service.rules.defaults import EXAMPLE_YAML
from tests.citus_support import Databases
from tests.conftest import audit_all
from tests.helpers import ADMIN_KEY, C, bearer

MEMBERS = ["m0", "m1", "m2", "m3"]
# The seeded resources, by kind; `_seed` makes every one of them.
IDS: dict[str, list[str]] = {
    "community": ["green"],
    "household": ["h0", "h1"],
    "company": ["acme", "other"],
    "member": MEMBERS,
    "transaction": ["award-m0", "gift", "hold", "hold-ttl", "hold-2", "hold-3", "bank-m1"],
    "account": [
        "member:m0:points",
        "member:m1:minutes",
        "system:issuance:points",
        "system:timebank:minutes",
        "property:acme:offsets",
    ],
    "offset": ["o-held", "o-applied"],
    "store": ["s1"],
    "sku": ["soap", "rice"],
    "redemption": ["r1", "r2"],
    "hours": ["vh1", "vh2", "vh3", "vh4"],
    # Any of the above, to replay a create or clash with an earlier one.
    "client_id": ["award-m0", "hold", "r1", "o-held", "vh1", "e1", "m0", "h0"],
    "month": ["2026-03", "2026-11", "0001-01", "9999-12"],
    "small": [1, 6, 10, 60],
    # Valid RFC 3339, but past either end of the representable range once in UTC.
    "instant": [
        "0001-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59.999999Z",
        "2026-03-01T09:00:00+08:00",
    ],
}
# Where each kind of id goes: (dictionary, probability of using it).
BINDINGS: dict[str, tuple[str, float]] = {
    "query.period": ("month", 0.75),
    "query.property_company": ("company", 0.5),
    "query.from": ("instant", 0.3),
    "query.to": ("instant", 0.3),
    "query.as_of": ("instant", 0.3),
    "query.effective_from": ("instant", 0.3),
    "body.id": ("client_id", 0.2),
    "body.community": ("community", 0.75),
    "body.household": ("household", 0.75),
    "body.property_company": ("company", 0.5),
    "body.member": ("member", 0.75),
    "body.from_member": ("member", 0.75),
    "body.to_member": ("member", 0.75),
    "body.store": ("store", 0.75),
    "body.items[*].sku": ("sku", 0.75),
    "body.postings[*].source": ("account", 0.75),
    "body.postings[*].destination": ("account", 0.75),
    "body.transactions[*].postings[*].source": ("account", 0.75),
    "body.transactions[*].postings[*].destination": ("account", 0.75),
    "body.occurred_at": ("instant", 0.3),
    "body.started_at": ("instant", 0.3),
    "body.events[*].occurred_at": ("instant", 0.3),
    "body.events[*].member": ("member", 0.75),
    "body.minutes": ("small", 0.5),
    "body.points": ("small", 0.5),
    "body.postings[*].amount": ("small", 0.5),
}
# Path parameters, by name, for `_aim`: the coverage phase does not draw from
# dictionaries (and the spare key's id, for DELETE, is known only once seeded).
PATH_IDS = {
    "c": IDS["community"],
    "m": IDS["member"],
    "tx": IDS["transaction"],
    "address": IDS["account"],
    "o": IDS["offset"],
    "s": IDS["store"],
    "sku": IDS["sku"],
    "r": IDS["redemption"],
    "h": IDS["hours"],
}
# Where one action would use up what another needs, each gets its own.
PATH_IDS_BY_ACTION = {
    ("tx", "post"): ["hold", "hold-ttl", "award-m0"],
    ("tx", "void"): ["hold-2", "hold-3", "gift"],
    ("h", "approve"): ["vh1", "vh2"],
    ("h", "reject"): ["vh3", "vh4"],
}
CONFIG = {
    "generation": {"mode": "all", "max-examples": 60, "deterministic": True},
    "phases": {"stateful": {"enabled": False}},
    "dictionaries": {kind: {"values": values} for kind, values in IDS.items()},
    "parameters": {
        key: {"dictionary": kind, "probability": probability}
        for key, (kind, probability) in BINDINGS.items()
    },
}


def _document() -> dict[str, Any]:
    """The OpenAPI document the app serves at /schema/openapi.json (building it
    needs no database; the fixture checks that the served one is the same)."""
    return document(create_app(load_settings(), dsn="postgresql://unused/none", scheduler=False))


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=SchemathesisConfig.from_dict(CONFIG))


@dataclass
class Run:
    """The app under test, the keys to call it with, and what seeding could not
    know in advance."""

    app: Any
    headers: dict[str, dict[str, str]]
    spare_key_id: str
    calls: Iterator[int]


def _transfer(tx_id: str, source: str, destination: str, amount: int, **extra: Any) -> Any:
    asset = "minutes" if source.endswith("minutes") else "points"
    posting = {"source": source, "destination": destination, "asset": asset, "amount": amount}
    return {"id": tx_id, "postings": [posting], **extra}


def _seed(session: requests.Session) -> dict[str, Any]:
    """Makes every resource in IDS through the API; returns the keys it issued."""

    def call(method: str, path: str, **kwargs: Any) -> Any:
        r = session.request(method, path, **kwargs)
        assert r.status_code in (200, 201), (method, path, r.status_code, r.text)
        return r.json()

    def post(path: str, body: dict[str, Any]) -> Any:
        return call("POST", path, json=body)

    post("/v1/communities", {"id": "green", "name": "Green Court"})
    for h, company in (("h0", "acme"), ("h1", "other")):
        post(f"{C}/households", {"id": h, "property_company": company})
    for i, m in enumerate(MEMBERS):
        post(f"{C}/members", {"id": m, "household": f"h{i % 2}", "name": f"Member {i}"})
    yaml = {"Content-Type": "application/yaml"}
    call("PUT", f"{C}/rules", data=EXAMPLE_YAML.encode(), headers=yaml)
    for m in MEMBERS:
        post(
            f"{C}/transactions",
            _transfer(f"award-{m}", "system:issuance:points", f"member:{m}:points", 500),
        )
        post(
            f"{C}/transactions",
            _transfer(f"bank-{m}", "system:timebank:minutes", f"member:{m}:minutes", 300),
        )
    post(f"{C}/transactions", _transfer("gift", "member:m0:points", "member:m1:points", 20))
    hold = _transfer("hold", "member:m2:points", "system:penalties:points", 30, pending={})
    post(f"{C}/transactions", hold)
    hold_ttl = {"id": "hold-ttl", "postings": hold["postings"], "pending": {"ttl_s": 3600}}
    post(f"{C}/transactions", hold_ttl)
    for tx_id in ("hold-2", "hold-3"):
        post(f"{C}/transactions", {**hold, "id": tx_id})
    for sku, points in (("soap", 5), ("rice", 20)):
        item = {"name": sku, "points": points, "stock": 50}
        call("PUT", f"{C}/stores/s1/items/{sku}", json=item)
    for r, member, sku in (("r1", "m0", "soap"), ("r2", "m1", "rice")):
        post(
            f"{C}/redemptions",
            {"id": r, "store": "s1", "member": member, "items": [{"sku": sku, "qty": 1}]},
        )
    offset = {"household": "h0", "bill_amount_fen": 100_000, "points": 20}
    post(f"{C}/offsets", {"id": "o-held", "member": "m0", **offset, "hold": True})
    post(f"{C}/offsets", {"id": "o-applied", "member": "m2", **offset})
    hours = {"activity": "garden", "started_at": "2026-03-01T09:00:00+08:00", "minutes": 90}
    # Logged by a volunteer app: the key that logged hours may not decide them.
    app = bearer(post("/v1/api-keys", {"role": "volunteer_app", "community": "green"})["key"])
    for vh, member in (("vh1", "m1"), ("vh2", "m3"), ("vh3", "m0"), ("vh4", "m2")):
        body = {"id": vh, "member": member, **hours}
        call("POST", f"{C}/volunteer-hours", json=body, headers=app)
    event = {"type": "fee.paid", "member": "m0", "occurred_at": "2026-03-02T10:00:00+08:00"}
    post(f"{C}/events", {"id": "e1", **event, "attributes": {"days_late": 0}})
    operator = post("/v1/api-keys", {"role": "operator", "community": "green"})
    spare = post("/v1/api-keys", {"role": "resident", "community": "green", "member": "m3"})
    assert call("GET", "/schema/openapi.json") == DOCUMENT
    return {"operator": operator, "spare": spare}


@pytest.fixture(scope="module")
def run(databases: Databases) -> Iterator[Run]:
    """The app on a database of its own for the whole run, started in
    schemathesis' event-loop thread and seeded; when the run ends it is stopped
    and the ledger's audit must pass."""
    dsn = asyncio.run(databases.create(f"fuzz_{os.getpid()}"))
    app_settings = msgspec.structs.replace(
        load_settings(), admin_key=ADMIN_KEY, pool_min_size=1, pool_max_size=4
    )
    app = create_app(app_settings, dsn=dsn, scheduler=False)
    try:
        try:
            with asgi.get_client(app) as session:
                session.headers.update(bearer(ADMIN_KEY))
                keys = _seed(session)
            yield Run(
                app=app,
                headers={
                    "admin": bearer(ADMIN_KEY),
                    "operator": bearer(keys["operator"]["key"]),
                },
                spare_key_id=keys["spare"]["id"],
                calls=itertools.count(),
            )
        finally:
            asgi.shutdown_lifespans()
        asyncio.run(audit_all(dsn))
    finally:
        asyncio.run(databases.drop(dsn))


def _aim(case: Any, run: Run) -> None:
    """Seven generated path parameters in eight become ids of seeded resources,
    picked by a checksum of the generated value so that runs repeat."""
    action = case.path.rsplit("/", 1)[-1]
    for name, value in (case.path_parameters or {}).items():
        known = PATH_IDS_BY_ACTION.get((name, action)) or PATH_IDS.get(name)
        if name == "key_id":
            known = [run.spare_key_id]
        pick = zlib.crc32(f"{name}={value!r}".encode())
        if known and value not in known and pick % 8:
            case.path_parameters[name] = known[pick // 8 % len(known)]


# What a generated client relies on: every status, media type and body documented.
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
CHECKS = [not_a_server_error, unsupported_method, *CONFORMANCE]


@schema.parametrize()
@settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_no_input_is_a_server_error(case: Any, run: Run) -> None:
    _aim(case, run)
    role = "operator" if next(run.calls) % 3 == 0 else "admin"
    response = case.call(headers=run.headers[role], app=run.app)
    case.validate_response(response, checks=CHECKS)
    if 400 <= response.status_code < 500:
        where = f"{case.method} {case.formatted_path} as {role}: {response.status_code}"
        where += f" {response.text[:300]}"
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/problem+json"), where
        problem = response.json()
        assert isinstance(problem.get("code"), str), where
        assert problem.get("status") == response.status_code, where
