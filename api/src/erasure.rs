//! Erasure over HTTP: crypto-shredding a tenant's personal data, or one end customer's.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tenantry_commands::Erase;
use tenantry_domain::organization::ErasureScope;
use tenantry_domain::{CustomerRef, Role};

use crate::access::Access;
use crate::command::{Command, CommandWith};
use crate::openapi::{ApiRouter, Op};
use crate::paths::OrgPath;
use crate::resources::answer;
use crate::{ApiError, AppState};

pub fn router() -> ApiRouter {
    const T: &str = "audit";
    ApiRouter::new()
        .route(
            Op::post(
                "/v1/organizations/{org}/erase",
                "Erase the tenant's personal data (destroys its data keys; irreversible)",
            )
            .tag(T)
            .access(Access::Role(Role::Owner))
            .returns::<Erasure>(200),
            erase_tenant,
        )
        .route(
            Op::post(
                "/v1/organizations/{org}/erase-customer",
                "Erase one end customer's personal data (destroys their data key; irreversible)",
            )
            .tag(T)
            .access(Access::Role(Role::Owner))
            .body::<EraseCustomer>()
            .returns::<Erasure>(200),
            erase_customer,
        )
}

/// What an erasure did.
#[derive(Debug, Serialize, JsonSchema)]
struct Erasure {
    organization_id: uuid::Uuid,
    scope: ErasureScope,
    keys_destroyed: u64,
}

async fn erase_tenant(
    State(state): State<AppState>,
    command: Command<OrgPath>,
) -> Result<Response, ApiError> {
    let OrgPath(org) = command.path;
    let (done, keys_destroyed) = state
        .commands
        .execute(org, Erase::Tenant, &command.request)
        .await?;
    let view = Erasure {
        organization_id: org.as_uuid(),
        scope: ErasureScope::Tenant,
        keys_destroyed,
    };
    Ok(answer(StatusCode::OK, &done, view))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EraseCustomer {
    customer_ref: CustomerRef,
}

async fn erase_customer(
    State(state): State<AppState>,
    command: CommandWith<EraseCustomer, OrgPath>,
) -> Result<Response, ApiError> {
    let OrgPath(org) = command.path;
    let (done, keys_destroyed) = state
        .commands
        .execute(
            org,
            Erase::Customer(command.body.customer_ref.clone()),
            &command.request,
        )
        .await?;
    let view = Erasure {
        organization_id: org.as_uuid(),
        scope: ErasureScope::Customer,
        keys_destroyed,
    };
    Ok(answer(StatusCode::OK, &done, view))
}
