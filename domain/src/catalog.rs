//! The agent catalog: what can be deployed. A static table; the runtime that answers
//! conversations reads the same definitions.

use serde::Serialize;

use crate::{AgentType, Tier};

/// One version of an agent definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AgentDefinition {
    pub agent_type: AgentType,
    pub version: &'static str,
    pub description: &'static str,
    pub capabilities: &'static [&'static str],
    /// The smallest tier that may deploy it.
    pub minimum_tier: Tier,
}

/// Every definition, oldest version first per type.
pub const CATALOG: &[AgentDefinition] = &[
    AgentDefinition {
        agent_type: AgentType::CustomerService,
        version: "1.0.0",
        description: "Answers order, shipping and returns questions",
        capabilities: &["order_lookup", "faq", "handoff"],
        minimum_tier: Tier::Basic,
    },
    AgentDefinition {
        agent_type: AgentType::CustomerService,
        version: "1.1.0",
        description: "Answers order, shipping and returns questions; starts returns",
        capabilities: &["order_lookup", "faq", "handoff", "returns"],
        minimum_tier: Tier::Basic,
    },
    AgentDefinition {
        agent_type: AgentType::Sales,
        version: "1.0.0",
        description: "Recommends products and recovers abandoned carts",
        capabilities: &["recommendations", "cart_recovery"],
        minimum_tier: Tier::Pro,
    },
    AgentDefinition {
        agent_type: AgentType::Marketing,
        version: "1.0.0",
        description: "Drafts campaigns and segments audiences",
        capabilities: &["campaigns", "segments"],
        minimum_tier: Tier::Pro,
    },
];

/// The definition of `agent_type` at `version`, or its latest when `version` is `None`.
pub fn find(agent_type: AgentType, version: Option<&str>) -> Option<&'static AgentDefinition> {
    let mut versions = CATALOG.iter().filter(|d| d.agent_type == agent_type);
    match version {
        Some(v) => versions.find(|d| d.version == v),
        None => versions.next_back(),
    }
}
