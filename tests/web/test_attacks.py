"""An attacker's review of the web app (issue 17, "sessions that are safe"), over
HTTP: junk sent to every form never reaches the 500 handler; every form needs the
session's token and this site; hostile names, reasons and item names are text on
every page, never markup; no key, link token, session id or spend code in a log
line, a redirect or a cached page; a session is new at each sign-in, ended
server-side at sign-out, Secure behind https; a closed member still reads its
history and can spend nothing; and no session reaches another member, store or
community through an id it edits."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any, Final

import asyncpg
import msgspec
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import load_settings
from tests.api.test_rules import SCHEME, event, publish
from tests.helpers import ADMIN_KEY, C, award, balance, bearer, community
from tests.web.conftest import csrf_of, sign_in_with_key, sign_in_with_link

Client = AsyncTestClient[Any]
SAME = {"Sec-Fetch-Site": "same-origin"}
COOKIE = "ledger_session"
PAYLOAD = "\"'><img src=x onerror=alert(1)></textarea></script><script>alert(1)</script>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
OP_ID = re.compile(r'name="op_id" value="([^"]+)"')
# Every field name a form of the app sends, for the junk.
FIELDS = [
    "key",
    "token",
    "code",
    "member",
    "op_id",
    "qty.soap",
    "max_points",
    "store",
    "company",
    "per_bill",
    "per_year",
    "proxy",
    "scopes",
    "to_member",
    "minutes",
    "memo",
    "one",
    "action",
    "hours",
    "team",
    "id",
    "household",
    "name",
    "address",
    "property_company",
    "draft",
]


# Helpers ------------------------------------------------------------------------


async def _key(client: Client, role: str, community_id: str = "green", **scope: Any) -> str:
    r = await client.post("/v1/api-keys", json={"role": role, "community": community_id, **scope})
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]
    return key


async def _link(client: Client, member: str = "m0") -> str:
    r = await client.post(f"{C}/members/{member}/sign-in-links", json={})
    assert r.status_code == 201, r.text
    url: str = r.json()["url"]
    return url


async def _count(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n: int = await conn.fetchval(f"SELECT count(*) FROM {table}")  # a fixed table name
        return n
    finally:
        await conn.close()


def _post_routes(app: Any) -> list[tuple[str, dict[str, Any]]]:
    """(path template, opt) of every POST of /app; sign-out last (it ends the session)."""
    found = []
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path.startswith("/app/"):
            for handler in route.route_handlers:
                if "POST" in handler.http_methods:
                    found.append((route.path, handler.opt))
    return sorted(found, key=lambda p: p[0] == "/app/sign-out")


def _hold(browser: Client, token: str) -> None:
    """The browser holds session id `token` (and no other), as if it had been set."""
    browser.cookies.clear()
    browser.cookies.set(COOKIE, token, domain="testserver.local", path="/app")


async def _new_session(browser: Client, key_or_link: str) -> str:
    """A session of its own (as from another browser: signing in again in the same
    one ends the session it held); its id."""
    browser.cookies.clear()
    if "/app/in#" in key_or_link:
        await sign_in_with_link(browser, key_or_link)
    else:
        await sign_in_with_key(browser, key_or_link)
    token: str = browser.cookies[COOKIE]
    return token


def _filled(template: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, template)


class _Markup(HTMLParser):
    """What a page's markup does: any inline script, handler, style attribute or
    image (none of the app's pages has one) is a finding."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.bad: list[str] = []
        self._script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "img":
            self.bad.append(f"<img {attrs}>")
        for name in names:
            if name.startswith("on") or name == "style":
                self.bad.append(f"<{tag} {name}=…>")
        if tag == "script":
            src = dict(attrs).get("src") or ""
            if not src.startswith("/app/static/"):
                self.bad.append(f"<script src={src!r}>")
            self._script = True
        if tag == "div" and "data-chart" in names:
            json.loads(dict(attrs)["data-chart"] or "")  # JSON in an attribute, intact

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = False

    def handle_data(self, data: str) -> None:
        if self._script and data.strip():
            self.bad.append(f"inline script {data[:40]!r}")


def harmless(page: str, shows_payload: bool = True) -> None:
    """The page has no markup of its own making, and the payload is text on it."""
    parser = _Markup()
    parser.feed(page)
    assert not parser.bad, parser.bad
    assert PAYLOAD not in page and "<script>alert" not in page
    if shows_payload:
        assert ESCAPED in page, "the hostile text is not on the page"


# Junk and forgery on every form --------------------------------------------------


def _junk_forms() -> list[dict[str, Any]]:
    long = "x" * 20_000  # all fields together stay under the body limit
    return [
        {},
        {f: long for f in FIELDS},
        {f: "-1" for f in FIELDS} | {"qty.soap": "-3", "qty.<b>": "1", "one": "approve:-1"},
        {f: "1e9" for f in FIELDS} | {"qty.soap": "9" * 5000, "minutes": "٣", "per_bill": "١٢"},
        {f: "\x00\u202e😀<b>" for f in FIELDS} | {"one": "approve:\x00", "scopes": ["x", "\x00"]},
        {f: ["a", "b"] for f in FIELDS},
    ]


def _junk_bodies(csrf: str) -> list[tuple[str, bytes]]:
    return [
        ("application/json", b'{"csrf": "%s", "qty.soap": -1}' % csrf.encode()),
        ("multipart/form-data; boundary=zz", b"--zz\r\nbroken"),
        ("multipart/form-data", b"junk"),
        ("application/x-www-form-urlencoded", b"csrf=" + csrf.encode() + b"&code=%ff%fe&q=%zz"),
        ("text/plain", b"\xff\xfe\x00"),
    ]


async def test_junk_sent_to_every_form_never_reaches_the_500_handler(
    client: Client, browser_client: Client
) -> None:
    """Every POST of the app, as every kind of session (the admin's included),
    with path ids that name nothing, fields missing, huge, negative, not numbers,
    NULs and right-to-left marks, repeated, and bodies that are not forms."""
    await community(client)
    await award(client, "a1", "m0", 50)
    item = {"name": "soap", "points": 5, "stock": 5}
    assert (await client.put(f"{C}/stores/s1/items/soap", json=item)).status_code == 201
    sessions = {}
    for role, scope in (("store", {"store": "s1"}), ("organiser", {}), ("operator", {})):
        sessions[role] = await _new_session(browser_client, await _key(client, role, **scope))
    sessions["admin"] = await _new_session(browser_client, ADMIN_KEY)
    sessions["resident"] = await _new_session(browser_client, await _link(client))
    routes = _post_routes(browser_client.app)
    assert len(routes) >= 19 and "/app/till/sale" in [path for path, _ in routes]
    failed = []
    for role, token in sessions.items():
        _hold(browser_client, token)
        csrf = csrf_of((await browser_client.get("/app/welcome")).text)
        for template, _ in routes:
            if template == "/app/sign-out":  # the junk was sent signed in
                assert (await browser_client.get("/app/welcome")).status_code == 200, role
            for fill in ("x", "<b>", "a" * 300):
                url = _filled(template, fill)
                for form in _junk_forms():
                    r = await browser_client.post(url, data={"csrf": csrf, **form}, headers=SAME)
                    if r.status_code >= 500:
                        failed.append((role, url, sorted(form)[:2], r.status_code))
                for media, raw in _junk_bodies(csrf):
                    headers = {**SAME, "Content-Type": media, "X-CSRF-Token": csrf}
                    r = await browser_client.post(url, content=raw, headers=headers)
                    if r.status_code >= 500:
                        failed.append((role, url, media, r.status_code))
    assert not failed, failed[:10]


async def test_an_admin_session_on_a_residents_page_is_refused_in_words(
    client: Client, browser_client: Client, dsn: str
) -> None:
    """Found by the junk test: an admin passes every role check, and the resident's
    pages assumed a member (500). Now: the app's 403 page, for every one of them."""
    await community(client)
    await sign_in_with_key(browser_client, ADMIN_KEY)
    csrf = csrf_of((await browser_client.get("/app/welcome")).text)
    pages = ("", "/statement", "/spend-code", "/mandates", "/proxies", "/time")
    for page in pages:
        r = await browser_client.get(f"/app/me{page}?for=m0")
        assert r.status_code == 403 and 'data-code="forbidden"' in r.text, page
    for form in ("/spend-code", "/mandates", "/proxies", "/time/give", "/proxies/m1/revoke"):
        r = await browser_client.post(
            f"/app/me{form}", data={"csrf": csrf, "max_points": "1"}, headers=SAME
        )
        assert r.status_code == 403, form
    assert await _count(dsn, "spend_codes") == 0


async def _rows(dsn: str) -> dict[str, int]:
    """How many rows each table of the database has (a refusal changes none)."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        return {
            t["table_name"]: await conn.fetchval(f'SELECT count(*) FROM "{t["table_name"]}"')
            for t in tables
        }
    finally:
        await conn.close()


# What each path id of the app's forms names in `_forged_world`.
IDS: Final = {"company": "acme", "p": "m1", "r": "r1", "h": "vh1", "action": "approve", "m": "m0"}


async def _forged_world(client: Client) -> None:
    """Something for every form to act on: m0 with points, a mandate and a proxy,
    an item and a sale r1 at s1, pending hours vh1."""
    await community(client)
    await publish(client)
    await award(client, "a1", "m0", 50)
    item = {"name": "soap", "points": 5, "stock": 5}
    assert (await client.put(f"{C}/stores/s1/items/soap", json=item)).status_code == 201
    sale = {"id": "r1", "store": "s1", "member": "m0", "items": [{"sku": "soap", "qty": 1}]}
    assert (await client.post(f"{C}/redemptions", json=sale)).status_code == 201
    r = await client.put(f"{C}/members/m0/mandates/acme", json={"max_points_per_bill": 5})
    assert r.status_code in (200, 201), r.text
    r = await client.put(f"{C}/members/m0/proxies/m1", json={"scopes": ["read"]})
    assert r.status_code in (200, 201), r.text
    hours = {
        "id": "vh1",
        "member": "m0",
        "activity": "visits",
        "started_at": "2026-11-20T09:00:00+08:00",
        "minutes": 60,
    }
    app = bearer(await _key(client, "volunteer_app"))
    assert (await client.post(f"{C}/volunteer-hours", json=hours, headers=app)).status_code == 201


async def test_every_form_needs_the_sessions_token_and_this_site(
    client: Client, browser_client: Client, dsn: str
) -> None:
    """Each POST route, as each session its roles admit (so that the 403 is the
    forgery's, not the role's): without the token, with another session's, with
    htmx's header wrong, or from another site: 403, and no row of any table
    changes. The sign-in forms take no token but refuse another site (login CSRF)."""
    await _forged_world(client)
    sessions: dict[str, tuple[str, str]] = {}
    operator = await _key(client, "operator")
    for role, key in (
        ("store", await _key(client, "store", store="s1")),
        ("organiser", await _key(client, "organiser")),
        ("operator", operator),
    ):
        sessions[role] = (await _new_session(browser_client, key), "")
    sessions["resident"] = (await _new_session(browser_client, await _link(client)), "")
    for role, (token, _) in sessions.items():
        _hold(browser_client, token)
        sessions[role] = (token, csrf_of((await browser_client.get("/app/welcome")).text))
    other = sessions["operator"][1]
    link_token = (await _link(client)).split("#", 1)[1]
    before = await _rows(dsn)
    tried = 0
    for template, opt in _post_routes(browser_client.app):
        url = re.sub(r"\{(\w+):str\}", lambda found: IDS[found.group(1)], template)
        if opt.get("public"):
            # A valid key or link from another site does not sign the browser in.
            browser_client.cookies.clear()
            for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
                form = {"key": operator, "token": link_token}
                r = await browser_client.post(url, data=form, headers=headers)
                assert r.status_code == 403 and "set-cookie" not in r.headers, (url, headers)
                tried += 1
            continue
        for role, (token, csrf) in sessions.items():
            if role not in opt["roles"]:
                continue
            _hold(browser_client, token)
            wrong = other if role != "operator" else sessions["store"][1]
            form = {"max_points": "10", "one": "approve:vh1", "qty.soap": "1", "op_id": "f-1"}
            for sent, headers in (
                (form, SAME),
                ({**form, "csrf": wrong}, SAME),
                ({**form, "csrf": csrf}, {"Sec-Fetch-Site": "cross-site"}),
                ({**form, "csrf": csrf}, {"Sec-Fetch-Site": "same-site"}),
                ({**form, "csrf": csrf}, {"Origin": "https://evil.example"}),
                ({**form, "csrf": csrf}, {**SAME, "X-CSRF-Token": wrong, "HX-Request": "true"}),
            ):
                r = await browser_client.post(url, data=sent, headers=headers)
                assert r.status_code == 403, (role, url, sent, headers, r.status_code)
                tried += 1
    assert tried >= 100
    assert await _rows(dsn) == before
    # Every session is still there: none of the forged sign-outs ended one.
    for token, _ in sessions.values():
        _hold(browser_client, token)
        assert (await browser_client.get("/app/welcome")).status_code == 200


# Hostile text --------------------------------------------------------------------


async def _hostile_world(client: Client) -> None:
    """Green, named by the payload; so are its household's address, both members,
    a rule's reason, a transfer's memo, an item and volunteer hours' activity."""
    r = await client.post("/v1/communities", json={"id": "green", "name": PAYLOAD})
    assert r.status_code == 201, r.text
    body = {"id": "h0", "property_company": "acme", "address": PAYLOAD}
    assert (await client.post(f"{C}/households", json=body)).status_code == 201
    for m in ("m0", "m1"):
        body = {"id": m, "household": "h0", "name": PAYLOAD}
        assert (await client.post(f"{C}/members", json=body)).status_code == 201
    await publish(client, SCHEME.replace("按时缴纳物业费", json.dumps(PAYLOAD)))
    r = await client.post(f"{C}/events", json=event("e-fee", "fee.paid", days_late=0))
    assert r.status_code == 201, r.text
    gift = {
        "id": "gift-1",
        "postings": [
            {
                "source": "system:issuance:points",
                "destination": "member:m0:points",
                "asset": "points",
                "amount": 100,
            }
        ],
        "memo": PAYLOAD,
    }
    assert (await client.post(f"{C}/transactions", json=gift)).status_code == 201
    item = {"name": PAYLOAD, "points": 5, "stock": 5}
    assert (await client.put(f"{C}/stores/s1/items/soap", json=item)).status_code == 201
    hours = {
        "id": "vh1",
        "member": "m0",
        "activity": PAYLOAD,
        "started_at": "2026-11-20T09:00:00+08:00",
        "minutes": 60,
    }
    app = bearer(await _key(client, "volunteer_app"))
    r = await client.post(f"{C}/volunteer-hours", json=hours, headers=app)
    assert r.status_code == 201, r.text


async def test_hostile_names_reasons_and_items_are_text_on_every_page(
    client: Client, browser_client: Client
) -> None:
    """`"><img onerror>`, `</textarea>` and `</script>` as a community's, member's,
    item's and household's name, a rule's reason, a memo and an activity, and
    typed into every form: escaped wherever a page shows it, attributes included;
    no page has an inline script, a handler or a style attribute (the CSP)."""
    await _hostile_world(client)
    # The office.
    await sign_in_with_key(browser_client, await _key(client, "operator"))
    csrf = csrf_of((await browser_client.get("/app/office/members")).text)
    for path in (
        "/app/office/members",
        f"/app/office/members?q={PAYLOAD}",
        "/app/office/members/m0",
        "/app/office/households",
        "/app/office/poster?period=2026-11",
        "/app/office/rules",
        "/app/office/rules/simulate",
        "/app/hours",
    ):
        r = await browser_client.get(path)
        assert r.status_code == 200, (path, r.text)
        harmless(r.text)
    dashboard = await browser_client.get("/app/office")
    harmless(dashboard.text, shows_payload=False)
    r = await browser_client.post(
        "/app/office/members/m0/sign-in-link", data={"csrf": csrf}, headers=SAME
    )
    harmless(r.text)
    refused = (
        ("/app/office/members", {"id": "bad id", "household": "h0", "name": PAYLOAD}),
        ("/app/office/households", {"id": "bad id", "property_company": "x", "address": PAYLOAD}),
        ("/app/office/rules", {"draft": f"baseline: {json.dumps(PAYLOAD)}\n", "action": "check"}),
        ("/app/office/rules/simulate", {"draft": f"{PAYLOAD}: [\n"}),
    )
    for path, form in refused:
        r = await browser_client.post(path, data={"csrf": csrf, **form}, headers=SAME)
        assert r.status_code == 422, (path, r.text)
        harmless(r.text)
    draft = SCHEME.replace("按时缴纳物业费", json.dumps(PAYLOAD)) + f"# {PAYLOAD}\n"
    r = await browser_client.post(
        "/app/office/rules/simulate", data={"csrf": csrf, "draft": draft}, headers=SAME
    )
    assert r.status_code == 200, r.text
    harmless(r.text)

    # An organiser decides the hours in place (htmx): the row is text too.
    await sign_in_with_key(browser_client, await _key(client, "organiser"))
    queue = await browser_client.get("/app/hours")
    harmless(queue.text)
    headers = {**SAME, "HX-Request": "true", "X-CSRF-Token": csrf_of(queue.text)}
    r = await browser_client.post("/app/hours/vh1/approve", headers=headers)
    assert r.status_code == 200 and 'data-outcome="approved"' in r.text, r.text
    harmless(r.text)
    harmless((await browser_client.get("/app/hours?r=approved:vh1")).text)

    # The resident: its pages, and every form given the payload back.
    await sign_in_with_link(browser_client, await _link(client))
    csrf = csrf_of((await browser_client.get("/app/me")).text)
    give = {"to_member": "m1", "minutes": "1", "memo": PAYLOAD, "op_id": "gift-x"}
    r = await browser_client.post("/app/me/time/give", data={"csrf": csrf, **give}, headers=SAME)
    assert r.status_code == 303, r.text
    for path in ("/app/me", "/app/me/statement", "/app/me/time", "/app/me/statement?asset=minutes"):
        r = await browser_client.get(path)
        assert r.status_code == 200, path
        harmless(r.text)
    for path in ("/app/me/mandates", "/app/me/proxies", "/app/me/spend-code"):
        harmless((await browser_client.get(path)).text, shows_payload=False)
    for path, form in (
        ("/app/me/spend-code", {"max_points": "1", "store": PAYLOAD}),
        ("/app/me/mandates", {"company": PAYLOAD, "per_bill": "1"}),
        ("/app/me/proxies", {"proxy": PAYLOAD, "scopes": "read"}),
        ("/app/me/time/give", {"to_member": PAYLOAD, "minutes": "1", "op_id": "gift-y"}),
    ):
        r = await browser_client.post(path, data={"csrf": csrf, **form}, headers=SAME)
        assert 400 <= r.status_code < 500, (path, r.status_code)
        harmless(r.text)
    r = await browser_client.get(f"/app/me?for={PAYLOAD}")
    assert r.status_code == 404
    harmless(r.text, shows_payload=False)

    # The till: the item's name on the basket, a refusal, the receipt, today's list.
    r = await client.post(
        f"{C}/members/m0/spend-codes",
        json={"max_points": 100},
        headers=bearer(await _key(client, "resident", member="m0")),
    )
    code = r.json()["code"]
    await sign_in_with_key(browser_client, await _key(client, "store", store="s1"))
    csrf = csrf_of((await browser_client.get("/app/till")).text)
    basket = await browser_client.post(
        "/app/till/code", data={"csrf": csrf, "code": code}, headers=SAME
    )
    harmless(basket.text)
    sale = {"csrf": csrf, "code": code, "member": "m0", "op_id": "till-x"}
    r = await browser_client.post("/app/till/sale", data={**sale, "qty.soap": "6"}, headers=SAME)
    assert r.status_code == 409, r.text
    harmless(r.text)
    r = await browser_client.post("/app/till/sale", data={**sale, "qty.soap": "1"}, headers=SAME)
    assert r.status_code == 303, r.text
    harmless((await browser_client.get(r.headers["location"])).text)
    harmless((await browser_client.get("/app/till/today")).text)

    # Signing in: a hostile key is not echoed; a hostile `next` goes home.
    browser_client.cookies.clear()
    r = await browser_client.post("/app/sign-in", data={"key": PAYLOAD}, headers=SAME)
    assert r.status_code == 401
    harmless(r.text, shows_payload=False)
    assert "onerror" not in r.text
    for back in (PAYLOAD, "//evil.example/app/", "https://evil.example/app/", "/app/\r\nX: y"):
        r = await browser_client.get("/app/lang/en", params={"next": back})
        location = r.headers["location"]
        assert r.status_code == 303 and location.startswith("/app/"), location
        assert not location.startswith("//") and "\n" not in location


# Secrets -------------------------------------------------------------------------


async def test_no_key_token_session_or_code_in_a_log_line_a_url_or_a_cached_page(
    client: Client, browser_client: Client, capfd: Any
) -> None:
    """A whole afternoon: a key and a link signed in, a spend code issued on the
    resident's page, taken at the till. The access log (structlog), every redirect
    and every page's headers are looked at for each secret."""
    await community(client)
    await award(client, "a1", "m0", 50)
    item = {"name": "soap", "points": 5, "stock": 5}
    assert (await client.put(f"{C}/stores/s1/items/soap", json=item)).status_code == 201
    store_key, link = await _key(client, "store", store="s1"), await _link(client)
    token = link.split("#", 1)[1]
    capfd.readouterr()
    secrets: list[str] = [store_key, token, token.split(".", 1)[1]]
    locations: list[str] = []

    home = await sign_in_with_link(browser_client, link)
    locations.append(home)
    secrets.append(browser_client.cookies[COOKIE])
    page = await browser_client.get("/app/me/spend-code")
    csrf = csrf_of(page.text)
    r = await browser_client.post(
        "/app/me/spend-code", data={"csrf": csrf, "max_points": "20"}, headers=SAME
    )
    assert r.status_code == 200
    code = re.search(r'data-testid="code">([^<]+)<', r.text)
    assert code, r.text
    secrets.append(code.group(1))
    # The code's page: not kept by the browser, nor named to another site; one
    # charset (it said `charset=utf-8` twice).
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["referrer-policy"] == "no-referrer"

    browser_client.cookies.clear()
    locations.append(await sign_in_with_key(browser_client, store_key))
    secrets.append(browser_client.cookies[COOKIE])
    csrf = csrf_of((await browser_client.get("/app/till")).text)
    basket = await browser_client.post(
        "/app/till/code", data={"csrf": csrf, "code": code.group(1)}, headers=SAME
    )
    assert basket.status_code == 200 and basket.headers["cache-control"] == "no-store"
    op = OP_ID.search(basket.text)
    assert op
    sale = {"csrf": csrf, "code": code.group(1), "member": "m0", "op_id": op.group(1)}
    r = await browser_client.post("/app/till/sale", data={**sale, "qty.soap": "2"}, headers=SAME)
    assert r.status_code == 303
    locations.append(r.headers["location"])
    receipt = await browser_client.get(r.headers["location"])
    assert receipt.status_code == 200

    # The office's card with a new sign-in link: shown once, never cached.
    browser_client.cookies.clear()
    await sign_in_with_key(browser_client, await _key(client, "operator"))
    csrf = csrf_of((await browser_client.get("/app/office/members/m0")).text)
    card = await browser_client.post(
        "/app/office/members/m0/sign-in-link", data={"csrf": csrf}, headers=SAME
    )
    assert card.status_code == 200 and "/app/in#" in card.text
    assert card.headers["cache-control"] == "no-store"
    assert card.headers["referrer-policy"] == "no-referrer"
    secrets.append(card.text.split("/app/in#", 1)[1].split("<", 1)[0])

    logged = capfd.readouterr().out
    assert '"path": "/app/till/sale"' in logged  # the access log was captured
    for secret in secrets:
        assert len(secret) >= 6
        assert secret not in logged, "a secret in the log"
        assert not any(secret in where for where in locations), "a secret in a URL"
    for page_text in (receipt.text,):
        assert not any(secret in page_text for secret in secrets)


# Sessions ------------------------------------------------------------------------


async def test_a_sign_in_issues_a_new_session_and_ends_the_one_it_replaces(
    client: Client, browser_client: Client
) -> None:
    """Fixation: an id planted in the browser is never adopted; signing in again
    (a shared tablet, another person) ends the session the browser held; signing
    out ends it on the server, not only in the browser."""
    await community(client)
    planted = "A" * 43
    _hold(browser_client, planted)
    await sign_in_with_key(browser_client, await _key(client, "operator"))
    first = browser_client.cookies[COOKIE]
    assert first != planted
    _hold(browser_client, planted)
    assert (await browser_client.get("/app/welcome")).status_code == 303

    _hold(browser_client, first)
    await sign_in_with_link(browser_client, await _link(client))
    second = browser_client.cookies[COOKIE]
    assert second != first
    _hold(browser_client, first)
    r = await browser_client.get("/app/office")
    assert (r.status_code, r.headers["location"]) == (303, "/app/sign-in")

    _hold(browser_client, second)
    csrf = csrf_of((await browser_client.get("/app/me")).text)
    r = await browser_client.post("/app/sign-out", data={"csrf": csrf}, headers=SAME)
    assert r.status_code == 303 and "Max-Age=0" in r.headers["set-cookie"]
    # The id the browser was told to forget no longer opens anything anyway.
    _hold(browser_client, second)
    assert (await browser_client.get("/app/me")).status_code == 303


async def test_cookies_are_secure_behind_https(client: Client, dsn: str) -> None:
    """LEDGER_PUBLIC_URL=https://… (the service behind a TLS proxy), or a request
    that came over https: the session cookie, the one clearing it, and the
    language's (it was not) are Secure."""
    await community(client)
    key = await _key(client, "operator")
    public = msgspec.structs.replace(
        load_settings(), admin_key=ADMIN_KEY, public_url="https://points.example.org"
    )
    for settings, base in (
        (public, "http://testserver.local"),
        (msgspec.structs.replace(load_settings(), admin_key=ADMIN_KEY), "https://testserver.local"),
    ):
        app = create_app(settings, dsn=dsn, scheduler=False)
        async with AsyncTestClient(app, base_url=base) as browser:
            browser.follow_redirects = False
            r = await browser.post("/app/sign-in", data={"key": key}, headers=SAME)
            assert r.status_code == 303, r.text
            cookie = r.headers["set-cookie"]
            assert "Secure" in cookie and "HttpOnly" in cookie, cookie
            assert "samesite=strict" in cookie.lower()
            token = cookie.split(";", 1)[0].split("=", 1)[1]
            browser.cookies.set(COOKIE, token)
            csrf = csrf_of((await browser.get("/app/welcome")).text)
            r = await browser.post("/app/sign-out", data={"csrf": csrf}, headers=SAME)
            assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]
            r = await browser.get("/app/lang/en", params={"next": "/app/sign-in"})
            assert "ledger_lang=en" in r.headers["set-cookie"]
            assert "Secure" in r.headers["set-cookie"]


