//! The command layer's errors.

use tenantry_domain::{Rejection, RejectionKind};
use tenantry_eventstore::StoreError;

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The aggregate refused the command: a rule of the domain. Never retried.
    #[error("{message}")]
    Rejected {
        code: &'static str,
        kind: RejectionKind,
        message: String,
        /// The request field at fault, for a refusal of a value.
        field: Option<&'static str>,
    },
    /// The slug belongs to another organization.
    #[error("the slug {0} is already taken")]
    SlugTaken(String),
    /// `If-Match` named another version than the aggregate's.
    #[error("the resource is at version {actual}, not {expected}; read it again")]
    PreconditionFailed { expected: i64, actual: i64 },
    /// The idempotency key was used before with a different request.
    #[error("the idempotency key {0} was used with a different request")]
    IdempotencyConflict(String),
    /// Other writers kept winning the race for this stream; nothing was appended.
    #[error("the {stream_type} changed concurrently too many times; try again")]
    Contention { stream_type: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CommandError {
    /// The refusal for something that does not exist in this organization (or at all: the
    /// same answer).
    pub fn not_found(what: &'static str) -> Self {
        Self::rejected(&tenantry_domain::DomainError::NotFound(what))
    }

    pub fn rejected<E: Rejection>(err: &E) -> Self {
        CommandError::Rejected {
            code: err.code(),
            kind: err.kind(),
            message: err.to_string(),
            field: err.field(),
        }
    }
}

impl From<sqlx::Error> for CommandError {
    fn from(err: sqlx::Error) -> Self {
        CommandError::Store(StoreError::Database(err))
    }
}
