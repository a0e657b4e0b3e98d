//! Typed path extractors: each parses the ids its route's path names (anything but a UUID is
//! 400 `invalid-id`: it cannot name any resource), finds the organization they belong to, and
//! checks the route's [`Access`] against the caller, once, here. A handler that takes one is
//! authorized by its route's declared rule.
//!
//! Each keeps the order the API has always answered in: a malformed id before any lookup, a
//! resource of another organization (404) before a role that may not (403).

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use tenantry_domain::agent_instance::AgentInstance;
use tenantry_domain::conversation::Conversation;
use tenantry_domain::store::Store;
use tenantry_domain::{
    AgentInstanceId, ApiKeyId, ConversationId, MemberId, OrganizationId, StoreId, TenantId,
    WidgetKeyId,
};
use uuid::Uuid;

use crate::access::{Access, Target};
use crate::auth::Principal;
use crate::extract::parse_id;
use crate::resources::owner_of;
use crate::{ApiError, AppState};

/// A path's parameters by name. A segment that is not UTF-8 (`%ff%fe`) is 400 `invalid-path`,
/// a problem like every other error.
pub struct Params(Vec<(String, String)>);

impl Params {
    /// # Errors
    /// Axum's path rejection.
    pub async fn of(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::BadRequest {
                    code: "invalid-path",
                    detail: rejection.body_text(),
                }
                .into_response()
            })?;
        Ok(Params(params))
    }

    /// Parameter `name` as it was sent.
    ///
    /// # Errors
    /// 500 when the route has no such parameter (an extractor on the wrong route).
    pub fn raw(&self, name: &str) -> Result<&str, ApiError> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .ok_or_else(|| {
                ApiError::internal(std::io::Error::other(format!(
                    "the route has no {{{name}}} parameter"
                )))
            })
    }

    /// The id in parameter `name`.
    ///
    /// # Errors
    /// 400 `invalid-id` naming `what` when it is not a UUID.
    pub fn id(&self, name: &str, what: &'static str) -> Result<Uuid, ApiError> {
        parse_id(self.raw(name)?, what)
    }
}

/// The caller and the rule of the route it called.
async fn caller(parts: &mut Parts, state: &AppState) -> Result<(Principal, Access), ApiError> {
    let principal = Principal::from_request_parts(parts, state).await?;
    let access = Access::from_request_parts(parts, state).await?;
    Ok((principal, access))
}

/// Finds the organization of aggregate `A` with `id` as the caller may see it (404
/// otherwise) and checks the route's rule on it.
async fn owned<A: Aggregate>(
    parts: &mut Parts,
    state: &AppState,
    id: Uuid,
    what: &'static str,
) -> Result<OrganizationId, ApiError> {
    let (principal, access) = caller(parts, state).await?;
    let org = owner_of::<A>(state, &principal, id, what).await?;
    access.check(&principal, Target::Org(org))?;
    Ok(org)
}

/// `{org}`: an organization.
#[derive(Clone, Copy, Debug)]
pub struct OrgPath(pub OrganizationId);

impl FromRequestParts<AppState> for OrgPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let params = Params::of(parts, state).await?;
        Ok(OrgPath(org_in(&params, parts, state).await?))
    }
}

/// The organization of `{org}`, checked.
async fn org_in(
    params: &Params,
    parts: &mut Parts,
    state: &AppState,
) -> Result<OrganizationId, ApiError> {
    let org = OrganizationId::from_uuid(params.id("org", "organization")?);
    let (principal, access) = caller(parts, state).await?;
    access.check(&principal, Target::Org(org))?;
    Ok(org)
}

/// `{org}/members/{member}`: a member of an organization.
#[derive(Clone, Copy, Debug)]
pub struct MemberPath {
    pub org: OrganizationId,
    pub member: MemberId,
}

impl FromRequestParts<AppState> for MemberPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let params = Params::of(parts, state).await?;
        let org = OrganizationId::from_uuid(params.id("org", "organization")?);
        let member = MemberId::from_uuid(params.id("member", "member")?);
        let (principal, access) = caller(parts, state).await?;
        access.check(&principal, Target::Org(org))?;
        Ok(MemberPath { org, member })
    }
}

/// `{org}/api-keys/{key}`: an API key of an organization.
#[derive(Clone, Copy, Debug)]
pub struct ApiKeyPath {
    pub org: OrganizationId,
    pub key: ApiKeyId,
}

impl FromRequestParts<AppState> for ApiKeyPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let params = Params::of(parts, state).await?;
        let org = OrganizationId::from_uuid(params.id("org", "organization")?);
        let key = ApiKeyId::from_uuid(params.id("key", "api key")?);
        let (principal, access) = caller(parts, state).await?;
        access.check(&principal, Target::Org(org))?;
        Ok(ApiKeyPath { org, key })
    }
}

