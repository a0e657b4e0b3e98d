//! The Conversation aggregate: an agent instance talking with one end customer.

mod commands;
mod decide;
mod events;
#[cfg(test)]
mod tests;

use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::{
    AgentInstanceId, Channel, ConversationId, CustomerRef, DomainError, OrganizationId, Resolution,
    StoreId,
};

pub use commands::{ConversationAction, ConversationCommand};
pub use decide::MAX_TOKENS_PER_MESSAGE;
pub use events::ConversationEvent;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: Option<ConversationId>,
    pub agent_instance_id: Option<AgentInstanceId>,
    pub store_id: Option<StoreId>,
    pub organization_id: Option<OrganizationId>,
    pub customer_ref: Option<CustomerRef>,
    pub channel: Option<Channel>,
    pub ended: Option<Resolution>,
    pub messages: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

impl Conversation {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }
}

impl Aggregate for Conversation {
    const TYPE: &'static str = "conversation";
    type Command = ConversationCommand;
    type Event = ConversationEvent;
    type Error = DomainError;
    type Services = ();

    handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        use ConversationEvent as E;
        match event {
            E::ConversationStarted {
                conversation_id,
                agent_instance_id,
                store_id,
                organization_id,
                customer_ref,
                channel,
                ..
            } => {
                self.id = Some(conversation_id);
                self.agent_instance_id = Some(agent_instance_id);
                self.store_id = Some(store_id);
                self.organization_id = Some(organization_id);
                self.customer_ref = customer_ref;
                self.channel = Some(channel);
            }
            E::MessageAppended {
                tokens_in,
                tokens_out,
                ..
            } => {
                self.messages += 1;
                self.tokens_in = self.tokens_in.saturating_add(tokens_in);
                self.tokens_out = self.tokens_out.saturating_add(tokens_out);
            }
            E::ConversationEnded { resolution, .. } => self.ended = Some(resolution),
        }
    }
}
