"""The OpenAPI document shows the request body of every handler that reads one."""

from __future__ import annotations

from typing import Any

from service.api.rules import EventsDoc, EventsIn
from service.api.wire import BatchDoc, BatchIn
from service.app import create_app
from service.config import load_settings

# Operations that act on the resource their path names and read no body.
BODILESS = {"void", "reverse", "apply", "cancel", "approve", "reject"}


def _document() -> dict[str, Any]:
    app = create_app(load_settings(), dsn="postgresql://unused/none", scheduler=False)
    document: dict[str, Any] = app.openapi_schema.to_schema()
    return document


def test_every_writing_operation_documents_its_json_body() -> None:
    for path, item in _document()["paths"].items():
        for method in ("post", "put", "patch"):
            if method not in item or path.rsplit("/", 1)[-1] in BODILESS:
                continue
            body = item[method].get("requestBody", {}).get("content", {})
            schema = body.get("application/json", {}).get("schema", {})
            assert schema.get("type") == "object", f"{method.upper()} {path}: {body}"
            assert "$ref" not in str(schema), f"{method.upper()} {path}: unresolved reference"


def test_documented_batches_have_the_fields_decoded() -> None:
    assert BatchDoc.__struct_fields__ == BatchIn.__struct_fields__
    assert EventsDoc.__struct_fields__ == EventsIn.__struct_fields__


def test_a_rule_set_may_be_sent_as_yaml() -> None:
    put = _document()["paths"]["/v1/communities/{c}/rules"]["put"]
    assert set(put["requestBody"]["content"]) == {"application/json", "application/yaml"}
