//! Store commands. Creating and reactivating a store take a store slot on the organization
//! stream and deactivating gives it back, in the store command's transaction.

use tenantry_domain::organization::{Organization, OrganizationCommand};
use tenantry_domain::store::{Store, StoreAction, StoreCommand};
use tenantry_domain::{OrganizationId, StoreId, TenantId};

use crate::executor::{load, Request};
use crate::{CommandBus, CommandError, Executed};

impl CommandBus {
    /// Runs `action` on store `store_id` of organization `org` (for `Create`, the id inside
    /// the action).
    ///
    /// # Errors
    /// As [`CommandBus::transact`]; [`tenantry_domain::DomainError::TierLimitReached`] when the
    /// tier's store limit is reached.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(tenant_id = %org, store_id = %store_id))]
    pub async fn store(
        &self,
        org: OrganizationId,
        store_id: StoreId,
        action: StoreAction,
        request: &Request,
    ) -> Result<Executed<Store>, CommandError> {
        let tenant = TenantId::from(org);
        let store_id = match &action {
            StoreAction::Create {
                id,
                organization_id,
                ..
            } if *organization_id == org => *id,
            StoreAction::Create { .. } => return Err(not_found("organization")),
            _ => store_id,
        };
        let metadata = &request.metadata;
        let action = &action;
        self.transact(
            tenant,
            request,
            crate::attempt!(|tx| {
                let mut organization = load::<Organization>(tx, tenant, org.as_uuid()).await?;
                let ctx = organization
                    .state
                    .context()
                    .map_err(|e| CommandError::rejected(&e))?;
                let mut store = load::<Store>(tx, tenant, store_id.as_uuid()).await?;
                store.check_expected(request)?;
                if !matches!(action, StoreAction::Create { .. })
                    && store.state.organization_id != Some(org)
                {
                    // Not this organization's store (or none at all): the same answer.
                    return Err(not_found("store"));
                }
                store
                    .execute(
                        tx,
                        tenant,
                        StoreCommand {
                            org: ctx,
                            action: action.clone(),
                        },
                        metadata,
                    )
                    .await?;
                let slot = match action {
                    StoreAction::Create { .. } | StoreAction::Reactivate => {
                        Some(OrganizationCommand::AcquireStoreSlot { store_id })
                    }
                    StoreAction::Deactivate => {
                        Some(OrganizationCommand::ReleaseStoreSlot { store_id })
                    }
                    StoreAction::Update { .. } => None,
                };
                if let Some(slot) = slot {
                    organization.execute(tx, tenant, slot, metadata).await?;
                }
                Ok(store.executed(&[organization.position()]))
            }),
        )
        .await
    }
}

/// The refusal for something that does not exist in this organization.
pub(crate) fn not_found(what: &'static str) -> CommandError {
    CommandError::rejected(&tenantry_domain::DomainError::NotFound(what))
}
