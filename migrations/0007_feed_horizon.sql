-- The feed horizon: the first transaction id the feed may not hand out yet.
--
-- Before, the horizon was pg_snapshot_xmin: the oldest transaction still running anywhere in
-- the cluster. Every transaction with an id counted — projection batches, checkpoints, other
-- databases' work — so a slow read-model batch held back the feed that fed it.
--
-- Only writers of events matter. Every transaction that appends holds a ROW EXCLUSIVE lock on
-- `events` from before it takes its transaction id (an INSERT locks its tables before it
-- writes; a command that writes elsewhere first takes the lock when it begins), so the
-- running writers are those holding that lock in this database, and the horizon is the
-- oldest of their ids, or the current snapshot's xmax when that is lower. A writer whose id
-- is below the horizon has finished when this runs; a read in a later statement sees what it
-- committed.
--
-- Which transaction id a writer holds is read from pg_stat_activity (`backend_xid`, set the
-- moment the id is assigned), not from its transactionid lock, which is taken a moment later.
-- pg_stat_activity is cached per transaction; the cache is cleared first.
--
-- PL/pgSQL rather than SQL: the relay calls this on every step, and PL/pgSQL keeps the plan
-- of its query for the session instead of parsing and planning it each call.
CREATE FUNCTION tenantry_feed_horizon() RETURNS xid8
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    horizon xid8;
BEGIN
    PERFORM pg_stat_clear_snapshot();
    WITH writers AS MATERIALIZED (
        SELECT DISTINCT pid FROM pg_locks
        WHERE locktype = 'relation'
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND relation = 'events'::regclass
          AND mode = 'RowExclusiveLock'
    ),
    ids AS (
        SELECT a.backend_xid::text::bigint AS xid
        FROM pg_stat_activity a JOIN writers w ON w.pid = a.pid
        WHERE a.backend_xid IS NOT NULL
    ),
    -- Every id below the snapshot's xmax has completed or is listed as running; ids at or
    -- above it may be running too (a writer among them bounds the horizon below).
    next AS (
        SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xid
    )
    -- backend_xid is a 32-bit id: widen it to the 64-bit id nearest the snapshot's (ids in
    -- use are never 2^31 apart).
    SELECT least(
        next.xid,
        min(next.xid
            + (((i.xid - (next.xid & 4294967295)) + 2147483648) & 4294967295)
            - 2147483648)
    )::text::xid8
    INTO horizon
    FROM next LEFT JOIN ids i ON true
    GROUP BY next.xid;
    RETURN horizon;
END
$$;
GRANT EXECUTE ON FUNCTION tenantry_feed_horizon() TO tenantry_app, tenantry_system;
