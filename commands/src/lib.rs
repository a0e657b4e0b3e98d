//! Command execution and the relay.
//!
//! - [`executor`]: load an aggregate → decide → append, in one tenant-scoped transaction,
//!   retried from a fresh load when another writer got there first.
//! - [`organizations`]: commands whose transaction does more than append (the platform-wide
//!   slug reservation of a new organization).
//! - [`relay`]: follows the gap-free feed and publishes it to JetStream, checkpointing only
//!   what NATS acknowledged.

pub mod error;
pub mod executor;
pub mod organizations;
pub mod relay;

pub use error::CommandError;
pub use executor::{CommandBus, Executed};
pub use relay::Relay;
