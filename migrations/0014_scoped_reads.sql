-- Tenant reads in one round trip, inside a tenant transaction or outside any.
--
-- A conversation command read its streams and its data keys in a tenant transaction: BEGIN
-- and the scope, the read, a key, COMMIT. Each function below confines itself to the tenant
-- it is given (it sets `tenantry.tenant_id` for its own statements and puts the caller's
-- value back before it returns) and runs as `tenantry_app`, so row-level security applies as
-- in a tenant transaction. Outside a transaction each call is one round trip and one
-- snapshot; inside one it is part of it. Inside another tenant's transaction it refuses:
-- a transaction confined to one tenant never sees another's rows, through these either.
--
-- Data-key rows also say whether they are `settled`: certainly committed by a transaction
-- other than the caller's. The caller has written nothing when it has no transaction id yet,
-- and otherwise `age(xmin) > 0` holds only for rows of transactions older than its own (its
-- own rows, savepoints included, have an age of 0 or less; a visible row of another
-- transaction has committed). Rows more than 2^31 transactions old read as unsettled: never
-- wrongly settled, only no longer kept. Servers keep only settled keys in memory
-- (eventstore::vault), never one that the caller's own transaction wrote and might still roll
-- back.

-- Confines the statements that follow to `p_tenant` and returns the caller's tenant setting,
-- for the caller to put back; refuses inside another tenant's transaction.
CREATE FUNCTION tenantry_enter_tenant(p_tenant uuid) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    previous text := current_setting('tenantry.tenant_id', true);
BEGIN
    IF nullif(previous, '') IS NOT NULL AND previous <> p_tenant::text THEN
        RAISE EXCEPTION 'a transaction of tenant % cannot read tenant %', previous, p_tenant
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM set_config('tenantry.tenant_id', p_tenant::text, true);
    RETURN previous;
END
$$;

CREATE FUNCTION tenantry_read_streams(
    p_tenant uuid, p_types text[], p_ids uuid[], p_via_types text[], p_via_fields text[])
RETURNS TABLE (k integer, tenant_id uuid, stream_type text, stream_id uuid, version bigint,
               event_id uuid, event_type text, schema_version integer, payload jsonb,
               metadata jsonb, recorded_at timestamptz, "position" bigint,
               transaction_id bigint, hash bytea)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    previous text := tenantry_enter_tenant(p_tenant);
