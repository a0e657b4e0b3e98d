//! Shared pieces of the resource routes: finding which organization an id belongs to,
//! pagination, and reads in a tenant's scope.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use tenantry_commands::Executed;
use tenantry_domain::{OrganizationId, TenantId};
use uuid::Uuid;

use crate::auth::Principal;
use crate::command::etag;
use crate::consistency::position_headers;
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
    let stream_type = A::TYPE;
    let row: Option<(Uuid,)> = match principal.org() {
        Some(org) => {
            let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
            let row = sqlx::query_as(
                "SELECT tenant_id FROM streams WHERE tenant_id = $1 AND stream_type = $2 AND stream_id = $3",
            )
            .bind(org.as_uuid())
            .bind(stream_type)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            row
        }
        None => {
            let mut tx = state.store.begin_system().await?;
            let row = sqlx::query_as(
                "SELECT tenant_id FROM streams WHERE stream_type = $1 AND stream_id = $2",
            )
            .bind(stream_type)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            row
        }
    };
    row.map(|(tenant,)| OrganizationId::from_uuid(tenant))
        .ok_or(ApiError::NotFound(what))
}

/// `?limit=&cursor=` of every list: at most 100, newest first by id.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl ListParams {
    /// The page size and the id to continue after.
    ///
    /// # Errors
    /// 400 for a limit outside 1–100 or a cursor this API did not return.
    pub fn parse(&self) -> Result<(i64, Option<Uuid>), ApiError> {
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
        Ok((limit, after))
    }
}

/// A page of a list, newest first.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `?cursor=` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` rows fetched newest first.
    pub fn of(mut rows: Vec<T>, limit: i64, id_of: impl Fn(&T) -> Uuid) -> Self {
        let next_cursor = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|row| id_of(row).to_string())
        } else {
            None
        };
        Page {
            data: rows,
            next_cursor,
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
