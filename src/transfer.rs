//! Moving a tenant between deployments: `tenantry export --tenant ID --out DIR` writes its
//! events (NDJSON, feed order) and a manifest with counts and chain heads; `tenantry import
//! DIR` verifies every chain against the manifest and re-creates the tenant, event for event
//! (same ids, versions, payloads, metadata, timestamps and hashes). The read models of the
//! target then build from its own feed.
//!
//! Personal fields stay sealed in `events.ndjson`; `keys.ndjson` carries the tenant's data
//! keys still wrapped by the master key (and the tombstones of erased ones), so the target
//! opens them with the same master key, and an erasure before the export holds after it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tenantry_domain::TenantId;
use tenantry_eventstore::append::append_at;
use tenantry_eventstore::chain::{Canonical, GENESIS};
use tenantry_eventstore::read::{stream_tenant_history, HistoryFilter};
use tenantry_eventstore::vault::StoredKey;
use tenantry_eventstore::{EventStore, Expected, Metadata, NewEvent, RecordedEvent, Vault};
use uuid::Uuid;

/// The manifest beside the events.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub tenant_id: Uuid,
    pub slug: Option<String>,
    pub events: u64,
    /// Lines of `keys.ndjson`.
    #[serde(default)]
    pub data_keys: u64,
    /// `<stream_type>/<stream_id>` → its head.
    pub streams: BTreeMap<String, Head>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Head {
    pub version: i64,
    pub hash: String,
}

fn key(event: &RecordedEvent) -> String {
    format!("{}/{}", event.stream_type, event.stream_id)
}

