//! The organization's commands: what may be asked of it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::billing::{Line, Month};
use crate::tier::Terms;
use crate::{
    AgentInstanceId, AgentType, ApiKeyId, Email, KeyName, MemberId, Money, OrganizationId,
    OrganizationName, Reason, Role, Slug, StoreId, Tier,
};

use super::ErasureScope;

/// A subscription status an owner or billing may set (suspension and closing have their own
/// commands).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Subscription {
    Trial { ends_at: DateTime<Utc> },
    Active,
    PastDue,
}

/// What may be asked of an organization.
#[derive(Clone, Debug, PartialEq)]
pub enum OrganizationCommand {
    /// Open a new organization (platform admin). `owner_email` becomes its first owner.
    Create {
        id: OrganizationId,
        name: OrganizationName,
        slug: Slug,
        tier: Tier,
        /// Negotiated terms; required for Enterprise, refused otherwise.
        custom_terms: Option<Terms>,
        billing_email: Email,
        owner: MemberId,
        owner_email: Email,
        trial_ends_at: Option<DateTime<Utc>>,
    },
    ChangeDetails {
        name: Option<OrganizationName>,
        billing_email: Option<Email>,
        settings: Option<Map<String, Value>>,
    },
    /// Move to another tier. Basic and Pro are at their list prices, which an owner may pick;
    /// Enterprise is at `custom_terms` the platform negotiated, so only the platform admin
    /// may move an organization there (or change its Enterprise terms).
    ChangeTier {
        tier: Tier,
        custom_terms: Option<Terms>,
        by_platform_admin: bool,
    },
    SetSubscription(Subscription),
    Suspend {
        reason: Reason,
        by_platform_admin: bool,
    },
    Reactivate {
        by_platform_admin: bool,
    },
    Close,
    InviteMember {
        member_id: MemberId,
        email: Email,
        role: Role,
    },
    ChangeMemberRole {
        member_id: MemberId,
        role: Role,
    },
    RemoveMember {
        member_id: MemberId,
    },
    IssueApiKey {
        key_id: ApiKeyId,
        name: KeyName,
        role: Role,
        /// The displayable start of the secret (`sk_live_ab12…`).
        prefix: String,
        /// Hex SHA-256 of the secret. The secret itself is never recorded.
        hash: String,
    },
    RevokeApiKey {
        key_id: ApiKeyId,
    },
    /// A store is created or reactivated: take one of the tier's store slots.
    AcquireStoreSlot {
        store_id: StoreId,
    },
    /// A store is deactivated: give its slot back.
    ReleaseStoreSlot {
        store_id: StoreId,
    },
    /// An agent instance is deployed or resumed: take one of the tier's active-instance slots.
    AcquireInstanceSlot {
        instance_id: AgentInstanceId,
        agent_type: AgentType,
    },
    /// An agent instance is paused or archived: give its slot back.
    ReleaseInstanceSlot {
        instance_id: AgentInstanceId,
    },
    /// Close a month's invoice for good (the billing close; accepted in any status, since a
    /// suspended or closed organization's last month is billed too).
    FinalizeInvoice {
        month: Month,
        number: String,
        lines: Vec<Line>,
        total: Money,
    },
    /// Record that the month's conversations crossed `threshold` % of the included ones
    /// (a policy; once per threshold per month, later calls change nothing).
    RecordUsageAlert {
        month: Month,
        threshold: u8,
    },
    /// Record an access to the tenant's history (replay, verify, export, erase): who, what
    /// and the scope. Accepted in any status; compliance work goes on after suspension.
    RecordHistoryAccess {
        kind: String,
        scope: String,
    },
    /// Record that personal data was erased (its keys destroyed in the same transaction):
    /// the whole tenant's, or one end customer's (`key_id`). Accepted in any status.
    RecordErasure {
        scope: ErasureScope,
        key_id: Option<uuid::Uuid>,
        keys_destroyed: u64,
    },
}
