"""The OpenAPI document shows the request body of every handler that reads one."""

from __future__ import annotations

from typing import Any

from service.api.openapi import document
from service.api.rules import EventsDoc, EventsIn
from service.api.wire import BatchDoc, BatchIn
from service.app import create_app
from service.config import load_settings

# Operations that act on the resource their path names and read no body.
BODILESS = {"void", "reverse", "apply", "cancel", "approve", "reject", "retry"}
# Puts whose path says all there is (a community joins a district).
BODILESS_PATHS = {"/v1/districts/{d}/communities/{c}"}


def _document() -> dict[str, Any]:
    return document(create_app(load_settings(), dsn="postgresql://unused/none", scheduler=False))


def test_every_writing_operation_documents_its_json_body() -> None:
    doc = _document()
    schemas = doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        for method in ("post", "put", "patch"):
            if method not in item or path.rsplit("/", 1)[-1] in BODILESS or path in BODILESS_PATHS:
                continue
            body = item[method].get("requestBody", {}).get("content", {})
            ref = body.get("application/json", {}).get("schema", {}).get("$ref", "")
            name = ref.removeprefix("#/components/schemas/")
            assert schemas.get(name, {}).get("type") == "object", f"{method.upper()} {path}: {body}"


def test_documented_batches_have_the_fields_decoded() -> None:
    assert BatchDoc.__struct_fields__ == BatchIn.__struct_fields__
    assert EventsDoc.__struct_fields__ == EventsIn.__struct_fields__


def test_a_rule_set_may_be_sent_as_yaml() -> None:
    put = _document()["paths"]["/v1/communities/{c}/rules"]["put"]
    assert set(put["requestBody"]["content"]) == {"application/json", "application/yaml"}
