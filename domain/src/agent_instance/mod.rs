//! The AgentInstance aggregate: an agent from the catalog deployed into a store.

mod commands;
mod decide;
mod events;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{AgentInstanceId, AgentType, DomainError, OrganizationId, StoreId, WidgetKeyId};

pub use commands::{AgentInstanceAction, AgentInstanceCommand};
pub use decide::overrides_prompt;
pub use events::AgentInstanceEvent;

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

impl AgentInstance {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }
}

impl Aggregate for AgentInstance {
    const TYPE: &'static str = "agent_instance";
    type Command = AgentInstanceCommand;
    type Event = AgentInstanceEvent;
    type Error = DomainError;
    type Services = ();

    handle_by_deciding!();

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
