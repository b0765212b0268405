"""create_app(): the Litestar application, its lifespan and its one error mapping."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg
import structlog
from litestar import Litestar, Request, Response, Router
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.plugins.prometheus import PrometheusController

from service.api import (
    consent,
    keys,
    ledger,
    lots,
    members,
    network,
    offsets,
    ops,
    people,
    reports,
    rules,
    setup,
    sign_in,
    supermarket,
    timebank,
    webhooks,
)
from service.api.deps import authorize, check_authorized
from service.api.openapi import DocumentPlugin
from service.api.problems import (
    HTTP_CODES,
    INTERNAL_ERROR,
    PROBLEM_MEDIA_TYPE,
    domain_problem,
    problem_body,
)
from service.auth import KeyResolver
from service.config import Settings, load_settings
from service.db import create_pool
from service.errors import DomainError, RetryLater
from service.ledger.coalescer import Coalescer
from service.logs import configure_logging
from service.middleware import (
    RequestContext,
    refused_by_router,
    worker_started,
    worker_stopping,
)
from service.outage import fault_of, unavailable
from service.ratelimit import Limits
from service.rules.book import RuleBook
from service.scheduler import build_scheduler, sample_pool
from service.web import guard as web_guard
from service.web.routes import routes as web_routes

log = structlog.get_logger(__name__)

# A 401 names the scheme a key must be sent with (RFC 9110, section 11.6.1).
_CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> Response[Any]:
    body = problem_body(status, code, title, detail, **extra)
    headers = _CHALLENGE if status == 401 else None
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _domain(_: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    headers = _CHALLENGE if exc.status == 401 else None
    response = Response(
        domain_problem(exc), status_code=exc.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )
    if isinstance(exc, RetryLater):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    return problem(422, "validation_error", "Validation failed", exc.detail, errors=exc.extra)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if request.url.path.startswith("/app/"):  # a browser asked for a page that is not there
        return web_guard.http_error(request, exc)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    response = problem(exc.status_code, code, code.replace("_", " ").capitalize(), exc.detail)
    response.headers.update(exc.headers or {})  # e.g. the `Allow` a 405 must carry
    if "route_handler" not in request.scope:  # the router refused it: no route ran
        response.headers["X-Request-ID"] = refused_by_router(request.scope, exc.status_code)
    return response


def _data(_: Request[Any, Any, Any], exc: asyncpg.DataError) -> Response[Any]:
    # The database refused a value that passed our checks (e.g. a NUL character).
    return problem(422, "validation_error", "Validation failed", f"a value was refused: {exc}")


def _failure(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """An outage (the database gone, frozen or too slow, or an error raised while
    handling one) is a 503; anything else is a bug."""
    fault = fault_of(exc)
    if fault is None:
        return _unexpected(request, exc)
    return _domain(request, unavailable(exc, fault, request.url.path))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled_error", path=request.url.path, error=type(exc).__name__)
    return problem(500, INTERNAL_ERROR, "Internal error", "the error was logged; retry later")


def _cors(origins: tuple[str, ...]) -> CORSConfig | None:
    """Browser apps of `origins` may call the API (LEDGER_CORS_ORIGINS); none, CORS
    is off. Preflights are answered by the middleware, before any key is asked for."""
    if not origins:
        return None
    return CORSConfig(
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        expose_headers=["Idempotent-Replayed", "Retry-After", "X-Request-ID", "WWW-Authenticate"],
        max_age=600,
    )


def _lifespan(settings: Settings, dsn: str, scheduler_on: bool) -> Any:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await create_pool(
            dsn,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            timeout_s=settings.db_timeout_s,
            connect_timeout_s=settings.db_connect_timeout_s,
        )
        app.state.pool = pool
        app.state.settings = settings
        worker_started()
        app.state.key_resolver = KeyResolver(settings.admin_key, settings.key_cache_ttl_s)
        app.state.limits = Limits(settings.rate_limits)
        sampler = asyncio.create_task(sample_pool(pool))
        app.state.known_communities = set()
        app.state.coalescer = Coalescer(pool)
        app.state.rules = RuleBook()
        scheduler = build_scheduler(pool, settings, app.state.rules) if scheduler_on else None
        if scheduler is not None:
            scheduler.start()
        # Everything built so far lives as long as the process: move it out of the
        # collector's sight, so full collections stop walking the whole framework.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            sampler.cancel()
            await pool.close()
            worker_stopping()

    return lifespan


V1_HANDLERS = [
    setup.create_community,
    setup.get_community,
    setup.create_household,
    setup.create_member,
    setup.get_member,
    setup.member_balance,
    setup.member_statement,
    *lots.HANDLERS,
    ledger.create_transaction,
    ledger.create_batch,
    ledger.get_transaction,
    ledger.post_transaction,
    ledger.void_transaction,
    ledger.reverse_transaction,
    ledger.get_account,
    ledger.account_entries,
    ledger.verify,
    rules.publish_rules,
    rules.active_rules,
    rules.rule_versions,
    rules.simulate_rules,
    rules.post_event,
    rules.post_events,
    keys.create_key,
    keys.revoke_key,
    *offsets.HANDLERS,
    *supermarket.HANDLERS,
    *reports.HANDLERS,
    *timebank.HANDLERS,
    *members.HANDLERS,
    *people.HANDLERS,
    *consent.HANDLERS,
    *webhooks.HANDLERS,
    *sign_in.HANDLERS,
    *network.HANDLERS,
]


def create_app(
    settings: Settings | None = None, *, dsn: str | None = None, scheduler: bool | None = None
) -> Litestar:
    """The application. `dsn` defaults to DATABASE_URL; the CLI sets it for the embedded server."""
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    dsn = dsn or settings.database_url
    if dsn is None:
        raise RuntimeError("DATABASE_URL is not set; start the service with `points-ledger serve`")
    app = Litestar(
        route_handlers=[
            Router(path="/", route_handlers=V1_HANDLERS, before_request=authorize),
            ops.health,
            ops.ready,
            PrometheusController,
            *web_routes(),
        ],
        lifespan=[
            _lifespan(settings, dsn, settings.scheduler_enabled if scheduler is None else scheduler)
        ],
        middleware=[RequestContext],
        exception_handlers={
            DomainError: _domain,
            ValidationException: _validation,
            NotFoundException: _http,
            HTTPException: _http,
            asyncpg.DataError: _data,
            Exception: _failure,
        },
        openapi_config=OpenAPIConfig(
            title="Community points ledger",
            version="0.1.0",
            description="Double-entry points and time-bank credits for residential "
            "communities, with a rules engine (docs/api.md).",
            path="/schema",
            use_handler_docstrings=True,
            # /schema/openapi.json is service.api.openapi's completed document.
            render_plugins=[ScalarRenderPlugin(), DocumentPlugin()],
        ),
        cors_config=_cors(settings.cors_origins),
        request_max_body_size=settings.max_body_bytes,
        response_headers=[],
        debug=False,
        logging_config=None,
    )
    check_authorized(app)
    return app
