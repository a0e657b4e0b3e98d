//! Who may call a route, declared once with the route as an [`Access`] value
//! ([`crate::openapi::Op::access`]): the OpenAPI document describes it, and the extractors
//! check it ([`crate::paths`] for the resource a path names, [`Authorized`] for a route that
//! names none). A rule with a part that depends on the body (a role to grant, a tier) keeps
//! that part in its handler or the domain; the route only notes it.
//!
//! Authorization answers 404, never 403, for anything in another tenant, and 403 for a role or
//! key kind that may not.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tenantry_domain::{AgentInstanceId, OrganizationId, Role};

use crate::auth::{bearer, Principal};
use crate::{ApiError, AppState};

/// A route's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a key (health, readiness, metrics).
    Public,
    /// Any valid key, of any kind.
    AnyKey,
    /// The platform admin key only. On a route of an organization, another organization's
    /// keys find nothing there (404) and its own keys are refused (403).
    PlatformAdmin,
    /// A key of the organization with at least this role; the platform admin always passes.
    Role(Role),
    /// As [`Access::Role`], or a widget key of the agent instance the request names.
    RoleOrWidget(Role),
}

/// What a request names, for its route's rule to be checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// No resource: a route of the platform (the organization list, the catalog, the jobs).
    Platform,
    /// An organization, or something in it.
    Org(OrganizationId),
    /// An agent instance of an organization, or a conversation it holds.
    Instance(OrganizationId, AgentInstanceId),
}

impl Access {
    /// Who may call, in the words of the OpenAPI document.
    pub fn describe(&self) -> String {
        match self {
            Access::Public => "anyone, no key".into(),
            Access::AnyKey => "any key".into(),
            Access::PlatformAdmin => "platform admin".into(),
            Access::Role(role) => roles_from(*role).into(),
            Access::RoleOrWidget(role) => {
                format!("{}, or a widget key of the instance", roles_from(*role))
            }
        }
    }

    /// Checks `principal` against the rule for what the request names.
    ///
    /// # Errors
    /// 404 when the target belongs to another organization than the key's, 403 when the
    /// key's role or kind may not; 500 for a rule that cannot apply to the target (a route
    /// declared wrong).
    pub fn check(&self, principal: &Principal, target: Target) -> Result<(), ApiError> {
        match (*self, target) {
            (Access::Public | Access::AnyKey, _) => Ok(()),
            (Access::PlatformAdmin, Target::Platform) => require_admin(principal),
            (Access::PlatformAdmin, Target::Org(org) | Target::Instance(org, _)) => {
                match principal.org() {
                    Some(own) if own != org => Err(ApiError::NotFound("organization")),
                    _ => require_admin(principal),
                }
            }
            (Access::Role(role), Target::Org(org) | Target::Instance(org, _)) => {
                principal.require(org, role)
            }
            (Access::RoleOrWidget(role), Target::Instance(org, instance)) => match principal {
                Principal::Widget { org: own, .. } if *own != org => {
                    Err(ApiError::NotFound("agent instance"))
                }
                Principal::Widget { instance: own, .. } if *own == instance => Ok(()),
                Principal::Widget { .. } => Err(ApiError::Forbidden(
                    "this widget key belongs to another agent instance".into(),
                )),
                other => other.require(org, role),
            },
            (rule, target) => Err(ApiError::internal(std::io::Error::other(format!(
                "the rule {rule:?} cannot be checked on {target:?}"
            )))),
        }
    }

    /// The organization of a key that this rule lets through by its role alone, whatever the
    /// request names. A command such a key sends runs in its own organization, where the
    /// command finds its resource or answers 404, so nothing needs looking up first.
    pub fn admits_by_role(&self, principal: &Principal) -> Option<OrganizationId> {
        match (*self, principal) {
            (
                Access::Role(needed) | Access::RoleOrWidget(needed),
                Principal::Key { org, role, .. },
            ) if role.includes(needed) => Some(*org),
            _ => None,
        }
    }
}

/// The roles that include `role`, in words.
fn roles_from(role: Role) -> &'static str {
    match role {
        Role::Member => "any role",
        Role::Developer => "developer, admin or owner",
        Role::Admin => "admin or owner",
        Role::Owner => "owner",
    }
}

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "this route needs the platform admin key".into(),
        ))
    }
}

/// Gives a route's rule to its extractors; a route that needs a key answers 401 to a request
/// without one before reading anything else (one with a key that is not valid never gets
/// here: [`crate::rate_limit::limit`] has answered 401).
pub(crate) async fn declare(access: Access, mut request: Request, next: Next) -> Response {
    if access != Access::Public && bearer(request.headers()).is_none() {
        return ApiError::Unauthorized.into_response();
    }
    request.extensions_mut().insert(access);
    next.run(request).await
}

/// Marks a request for a route open to anyone (one of `public`, the method and path of each
/// [`Access::Public`] route), before routing: such a route ignores any key it is sent, so
/// [`crate::rate_limit::limit`] does not look at it. The method counts too, so a keyed route
/// on a public path would not be taken for a public one.
#[derive(Clone, Copy, Debug)]
pub struct PublicRoute;

pub(crate) async fn mark_public(
    public: std::sync::Arc<[(axum::http::Method, &'static str)]>,
    mut request: Request,
    next: Next,
) -> Response {
    let (method, path) = (request.method(), request.uri().path());
    let same = |m: &axum::http::Method| {
        m == method || (m == axum::http::Method::GET && method == axum::http::Method::HEAD)
    };
    if public.iter().any(|(m, p)| same(m) && *p == path) {
        request.extensions_mut().insert(PublicRoute);
    }
    next.run(request).await
}

/// The rule of the route a request was routed to.
impl<S: Send + Sync> FromRequestParts<S> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Access>().copied().ok_or_else(|| {
            ApiError::internal(std::io::Error::other(
                "the route was not registered through ApiRouter::route",
            ))
        })
    }
}

/// A route that names no resource (the organization list, the catalog, the platform's jobs):
/// the caller, checked against the route's rule alone.
#[derive(Clone, Copy, Debug)]
pub struct Authorized(pub Principal);

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        Access::from_request_parts(parts, state)
            .await?
            .check(&principal, Target::Platform)?;
        Ok(Authorized(principal))
    }
}