async def test_a_closed_member_reads_its_history_and_spends_nothing(
    client: Client, browser_client: Client, dsn: str
) -> None:
    """Decided: a resident's session outlives the member's close, as a resident key
    does in the API (a member who moved out may still look at its statement), but
    the close ends what the member can do: no spend code, no gift of minutes, in
    words on the form, nothing written."""
    await community(client)
    await award(client, "a1", "m0", 50)
    await sign_in_with_link(browser_client, await _link(client))
    csrf = csrf_of((await browser_client.get("/app/me")).text)
    r = await client.post(f"{C}/members/m0/close", json={"reason": "moved out"})
    assert r.status_code == 200, r.text
    before, codes = await balance(client, "m0"), await _count(dsn, "spend_codes")
    page = await browser_client.get("/app/me")
    assert page.status_code == 200 and "warn" in page.text
    assert (await browser_client.get("/app/me/statement")).status_code == 200
    r = await browser_client.post(
        "/app/me/spend-code", data={"csrf": csrf, "max_points": "10"}, headers=SAME
    )
    assert r.status_code == 409 and 'role="alert"' in r.text, r.text
    assert 'data-testid="code"' not in r.text
    give = {"csrf": csrf, "to_member": "m1", "minutes": "1", "op_id": "gift-closed"}
    r = await browser_client.post("/app/me/time/give", data=give, headers=SAME)
    assert 400 <= r.status_code < 500 and 'role="alert"' in r.text
    assert await _count(dsn, "spend_codes") == codes
    assert await balance(client, "m0") == before


