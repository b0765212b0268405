-- Points and minutes as lots (SPEC section 9).
--
-- Every credit to a member account creates a lot; every debit consumes lots in a
-- fixed order (soonest `expires_at` first, non-expiring last, then oldest
-- `earned_at`, then lowest id) and records what it consumed in `lot_uses`; an undo
-- gives back exactly what the undone transaction consumed. A pending debit holds
-- lots (`lot_holds`) until it is posted or voided. What a debit could not take
-- from lots (an account allowed below zero by a negative floor) is the account's
-- `uncovered`, which later credits pay first. For every member account:
--
--   sum(remaining of its lots) - uncovered = posted
--   sum(held of its lots) + its holds beyond the lots = held
--
-- and every lot's `remaining` is its `amount` less the net of its uses. The write
-- engine keeps all of it (sql/functions/ledger.sql, `ledger_lots`); the audit
-- checks it (sql/queries/audit.sql).

ALTER TABLE accounts ADD COLUMN uncovered bigint NOT NULL DEFAULT 0 CHECK (uncovered >= 0);

-- What a transaction undoes (a return its redemption, a cancel its offset), so
-- that its credits give back what that one consumed; and the terms of the lots
-- its credits create: {points, minutes: policy, earned_at?, expires?}, a
-- policy being 'never', 'year_end_plus_one', 'months:N' or 'at:<timestamp>'.
ALTER TABLE transactions ADD COLUMN undoes bigint;
ALTER TABLE transactions ADD COLUMN lot_terms jsonb;

CREATE SEQUENCE lot_seq;
CREATE SEQUENCE lot_use_seq;

CREATE TABLE lots (
    community_id   text        NOT NULL,
    id             bigint      NOT NULL DEFAULT nextval('lot_seq'),
    account_id     bigint      NOT NULL,
    transaction_id bigint      NOT NULL,
    earned_at      timestamptz NOT NULL,
    expires_at     timestamptz,  -- null: never
    amount         bigint      NOT NULL CHECK (amount > 0),
    remaining      bigint      NOT NULL,
    held           bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (community_id, id),
    CHECK (0 <= held AND held <= remaining AND remaining <= amount)
);
ALTER SEQUENCE lot_seq OWNED BY lots.id;

CREATE INDEX lots_open ON lots (community_id, account_id, expires_at, earned_at, id)
    WHERE remaining > 0;
CREATE INDEX lots_due ON lots (expires_at) WHERE remaining > held AND expires_at IS NOT NULL;
CREATE INDEX lots_of_tx ON lots (community_id, transaction_id);

-- Append-only: amount > 0 is what `tx_id` consumed of the lot (lot_id null: beyond
-- the lots, raising `uncovered`); amount < 0 is what it gave back, restoring what
-- transaction `undoes` consumed (lot_id null: paying `uncovered`).
CREATE TABLE lot_uses (
    community_id text   NOT NULL,
    id           bigint NOT NULL DEFAULT nextval('lot_use_seq'),
    account_id   bigint NOT NULL,
    lot_id       bigint,
    tx_id        bigint NOT NULL,
    amount       bigint NOT NULL CHECK (amount <> 0),
    undoes       bigint,
    PRIMARY KEY (community_id, id)
);
ALTER SEQUENCE lot_use_seq OWNED BY lot_uses.id;

CREATE INDEX lot_uses_of_tx ON lot_uses (community_id, tx_id);
CREATE INDEX lot_uses_undone ON lot_uses (community_id, undoes) WHERE undoes IS NOT NULL;
CREATE INDEX lot_uses_of_lot ON lot_uses (community_id, lot_id);

-- What a pending transaction holds, in the order it took it; gone when it is
-- posted (the first of it consumed) or voided.
CREATE TABLE lot_holds (
    community_id text     NOT NULL,
    tx_id        bigint   NOT NULL,
    ord          smallint NOT NULL,
    account_id   bigint   NOT NULL,
    lot_id       bigint,
    amount       bigint   NOT NULL CHECK (amount > 0),
    PRIMARY KEY (community_id, tx_id, ord)
);

