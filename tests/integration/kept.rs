//! Streams kept in memory between conversation commands (migration 0015): two servers on one
//! database, each keeping what it read.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Executor;
use tenantry_commands::{CommandBus, CommandError, Erase, Request};
use tenantry_domain::agent_instance::AgentInstanceAction;
use tenantry_domain::conversation::ConversationAction;
use tenantry_domain::store::StoreAction;
use tenantry_domain::*;
use tenantry_eventstore::kept::Kept;
use tenantry_eventstore::notified;
use tenantry_eventstore::read::StreamRef;
use tenantry_eventstore::{EventStore, StoreError};
use tokio::sync::{watch, Notify};

use crate::commands::{deploy, is_code, organization, request, store};
use crate::helpers::{eventually, fresh_database, superuser, test_vault};

/// A server on the database at `url` that keeps streams, listening until the returned sender
/// is dropped.
async fn keeping_server(url: &str) -> (CommandBus, watch::Sender<bool>) {
    let store = EventStore::connect(url, 8)
        .await
        .unwrap()
        .with_vault(test_vault())
        .keeping(tenantry_commands::conversations::KEPT);
    let (stop, stopped) = watch::channel(false);
    // As a server does: one listener for the kept streams and keys.
    tokio::spawn(notified::listen(
        store.pool().clone(),
        vec![store.kept().subscriber(), store.vault().subscriber()],
        stopped,
    ));
    let (kept, vault) = (store.kept().clone(), store.vault().clone());
    assert!(
        eventually(Duration::from_secs(5), || async {
            kept.is_listening() && vault.keeps_keys()
        })
        .await,
        "the server never started listening"
    );
    (CommandBus::new(store, Arc::new(Notify::new())), stop)
}

/// An organization with a store and a customer-service agent: (org, store, instance).
async fn deployed(bus: &CommandBus, slug: &str) -> (OrganizationId, StoreId, AgentInstanceId) {
    let org = organization(bus, slug, Tier::Pro).await;
    let store_id = store(bus, org).await.unwrap();
    let instance = deploy(bus, org, store_id, AgentType::CustomerService)
        .await
        .unwrap();
    (org, store_id, instance)
}

fn start(
    (_, _, instance): (OrganizationId, StoreId, AgentInstanceId),
    id: ConversationId,
) -> ConversationAction {
    ConversationAction::Start {
        id,
        agent_instance_id: instance,
        customer_ref: Some(CustomerRef::parse("c-42").unwrap()),
        channel: Channel::Web,
    }
}

fn message(text: &str) -> ConversationAction {
    ConversationAction::AppendMessage {
        message_id: MessageId::new(),
        role: MessageRole::Customer,
        content: MessageContent::parse(text).unwrap(),
        tokens_in: 2,
        tokens_out: 0,
    }
}

async fn say(
    bus: &CommandBus,
    org: OrganizationId,
    id: ConversationId,
    text: &str,
    request: &Request,
) -> Result<i64, CommandError> {
    bus.execute((org, id), message(text), request)
        .await
        .map(|done| done.version)
}

/// The copy of conversation `id` that `bus` keeps, if it keeps one.
fn kept_copy(bus: &CommandBus, org: OrganizationId, id: ConversationId) -> Option<Kept> {
    let wanted = [StreamRef::Id("conversation", id.as_uuid())];
    let mut found = bus.event_store().kept().get(TenantId::from(org), &wanted);
    found.pop().flatten()
}

/// Turns the announcement of parent moves off (`false`) or on, behind the servers' backs.
async fn announcements(url: &str, on: bool) {
    let verb = if on { "ENABLE" } else { "DISABLE" };
    superuser(url)
        .await
        .execute(format!("ALTER TABLE streams {verb} TRIGGER tenantry_stream_moved").as_str())
        .await
        .unwrap();
}

/// Two servers keeping streams on one fresh database, and a conversation started on the
/// first.
struct TwoServers {
    url: String,
    a: CommandBus,
    b: CommandBus,
    parents: (OrganizationId, StoreId, AgentInstanceId),
    org: OrganizationId,
    id: ConversationId,
    /// Both servers listen while this lives: bind it (`_stop`), or they stop at once.
    _stop: [watch::Sender<bool>; 2],
}