# Another member, store or community ----------------------------------------------


async def test_a_read_only_proxy_writes_nothing_for_the_member(
    client: Client, browser_client: Client, dsn: str
) -> None:
    """`?for=` and ids in paths and hidden fields: m0 may read m1's pages (a
    `read` grant), and every write of the resident's pages aimed at m1 is refused
    and changes nothing of m1's; an extra `from_member` field is ignored."""
    await community(client, members=3)
    await award(client, "a1", "m1", 50)
    r = await client.put(f"{C}/members/m1/mandates/acme", json={"max_points_per_bill": 5})
    assert r.status_code in (200, 201), r.text
    r = await client.put(f"{C}/members/m1/proxies/m0", json={"scopes": ["read"]})
    assert r.status_code in (200, 201), r.text
    await sign_in_with_link(browser_client, await _link(client))
    csrf = csrf_of((await browser_client.get("/app/me")).text)
    before = (await balance(client, "m1"), await _count(dsn, "spend_codes"))
    mandates = (await client.get(f"{C}/members/m1/mandates")).json()
    proxies = (await client.get(f"{C}/members/m1/proxies")).json()
    writes = (
        ("/app/me/spend-code", {"max_points": "10"}),
        ("/app/me/mandates", {"company": "acme", "per_bill": "50"}),
        ("/app/me/mandates/acme/revoke", {}),
        ("/app/me/proxies", {"proxy": "m0", "scopes": "spend"}),
        ("/app/me/proxies/m0/revoke", {}),
        ("/app/me/time/give", {"to_member": "m0", "minutes": "1", "op_id": "gift-z"}),
    )
    for path, form in writes:
        r = await browser_client.post(f"{path}?for=m1", data={"csrf": csrf, **form}, headers=SAME)
        assert r.status_code == 403, (path, r.status_code)
        # m2 granted m0 nothing: for m0's session, m2 is no one.
        r = await browser_client.post(f"{path}?for=m2", data={"csrf": csrf, **form}, headers=SAME)
        assert r.status_code == 404, (path, r.status_code)
    r = await browser_client.post(
        "/app/me/time/give",
        data={"csrf": csrf, "to_member": "m1", "from_member": "m1", "minutes": "1", "op_id": "g"},
        headers=SAME,
    )
    assert r.status_code == 409, r.text  # from m0's own minutes (none), not m1's
    assert (await balance(client, "m1"), await _count(dsn, "spend_codes")) == before
    assert (await client.get(f"{C}/members/m1/mandates")).json() == mandates
    assert (await client.get(f"{C}/members/m1/proxies")).json() == proxies


