//! The Organization aggregate: the tenant itself.
//!
//! The walking skeleton carries creation only; tier changes, members, keys and the
//! subscription lifecycle build on the same aggregate.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::{Email, OrganizationId, OrganizationName, Slug, Tier};

/// Where an organization stands in its subscription lifecycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrganizationStatus {
    Trial,
    #[default]
    Active,
    PastDue,
    Suspended,
    Closed,
}

impl OrganizationStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            OrganizationStatus::Trial => "trial",
            OrganizationStatus::Active => "active",
            OrganizationStatus::PastDue => "past_due",
            OrganizationStatus::Suspended => "suspended",
            OrganizationStatus::Closed => "closed",
        }
    }
}

/// What may be asked of an organization.
#[derive(Clone, Debug, PartialEq)]
pub enum OrganizationCommand {
    /// Open a new organization (platform admin).
    Create {
        id: OrganizationId,
        name: OrganizationName,
        slug: Slug,
        tier: Tier,
        billing_email: Email,
    },
}

/// What has happened to an organization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum OrganizationEvent {
    OrganizationCreated {
        organization_id: OrganizationId,
        name: OrganizationName,
        slug: Slug,
        tier: Tier,
        billing_email: Email,
        status: OrganizationStatus,
    },
}

impl DomainEvent for OrganizationEvent {
    fn event_type(&self) -> String {
        match self {
            OrganizationEvent::OrganizationCreated { .. } => "OrganizationCreated".into(),
        }
    }

    fn event_version(&self) -> String {
        "1".into()
    }
}

/// Why a command on an organization was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrganizationError {
    #[error("the organization already exists")]
    AlreadyExists,
}

impl crate::Rejection for OrganizationError {
    fn code(&self) -> &'static str {
        match self {
            OrganizationError::AlreadyExists => "organization-exists",
        }
    }

    fn kind(&self) -> crate::RejectionKind {
        match self {
            OrganizationError::AlreadyExists => crate::RejectionKind::Conflict,
        }
    }
}

/// The organization as its events left it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub id: Option<OrganizationId>,
    pub name: Option<OrganizationName>,
    pub slug: Option<Slug>,
    pub tier: Option<Tier>,
    pub billing_email: Option<Email>,
    pub status: OrganizationStatus,
}

impl Organization {
    /// True once `OrganizationCreated` has been applied.
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }
}

impl Aggregate for Organization {
    const TYPE: &'static str = "organization";
    type Command = OrganizationCommand;
    type Event = OrganizationEvent;
    type Error = OrganizationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            OrganizationCommand::Create {
                id,
                name,
                slug,
                tier,
                billing_email,
            } => {
                if self.exists() {
                    return Err(OrganizationError::AlreadyExists);
                }
                let event = OrganizationEvent::OrganizationCreated {
                    organization_id: id,
                    name,
                    slug,
                    tier,
                    billing_email,
                    status: OrganizationStatus::Active,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            OrganizationEvent::OrganizationCreated {
                organization_id,
                name,
                slug,
                tier,
                billing_email,
                status,
            } => {
                self.id = Some(organization_id);
                self.name = Some(name);
                self.slug = Some(slug);
                self.tier = Some(tier);
                self.billing_email = Some(billing_email);
                self.status = status;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    fn create(id: OrganizationId) -> OrganizationCommand {
        OrganizationCommand::Create {
            id,
            name: OrganizationName::parse("Acme").unwrap(),
            slug: Slug::parse("acme").unwrap(),
            tier: Tier::Pro,
            billing_email: Email::parse("billing@acme.com").unwrap(),
        }
    }

    fn created(id: OrganizationId) -> OrganizationEvent {
        OrganizationEvent::OrganizationCreated {
            organization_id: id,
            name: OrganizationName::parse("Acme").unwrap(),
            slug: Slug::parse("acme").unwrap(),
            tier: Tier::Pro,
            billing_email: Email::parse("billing@acme.com").unwrap(),
            status: OrganizationStatus::Active,
        }
    }

    #[test]
    fn creating_a_new_organization_records_it_as_active() {
        let id = OrganizationId::new();
        TestFramework::<Organization>::with(())
            .given_no_previous_events()
            .when(create(id))
            .then_expect_events(vec![created(id)]);
    }

    #[test]
    fn an_organization_cannot_be_created_twice() {
        let id = OrganizationId::new();
        TestFramework::<Organization>::with(())
            .given(vec![created(id)])
            .when(create(id))
            .then_expect_error(OrganizationError::AlreadyExists);
    }

    #[test]
    fn events_have_stable_wire_names() {
        let value = serde_json::to_value(created(OrganizationId::new())).unwrap();
        assert_eq!(value["event_type"], "OrganizationCreated");
        assert_eq!(value["payload"]["tier"], "pro");
        assert_eq!(value["payload"]["status"], "active");
    }
}
