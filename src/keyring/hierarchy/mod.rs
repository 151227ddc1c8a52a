//! The Hierarchical keyring (`aws-kms-hierarchy`): data keys wrapped under keys derived from a *branch key*
//! that a [`BranchKeyStore`] hands out, byte-compatible with the AWS Material Providers Library's
//! `AwsKmsHierarchicalKeyring` (specification `framework/aws-kms/aws-kms-hierarchical-keyring.md`; design
//! note `docs/design/issue-29-keyrings.md` §1).
//!
//! A branch key is fetched once per cache lifetime ([`HierarchicalKeyring::new`]'s `ttl`) and then wraps
//! every message's own fresh data key locally: one store call (with a DynamoDB store, one `GetItem` and one
//! KMS `Decrypt`) per branch key version per TTL instead of one KMS call per message, and, unlike a
//! [`CachingKeyring`](super::CachingKeyring), no data key is ever used twice.
//!
//! # What protects a wrapped data key
//!
//! - **Key.** For each EDK a fresh 16-byte salt is drawn from the crate's CSPRNG (`rand`'s thread RNG,
//!   seeded from the operating system), and the wrapping key is
//!   `HMAC-SHA-256(branch key, 00000001 ‖ "aws-kms-hierarchy" ‖ 00 ‖ salt ‖ 00000100)`, NIST SP 800-108
//!   counter mode for one 32-byte block. The wrapping key is AES-256-GCM's, used for exactly one seal, and
//!   wiped after it.
//! - **IV.** 12 more random bytes from the same draw.
//! - **What the tag binds.** The additional data is `"aws-kms-hierarchy" ‖ branch key id ‖ version (16
//!   bytes) ‖ the message's serialized encryption context` (the materials' full context: pairs kept out of
//!   the header by a required-context decryptor included). An EDK moved to a message with another context,
//!   or relabelled with another branch key id or version, fails to open; the salt is bound through the key
//!   it derives, and the data key's length is fixed by the suite, which the EDK's exact length must match.
//! - **Why no (key, IV) pair repeats.** Every EDK has its own wrapping key, derived from its own random
//!   salt: two EDKs share one only if their salts collide (probability 2⁻¹²⁸ per pair, so about 2⁶⁴ EDKs
//!   under one branch key version before it becomes likely), and even then a repeat needs their random
//!   96-bit IVs to collide as well. Nothing is counted, so nothing repeats across processes or restarts.
//!
//! # Hostile EDKs
//!
//! On decrypt each EDK is checked in this order, and every check before the store call is free: provider id
//! `aws-kms-hierarchy`; provider info valid UTF-8 (otherwise the EDK is skipped with a reason, where the
//! Material Providers Library fails the whole decryption); provider info equal to this keyring's branch key
//! id; ciphertext exactly 60 bytes plus the suite's data key length (the Library checks this only after
//! fetching the branch key). Only then is the version read from the ciphertext and the branch key asked of
//! the cache or the store.
//!
//! # A caching keyring over this one
//!
//! Do not wrap a Hierarchical keyring in a [`CachingKeyring`](super::CachingKeyring): it would hand one data
//! key to many messages, the very thing this keyring exists to avoid, while saving no store call (branch
//! keys are cached already). A caching keyring cannot see which keyrings a multi-keyring holds, so this is
//! documented rather than refused.

mod cache;
#[cfg(feature = "hierarchy-ddb")]
mod ddb;
#[cfg(feature = "hierarchy-ddb")]
mod ddb_api;
#[cfg(feature = "hierarchy-ddb")]
mod item;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

pub use self::cache::{BranchKeyCache, DEFAULT_CAPACITY};
#[cfg(feature = "hierarchy-ddb")]
pub use self::ddb::DynamoDbBranchKeyStore;
pub use self::store::{
    BRANCH_KEY_LEN, BranchKeyFuture, BranchKeyMaterials, BranchKeyStore, BranchKeyStoreError, StaticBranchKeyStore,
};
use super::{DecryptionMaterials, EncryptionMaterials};
use crate::crypto::DataKey;
use crate::crypto::aead::AeadKey;
use crate::crypto::kdf_ctr::{self, KdfCtrDigest};
use crate::error::{Error, Reason, Result, Retry};
use crate::escape::clipped;
use crate::format::context::EncryptionContext;
use crate::format::edk::EncryptedDataKey;
use crate::format::header::IV_LEN;
pub use crate::format::hierarchy_edk::{BranchKeyVersion, InvalidBranchKeyVersion};
use crate::format::hierarchy_edk::{PROVIDER_ID, SALT_LEN, WrappedDataKey, wrapping_aad};

