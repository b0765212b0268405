"""The /app router: pages behind `authorize_page`, with their own error pages and
headers; static files; and `/` sending a browser to the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from litestar import Request, Response, Router, get
from litestar.exceptions import HTTPException
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from service.errors import DomainError
from service.web.guard import authorize_page, domain_error, http_error, page_headers
from service.web.pages import operator, organiser, resident, rules, signin, till

STATIC: Final = Path(__file__).parent / "static"
PAGE_MODULES: Final = [signin, resident, till, organiser, operator, rules]


@get("/", include_in_schema=False)
async def to_app(request: Request[Any, Any, Any]) -> Response[Any]:
    """A browser opening the service's address gets the app."""
    return Redirect("/app/", status_code=303)


def routes() -> list[Any]:
    handlers = [h for module in PAGE_MODULES for h in module.HANDLERS]
    return [
        Router(
            path="/app",
            route_handlers=handlers,
            before_request=authorize_page,
            after_request=page_headers,
            exception_handlers={DomainError: domain_error, HTTPException: http_error},
            include_in_schema=False,
        ),
        create_static_files_router(
            path="/app/static",
            directories=[STATIC],
            include_in_schema=False,
            cache_control=None,
            send_as_attachment=False,
        ),
        to_app,
    ]
