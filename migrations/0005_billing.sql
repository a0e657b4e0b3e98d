-- Read models of the `billing` projection: usage counters, the terms timeline and billable
-- conversations that invoices are computed from, daily volume, and finalized invoices.

-- The organization's terms from each instant on (tier changes, trials, closing). A trial
-- records its end as a change dated in the future.
CREATE TABLE billing_terms (
    tenant_id      uuid        NOT NULL,
    effective_at   timestamptz NOT NULL,
    tier           text        NOT NULL,
    base_fee       numeric     NOT NULL,
    included       bigint      NOT NULL,
    overage_rate   numeric     NOT NULL,
    trial          boolean     NOT NULL,
    closed         boolean     NOT NULL,
    PRIMARY KEY (tenant_id, effective_at)
);

-- One row per started conversation: the billable unit, counted in the segment and UTC month
-- of its start.
CREATE TABLE billable_conversations (
    tenant_id       uuid        NOT NULL,
    started_at      timestamptz NOT NULL,
    conversation_id uuid        NOT NULL,
    PRIMARY KEY (tenant_id, started_at, conversation_id)
);

CREATE TABLE usage_monthly (
    tenant_id     uuid        NOT NULL,
    month         text        NOT NULL,
    conversations bigint      NOT NULL DEFAULT 0,
    messages      bigint      NOT NULL DEFAULT 0,
    tokens_in     bigint      NOT NULL DEFAULT 0,
    tokens_out    bigint      NOT NULL DEFAULT 0,
    last_activity timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, month)
);

CREATE TABLE usage_by_instance (
    tenant_id     uuid   NOT NULL,
    month         text   NOT NULL,
    instance_id   uuid   NOT NULL,
    conversations bigint NOT NULL DEFAULT 0,
    messages      bigint NOT NULL DEFAULT 0,
    tokens_in     bigint NOT NULL DEFAULT 0,
    tokens_out    bigint NOT NULL DEFAULT 0,
    last_activity timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, month, instance_id)
);

CREATE TABLE daily_volume (
    tenant_id     uuid   NOT NULL,
    day           date   NOT NULL,
    instance_id   uuid   NOT NULL,
    store_id      uuid   NOT NULL,
    conversations bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, instance_id)
);

-- Usage alerts recorded (80 % and 100 % of the included conversations, once per month).
CREATE TABLE usage_alerts (
    tenant_id   uuid        NOT NULL,
    month       text        NOT NULL,
    threshold   integer     NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, month, threshold)
);

-- Alerts the usage projection decided, waiting for the policy worker to record them on the
-- organization stream in a command transaction of their own (see docs/ARCHITECTURE.md).
CREATE TABLE usage_alert_intents (
    tenant_id  uuid    NOT NULL,
    month      text    NOT NULL,
    threshold  integer NOT NULL,
    PRIMARY KEY (tenant_id, month, threshold)
);
ALTER TABLE usage_alert_intents ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_alert_intents FORCE ROW LEVEL SECURITY;
CREATE POLICY usage_alert_intents_system ON usage_alert_intents TO tenantry_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, DELETE ON usage_alert_intents TO tenantry_system;

-- Finalized invoices: copied from InvoiceFinalized, never changed after.
CREATE TABLE invoices (
    tenant_id    uuid        NOT NULL,
    month        text        NOT NULL,
    number       text        NOT NULL,
    lines        jsonb       NOT NULL,
    total        numeric     NOT NULL,
    finalized_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, month),
    UNIQUE (number)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['billing_terms', 'billable_conversations', 'usage_monthly',
                             'usage_by_instance', 'daily_volume', 'usage_alerts', 'invoices'] LOOP
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
