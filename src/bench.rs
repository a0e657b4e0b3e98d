//! `tenantry bench`: the platform measured against the raw database, on this machine.
//!
//! Each figure with a physical reference is printed beside it, measured in the same run on
//! the same database: `pgbench` inserting one event-shaped row per transaction (and ten) at
//! the same concurrency. Scenarios: append (event store alone), commands over HTTP,
//! projection lag under half that load, rebuild, replay, and resident memory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use serde::Serialize;
use tenantry_domain::TenantId;
use tenantry_eventstore::read::read_stream;
use tenantry_eventstore::{append, EventStore, Expected, Metadata, NewEvent, Prepared};
use uuid::Uuid;

use crate::{Application, Settings};

/// The throwaway PostgreSQL keeps its defaults (durability included); autovacuum's visits are
/// logged, to tell them from the platform's own stalls.
const BENCH_SETTINGS: &[&str] = &["log_autovacuum_min_duration=0"];

/// What to run.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Use this database instead of starting a throwaway one (it should be empty).
    #[arg(long)]
    pub database_url: Option<String>,
    #[arg(long)]
    pub nats_url: Option<String>,
    /// Seconds each scenario runs after its warm-up.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    pub json: bool,
    /// Events recorded for the rebuild, replay and reconcile scenarios.
    #[arg(long, default_value_t = 1_000_000)]
    pub volume: u64,
    /// Of those, the events of the one tenant whose history is replayed.
    #[arg(long, default_value_t = 200_000)]
    pub replay_events: u64,
}

#[derive(Debug, Default, Serialize)]
struct Figures {
    pgbench_one_row_tps: f64,
    pgbench_ten_rows_events_per_s: f64,
    /// One event per append to fresh streams, by group commit (the target's figure).
    append: AppendFigures,
    /// Load + append to existing streams, by group commit.
    append_existing: AppendFigures,
    /// One event per append to fresh streams, each in the writer's own transaction.
    append_in_transaction: AppendFigures,
    http_commands_per_s: f64,
    http_p50_ms: f64,
    http_p99_ms: f64,
    http_p999_ms: f64,
    http_ratio_to_pgbench: f64,
    projection_lag_p50_ms: f64,
    projection_lag_p99_ms: f64,
    projection_lag_max_ms: f64,
    projection_lag_peak_p99_ms: f64,
    /// The machine's CPU busy during the HTTP load at the peak and at half of it (0–1).
    cpu_busy_at_peak: f64,
    cpu_busy_at_half_peak: f64,
    /// Each projection's lag at half the peak: p50, p99, max (ms).
    projection_lag_by_projection: BTreeMap<String, [f64; 3]>,
    volume_events_per_s: f64,
    volume_caught_up_s: f64,
    rebuild_events: u64,
    rebuild_events_per_s: f64,
    replay_events: u64,
    replay_events_per_s: f64,
    replay_rss_before_mib: f64,
    replay_rss_peak_mib: f64,
    reconcile_events: u64,
    reconcile_seconds: f64,
    reconcile_rss_before_mib: f64,
    reconcile_rss_peak_mib: f64,
    reconcile_differences: usize,
    rss_at_rest_mib: f64,
    rss_after_http_mib: f64,
}

/// An append scenario's figures.
#[derive(Debug, Default, Serialize)]
struct AppendFigures {
    events_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    ratio_to_pgbench: f64,
}

impl AppendFigures {
    /// Prints and returns the figures of a scenario that ran at `rate` with `latencies`.
    fn report(name: &str, rate: f64, latencies: &[Duration], pgbench: f64) -> Self {
        let figures = Self {
            events_per_s: rate,
            p50_ms: percentile(latencies, 0.5),
            p99_ms: percentile(latencies, 0.99),
            ratio_to_pgbench: rate / pgbench,
        };
        println!(
            "{name:<44} {:>8.0} events/s  p50 {:.2} ms  p99 {:.2} ms  ({:.0} % of pgbench)",
            figures.events_per_s,
            figures.p50_ms,
            figures.p99_ms,
            figures.ratio_to_pgbench * 100.0
        );
        figures
    }
}

