-- Reports' one classification of a member's movement by its counterparty, used by
-- every report query that groups flows (sql/queries/reports.sql). Re-applied by
-- `migrate` whenever this file changes. IMMUTABLE SQL: the planner inlines it.
CREATE OR REPLACE FUNCTION report_flow(counterparty_member text, counterparty text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN counterparty_member IS NOT NULL THEN 'transfer'
        WHEN counterparty LIKE 'system:issuance:%' OR counterparty LIKE 'system:opening:%'
          OR counterparty LIKE 'system:timebank:%' THEN 'issued'
        WHEN counterparty LIKE 'system:penalties:%' THEN 'deducted'
        WHEN counterparty LIKE 'property:%' THEN 'offset'
        WHEN counterparty LIKE 'store:%' THEN 'redeemed'
        WHEN counterparty LIKE 'system:expired:%' THEN 'expired'
        WHEN counterparty LIKE 'system:conversion:%' THEN 'converted'
        ELSE 'adjusted'
    END
$$;
