//! The organization's given/when/then tests.

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
            by_platform_admin: false,
        },
        OrganizationCommand::SetSubscription(Subscription::Active),
        OrganizationCommand::AcquireStoreSlot {
            store_id: StoreId::new(),
        },
        OrganizationCommand::Suspend {
            reason: crate::Reason::parse("again").unwrap(),
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
            reason: crate::Reason::parse("fraud").unwrap(),
            by_platform_admin: false,
        })
        .then_expect_error(DomainError::PlatformAdminOnly);
    org()
        .given(created(id, owner, Tier::Pro))
        .when(OrganizationCommand::Suspend {
            reason: crate::Reason::parse("unpaid").unwrap(),
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
fn the_last_owner_key_cannot_be_revoked() {
    let (id, owner) = ids();
    let issued = |key_id, role| OrganizationEvent::ApiKeyIssued {
        key_id,
        name: KeyName::parse("k").unwrap(),
        role,
        prefix: "sk_live_ab12".into(),
        hash: "00".repeat(32),
    };
    let (first, second, admin) = (ApiKeyId::new(), ApiKeyId::new(), ApiKeyId::new());
    org()
        .given(created(id, owner, Tier::Basic))
        .and(vec![issued(first, Role::Owner), issued(admin, Role::Admin)])
        .when(OrganizationCommand::RevokeApiKey { key_id: first })
        .then_expect_error(DomainError::LastOwnerKey);
    org()
        .given(created(id, owner, Tier::Basic))
        .and(vec![
            issued(first, Role::Owner),
            issued(second, Role::Owner),
        ])
        .when(OrganizationCommand::RevokeApiKey { key_id: first })
        .then_expect_events(vec![OrganizationEvent::ApiKeyRevoked { key_id: first }]);
    org()
        .given(created(id, owner, Tier::Basic))
        .and(vec![
            issued(first, Role::Owner),
            issued(second, Role::Owner),
            OrganizationEvent::ApiKeyRevoked { key_id: second },
        ])
        .when(OrganizationCommand::RevokeApiKey { key_id: first })
        .then_expect_error(DomainError::LastOwnerKey);
    // The admin key goes; the owner key stays.
    org()
        .given(created(id, owner, Tier::Basic))
        .and(vec![issued(first, Role::Owner), issued(admin, Role::Admin)])
        .when(OrganizationCommand::RevokeApiKey { key_id: admin })
        .then_expect_events(vec![OrganizationEvent::ApiKeyRevoked { key_id: admin }]);
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
            by_platform_admin: false,
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
            by_platform_admin: false,
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
            by_platform_admin: false,
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
            by_platform_admin: false,
        })
        .then_expect_error(DomainError::SameTier(Tier::Pro));
    org()
        .given(created(id, owner, Tier::Pro))
        .when(OrganizationCommand::ChangeTier {
            tier: Tier::Enterprise,
            custom_terms: Some(enterprise_terms()),
            by_platform_admin: true,
        })
        .then_expect_events(vec![OrganizationEvent::TierChanged {
            from: Tier::Pro,
            tier: Tier::Enterprise,
            terms: enterprise_terms(),
        }]);
}

#[test]
fn only_the_platform_admin_moves_an_organization_to_enterprise() {
    let (id, owner) = ids();
    // An owner may neither set Enterprise terms nor ask for Enterprise without them.
    for custom_terms in [Some(enterprise_terms()), None] {
        org()
            .given(created(id, owner, Tier::Pro))
            .when(OrganizationCommand::ChangeTier {
                tier: Tier::Enterprise,
                custom_terms,
                by_platform_admin: false,
            })
            .then_expect_error(DomainError::EnterpriseTermsByPlatform);
    }
    // Nor change the terms the platform set.
    org()
        .given(created(id, owner, Tier::Enterprise))
        .when(OrganizationCommand::ChangeTier {
            tier: Tier::Enterprise,
            custom_terms: Some(Terms {
                included_conversations: crate::IncludedConversations::parse(1).unwrap(),
                ..enterprise_terms()
            }),
            by_platform_admin: false,
        })
        .then_expect_error(DomainError::EnterpriseTermsByPlatform);
    // But may leave Enterprise for a listed tier.
    org()
        .given(created(id, owner, Tier::Enterprise))
        .when(OrganizationCommand::ChangeTier {
            tier: Tier::Pro,
            custom_terms: None,
            by_platform_admin: false,
        })
        .then_expect_events(vec![OrganizationEvent::TierChanged {
            from: Tier::Enterprise,
            tier: Tier::Pro,
            terms: Tier::Pro.list_terms().unwrap(),
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
