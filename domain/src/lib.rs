//! Tenantry's pure core.
//!
//! Everything the platform decides is decided here, with no IO: identifiers and validated
//! values (`ids`, `values`), the tiers of the price list (`tier`), and the aggregates, each a
//! `cqrs_es::Aggregate` whose `handle` decides and whose `apply` folds (`organization`).
//!
//! The crate depends on no database, HTTP or NATS crate; `tenantry-eventstore` persists what
//! is decided here and `tenantry-api` exposes it.

pub mod ids;
pub mod organization;
pub mod tier;
pub mod values;

pub use ids::{EventId, OrganizationId, TenantId};
pub use tier::Tier;
pub use values::{Email, OrganizationName, Slug, ValidationError};

/// Wire identity of an event: its stable `event_type` name and payload schema version.
///
/// Every aggregate's event enum is serialized adjacently tagged as
/// `{"event_type": …, "payload": …}` so the store can keep the name in its own column.
pub const EVENT_TYPE_TAG: &str = "event_type";
/// The key holding an event's payload in its adjacently tagged form.
pub const EVENT_PAYLOAD_TAG: &str = "payload";

/// How a refused command should be reported: the stable code of the refusal and its kind.
///
/// Every aggregate error implements it, so the command layer and the API can report any
/// refusal without knowing the aggregate.
pub trait Rejection: std::error::Error {
    /// A stable, kebab-case code, used as the last segment of the problem `type`.
    fn code(&self) -> &'static str;
    /// What kind of refusal this is.
    fn kind(&self) -> RejectionKind;
}

/// The kinds of refusal, each with its own HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionKind {
    /// The target does not exist (404).
    NotFound,
    /// The request clashes with the current state (409).
    Conflict,
    /// The request is well formed but breaks a rule (422).
    Unprocessable,
    /// The caller's tier does not include this (403); carries the tier that would.
    TierRequired(Tier),
    /// The caller may not do this (403).
    Forbidden,
}
