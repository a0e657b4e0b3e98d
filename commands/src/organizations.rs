//! Organization commands that need more than an append.

use tenantry_domain::organization::{Organization, OrganizationCommand};
use tenantry_domain::{Email, OrganizationId, OrganizationName, Slug, TenantId, Tier};
use tenantry_eventstore::error::is_unique_violation;
use tenantry_eventstore::Metadata;

use crate::executor::decide_and_append;
use crate::{CommandBus, CommandError, Executed};

/// What a new organization is made of.
#[derive(Clone, Debug)]
pub struct NewOrganization {
    pub name: OrganizationName,
    pub slug: Slug,
    pub tier: Tier,
    pub billing_email: Email,
}

impl CommandBus {
    /// Opens a new organization: reserves its slug platform-wide and records
    /// `OrganizationCreated`, in one transaction, so a slug is never held by an organization
    /// that does not exist.
    ///
    /// # Errors
    /// [`CommandError::SlugTaken`] when another organization has the slug; otherwise as
    /// [`CommandBus::execute`].
    #[tracing::instrument(skip_all, err, fields(slug = %new.slug))]
    pub async fn create_organization(
        &self,
        new: NewOrganization,
        metadata: &Metadata,
    ) -> Result<Executed<Organization>, CommandError> {
        let id = OrganizationId::new();
        let tenant = TenantId::from(id);
        let mut tx = self.store().begin_tenant(tenant).await?;
        let reserved =
            sqlx::query("INSERT INTO organization_slugs (slug, tenant_id) VALUES ($1, $2)")
                .bind(new.slug.as_str())
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await;
        match reserved {
            Err(err) if is_unique_violation(&err) => {
                return Err(CommandError::SlugTaken(new.slug.to_string()))
            }
            other => other?,
        };
        let command = OrganizationCommand::Create {
            id,
            name: new.name,
            slug: new.slug,
            tier: new.tier,
            billing_email: new.billing_email,
        };
        let done =
            decide_and_append::<Organization>(&mut tx, tenant, id.as_uuid(), command, metadata)
                .await?;
        tx.commit().await?;
        self.notify_appended();
        Ok(done)
    }
}
