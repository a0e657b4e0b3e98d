//! The organizations read model: one row per organization.

use async_trait::async_trait;
use cqrs_es::Aggregate;
use sqlx::PgConnection;
use tenantry_domain::organization::{Organization, OrganizationEvent};
use tenantry_eventstore::RecordedEvent;

use crate::{Projection, ProjectionError};

/// Builds `organizations`.
pub struct Organizations;

/// Its name, also used by queries that wait for it.
pub const NAME: &str = "organizations";

#[async_trait]
impl Projection for Organizations {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if event.stream_type != Organization::TYPE {
            return Ok(());
        }
        match event.decode::<OrganizationEvent>()? {
            OrganizationEvent::OrganizationCreated {
                organization_id,
                name,
                slug,
                tier,
                billing_email,
                status,
            } => {
                sqlx::query(
                    "INSERT INTO organizations (tenant_id, name, slug, tier, billing_email, status, \
                                                version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                )
                .bind(organization_id.as_uuid())
                .bind(name.as_str())
                .bind(slug.as_str())
                .bind(tier.as_str())
                .bind(billing_email.as_str())
                .bind(status.as_str())
                .bind(event.version)
                .bind(event.recorded_at)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}