async fn two_servers(slug: &str) -> TwoServers {
    let url = fresh_database().await;
    let (a, stop_a) = keeping_server(&url).await;
    let (b, stop_b) = keeping_server(&url).await;
    let parents = deployed(&a, slug).await;
    let org = parents.0;
    let id = ConversationId::new();
    a.execute((org, id), start(parents, id), &request("k"))
        .await
        .unwrap();
    TwoServers {
        url,
        a,
        b,
        parents,
        org,
        id,
        _stop: [stop_a, stop_b],
    }
}

#[tokio::test]
async fn a_decision_from_a_stale_conversation_never_stands() {
    let TwoServers {
        a,
        b,
        org,
        id,
        _stop,
        ..
    } = two_servers("two-servers").await;
    assert_eq!(say(&a, org, id, "one", &request("k")).await.unwrap(), 2);
    // A keeps what it started and appended (the next decisions are made from this copy).
    assert_eq!(kept_copy(&a, org, id).map(|events| events.len()), Some(2));

    // B moves the conversation behind A's copy; A's next append still lands, after it.
    assert_eq!(say(&b, org, id, "two", &request("k")).await.unwrap(), 3);
    let done = a
        .execute((org, id), message("three"), &request("k"))
        .await
        .unwrap();
    assert_eq!((done.version, done.aggregate.messages), (4, 3));
    // The customer reference is opened from a kept (sealed) first event too.
    assert_eq!(
        done.aggregate.customer_ref.as_ref().map(|r| r.as_str()),
        Some("c-42")
    );

    // A version the request expects that only the stored stream has: not refused from A's
    // stale copy.
    assert_eq!(say(&b, org, id, "four", &request("k")).await.unwrap(), 5);
    let expecting = request("k").with_expected_version(Some(5));
    assert_eq!(say(&a, org, id, "five", &expecting).await.unwrap(), 6);

    // Ended on B: A's copy (open, version 6) must not accept another message.
    b.execute(
        (org, id),
        ConversationAction::End {
            resolution: Resolution::Resolved,
        },
        &request("k"),
    )
    .await
    .unwrap();
    assert!(is_code(
        &say(&a, org, id, "six", &request("k")).await,
        "conversation-ended"
    ));
    // A refused command leaves nothing kept.
    assert!(kept_copy(&a, org, id).is_none());
}

/// Waits until `bus` has heard every announcement made so far (the deployment's, above all,
/// which would otherwise make it forget what it keeps at some moment later), then keeps the
/// parents of a conversation it starts.
async fn settled(url: &str, bus: &CommandBus, parents: (OrganizationId, StoreId, AgentInstanceId)) {
    let id = ConversationId::new();
    bus.execute((parents.0, id), start(parents, id), &request("k"))
        .await
        .unwrap();
    // Announcements arrive in the order they were made: once one made now is heard (it
    // names the new conversation, which is kept), every earlier one has been.
    let tenant = TenantId::from(parents.0);
    superuser(url)
        .await
        .execute(
            format!(
                "NOTIFY tenantry_streams, '{}:conversation:{}'",
                tenant.as_uuid(),
                id.as_uuid()
            )
            .as_str(),
        )
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            kept_copy(bus, parents.0, id).is_none()
        })
        .await,
        "the announcement was never heard"
    );
    start_new(bus, parents).await.unwrap();
}

/// Starts a new conversation on `bus` (a start is what an agent instance's and a store's
/// state decide).
async fn start_new(
    bus: &CommandBus,
    parents: (OrganizationId, StoreId, AgentInstanceId),
) -> Result<i64, CommandError> {
    let id = ConversationId::new();
    bus.execute((parents.0, id), start(parents, id), &request("k"))
        .await
        .map(|done| done.version)
}

#[tokio::test]
async fn parents_are_kept_until_their_move_is_announced() {
    let TwoServers {
        url,
        a,
        b,
        parents,
        _stop,
        ..
    } = two_servers("announced").await;
    let (org, store_id, instance) = parents;
    settled(&url, &a, parents).await;

    // Paused on B without an announcement: A decides from its copy (the instance active),
    // which proves it keeps it.
    announcements(&url, false).await;
    b.execute((org, instance), AgentInstanceAction::Pause, &request("k"))
        .await
        .unwrap();
    assert_eq!(start_new(&a, parents).await.unwrap(), 1);

    // An announced move (the store deactivated on B) reaches A, which reads again and
    // refuses.
    announcements(&url, true).await;
    b.execute((org, store_id), StoreAction::Deactivate, &request("k"))
        .await
        .unwrap();
    let refused = eventually(Duration::from_secs(5), || async {
        matches!(
            start_new(&a, parents).await,
            Err(CommandError::Rejected { .. })
        )
    })
    .await;
    assert!(refused, "A never heard that the store moved");
}

