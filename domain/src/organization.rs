//! The Organization aggregate: the tenant itself, its subscription, team and API keys, and
//! the counts its tier limits apply to.
//!
//! The organization stream is the consistency boundary for tier limits: creating or
//! reactivating a store and deploying or resuming an agent instance each record a slot event
//! here (`StoreSlotAcquired`, `InstanceSlotAcquired`) in the same transaction as the child's
//! own event. Concurrent commands of one organization therefore race on this stream's
//! version, and the loser decides again against the winner's count.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::billing::{Line, Month};
use crate::context::OrgContext;
use crate::tier::Terms;
use crate::{
    AgentInstanceId, AgentType, ApiKeyId, DomainError, Email, KeyName, MemberId, Money,
    OrganizationId, OrganizationName, Role, Slug, StoreId, Tier,
};

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
    ChangeTier {
        tier: Tier,
        custom_terms: Option<Terms>,
    },
    SetSubscription(Subscription),
    Suspend {
        reason: String,
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

/// Whose personal data an erasure destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
        match self.tier {
            Some(tier) if self.exists() => Ok(OrgContext {
                status: self.status,
                tier,
            }),
            _ => Err(DomainError::NotFound("organization")),
        }
    }

    fn owners(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.role == Role::Owner)
            .count()
    }

    /// Why the current stores, instances and team would not fit `tier`.
    fn excess_for(&self, tier: Tier) -> Vec<String> {
        let limits = tier.limits();
        let mut reasons = Vec::new();
        if let Some(max) = limits.stores {
            let n = self.active_stores.len();
            if n > max as usize {
                reasons.push(format!("{n} active stores (the {tier} tier allows {max})"));
            }
        }
        if let Some(max) = limits.active_instances {
            let n = self.active_instances.len();
            if n > max as usize {
                reasons.push(format!(
                    "{n} active agent instances (the {tier} tier allows {max})"
                ));
            }
        }
        let mut excluded: Vec<&str> = self
            .active_instances
            .values()
            .filter(|t| !limits.agent_types.contains(t))
            .map(|t| t.as_str())
            .collect();
        excluded.sort_unstable();
        excluded.dedup();
        if !excluded.is_empty() {
            reasons.push(format!(
                "active {} agent instances (not in the {tier} tier)",
                excluded.join(" and ")
            ));
        }
        let beyond_owner = self.members.len().saturating_sub(1);
        if !limits.members_beyond_owner && beyond_owner > 0 {
            reasons.push(format!(
                "{beyond_owner} team members beyond the owner (the {tier} tier allows none)"
            ));
        }
        reasons
    }

    fn decide(&self, command: OrganizationCommand) -> Result<Vec<OrganizationEvent>, DomainError> {
        use OrganizationCommand as C;
        use OrganizationEvent as E;
        if let C::Create {
            id,
            name,
            slug,
            tier,
            custom_terms,
            billing_email,
            owner,
            owner_email,
            trial_ends_at,
        } = command
        {
            if self.exists() {
                return Err(DomainError::AlreadyExists("organization"));
            }
            let terms = Terms::for_tier(tier, custom_terms)?;
            return Ok(vec![
                E::OrganizationCreated {
                    organization_id: id,
                    name,
                    slug,
                    tier,
                    terms,
                    billing_email,
                    status: if trial_ends_at.is_some() {
                        OrganizationStatus::Trial
                    } else {
                        OrganizationStatus::Active
                    },
                    trial_ends_at,
                },
                E::MemberInvited {
                    member_id: owner,
                    email: owner_email,
                    role: Role::Owner,
                },
            ]);
        }
        let ctx = self.context()?;
        match command {
            C::Reactivate { by_platform_admin } => {
                if !by_platform_admin {
                    return Err(DomainError::PlatformAdminOnly);
                }
                return match self.status {
                    OrganizationStatus::Suspended => Ok(vec![E::OrganizationReactivated {
                        status: self.status_before_suspension.unwrap_or_default(),
                    }]),
                    OrganizationStatus::Closed => Err(DomainError::OrganizationClosed),
                    other => Err(DomainError::NotSuspended(other.as_str())),
                };
            }
            C::FinalizeInvoice { month, .. } if self.finalized_invoices.contains(&month) => {
                return Err(DomainError::InvoiceFinalized(month.to_string()));
            }
            C::FinalizeInvoice {
                month,
                number,
                lines,
                total,
            } => {
                return Ok(vec![E::InvoiceFinalized {
                    month,
                    number,
                    lines,
                    total,
                }])
            }
            C::RecordHistoryAccess { kind, scope } => {
                return Ok(vec![E::HistoryAccessed { kind, scope }]);
            }
            C::RecordErasure {
                scope,
                key_id,
                keys_destroyed,
            } => {
                return Ok(vec![E::PersonalDataErased {
                    scope,
                    key_id,
                    keys_destroyed,
                }]);
            }
            C::RecordUsageAlert { month, threshold } => {
                if self.usage_alerts.contains(&(month, threshold)) {
                    return Ok(vec![]);
                }
                return Ok(vec![E::UsageThresholdCrossed { month, threshold }]);
            }
            _ => ctx.ensure_accepts_commands()?,
        }
        let tier = ctx.tier;
        let limits = tier.limits();
        let events = match command {
            C::Create { .. }
            | C::Reactivate { .. }
            | C::FinalizeInvoice { .. }
            | C::RecordUsageAlert { .. }
            | C::RecordHistoryAccess { .. }
            | C::RecordErasure { .. } => {
                unreachable!("handled above")
            }
            C::ChangeDetails {
                name,
                billing_email,
                settings,
            } => {
                if let Some(settings) = &settings {
                    crate::values::validate_json_object("settings", settings)?;
                }
                vec![E::OrganizationDetailsChanged {
                    name: name
                        .or_else(|| self.name.clone())
                        .ok_or(DomainError::NotFound("organization"))?,
                    billing_email: billing_email
                        .or_else(|| self.billing_email.clone())
                        .ok_or(DomainError::NotFound("organization"))?,
                    settings: settings.unwrap_or_else(|| self.settings.clone()),
                }]
            }
            C::ChangeTier {
                tier: new_tier,
                custom_terms,
            } => {
                let terms = Terms::for_tier(new_tier, custom_terms)?;
                if new_tier == tier && Some(terms) == self.terms {
                    return Err(DomainError::SameTier(tier));
                }
                let reasons = self.excess_for(new_tier);
                if !reasons.is_empty() {
                    return Err(DomainError::DowngradeBlocked {
                        tier: new_tier,
                        reasons: reasons.join("; "),
                    });
                }
                vec![E::TierChanged {
                    from: tier,
                    tier: new_tier,
                    terms,
                }]
            }
            C::SetSubscription(subscription) => {
                let (status, trial_ends_at) = match subscription {
                    Subscription::Trial { ends_at } => (OrganizationStatus::Trial, Some(ends_at)),
                    Subscription::Active => (OrganizationStatus::Active, None),
                    Subscription::PastDue => (OrganizationStatus::PastDue, None),
                };
                vec![E::SubscriptionStatusChanged {
                    status,
                    trial_ends_at,
                }]
            }
            C::Suspend {
                reason,
                by_platform_admin,
            } => {
                if !by_platform_admin {
                    return Err(DomainError::PlatformAdminOnly);
                }
                vec![E::OrganizationSuspended { reason }]
            }
            C::Close => vec![E::OrganizationClosed {}],
            C::InviteMember {
                member_id,
                email,
                role,
            } => {
                if !limits.members_beyond_owner {
                    return Err(DomainError::MembersNotInTier {
                        required: Tier::smallest_where(|l| l.members_beyond_owner),
                    });
                }
                // Addresses compare without case; an erased member's placeholder blocks nobody.
                let taken = |m: &Member| {
                    m.email.as_str() != crate::personal::ERASED_EMAIL
                        && m.email.as_str().eq_ignore_ascii_case(email.as_str())
                };
                if self.members.values().any(taken) {
                    return Err(DomainError::MemberExists);
                }
                if self.members.contains_key(&member_id) {
                    return Err(DomainError::AlreadyExists("member"));
                }
                vec![E::MemberInvited {
                    member_id,
                    email,
                    role,
                }]
            }
            C::ChangeMemberRole { member_id, role } => {
                let member = self
                    .members
                    .get(&member_id)
                    .ok_or(DomainError::NotFound("member"))?;
                if member.role == Role::Owner && role != Role::Owner && self.owners() == 1 {
                    return Err(DomainError::LastOwner);
                }
                vec![E::MemberRoleChanged { member_id, role }]
            }
            C::RemoveMember { member_id } => {
                let member = self
                    .members
                    .get(&member_id)
                    .ok_or(DomainError::NotFound("member"))?;
                if member.role == Role::Owner && self.owners() == 1 {
                    return Err(DomainError::LastOwner);
                }
                vec![E::MemberRemoved { member_id }]
            }
            C::IssueApiKey {
                key_id,
                name,
                role,
                prefix,
                hash,
            } => {
                if self.api_keys.contains_key(&key_id) {
                    return Err(DomainError::AlreadyExists("api key"));
                }
                vec![E::ApiKeyIssued {
                    key_id,
                    name,
                    role,
                    prefix,
                    hash,
                }]
            }
            C::RevokeApiKey { key_id } => {
                let key = self
                    .api_keys
                    .get(&key_id)
                    .ok_or(DomainError::NotFound("api key"))?;
                if key.revoked {
                    return Err(DomainError::KeyRevoked);
                }
                vec![E::ApiKeyRevoked { key_id }]
            }
            C::AcquireStoreSlot { store_id } => {
                if self.active_stores.contains(&store_id) {
                    return Ok(vec![]);
                }
                if let Some(max) = limits.stores {
                    if self.active_stores.len() >= max as usize {
                        return Err(DomainError::TierLimitReached {
                            resource: "active stores",
                            limit: max,
                            tier,
                            required: Tier::smallest_where(|l| {
                                l.stores
                                    .is_none_or(|m| m as usize > self.active_stores.len())
                            }),
                        });
                    }
                }
                vec![E::StoreSlotAcquired { store_id }]
            }
            C::ReleaseStoreSlot { store_id } => {
                if !self.active_stores.contains(&store_id) {
                    return Ok(vec![]);
                }
                vec![E::StoreSlotReleased { store_id }]
            }
            C::AcquireInstanceSlot {
                instance_id,
                agent_type,
            } => {
                if !limits.agent_types.contains(&agent_type) {
                    return Err(DomainError::AgentTypeNotInTier {
                        agent_type,
                        required: Tier::smallest_where(|l| l.agent_types.contains(&agent_type)),
                    });
                }
                if self.active_instances.contains_key(&instance_id) {
                    return Ok(vec![]);
                }
                if let Some(max) = limits.active_instances {
                    if self.active_instances.len() >= max as usize {
                        return Err(DomainError::TierLimitReached {
                            resource: "active agent instances",
                            limit: max,
                            tier,
                            required: Tier::smallest_where(|l| {
                                l.active_instances
                                    .is_none_or(|m| m as usize > self.active_instances.len())
                            }),
                        });
                    }
                }
                vec![E::InstanceSlotAcquired {
                    instance_id,
                    agent_type,
                }]
            }
            C::ReleaseInstanceSlot { instance_id } => {
                if !self.active_instances.contains_key(&instance_id) {
                    return Ok(vec![]);
                }
                vec![E::InstanceSlotReleased { instance_id }]
            }
        };
        Ok(events)
    }
}

