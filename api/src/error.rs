//! Every error the API answers with, as RFC 9457 problem+json.
//!
//! Each variant maps to a status and a stable problem `type` in one place
//! ([`ApiError::parts`]). Server errors answer an opaque body; their cause goes to the log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use tenantry_commands::CommandError;
use tenantry_domain::{RejectionKind, Tier};

/// The prefix of every problem `type`.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:tenantry:problem:";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid API key is required: send Authorization: Bearer <key>")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("no such route")]
    RouteNotFound,
    #[error("this route does not take that method")]
    MethodNotAllowed,
    #[error("{0}")]
    MalformedJson(String),
    #[error("the body is larger than 1 MiB")]
    PayloadTooLarge,
    #[error("the body must be JSON (Content-Type: application/json), not {0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("too many requests (the organization's tier, this widget key or this address); retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{message}")]
    Validation { field: String, message: String },
    #[error("the slug {0} is already taken")]
    SlugTaken(String),
    #[error("{message}")]
    Rejected {
        code: &'static str,
        kind: RejectionKind,
        message: String,
    },
    #[error("the read model has not reached the requested position yet; retry shortly")]
    NotYetConsistent,
    #[error("{0}")]
    Unavailable(String),
    /// The database could not be reached or dropped the connection (a restart, a network
    /// blip, no connection free in time): worth retrying, so 503 with `Retry-After`.
    #[error("the database is briefly unavailable; retry shortly")]
    DatabaseUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An RFC 9457 problem: the body of every error.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Problem<'a> {
    /// `urn:tenantry:problem:` and a stable code.
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    /// The invalid field, on a 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    field: Option<&'a str>,
    /// The tier that would allow it, on a 403 `tier-required`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Tier")]
    required_tier: Option<&'a str>,
}

