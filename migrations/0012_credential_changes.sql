-- Servers keep credentials in memory between requests (api::credentials), so every change to
-- what a credential grants is announced: `NOTIFY tenantry_credentials, '<hash>'`, delivered to
-- every listening server when the changing transaction commits. Only the columns that decide
-- authentication fire it; the batched `last_used_at` updates do not.
CREATE FUNCTION tenantry_credential_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantry_credentials', OLD.hash);
    RETURN NULL;
END
$$;
CREATE TRIGGER tenantry_credential_changed
    AFTER UPDATE OF hash, tenant_id, key_id, kind, role, agent_instance_id, revoked_at
          OR DELETE ON credentials
    FOR EACH ROW EXECUTE FUNCTION tenantry_credential_changed();

-- TRUNCATE fires no row trigger: a truncation announces '*', and every server forgets every
-- credential.
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
