"""The OpenAPI document: what Litestar derives, completed so that a generated client
types every answer (SPEC section 13).

Litestar documents each handler from its signature: the return type, the default
status of its method, and no request body (handlers decode theirs with `deps.body`
rather than through a `data` parameter). `document(app)` completes that document
in one place, from what each route already declares, so that a new handler gets
it all without annotations of its own:

- the request body: `json_body(T)` on the decorator documents the very struct the
  handler decodes, as a named component;
- the success statuses a handler really answers, read from its code: `written(…)`
  is 201, or 200 with `Idempotent-Replayed: true` for a replay; `changed(…)` is 200
  (a repeat marked the same way); `Response(…, status_code=…)` adds its statuses;
- the problem statuses: 401, 403 and 429 where `authorize` runs, 404 and 422 where
  there are parameters or a body, 409 for writes, 400 and 413 for a body, 503 for all of
  /v1, each an `application/problem+json` document whose `code` is one of
  `problem_codes()`;
- a bearer security scheme (routes outside `authorize` say they need none), a tag
  per context (the handler's module, described by its docstring), the handler's
  docstring as description, a camelCase operationId from the handler's name,
  examples for the main request bodies, and patterns an RE2 engine compiles.

`DocumentPlugin` serves the completed document at /schema/openapi.json; use
`document(app)` rather than `app.openapi_schema`, which is Litestar's part only.
"""

from __future__ import annotations

import ast
import copy
import inspect
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import msgspec
from litestar import Litestar, Request, Response
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Operation
from litestar.routes import HTTPRoute

from service.api.deps import authorize, changed, written
from service.api.problems import HTTP_CODES, INTERNAL_ERROR, PROBLEM_MEDIA_TYPE
from service.errors import DomainError

JSON = "application/json"
REF = "#/components/schemas/{name}"
PROBLEM = "ProblemDetails"
REPLAYED = "Idempotent-Replayed"
_WRITES: Final = frozenset({"post", "put", "patch", "delete"})
_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass(frozen=True)
class Body:
    """A handler's request body: `type_` as JSON (and, in `also`, other media types
    with their own schemas, e.g. a rule set as YAML text)."""

    type_: Any
    required: bool
    also: dict[str, dict[str, Any]]


def json_body(
    type_: Any, *, required: bool = True, also: dict[str, dict[str, Any]] | None = None
) -> type[Operation]:
    """An Operation class for the decorator's `operation_class`: `document` shows
    `type_`, the struct the handler decodes, as its JSON request body."""

    @dataclass
    class BodyOperation(Operation):
        body: ClassVar[Body] = Body(type_, required, also or {})

    return BodyOperation


def problem_codes() -> list[str]:
    """Every `code` a problem document can carry: the domain's errors (each
    subclass of DomainError, wherever it is defined) and those the app gives
    Litestar's own exceptions and unexpected failures."""
    codes = {INTERNAL_ERROR, "http_error", *HTTP_CODES.values()}
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return sorted(codes)


# Examples of the main request bodies, by component name (checked against their
# structs by tests/unit/test_openapi_document.py).
EXAMPLES: Final[dict[str, dict[str, Any]]] = {
    "QuoteIn": {"member": "m-1024", "household": "h-3-1202", "bill_amount_fen": 36_000},
    "OffsetIn": {
        "id": "bill-2026-11-h-3-1202",
        "member": "m-1024",
        "household": "h-3-1202",
        "bill_amount_fen": 36_000,
        "points": 120,
        "hold": True,
        "hold_ttl_s": 86_400,
    },
    "RedemptionIn": {
        "id": "receipt-0001-20261123-0042",
        "store": "store-1",
        "member": "m-1024",
        "items": [{"sku": "rice-5kg", "qty": 1}, {"sku": "soap", "qty": 2}],
        "consent": {"spend_code": "K7Q2-9XTM-4FHD"},
    },
    "ItemIn": {"name": "Rice, 5 kg", "points": 80, "stock": 40},
    "TransactionIn": {
        "id": "award-2026-11-23-m-1024",
        "postings": [
            {
                "source": "system:issuance:points",
                "destination": "member:m-1024:points",
                "asset": "points",
                "amount": 50,
            }
        ],
        "memo": "Litter pick, 23 November",
    },
    "EventIn": {
        "id": "fee-2026-11-h-3-1202",
        "type": "fee.paid",
        "member": "m-1024",
        "occurred_at": "2026-11-23T09:30:00+08:00",
        "attributes": {"days_late": 0},
    },
    "HoursIn": {
        "id": "log-2026-11-23-0007",
        "member": "m-1024",
        "activity": "Reading to elderly neighbours",
        "started_at": "2026-11-23T09:00:00+08:00",
        "minutes": 90,
    },
    PROBLEM: {
        "type": "urn:points-ledger:problem:insufficient_points",
        "title": "Insufficient balance",
        "status": 409,
        "detail": "member:m-1024:points has 40 points, 120 needed",
        "code": "insufficient_points",
    },
}

