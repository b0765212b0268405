"""Bad bytes are a 4xx problem with a stable code, at once, and change nothing.

Issue 12, finding 5: invalid UTF-8 inside a JSON body, JSON nested a thousand deep,
a YAML rule set with invalid UTF-8 or control characters, and YAML nested 50,000
deep were all 500s. Each case here goes to the real app and must come back as a 4xx
`application/problem+json` with a `code`, quickly, with the member's balance, the
audit's count of checked transactions and the rule-set versions as they were.

Requests go as raw ASGI calls (`send`) because an HTTP client re-encodes what it is
given (httpx turns a 0xff header byte into UTF-8 and percent-encodes raw bytes in a
URL), while an ASGI server passes on what the socket carried. They run on the test
client's event loop (its blocking portal), where the app's pool lives.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import ADMIN_KEY, C, Client, award, balance, community, transfer

# The documented bound (docs/api.md): arrays and objects, counting the outermost.
DEPTH = 64
AUTH = (b"authorization", f"Bearer {ADMIN_KEY}".encode())
YAML = (b"content-type", b"application/yaml")
Header = tuple[bytes, bytes]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    seconds: float

    def problem(self) -> dict[str, Any]:
        content_type = self.headers.get(b"content-type", b"")
        assert content_type.startswith(b"application/problem+json"), self
        document: dict[str, Any] = json.loads(self.body)
        assert isinstance(document.get("code"), str), document
        assert document["status"] == self.status, document
        return document


def send(
    client: Client,
    method: str,
    target: bytes,
    *,
    headers: Sequence[Header] = (AUTH,),
    body: bytes = b"",
) -> Answer:
    """One request as an ASGI server hands it over: `target` is the raw request
    target, its path percent-decoded the way uvicorn does it (`unquote`, so
    invalid UTF-8 becomes U+FFFD and %00 a NUL), its query string left as bytes."""
    raw_path, _, query = target.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    answer: dict[str, Any] = {"chunks": []}

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def reply(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"], answer["headers"] = message["status"], dict(message["headers"])
        elif message["type"] == "http.response.body":
            answer["chunks"].append(message.get("body", b""))

    started = time.perf_counter()
    client.blocking_portal.call(client.app, scope, receive, reply)
    elapsed = time.perf_counter() - started
    return Answer(answer["status"], answer["headers"], b"".join(answer["chunks"]), elapsed)


def refused(answer: Answer, status: int = 422, says: str = "") -> dict[str, Any]:
    """The answer is the expected problem, naming the fault, and came at once."""
    assert answer.status == status, answer
    problem = answer.problem()
    assert problem["code"] == {401: "unauthorized", 404: "not_found"}.get(
        status, "validation_error"
    ), problem
    assert says.lower() in problem["detail"].lower(), problem
    assert answer.seconds < 0.5, answer.seconds
    return problem


async def state(client: Client) -> tuple[int, int, int]:
    """What a refused request must leave as it was: m0's score, the number of
    transactions the audit checks, and the number of rule-set versions."""
    score: int = (await balance(client, "m0"))["points"]["score"]
    checked: int = (await client.get(f"{C}/audit/verify")).json()["checked"]
    versions = len((await client.get(f"{C}/rules/versions")).json())
    return score, checked, versions


async def ready(client: Client) -> tuple[int, int, int]:
    await community(client)
    await award(client, "a1", "m0", 25)
    return await state(client)


# Every route that reads a body, each through `deps.body` (PUT rules through
# `parse_rule_set`). Ids other than the community need not exist: the body is
# validated before anything it names is looked up.
BODY_ROUTES = [
    ("POST", "/v1/communities"),
    ("POST", f"{C}/households"),
    ("POST", f"{C}/members"),
    ("PATCH", f"{C}/members/m0"),
    ("POST", f"{C}/transactions"),
    ("POST", f"{C}/transactions:batch"),
    ("POST", f"{C}/transactions/a1/post"),
    ("PUT", f"{C}/rules"),
    ("POST", f"{C}/rules/simulate"),
    ("POST", f"{C}/events"),
    ("POST", f"{C}/events:batch"),
    ("POST", "/v1/api-keys"),
    ("POST", f"{C}/offsets/quote"),
    ("POST", f"{C}/offsets"),
    ("PUT", f"{C}/stores/s1/items/soap"),
    ("POST", f"{C}/redemptions"),
    ("POST", f"{C}/redemptions/r1/return"),
    ("POST", f"{C}/volunteer-hours"),
    ("POST", f"{C}/time-transfers"),
    ("POST", f"{C}/conversions"),
    ("POST", f"{C}/members/m0/spend-codes"),
    ("PUT", f"{C}/members/m0/pin"),
    ("PUT", f"{C}/members/m0/mandates/acme"),
    ("PUT", f"{C}/members/m0/proxies/m1"),
]


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


BAD_JSON = {
    "latin-1 byte in a string": (b'{"id":"caf\xe9"}', "UTF-8"),
    "overlong encoding": (b'{"id":"\xc0\xaf"}', "UTF-8"),
    "encoded surrogate": (b'{"id":"\xed\xa0\x80"}', "UTF-8"),
    "truncated sequence": (b'{"id":"\xe4\xb8"}', "UTF-8"),
    "byte outside a string": (b'{"id":\xff}', "UTF-8"),
    "a thousand deep": (b'{"metadata":' + nested(1000) + b"}", f"deeper than {DEPTH}"),
    "one level too deep": (nested(DEPTH + 1), f"deeper than {DEPTH}"),
    "50,000 opened": (b"[" * 50_000, f"deeper than {DEPTH}"),
    "deep inside strings' neighbours": (b'["\\"[", ' * 40 + nested(DEPTH), f"deeper than {DEPTH}"),
}


@pytest.mark.parametrize("case", BAD_JSON)
async def test_every_json_body_refuses_bad_bytes(client: Client, case: str) -> None:
    before = await ready(client)
    raw, says = BAD_JSON[case]
    for method, path in BODY_ROUTES:
        refused(send(client, method, path.encode(), body=raw), says=says)
    assert await state(client) == before


def batch_item(memo: bytes) -> bytes:
    item = json.dumps(transfer("b1", "system:issuance:points", "member:m0:points", 5)).encode()
    return item[:-1] + b', "memo": "' + memo + b'"}'


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        (f"{C}/transactions:batch", b'{"transactions":[' + batch_item(b"caf\xe9") + b"]}"),
        (f"{C}/events:batch", b'{"events":[{"id":"e1","type":"fee.paid","member":"\xff"}]}'),
        (f"{C}/transactions:batch", b'{"transactions":[' + nested(2000) + b"]}"),
        (f"{C}/events:batch", b'{"events":[' + nested(2000) + b"]}"),
    ],
)
async def test_batch_items_are_checked_with_the_batch(
    client: Client, path: str, raw: bytes
) -> None:
    """A batch's items are decoded one by one after the batch (as `msgspec.Raw`,
    which skips over bytes unchecked): the whole body is checked first."""
    before = await ready(client)
    refused(send(client, "POST", path.encode(), body=raw))
    assert await state(client) == before


async def test_nesting_up_to_the_bound_is_accepted(client: Client) -> None:
    """The body object, `metadata` and 62 arrays are 64 levels: accepted; one more
    is refused. Brackets inside strings, escaped quotes and all, do not count."""
    await ready(client)
    body = transfer("deep", "system:issuance:points", "member:m0:points", 5)
    body["metadata"] = {"a": json.loads(nested(DEPTH - 2))}
    body["memo"] = '\\"[' * 150
    r = await client.post(f"{C}/transactions", content=json.dumps(body).encode())
    assert r.status_code == 201, r.text
    before = await state(client)
    body["id"], body["metadata"] = "deeper", {"a": json.loads(nested(DEPTH - 1))}
    raw = json.dumps(body).encode()
    refused(send(client, "POST", f"{C}/transactions".encode(), body=raw), says="deeper than")
    assert await state(client) == before


def yaml_reason(escaped: str) -> bytes:
    rule = f'  - id: r1\n    on: fee.paid\n    award: 5\n    reason: "{escaped}"\n'
    return f"rules:\n{rule}".encode()


def yaml_mappings(levels: int) -> bytes:
    return "".join("  " * i + "a:\n" for i in range(levels)).encode()


BAD_RULE_SETS: dict[str, tuple[Sequence[Header], bytes, str]] = {
    "JSON, latin-1 byte": ((), b'{"rules":[{"id":"caf\xe9"}]}', "UTF-8"),
    "JSON, 5,000 deep": ((), nested(5000), f"deeper than {DEPTH}"),
    "JSON, NUL escape": ((), b'{"rules":[],"\\u0000":1}', "NUL"),
    "YAML, latin-1 byte": ((YAML,), b"baseline: caf\xe9\n", "UTF-8"),
    "YAML, UTF-16": ((YAML,), "baseline: 5\n".encode("utf-16"), "UTF-8"),
    "YAML, control character": ((YAML,), b"baseline: 1\x01\n", "U+0001"),
    "YAML, NUL byte": ((YAML,), b"baseline: 1\x00\n", "U+0000"),
    "YAML, DEL": ((YAML,), b"baseline: 1\x7f\n", "U+007F"),
    "YAML, NUL escape": ((YAML,), yaml_reason("a\\0b"), "NUL"),
    "YAML, surrogate escape": ((YAML,), yaml_reason("a\\udc00b"), "surrogate"),
    "YAML, 50,000 flow sequences": ((YAML,), nested(50_000), f"deeper than {DEPTH}"),
    "YAML, 50,000 block sequences": ((YAML,), b"- " * 50_000 + b"1\n", f"deeper than {DEPTH}"),
    "YAML, 50,000 flow mappings": (
        (YAML,),
        b"{a: " * 50_000 + b"}" * 50_000,
        f"deeper than {DEPTH}",
    ),
    "YAML, 400 block mappings": ((YAML,), yaml_mappings(400), f"deeper than {DEPTH}"),
}


@pytest.mark.parametrize("case", BAD_RULE_SETS)
async def test_rule_sets_refuse_bad_bytes(client: Client, case: str) -> None:
    before = await ready(client)
    headers, raw, says = BAD_RULE_SETS[case]
    refused(
        send(client, "PUT", f"{C}/rules".encode(), headers=(AUTH, *headers), body=raw), says=says
    )
    assert await state(client) == before


async def test_yaml_nesting_up_to_the_bound_is_parsed(client: Client) -> None:
    """64 levels of YAML reach the rule-set checks (and fail there: a rule set is a
    mapping); 65 do not get that far."""
    await ready(client)
    for levels, says in ((DEPTH, "expected `object`"), (DEPTH + 1, f"deeper than {DEPTH}")):
        raw = b"- " * levels + b"1\n"
        answer = send(client, "PUT", f"{C}/rules".encode(), headers=(AUTH, YAML), body=raw)
        refused(answer, says=says)


STATEMENT = f"{C}/members/m0/statement"
ODD: dict[str, tuple[str, bytes, Sequence[Header], bytes, int, str]] = {
    "query %ff": ("GET", f"{STATEMENT}?from=%ff".encode(), (AUTH,), b"", 422, "from"),
    "query %00": ("GET", f"{STATEMENT}?from=%00".encode(), (AUTH,), b"", 422, "from"),
    "query raw 0xff": ("GET", f"{STATEMENT}?from=".encode() + b"\xff", (AUTH,), b"", 422, "from"),
    "query cursor %ff": ("GET", f"{STATEMENT}?cursor=%ff%fe".encode(), (AUTH,), b"", 422, "cursor"),
    "query cursor %00": (
        "GET",
        f"{C}/accounts/member:m0:points/entries?cursor=%00".encode(),
        (AUTH,),
        b"",
        422,
        "cursor",
    ),
    "query period %00": (
        "GET",
        f"{C}/reports/leaderboard?period=%00".encode(),
        (AUTH,),
        b"",
        422,
        "period",
    ),
    "query name %ff": ("GET", f"{STATEMENT}?%ff=%00".encode(), (AUTH,), b"", 200, ""),
    "path %ff": ("GET", f"{C}/members/%ff".encode(), (AUTH,), b"", 404, ""),
    "path %00": ("GET", f"{C}/members/m%000".encode(), (AUTH,), b"", 422, ""),
    "path garbage": ("GET", f"{C}/transactions/%ff%00%zz".encode(), (AUTH,), b"", 422, ""),
    "account %ff": ("GET", f"{C}/accounts/%ff".encode(), (AUTH,), b"", 422, "address"),
    "community %ff": ("GET", b"/v1/communities/%ff", (AUTH,), b"", 422, "community id"),
    "community %00": ("GET", b"/v1/communities/green%00", (AUTH,), b"", 422, "community id"),
    "x-request-id bytes": (
        "GET",
        f"{C}/members/m0".encode(),
        (AUTH, (b"x-request-id", b"\xff\x00\x01")),
        b"",
        200,
        "",
    ),
    "accept bytes": (
        "GET",
        f"{C}/members/m0".encode(),
        (AUTH, (b"accept", b"\xff\xfe")),
        b"",
        200,
        "",
    ),
    "cookie bytes": (
        "GET",
        f"{C}/members/m0".encode(),
        (AUTH, (b"cookie", b"a=\xff;;")),
        b"",
        200,
        "",
    ),
    "authorization latin-1": (
        "GET",
        f"{C}/members/m0".encode(),
        ((b"authorization", b"Bearer \xff\xfe\xe9"),),
        b"",
        401,
        "",
    ),
    "authorization scheme bytes": (
        "GET",
        f"{C}/members/m0".encode(),
        ((b"authorization", b"B\xe9arer x"),),
        b"",
        401,
        "bearer",
    ),
    "authorization NUL in key id": (
        "GET",
        f"{C}/members/m0".encode(),
        ((b"authorization", b"Bearer plk_a\x00b_secret"),),
        b"",
        401,
        "not valid",
    ),
    "authorization long key id": (
        "GET",
        f"{C}/members/m0".encode(),
        ((b"authorization", b"Bearer plk_" + b"a" * 5000 + b"_secret"),),
        b"",
        401,
        "not valid",
    ),
    "content-type bytes": (
        "POST",
        f"{C}/transactions".encode(),
        (AUTH, (b"content-type", b"\xff;;=\x00")),
        b'{"id":',
        422,
        "not valid JSON",
    ),
    "content-type bytes, rules": (
        "PUT",
        f"{C}/rules".encode(),
        (AUTH, (b"content-type", b"\xff;;=\x00")),
        b"{}",
        422,
        "application/yaml",
    ),
    "content-type charset utf-16": (
        "PUT",
        f"{C}/rules".encode(),
        (AUTH, (b"content-type", b"application/yaml; charset=utf-16")),
        "baseline: 5\n".encode("utf-16"),
        422,
        "UTF-8",
    ),
    "content-length garbage": (
        "POST",
        f"{C}/transactions".encode(),
        (AUTH, (b"content-length", b"\xff1")),
        b"{}",
        400,
        "content-length",
    ),
}


@pytest.mark.parametrize("case", ODD)
async def test_odd_bytes_outside_the_body(client: Client, case: str) -> None:
    """Queries, paths and headers: each answer below 500, each 4xx a problem."""
    before = await ready(client)
    method, target, headers, raw, status, says = ODD[case]
    answer = send(client, method, target, headers=headers, body=raw)
    if status < 400:
        assert answer.status == status, answer
        assert b"x-request-id" in answer.headers
    else:
        refused(answer, status=status, says=says)
    assert await state(client) == before


FUZZ_ROUTES: list[tuple[str, str, Sequence[Header]]] = [
    ("POST", f"{C}/transactions", (AUTH,)),
    ("POST", f"{C}/transactions:batch", (AUTH,)),
    ("POST", f"{C}/events", (AUTH,)),
    ("POST", f"{C}/events:batch", (AUTH,)),
    ("POST", f"{C}/members", (AUTH,)),
    ("PUT", f"{C}/rules", (AUTH,)),
    ("PUT", f"{C}/rules", (AUTH, YAML)),
    ("POST", f"{C}/rules/simulate", (AUTH,)),
    ("POST", f"{C}/offsets", (AUTH,)),
    ("POST", f"{C}/volunteer-hours", (AUTH,)),
]
# Random bytes, alone or after a start that gets past the first byte of a decoder.
STARTS = [b"", b"[" * 70, b"{" * 100, b'{"id":"fz","postings":[{', b'{"events":[', b"- " * 80]
BODIES = st.one_of(
    st.binary(max_size=1024),
    st.tuples(st.sampled_from(STARTS), st.binary(max_size=256)).map(b"".join),
)


async def test_random_bytes_are_refused_and_change_nothing(client: Client) -> None:
    before = await ready(client)

    @settings(
        max_examples=200,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(route=st.sampled_from(FUZZ_ROUTES), raw=BODIES)
    def random_body(route: tuple[str, str, Sequence[Header]], raw: bytes) -> None:
        method, path, headers = route
        answer = send(client, method, path.encode(), headers=headers, body=raw)
        assert 400 <= answer.status < 500, (route, raw, answer)
        answer.problem()

    random_body()
    assert await state(client) == before
