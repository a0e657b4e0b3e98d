//! Extractors and body parsing whose rejections are problem+json like every other error.

use axum::extract::rejection::BytesRejection;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::ApiError;

/// The problem for a body that could not be read: 413 past the 1 MiB limit, 400 otherwise.
pub fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::MalformedJson(rejection.body_text())
    }
}

/// Refuses a body sent as anything but JSON: a `Content-Type` other than `application/json`
/// (or a `+json` type) is 415 before the body is parsed. A body sent without one is taken
/// as JSON.
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`].
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(if text.is_empty() {
            "an unreadable type".into()
        } else {
            text.chars().take(100).collect()
        }))
    }
}

/// Deserializes `bytes`, classifying the failure as malformed JSON or an invalid field.
///
/// # Errors
/// [`ApiError::MalformedJson`] or [`ApiError::Validation`].
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if !inner.is_data() {
            return ApiError::MalformedJson(format!("the body is not valid JSON: {inner}"));
        }
        let message = strip_position(&inner.to_string());
        let field = if path == "." || path.is_empty() {
            missing_field_name(&message).unwrap_or_default()
        } else {
            path
        };
        ApiError::Validation { field, message }
    })?;
    de.end()
        .map_err(|e| ApiError::MalformedJson(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// serde_json appends " at line L column C"; the field name says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// The field in serde's "missing field `name`" or "unknown field `name`, expected …".
fn missing_field_name(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    Some(rest.split('`').next()?.to_owned())
}

/// Query parameters; a bad one is 400.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::BadRequest {
                code: "invalid-query",
                detail: e.body_text(),
            })
    }
}

/// Parses an id from the path: anything but a UUID is 400 (it cannot name any resource).
///
/// # Errors
/// [`ApiError::BadRequest`] naming `what`.
pub fn parse_id(raw: &str, what: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::BadRequest {
        code: "invalid-id",
        detail: format!("the {what} id must be a UUID"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        name: tenantry_domain::OrganizationName,
        tier: tenantry_domain::Tier,
    }

    #[test]
    fn classifies_body_errors() {
        assert!(matches!(
            parse_json::<Body>(b"{"),
            Err(ApiError::MalformedJson(_))
        ));
        match parse_json::<Body>(br#"{"name": "Acme"}"#) {
            Err(ApiError::Validation { field, .. }) => assert_eq!(field, "tier"),
            other => panic!("{other:?}"),
        }
        match parse_json::<Body>(br#"{"name": "", "tier": "pro"}"#) {
            Err(ApiError::Validation { field, message }) => {
                assert_eq!(field, "name");
                assert!(message.contains("empty"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match parse_json::<Body>(br#"{"name": "Acme", "tier": "gold"}"#) {
            Err(ApiError::Validation { field, .. }) => assert_eq!(field, "tier"),
            other => panic!("{other:?}"),
        }
    }
}