/// The `p` quantile of sorted latencies, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The machine's CPU time so far, busy and in all, from `/proc/stat` (Linux; zeros elsewhere).
fn cpu_times() -> (u64, u64) {
    let line = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = line
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The share of the machine's CPU busy since `from` (a [`cpu_times`] reading).
fn cpu_busy_since(from: (u64, u64)) -> f64 {
    let now = cpu_times();
    let total = now.1.saturating_sub(from.1);
    if total == 0 {
        return 0.0;
    }
    now.0.saturating_sub(from.0) as f64 / total as f64
}

const PAYLOAD: &str = r#"{"conversation_id":"0190a1f2-0000-7000-8000-000000000001","agent_instance_id":"0190a1f2-0000-7000-8000-000000000002","role":"customer","content":"Where is my order? I placed it last week and the tracking page still says the label was created. Could you check what is going on and when it will arrive? Thanks a lot.","tokens_in":42,"tokens_out":0,"channel":"web","customer_ref":"customer-000042","store_id":"0190a1f2-0000-7000-8000-000000000003"}"#;

/// pgbench with a custom script; returns transactions per second.
fn pgbench(url: &str, clients: u32, seconds: u64, rows: u32) -> anyhow::Result<f64> {
    let bin = crate::dev::pg_bin_dir()?.join("pgbench");
    let script = std::env::temp_dir().join(format!("tenantry-bench-{rows}.sql"));
    let payload = PAYLOAD.replace('\'', "''");
    std::fs::write(
        &script,
        format!(
            "INSERT INTO bench_events (tenant_id, stream_id, version, payload) \
             SELECT gen_random_uuid(), gen_random_uuid(), 1, '{payload}'::jsonb FROM generate_series(1, {rows});\n"
        ),
    )?;
    let out = std::process::Command::new(bin)
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok());
    match tps {
        Some(tps) => Ok(tps),
        None => bail!(
            "pgbench said: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn new_event() -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "MessageAppended".into(),
        schema_version: 1,
        payload: serde_json::from_str(PAYLOAD).expect("a valid payload"),
    }
}

/// Runs `clients` loops of `step` for a warm-up second and then `seconds`; returns the
/// operations per second and the sorted latencies of the measured part. A step returns the
/// latency of each operation it made.
async fn load<F, Fut>(clients: usize, seconds: u64, step: F) -> anyhow::Result<(f64, Vec<Duration>)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Duration>>> + Send,
{
    let step = Arc::new(step);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (step, measuring, stop) = (step.clone(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut operations = 0u64;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let done = step(client, n).await?;
                n += 1;
                if measuring.load(Ordering::Relaxed) {
                    operations += done.len() as u64;
                    latencies.extend(done);
                }
            }
            anyhow::Ok((operations, latencies))
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut operations = 0;
    let mut all = Vec::new();
    for task in tasks {
        let (ops, latencies) = task.await??;
        operations += ops;
        all.extend(latencies);
    }
    all.sort();
    Ok((operations as f64 / elapsed.as_secs_f64(), all))
}

/// How the append scenarios write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AppendMode {
    /// Fresh streams, by group commit.
    Fresh,
    /// Load + append to existing streams (each writer its own 64), by group commit.
    Existing,
    /// Fresh streams, each append in the writer's own transaction.
    InTransaction,
}

impl AppendMode {
    fn label(self) -> &'static str {
        match self {
            AppendMode::Fresh => "append, fresh streams, 16 writers",
            AppendMode::Existing => "append, existing streams (load + append)",
            AppendMode::InTransaction => "append, fresh streams, own transaction each",
        }
    }
}

