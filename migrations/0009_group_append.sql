-- Group commit: many single-stream appends, of any tenants, in one statement and one commit.
--
-- Each append moves its stream head by compare-and-set exactly as `append` does (a new stream
-- is created only if it does not exist; an existing one moves only from the version and hash
-- its writer loaded), and only the appends whose head moved insert their events. An append
-- whose head did not move writes nothing and is absent from the result: its writer is told
-- of the conflict. The caller never puts one stream in a batch twice.
--
-- Tenant isolation: the function runs as tenantry_system, which sees every tenant, so the
-- tenant is explicit instead. Every row it writes or compares carries the tenant its append
-- names, and the stream head it moves is looked up by that tenant too, so an append can only
-- ever touch its own tenant's streams. The caller names the tenant exactly as it would have
-- scoped a tenant transaction (the command's authenticated organization).
--
-- PL/pgSQL so the plan is kept for the session, and generic from the first call: a custom
-- plan for each batch's arrays cost more than writing the batch. Called outside a
-- transaction it is one round trip and one commit for the whole batch. The INSERT locks `events` before the statement
-- writes anything, so the feed horizon (migration 0007) sees the writer in time.
CREATE FUNCTION tenantry_append_batch(
    tenants uuid[], stream_types text[], stream_ids uuid[], expected bigint[],
    expected_hashes bytea[], head_versions bigint[], head_hashes bytea[],
    event_streams integer[], versions bigint[], event_ids uuid[], event_types text[],
    schema_versions integer[], payloads jsonb[], metadatas jsonb[], recorded_ats timestamptz[],
    hashes bytea[])
RETURNS TABLE (stream integer, version bigint, event_position bigint, event_transaction bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    WITH s AS (
        SELECT * FROM unnest(tenants, stream_types, stream_ids, expected, expected_hashes,
                             head_versions, head_hashes)
            WITH ORDINALITY AS s(tenant_id, stream_type, stream_id, expected, expected_hash,
                                 head_version, head_hash, stream)
    ),
    created AS (
        INSERT INTO public.streams AS h (tenant_id, stream_type, stream_id, version, hash)
        SELECT s.tenant_id, s.stream_type, s.stream_id, s.head_version, s.head_hash
        FROM s WHERE s.expected = 0
        ON CONFLICT DO NOTHING
        RETURNING h.tenant_id, h.stream_type, h.stream_id
    ),
    moved AS (
        UPDATE public.streams AS h SET version = s.head_version, hash = s.head_hash
        FROM s
        WHERE s.expected > 0
          AND h.tenant_id = s.tenant_id AND h.stream_type = s.stream_type
          AND h.stream_id = s.stream_id
          AND h.version = s.expected AND h.hash = s.expected_hash
        RETURNING h.tenant_id, h.stream_type, h.stream_id
    ),
    won AS (
        SELECT s.* FROM s
        JOIN (SELECT * FROM created UNION ALL SELECT * FROM moved) AS m
          ON m.tenant_id = s.tenant_id AND m.stream_type = s.stream_type
         AND m.stream_id = s.stream_id
    ),
    inserted AS (
        INSERT INTO public.events (tenant_id, stream_type, stream_id, version, event_id,
                                   event_type, schema_version, payload, metadata, recorded_at,
                                   hash)
        SELECT w.tenant_id, w.stream_type, w.stream_id, e.version, e.event_id, e.event_type,
               e.schema_version, e.payload, e.metadata, e.recorded_at, e.hash
        FROM unnest(event_streams, versions, event_ids, event_types, schema_versions, payloads,
                    metadatas, recorded_ats, hashes)
            WITH ORDINALITY AS e(stream, version, event_id, event_type, schema_version,
                                 payload, metadata, recorded_at, hash, ord)
        JOIN won AS w ON w.stream = e.stream
        ORDER BY e.ord
        RETURNING events.tenant_id, events.stream_type, events.stream_id, events.version,
                  events.position, events.transaction_id
    )
    SELECT w.stream::integer, i.version, i.position, i.transaction_id::text::bigint
    FROM inserted AS i
    JOIN won AS w ON w.tenant_id = i.tenant_id AND w.stream_type = i.stream_type
                 AND w.stream_id = i.stream_id;
END
$$;
GRANT CREATE ON SCHEMA public TO tenantry_system;
ALTER FUNCTION tenantry_append_batch(uuid[], text[], uuid[], bigint[], bytea[], bigint[], bytea[],
    integer[], bigint[], uuid[], text[], integer[], jsonb[], jsonb[], timestamptz[], bytea[])
    OWNER TO tenantry_system;
REVOKE CREATE ON SCHEMA public FROM tenantry_system;
REVOKE ALL ON FUNCTION tenantry_append_batch(uuid[], text[], uuid[], bigint[], bytea[],
    bigint[], bytea[], integer[], bigint[], uuid[], text[], integer[], jsonb[], jsonb[],
    timestamptz[], bytea[]) FROM PUBLIC;
DO $$
BEGIN
    EXECUTE format('GRANT EXECUTE ON FUNCTION tenantry_append_batch(uuid[], text[], uuid[], '
        'bigint[], bytea[], bigint[], bytea[], integer[], bigint[], uuid[], text[], integer[], '
        'jsonb[], jsonb[], timestamptz[], bytea[]) TO %I', current_user);
END
$$;
