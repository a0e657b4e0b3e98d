-- Less planning and analyzing on the hot path.
--
-- tenantry_credential (migration 0008) becomes PL/pgSQL: an SQL function that cannot be
-- inlined (it is SECURITY DEFINER) parses and plans its query on every call, once per API
-- request; PL/pgSQL keeps the plan for the session. Same signature, owner and grants.
CREATE OR REPLACE FUNCTION tenantry_credential(key_hash text)
RETURNS TABLE (tenant_id uuid, key_id uuid, kind text, role text, agent_instance_id uuid,
               revoked_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    SELECT c.tenant_id, c.key_id, c.kind, c.role, c.agent_instance_id, c.revoked_at
    FROM public.credentials c WHERE c.hash = key_hash;
END
$$;

-- Nothing is ever looked up by an event's payload or metadata as a whole, so their
-- statistics serve no plan; gathering them (sorting half-kilobyte jsonb values) was most of
-- the cost of the automatic ANALYZE that a busy `events` table triggers every few seconds.
ALTER TABLE events ALTER COLUMN payload SET STATISTICS 0;
ALTER TABLE events ALTER COLUMN metadata SET STATISTICS 0;