#[tokio::test]
async fn the_server_that_moves_a_parent_forgets_before_it_answers() {
    let url = fresh_database().await;
    let (a, _stop) = keeping_server(&url).await;
    let parents = deployed(&a, "forgetful").await;
    let (org, _, instance) = parents;
    let bystander = deployed(&a, "bystander").await;
    let theirs = ConversationId::new();
    a.execute(
        (bystander.0, theirs),
        start(bystander, theirs),
        &request("k"),
    )
    .await
    .unwrap();
    settled(&url, &a, parents).await;

    // No announcement will come: only A's own forgetting can stop its copy being used.
    announcements(&url, false).await;
    a.execute((org, instance), AgentInstanceAction::Pause, &request("k"))
        .await
        .unwrap();
    assert!(is_code(
        &start_new(&a, parents).await,
        "agent-instance-not-active"
    ));
    // Only the moving tenant's streams were forgotten.
    assert!(kept_copy(&a, bystander.0, theirs).is_some());
}

#[tokio::test]
async fn a_customer_erased_elsewhere_is_not_shown_from_a_kept_copy() {
    let TwoServers {
        a,
        b,
        org,
        id,
        _stop,
        ..
    } = two_servers("erasing").await;
    let customer = |done: &tenantry_commands::Executed<_>| {
        let conversation: &tenantry_domain::conversation::Conversation = &done.aggregate;
        conversation
            .customer_ref
            .as_ref()
            .map(|r| r.as_str().to_owned())
    };
    let done = a
        .execute((org, id), message("before"), &request("k"))
        .await
        .unwrap();
    assert_eq!(customer(&done).as_deref(), Some("c-42"));

    b.execute(
        org,
        Erase::Customer(CustomerRef::parse("c-42").unwrap()),
        &request("k"),
    )
    .await
    .unwrap();
    // Once A hears of the erasure, nothing new can be sealed for the customer (a message
    // accepted before then is sealed under the destroyed key: unreadable too)...
    let heard = eventually(Duration::from_secs(5), || async {
        matches!(
            a.execute((org, id), message("after"), &request("k")).await,
            Err(CommandError::Store(StoreError::SubjectErased))
        )
    })
    .await;
    assert!(heard, "A never heard of the erasure");
    // ...and the reference in A's kept copy, sealed, opens to the placeholder.
    assert!(
        kept_copy(&a, org, id).is_some(),
        "A should answer from its kept copy"
    );
    let done = a
        .execute(
            (org, id),
            ConversationAction::End {
                resolution: Resolution::Resolved,
            },
            &request("k"),
        )
        .await
        .unwrap();
    assert!(done.aggregate.ended.is_some());
    assert_ne!(customer(&done).as_deref(), Some("c-42"));
}

#[tokio::test]
async fn a_served_api_decides_from_the_streams_it_keeps() {
    use reqwest::Method;
    let app = crate::helpers::spawn_app().await;
    let (org, mut owner) = crate::walkthrough::organization(&app, "served", "pro").await;
    let (_, agent) = owner.store_with_agent(&org, "customer_service").await;
    let start = || serde_json::json!({ "agent_instance_id": agent, "customer_ref": "c-1", "channel": "web" });
    owner
        .ok(Method::POST, "/v1/conversations", Some(start()))
        .await;
    // Once the deployment's own announcements have surely arrived, a start keeps the
    // parents as they now stand.
    tokio::time::sleep(Duration::from_millis(200)).await;
    owner
        .ok(Method::POST, "/v1/conversations", Some(start()))
        .await;

    // Paused by another server, unannounced: the API still starts conversations on the
    // instance from its copy, which only the listener it runs keeps.
    announcements(&app.database_url, false).await;
    let other = CommandBus::new(app.store.clone(), Arc::new(Notify::new()));
    let instance = AgentInstanceId::from_uuid(agent.parse().unwrap());
    other
        .execute(
            (OrganizationId::from_uuid(org.parse().unwrap()), instance),
            AgentInstanceAction::Pause,
            &request("k"),
        )
        .await
        .unwrap();
    owner
        .ok(Method::POST, "/v1/conversations", Some(start()))
        .await;
}
