//! Queries of the `organizations` read model.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::PgConnection;
use tenantry_domain::organization::Organization;
use tenantry_domain::personal::PersonalKind;
use tenantry_domain::{OrganizationId, Tier};
use uuid::Uuid;

use super::{Page, PageRequest, Query, Sealed};
use crate::organizations::NAME as ORGANIZATIONS;
use crate::ProjectionError;

/// An organization as the API shows it.
#[derive(Debug, Serialize, JsonSchema, sqlx::FromRow)]
#[schemars(rename = "Organization")]
pub struct OrganizationView {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    #[schemars(extend("enum" = ["basic", "pro", "enterprise"]))]
    pub tier: String,
    #[schemars(extend("format" = "email"))]
    pub billing_email: String,
    #[schemars(extend("enum" = ["trial", "active", "past_due", "suspended", "closed"]))]
    pub status: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

impl Sealed for OrganizationView {
    fn sealed(&mut self) -> Vec<(&mut String, PersonalKind)> {
        vec![(&mut self.billing_email, PersonalKind::Email)]
    }
}

impl OrganizationView {
    /// The organization as a command left it, created at `created_at` (`None` when it does
    /// not exist).
    pub fn of(org: &Organization, version: i64, created_at: DateTime<Utc>) -> Option<Self> {
        Some(Self {
            id: org.id?.as_uuid(),
            name: org.name.as_ref()?.to_string(),
            slug: org.slug.as_ref()?.to_string(),
            tier: org.tier?.to_string(),
            billing_email: org.billing_email.as_ref()?.to_string(),
            status: org.status.as_str().to_owned(),
            version,
            created_at,
        })
    }
}

const COLUMNS: &str =
    "tenant_id AS id, name, slug, tier, billing_email, status, version, created_at";

/// One organization.
pub struct OrganizationById(pub OrganizationId);

impl Query for OrganizationById {
    type Output = Option<OrganizationView>;
    const READS: &'static [&'static str] = &[ORGANIZATIONS];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let sql = format!("SELECT {COLUMNS} FROM organizations WHERE tenant_id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(self.0.as_uuid())
            .fetch_optional(conn)
            .await?)
    }
}

impl Sealed for Tier {}

/// An organization's tier, as the read model has it (`None` before it is there).
pub struct TierOf(pub OrganizationId);

impl Query for TierOf {
    type Output = Option<Tier>;
    const READS: &'static [&'static str] = &[ORGANIZATIONS];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let tier: Option<String> =
            sqlx::query_scalar("SELECT tier FROM organizations WHERE tenant_id = $1")
                .bind(self.0.as_uuid())
                .fetch_optional(conn)
                .await?;
        Ok(tier.and_then(|t| t.parse().ok()))
    }
}

/// A page of the platform's organizations (platform scope).
pub struct Organizations(pub PageRequest);

impl Query for Organizations {
    type Output = Page<OrganizationView>;
    const READS: &'static [&'static str] = &[ORGANIZATIONS];

    async fn run(self, conn: &mut PgConnection) -> Result<Self::Output, ProjectionError> {
        let page = self.0;
        let sql = format!(
            "SELECT {COLUMNS} FROM organizations \
             WHERE ($1::uuid IS NULL OR tenant_id < $1) ORDER BY tenant_id DESC LIMIT $2"
        );
        let rows: Vec<OrganizationView> = sqlx::query_as(&sql)
            .bind(page.after)
            .bind(page.limit + 1)
            .fetch_all(conn)
            .await?;
        Ok(Page::of(rows, page.limit, |o| o.id))
    }
}
