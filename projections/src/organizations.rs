//! The organizations read model: one row per organization.

use async_trait::async_trait;
use cqrs_es::Aggregate;
use sqlx::PgConnection;
use tenantry_domain::organization::{Organization, OrganizationEvent, OrganizationStatus};
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

    fn tables(&self) -> &'static [&'static str] {
        &["organizations"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if event.stream_type != Organization::TYPE {
            return Ok(());
        }
        let tenant = event.tenant_id;
        // Every organization event moves the row's version; some change more.
        let change: Option<(&str, Vec<String>)> = match event.decode::<OrganizationEvent>()? {
            OrganizationEvent::OrganizationCreated {
                organization_id,
                name,
                slug,
                tier,
                billing_email,
                status,
                ..
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
                .bind(event.stored_text("billing_email").unwrap_or(billing_email.as_str()))
                .bind(status.as_str())
                .bind(event.version)
                .bind(event.recorded_at)
                .execute(conn)
                .await?;
                return Ok(());
            }
            OrganizationEvent::OrganizationDetailsChanged {
                name,
                billing_email,
                ..
            } => Some((
                "name = $4, billing_email = $5",
                vec![
                    name.to_string(),
                    event
                        .stored_text("billing_email")
                        .unwrap_or(billing_email.as_str())
                        .to_owned(),
                ],
            )),
            OrganizationEvent::TierChanged { tier, .. } => {
                Some(("tier = $4", vec![tier.to_string()]))
            }
            OrganizationEvent::SubscriptionStatusChanged { status, .. }
            | OrganizationEvent::OrganizationReactivated { status } => {
                Some(("status = $4", vec![status.as_str().to_owned()]))
            }
            OrganizationEvent::OrganizationSuspended { .. } => Some((
                "status = $4",
                vec![OrganizationStatus::Suspended.as_str().to_owned()],
            )),
            OrganizationEvent::OrganizationClosed {} => Some((
                "status = $4",
                vec![OrganizationStatus::Closed.as_str().to_owned()],
            )),
            _ => None,
        };
        let (set, values) = change.map_or(("", Vec::new()), |(set, values)| (set, values));
        let separator = if set.is_empty() { "" } else { ", " };
        let sql = format!(
            "UPDATE organizations SET {set}{separator}version = $2, updated_at = $3 WHERE tenant_id = $1"
        );
        let mut query = sqlx::query(&sql)
            .bind(tenant)
            .bind(event.version)
            .bind(event.recorded_at);
        for value in values {
            query = query.bind(value);
        }
        query.execute(conn).await?;
        Ok(())
    }
}
