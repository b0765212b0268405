"""The rule-set document (SPEC section 5) as msgspec structs, and its strict validation.

`parse_rule_set` turns an uploaded JSON or YAML document into a `RuleSet` or raises
`ValidationFailed` naming the field, the rule id and (for YAML) the line. Decoding is
strict: unknown fields, floats where integers belong, and booleans where numbers
belong are refused. Then the document's meaning is checked: unique rule ids, floor ≤
baseline, exactly one trigger and one action per rule, and every expression compiled
within its cost bound, all of them together within `cost.MAX_RULE_SET_UNITS` (so an
event's evaluation, and the probes of a publication, stay a few tens of milliseconds).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Final, Literal

import msgspec

from service.errors import ValidationFailed
from service.inbound import check_json
from service.ledger.model import ID_PATTERN, MAX_AMOUNT, Asset, RuleParams, parse_address
from service.rules import cost, expressions
from service.rules.periods import PERIOD_ORDER, PeriodKind
from service.rules.yaml_reader import line_of, load_yaml

MAX_DOCUMENT_BYTES: Final = 256 * 1024
MAX_RULES: Final = 500
EVENT_TYPE_PATTERN: Final = ID_PATTERN

Schedule = Literal["day", "week", "month"]
Count = Annotated[int, msgspec.Meta(ge=1, le=MAX_AMOUNT)]
ExpressionText = Annotated[
    str, msgspec.Meta(min_length=1, max_length=expressions.MAX_EXPRESSION_CHARS)
]
# An amount is an integer literal or an expression that computes one.
AmountSpec = Count | ExpressionText


class Offset(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Caps on property-fee offsets beyond `redeemable`; None means no such cap."""

    max_bill_percent: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    max_fen_per_household_per_year: Count | None = None
    min_points: Count | None = None


class TimeBank(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    approval_required: bool = True
    points_per_hour: Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT)] = 10
    # Distinct organiser or operator keys whose approvals make hours approved (SPEC 11).
    approvals: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1


ConsentPolicy = Literal["required", "none"]


class Consent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Whether a store's redemption and a property company's offset need the
    resident's consent (SPEC section 10); operator and admin keys never do."""

    redemption: ConsentPolicy = "required"
    offset: ConsentPolicy = "required"


