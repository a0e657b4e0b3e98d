//! The conversation's commands: what may be asked of it.

use crate::context::{InstanceContext, OrgContext, StoreContext};
use crate::{
    AgentInstanceId, Channel, ConversationId, CustomerRef, MessageContent, MessageId, MessageRole,
    Resolution,
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
    /// Starts a conversation on the instance; what it records of the instance's store, type
    /// and organization comes from the command's contexts.
    Start {
        id: ConversationId,
        agent_instance_id: AgentInstanceId,
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
