//! The conversation's commands: what may be asked of it.

use crate::context::{InstanceContext, OrgContext, StoreContext};
use crate::{
    AgentInstanceId, AgentType, Channel, ConversationId, CustomerRef, MessageContent, MessageId,
    MessageRole, OrganizationId, Resolution, StoreId,
};

/// A command on a conversation, with what it needs to know of its parents.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationCommand {
    pub org: OrgContext,
    pub store: StoreContext,
    pub instance: InstanceContext,
    pub action: ConversationAction,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConversationAction {
    Start {
        id: ConversationId,
        agent_instance_id: AgentInstanceId,
        agent_type: AgentType,
        store_id: StoreId,
        organization_id: OrganizationId,
        customer_ref: Option<CustomerRef>,
        channel: Channel,
    },
    AppendMessage {
        message_id: MessageId,
        role: MessageRole,
        content: MessageContent,
        tokens_in: u64,
        tokens_out: u64,
    },
    End {
        resolution: Resolution,
    },
}
