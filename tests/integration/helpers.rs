//! The test harness: every test gets its own database (created from a migrated template),
//! its own JetStream stream and subject prefix, and, with `spawn_app`, its own server on a
//! random port. PostgreSQL and NATS are real: `make test` starts them and exports
//! `DATABASE_URL`, `NATS_URL` and `TENANTRY_SUPERUSER_URL`.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tenantry::{Application, Settings};
use tenantry_eventstore::bus::{Bus, HEADER_CURSOR, HEADER_PREV_CURSOR};
use tenantry_eventstore::read::read_feed;
use tenantry_eventstore::{Cursor, EventStore, MasterKey, RecordedEvent, Vault, MIGRATOR};
use tokio::sync::oneshot;
use uuid::Uuid;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
/// Every test application and store seals personal data under this master key.
pub const MASTER_KEY: &str = "7e5a9c1f0b3d2e4f6a8c0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d";

/// The vault of [`MASTER_KEY`].
pub fn test_vault() -> Vault {
    Vault::new(&MasterKey::parse(MASTER_KEY).unwrap())
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `make test`, which starts PostgreSQL and NATS"
        )
    })
}

/// Replaces the database name of a PostgreSQL URL.
fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url
        .rsplit_once('/')
        .expect("a database URL ends in /<name>");
    format!("{base}/{database}")
}

/// The template's name changes whenever a migration does.
fn template_name() -> String {
    let mut fingerprint: u64 = 0xcbf29ce484222325;
    for migration in MIGRATOR.iter() {
        for byte in migration
            .checksum
            .iter()
            .chain(migration.version.to_le_bytes().iter())
        {
            fingerprint = (fingerprint ^ u64::from(*byte)).wrapping_mul(0x100000001b3);
        }
    }
    format!("tenantry_template_{fingerprint:016x}")
}