/// 16 writers appending one event at a time.
async fn append_scenario(
    store: &EventStore,
    seconds: u64,
    mode: AppendMode,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let store = store.clone();
    let writers: Arc<Vec<(TenantId, Vec<Uuid>)>> = Arc::new(
        (0..16)
            .map(|_| (TenantId::new(), (0..64).map(|_| Uuid::now_v7()).collect()))
            .collect(),
    );
    load(16, seconds, move |writer, n| {
        let (store, writers) = (store.clone(), writers.clone());
        async move {
            let started = Instant::now();
            let metadata = Metadata::default();
            match mode {
                AppendMode::Fresh | AppendMode::Existing => {
                    let (tenant, stream, expected) = if mode == AppendMode::Fresh {
                        (TenantId::new(), Uuid::now_v7(), Expected::NoStream)
                    } else {
                        let (tenant, streams) = &writers[writer];
                        let stream = streams[n as usize % streams.len()];
                        let mut tx = store.begin_tenant(*tenant).await?;
                        let history = read_stream(&mut tx, *tenant, "bench", stream).await?;
                        tx.commit().await?;
                        (*tenant, stream, Expected::after(&history)?)
                    };
                    let append = Prepared::new(
                        tenant,
                        "bench",
                        stream,
                        expected,
                        vec![new_event()],
                        &metadata,
                        Utc::now(),
                    )?;
                    store.append_grouped(append).await?;
                }
                AppendMode::InTransaction => {
                    let tenant = TenantId::new();
                    let mut tx = store.begin_writer(tenant).await?;
                    append(
                        &mut tx,
                        tenant,
                        "bench",
                        Uuid::now_v7(),
                        Expected::NoStream,
                        vec![new_event()],
                        &metadata,
                    )
                    .await?;
                    tx.commit().await?;
                }
            }
            Ok(vec![started.elapsed()])
        }
    })
    .await
}

/// One tenant set up for the HTTP scenario: its owner key and agent instance.
#[derive(Clone)]
struct Tenant {
    org: String,
    store: String,
    key: String,
    instance: String,
}

