//! The AgentInstance aggregate: an agent from the catalog deployed into a store.

use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::context::{OrgContext, StoreContext};
use crate::{
    catalog, AgentInstanceId, AgentType, DomainError, OrganizationId, StoreId, Tier, WidgetKeyId,
};

/// Where an instance stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    #[default]
    Active,
    Paused,
    Archived,
}

impl InstanceStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Active => "active",
            InstanceStatus::Paused => "paused",
            InstanceStatus::Archived => "archived",
        }
    }
}

/// A command on an agent instance, with what it needs to know of its parents.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentInstanceCommand {
    pub org: OrgContext,
    pub store: StoreContext,
    pub action: AgentInstanceAction,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AgentInstanceAction {
    /// Deploy from the catalog; `version: None` takes the latest.
    Deploy {
        id: AgentInstanceId,
        store_id: StoreId,
        organization_id: OrganizationId,
        agent_type: AgentType,
        version: Option<String>,
        config: Map<String, Value>,
    },
    ChangeConfig {
        config: Map<String, Value>,
    },
    Pause,
    Resume,
    Upgrade {
        version: String,
    },
    Archive,
    IssueWidgetKey {
        key_id: WidgetKeyId,
        prefix: String,
        /// Hex SHA-256 of the secret; the secret is never recorded.
        hash: String,
    },
    RevokeWidgetKey {
        key_id: WidgetKeyId,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum AgentInstanceEvent {
    AgentInstanceDeployed {
        instance_id: AgentInstanceId,
        store_id: StoreId,
        organization_id: OrganizationId,
        agent_type: AgentType,
        version: String,
        config: Map<String, Value>,
    },
    AgentConfigChanged {
        config: Map<String, Value>,
    },
    AgentInstancePaused {},
    AgentInstanceResumed {},
    AgentInstanceUpgraded {
        from: String,
        to: String,
    },
    AgentInstanceArchived {
        /// Whether it held an active slot until now.
        was_active: bool,
    },
    WidgetKeyIssued {
        key_id: WidgetKeyId,
        prefix: String,
        hash: String,
    },
    WidgetKeyRevoked {
        key_id: WidgetKeyId,
    },
}

impl DomainEvent for AgentInstanceEvent {
    fn event_type(&self) -> String {
        crate::event_type_of(self)
    }

    fn event_version(&self) -> String {
        "1".into()
    }
}

/// A widget key as the instance records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WidgetKey {
    pub prefix: String,
    pub hash: String,
    pub revoked: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentInstance {
    pub id: Option<AgentInstanceId>,
    pub store_id: Option<StoreId>,
    pub organization_id: Option<OrganizationId>,
    pub agent_type: Option<AgentType>,
    pub version: Option<String>,
    pub config: Map<String, Value>,
    pub status: InstanceStatus,
    pub widget_keys: BTreeMap<WidgetKeyId, WidgetKey>,
}

/// Whether a config overrides the agent's prompt (an Enterprise feature): any top-level key
/// naming a prompt (`prompt`, `system_prompt`, `prompt_suffix`…).
pub fn overrides_prompt(config: &Map<String, Value>) -> bool {
    config
        .keys()
        .any(|k| k.to_ascii_lowercase().contains("prompt"))
}

fn check_config(org: &OrgContext, config: &Map<String, Value>) -> Result<(), DomainError> {
    crate::values::validate_json_object("config", config)?;
    if overrides_prompt(config) && !org.tier.limits().prompt_overrides {
        return Err(DomainError::PromptOverridesNotInTier {
            required: Tier::smallest_where(|l| l.prompt_overrides),
        });
    }
    Ok(())
}

impl AgentInstance {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    fn decide(
        &self,
        command: AgentInstanceCommand,
    ) -> Result<Vec<AgentInstanceEvent>, DomainError> {
        use AgentInstanceAction as A;
        use AgentInstanceEvent as E;
        let AgentInstanceCommand { org, store, action } = command;
        org.ensure_accepts_commands()?;
        if let A::Deploy {
            id,
            store_id,
            organization_id,
            agent_type,
            version,
            config,
        } = action
        {
            if self.exists() {
                return Err(DomainError::AlreadyExists("agent instance"));
            }
            if !store.active {
                return Err(DomainError::StoreInactive);
            }
            let definition = catalog::find(agent_type, version.as_deref()).ok_or_else(|| {
                DomainError::UnknownAgentVersion {
                    agent_type,
                    version: version.clone().unwrap_or_default(),
                }
            })?;
            if definition.minimum_tier > org.tier
                || !org.tier.limits().agent_types.contains(&agent_type)
            {
                return Err(DomainError::AgentTypeNotInTier {
                    agent_type,
                    required: definition.minimum_tier.max(Tier::smallest_where(|l| {
                        l.agent_types.contains(&agent_type)
                    })),
                });
            }
            check_config(&org, &config)?;
            return Ok(vec![E::AgentInstanceDeployed {
                instance_id: id,
                store_id,
                organization_id,
                agent_type,
                version: definition.version.to_owned(),
                config,
            }]);
        }
        if !self.exists() {
            return Err(DomainError::NotFound("agent instance"));
        }
        if self.status == InstanceStatus::Archived {
            return Err(DomainError::InstanceArchived);
        }
        Ok(match action {
            A::Deploy { .. } => unreachable!("handled above"),
            A::ChangeConfig { config } => {
                check_config(&org, &config)?;
                vec![E::AgentConfigChanged { config }]
            }
            A::Pause => match self.status {
                InstanceStatus::Active => vec![E::AgentInstancePaused {}],
                other => return Err(DomainError::InstanceAlready(other.as_str())),
            },
            A::Resume => {
                if self.status == InstanceStatus::Active {
                    return Err(DomainError::InstanceAlready("active"));
                }
                if !store.active {
                    return Err(DomainError::StoreInactive);
                }
                vec![E::AgentInstanceResumed {}]
            }
            A::Upgrade { version } => {
                let agent_type = self
                    .agent_type
                    .ok_or(DomainError::NotFound("agent instance"))?;
                let definition = catalog::find(agent_type, Some(&version)).ok_or(
                    DomainError::UnknownAgentVersion {
                        agent_type,
                        version: version.clone(),
                    },
                )?;
                let from = self.version.clone().unwrap_or_default();
                if from == definition.version {
                    return Err(DomainError::SameVersion(from));
                }
                vec![E::AgentInstanceUpgraded {
                    from,
                    to: definition.version.to_owned(),
                }]
            }
            A::Archive => vec![E::AgentInstanceArchived {
                was_active: self.status == InstanceStatus::Active,
            }],
            A::IssueWidgetKey {
                key_id,
                prefix,
                hash,
            } => {
                if self.widget_keys.contains_key(&key_id) {
                    return Err(DomainError::AlreadyExists("widget key"));
                }
                vec![E::WidgetKeyIssued {
                    key_id,
                    prefix,
                    hash,
                }]
            }
            A::RevokeWidgetKey { key_id } => {
                let key = self
                    .widget_keys
                    .get(&key_id)
                    .ok_or(DomainError::NotFound("widget key"))?;
                if key.revoked {
                    return Err(DomainError::KeyRevoked);
                }
                vec![E::WidgetKeyRevoked { key_id }]
            }
        })
    }
}

impl Aggregate for AgentInstance {
    const TYPE: &'static str = "agent_instance";
    type Command = AgentInstanceCommand;
    type Event = AgentInstanceEvent;
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
        use AgentInstanceEvent as E;
        match event {
            E::AgentInstanceDeployed {
                instance_id,
                store_id,
                organization_id,
                agent_type,
                version,
                config,
            } => {
                self.id = Some(instance_id);
                self.store_id = Some(store_id);
                self.organization_id = Some(organization_id);
                self.agent_type = Some(agent_type);
                self.version = Some(version);
                self.config = config;
                self.status = InstanceStatus::Active;
            }
            E::AgentConfigChanged { config } => self.config = config,
            E::AgentInstancePaused {} => self.status = InstanceStatus::Paused,
            E::AgentInstanceResumed {} => self.status = InstanceStatus::Active,
            E::AgentInstanceUpgraded { to, .. } => self.version = Some(to),
            E::AgentInstanceArchived { .. } => self.status = InstanceStatus::Archived,
            E::WidgetKeyIssued {
                key_id,
                prefix,
                hash,
            } => {
                self.widget_keys.insert(
                    key_id,
                    WidgetKey {
                        prefix,
                        hash,
                        revoked: false,
                    },
                );
            }
            E::WidgetKeyRevoked { key_id } => {
                if let Some(key) = self.widget_keys.get_mut(&key_id) {
                    key.revoked = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    use super::*;
    use crate::fixtures::*;
    use crate::organization::OrganizationStatus;

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
}
