//! The agent instance's commands: what may be asked of it.

use serde_json::{Map, Value};

use crate::context::{OrgContext, StoreContext};
use crate::{AgentInstanceId, AgentType, OrganizationId, StoreId, WidgetKeyId};

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
