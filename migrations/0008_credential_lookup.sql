-- Authentication in one round trip: the credential of a key hash, read as tenantry_system
-- (the only role that sees credentials before the tenant is known) by a function that role
-- owns, callable by the application's login role only. Before, each request began a system
-- transaction, looked the key up and committed: three round trips.
CREATE FUNCTION tenantry_credential(key_hash text)
RETURNS TABLE (tenant_id uuid, key_id uuid, kind text, role text, agent_instance_id uuid,
               revoked_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT c.tenant_id, c.key_id, c.kind, c.role, c.agent_instance_id, c.revoked_at
    FROM public.credentials c WHERE c.hash = key_hash
$$;
-- A new owner needs CREATE on the schema at the moment it takes the function over; only then.
GRANT CREATE ON SCHEMA public TO tenantry_system;
ALTER FUNCTION tenantry_credential(text) OWNER TO tenantry_system;
REVOKE CREATE ON SCHEMA public FROM tenantry_system;
REVOKE ALL ON FUNCTION tenantry_credential(text) FROM PUBLIC;
DO $$
BEGIN
    EXECUTE format('GRANT EXECUTE ON FUNCTION tenantry_credential(text) TO %I', current_user);
END
$$;
