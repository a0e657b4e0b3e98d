//! Organization commands.

use chrono::{DateTime, Utc};
use tenantry_domain::organization::{Organization, OrganizationCommand};
use tenantry_domain::{
    Email, MemberId, OrganizationId, OrganizationName, Slug, TenantId, Terms, Tier,
};
use tenantry_eventstore::error::is_unique_violation;

use crate::executor::{load, Request};
use crate::{CommandBus, CommandError, Executed};

/// What a new organization is made of.
#[derive(Clone, Debug)]
pub struct NewOrganization {
    pub name: OrganizationName,
    pub slug: Slug,
    pub tier: Tier,
    /// Required for Enterprise, refused for the listed tiers.
    pub custom_terms: Option<Terms>,
    pub billing_email: Email,
    /// The first owner; the billing email when `None`.
    pub owner_email: Option<Email>,
    /// Starts the organization on a trial ending then.
    pub trial_ends_at: Option<DateTime<Utc>>,
}

impl NewOrganization {
    /// A new organization on `tier`'s list terms, owned by its billing contact.
    pub fn new(name: OrganizationName, slug: Slug, tier: Tier, billing_email: Email) -> Self {
        Self {
            name,
            slug,
            tier,
            custom_terms: None,
            billing_email,
            owner_email: None,
            trial_ends_at: None,
        }
    }
}

impl CommandBus {
    /// Opens a new organization: reserves its slug platform-wide and records
    /// `OrganizationCreated` and its first owner, in one transaction, so a slug is never held
    /// by an organization that does not exist.
    ///
    /// # Errors
    /// [`CommandError::SlugTaken`] when another organization has the slug; otherwise as
    /// [`CommandBus::transact`].
    #[tracing::instrument(skip_all, err(level = "debug"), fields(slug = %new.slug))]
    pub async fn create_organization(
        &self,
        new: NewOrganization,
        request: &Request,
    ) -> Result<Executed<Organization>, CommandError> {
        let id = OrganizationId::new();
        let tenant = TenantId::from(id);
        let owner = MemberId::new();
        let metadata = &request.metadata;
        let new = &new;
        self.transact(
            tenant,
            request,
            crate::attempt!(|tx| {
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
                let mut org = load::<Organization>(tx, tenant, id.as_uuid()).await?;
                let command = OrganizationCommand::Create {
                    id,
                    name: new.name.clone(),
                    slug: new.slug.clone(),
                    tier: new.tier,
                    custom_terms: new.custom_terms,
                    billing_email: new.billing_email.clone(),
                    owner,
                    owner_email: new
                        .owner_email
                        .clone()
                        .unwrap_or_else(|| new.billing_email.clone()),
                    trial_ends_at: new.trial_ends_at,
                };
                org.execute(tx, tenant, command, metadata).await?;
                Ok(org.executed(&[]))
            }),
        )
        .await
    }

    /// Any command on the organization itself (details, tier, subscription, suspension,
    /// closing, members, API keys).
    ///
    /// # Errors
    /// As [`CommandBus::transact`].
    pub async fn organization(
        &self,
        id: OrganizationId,
        command: OrganizationCommand,
        request: &Request,
    ) -> Result<Executed<Organization>, CommandError> {
        self.execute::<Organization>(TenantId::from(id), id.as_uuid(), command, request)
            .await
    }
}
