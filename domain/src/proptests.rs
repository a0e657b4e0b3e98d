//! Property: for random command sequences, the state the aggregate reached while deciding
//! equals the state rebuilt by replaying its events as stored (serialized to the wire form
//! and read back).

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use proptest::prelude::*;
use serde_json::json;

use crate::context::{InstanceContext, OrgContext, StoreContext};
use crate::conversation::{Conversation, ConversationAction, ConversationCommand};
use crate::fixtures::*;
use crate::organization::{Organization, OrganizationCommand, OrganizationStatus, Subscription};
use crate::*;

/// Decides `commands` in turn (refused ones change nothing) and returns the state reached
/// and every event recorded.
fn decide_all<A: Aggregate<Services = ()>>(commands: Vec<A::Command>) -> (A, Vec<A::Event>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut state = A::default();
    let mut recorded = Vec::new();
    for command in commands {
        let sink = EventSink::<A>::default();
        let mut attempt = state_clone(&state);
        if runtime
            .block_on(attempt.handle(command, &(), &sink))
            .is_ok()
        {
            state = attempt;
            recorded.extend(runtime.block_on(sink.collect()));
        }
    }
    (state, recorded)
}

fn state_clone<A: Aggregate>(state: &A) -> A {
    serde_json::from_value(serde_json::to_value(state).unwrap()).unwrap()
}

/// Replays events as the store would hand them back: through their wire form.
fn replay<A: Aggregate>(events: &[A::Event]) -> A {
    let mut state = A::default();
    for event in events {
        let stored = serde_json::to_string(event).unwrap();
        state.apply(serde_json::from_str(&stored).unwrap());
    }
    state
}

#[derive(Clone, Debug)]
enum OrgOp {
    Invite(usize, Role),
    ChangeRole(usize, Role),
    Remove(usize),
    IssueKey(usize),
    RevokeKey(usize),
    AcquireStore(usize),
    ReleaseStore(usize),
    AcquireInstance(usize, AgentType),
    ReleaseInstance(usize),
    ChangeTier(Tier),
    Suspend,
    Reactivate,
    PastDue,
    Activate,
    Rename(usize),
    Close,
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL.to_vec())
}

