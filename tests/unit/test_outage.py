"""Which errors are an outage (503) and which are a bug (500)."""

from __future__ import annotations

import asyncpg
import pytest

from service.outage import fault_of

BUSY = "cannot perform operation: another operation is in progress"


def _raised_while_handling(first: BaseException, second: BaseException) -> BaseException:
    try:
        try:
            raise first
        except BaseException:
            raise second  # noqa: B904 - an implicit context, as a failed ROLLBACK has
    except BaseException as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("exc", "fault"),
    [
        (TimeoutError(), "timeout"),
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), "timeout"),
        (ConnectionResetError(), "unreachable"),
        (asyncpg.CannotConnectNowError("the database system is shutting down"), "unreachable"),
        (asyncpg.InterfaceError("connection is closed"), "unreachable"),
        (asyncpg.InterfaceError(BUSY), None),
        (RuntimeError("a bug"), None),
        (KeyError("k"), None),
    ],
)
def test_one_error(exc: BaseException, fault: str | None) -> None:
    assert fault_of(exc) == fault


def test_an_error_raised_while_handling_an_outage_is_the_outage() -> None:
    # The ROLLBACK after a timed-out statement fails in turn: the second error,
    # alone a bug, has the outage as its context.
    busy = asyncpg.InterfaceError(BUSY)
    exc = _raised_while_handling(TimeoutError(), busy)
    assert exc.__context__ is not None
    assert fault_of(exc) == "timeout"
    explicit = RuntimeError("wrapped")
    explicit.__cause__ = asyncpg.ConnectionDoesNotExistError("connection was closed")
    assert fault_of(explicit) == "unreachable"


def test_a_bug_raised_while_handling_a_bug_stays_a_bug() -> None:
    assert fault_of(_raised_while_handling(KeyError("k"), ValueError("v"))) is None


def test_a_cycle_in_the_chain_ends() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    assert fault_of(a) is None
