//! Erasure: destroying the keys that make personal data readable, and recording it.

use tenantry_domain::organization::{ErasureScope, Organization, OrganizationCommand};
use tenantry_domain::{CustomerRef, OrganizationId, TenantId};

use crate::executor::{load, Request};
use crate::stores::not_found;
use crate::{CommandBus, CommandError, Executed};

impl CommandBus {
    /// Erases the personal data `org` recorded until now (its members' and billing emails,
    /// its customers' references and every message): its data keys and all its customers'
    /// are destroyed and `PersonalDataErased` is recorded, in one transaction. Accepted in any
    /// status; personal data recorded afterwards is sealed under new keys. Returns how many
    /// keys were destroyed.
    ///
    /// # Errors
    /// Not found for an unknown organization; otherwise as [`CommandBus::transact`].
    #[tracing::instrument(skip_all, err(level = "debug"), fields(tenant_id = %org))]
    pub async fn erase_tenant(
        &self,
        org: OrganizationId,
        request: &Request,
    ) -> Result<(Executed<Organization>, u64), CommandError> {
        self.erase(org, None, request).await
    }

    /// Erases what `org` holds of one end customer: the key their reference and their
    /// conversations' messages were sealed under.
    ///
    /// # Errors
    /// Not found when no personal data of that customer is held (never recorded, or erased
    /// already); otherwise as [`CommandBus::erase_tenant`].
    #[tracing::instrument(skip_all, err(level = "debug"), fields(tenant_id = %org))]
    pub async fn erase_customer(
        &self,
        org: OrganizationId,
        customer: &CustomerRef,
        request: &Request,
    ) -> Result<(Executed<Organization>, u64), CommandError> {
        self.erase(org, Some(customer), request).await
    }

    async fn erase(
        &self,
        org: OrganizationId,
        customer: Option<&CustomerRef>,
        request: &Request,
    ) -> Result<(Executed<Organization>, u64), CommandError> {
        let tenant = TenantId::from(org);
        let metadata = &request.metadata;
        let vault = self.event_store().vault();
        let done = self
            .transact(
                tenant,
                request,
                crate::attempt!(|tx| {
                    // Read before the first write (the feed's ordering rule).
                    let mut organization = load::<Organization>(tx, tenant, org.as_uuid()).await?;
                    if !organization.state.exists() {
                        return Err(not_found("organization"));
                    }
                    let command = match customer {
                        None => OrganizationCommand::RecordErasure {
                            scope: ErasureScope::Tenant,
                            key_id: None,
                            keys_destroyed: vault.erase_tenant(tx, tenant).await?,
                        },
                        Some(customer) => {
                            let key = vault
                                .erase_customer(tx, tenant, customer.as_str())
                                .await?
                                .ok_or_else(|| not_found("customer"))?;
                            OrganizationCommand::RecordErasure {
                                scope: ErasureScope::Customer,
                                key_id: Some(key),
                                keys_destroyed: 1,
                            }
                        }
                    };
                    organization.execute(tx, tenant, command, metadata).await?;
                    Ok(organization.executed(&[]))
                }),
            )
            .await;
        // This server forgets the keys it kept before it answers; the others when the
        // erasure's notification reaches them (migration 0014).
        vault.forget_keys();
        let done = done?;
        // Also right for an idempotent replay: its aggregate is the one after the first run.
        let keys_destroyed = done.aggregate.last_erasure.unwrap_or(0);
        Ok((done, keys_destroyed))
    }
}