impl Aggregate for Organization {
    const TYPE: &'static str = "organization";
    type Command = OrganizationCommand;
    type Event = OrganizationEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::fixtures::*;

    fn org() -> TestFramework<Organization> {
        TestFramework::<Organization>::with(())
    }

    fn ids() -> (OrganizationId, MemberId) {
        (OrganizationId::new(), MemberId::new())
    }

    #[test]
    fn creating_records_the_organization_and_its_owner() {
        let (id, owner) = ids();
        org()
            .given_no_previous_events()
            .when(create(id, owner, Tier::Pro))
            .then_expect_events(created(id, owner, Tier::Pro));
    }

    #[test]
    fn an_organization_cannot_be_created_twice() {
        let (id, owner) = ids();
        org()
            .given(created(id, owner, Tier::Pro))
            .when(create(id, owner, Tier::Pro))
            .then_expect_error(DomainError::AlreadyExists("organization"));
    }

    #[test]
    fn enterprise_needs_its_own_terms() {
        let (id, owner) = ids();
        let err = org()
            .given_no_previous_events()
            .when(create(id, owner, Tier::Enterprise))
            .inspect_result()
            .unwrap_err();
        assert!(
            matches!(err, DomainError::Invalid(ref v) if v.field == "base_fee"),
            "{err}"
        );

        let mut command = create(id, owner, Tier::Enterprise);
        if let OrganizationCommand::Create { custom_terms, .. } = &mut command {
            *custom_terms = Some(enterprise_terms());
        }
        org()
            .given_no_previous_events()
            .when(command)
            .then_expect_events(created(id, owner, Tier::Enterprise));
    }