impl ApiError {
    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(err))
    }

    /// Status, problem code and title of each variant.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            RouteNotFound => (StatusCode::NOT_FOUND, "route-not-found", "Not found"),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON"),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            PreconditionFailed(_) => (
                StatusCode::PRECONDITION_FAILED,
                "version-mismatch",
                "Precondition failed",
            ),
            RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code, "Bad request"),
            Validation { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid value",
            ),
            SlugTaken(_) => (StatusCode::CONFLICT, "slug-taken", "Slug taken"),
            Rejected { code, kind, .. } => match kind {
                RejectionKind::NotFound => (StatusCode::NOT_FOUND, code, "Not found"),
                RejectionKind::Conflict => (StatusCode::CONFLICT, code, "Conflict"),
                RejectionKind::Unprocessable => (StatusCode::UNPROCESSABLE_ENTITY, code, "Refused"),
                RejectionKind::TierRequired(_) => {
                    (StatusCode::FORBIDDEN, "tier-required", "Tier required")
                }
                RejectionKind::Forbidden => (StatusCode::FORBIDDEN, code, "Forbidden"),
            },
            NotYetConsistent => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not-yet-consistent",
                "Not yet consistent",
            ),
            Unavailable(_) | DatabaseUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Unavailable",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, source = ?cause.source(), "request failed");
        }
        if let ApiError::DatabaseUnavailable(cause) = &self {
            tracing::warn!(error = %cause, source = ?cause.source(), "database unavailable");
        }
        let problem = Problem {
            kind: format!("{PROBLEM_TYPE_PREFIX}{code}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            field: match &self {
                ApiError::Validation { field, .. } => Some(field),
                _ => None,
            },
            required_tier: match &self {
                ApiError::Rejected {
                    kind: RejectionKind::TierRequired(tier),
                    ..
                } => Some(tier.as_str()),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::RateLimited { retry_after } = &self {
            if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// For extractors whose rejection is a response (one may also be axum's own, such as a path
/// that is not UTF-8).
impl From<ApiError> for Response {
    fn from(err: ApiError) -> Self {
        err.into_response()
    }
}

impl From<CommandError> for ApiError {
    fn from(err: CommandError) -> Self {
        match err {
            CommandError::Rejected {
                field: Some(field),
                message,
                ..
            } => ApiError::Validation {
                field: field.to_owned(),
                message,
            },
            CommandError::Rejected {
                code,
                kind,
                message,
                ..
            } => ApiError::Rejected {
                code,
                kind,
                message,
            },
            CommandError::SlugTaken(slug) => ApiError::SlugTaken(slug),
            CommandError::IdempotencyConflict(_) => ApiError::Rejected {
                code: "idempotency-key-reused",
                kind: RejectionKind::Conflict,
                message: err.to_string(),
            },
            CommandError::Contention { .. } => ApiError::Unavailable(err.to_string()),
            CommandError::PreconditionFailed { .. } => {
                ApiError::PreconditionFailed(err.to_string())
            }
            CommandError::Store(store) => store.into(),
        }
    }
}

impl From<tenantry_eventstore::StoreError> for ApiError {
    fn from(err: tenantry_eventstore::StoreError) -> Self {
        match err {
            tenantry_eventstore::StoreError::SubjectErased => ApiError::Rejected {
                code: "customer-erased",
                kind: RejectionKind::Conflict,
                message: err.to_string(),
            },
            err if err.is_transient() => ApiError::DatabaseUnavailable(Box::new(err)),
            err => ApiError::internal(err),
        }
    }
}

impl From<tenantry_projections::ProjectionError> for ApiError {
    fn from(err: tenantry_projections::ProjectionError) -> Self {
        match err {
            tenantry_projections::ProjectionError::Store(err) => err.into(),
            err => ApiError::internal(err),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        tenantry_eventstore::StoreError::Database(err).into()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// A database error with a SQLSTATE, as the driver would report it.
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Sqlstate {}

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "terminating connection due to administrator command"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    async fn answer(err: impl Into<ApiError>) -> (StatusCode, Option<String>, String) {
        let response = err.into().into_response();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (
            status,
            retry_after,
            problem["type"].as_str().unwrap().to_owned(),
        )
    }

    #[tokio::test]
    async fn connection_errors_are_503_with_retry_after() {
        let reset = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let transient = [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(reset()),
            sqlx::Error::Database(Box::new(Sqlstate("57P01"))),
            sqlx::Error::Database(Box::new(Sqlstate("57P02"))),
            sqlx::Error::Database(Box::new(Sqlstate("57P03"))),
            sqlx::Error::Database(Box::new(Sqlstate("08006"))),
            sqlx::Error::Database(Box::new(Sqlstate("08001"))),
            sqlx::Error::Database(Box::new(Sqlstate("53300"))),
        ];
        for err in transient {
            let what = format!("{err:?}");
            let (status, retry_after, kind) = answer(err).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{what}");
            assert_eq!(retry_after.as_deref(), Some("1"), "{what}");
            assert_eq!(kind, "urn:tenantry:problem:unavailable", "{what}");
        }
        // Through the event store's and the projections' errors too.
        let store = tenantry_eventstore::StoreError::Database(sqlx::Error::Io(reset()));
        assert_eq!(answer(store).await.0, StatusCode::SERVICE_UNAVAILABLE);
        let projection = tenantry_projections::ProjectionError::Store(
            tenantry_eventstore::StoreError::Database(sqlx::Error::PoolTimedOut),
        );
        assert_eq!(answer(projection).await.0, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn other_database_errors_stay_500() {
        for err in [
            sqlx::Error::Database(Box::new(Sqlstate("22P05"))),
            sqlx::Error::Database(Box::new(Sqlstate("23505"))),
            sqlx::Error::Database(Box::new(Sqlstate("42P01"))),
            sqlx::Error::Protocol("unexpected message".into()),
            sqlx::Error::RowNotFound,
        ] {
            let what = format!("{err:?}");
            let (status, retry_after, kind) = answer(err).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{what}");
            assert_eq!(retry_after, None, "{what}");
            assert_eq!(kind, "urn:tenantry:problem:internal", "{what}");
        }
    }
}
