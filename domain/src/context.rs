//! What a command on a store, an agent instance or a conversation needs to know of its
//! parents. The command layer loads the parents and passes their state in, so every rule is
//! still decided here, without IO.

use serde::{Deserialize, Serialize};

use crate::agent_instance::InstanceStatus;
use crate::organization::OrganizationStatus;
use crate::{AgentType, DomainError, OrganizationId, StoreId, Tier};

/// The owning organization as a child command sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgContext {
    pub id: OrganizationId,
    pub status: OrganizationStatus,
    pub tier: Tier,
}

impl OrgContext {
    /// Refuses every command when the organization is suspended or closed.
    ///
    /// # Errors
    /// [`DomainError::OrganizationSuspended`] or [`DomainError::OrganizationClosed`].
    pub fn ensure_accepts_commands(&self) -> Result<(), DomainError> {
        match DomainError::for_inactive(self.status) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// New conversations need an active or trial subscription.
    ///
    /// # Errors
    /// As [`OrgContext::ensure_accepts_commands`], or [`DomainError::SubscriptionInactive`].
    pub fn ensure_accepts_conversations(&self) -> Result<(), DomainError> {
        self.ensure_accepts_commands()?;
        match self.status {
            OrganizationStatus::Active | OrganizationStatus::Trial => Ok(()),
            other => Err(DomainError::SubscriptionInactive(other.as_str())),
        }
    }
}

/// The store a command's instance or conversation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreContext {
    pub active: bool,
}

/// The agent instance a conversation is held by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceContext {
    pub status: InstanceStatus,
    pub agent_type: AgentType,
    /// The store the instance was deployed in.
    pub store_id: StoreId,
}
