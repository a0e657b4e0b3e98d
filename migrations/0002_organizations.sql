-- Platform-wide slug uniqueness, reserved in the same transaction as OrganizationCreated.
CREATE TABLE organization_slugs (
    slug      text PRIMARY KEY,
    tenant_id uuid NOT NULL UNIQUE
);
ALTER TABLE organization_slugs ENABLE ROW LEVEL SECURITY;
ALTER TABLE organization_slugs FORCE ROW LEVEL SECURITY;
CREATE POLICY organization_slugs_tenant ON organization_slugs TO tenantry_app
    USING (tenant_id = tenantry_current_tenant())
    WITH CHECK (tenant_id = tenantry_current_tenant());
CREATE POLICY organization_slugs_system ON organization_slugs TO tenantry_system
    USING (true) WITH CHECK (true);
GRANT SELECT, INSERT ON organization_slugs TO tenantry_app, tenantry_system;

-- Read model: organizations, built by the `organizations` projection.
CREATE TABLE organizations (
    tenant_id     uuid        PRIMARY KEY,
    name          text        NOT NULL,
    slug          text        NOT NULL,
    tier          text        NOT NULL,
    billing_email text        NOT NULL,
    status        text        NOT NULL,
    version       bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY organizations_tenant ON organizations TO tenantry_app
    USING (tenant_id = tenantry_current_tenant());
CREATE POLICY organizations_system ON organizations TO tenantry_system
    USING (true) WITH CHECK (true);
GRANT SELECT ON organizations TO tenantry_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON organizations TO tenantry_system;
