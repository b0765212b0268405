"""The reasons the service writes on its own transactions, in each language it speaks.

Rule authors write their rules' reasons in the rule set, and those are shown as
written. Every other reason on a statement (the opening balance, an offset and its
cancel, the love supermarket, a conversion, a reversal, expiry, a member who moved
out) is written by the service, in the language of the community (SPEC section 9:
"reason in the community's language (default 积分过期)"). The text is fixed when
the transaction is written: a statement shows what was written, and the hash chain
seals the words a resident saw, not a translation made when they are read.

Every language of a key takes the same parameters, so that a caller passes one set
whatever the community speaks (tests/unit/test_i18n.py checks it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal

from service.ledger.model import Transaction

Language = Literal["zh-CN", "en"]
DEFAULT_LANGUAGE: Final[Language] = "zh-CN"
LANGUAGES: Final[tuple[Language, ...]] = ("zh-CN", "en")

ReasonKey = Literal[
    "opening_balance",
    "offset",
    "offset_cancel",
    "redemption",
    "redemption_return",
    "conversion",
    "reversal",
    "expiry",
    "member_closed",
]

# Written as a community office would write them on a notice board; the English is
# for communities that chose it, not a gloss of the Chinese.
REASONS: Final[Mapping[ReasonKey, Mapping[Language, str]]] = {
    "opening_balance": {
        "zh-CN": "基础分",
        "en": "opening balance: the baseline score",
    },
    "offset": {
        "zh-CN": "物业费抵扣：{household} 户抵扣 {yuan} 元（抵扣单 {offset}）",
        "en": "property-fee offset {offset}: ¥{yuan} off the bill of household {household}",
    },
    "offset_cancel": {
        "zh-CN": "撤销物业费抵扣，积分退回（抵扣单 {offset}）",
        "en": "property-fee offset {offset} cancelled: the points are returned",
    },
    "redemption": {
        "zh-CN": "爱心超市兑换（{store}）：{basket}",
        "en": "love supermarket {store}: {basket}",
    },
    "redemption_return": {
        "zh-CN": "爱心超市退货（{store}），积分退回（兑换单 {redemption}）",
        "en": "love supermarket {store}: return of redemption {redemption}",
    },
    "conversion": {
        "zh-CN": "时间银行兑换积分：{minutes} 分钟，每小时 {points_per_hour} 分",
        "en": "time bank: {minutes} minutes at {points_per_hour} points an hour",
    },
    "reversal": {
        "zh-CN": "冲正：撤销交易 {original}",
        "en": "reversal of {original}",
    },
    "expiry": {
        "zh-CN": "积分过期",
        "en": "points expired",
    },
    "member_closed": {
        "zh-CN": "迁出清零",
        "en": "forfeited when the member moved out",
    },
}

# One line of a basket, and what separates the lines: 大米×2、食用油×1 / 2 × rice, 1 × oil.
_BASKET_LINE: Final[Mapping[Language, str]] = {"zh-CN": "{name}×{qty}", "en": "{qty} × {name}"}
_BASKET_SEPARATOR: Final[Mapping[Language, str]] = {"zh-CN": "、", "en": ", "}


def _language(language: str) -> Language:
    """`language` as one the catalogue has; anything else is a bug (the database
    accepts only these, and so does the API)."""
    for known in LANGUAGES:
        if known == language:
            return known
    raise ValueError(f"no system reasons in language {language!r}; use one of {LANGUAGES}")


def system_reason(language: str, key: ReasonKey, **params: object) -> str:
    """The reason `key` in `language`, with `params` filled in."""
    return REASONS[key][_language(language)].format(**params)


def basket(language: str, lines: Iterable[tuple[str, int]]) -> str:
    """A redemption's goods, (name, qty) each, for the `redemption` reason."""
    lang = _language(language)
    line = _BASKET_LINE[lang]
    return _BASKET_SEPARATOR[lang].join(line.format(name=n, qty=q) for n, q in lines)


def yuan(fen: int) -> str:
    """An amount of fen as yuan with two decimals (1250 → "12.50"), for reasons."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def reversal_reason(language: str, original: Transaction) -> str:
    """The reason of the transaction that undoes `original`: an applied offset's
    reversal is its cancel, whichever way it was asked for; anything else is a
    reversal naming the original's id."""
    offset = (original.metadata or {}).get("offset")
    if original.kind == "offset" and isinstance(offset, str):
        return system_reason(language, "offset_cancel", offset=offset)
    return system_reason(language, "reversal", original=original.client_id)
