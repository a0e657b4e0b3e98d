//! The event store's errors.

use uuid::Uuid;

/// Why an event-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the version the writer expected: another writer got there first.
    /// Nothing was appended; reload and decide again.
    #[error("stream {stream_type}/{stream_id} is no longer at version {expected}")]
    Conflict {
        stream_type: String,
        stream_id: Uuid,
        expected: i64,
    },
    /// An event with this id is already recorded for the tenant.
    #[error("event {0} is already recorded")]
    DuplicateEvent(Uuid),
    /// A row read back from the store could not be decoded.
    #[error("malformed event row: {0}")]
    Decode(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Personal data cannot be sealed or opened: no master key, or not the right one.
    #[error("vault: {0}")]
    Vault(String),
    /// The stream's end customer was erased: no more personal data can be written to it.
    #[error("this stream's customer was erased; its personal data can no longer be written")]
    SubjectErased,
}

impl StoreError {
    /// True when the database could not be reached or dropped the connection: the operation
    /// may succeed if retried shortly ([`is_connection_error`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Database(err) if is_connection_error(err))
    }
}

/// True when `err` says the database could not be reached or the connection was lost, not
/// that the statement was wrong: no connection free in time, an I/O error (a reset during a
/// restart), SQLSTATE class 08 (connection exception), 57P01–57P03 (the server shutting down
/// or not accepting connections yet) or 53300 (too many connections). Classified by kind and
/// SQLSTATE, never by message text.
pub fn is_connection_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// The SQLSTATE of a unique violation.
pub(crate) const UNIQUE_VIOLATION: &str = "23505";

/// The SQLSTATE and constraint name of a database error, when it carries them.
pub fn db_error_code(err: &sqlx::Error) -> Option<(String, Option<String>)> {
    match err {
        sqlx::Error::Database(db) => Some((
            db.code().map(|c| c.into_owned()).unwrap_or_default(),
            db.constraint().map(str::to_owned),
        )),
        _ => None,
    }
}

/// True when `err` is a unique violation (SQLSTATE 23505).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    db_error_code(err).is_some_and(|(code, _)| code == UNIQUE_VIOLATION)
}
