//! How an agent instance decides: each command is checked against the state its events left
//! and its parents' context, then refused or answered with the events that record it.

use serde_json::{Map, Value};

use crate::context::OrgContext;
use crate::{catalog, DomainError, Tier};

use super::{
    AgentInstance, AgentInstanceAction, AgentInstanceCommand, AgentInstanceEvent, InstanceStatus,
};

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
    /// The events that record `command`, or why it is refused.
    pub(super) fn decide(
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