async fn setup_tenants(
    client: &reqwest::Client,
    base: &str,
    count: usize,
) -> anyhow::Result<Vec<Tenant>> {
    let mut tenants = Vec::new();
    let run = Uuid::new_v4().simple().to_string();
    for i in 0..count {
        let created: serde_json::Value = client
            .post(format!("{base}/v1/organizations"))
            .bearer_auth(ADMIN_KEY)
            .json(&serde_json::json!({ "name": format!("Bench {i}"), "slug": format!("bench-{}-{i}", &run[..8]), "tier": "pro", "billing_email": "bench@example.com" }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let org = created["id"]
            .as_str()
            .context("organization id")?
            .to_owned();
        let key = created["api_key"]["secret"]
            .as_str()
            .context("owner key")?
            .to_owned();
        let store: serde_json::Value = client
            .post(format!("{base}/v1/organizations/{org}/stores"))
            .bearer_auth(&key)
            .json(&serde_json::json!({ "name": "Shop", "domain": "shop.example.com" }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let store = store["id"].as_str().context("store id")?;
        let instance: serde_json::Value = client
            .post(format!("{base}/v1/stores/{store}/agent-instances"))
            .bearer_auth(&key)
            .json(&serde_json::json!({ "agent_type": "customer_service" }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        tenants.push(Tenant {
            org,
            store: store.to_owned(),
            key,
            instance: instance["id"].as_str().context("instance id")?.to_owned(),
        });
    }
    Ok(tenants)
}

/// For each projection, the age of the oldest event it has not applied yet, in milliseconds.
async fn projection_lags(store: &EventStore) -> anyhow::Result<Vec<(String, f64)>> {
    let mut tx = store.begin_system().await?;
    let lags: Vec<(String, Option<f64>)> = sqlx::query_as(
        "SELECT c.projection, \
                (SELECT EXTRACT(EPOCH FROM clock_timestamp() - e.recorded_at)::float8 * 1000 FROM events e \
                 WHERE (e.transaction_id, e.position) > (c.transaction_id::text::xid8, c.position) \
                 ORDER BY e.transaction_id, e.position LIMIT 1) \
         FROM projection_checkpoints c ORDER BY c.projection",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(lags
        .into_iter()
        .map(|(name, lag)| (name, lag.unwrap_or(0.0)))
        .collect())
}

/// Waits (at most `limit`) until every projection has a checkpoint and has applied every
/// event; returns how long that took.
async fn caught_up(store: &EventStore, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let projections = tenantry_projections::all().len();
    while started.elapsed() < limit {
        let lags = projection_lags(store).await?;
        if lags.len() >= projections && lags.iter().all(|(_, lag)| *lag <= 0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(started.elapsed())
}

/// Projection lag samples: every projection's, and the worst of them at each sample.
#[derive(Debug, Default)]
struct Lags {
    /// The machine's CPU busy meanwhile (0–1).
    cpu_busy: f64,
    worst: Vec<f64>,
    by_projection: BTreeMap<String, Vec<f64>>,
}

impl Lags {
    fn sort(&mut self) {
        self.worst.sort_by(f64::total_cmp);
        for samples in self.by_projection.values_mut() {
            samples.sort_by(f64::total_cmp);
        }
    }
}

/// The `p` quantile of sorted samples.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// A keep-alive HTTP/1.1 connection of the load generator: each request written in one go,
/// each answer read by its `Content-Length`. A general client (URL parsing, pooling, header
/// maps) cost the two cores it shares with the platform more than the server's own request
/// handling; this one is to the API what `pgbench` is to PostgreSQL.
struct LoadConnection {
    stream: tokio::net::TcpStream,
    read: Vec<u8>,
    write: Vec<u8>,
}

impl LoadConnection {
    async fn open(addr: &str) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            read: Vec::with_capacity(4096),
            write: Vec::with_capacity(1024),
        })
    }

    /// POSTs the JSON `body` to `path` as `key`; the answer's body, or an error unless the
    /// status is 2xx.
    async fn post(&mut self, path: &str, key: &str, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        use std::io::Write as _;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        self.write.clear();
        write!(
            self.write,
            "POST {path} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )?;
        self.write.extend_from_slice(body);
        self.stream.write_all(&self.write).await?;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = response.parse(&self.read)? {
                let status = response.code.context("no status")?;
                let length: usize = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .context("an answer without Content-Length")?;
                while self.read.len() < head + length {
                    if self.stream.read_buf(&mut self.read).await? == 0 {
                        bail!("the server closed the connection");
                    }
                }
                let answer = self.read[head..head + length].to_vec();
                self.read.drain(..head + length);
                if !(200..300).contains(&status) {
                    bail!("{path}: {status} {}", String::from_utf8_lossy(&answer));
                }
                return Ok(answer);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                bail!("the server closed the connection");
            }
        }
    }
}

/// 32 keep-alive clients across 50 tenants: start a conversation, four messages, end.
/// A conversation load on the tenants; each client spends `pace` per conversation when one is
/// given. Returns commands per second, each command's latency, and the projection lags
/// sampled every 50 ms meanwhile (sorted).
async fn http_scenario(
    addr: String,
    tenants: Arc<Vec<Tenant>>,
    store: &EventStore,
    seconds: u64,
    pace: Option<Duration>,
) -> anyhow::Result<(f64, Vec<Duration>, Lags)> {
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (store, sampling) = (store.clone(), sampling.clone());
        tokio::spawn(async move {
            let trace = std::env::var_os("TENANTRY_BENCH_TRACE").is_some();
            let began = Instant::now();
            let mut samples = Lags::default();
            while sampling.load(Ordering::Relaxed) {
                if let Ok(lags) = projection_lags(&store).await {
                    let worst = lags.iter().map(|(_, lag)| *lag).fold(0.0, f64::max);
                    if trace && worst > 100.0 {
                        eprintln!(
                            "  {:>7.3} s {:?} lag {lags:?}",
                            began.elapsed().as_secs_f64(),
                            chrono::Utc::now().time()
                        );
                    }
                    samples.worst.push(worst);
                    for (name, lag) in lags {
                        samples.by_projection.entry(name).or_default().push(lag);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        })
    };
    // Paced: every client sends one command each `pace / 6`, the clients staggered evenly, so
    // the load is steady rather than 32 bursts at once.
    let origin = Instant::now();
    let cpu = cpu_times();
    let connections: Arc<Vec<tokio::sync::Mutex<Option<LoadConnection>>>> =
        Arc::new((0..32).map(|_| tokio::sync::Mutex::new(None)).collect());
    let (rate, latencies) = load(32, seconds, move |client_index, n| {
        let (addr, tenants, connections) = (addr.clone(), tenants.clone(), connections.clone());
        async move {
            let mut connection = connections[client_index].lock().await;
            let connection = match &mut *connection {
                Some(connection) => connection,
                None => connection.insert(LoadConnection::open(&addr).await?),
            };
            let schedule = |k: u64| async move {
                if let Some(pace) = pace {
                    let every = pace / 6;
                    let at = origin + every * client_index as u32 / 32 + every * (n * 6 + k) as u32;
                    tokio::time::sleep_until(at.into()).await;
                }
            };
            let mut latencies = Vec::with_capacity(6);
            let tenant = &tenants[(client_index + n as usize * 32) % tenants.len()];
            schedule(0).await;
            let sent = Instant::now();
            let start = format!(
                r#"{{"agent_instance_id":"{}","channel":"web"}}"#,
                tenant.instance
            );
            let started = connection
                .post("/v1/conversations", &tenant.key, start.as_bytes())
                .await?;
            latencies.push(sent.elapsed());
            let started: serde_json::Value = serde_json::from_slice(&started)?;
            let id = started["id"].as_str().context("conversation id")?;
            let messages = format!("/v1/conversations/{id}/messages");
            for m in 0..4 {
                schedule(1 + m).await;
                let role = if m % 2 == 0 { "customer" } else { "agent" };
                let message = format!(
                    r#"{{"role":"{role}","content":"Where is my order?","tokens_in":12,"tokens_out":30}}"#
                );
                let sent = Instant::now();
                connection
                    .post(&messages, &tenant.key, message.as_bytes())
                    .await?;
                latencies.push(sent.elapsed());
            }
            schedule(5).await;
            let sent = Instant::now();
            connection
                .post(
                    &format!("/v1/conversations/{id}/end"),
                    &tenant.key,
                    br#"{"resolution":"resolved"}"#,
                )
                .await?;
            latencies.push(sent.elapsed());
            Ok(latencies)
        }
    })
    .await?;
    sampling.store(false, Ordering::Relaxed);
    let mut lags = sampler.await?;
    lags.sort();
    lags.cpu_busy = cpu_busy_since(cpu);
    Ok((rate, latencies, lags))
}

/// The events of one whole conversation (start, four messages, end), as commands would have
/// recorded them (content left unsealed: the volume scenarios measure the read side).
fn conversation_events(tenant: &Tenant) -> anyhow::Result<Vec<NewEvent>> {
    use tenantry_domain::conversation::ConversationEvent as E;
    use tenantry_domain::{
        AgentType, Channel, ConversationId, MessageContent, MessageId, MessageRole, OrganizationId,
        Resolution,
    };
    let instance = tenantry_domain::AgentInstanceId::from_uuid(tenant.instance.parse()?);
    let mut events = vec![E::ConversationStarted {
        conversation_id: ConversationId::new(),
        agent_instance_id: instance,
        agent_type: AgentType::CustomerService,
        store_id: tenantry_domain::StoreId::from_uuid(tenant.store.parse()?),
        organization_id: OrganizationId::from_uuid(tenant.org.parse()?),
        customer_ref: None,
        channel: Channel::Web,
    }];
    for m in 0..4 {
        events.push(E::MessageAppended {
            message_id: MessageId::new(),
            agent_instance_id: instance,
            role: if m % 2 == 0 {
                MessageRole::Customer
            } else {
                MessageRole::Agent
            },
            content: MessageContent::parse("Where is my order? It was due last week.")?,
            tokens_in: 12,
            tokens_out: 30,
        });
    }
    events.push(E::ConversationEnded {
        agent_instance_id: instance,
        resolution: Resolution::Resolved,
        messages: 4,
        tokens_in: 48,
        tokens_out: 120,
    });
    Ok(events
        .iter()
        .map(|e| NewEvent::from_domain(e, 1))
        .collect::<Result<_, _>>()?)
}

/// Records `total` events of whole conversations straight into the event store, 8 writers,
/// 20 conversations per transaction; `heavy` of them go to the first tenant (the replay's).
async fn generate_volume(
    store: &EventStore,
    tenants: &[Tenant],
    total: u64,
    heavy: u64,
) -> anyhow::Result<()> {
    const PER_TX: u64 = 20;
    let transactions = total.div_ceil(6 * PER_TX);
    let heavy_transactions = heavy.div_ceil(6 * PER_TX);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, tenants, next) = (store.clone(), tenants.to_vec(), next.clone());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= transactions {
                    return anyhow::Ok(());
                }
                let tenant = if n < heavy_transactions {
                    &tenants[0]
                } else {
                    &tenants[1 + (n as usize % (tenants.len() - 1))]
                };
                let id = TenantId::from_uuid(tenant.org.parse()?);
                let mut tx = store.begin_writer(id).await?;
                for _ in 0..PER_TX {
                    append(
                        &mut tx,
                        id,
                        "conversation",
                        Uuid::now_v7(),
                        Expected::NoStream,
                        conversation_events(tenant)?,
                        &Metadata {
                            actor: Some("system:bench".into()),
                            ..Metadata::default()
                        },
                    )
                    .await?;
                }
                tx.commit().await?;
                if (n + 1) % 1_000 == 0 {
                    eprintln!(
                        "  {} events recorded ({:.0} events/s)",
                        (n + 1) * 6 * PER_TX,
                        ((n + 1) * 6 * PER_TX) as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

/// Samples this process's resident memory every 20 ms until dropped; `peak` reads the
/// highest so far.
struct MemoryWatch {
    peak: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl MemoryWatch {
    fn start() -> Self {
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampler = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                let kib = (rss_mib() * 1024.0) as u64;
                sampler.fetch_max(kib, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self { peak, task }
    }

    fn peak_mib(&self) -> f64 {
        self.peak.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Replays `tenant`'s whole history over HTTP (`GET …/events`, NDJSON, personal fields
/// opened) and counts the lines; returns events per second and the events.
async fn http_replay(
    client: &reqwest::Client,
    base: &str,
    tenant: &Tenant,
) -> anyhow::Result<(f64, u64)> {
    let started = Instant::now();
    let response = client
        .get(format!("{base}/v1/organizations/{}/events", tenant.org))
        .bearer_auth(&tenant.key)
        .send()
        .await?
        .error_for_status()?;
    let mut response = response;
    let mut lines = 0u64;
    while let Some(chunk) = response.chunk().await? {
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
    }
    Ok((lines as f64 / started.elapsed().as_secs_f64(), lines))
}

const ADMIN_KEY: &str = "bench-admin-key-0000000000";

/// Runs the benchmark.
///
/// # Errors
/// When the services cannot start or a scenario fails.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut services = None;
    let (database_url, nats_url) = match (&args.database_url, &args.nats_url) {
        (Some(db), Some(nats)) => (db.clone(), nats.clone()),
        _ => {
            eprintln!("starting throwaway PostgreSQL and NATS under .tenantry/bench…");
            let started = crate::dev::Services::start(
                &PathBuf::from(".tenantry/bench"),
                54359,
                42259,
                true,
                BENCH_SETTINGS,
            )
            .await?;
            let urls = (started.database_url.clone(), started.nats_url.clone());
            services = Some(started);
            urls
        }
    };
    let result = scenarios(&database_url, &nats_url, &args).await;
    if let Some(services) = services {
        services.stop();
    }
    let figures = result?;
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    }
    Ok(())
}

async fn scenarios(
    database_url: &str,
    nats_url: &str,
    args: &BenchArgs,
) -> anyhow::Result<Figures> {
    let mut f = Figures::default();
    let seconds = args.seconds;
    let settings = {
        let mut s = Settings::new(database_url.into(), nats_url.into(), ADMIN_KEY.into());
        s.listen = "127.0.0.1:0".into();
        s.rate_limit_per_minute = Some(10_000_000);
        s.db_max_connections = 40;
        // A key of its own: the bench's tenants are throwaway.
        s.vault = tenantry_eventstore::Vault::new(&tenantry_eventstore::MasterKey::generate());
        s
    };
    // The event store alone first: pgbench and the appends run before the platform starts,
    // so no relay or projection shares the cores with them.
    let store = EventStore::connect(database_url, 40).await?;
    tenantry_eventstore::MIGRATOR.run(store.pool()).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_events (tenant_id uuid NOT NULL, stream_id uuid NOT NULL, version int NOT NULL, \
         payload jsonb NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(), UNIQUE (tenant_id, stream_id, version))",
    )
    .execute(store.pool())
    .await?;

    f.pgbench_one_row_tps = pgbench(database_url, 16, seconds, 1)?;
    println!(
        "pgbench, 1 row/tx, 16 clients   {:>10.0} tx/s",
        f.pgbench_one_row_tps
    );
    f.pgbench_ten_rows_events_per_s = pgbench(database_url, 16, seconds, 10)? * 10.0;
    println!(
        "pgbench, 10 rows/tx, 16 clients {:>10.0} rows/s",
        f.pgbench_ten_rows_events_per_s
    );
    let pg = f.pgbench_one_row_tps;
    for (mode, figures) in [
        (AppendMode::Fresh, &mut f.append),
        (AppendMode::Existing, &mut f.append_existing),
        (AppendMode::InTransaction, &mut f.append_in_transaction),
    ] {
        let (rate, latencies) = append_scenario(&store, seconds, mode).await?;
        *figures = AppendFigures::report(mode.label(), rate, &latencies, pg);
    }

    let app = Application::build(settings.clone()).await?;
    let port = app.port().context("the API listens")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));
    f.rss_at_rest_mib = rss_mib();
    println!(
        "memory at rest                 {:>10.1} MiB",
        f.rss_at_rest_mib
    );
    // The relay and projections work off the appends before the HTTP load.
    let drained = caught_up(&store, Duration::from_secs(300)).await?;
    eprintln!(
        "projections caught up on the appends in {:.1} s",
        drained.as_secs_f64()
    );

    // The database as a deployed one is: vacuumed and analyzed since its bulk of events came
    // in. Otherwise autovacuum's first pass over the fresh tables falls in the HTTP scenarios.
    let started = Instant::now();
    sqlx::query("VACUUM (ANALYZE)")
        .execute(store.pool())
        .await?;
    eprintln!(
        "vacuumed and analyzed the database in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let tenants = Arc::new(setup_tenants(&client, &base, 50).await?);
    let (rate, latencies, peak_lags) = http_scenario(
        format!("127.0.0.1:{port}"),
        tenants.clone(),
        &store,
        seconds,
        None,
    )
    .await?;
    // Half the peak rate: each of the 32 clients runs a six-command conversation every
    // 32 × 6 × 2 / rate seconds.
    let pace = Duration::from_secs_f64(32.0 * 6.0 * 2.0 / rate.max(1.0));
    // Let the projections work off the peak's backlog first.
    let drained = caught_up(&store, Duration::from_secs(120)).await?;
    eprintln!(
        "projections caught up {:.1} s after the peak",
        drained.as_secs_f64()
    );
    let (_, _, lags) = http_scenario(
        format!("127.0.0.1:{port}"),
        tenants.clone(),
        &store,
        seconds,
        Some(pace),
    )
    .await?;
    f.http_commands_per_s = rate;
    f.http_p50_ms = percentile(&latencies, 0.5);
    f.http_p99_ms = percentile(&latencies, 0.99);
    f.http_p999_ms = percentile(&latencies, 0.999);
    f.projection_lag_p50_ms = quantile(&lags.worst, 0.5);
    f.projection_lag_p99_ms = quantile(&lags.worst, 0.99);
    f.projection_lag_max_ms = lags.worst.last().copied().unwrap_or(0.0);
    f.projection_lag_peak_p99_ms = quantile(&peak_lags.worst, 0.99);
    f.cpu_busy_at_peak = peak_lags.cpu_busy;
    f.cpu_busy_at_half_peak = lags.cpu_busy;
    f.projection_lag_by_projection = lags
        .by_projection
        .iter()
        .map(|(name, samples)| {
            let figures = [quantile(samples, 0.5), quantile(samples, 0.99)];
            let max = samples.last().copied().unwrap_or(0.0);
            (name.clone(), [figures[0], figures[1], max])
        })
        .collect();
    f.http_ratio_to_pgbench = f.http_commands_per_s / f.pgbench_one_row_tps;
    f.rss_after_http_mib = rss_mib();
    println!(
        "commands over HTTP, 32 clients  {:>8.0} commands/s  p50 {:.2} ms  p99 {:.2} ms  p999 {:.2} ms  ({:.0} % of pgbench)",
        f.http_commands_per_s,
        f.http_p50_ms,
        f.http_p99_ms,
        f.http_p999_ms,
        f.http_ratio_to_pgbench * 100.0
    );
    println!(
        "projection lag at half the peak p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (p99 at peak {:.1} ms)",
        f.projection_lag_p50_ms,
        f.projection_lag_p99_ms,
        f.projection_lag_max_ms,
        f.projection_lag_peak_p99_ms
    );
    println!(
        "  machine CPU busy: {:.0} % at the peak, {:.0} % at half of it",
        f.cpu_busy_at_peak * 100.0,
        f.cpu_busy_at_half_peak * 100.0
    );
    for (name, [p50, p99, max]) in &f.projection_lag_by_projection {
        println!("  {name:<14} lag p50 {p50:.1} ms  p99 {p99:.1} ms  max {max:.1} ms");
    }
    println!(
        "memory after HTTP load         {:>10.1} MiB",
        f.rss_after_http_mib
    );

    eprintln!(
        "recording {} events of whole conversations ({} of them for one tenant)…",
        args.volume, args.replay_events
    );
    let started = Instant::now();
    generate_volume(&store, &tenants, args.volume, args.replay_events).await?;
    f.volume_events_per_s = args.volume as f64 / started.elapsed().as_secs_f64();
    f.volume_caught_up_s = caught_up(&store, Duration::from_secs(900))
        .await?
        .as_secs_f64();
    println!(
        "volume recorded                 {:>8.0} events/s; live projections caught up {:.1} s later",
        f.volume_events_per_s, f.volume_caught_up_s
    );

    let started = Instant::now();
    let events =
        tenantry_projections::rebuild::rebuild_all(&store, &tenantry_projections::all(), |_| {})
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .events;
    f.rebuild_events = events;
    // Distinct events per second for all read models together (one pass over the feed).
    f.rebuild_events_per_s = events as f64 / started.elapsed().as_secs_f64();
    println!(
        "rebuild, all projections        {:>8.0} events/s over {} events ({:.0} % of pgbench ten-row)",
        f.rebuild_events_per_s,
        events,
        f.rebuild_events_per_s / f.pgbench_ten_rows_events_per_s * 100.0
    );

    f.replay_rss_before_mib = rss_mib();
    let watch = MemoryWatch::start();
    let (rate, lines) = http_replay(&client, &base, &tenants[0]).await?;
    f.replay_rss_peak_mib = watch.peak_mib().max(f.replay_rss_before_mib);
    drop(watch);
    f.replay_events = lines;
    f.replay_events_per_s = rate;
    println!(
        "replay over HTTP, one tenant    {:>8.0} events/s over {} events; memory {:.1} → peak {:.1} MiB",
        rate, lines, f.replay_rss_before_mib, f.replay_rss_peak_mib
    );

    f.reconcile_rss_before_mib = rss_mib();
    let watch = MemoryWatch::start();
    let started = Instant::now();
    let month = tenantry_domain::billing::Month::of(chrono::Utc::now());
    let report = tenantry_api::jobs::reconcile(&store, month, None, |_| {})
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    f.reconcile_seconds = started.elapsed().as_secs_f64();
    f.reconcile_rss_peak_mib = watch.peak_mib().max(f.reconcile_rss_before_mib);
    drop(watch);
    f.reconcile_events = report.events_scanned;
    f.reconcile_differences = report.differences.len();
    println!(
        "reconcile {month}                {:>8.1} s over {} events, {} differences; memory {:.1} → peak {:.1} MiB",
        f.reconcile_seconds,
        report.events_scanned,
        f.reconcile_differences,
        f.reconcile_rss_before_mib,
        f.reconcile_rss_peak_mib
    );

    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(f)
}
