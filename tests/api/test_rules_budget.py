"""The expression budget through the API: costly rules and heavy attributes are 422s
that name what to change, and answer at once (issue 12)."""

from __future__ import annotations

import json
import time

from tests.api.test_rules import YAML, event, publish
from tests.helpers import C, Client, balance, community
from tests.unit.test_rules_cost import nested


def bomb_rule_set(levels: int) -> str:
    """A valid rule set whose second rule's `when` nests `levels` comprehensions."""
    return (
        "rules:\n"
        "  - {id: fine, on: fee.paid, award: 1, reason: ok}\n"
        f"  - id: bomb\n    on: fee.paid\n    when: {json.dumps(nested(levels))}\n"
        "    award: 5\n    reason: boom\n"
    )


async def test_publishing_the_seven_level_bomb_is_a_fast_422_naming_rule_and_field(
    client: Client,
) -> None:
    await community(client)
    started = time.perf_counter()
    r = await client.put(f"{C}/rules", content=bomb_rule_set(7).encode(), headers=YAML)
    assert time.perf_counter() - started < 1.0
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "validation_error"
    assert problem["detail"].startswith("rules[1] (bomb).when: comprehensions")
    assert "nest at most 2 deep" in problem["detail"] and "(line 5)" in problem["detail"]
    assert (await client.get(f"{C}/rules")).json()["version"] == 0


async def test_simulating_an_eight_level_draft_is_a_fast_422(client: Client) -> None:
    await community(client)
    draft = {"rules": [{"id": "bomb", "on": "fee.paid", "when": nested(8), "award": 5,
                        "reason": "boom"}]}  # fmt: skip
    started = time.perf_counter()
    r = await client.post(
        f"{C}/rules/simulate", json={"events": [event("s1", "fee.paid")], "rules": draft}
    )
    assert time.perf_counter() - started < 1.0
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
    assert r.json()["detail"].startswith("rules[0] (bomb).when: comprehensions (all, exists")


async def test_a_rule_set_over_the_total_names_the_rule_where_it_passes(client: Client) -> None:
    await community(client)
    costly = "(" + " + ".join(["event.xs"] * 8) + ").exists(x, x < 0)"
    rules = [{"id": f"r{i}", "on": "t", "when": costly, "award": 1, "reason": "r"}
             for i in range(100)]  # fmt: skip
    r = await client.put(f"{C}/rules", json={"rules": rules})
    assert r.status_code == 422, r.text
    assert "the expressions up to this rule may cost" in r.json()["detail"]
    assert r.json()["detail"].startswith("rules[")


async def test_an_attribute_list_of_ten_thousand_is_a_422_alone_in_a_batch_and_simulated(
    client: Client,
) -> None:
    await community(client)
    await publish(client)
    heavy = event("big", "fee.paid", days_late=0, xs=list(range(10_000)))
    r = await client.post(f"{C}/events", json=heavy)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
    assert r.json()["detail"] == "event 'big': attribute 'xs': a list has at most 100 elements"
    good = event("ok", "fee.paid", days_late=0, xs=list(range(100)))
    r = await client.post(f"{C}/events:batch", json={"events": [heavy, good]})
    assert [item["status"] for item in r.json()["results"]] == [422, 201]
    assert "'xs': a list has at most 100" in r.json()["results"][0]["problem"]["detail"]
    r = await client.post(f"{C}/rules/simulate", json={"events": [good, heavy]})
    assert r.status_code == 422 and "event 'big': attribute 'xs'" in r.json()["detail"]
    assert (await balance(client, "m0"))["points"]["score"] == 120
