-- Distributes the schema on a Citus cluster (SPEC section 15; docs/scaling.md).
--
-- `migrate` runs this file after the migrations and sql/functions, and only on a
-- database that has the `citus` extension, in one transaction. It is idempotent:
-- a table already distributed (or already a reference table) and a function
-- already distributed the same way are left as they are, so it runs on every
-- `migrate` and only does work after a migration added a table or a function.
--
-- What goes where:
--   * reference tables (a copy on every node, written with two-phase commit):
--     `communities` (every community table has a foreign key to it; a foreign key
--     from a distributed table may only point at a reference table or a colocated
--     distributed one) and the global tables read on every request and joined by
--     community work on the workers: `api_keys`, and `app_sessions` when it exists;
--   * local to the coordinator: `schema_migrations`, `schema_functions` (only
--     `migrate` reads them; it runs on the coordinator);
--   * distributed by `community_id`, all in one colocation group (a community's
--     rows of every table on the same worker): every other table, each of which
--     must have a `community_id` column (a table that has none and is in neither
--     list above stops this file: someone has to decide where it goes).
--
-- Citus distributes a table only if no local table keeps a foreign key to it and
-- none of its foreign keys points at a local table; with tables that reference
-- each other (members -> households -> communities) the order alone cannot
-- satisfy that. So the foreign keys of every table still to be distributed are
-- dropped first, the tables are distributed, and the same constraints are added
-- back (validated again: every one of them includes `community_id`, so each check
-- runs inside one shard).
--
-- Triggers (the append-only guards of sql/functions): Citus refuses to distribute
-- a table with triggers unless `citus.enable_unsafe_triggers` is on. They are kept:
-- each shard carries the triggers and they fire on the worker that holds the row
-- (tests/citus checks that UPDATE and DELETE of entries are still refused there).
-- "Unsafe" means a trigger that reads or writes other shards; these only raise.
--
-- Functions: every function of the schema is distributed (so the worker that runs a
-- delegated call has it and the functions it calls); those with a `p_community`
-- argument by that argument, colocated with `transactions`, so that a call runs
-- on the worker that holds the community. With `force_delegation` they are
-- delegated also inside a transaction block (the service's units of work), and
-- Citus then refuses any access from them to another community's shard.

SET LOCAL citus.enable_unsafe_triggers = on;

-- The service's sessions (application_name 'points-ledger', service/db.py) see the
-- shards in pg_class. Citus hides them from every other application by adding a
-- `relation_is_a_known_shard(oid)` filter to each scan of pg_class, and asyncpg's
-- type introspection (run once per new connection for each composite type it
-- meets, e.g. `rules_stats`, `webhook_event`) scans pg_class once per type it walks:
-- measured on the coordinator, 250 ms per lookup with the filter, 7 ms without.
-- A pool growing under a burst paid that inside the first unit of work of each new
-- connection, with the community's locks held on the worker, and 25 racing events
-- on one member queued past the 5 s statement timeout (docs/scaling.md). The
-- service reads no catalog itself; people and other tools still see no shards.
DO $visibility$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET citus.show_shards_for_app_name_prefixes = %L',
                   current_database(), 'points-ledger');
    -- The service's prepared statements, like the functions' statements below, are
    -- planned for their arguments: Citus routes a statement to the one shard of its
    -- community from the value of `community_id`, which a generic plan lacks.
    EXECUTE format('ALTER DATABASE %I SET plan_cache_mode = force_custom_plan',
                   current_database());
END
$visibility$;
-- Distributing several tables in one transaction that already touched a reference
-- table: one connection per node, not one per shard.
SET LOCAL citus.multi_shard_modify_mode = 'sequential';