    #[test]
    fn a_suspended_organization_accepts_nothing_but_reactivation() {
        let (id, owner) = ids();
        let suspended = || {
            org()
                .given(created(id, owner, Tier::Pro))
                .and(vec![suspended_event()])
        };
        for command in [
            OrganizationCommand::ChangeDetails {
                name: None,
                billing_email: None,
                settings: None,
            },
            OrganizationCommand::Close,
            OrganizationCommand::InviteMember {
                member_id: MemberId::new(),
                email: email("dev@acme.com"),
                role: Role::Developer,
            },
            OrganizationCommand::ChangeTier {
                tier: Tier::Basic,
                custom_terms: None,
            },
            OrganizationCommand::SetSubscription(Subscription::Active),
            OrganizationCommand::AcquireStoreSlot {
                store_id: StoreId::new(),
            },
            OrganizationCommand::Suspend {
                reason: "again".into(),
                by_platform_admin: true,
            },
        ] {
            suspended()
                .when(command)
                .then_expect_error(DomainError::OrganizationSuspended);
        }
        suspended()
            .when(OrganizationCommand::Reactivate {
                by_platform_admin: false,
            })
            .then_expect_error(DomainError::PlatformAdminOnly);
        suspended()
            .when(OrganizationCommand::Reactivate {
                by_platform_admin: true,
            })
            .then_expect_events(vec![OrganizationEvent::OrganizationReactivated {
                status: OrganizationStatus::Active,
            }]);
    }

