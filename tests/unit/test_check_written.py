"""A use case's own SQL function writes to the ledger (ledger_write); only a
transaction it created lets the use case commit."""

from __future__ import annotations

import pytest

from service.errors import IdempotencyConflict, InsufficientPoints, NotFound
from service.ledger.model import NewTransaction, Posting
from service.ledger.service import check_written

TX = NewTransaction(
    client_id="redemption:r1",
    postings=(
        Posting(source="member:m0:points", destination="store:s1:redemptions", asset="points",
                amount=3),
    ),
    request_hash=b"h",
)  # fmt: skip


def test_created_passes() -> None:
    check_written(TX, "created", None)


@pytest.mark.parametrize("outcome", ["replay", "conflict"])
def test_a_transaction_already_there_is_a_conflict(outcome: str) -> None:
    with pytest.raises(IdempotencyConflict):
        check_written(TX, outcome, None)


@pytest.mark.parametrize("outcome", ["busy", "done", "expired", "posted"])
def test_an_outcome_a_create_cannot_have_is_a_bug_not_a_settled_write(outcome: str) -> None:
    """A write that waits for its locks is never busy, and only posts and voids are
    done, expired or already posted: such an answer is not taken for a success."""
    with pytest.raises(AssertionError):
        check_written(TX, outcome, None)


def test_refusals_keep_their_own_errors() -> None:
    failure = {"address": "member:m0:points", "available": 101, "minimum": 100, "change": -3}
    with pytest.raises(InsufficientPoints):
        check_written(TX, "insufficient", failure)
    with pytest.raises(NotFound):
        check_written(TX, "not_found", {"address": "member:m9:points"})
