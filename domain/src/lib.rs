//! Tenantry's pure core.
//!
//! Everything the platform decides is decided here, with no IO: identifiers and validated
//! values (`ids`, `values`), the tiers of the price list (`tier`), the agent `catalog`, and the four
//! aggregates (`organization`, `store`, `agent_instance`, `conversation`), each a
//! `cqrs_es::Aggregate` whose `handle` decides and whose `apply` folds. Child aggregates get
//! their parents' state through `context`; every refusal is a `DomainError`; `upcast` keeps
//! old event schemas loading.
//!
//! Every aggregate is a folder laid out the same way (as cqrs-demo's
//! `domain/{aggregate,commands,events}.rs`):
//!
//! - `mod.rs`: the state its events leave, and the `Aggregate` wiring (`handle` calls `decide`,
//!   `apply` folds one event);
//! - `commands.rs`: what may be asked of it, the command and its helper types;
//! - `events.rs`: what has happened to it, the event with its wire name and version;
//! - `decide.rs`: its rules, which answer a command with events or refuse it;
//! - `tests.rs`: its given/when/then tests.
//!
//! Each aggregate module re-exports what its files define, so a path such as
//! `tenantry_domain::organization::OrganizationCommand` names the aggregate, not the file.
//!
//! The crate depends on no database, HTTP or NATS crate; `tenantry-eventstore` persists what
//! is decided here and `tenantry-api` exposes it.

/// `Aggregate::handle` for an aggregate whose rules are its `decide(&self, command) ->
/// Result<Vec<Event>, DomainError>`: every event decided is recorded, in order. Every
/// aggregate of the platform handles commands this way.
macro_rules! handle_by_deciding {
    () => {
        async fn handle(
            &mut self,
            command: Self::Command,
            _services: &Self::Services,
            sink: &cqrs_es::event_sink::EventSink<Self>,
        ) -> Result<(), Self::Error> {
            for event in self.decide(command)? {
                sink.write(event, self).await;
            }
            Ok(())
        }
    };
}

pub mod agent_instance;
pub mod billing;
pub mod catalog;
pub mod context;
pub mod conversation;
pub mod error;
pub mod ids;
pub mod organization;
pub mod personal;
pub mod schema;
pub mod store;
pub mod tier;
pub mod upcast;
pub mod values;

#[cfg(test)]
mod proptests;

pub use error::DomainError;
pub use ids::{
    AgentInstanceId, ApiKeyId, ConversationId, EventId, MemberId, MessageId, OrganizationId,
    StoreId, TenantId, WidgetKeyId,
};
pub use tier::{Limits, Terms, Tier};
pub use values::{
    AgentType, BaseFee, Channel, CustomerRef, Email, IncludedConversations, KeyName,
    MessageContent, MessageRole, Money, OrganizationName, OverageRate, Platform, Reason,
    Resolution, Role, Slug, StoreDomain, StoreName, ValidationError,
};

/// The `event_type` name of an aggregate event (its serde tag).
pub fn event_type_of<E: serde::Serialize>(event: &E) -> String {
    serde_json::to_value(event)
        .ok()
        .and_then(|v| v.get(EVENT_TYPE_TAG)?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

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
    /// The request field at fault, for a refusal of a value.
    fn field(&self) -> Option<&'static str> {
        None
    }
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

/// Shared builders for the aggregates' given/when/then tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::organization::{OrganizationCommand, OrganizationEvent, OrganizationStatus};
    use crate::*;

    pub fn email(value: &str) -> Email {
        Email::parse(value).unwrap()
    }

    pub fn enterprise_terms() -> Terms {
        Terms {
            base_fee: values::BaseFee::cents(250_000),
            included_conversations: values::IncludedConversations::of(50_000),
            overage_rate: values::OverageRate::cents(2),
        }
    }

    pub fn create(id: OrganizationId, owner: MemberId, tier: Tier) -> OrganizationCommand {
        OrganizationCommand::Create {
            id,
            name: OrganizationName::parse("Acme").unwrap(),
            slug: Slug::parse("acme").unwrap(),
            tier,
            custom_terms: None,
            billing_email: email("billing@acme.com"),
            owner,
            owner_email: email("owner@acme.com"),
            trial_ends_at: None,
        }
    }

    pub fn created(id: OrganizationId, owner: MemberId, tier: Tier) -> Vec<OrganizationEvent> {
        vec![
            OrganizationEvent::OrganizationCreated {
                organization_id: id,
                name: OrganizationName::parse("Acme").unwrap(),
                slug: Slug::parse("acme").unwrap(),
                tier,
                terms: tier.list_terms().unwrap_or_else(enterprise_terms),
                billing_email: email("billing@acme.com"),
                status: OrganizationStatus::Active,
                trial_ends_at: None,
            },
            OrganizationEvent::MemberInvited {
                member_id: owner,
                email: email("owner@acme.com"),
                role: Role::Owner,
            },
        ]
    }

    pub fn suspended_event() -> OrganizationEvent {
        OrganizationEvent::OrganizationSuspended {
            reason: "unpaid".into(),
        }
    }

    pub fn org_ctx(tier: Tier) -> context::OrgContext {
        context::OrgContext {
            id: OrganizationId::new(),
            status: OrganizationStatus::Active,
            tier,
        }
    }
}
