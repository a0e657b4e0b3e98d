//! The store's events: what has happened to it.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::{OrganizationId, Platform, StoreDomain, StoreId, StoreName};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum StoreEvent {
    /// Schema 2; schema 1 had `url` instead of `domain` and no `platform` (see `upcast`).
    StoreCreated {
        store_id: StoreId,
        organization_id: OrganizationId,
        name: StoreName,
        domain: StoreDomain,
        platform: Platform,
    },
    StoreUpdated {
        name: StoreName,
        domain: StoreDomain,
        platform: Platform,
    },
    StoreDeactivated {},
    StoreReactivated {},
}

impl DomainEvent for StoreEvent {
    fn event_type(&self) -> String {
        crate::event_type_of(self)
    }

    fn event_version(&self) -> String {
        match self {
            StoreEvent::StoreCreated { .. } => "2".into(),
            _ => "1".into(),
        }
    }
}
