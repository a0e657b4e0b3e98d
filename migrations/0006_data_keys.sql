-- Data keys for crypto-shredding: personal fields of events are sealed (AES-256-GCM) under a
-- per-tenant key, or a per-end-customer key, each stored here wrapped by the master key that
-- only the processes hold. Erasure destroys the wrapped key (and the customer lookup) and
-- keeps a tombstone, so every copy of the sealed data — events, read models, NATS, exports,
-- backups taken afterwards — reads as erased, while the events and their hash chain stay.
CREATE TABLE data_keys (
    tenant_id  uuid        NOT NULL,
    key_id     uuid        NOT NULL,
    scope      text        NOT NULL CHECK (scope IN ('tenant', 'customer')),
    -- The tenant key: empty. A customer key: HMAC-SHA256 of the customer reference under a
    -- key derived from the master key (the reference itself is never stored). NULL once erased.
    lookup     bytea,
    -- nonce || AES-256-GCM(master key, data key). NULL once erased.
    wrapped    bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at  timestamptz,
    PRIMARY KEY (tenant_id, key_id),
    CHECK ((erased_at IS NULL) = (wrapped IS NOT NULL AND lookup IS NOT NULL))
);
-- At most one live key per tenant, and per customer of a tenant.
CREATE UNIQUE INDEX data_keys_live ON data_keys (tenant_id, scope, lookup) WHERE erased_at IS NULL;
-- Opening a sealed value knows only the key id written into it.
CREATE INDEX data_keys_key_id ON data_keys (key_id);

ALTER TABLE data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY data_keys_tenant ON data_keys TO tenantry_app
    USING (tenant_id = tenantry_current_tenant())
    WITH CHECK (tenant_id = tenantry_current_tenant());
CREATE POLICY data_keys_system ON data_keys TO tenantry_system USING (true) WITH CHECK (true);
-- Keys are created and erased, never deleted: the tombstone records that the data was erased.
GRANT SELECT, INSERT, UPDATE ON data_keys TO tenantry_app;
GRANT SELECT, INSERT, UPDATE ON data_keys TO tenantry_system;
