//! Tenantry's event store on PostgreSQL: append-only, tenant-partitioned, hash-chained.
//!
//! - [`cursor`]: the one ordering of the platform, `(transaction_id, position)`.
//! - [`store`]: the [`EventStore`]: its connection pools, vault, group commit and kept streams,
//!   and the tenant, writer and system transactions it begins.
//! - [`scope`]: transactions bound to one tenant (`tenantry_app`, row-level security) or to the
//!   platform (`tenantry_system`), and where a statement gets its connection.
//! - [`append`]: optimistic-concurrency appends that extend each stream's hash chain.
//! - [`group`]: group commit, many writers' single-stream appends in one statement and commit.
//! - [`read`]: one stream, one tenant's history, and the gap-free feed from a cursor.
//! - [`chain`]: the per-stream hash chain and its verification.
//! - [`vault`]: personal fields sealed under data keys that erasure destroys (crypto-shredding):
//!   `keys` (data keys found or made, kept in memory, erased, exported), `seal` (the master
//!   key, AES-256-GCM and the `sealed:v1:` format), `open` (the [`vault::Opener`]) and
//!   `payload` (the personal values of event payloads).
//! - [`notified`]: rows kept in memory until PostgreSQL announces a change (credentials, data keys).
//! - [`kept`]: streams kept in memory between commands (a conversation and its parents).
//! - [`bus`]: the NATS JetStream face of the store (stream, subjects, headers), shared by the
//!   relay that publishes the feed and the projections that consume it.
//!
//! The schema lives in `migrations/` at the workspace root and is embedded as [`MIGRATOR`].

pub mod append;
pub mod bus;
pub mod chain;
pub mod cursor;
pub mod error;
pub mod event;
pub mod group;
pub mod kept;
pub mod notified;
pub mod read;
pub mod scope;
pub mod store;
pub mod vault;

pub use append::{append, Expected, NewEvent, Prepared};
pub use cursor::Cursor;
pub use error::StoreError;
pub use event::{Metadata, RecordedEvent};
pub use store::EventStore;
pub use vault::{MasterKey, Vault};

/// The platform's migrations, applied by `tenantry migrate` and at start-up.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
