//! The agent instance's events: what has happened to it.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{AgentInstanceId, AgentType, OrganizationId, StoreId, WidgetKeyId};

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