async def test_an_edited_basket_charges_no_other_member(
    client: Client, browser_client: Client
) -> None:
    """The basket's hidden `member` changed to m1 with m0's code: the code is m0's
    consent, so the sale is refused and no one is charged."""
    await community(client)
    await award(client, "a0", "m0", 50)
    await award(client, "a1", "m1", 50)
    item = {"name": "soap", "points": 5, "stock": 5}
    assert (await client.put(f"{C}/stores/s1/items/soap", json=item)).status_code == 201
    r = await client.post(
        f"{C}/members/m0/spend-codes",
        json={"max_points": 50},
        headers=bearer(await _key(client, "resident", member="m0")),
    )
    code = r.json()["code"]
    await sign_in_with_key(browser_client, await _key(client, "store", store="s1"))
    csrf = csrf_of((await browser_client.get("/app/till")).text)
    before = (await balance(client, "m0"), await balance(client, "m1"))
    sale = {"csrf": csrf, "code": code, "member": "m1", "op_id": "till-e", "qty.soap": "1"}
    r = await browser_client.post("/app/till/sale", data=sale, headers=SAME)
    assert r.status_code == 403 and 'role="alert"' in r.text, r.text
    assert (await balance(client, "m0"), await balance(client, "m1")) == before
    assert (await client.get(f"{C}/redemptions/till-e")).status_code == 404