-- webhook_emit (sql/functions/webhooks.sql) in a form Citus plans: one statement
-- over `unnest(p_events)` with a correlated EXISTS on `webhooks` is refused
-- ("correlated subqueries are not supported when the FROM clause contains a set
-- returning function"), so here it takes the community's live endpoints once into
-- an array and writes each subscribed event, then its deliveries, by a plain
-- INSERT. Same events, same order, same deliveries, in the caller's transaction.
CREATE OR REPLACE FUNCTION webhook_emit(p_community text, p_events webhook_event[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_hooks webhooks[];
    v_hook webhooks;
    v_event webhook_event;
    v_seq bigint;
    v_count integer := 0;
BEGIN
    SELECT array_agg(w ORDER BY w.id) INTO v_hooks
      FROM webhooks w WHERE w.community_id = p_community AND w.deleted_at IS NULL;
    IF v_hooks IS NULL THEN
        RETURN 0;
    END IF;
    FOREACH v_event IN ARRAY coalesce(p_events, '{}') LOOP
        v_seq := NULL;
        FOREACH v_hook IN ARRAY v_hooks LOOP
            CONTINUE WHEN NOT (v_event.type = ANY (v_hook.events))
                       OR (v_hook.property_company IS NOT NULL
                           AND v_hook.property_company IS DISTINCT FROM v_event.property_company)
                       OR (v_hook.store IS NOT NULL AND v_hook.store IS DISTINCT FROM v_event.store);
            IF v_seq IS NULL THEN
                INSERT INTO outbox_events
                    (community_id, id, type, occurred_at, data, property_company, store)
                VALUES (p_community, 'evt_' || replace(gen_random_uuid()::text, '-', ''),
                        v_event.type, now(), v_event.data, v_event.property_company,
                        v_event.store)
                RETURNING seq INTO v_seq;
            END IF;
            INSERT INTO webhook_deliveries (community_id, id, webhook_id, event_seq)
            VALUES (p_community, 'dlv_' || replace(gen_random_uuid()::text, '-', ''),
                    v_hook.id, v_seq);
            v_count := v_count + 1;
        END LOOP;
    END LOOP;
    RETURN v_count;
END
$$;

DO $distribute$
DECLARE
    c_reference CONSTANT text[] := ARRAY['communities', 'api_keys', 'app_sessions', 'districts',
                                          'settlements'];
    c_local     CONSTANT text[] := ARRAY['schema_migrations', 'schema_functions'];
    c_anchor    CONSTANT text   := 'transactions';  -- what every other table colocates with
    c_inlined   CONSTANT text[] := ARRAY['hours_approvals_of'];  -- in LATERAL of sql/queries
    v_table  text;
    v_fk     record;
    v_fn     record;
    v_colocate text;
    v_done   boolean;
BEGIN
    CREATE TEMPORARY TABLE citus_pending ON COMMIT DROP AS
    SELECT c.oid AS relid, c.relname::text AS name,
           (c.relname = ANY (c_reference)) AS reference
      FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace
       AND c.relkind IN ('r', 'p') AND NOT c.relispartition
       AND NOT (c.relname = ANY (c_local))
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.objid = c.oid AND d.deptype = 'e')   -- an extension's own
       AND NOT EXISTS (SELECT 1 FROM pg_dist_partition p
                        WHERE p.logicalrelid = c.oid
                          AND (p.partmethod = 'h'                       -- distributed
                               OR (p.partmethod = 'n' AND p.repmodel = 't')));  -- reference

    FOR v_table IN
        SELECT p.name FROM citus_pending p
         WHERE NOT p.reference
           AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                            WHERE a.attrelid = p.relid AND a.attname = 'community_id'
                              AND NOT a.attisdropped)
    LOOP
        RAISE EXCEPTION 'table % has no community_id and is neither a reference nor a local table: '
                        'add it to one of the lists of sql/citus/distribute.sql', v_table;
    END LOOP;

    IF EXISTS (SELECT 1 FROM citus_pending) THEN
        -- Every foreign key from or to a table still to be distributed, to add back.
        CREATE TEMPORARY TABLE citus_fks ON COMMIT DROP AS
        SELECT k.conrelid::regclass::text AS tbl, k.conname::text AS name,
               pg_get_constraintdef(k.oid) AS def
          FROM pg_constraint k
         WHERE k.contype = 'f'
           AND (k.conrelid IN (SELECT relid FROM citus_pending)
                OR k.confrelid IN (SELECT relid FROM citus_pending));
        FOR v_fk IN SELECT * FROM citus_fks LOOP
            EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', v_fk.tbl, v_fk.name);
        END LOOP;

        FOR v_table IN SELECT name FROM citus_pending WHERE reference ORDER BY name LOOP
            PERFORM create_reference_table(v_table);
            RAISE NOTICE 'citus: % is a reference table', v_table;
        END LOOP;

        -- The anchor first (a group of its own), then the others colocated with it.
        FOR v_table IN
            SELECT name FROM citus_pending WHERE NOT reference
             ORDER BY name <> c_anchor, name
        LOOP
            v_colocate := CASE
                WHEN v_table = c_anchor THEN 'none'
                ELSE c_anchor END;
            PERFORM create_distributed_table(v_table, 'community_id',
                                             colocate_with => v_colocate);
            RAISE NOTICE 'citus: % distributed by community_id', v_table;
        END LOOP;

        FOR v_fk IN SELECT * FROM citus_fks LOOP
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s', v_fk.tbl, v_fk.name, v_fk.def);
        END LOOP;
    END IF;

    -- SQL functions that read tables become PL/pgSQL functions with the same body:
    -- Citus refuses a statement on a distributed table inside a SQL function called
    -- with parameters ("parameterized queries for SQL functions referencing
    -- distributed tables are not supported"). Same arguments, result, volatility and
    -- body; a set-returning one returns its query, one with OUT arguments selects
    -- into them, a scalar returns its result (into a variable when the body writes:
    -- a data-modifying WITH cannot be a subquery). Except those that PostgreSQL
    -- inlines into the query calling them (`c_inlined`): as PL/pgSQL they would run
    -- inside the query on the shard and query the distributed table from there
    -- ("cannot execute a distributed query from a query on a shard").
    FOR v_fn IN
        SELECT f.oid::regprocedure::text AS sig, f.proname::text AS name, f.proretset,
               pg_get_function_arguments(f.oid) AS args,
               pg_get_function_result(f.oid) AS result,
               format_type(f.prorettype, NULL) AS rettype,
               CASE f.provolatile WHEN 's' THEN 'STABLE' ELSE 'VOLATILE' END AS volatility,
               regexp_replace(f.prosrc, ';\s*$', '') AS body,
               (SELECT string_agg(quote_ident(f.proargnames[i]), ', ' ORDER BY i)
                  FROM generate_subscripts(f.proargmodes, 1) AS i
                 WHERE f.proargmodes[i] IN ('o', 'b')) AS outs
          FROM pg_proc f
         WHERE f.pronamespace = 'public'::regnamespace AND f.prokind = 'f'
           AND f.prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql')
           AND f.provolatile <> 'i'
           AND NOT (f.proname = ANY (c_inlined))
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.objid = f.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format(
            'CREATE OR REPLACE FUNCTION %I(%s) RETURNS %s LANGUAGE plpgsql %s'
            ' SET citus.allow_nested_distributed_execution = on AS %L',
            v_fn.name, v_fn.args, v_fn.result, v_fn.volatility,
            CASE
                WHEN v_fn.proretset THEN
                    E'BEGIN\nRETURN QUERY ' || v_fn.body || E';\nEND'
                WHEN v_fn.outs IS NOT NULL THEN
                    E'BEGIN\n' || v_fn.body || E'\nINTO ' || v_fn.outs || E';\nEND'
                WHEN v_fn.body ~* '\m(insert|update|delete)\M' THEN
                    format(E'DECLARE v_result %s;\nBEGIN\n%s\nINTO v_result;\nRETURN v_result;\nEND',
                           v_fn.rettype, v_fn.body)
                ELSE E'BEGIN\nRETURN (' || v_fn.body || E');\nEND'
            END);
        RAISE NOTICE 'citus: % is PL/pgSQL here', v_fn.sig;
    END LOOP;

    -- These functions (hours_approvals_of, and the ones made PL/pgSQL above) are
    -- called from inside other queries (`CROSS JOIN LATERAL hours_approvals_of(h.…)`,
    -- `LEFT JOIN ledger_tx_digests(…)` in ledger_verify_chain, the caps in
    -- offset_create's queries): Citus runs such a query on the shard, and the
    -- function's own query on a distributed table is then a distributed query
    -- started from a shard, which Citus refuses unless allowed ("cannot execute a
    -- distributed query from a query on a shard"). Allowed for them alone: each
    -- reads only its `p_community`, the community of the query that calls it, whose
    -- shards are the colocated ones on the same worker, never another node's.
    ALTER FUNCTION hours_approvals_of(text, text)
        SET citus.allow_nested_distributed_execution = on;

    -- Functions: by their community argument where they have one.
    FOR v_fn IN
        SELECT f.oid::regprocedure::text AS sig,
               (SELECT i - 1 FROM generate_subscripts(f.proargnames, 1) AS i
                 WHERE f.proargnames[i] = 'p_community'
                   AND (f.proargmodes IS NULL OR f.proargmodes[i] IN ('i', 'b'))) AS arg,
               coalesce('plan_cache_mode=force_generic_plan' = ANY (f.proconfig), false)
                   AS generic,
               f.oid AS fid
          FROM pg_proc f
         WHERE f.pronamespace = 'public'::regnamespace
           AND f.prokind = 'f'
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.objid = f.oid AND d.deptype = 'e')
    LOOP
        v_done := EXISTS (
            SELECT 1 FROM pg_dist_object o
             WHERE o.classid = 'pg_proc'::regclass AND o.objid = v_fn.fid
               AND o.distribution_argument_index IS NOT DISTINCT FROM v_fn.arg
               AND (v_fn.arg IS NULL OR o.force_delegation));
        -- Every statement of a function of one community is planned for the call's
        -- own arguments (force_custom_plan). Citus routes a statement to its one
        -- shard from the value of `community_id`; a generic plan has only a
        -- parameter there, and Citus either cannot plan it ("could not create
        -- distributed plan", for the functions that force generic plans on one
        -- server) or plans it for every shard. PL/pgSQL switches to a generic plan
        -- after five calls: the `UPDATE accounts … FROM unnest(…)` of ledger_write
        -- then ran as one task per shard of `accounts` in every write (measured
        -- with citus.multi_task_query_log_level, docs/scaling.md).
        IF v_fn.arg IS NOT NULL OR v_fn.generic THEN
            EXECUTE format('ALTER FUNCTION %s SET plan_cache_mode = force_custom_plan',
                           v_fn.sig);
        END IF;
        CONTINUE WHEN v_done;
        IF v_fn.arg IS NULL THEN
            PERFORM create_distributed_function(v_fn.sig::regprocedure);
        ELSE
            PERFORM create_distributed_function(
                v_fn.sig::regprocedure, '$' || (v_fn.arg + 1), colocate_with => c_anchor,
                force_delegation => true);
        END IF;
    END LOOP;
END
$distribute$;

-- Where a row's writer xid and outbox seq come from. `seal_queue.xid` and
-- `outbox_events.xid` default to pg_current_xact_id(), which the sealer and the
-- delivery claim compare with the snapshot of the node they run on (the worker
-- that holds the community). A statement that reaches a shard from the coordinator
-- (a function call Citus does not delegate, e.g. `webhook_emit($1, ARRAY(SELECT
-- …))`, whose argument has a subquery) has its defaults evaluated on the
-- coordinator: the coordinator's xid, from another counter, would be stored, and a
-- row could stay unsealed until the worker's xids catch up with it, or be sealed
-- ahead of an older write. Likewise `outbox_events.seq` would come from the
-- coordinator's range of `outbox_seq` while the writes delegated to the worker take
-- the worker's, and seq would no longer rise within the community. These triggers
-- run on the shard, so both always come from the worker that holds the row.
CREATE OR REPLACE FUNCTION citus_local_xid() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.xid := pg_current_xact_id();
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION citus_local_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.xid := pg_current_xact_id();
    NEW.seq := nextval('outbox_seq');
    RETURN NEW;
END
$$;

-- (EXECUTE: Citus passes a CREATE TRIGGER on to the shards as the text of the
-- statement that ran it, and a text of several statements is refused there.)
DO $triggers$
BEGIN
    EXECUTE 'CREATE OR REPLACE TRIGGER seal_queue_local_xid BEFORE INSERT ON seal_queue
                 FOR EACH ROW EXECUTE FUNCTION citus_local_xid()';
    EXECUTE 'CREATE OR REPLACE TRIGGER outbox_events_local BEFORE INSERT ON outbox_events
                 FOR EACH ROW EXECUTE FUNCTION citus_local_outbox()';
END
$triggers$;

-- Where every id that orders a community's rows comes from: the sequence of the
-- node that holds the community (docs/scaling.md, "Why some ids came from the
-- coordinator").
-- Citus gives each node a range of every bigint sequence of its own (`groupid <<
-- 48`; the coordinator's, group 0, starts at 1). A row inserted inside a function
-- delegated to the worker takes the worker's value; a row inserted by a statement
-- the coordinator routes to the shard (a plain INSERT, or the statements of a
-- function call Citus did not delegate) has its default (or identity) evaluated on
-- the coordinator and would take the coordinator's, lower than every value the
-- worker has handed out. Entries (`seq`: the audit's running balance, an account's
-- statement and its cursor), transactions and lots (ids: the lots' epoch, FIFO),
-- outbox events and the other histories are ordered by these values, so one
-- community's rows would no longer sort in the order they were written.
--
-- The triggers below run on the shard: a value from the coordinator's range is
-- replaced by the shard's node's own. The WHEN is evaluated without calling the
-- function, so the writes delegated to the worker (the write engine's, every use
-- case's) pay one comparison per row. RETURNING reports the value stored (it is
-- computed on the worker, after the trigger). Every sequence-fed bigint column of
-- a distributed table gets one (identity columns and `DEFAULT nextval(…)`), found
-- in the catalog, so a later table is covered too; except `lots.id`, which
-- `ledger_lots` takes with nextval() itself and refers to in the same call (a
-- hold or debit of a lot the same batch made): a trigger replacing it would break
-- those references. Lots are ordered by `expires_at, earned_at` first, and id
-- only breaks ties between lots earned at the same instant, i.e. made by the same
-- call, whose ids come from one node's sequence wherever that call ran.
CREATE OR REPLACE FUNCTION citus_ordering_columns()
RETURNS TABLE (table_name text, column_name text, sequence_name text)
LANGUAGE sql STABLE AS $$
    SELECT c.relname::text, a.attname::text,
           coalesce(pg_get_serial_sequence(quote_ident(c.relname), a.attname),
                    (regexp_match(pg_get_expr(d.adbin, d.adrelid),
                                  $re$^nextval\('([^']+)'::regclass\)$re$))[1])::regclass::text
      FROM pg_dist_partition p
      JOIN pg_class c ON c.oid = p.logicalrelid
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
     WHERE c.relnamespace = 'public'::regnamespace
       AND p.partmethod = 'h'
       AND a.atttypid = 'bigint'::regtype
       AND (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%')
     ORDER BY 1, 2
$$;

DO $local_ids$
DECLARE
    v_col record;
    v_fn text;
BEGIN
    FOR v_col IN
        SELECT * FROM citus_ordering_columns()
         WHERE (table_name, column_name) NOT IN (('outbox_events', 'seq'),  -- outbox_events_local
                                                 ('lots', 'id'))            -- see above
    LOOP
        v_fn := 'citus_local_' || v_col.table_name || '_' || v_col.column_name;
        EXECUTE format(
            $f$CREATE OR REPLACE FUNCTION %I() RETURNS trigger LANGUAGE plpgsql AS $body$
               BEGIN
                   NEW.%I := nextval(%L::regclass);
                   RETURN NEW;
               END
               $body$$f$,
            v_fn, v_col.column_name, v_col.sequence_name);
        EXECUTE format(
            'CREATE OR REPLACE TRIGGER %I BEFORE INSERT ON %I FOR EACH ROW'
            ' WHEN (NEW.%I < 281474976710656) EXECUTE FUNCTION %I()',
            v_col.table_name || '_' || v_col.column_name || '_local', v_col.table_name,
            v_col.column_name, v_fn);
    END LOOP;
END
$local_ids$;

