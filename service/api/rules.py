"""Rule sets and events: publish, read, simulate; feed events to the engine."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Response, get, post, put
from litestar.params import FromPath
from msgspec import Meta

from service.api.deps import (
    OPERATOR,
    InstantQuery,
    body,
    db,
    fingerprint,
    instant,
    principal_of,
    rules_of,
    written,
)
from service.api.openapi import json_body
from service.api.problems import domain_problem
from service.api.wire import ClientId, Strict
from service.errors import DomainError, ValidationFailed
from service.rules import limits
from service.rules import service as rules
from service.rules.deadline import Deadline
from service.rules.engine import EventInput, compile_rule_set
from service.rules.expressions import EVENT_RESERVED
from service.rules.model import (
    EVENT_TYPE_PATTERN,
    RuleSet,
    parse_rule_set,
    rule_set_from_builtins,
    to_document,
)
from service.rules.replay import Replay, replay
from service.rules.simulate import SimulatedEvent, simulate

Req = Request[Any, Any, Any]
EVENT_WRITERS: Final = frozenset({"operator", "volunteer_app"})
MAX_EVENTS = 1000


class EventIn(Strict):
    id: ClientId
    type: Annotated[str, Meta(pattern=EVENT_TYPE_PATTERN)]
    member: ClientId
    occurred_at: datetime
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)


class EventsIn(Strict):
    events: Annotated[list[msgspec.Raw], Meta(min_length=1, max_length=MAX_EVENTS)]


class EventsDoc(Strict):
    """`EventsIn` as the OpenAPI document shows it: each item is an `EventIn`."""

    events: Annotated[list[EventIn], Meta(min_length=1, max_length=MAX_EVENTS)]


class ReplayIn(Strict):
    """The recorded events to replay: those that occurred in `[from, to)`."""

    from_: datetime = msgspec.field(name="from")
    to: datetime


class SimulateIn(Strict):
    """Exactly one of `events` (simulate them) and `replay` (re-evaluate the recorded
    events of a range); `rules` is the draft, by default the version in force."""

    events: Annotated[list[EventIn], Meta(min_length=1, max_length=MAX_EVENTS)] | None = None
    replay: ReplayIn | None = None
    rules: dict[str, Any] | None = None


class EventItem(msgspec.Struct, kw_only=True):
    status: int
    event: rules.EventResult | None
    problem: dict[str, Any] | None


class RuleSetOut(msgspec.Struct, kw_only=True):
    version: int
    effective_from: datetime
    document: dict[str, Any]


def _event(data: EventIn) -> EventInput:
    if data.occurred_at.tzinfo is None:
        raise ValidationFailed("occurred_at needs a UTC offset, e.g. 2026-11-23T09:30:00+08:00")
    reserved = set(EVENT_RESERVED) & data.attributes.keys()
    if reserved:
        raise ValidationFailed(f"attributes may not be named {sorted(reserved)}")
    problem = limits.problem(data.attributes)
    if problem is not None:
        raise ValidationFailed(f"event {data.id!r}: {problem}")
    return EventInput(
        id=data.id,
        type=data.type,
        member_id=data.member,
        occurred_at=data.occurred_at,
        attributes=data.attributes,
    )


@put(
    "/v1/communities/{c:str}/rules",
    opt={"roles": OPERATOR},
    status_code=201,
    operation_class=json_body(RuleSet, also={"application/yaml": {"type": "string"}}),
)
async def publish_rules(
    request: Req, c: FromPath[str], effective_from: InstantQuery = None
) -> rules.Published:
    """Validates a rule set (JSON, or YAML with Content-Type: application/yaml),
    stores it as a new immutable version and puts it in force."""
    starts = instant(effective_from, "effective_from")
    raw = await request.body()
    rule_set = parse_rule_set(raw, request.headers.get("content-type", "application/json"))
    async with db(request) as conn:
        return await rules.publish(
            conn,
            rules_of(request),
            c,
            to_document(rule_set),
            raw.decode(),
            request.headers.get("content-type", "application/json"),
            starts,
            principal_of(request).key_id,
        )


@get("/v1/communities/{c:str}/rules", opt={"roles": OPERATOR})
async def active_rules(request: Req, c: FromPath[str]) -> RuleSetOut:
    async with db(request) as conn:
        active = await rules_of(request).active(conn, c)
    return RuleSetOut(
        version=active.version,
        effective_from=active.effective_from,
        document=to_document(active.rule_set),
    )


@get("/v1/communities/{c:str}/rules/versions", opt={"roles": OPERATOR})
async def rule_versions(request: Req, c: FromPath[str]) -> list[RuleSetOut]:
    async with db(request) as conn:
        versions = await rules_of(request).versions(conn, c)
    return [
        RuleSetOut(
            version=v.version, effective_from=v.effective_from, document=to_document(v.rule_set)
        )
        for v in versions
    ]


@post(
    "/v1/communities/{c:str}/rules/simulate",
    opt={"roles": OPERATOR},
    status_code=200,
    operation_class=json_body(SimulateIn),
)
async def simulate_rules(request: Req, c: FromPath[str]) -> list[SimulatedEvent] | Replay:
    """What the events would post under a draft (or the active) rule set, per event;
    or, with `replay`, what the recorded events of a range posted and would post, per
    member. Writes nothing."""
    data = await body(request, SimulateIn)
    if (data.events is None) == (data.replay is None):
        raise ValidationFailed("send exactly one of `events` and `replay`")
    draft = rule_set_from_builtins(data.rules) if data.rules is not None else None
    compiled = compile_rule_set(draft, 0) if draft is not None else None
    floor = draft.floor if draft is not None else None
    if data.replay is not None:
        start, end = data.replay.from_, data.replay.to
        async with db(request) as conn:
            return await replay(conn, rules_of(request), c, start, end, compiled, floor)
    events = [_event(e) for e in data.events or []]
    async with db(request) as conn:
        return await simulate(conn, rules_of(request), c, events, compiled, floor)


@post(
    "/v1/communities/{c:str}/events",
    opt={"roles": EVENT_WRITERS},
    operation_class=json_body(EventIn),
)
async def post_event(request: Req, c: FromPath[str]) -> Response[rules.EventResult]:
    """Runs the rules on one event; returns what it posted and why."""
    data = await body(request, EventIn)
    async with db(request) as conn:
        result, replayed = await rules.ingest(
            conn,
            rules_of(request),
            c,
            _event(data),
            fingerprint(data),
            principal_of(request).key_id,
        )
    return written(result, replayed)


async def _one(request: Req, conn: Any, c: str, raw: msgspec.Raw, deadline: Deadline) -> EventItem:
    try:
        deadline.check()  # past it, the rest of the batch is refused without a write
        data = msgspec.json.decode(raw, type=EventIn, strict=True)
        result, replayed = await rules.ingest(
            conn,
            rules_of(request),
            c,
            _event(data),
            fingerprint(data),
            principal_of(request).key_id,
            deadline,
        )
    except msgspec.ValidationError as err:
        return EventItem(status=422, event=None, problem=domain_problem(ValidationFailed(str(err))))
    except DomainError as err:
        return EventItem(status=err.status, event=None, problem=domain_problem(err))
    return EventItem(status=200 if replayed else 201, event=result, problem=None)


@post(
    "/v1/communities/{c:str}/events:batch",
    opt={"roles": EVENT_WRITERS},
    status_code=200,
    operation_class=json_body(EventsDoc),
)
async def post_events(request: Req, c: FromPath[str]) -> dict[str, list[EventItem]]:
    """Up to 1000 events, each atomic on its own; a result per event, in order. The
    batch shares one evaluation deadline and yields to the event loop between events."""
    data = await body(request, EventsIn)
    deadline = Deadline()
    results: list[EventItem] = []
    async with db(request) as conn:
        for raw in data.events:
            await asyncio.sleep(0)
            results.append(await _one(request, conn, c, raw, deadline))
    return {"results": results}
