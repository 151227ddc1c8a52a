//! The branch key store on DynamoDB, the AWS Material Providers Library's key store (version 1 items;
//! specification `branch-key-store.md`, design note `docs/design/issue-29-keyrings.md` §1.5): branch keys
//! encrypted under one KMS key, each bound by its KMS encryption context to its item and to the store's
//! logical name.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use aws_config::SdkConfig;

use super::BranchKeyVersion;
use super::ddb_api::{Attr, ConditionalPut, DdbApi, DdbError, DdbErrorKind, Item};
use super::item::{self, BranchKeyItem, Wanted};
use super::store::{BRANCH_KEY_LEN, BranchKeyFuture, BranchKeyMaterials, BranchKeyStore, BranchKeyStoreError};
use crate::error::{Reason, Retry};
use crate::keyring::kms::KmsArn;
use crate::keyring::kms::api::{CallParams, KmsApi};
use crate::keyring::kms::error::{KmsError, KmsErrorKind};
use crate::keyring::kms::runtime::on_runtime;

type StoreResult<T> = std::result::Result<T, BranchKeyStoreError>;

/// The `ConditionExpression` of every new item: nothing of that key exists yet.
const NEW_ITEM: &str = "attribute_not_exists(#BranchKeyIdentifierField)";
/// The condition of `VersionKey`'s write of the active item: it still exists and still holds the key that
/// was read and authenticated (the specification's race mitigation; the Material Providers Library 1.11
/// checks existence only).
const SAME_ACTIVE_ITEM: &str = "attribute_exists(#BranchKeyIdentifierField) AND enc = :encOld";
const NAME_PLACEHOLDER: (&str, &str) = ("#BranchKeyIdentifierField", item::BRANCH_KEY_ID);

/// Branch keys in a DynamoDB table, each encrypted under one KMS key: the Material Providers Library's
/// `KeyStore` with a `kmsKeyArn` configuration, readable and writable by every AWS Encryption SDK.
///
/// Reading a version costs one `GetItem` and one KMS `Decrypt`, and the Hierarchical keyring caches what it
/// reads. Each item is checked (version 1 layout, the configured KMS key) before KMS sees it, and KMS
/// decrypts it only under the encryption context built from the item and the store's *logical* name: an
/// edited item, or an item of a store with another logical name, fails at KMS.
///
/// ```no_run
/// # fn main() -> Result<(), kms_envelope::Error> {
/// use std::collections::BTreeMap;
/// use std::time::Duration;
/// use kms_envelope::keyring::hierarchy::{DynamoDbBranchKeyStore, HierarchicalKeyring};
///
/// let kms = kms_envelope::KmsClients::from_env_blocking()?;
/// let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// let store = DynamoDbBranchKeyStore::from_clients(&kms, "branch-keys", key, "prod-keys")?;
/// let branch_key_id = store.create_key_blocking(None, &BTreeMap::new())?;
/// let keyring = HierarchicalKeyring::new(store, branch_key_id, Duration::from_secs(600))?;
/// # let _ = keyring;
/// # Ok(()) }
/// ```
pub struct DynamoDbBranchKeyStore {
    ddb: Arc<dyn DdbApi>,
    kms: Arc<dyn KmsApi>,
    table: String,
    kms_key_arn: String,
    logical_name: String,
    grant_tokens: Vec<String>,
}

impl fmt::Debug for DynamoDbBranchKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbBranchKeyStore")
            .field("table", &self.table)
            .field("kms_key_arn", &self.kms_key_arn)
            .field("logical_name", &self.logical_name)
            .finish_non_exhaustive()
    }
}

impl DynamoDbBranchKeyStore {
    /// The store in DynamoDB table `table` (through `ddb`), whose branch keys are encrypted under the KMS
    /// key `kms_key_arn` (through `kms`, a client in the key's region), known as `logical_name`: the name is
    /// part of every branch key's encryption context, so it must be the name the keys were created under
    /// (it need not be the table's name).
    ///
    /// # Errors
    ///
    /// [`crate::Error::Config`] when `kms_key_arn` is not a KMS key ARN (an alias or bare key id cannot be
    /// compared with the ARN each item names), or `table` or `logical_name` is empty.
    pub fn new(
        ddb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        table: impl Into<String>,
        kms_key_arn: &str,
        logical_name: impl Into<String>,
    ) -> crate::Result<Self> {
        Self::with_apis(Arc::new(ddb), Arc::new(kms), table.into(), kms_key_arn, logical_name.into())
    }

