//! The organization's events: what has happened to it.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::billing::{Line, Month};
use crate::tier::Terms;
use crate::{
    AgentInstanceId, AgentType, ApiKeyId, Email, KeyName, MemberId, Money, OrganizationId,
    OrganizationName, Role, Slug, StoreId, Tier,
};

use super::OrganizationStatus;

/// Whose personal data an erasure destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErasureScope {
    /// Every personal field the tenant recorded until then.
    Tenant,
    /// One end customer's reference and conversations.
    Customer,
}

/// What has happened to an organization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum OrganizationEvent {
    OrganizationCreated {
        organization_id: OrganizationId,
        name: OrganizationName,
        slug: Slug,
        tier: Tier,
        terms: Terms,
        billing_email: Email,
        status: OrganizationStatus,
        trial_ends_at: Option<DateTime<Utc>>,
    },
    OrganizationDetailsChanged {
        name: OrganizationName,
        billing_email: Email,
        settings: Map<String, Value>,
    },
    TierChanged {
        from: Tier,
        tier: Tier,
        terms: Terms,
    },
    SubscriptionStatusChanged {
        status: OrganizationStatus,
        trial_ends_at: Option<DateTime<Utc>>,
    },
    OrganizationSuspended {
        reason: String,
    },
    OrganizationReactivated {
        status: OrganizationStatus,
    },
    OrganizationClosed {},
    MemberInvited {
        member_id: MemberId,
        email: Email,
        role: Role,
    },
    MemberRoleChanged {
        member_id: MemberId,
        role: Role,
    },
    MemberRemoved {
        member_id: MemberId,
    },
    ApiKeyIssued {
        key_id: ApiKeyId,
        name: KeyName,
        role: Role,
        prefix: String,
        hash: String,
    },
    ApiKeyRevoked {
        key_id: ApiKeyId,
    },
    StoreSlotAcquired {
        store_id: StoreId,
    },
    StoreSlotReleased {
        store_id: StoreId,
    },
    InstanceSlotAcquired {
        instance_id: AgentInstanceId,
        agent_type: AgentType,
    },
    InstanceSlotReleased {
        instance_id: AgentInstanceId,
    },
    InvoiceFinalized {
        month: Month,
        number: String,
        lines: Vec<Line>,
        total: Money,
    },
    UsageThresholdCrossed {
        month: Month,
        threshold: u8,
    },
    /// The tenant's history was read or exported (the actor is in the metadata).
    HistoryAccessed {
        kind: String,
        scope: String,
    },
    /// Personal data was crypto-shredded: its keys are gone, so every copy of it (events,
    /// read models, NATS, exports) reads as erased from now on (the actor is in the metadata).
    PersonalDataErased {
        scope: ErasureScope,
        /// The customer's key, for a customer erasure.
        key_id: Option<uuid::Uuid>,
        keys_destroyed: u64,
    },
}

impl DomainEvent for OrganizationEvent {
    fn event_type(&self) -> String {
        crate::event_type_of(self)
    }

    fn event_version(&self) -> String {
        "1".into()
    }
}
