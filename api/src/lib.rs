//! Tenantry's HTTP API: REST under `/v1`, problem+json errors, bearer keys.
//!
//! One router per resource, merged in [`router`]: handlers extract, call the command or the
//! query, and map the result. Cross-cutting pieces: [`error`] (problem+json), [`auth`]
//! (bearer keys), [`access`] (each route's rule, declared once with the route), [`paths`]
//! (typed path extractors that check it), [`extract`] (body parsing and the query extractor,
//! with problem rejections) and [`consistency`] (`X-Tenantry-Position` /
//! `X-Tenantry-Min-Position`).

#![recursion_limit = "512"]

pub mod access;
pub mod agent_instances;
pub mod api_keys;
pub mod auth;
pub mod billing;
pub mod command;
pub mod consistency;
pub mod conversations;
pub mod credentials;
pub mod erasure;
pub mod error;
pub mod extract;
pub mod health;
pub mod history;
pub mod jobs;
pub mod members;
pub mod metrics;
pub mod openapi;
pub mod organizations;
pub mod paths;
pub mod rate_limit;
pub mod resources;
pub mod stores;

use std::sync::Arc;
use std::time::Duration;

use axum::handler::Handler;
use axum::http::{HeaderName, Request, StatusCode};
use axum::Router;
use tenantry_commands::CommandBus;
use tenantry_eventstore::EventStore;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::ApiError;

/// The request-id header, set when the client sends none and echoed back.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What handlers share: one reference count to clone per request (axum clones the state for
/// every extractor and layer that takes it), whatever the state holds.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub commands: CommandBus,
    pub store: EventStore,
    pub nats: async_nats::Client,
    pub admin_key: auth::AdminKey,
    /// Credentials kept between requests while their changes can be heard.
    pub credentials: credentials::CredentialCache,
    /// When keys were last used, flushed in batches.
    pub last_used: auth::LastUsed,
    /// Keys recently looked up and not found.
    pub unknown_keys: credentials::UnknownKeys,
    /// Failed authentications per client address.
    pub failed_auth: auth::FailedAuth,
    pub rate_limits: rate_limit::RateLimits,
    /// How long a query waits for `X-Tenantry-Min-Position` before answering 503.
    pub consistency_timeout: Duration,
}

/// Every route with its documentation: the resources' routers, merged.
pub fn routes() -> openapi::ApiRouter {
    openapi::ApiRouter::new()
        .merge(organizations::router())
        .merge(members::router())
        .merge(api_keys::router())
        .merge(stores::router())
        .merge(agent_instances::router())
        .merge(conversations::router())
        .merge(billing::router())
        .merge(history::router())
        .merge(erasure::router())
        .merge(health::router())
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    metrics::handle();
    let api = routes();
    let public: Arc<[(axum::http::Method, &'static str)]> = api.public_routes().into();
    api.finish()
        // The fallback is outside `route_layer`, so it is counted on its own, as one route.
        .fallback(
            (|| async { ApiError::RouteNotFound })
                .layer(axum::middleware::from_fn(metrics::record)),
        )
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit::limit))
        .layer(axum::middleware::from_fn(move |request, next| {
            access::mark_public(public.clone(), request, next)
        }))
        .route_layer(axum::middleware::from_fn(metrics::record))
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
            })
            .on_failure(failed),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
}

/// Logs a response that failed: an error, but a 503 (the server is briefly unable: a read
/// model behind a token, a database restarting) is a warning, answered with `Retry-After`.
fn failed(class: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
    let latency = latency.as_millis();
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::warn!(latency_ms = latency, "response unavailable, retry after");
        }
        class => tracing::error!(classification = %class, latency_ms = latency, "response failed"),
    }
}

/// A handler that panicked answers like any other server error: an opaque problem, the
/// cause in the log.
fn panicked(cause: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = cause
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| cause.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    use axum::response::IntoResponse;
    ApiError::internal(std::io::Error::other(format!(
        "handler panicked: {message}"
    )))
    .into_response()
}
