//! Erasure: destroying the keys that make personal data readable, and recording it.

use tenantry_domain::organization::{ErasureScope, Organization, OrganizationCommand};
use tenantry_domain::{CustomerRef, OrganizationId, TenantId};

use crate::aggregate::load;
use crate::{CommandBus, CommandError, Execute, Executed, Request};

/// What an erasure destroys.
#[derive(Clone, Debug)]
pub enum Erase {
    /// The personal data the organization recorded until now (its members' and billing
    /// emails, its customers' references and every message): its data keys and all its
    /// customers' are destroyed. Accepted in any status; personal data recorded afterwards is
    /// sealed under new keys.
    Tenant,
    /// What the organization holds of one end customer: the key their reference and their
    /// conversations' messages were sealed under.
    Customer(CustomerRef),
}

impl Execute for Erase {
    type Target = OrganizationId;
    /// The organization after `PersonalDataErased`, and how many keys were destroyed.
    type Output = (Executed<Organization>, u64);

    /// Destroys the keys and records `PersonalDataErased`, in one transaction.
    ///
    /// # Errors
    /// Not found for an unknown organization, or (for a customer) when no personal data of
    /// that customer is held (never recorded, or erased already); otherwise as
    /// [`CommandBus::transact`].
    #[tracing::instrument(skip_all, err(level = "debug"), fields(tenant_id = %org))]
    async fn execute(
        self,
        bus: &CommandBus,
        org: OrganizationId,
        request: &Request,
    ) -> Result<Self::Output, CommandError> {
        let customer = match &self {
            Erase::Tenant => None,
            Erase::Customer(customer) => Some(customer),
        };
        let tenant = TenantId::from(org);
        let metadata = &request.metadata;
        let vault = bus.event_store().vault();
        let done = bus
            .transact(
                tenant,
                request,
                crate::attempt!(|tx| {
                    // Read before the first write (the feed's ordering rule).
                    let mut organization = load::<Organization>(tx, tenant, org.as_uuid()).await?;
                    if !organization.state.exists() {
                        return Err(CommandError::not_found("organization"));
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
                                .ok_or_else(|| CommandError::not_found("customer"))?;
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