-- One change a write makes to a member account's lots (see `ledger_lots`).
CREATE TYPE ledger_lot_move AS (
    tx     bigint,
    slot   integer,
    asset  text,
    op     text,    -- 'credit', 'debit', 'hold', 'settle'
    amount bigint,
    undoes bigint,
    terms  jsonb
);

-- Its result gains the redemption's transaction (a return undoes it).
DROP FUNCTION IF EXISTS redemption_return_prepare(text, text, text);

ALTER TYPE ledger_write ADD ATTRIBUTE undoes bigint;
ALTER TYPE ledger_write ADD ATTRIBUTE lot_terms jsonb;

-- Today's balances as lots, no balance changed. Each member account's posted
-- balance is split: for points, the baseline (at most the balance) as a lot that
-- never expires, on the member's opening credit; the rest, and all of a minutes
-- balance, as lots on the newest credits first (what FIFO spending leaves), each
-- earned when its event occurred (else when written) and expiring as the active
-- rule set's yearly rule would expire it (`year_end_plus_one`: 1 January of the
-- second year after, local time; otherwise never). A balance below zero is the
-- account's `uncovered`. Pending debits then hold the lots in the fixed order.
CREATE TEMPORARY TABLE lot_backfill ON COMMIT DROP AS
SELECT a.community_id, a.id AS account_id, a.asset, a.posted, a.created_at,
       c.timezone,
       CASE WHEN a.asset = 'points'
            THEN coalesce((r.document ->> 'baseline')::bigint, 100) ELSE 0 END AS baseline,
       coalesce(r.document -> 'expiry' ->> a.asset, 'never') AS policy,
       (SELECT t.id FROM transactions t
         WHERE t.community_id = a.community_id AND t.client_id = a.member_id || ':opening') AS opening
  FROM accounts a
  JOIN communities c ON c.id = a.community_id
  LEFT JOIN LATERAL (
      SELECT rs.document FROM rule_sets rs
       WHERE rs.community_id = a.community_id AND rs.effective_from <= now()
       ORDER BY rs.effective_from DESC, rs.version DESC LIMIT 1) r ON true
 WHERE a.member_id IS NOT NULL;

UPDATE accounts a SET uncovered = -b.posted
  FROM lot_backfill b
 WHERE a.community_id = b.community_id AND a.id = b.account_id AND b.posted < 0;

-- The baseline part, on the opening credit (or the first credit, if none).
INSERT INTO lots (community_id, account_id, transaction_id, earned_at, expires_at,
                  amount, remaining)
SELECT b.community_id, b.account_id, t.id, t.created_at, NULL,
       least(b.posted, b.baseline), least(b.posted, b.baseline)
  FROM lot_backfill b
  JOIN LATERAL (
      SELECT x.id, x.created_at FROM transactions x
       WHERE x.community_id = b.community_id
         AND (x.id = b.opening OR (b.opening IS NULL AND x.id = (
             SELECT e.tx_id FROM entries e
              WHERE e.community_id = b.community_id AND e.account_id = b.account_id
                AND e.amount > 0 ORDER BY e.seq LIMIT 1)))) t ON true
 WHERE b.baseline > 0 AND b.posted > 0;

-- The rest, on the newest credits first.
INSERT INTO lots (community_id, account_id, transaction_id, earned_at, expires_at,
                  amount, remaining)