# The media types of the files a `format` query parameter may ask for.
FILE_FORMATS: Final = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_PROBLEM_DESCRIPTIONS: Final = {
    400: "The request cannot be read at all, e.g. a malformed Content-Length (`validation_error`).",
    401: "No key, or a key that is unknown, revoked or expired (`unauthorized`).",
    403: "The key's role or scope does not allow this (`forbidden`), or the member's "
    "consent is missing or insufficient (`consent_required`).",
    404: "The community, or a resource the path or body names, does not exist or "
    "is outside the key's scope (`not_found`).",
    409: "Refused by the state of the ledger: `insufficient_points`, `invalid_state`, "
    "`idempotency_conflict` (the same id with a different body), `cap_exceeded`, "
    "`out_of_stock`, `member_closed`.",
    413: "The body is larger than LEDGER_MAX_BODY_BYTES (`payload_too_large`).",
    422: "A parameter or the body is invalid (`validation_error`).",
    429: "Too many requests from this key or address (`rate_limited`); retry after "
    "`Retry-After` seconds.",
    503: "The database cannot be reached or did not answer in time (`unavailable`); "
    "the same request, with the same id, may be sent again after `Retry-After` seconds.",
}
_SUCCESS_DESCRIPTIONS: Final = {
    200: "OK.",
    201: "Created.",
    204: "Done; no content.",
}
_RETRY_AFTER: Final = {
    "description": "Seconds after which the same request may be sent again.",
    "schema": {"type": "integer"},
}
_SPECIAL: Final[dict[str, dict[str, Any]]] = {
    # Prometheus' text exposition format, not JSON.
    "metrics": {
        "200": {
            "description": "The service's metrics in Prometheus' text format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
}
# Python's `$` also matches before a final newline, so our patterns forbid one with
# a lookahead; in ECMA-262 and RE2, which generators use, `$` alone means the end.
_PY_END = "$(?!\\n)"
_NOT_RE2 = re.compile(r"\(\?[=!<]|\\[1-9]|\\k<")


def document(app: Litestar) -> dict[str, Any]:
    """The app's completed OpenAPI document (built once per app)."""
    cached: dict[str, Any] | None = getattr(app.state, "openapi_document", None)
    if cached is None:
        cached = _complete(app, copy.deepcopy(app.openapi_schema.to_schema()))
        app.state.openapi_document = cached
    return cached


class DocumentPlugin(JsonRenderPlugin):
    """Serves `document(app)` at /schema/openapi.json."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, document(request.app))


def _complete(app: Litestar, doc: dict[str, Any]) -> dict[str, Any]:
    components = doc.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    seen_ids: dict[str, str] = {}
    bodies = _request_bodies(app, schemas)
    tags: dict[str, str] = {}
    for path, method, handler in _operations(app):
        op = doc["paths"][path][method]
        op_id = _operation_id(handler, path)
        if op_id in seen_ids:
            raise RuntimeError(f"operationId {op_id!r} of {path} is also {seen_ids[op_id]}'s")
        seen_ids[op_id] = path
        op["operationId"] = op_id
        op["summary"] = handler.summary or _humanized(_handler_name(handler, path))
        tag, about = _tag(handler)
        op["tags"] = list(handler.tags or [tag])
        tags.setdefault(tag, about)
        if handler in bodies:
            op["requestBody"] = bodies[handler]
        public = handler.resolve_before_request() is not authorize
        if public:
            op["security"] = []
        op["responses"] = _SPECIAL.get(op_id) or {
            **_successes(handler, op),
            **_problems(op, method, public),
        }
    _add_component(schemas, PROBLEM, _problem_schema())
    for name, example in EXAMPLES.items():
        if name in schemas:
            schemas[name]["examples"] = [example]
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer <key>` (SPEC section 7).",
        }
    }
    doc["security"] = [{"bearer": []}]
    doc["tags"] = [{"name": name, "description": about} for name, about in sorted(tags.items())]
    _re2_patterns(doc)
    return doc


def _request_bodies(app: Litestar, schemas: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    """Each handler's request body, its structs added to `schemas` (one component
    per struct; structs of the same name in two modules are named by module)."""
    found: dict[Any, Body] = {}
    for _, _, handler in _operations(app):
        body = getattr(handler.operation_class, "body", None)
        if isinstance(body, Body):
            found[handler] = body
    types = [body.type_ for body in found.values()]
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    names = {name: _component_name(name) for name in components}
    renamed = {REF.format(name=old): REF.format(name=new) for old, new in names.items()}
    for name, schema in components.items():
        schema = _renamed_refs(schema, renamed)
        if names[name] != name:  # generators name their classes by the title
            schema["title"] = names[name]
        _add_component(schemas, names[name], schema)
    return {
        handler: {
            "required": body.required,
            "content": {
                media: {"schema": schema}
                for media, schema in {JSON: _renamed_refs(ref, renamed), **body.also}.items()
            },
        }
        for (handler, body), ref in zip(found.items(), refs, strict=True)
    }


def _component_name(name: str) -> str:
    """msgspec names a struct by its module when two share a name
    (`service.api.members.HouseholdIn`): that is `MembersHouseholdIn` here."""
    *modules, struct = name.removeprefix("service.").removeprefix("api.").split(".")
    return "".join(module.capitalize() for module in modules) + struct


def _renamed_refs(node: Any, renamed: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: renamed.get(value, value) if key == "$ref" else _renamed_refs(value, renamed)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renamed_refs(item, renamed) for item in node]
    return node


def _operations(app: Litestar) -> Iterator[tuple[str, str, HTTPRouteHandler]]:
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method, (handler, _) in route.route_handler_map.items():
            if method != "OPTIONS" and handler.resolve_include_in_schema():
                yield route.path_format or "/", method.lower(), handler


def _handler_name(handler: HTTPRouteHandler, path: str) -> str:
    name = handler.handler_name
    # A controller's `get` (Prometheus' /metrics) is named by its path.
    return path.strip("/").rsplit("/", 1)[-1] if name in _METHODS else name


def _operation_id(handler: HTTPRouteHandler, path: str) -> str:
    if isinstance(handler.operation_id, str):
        return handler.operation_id
    first, *rest = re.split(r"[_\W]+", _handler_name(handler, path))
    return first + "".join(word.capitalize() for word in rest)


def _humanized(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _tag(handler: HTTPRouteHandler) -> tuple[str, str]:
    """The context a handler belongs to: its module under service.api (its
    docstring's first line describes it); anything else is operations'."""
    module = inspect.getmodule(inspect.unwrap(handler.fn))
    name = module.__name__ if module else ""
    if not name.startswith("service.api.") or name == "service.api.ops":
        return "ops", "Liveness, readiness and metrics: no key needed."
    about = (module.__doc__ if module else None) or ""
    return name.rsplit(".", 1)[-1], about.strip().split("\n\n")[0].replace("\n", " ")


def _successes(handler: HTTPRouteHandler, op: dict[str, Any]) -> dict[str, Any]:
    """Each success status the handler answers, with the body Litestar documented
    for its default status (or the files its `format` parameter chooses)."""
    default = handler.status_code
    content = _content(op, op["responses"].get(str(default), {}).get("content"))
    out: dict[str, Any] = {}
    answers = _answers(handler)
    for status in sorted(answers or {default}):
        response: dict[str, Any] = {"description": _SUCCESS_DESCRIPTIONS.get(status, "OK.")}
        if content and status != 204:
            response["content"] = content
        out[str(status)] = response
    if "written" in answers.values() or "changed" in answers.values():
        replayed = {
            "description": "`true` when this answers a repeat of an earlier request "
            "(same id, same body): the original result, unchanged.",
            "schema": {"type": "string", "enum": ["true"]},
        }
        out["200"]["headers"] = {REPLAYED: replayed}
        if answers.get(201) == "written":
            out["200"]["description"] = (
                "A replay of an earlier request with the same id and body: the original "
                f"result, with `{REPLAYED}: true`."
            )
        elif answers.get(200) == "changed":
            out["200"]["description"] = (
                f"Done; a repeat of the same change answers the same, with `{REPLAYED}: true`."
            )
    if "503" in out:
        out["503"]["headers"] = {"Retry-After": _RETRY_AFTER}
        out["503"]["description"] = "Not ready: the database did not answer in time."
    return out


def _content(op: dict[str, Any], generated: dict[str, Any] | None) -> dict[str, Any] | None:
    """A `format` query parameter chooses between JSON and files (an export): each
    file format its enum names is documented as its media type. Litestar shows a
    streamed answer as an empty schema, which is dropped."""
    formats = [
        value
        for param in op.get("parameters", [])
        if param["in"] == "query" and param["name"] == "format"
        for value in param["schema"].get("enum", [])
    ]
    if not formats:
        return generated
    content: dict[str, Any] = {}
    schema = (generated or {}).get(JSON, {}).get("schema", {})
    kept = [s for s in schema.get("oneOf", [schema]) if s]
    if "json" in formats and kept:
        content[JSON] = {"schema": kept[0] if len(kept) == 1 else {"oneOf": kept}}
    for value in formats:
        if value in FILE_FORMATS:
            content[FILE_FORMATS[value]] = {"schema": {"type": "string", "format": "binary"}}
    return content


def _answers(handler: HTTPRouteHandler) -> dict[int, str]:
    """The statuses the handler's code answers, read from its source and that of the
    module's functions it calls: {status: "written" | "changed" | "response"}."""
    fn = inspect.unwrap(handler.fn)
    found: dict[int, str] = {}
    for call, scope in _calls(fn, set()):
        target = _resolve(call.func, scope)
        if target is written:
            found[201] = "written"
            found[200] = "written"
        elif target is changed:
            found[200] = "changed"
        elif target is Response:
            statuses = [kw.value for kw in call.keywords if kw.arg == "status_code"]
            for status in _constants(statuses[0]) if statuses else [handler.status_code]:
                found.setdefault(status, "response")
    return found


def _calls(fn: Callable[..., Any], seen: set[Any]) -> Iterator[tuple[ast.Call, dict[str, Any]]]:
    seen.add(fn)
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return
    scope = fn.__globals__
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        yield node, scope
        callee = _resolve(node.func, scope)
        same_module = getattr(callee, "__module__", None) == fn.__module__
        if inspect.isfunction(callee) and same_module and callee not in seen:
            yield from _calls(callee, seen)


def _resolve(node: ast.expr, scope: dict[str, Any]) -> Any:
    return scope.get(node.id) if isinstance(node, ast.Name) else None


def _constants(node: ast.expr) -> list[int]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and type(n.value) is int]


def _problems(op: dict[str, Any], method: str, public: bool) -> dict[str, Any]:
    if public:
        return {}
    has_params = bool(op.get("parameters"))
    has_body = "requestBody" in op
    statuses = {401, 403, 429, 503}
    if has_params or has_body:
        statuses |= {404, 422}
    if has_body:  # 400: a body that cannot be read at all (a malformed Content-Length)
        statuses |= {400, 413}
    if method in _WRITES:
        statuses.add(409)
    out: dict[str, Any] = {}
    for status in sorted(statuses):
        response: dict[str, Any] = {
            "description": _PROBLEM_DESCRIPTIONS[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": REF.format(name=PROBLEM)}}},
        }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "description": "`Bearer`: the scheme the key must be sent with.",
                    "schema": {"type": "string"},
                }
            }
        if status in (429, 503):
            response["headers"] = {"Retry-After": _RETRY_AFTER}
        out[str(status)] = response
    return out


def _problem_schema() -> dict[str, Any]:
    return {
        "title": PROBLEM,
        "description": "An RFC 9457 problem document; `code` is stable and machine-readable. "
        "Some problems carry more members (e.g. `errors` for a validation error).",
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "urn:points-ledger:problem:<code>"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string", "enum": problem_codes()},
        },
        "required": ["type", "title", "status", "detail", "code"],
        "additionalProperties": True,
    }


def _add_component(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    if name in schemas and schemas[name] != schema:
        raise RuntimeError(f"two different schemas are named {name!r} in the OpenAPI document")
    schemas[name] = schema


def _re2_patterns(node: Any) -> None:
    """Rewrites our patterns' Python-only end anchor; refuses any other construct
    that RE2 cannot compile (lookarounds, backreferences)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                if value.endswith(_PY_END):
                    value = node[key] = value.removesuffix(_PY_END) + "$"
                if _NOT_RE2.search(value):
                    raise RuntimeError(f"pattern {value!r} cannot be compiled by RE2")
            else:
                _re2_patterns(value)
    elif isinstance(node, list):
        for item in node:
            _re2_patterns(item)
