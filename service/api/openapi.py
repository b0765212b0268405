"""The request bodies in the OpenAPI document, which Litestar cannot see for itself.

Handlers decode their bodies with `deps.body` (strict msgspec, NUL refused) rather
than through a `data` parameter, so Litestar would document no request body at
all. `json_body(T)` gives a handler an `operation_class` that documents the JSON
Schema msgspec derives from `T`, the very struct the handler decodes, so the
document cannot drift from what is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import msgspec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema

JSON = "application/json"


def json_body(
    type_: Any, *, required: bool = True, also: dict[str, dict[str, Any]] | None = None
) -> type[Operation]:
    """An Operation class whose request body is `type_` as JSON (and, in `also`,
    other media types with their own schemas, e.g. a rule set as YAML text)."""
    schemas = {JSON: _inlined(msgspec.json.schema(type_)), **(also or {})}
    # Plain JSON Schema dicts: the document renders them as they are.
    content = {media: OpenAPIMediaType(schema=cast(Schema, s)) for media, s in schemas.items()}
    request_body = RequestBody(content=content, required=required)

    @dataclass
    class BodyOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = request_body

    return BodyOperation


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """msgspec's schema with its `$defs` references replaced by the definitions,
    so that it stands on its own inside the OpenAPI document."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