    /// The store as [`new`](Self::new) says, with clients from `kms`'s AWS configuration: DynamoDB in the
    /// configuration's region (else the key's), KMS in the key's region, and `kms`'s grant tokens.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn from_clients(
        kms: &crate::KmsClients,
        table: impl Into<String>,
        kms_key_arn: &str,
        logical_name: impl Into<String>,
    ) -> crate::Result<Self> {
        let arn = parse_key_arn(kms_key_arn)?;
        let config: &SdkConfig = kms.sdk_config();
        let mut ddb_config = aws_sdk_dynamodb::config::Builder::from(config);
        if config.region().is_none() {
            ddb_config = ddb_config.region(aws_config::Region::new(arn.region().as_str().to_owned()));
        }
        let ddb = aws_sdk_dynamodb::Client::from_conf(ddb_config.build());
        let store = Self::new(ddb, kms.client_for_key(kms_key_arn)?, table, kms_key_arn, logical_name)?;
        Ok(store.with_grant_tokens(kms.grant_tokens().to_vec()))
    }

    pub(crate) fn with_apis(
        ddb: Arc<dyn DdbApi>,
        kms: Arc<dyn KmsApi>,
        table: String,
        kms_key_arn: &str,
        logical_name: String,
    ) -> crate::Result<Self> {
        parse_key_arn(kms_key_arn)?;
        if table.is_empty() || logical_name.is_empty() {
            return Err(crate::Error::Config("a branch key store needs a table and a logical name".into()));
        }
        Ok(Self { ddb, kms, table, kms_key_arn: kms_key_arn.to_owned(), logical_name, grant_tokens: Vec::new() })
    }

    /// Grant tokens sent with every KMS call.
    pub fn with_grant_tokens(mut self, tokens: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.grant_tokens = tokens.into_iter().map(Into::into).collect();
        self
    }

    /// The DynamoDB table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The KMS key the branch keys are encrypted under.
    pub fn kms_key_arn(&self) -> &str {
        &self.kms_key_arn
    }

    /// Creates the table with the key store's key schema (`branch-key-id` and `type`, both strings), billed
    /// per request, unless a table of that name exists. Returns whether it created one. A new table may
    /// still be `CREATING` for a few seconds on return (DynamoDB, not moto).
    ///
    /// # Errors
    ///
    /// [`BranchKeyStoreError::Unavailable`] when DynamoDB refuses or cannot be reached.
    pub async fn create_table(&self) -> StoreResult<bool> {
        if self.ddb_call(self.ddb.table_status(&self.table)).await?.is_some() {
            return Ok(false);
        }
        self.ddb_call(self.ddb.create_table(&self.table)).await?;
        Ok(true)
    }

    /// Creates a branch key: its first version, the active item and the beacon key, in one conditional
    /// write (the Material Providers Library's `CreateKey`). `branch_key_id` `None` gives a random UUID;
    /// an id of the caller's needs a non-empty `custom_context` (the Library's rule: the context is what
    /// tells such keys apart), which every version of the key then carries. Returns the branch key id.
    ///
    /// KMS calls: `GenerateDataKeyWithoutPlaintext` (the key, under the version's context), `ReEncrypt` (the
    /// same key under the active item's context), `GenerateDataKeyWithoutPlaintext` (the beacon key); no
    /// plaintext key leaves KMS.
    ///
    /// # Errors
    ///
    /// [`BranchKeyStoreError::InvalidRequest`] for an empty id or an id without context (before any call);
    /// [`BranchKeyStoreError::AlreadyExists`] if the id is taken; [`BranchKeyStoreError::Unavailable`] when
    /// KMS or DynamoDB fail.
    pub async fn create_key(
        &self,
        branch_key_id: Option<&str>,
        custom_context: &BTreeMap<String, String>,
    ) -> StoreResult<String> {
        let branch_key_id = match branch_key_id {
            Some("") => return Err(BranchKeyStoreError::InvalidRequest("a branch key id may not be empty".into())),
            Some(_) if custom_context.is_empty() => {
                return Err(BranchKeyStoreError::InvalidRequest(
                    "a branch key id of the caller's needs an encryption context".into(),
                ));
            }
            Some(id) => id.to_owned(),
            None => random_version().to_string(),
        };
        let version = random_version();
        let now = item::create_time(std::time::SystemTime::now());
        let context = item::version_context(
            &branch_key_id,
            &version,
            &now,
            &self.logical_name,
            &self.kms_key_arn,
            custom_context,
        );
        let (version_enc, active_enc) = self.new_version_keys(&branch_key_id, &context).await?;
        let beacon = item::beacon_context(&context);
        let beacon_enc = self.generate_without_plaintext(&branch_key_id, &beacon).await?;
        let puts = vec![
            new_item(item::item_of(&context, version_enc)),
            new_item(item::item_of(&item::active_context(&context), active_enc)),
            new_item(item::item_of(&beacon, beacon_enc)),
        ];
        match self.ddb_call(self.ddb.transact_put(&self.table, puts)).await {
            Err(Failed::Condition) => Err(BranchKeyStoreError::AlreadyExists { branch_key_id }),
            other => other.map_err(BranchKeyStoreError::from).map(|()| branch_key_id),
        }
    }

    /// Makes a new version of `branch_key_id` the active one (the Material Providers Library's
    /// `VersionKey`); older versions stay readable. Returns the new version.
    ///
    /// The active item is read, checked, and authenticated by KMS (`ReEncrypt` from its context to itself)
    /// before anything is written; the write succeeds only if the active item still holds the key that was
    /// authenticated.
    ///
    /// # Errors
    ///
    /// [`BranchKeyStoreError::NotFound`] for an unknown id; the item refusals of
    /// [`get_active`](BranchKeyStore::get_active); [`BranchKeyStoreError::VersionRace`] when another writer
    /// changed the active item meanwhile; [`BranchKeyStoreError::Unavailable`] when KMS or DynamoDB fail.
    pub async fn version_key(&self, branch_key_id: &str) -> StoreResult<BranchKeyVersion> {
        let active = self.read_item(branch_key_id, Wanted::Active).await?;
        self.re_encrypt(branch_key_id, &active.context, &active.context, active.enc.clone()).await?;
        let version = random_version();
        let mut context = active.context.clone();
        context.remove(item::VERSION);
        context.insert(item::TYPE.to_owned(), format!("{}{version}", item::VERSION_PREFIX));
        context.insert(item::CREATE_TIME.to_owned(), item::create_time(std::time::SystemTime::now()));
        let (version_enc, active_enc) = self.new_version_keys(branch_key_id, &context).await?;
        let active_put = ConditionalPut {
            item: item::item_of(&item::active_context(&context), active_enc),
            condition: SAME_ACTIVE_ITEM,
            names: vec![NAME_PLACEHOLDER],
            values: vec![(":encOld", Attr::B(active.enc))],
        };
        let puts = vec![new_item(item::item_of(&context, version_enc)), active_put];
        match self.ddb_call(self.ddb.transact_put(&self.table, puts)).await {
            Err(Failed::Condition) => Err(BranchKeyStoreError::VersionRace { branch_key_id: branch_key_id.to_owned() }),
            other => other.map_err(BranchKeyStoreError::from).map(|()| version),
        }
    }

    /// [`create_key`](Self::create_key) for synchronous code. Do not call it on an async runtime's thread.
    ///
    /// # Errors
    ///
    /// As [`create_key`](Self::create_key), as [`crate::Error::Keyring`].
    pub fn create_key_blocking(
        &self,
        branch_key_id: Option<&str>,
        custom_context: &BTreeMap<String, String>,
    ) -> crate::Result<String> {
        crate::keyring::block_on(self.create_key(branch_key_id, custom_context)).map_err(keyring_error)
    }

    /// [`version_key`](Self::version_key) for synchronous code. Do not call it on an async runtime's thread.
    ///
    /// # Errors
    ///
    /// As [`version_key`](Self::version_key), as [`crate::Error::Keyring`].
    pub fn version_key_blocking(&self, branch_key_id: &str) -> crate::Result<BranchKeyVersion> {
        crate::keyring::block_on(self.version_key(branch_key_id)).map_err(keyring_error)
    }

    /// [`create_table`](Self::create_table) for synchronous code.
    ///
    /// # Errors
    ///
    /// As [`create_table`](Self::create_table), as [`crate::Error::Keyring`].
    pub fn create_table_blocking(&self) -> crate::Result<bool> {
        crate::keyring::block_on(self.create_table()).map_err(keyring_error)
    }

    /// A new version's two encrypted keys: under its own `context`, and (the same key) under the active
    /// item's context.
    async fn new_version_keys(
        &self,
        branch_key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> StoreResult<(Vec<u8>, Vec<u8>)> {
        let version_enc = self.generate_without_plaintext(branch_key_id, context).await?;
        let active = item::active_context(context);
        let active_enc = self.re_encrypt(branch_key_id, context, &active, version_enc.clone()).await?;
        Ok((version_enc, active_enc))
    }

    fn params(&self, context: &BTreeMap<String, String>) -> CallParams {
        CallParams {
            key_id: self.kms_key_arn.clone(),
            context: context.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<HashMap<_, _>>(),
            grant_tokens: self.grant_tokens.clone(),
        }
    }

    async fn generate_without_plaintext(
        &self,
        branch_key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> StoreResult<Vec<u8>> {
        let call = self.kms.generate_data_key_without_plaintext(self.params(context), BRANCH_KEY_LEN);
        let out = self.kms_call("GenerateDataKeyWithoutPlaintext", branch_key_id, call).await?;
        self.check_key_id("GenerateDataKeyWithoutPlaintext", out.key_id.as_deref())?;
        Ok(out.ciphertext)
    }

    async fn re_encrypt(
        &self,
        branch_key_id: &str,
        from: &BTreeMap<String, String>,
        to: &BTreeMap<String, String>,
        ciphertext: Vec<u8>,
    ) -> StoreResult<Vec<u8>> {
        let call = self.kms.re_encrypt(self.params(from), self.params(to), ciphertext);
        let out = self.kms_call("ReEncrypt", branch_key_id, call).await?;
        self.check_key_id("ReEncrypt", out.source_key_id.as_deref())?;
        self.check_key_id("ReEncrypt", out.key_id.as_deref())?;
        Ok(out.ciphertext)
    }

    /// A KMS answer's key must be the store's key.
    fn check_key_id(&self, operation: &str, returned: Option<&str>) -> StoreResult<()> {
        if returned == Some(self.kms_key_arn.as_str()) {
            return Ok(());
        }
        Err(BranchKeyStoreError::Unavailable(Reason::new(
            format!(
                "AWS KMS {operation} with key {}: KMS answered for key {:?}, not the store's key",
                self.kms_key_arn,
                returned.unwrap_or("(none)")
            ),
            Retry::Never,
        )))
    }

    /// Runs a KMS call; KMS refusing a ciphertext under its context is [`BranchKeyStoreError::ItemContextMismatch`].
    async fn kms_call<T: Send + 'static>(
        &self,
        operation: &str,
        branch_key_id: &str,
        call: crate::keyring::kms::api::KmsFuture<T>,
    ) -> StoreResult<T> {
        match on_runtime(call).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(err)) if err.kind == KmsErrorKind::InvalidCiphertext => {
                Err(BranchKeyStoreError::ItemContextMismatch {
                    branch_key_id: branch_key_id.to_owned(),
                    detail: err.to_string(),
                })
            }
            Ok(Err(err)) => Err(kms_unavailable(operation, &self.kms_key_arn, &err)),
            Err(err) => Err(BranchKeyStoreError::Unavailable(Reason::new(err.to_string(), Retry::Never))),
        }
    }

    async fn ddb_call<T: Send + 'static>(&self, call: super::ddb_api::DdbFuture<T>) -> Result<T, Failed> {
        match on_runtime(call).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(err)) if err.kind == DdbErrorKind::ConditionFailed => Err(Failed::Condition),
            Ok(Err(err)) => Err(Failed::Ddb(self.table.clone(), err)),
            Err(err) => Err(Failed::Other(Reason::new(err.to_string(), Retry::Never))),
        }
    }

    /// `GetItem` of the item `wanted` of `branch_key_id`, checked (layout, KMS key) but not decrypted.
    async fn read_item(&self, branch_key_id: &str, wanted: Wanted<'_>) -> StoreResult<BranchKeyItem> {
        if branch_key_id.is_empty() {
            return Err(BranchKeyStoreError::InvalidRequest("a branch key id may not be empty".into()));
        }
        let key = Item::from([
            (item::BRANCH_KEY_ID.to_owned(), Attr::S(branch_key_id.to_owned())),
            (item::TYPE.to_owned(), Attr::S(wanted.type_value())),
        ]);
        let found = self.ddb_call(self.ddb.get_item(&self.table, key)).await?;
        let Some(found) = found else {
            return Err(BranchKeyStoreError::NotFound {
                branch_key_id: branch_key_id.to_owned(),
                version: match wanted {
                    Wanted::Active => None,
                    Wanted::Version(version) => Some(*version),
                },
            });
        };
        item::check(found, branch_key_id, wanted, &self.logical_name, &self.kms_key_arn)
    }

    /// The branch key in the item `wanted`: read, checked, then decrypted by KMS under its context.
    async fn materials(&self, branch_key_id: &str, wanted: Wanted<'_>) -> StoreResult<BranchKeyMaterials> {
        let item = self.read_item(branch_key_id, wanted).await?;
        let call = self.kms.decrypt(self.params(&item.context), item.enc.clone());
        let out = self.kms_call("Decrypt", branch_key_id, call).await?;
        self.check_key_id("Decrypt", out.key_id.as_deref())?;
        let materials = BranchKeyMaterials::new(branch_key_id, item.version, &out.plaintext).map_err(|_| {
            BranchKeyStoreError::InvalidItem {
                branch_key_id: branch_key_id.to_owned(),
                reason: format!("KMS decrypted a key of {} bytes, not {BRANCH_KEY_LEN}", out.plaintext.len()),
            }
        })?;
        Ok(materials.with_custom_context(item.custom_context()))
    }
}

