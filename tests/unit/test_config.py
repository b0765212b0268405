"""Settings the service refuses to start with (issue 12, finding 3)."""

from __future__ import annotations

import pytest

from service.__main__ import main
from service.config import ConfigError, load_settings


def test_a_short_admin_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_ADMIN_KEY", "a" * 31)
    monkeypatch.delenv("LEDGER_DEMO_LOOPBACK", raising=False)
    with pytest.raises(ConfigError, match="at least 32 characters"):
        load_settings()
    monkeypatch.setenv("LEDGER_ADMIN_KEY", "a" * 32)
    assert load_settings().admin_key == "a" * 32


def test_serve_refuses_a_short_key_off_loopback_even_with_demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEDGER_ADMIN_KEY", "dev-admin-key")
    monkeypatch.delenv("LEDGER_DEMO_LOOPBACK", raising=False)
    assert main(["serve", "--demo", "--host", "0.0.0.0"]) == 2
    assert "at least 32 characters" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEDGER_RATE_WRITES_PER_KEY", "fast"),
        ("LEDGER_RATE_WRITES_PER_KEY", "0/10"),
        ("LEDGER_RATE_AUTH_FAILURES_PER_ADDRESS", "10/0"),
    ],
)
def test_a_malformed_rate_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()
