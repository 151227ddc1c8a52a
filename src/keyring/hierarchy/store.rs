//! Branch key stores: where the Hierarchical keyring gets its branch keys.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use zeroize::Zeroizing;

use super::BranchKeyVersion;
use crate::error::{Error, Reason, Result, Retry};
use crate::escape::{Escaped, clipped};

/// Bytes of a branch key.
pub const BRANCH_KEY_LEN: usize = 32;

/// One version of a branch key, as a [`BranchKeyStore`] hands it out: its id, its version, the 32-byte key
/// (wiped on drop, never shown by `Debug`) and the custom encryption context the key was created with.
#[derive(Clone)]
pub struct BranchKeyMaterials {
    branch_key_id: String,
    version: BranchKeyVersion,
    key: Zeroizing<[u8; BRANCH_KEY_LEN]>,
    custom_context: BTreeMap<String, String>,
}

impl fmt::Debug for BranchKeyMaterials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BranchKeyMaterials")
            .field("branch_key_id", &self.branch_key_id)
            .field("version", &self.version)
            .field("custom_context", &self.custom_context)
            .finish_non_exhaustive()
    }
}

impl BranchKeyMaterials {
    /// Version `version` of branch key `branch_key_id`, whose key is `key`. The key is copied.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an empty branch key id or a key that is not 32 bytes.
    pub fn new(branch_key_id: impl Into<String>, version: BranchKeyVersion, key: &[u8]) -> Result<Self> {
        let branch_key_id = branch_key_id.into();
        if branch_key_id.is_empty() {
            return Err(Error::Config("a branch key id may not be empty".into()));
        }
        if key.len() != BRANCH_KEY_LEN {
            return Err(Error::Config(format!("a branch key of {} bytes; {BRANCH_KEY_LEN} required", key.len())));
        }
        let mut copy = Zeroizing::new([0u8; BRANCH_KEY_LEN]);
        copy.copy_from_slice(key);
        Ok(Self { branch_key_id, version, key: copy, custom_context: BTreeMap::new() })
    }

    /// Sets the custom encryption context the branch key was created with (a DynamoDB store's
    /// `aws-crypto-ec:` attributes, prefix removed). The Hierarchical keyring does not use it.
    pub fn with_custom_context(mut self, context: BTreeMap<String, String>) -> Self {
        self.custom_context = context;
        self
    }

    /// The branch key id.
    pub fn branch_key_id(&self) -> &str {
        &self.branch_key_id
    }

    /// The version.
    pub fn version(&self) -> &BranchKeyVersion {
        &self.version
    }

    /// The custom encryption context.
    pub fn custom_context(&self) -> &BTreeMap<String, String> {
        &self.custom_context
    }

    pub(super) fn key(&self) -> &[u8; BRANCH_KEY_LEN] {
        &self.key
    }
}

