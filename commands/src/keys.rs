//! API keys (`sk_live_…`) and widget keys (`pk_widget_…`).
//!
//! The secret is generated here, shown once, and never recorded: events carry its SHA-256
//! and a display prefix. The `credentials` lookup that authentication reads is written in the
//! same transaction as the issuing or revoking event, so a revoked key fails at once.

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use tenantry_domain::{AgentInstanceId, Role, TenantId};
use uuid::Uuid;

use crate::CommandError;

/// The prefix of organization secret keys.
pub const API_KEY_PREFIX: &str = "sk_live_";
/// The prefix of publishable widget keys.
pub const WIDGET_KEY_PREFIX: &str = "pk_widget_";

/// A freshly generated secret: shown once to the caller, stored only as its hash.
#[derive(Clone, Debug)]
pub struct Secret {
    pub secret: String,
    /// The start of the secret, for people to tell keys apart.
    pub prefix: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
}

impl Secret {
    /// A new random secret starting with `kind` (`sk_live_` or `pk_widget_`).
    pub fn generate(kind: &str) -> Self {
        let secret = format!("{kind}{}", Alphanumeric.sample_string(&mut rand::rng(), 32));
        Self {
            prefix: secret[..kind.len() + 4].to_owned(),
            hash: hash(&secret),
            secret,
        }
    }
}

/// Hex SHA-256 of a presented secret.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Records a new credential (inside the issuing command's transaction).
///
/// # Errors
/// On a database failure.
pub async fn insert_credential(
    conn: &mut PgConnection,
    tenant: TenantId,
    key_id: Uuid,
    hash: &str,
    grant: Grant,
) -> Result<(), CommandError> {
    let (kind, role, instance) = match grant {
        Grant::Api(role) => ("api", Some(role.as_str()), None),
        Grant::Widget(instance) => ("widget", None, Some(instance.as_uuid())),
    };
    sqlx::query(
        "INSERT INTO credentials (hash, tenant_id, key_id, kind, role, agent_instance_id) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(hash)
    .bind(tenant.as_uuid())
    .bind(key_id)
    .bind(kind)
    .bind(role)
    .bind(instance)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a credential revoked (inside the revoking command's transaction).
///
/// # Errors
/// On a database failure.
pub async fn revoke_credential(
    conn: &mut PgConnection,
    tenant: TenantId,
    key_id: Uuid,
) -> Result<(), CommandError> {
    sqlx::query("UPDATE credentials SET revoked_at = now() WHERE tenant_id = $1 AND key_id = $2 AND revoked_at IS NULL")
        .bind(tenant.as_uuid())
        .bind(key_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// What a credential grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// An organization key acting with a role.
    Api(Role),
    /// A widget key bound to one agent instance.
    Widget(AgentInstanceId),
}
