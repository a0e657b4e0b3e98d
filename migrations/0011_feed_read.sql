-- The feed read in one round trip: the horizon, then the events below it.
--
-- The horizon has to be computed before the snapshot that reads the events is taken: a writer
-- that finishes between the two must be either seen by the read or still below the horizon's
-- cutoff (migration 0007). Two statements did that in two round trips. A VOLATILE PL/pgSQL
-- function takes a fresh snapshot for each statement it runs, so the assignment and the
-- query below keep that order inside one call.
--
-- That holds only under READ COMMITTED: under REPEATABLE READ or SERIALIZABLE both statements
-- would share the transaction's snapshot while the horizon moved past writers it cannot see,
-- and a reader would skip their events for good. The function refuses to run there.
--
-- SECURITY INVOKER: row-level security applies to the caller as it did to the two statements
-- (the relay and projections read as tenantry_system, which sees every tenant).
CREATE FUNCTION tenantry_feed(after_transaction bigint, after_position bigint, max_events bigint)
RETURNS SETOF events
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    horizon xid8;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'the feed is read under READ COMMITTED only (this transaction is %)',
            current_setting('transaction_isolation');
    END IF;
    horizon := tenantry_feed_horizon();
    RETURN QUERY
    SELECT * FROM events e
    WHERE (e.transaction_id, e.position) > (after_transaction::text::xid8, after_position)
      AND e.transaction_id < horizon
    ORDER BY e.transaction_id, e.position
    LIMIT max_events;
END
$$;
GRANT EXECUTE ON FUNCTION tenantry_feed(bigint, bigint, bigint) TO tenantry_app, tenantry_system;
