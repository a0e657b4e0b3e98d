//! Reading the read models: what the API (and anything else) asks of the tables the
//! projections write, beside the projections that write them.
//!
//! Every read goes through [`read`]: it waits until the projections the query reads have
//! passed the caller's consistency token, runs the query in one transaction scoped to the
//! tenant (row-level security confines it) or to the platform, opens the sealed personal
//! fields of the answer, and commits. A query is a value ([`Query`]) that names the
//! projections it reads, so a caller cannot wait on the wrong one.
//!
//! - [`directory`]: stores, agent instances, conversations and their messages, members, API
//!   keys.
//! - [`organizations`]: an organization, and the platform's list of them.
//! - [`billing`]: usage, daily volume, the dashboard's figures, invoices.

pub mod billing;
pub mod directory;
pub mod organizations;

use std::future::Future;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use sqlx::PgConnection;
use tenantry_domain::personal::PersonalKind;
use tenantry_domain::TenantId;
use tenantry_eventstore::{Cursor, EventStore};
use uuid::Uuid;

use crate::consistency::wait_until_passed;
use crate::ProjectionError;

/// One question to the read models.
pub trait Query: Send {
    /// The answer.
    type Output: Sealed + Send;

    /// The projections whose tables the query reads: a consistency token waits for these.
    const READS: &'static [&'static str];

    /// Runs the query on `conn`, inside the transaction [`read`] began.
    fn run(
        self,
        conn: &mut PgConnection,
    ) -> impl Future<Output = Result<Self::Output, ProjectionError>> + Send;
}

/// The sealed personal fields of an answer, which [`read`] opens before it hands it out
/// (none by default).
pub trait Sealed {
    fn sealed(&mut self) -> Vec<(&mut String, PersonalKind)> {
        Vec::new()
    }
}

impl<T: Sealed> Sealed for Vec<T> {
    fn sealed(&mut self) -> Vec<(&mut String, PersonalKind)> {
        self.iter_mut().flat_map(Sealed::sealed).collect()
    }
}

impl<T: Sealed> Sealed for Option<T> {
    fn sealed(&mut self) -> Vec<(&mut String, PersonalKind)> {
        self.iter_mut().flat_map(Sealed::sealed).collect()
    }
}

impl<T: Sealed> Sealed for Page<T> {
    fn sealed(&mut self) -> Vec<(&mut String, PersonalKind)> {
        self.data.sealed()
    }
}

/// Whose rows a read sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One tenant's (`tenantry_app`, row-level security).
    Tenant(TenantId),
    /// Every tenant's (`tenantry_system`): the platform admin's lists.
    Platform,
}

impl From<tenantry_domain::OrganizationId> for Scope {
    fn from(org: tenantry_domain::OrganizationId) -> Self {
        Scope::Tenant(TenantId::from(org))
    }
}

/// A consistency token and how long to wait for it.
#[derive(Clone, Copy, Debug)]
pub struct Consistency {
    /// The `X-Tenantry-Min-Position` the caller sent, if any.
    pub after: Option<Cursor>,
    pub timeout: Duration,
}

/// Why a read gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The projections the query reads did not pass the token in time.
    #[error("the read model has not caught up with the requested position yet")]
    Behind,
    #[error(transparent)]
    Failed(#[from] ProjectionError),
}

impl From<sqlx::Error> for ReadError {
    fn from(err: sqlx::Error) -> Self {
        ReadError::Failed(err.into())
    }
}

impl From<tenantry_eventstore::StoreError> for ReadError {
    fn from(err: tenantry_eventstore::StoreError) -> Self {
        ReadError::Failed(err.into())
    }
}

/// Runs `query` in `scope`: waits for `consistency`, begins the scope's transaction, runs
/// the query, opens the answer's sealed fields and commits.
///
/// # Errors
/// [`ReadError::Behind`] when the token was not passed in time; otherwise on a database or
/// vault failure.
pub async fn read<Q: Query>(
    store: &EventStore,
    scope: Scope,
    consistency: Consistency,
    query: Q,
) -> Result<Q::Output, ReadError> {
    if let Some(token) = consistency.after {
        if !wait_until_passed(store.pool(), Q::READS, token, consistency.timeout).await? {
            return Err(ReadError::Behind);
        }
    }
    let (mut tx, tenant) = match scope {
        Scope::Tenant(tenant) => (store.begin_tenant(tenant).await?, Some(tenant)),
        Scope::Platform => (store.begin_system().await?, None),
    };
    let mut answer = query.run(&mut tx).await?;
    let sealed = answer.sealed();
    if !sealed.is_empty() {
        store.vault().open(&mut tx, tenant, sealed).await?;
    }
    tx.commit().await?;
    Ok(answer)
}

/// Which page of a list: at most `limit` rows, newest first, after the id `after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    pub after: Option<Uuid>,
}

/// A page of a list, newest first.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "{T}Page")]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `?cursor=` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` rows fetched newest first.
    pub fn of(mut rows: Vec<T>, limit: i64, id_of: impl Fn(&T) -> Uuid) -> Self {
        let next_cursor = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|row| id_of(row).to_string())
        } else {
            None
        };
        Page {
            data: rows,
            next_cursor,
        }
    }
}
