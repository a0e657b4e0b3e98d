-- Servers keep the streams a conversation command reads in memory between commands
-- (eventstore::kept). Two kinds, two rules:
--
-- - A conversation stream is never announced. Only its own appends move it, and each is a
--   compare-and-set on its head: a command decided from a stale copy fails to append, and
--   decides again from what is stored.
-- - An organization, store or agent instance stream is a parent a command only reads, so
--   nothing would catch a stale copy. Each move of its head announces
--   `NOTIFY tenantry_streams, '<tenant>:<type>:<id>'` when the moving transaction commits,
--   and every listening server forgets that stream.
-- - A stream of any other type is never kept, and never announced.
--
-- The WHEN clause is evaluated without calling a function, so other appends (nearly all of
-- them) pay nothing. The list is `kept::ANNOUNCED`'s.
CREATE FUNCTION tenantry_stream_moved() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantry_streams',
                      NEW.tenant_id::text || ':' || NEW.stream_type || ':' || NEW.stream_id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER tenantry_stream_moved
    AFTER INSERT OR UPDATE ON streams
    FOR EACH ROW WHEN (NEW.stream_type IN ('organization', 'store', 'agent_instance'))
    EXECUTE FUNCTION tenantry_stream_moved();

-- A head removed (by hand, or a tenant's data deleted) or the table truncated announces '*':
-- every server forgets every stream it keeps, conversations included.
CREATE FUNCTION tenantry_streams_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantry_streams', '*');
    RETURN NULL;
END
$$;
CREATE TRIGGER tenantry_streams_removed
    AFTER DELETE OR TRUNCATE ON streams
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry_streams_removed();
