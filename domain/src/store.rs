//! The Store aggregate: a business unit of an organization.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::context::OrgContext;
use crate::{DomainError, OrganizationId, Platform, StoreDomain, StoreId, StoreName};

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

    fn decide(&self, command: StoreCommand) -> Result<Vec<StoreEvent>, DomainError> {
        command.org.ensure_accepts_commands()?;
        if let StoreAction::Create {
            id,
            organization_id,
            name,
            domain,
            platform,
        } = command.action
        {
            if self.exists() {
                return Err(DomainError::AlreadyExists("store"));
            }
            return Ok(vec![StoreEvent::StoreCreated {
                store_id: id,
                organization_id,
                name,
                domain,
                platform,
            }]);
        }
        if !self.exists() {
            return Err(DomainError::NotFound("store"));
        }
        Ok(match command.action {
            StoreAction::Create { .. } => unreachable!("handled above"),
            StoreAction::Update {
                name,
                domain,
                platform,
            } => {
                let missing = || DomainError::NotFound("store");
                vec![StoreEvent::StoreUpdated {
                    name: name.or_else(|| self.name.clone()).ok_or_else(missing)?,
                    domain: domain.or_else(|| self.domain.clone()).ok_or_else(missing)?,
                    platform: platform.or(self.platform).ok_or_else(missing)?,
                }]
            }
            StoreAction::Deactivate if !self.active => {
                return Err(DomainError::StoreAlready("deactivated"))
            }
            StoreAction::Deactivate => vec![StoreEvent::StoreDeactivated {}],
            StoreAction::Reactivate if self.active => {
                return Err(DomainError::StoreAlready("active"))
            }
            StoreAction::Reactivate => vec![StoreEvent::StoreReactivated {}],
        })
    }
}

impl Aggregate for Store {
    const TYPE: &'static str = "store";
    type Command = StoreCommand;
    type Event = StoreEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

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
