//! Consistency tokens: commands answer `X-Tenantry-Position` (the cursor of their last
//! event); a query sent with `X-Tenantry-Min-Position` waits until the projections it reads
//! have passed that cursor, or answers 503 with `Retry-After`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tenantry_eventstore::Cursor;

use crate::{ApiError, AppState};

pub const POSITION: HeaderName = HeaderName::from_static("x-tenantry-position");
pub const MIN_POSITION: HeaderName = HeaderName::from_static("x-tenantry-min-position");

/// The `X-Tenantry-Min-Position` a query was sent with, if any.
#[derive(Clone, Copy, Debug)]
pub struct MinPosition(pub Option<Cursor>);

/// A token that is not a position, or one beyond every event (no command issued it, and no
/// wait would see it passed), is a 400 at once.
impl FromRequestParts<AppState> for MinPosition {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(MIN_POSITION) else {
            return Ok(MinPosition(None));
        };
        let bad = |detail: String| ApiError::BadRequest {
            code: "invalid-position",
            detail,
        };
        let text = value
            .to_str()
            .map_err(|_| bad("X-Tenantry-Min-Position is not text".into()))?;
        let cursor = text
            .parse()
            .map_err(|e| bad(format!("X-Tenantry-Min-Position: {e}")))?;
        if !state.store.issued(cursor).await? {
            return Err(bad(
                "X-Tenantry-Min-Position is beyond every position this server has issued".into(),
            ));
        }
        Ok(MinPosition(Some(cursor)))
    }
}

impl MinPosition {
    /// Waits until `projections` have passed the requested position, if one was sent.
    ///
    /// # Errors
    /// [`ApiError::NotYetConsistent`] (503) when they do not get there in time.
    pub async fn wait(self, state: &AppState, projections: &[&str]) -> Result<(), ApiError> {
        let Some(token) = self.0 else {
            return Ok(());
        };
        let passed = tenantry_projections::consistency::wait_until_passed(
            state.store.pool(),
            projections,
            token,
            state.consistency_timeout,
        )
        .await?;
        if passed {
            Ok(())
        } else {
            Err(ApiError::NotYetConsistent)
        }
    }
}

/// Headers carrying the consistency token of a command's last event.
pub fn position_headers(position: Option<Cursor>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(cursor) = position {
        if let Ok(value) = HeaderValue::from_str(&cursor.to_string()) {
            headers.insert(POSITION, value);
        }
    }
    headers
}