BEGIN
    IF cardinality(p_ids) <> cardinality(p_types)
       OR cardinality(p_via_types) <> cardinality(p_types)
       OR cardinality(p_via_fields) <> cardinality(p_types) THEN
        RAISE EXCEPTION 'tenantry_read_streams: the four arrays differ in length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Stream `k` is (type, id), or, when a via type is given, the stream of that type whose
    -- id the first event of (via type, id) names in its payload field. Each stream is read by
    -- a lateral primary-key lookup: with a join, statistics that took tenants for small ones
    -- made PostgreSQL hash the tenant's whole history. The first event is found by `ORDER BY
    -- version LIMIT 1`, not `version = 1`: both are exact, but only this form makes the
    -- primary key the cheapest index in a generic plan whatever the statistics say.
    RETURN QUERY
        SELECT (w.k - 1)::integer, e.tenant_id, e.stream_type, e.stream_id, e.version,
               e.event_id, e.event_type, e.schema_version, e.payload, e.metadata,
               e.recorded_at, e.position, e.transaction_id::text::bigint, e.hash
        FROM unnest(p_types, p_ids, p_via_types, p_via_fields)
                 WITH ORDINALITY AS w(t, s, vt, vf, k)
        CROSS JOIN LATERAL (
            SELECT CASE WHEN w.vt IS NULL THEN w.s ELSE (
                SELECT (f.payload->>w.vf)::uuid FROM public.events f
                WHERE f.tenant_id = p_tenant AND f.stream_type = w.vt AND f.stream_id = w.s
                ORDER BY f.version LIMIT 1) END AS s
        ) AS named
        CROSS JOIN LATERAL (
            SELECT ev.* FROM public.events ev
            WHERE ev.tenant_id = p_tenant AND ev.stream_type = w.t AND ev.stream_id = named.s
            ORDER BY ev.version
        ) AS e
        ORDER BY w.k, e.version;
    PERFORM set_config('tenantry.tenant_id', coalesce(previous, ''), true);
END
$$;

-- The live keys `p_ids` of `p_tenant` (erased ones are absent).
CREATE FUNCTION tenantry_data_keys(p_tenant uuid, p_ids uuid[])
RETURNS TABLE (tenant_id uuid, key_id uuid, wrapped bytea, settled boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    previous text := tenantry_enter_tenant(p_tenant);
BEGIN
    RETURN QUERY
        SELECT d.tenant_id, d.key_id, d.wrapped, (pg_current_xact_id_if_assigned() IS NULL OR age(d.xmin) > 0)
        FROM public.data_keys d
        WHERE d.tenant_id = p_tenant AND d.key_id = ANY (p_ids) AND d.erased_at IS NULL;
    PERFORM set_config('tenantry.tenant_id', coalesce(previous, ''), true);
END
$$;

-- The live key of `p_tenant` for (`p_scope`, `p_lookup`); when there is none, `p_new_id`
-- wrapped as `p_new_wrapped` becomes it. When another writer makes the same key at the same
-- moment, the insert does nothing and the next round finds theirs.
CREATE FUNCTION tenantry_live_data_key(
    p_tenant uuid, p_scope text, p_lookup bytea, p_new_id uuid, p_new_wrapped bytea)
RETURNS TABLE (key_id uuid, wrapped bytea, settled boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    previous text := tenantry_enter_tenant(p_tenant);
BEGIN
    FOR round IN 1..3 LOOP
        RETURN QUERY
            SELECT d.key_id, d.wrapped, (pg_current_xact_id_if_assigned() IS NULL OR age(d.xmin) > 0)
        FROM public.data_keys d
            WHERE d.tenant_id = p_tenant AND d.scope = p_scope AND d.lookup = p_lookup
              AND d.erased_at IS NULL;
        EXIT WHEN FOUND;
        INSERT INTO public.data_keys (tenant_id, key_id, scope, lookup, wrapped)
        VALUES (p_tenant, p_new_id, p_scope, p_lookup, p_new_wrapped)
        ON CONFLICT DO NOTHING;
        IF FOUND THEN
            RETURN QUERY SELECT p_new_id, p_new_wrapped, false;
            EXIT;
        END IF;
    END LOOP;
    PERFORM set_config('tenantry.tenant_id', coalesce(previous, ''), true);
END
$$;

-- Owned by `tenantry_app`, so they run as it (a new owner needs CREATE on the schema at the
-- moment it takes a function over; only then). Callable by that role (inside tenant
-- transactions), by `tenantry_system` (opening a tenant's values in a system transaction) and
-- by the application's login role, nobody else.
GRANT CREATE ON SCHEMA public TO tenantry_app;
ALTER FUNCTION tenantry_enter_tenant(uuid) OWNER TO tenantry_app;
ALTER FUNCTION tenantry_read_streams(uuid, text[], uuid[], text[], text[]) OWNER TO tenantry_app;
ALTER FUNCTION tenantry_data_keys(uuid, uuid[]) OWNER TO tenantry_app;
ALTER FUNCTION tenantry_live_data_key(uuid, text, bytea, uuid, bytea) OWNER TO tenantry_app;
REVOKE CREATE ON SCHEMA public FROM tenantry_app;
REVOKE ALL ON FUNCTION tenantry_enter_tenant(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry_read_streams(uuid, text[], uuid[], text[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry_data_keys(uuid, uuid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry_live_data_key(uuid, text, bytea, uuid, bytea) FROM PUBLIC;
DO $$
BEGIN
    EXECUTE format('GRANT EXECUTE ON FUNCTION tenantry_read_streams(uuid, text[], uuid[], text[], text[]), '
                   'tenantry_data_keys(uuid, uuid[]), '
                   'tenantry_live_data_key(uuid, text, bytea, uuid, bytea) TO tenantry_system, %I',
                   current_user);
END
$$;

-- Servers keep settled data keys in memory; every change to `data_keys` other than a new key
-- (an erasure, above all) announces `NOTIFY tenantry_data_keys, '*'` when it commits, and
-- every listening server forgets every key it kept. Erasures are rare; a key is looked up
-- again at its next use.
CREATE FUNCTION tenantry_data_keys_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantry_data_keys', '*');
    RETURN NULL;
END
$$;
CREATE TRIGGER tenantry_data_keys_changed
    AFTER UPDATE OR DELETE OR TRUNCATE ON data_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tenantry_data_keys_changed();
