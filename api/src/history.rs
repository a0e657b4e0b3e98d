//! Audit and compliance over HTTP: replaying a tenant's history as NDJSON, verifying its hash
//! chains, and seeing an aggregate as it was. Replays and verifications are themselves
//! recorded in the tenant's history (`HistoryAccessed`).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tenantry_domain::agent_instance::AgentInstance;
use tenantry_domain::conversation::Conversation;
use tenantry_domain::organization::{Organization, OrganizationCommand};
use tenantry_domain::store::Store;
use tenantry_domain::{OrganizationId, Role, TenantId};
use tenantry_eventstore::chain::StreamReport;
use tenantry_eventstore::read::{
    read_stream, stream_revealed_history, verify_tenant, HistoryFilter,
};
use tenantry_eventstore::{Cursor, RecordedEvent};

use crate::access::Access;
use crate::command::Command;
use crate::extract::Query;
use crate::openapi::{ApiRouter, Op};
use crate::paths::{OrgPath, Params};
use crate::{ApiError, AppState};

pub fn router() -> ApiRouter {
    const T: &str = "audit";
    ApiRouter::new()
        .route(
            Op::get(
                "/v1/organizations/{org}/events",
                "The tenant's history as NDJSON, in feed order",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .query::<ReplayParams>()
            .returns::<RecordedEvent>(200)
            .media_type("application/x-ndjson"),
            replay,
        )
        .route(
            Op::get(
                "/v1/organizations/{org}/audit/verify",
                "Verify every stream's hash chain and versions",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .returns::<Verification>(200),
            verify,
        )
        .route(
            Op::get(
                "/v1/organizations/{org}/history/{stream_type}/{stream_id}",
                "An aggregate as it was (?as_of= or ?version=)",
            )
            .tag(T)
            .access(Access::Role(Role::Admin))
            .query::<AsOf>()
            .returns::<AggregateState>(200),
            time_travel,
        )
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReplayParams {
    stream_type: Option<String>,
    stream_id: Option<uuid::Uuid>,
    /// Comma-separated event types.
    types: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// Resume after this cursor (the `cursor` of the last line received).
    after: Option<String>,
}

/// Records `kind` of access to `org`'s history.
async fn audit(
    state: &AppState,
    command: &Command<OrgPath>,
    org: OrganizationId,
    kind: &str,
    scope: String,
) -> Result<(), ApiError> {
    let record = OrganizationCommand::RecordHistoryAccess {
        kind: kind.into(),
        scope,
    };
    state
        .commands
        .execute(org, record, &command.request)
        .await?;
    Ok(())
}

async fn replay(
    State(state): State<AppState>,
    Query(params): Query<ReplayParams>,
    command: Command<OrgPath>,
) -> Result<Response, ApiError> {
    let OrgPath(org) = command.path;
    let after = match params.after.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<Cursor>().map_err(|e| ApiError::BadRequest {
            code: "invalid-cursor",
            detail: e.to_string(),
        })?),
    };
    // Names only: a control character (NUL above all, which PostgreSQL refuses in text) can
    // be in no stream or event type.
    let names = params.stream_type.iter().chain(params.types.iter());
    if names.flat_map(|n| n.chars()).any(char::is_control) {
        return Err(ApiError::BadRequest {
            code: "invalid-query",
            detail: "stream_type and types are names without control characters".into(),
        });
    }
    let filter = HistoryFilter {
        after,
        stream_type: params.stream_type.clone(),
        stream_id: params.stream_id,
        event_types: params.types.as_deref().map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        }),
        from: params.from,
        to: params.to,
        whole_snapshot: false,
    };
    audit(&state, &command, org, "replay", format!("{params:?}")).await?;

    // A task owns the transaction and its cursor and feeds the response line by line; a
    // client that goes away ends it.
    let (lines, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let store = state.store.clone();
    tokio::spawn(async move {
        let result: Result<(), ApiError> = async {
            let tenant = TenantId::from(org);
            let mut tx = store.begin_tenant(tenant).await?;
            let mut chunks = stream_revealed_history(&mut tx, &store, tenant, &filter);
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                let mut buffer = Vec::with_capacity(chunk.len() * 512);
                for event in &chunk {
                    serde_json::to_writer(&mut buffer, event).map_err(ApiError::internal)?;
                    buffer.push(b'\n');
                }
                if lines.send(Ok(Bytes::from(buffer))).await.is_err() {
                    return Ok(());
                }
            }
            Ok(())
        }
        .await;
        if let Err(err) = result {
            tracing::error!(error = %err, "replay failed mid-stream");
            let _ = lines
                .send(Err(std::io::Error::other("replay failed")))
                .await;
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [(CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}

async fn verify(
    State(state): State<AppState>,
    command: Command<OrgPath>,
) -> Result<Response, ApiError> {
    let OrgPath(org) = command.path;
    audit(&state, &command, org, "verify", "all streams".into()).await?;
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let reports = verify_tenant(&mut tx, TenantId::from(org)).await?;
    tx.commit().await?;
    let broken: Vec<_> = reports
        .iter()
        .filter(|r| r.broken.is_some())
        .cloned()
        .collect();
    let events: i64 = reports.iter().map(|r| r.events).sum();
    Ok(axum::Json(Verification {
        ok: broken.is_empty(),
        streams: reports.len(),
        events,
        broken,
        report: reports,
    })
    .into_response())
}

/// What verifying a tenant's hash chains found.
#[derive(Debug, Serialize, JsonSchema)]
struct Verification {
    /// Whether every stream verified.
    ok: bool,
    streams: usize,
    events: i64,
    /// The streams that did not verify.
    broken: Vec<StreamReport>,
    /// Every stream.
    report: Vec<StreamReport>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AsOf {
    /// Fold the events recorded until then.
    as_of: Option<DateTime<Utc>>,
    /// Fold the events up to this version.
    version: Option<i64>,
}

/// Folds the events of `A` up to the point.
fn fold<A: Aggregate>(events: &[RecordedEvent]) -> Result<serde_json::Value, ApiError> {
    let mut state = A::default();
    for event in events {
        state.apply(event.decode::<A::Event>()?);
    }
    serde_json::to_value(&state).map_err(ApiError::internal)
}

/// `{org}/history/{stream_type}/{stream_id}`: the stream is read once the caller is allowed.
struct StreamPath {
    org: OrganizationId,
    stream_type: String,
    stream_id: uuid::Uuid,
}

impl FromRequestParts<AppState> for StreamPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let OrgPath(org) = OrgPath::from_request_parts(parts, state).await?;
        let params = Params::of(parts, state).await?;
        Ok(StreamPath {
            org,
            stream_id: params.id("stream_id", "stream")?,
            stream_type: params.raw("stream_type")?.to_owned(),
        })
    }
}

async fn time_travel(
    State(state): State<AppState>,
    Query(point): Query<AsOf>,
    StreamPath {
        org,
        stream_type,
        stream_id,
    }: StreamPath,
) -> Result<Response, ApiError> {
    // Known stream types only (before any read: a NUL in the path never reaches PostgreSQL).
    let fold: fn(&[RecordedEvent]) -> Result<serde_json::Value, ApiError> =
        match stream_type.as_str() {
            Organization::TYPE => fold::<Organization>,
            Store::TYPE => fold::<Store>,
            AgentInstance::TYPE => fold::<AgentInstance>,
            Conversation::TYPE => fold::<Conversation>,
            _ => return Err(ApiError::NotFound("stream type")),
        };
    let mut tx = state.store.begin_tenant(TenantId::from(org)).await?;
    let mut events = read_stream(&mut tx, TenantId::from(org), &stream_type, stream_id).await?;
    events.retain(|e| {
        point.version.is_none_or(|v| e.version <= v)
            && point.as_of.is_none_or(|at| e.recorded_at <= at)
    });
    state.store.vault().reveal(&mut tx, &mut events).await?;
    tx.commit().await?;
    let Some(last) = events.last() else {
        return Err(ApiError::NotFound("stream at that point"));
    };
    let (version, recorded_at) = (last.version, last.recorded_at);
    let aggregate = fold(&events)?;
    Ok(axum::Json(AggregateState {
        stream_type,
        stream_id,
        version,
        as_of: recorded_at,
        state: aggregate,
    })
    .into_response())
}

/// An aggregate as it was after one of its events.
#[derive(Debug, Serialize, JsonSchema)]
struct AggregateState {
    #[schemars(extend("enum" = [Organization::TYPE, Store::TYPE, AgentInstance::TYPE, Conversation::TYPE]))]
    stream_type: String,
    stream_id: uuid::Uuid,
    /// The version of the last event folded.
    version: i64,
    /// When that event was recorded.
    as_of: DateTime<Utc>,
    /// The aggregate's state as the domain serializes it.
    state: serde_json::Value,
}
