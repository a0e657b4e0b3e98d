//! The command layer on a real database: multi-stream commands, tier limits under
//! concurrency, retries, idempotency keys, metadata and upcasting.

use std::sync::Arc;

use serde_json::json;
use tenantry_commands::organizations::NewOrganization;
use tenantry_commands::{CommandBus, CommandError, Request};
use tenantry_domain::agent_instance::{AgentInstanceAction, InstanceStatus};
use tenantry_domain::conversation::ConversationAction;
use tenantry_domain::organization::{Organization, OrganizationCommand};
use tenantry_domain::store::{Store, StoreAction};
use tenantry_domain::*;
use tenantry_eventstore::read::read_stream;
use tenantry_eventstore::{append, Expected, Metadata, NewEvent};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::helpers::fresh_store;

async fn bus() -> CommandBus {
    let (store, _) = fresh_store().await;
    CommandBus::new(store, Arc::new(Notify::new()))
}

pub(crate) fn request(actor: &str) -> Request {
    Request::new(Metadata {
        actor: Some(actor.into()),
        request_id: Some(Uuid::new_v4().to_string()),
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cause-1".into()),
        idempotency_key: None,
    })
}

pub(crate) async fn organization(bus: &CommandBus, slug: &str, tier: Tier) -> OrganizationId {
    let done = bus
        .execute(
            (),
            NewOrganization::new(
                OrganizationName::parse(slug).unwrap(),
                Slug::parse(slug).unwrap(),
                tier,
                Email::parse(format!("billing@{slug}.example.com")).unwrap(),
            ),
            &request("platform-admin"),
        )
        .await
        .unwrap();
    done.0.aggregate.id.unwrap()
}

pub(crate) async fn store(bus: &CommandBus, org: OrganizationId) -> Result<StoreId, CommandError> {
    let id = StoreId::new();
    let action = StoreAction::Create {
        id,
        organization_id: org,
        name: StoreName::parse("Main").unwrap(),
        domain: StoreDomain::parse("shop.example.com").unwrap(),
        platform: Platform::Custom,
    };
    bus.execute((org, id), action, &request("key:test"))
        .await
        .map(|_| id)
}

pub(crate) async fn deploy(
    bus: &CommandBus,
    org: OrganizationId,
    store: StoreId,
    agent_type: AgentType,
) -> Result<AgentInstanceId, CommandError> {
    let id = AgentInstanceId::new();
    let action = AgentInstanceAction::Deploy {
        id,
        store_id: store,
        organization_id: org,
        agent_type,
        version: None,
        config: Default::default(),
    };
    bus.execute((org, id), action, &request("key:test"))
        .await
        .map(|_| id)
}

pub(crate) fn is_code(result: &Result<impl std::fmt::Debug, CommandError>, expected: &str) -> bool {
    matches!(result, Err(CommandError::Rejected { code, .. }) if *code == expected)
}

#[tokio::test]
async fn eight_concurrent_deploys_on_basic_end_with_exactly_three_active_instances() {
    let bus = bus().await;
    let org = organization(&bus, "crowded", Tier::Basic).await;
    let store = store(&bus, org).await.unwrap();
    for _ in 0..2 {
        deploy(&bus, org, store, AgentType::CustomerService)
            .await
            .unwrap();
    }

    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let bus = bus.clone();
            tokio::spawn(async move { deploy(&bus, org, store, AgentType::CustomerService).await })
        })
        .collect();
    let mut deployed = 0;
    let mut refused = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => deployed += 1,
            Err(CommandError::Rejected {
                code: "tier-required",
                ..
            }) => refused += 1,
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!((deployed, refused), (1, 7));
    let (state, _) = bus
        .load::<Organization>(TenantId::from(org), org.as_uuid())
        .await
        .unwrap();
    assert_eq!(state.active_instances.len(), 3);

    // The instance streams agree: exactly three instances exist, all active.
    let mut tx = bus
        .event_store()
        .begin_tenant(TenantId::from(org))
        .await
        .unwrap();
    let deployed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'AgentInstanceDeployed'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(deployed, 3);
}

