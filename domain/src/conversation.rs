//! The Conversation aggregate: an agent instance talking with one end customer.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::agent_instance::InstanceStatus;
use crate::context::{InstanceContext, OrgContext, StoreContext};
use crate::{
    AgentInstanceId, AgentType, Channel, ConversationId, CustomerRef, DomainError, MessageContent,
    MessageId, MessageRole, OrganizationId, Resolution, StoreId,
};

/// The most tokens one message may count, in or out: far above any model's context, and low
/// enough that no sum of them overflows a counter.
pub const MAX_TOKENS_PER_MESSAGE: u64 = 10_000_000;

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

    fn decide(&self, command: ConversationCommand) -> Result<Vec<ConversationEvent>, DomainError> {
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
            agent_type,
            store_id,
            organization_id,
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
                agent_type,
                store_id,
                organization_id,
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

impl Aggregate for Conversation {
    const TYPE: &'static str = "conversation";
    type Command = ConversationCommand;
    type Event = ConversationEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::organization::OrganizationStatus;
    use crate::Tier;

    fn conversation() -> TestFramework<Conversation> {
        TestFramework::<Conversation>::with(())
    }

    struct Ids {
        id: ConversationId,
        instance: AgentInstanceId,
        store: StoreId,
        org: OrganizationId,
    }

    fn ids() -> Ids {
        Ids {
            id: ConversationId::new(),
            instance: AgentInstanceId::new(),
            store: StoreId::new(),
            org: OrganizationId::new(),
        }
    }

    fn start(ids: &Ids) -> ConversationAction {
        ConversationAction::Start {
            id: ids.id,
            agent_instance_id: ids.instance,
            agent_type: AgentType::CustomerService,
            store_id: ids.store,
            organization_id: ids.org,
            customer_ref: Some(CustomerRef::parse("cust-42").unwrap()),
            channel: Channel::Web,
        }
    }

    fn started(ids: &Ids) -> ConversationEvent {
        ConversationEvent::ConversationStarted {
            conversation_id: ids.id,
            agent_instance_id: ids.instance,
            agent_type: AgentType::CustomerService,
            store_id: ids.store,
            organization_id: ids.org,
            customer_ref: Some(CustomerRef::parse("cust-42").unwrap()),
            channel: Channel::Web,
        }
    }

    fn with(
        org: OrganizationStatus,
        store_active: bool,
        instance: InstanceStatus,
        action: ConversationAction,
    ) -> ConversationCommand {
        ConversationCommand {
            org: OrgContext {
                status: org,
                tier: Tier::Basic,
            },
            store: StoreContext {
                active: store_active,
            },
            instance: InstanceContext { status: instance },
            action,
        }
    }

    fn ok(action: ConversationAction) -> ConversationCommand {
        with(
            OrganizationStatus::Active,
            true,
            InstanceStatus::Active,
            action,
        )
    }

    fn message(ids: &Ids) -> (ConversationAction, ConversationEvent) {
        let message_id = MessageId::new();
        (
            ConversationAction::AppendMessage {
                message_id,
                role: MessageRole::Customer,
                content: MessageContent::parse("Where is my order?").unwrap(),
                tokens_in: 12,
                tokens_out: 0,
            },
            ConversationEvent::MessageAppended {
                message_id,
                agent_instance_id: ids.instance,
                role: MessageRole::Customer,
                content: MessageContent::parse("Where is my order?").unwrap(),
                tokens_in: 12,
                tokens_out: 0,
            },
        )
    }

    #[test]
    fn a_conversation_starts_on_an_active_instance_of_an_active_store() {
        let ids = ids();
        conversation()
            .given_no_previous_events()
            .when(ok(start(&ids)))
            .then_expect_events(vec![started(&ids)]);
        conversation()
            .given_no_previous_events()
            .when(with(
                OrganizationStatus::Trial,
                true,
                InstanceStatus::Active,
                start(&ids),
            ))
            .then_expect_events(vec![started(&ids)]);
        for (org, store, instance, error) in [
            (
                OrganizationStatus::Active,
                true,
                InstanceStatus::Paused,
                DomainError::InstanceNotActive("paused"),
            ),
            (
                OrganizationStatus::Active,
                true,
                InstanceStatus::Archived,
                DomainError::InstanceArchived,
            ),
            (
                OrganizationStatus::Active,
                false,
                InstanceStatus::Active,
                DomainError::StoreInactive,
            ),
            (
                OrganizationStatus::PastDue,
                true,
                InstanceStatus::Active,
                DomainError::SubscriptionInactive("past_due"),
            ),
            (
                OrganizationStatus::Suspended,
                true,
                InstanceStatus::Active,
                DomainError::OrganizationSuspended,
            ),
            (
                OrganizationStatus::Closed,
                true,
                InstanceStatus::Active,
                DomainError::OrganizationClosed,
            ),
        ] {
            conversation()
                .given_no_previous_events()
                .when(with(org, store, instance, start(&ids)))
                .then_expect_error(error);
        }
    }

    #[test]
    fn messages_go_to_open_conversations_only() {
        let ids = ids();
        let (append, appended) = message(&ids);
        conversation()
            .given(vec![started(&ids)])
            .when(ok(append.clone()))
            .then_expect_events(vec![appended.clone()]);
        let ended = ConversationEvent::ConversationEnded {
            agent_instance_id: ids.instance,
            resolution: Resolution::Resolved,
            messages: 1,
            tokens_in: 12,
            tokens_out: 0,
        };
        conversation()
            .given(vec![started(&ids), appended.clone()])
            .when(ok(ConversationAction::End {
                resolution: Resolution::Resolved,
            }))
            .then_expect_events(vec![ended.clone()]);
        conversation()
            .given(vec![started(&ids), appended, ended])
            .when(ok(append.clone()))
            .then_expect_error(DomainError::ConversationEnded);
        conversation()
            .given(vec![started(&ids)])
            .when(with(
                OrganizationStatus::Active,
                true,
                InstanceStatus::Archived,
                append.clone(),
            ))
            .then_expect_error(DomainError::InstanceArchived);
        conversation()
            .given(vec![started(&ids)])
            .when(with(
                OrganizationStatus::Suspended,
                true,
                InstanceStatus::Active,
                append.clone(),
            ))
            .then_expect_error(DomainError::OrganizationSuspended);
        conversation()
            .given_no_previous_events()
            .when(ok(append))
            .then_expect_error(DomainError::NotFound("conversation"));
    }
}
