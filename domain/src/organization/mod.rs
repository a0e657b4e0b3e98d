//! The Organization aggregate: the tenant itself, its subscription, team and API keys, and
//! the counts its tier limits apply to.
//!
//! The organization stream is the consistency boundary for tier limits: creating or
//! reactivating a store and deploying or resuming an agent instance each record a slot event
//! here (`StoreSlotAcquired`, `InstanceSlotAcquired`) in the same transaction as the child's
//! own event. Concurrent commands of one organization therefore race on this stream's
//! version, and the loser decides again against the winner's count.

mod commands;
mod decide;
mod events;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::billing::Month;
use crate::context::OrgContext;
use crate::tier::Terms;
use crate::{
    AgentInstanceId, AgentType, ApiKeyId, DomainError, Email, KeyName, MemberId, OrganizationId,
    OrganizationName, Role, Slug, StoreId, Tier,
};

pub use commands::{OrganizationCommand, Subscription};
pub use events::{ErasureScope, OrganizationEvent};

/// Where an organization stands in its subscription lifecycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrganizationStatus {
    Trial,
    #[default]
    Active,
    PastDue,
    Suspended,
    Closed,
}

impl OrganizationStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            OrganizationStatus::Trial => "trial",
            OrganizationStatus::Active => "active",
            OrganizationStatus::PastDue => "past_due",
            OrganizationStatus::Suspended => "suspended",
            OrganizationStatus::Closed => "closed",
        }
    }
}

/// A member of the team.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub email: Email,
    pub role: Role,
}

/// An API key as the organization records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub name: KeyName,
    pub role: Role,
    pub prefix: String,
    pub hash: String,
    pub revoked: bool,
}

/// The organization as its events left it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub id: Option<OrganizationId>,
    pub name: Option<OrganizationName>,
    pub slug: Option<Slug>,
    pub tier: Option<Tier>,
    pub terms: Option<Terms>,
    pub billing_email: Option<Email>,
    pub settings: Map<String, Value>,
    pub status: OrganizationStatus,
    pub trial_ends_at: Option<DateTime<Utc>>,
    /// The status to return to on reactivation.
    pub status_before_suspension: Option<OrganizationStatus>,
    pub members: BTreeMap<MemberId, Member>,
    pub api_keys: BTreeMap<ApiKeyId, ApiKey>,
    pub active_stores: BTreeSet<StoreId>,
    pub active_instances: BTreeMap<AgentInstanceId, AgentType>,
    pub finalized_invoices: BTreeSet<Month>,
    pub usage_alerts: BTreeSet<(Month, u8)>,
    /// How many data keys the latest erasure destroyed.
    pub last_erasure: Option<u64>,
}

impl Organization {
    /// True once `OrganizationCreated` has been applied.
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// What child aggregates need to know of it.
    ///
    /// # Errors
    /// [`DomainError::NotFound`] when the organization does not exist.
    pub fn context(&self) -> Result<OrgContext, DomainError> {
        match (self.id, self.tier) {
            (Some(id), Some(tier)) => Ok(OrgContext {
                id,
                status: self.status,
                tier,
            }),
            _ => Err(DomainError::NotFound("organization")),
        }
    }
}

impl Aggregate for Organization {
    const TYPE: &'static str = "organization";
    type Command = OrganizationCommand;
    type Event = OrganizationEvent;
    type Error = DomainError;
    type Services = ();

    handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        use OrganizationEvent as E;
        match event {
            E::OrganizationCreated {
                organization_id,
                name,
                slug,
                tier,
                terms,
                billing_email,
                status,
                trial_ends_at,
            } => {
                self.id = Some(organization_id);
                self.name = Some(name);
                self.slug = Some(slug);
                self.tier = Some(tier);
                self.terms = Some(terms);
                self.billing_email = Some(billing_email);
                self.status = status;
                self.trial_ends_at = trial_ends_at;
            }
            E::OrganizationDetailsChanged {
                name,
                billing_email,
                settings,
            } => {
                self.name = Some(name);
                self.billing_email = Some(billing_email);
                self.settings = settings;
            }
            E::TierChanged { tier, terms, .. } => {
                self.tier = Some(tier);
                self.terms = Some(terms);
            }
            E::SubscriptionStatusChanged {
                status,
                trial_ends_at,
            } => {
                self.status = status;
                self.trial_ends_at = trial_ends_at;
            }
            E::OrganizationSuspended { .. } => {
                self.status_before_suspension = Some(self.status);
                self.status = OrganizationStatus::Suspended;
            }
            E::OrganizationReactivated { status } => {
                self.status = status;
                self.status_before_suspension = None;
            }
            E::OrganizationClosed {} => self.status = OrganizationStatus::Closed,
            E::MemberInvited {
                member_id,
                email,
                role,
            } => {
                self.members.insert(member_id, Member { email, role });
            }
            E::MemberRoleChanged { member_id, role } => {
                if let Some(member) = self.members.get_mut(&member_id) {
                    member.role = role;
                }
            }
            E::MemberRemoved { member_id } => {
                self.members.remove(&member_id);
            }
            E::ApiKeyIssued {
                key_id,
                name,
                role,
                prefix,
                hash,
            } => {
                self.api_keys.insert(
                    key_id,
                    ApiKey {
                        name,
                        role,
                        prefix,
                        hash,
                        revoked: false,
                    },
                );
            }
            E::ApiKeyRevoked { key_id } => {
                if let Some(key) = self.api_keys.get_mut(&key_id) {
                    key.revoked = true;
                }
            }
            E::StoreSlotAcquired { store_id } => {
                self.active_stores.insert(store_id);
            }
            E::StoreSlotReleased { store_id } => {
                self.active_stores.remove(&store_id);
            }
            E::InstanceSlotAcquired {
                instance_id,
                agent_type,
            } => {
                self.active_instances.insert(instance_id, agent_type);
            }
            E::InstanceSlotReleased { instance_id } => {
                self.active_instances.remove(&instance_id);
            }
            E::InvoiceFinalized { month, .. } => {
                self.finalized_invoices.insert(month);
            }
            E::UsageThresholdCrossed { month, threshold } => {
                self.usage_alerts.insert((month, threshold));
            }
            E::HistoryAccessed { .. } => {}
            E::PersonalDataErased { keys_destroyed, .. } => {
                self.last_erasure = Some(keys_destroyed);
            }
        }
    }
}
