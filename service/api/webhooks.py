"""Webhook endpoints and their deliveries (SPEC section 12), and the chain head
anyone in the community may hold."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.params import FromPath, FromQuery, QueryParameter

from service.api.deps import body, changed, db, fingerprint, principal_of, written
from service.api.openapi import json_body
from service.api.wire import ClientId, Strict, Text
from service.config import Settings
from service.webhooks import service as webhooks
from service.webhooks.service import (
    AuditHead,
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    WebhookOut,
    WebhookPage,
)

Req = Request[Any, Any, Any]
SUBSCRIBERS: Final = frozenset({"operator", "property", "store"})
EVERY_ROLE: Final = frozenset(
    {"operator", "property", "volunteer_app", "organiser", "store", "resident"}
)
Path = "/v1/communities/{c:str}/webhooks"
One = Path + "/{w:str}"
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
EventType = Annotated[str, msgspec.Meta(max_length=64)]


class WebhookIn(Strict):
    id: ClientId
    url: Url
    events: Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=32)]
    description: Text | None = None


def _allow_private(request: Req) -> bool:
    settings: Settings = request.app.state.settings
    return settings.webhook_allow_private


@post(Path, opt={"roles": SUBSCRIBERS}, operation_class=json_body(WebhookIn))
async def create_webhook(request: Req, c: FromPath[str]) -> Response[WebhookOut]:
    """Creates an endpoint scoped as the calling key; its `secret` is in this answer only."""
    data = await body(request, WebhookIn)
    new = webhooks.NewWebhook(
        id=data.id,
        url=data.url,
        events=tuple(data.events),
        description=data.description,
        request_hash=fingerprint(data),
    )
    async with db(request) as conn:
        out, replayed = await webhooks.create(
            conn, c, new, principal_of(request), allow_private=_allow_private(request)
        )
    return written(out, replayed)


@get(Path, opt={"roles": SUBSCRIBERS})
async def list_webhooks(
    request: Req,
    c: FromPath[str],
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
) -> WebhookPage:
    """The live endpoints within the key's scope."""
    async with db(request) as conn:
        return await webhooks.page(conn, c, principal_of(request), cursor, limit)


@get(One, opt={"roles": SUBSCRIBERS})
async def get_webhook(request: Req, c: FromPath[str], w: FromPath[str]) -> WebhookOut:
    """One endpoint (without its secret)."""
    async with db(request) as conn:
        return await webhooks.get(conn, c, w, principal_of(request))


@delete(One, opt={"roles": SUBSCRIBERS}, status_code=204)
async def delete_webhook(request: Req, c: FromPath[str], w: FromPath[str]) -> None:
    """Stops deliveries to the endpoint; those still pending are marked failed."""
    async with db(request) as conn:
        await webhooks.delete(conn, c, w, principal_of(request))


@get(One + "/deliveries", opt={"roles": SUBSCRIBERS})
async def list_deliveries(
    request: Req,
    c: FromPath[str],
    w: FromPath[str],
    status: FromQuery[DeliveryStatus | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
) -> DeliveryPage:
    """The endpoint's deliveries, newest event first, with each one's last attempt."""
    async with db(request) as conn:
        return await webhooks.deliveries(conn, c, w, principal_of(request), status, cursor, limit)


@post(One + "/deliveries/{d:str}/retry", opt={"roles": SUBSCRIBERS}, status_code=200)
async def retry_delivery(
    request: Req, c: FromPath[str], w: FromPath[str], d: FromPath[str]
) -> Response[DeliveryOut]:
    """Attempts a delivered or failed delivery again now, with a fresh retry schedule."""
    async with db(request) as conn:
        out, replayed = await webhooks.retry(conn, c, w, d, principal_of(request))
    return changed(out, replayed)


@get("/v1/communities/{c:str}/audit/head", opt={"roles": EVERY_ROLE})
async def audit_head(request: Req, c: FromPath[str]) -> AuditHead:
    """The latest sealed position (`seq`) and hash (`head`, hex) of the community's
    chain: published elsewhere, it lets anyone detect a rewritten history."""
    async with db(request) as conn:
        return await webhooks.audit_head(conn, c)


HANDLERS: Final = [
    create_webhook,
    list_webhooks,
    get_webhook,
    delete_webhook,
    list_deliveries,
    retry_delivery,
    audit_head,
]
