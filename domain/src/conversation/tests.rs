//! The conversation's given/when/then tests.

use cqrs_es::test::TestFramework;

use super::*;
use crate::agent_instance::InstanceStatus;
use crate::context::{InstanceContext, OrgContext, StoreContext};
use crate::organization::OrganizationStatus;
use crate::{AgentType, MessageContent, MessageId, MessageRole, Tier};

fn conversation() -> TestFramework<Conversation> {
    TestFramework::<Conversation>::with(())
}

struct Ids {
    id: ConversationId,
    instance: AgentInstanceId,
    store: StoreId,
    org: OrganizationId,
}

/// The store and organization of every test conversation's instance, as its contexts say.
fn parents() -> (StoreId, OrganizationId) {
    (
        StoreId::from_uuid(uuid::Uuid::from_u128(1)),
        OrganizationId::from_uuid(uuid::Uuid::from_u128(2)),
    )
}

fn ids() -> Ids {
    let (store, org) = parents();
    Ids {
        id: ConversationId::new(),
        instance: AgentInstanceId::new(),
        store,
        org,
    }
}

fn start(ids: &Ids) -> ConversationAction {
    ConversationAction::Start {
        id: ids.id,
        agent_instance_id: ids.instance,
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
    let (store_id, org_id) = parents();
    ConversationCommand {
        org: OrgContext {
            id: org_id,
            status: org,
            tier: Tier::Basic,
        },
        store: StoreContext {
            active: store_active,
        },
        instance: InstanceContext {
            status: instance,
            agent_type: AgentType::CustomerService,
            store_id,
        },
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
