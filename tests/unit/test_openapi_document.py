"""The OpenAPI document types every answer (SPEC section 13): success statuses as
the handlers answer them, every problem status with the problem schema, a bearer
scheme, tags, descriptions, short operationIds, named request models, valid
examples and patterns an RE2 engine compiles."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from service.api.offsets import OffsetIn, QuoteIn
from service.api.openapi import EXAMPLES, PROBLEM, document, problem_codes
from service.api.rules import EventIn
from service.api.supermarket import ItemIn, RedemptionIn
from service.api.timebank import HoursIn
from service.api.wire import TransactionIn
from service.app import create_app
from service.config import load_settings
from service.errors import DomainError

DOC = document(create_app(load_settings(), dsn="postgresql://unused/none", scheduler=False))
PUBLIC = {"/health", "/ready", "/metrics"}
PROBLEM_REF = {"$ref": f"#/components/schemas/{PROBLEM}"}


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in DOC["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def _op(operation_id: str) -> dict[str, Any]:
    (op,) = [op for _, _, op in _operations() if op["operationId"] == operation_id]
    return op


@pytest.mark.parametrize(
    ("operation_id", "statuses"),
    [
        ("applyOffset", {"200"}),
        ("cancelOffset", {"200"}),
        ("postTransaction", {"200"}),
        ("voidTransaction", {"200"}),
        ("approveHours", {"200"}),
        ("quoteOffset", {"200"}),
        ("createOffset", {"200", "201"}),
        ("createRedemption", {"200", "201"}),
        ("createTransaction", {"200", "201"}),
        ("reverseTransaction", {"200", "201"}),
        ("putItem", {"200", "201"}),
        ("revokeKey", {"204"}),
        ("ready", {"200", "503"}),
    ],
)
def test_success_statuses_are_the_ones_answered(operation_id: str, statuses: set[str]) -> None:
    answered = {s for s in _op(operation_id)["responses"] if s < "300" or s == "503"}
    if operation_id != "ready":
        answered.discard("503")
    assert answered == statuses


def test_replays_are_documented_with_their_header() -> None:
    for operation_id in ("createOffset", "createRedemption", "applyOffset", "createCommunity"):
        ok = _op(operation_id)["responses"]["200"]
        assert ok["headers"]["Idempotent-Replayed"]["schema"]["enum"] == ["true"]
        assert "$ref" in ok["content"]["application/json"]["schema"]


def test_every_v1_operation_documents_its_problems() -> None:
    for path, method, op in _operations():
        if path in PUBLIC:
            assert not any(s >= "400" and s != "503" for s in op["responses"]), path
            continue
        expected = {"401", "403", "429", "503"} | ({"409"} if method != "get" else set())
        assert expected <= set(op["responses"]), (method, path)
        # Litestar's 400 for parameters is never sent: they are 422 here.
        assert ("400" in op["responses"]) is ("requestBody" in op), (method, path)
        for status, response in op["responses"].items():
            if status >= "400":
                assert response["content"] == {"application/problem+json": {"schema": PROBLEM_REF}}
        assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
        assert "Retry-After" in op["responses"]["429"]["headers"]
        if "requestBody" in op:
            assert {"413", "422"} <= set(op["responses"]), (method, path)


def test_the_problem_code_is_an_enum_of_every_code_sent() -> None:
    enum = DOC["components"]["schemas"][PROBLEM]["properties"]["code"]["enum"]
    assert enum == problem_codes()
    domain = {cls.code for cls in DomainError.__subclasses__()}
    sent_by_the_app = {"rate_limited", "unavailable", "payload_too_large", "internal_error"}
    assert domain | sent_by_the_app <= set(enum)
    assert {"consent_required", "idempotency_conflict", "insufficient_points"} <= set(enum)


def test_operation_ids_are_short_camel_case_and_unique() -> None:
    ids = [op["operationId"] for _, _, op in _operations()]
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert re.fullmatch(r"[a-z][A-Za-z0-9]{2,40}", operation_id), operation_id
    assert {"applyOffset", "createRedemption", "health", "ready", "metrics"} <= set(ids)


def test_bearer_security_everywhere_but_the_public_routes() -> None:
    assert DOC["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert DOC["security"] == [{"bearer": []}]
    for path, _, op in _operations():
        assert (op.get("security") == []) is (path in PUBLIC), path


def test_tags_per_context_with_descriptions() -> None:
    tags = {tag["name"]: tag["description"] for tag in DOC["tags"]}
    for path, _, op in _operations():
        (tag,) = op["tags"]
        assert tags.get(tag), (path, tag)
    assert _op("applyOffset")["tags"] == ["offsets"]
    assert _op("createRedemption")["tags"] == ["supermarket"]
    assert _op("metrics")["tags"] == ["ops"]


def test_descriptions_come_from_the_docstrings() -> None:
    assert _op("applyOffset")["description"] == "Posts a held offset (the bill was paid)."
    assert _op("applyOffset")["summary"] == "Apply offset"


def test_request_bodies_are_named_components() -> None:
    schemas = DOC["components"]["schemas"]
    for path, method, op in _operations():
        if "requestBody" in op:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert set(schema) == {"$ref"}, (method, path)
            assert schema["$ref"].removeprefix("#/components/schemas/") in schemas
    assert "EventIn" in schemas
    titles = [schema.get("title", name) for name, schema in schemas.items()]
    assert len(titles) == len(set(titles))  # generators name their classes by title


@pytest.mark.parametrize(
    "struct", [QuoteIn, OffsetIn, RedemptionIn, ItemIn, TransactionIn, EventIn, HoursIn]
)
def test_examples_are_valid_bodies(struct: type[msgspec.Struct]) -> None:
    example = EXAMPLES[struct.__name__]
    assert DOC["components"]["schemas"][struct.__name__]["examples"] == [example]
    msgspec.json.decode(msgspec.json.encode(example), type=struct, strict=True)


def test_patterns_compile_in_re2() -> None:
    patterns: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern" and isinstance(value, str):
                    patterns.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(DOC)
    assert "^[A-Za-z0-9._-]{1,64}$" in patterns
    for pattern in patterns:
        assert not re.search(r"\(\?[=!<]|\\[1-9]", pattern), pattern
        # what the pattern admits, ECMA-262 style ($ only at the very end)
        assert re.compile(pattern.removesuffix("$") + r"\Z") is not None


def test_metrics_and_readiness_as_they_answer() -> None:
    assert "text/plain" in _op("metrics")["responses"]["200"]["content"]
    ready = _op("ready")["responses"]
    assert "Retry-After" in ready["503"]["headers"]
    assert "application/json" in ready["503"]["content"]
