"""Rule sets through the API: publish, feed events, read the explanation back."""

from __future__ import annotations

from typing import Any

import asyncpg

from service.rules.defaults import EXAMPLE_YAML
from tests.helpers import C, Client, balance, community

SCHEME = EXAMPLE_YAML  # SPEC section 5, as the service ships it
YAML = {"Content-Type": "application/yaml"}


async def publish(client: Client, text: str = SCHEME) -> int:
    r = await client.put(f"{C}/rules", content=text.encode(), headers=YAML)
    assert r.status_code == 201, r.text
    version: int = r.json()["version"]
    return version


def event(
    ident: str,
    event_type: str,
    member: str = "m0",
    at: str = "2026-11-20T10:00:00+08:00",
    **attributes: Any,
) -> dict[str, Any]:
    return {
        "id": ident,
        "type": event_type,
        "member": member,
        "occurred_at": at,
        "attributes": attributes,
    }


async def test_publish_read_and_versions(client: Client) -> None:
    await community(client)
    assert (await client.get(f"{C}/rules")).json()["version"] == 0
    assert await publish(client) == 1
    assert await publish(client, SCHEME.replace("baseline: 100", "baseline: 120")) == 2
    active = (await client.get(f"{C}/rules")).json()
    assert active["version"] == 2 and active["document"]["baseline"] == 120
    assert [v["version"] for v in (await client.get(f"{C}/rules/versions")).json()] == [1, 2]
    # The baseline moved; the score did not.
    assert (await balance(client, "m0"))["points"] == {
        "score": 100,
        "held": 0,
        "baseline": 120,
        "redeemable": 0,
        "expiring": [],
    }


async def test_invalid_rule_set_is_422_naming_the_rule(client: Client) -> None:
    await community(client)
    bad = SCHEME.replace("deduct: 10", "deduct: 10\n    award: 5")
    r = await client.put(f"{C}/rules", content=bad.encode(), headers=YAML)
    assert r.status_code == 422 and "flying-lead" in r.json()["detail"]
    assert (await client.get(f"{C}/rules")).json()["version"] == 0


async def test_events_award_cap_and_deduct_with_explanations(client: Client) -> None:
    await community(client)
    await publish(client)
    r = await client.post(f"{C}/events", json=event("e1", "fee.paid", days_late=0))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["decisions"][0]["applied"] == 20
    assert body["transactions"][0]["rule_id"] == "fee-on-time"
    r = await client.post(f"{C}/events", json=event("e2", "fee.paid", days_late=0))
    assert r.json()["decisions"][0]["skipped"] == "cap_reached"
    assert r.json()["transactions"] == []
    # December in Shanghai starts at 16:00 UTC on 30 November: a new cap period.
    r = await client.post(
        f"{C}/events", json=event("e3", "fee.paid", at="2026-11-30T16:30:00Z", days_late=0)
    )
    assert r.json()["decisions"][0]["applied"] == 20
    r = await client.post(
        f"{C}/events", json=event("e4", "compact.violation", kind="flying_lead_charging")
    )
    assert r.json()["decisions"][0]["applied"] == 10
    assert (await balance(client, "m0"))["points"]["score"] == 130
    statement = (await client.get(f"{C}/members/m0/statement")).json()["entries"]
    assert statement[0]["rule_id"] == "flying-lead" and statement[0]["reason"] == "飞线充电"
    assert statement[0]["event_id"] == "e4" and statement[0]["rule_version"] == 1
    replay = await client.post(
        f"{C}/events", json=event("e4", "compact.violation", kind="flying_lead_charging")
    )
    assert replay.status_code == 200 and replay.json() == r.json()


async def test_deduction_clamps_at_the_floor(client: Client) -> None:
    await community(client)
    await publish(client, SCHEME.replace("deduct: 10", "deduct: 70"))
    for i in range(2):
        r = await client.post(
            f"{C}/events", json=event(f"v{i}", "compact.violation", kind="flying_lead_charging")
        )
        assert r.status_code == 201
    decision = r.json()["decisions"][0]
    assert decision["requested"] == 70 and decision["applied"] == 30
    assert r.json()["transactions"][0]["metadata"] == {"requested": 70, "applied": 30}
    assert (await balance(client, "m0"))["points"]["score"] == 0


