//! Relay and projection runner: exactly once from the event store through NATS into a read
//! model, across relay restarts and re-publication.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use tenantry_commands::organizations::NewOrganization;
use tenantry_commands::{CommandBus, Relay, Request};
use tenantry_domain::{Email, OrganizationName, Slug, Tier};
use tenantry_eventstore::bus::Bus;
use tenantry_eventstore::{Cursor, EventStore};
use tenantry_projections::organizations::Organizations;
use tenantry_projections::{Outcome, Runner};
use tokio::sync::{watch, Notify};

use crate::helpers::{eventually, feed_eventually, fresh_bus, fresh_store, publish_one};

async fn create_organizations(store: &EventStore, count: usize) {
    let slugs: Vec<String> = (0..count).map(|i| format!("org-{i}")).collect();
    create_organizations_named(store, &slugs.iter().map(String::as_str).collect::<Vec<_>>()).await;
}

/// Steps the relay until it has published `expected` events. The feed holds events back while
/// any older transaction of the cluster (tests in other databases too) may still commit, so a
/// single step can find nothing yet.
async fn publish(relay: &mut Relay, expected: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut published = 0;
    while published < expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "published {published} of {expected}"
        );
        published += relay.step().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(published, expected);
}

async fn relay_checkpoint(store: &EventStore) -> Cursor {
    let mut tx = store.begin_system().await.unwrap();
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT transaction_id, position FROM relay_checkpoints")
            .fetch_optional(&mut *tx)
            .await
            .unwrap();
    row.map_or(Cursor::START, |(t, p)| Cursor::new(t, p))
}

async fn read_model_count(store: &EventStore) -> i64 {
    let mut tx = store.begin_system().await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM organizations")
        .fetch_one(&mut *tx)
        .await
        .unwrap()
}

/// Runs the projection until the read model holds `expected` rows (or a deadline passes),
/// then until NATS has nothing more for it. Returns how many events it applied.
async fn drain(runner: &mut Runner, store: &EventStore, expected: i64) -> usize {
    let mut applied_total = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reached = read_model_count(store).await >= expected;
        assert!(
            reached || tokio::time::Instant::now() < deadline,
            "the projection did not reach {expected}"
        );
        let wait = if reached {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(1)
        };
        match runner.process_next_batch(wait).await.unwrap() {
            Outcome::Processed { applied, .. } => applied_total += applied,
            Outcome::Idle if reached => return applied_total,
            Outcome::Idle => {}
        }
    }
}

/// What [`three_organizations_published`] sets up.
struct Published {
    store: EventStore,
    url: String,
    bus: Bus,
    stream: Stream,
    relay: Relay,
}

/// A fresh store and bus, with three organizations' nine events published on the bus's
/// stream by the relay (which holds the relay lock).
async fn three_organizations_published() -> Published {
    let (store, url) = fresh_store().await;
    let bus = fresh_bus().await;
    create_organizations(&store, 3).await;
    let stream = bus.ensure_stream().await.unwrap();
    let mut relay = Relay::new(store.clone(), bus.clone(), Arc::new(Notify::new()));
    assert!(relay.try_acquire().await.unwrap());
    publish(&mut relay, 9).await;
    Published {
        store,
        url,
        bus,
        stream,
        relay,
    }
}

/// True once the consumer `name` has nothing left to deliver or to be acknowledged.
async fn drained(stream: &Stream, name: &str) -> bool {
    eventually(Duration::from_secs(10), || async {
        let mut consumer = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(name)
            .await
            .unwrap();
        let info = consumer.info().await.unwrap();
        (info.num_pending, info.num_ack_pending) == (0, 0)
    })
    .await
}

