//! What every command handler extracts: the caller, a [`Request`] carrying the events'
//! metadata, the `Idempotency-Key` with a fingerprint of the request, and `If-Match`, and
//! what the path names, authorized by the route's rule (a [`crate::paths`] extractor, or
//! [`crate::access::Authorized`] on a route that names no resource).
//!
//! The route's rule is answered after the headers and the body, as the API always has: a
//! request that is malformed and also not allowed gets the problem of its malformed part.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request as HttpRequest};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tenantry_commands::Request;
use tenantry_eventstore::Metadata;

use crate::auth::Principal;
use crate::extract::{body_rejection, parse_json, require_json};
use crate::{ApiError, AppState, REQUEST_ID};

/// A command without a body, on what its path `P` names.
pub struct Command<P> {
    pub principal: Principal,
    pub request: Request,
    pub path: P,
}

/// A command with a JSON body, on what its path `P` names.
pub struct CommandWith<T, P> {
    pub principal: Principal,
    pub request: Request,
    pub body: T,
    pub path: P,
}

/// A command's request before its body is read: an idempotency key waits for the body,
/// which its fingerprint (method, path and body) ends with.
struct Pending {
    request: Request,
    idempotency: Option<(String, Sha256)>,
}

impl Pending {
    fn finish(self, body: &[u8]) -> Request {
        match self.idempotency {
            Some((key, mut fingerprint)) => {
                fingerprint.update(body);
                let fingerprint = hex::encode(fingerprint.finalize());
                self.request.with_idempotency(key, fingerprint)
            }
            None => self.request,
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `If-Match: "3"` (or `3`, or `W/"3"`): the version the caller expects.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get("if-match") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest {
            code: "invalid-if-match",
            detail: "If-Match must be a version this API returned in ETag, such as \"3\"".into(),
        })
}

/// Tracing headers copied into every event's metadata: short, or refused.
fn trace_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    match header(headers, name) {
        Some(value) if value.len() > 128 => Err(ApiError::BadRequest {
            code: "invalid-header",
            detail: format!("{name} must be at most 128 characters"),
        }),
        other => Ok(other.map(str::to_owned)),
    }
}

/// The command's request from `parts`, but for its body.
fn build(principal: &Principal, parts: &Parts) -> Result<Pending, ApiError> {
    let headers = &parts.headers;
    let request_id = trace_header(headers, REQUEST_ID.as_str())?;
    let metadata = Metadata {
        actor: Some(principal.actor()),
        correlation_id: trace_header(headers, "x-correlation-id")?.or_else(|| request_id.clone()),
        causation_id: trace_header(headers, "x-causation-id")?,
        request_id,
        idempotency_key: None,
    };
    let request = Request::new(metadata).with_expected_version(if_match(headers)?);
    let mut idempotency = None;
    if let Some(key) = headers.get("idempotency-key") {
        let key = key
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255)
            .ok_or_else(|| ApiError::BadRequest {
                code: "invalid-idempotency-key",
                detail: "Idempotency-Key must be 1 to 255 visible characters".into(),
            })?;
        let mut fingerprint = Sha256::new();
        fingerprint.update(parts.method.as_str());
        fingerprint.update(b" ");
        fingerprint.update(parts.uri.path());
        fingerprint.update(b"\n");
        idempotency = Some((key.to_owned(), fingerprint));
    }
    Ok(Pending {
        request,
        idempotency,
    })
}

impl<P> FromRequestParts<AppState> for Command<P>
where
    P: FromRequestParts<AppState>,
    P::Rejection: IntoResponse,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let request = build(&principal, parts)?.finish(b"");
        let path = P::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Command {
            principal,
            request,
            path,
        })
    }
}

impl<T, P> FromRequest<AppState> for CommandWith<T, P>
where
    T: DeserializeOwned,
    P: FromRequestParts<AppState> + Send,
    P::Rejection: IntoResponse,
{
    type Rejection = Response;

    async fn from_request(req: HttpRequest, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let principal = Principal::from_request_parts(&mut parts, state).await?;
        let pending = build(&principal, &parts)?;
        // Checked before the body is read (which takes the request's parts), answered after.
        let path = P::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response);
        // A body must be JSON (checked on the headers before the body takes them).
        let json = require_json(&parts.headers);
        let bytes = Bytes::from_request(HttpRequest::from_parts(parts, body), state)
            .await
            .map_err(body_rejection)?;
        if !bytes.is_empty() {
            json?;
        }
        // An empty body reads as `null`, which an optional body accepts.
        let body = parse_json(if bytes.is_empty() { b"null" } else { &bytes })?;
        let request = pending.finish(&bytes);
        Ok(CommandWith {
            principal,
            request,
            body,
            path: path?,
        })
    }
}

/// `ETag: "<version>"`.
pub fn etag(version: i64) -> [(axum::http::HeaderName, HeaderValue); 1] {
    let value = HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or(HeaderValue::from_static("\"0\""));
    [(axum::http::header::ETAG, value)]
}
