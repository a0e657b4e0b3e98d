-- The event store (DESIGN.md §2): one append-only, hash-partitioned `events` table,
-- the per-stream heads that carry optimistic concurrency and the hash-chain anchors,
-- and the two roles that tenant-scoped and system work switch to.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantry_app') THEN
        CREATE ROLE tenantry_app NOLOGIN NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantry_system') THEN
        CREATE ROLE tenantry_system NOLOGIN NOBYPASSRLS;
    END IF;
    -- The schema owner (the user in DATABASE_URL) switches to these per transaction.
    EXECUTE format('GRANT tenantry_app, tenantry_system TO %I', current_user);
END
$$;

-- The tenant of the current transaction, set with set_config('tenantry.tenant_id', …, true).
-- Outside a tenant transaction it is NULL, and NULL matches no row.
CREATE FUNCTION tenantry_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('tenantry.tenant_id', true), '')::uuid $$;

CREATE SEQUENCE events_position_seq AS bigint;

CREATE TABLE events (
    tenant_id      uuid        NOT NULL,
    stream_type    text        NOT NULL,
    stream_id      uuid        NOT NULL,
    version        bigint      NOT NULL CHECK (version >= 1),
    event_id       uuid        NOT NULL,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL,
    position       bigint      NOT NULL DEFAULT nextval('events_position_seq'),
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    hash           bytea       NOT NULL,
    PRIMARY KEY (tenant_id, stream_type, stream_id, version),
    UNIQUE (tenant_id, event_id)
) PARTITION BY HASH (tenant_id);

ALTER SEQUENCE events_position_seq OWNED BY events.position;

DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE events_p%s PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            lpad(i::text, 2, '0'), i);
    END LOOP;
END
$$;

-- The feed and the tenant history are read in (transaction_id, position) order.
CREATE INDEX events_feed_idx ON events (transaction_id, position);
CREATE INDEX events_tenant_feed_idx ON events (tenant_id, transaction_id, position);

-- Append-only, whoever asks: no grant allows it, and this trigger refuses it anyway.
CREATE FUNCTION events_reject_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();

-- One row per stream: its current version and the hash of its last event. Appends move it
-- with a compare-and-set on the version, so a stale writer changes nothing; verification
-- compares it with the chain, so a removed last event is caught too.
CREATE TABLE streams (
    tenant_id   uuid   NOT NULL,
    stream_type text   NOT NULL,
    stream_id   uuid   NOT NULL,
    version     bigint NOT NULL CHECK (version >= 1),
    hash        bytea  NOT NULL,
    PRIMARY KEY (tenant_id, stream_type, stream_id)
);

-- Tenant isolation: the application role sees its tenant only; the system role (relay,
-- projections, platform admin) sees all. FORCE makes the owner subject to it too.
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY events_tenant ON events TO tenantry_app
    USING (tenant_id = tenantry_current_tenant())
    WITH CHECK (tenant_id = tenantry_current_tenant());
CREATE POLICY events_system ON events TO tenantry_system USING (true) WITH CHECK (true);

ALTER TABLE streams ENABLE ROW LEVEL SECURITY;
ALTER TABLE streams FORCE ROW LEVEL SECURITY;
CREATE POLICY streams_tenant ON streams TO tenantry_app
    USING (tenant_id = tenantry_current_tenant())
    WITH CHECK (tenant_id = tenantry_current_tenant());
CREATE POLICY streams_system ON streams TO tenantry_system USING (true) WITH CHECK (true);

GRANT SELECT, INSERT ON events TO tenantry_app, tenantry_system;
GRANT USAGE ON SEQUENCE events_position_seq TO tenantry_app, tenantry_system;
GRANT SELECT, INSERT, UPDATE ON streams TO tenantry_app, tenantry_system;

-- Checkpoints: where the relay and each projection stand in the feed. Not tenant data.
CREATE TABLE relay_checkpoints (
    name           text        PRIMARY KEY,
    transaction_id bigint      NOT NULL,
    position       bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projection_checkpoints (
    projection     text        PRIMARY KEY,
    transaction_id bigint      NOT NULL,
    position       bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE ON relay_checkpoints, projection_checkpoints TO tenantry_system;
-- Queries wait on projection checkpoints for read-your-writes.
GRANT SELECT ON projection_checkpoints TO tenantry_app;
