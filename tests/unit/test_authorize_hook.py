"""Authorisation runs as the /v1 router's `before_request` hook. Hooks do not add
up across layers (the closest wins), so the app must refuse to start if any /v1
handler would not run it: a forgotten hook would otherwise open a route to anyone."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, Router, WebSocket, asgi, get, websocket
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


@get("/v1/communities/{c:str}/cached", cache=60)
async def cached(c: FromPath[str]) -> str:
    return c


@websocket("/v1/communities/{c:str}/stream")
async def stream(socket: WebSocket[Any, Any, Any], c: FromPath[str]) -> None:
    await socket.accept()
    await socket.close()


@asgi("/v1/raw", is_mount=True, copy_scope=True)
async def raw(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_a_route_that_could_skip_the_hook_stops_the_app_from_starting() -> None:
    fine = Litestar([Router("/", route_handlers=[covered], before_request=authorize)])
    check_authorized(fine)
    for leak, why in (
        (bypass, "would not run authorize"),  # its own hook replaces the router's
        (cached, "caches responses"),  # a cached response is served before hooks
        (stream, "not an HTTP route"),  # hooks run for HTTP only
        (raw, "not an HTTP route"),
    ):
        leaky = Litestar([Router("/", route_handlers=[covered, leak], before_request=authorize)])
        with pytest.raises(RuntimeError, match=why):
            check_authorized(leaky)
