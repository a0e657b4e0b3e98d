//! `/v1/organizations/{org}/members`: the team.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenantry_domain::organization::{Organization, OrganizationCommand};
use tenantry_domain::personal::PersonalKind;
use tenantry_domain::{Email, MemberId, OrganizationId, Role, TenantId};
use tenantry_projections::directory::NAME as DIRECTORY;
use uuid::Uuid;

use crate::access::Access;
use crate::command::{Command, CommandWith};
use crate::consistency::MinPosition;
use crate::extract::Query;
use crate::openapi::{ApiRouter, Op};
use crate::paths::{MemberPath, OrgPath};
use crate::resources::{answer, ListParams, Page};
use crate::{ApiError, AppState};

pub fn router() -> ApiRouter {
    const T: &str = "members";
    ApiRouter::new()
        .route(
            Op::get("/v1/organizations/{org}/members", "List the team")
                .tag(T)
                .access(Access::Role(Role::Member))
                .lists("Member"),
            list,
        )
        .route(
            Op::post("/v1/organizations/{org}/members", "Invite a member")
                .tag(T)
                .access(Access::Role(Role::Admin))
                .note("owner for owner and admin roles; Pro or Enterprise")
                .body("Invite")
                .returns(201, "Member"),
            invite,
        )
        .route(
            Op::patch(
                "/v1/organizations/{org}/members/{member}",
                "Change a member's role",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .note("owner for owner and admin roles")
            .body("ChangeRole")
            .returns(200, "Member"),
            change_role,
        )
        .route(
            Op::delete(
                "/v1/organizations/{org}/members/{member}",
                "Remove a member",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .note("owner for owner and admin roles"),
            remove,
        )
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct MemberView {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

impl MemberView {
    fn of(org: &Organization, id: MemberId) -> Result<Self, ApiError> {
        let member = org.members.get(&id).ok_or(ApiError::NotFound("member"))?;
        Ok(Self {
            id: id.as_uuid(),
            email: member.email.to_string(),
            role: member.role.to_string(),
            created_at: None,
        })
    }
}

/// Managing owners and admins takes an owner; other roles an admin.
fn role_needed_to_manage(role: Role) -> Role {
    if role.includes(Role::Admin) {
        Role::Owner
    } else {
        Role::Admin
    }
}

async fn list(
    State(state): State<AppState>,
    min_position: MinPosition,
    Query(params): Query<ListParams>,
    OrgPath(org): OrgPath,
) -> Result<axum::Json<Page<MemberView>>, ApiError> {
    let (limit, after) = params.parse()?;
    min_position.wait(&state, &[DIRECTORY]).await?;
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let mut rows: Vec<MemberView> = sqlx::query_as(
        "SELECT member_id AS id, email, role, created_at FROM members \
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR member_id < $2) ORDER BY member_id DESC LIMIT $3",
    )
    .bind(org.as_uuid())
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await?;
    let emails = rows.iter_mut().map(|m| (&mut m.email, PersonalKind::Email));
    state
        .store
        .vault()
        .open(&mut tx, Some(TenantId::from(org)), emails.collect())
        .await?;
    tx.commit().await?;
    Ok(axum::Json(Page::of(rows, limit, |m| m.id)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Invite {
    email: Email,
    role: Role,
}

async fn invite(
    State(state): State<AppState>,
    command: CommandWith<Invite, OrgPath>,
) -> Result<Response, ApiError> {
    let OrgPath(org) = command.path;
    // The route's rule took an admin; owners and admins are invited by an owner.
    command
        .principal
        .require(org, role_needed_to_manage(command.body.role))?;
    let member_id = MemberId::new();
    let what = OrganizationCommand::InviteMember {
        member_id,
        email: command.body.email,
        role: command.body.role,
    };
    let done = state.commands.execute(org, what, &command.request).await?;
    // A replay answers with the member the first request invited.
    let id = if done.replayed {
        *done
            .aggregate
            .members
            .keys()
            .next_back()
            .ok_or(ApiError::NotFound("member"))?
    } else {
        member_id
    };
    let view = MemberView::of(&done.aggregate, id)?;
    Ok(answer(StatusCode::CREATED, &done, view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRole {
    role: Role,
}

/// The member's current role, on the write side (404 when there is no such member).
async fn current_role(
    state: &AppState,
    org: OrganizationId,
    member: MemberId,
) -> Result<Role, ApiError> {
    let (organization, _) = state
        .commands
        .load::<Organization>(TenantId::from(org), org.as_uuid())
        .await?;
    organization
        .members
        .get(&member)
        .map(|m| m.role)
        .ok_or(ApiError::NotFound("member"))
}

async fn change_role(
    State(state): State<AppState>,
    command: CommandWith<ChangeRole, MemberPath>,
) -> Result<Response, ApiError> {
    let MemberPath { org, member } = command.path;
    let current = current_role(&state, org, member).await?;
    let needed = role_needed_to_manage(current).min(role_needed_to_manage(command.body.role));
    command.principal.require(org, needed)?;
    let what = OrganizationCommand::ChangeMemberRole {
        member_id: member,
        role: command.body.role,
    };
    let done = state.commands.execute(org, what, &command.request).await?;
    let view = MemberView::of(&done.aggregate, member)?;
    Ok(answer(StatusCode::OK, &done, view))
}

async fn remove(
    State(state): State<AppState>,
    command: Command<MemberPath>,
) -> Result<Response, ApiError> {
    let MemberPath { org, member } = command.path;
    let current = current_role(&state, org, member).await?;
    command
        .principal
        .require(org, role_needed_to_manage(current))?;
    let what = OrganizationCommand::RemoveMember { member_id: member };
    let done = state.commands.execute(org, what, &command.request).await?;
    Ok(answer(
        StatusCode::OK,
        &done,
        serde_json::json!({ "id": member.as_uuid(), "removed": true }),
    ))
}
