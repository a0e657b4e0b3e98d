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
pub mod conversations;
pub mod erasure;
pub mod error;
pub mod executor;
pub mod keys;
pub mod organizations;
pub mod relay;
pub mod stores;

pub use error::CommandError;
pub use executor::{CommandBus, Executed, Request};
pub use relay::Relay;
