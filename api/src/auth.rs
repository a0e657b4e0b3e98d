//! Authentication and authorization.
//!
//! `Authorization: Bearer <key>` is one of: the configured platform admin key; an
//! organization secret key (`sk_live_…`), acting with the role it was issued for; or a
//! publishable widget key (`pk_widget_…`), bound to one agent instance. Keys are looked up by
//! the SHA-256 of the presented secret in `credentials`, which the issuing and revoking
//! commands write in their own transactions, so a revoked key fails at once. What a lookup
//! finds is kept in memory while PostgreSQL can announce changes to it ([`crate::credentials`]).
//!
//! What each route allows is its [`crate::access::Access`] rule.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tenantry_commands::keys::{self, API_KEY_PREFIX, WIDGET_KEY_PREFIX};
use tenantry_domain::{AgentInstanceId, OrganizationId, Role};
use uuid::Uuid;

use crate::credentials::Credential;
use crate::{ApiError, AppState};

/// The configured platform admin key, kept only as its SHA-256 digest. Comparing digests
/// reveals nothing about the key through timing.
#[derive(Clone)]
pub struct AdminKey([u8; 32]);

impl AdminKey {
    pub fn new(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    fn matches(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        digest == self.0
    }
}

/// The key of an `Authorization: Bearer <key>` header.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The platform operator: every route, every tenant.
    Admin,
    /// An organization key with a role.
    Key {
        org: OrganizationId,
        key_id: Uuid,
        role: Role,
    },
    /// A publishable widget key: starts conversations on its instance and adds customer
    /// messages to them, nothing else.
    Widget {
        org: OrganizationId,
        key_id: Uuid,
        instance: AgentInstanceId,
    },
}

impl Principal {
    /// The actor recorded in the metadata of events it causes.
    pub fn actor(&self) -> String {
        match self {
            Principal::Admin => "platform-admin".into(),
            Principal::Key { key_id, .. } => format!("api-key:{key_id}"),
            Principal::Widget { key_id, .. } => format!("widget-key:{key_id}"),
        }
    }

    /// The organization a key belongs to (`None` for the admin).
    pub fn org(&self) -> Option<OrganizationId> {
        match self {
            Principal::Admin => None,
            Principal::Key { org, .. } | Principal::Widget { org, .. } => Some(*org),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }

    /// Allows access to organization `org` with at least `role`.
    ///
    /// # Errors
    /// 404 when the key belongs to another organization (or is a widget key of one), 403
    /// when its role or kind is not enough.
    pub fn require(&self, org: OrganizationId, role: Role) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Key { org: own, .. } | Principal::Widget { org: own, .. } if *own != org => {
                Err(ApiError::NotFound("resource"))
            }
            Principal::Key { role: held, .. } if held.includes(role) => Ok(()),
            Principal::Key { role: held, .. } => Err(ApiError::Forbidden(format!(
                "a key with the {held} role may not do this; it needs {role} or above"
            ))),
            Principal::Widget { .. } => {
                Err(ApiError::Forbidden("a widget key may not do this".into()))
            }
        }
    }

    /// The role a key acts with, for checks such as "a key never grants more than its
    /// creator's role" (`None` for the admin, who may grant any).
    pub fn role(&self) -> Option<Role> {
        match self {
            Principal::Key { role, .. } => Some(*role),
            _ => None,
        }
    }
}

