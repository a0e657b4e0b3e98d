//! The conversation's events: what has happened to it.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::{
    AgentInstanceId, AgentType, Channel, ConversationId, CustomerRef, MessageContent, MessageId,
    MessageRole, OrganizationId, Resolution, StoreId,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum ConversationEvent {
    ConversationStarted {
        conversation_id: ConversationId,
        agent_instance_id: AgentInstanceId,
        agent_type: AgentType,
        store_id: StoreId,
        organization_id: OrganizationId,
        customer_ref: Option<CustomerRef>,
        channel: Channel,
    },
    MessageAppended {
        message_id: MessageId,
        /// Carried so projections count per instance without a lookup.
        agent_instance_id: AgentInstanceId,
        role: MessageRole,
        content: MessageContent,
        tokens_in: u64,
        tokens_out: u64,
    },
    ConversationEnded {
        agent_instance_id: AgentInstanceId,
        resolution: Resolution,
        messages: u64,
        tokens_in: u64,
        tokens_out: u64,
    },
}

impl DomainEvent for ConversationEvent {
    fn event_type(&self) -> String {
        crate::event_type_of(self)
    }

    fn event_version(&self) -> String {
        "1".into()
    }
}