/// Picks the branch key for a message from its encryption context: one keyring for many tenants, each
/// with a branch key of its own.
///
/// A closure `Fn(&EncryptionContext) -> Result<String>` is one. On decrypt it sees the message's context,
/// which whoever wrote the message chose: a message can make the keyring ask the store for any branch key
/// id the supplier can return.
pub trait BranchKeyIdSupplier: Send + Sync {
    /// The branch key id for a message with `context`.
    ///
    /// # Errors
    ///
    /// Whatever the supplier refuses (typically [`Error::Keyring`] for a context that names no tenant): the
    /// keyring fails with it, on encrypt and on decrypt.
    fn branch_key_id(&self, context: &EncryptionContext) -> Result<String>;
}

impl<F: Fn(&EncryptionContext) -> Result<String> + Send + Sync> BranchKeyIdSupplier for F {
    fn branch_key_id(&self, context: &EncryptionContext) -> Result<String> {
        self(context)
    }
}

enum BranchKeyId {
    Fixed(String),
    Supplied(Box<dyn BranchKeyIdSupplier>),
}

/// Wraps each message's data key under a key derived from a branch key (see the
/// [module documentation](self)).
///
/// ```
/// use std::time::Duration;
/// use kms_envelope::keyring::hierarchy::{BranchKeyMaterials, HierarchicalKeyring, StaticBranchKeyStore};
/// use kms_envelope::{DecryptOptions, EncryptOptions};
///
/// # fn main() -> Result<(), kms_envelope::Error> {
/// let version = "e9ce18a3-edb5-4272-9f86-1cacb7997ff6".parse().expect("a UUID");
/// let store = StaticBranchKeyStore::new("offline")
///     .with_active(BranchKeyMaterials::new("tenant-7", version, &[0x42; 32])?);
/// let keyring = HierarchicalKeyring::new(store, "tenant-7", Duration::from_secs(600))?;
///
/// let message = kms_envelope::encrypt(&keyring, &EncryptOptions::new(), b"secret")?;
/// let decrypted = kms_envelope::decrypt(&keyring, &DecryptOptions::new(), &message)?;
/// assert_eq!(&decrypted.plaintext[..], b"secret");
/// # Ok(())
/// # }
/// ```
pub struct HierarchicalKeyring {
    store: Box<dyn BranchKeyStore>,
    branch_key_id: BranchKeyId,
    ttl: Duration,
    cache: Arc<BranchKeyCache>,
    partition_id: Vec<u8>,
}

