//! How a conversation decides: each command is checked against the state its events left and
//! its parents' context, then refused or answered with the events that record it.

use crate::agent_instance::InstanceStatus;
use crate::DomainError;

use super::{Conversation, ConversationAction, ConversationCommand, ConversationEvent};

/// The most tokens one message may count, in or out: far above any model's context, and low
/// enough that no sum of them overflows a counter.
pub const MAX_TOKENS_PER_MESSAGE: u64 = 10_000_000;

impl Conversation {
    /// The events that record `command`, or why it is refused.
    pub(super) fn decide(
        &self,
        command: ConversationCommand,
    ) -> Result<Vec<ConversationEvent>, DomainError> {
        use ConversationAction as A;
        use ConversationEvent as E;
        let ConversationCommand {
            org,
            store,
            instance,
            action,
        } = command;
        org.ensure_accepts_commands()?;
        if instance.status == InstanceStatus::Archived {
            return Err(DomainError::InstanceArchived);
        }
        if let A::Start {
            id,
            agent_instance_id,
            customer_ref,
            channel,
        } = action
        {
            if self.exists() {
                return Err(DomainError::AlreadyExists("conversation"));
            }
            org.ensure_accepts_conversations()?;
            if !store.active {
                return Err(DomainError::StoreInactive);
            }
            if instance.status != InstanceStatus::Active {
                return Err(DomainError::InstanceNotActive(instance.status.as_str()));
            }
            return Ok(vec![E::ConversationStarted {
                conversation_id: id,
                agent_instance_id,
                agent_type: instance.agent_type,
                store_id: instance.store_id,
                organization_id: org.id,
                customer_ref,
                channel,
            }]);
        }
        let agent_instance_id = self
            .agent_instance_id
            .ok_or(DomainError::NotFound("conversation"))?;
        if self.ended.is_some() {
            return Err(DomainError::ConversationEnded);
        }
        Ok(match action {
            A::Start { .. } => unreachable!("handled above"),
            A::AppendMessage {
                tokens_in,
                tokens_out,
                ..
            } if tokens_in > MAX_TOKENS_PER_MESSAGE || tokens_out > MAX_TOKENS_PER_MESSAGE => {
                let field = if tokens_in > MAX_TOKENS_PER_MESSAGE {
                    "tokens_in"
                } else {
                    "tokens_out"
                };
                return Err(DomainError::Invalid(crate::ValidationError::new(
                    field,
                    format!("must be at most {MAX_TOKENS_PER_MESSAGE} per message"),
                )));
            }
            A::AppendMessage {
                message_id,
                role,
                content,
                tokens_in,
                tokens_out,
            } => vec![E::MessageAppended {
                message_id,
                agent_instance_id,
                role,
                content,
                tokens_in,
                tokens_out,
            }],
            A::End { resolution } => vec![E::ConversationEnded {
                agent_instance_id,
                resolution,
                messages: self.messages,
                tokens_in: self.tokens_in,
                tokens_out: self.tokens_out,
            }],
        })
    }
}
