"""How transactions look to clients: the shape every endpoint and stored result uses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from service.ledger.model import Transaction


class PostingOut(msgspec.Struct, kw_only=True):
    source: str
    destination: str
    asset: str
    amount: int


class TransactionOut(msgspec.Struct, kw_only=True):
    id: str
    status: str
    kind: str
    postings: list[PostingOut]
    memo: str | None
    metadata: dict[str, Any] | None
    reason: str | None
    rule_id: str | None
    rule_version: int | None
    event_id: str | None
    reversal_of: str | None
    created_at: datetime
    expires_at: datetime | None
    finalized_at: datetime | None
    void_reason: str | None
    reversed_by: str | None = None


def transaction_out(tx: Transaction, reversed_by: str | None = None) -> TransactionOut:
    return TransactionOut(
        id=tx.client_id,
        status=tx.status,
        kind=tx.kind,
        postings=[
            PostingOut(source=p.source, destination=p.destination, asset=p.asset, amount=p.amount)
            for p in tx.postings
        ],
        memo=tx.memo,
        metadata=tx.metadata,
        reason=tx.reason,
        rule_id=tx.rule_id,
        rule_version=tx.rule_version,
        event_id=tx.event_id,
        reversal_of=tx.reversal_of,
        created_at=tx.created_at,
        expires_at=tx.expires_at,
        finalized_at=tx.finalized_at,
        void_reason=tx.void_reason,
        reversed_by=reversed_by,
    )