async def test_an_operator_of_another_community_decides_no_hours_here(
    client: Client, browser_client: Client
) -> None:
    await community(client)
    await publish(client)
    hours = {
        "id": "vh1",
        "member": "m0",
        "activity": "visits",
        "started_at": "2026-11-20T09:00:00+08:00",
        "minutes": 60,
    }
    app = bearer(await _key(client, "volunteer_app"))
    assert (await client.post(f"{C}/volunteer-hours", json=hours, headers=app)).status_code == 201
    assert (
        await client.post("/v1/communities", json={"id": "blue", "name": "B"})
    ).status_code == 201
    await sign_in_with_key(browser_client, await _key(client, "operator", "blue"))
    page = await browser_client.get("/app/hours")
    assert 'id="row-vh1"' not in page.text
    csrf = csrf_of(page.text)
    r = await browser_client.post(
        "/app/hours", data={"csrf": csrf, "one": "approve:vh1"}, headers=SAME
    )
    assert r.status_code == 303 and "not_found" in r.headers["location"]
    headers = {**SAME, "HX-Request": "true", "X-CSRF-Token": csrf}
    r = await browser_client.post("/app/hours/vh1/approve", headers=headers)
    assert 'data-outcome="not_found"' in r.text
    after = (await client.get(f"{C}/volunteer-hours/vh1")).json()
    assert after["status"] == "pending" and after["approvals"] == []


