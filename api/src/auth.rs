//! Authentication: `Authorization: Bearer <key>`.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

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

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A request made with the platform admin key.
#[derive(Clone, Copy, Debug)]
pub struct PlatformAdmin;

impl PlatformAdmin {
    /// The actor recorded in the metadata of events it causes.
    pub const ACTOR: &'static str = "platform-admin";
}

impl FromRequestParts<AppState> for PlatformAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match bearer(parts) {
            Some(key) if state.admin_key.matches(key) => Ok(PlatformAdmin),
            _ => Err(ApiError::Unauthorized),
        }
    }
}
