//! `/v1/organizations/{org}/members`: the team.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use schemars::JsonSchema;
use serde::Deserialize;
use tenantry_domain::organization::{Organization, OrganizationCommand};
use tenantry_domain::{Email, MemberId, OrganizationId, Role, TenantId};
use tenantry_projections::queries::directory::{MemberView, Members};

use crate::access::Access;
use crate::command::{Command, CommandWith};
use crate::consistency::MinPosition;
use crate::extract::Query;
use crate::openapi::{ApiRouter, Op};
use crate::paths::{MemberPath, OrgPath};
use crate::resources::{answer, read, Acknowledgement, ListParams, Page};
use crate::{ApiError, AppState};

pub fn router() -> ApiRouter {
    const T: &str = "members";
    ApiRouter::new()
        .route(
            Op::get("/v1/organizations/{org}/members", "List the team")
                .tag(T)
                .access(Access::Role(Role::Member))
                .lists::<MemberView>(),
            list,
        )
        .route(
            Op::post("/v1/organizations/{org}/members", "Invite a member")
                .tag(T)
                .access(Access::Role(Role::Admin))
                .note("owner for owner and admin roles; Pro or Enterprise")
                .body::<Invite>()
                .returns::<MemberView>(201),
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
            .body::<ChangeRole>()
            .returns::<MemberView>(200),
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

/// The answer to a member command.
fn member_view(org: &Organization, member: MemberId) -> Result<MemberView, ApiError> {
    MemberView::of(org, member).ok_or(ApiError::NotFound("member"))
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
    let page = params.page()?;
    Ok(axum::Json(
        read(&state, org, min_position, Members(org, page)).await?,
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
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
    let view = member_view(&done.aggregate, id)?;
    Ok(answer(StatusCode::CREATED, &done, view))
}

#[derive(Debug, Deserialize, JsonSchema)]
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
    let view = member_view(&done.aggregate, member)?;
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
        Acknowledgement::removed(member.as_uuid()),
    ))
}
