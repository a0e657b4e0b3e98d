//! Where one attempt of a command runs ([`Session`]) and the shape of an attempt
//! ([`Attempt`], built with [`attempt!`](crate::attempt)).

use futures::future::BoxFuture;
use sqlx::{PgConnection, Postgres, Transaction};
use tenantry_eventstore::scope::{Connect, OnDemand};
use tenantry_eventstore::StoreError;

use crate::CommandError;

/// An open tenant transaction.
pub type Tx = Transaction<'static, Postgres>;

/// Where an attempt runs.
pub enum Session {
    /// An open tenant transaction.
    Transaction(Tx),
    /// A pooled connection outside any transaction, each statement its own, taken only if a
    /// statement is needed (the read of a grouped command, [`CommandBus::transact_grouped`](crate::CommandBus::transact_grouped),
    /// which may decide from what it keeps in memory). Only what confines itself to the
    /// tenant sees its rows here: [`read_streams`](tenantry_eventstore::read::read_streams)
    /// and the vault's keys (migration 0014); a plain query sees nothing.
    Autocommit(OnDemand),
}

impl Connect for Session {
    async fn connection(&mut self) -> Result<&mut PgConnection, StoreError> {
        match self {
            Session::Transaction(tx) => Ok(tx),
            Session::Autocommit(conn) => conn.connection().await,
        }
    }
}

/// One attempt of a command: given its session (an open tenant transaction, unless the
/// command is grouped), load, decide and save (or stage); hand the session back with the
/// outcome `T`.
pub type Attempt<'a, T> =
    Box<dyn FnMut(Session) -> BoxFuture<'a, (Session, Result<T, CommandError>)> + Send + 'a>;

/// Builds an [`Attempt`] from a closure over `&mut PgConnection`:
/// `attempt!(|tx| { …; Ok(executed) })`; or, with `session` before it, over the
/// `&mut Session` itself, for an attempt that may need no connection at all.
#[macro_export]
macro_rules! attempt {
    (|$tx:ident| $body:block) => {
        $crate::attempt!(
            session | session | {
                let $tx: &mut sqlx::PgConnection =
                    tenantry_eventstore::scope::Connect::connection(session).await?;
                $body
            }
        )
    };
    (session |$session:ident| $body:block) => {
        Box::new(move |mut session: $crate::session::Session| {
            Box::pin(async move {
                let result = async {
                    let $session: &mut $crate::session::Session = &mut session;
                    $body
                }
                .await;
                (session, result)
            })
        })
    };
}
