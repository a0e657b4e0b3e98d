//! The store's given/when/then tests.

use cqrs_es::test::TestFramework;

use super::*;
use crate::context::OrgContext;
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
                    id: OrganizationId::new(),
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
