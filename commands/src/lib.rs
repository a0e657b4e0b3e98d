//! Command execution and the relay.
//!
//! - [`executor`]: load an aggregate → decide → append, in one tenant-scoped transaction,
//!   retried from a fresh load when another writer got there first; conversation commands
//!   read outside any transaction and append by group commit.
//! - [`organizations`], [`stores`], [`agent_instances`], [`conversations`]: the commands of
//!   each aggregate, with the parents they check and the organization slots (tier limits)
//!   they take or give back in the same transaction.
//! - [`relay`]: follows the gap-free feed and publishes it to JetStream, checkpointing only
//!   what NATS acknowledged.

pub mod agent_instances;
pub mod aggregate;
pub mod conversations;
pub mod erasure;
pub mod error;
pub mod executor;
mod folds;
pub mod idempotency;
pub mod keys;
pub mod organizations;
pub mod relay;
pub mod request;
pub mod session;
pub mod stores;

pub use erasure::Erase;
pub use error::CommandError;
pub use executor::{CommandBus, Execute};
pub use organizations::{NewApiKey, NewOrganization};
pub use relay::Relay;
pub use request::{Executed, Request};
