"""Authorisation runs as the /v1 router's `before_request` hook. Hooks do not add
up across layers (the closest wins), so the app must refuse to start if any /v1
handler would not run it: a forgotten hook would otherwise open a route to anyone."""

from __future__ import annotations

import pytest
from litestar import Litestar, Router, get
from litestar.params import FromPath

from service.api.deps import authorize, check_authorized
from service.app import create_app


async def _own_hook(_: object) -> None:
    return None


@get("/v1/communities/{c:str}/covered")
async def covered(c: FromPath[str]) -> str:
    return c


@get("/v1/communities/{c:str}/bypass", before_request=_own_hook)
async def bypass(c: FromPath[str]) -> str:
    return c


def test_every_v1_route_of_the_service_runs_authorize() -> None:
    app = create_app(dsn="postgresql://unused@localhost/unused", scheduler=False)
    v1 = [r for r in app.routes if r.path.startswith("/v1/")]
    assert len(v1) > 40  # the check below really looked at the service's routes
    for route in v1:
        for handler in route.route_handlers:  # type: ignore[union-attr]
            assert handler.resolve_before_request() is authorize, route.path


def test_a_handler_with_its_own_hook_stops_the_app_from_starting() -> None:
    fine = Litestar([Router("/", route_handlers=[covered], before_request=authorize)])
    check_authorized(fine)
    leaky = Litestar([Router("/", route_handlers=[covered, bypass], before_request=authorize)])
    with pytest.raises(RuntimeError, match="bypass"):
        check_authorized(leaky)