    #[test]
    fn reactivation_restores_the_status_before_suspension() {
        let (id, owner) = ids();
        let mut state = Organization::default();
        let past_due = OrganizationEvent::SubscriptionStatusChanged {
            status: OrganizationStatus::PastDue,
            trial_ends_at: None,
        };
        for e in created(id, owner, Tier::Pro)
            .into_iter()
            .chain([past_due, suspended_event()])
        {
            state.apply(e);
        }
        assert_eq!(state.status, OrganizationStatus::Suspended);
        let events = state
            .decide(OrganizationCommand::Reactivate {
                by_platform_admin: true,
            })
            .unwrap();
        assert_eq!(
            events,
            vec![OrganizationEvent::OrganizationReactivated {
                status: OrganizationStatus::PastDue
            }]
        );
    }

    #[test]
    fn only_the_platform_admin_suspends() {
        let (id, owner) = ids();
        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::Suspend {
                reason: "fraud".into(),
                by_platform_admin: false,
            })
            .then_expect_error(DomainError::PlatformAdminOnly);
        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::Suspend {
                reason: "unpaid".into(),
                by_platform_admin: true,
            })
            .then_expect_events(vec![suspended_event()]);
        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::Reactivate {
                by_platform_admin: true,
            })
            .then_expect_error(DomainError::NotSuspended("active"));
    }

    #[test]
    fn a_closed_organization_accepts_nothing() {
        let (id, owner) = ids();
        let closed = || {
            org()
                .given(created(id, owner, Tier::Pro))
                .and(vec![OrganizationEvent::OrganizationClosed {}])
        };
        closed()
            .when(OrganizationCommand::Close)
            .then_expect_error(DomainError::OrganizationClosed);
        closed()
            .when(OrganizationCommand::Reactivate {
                by_platform_admin: true,
            })
            .then_expect_error(DomainError::OrganizationClosed);
        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::Close)
            .then_expect_events(vec![OrganizationEvent::OrganizationClosed {}]);
    }

    #[test]
    fn members_beyond_the_owner_need_pro() {
        let (id, owner) = ids();
        let member = MemberId::new();
        let invite = |address: &str| OrganizationCommand::InviteMember {
            member_id: member,
            email: email(address),
            role: Role::Developer,
        };
        org()
            .given(created(id, owner, Tier::Basic))
            .when(invite("dev@acme.com"))
            .then_expect_error(DomainError::MembersNotInTier {
                required: Tier::Pro,
            });
        org()
            .given(created(id, owner, Tier::Pro))
            .when(invite("dev@acme.com"))
            .then_expect_events(vec![OrganizationEvent::MemberInvited {
                member_id: member,
                email: email("dev@acme.com"),
                role: Role::Developer,
            }]);
        org()
            .given(created(id, owner, Tier::Pro))
            .when(invite("owner@acme.com"))
            .then_expect_error(DomainError::MemberExists);
        org()
            .given(created(id, owner, Tier::Pro))
            .when(invite("Owner@ACME.com"))
            .then_expect_error(DomainError::MemberExists);
    }

    #[test]
    fn the_last_owner_can_be_neither_removed_nor_demoted() {
        let (id, owner) = ids();
        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::RemoveMember { member_id: owner })
            .then_expect_error(DomainError::LastOwner);
        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::ChangeMemberRole {
                member_id: owner,
                role: Role::Admin,
            })
            .then_expect_error(DomainError::LastOwner);
        let co_owner = vec![OrganizationEvent::MemberInvited {
            member_id: MemberId::new(),
            email: email("co@acme.com"),
            role: Role::Owner,
        }];
        org()
            .given(created(id, owner, Tier::Pro))
            .and(co_owner.clone())
            .when(OrganizationCommand::ChangeMemberRole {
                member_id: owner,
                role: Role::Admin,
            })
            .then_expect_events(vec![OrganizationEvent::MemberRoleChanged {
                member_id: owner,
                role: Role::Admin,
            }]);
        org()
            .given(created(id, owner, Tier::Pro))
            .and(co_owner)
            .when(OrganizationCommand::RemoveMember { member_id: owner })
            .then_expect_events(vec![OrganizationEvent::MemberRemoved { member_id: owner }]);
        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::RemoveMember {
                member_id: MemberId::new(),
            })
            .then_expect_error(DomainError::NotFound("member"));
    }

    #[test]
    fn api_keys_are_issued_and_revoked_once() {
        let (id, owner) = ids();
        let key_id = ApiKeyId::new();
        let issue = OrganizationCommand::IssueApiKey {
            key_id,
            name: KeyName::parse("ci").unwrap(),
            role: Role::Developer,
            prefix: "sk_live_ab12".into(),
            hash: "00".repeat(32),
        };
        let issued = OrganizationEvent::ApiKeyIssued {
            key_id,
            name: KeyName::parse("ci").unwrap(),
            role: Role::Developer,
            prefix: "sk_live_ab12".into(),
            hash: "00".repeat(32),
        };
        let revoked = OrganizationEvent::ApiKeyRevoked { key_id };
        org()
            .given(created(id, owner, Tier::Basic))
            .when(issue)
            .then_expect_events(vec![issued.clone()]);
        org()
            .given(created(id, owner, Tier::Basic))
            .and(vec![issued.clone()])
            .when(OrganizationCommand::RevokeApiKey { key_id })
            .then_expect_events(vec![revoked.clone()]);
        org()
            .given(created(id, owner, Tier::Basic))
            .and(vec![issued, revoked])
            .when(OrganizationCommand::RevokeApiKey { key_id })
            .then_expect_error(DomainError::KeyRevoked);
        org()
            .given(created(id, owner, Tier::Basic))
            .when(OrganizationCommand::RevokeApiKey { key_id })
            .then_expect_error(DomainError::NotFound("api key"));
    }

    #[test]
    fn store_slots_follow_the_tier() {
        let (id, owner) = ids();
        let first = StoreId::new();
        let taken = vec![OrganizationEvent::StoreSlotAcquired { store_id: first }];
        org()
            .given(created(id, owner, Tier::Basic))
            .when(OrganizationCommand::AcquireStoreSlot { store_id: first })
            .then_expect_events(taken.clone());
        org()
            .given(created(id, owner, Tier::Basic))
            .and(taken.clone())
            .when(OrganizationCommand::AcquireStoreSlot {
                store_id: StoreId::new(),
            })
            .then_expect_error(DomainError::TierLimitReached {
                resource: "active stores",
                limit: 1,
                tier: Tier::Basic,
                required: Tier::Pro,
            });
        let second = StoreId::new();
        org()
            .given(created(id, owner, Tier::Basic))
            .and(taken)
            .and(vec![OrganizationEvent::StoreSlotReleased {
                store_id: first,
            }])
            .when(OrganizationCommand::AcquireStoreSlot { store_id: second })
            .then_expect_events(vec![OrganizationEvent::StoreSlotAcquired {
                store_id: second,
            }]);
    }

    #[test]
    fn instance_slots_follow_the_tier() {
        let (id, owner) = ids();
        let three: Vec<OrganizationEvent> = (0..3)
            .map(|_| OrganizationEvent::InstanceSlotAcquired {
                instance_id: AgentInstanceId::new(),
                agent_type: AgentType::CustomerService,
            })
            .collect();
        let next = AgentInstanceId::new();
        let acquire = |agent_type| OrganizationCommand::AcquireInstanceSlot {
            instance_id: next,
            agent_type,
        };
        org()
            .given(created(id, owner, Tier::Basic))
            .and(three[..2].to_vec())
            .when(acquire(AgentType::CustomerService))
            .then_expect_events(vec![OrganizationEvent::InstanceSlotAcquired {
                instance_id: next,
                agent_type: AgentType::CustomerService,
            }]);
        org()
            .given(created(id, owner, Tier::Basic))
            .and(three.clone())
            .when(acquire(AgentType::CustomerService))
            .then_expect_error(DomainError::TierLimitReached {
                resource: "active agent instances",
                limit: 3,
                tier: Tier::Basic,
                required: Tier::Pro,
            });
        org()
            .given(created(id, owner, Tier::Basic))
            .when(acquire(AgentType::Sales))
            .then_expect_error(DomainError::AgentTypeNotInTier {
                agent_type: AgentType::Sales,
                required: Tier::Pro,
            });
        org()
            .given(created(id, owner, Tier::Pro))
            .and(three)
            .when(acquire(AgentType::Sales))
            .then_expect_events(vec![OrganizationEvent::InstanceSlotAcquired {
                instance_id: next,
                agent_type: AgentType::Sales,
            }]);
    }

    #[test]
    fn a_downgrade_that_would_not_fit_is_refused_naming_what_exceeds() {
        let (id, owner) = ids();
        let busy = vec![
            OrganizationEvent::StoreSlotAcquired {
                store_id: StoreId::new(),
            },
            OrganizationEvent::StoreSlotAcquired {
                store_id: StoreId::new(),
            },
            OrganizationEvent::InstanceSlotAcquired {
                instance_id: AgentInstanceId::new(),
                agent_type: AgentType::Sales,
            },
            OrganizationEvent::MemberInvited {
                member_id: MemberId::new(),
                email: email("dev@acme.com"),
                role: Role::Developer,
            },
        ];
        let err = org()
            .given(created(id, owner, Tier::Pro))
            .and(busy)
            .when(OrganizationCommand::ChangeTier {
                tier: Tier::Basic,
                custom_terms: None,
            })
            .inspect_result()
            .unwrap_err();
        let DomainError::DowngradeBlocked { reasons, .. } = &err else {
            panic!("{err}")
        };
        assert!(reasons.contains("2 active stores"), "{reasons}");
        assert!(reasons.contains("sales"), "{reasons}");
        assert!(
            reasons.contains("1 team members beyond the owner"),
            "{reasons}"
        );

        // Each excluded type once, however the instances interleave.
        let interleaved = [AgentType::Sales, AgentType::Marketing, AgentType::Sales].map(|t| {
            OrganizationEvent::InstanceSlotAcquired {
                instance_id: AgentInstanceId::new(),
                agent_type: t,
            }
        });
        let err = org()
            .given(created(id, owner, Tier::Pro))
            .and(interleaved.to_vec())
            .when(OrganizationCommand::ChangeTier {
                tier: Tier::Basic,
                custom_terms: None,
            })
            .inspect_result()
            .unwrap_err();
        let DomainError::DowngradeBlocked { reasons, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(reasons.matches("sales").count(), 1, "{reasons}");
        assert_eq!(reasons.matches("marketing").count(), 1, "{reasons}");

        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::ChangeTier {
                tier: Tier::Basic,
                custom_terms: None,
            })
            .then_expect_events(vec![OrganizationEvent::TierChanged {
                from: Tier::Pro,
                tier: Tier::Basic,
                terms: Tier::Basic.list_terms().unwrap(),
            }]);
        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::ChangeTier {
                tier: Tier::Pro,
                custom_terms: None,
            })
            .then_expect_error(DomainError::SameTier(Tier::Pro));
        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::ChangeTier {
                tier: Tier::Enterprise,
                custom_terms: Some(enterprise_terms()),
            })
            .then_expect_events(vec![OrganizationEvent::TierChanged {
                from: Tier::Pro,
                tier: Tier::Enterprise,
                terms: enterprise_terms(),
            }]);
    }

    #[test]
    fn subscription_status_changes() {
        let (id, owner) = ids();
        let ends_at = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .to_utc();
        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::SetSubscription(Subscription::Trial {
                ends_at,
            }))
            .then_expect_events(vec![OrganizationEvent::SubscriptionStatusChanged {
                status: OrganizationStatus::Trial,
                trial_ends_at: Some(ends_at),
            }]);
        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::SetSubscription(Subscription::PastDue))
            .then_expect_events(vec![OrganizationEvent::SubscriptionStatusChanged {
                status: OrganizationStatus::PastDue,
                trial_ends_at: None,
            }]);
    }

    #[test]
    fn details_change_keeps_what_is_not_given() {
        let (id, owner) = ids();
        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::ChangeDetails {
                name: Some(OrganizationName::parse("Acme 2").unwrap()),
                billing_email: None,
                settings: None,
            })
            .then_expect_events(vec![OrganizationEvent::OrganizationDetailsChanged {
                name: OrganizationName::parse("Acme 2").unwrap(),
                billing_email: email("billing@acme.com"),
                settings: Map::new(),
            }]);
    }
}
