-- Idempotency keys, scoped by organization (tenant). A key remembers what its first command
-- recorded; the same key with the same request replays that, a different request conflicts.
-- Rows are kept at least 24 hours (purged by the server after 48).
CREATE TABLE idempotency_keys (
    tenant_id   uuid        NOT NULL,
    key         text        NOT NULL,
    fingerprint text        NOT NULL,
    outcome     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY idempotency_keys_tenant ON idempotency_keys TO tenantry_app
    USING (tenant_id = tenantry_current_tenant())
    WITH CHECK (tenant_id = tenantry_current_tenant());
CREATE POLICY idempotency_keys_system ON idempotency_keys TO tenantry_system
    USING (true) WITH CHECK (true);
GRANT SELECT, INSERT ON idempotency_keys TO tenantry_app;
GRANT SELECT, DELETE ON idempotency_keys TO tenantry_system;
