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

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::fixtures::*;
    use crate::organization::OrganizationStatus;
    use crate::Tier;

    fn store() -> TestFramework<Store> {
        TestFramework::<Store>::with(())
    }

    fn created(id: StoreId, org: OrganizationId) -> StoreEvent {
        StoreEvent::StoreCreated {
            store_id: id,
            organization_id: org,
            name: StoreName::parse("Main").unwrap(),
            domain: StoreDomain::parse("shop.acme.com").unwrap(),
            platform: Platform::Shopify,
        }
    }

    fn command(action: StoreAction) -> StoreCommand {
        StoreCommand {
            org: org_ctx(Tier::Basic),
            action,
        }
    }

    #[test]
    fn a_store_is_created_in_an_active_organization() {
        let (id, org) = (StoreId::new(), OrganizationId::new());
        let create = StoreAction::Create {
            id,
            organization_id: org,
            name: StoreName::parse("Main").unwrap(),
            domain: StoreDomain::parse("Shop.Acme.com").unwrap(),
            platform: Platform::Shopify,
        };
        store()
            .given_no_previous_events()
            .when(command(create.clone()))
            .then_expect_events(vec![created(id, org)]);
        for (status, error) in [
            (
                OrganizationStatus::Suspended,
                DomainError::OrganizationSuspended,
            ),
            (OrganizationStatus::Closed, DomainError::OrganizationClosed),
        ] {
            store()
                .given_no_previous_events()
                .when(StoreCommand {
                    org: OrgContext {
                        status,
                        tier: Tier::Pro,
                    },
                    action: create.clone(),
                })
                .then_expect_error(error);
        }
    }

    #[test]
    fn deactivation_and_reactivation_toggle() {
        let (id, org) = (StoreId::new(), OrganizationId::new());
        store()
            .given(vec![created(id, org)])
            .when(command(StoreAction::Deactivate))
            .then_expect_events(vec![StoreEvent::StoreDeactivated {}]);
        store()
            .given(vec![created(id, org), StoreEvent::StoreDeactivated {}])
            .when(command(StoreAction::Deactivate))
            .then_expect_error(DomainError::StoreAlready("deactivated"));
        store()
            .given(vec![created(id, org), StoreEvent::StoreDeactivated {}])
            .when(command(StoreAction::Reactivate))
            .then_expect_events(vec![StoreEvent::StoreReactivated {}]);
        store()
            .given(vec![created(id, org)])
            .when(command(StoreAction::Reactivate))
            .then_expect_error(DomainError::StoreAlready("active"));
    }

    #[test]
    fn an_update_keeps_what_is_not_given() {
        let (id, org) = (StoreId::new(), OrganizationId::new());
        store()
            .given(vec![created(id, org)])
            .when(command(StoreAction::Update {
                name: Some(StoreName::parse("Outlet").unwrap()),
                domain: None,
                platform: None,
            }))
            .then_expect_events(vec![StoreEvent::StoreUpdated {
                name: StoreName::parse("Outlet").unwrap(),
                domain: StoreDomain::parse("shop.acme.com").unwrap(),
                platform: Platform::Shopify,
            }]);
        store()
            .given_no_previous_events()
            .when(command(StoreAction::Deactivate))
            .then_expect_error(DomainError::NotFound("store"));
    }
}