async def test_unknown_member_and_bad_events(client: Client) -> None:
    await community(client)
    await publish(client)
    r = await client.post(f"{C}/events", json=event("e1", "fee.paid", member="ghost"))
    assert r.status_code == 404
    r = await client.post(f"{C}/events", json=event("e1", "fee.paid", at="2026-11-20T10:00:00"))
    assert r.status_code == 422
    r = await client.post(f"{C}/events", json=event("e1", "fee.paid", **{"type": "x"}))
    assert r.status_code == 422


async def test_batch_with_mixed_good_and_bad_events(client: Client) -> None:
    await community(client)
    await publish(client)
    events = [
        event("e1", "volunteer.approved", minutes=125),
        event("e2", "volunteer.approved", member="ghost", minutes=60),
        {"id": "e3", "type": "fee.paid"},
        event("e4", "fee.paid", days_late=3),
        event("e1", "volunteer.approved", minutes=125),
    ]
    r = await client.post(f"{C}/events:batch", json={"events": events})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 404, 422, 201, 200]
    assert results[0]["event"]["decisions"][0]["applied"] == 20
    assert results[3]["event"]["decisions"][0]["skipped"] == "condition_false"
    assert (await balance(client, "m0"))["points"]["score"] == 120


async def test_occurred_at_at_the_ends_of_the_calendar(client: Client) -> None:
    """Periods cannot be computed in local year 1 or 9999: a new event there is 422;
    an existing id with another body stays 409, alone or in a batch."""
    await community(client)
    await publish(client)
    first = await client.post(f"{C}/events", json=event("e1", "fee.paid", days_late=0))
    assert first.status_code == 201
    for at in ("9999-12-31T20:00:00+00:00", "0001-01-01T00:00:00+00:00"):
        r = await client.post(f"{C}/events", json=event("e1", "fee.paid", at=at, days_late=0))
        assert r.status_code == 409, at
        assert r.json()["code"] == "idempotency_conflict"
    batch = {
        "events": [
            event("e1", "fee.paid", days_late=0),
            event("e1", "fee.paid", at="0001-01-01T00:00:00+00:00"),
        ]
    }
    r = await client.post(f"{C}/events:batch", json=batch)
    assert r.status_code == 200
    assert [x["status"] for x in r.json()["results"]] == [200, 409]
    r = await client.post(
        f"{C}/events", json=event("e9", "fee.paid", at="9999-12-31T20:00:00+00:00")
    )
    assert r.status_code == 422
    again = await client.post(f"{C}/events", json=event("e9", "fee.paid", days_late=0))
    assert again.status_code == 201  # the refused one recorded nothing


async def test_event_ids_cannot_take_another_flows_transaction_id(client: Client) -> None:
    """An event's postings are `event:<event>:<rule>`: an event named `offset` and a
    rule named `o1` used to take `offset:o1`, and offset o1 was then refused."""
    await community(client)
    await publish(client, "rules:\n  - id: o1\n    on: x\n    award: 5\n    reason: r\n")
    posted = await client.post(f"{C}/events", json=event("offset", "x"))
    assert posted.status_code == 201
    assert posted.json()["decisions"][0]["transaction_id"] == "event:offset:o1"
    offset = {"id": "o1", "member": "m0", "household": "h0", "bill_amount_fen": 10_000,
              "points": 1}  # fmt: skip
    r = await client.post(f"{C}/offsets", json=offset)
    assert r.status_code == 201 and r.json()["transaction_id"] == "offset:o1"


async def test_rule_ids_the_service_derives_ids_from_are_refused(client: Client) -> None:
    await community(client)
    for word in ("expiry", "opening", "offset"):
        text = f"rules:\n  - id: ok\n    on: x\n    award: 1\n    reason: r\n" \
               f"  - id: {word}\n    every: month\n    award: 1\n    reason: r\n"  # fmt: skip
        r = await client.put(f"{C}/rules", content=text.encode(), headers=YAML)
        assert r.status_code == 422, word
        assert f"rules[1] ({word}).id: {word!r} is reserved" in r.json()["detail"]
    assert (await client.get(f"{C}/rules")).json()["version"] == 0


