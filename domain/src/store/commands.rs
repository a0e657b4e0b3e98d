//! The store's commands: what may be asked of it.

use crate::context::OrgContext;
use crate::{OrganizationId, Platform, StoreDomain, StoreId, StoreName};

/// A command on a store, with what it needs to know of its organization.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreCommand {
    pub org: OrgContext,
    pub action: StoreAction,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StoreAction {
    Create {
        id: StoreId,
        organization_id: OrganizationId,
        name: StoreName,
        domain: StoreDomain,
        platform: Platform,
    },
    Update {
        name: Option<StoreName>,
        domain: Option<StoreDomain>,
        platform: Option<Platform>,
    },
    Deactivate,
    Reactivate,
}
