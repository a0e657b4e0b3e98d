//! Why the domain refuses a command: one variant per rule, each with its kind and stable
//! code (see [`crate::Rejection`]).

use crate::organization::OrganizationStatus;
use crate::{AgentType, Rejection, RejectionKind, Tier, ValidationError};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the {0} does not exist")]
    NotFound(&'static str),
    #[error("the {0} already exists")]
    AlreadyExists(&'static str),
    #[error("the organization is suspended; only a platform admin can reactivate it")]
    OrganizationSuspended,
    #[error("the organization is closed")]
    OrganizationClosed,
    #[error("the organization is {0}, not suspended")]
    NotSuspended(&'static str),
    #[error("the organization's subscription is {0}; new conversations need an active or trial subscription")]
    SubscriptionInactive(&'static str),
    #[error("the store is deactivated")]
    StoreInactive,
    #[error("the store is already {0}")]
    StoreAlready(&'static str),
    #[error("the agent instance is archived and accepts nothing")]
    InstanceArchived,
    #[error("the agent instance is {0}, not active")]
    InstanceNotActive(&'static str),
    #[error("the agent instance is already {0}")]
    InstanceAlready(&'static str),
    #[error("the conversation has ended")]
    ConversationEnded,
    #[error("the {tier} tier allows {limit} {resource}; the {required} tier allows more")]
    TierLimitReached {
        resource: &'static str,
        limit: u32,
        tier: Tier,
        required: Tier,
    },
    #[error("{agent_type} agents need the {required} tier")]
    AgentTypeNotInTier {
        agent_type: AgentType,
        required: Tier,
    },
    #[error("team members beyond the owner need the {required} tier")]
    MembersNotInTier { required: Tier },
    #[error("prompt overrides need the {required} tier")]
    PromptOverridesNotInTier { required: Tier },
    #[error("cannot move to the {tier} tier: {reasons}")]
    DowngradeBlocked { tier: Tier, reasons: String },
    #[error("the organization is already on these terms of the {0} tier")]
    SameTier(Tier),
    #[error("{0}")]
    Invalid(ValidationError),
    #[error("an organization must keep at least one owner")]
    LastOwner,
    /// Carries no address: refusals are logged, and logs carry no personal data.
    #[error("a member with this email address exists already")]
    MemberExists,
    #[error("the key is already revoked")]
    KeyRevoked,
    #[error("an organization must keep at least one owner key")]
    LastOwnerKey,
    #[error("{agent_type} has no version {version} in the catalog")]
    UnknownAgentVersion {
        agent_type: AgentType,
        version: String,
    },
    #[error("the agent instance already runs version {0}")]
    SameVersion(String),
    #[error("only the platform admin may do this")]
    PlatformAdminOnly,
    #[error("the platform sets Enterprise prices: ask the platform to move this organization to Enterprise on the terms it agrees")]
    EnterpriseTermsByPlatform,
    #[error("the invoice for {0} is already finalized")]
    InvoiceFinalized(String),
}

impl From<ValidationError> for DomainError {
    fn from(err: ValidationError) -> Self {
        DomainError::Invalid(err)
    }
}

impl DomainError {
    /// The refusal for any command on an organization in `status`, when it accepts none.
    pub fn for_inactive(status: OrganizationStatus) -> Option<Self> {
        match status {
            OrganizationStatus::Suspended => Some(DomainError::OrganizationSuspended),
            OrganizationStatus::Closed => Some(DomainError::OrganizationClosed),
            _ => None,
        }
    }
}

impl Rejection for DomainError {
    fn code(&self) -> &'static str {
        use DomainError::*;
        match self {
            NotFound(_) => "not-found",
            AlreadyExists(_) => "already-exists",
            OrganizationSuspended => "organization-suspended",
            OrganizationClosed => "organization-closed",
            NotSuspended(_) => "not-suspended",
            SubscriptionInactive(_) => "subscription-inactive",
            StoreInactive => "store-inactive",
            StoreAlready(_) => "store-unchanged",
            InstanceArchived => "agent-instance-archived",
            InstanceNotActive(_) => "agent-instance-not-active",
            InstanceAlready(_) => "agent-instance-unchanged",
            ConversationEnded => "conversation-ended",
            TierLimitReached { .. }
            | AgentTypeNotInTier { .. }
            | MembersNotInTier { .. }
            | PromptOverridesNotInTier { .. } => "tier-required",
            DowngradeBlocked { .. } => "downgrade-blocked",
            SameTier(_) => "same-tier",
            Invalid(_) => "validation",
            LastOwner => "last-owner",
            MemberExists => "member-exists",
            KeyRevoked => "key-revoked",
            LastOwnerKey => "last-owner-key",
            UnknownAgentVersion { .. } => "unknown-agent-version",
            SameVersion(_) => "same-version",
            PlatformAdminOnly | EnterpriseTermsByPlatform => "platform-admin-only",
            InvoiceFinalized(_) => "invoice-finalized",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            DomainError::Invalid(v) => Some(v.field),
            _ => None,
        }
    }

    fn kind(&self) -> RejectionKind {
        use DomainError::*;
        match self {
            NotFound(_) => RejectionKind::NotFound,
            TierLimitReached { required, .. }
            | AgentTypeNotInTier { required, .. }
            | MembersNotInTier { required }
            | PromptOverridesNotInTier { required } => RejectionKind::TierRequired(*required),
            Invalid(_) | UnknownAgentVersion { .. } => RejectionKind::Unprocessable,
            PlatformAdminOnly | EnterpriseTermsByPlatform => RejectionKind::Forbidden,
            _ => RejectionKind::Conflict,
        }
    }
}