impl std::fmt::Debug for HierarchicalKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let branch_key_id = match &self.branch_key_id {
            BranchKeyId::Fixed(id) => id.as_str(),
            BranchKeyId::Supplied(_) => "(supplied per message)",
        };
        f.debug_struct("HierarchicalKeyring")
            .field("store", &self.store.logical_name())
            .field("branch_key_id", &branch_key_id)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl HierarchicalKeyring {
    /// A keyring for branch key `branch_key_id` of `store`, keeping each branch key version it fetches for
    /// `ttl` in a [`BranchKeyCache`] of its own ([`DEFAULT_CAPACITY`] versions).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a zero `ttl` or an empty branch key id.
    pub fn new(store: impl BranchKeyStore + 'static, branch_key_id: impl Into<String>, ttl: Duration) -> Result<Self> {
        let branch_key_id = branch_key_id.into();
        if branch_key_id.is_empty() {
            return Err(Error::Config("a branch key id may not be empty".into()));
        }
        Self::build(Box::new(store), BranchKeyId::Fixed(branch_key_id), ttl)
    }

    /// A keyring that asks `supplier` for each message's branch key id.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a zero `ttl`.
    pub fn with_supplier(
        store: impl BranchKeyStore + 'static,
        supplier: impl BranchKeyIdSupplier + 'static,
        ttl: Duration,
    ) -> Result<Self> {
        Self::build(Box::new(store), BranchKeyId::Supplied(Box::new(supplier)), ttl)
    }

    fn build(store: Box<dyn BranchKeyStore>, branch_key_id: BranchKeyId, ttl: Duration) -> Result<Self> {
        if ttl.is_zero() {
            return Err(Error::Config("the branch key cache TTL must be positive".into()));
        }
        let mut partition_id = vec![0u8; 16];
        rand::fill(&mut partition_id[..]);
        let cache = Arc::new(BranchKeyCache::new(DEFAULT_CAPACITY));
        Ok(Self { store, branch_key_id, ttl, cache, partition_id })
    }

    /// Keeps branch keys in `cache`, which other keyrings may share: each sees only the entries of its own
    /// partition (see [`partition_id`](Self::partition_id)), and uses an entry only while it is younger than
    /// its own TTL.
    pub fn cache(mut self, cache: Arc<BranchKeyCache>) -> Self {
        self.cache = cache;
        self
    }

    /// Uses `partition_id` instead of a random one: keyrings with the same partition id and store name
    /// share the branch keys in a shared cache.
    pub fn partition_id(mut self, partition_id: impl Into<String>) -> Self {
        self.partition_id = partition_id.into().into_bytes();
        self
    }

    fn branch_key_id_for(&self, context: &EncryptionContext) -> Result<String> {
        let id = match &self.branch_key_id {
            BranchKeyId::Fixed(id) => return Ok(id.clone()),
            BranchKeyId::Supplied(supplier) => supplier.branch_key_id(context)?,
        };
        if id.is_empty() {
            return Err(Error::Keyring("the branch key id supplier returned an empty id".into()));
        }
        Ok(id)
    }

    /// The branch key from the cache, or from the store (and then into the cache): the active version for
    /// `version: None`. One store call at a time per cache id. Whichever it comes from, it is the branch key
    /// and version asked for (a cached entry for another is fetched again, see `BranchKeyCache::get_or_fetch`).
    async fn branch_key(
        &self,
        branch_key_id: &str,
        version: Option<&BranchKeyVersion>,
    ) -> std::result::Result<Arc<BranchKeyMaterials>, BranchKeyStoreError> {
        let name = self.store.logical_name();
        let id = match version {
            None => cache::active_id(&self.partition_id, name, branch_key_id),
            Some(version) => cache::version_id(&self.partition_id, name, branch_key_id, version),
        };
        let fits = |materials: &BranchKeyMaterials| {
            materials.branch_key_id() == branch_key_id && version.is_none_or(|v| v == materials.version())
        };
        self.cache
            .get_or_fetch(&id, self.ttl, fits, || async {
                let materials = match version {
                    None => self.store.get_active(branch_key_id).await?,
                    Some(version) => self.store.get_version(branch_key_id, version).await?,
                };
                if !fits(&materials) {
                    return Err(BranchKeyStoreError::WrongBranchKey {
                        branch_key_id: branch_key_id.to_owned(),
                        version: version.copied(),
                    });
                }
                Ok(materials)
            })
            .await
    }

    async fn encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        let branch_key_id = self.branch_key_id_for(materials.encryption_context())?;
        let branch_key = self
            .branch_key(&branch_key_id, None)
            .await
            .map_err(|err| Error::Keyring(Reason::new(format!("Hierarchical keyring: {err}"), err.retry())))?;
        if materials.data_key().is_none() {
            materials.set_data_key(DataKey::random(materials.suite().key_len()))?;
        }
        let context = materials.encryption_context().serialize()?;
        let data_key = materials.data_key().ok_or_else(|| Error::Keyring("no data key".into()))?;
        let edk = wrap(&branch_key, data_key, &context)?;
        materials.add_encrypted_data_key(edk);
        Ok(materials)
    }

    async fn decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        materials.require_no_data_key()?;
        let branch_key_id = self.branch_key_id_for(materials.encryption_context())?;
        let context = materials.encryption_context().serialize()?;
        let key_len = materials.suite().key_len();
        let (mut reasons, mut retry) = (Vec::new(), Retry::Never);
        // Versions the store failed to give in this call, with why: a message may name one version in
        // thousands of EDKs, and a failure is not cached, so each would be another store call.
        let mut failed: HashMap<BranchKeyVersion, String> = HashMap::new();
        for edk in edks {
            let parts = match match_edk(edk, &branch_key_id, key_len) {
                Ok(parts) => parts,
                Err(reason) => {
                    reasons.push(format!("Hierarchical keyring: {reason}"));
                    continue;
                }
            };
            if let Some(reason) = failed.get(&parts.version) {
                reasons.push(reason.clone());
                continue;
            }
            let branch_key = match self.branch_key(&branch_key_id, Some(&parts.version)).await {
                Ok(branch_key) => branch_key,
                Err(err) => {
                    retry = retry.or(err.retry());
                    let reason = format!("Hierarchical keyring: {err}");
                    reasons.push(reason.clone());
                    failed.insert(parts.version, reason);
                    continue;
                }
            };
            match unwrap(&branch_key, &parts, &context)? {
                Some(data_key) => {
                    materials.set_data_key(data_key)?;
                    return Ok(materials);
                }
                None => reasons.push(format!(
                    "Hierarchical keyring: unwrapping with branch key \"{}\" version {} failed (wrong branch key \
                     or encryption context)",
                    clipped(&branch_key_id),
                    parts.version
                )),
            }
        }
        Err(Error::NoDataKeyDecrypted { reasons, retry })
    }
}