/// Logs to the test output when `TENANTRY_LOG` is set (e.g. `TENANTRY_LOG=warn`).
fn init_logging() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("TENANTRY_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// A fresh, migrated database of its own; returns its URL.
pub async fn fresh_database() -> String {
    init_logging();
    let base_url = env("DATABASE_URL");
    let mut conn = PgConnection::connect(&base_url)
        .await
        .expect("connect to DATABASE_URL");
    let template = template_name();
    // One test process migrates the template; the others wait for it.
    conn.execute("SELECT pg_advisory_lock(4242)").await.unwrap();
    let (exists,): (bool,) =
        sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    if !exists {
        let building = format!("{template}_building");
        conn.execute(format!("DROP DATABASE IF EXISTS {building}").as_str())
            .await
            .unwrap();
        conn.execute(format!("CREATE DATABASE {building}").as_str())
            .await
            .unwrap();
        let pool = PgPool::connect(&with_database(&base_url, &building))
            .await
            .unwrap();
        MIGRATOR.run(&pool).await.expect("migrations apply");
        pool.close().await;
        conn.execute(format!("ALTER DATABASE {building} RENAME TO {template}").as_str())
            .await
            .unwrap();
    }
    conn.execute("SELECT pg_advisory_unlock(4242)")
        .await
        .unwrap();
    let name = format!("t_{}", Uuid::new_v4().simple());
    conn.execute(format!("CREATE DATABASE {name} TEMPLATE {template}").as_str())
        .await
        .expect("create the test database");
    conn.close().await.unwrap();
    with_database(&base_url, &name)
}

/// A superuser connection to the database at `url` (for tampering behind the store's back).
pub async fn superuser(url: &str) -> PgConnection {
    let database = url.rsplit_once('/').unwrap().1;
    PgConnection::connect(&with_database(&env("TENANTRY_SUPERUSER_URL"), database))
        .await
        .expect("connect as superuser")
}

/// An event store on a fresh database.
pub async fn fresh_store() -> (EventStore, String) {
    let url = fresh_database().await;
    let store = EventStore::connect(&url, 40).await.unwrap();
    (
        store
            .with_vault(test_vault())
            .keeping(tenantry_commands::conversations::KEPT),
        url,
    )
}

/// A NATS connection and a bus (stream and prefix) of its own.
pub async fn fresh_bus() -> Bus {
    let client = async_nats::connect(env("NATS_URL"))
        .await
        .expect("connect to NATS");
    let id = Uuid::new_v4().simple().to_string();
    Bus::new(client, format!("T_{id}"), format!("t{id}"))
}

/// A bus on the stream and prefix of a running application.
pub async fn fresh_bus_named(app: &TestApp) -> Bus {
    let client = async_nats::connect(env("NATS_URL"))
        .await
        .expect("connect to NATS");
    Bus::new(client, app.nats_stream.clone(), app.nats_prefix.clone())
}

/// A running application on a fresh database and bus.
pub struct TestApp {
    pub address: String,
    /// The JetStream stream and subject prefix this application uses.
    pub nats_stream: String,
    pub nats_prefix: String,
    pub database_url: String,
    pub store: EventStore,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

/// Spawns the whole application (API, relay, projections).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the application with settings adjusted by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let database_url = fresh_database().await;
    let bus = fresh_bus().await;
    let mut settings = Settings::new(database_url.clone(), env("NATS_URL"), ADMIN_KEY.into());
    settings.listen = "127.0.0.1:0".into();
    settings.nats_stream = bus.stream.clone();
    settings.nats_prefix = bus.prefix.clone();
    settings.db_max_connections = 10;
    settings.vault = test_vault();
    configure(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("the application builds");
    let port = app.port().expect("the API listens");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        nats_stream: bus.stream.clone(),
        nats_prefix: bus.prefix.clone(),
        store: EventStore::connect(&database_url, 10)
            .await
            .unwrap()
            .with_vault(test_vault())
            .keeping(tenantry_commands::conversations::KEPT),
        database_url,
        client: reqwest::Client::new(),
        stop: Some(stop),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A request with the platform admin key.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_KEY)
    }

    /// Waits until `/readyz` answers 200 (the NATS connection is made in the background at
    /// start); panics after 10 s.
    pub async fn ready(&self) {
        let ready = eventually(Duration::from_secs(10), || async {
            let response = self.client.get(self.url("/readyz")).send().await.unwrap();
            response.status() == reqwest::StatusCode::OK
        })
        .await;
        assert!(ready, "never ready");
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn create_organization(&self, slug: &str) -> reqwest::Response {
        self.admin(reqwest::Method::POST, "/v1/organizations")
            .json(&serde_json::json!({
                "name": format!("Org {slug}"),
                "slug": slug,
                "tier": "pro",
                "billing_email": format!("billing@{slug}.example.com"),
            }))
            .send()
            .await
            .unwrap()
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Up to `limit` feed events after `after`.
pub async fn feed_after(store: &EventStore, after: Cursor, limit: i64) -> Vec<RecordedEvent> {
    let mut tx = store.begin_system().await.unwrap();
    let events = read_feed(&mut tx, after, limit).await.unwrap();
    tx.commit().await.unwrap();
    events
}

/// The feed after `after` once it holds at least `count` events (or whatever it holds after
/// 30 s). Transaction ids are cluster-wide, so transactions of tests running in other
/// databases can hold the feed back for a moment.
pub async fn feed_eventually(
    store: &EventStore,
    after: Cursor,
    count: usize,
) -> Vec<RecordedEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut events = Vec::new();
    let mut cursor = after;
    loop {
        let page = feed_after(store, cursor, 5_000).await;
        if let Some(last) = page.last() {
            cursor = last.cursor;
            events.extend(page);
            continue;
        }
        if events.len() >= count || tokio::time::Instant::now() >= deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes `event` on its own, as the relay would after `prev`, under `message_id`.
pub async fn publish_one(bus: &Bus, event: &RecordedEvent, prev: Cursor, message_id: String) {
    let message = PublishMessage::build()
        .payload(serde_json::to_vec(event).unwrap().into())
        .message_id(message_id)
        .header(HEADER_CURSOR, event.cursor.to_string().as_str())
        .header(HEADER_PREV_CURSOR, prev.to_string().as_str());
    bus.jetstream
        .send_publish(bus.subject_for(event), message)
        .await
        .unwrap()
        .await
        .unwrap();
}
