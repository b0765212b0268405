"""Pages: Jinja2 templates from service/web/templates, autoescaped, every string
from the catalogue (`t`), numbers and money formatted in one place."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import jinja2
import segno
from litestar import Request, Response
from markupsafe import Markup

from service.web.i18n import HTML_LANG, Translator

_TEMPLATES: Final = Path(__file__).parent / "templates"
SHANGHAI: Final = ZoneInfo("Asia/Shanghai")


def num(value: int | None) -> str:
    """An integer with thousands separators (points, minutes)."""
    return "–" if value is None else f"{value:,}"


def yuan(fen: int | None) -> str:
    """Fen as yuan, exactly: integers only, never a float."""
    if fen is None:
        return "–"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


def hours(minutes: int | None) -> str:
    if minutes is None:
        return "–"
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}"


def qr_svg(data: str, scale: int = 6) -> Markup:
    """`data` as a QR code in inline SVG (segno), with a title for screen readers."""
    svg = segno.make(data, error="m").svg_inline(scale=scale, dark="#111", light="#fff")
    return Markup(svg)


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=num, yuan=yuan, hours=hours)
    env.globals.update(qr_svg=qr_svg)
    return env


def when(tz: ZoneInfo) -> Any:
    def fmt(value: datetime | None, style: str = "datetime") -> str:
        if value is None:
            return "–"
        local = value.astimezone(tz)
        return local.strftime("%Y-%m-%d" if style == "date" else "%Y-%m-%d %H:%M")

    return fmt


def html(
    request: Request[Any, Any, Any], template: str, status: int = 200, **ctx: Any
) -> Response[str]:
    """The page `template` for this request: its language, session, CSRF token and
    the community's time zone are in every template's context."""
    t: Translator = request.state.t
    session = getattr(request.state, "session", None)
    tz: ZoneInfo = getattr(request.state, "tz", SHANGHAI)
    body = (
        _environment()
        .get_template(template)
        .render(
            t=t,
            lang=t.lang,
            html_lang=HTML_LANG[t.lang],
            session=session,
            principal=None if session is None else session.principal,
            csrf="" if session is None else session.csrf,
            path=request.url.path,
            when=when(tz),
            **ctx,
        )
    )
    # Litestar adds `; charset=utf-8` to a text/ media type itself.
    return Response(body, status_code=status, media_type="text/html")
