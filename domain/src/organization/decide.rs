//! How an organization decides: each command is checked against the state its events left,
//! then refused or answered with the events that record it.

use crate::tier::Terms;
use crate::{DomainError, Role, Tier};

use super::{
    Member, Organization, OrganizationCommand, OrganizationEvent, OrganizationStatus, Subscription,
};

impl Organization {
    /// The events that record `command`, or why it is refused. Every command but creation
    /// needs the organization to exist; all but reactivation and the billing and compliance
    /// records also need it to accept commands (neither suspended nor closed).
    pub(super) fn decide(
        &self,
        command: OrganizationCommand,
    ) -> Result<Vec<OrganizationEvent>, DomainError> {
        use OrganizationCommand as C;
        if let C::Create { .. } = command {
            return self.decide_create(command);
        }
        let ctx = self.context()?;
        match command {
            C::Reactivate { by_platform_admin } => {
                return self.decide_reactivation(by_platform_admin);
            }
            C::FinalizeInvoice { .. }
            | C::RecordUsageAlert { .. }
            | C::RecordHistoryAccess { .. }
            | C::RecordErasure { .. } => return self.decide_record(command),
            _ => ctx.ensure_accepts_commands()?,
        }
        let tier = ctx.tier;
        match command {
            C::Create { .. }
            | C::Reactivate { .. }
            | C::FinalizeInvoice { .. }
            | C::RecordUsageAlert { .. }
            | C::RecordHistoryAccess { .. }
            | C::RecordErasure { .. } => {
                unreachable!("handled above")
            }
            C::ChangeDetails { .. } | C::ChangeTier { .. } => {
                self.decide_details_and_tier(command, tier)
            }
            C::SetSubscription(_) | C::Suspend { .. } | C::Close => self.decide_status(command),
            C::InviteMember { .. } | C::ChangeMemberRole { .. } | C::RemoveMember { .. } => {
                self.decide_members(command, tier)
            }
            C::IssueApiKey { .. } | C::RevokeApiKey { .. } => self.decide_api_keys(command),
            C::AcquireStoreSlot { .. }
            | C::ReleaseStoreSlot { .. }
            | C::AcquireInstanceSlot { .. }
            | C::ReleaseInstanceSlot { .. } => self.decide_slots(command, tier),
        }
    }

    /// `Create`: the organization and its first owner.
    fn decide_create(
        &self,
        command: OrganizationCommand,
    ) -> Result<Vec<OrganizationEvent>, DomainError> {
        use OrganizationEvent as E;
        let OrganizationCommand::Create {
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
        else {
            unreachable!("not a creation")
        };
        if self.exists() {
            return Err(DomainError::AlreadyExists("organization"));
        }
        let terms = Terms::for_tier(tier, custom_terms)?;
        Ok(vec![
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
        ])
    }

    /// `Reactivate`, accepted of a suspended organization only (by the platform admin).
    fn decide_reactivation(
        &self,
        by_platform_admin: bool,
    ) -> Result<Vec<OrganizationEvent>, DomainError> {
        use OrganizationEvent as E;
        if !by_platform_admin {
            return Err(DomainError::PlatformAdminOnly);
        }
        match self.status {
            OrganizationStatus::Suspended => Ok(vec![E::OrganizationReactivated {
                status: self.status_before_suspension.unwrap_or_default(),
            }]),
            OrganizationStatus::Closed => Err(DomainError::OrganizationClosed),
            other => Err(DomainError::NotSuspended(other.as_str())),
        }
    }

    /// The billing and compliance records (invoices, usage alerts, history accesses, erasures),
    /// accepted whatever the organization's status.
    fn decide_record(
        &self,
        command: OrganizationCommand,
    ) -> Result<Vec<OrganizationEvent>, DomainError> {
        use OrganizationCommand as C;
        use OrganizationEvent as E;
        Ok(match command {
            C::FinalizeInvoice { month, .. } if self.finalized_invoices.contains(&month) => {
                return Err(DomainError::InvoiceFinalized(month.to_string()));
            }
            C::FinalizeInvoice {
                month,
                number,
                lines,
                total,
            } => vec![E::InvoiceFinalized {
                month,
                number,
                lines,
                total,
            }],
            C::RecordHistoryAccess { kind, scope } => vec![E::HistoryAccessed { kind, scope }],
            C::RecordErasure {
                scope,
                key_id,
                keys_destroyed,
            } => vec![E::PersonalDataErased {
                scope,
                key_id,
                keys_destroyed,
            }],
            C::RecordUsageAlert { month, threshold } => {
                if self.usage_alerts.contains(&(month, threshold)) {
                    return Ok(vec![]);
                }
                vec![E::UsageThresholdCrossed { month, threshold }]
            }
            _ => unreachable!("not a billing or compliance record"),
        })
    }

    /// The organization's details and its tier (with the terms that come with it); `tier` is
    /// the current one.
    fn decide_details_and_tier(
        &self,
        command: OrganizationCommand,
        tier: Tier,
    ) -> Result<Vec<OrganizationEvent>, DomainError> {
        use OrganizationCommand as C;
        use OrganizationEvent as E;
        Ok(match command {
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
                by_platform_admin,
            } => {
                if new_tier == Tier::Enterprise && !by_platform_admin {
                    return Err(DomainError::EnterpriseTermsByPlatform);
                }
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
            _ => unreachable!("not a change of details or tier"),
        })
    }

    /// The subscription status, suspension and closing.
    fn decide_status(
        &self,
        command: OrganizationCommand,
    ) -> Result<Vec<OrganizationEvent>, DomainError> {
        use OrganizationCommand as C;
        use OrganizationEvent as E;
        Ok(match command {
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
                vec![E::OrganizationSuspended {
                    reason: reason.into(),
                }]
            }
            C::Close => vec![E::OrganizationClosed {}],
            _ => unreachable!("not a change of status"),
        })
    }

    /// The team: inviting members, changing their roles, removing them.
    fn decide_members(
        &self,
        command: OrganizationCommand,
        tier: Tier,
    ) -> Result<Vec<OrganizationEvent>, DomainError> {
        use OrganizationCommand as C;
        use OrganizationEvent as E;
        let limits = tier.limits();
        Ok(match command {
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
            _ => unreachable!("not a member command"),
        })
    }

    /// API keys: issuing and revoking them.
    fn decide_api_keys(
        &self,
        command: OrganizationCommand,
    ) -> Result<Vec<OrganizationEvent>, DomainError> {
        use OrganizationCommand as C;
        use OrganizationEvent as E;
        Ok(match command {
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
                if key.role == Role::Owner && self.owner_keys() == 1 {
                    return Err(DomainError::LastOwnerKey);
                }
                vec![E::ApiKeyRevoked { key_id }]
            }
            _ => unreachable!("not an API key command"),
        })
    }

    /// The store and active-instance slots of the tier's limits.
    fn decide_slots(
        &self,
        command: OrganizationCommand,
        tier: Tier,
    ) -> Result<Vec<OrganizationEvent>, DomainError> {
        use OrganizationCommand as C;
        use OrganizationEvent as E;
        let limits = tier.limits();
        Ok(match command {
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
            _ => unreachable!("not a slot command"),
        })
    }

    /// The owner keys not revoked: the organization's owner credentials.
    fn owner_keys(&self) -> usize {
        self.api_keys
            .values()
            .filter(|k| k.role == Role::Owner && !k.revoked)
            .count()
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
}