/// Writes `tenant`'s history and manifest into `dir`; returns the manifest.
///
/// # Errors
/// On a database or file failure.
pub async fn export(store: &EventStore, tenant: Uuid, dir: &Path) -> anyhow::Result<Manifest> {
    std::fs::create_dir_all(dir)?;
    let mut out = BufWriter::new(std::fs::File::create(dir.join("events.ndjson"))?);
    let mut manifest = Manifest {
        tenant_id: tenant,
        slug: None,
        events: 0,
        data_keys: 0,
        streams: BTreeMap::new(),
    };
    let mut tx = store.begin_tenant(TenantId::from_uuid(tenant)).await?;
    manifest.slug = sqlx::query_scalar("SELECT slug FROM organization_slugs WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
    {
        // One statement, one snapshot: every event committed when the export starts.
        let filter = HistoryFilter {
            whole_snapshot: true,
            ..HistoryFilter::default()
        };
        let mut events = stream_tenant_history(&mut tx, TenantId::from_uuid(tenant), &filter);
        while let Some(event) = events.next().await {
            let event = event?;
            serde_json::to_writer(&mut out, &event)?;
            out.write_all(b"\n")?;
            manifest.streams.insert(
                key(&event),
                Head {
                    version: event.version,
                    hash: event.hash.clone(),
                },
            );
            manifest.events += 1;
            if manifest.events % 100_000 == 0 {
                eprintln!("  {} events exported", manifest.events);
            }
        }
    }
    // After the events: every key they were sealed under existed when they were committed.
    let keys = Vault::export_keys(&mut tx, TenantId::from_uuid(tenant)).await?;
    tx.commit().await?;
    out.flush()?;
    let mut key_file = BufWriter::new(std::fs::File::create(dir.join("keys.ndjson"))?);
    for key in &keys {
        serde_json::to_writer(&mut key_file, key)?;
        key_file.write_all(b"\n")?;
    }
    key_file.flush()?;
    manifest.data_keys = keys.len() as u64;
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    Ok(manifest)
}

/// The data keys of an export (none for an export made before keys existed).
fn read_keys(dir: &Path) -> anyhow::Result<Vec<StoredKey>> {
    let path = dir.join("keys.ndjson");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file = std::fs::File::open(&path).context("reading keys.ndjson")?;
    std::io::BufReader::new(file)
        .lines()
        .map(|line| Ok(serde_json::from_str(&line?)?))
        .collect()
}

/// Verifies and imports the tenant in `dir`; returns the manifest.
///
/// # Errors
/// When a chain does not verify or does not match the manifest, the tenant (or its slug)
/// already exists, or on a database or file failure. Nothing is imported then.
pub async fn import(store: &EventStore, dir: &Path) -> anyhow::Result<Manifest> {
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(dir.join("manifest.json")).context("reading manifest.json")?,
    )?;
    let read = || -> anyhow::Result<_> {
        let file =
            std::fs::File::open(dir.join("events.ndjson")).context("reading events.ndjson")?;
        Ok(std::io::BufReader::new(file).lines())
    };
    // Verify first, streaming: each event must follow its stream's last one (version and
    // hash), and every stream must end where the manifest says.
    let mut chains: BTreeMap<String, (i64, [u8; 32])> = BTreeMap::new();
    let mut count = 0u64;
    for line in read()? {
        let event: RecordedEvent = serde_json::from_str(&line?)?;
        if event.tenant_id != manifest.tenant_id {
            bail!("event {} belongs to another tenant", event.event_id);
        }
        let (version, prev) = chains.get(&key(&event)).copied().unwrap_or((0, GENESIS));
        if event.version != version + 1 {
            bail!(
                "{} jumps from version {version} to {}",
                key(&event),
                event.version
            );
        }
        let hash = Canonical::from(&event).hash(&prev);
        if hex::encode(hash) != event.hash {
            bail!(
                "{} does not verify at version {}",
                key(&event),
                event.version
            );
        }
        chains.insert(key(&event), (event.version, hash));
        count += 1;
    }
    if count != manifest.events {
        bail!(
            "the manifest lists {} events, the file holds {count}",
            manifest.events
        );
    }
    if chains.len() != manifest.streams.len() {
        bail!(
            "the manifest lists {} streams, the file holds {}",
            manifest.streams.len(),
            chains.len()
        );
    }
    for (stream, (version, hash)) in &chains {
        let head = manifest
            .streams
            .get(stream)
            .with_context(|| format!("{stream} is not in the manifest"))?;
        if head.version != *version || head.hash != hex::encode(hash) {
            bail!(
                "{stream} ends at version {version}, the manifest says {}",
                head.version
            );
        }
    }

    let keys = read_keys(dir)?;
    if keys.len() as u64 != manifest.data_keys {
        bail!(
            "the manifest lists {} data keys, keys.ndjson holds {}",
            manifest.data_keys,
            keys.len()
        );
    }
    if let Some(key) = keys.iter().find(|k| k.tenant_id != manifest.tenant_id) {
        bail!("data key {} belongs to another tenant", key.key_id);
    }
    store.vault().check_keys(&keys).context(
        "the export's data keys must unwrap under TENANTRY_MASTER_KEY (the source deployment's)",
    )?;

    let tenant = TenantId::from_uuid(manifest.tenant_id);
    let mut tx = store.begin_writer(tenant).await?;
    Vault::import_keys(&mut tx, &keys).await?;
    if let Some(slug) = &manifest.slug {
        sqlx::query("INSERT INTO organization_slugs (slug, tenant_id) VALUES ($1, $2)")
            .bind(slug)
            .bind(manifest.tenant_id)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("the slug {slug} or the tenant exists here already"))?;
    }
    let mut heads: BTreeMap<String, Expected> = BTreeMap::new();
    for (n, line) in read()?.enumerate() {
        let event: RecordedEvent = serde_json::from_str(&line?)?;
        let expected = heads.remove(&key(&event)).unwrap_or(Expected::NoStream);
        let metadata: Metadata = serde_json::from_value(event.metadata.clone())?;
        let new = NewEvent {
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
        };
        let recorded = append_at(
            &mut tx,
            tenant,
            &event.stream_type,
            event.stream_id,
            expected,
            vec![new],
            &metadata,
            event.recorded_at,
        )
        .await?;
        if recorded[0].hash != event.hash {
            bail!("event {} hashes differently here", event.event_id);
        }
        heads.insert(key(&event), Expected::after(&recorded)?);
        if (n + 1) % 100_000 == 0 {
            eprintln!("  {} events imported", n + 1);
        }
    }
    tx.commit().await?;
    Ok(manifest)
}
