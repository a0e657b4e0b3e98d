//! Agent-instance commands. Deploying and resuming take an active-instance slot on the
//! organization stream; pausing and archiving an active instance give it back, in the
//! instance command's transaction. Concurrent deploys of one organization thus serialize on
//! the organization stream's version and never exceed the tier's limit.

use tenantry_domain::agent_instance::{
    AgentInstance, AgentInstanceAction, AgentInstanceCommand, InstanceStatus,
};
use tenantry_domain::context::StoreContext;
use tenantry_domain::organization::{Organization, OrganizationCommand};
use tenantry_domain::store::Store;
use tenantry_domain::{AgentInstanceId, OrganizationId, StoreId, TenantId};

use crate::aggregate::load;
use crate::keys::{insert_credential, revoke_credential, Grant};
use crate::{CommandBus, CommandError, Execute, Executed, Request};

impl Execute for AgentInstanceAction {
    /// The organization and the agent instance (for `Deploy`, the id and store inside the
    /// action).
    type Target = (OrganizationId, AgentInstanceId);
    type Output = Executed<AgentInstance>;

    /// Runs the action on the agent instance.
    ///
    /// # Errors
    /// As [`CommandBus::transact`]; tier refusals for the instance limit, agent types and
    /// prompt overrides.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(tenant_id = %target.0, instance_id = %target.1))]
    async fn execute(
        self,
        bus: &CommandBus,
        target: Self::Target,
        request: &Request,
    ) -> Result<Executed<AgentInstance>, CommandError> {
        let (org, instance_id) = target;
        let action = self;
        let tenant = TenantId::from(org);
        let (instance_id, deploy_store) = match &action {
            AgentInstanceAction::Deploy {
                id,
                store_id,
                organization_id,
                ..
            } if *organization_id == org => (*id, Some(*store_id)),
            AgentInstanceAction::Deploy { .. } => {
                return Err(CommandError::not_found("organization"))
            }
            _ => (instance_id, None),
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
                let mut instance = load::<AgentInstance>(tx, tenant, instance_id.as_uuid()).await?;
                instance.check_expected(request)?;
                let store_id: StoreId = match deploy_store {
                    Some(store_id) => store_id,
                    None if instance.state.organization_id == Some(org) => instance
                        .state
                        .store_id
                        .ok_or_else(|| CommandError::not_found("agent instance"))?,
                    None => return Err(CommandError::not_found("agent instance")),
                };
                let store = load::<Store>(tx, tenant, store_id.as_uuid()).await?;
                if store.state.organization_id != Some(org) {
                    return Err(CommandError::not_found("store"));
                }
                let was_active =
                    instance.state.exists() && instance.state.status == InstanceStatus::Active;
                let command = AgentInstanceCommand {
                    org: ctx,
                    store: StoreContext {
                        active: store.state.active,
                    },
                    action: action.clone(),
                };
                instance.execute(tx, tenant, command, metadata).await?;
                let slot = match action {
                    AgentInstanceAction::Deploy { agent_type, .. } => {
                        Some(OrganizationCommand::AcquireInstanceSlot {
                            instance_id,
                            agent_type: *agent_type,
                        })
                    }
                    AgentInstanceAction::Resume => Some(OrganizationCommand::AcquireInstanceSlot {
                        instance_id,
                        agent_type: instance
                            .state
                            .agent_type
                            .ok_or_else(|| CommandError::not_found("agent instance"))?,
                    }),
                    AgentInstanceAction::Pause => {
                        Some(OrganizationCommand::ReleaseInstanceSlot { instance_id })
                    }
                    AgentInstanceAction::Archive if was_active => {
                        Some(OrganizationCommand::ReleaseInstanceSlot { instance_id })
                    }
                    _ => None,
                };
                if let Some(slot) = slot {
                    organization.execute(tx, tenant, slot, metadata).await?;
                }
                match action {
                    AgentInstanceAction::IssueWidgetKey { key_id, hash, .. } => {
                        let grant = Grant::Widget(instance_id);
                        insert_credential(tx, tenant, key_id.as_uuid(), hash, grant).await?
                    }
                    AgentInstanceAction::RevokeWidgetKey { key_id } => {
                        revoke_credential(tx, tenant, key_id.as_uuid()).await?
                    }
                    _ => {}
                }
                Ok(instance.executed(&[organization.position()]))
            }),
        )
        .await
    }
}
