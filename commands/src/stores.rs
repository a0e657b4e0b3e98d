//! Store commands. Creating and reactivating a store take a store slot on the organization
//! stream and deactivating gives it back, in the store command's transaction.

use tenantry_domain::organization::{Organization, OrganizationCommand};
use tenantry_domain::store::{Store, StoreAction, StoreCommand};
use tenantry_domain::{OrganizationId, StoreId, TenantId};

use crate::aggregate::load;
use crate::{CommandBus, CommandError, Execute, Executed, Request};

impl Execute for StoreAction {
    /// The organization and the store (for `Create`, the id inside the action).
    type Target = (OrganizationId, StoreId);
    type Output = Executed<Store>;

    /// Runs the action on the store.
    ///
    /// # Errors
    /// As [`CommandBus::transact`]; [`tenantry_domain::DomainError::TierLimitReached`] when the
    /// tier's store limit is reached.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(tenant_id = %target.0, store_id = %target.1))]
    async fn execute(
        self,
        bus: &CommandBus,
        target: Self::Target,
        request: &Request,
    ) -> Result<Executed<Store>, CommandError> {
        let (org, store_id) = target;
        let action = self;
        let tenant = TenantId::from(org);
        let store_id = match &action {
            StoreAction::Create {
                id,
                organization_id,
                ..
            } if *organization_id == org => *id,
            StoreAction::Create { .. } => return Err(CommandError::not_found("organization")),
            _ => store_id,
        };
        let metadata = &request.metadata;
        let action = &action;
        bus.transact(
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
                    return Err(CommandError::not_found("store"));
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