#[tokio::test]
async fn pausing_frees_a_slot_and_resuming_takes_one() {
    let bus = bus().await;
    let org = organization(&bus, "slots", Tier::Basic).await;
    let store = store(&bus, org).await.unwrap();
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(
            deploy(&bus, org, store, AgentType::CustomerService)
                .await
                .unwrap(),
        );
    }
    assert!(is_code(
        &deploy(&bus, org, store, AgentType::CustomerService).await,
        "tier-required"
    ));
    bus.execute(
        (org, instances[0]),
        AgentInstanceAction::Pause,
        &request("k"),
    )
    .await
    .unwrap();
    let fourth = deploy(&bus, org, store, AgentType::CustomerService)
        .await
        .unwrap();
    let resumed = bus
        .execute(
            (org, instances[0]),
            AgentInstanceAction::Resume,
            &request("k"),
        )
        .await;
    assert!(is_code(&resumed, "tier-required"), "{resumed:?}");
    bus.execute((org, fourth), AgentInstanceAction::Archive, &request("k"))
        .await
        .unwrap();
    let resumed = bus
        .execute(
            (org, instances[0]),
            AgentInstanceAction::Resume,
            &request("k"),
        )
        .await
        .unwrap();
    assert_eq!(resumed.aggregate.status, InstanceStatus::Active);
    let archived = bus
        .execute((org, fourth), AgentInstanceAction::Pause, &request("k"))
        .await;
    assert!(is_code(&archived, "agent-instance-archived"));
}

