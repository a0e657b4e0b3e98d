//! The event store alone: 16 writers appending one event at a time, by group commit to fresh
//! or existing streams, or each in its own transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tenantry_domain::TenantId;
use tenantry_eventstore::read::read_stream;
use tenantry_eventstore::{append, EventStore, Expected, Metadata, NewEvent, Prepared};
use uuid::Uuid;

use crate::load::load;
use crate::pgbench::PAYLOAD;

/// One event carrying pgbench's payload.
fn new_event() -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "MessageAppended".into(),
        schema_version: 1,
        payload: serde_json::from_str(PAYLOAD).expect("a valid payload"),
    }
}

/// How the append scenarios write.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppendMode {
    /// Fresh streams, by group commit.
    Fresh,
    /// Load + append to existing streams (each writer its own 64), by group commit.
    Existing,
    /// Fresh streams, each append in the writer's own transaction.
    InTransaction,
}

impl AppendMode {
    pub(crate) fn label(self) -> &'static str {
        match self {
            AppendMode::Fresh => "append, fresh streams, 16 writers",
            AppendMode::Existing => "append, existing streams (load + append)",
            AppendMode::InTransaction => "append, fresh streams, own transaction each",
        }
    }
}

/// 16 writers appending one event at a time.
pub(crate) async fn append_scenario(
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