/// Why a [`BranchKeyStore`] could not hand out a branch key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BranchKeyStoreError {
    /// The store holds no such branch key, or not this version of it (`version` is `None` when the active
    /// version was asked for). Typically a message written with another store, or a key id from an
    /// encryption context that names no branch key.
    #[error("branch key {} {} not found in the store", Quoted(.branch_key_id), VersionText(.version))]
    NotFound {
        /// The id asked for.
        branch_key_id: String,
        /// The version asked for; `None` for the active one.
        version: Option<BranchKeyVersion>,
    },

    /// The store answered with another branch key or version than was asked for: a store that is broken,
    /// or whose items were edited.
    #[error("the branch key store answered with another key than branch key {} {}", Quoted(.branch_key_id), VersionText(.version))]
    WrongBranchKey {
        /// The id asked for.
        branch_key_id: String,
        /// The version asked for; `None` for the active one.
        version: Option<BranchKeyVersion>,
    },

    /// The store could not be read (a service call failed); the reason says whether a retry may help.
    #[error("branch key store unavailable: {}", Quoted(.0.as_str()))]
    Unavailable(Reason),

    /// A store item is not a valid branch key item (version 1 layout): an attribute missing or of the wrong
    /// type, an unknown `type`, a `tablename` attribute, a version that is not a UUID. Refused before any
    /// KMS call.
    #[error("branch key {}: invalid store item: {}", Quoted(.branch_key_id), Quoted(.reason))]
    InvalidItem {
        /// The id asked for.
        branch_key_id: String,
        /// What is wrong with the item.
        reason: String,
    },

    /// The item's `hierarchy-version` is not `1`, the only layout this store reads. Refused before any
    /// KMS call.
    #[error(
        "branch key {}: store item of hierarchy-version {}; only version 1 is supported",
        Quoted(.branch_key_id),
        Quoted(.hierarchy_version)
    )]
    UnsupportedHierarchyVersion {
        /// The id asked for.
        branch_key_id: String,
        /// The item's `hierarchy-version`, as stored.
        hierarchy_version: String,
    },

    /// The item names another KMS key (`kms-arn`) than the store is configured with. Refused before any
    /// KMS call: an item copied from another store, or edited.
    #[error(
        "branch key {}: the store item is encrypted under KMS key {}, not the configured {}",
        Quoted(.branch_key_id),
        Quoted(.item_key_arn),
        Quoted(.configured_key_arn)
    )]
    KmsKeyMismatch {
        /// The id asked for.
        branch_key_id: String,
        /// The item's `kms-arn`.
        item_key_arn: String,
        /// The store's KMS key.
        configured_key_arn: String,
    },

    /// KMS refused the item's encrypted key under the encryption context built from the item: an item
    /// edited (an attribute changed) or read under another logical store name than it was written with.
    #[error(
        "branch key {}: KMS refused the store item under its encryption context (an edited item, or another \
         logical key store name?): {}",
        Quoted(.branch_key_id),
        Quoted(.detail)
    )]
    ItemContextMismatch {
        /// The id asked for.
        branch_key_id: String,
        /// KMS's answer.
        detail: String,
    },

    /// `CreateKey` found the branch key id in the store already.
    #[error("branch key {} exists already", Quoted(.branch_key_id))]
    AlreadyExists {
        /// The id to create.
        branch_key_id: String,
    },

    /// `VersionKey` lost a race: the active item changed (another writer versioned the key) or vanished
    /// between its read and the conditional write. Nothing was written; trying again versions the key anew.
    #[error("branch key {}: the active version changed while it was versioned; nothing written", Quoted(.branch_key_id))]
    VersionRace {
        /// The id to version.
        branch_key_id: String,
    },

    /// A request refused before any call (an id without encryption context for `CreateKey`, an empty id).
    #[error("branch key store: {}", Quoted(.0))]
    InvalidRequest(String),
}

impl BranchKeyStoreError {
    /// Whether a retry may cure it.
    pub fn retry(&self) -> Retry {
        match self {
            Self::Unavailable(reason) => reason.retry(),
            Self::VersionRace { .. } => Retry::Later,
            Self::NotFound { .. }
            | Self::WrongBranchKey { .. }
            | Self::InvalidItem { .. }
            | Self::UnsupportedHierarchyVersion { .. }
            | Self::KmsKeyMismatch { .. }
            | Self::ItemContextMismatch { .. }
            | Self::AlreadyExists { .. }
            | Self::InvalidRequest(_) => Retry::Never,
        }
    }
}

/// A field of a [`BranchKeyStoreError`] as its `Display` quotes it: escaped, and clipped to
/// [`QUOTED_MAX`](crate::escape::QUOTED_MAX) bytes. Branch key ids come from encryption contexts and
/// supplier input, item attributes and service answers from the store: any of them may be 64 KiB.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Escaped(&clipped(self.0)).fmt(f)
    }
}

struct VersionText<'a>(&'a Option<BranchKeyVersion>);

impl fmt::Display for VersionText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(version) => write!(f, "version {version}"),
            None => f.write_str("(active version)"),
        }
    }
}

/// The future a [`BranchKeyStore`] returns.
pub type BranchKeyFuture<'a> =
    Pin<Box<dyn Future<Output = std::result::Result<BranchKeyMaterials, BranchKeyStoreError>> + Send + 'a>>;

/// Where branch keys live: the Material Providers Library's `GetActiveBranchKey` and `GetBranchKeyVersion`.
///
/// [`StaticBranchKeyStore`] holds keys in memory; a store on DynamoDB (branch keys encrypted under a KMS
/// key) implements the same trait. Implementations must never log or put key material into errors.
pub trait BranchKeyStore: Send + Sync {
    /// The store's logical name: part of the ids under which a [`BranchKeyCache`](super::BranchKeyCache)
    /// keeps its keys, so that one cache can serve keyrings of several stores.
    fn logical_name(&self) -> &str;