#[tokio::test]
async fn tier_limits_for_stores_agent_types_and_downgrades() {
    let bus = bus().await;
    let org = organization(&bus, "limits", Tier::Pro).await;
    let first = store(&bus, org).await.unwrap();
    store(&bus, org).await.unwrap();
    deploy(&bus, org, first, AgentType::Sales).await.unwrap();

    let downgrade = bus
        .execute(
            org,
            OrganizationCommand::ChangeTier {
                tier: Tier::Basic,
                custom_terms: None,
                by_platform_admin: false,
            },
            &request("k"),
        )
        .await;
    match downgrade {
        Err(CommandError::Rejected {
            code: "downgrade-blocked",
            message,
            ..
        }) => {
            assert!(message.contains("2 active stores"), "{message}");
            assert!(message.contains("sales"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    let basic = organization(&bus, "basic-one", Tier::Basic).await;
    let only = store(&bus, basic).await.unwrap();
    assert!(is_code(&store(&bus, basic).await, "tier-required"));
    assert!(is_code(
        &deploy(&bus, basic, only, AgentType::Marketing).await,
        "tier-required"
    ));
    // Deactivating the store frees its slot.
    bus.execute((basic, only), StoreAction::Deactivate, &request("k"))
        .await
        .unwrap();
    store(&bus, basic).await.unwrap();
    let reactivate = bus
        .execute((basic, only), StoreAction::Reactivate, &request("k"))
        .await;
    assert!(is_code(&reactivate, "tier-required"), "{reactivate:?}");
}

#[tokio::test]
async fn a_suspended_organization_refuses_commands_on_everything_it_owns() {
    let bus = bus().await;
    let org = organization(&bus, "suspended", Tier::Pro).await;
    let store_id = store(&bus, org).await.unwrap();
    let instance = deploy(&bus, org, store_id, AgentType::CustomerService)
        .await
        .unwrap();
    let conversation = ConversationId::new();
    let start = ConversationAction::Start {
        id: conversation,
        agent_instance_id: instance,
        customer_ref: None,
        channel: Channel::Web,
    };
    bus.execute((org, conversation), start.clone(), &request("k"))
        .await
        .unwrap();

    bus.execute(
        org,
        OrganizationCommand::Suspend {
            reason: tenantry_domain::Reason::parse("unpaid").unwrap(),
            by_platform_admin: true,
        },
        &request("platform-admin"),
    )
    .await
    .unwrap();
    assert!(is_code(&store(&bus, org).await, "organization-suspended"));
    assert!(is_code(
        &bus.execute((org, instance), AgentInstanceAction::Pause, &request("k"))
            .await,
        "organization-suspended"
    ));
    let message = ConversationAction::AppendMessage {
        message_id: MessageId::new(),
        role: MessageRole::Customer,
        content: MessageContent::parse("hello?").unwrap(),
        tokens_in: 3,
        tokens_out: 0,
    };
    assert!(is_code(
        &bus.execute((org, conversation), message.clone(), &request("k"))
            .await,
        "organization-suspended"
    ));

    bus.execute(
        org,
        OrganizationCommand::Reactivate {
            by_platform_admin: true,
        },
        &request("platform-admin"),
    )
    .await
    .unwrap();
    let done = bus
        .execute((org, conversation), message, &request("k"))
        .await
        .unwrap();
    assert_eq!(done.aggregate.messages, 1);
}

#[tokio::test]
async fn conversations_need_an_active_instance_and_store() {
    let bus = bus().await;
    let org = organization(&bus, "talkative", Tier::Pro).await;
    let store_id = store(&bus, org).await.unwrap();
    let instance = deploy(&bus, org, store_id, AgentType::CustomerService)
        .await
        .unwrap();
    let start = |id: ConversationId| ConversationAction::Start {
        id,
        agent_instance_id: instance,
        customer_ref: Some(CustomerRef::parse("c-1").unwrap()),
        channel: Channel::Email,
    };
    bus.execute((org, instance), AgentInstanceAction::Pause, &request("k"))
        .await
        .unwrap();
    let id = ConversationId::new();
    assert!(is_code(
        &bus.execute((org, id), start(id), &request("k")).await,
        "agent-instance-not-active"
    ));
    bus.execute((org, instance), AgentInstanceAction::Resume, &request("k"))
        .await
        .unwrap();
    bus.execute((org, store_id), StoreAction::Deactivate, &request("k"))
        .await
        .unwrap();
    assert!(is_code(
        &bus.execute((org, id), start(id), &request("k")).await,
        "store-inactive"
    ));
    bus.execute((org, store_id), StoreAction::Reactivate, &request("k"))
        .await
        .unwrap();
    let done = bus
        .execute((org, id), start(id), &request("k"))
        .await
        .unwrap();
    assert_eq!(done.version, 1);

    // Another organization cannot reach it: the same answer as for nothing at all.
    let other = organization(&bus, "other-org", Tier::Pro).await;
    let end = ConversationAction::End {
        resolution: Resolution::Resolved,
    };
    assert!(is_code(
        &bus.execute((other, id), end, &request("k")).await,
        "not-found"
    ));
}

#[tokio::test]
async fn concurrent_commands_on_one_stream_all_land_through_retries() {
    let bus = bus().await;
    let org = organization(&bus, "busy-team", Tier::Pro).await;
    let invites: Vec<_> = (0..10)
        .map(|i| {
            let bus = bus.clone();
            tokio::spawn(async move {
                let command = OrganizationCommand::InviteMember {
                    member_id: MemberId::new(),
                    email: Email::parse(format!("dev{i}@busy.example.com")).unwrap(),
                    role: Role::Developer,
                };
                bus.execute(org, command, &request("k")).await
            })
        })
        .collect();
    for invite in invites {
        invite.await.unwrap().unwrap();
    }
    let (state, version) = bus
        .load::<Organization>(TenantId::from(org), org.as_uuid())
        .await
        .unwrap();
    assert_eq!(state.members.len(), 11);
    assert_eq!(version, 13);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_result_and_appends_nothing() {
    let bus = bus().await;
    let org = organization(&bus, "careful", Tier::Pro).await;
    let tenant = TenantId::from(org);
    let invite = |email: &str| OrganizationCommand::InviteMember {
        member_id: MemberId::new(),
        email: Email::parse(email).unwrap(),
        role: Role::Admin,
    };
    let keyed = request("k").with_idempotency("invite-1", "fingerprint-a");
    let first = bus
        .execute(org, invite("a@careful.example.com"), &keyed)
        .await
        .unwrap();
    assert!(!first.replayed);
    let again = bus
        .execute(org, invite("a@careful.example.com"), &keyed)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(
        (again.version, again.position),
        (first.version, first.position)
    );
    assert_eq!(again.aggregate, first.aggregate);
    let (_, version) = bus
        .load::<Organization>(tenant, org.as_uuid())
        .await
        .unwrap();
    assert_eq!(version, first.version);

    let reused = request("k").with_idempotency("invite-1", "fingerprint-b");
    let conflict = bus
        .execute(org, invite("b@careful.example.com"), &reused)
        .await;
    assert!(
        matches!(conflict, Err(CommandError::IdempotencyConflict(_))),
        "{conflict:?}"
    );

    // Concurrent retries with one key: one execution.
    let keyed = request("k").with_idempotency("invite-2", "fingerprint-c");
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let bus = bus.clone();
            let keyed = keyed.clone();
            tokio::spawn(async move {
                let command = OrganizationCommand::InviteMember {
                    member_id: MemberId::new(),
                    email: Email::parse("c@careful.example.com").unwrap(),
                    role: Role::Admin,
                };
                bus.execute(org, command, &keyed).await
            })
        })
        .collect();
    let mut executed = 0;
    for racer in racers {
        if !racer.await.unwrap().unwrap().replayed {
            executed += 1;
        }
    }
    assert_eq!(executed, 1);
    let (state, _) = bus
        .load::<Organization>(tenant, org.as_uuid())
        .await
        .unwrap();
    assert_eq!(state.members.len(), 3);

    // Keys are scoped by organization: another one may use the same key.
    let other = organization(&bus, "other-careful", Tier::Pro).await;
    let fresh = bus
        .execute(
            other,
            invite("a@other.example.com"),
            &request("k").with_idempotency("invite-1", "fingerprint-a"),
        )
        .await
        .unwrap();
    assert!(!fresh.replayed);
}

#[tokio::test]
async fn every_event_carries_its_metadata() {
    let bus = bus().await;
    let org = organization(&bus, "traced", Tier::Pro).await;
    let keyed = request("key:0190").with_idempotency("k-1", "f-1");
    store_with(&bus, org, &keyed).await;
    let mut tx = bus
        .event_store()
        .begin_tenant(TenantId::from(org))
        .await
        .unwrap();
    let rows: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT event_type, metadata FROM events ORDER BY transaction_id, position")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    // Three events open the organization (created, owner, owner key); two make the store.
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(rows[0].1["actor"], "platform-admin");
    for (event_type, metadata) in &rows[3..] {
        assert_eq!(metadata["actor"], "key:0190", "{event_type}");
        assert_eq!(metadata["correlation_id"], "corr-1");
        assert_eq!(metadata["causation_id"], "cause-1");
        assert_eq!(metadata["idempotency_key"], "k-1");
        assert!(metadata["request_id"].is_string());
    }
}

async fn store_with(bus: &CommandBus, org: OrganizationId, request: &Request) {
    let id = StoreId::new();
    let action = StoreAction::Create {
        id,
        organization_id: org,
        name: StoreName::parse("Main").unwrap(),
        domain: StoreDomain::parse("shop.example.com").unwrap(),
        platform: Platform::Custom,
    };
    bus.execute((org, id), action, request).await.unwrap();
}

#[tokio::test]
async fn an_event_stored_under_an_old_schema_still_loads() {
    let bus = bus().await;
    let org = organization(&bus, "legacy", Tier::Pro).await;
    let tenant = TenantId::from(org);
    let store_id = StoreId::new();
    // A StoreCreated written by an older release: schema 1, `url` and no platform.
    let mut tx = bus.event_store().begin_tenant(tenant).await.unwrap();
    append(
        &mut tx,
        tenant,
        "store",
        store_id.as_uuid(),
        Expected::NoStream,
        vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "StoreCreated".into(),
            schema_version: 1,
            payload: json!({
                "store_id": store_id,
                "organization_id": org,
                "name": "Old shop",
                "url": "https://Old.Example.com/shop",
            }),
        }],
        &Metadata::default(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let updated = bus
        .execute(
            (org, store_id),
            StoreAction::Update {
                name: Some(StoreName::parse("Renamed").unwrap()),
                domain: None,
                platform: None,
            },
            &request("k"),
        )
        .await
        .unwrap();
    let state: &Store = &updated.aggregate;
    assert_eq!(state.domain.as_ref().unwrap().as_str(), "old.example.com");
    assert_eq!(state.platform, Some(Platform::Custom));
    assert_eq!(state.name.as_ref().unwrap().as_str(), "Renamed");

    // The old event is untouched in the store; the new one is written at the current schema.
    let mut tx = bus.event_store().begin_tenant(tenant).await.unwrap();
    let events = read_stream(&mut tx, tenant, "store", store_id.as_uuid())
        .await
        .unwrap();
    assert_eq!(events[0].schema_version, 1);
    assert!(events[0].payload.get("url").is_some());
    assert_eq!(events[1].event_type, "StoreUpdated");
}