crate::keyring::keyring_by_async_methods!(HierarchicalKeyring);

/// The ciphertext's parts if `edk` is one of this keyring's, or why not. No store call happens before this
/// says yes.
fn match_edk<'a>(edk: &'a EncryptedDataKey, branch_key_id: &str, key_len: usize) -> Result<WrappedDataKey<'a>, String> {
    if edk.provider_id != PROVIDER_ID {
        return Err(format!("provider id \"{}\" is not {PROVIDER_ID}", clipped(&edk.provider_id)));
    }
    let Ok(edk_branch_key_id) = std::str::from_utf8(&edk.provider_info) else {
        return Err("an aws-kms-hierarchy EDK whose provider info (the branch key id) is not UTF-8".into());
    };
    if edk_branch_key_id != branch_key_id {
        return Err(format!(
            "EDK for branch key \"{}\", not \"{}\"",
            clipped(edk_branch_key_id),
            clipped(branch_key_id)
        ));
    }
    WrappedDataKey::parse(&edk.ciphertext, key_len)
        .map_err(|err| format!("EDK for branch key \"{}\": {err}", clipped(branch_key_id)))
}

/// The AES-256-GCM key for one EDK: the branch key in counter mode under the EDK's salt (module docs).
fn wrapping_key(branch_key: &BranchKeyMaterials, salt: &[u8; SALT_LEN]) -> Result<AeadKey> {
    let mut derived = Zeroizing::new([0u8; 32]);
    kdf_ctr::derive(KdfCtrDigest::Sha256, branch_key.key(), PROVIDER_ID.as_bytes(), salt, &mut derived[..]);
    AeadKey::new(&derived[..])
}

fn wrap(branch_key: &BranchKeyMaterials, data_key: &DataKey, context: &[u8]) -> Result<EncryptedDataKey> {
    let mut random = [0u8; SALT_LEN + IV_LEN];
    rand::fill(&mut random);
    let (salt, iv) = random.split_at(SALT_LEN);
    let (salt, iv): ([u8; SALT_LEN], [u8; IV_LEN]) = (salt.try_into().expect("16"), iv.try_into().expect("12"));
    let aad = wrapping_aad(branch_key.branch_key_id(), branch_key.version(), context);
    let mut ciphertext = data_key.as_bytes().to_vec();
    let tag = wrapping_key(branch_key, &salt)?.seal_in_place(&iv, &aad, &mut ciphertext);
    let wrapped = WrappedDataKey { salt, iv, version: *branch_key.version(), ciphertext: &ciphertext, tag };
    Ok(EncryptedDataKey {
        provider_id: PROVIDER_ID.to_owned(),
        provider_info: branch_key.branch_key_id().as_bytes().to_vec(),
        ciphertext: wrapped.to_bytes(),
    })
}

/// The data key, or `None` if the tag does not verify.
fn unwrap(branch_key: &BranchKeyMaterials, parts: &WrappedDataKey<'_>, context: &[u8]) -> Result<Option<DataKey>> {
    let aad = wrapping_aad(branch_key.branch_key_id(), &parts.version, context);
    let mut data_key = Zeroizing::new(vec![0u8; parts.ciphertext.len()]);
    let key = wrapping_key(branch_key, &parts.salt)?;
    if key.open_to(&parts.iv, &aad, parts.ciphertext, &parts.tag, &mut data_key).is_err() {
        return Ok(None);
    }
    Ok(Some(DataKey::new(std::mem::take(&mut *data_key))))
}
