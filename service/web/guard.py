"""Who a page request comes from, and the headers every page carries.

`authorize_page` runs before every /app handler (the router's hook): it turns the
session cookie into the same `Principal` the API builds from a key, checks the
role the route declares (`opt={"roles": …}`; none declared: admins only, as in
the API; `opt={"public": True}` for the sign-in pages), and for every request
that changes something checks the session's CSRF token and that the browser did
not send it from another site.
"""

from __future__ import annotations

import hmac
from typing import Any, Final

from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect

from service.api.deps import pool_of
from service.auth import Principal, require
from service.errors import DomainError, Forbidden, Unauthorized
from service.sessions import service as sessions
from service.web.i18n import Translator, language
from service.web.render import html

COOKIE: Final = "ledger_session"
LANG_COOKIE: Final = "ledger_lang"
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "x-csrf-token"
_SAFE: Final = frozenset({"GET", "HEAD"})
# No inline script or style anywhere: every script and style sheet is a file the
# service serves; images may be data: (QR codes are inline SVG, charts canvases).
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; media-src 'self' blob:; font-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}


def secure(request: Request[Any, Any, Any]) -> bool:
    """Cookies are Secure when the browser reached the service over https (the
    scheme uvicorn reports, behind a proxy from X-Forwarded-Proto of a trusted one)."""
    settings = request.app.state.settings
    return request.url.scheme == "https" or (settings.public_url or "").startswith("https:")


def session_cookie(request: Request[Any, Any, Any], token: str, max_age: int) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=token,
        path="/app",
        httponly=True,
        samesite="strict",
        secure=secure(request),
        max_age=max_age,
    )


def cleared_cookie(request: Request[Any, Any, Any]) -> Cookie:
    return Cookie(
        key=COOKIE,
        value="",
        path="/app",
        httponly=True,
        samesite="strict",
        secure=secure(request),
        max_age=0,
    )


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.state.session.principal
    return principal


async def authorize_page(request: Request[Any, Any, Any]) -> None:
    lang = language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))
    request.state.t = Translator(lang)
    request.state.session = None
    opt = request.route_handler.opt
    token = request.cookies.get(COOKIE)
    if token:
        session = await sessions.resolve(
            pool_of(request), token, request.app.state.settings.admin_key
        )
        request.state.session = session
    if request.method not in _SAFE:
        await _check_forgery(request, opt.get("public", False))
    if opt.get("public"):
        return
    if request.state.session is None:
        raise Unauthorized("sign in first")
    principal = request.state.session.principal
    require(principal, opt.get("roles", frozenset()), None)
    # The API's own checks (service.api.deps.principal_of, setup.may_read,
    # people.acting_for) read the principal from here, for pages as for the API.
    request.state.principal = principal


async def _check_forgery(request: Request[Any, Any, Any], public: bool) -> None:
    """A change must come from a page of this site: the browser's Sec-Fetch-Site
    (or Origin) says so, and, once signed in, the form or htmx carries the token."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("this form was sent from another site")
    if site is None and origin is not None and origin != _origin(request):
        raise Forbidden("this form was sent from another site")
    if public:
        return
    session = request.state.session
    if session is None:
        raise Unauthorized("sign in first")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise Forbidden("this form has expired; reload the page and try again")


def _origin(request: Request[Any, Any, Any]) -> str:
    url = request.url
    default = {"http": 80, "https": 443}.get(url.scheme)
    port = "" if url.port in (None, default) else f":{url.port}"
    return f"{url.scheme}://{url.hostname}{port}"


def page_headers(response: Response[Any]) -> Response[Any]:
    """Every /app answer: the CSP and friends; pages are never cached."""
    response.headers.update(PAGE_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _translator(request: Request[Any, Any, Any]) -> Translator:
    t = getattr(request.state, "t", None)
    if t is None:
        t = Translator(language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)))
        request.state.t = t
    return t


def _error_page(
    request: Request[Any, Any, Any], status: int, code: str, detail: str
) -> Response[Any]:
    t = _translator(request)
    if not hasattr(request.state, "session"):
        request.state.session = None
    message = t.refusal(code, detail)
    response = html(request, "error.html", status=status, code=code, message=message, detail=detail)
    return page_headers(response)


def domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    if isinstance(exc, Unauthorized) and request.method in _SAFE and not _is_htmx(request):
        response: Response[Any] = Redirect("/app/sign-in", status_code=303)
        if request.cookies.get(COOKIE):
            response.set_cookie(cleared_cookie(request))
        return page_headers(response)
    if isinstance(exc, Unauthorized) and _is_htmx(request):
        return page_headers(Response("", status_code=401, headers={"HX-Redirect": "/app/sign-in"}))
    return _error_page(request, exc.status, exc.code, exc.detail)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    code = "not_found" if isinstance(exc, NotFoundException) else "http_error"
    return _error_page(request, exc.status_code, code, str(exc.detail))


def _is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"
