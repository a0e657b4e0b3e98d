//! The agent instance's given/when/then tests.

use cqrs_es::test::TestFramework;
use serde_json::json;

use super::*;
use crate::context::{OrgContext, StoreContext};
use crate::fixtures::*;
use crate::organization::OrganizationStatus;
use crate::Tier;

fn instance() -> TestFramework<AgentInstance> {
    TestFramework::<AgentInstance>::with(())
}

struct Ids {
    id: AgentInstanceId,
    store: StoreId,
    org: OrganizationId,
}

fn ids() -> Ids {
    Ids {
        id: AgentInstanceId::new(),
        store: StoreId::new(),
        org: OrganizationId::new(),
    }
}

fn deploy(
    ids: &Ids,
    agent_type: AgentType,
    version: Option<&str>,
    config: Value,
) -> AgentInstanceAction {
    AgentInstanceAction::Deploy {
        id: ids.id,
        store_id: ids.store,
        organization_id: ids.org,
        agent_type,
        version: version.map(str::to_owned),
        config: config.as_object().cloned().unwrap_or_default(),
    }
}

fn deployed(ids: &Ids) -> AgentInstanceEvent {
    AgentInstanceEvent::AgentInstanceDeployed {
        instance_id: ids.id,
        store_id: ids.store,
        organization_id: ids.org,
        agent_type: AgentType::CustomerService,
        version: "1.0.0".into(),
        config: Map::new(),
    }
}

fn on(tier: Tier, store_active: bool, action: AgentInstanceAction) -> AgentInstanceCommand {
    AgentInstanceCommand {
        org: org_ctx(tier),
        store: StoreContext {
            active: store_active,
        },
        action,
    }
}

#[test]
fn deploying_takes_the_latest_version_unless_one_is_named() {
    let ids = ids();
    let events = instance()
        .given_no_previous_events()
        .when(on(
            Tier::Basic,
            true,
            deploy(&ids, AgentType::CustomerService, None, json!({})),
        ))
        .inspect_result()
        .unwrap();
    assert!(
        matches!(&events[0], AgentInstanceEvent::AgentInstanceDeployed { version, .. } if version == "1.1.0")
    );
    instance()
        .given_no_previous_events()
        .when(on(
            Tier::Basic,
            true,
            deploy(&ids, AgentType::CustomerService, Some("1.0.0"), json!({})),
        ))
        .then_expect_events(vec![deployed(&ids)]);
    instance()
        .given_no_previous_events()
        .when(on(
            Tier::Basic,
            true,
            deploy(&ids, AgentType::CustomerService, Some("9.9.9"), json!({})),
        ))
        .then_expect_error(DomainError::UnknownAgentVersion {
            agent_type: AgentType::CustomerService,
            version: "9.9.9".into(),
        });
}

#[test]
fn deploying_needs_an_active_store_and_organization() {
    let ids = ids();
    instance()
        .given_no_previous_events()
        .when(on(
            Tier::Basic,
            false,
            deploy(&ids, AgentType::CustomerService, None, json!({})),
        ))
        .then_expect_error(DomainError::StoreInactive);
    instance()
        .given_no_previous_events()
        .when(AgentInstanceCommand {
            org: OrgContext {
                id: ids.org,
                status: OrganizationStatus::Suspended,
                tier: Tier::Pro,
            },
            store: StoreContext { active: true },
            action: deploy(&ids, AgentType::CustomerService, None, json!({})),
        })
        .then_expect_error(DomainError::OrganizationSuspended);
}

#[test]
fn agent_types_follow_the_tier() {
    let ids = ids();
    instance()
        .given_no_previous_events()
        .when(on(
            Tier::Basic,
            true,
            deploy(&ids, AgentType::Marketing, None, json!({})),
        ))
        .then_expect_error(DomainError::AgentTypeNotInTier {
            agent_type: AgentType::Marketing,
            required: Tier::Pro,
        });
    instance()
        .given_no_previous_events()
        .when(on(
            Tier::Pro,
            true,
            deploy(&ids, AgentType::Marketing, None, json!({})),
        ))
        .inspect_result()
        .unwrap();
}

