"""`POST …/rules/simulate` with `replay`: the recorded events of a range re-evaluated
under a draft, per member, writing nothing (SPEC section 14)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from service.rules import replay as replay_module
from service.rules.deadline import Deadline
from service.rules.model import parse_rule_set, to_document
from tests.api.test_rules import SCHEME, event, publish
from tests.helpers import C, Client, balance, bearer, community

SIMULATE = f"{C}/rules/simulate"
NOVEMBER = {"from": "2026-11-01T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00"}
ON_TIME = "award: 20\n    cap: {period: month, max: 20}"
LATE_FEE = (
    "  - id: late-fee\n    on: fee.paid\n    when: event.days_late > 0\n"
    "    deduct: 5\n    reason: 逾期缴费\n"
)
# Doubles the on-time award (and its cap), triples the flying-lead deduction and
# adds a deduction for late fees.
DRAFT_YAML = (
    SCHEME.replace(ON_TIME, ON_TIME.replace("20", "40"))
    .replace("deduct: 10", "deduct: 30")
    .replace("  - id: volunteer-points", LATE_FEE + "  - id: volunteer-points")
)


def _draft(text: str = DRAFT_YAML) -> dict[str, Any]:
    """A draft as the simulate body carries it: a rule-set document in JSON."""
    return to_document(parse_rule_set(text.encode(), "application/yaml"))


async def _recorded(client: Client) -> None:
    """Community green (m0, m1, m2 at 100) under SPEC section 5's scheme, with events
    in October, November and December (Shanghai time)."""
    await community(client, members=3)
    await publish(client)
    events = [
        event("e1", "fee.paid", "m0", "2026-11-05T09:00:00+08:00", days_late=0),  # +20
        event("e2", "fee.paid", "m0", "2026-11-06T09:00:00+08:00", days_late=0),  # cap: 0
        event("e3", "fee.paid", "m1", "2026-11-05T10:00:00+08:00", days_late=3),  # 0
        event(
            "e4",
            "compact.violation",
            "m1",
            "2026-11-07T10:00:00+08:00",
            kind="flying_lead_charging",
        ),  # -10
        event("e5", "volunteer.approved", "m2", "2026-11-08T10:00:00+08:00", minutes=120),  # +20
        # Outside November in Shanghai: 16:00 UTC on 31 October is 1 November there,
        # 16:00 UTC on 30 November is already December.
        event("o1", "fee.paid", "m2", "2026-10-31T15:59:59Z", days_late=0),  # +20, October
        event("o2", "fee.paid", "m1", "2026-11-30T16:00:00Z", days_late=0),  # +20, December
    ]
    r = await client.post(f"{C}/events:batch", json={"events": events})
    assert r.status_code == 200, r.text
    assert [item["status"] for item in r.json()["results"]] == [201] * len(events)


async def _state(client: Client, dsn: str) -> dict[str, Any]:
    """What a replay must not change: balances, and every table rules write."""
    conn = await asyncpg.connect(dsn)
    try:
        counts = {
            table: await conn.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("transactions", "entries", "events", "lots", "outbox_events")
        }
        usage = await conn.fetch("SELECT * FROM rule_usage ORDER BY 1, 2, 3, 4")
        stats = await conn.fetch("SELECT * FROM member_stats ORDER BY 1, 2, 3")
    finally:
        await conn.close()
    balances = {m: (await balance(client, m))["points"] for m in ("m0", "m1", "m2")}
    return {"counts": counts, "usage": usage, "stats": stats, "balances": balances}


def _members(body: dict[str, Any]) -> dict[str, tuple[int, int, int, int]]:
    return {
        m["member"]: (m["events"], m["posted"], m["simulated"], m["difference"])
        for m in body["members"]
    }


async def test_replaying_the_active_set_changes_nothing(client: Client, dsn: str) -> None:
    await _recorded(client)
    before = await _state(client, dsn)
    r = await client.post(SIMULATE, json={"replay": NOVEMBER})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["from"], body["to"]) == (NOVEMBER["from"], NOVEMBER["to"])
    assert body["rule_version"] == 1 and body["events"] == 5
    assert _members(body) == {
        "m0": (2, 20, 20, 0),
        "m1": (2, -10, -10, 0),
        "m2": (1, 20, 20, 0),
    }
    assert [m["member"] for m in body["members"]] == ["m0", "m1", "m2"]  # all 0: by id
    assert body["totals"] == {
        "posted": 30,
        "reversed": 0,
        "simulated": 30,
        "difference": 0,
        "gained": 0,
        "lost": 0,
    }
    assert await _state(client, dsn) == before


async def test_a_draft_shows_who_gains_and_loses(client: Client, dsn: str) -> None:
    await _recorded(client)
    before = await _state(client, dsn)
    draft = _draft()
    r = await client.post(SIMULATE, json={"replay": NOVEMBER, "rules": draft})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rule_version"] is None and body["events"] == 5
    # m1: -5 (late) then -30 (flying lead) instead of -10; m0: +40 (the second
    # fee of the month capped) instead of +20; m2 unchanged.
    assert [(m["member"], m["difference"]) for m in body["members"]] == [
        ("m1", -25),
        ("m0", 20),
        ("m2", 0),
    ]
    assert _members(body)["m1"] == (2, -10, -35, -25)
    assert _members(body)["m0"] == (2, 20, 40, 20)
    assert body["totals"] == {
        "posted": 30,
        "reversed": 0,
        "simulated": 25,
        "difference": -5,
        "gained": 1,
        "lost": 1,
    }
    assert await _state(client, dsn) == before


async def test_the_floor_applies_to_the_score_at_the_time(client: Client, dsn: str) -> None:
    await _recorded(client)
    # m1 stood at 100 when its flying-lead event was recorded; -5 first in the replay.
    draft = _draft(DRAFT_YAML.replace("deduct: 30", "deduct: 500"))
    r = await client.post(SIMULATE, json={"replay": NOVEMBER, "rules": draft})
    assert r.status_code == 200, r.text
    assert _members(r.json())["m1"] == (2, -10, -100, -90)


async def test_the_range_selects_events_by_occurred_at(client: Client) -> None:
    await _recorded(client)
    october = {"from": "2026-10-01T00:00:00+08:00", "to": "2026-11-01T00:00:00+08:00"}
    r = await client.post(SIMULATE, json={"replay": october})
    assert r.status_code == 200, r.text
    assert r.json()["events"] == 1 and _members(r.json()) == {"m2": (1, 20, 20, 0)}
    december = {"from": "2026-12-01T00:00:00+08:00", "to": "2027-01-01T00:00:00+08:00"}
    r = await client.post(SIMULATE, json={"replay": december})
    assert _members(r.json()) == {"m1": (1, 20, 20, 0)}
    empty = {"from": "2025-01-01T00:00:00Z", "to": "2025-06-01T00:00:00Z"}
    r = await client.post(SIMULATE, json={"replay": empty})
    assert r.status_code == 200, r.text
    assert r.json()["events"] == 0 and r.json()["members"] == []
    assert r.json()["totals"]["posted"] == 0


async def test_reversed_postings_are_posted_and_reversed(client: Client) -> None:
    await _recorded(client)
    r = await client.post(f"{C}/transactions/event:e1:fee-on-time/reverse")
    assert r.status_code == 201, r.text
    r = await client.post(SIMULATE, json={"replay": NOVEMBER})
    assert r.status_code == 200, r.text
    m0 = next(m for m in r.json()["members"] if m["member"] == "m0")
    # Posted when recorded, taken back since; the cap it used is freed in the
    # ledger, but the replay re-evaluates e1 itself, so e2 is still capped.
    assert (m0["posted"], m0["reversed"], m0["simulated"], m0["difference"]) == (20, -20, 20, 0)
    assert r.json()["totals"]["reversed"] == -20


async def test_refusals_are_422_and_write_nothing(client: Client, dsn: str) -> None:
    await _recorded(client)
    before = await _state(client, dsn)
    one = [event("s1", "fee.paid", days_late=0)]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"events": one, "replay": NOVEMBER}, "exactly one of `events` and `replay`"),
        ({}, "exactly one of `events` and `replay`"),
        ({"rules": _draft()}, "exactly one of `events` and `replay`"),
        ({"replay": {"from": NOVEMBER["to"], "to": NOVEMBER["from"]}}, "before replay.to"),
        ({"replay": {"from": NOVEMBER["from"], "to": NOVEMBER["from"]}}, "before replay.to"),
        (
            {"replay": {"from": "2026-01-01T00:00:00Z", "to": "2027-01-03T00:00:00Z"}},
            "at most 366 days",
        ),
        ({"replay": {"from": "2026-11-01T00:00:00", "to": NOVEMBER["to"]}}, "UTC offset"),
        ({"replay": {"from": NOVEMBER["from"]}}, "to"),
    ]
    for payload, detail in cases:
        r = await client.post(SIMULATE, json=payload)
        assert r.status_code == 422, (payload, r.text)
        assert r.json()["code"] == "validation_error" and detail in r.json()["detail"], r.text
    # A year and a day is allowed (366 days).
    leap = {"from": "2026-01-01T00:00:00Z", "to": "2027-01-02T00:00:00Z"}
    assert (await client.post(SIMULATE, json={"replay": leap})).status_code == 200
    # A bad draft is refused naming the rule, as `PUT …/rules` does.
    draft = _draft()
    for rule in draft["rules"]:
        if rule["id"] == "flying-lead":
            rule["award"] = 5  # it deducts and awards
    r = await client.post(SIMULATE, json={"replay": NOVEMBER, "rules": draft})
    assert r.status_code == 422 and "flying-lead" in r.json()["detail"], r.text
    assert await _state(client, dsn) == before


async def test_too_many_events_or_too_long_is_422(
    client: Client, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _recorded(client)
    before = await _state(client, dsn)
    monkeypatch.setattr(replay_module, "MAX_REPLAY_EVENTS", 4)
    r = await client.post(SIMULATE, json={"replay": NOVEMBER})
    assert r.status_code == 422 and "at most 4 events" in r.json()["detail"], r.text
    monkeypatch.setattr(replay_module, "MAX_REPLAY_EVENTS", 5)
    assert (await client.post(SIMULATE, json={"replay": NOVEMBER})).status_code == 200
    monkeypatch.setattr(replay_module, "Deadline", lambda: Deadline(limit_s=-1.0))
    r = await client.post(SIMULATE, json={"replay": NOVEMBER})
    assert r.status_code == 422 and "took longer than" in r.json()["detail"], r.text
    assert await _state(client, dsn) == before


async def test_operators_of_the_community_only(client: Client) -> None:
    await _recorded(client)
    await client.post("/v1/communities", json={"id": "blue", "name": "Blue"})
    keys = {}
    for role, scope in (
        ("operator", {"community": "green"}),
        ("operator_blue", {"community": "blue"}),
        ("resident", {"community": "green", "member": "m0"}),
        ("volunteer_app", {"community": "green"}),
    ):
        r = await client.post("/v1/api-keys", json={"role": role.removesuffix("_blue"), **scope})
        assert r.status_code == 201, r.text
        keys[role] = bearer(r.json()["key"])
    body = {"replay": NOVEMBER}
    r = await client.post(SIMULATE, json=body, headers=keys["operator"])
    assert r.status_code == 200 and r.json()["events"] == 5, r.text
    for role in ("operator_blue", "resident", "volunteer_app"):
        r = await client.post(SIMULATE, json=body, headers=keys[role])
        assert r.status_code == 403 and r.json()["code"] == "forbidden", (role, r.text)
    r = await client.post(
        "/v1/communities/blue/rules/simulate", json=body, headers=keys["operator"]
    )
    assert r.status_code == 403, r.text
    r = await client.post("/v1/communities/blue/rules/simulate", json=body)  # admin
    assert r.status_code == 200 and r.json()["events"] == 0, r.text
    r = await client.post("/v1/communities/nowhere/rules/simulate", json=body)
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