def _get_routes(app: Any) -> list[str]:
    return sorted(
        route.path
        for route in app.routes
        if isinstance(route, HTTPRoute)
        and route.path.startswith("/app")
        and not route.path.startswith("/app/static")
        and any("GET" in h.http_methods for h in route.route_handlers)
    )


async def test_junk_in_every_pages_address_never_reaches_the_500_handler(
    client: Client, browser_client: Client
) -> None:
    """Every page, as every kind of session, with the query parameters the pages
    read set to what no page writes (cursors, ids, versions, months, outcomes)."""
    await community(client)
    await award(client, "a1", "m0", 50)
    sessions = {}
    for role, scope in (("store", {"store": "s1"}), ("organiser", {}), ("operator", {})):
        sessions[role] = await _new_session(browser_client, await _key(client, role, **scope))
    sessions["admin"] = await _new_session(browser_client, ADMIN_KEY)
    sessions["resident"] = await _new_session(browser_client, await _link(client))
    names = [
        "cursor",
        "for",
        "asset",
        "team",
        "version",
        "published",
        "period",
        "q",
        "done",
        "r",
        "lang",
        "next",
    ]
    values = ("x", "-1", "99999999999999999999", "\x00", "<b>", "a" * 3000, "%", "2026-13", ":")
    failed = []
    for role, token in sessions.items():
        _hold(browser_client, token)
        for template in _get_routes(browser_client.app):
            for fill in ("x", "<b>", "a" * 300):
                url = _filled(template, fill)
                for value in values:
                    r = await browser_client.get(url, params={n: value for n in names})
                    if r.status_code >= 500:
                        failed.append((role, url, value[:10], r.status_code))
        assert (await browser_client.get("/app/welcome")).status_code == 200, role
    assert not failed, failed[:10]