#[test]
fn prompt_overrides_need_enterprise() {
    let ids = ids();
    let prompt = json!({ "system_prompt": "Be terse", "temperature": 0 });
    instance()
        .given_no_previous_events()
        .when(on(
            Tier::Pro,
            true,
            deploy(&ids, AgentType::Sales, None, prompt.clone()),
        ))
        .then_expect_error(DomainError::PromptOverridesNotInTier {
            required: Tier::Enterprise,
        });
    instance()
        .given_no_previous_events()
        .when(on(
            Tier::Enterprise,
            true,
            deploy(&ids, AgentType::Sales, None, prompt.clone()),
        ))
        .inspect_result()
        .unwrap();
    instance()
        .given(vec![deployed(&ids)])
        .when(on(
            Tier::Pro,
            true,
            AgentInstanceAction::ChangeConfig {
                config: prompt.as_object().cloned().unwrap(),
            },
        ))
        .then_expect_error(DomainError::PromptOverridesNotInTier {
            required: Tier::Enterprise,
        });
    let plain = json!({ "greeting": "Hi" }).as_object().cloned().unwrap();
    instance()
        .given(vec![deployed(&ids)])
        .when(on(
            Tier::Pro,
            true,
            AgentInstanceAction::ChangeConfig {
                config: plain.clone(),
            },
        ))
        .then_expect_events(vec![AgentInstanceEvent::AgentConfigChanged {
            config: plain,
        }]);
}

#[test]
fn pause_resume_and_upgrade() {
    let ids = ids();
    let paused = vec![deployed(&ids), AgentInstanceEvent::AgentInstancePaused {}];
    instance()
        .given(vec![deployed(&ids)])
        .when(on(Tier::Basic, true, AgentInstanceAction::Pause))
        .then_expect_events(vec![AgentInstanceEvent::AgentInstancePaused {}]);
    instance()
        .given(paused.clone())
        .when(on(Tier::Basic, true, AgentInstanceAction::Pause))
        .then_expect_error(DomainError::InstanceAlready("paused"));
    instance()
        .given(paused.clone())
        .when(on(Tier::Basic, true, AgentInstanceAction::Resume))
        .then_expect_events(vec![AgentInstanceEvent::AgentInstanceResumed {}]);
    instance()
        .given(paused)
        .when(on(Tier::Basic, false, AgentInstanceAction::Resume))
        .then_expect_error(DomainError::StoreInactive);
    instance()
        .given(vec![deployed(&ids)])
        .when(on(
            Tier::Basic,
            true,
            AgentInstanceAction::Upgrade {
                version: "1.1.0".into(),
            },
        ))
        .then_expect_events(vec![AgentInstanceEvent::AgentInstanceUpgraded {
            from: "1.0.0".into(),
            to: "1.1.0".into(),
        }]);
    instance()
        .given(vec![deployed(&ids)])
        .when(on(
            Tier::Basic,
            true,
            AgentInstanceAction::Upgrade {
                version: "1.0.0".into(),
            },
        ))
        .then_expect_error(DomainError::SameVersion("1.0.0".into()));
}

#[test]
fn an_archived_instance_accepts_nothing() {
    let ids = ids();
    instance()
        .given(vec![deployed(&ids)])
        .when(on(Tier::Basic, true, AgentInstanceAction::Archive))
        .then_expect_events(vec![AgentInstanceEvent::AgentInstanceArchived {
            was_active: true,
        }]);
    let archived = vec![
        deployed(&ids),
        AgentInstanceEvent::AgentInstanceArchived { was_active: true },
    ];
    for action in [
        AgentInstanceAction::Pause,
        AgentInstanceAction::Resume,
        AgentInstanceAction::Archive,
        AgentInstanceAction::Upgrade {
            version: "1.1.0".into(),
        },
        AgentInstanceAction::ChangeConfig { config: Map::new() },
        AgentInstanceAction::IssueWidgetKey {
            key_id: WidgetKeyId::new(),
            prefix: "pk_widget_ab".into(),
            hash: "00".repeat(32),
        },
    ] {
        instance()
            .given(archived.clone())
            .when(on(Tier::Basic, true, action))
            .then_expect_error(DomainError::InstanceArchived);
    }
}

#[test]
fn widget_keys_are_issued_and_revoked_once() {
    let ids = ids();
    let key_id = WidgetKeyId::new();
    let issued = AgentInstanceEvent::WidgetKeyIssued {
        key_id,
        prefix: "pk_widget_ab".into(),
        hash: "11".repeat(32),
    };
    instance()
        .given(vec![deployed(&ids)])
        .when(on(
            Tier::Basic,
            true,
            AgentInstanceAction::IssueWidgetKey {
                key_id,
                prefix: "pk_widget_ab".into(),
                hash: "11".repeat(32),
            },
        ))
        .then_expect_events(vec![issued.clone()]);
    instance()
        .given(vec![deployed(&ids), issued.clone()])
        .when(on(
            Tier::Basic,
            true,
            AgentInstanceAction::RevokeWidgetKey { key_id },
        ))
        .then_expect_events(vec![AgentInstanceEvent::WidgetKeyRevoked { key_id }]);
    instance()
        .given(vec![
            deployed(&ids),
            issued,
            AgentInstanceEvent::WidgetKeyRevoked { key_id },
        ])
        .when(on(
            Tier::Basic,
            true,
            AgentInstanceAction::RevokeWidgetKey { key_id },
        ))
        .then_expect_error(DomainError::KeyRevoked);
}
