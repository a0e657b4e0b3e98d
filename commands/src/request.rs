//! What a command comes with (who asks, an idempotency key, an `If-Match` version) and what
//! it answers ([`Executed`]).

use tenantry_domain::TenantId;
use tenantry_eventstore::{Cursor, Metadata};
use uuid::Uuid;

/// An idempotency key and the fingerprint of the request it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    /// The client's `Idempotency-Key`, scoped by organization.
    pub key: String,
    /// What identifies the request (e.g. a hash of method, path and body): the same key with
    /// another fingerprint is a conflict.
    pub fingerprint: String,
    /// Whose keys these are: the command's organization when `None`. Creating an organization
    /// scopes keys by the platform, since the organization does not exist yet.
    pub scope: Option<TenantId>,
}

/// Who asks, and how to recognise a retry.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub metadata: Metadata,
    pub idempotency: Option<Idempotency>,
    /// `If-Match`: the version the caller last saw of the command's aggregate.
    pub expected_version: Option<i64>,
}

impl Request {
    pub fn new(metadata: Metadata) -> Self {
        Self {
            metadata,
            idempotency: None,
            expected_version: None,
        }
    }

    /// Refuses the command unless its aggregate is still at `version`.
    pub fn with_expected_version(mut self, version: Option<i64>) -> Self {
        self.expected_version = version;
        self
    }

    pub fn with_idempotency(
        mut self,
        key: impl Into<String>,
        fingerprint: impl Into<String>,
    ) -> Self {
        let key = key.into();
        self.metadata.idempotency_key = Some(key.clone());
        self.idempotency = Some(Idempotency {
            key,
            fingerprint: fingerprint.into(),
            scope: None,
        });
        self
    }

    /// Scopes the idempotency key by `scope` instead of the command's organization.
    pub fn with_idempotency_scope(mut self, scope: TenantId) -> Self {
        if let Some(idempotency) = &mut self.idempotency {
            idempotency.scope = Some(scope);
        }
        self
    }
}

/// The outcome of a command that took effect, for its primary aggregate.
#[derive(Clone, Debug)]
pub struct Executed<A> {
    /// The primary aggregate's id.
    pub id: Uuid,
    /// The primary aggregate after the command.
    pub aggregate: A,
    /// The primary stream's version after the command.
    pub version: i64,
    /// The consistency token: the cursor of the last event recorded (across all streams).
    pub position: Option<Cursor>,
    /// True when an idempotency key matched: this is the first execution's result, and
    /// nothing was recorded now.
    pub replayed: bool,
}

impl<A> Executed<A> {
    pub fn position(&self) -> Option<Cursor> {
        self.position
    }
}
