"""The catalogue of system reasons: complete, and one set of parameters per key."""

from __future__ import annotations

from string import Formatter

import pytest

from service.i18n import LANGUAGES, basket, system_reason, yuan
from service.i18n.reasons import REASONS


def placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in Formatter().parse(template) if field}


def test_every_key_is_in_every_language_with_the_same_parameters() -> None:
    for key, texts in REASONS.items():
        assert set(texts) == set(LANGUAGES), key
        assert len({frozenset(placeholders(t)) for t in texts.values()}) == 1, key


def test_defaults_and_formatting() -> None:
    assert system_reason("zh-CN", "expiry") == "积分过期"
    assert system_reason("en", "member_closed") == "forfeited when the member moved out"
    assert system_reason("zh-CN", "reversal", original="a1") == "冲正：撤销交易 a1"
    assert basket("zh-CN", [("大米", 2), ("油", 1)]) == "大米×2、油×1"
    assert basket("en", [("rice", 2), ("oil", 1)]) == "2 × rice, 1 × oil"
    assert [yuan(f) for f in (0, 5, 1250, 100_000)] == ["0.00", "0.05", "12.50", "1000.00"]


def test_an_unknown_language_is_a_bug_not_a_fallback() -> None:
    with pytest.raises(ValueError, match="fr"):
        system_reason("fr", "expiry")