    /// The version of `branch_key_id` that encrypts now.
    ///
    /// # Errors
    ///
    /// [`BranchKeyStoreError::NotFound`] if the store holds no such branch key; other variants when the
    /// store cannot be read.
    fn get_active<'a>(&'a self, branch_key_id: &'a str) -> BranchKeyFuture<'a>;

    /// Version `version` of `branch_key_id`, active or not: what decrypts a message.
    ///
    /// # Errors
    ///
    /// [`BranchKeyStoreError::NotFound`] if the store holds no such branch key or version; other variants
    /// when the store cannot be read.
    fn get_version<'a>(&'a self, branch_key_id: &'a str, version: &'a BranchKeyVersion) -> BranchKeyFuture<'a>;
}

impl<S: BranchKeyStore + ?Sized> BranchKeyStore for std::sync::Arc<S> {
    fn logical_name(&self) -> &str {
        (**self).logical_name()
    }

    fn get_active<'a>(&'a self, branch_key_id: &'a str) -> BranchKeyFuture<'a> {
        (**self).get_active(branch_key_id)
    }

    fn get_version<'a>(&'a self, branch_key_id: &'a str, version: &'a BranchKeyVersion) -> BranchKeyFuture<'a> {
        (**self).get_version(branch_key_id, version)
    }
}

/// Branch keys held in memory, for tests and offline use: no KMS, no DynamoDB.
///
/// ```
/// use kms_envelope::keyring::hierarchy::{BranchKeyMaterials, StaticBranchKeyStore};
///
/// # fn main() -> Result<(), kms_envelope::Error> {
/// let version = "e9ce18a3-edb5-4272-9f86-1cacb7997ff6".parse().expect("a UUID");
/// let key = BranchKeyMaterials::new("tenant-7", version, &[0x42; 32])?;
/// let store = StaticBranchKeyStore::new("offline").with_active(key);
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct StaticBranchKeyStore {
    logical_name: String,
    /// Branch key id -> its versions and which of them is active.
    keys: HashMap<String, StaticBranchKey>,
}

#[derive(Debug, Default)]
struct StaticBranchKey {
    active: Option<BranchKeyVersion>,
    versions: HashMap<BranchKeyVersion, BranchKeyMaterials>,
}

impl StaticBranchKeyStore {
    /// An empty store called `logical_name`.
    pub fn new(logical_name: impl Into<String>) -> Self {
        Self { logical_name: logical_name.into(), keys: HashMap::new() }
    }

    /// Adds `materials` as the active version of its branch key (the version encrypts; it and every
    /// other version decrypt).
    pub fn with_active(mut self, materials: BranchKeyMaterials) -> Self {
        let entry = self.keys.entry(materials.branch_key_id.clone()).or_default();
        entry.active = Some(materials.version);
        entry.versions.insert(materials.version, materials);
        self
    }

    /// Adds `materials` as a version of its branch key that only decrypts.
    pub fn with_version(mut self, materials: BranchKeyMaterials) -> Self {
        let entry = self.keys.entry(materials.branch_key_id.clone()).or_default();
        entry.versions.insert(materials.version, materials);
        self
    }

    fn find(
        &self,
        branch_key_id: &str,
        version: Option<&BranchKeyVersion>,
    ) -> std::result::Result<BranchKeyMaterials, BranchKeyStoreError> {
        let key = self.keys.get(branch_key_id);
        let found = match version {
            Some(version) => key.and_then(|k| k.versions.get(version)),
            None => key.and_then(|k| k.versions.get(k.active.as_ref()?)),
        };
        found.cloned().ok_or_else(|| BranchKeyStoreError::NotFound {
            branch_key_id: branch_key_id.to_owned(),
            version: version.copied(),
        })
    }
}

impl BranchKeyStore for StaticBranchKeyStore {
    fn logical_name(&self) -> &str {
        &self.logical_name
    }

    fn get_active<'a>(&'a self, branch_key_id: &'a str) -> BranchKeyFuture<'a> {
        Box::pin(async move { self.find(branch_key_id, None) })
    }

    fn get_version<'a>(&'a self, branch_key_id: &'a str, version: &'a BranchKeyVersion) -> BranchKeyFuture<'a> {
        Box::pin(async move { self.find(branch_key_id, Some(version)) })
    }
}