#[tokio::test]
async fn a_relay_stopped_mid_stream_and_restarted_delivers_each_event_exactly_once() {
    let (store, _) = fresh_store().await;
    let bus = fresh_bus().await;
    let total = 400;
    create_organizations(&store, total).await;

    // First relay: small batches, stopped (aborted, wherever it is) part-way through.
    let (_stop, stopped) = watch::channel(false);
    let first = Relay::new(store.clone(), bus.clone(), Arc::new(Notify::new())).with_batch_size(25);
    let task = tokio::spawn(first.run(stopped.clone()));
    let started = Cursor::START;
    assert!(
        eventually(Duration::from_secs(20), || async {
            relay_checkpoint(&store).await > started
        })
        .await
    );
    task.abort();
    let _ = task.await;
    // Each organization is three events: created, its owner, its owner's key.
    let feed = feed_eventually(&store, Cursor::START, 3 * total).await;
    assert_eq!(feed.len(), 3 * total);
    let stopped_at = relay_checkpoint(&store).await;
    assert!(
        stopped_at < feed.last().unwrap().cursor,
        "the first relay should stop part-way"
    );

    // A projection consumes what was published so far.
    let mut runner = Runner::new(store.clone(), bus.clone(), Arc::new(Organizations));
    drain(&mut runner, &store, 1).await;
    let midway = read_model_count(&store).await;
    assert!(midway < total as i64, "midway count {midway}");

    // Second relay takes over from the checkpoint.
    let second =
        Relay::new(store.clone(), bus.clone(), Arc::new(Notify::new())).with_batch_size(25);
    let task = tokio::spawn(second.run(stopped.clone()));
    let end = feed.last().unwrap().cursor;
    assert!(
        eventually(Duration::from_secs(20), || async {
            relay_checkpoint(&store).await == end
        })
        .await
    );
    task.abort();

    drain(&mut runner, &store, total as i64).await;
    assert_eq!(read_model_count(&store).await, total as i64);
    // JetStream itself holds each event exactly once: re-publication after the restart was
    // deduplicated, and nothing was skipped.
    let mut stream = bus.jetstream.get_stream(&bus.stream).await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        feed.len() as u64
    );
    let checkpoint = tenantry_projections::consistency::checkpoint(store.pool(), "organizations")
        .await
        .unwrap();
    assert_eq!(checkpoint, end);
}

#[tokio::test]
async fn re_published_events_are_not_applied_twice_and_holes_are_filled() {
    let (store, _) = fresh_store().await;
    let bus = fresh_bus().await;
    create_organizations(&store, 6).await;
    bus.ensure_stream().await.unwrap();
    let mut relay = Relay::new(store.clone(), bus.clone(), Arc::new(Notify::new()));
    assert!(relay.try_acquire().await.unwrap());
    publish(&mut relay, 18).await;

    let mut runner = Runner::new(store.clone(), bus.clone(), Arc::new(Organizations));
    assert_eq!(drain(&mut runner, &store, 6).await, 18);

    let feed = feed_eventually(&store, Cursor::START, 18).await;

    // An old event published again under a new message id (past NATS's dedupe) is skipped.
    let old = &feed[2];
    publish_one(&bus, old, feed[1].cursor, format!("again-{}", old.event_id)).await;
    match runner
        .process_next_batch(Duration::from_secs(5))
        .await
        .unwrap()
    {
        Outcome::Processed { applied, skipped } => assert_eq!((applied, skipped), (0, 1)),
        Outcome::Idle => panic!("the re-published event should have been delivered"),
    }
    assert_eq!(read_model_count(&store).await, 6);

    // Six new events, of which NATS only ever sees the last: the hole is filled from the
    // event store, so the first five are not lost.
    create_organizations_named(&store, &["late-1", "late-2"]).await;
    let new = feed_eventually(&store, feed.last().unwrap().cursor, 6).await;
    assert_eq!(new.len(), 6);
    publish_one(&bus, &new[5], new[4].cursor, new[5].event_id.to_string()).await;
    match runner
        .process_next_batch(Duration::from_secs(5))
        .await
        .unwrap()
    {
        Outcome::Processed { applied, skipped } => assert_eq!((applied, skipped), (6, 0)),
        Outcome::Idle => panic!("the event should have been delivered"),
    }
    assert_eq!(read_model_count(&store).await, 8);

    // When the relay later publishes both, nothing is counted again.
    publish(&mut relay, 6).await;
    assert_eq!(drain(&mut runner, &store, 8).await, 0);
    assert_eq!(read_model_count(&store).await, 8);
}

