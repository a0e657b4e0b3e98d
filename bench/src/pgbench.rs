//! The physical reference: `pgbench` inserting event-shaped rows into a plain table on the
//! same database, at the same concurrency as the scenarios it is compared with, with prepared
//! statements (`-M prepared`), the best a client can do: every ratio is to raw PostgreSQL at
//! its best. (pgbench's default, the simple protocol, has the server parse the statement and
//! its ~500-byte JSON literal on every transaction: 12,317 tx/s against 17,052 prepared, on
//! one server minutes apart.)

use anyhow::{bail, Context};
use tenantry_eventstore::EventStore;

/// An event-shaped payload (~500 bytes of JSON), the same for pgbench's rows and the appends.
pub(crate) const PAYLOAD: &str = r#"{"conversation_id":"0190a1f2-0000-7000-8000-000000000001","agent_instance_id":"0190a1f2-0000-7000-8000-000000000002","role":"customer","content":"Where is my order? I placed it last week and the tracking page still says the label was created. Could you check what is going on and when it will arrive? Thanks a lot.","tokens_in":42,"tokens_out":0,"channel":"web","customer_ref":"customer-000042","store_id":"0190a1f2-0000-7000-8000-000000000003"}"#;

/// pgbench with a custom script of one statement inserting `rows` rows, prepared once per
/// client; returns transactions per second.
pub(crate) fn run(url: &str, clients: u32, seconds: u64, rows: u32) -> anyhow::Result<f64> {
    let bin = tenantry::dev::pg_bin_dir()?.join("pgbench");
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
            "-M",
            "prepared",
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

/// Creates the plain table pgbench inserts into: an event's identity and payload, with the
/// uniqueness an append checks, and nothing else.
///
/// # Errors
/// When the statement fails.
pub(crate) async fn create_table(store: &EventStore) -> anyhow::Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_events (tenant_id uuid NOT NULL, stream_id uuid NOT NULL, version int NOT NULL, \
         payload jsonb NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(), UNIQUE (tenant_id, stream_id, version))",
    )
    .execute(store.pool())
    .await?;
    Ok(())
}