fn org_op() -> impl Strategy<Value = OrgOp> {
    prop_oneof![
        (0..5usize, role()).prop_map(|(i, r)| OrgOp::Invite(i, r)),
        (0..5usize, role()).prop_map(|(i, r)| OrgOp::ChangeRole(i, r)),
        (0..5usize).prop_map(OrgOp::Remove),
        (0..4usize).prop_map(OrgOp::IssueKey),
        (0..4usize).prop_map(OrgOp::RevokeKey),
        (0..12usize).prop_map(OrgOp::AcquireStore),
        (0..12usize).prop_map(OrgOp::ReleaseStore),
        (0..60usize, prop::sample::select(AgentType::ALL.to_vec()))
            .prop_map(|(i, t)| OrgOp::AcquireInstance(i, t)),
        (0..60usize).prop_map(OrgOp::ReleaseInstance),
        prop::sample::select(vec![Tier::Basic, Tier::Pro, Tier::Enterprise])
            .prop_map(OrgOp::ChangeTier),
        Just(OrgOp::Suspend),
        Just(OrgOp::Reactivate),
        Just(OrgOp::PastDue),
        Just(OrgOp::Activate),
        (0..3usize).prop_map(OrgOp::Rename),
        Just(OrgOp::Close),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn organization_state_equals_its_replayed_events(
        tier in prop::sample::select(vec![Tier::Basic, Tier::Pro]),
        ops in prop::collection::vec(org_op(), 0..60),
    ) {
        let id = OrganizationId::new();
        let members: Vec<MemberId> = (0..5).map(|_| MemberId::new()).collect();
        let keys: Vec<ApiKeyId> = (0..4).map(|_| ApiKeyId::new()).collect();
        let stores: Vec<StoreId> = (0..12).map(|_| StoreId::new()).collect();
        let instances: Vec<AgentInstanceId> = (0..60).map(|_| AgentInstanceId::new()).collect();
        let mut commands = vec![create(id, members[0], tier)];
        for op in ops {
            commands.push(match op {
                OrgOp::Invite(i, role) => OrganizationCommand::InviteMember {
                    member_id: members[i],
                    email: email(&format!("m{i}@acme.com")),
                    role,
                },
                OrgOp::ChangeRole(i, role) => OrganizationCommand::ChangeMemberRole { member_id: members[i], role },
                OrgOp::Remove(i) => OrganizationCommand::RemoveMember { member_id: members[i] },
                OrgOp::IssueKey(i) => OrganizationCommand::IssueApiKey {
                    key_id: keys[i],
                    name: KeyName::parse(format!("key {i}")).unwrap(),
                    role: Role::Developer,
                    prefix: format!("sk_live_{i}"),
                    hash: format!("{i:064}"),
                },
                OrgOp::RevokeKey(i) => OrganizationCommand::RevokeApiKey { key_id: keys[i] },
                OrgOp::AcquireStore(i) => OrganizationCommand::AcquireStoreSlot { store_id: stores[i] },
                OrgOp::ReleaseStore(i) => OrganizationCommand::ReleaseStoreSlot { store_id: stores[i] },
                OrgOp::AcquireInstance(i, agent_type) => OrganizationCommand::AcquireInstanceSlot {
                    instance_id: instances[i],
                    agent_type,
                },
                OrgOp::ReleaseInstance(i) => OrganizationCommand::ReleaseInstanceSlot { instance_id: instances[i] },
                OrgOp::ChangeTier(tier) => OrganizationCommand::ChangeTier {
                    tier,
                    custom_terms: (tier == Tier::Enterprise).then(enterprise_terms),
                    by_platform_admin: tier == Tier::Enterprise,
                },
                OrgOp::Suspend => OrganizationCommand::Suspend { reason: crate::Reason::parse("test").unwrap(), by_platform_admin: true },
                OrgOp::Reactivate => OrganizationCommand::Reactivate { by_platform_admin: true },
                OrgOp::PastDue => OrganizationCommand::SetSubscription(Subscription::PastDue),
                OrgOp::Activate => OrganizationCommand::SetSubscription(Subscription::Active),
                OrgOp::Rename(i) => OrganizationCommand::ChangeDetails {
                    name: Some(OrganizationName::parse(format!("Acme {i}")).unwrap()),
                    billing_email: None,
                    settings: Some(json!({ "locale": format!("l{i}") }).as_object().cloned().unwrap()),
                },
                OrgOp::Close => OrganizationCommand::Close,
            });
        }
        let (decided, events) = decide_all::<Organization>(commands);
        let replayed: Organization = replay(&events);
        prop_assert_eq!(&decided, &replayed);
        // And the invariants hold in every reachable state.
        prop_assert!(decided.members.values().filter(|m| m.role == Role::Owner).count() >= 1);
        let limits = decided.tier.unwrap().limits();
        if let Some(max) = limits.active_instances {
            prop_assert!(decided.active_instances.len() <= max as usize);
        }
        if let Some(max) = limits.stores {
            prop_assert!(decided.active_stores.len() <= max as usize);
        }
    }

    #[test]
    fn conversation_state_equals_its_replayed_events(
        steps in prop::collection::vec((0..4u8, 0..500u64, 0..500u64), 0..40),
    ) {
        let ctx = ConversationCommand {
            org: OrgContext { id: OrganizationId::new(), status: OrganizationStatus::Active, tier: Tier::Basic },
            store: StoreContext { active: true },
            instance: InstanceContext {
                status: crate::agent_instance::InstanceStatus::Active,
                agent_type: AgentType::CustomerService,
                store_id: StoreId::new(),
            },
            action: ConversationAction::Start {
                id: ConversationId::new(),
                agent_instance_id: AgentInstanceId::new(),
                customer_ref: None,
                channel: Channel::Api,
            },
        };
        let mut commands = vec![ctx.clone()];
        for (kind, tokens_in, tokens_out) in steps {
            let action = match kind {
                0..=2 => ConversationAction::AppendMessage {
                    message_id: MessageId::new(),
                    role: if kind == 0 { MessageRole::Agent } else { MessageRole::Customer },
                    content: MessageContent::parse(format!("message {tokens_in}")).unwrap(),
                    tokens_in,
                    tokens_out,
                },
                _ => ConversationAction::End { resolution: Resolution::Resolved },
            };
            commands.push(ConversationCommand { action, ..ctx.clone() });
        }
        let (decided, events) = decide_all::<Conversation>(commands);
        prop_assert_eq!(&decided, &replay::<Conversation>(&events));
    }
}
