//! Command execution and the relay.
//!
//! What happens when a command runs is in the module named for its aggregate, as the
//! `Execute` impl of its type, run by [`CommandBus::execute`]:
//!
//! | command | module |
//! |---|---|
//! | `NewOrganization`, `OrganizationCommand`, `NewApiKey` | [`organizations`] |
//! | `Erase` (tenant or one customer) | [`erasure`] |
//! | `StoreAction` | [`stores`] |
//! | `AgentInstanceAction` | [`agent_instances`] |
//! | `ConversationAction` | [`conversations`] |
//!
//! The engine underneath, top to bottom:
//! - [`executor`]: [`CommandBus`], the one retry loop and the two ways an attempt is written
//!   (its own transaction, or a grouped append).
//! - [`session`]: where an attempt runs, and the [`attempt!`] macro that builds one.
//! - [`aggregate`]: loading (or folding) an aggregate, deciding, saving or staging its events.
//! - [`idempotency`]: replaying a request whose key was seen before.
//! - [`request`]: what a command comes with and what it answers.
//! - [`keys`]: API and widget key secrets and the `credentials` rows they grant.
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
