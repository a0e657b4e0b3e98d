//! Organization commands.

use chrono::{DateTime, Utc};
use tenantry_domain::organization::{Organization, OrganizationCommand};
use tenantry_domain::{
    ApiKeyId, Email, KeyName, MemberId, OrganizationId, OrganizationName, Role, Slug, TenantId,
    Terms, Tier,
};
use tenantry_eventstore::error::is_unique_violation;

use crate::aggregate::load_revealed;
use crate::keys::{insert_credential, revoke_credential, Grant, Secret, API_KEY_PREFIX};
use crate::{CommandBus, CommandError, Execute, Executed, Request};

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

impl Execute for NewOrganization {
    /// Nothing: the organization does not exist yet.
    type Target = ();
    /// The organization, its owner key's id and the owner key's secret (shown once).
    type Output = (Executed<Organization>, ApiKeyId, Secret);

    /// Opens a new organization: reserves its slug platform-wide and records
    /// `OrganizationCreated`, its first owner and the owner's API key, in one transaction, so
    /// a slug is never held by an organization that does not exist. The owner key's secret is
    /// returned once.
    ///
    /// # Errors
    /// [`CommandError::SlugTaken`] when another organization has the slug; otherwise as
    /// [`CommandBus::transact`].
    #[tracing::instrument(skip_all, err(level = "debug"), fields(slug = %self.slug))]
    async fn execute(
        self,
        bus: &CommandBus,
        _: (),
        request: &Request,
    ) -> Result<Self::Output, CommandError> {
        let new = self;
        let id = OrganizationId::new();
        let tenant = TenantId::from(id);
        let owner = MemberId::new();
        let owner_key = ApiKeyId::new();
        let owner_secret = Secret::generate(API_KEY_PREFIX);
        let secret = &owner_secret;
        let metadata = &request.metadata;
        let vault = bus.event_store().vault();
        let new = &new;
        let done = bus
            .transact(
                tenant,
                request,
                crate::attempt!(|tx| {
                    let reserved = sqlx::query(
                        "INSERT INTO organization_slugs (slug, tenant_id) VALUES ($1, $2)",
                    )
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
                    let mut org =
                        load_revealed::<Organization>(tx, vault, tenant, id.as_uuid()).await?;
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
                    // The first owner's API key, so the organization can be used at once.
                    let issue = OrganizationCommand::IssueApiKey {
                        key_id: owner_key,
                        name: KeyName::parse("owner").expect("a valid key name"),
                        role: Role::Owner,
                        prefix: secret.prefix.clone(),
                        hash: secret.hash.clone(),
                    };
                    org.execute(tx, tenant, issue, metadata).await?;
                    let grant = Grant::Api(Role::Owner);
                    insert_credential(tx, tenant, owner_key.as_uuid(), &secret.hash, grant).await?;
                    Ok(org.executed(&[]))
                }),
            )
            .await?;
        Ok((done, owner_key, owner_secret))
    }
}

impl Execute for OrganizationCommand {
    type Target = OrganizationId;
    type Output = Executed<Organization>;

    /// Any command on the organization itself (details, tier, subscription, suspension,
    /// closing, members, API keys). Issuing and revoking an API key also writes its
    /// credential, in the same transaction.
    ///
    /// # Errors
    /// As [`CommandBus::transact`].
    #[tracing::instrument(skip_all, err(level = "debug"), fields(tenant_id = %target))]
    async fn execute(
        self,
        bus: &CommandBus,
        target: OrganizationId,
        request: &Request,
    ) -> Result<Executed<Organization>, CommandError> {
        let id = target;
        let tenant = TenantId::from(id);
        let metadata = &request.metadata;
        let vault = bus.event_store().vault();
        let command = &self;
        bus.transact(
            tenant,
            request,
            crate::attempt!(|tx| {
                let mut org =
                    load_revealed::<Organization>(tx, vault, tenant, id.as_uuid()).await?;
                org.check_expected(request)?;
                org.execute(tx, tenant, command.clone(), metadata).await?;
                match command {
                    OrganizationCommand::IssueApiKey {
                        key_id, role, hash, ..
                    } => {
                        insert_credential(tx, tenant, key_id.as_uuid(), hash, Grant::Api(*role))
                            .await?
                    }
                    OrganizationCommand::RevokeApiKey { key_id } => {
                        revoke_credential(tx, tenant, key_id.as_uuid()).await?
                    }
                    _ => {}
                }
                Ok(org.executed(&[]))
            }),
        )
        .await
    }
}

/// A new API key with a role, for the organization it is run on.
#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub name: KeyName,
    pub role: Role,
}

impl Execute for NewApiKey {
    type Target = OrganizationId;
    /// The organization, the key's id and its secret (shown once).
    type Output = (Executed<Organization>, ApiKeyId, Secret);

    /// Issues the key: `IssueApiKey` with a secret generated here, of which only the hash and
    /// a display prefix are recorded.
    ///
    /// # Errors
    /// As [`OrganizationCommand`]'s.
    async fn execute(
        self,
        bus: &CommandBus,
        org: OrganizationId,
        request: &Request,
    ) -> Result<Self::Output, CommandError> {
        let key_id = ApiKeyId::new();
        let secret = Secret::generate(API_KEY_PREFIX);
        let command = OrganizationCommand::IssueApiKey {
            key_id,
            name: self.name,
            role: self.role,
            prefix: secret.prefix.clone(),
            hash: secret.hash.clone(),
        };
        let done = bus.execute(org, command, request).await?;
        Ok((done, key_id, secret))
    }
}
