//! `/healthz`, `/readyz` and `/metrics`: unauthenticated.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use crate::access::Access;
use crate::openapi::{ApiRouter, Op, Text};
use crate::{ApiError, AppState};

pub fn router() -> ApiRouter {
    const T: &str = "operations";
    ApiRouter::new()
        .route(
            Op::get("/healthz", "Liveness")
                .tag(T)
                .access(Access::Public)
                .returns::<Text>(200)
                .media_type("text/plain"),
            || async { "ok" },
        )
        .route(
            Op::get("/readyz", "Readiness: PostgreSQL and NATS reachable")
                .tag(T)
                .access(Access::Public)
                .returns::<Text>(200)
                .media_type("text/plain"),
            ready,
        )
        .route(
            Op::get("/metrics", "Prometheus metrics")
                .tag(T)
                .access(Access::Public)
                .returns::<Text>(200)
                .media_type("text/plain; version=0.0.4"),
            metrics,
        )
}

async fn ready(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    sqlx::query("SELECT 1")
        .execute(state.store.pool())
        .await
        .map_err(|_| ApiError::Unavailable("PostgreSQL is unreachable".into()))?;
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        return Err(ApiError::Unavailable("NATS is unreachable".into()));
    }
    Ok("ready")
}

/// Feed lag, computed at scrape time from the checkpoints: how far (in seconds since the
/// oldest waiting event was recorded) the relay and each projection are behind.
async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let projection_names: Vec<&str> = tenantry_projections::all()
        .iter()
        .map(|p| p.name())
        .collect();
    let lags = tenantry_projections::consistency::feed_lags(
        &state.store,
        tenantry_commands::relay::RELAY_NAME,
        &projection_names,
    )
    .await?;
    let mut out = crate::metrics::handle().render();
    out.push_str("# HELP tenantry_feed_lag_seconds Age of the oldest event a component has not yet handled.\n");
    out.push_str("# TYPE tenantry_feed_lag_seconds gauge\n");
    for (component, name, lag) in lags {
        let _ = writeln!(
            out,
            "tenantry_feed_lag_seconds{{component=\"{component}\",name=\"{name}\"}} {lag}"
        );
    }
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