async def test_simulate_writes_nothing(client: Client) -> None:
    await community(client)
    await publish(client)
    events = [event(f"s{i}", "volunteer.approved", minutes=300) for i in range(3)]
    r = await client.post(f"{C}/rules/simulate", json={"events": events})
    assert r.status_code == 200, r.text
    assert [e["decisions"][0]["applied"] for e in r.json()] == [50, 50, 0]
    assert r.json()[2]["decisions"][0]["skipped"] == "cap_reached"
    draft = {"rules": [{"id": "x", "on": "volunteer.approved", "award": 7, "reason": "r"}]}
    r = await client.post(f"{C}/rules/simulate", json={"events": events[:1], "rules": draft})
    assert r.json()[0]["decisions"][0]["applied"] == 7
    assert (await balance(client, "m0"))["points"]["score"] == 100
    assert (await client.get(f"{C}/members/m0/statement")).json()["entries"][0]["kind"] == "opening"


async def test_simulate_refuses_occurred_at_at_the_ends_of_the_calendar(client: Client) -> None:
    """Found by the OpenAPI fuzz test: simulating an event in local year 1 or 9999
    was a 500 (the periods overflowed); it is a 422, as ingesting it is."""
    await community(client)
    await publish(client)
    for at in ("0001-01-01T00:00:00+23:59", "9999-06-01T00:00:00+00:00"):
        events = [event("s1", "fee.paid", days_late=0), event("s2", "fee.paid", at=at)]
        r = await client.post(f"{C}/rules/simulate", json={"events": events})
        assert r.status_code == 422, (at, r.text)
        assert r.json()["code"] == "validation_error" and "'s2'" in r.json()["detail"]
    r = await client.post(f"{C}/rules/simulate", json={"events": [event("s1", "fee.paid")]})
    assert r.status_code == 200, r.text


async def test_a_rule_set_cannot_start_at_the_ends_of_time(client: Client) -> None:
    """Found by the OpenAPI fuzz test: `effective_from=0001-01-01T00:00:00Z` was
    stored as -infinity and read back without an offset, and from then on every
    request that looked up the rules in force was a 500. It is a 422."""
    await community(client)
    for at in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "9999-06-01T00:00:00Z"):
        r = await client.put(
            f"{C}/rules", params={"effective_from": at}, content=SCHEME, headers=YAML
        )
        assert r.status_code == 422, (at, r.text)
        assert r.json()["code"] == "validation_error"
    assert (await client.get(f"{C}/rules")).json()["version"] == 0
    assert (await client.get(f"{C}/rules/versions")).json() == []
    r = await client.put(f"{C}/rules", params={"effective_from": "1990-01-01T00:00:00Z"}, json={})
    assert r.status_code == 201, r.text
    assert (await client.get(f"{C}/rules")).json()["version"] == 1


async def test_an_event_stores_its_record_and_a_replay_renders_the_answer_again(
    client: Client, pool: asyncpg.Pool
) -> None:
    """What an event stores for its replays is the domain's record (its decisions),
    not the HTTP answer: a replay renders the answer again from the record and the
    ledger's transactions, as they were created, even after one was reversed."""
    await community(client)
    await publish(client)
    first = await client.post(f"{C}/events", json=event("e1", "fee.paid", days_late=0))
    assert first.status_code == 201, first.text
    stored = await pool.fetchval("SELECT result FROM events WHERE community_id = 'green'")
    assert "transactions" not in stored and stored["decisions"][0]["applied"] == 20
    tx_id = first.json()["transactions"][0]["id"]
    assert (await client.post(f"{C}/transactions/{tx_id}/reverse")).status_code == 201
    replay = await client.post(f"{C}/events", json=event("e1", "fee.paid", days_late=0))
    assert replay.status_code == 200 and replay.json() == first.json()
