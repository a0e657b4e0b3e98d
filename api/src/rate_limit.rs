//! Per-organization rate limits by tier (600, 3,000 and 12,000 requests a minute), on `governor`: 429 with
//! `Retry-After` when exceeded, and `RateLimit-Limit` / `RateLimit-Remaining` on every
//! response to an organization's key. The platform admin is not limited. Widget keys have
//! limits of their own, per key and per client address ([`WIDGET_KEY_PER_MINUTE`],
//! [`WIDGET_ADDRESS_PER_MINUTE`]), apart from their organization's.
//!
//! This middleware also authenticates the caller once and leaves the [`Principal`] in the
//! request's extensions for the handler.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::{StateInformationMiddleware, StateSnapshot};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{NotUntil, Quota, RateLimiter};
use tenantry_domain::organization::Organization;
use tenantry_domain::{OrganizationId, TenantId, Tier};
use tenantry_projections::queries::organizations::TierOf;
use tenantry_projections::queries::{read, Consistency, Scope};
use uuid::Uuid;

use crate::auth::{authenticate, Principal};
use crate::{ApiError, AppState};

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;
type Limiter = Keyed<OrganizationId>;
type Checked = Result<StateSnapshot, NotUntil<<DefaultClock as Clock>::Instant>>;

/// Widget traffic (publishable keys, in end customers' browsers) has limits of its own, apart
/// from the organization's secret-key budget: requests a minute per widget key...
pub const WIDGET_KEY_PER_MINUTE: u32 = 600;
/// ...and per client address.
pub const WIDGET_ADDRESS_PER_MINUTE: u32 = 120;
/// How often the keyed limiters forget keys whose allowance has refilled: their stores hold
/// only the keys seen within about a minute (their quotas' window), not every key ever seen.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// How long an organization's tier is remembered before it is read again.
const TIER_TTL: Duration = Duration::from_secs(30);

/// One limiter per tier, the tiers of recently seen organizations, and the widgets' limiters.
pub struct RateLimits {
    limiters: [(Tier, u32, Limiter); 3],
    tiers: Mutex<HashMap<OrganizationId, (Tier, Instant)>>,
    widget_keys: Keyed<Uuid>,
    widget_addresses: Keyed<IpAddr>,
    swept: Mutex<Instant>,
    clock: DefaultClock,
}

fn keyed<K: Clone + Eq + std::hash::Hash>(per_minute: u32) -> Keyed<K> {
    let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
    RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>()
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
            widget_keys: keyed(WIDGET_KEY_PER_MINUTE),
            widget_addresses: keyed(WIDGET_ADDRESS_PER_MINUTE),
            swept: Mutex::new(Instant::now()),
            clock: DefaultClock::default(),
        }
    }

    /// Every [`SWEEP_EVERY`], forgets the keys whose allowance is full again (the next
    /// request of one starts from a fresh one, the same) and the tiers past their time.
    fn sweep(&self) {
        let Ok(mut swept) = self.swept.try_lock() else {
            return;
        };
        if swept.elapsed() < SWEEP_EVERY {
            return;
        }
        *swept = Instant::now();
        for (_, _, limiter) in &self.limiters {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.widget_keys.retain_recent();
        self.widget_keys.shrink_to_fit();
        self.widget_addresses.retain_recent();
        self.widget_addresses.shrink_to_fit();
        if let Ok(mut tiers) = self.tiers.lock() {
            tiers.retain(|_, (_, at)| at.elapsed() < TIER_TTL);
        }
    }

    async fn tier(&self, state: &AppState, org: OrganizationId) -> Tier {
        if let Some((tier, at)) = self.tiers.lock().ok().and_then(|t| t.get(&org).copied()) {
            if at.elapsed() < TIER_TTL {
                return tier;
            }
        }
        // Only a tier read is remembered: a fallback would hold a new Pro organization to
        // Basic's limit for TIER_TTL.
        let Some(tier) = read_tier(state, org).await else {
            return Tier::Basic;
        };
        if let Ok(mut tiers) = self.tiers.lock() {
            tiers.insert(org, (tier, Instant::now()));
        }
        tier
    }
}

/// The organization's tier: the read model's, or, before the read model has the
/// organization (it was just created), the organization's own on the write side, known from
/// the moment its creation committed. `None` when neither can be read.
async fn read_tier(state: &AppState, org: OrganizationId) -> Option<Tier> {
    let now = Consistency {
        after: None,
        timeout: Duration::ZERO,
    };
    if let Ok(Some(tier)) = read(&state.store, Scope::from(org), now, TierOf(org)).await {
        return Some(tier);
    }
    let (organization, _) = state
        .commands
        .load::<Organization>(TenantId::from(org), org.as_uuid())
        .await
        .ok()?;
    organization.tier
}

/// The address of the client, as the connection gives it (the server is served with
/// `ConnectInfo`; a proxy in front would make it the proxy's, and `X-Forwarded-For` is not
/// trusted). `None` when the router is called without a connection (tests of the router).
fn client_address(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
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
    let address = client_address(&request);
    let principal = match authenticate(&state, &key, address).await {
        Ok(principal) => principal,
        Err(err) => return err.into_response(),
    };
    request.extensions_mut().insert(principal);
    let limits = &state.rate_limits;
    limits.sweep();
    // A widget key spends its own allowances (per key, per address), never its
    // organization's.
    if let Principal::Widget { key_id, .. } = principal {
        let mut checks = vec![(WIDGET_KEY_PER_MINUTE, limits.widget_keys.check_key(&key_id))];
        if let Some(address) = address {
            checks.push((
                WIDGET_ADDRESS_PER_MINUTE,
                limits.widget_addresses.check_key(&address),
            ));
        }
        return limits.answer(checks, request, next).await;
    }
    let Some(org) = principal.org() else {
        return next.run(request).await;
    };
    let tier = limits.tier(&state, org).await;
    let Some((_, per_minute, limiter)) = limits.limiters.iter().find(|(t, _, _)| *t == tier) else {
        return next.run(request).await;
    };
    limits
        .answer(vec![(*per_minute, limiter.check_key(&org))], request, next)
        .await
}

impl RateLimits {
    /// Runs the request if every check passed, with the headers of the tightest (the fewest
    /// requests left); otherwise 429 after the longest wait.
    async fn answer(&self, checks: Vec<(u32, Checked)>, request: Request, next: Next) -> Response {
        let headers = |per_minute: u32, remaining: u32| {
            [
                (LIMIT, HeaderValue::from(per_minute)),
                (REMAINING, HeaderValue::from(remaining)),
            ]
        };
        let now = self.clock.now();
        let refused = checks
            .iter()
            .filter_map(|(per_minute, checked)| {
                let wait = checked.as_ref().err()?.wait_time_from(now);
                Some((wait, *per_minute))
            })
            .max();
        if let Some((wait, per_minute)) = refused {
            let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut response = ApiError::RateLimited {
                retry_after: retry_after.max(1),
            }
            .into_response();
            response.headers_mut().extend(headers(per_minute, 0));
            return response;
        }
        let tightest = checks
            .iter()
            .filter_map(|(per_minute, checked)| {
                let snapshot = checked.as_ref().ok()?;
                Some((snapshot.remaining_burst_capacity(), *per_minute))
            })
            .min();
        let mut response = next.run(request).await;
        if let Some((remaining, per_minute)) = tightest {
            response
                .headers_mut()
                .extend(headers(per_minute, remaining));
        }
        response
    }
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}