impl BranchKeyStore for DynamoDbBranchKeyStore {
    fn logical_name(&self) -> &str {
        &self.logical_name
    }

    fn get_active<'a>(&'a self, branch_key_id: &'a str) -> BranchKeyFuture<'a> {
        Box::pin(self.materials(branch_key_id, Wanted::Active))
    }

    fn get_version<'a>(&'a self, branch_key_id: &'a str, version: &'a BranchKeyVersion) -> BranchKeyFuture<'a> {
        Box::pin(self.materials(branch_key_id, Wanted::Version(version)))
    }
}

/// How a DynamoDB call failed, before the caller says what a failed condition means.
enum Failed {
    Condition,
    Ddb(String, DdbError),
    Other(Reason),
}

impl From<Failed> for BranchKeyStoreError {
    fn from(failed: Failed) -> Self {
        let reason = match failed {
            Failed::Condition => Reason::new("DynamoDB: a write condition failed", Retry::Never),
            Failed::Ddb(table, err) => Reason::new(format!("DynamoDB table {table}: {}", err.detail), err.retry()),
            Failed::Other(reason) => reason,
        };
        Self::Unavailable(reason)
    }
}

fn kms_unavailable(operation: &str, key: &str, err: &KmsError) -> BranchKeyStoreError {
    BranchKeyStoreError::Unavailable(Reason::new(
        format!("AWS KMS {operation} with key {key}: {}", err.describe(operation)),
        err.retry(),
    ))
}

fn keyring_error(err: BranchKeyStoreError) -> crate::Error {
    crate::Error::Keyring(Reason::new(err.to_string(), err.retry()))
}

fn parse_key_arn(kms_key_arn: &str) -> crate::Result<KmsArn> {
    KmsArn::parse_key(kms_key_arn).map_err(|err| {
        crate::Error::Config(format!("a branch key store needs the KMS key's ARN (not an alias or key id): {err}"))
    })
}

/// A random (version 4) UUID.
fn random_version() -> BranchKeyVersion {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    BranchKeyVersion::from_bytes(bytes)
}

/// A `Put` of an item that must not exist yet.
fn new_item(item: Item) -> ConditionalPut {
    ConditionalPut { item, condition: NEW_ITEM, names: vec![NAME_PLACEHOLDER], values: Vec::new() }
}