/// `{store}`: a store, and its organization.
#[derive(Clone, Copy, Debug)]
pub struct StorePath {
    pub org: OrganizationId,
    pub store: StoreId,
}

impl FromRequestParts<AppState> for StorePath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let params = Params::of(parts, state).await?;
        let id = params.id("store", "store")?;
        let org = owned::<Store>(parts, state, id, "store").await?;
        Ok(StorePath {
            org,
            store: StoreId::from_uuid(id),
        })
    }
}

/// `/v1/agent-instances/{id}`: an agent instance, and its organization.
#[derive(Clone, Copy, Debug)]
pub struct InstancePath {
    pub org: OrganizationId,
    pub instance: AgentInstanceId,
}

impl FromRequestParts<AppState> for InstancePath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let params = Params::of(parts, state).await?;
        Ok(instance_in(&params, parts, state).await?)
    }
}

/// The agent instance of `{id}`, checked.
async fn instance_in(
    params: &Params,
    parts: &mut Parts,
    state: &AppState,
) -> Result<InstancePath, ApiError> {
    let id = params.id("id", "agent instance")?;
    let org = owned::<AgentInstance>(parts, state, id, "agent instance").await?;
    Ok(InstancePath {
        org,
        instance: AgentInstanceId::from_uuid(id),
    })
}

/// `/v1/agent-instances/{id}/widget-keys/{key}`: a widget key of an agent instance (the key's
/// id is read once the instance is found and the caller allowed).
#[derive(Clone, Copy, Debug)]
pub struct WidgetKeyPath {
    pub org: OrganizationId,
    pub instance: AgentInstanceId,
    pub key: WidgetKeyId,
}

impl FromRequestParts<AppState> for WidgetKeyPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let params = Params::of(parts, state).await?;
        let InstancePath { org, instance } = instance_in(&params, parts, state).await?;
        let key = WidgetKeyId::from_uuid(params.id("key", "widget key")?);
        Ok(WidgetKeyPath { org, instance, key })
    }
}

/// `/v1/conversations/{id}`: a conversation, and its organization, always looked up (a
/// query reads it from the read model of that organization).
#[derive(Clone, Copy, Debug)]
pub struct ConversationPath {
    pub org: OrganizationId,
    pub id: ConversationId,
}

impl FromRequestParts<AppState> for ConversationPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let params = Params::of(parts, state).await?;
        let id = params.id("id", "conversation")?;
        let (principal, access) = caller(parts, state).await?;
        Ok(conversation_of(state, principal, access, id).await?)
    }
}

/// Where conversation `id` is, as `principal` may see it, checked against `access`: a rule
/// that admits a widget key of the instance reads which instance holds the conversation.
async fn conversation_of(
    state: &AppState,
    principal: Principal,
    access: Access,
    id: Uuid,
) -> Result<ConversationPath, ApiError> {
    let org = owner_of::<Conversation>(state, &principal, id, "conversation").await?;
    let target = match access {
        Access::RoleOrWidget(_) => {
            let (current, _) = state
                .commands
                .load::<Conversation>(TenantId::from(org), id)
                .await?;
            let instance = current
                .agent_instance_id
                .ok_or(ApiError::NotFound("conversation"))?;
            Target::Instance(org, instance)
        }
        _ => Target::Org(org),
    };
    access.check(&principal, target)?;
    Ok(ConversationPath {
        org,
        id: ConversationId::from_uuid(id),
    })
}

/// `/v1/conversations/{id}` as the target of a command. A key whose role alone the route's
/// rule admits sends it in its own organization, where the command finds the conversation or
/// answers 404: no lookup first, on the busiest routes. Other callers (the platform admin,
/// widget keys, lower roles) are looked up as for [`ConversationPath`], so that another
/// organization's conversation is 404 before any 403.
#[derive(Clone, Copy, Debug)]
pub struct ConversationTarget {
    pub org: OrganizationId,
    pub id: ConversationId,
}

impl FromRequestParts<AppState> for ConversationTarget {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let params = Params::of(parts, state).await?;
        let id = params.id("id", "conversation")?;
        let (principal, access) = caller(parts, state).await?;
        let ConversationPath { org, id } = match access.admits_by_role(&principal) {
            Some(org) => ConversationPath {
                org,
                id: ConversationId::from_uuid(id),
            },
            None => conversation_of(state, principal, access, id).await?,
        };
        Ok(ConversationTarget { org, id })
    }
}