SELECT c.community_id, c.account_id, c.tx_id, c.earned,
       CASE WHEN c.policy = 'year_end_plus_one'
            THEN (date_trunc('year', c.earned AT TIME ZONE c.timezone) + interval '2 years')
                 AT TIME ZONE c.timezone END,
       c.portion, c.portion
  FROM (SELECT b.community_id, b.account_id, b.policy, b.timezone, e.tx_id,
               coalesce(ev.occurred_at, t.created_at) AS earned,
               least(e.amount, b.posted - greatest(b.baseline, 0)
                     - (sum(e.amount) OVER w - e.amount)) AS portion
          FROM lot_backfill b
          JOIN entries e ON e.community_id = b.community_id AND e.account_id = b.account_id
          JOIN transactions t ON t.community_id = e.community_id AND t.id = e.tx_id
          LEFT JOIN events ev ON ev.community_id = t.community_id AND ev.id = t.event_id
         WHERE e.amount > 0 AND t.id IS DISTINCT FROM b.opening
           AND b.posted > greatest(b.baseline, 0)
        WINDOW w AS (PARTITION BY b.account_id ORDER BY e.seq DESC)) c
 WHERE c.portion > 0;

-- Pending debits hold the lots, in the fixed order, by transaction id.
WITH pending AS (
    SELECT t.community_id, t.id AS tx_id, a.id AS account_id, -sum(
               CASE WHEN p ->> 'source' = a.address THEN -(p ->> 'amount')::bigint
                    ELSE (p ->> 'amount')::bigint END) AS amount
      FROM transactions t
      CROSS JOIN LATERAL jsonb_array_elements(t.pending_postings) p
      JOIN accounts a ON a.community_id = t.community_id
                     AND a.address IN (p ->> 'source', p ->> 'destination')
                     AND a.member_id IS NOT NULL
     WHERE t.status = 'pending'
     GROUP BY t.community_id, t.id, a.id
), wanted AS (
    SELECT p.*, sum(p.amount) OVER (PARTITION BY p.account_id ORDER BY p.tx_id) AS upto
      FROM pending p WHERE p.amount > 0
), supply AS (
    SELECT l.community_id, l.account_id, l.id AS lot_id, l.remaining,
           sum(l.remaining) OVER (PARTITION BY l.account_id
                                  ORDER BY l.expires_at NULLS LAST, l.earned_at, l.id) AS upto,
           sum(l.remaining) OVER (PARTITION BY l.account_id) AS total
      FROM lots l
), pieces AS (
    SELECT w.community_id, w.tx_id, w.account_id, s.lot_id,
           least(w.upto, s.upto) - greatest(w.upto - w.amount, s.upto - s.remaining) AS amount,
           s.upto AS lot_order
      FROM wanted w
      JOIN supply s ON s.account_id = w.account_id AND s.community_id = w.community_id
     WHERE least(w.upto, s.upto) > greatest(w.upto - w.amount, s.upto - s.remaining)
    UNION ALL
    SELECT w.community_id, w.tx_id, w.account_id, NULL,
           w.upto - greatest(w.upto - w.amount, coalesce(
               (SELECT max(s.total) FROM supply s WHERE s.account_id = w.account_id), 0)),
           NULL
      FROM wanted w
     WHERE w.upto > coalesce(
               (SELECT max(s.total) FROM supply s WHERE s.account_id = w.account_id), 0)
)
INSERT INTO lot_holds (community_id, tx_id, ord, account_id, lot_id, amount)
SELECT p.community_id, p.tx_id,
       row_number() OVER (PARTITION BY p.community_id, p.tx_id
                          ORDER BY p.account_id, p.lot_order NULLS LAST),
       p.account_id, p.lot_id, p.amount
  FROM pieces p;

UPDATE lots l SET held = h.amount
  FROM (SELECT community_id, lot_id, sum(amount) AS amount FROM lot_holds
         WHERE lot_id IS NOT NULL GROUP BY community_id, lot_id) h
 WHERE l.community_id = h.community_id AND l.id = h.lot_id;

-- From which transaction on each community's lots were kept by the engine: the
-- audit checks the lots and uses of every transaction from there (the ones
-- before were turned into lots above, without uses).
CREATE TABLE lot_epochs (
    community_id text   PRIMARY KEY,
    first_tx     bigint NOT NULL
);
INSERT INTO lot_epochs (community_id, first_tx)
SELECT t.community_id, max(t.id) + 1 FROM transactions t GROUP BY t.community_id;
