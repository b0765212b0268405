"""Sign-in links: an operator issues a resident a one-time link into the web app
(SPEC section 14), shown once, to send or to print as a QR code."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Response, post
from litestar.params import FromPath
from msgspec import Meta

from service.api.deps import OPERATOR, body, db, principal_of
from service.api.openapi import json_body
from service.api.wire import Strict
from service.config import Settings
from service.sessions import service as sessions

Req = Request[Any, Any, Any]
MemberPath: Final = "/v1/communities/{c:str}/members/{m:str}"


class SignInLinkIn(Strict):
    ttl_s: Annotated[int, Meta(ge=60, le=sessions.LINK_TTL_MAX_S)] = sessions.LINK_TTL_MAX_S


class SignInLinkOut(msgspec.Struct, kw_only=True):
    url: Annotated[
        str,
        Meta(
            description="Opens the resident's pages once; the token after `#` never "
            "reaches a server log.",
            examples=["https://points.example.org/app/in#Qm9vdHN0cmFwIHRva2VuIGV4YW1wbGU"],
        ),
    ]
    expires_at: datetime


def link_url(settings: Settings, request: Req, token: str) -> str:
    """Where a sign-in link points: LEDGER_PUBLIC_URL, or the address the request came to."""
    base = settings.public_url or str(request.base_url)
    return f"{base.rstrip('/')}/app/in#{token}"


@post(
    MemberPath + "/sign-in-links",
    opt={"roles": OPERATOR},
    operation_class=json_body(SignInLinkIn, required=False),
)
async def create_sign_in_link(
    request: Req, c: FromPath[str], m: FromPath[str]
) -> Response[SignInLinkOut]:
    """A one-time link into the resident's pages of the web app, valid `ttl_s`
    seconds (default and at most 24 h). Opening it signs the resident in; it then
    no longer works. Each call issues a new link; earlier ones stay valid until used
    or expired."""
    raw = await request.body()
    data = await body(request, SignInLinkIn) if raw.strip() else SignInLinkIn()
    async with db(request) as conn:
        link = await sessions.issue_link(conn, c, m, principal_of(request), data.ttl_s)
    out = SignInLinkOut(
        url=link_url(request.app.state.settings, request, link.token), expires_at=link.expires_at
    )
    return Response(out, status_code=201, headers={"Cache-Control": "no-store"})


HANDLERS: Final = [create_sign_in_link]
