//! Per-organization rate limits by tier (600, 3,000 and 12,000 requests a minute), on `governor`: 429 with
//! `Retry-After` when exceeded, and `RateLimit-Limit` / `RateLimit-Remaining` on every
//! response to an organization's key. The platform admin is not limited.
//!
//! This middleware also authenticates the caller once and leaves the [`Principal`] in the
//! request's extensions for the handler.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tenantry_domain::{OrganizationId, Tier};
use tenantry_projections::queries::organizations::TierOf;
use tenantry_projections::queries::{read, Consistency, Scope};

use crate::auth::authenticate;
use crate::{ApiError, AppState};

type Limiter = RateLimiter<
    OrganizationId,
    DefaultKeyedStateStore<OrganizationId>,
    DefaultClock,
    StateInformationMiddleware,
>;

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// How long an organization's tier is remembered before it is read again.
const TIER_TTL: Duration = Duration::from_secs(30);

/// One limiter per tier, and the tiers of recently seen organizations.
pub struct RateLimits {
    limiters: [(Tier, u32, Limiter); 3],
    tiers: Mutex<HashMap<OrganizationId, (Tier, Instant)>>,
    clock: DefaultClock,
}

impl RateLimits {
    /// The tiers' requests per minute, or `override_per_minute` for every tier (tests).
    pub fn new(override_per_minute: Option<u32>) -> Self {
        let limiter = |tier: Tier| {
            let per_minute = override_per_minute
                .unwrap_or(tier.limits().requests_per_minute)
                .max(1);
            let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
            (
                tier,
                per_minute,
                RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            )
        };
        Self {
            limiters: [
                limiter(Tier::Basic),
                limiter(Tier::Pro),
                limiter(Tier::Enterprise),
            ],
            tiers: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    async fn tier(&self, state: &AppState, org: OrganizationId) -> Tier {
        if let Some((tier, at)) = self.tiers.lock().ok().and_then(|t| t.get(&org).copied()) {
            if at.elapsed() < TIER_TTL {
                return tier;
            }
        }
        let tier = read_tier(state, org).await.unwrap_or(Tier::Basic);
        if let Ok(mut tiers) = self.tiers.lock() {
            tiers.insert(org, (tier, Instant::now()));
        }
        tier
    }
}

async fn read_tier(state: &AppState, org: OrganizationId) -> Option<Tier> {
    let now = Consistency {
        after: None,
        timeout: Duration::ZERO,
    };
    read(&state.store, Scope::Platform, now, TierOf(org))
        .await
        .ok()?
}

/// The middleware.
pub async fn limit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if request
        .extensions()
        .get::<crate::access::PublicRoute>()
        .is_some()
    {
        return next.run(request).await;
    }
    let key = crate::auth::bearer(request.headers()).map(str::to_owned);
    let Some(key) = key else {
        return next.run(request).await;
    };
    let principal = match authenticate(&state, &key).await {
        Ok(principal) => principal,
        Err(err) => return err.into_response(),
    };
    request.extensions_mut().insert(principal);
    let Some(org) = principal.org() else {
        return next.run(request).await;
    };
    let limits = &state.rate_limits;
    let tier = limits.tier(&state, org).await;
    let Some((_, per_minute, limiter)) = limits.limiters.iter().find(|(t, _, _)| *t == tier) else {
        return next.run(request).await;
    };
    let headers = |remaining: u32| {
        [
            (LIMIT, HeaderValue::from(*per_minute)),
            (REMAINING, HeaderValue::from(remaining)),
        ]
    };
    match limiter.check_key(&org) {
        Ok(snapshot) => {
            let mut response = next.run(request).await;
            response
                .headers_mut()
                .extend(headers(snapshot.remaining_burst_capacity()));
            response
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(limits.clock.now());
            let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut response = ApiError::RateLimited {
                retry_after: retry_after.max(1),
            }
            .into_response();
            response.headers_mut().extend(headers(0));
            response
        }
    }
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}
