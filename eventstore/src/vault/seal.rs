//! Sealing: AES-256-GCM under a data key, written as `sealed:v1:<key id>:<base64>`, and data
//! keys wrapped under the master key.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tenantry_domain::TenantId;
use uuid::Uuid;

use crate::StoreError;

use super::keys::DataKey;

const SEALED_PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;

/// The master key: 32 bytes, written as 64 hex digits.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// When `hex` is not 32 bytes of hex.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| "the master key must be 64 hex digits".to_owned())?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the master key must be 64 hex digits (32 bytes)".to_owned())?;
        Ok(Self(bytes))
    }

    /// A new random key.
    pub fn generate() -> Self {
        Self(Aes256Gcm::generate_key(OsRng).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

pub(super) struct Master {
    cipher: Aes256Gcm,
    /// Keys the customer-reference HMAC (derived, so the master key itself wraps only).
    lookup: [u8; 32],
}

impl Master {
    /// The master key's cipher, and the key of the customer lookup derived from it.
    pub(super) fn new(master: &MasterKey) -> Self {
        let lookup: [u8; 32] = Sha256::new()
            .chain_update(b"tenantry customer lookup")
            .chain_update(master.0)
            .finalize()
            .into();
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&master.0)),
            lookup,
        }
    }

    pub(super) fn wrap(
        &self,
        tenant: Uuid,
        id: Uuid,
        key: &MasterKey,
    ) -> Result<Vec<u8>, StoreError> {
        seal_bytes(&self.cipher, &wrap_aad(tenant, id), &key.0)
    }

    pub(super) fn unwrap(
        &self,
        tenant: Uuid,
        id: Uuid,
        wrapped: &[u8],
    ) -> Result<DataKey, StoreError> {
        let bytes = open_bytes(&self.cipher, &wrap_aad(tenant, id), wrapped).ok_or_else(|| {
            StoreError::Vault(format!(
                "data key {id} does not unwrap: is TENANTRY_MASTER_KEY the one it was made with?"
            ))
        })?;
        let key = Key::<Aes256Gcm>::from_exact_iter(bytes)
            .ok_or_else(|| StoreError::Vault(format!("data key {id} is not 32 bytes")))?;
        Ok(DataKey {
            tenant,
            id,
            cipher: Aes256Gcm::new(&key),
        })
    }

    pub(super) fn lookup(&self, tenant: TenantId, customer_ref: &str) -> Vec<u8> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.lookup).expect("HMAC takes any key");
        mac.update(tenant.as_uuid().as_bytes());
        mac.update(customer_ref.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

impl DataKey {
    pub(super) fn seal(&self, plain: &str) -> Result<String, StoreError> {
        let bytes = seal_bytes(
            &self.cipher,
            &value_aad(self.tenant, self.id),
            plain.as_bytes(),
        )?;
        Ok(format!(
            "{SEALED_PREFIX}{}:{}",
            self.id.simple(),
            STANDARD_NO_PAD.encode(bytes)
        ))
    }

    pub(super) fn open(&self, sealed: &Sealed<'_>) -> Result<String, StoreError> {
        let tenant = self.tenant;
        let broken =
            || StoreError::Vault(format!("a value sealed under {} does not open", self.id));
        let bytes = STANDARD_NO_PAD.decode(sealed.data).map_err(|_| broken())?;
        let plain =
            open_bytes(&self.cipher, &value_aad(tenant, self.id), &bytes).ok_or_else(broken)?;
        String::from_utf8(plain).map_err(|_| broken())
    }
}

fn wrap_aad(tenant: Uuid, id: Uuid) -> Vec<u8> {
    [
        b"tenantry data key".as_slice(),
        tenant.as_bytes(),
        id.as_bytes(),
    ]
    .concat()
}

fn value_aad(tenant: Uuid, id: Uuid) -> Vec<u8> {
    [
        b"tenantry value".as_slice(),
        tenant.as_bytes(),
        id.as_bytes(),
    ]
    .concat()
}

/// nonce || ciphertext-and-tag.
fn seal_bytes(cipher: &Aes256Gcm, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: plain, aad })
        .map_err(|_| StoreError::Vault("encryption failed".into()))?;
    Ok([nonce.as_slice(), &sealed].concat())
}

fn open_bytes(cipher: &Aes256Gcm, aad: &[u8], bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
}

/// A sealed value, parsed.
pub(super) struct Sealed<'a> {
    pub(super) key_id: Uuid,
    data: &'a str,
}

impl<'a> Sealed<'a> {
    pub(super) fn parse(value: &'a str) -> Option<Self> {
        let rest = value.strip_prefix(SEALED_PREFIX)?;
        let (id, data) = rest.split_once(':')?;
        Some(Self {
            key_id: Uuid::try_parse(id).ok()?,
            data,
        })
    }
}

/// True when `value` is a sealed personal value.
pub fn is_sealed(value: &str) -> bool {
    Sealed::parse(value).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Vault;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_tenant() {
        let tenant = Uuid::new_v4();
        let key = DataKey::generate(tenant);
        let sealed = key.seal("ada@example.com").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("ada"));
        let parsed = Sealed::parse(&sealed).unwrap();
        assert_eq!(parsed.key_id, key.id);
        assert_eq!(key.open(&parsed).unwrap(), "ada@example.com");
        let other_tenant = DataKey {
            tenant: Uuid::new_v4(),
            ..key
        };
        assert!(other_tenant.open(&parsed).is_err());
        assert!(DataKey::generate(tenant).open(&parsed).is_err());
    }

    #[test]
    fn a_wrapped_key_unwraps_only_under_its_master_tenant_and_id() {
        let vault = Vault::new(&MasterKey::generate());
        let master = vault.master().unwrap();
        let (tenant, id, key) = (Uuid::new_v4(), Uuid::new_v4(), MasterKey::generate());
        let wrapped = master.wrap(tenant, id, &key).unwrap();
        assert!(master.unwrap(tenant, id, &wrapped).is_ok());
        assert!(master.unwrap(Uuid::new_v4(), id, &wrapped).is_err());
        assert!(master.unwrap(tenant, Uuid::new_v4(), &wrapped).is_err());
        let other = Vault::new(&MasterKey::generate());
        assert!(other
            .master()
            .unwrap()
            .unwrap(tenant, id, &wrapped)
            .is_err());
    }

    #[test]
    fn master_keys_parse_from_hex() {
        let key = MasterKey::generate();
        assert_eq!(MasterKey::parse(&key.to_hex()).unwrap().0, key.0);
        assert!(MasterKey::parse("abcd").is_err());
        assert!(MasterKey::parse(&"zz".repeat(32)).is_err());
    }
}
