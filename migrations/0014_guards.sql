-- Two guards found in review.
--
-- 1. Servers keep credentials in memory (migration 0012). TRUNCATE fires no row trigger, so
--    a truncation announces '*', and every server forgets every credential.
CREATE FUNCTION tenantry_credentials_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantry_credentials', '*');
    RETURN NULL;
END
$$;
CREATE TRIGGER tenantry_credentials_truncated
    AFTER TRUNCATE ON credentials
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry_credentials_truncated();

-- 2. The feed read (migration 0011) relies on each of its statements taking a fresh
--    snapshot, which holds only under READ COMMITTED: under REPEATABLE READ or SERIALIZABLE
--    the read would keep the transaction's snapshot while the horizon moved past writers it
--    cannot see, and a reader would skip their events for good. Refuse there.
CREATE OR REPLACE FUNCTION tenantry_feed(after_transaction bigint, after_position bigint,
                                         max_events bigint)
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
