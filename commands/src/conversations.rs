//! Conversation commands: each checks the conversation's agent instance, store and
//! organization as they stand in the same transaction.

use tenantry_domain::agent_instance::AgentInstance;
use tenantry_domain::context::{InstanceContext, StoreContext};
use tenantry_domain::conversation::{Conversation, ConversationAction, ConversationCommand};
use tenantry_domain::organization::Organization;
use tenantry_domain::store::Store;
use tenantry_domain::{ConversationId, OrganizationId, TenantId};

use tenantry_eventstore::read::{read_streams, StreamRef};
use tenantry_eventstore::{vault, RecordedEvent};

use crate::executor::{fold, Request};
use crate::stores::not_found;
use crate::{CommandBus, CommandError, Executed};

impl CommandBus {
    /// Runs `action` on conversation `conversation_id` of organization `org` (for `Start`, the
    /// id and agent instance inside the action).
    ///
    /// # Errors
    /// As [`CommandBus::transact`].
    #[tracing::instrument(skip_all, err(level = "debug"), fields(tenant_id = %org, conversation_id = %conversation_id))]
    pub async fn conversation(
        &self,
        org: OrganizationId,
        conversation_id: ConversationId,
        action: ConversationAction,
        request: &Request,
    ) -> Result<Executed<Conversation>, CommandError> {
        let tenant = TenantId::from(org);
        let (conversation_id, start_instance) = match &action {
            ConversationAction::Start {
                id,
                agent_instance_id,
                ..
            } => (*id, Some(*agent_instance_id)),
            _ => (conversation_id, None),
        };
        let metadata = &request.metadata;
        let vault = self.event_store().vault();
        let action = &action;
        self.transact_grouped(
            tenant,
            request,
            crate::attempt!(|tx| {
                // The conversation and its parents in one round trip; an agent instance and its
                // store are named by the first event of the stream below them, and never change.
                let c = conversation_id.as_uuid();
                let wanted = match start_instance {
                    Some(instance) => [
                        StreamRef::Id("conversation", c),
                        StreamRef::Id("agent_instance", instance.as_uuid()),
                        StreamRef::NamedBy(
                            "store",
                            "agent_instance",
                            instance.as_uuid(),
                            "store_id",
                        ),
                        StreamRef::Id("organization", org.as_uuid()),
                    ],
                    None => [
                        StreamRef::Id("conversation", c),
                        StreamRef::NamedBy(
                            "agent_instance",
                            "conversation",
                            c,
                            "agent_instance_id",
                        ),
                        StreamRef::NamedBy("store", "conversation", c, "store_id"),
                        StreamRef::Id("organization", org.as_uuid()),
                    ],
                };
                let [conversation, instance, store, organization]: [Vec<RecordedEvent>; 4] =
                    read_streams(tx, tenant, &wanted)
                        .await?
                        .try_into()
                        .map_err(|_| not_found("conversation"))?;
                // The customer reference is shown in the command's answer: open it (only the
                // first event; the aggregate keeps no message content). The customer's key is
                // taken from the sealed reference first.
                let subject = vault::subject_of(&conversation);
                let mut conversation = conversation;
                if let Some(first) = conversation.first_mut() {
                    if vault::holds_sealed(&first.event_type, &first.payload) {
                        vault.reveal(tx, std::slice::from_mut(first)).await?;
                    }
                }
                let conversation = fold::<Conversation>(c, conversation, subject)?.sealing(vault);
                conversation.check_expected(request)?;
                let instance_id = match start_instance {
                    Some(id) => id,
                    None if conversation.state.organization_id == Some(org) => conversation
                        .state
                        .agent_instance_id
                        .ok_or_else(|| not_found("conversation"))?,
                    None => return Err(not_found("conversation")),
                };
                let instance = fold::<AgentInstance>(instance_id.as_uuid(), instance, None)?;
                if instance.state.organization_id != Some(org) {
                    return Err(not_found("agent instance"));
                }
                let store_id = instance
                    .state
                    .store_id
                    .ok_or_else(|| not_found("agent instance"))?;
                // Named by the instance (Start) or the conversation, which records the
                // instance's store: the same stream as `store_id`.
                let store = fold::<Store>(store_id.as_uuid(), store, None)?;
                let organization = fold::<Organization>(org.as_uuid(), organization, None)?;
                let ctx = organization
                    .state
                    .context()
                    .map_err(|e| CommandError::rejected(&e))?;
                let action = match action {
                    // The conversation records what its parents are, as the store says.
                    ConversationAction::Start {
                        id,
                        customer_ref,
                        channel,
                        ..
                    } => ConversationAction::Start {
                        id: *id,
                        agent_instance_id: instance_id,
                        agent_type: instance
                            .state
                            .agent_type
                            .ok_or_else(|| not_found("agent instance"))?,
                        store_id,
                        organization_id: org,
                        customer_ref: customer_ref.clone(),
                        channel: *channel,
                    },
                    other => other.clone(),
                };
                let command = ConversationCommand {
                    org: ctx,
                    store: StoreContext {
                        active: store.state.active,
                    },
                    instance: InstanceContext {
                        status: instance.state.status,
                    },
                    action,
                };
                conversation.stage(tx, tenant, command, metadata).await
            }),
        )
        .await
    }
}
