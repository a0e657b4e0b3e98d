//! Usage, invoices, closing a month, reconciliation and rebuilds.

use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Executor;
use tenantry_domain::billing::Month;
use tenantry_domain::conversation::ConversationEvent;
use tenantry_domain::organization::{OrganizationEvent, OrganizationStatus};
use tenantry_domain::*;
use tenantry_eventstore::append::append_at;
use tenantry_eventstore::{Cursor, EventStore, Expected, Metadata, NewEvent};

use crate::helpers::{eventually, spawn_app, superuser, TestApp, ADMIN_KEY};
use crate::walkthrough::{organization, Client};

fn previous_month() -> Month {
    Month::of(Month::of(Utc::now()).start() - chrono::Duration::days(1))
}

fn event<E: serde::Serialize>(e: &E) -> NewEvent {
    NewEvent::from_domain(e, 1).unwrap()
}

/// Records organization `org` (`slug`, on `tier` with `terms`) as created at `at`, as an
/// import would write it: its slug reserved and `OrganizationCreated` appended, in `tx`.
async fn record_organization(
    tx: &mut sqlx::PgConnection,
    org: OrganizationId,
    slug: &str,
    tier: Tier,
    terms: Terms,
    at: chrono::DateTime<chrono::Utc>,
) {
    sqlx::query("INSERT INTO organization_slugs (slug, tenant_id) VALUES ($1, $2)")
        .bind(slug)
        .bind(org.as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap();
    let created = OrganizationEvent::OrganizationCreated {
        organization_id: org,
        name: OrganizationName::parse(slug).unwrap(),
        slug: Slug::parse(slug).unwrap(),
        tier,
        terms,
        billing_email: Email::parse(format!("b@{slug}.example.com")).unwrap(),
        status: OrganizationStatus::Active,
        trial_ends_at: None,
    };
    append_at(
        tx,
        TenantId::from(org),
        "organization",
        org.as_uuid(),
        Expected::NoStream,
        vec![event(&created)],
        &Metadata::default(),
        at,
    )
    .await
    .unwrap();
}

/// An organization with `conversations` conversations, written as an import would: dated in
/// a past month.
async fn history(
    store: &EventStore,
    slug: &str,
    month: Month,
    conversations: usize,
) -> OrganizationId {
    let org = OrganizationId::new();
    let tenant = TenantId::from(org);
    let created_at = month.start() + chrono::Duration::days(2);
    let mut tx = store.begin_tenant(tenant).await.unwrap();
    let terms = Tier::Basic.list_terms().unwrap();
    record_organization(&mut tx, org, slug, Tier::Basic, terms, created_at).await;
    for i in 0..conversations {
        let id = ConversationId::new();
        let started = ConversationEvent::ConversationStarted {
            conversation_id: id,
            agent_instance_id: AgentInstanceId::new(),
            agent_type: AgentType::CustomerService,
            store_id: StoreId::new(),
            organization_id: org,
            customer_ref: None,
            channel: Channel::Web,
        };
        let at = created_at + chrono::Duration::hours(1 + i as i64);
        append_at(
            &mut tx,
            tenant,
            "conversation",
            id.as_uuid(),
            Expected::NoStream,
            vec![event(&started)],
            &Metadata::default(),
            at,
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    org
}

async fn usage_count(store: &EventStore, org: OrganizationId, month: Month) -> i64 {
    let mut tx = store.begin_system().await.unwrap();
    sqlx::query_scalar("SELECT COALESCE(max(conversations), 0) FROM usage_monthly WHERE tenant_id = $1 AND month = $2")
        .bind(org.as_uuid())
        .bind(month.to_string())
        .fetch_one(&mut *tx)
        .await
        .unwrap()
}

async fn reconcile(app: &TestApp, month: Month) -> Vec<Value> {
    let report: Value = app
        .admin(Method::POST, "/v1/admin/reconciliations")
        .json(&json!({ "month": month }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    report["differences"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_month_is_billed_closed_once_and_reconciled_against_the_log() {
    let app = spawn_app().await;
    let month = previous_month();
    let org = history(&app.store, "history", month, 3).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            usage_count(&app.store, org, month).await == 3
        })
        .await
    );

    let path = format!("/v1/organizations/{org}/invoices/{month}");
    let draft: Value = app
        .admin(Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["number"], format!("INV-history-{}", month.compact()));
    let days = month.seconds() / 86_400;
    let expected = rust_decimal::Decimal::new(9_900, 2) * rust_decimal::Decimal::from(days - 2)
        / rust_decimal::Decimal::from(days);
    let expected =
        expected.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    assert_eq!(draft["total"], expected.to_string());

    // Closing finalizes once; the second run changes nothing.
    let close = |m: Month| {
        app.admin(Method::POST, "/v1/admin/billing/close")
            .json(&json!({ "month": m }))
            .send()
    };
    let first: Value = close(month).await.unwrap().json().await.unwrap();
    assert_eq!(
        (
            first["finalized"].as_i64(),
            first["already_finalized"].as_i64()
        ),
        (Some(1), Some(0)),
        "{first}"
    );
    let second: Value = close(month).await.unwrap().json().await.unwrap();
    assert_eq!(
        (
            second["finalized"].as_i64(),
            second["already_finalized"].as_i64()
        ),
        (Some(0), Some(1)),
        "{second}"
    );
    let current = close(Month::of(Utc::now())).await.unwrap();
    assert_eq!(
        current.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "an open month cannot be closed"
    );

    assert!(
        eventually(Duration::from_secs(20), || async {
            let invoice: Value = app
                .admin(Method::GET, &path)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            invoice["status"] == "finalized"
        })
        .await
    );
    let finalized: Value = app
        .admin(Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(finalized["total"], draft["total"]);
    assert_eq!(finalized["lines"], draft["lines"]);

    assert_eq!(reconcile(&app, month).await, Vec::<Value>::new());

    // Corrupt a usage row and an invoice line behind the store's back: both are reported.
    let mut su = superuser(&app_database(&app)).await;
    su.execute(
        format!("UPDATE usage_monthly SET conversations = 7 WHERE tenant_id = '{org}'").as_str(),
    )
    .await
    .unwrap();
    su.execute(format!("UPDATE invoices SET lines = jsonb_set(lines, '{{0,amount}}', '\"1.00\"') WHERE tenant_id = '{org}'").as_str())
        .await
        .unwrap();
    let differences = reconcile(&app, month).await;
    let fields: Vec<&str> = differences
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"usage.conversations"), "{differences:?}");
    assert!(
        fields.contains(&"invoices.lines[0].amount") || fields.contains(&"invoice.lines[0].amount"),
        "{differences:?}"
    );

    // The command line says the same, and exits non-zero.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(args)
            .env("DATABASE_URL", &app.database_url)
            .output()
            .unwrap()
    };
    let month_text = month.to_string();
    let out = cli(&["reconcile", "--month", &month_text]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("field=usage.conversations expected=3 found=7"),
        "{stdout}"
    );

    // Rebuilding the read models from the log clears them.
    let out = cli(&["rebuild", "billing"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(reconcile(&app, month).await, Vec::<Value>::new());
    let out = cli(&["reconcile", "--month", &month_text, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn app_database(app: &TestApp) -> String {
    app.database_url.clone()
}

#[tokio::test]
async fn usage_dashboard_volume_and_stats_follow_the_conversations() {
    let app = spawn_app().await;
    let (org, mut owner) = organization(&app, "busy-shop", "basic").await;
    let store = owner
        .ok(
            Method::POST,
            &format!("/v1/organizations/{org}/stores"),
            Some(json!({ "name": "S", "domain": "s.example.com" })),
        )
        .await;
    let store = store["id"].as_str().unwrap().to_owned();
    let agent = owner
        .ok(
            Method::POST,
            &format!("/v1/stores/{store}/agent-instances"),
            Some(json!({ "agent_type": "customer_service" })),
        )
        .await;
    let agent = agent["id"].as_str().unwrap().to_owned();
    for _ in 0..4 {
        let c = owner
            .ok(
                Method::POST,
                "/v1/conversations",
                Some(json!({ "agent_instance_id": agent })),
            )
            .await;
        let id = c["id"].as_str().unwrap().to_owned();
        owner
            .ok(
                Method::POST,
                &format!("/v1/conversations/{id}/messages"),
                Some(
                    json!({ "role": "customer", "content": "hi", "tokens_in": 5, "tokens_out": 2 }),
                ),
            )
            .await;
    }
    let usage = owner
        .ok(Method::GET, &format!("/v1/organizations/{org}/usage"), None)
        .await;
    assert_eq!(usage["conversations"], 4);
    assert_eq!(usage["messages"], 4);
    assert_eq!(usage["tokens_in"], 20);
    assert_eq!(usage["included_conversations"], 1000);
    assert_eq!(usage["by_agent_instance"][0]["conversations"], 4);
    let dashboard = owner
        .ok(
            Method::GET,
            &format!("/v1/organizations/{org}/dashboard"),
            None,
        )
        .await;
    assert_eq!(dashboard["this_month"]["conversations"], 4);
    assert_eq!(
        dashboard["agent_instances"]["by_type"]["customer_service"],
        1
    );
    assert_eq!(dashboard["stores"]["active"], 1);
    let volume = owner
        .ok(
            Method::GET,
            &format!("/v1/organizations/{org}/volume"),
            None,
        )
        .await;
    let total: i64 = volume["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["conversations"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 4);
    let stats = owner
        .ok(Method::GET, &format!("/v1/stores/{store}/stats"), None)
        .await;
    assert_eq!(stats["all_time"]["conversations"], 4);
    let stats = owner
        .ok(
            Method::GET,
            &format!("/v1/agent-instances/{agent}/stats"),
            None,
        )
        .await;
    assert_eq!(stats["this_month"]["messages"], 4);
    let invoices = owner
        .ok(
            Method::GET,
            &format!("/v1/organizations/{org}/invoices"),
            None,
        )
        .await;
    assert_eq!(invoices["data"][0]["status"], "draft");
    let (status, _) = owner
        .send(
            Method::GET,
            &format!("/v1/organizations/{org}/usage?month=2026-13"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Every projection table, as text, in a stable order.
async fn snapshot(store: &EventStore) -> Vec<String> {
    let mut rows = Vec::new();
    let mut tx = store.begin_system().await.unwrap();
    for projection in tenantry_projections::all() {
        for table in projection.tables() {
            let sql = format!("SELECT t::text FROM {table} t ORDER BY t::text");
            let table_rows: Vec<String> =
                sqlx::query_scalar(&sql).fetch_all(&mut *tx).await.unwrap();
            rows.push(format!("{table}: {}", table_rows.len()));
            rows.extend(table_rows.into_iter().map(|r| format!("{table} {r}")));
        }
    }
    rows
}

#[tokio::test]
async fn rebuilt_tables_equal_the_live_ones_row_for_row() {
    let app = spawn_app().await;
    let bus = tenantry_commands::CommandBus::new(
        app.store.clone(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    );
    let mut events = 0;
    let mut tenants = Vec::new();
    for t in 0..20 {
        let (done, _, _) = bus
            .execute(
                (),
                tenantry_commands::organizations::NewOrganization::new(
                    OrganizationName::parse(format!("Tenant {t}")).unwrap(),
                    Slug::parse(format!("tenant-{t}")).unwrap(),
                    Tier::Basic,
                    Email::parse(format!("b{t}@example.com")).unwrap(),
                ),
                &tenantry_commands::Request::default(),
            )
            .await
            .unwrap();
        tenants.push(done.aggregate.id.unwrap());
        events += 3;
    }
    // Tier changes for half of them.
    for org in tenants.iter().step_by(2) {
        bus.execute(
            *org,
            tenantry_domain::organization::OrganizationCommand::ChangeTier {
                tier: Tier::Pro,
                custom_terms: None,
                by_platform_admin: false,
            },
            &tenantry_commands::Request::default(),
        )
        .await
        .unwrap();
        events += 1;
    }
    // Conversations written in bulk: start, four messages, end per transaction.
    for (t, org) in tenants.iter().enumerate() {
        let tenant = TenantId::from(*org);
        let instance = AgentInstanceId::new();
        let mut tx = app.store.begin_tenant(tenant).await.unwrap();
        for c in 0..85 {
            let id = ConversationId::new();
            let mut batch = vec![event(&ConversationEvent::ConversationStarted {
                conversation_id: id,
                agent_instance_id: instance,
                agent_type: AgentType::CustomerService,
                store_id: StoreId::new(),
                organization_id: *org,
                customer_ref: Some(CustomerRef::parse(format!("c{t}-{c}")).unwrap()),
                channel: Channel::Api,
            })];
            for m in 0..4u64 {
                batch.push(event(&ConversationEvent::MessageAppended {
                    message_id: MessageId::new(),
                    agent_instance_id: instance,
                    role: if m % 2 == 0 {
                        MessageRole::Customer
                    } else {
                        MessageRole::Agent
                    },
                    content: MessageContent::parse(format!("message {m}")).unwrap(),
                    tokens_in: m * 3,
                    tokens_out: m,
                }));
            }
            batch.push(event(&ConversationEvent::ConversationEnded {
                agent_instance_id: instance,
                resolution: Resolution::Resolved,
                messages: 4,
                tokens_in: 18,
                tokens_out: 6,
            }));
            events += batch.len();
            tenantry_eventstore::append(
                &mut tx,
                tenant,
                "conversation",
                id.as_uuid(),
                Expected::NoStream,
                batch,
                &Metadata::default(),
            )
            .await
            .unwrap();
            if c % 20 == 19 {
                tx.commit().await.unwrap();
                tx = app.store.begin_tenant(tenant).await.unwrap();
            }
        }
        tx.commit().await.unwrap();
    }
    assert!(events >= 10_000, "{events} events");

    // Let the live projections consume everything.
    let head = crate::helpers::feed_eventually(&app.store, Cursor::START, events).await;
    assert_eq!(head.len(), events);
    let end = head.last().unwrap().cursor;
    for projection in tenantry_projections::all() {
        let name = projection.name();
        assert!(
            eventually(Duration::from_secs(120), || async {
                tenantry_projections::consistency::checkpoint(app.store.pool(), name)
                    .await
                    .unwrap()
                    >= end
            })
            .await,
            "{name} did not catch up"
        );
    }
    let live = snapshot(&app.store).await;
    // Spoil the live tables behind the projections' back: only a rebuild that really replaces
    // their contents brings them back.
    let mut su = superuser(&app.database_url).await;
    su.execute(
        "DELETE FROM usage_monthly; DELETE FROM members; UPDATE organizations SET name = 'spoiled'",
    )
    .await
    .unwrap();
    assert_ne!(snapshot(&app.store).await, live, "the spoiling took");
    for projection in tenantry_projections::all() {
        let rebuilt = tenantry_projections::rebuild::rebuild(&app.store, projection, |_| {})
            .await
            .unwrap();
        assert_eq!(rebuilt.events as usize, events);
        assert_eq!(rebuilt.checkpoint, end);
    }
    let again = snapshot(&app.store).await;
    assert_eq!(live.len(), again.len());
    let differing: Vec<_> = live
        .iter()
        .zip(&again)
        .filter(|(a, b)| a != b)
        .take(5)
        .collect();
    assert!(differing.is_empty(), "{differing:?}");
}

#[tokio::test]
async fn crossing_80_and_100_percent_of_the_allowance_is_recorded_once_each() {
    let app = spawn_app().await;
    let mut admin = Client::new(&app, ADMIN_KEY);
    let created = admin
        .ok(
            Method::POST,
            "/v1/organizations",
            Some(json!({
                "name": "Small enterprise", "slug": "small-enterprise", "tier": "enterprise",
                "billing_email": "b@small.example.com", "base_fee": "1000.00",
                "included_conversations": 5, "overage_rate": "0.50",
            })),
        )
        .await;
    let org = created["id"].as_str().unwrap().to_owned();
    let mut owner = Client::new(&app, created["api_key"]["secret"].as_str().unwrap());
    owner.position = admin.position.clone();
    let (_, agent) = owner.store_with_agent(&org, "sales").await;
    let alerts = |dashboard: &Value| -> Vec<i64> {
        let mut t: Vec<i64> = dashboard["usage_alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["threshold"].as_i64().unwrap())
            .collect();
        t.sort();
        t
    };
    for n in 1..=7 {
        owner
            .ok(
                Method::POST,
                "/v1/conversations",
                Some(json!({ "agent_instance_id": agent })),
            )
            .await;
        let expected: Vec<i64> = match n {
            1..=3 => vec![],
            4 => vec![80],
            _ => vec![80, 100],
        };
        // The alert is recorded by the policy as the usage projection counts; wait for it.
        let seen = eventually(Duration::from_secs(10), || async {
            let dashboard = app
                .client
                .get(app.url(&format!("/v1/organizations/{org}/dashboard")))
                .bearer_auth(&owner.key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap();
            alerts(&dashboard) == expected
        })
        .await;
        assert!(
            seen,
            "after {n} conversations the alerts should be {expected:?}"
        );
    }
    // Exactly two UsageThresholdCrossed events.
    let mut tx = app.store.begin_system().await.unwrap();
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'UsageThresholdCrossed'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(recorded, 2);
    // Over the allowance: the usage shows overage.
    let usage = owner
        .ok(Method::GET, &format!("/v1/organizations/{org}/usage"), None)
        .await;
    assert_eq!(usage["conversations"], 7);
    assert_eq!(usage["included_conversations"], 5);
}

#[tokio::test]
async fn events_delivered_twice_are_counted_once_by_every_read_model() {
    let app = spawn_app().await;
    let (org, mut owner) = organization(&app, "twice", "pro").await;
    let (_, agent) = owner.store_with_agent(&org, "sales").await;
    for _ in 0..5 {
        let c = owner
            .ok(
                Method::POST,
                "/v1/conversations",
                Some(json!({ "agent_instance_id": agent })),
            )
            .await;
        let id = c["id"].as_str().unwrap().to_owned();
        owner
            .ok(
                Method::POST,
                &format!("/v1/conversations/{id}/messages"),
                Some(json!({ "role": "customer", "content": "hi", "tokens_in": 3 })),
            )
            .await;
    }
    // Everything the client did, up to its last consistency token, is on the feed.
    let token: Cursor = owner.position.clone().unwrap().parse().unwrap();
    let mut feed = Vec::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            let store = app.store.clone();
            async move {
                crate::helpers::feed_after(&store, Cursor::START, 100_000)
                    .await
                    .last()
                    .is_some_and(|e| e.cursor >= token)
            }
        })
        .await
    );
    feed.extend(crate::helpers::feed_after(&app.store, Cursor::START, 100_000).await);
    let end = feed.last().unwrap().cursor;
    let caught_up = || async {
        for projection in tenantry_projections::all() {
            if tenantry_projections::consistency::checkpoint(app.store.pool(), projection.name())
                .await
                .unwrap()
                < end
            {
                return false;
            }
        }
        true
    };
    assert!(eventually(Duration::from_secs(20), caught_up).await);
    let before = snapshot(&app.store).await;

    // Every event again: once under its own message id (NATS drops it), once under a new one
    // (as after the duplicate window; the projections' checkpoints drop it).
    let bus = crate::helpers::fresh_bus_named(&app).await;
    let mut prev = Cursor::START;
    for event in &feed {
        for id in [
            event.event_id.to_string(),
            format!("again-{}", event.event_id),
        ] {
            crate::helpers::publish_one(&bus, event, prev, id).await;
        }
        prev = event.cursor;
    }
    // Wait until the projections' consumer has nothing left to deliver or acknowledge.
    let stream = bus.jetstream.get_stream(&bus.stream).await.unwrap();
    let drained = eventually(Duration::from_secs(30), || {
        let stream = stream.clone();
        async move {
            let mut consumer = stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
                    tenantry_projections::CONSUMER,
                )
                .await
                .unwrap();
            let info = consumer.info().await.unwrap();
            info.num_pending == 0 && info.num_ack_pending == 0
        }
    })
    .await;
    assert!(drained, "the consumers did not drain");
    assert_eq!(snapshot(&app.store).await, before);
    let usage = owner
        .ok(Method::GET, &format!("/v1/organizations/{org}/usage"), None)
        .await;
    assert_eq!(usage["conversations"], 5);
    assert_eq!(usage["messages"], 5);
}

#[tokio::test]
async fn only_the_platform_admin_sets_enterprise_terms_and_they_are_bounded() {
    let app = spawn_app().await;
    let (org, mut owner) = organization(&app, "own-price", "pro").await;
    let mut admin = Client::new(&app, ADMIN_KEY);
    admin.position = owner.position.clone();
    let tier = format!("/v1/organizations/{org}/tier");

    // An owner may not price Enterprise, nor ask for it without terms.
    for body in [
        json!({ "tier": "enterprise", "base_fee": "0.01", "included_conversations": 1_000, "overage_rate": "0.0001" }),
        json!({ "tier": "enterprise" }),
    ] {
        let (status, problem) = owner.send(Method::POST, &tier, Some(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("platform-admin-only"),
            "{problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains("Enterprise"),
            "{problem}"
        );
    }

    // The platform admin's terms are checked value by value: cents, four places, bounds.
    let terms = |fee: &str, rate: &str| json!({ "tier": "enterprise", "base_fee": fee, "included_conversations": 50_000, "overage_rate": rate });
    for (body, field) in [
        (terms("0.000000000000000000000000001", "0.02"), "base_fee"),
        (terms("0.001", "0.02"), "base_fee"),
        (terms("0", "0.02"), "base_fee"),
        (terms("1000000.01", "0.02"), "base_fee"),
        (terms("2500.00", "0.0000000001"), "overage_rate"),
        (terms("2500.00", "0.00001"), "overage_rate"),
        (terms("2500.00", "1000.0001"), "overage_rate"),
        (terms("2500.00", "-1"), "overage_rate"),
    ] {
        let (status, problem) = admin.send(Method::POST, &tier, Some(body.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }

    // The platform admin's own terms are taken, and billed.
    let enterprise = admin
        .ok(Method::POST, &tier, Some(terms("2500.00", "0.0125")))
        .await;
    assert_eq!(enterprise["tier"], "enterprise");
    owner.position = admin.position.clone();
    let invoices = owner
        .ok(
            Method::GET,
            &format!("/v1/organizations/{org}/invoices"),
            None,
        )
        .await;
    let lines = invoices["data"][0]["lines"].as_array().unwrap();
    let last_fee = &lines[lines.len() - 2];
    assert_eq!(last_fee["unit_price"], "2500.00", "{invoices}");
    assert_eq!(lines[lines.len() - 1]["unit_price"], "0.0125", "{invoices}");

    // An owner may still leave Enterprise for a listed tier.
    let pro = owner
        .ok(Method::POST, &tier, Some(json!({ "tier": "pro" })))
        .await;
    assert_eq!(pro["tier"], "pro");
}

/// An Enterprise organization on `included` conversations a month, created (as an import
/// would) early in `month`, so every later month is billed whole under its terms.
async fn enterprise_since(
    store: &EventStore,
    slug: &str,
    month: Month,
    included: IncludedConversations,
) -> OrganizationId {
    let org = OrganizationId::new();
    let mut tx = store.begin_tenant(TenantId::from(org)).await.unwrap();
    let terms = Terms {
        base_fee: BaseFee::parse(rust_decimal::Decimal::new(250_000, 2)).unwrap(),
        included_conversations: included,
        overage_rate: OverageRate::parse(rust_decimal::Decimal::new(2, 2)).unwrap(),
    };
    let created_at = month.start() + chrono::Duration::days(2);
    record_organization(&mut tx, org, slug, Tier::Enterprise, terms, created_at).await;
    tx.commit().await.unwrap();
    org
}

#[tokio::test]
async fn included_conversations_are_bounded_and_read_the_same_everywhere() {
    let app = spawn_app().await;
    let mut admin = Client::new(&app, ADMIN_KEY);

    // Above the bound, and the u64 that read back as -1: refused where they enter.
    let (org, owner) = organization(&app, "big-allowance", "pro").await;
    admin.position = owner.position.clone();
    for n in [json!(1_000_000_001u64), json!(u64::MAX)] {
        let terms =
            json!({ "base_fee": "2500.00", "included_conversations": n, "overage_rate": "0.02" });
        let mut change = terms.clone();
        change["tier"] = json!("enterprise");
        let (status, problem) = admin
            .send(
                Method::POST,
                &format!("/v1/organizations/{org}/tier"),
                Some(change),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{n}: {problem}");
        assert_eq!(problem["field"], "included_conversations", "{problem}");
        let mut create = terms;
        create["tier"] = json!("enterprise");
        create["name"] = json!("Huge");
        create["slug"] = json!("huge");
        create["billing_email"] = json!("b@huge.example.com");
        let (status, problem) = admin
            .send(Method::POST, "/v1/organizations", Some(create))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{n}: {problem}");
        assert_eq!(problem["field"], "included_conversations", "{problem}");
    }

    // The most a month may include, in force all month: the usage, the dashboard and the
    // invoice show the same number.
    let most = IncludedConversations::parse(1_000_000_000).unwrap();
    let org = enterprise_since(&app.store, "most-included", previous_month(), most).await;
    let month = Month::of(Utc::now());
    let get = |path: String| {
        let app = &app;
        async move {
            let response = app.admin(Method::GET, &path).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    // The billing projection applies the imported event; wait until it has.
    let usage_path = format!("/v1/organizations/{org}/usage");
    eventually(Duration::from_secs(20), || async {
        get(usage_path.clone()).await.1["included_conversations"] != 0
    })
    .await;
    let (_, usage) = get(usage_path).await;
    assert_eq!(usage["included_conversations"], 1_000_000_000, "{usage}");
    let (_, dashboard) = get(format!("/v1/organizations/{org}/dashboard")).await;
    assert_eq!(
        dashboard["this_month"]["included_conversations"], 1_000_000_000,
        "{dashboard}"
    );
    let (_, invoice) = get(format!("/v1/organizations/{org}/invoices/{month}")).await;
    let overage = invoice["lines"][1]["description"].as_str().unwrap();
    assert!(overage.contains("beyond 1000000000 included"), "{invoice}");
}
