//! The platform over HTTP: tenants set up through the API, the conversation load from
//! keep-alive connections of the load generator's own, and a tenant's history replayed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tenantry_eventstore::EventStore;
use uuid::Uuid;

use crate::lag::{projection_lags, Lags};
use crate::load::load;
use crate::machine::{cpu_busy_since, cpu_times};
use crate::ADMIN_KEY;

/// One tenant set up for the HTTP scenario: its owner key and agent instance.
#[derive(Clone)]
pub(crate) struct Tenant {
    pub(crate) org: String,
    pub(crate) store: String,
    pub(crate) key: String,
    pub(crate) instance: String,
}

/// Creates `count` organizations through the API, each with a store and an agent instance.
pub(crate) async fn setup_tenants(
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
pub(crate) async fn http_scenario(
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

/// Replays `tenant`'s whole history over HTTP (`GET …/events`, NDJSON, personal fields
/// opened) and counts the lines; returns events per second and the events.
pub(crate) async fn http_replay(
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
