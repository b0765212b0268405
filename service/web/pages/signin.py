"""Signing in and out: staff paste their API key once, residents open a one-time
link; either becomes a session cookie. `/app/` sends each role to its home."""

from __future__ import annotations

from typing import Any, Final

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect

from service.api.deps import address_of, pool_of
from service.errors import Unauthorized
from service.ratelimit import Limits
from service.sessions import service as sessions
from service.web.guard import COOKIE, LANG_COOKIE, cleared_cookie, secure, session_cookie
from service.web.i18n import LANGS
from service.web.render import html

Req = Request[Any, Any, Any]
PUBLIC: Final = {"public": True}
ANYONE: Final = frozenset(
    {"operator", "property", "volunteer_app", "organiser", "store", "resident"}
)
HOMES: Final = {
    "resident": "/app/me",
    "store": "/app/till",
    "organiser": "/app/hours",
    "operator": "/app/office",
}


def home_of(role: str) -> str:
    return HOMES.get(role, "/app/welcome")


@get("/", opt=PUBLIC, name="app_root")
async def root(request: Req) -> Response[Any]:
    session = request.state.session
    return Redirect(home_of(session.principal.role) if session else "/app/sign-in", status_code=303)


@get("/sign-in", opt=PUBLIC)
async def sign_in_form(request: Req) -> Response[str]:
    return html(request, "sign_in.html", error=None)


async def _form_value(request: Req, name: str) -> str:
    form = await request.form()
    value = form.get(name)
    return value if isinstance(value, str) else ""


@post("/sign-in", opt=PUBLIC)
async def sign_in(request: Req) -> Response[Any]:
    """The key is read from the form body, used once, and never stored or shown."""
    key = (await _form_value(request, "key")).strip()
    limits: Limits = request.app.state.limits
    address = address_of(request.scope)
    header = f"Bearer {key}"
    limits.admit(address, header)
    try:
        resolver = request.app.state.key_resolver
        opened = await sessions.open_with_key(pool_of(request), resolver, key)
    except Unauthorized:
        limits.failed(address, header)
        return html(request, "sign_in.html", status=401, error="sign_in.bad_key")
    return await _signed_in(request, opened)


@get("/in", opt=PUBLIC)
async def link_form(request: Req) -> Response[str]:
    """The page a sign-in link opens. Its token is after `#`, which browsers never
    send: the page's script posts it (or the resident types the code)."""
    return html(request, "link.html", error=None)


@post("/in", opt=PUBLIC)
async def link_sign_in(request: Req) -> Response[Any]:
    token = (await _form_value(request, "token")).strip()
    limits: Limits = request.app.state.limits
    address = address_of(request.scope)
    limits.admit(address, None)
    try:
        opened = await sessions.open_with_link(pool_of(request), token)
    except Unauthorized:
        limits.failed(address, None)
        return html(request, "link.html", status=401, error="sign_in.bad_link")
    return await _signed_in(request, opened)


async def _signed_in(request: Req, opened: sessions.Opened) -> Response[Any]:
    """The new session's cookie, always a new id (a planted one is never adopted);
    the session this browser held until now, if any, ends on the server too (a
    shared till or family phone: the next person to sign in ends the last one's)."""
    await sessions.end(pool_of(request), request.cookies.get(COOKIE))
    response: Response[Any] = Redirect(home_of(opened.role), status_code=303)
    response.set_cookie(session_cookie(request, opened.token, opened.ttl_s))
    return response


@post("/sign-out", opt={"roles": ANYONE})
async def sign_out(request: Req) -> Response[Any]:
    await sessions.end(pool_of(request), request.cookies.get(COOKIE))
    response: Response[Any] = Redirect("/app/sign-in", status_code=303)
    response.set_cookie(cleared_cookie(request))
    return response


@get("/lang/{to:str}", opt=PUBLIC)
async def choose_language(request: Req, to: FromPath[str]) -> Response[Any]:
    """Switches the language for the pages to come and goes back where it was."""
    lang = "en" if to.startswith("en") else "zh"
    back = request.query_params.get("next") or "/app/"
    if not back.startswith("/app/") or back.startswith("//"):
        back = "/app/"
    response: Response[Any] = Redirect(back, status_code=303)
    response.set_cookie(
        LANG_COOKIE,
        lang,
        path="/app",
        samesite="strict",
        max_age=365 * 86400,
        secure=secure(request),
    )
    assert lang in LANGS
    return response


@get("/welcome", opt={"roles": ANYONE})
async def welcome(request: Req) -> Response[str]:
    """Keys with no pages of their own (property companies, volunteer apps) and
    admins land here: the app says what it offers them."""
    return html(request, "welcome.html")


HANDLERS: Final = [
    root,
    sign_in_form,
    sign_in,
    link_form,
    link_sign_in,
    sign_out,
    choose_language,
    welcome,
]