/// Failed authentications per client address: after `per_minute` in a minute, the address
/// is answered 429 (with `Retry-After`) until the minute is over, and keys the credential
/// cache does not hold are not looked up for it. Keys already known keep working.
///
/// Bounded: one entry per address that failed within the last minute, at most
/// [`FailedAuth::CAPACITY`]; when full, finished windows go first, and an address that
/// still finds no room is not counted.
#[derive(Debug)]
pub struct FailedAuth {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailedAuth {
    pub const CAPACITY: usize = 100_000;
    const WINDOW: Duration = Duration::from_secs(60);

    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// 429 while `address` has used up its failures.
    fn check(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(address) = address else {
            return Ok(());
        };
        let Ok(windows) = self.windows.lock() else {
            return Ok(());
        };
        match windows.get(&address) {
            Some((start, failures))
                if *failures >= self.per_minute && start.elapsed() < Self::WINDOW =>
            {
                Err(Self::limited(*start))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failure of `address`: 401, or 429 once it is over the limit.
    fn fail(&self, address: Option<IpAddr>) -> ApiError {
        let Some(address) = address else {
            return ApiError::Unauthorized;
        };
        let Ok(mut windows) = self.windows.lock() else {
            return ApiError::Unauthorized;
        };
        if windows.len() >= Self::CAPACITY && !windows.contains_key(&address) {
            windows.retain(|_, (start, _)| start.elapsed() < Self::WINDOW);
            if windows.len() >= Self::CAPACITY {
                return ApiError::Unauthorized;
            }
        }
        let (start, failures) = windows.entry(address).or_insert((Instant::now(), 0));
        if start.elapsed() >= Self::WINDOW {
            (*start, *failures) = (Instant::now(), 0);
        }
        *failures += 1;
        if *failures > self.per_minute {
            Self::limited(*start)
        } else {
            ApiError::Unauthorized
        }
    }

    fn limited(start: Instant) -> ApiError {
        let wait = Self::WINDOW.saturating_sub(start.elapsed());
        ApiError::RateLimited {
            retry_after: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
        }
    }
}

/// When each key was last used, flushed to `credentials.last_used_at` in batches instead of
/// a write per request.
#[derive(Clone, Default)]
pub struct LastUsed(Arc<Mutex<HashMap<String, DateTime<Utc>>>>);

impl LastUsed {
    fn touch(&self, hash: &str) {
        if let Ok(mut seen) = self.0.lock() {
            seen.insert(hash.to_owned(), Utc::now());
        }
    }

    /// Writes what was seen since the last flush.
    ///
    /// # Errors
    /// On a database failure (the entries are kept for the next flush).
    pub async fn flush(
        &self,
        store: &tenantry_eventstore::EventStore,
    ) -> Result<usize, sqlx::Error> {
        let seen: Vec<(String, DateTime<Utc>)> = match self.0.lock() {
            Ok(mut seen) => seen.drain().collect(),
            Err(_) => return Ok(0),
        };
        if seen.is_empty() {
            return Ok(0);
        }
        let (hashes, times): (Vec<String>, Vec<DateTime<Utc>>) = seen.iter().cloned().unzip();
        let result = async {
            let mut tx = store.begin_system().await.map_err(|e| match e {
                tenantry_eventstore::StoreError::Database(e) => e,
                other => sqlx::Error::Protocol(other.to_string()),
            })?;
            sqlx::query(
                "UPDATE credentials c SET last_used_at = GREATEST(c.last_used_at, u.at) \
                 FROM unnest($1::text[], $2::timestamptz[]) AS u(hash, at) WHERE c.hash = u.hash",
            )
            .bind(&hashes)
            .bind(&times)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        }
        .await;
        if let Err(err) = result {
            if let Ok(mut pending) = self.0.lock() {
                for (hash, at) in seen {
                    pending.entry(hash).or_insert(at);
                }
            }
            return Err(err);
        }
        Ok(hashes.len())
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(*principal);
        }
        let key = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let principal = authenticate(state, key, None).await?;
        parts.extensions.insert(principal);
        Ok(principal)
    }
}

/// Resolves a bearer key presented from `address` (when known).
///
/// # Errors
/// 401 for an unknown, malformed or revoked key; 429 once `address` has failed too often
/// ([`FailedAuth`]).
pub async fn authenticate(
    state: &AppState,
    key: &str,
    address: Option<IpAddr>,
) -> Result<Principal, ApiError> {
    if state.admin_key.matches(key) {
        return Ok(Principal::Admin);
    }
    if !(key.starts_with(API_KEY_PREFIX) || key.starts_with(WIDGET_KEY_PREFIX)) || key.len() > 200 {
        return Err(state.failed_auth.fail(address));
    }
    let hash = keys::hash(key);
    let credential = match state.credentials.get(&hash) {
        Some(credential) => Some(credential),
        None if state.unknown_keys.contains(&hash) => None,
        None => {
            state.failed_auth.check(address)?;
            let epoch = state.credentials.epoch();
            // One round trip, outside any transaction (migration 0008).
            let credential: Option<Credential> = sqlx::query_as(
                "SELECT tenant_id, key_id, kind, role, agent_instance_id, revoked_at \
                 FROM tenantry_credential($1)",
            )
            .bind(&hash)
            .fetch_optional(state.store.pool())
            .await?;
            match &credential {
                Some(credential) => state
                    .credentials
                    .keep(hash.clone(), credential.clone(), epoch),
                None => state.unknown_keys.remember(&hash),
            }
            credential
        }
    };
    let Some(Credential {
        tenant_id: tenant,
        key_id,
        kind,
        role,
        agent_instance_id: instance,
        revoked_at,
    }) = credential
    else {
        return Err(state.failed_auth.fail(address));
    };
    if revoked_at.is_some() {
        return Err(state.failed_auth.fail(address));
    }
    state.last_used.touch(&hash);
    let org = OrganizationId::from_uuid(tenant);
    match (
        kind.as_str(),
        role.and_then(|r| r.parse::<Role>().ok()),
        instance,
    ) {
        ("api", Some(role), _) => Ok(Principal::Key { org, key_id, role }),
        ("widget", _, Some(instance)) => Ok(Principal::Widget {
            org,
            key_id,
            instance: AgentInstanceId::from_uuid(instance),
        }),
        _ => Err(ApiError::Unauthorized),
    }
}