class ExpireMonths(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Lots expire at the end of the `months`-th calendar month after the month
    they were earned in, in the community's time zone."""

    months: Annotated[int, msgspec.Meta(ge=1, le=1200)]


# When lots expire (SPEC section 9): `year_end_plus_one` is 1 January of the
# second year after the one earned in (local time).
ExpiryPolicy = Literal["never", "year_end_plus_one"] | ExpireMonths


def policy_text(policy: ExpiryPolicy) -> str:
    """The policy as the write engine's `ledger_lot_expiry` reads it."""
    return f"months:{policy.months}" if isinstance(policy, ExpireMonths) else policy


class Expiry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    points: ExpiryPolicy = "never"
    minutes: ExpiryPolicy = "never"
    # How many days before its instant the `points.expiring` notice goes out.
    notice_days: Annotated[int, msgspec.Meta(ge=0, le=366)] = 30


class MemberClose(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the balances of a member who moved out go when it is closed: its points
    above the baseline (forfeited by default) and its minutes (back to the time
    bank's pool by default). Each is a `system:` account of its asset."""

    points_to: str = "system:expired:points"
    minutes_to: str = "system:timebank:minutes"


class Cap(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most `max` per member per rule per period (in the community's time zone)."""

    period: PeriodKind
    max: Count


class Rule(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """One rule: a trigger (`on` an event type, or `every` period), an optional
    condition, one action (`award` or `deduct`), an optional cap and the reason text."""

    id: Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
    on: Annotated[str, msgspec.Meta(pattern=EVENT_TYPE_PATTERN)] | None = None
    every: Schedule | None = None
    when: ExpressionText | None = None
    award: AmountSpec | None = None
    deduct: AmountSpec | None = None
    cap: Cap | None = None
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    asset: Asset = "points"
    # The lots of its awards expire so, instead of by the rule set's `expiry`.
    expires: ExpiryPolicy | None = None

    @property
    def kind(self) -> Literal["award", "deduct"]:
        return "award" if self.award is not None else "deduct"

    @property
    def amount(self) -> int | str:
        amount = self.award if self.award is not None else self.deduct
        assert amount is not None
        return amount


class RuleSet(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    baseline: Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT)] = 100
    floor: Annotated[int, msgspec.Meta(ge=-MAX_AMOUNT, le=MAX_AMOUNT)] = 0
    fen_per_point: Count = 10
    offset: Offset = msgspec.field(default_factory=Offset)
    time_bank: TimeBank = msgspec.field(default_factory=TimeBank)
    consent: Consent = msgspec.field(default_factory=Consent)
    expiry: Expiry = msgspec.field(default_factory=Expiry)
    member_close: MemberClose = msgspec.field(default_factory=MemberClose)
    rules: Annotated[list[Rule], msgspec.Meta(max_length=MAX_RULES)] = msgspec.field(
        default_factory=list
    )

    def to_params(self) -> RuleParams:
        """The part of the rule set the ledger's limits depend on."""
        return RuleParams(
            baseline=self.baseline,
            floor=self.floor,
            expiry_points=policy_text(self.expiry.points),
            expiry_minutes=policy_text(self.expiry.minutes),
        )


DEFAULT_RULE_SET: Final = RuleSet()

Path = tuple[str | int, ...]


class _Invalid(Exception):
    """A semantic error: `args` are (path, message)."""


def parse_rule_set(raw: bytes, content_type: str) -> RuleSet:
    """Decodes and validates an uploaded rule set (JSON, or YAML by its content type)."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ValidationFailed(f"a rule set has at most {MAX_DOCUMENT_BYTES} bytes")
    media = content_type.split(";", 1)[0].strip().lower()
    if media.endswith(("/yaml", "/x-yaml", "+yaml")):
        data, node = load_yaml(raw)
        return _validated(data, node, uploaded=True)
    if media not in ("", "application/json") and not media.endswith("+json"):
        raise ValidationFailed("a rule set is application/json or application/yaml")
    check_json(raw)
    try:
        obj = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValidationFailed(f"not valid JSON: {exc}") from None
    return _validated(obj, None, uploaded=True)


def rule_set_from_builtins(obj: Any, *, stored: bool = False) -> RuleSet:
    """Validates a rule set decoded into builtins (a simulate draft, or a `stored`
    version, which is not held to the cost bounds: it was accepted before they existed
    and must still load)."""
    return _validated(obj, None, checked=stored)


def to_document(rule_set: RuleSet) -> dict[str, Any]:
    """The rule set as JSON-ready builtins (what `rule_set_from_builtins` reads back)."""
    document: dict[str, Any] = msgspec.to_builtins(rule_set)
    return document


# Words the service's own transaction ids are built from (`event:<event>:<rule>`,
# `expiry:<year>:<member>`, `offset:<id>`, `offset:<id>:reversal`,
# `redemption:<id>`, `vh:<id>`, `<member>:opening`, `<id>:reversal`). A scheduled
# rule's transactions are `<rule>:<period>:<member>`, so a rule with one of these
# ids could take a transaction id that another flow needs. Refused in uploads only:
# a version already stored still loads.
RESERVED_RULE_IDS = frozenset(
    {"event", "expiry", "offset", "redemption", "vh", "opening", "reversal"}
)


def _validated(obj: Any, node: Any, *, uploaded: bool = False, checked: bool = False) -> RuleSet:
    try:
        rule_set = msgspec.convert(obj, RuleSet, strict=True)
        _check(rule_set, checked)
        if uploaded:
            _check_reserved(rule_set)
    except (msgspec.ValidationError, _Invalid) as exc:
        path, message = exc.args if isinstance(exc, _Invalid) else _split_msgspec(str(exc))
        raise ValidationFailed(_located(obj, path, message, node)) from None
    return rule_set


def _check(rule_set: RuleSet, checked: bool) -> None:
    if rule_set.floor > rule_set.baseline:
        raise _Invalid(("floor",), f"must not exceed the baseline ({rule_set.baseline})")
    _check_member_close(rule_set.member_close)
    seen: dict[str, int] = {}
    total = 0
    for index, rule in enumerate(rule_set.rules):
        if rule.id in seen:
            raise _Invalid(
                ("rules", index, "id"), f"duplicate rule id (also rules[{seen[rule.id]}])"
            )
        seen[rule.id] = index
        total += _check_rule(("rules", index), rule, checked)
        if total > cost.MAX_RULE_SET_UNITS:
            message = (
                f"the expressions up to this rule may cost {total:,} units together;"
                f" a rule set allows {cost.MAX_RULE_SET_UNITS:,} (see `Expression budget`"
                " in docs/rules.md)"
            )
            raise _Invalid(("rules", index), message)


def _check_reserved(rule_set: RuleSet) -> None:
    for index, rule in enumerate(rule_set.rules):
        if rule.id in RESERVED_RULE_IDS:
            raise _Invalid(
                ("rules", index, "id"),
                f"{rule.id!r} is reserved: the service's own transaction ids use it",
            )


def _check_member_close(closing: MemberClose) -> None:
    """Both destinations are system accounts of their asset: not a member's (a
    neighbour's balance is theirs to earn), and not a property company's or a store's,
    whose flows the reports count as offsets and redemptions."""
    for field, address, asset in (
        ("points_to", closing.points_to, "points"),
        ("minutes_to", closing.minutes_to, "minutes"),
    ):
        try:
            ref = parse_address(address)
        except ValidationFailed as exc:
            raise _Invalid(("member_close", field), exc.detail) from None
        if not address.startswith("system:") or ref.asset != asset:
            message = f"{address!r} is not a system:<name>:{asset} account"
            raise _Invalid(("member_close", field), message)


def _check_rule(path: Path, rule: Rule, checked: bool) -> int:
    """Checks one rule; the most its expressions can cost together (0 when `checked`:
    see `expressions.compile_expression`)."""
    if (rule.on is None) == (rule.every is None):
        raise _Invalid(path, "give exactly one of `on` (an event type) or `every` (day|week|month)")
    if (rule.award is None) == (rule.deduct is None):
        raise _Invalid(path, "give exactly one of `award` or `deduct`")
    if rule.every and rule.cap and PERIOD_ORDER[rule.cap.period] < PERIOD_ORDER[rule.every]:
        message = f"a rule that runs every {rule.every} cannot be capped per {rule.cap.period}"
        raise _Invalid((*path, "cap", "period"), message)
    units = 0
    for field, source, role in _expressions(rule):
        try:
            units += expressions.compile_expression(
                source,
                role,
                scheduled=rule.every is not None,
                event_type=rule.on or "",
                checked=checked,
            ).units
        except expressions.ExpressionInvalid as exc:
            raise _Invalid((*path, field), str(exc)) from None
    return units


def _expressions(rule: Rule) -> Iterator[tuple[str, str, expressions.Role]]:
    if rule.when is not None:
        yield "when", rule.when, "when"
    if isinstance(rule.amount, str):
        yield rule.kind, rule.amount, "amount"


_AT = re.compile(r"^(.*) - at `\$(.*)`$", re.DOTALL)
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _split_msgspec(text: str) -> tuple[Path, str]:
    match = _AT.match(text)
    if match is None:
        return (), text
    path: Path = tuple(
        name if name else int(index) for name, index in _SEGMENT.findall(match.group(2))
    )
    return path, match.group(1)


def _located(obj: Any, path: Path, message: str, node: Any) -> str:
    """`rules[2] (flying-lead).deduct: <message> (line 17)`."""
    where = ""
    for step in path:
        where += f"[{step}]" if isinstance(step, int) else f".{step}"
        if path[:1] == ("rules",) and isinstance(step, int):
            where += _rule_label(obj, step)
    where = where.lstrip(".")
    line = line_of(node, path, message) if node is not None else None
    suffix = f" (line {line})" if line is not None else ""
    return f"{where}: {message}{suffix}" if where else f"{message}{suffix}"


def _rule_label(obj: Any, index: int) -> str:
    try:
        rule_id = obj["rules"][index]["id"]
    except (TypeError, KeyError, IndexError):
        return ""
    return f" ({rule_id})" if isinstance(rule_id, str) else ""