async fn create_organizations_named(store: &EventStore, slugs: &[&str]) {
    let bus = CommandBus::new(store.clone(), Arc::new(Notify::new()));
    for slug in slugs {
        bus.execute(
            (),
            NewOrganization::new(
                OrganizationName::parse(*slug).unwrap(),
                Slug::parse(*slug).unwrap(),
                Tier::Pro,
                Email::parse(format!("billing@{slug}.example.com")).unwrap(),
            ),
            &Request::default(),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn only_one_relay_publishes_at_a_time() {
    let (store, _) = fresh_store().await;
    let bus = fresh_bus().await;
    let mut first = Relay::new(store.clone(), bus.clone(), Arc::new(Notify::new()));
    let mut second = Relay::new(store.clone(), bus.clone(), Arc::new(Notify::new()));
    assert!(first.try_acquire().await.unwrap());
    assert!(!second.try_acquire().await.unwrap());
    create_organizations(&store, 2).await;
    bus.ensure_stream().await.unwrap();
    assert_eq!(
        second.step().await.unwrap(),
        0,
        "a relay without the lock publishes nothing"
    );
    publish(&mut first, 6).await;
    drop(first);
    // The lock goes with the first relay's connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !second.try_acquire().await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lock was not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_failed_batch_is_taken_from_the_store_and_counted_once() {
    let Published {
        store,
        url,
        bus,
        stream,
        ..
    } = three_organizations_published().await;

    // The read model refuses writes for a while: the batch fails and rolls back.
    let mut su = crate::helpers::superuser(&url).await;
    sqlx::query("REVOKE INSERT ON organizations FROM tenantry_system")
        .execute(&mut su)
        .await
        .unwrap();
    let mut runner = Runner::new(store.clone(), bus.clone(), Arc::new(Organizations));
    let mut failures = 0;
    while failures == 0 {
        match runner.process_next_batch(Duration::from_secs(5)).await {
            Err(_) => failures += 1,
            Ok(Outcome::Idle) => panic!("the events should have been delivered"),
            Ok(Outcome::Processed { .. }) => panic!("the batch should have failed"),
        }
    }
    assert_eq!(read_model_count(&store).await, 0);
    let checkpoint = tenantry_projections::consistency::checkpoint(store.pool(), "organizations")
        .await
        .unwrap();
    assert_eq!(checkpoint, Cursor::START, "a failed batch moves nothing");
    assert!(
        drained(&stream, "organizations").await,
        "the failed batch should be acknowledged all the same"
    );

    // The failed batch was acknowledged all the same. Meanwhile the first event is published
    // again (past NATS's dedupe window, say): a message after the failed ones that follows on
    // from the checkpoint. Nothing will deliver the other eight again: the projection takes
    // them from the store, as soon as nothing more arrives.
    let feed = feed_eventually(&store, Cursor::START, 9).await;
    let first = &feed[0];
    publish_one(
        &bus,
        first,
        Cursor::START,
        format!("again-{}", first.event_id),
    )
    .await;

    // Once writes work again, the projection catches up, and each event counts once.
    sqlx::query("GRANT INSERT ON organizations TO tenantry_system")
        .execute(&mut su)
        .await
        .unwrap();
    assert_eq!(drain(&mut runner, &store, 3).await, 9);
    assert_eq!(read_model_count(&store).await, 3);
}

#[tokio::test]
async fn a_failing_projection_holds_back_no_other_and_catches_up_from_the_store() {
    use tenantry_projections::consistency::checkpoint;
    use tenantry_projections::directory::Directory;

    let Published {
        store,
        url,
        bus,
        stream,
        mut relay,
    } = three_organizations_published().await;
    let end = feed_eventually(&store, Cursor::START, 9)
        .await
        .last()
        .unwrap()
        .cursor;
    // The organizations read model refuses writes: that projection fails, the other goes on.
    let mut su = crate::helpers::superuser(&url).await;
    sqlx::query("REVOKE INSERT ON organizations FROM tenantry_system")
        .execute(&mut su)
        .await
        .unwrap();
    let mut runner = Runner::feeding(
        store.clone(),
        bus.clone(),
        "projections",
        vec![Arc::new(Organizations), Arc::new(Directory)],
    );
    let mut failures = 0;
    for _ in 0..50 {
        if runner
            .process_next_batch(Duration::from_secs(1))
            .await
            .is_err()
        {
            failures += 1;
        }
        if checkpoint(store.pool(), "directory").await.unwrap() == end {
            break;
        }
    }
    assert!(
        failures > 0,
        "the organizations projection should have failed"
    );
    assert_eq!(checkpoint(store.pool(), "directory").await.unwrap(), end);
    assert_eq!(read_model_count(&store).await, 0);

    // It goes on failing, and the other goes on with what comes next.
    create_organizations_named(&store, &["later"]).await;
    publish(&mut relay, 3).await;
    let end = feed_eventually(&store, end, 3).await.last().unwrap().cursor;
    for _ in 0..50 {
        let _ = runner.process_next_batch(Duration::from_secs(1)).await;
        if checkpoint(store.pool(), "directory").await.unwrap() == end {
            break;
        }
    }
    assert_eq!(checkpoint(store.pool(), "directory").await.unwrap(), end);
    assert_eq!(read_model_count(&store).await, 0);
    // Every message was acknowledged all the same: NATS will deliver none of them again.
    assert!(drained(&stream, "projections").await);

    // Once writes work again, it catches up from the store, with nothing delivered.
    sqlx::query("GRANT INSERT ON organizations TO tenantry_system")
        .execute(&mut su)
        .await
        .unwrap();
    drain(&mut runner, &store, 4).await;
    assert_eq!(read_model_count(&store).await, 4);
    assert_eq!(
        checkpoint(store.pool(), "organizations").await.unwrap(),
        end
    );
}

#[tokio::test]
async fn a_projection_catches_up_from_the_store_with_nothing_delivered() {
    // Six hundred events nothing published (a relay that is down, or a runner restarted
    // after its projection failed on all of them): more than one read from the store takes.
    let (store, _) = fresh_store().await;
    let bus = fresh_bus().await;
    bus.ensure_stream().await.unwrap();
    create_organizations(&store, 200).await;
    let mut runner = Runner::new(store.clone(), bus.clone(), Arc::new(Organizations));
    drain(&mut runner, &store, 200).await;
    assert_eq!(read_model_count(&store).await, 200);
}

#[tokio::test]
async fn a_long_hole_is_filled_a_batch_at_a_time() {
    let (store, _) = fresh_store().await;
    let bus = fresh_bus().await;
    bus.ensure_stream().await.unwrap();
    create_organizations(&store, 200).await;
    // Of six hundred events NATS only ever sees the last.
    let feed = feed_eventually(&store, Cursor::START, 600).await;
    let (last, before) = (&feed[599], &feed[598]);
    publish_one(&bus, last, before.cursor, last.event_id.to_string()).await;

    let mut runner = Runner::new(store.clone(), bus.clone(), Arc::new(Organizations));
    match runner
        .process_next_batch(Duration::from_secs(5))
        .await
        .unwrap()
    {
        Outcome::Processed { applied, .. } => assert_eq!(applied, 500, "one transaction's worth"),
        Outcome::Idle => panic!("the event should have been delivered"),
    }
    // The rest of the hole, and the delivered event, follow from the store.
    assert_eq!(drain(&mut runner, &store, 200).await, 100);
    assert_eq!(read_model_count(&store).await, 200);
}
