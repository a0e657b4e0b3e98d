//! Shared pieces of the resource routes: finding which organization an id belongs to,
//! pagination, and reads in a tenant's scope.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tenantry_commands::Executed;
use tenantry_domain::{OrganizationId, TenantId};
pub use tenantry_projections::queries::Page;
use tenantry_projections::queries::{Consistency, PageRequest, Query, ReadError, Scope};
use uuid::Uuid;

use crate::auth::Principal;
use crate::command::etag;
use crate::consistency::{position_headers, MinPosition};
use crate::{ApiError, AppState};

/// The organization that owns aggregate `A` with id `id`, as the caller may see it: a key
/// sees only its own organization's resources; anything else is 404.
///
/// # Errors
/// 404 when there is no such resource for this caller.
pub async fn owner_of<A: Aggregate>(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    what: &'static str,
) -> Result<OrganizationId, ApiError> {
    let within = principal.org().map(TenantId::from);
    let owner = state.store.owner_of(within, A::TYPE, id).await?;
    owner
        .map(|tenant| OrganizationId::from_uuid(tenant.as_uuid()))
        .ok_or(ApiError::NotFound(what))
}

/// `?limit=&cursor=` of every list: at most 100, newest first by id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// How many (default 20).
    #[schemars(range(min = 1, max = 100), extend("default" = 20))]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    /// The page size and the id to continue after.
    ///
    /// # Errors
    /// 400 for a limit outside 1–100 or a cursor this API did not return.
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::BadRequest {
                code: "invalid-query",
                detail: "limit must be between 1 and 100".into(),
            });
        }
        let after = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(Uuid::parse_str(raw).map_err(|_| ApiError::BadRequest {
                code: "invalid-query",
                detail: "cursor is not one this API returned".into(),
            })?),
        };
        Ok(PageRequest { limit, after })
    }
}

/// Asks the read models `query` in `scope` (an organization's, or the platform's), once the
/// projections it reads have passed the caller's consistency token: see
/// [`tenantry_projections::queries::read`].
///
/// # Errors
/// 503 when the projections do not catch up in time; otherwise as the query.
pub async fn read<Q: Query>(
    state: &AppState,
    scope: impl Into<Scope>,
    min_position: MinPosition,
    query: Q,
) -> Result<Q::Output, ApiError> {
    let consistency = Consistency {
        after: min_position.0,
        timeout: state.consistency_timeout,
    };
    tenantry_projections::queries::read(&state.store, scope.into(), consistency, query)
        .await
        .map_err(|err| match err {
            ReadError::Behind => ApiError::NotYetConsistent,
            ReadError::Failed(err) => err.into(),
        })
}

/// The answer to a command that leaves nothing to show: what it was done to, and what was done.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Acknowledgement {
    pub id: Uuid,
    /// A key revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "bool")]
    pub revoked: Option<bool>,
    /// A member removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "bool")]
    pub removed: Option<bool>,
}

impl Acknowledgement {
    /// `{ "id": …, "revoked": true }`.
    pub fn revoked(id: Uuid) -> Self {
        Self {
            id,
            revoked: Some(true),
            removed: None,
        }
    }

    /// `{ "id": …, "removed": true }`.
    pub fn removed(id: Uuid) -> Self {
        Self {
            id,
            revoked: None,
            removed: Some(true),
        }
    }
}

/// The answer to a command: 201 for a creation (200 when replayed by an idempotency key is
/// still 201: the same response), 200 otherwise; the consistency token and the ETag.
pub fn answer<A, V: Serialize>(status: StatusCode, done: &Executed<A>, view: V) -> Response {
    (
        status,
        position_headers(done.position()),
        etag(done.version),
        axum::Json(view),
    )
        .into_response()
}
