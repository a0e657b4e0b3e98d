-- Credentials: written in the same transaction as ApiKeyIssued / WidgetKeyIssued and their
-- revocations (write-side lookups, like organization_slugs), so a revoked key fails at once.
-- Authentication reads them by hash before it knows the tenant, as tenantry_system.
CREATE TABLE credentials (
    hash              text        PRIMARY KEY,
    tenant_id         uuid        NOT NULL,
    key_id            uuid        NOT NULL,
    kind              text        NOT NULL CHECK (kind IN ('api', 'widget')),
    role              text,
    agent_instance_id uuid,
    revoked_at        timestamptz,
    last_used_at      timestamptz,
    UNIQUE (tenant_id, key_id)
);
ALTER TABLE credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY credentials_tenant ON credentials TO tenantry_app
    USING (tenant_id = tenantry_current_tenant())
    WITH CHECK (tenant_id = tenantry_current_tenant());
CREATE POLICY credentials_system ON credentials TO tenantry_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE ON credentials TO tenantry_app;
GRANT SELECT, UPDATE ON credentials TO tenantry_system;

-- Read models of the `directory` projection: what lists and single-resource reads show.
CREATE TABLE members (
    tenant_id  uuid        NOT NULL,
    member_id  uuid        NOT NULL,
    email      text        NOT NULL,
    role       text        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, member_id)
);

CREATE TABLE api_keys (
    tenant_id  uuid        NOT NULL,
    key_id     uuid        NOT NULL,
    name       text        NOT NULL,
    role       text        NOT NULL,
    prefix     text        NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    PRIMARY KEY (tenant_id, key_id)
);

CREATE TABLE stores (
    tenant_id  uuid        NOT NULL,
    store_id   uuid        NOT NULL,
    name       text        NOT NULL,
    domain     text        NOT NULL,
    platform   text        NOT NULL,
    status     text        NOT NULL,
    version    bigint      NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, store_id)
);

CREATE TABLE agent_instances (
    tenant_id   uuid        NOT NULL,
    instance_id uuid        NOT NULL,
    store_id    uuid        NOT NULL,
    agent_type  text        NOT NULL,
    version     text        NOT NULL,
    config      jsonb       NOT NULL,
    status      text        NOT NULL,
    stream_version bigint   NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, instance_id)
);
CREATE INDEX agent_instances_store_idx ON agent_instances (tenant_id, store_id, instance_id);

CREATE TABLE widget_keys (
    tenant_id   uuid        NOT NULL,
    key_id      uuid        NOT NULL,
    instance_id uuid        NOT NULL,
    prefix      text        NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    PRIMARY KEY (tenant_id, key_id)
);

CREATE TABLE conversations (
    tenant_id       uuid        NOT NULL,
    conversation_id uuid        NOT NULL,
    instance_id     uuid        NOT NULL,
    store_id        uuid        NOT NULL,
    customer_ref    text,
    channel         text        NOT NULL,
    status          text        NOT NULL,
    resolution      text,
    messages        bigint      NOT NULL DEFAULT 0,
    tokens_in       bigint      NOT NULL DEFAULT 0,
    tokens_out      bigint      NOT NULL DEFAULT 0,
    version         bigint      NOT NULL,
    started_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id)
);
CREATE INDEX conversations_instance_idx ON conversations (tenant_id, instance_id, conversation_id);

CREATE TABLE messages (
    tenant_id       uuid        NOT NULL,
    conversation_id uuid        NOT NULL,
    message_id      uuid        NOT NULL,
    seq             bigint      NOT NULL,
    role            text        NOT NULL,
    content         text        NOT NULL,
    tokens_in       bigint      NOT NULL,
    tokens_out      bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, seq)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['members', 'api_keys', 'stores', 'agent_instances', 'widget_keys',
                             'conversations', 'messages'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY %I ON %I TO tenantry_app USING (tenant_id = tenantry_current_tenant())',
                       t || '_tenant', t);
        EXECUTE format('CREATE POLICY %I ON %I TO tenantry_system USING (true) WITH CHECK (true)',
                       t || '_system', t);
        EXECUTE format('GRANT SELECT ON %I TO tenantry_app', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO tenantry_system', t);
    END LOOP;
END
$$;

-- Which tenant a stream belongs to, for the platform admin's routes by id.
CREATE INDEX streams_by_id_idx ON streams (stream_type, stream_id);