async def test_quantities_are_whole_numbers_as_typed_or_refused(
    client: Client, browser_client: Client
) -> None:
    """The till's quantities: negative, fractional, `1_0` (Python's int() reads 10,
    the page's script 1), `+1`, other scripts' digits: refused (422) in the sale
    and in a return, nothing sold or given back; plain digits with spaces are fine."""
    await community(client)
    await award(client, "a0", "m0", 100)
    item = {"name": "soap", "points": 5, "stock": 20}
    assert (await client.put(f"{C}/stores/s1/items/soap", json=item)).status_code == 201
    r = await client.post(
        f"{C}/members/m0/spend-codes",
        json={"max_points": 100},
        headers=bearer(await _key(client, "resident", member="m0")),
    )
    code = r.json()["code"]
    await sign_in_with_key(browser_client, await _key(client, "store", store="s1"))
    csrf = csrf_of((await browser_client.get("/app/till")).text)
    before = await balance(client, "m0")
    sale = {"csrf": csrf, "code": code, "member": "m0", "op_id": "till-q"}
    for typed in ("-1", "1.5", "1_0", "+1", "١", "1e1", "0x2", "２"):
        r = await browser_client.post(
            "/app/till/sale", data={**sale, "qty.soap": typed}, headers=SAME
        )
        assert r.status_code == 422, (typed, r.status_code)
    assert await balance(client, "m0") == before
    r = await browser_client.post("/app/till/sale", data={**sale, "qty.soap": " 2 "}, headers=SAME)
    assert (r.status_code, r.headers["location"]) == (303, "/app/till/receipts/till-q")
    back = {"csrf": csrf, "op_id": "back-q"}
    for typed in ("-1", "1_0", "１", "+1"):
        r = await browser_client.post(
            "/app/till/receipts/till-q/return", data={**back, "qty.soap": typed}, headers=SAME
        )
        assert r.status_code == 422, (typed, r.status_code)
    receipt = (await client.get(f"{C}/redemptions/till-q")).json()
    assert receipt["points"] == 10 and receipt["returned_points"] == 0
