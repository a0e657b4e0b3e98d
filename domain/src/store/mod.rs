//! The Store aggregate: a business unit of an organization.

mod commands;
mod decide;
mod events;
#[cfg(test)]
mod tests;

use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::{DomainError, OrganizationId, Platform, StoreDomain, StoreId, StoreName};

pub use commands::{StoreAction, StoreCommand};
pub use events::StoreEvent;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Store {
    pub id: Option<StoreId>,
    pub organization_id: Option<OrganizationId>,
    pub name: Option<StoreName>,
    pub domain: Option<StoreDomain>,
    pub platform: Option<Platform>,
    pub active: bool,
}

impl Store {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }
}

impl Aggregate for Store {
    const TYPE: &'static str = "store";
    type Command = StoreCommand;
    type Event = StoreEvent;
    type Error = DomainError;
    type Services = ();

    handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        match event {
            StoreEvent::StoreCreated {
                store_id,
                organization_id,
                name,
                domain,
                platform,
            } => {
                self.id = Some(store_id);
                self.organization_id = Some(organization_id);
                self.name = Some(name);
                self.domain = Some(domain);
                self.platform = Some(platform);
                self.active = true;
            }
            StoreEvent::StoreUpdated {
                name,
                domain,
                platform,
            } => {
                self.name = Some(name);
                self.domain = Some(domain);
                self.platform = Some(platform);
            }
            StoreEvent::StoreDeactivated {} => self.active = false,
            StoreEvent::StoreReactivated {} => self.active = true,
        }
    }
}
