//! The AWS KMS discovery keyring: decrypt-only, under whichever key the message names.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use super::api::KmsApi;
use super::arn::{KmsArn, Region, is_known_partition};
use super::calls::{Kms, edk_key_arn, not_kms};
use super::clients::KmsClients;
use crate::error::{Error, Reason, Result, Retry};
use crate::format::edk::EncryptedDataKey;
use crate::keyring::{DecryptionMaterials, EncryptionMaterials};

/// Limits discovery to keys of some accounts in one partition. Without a filter, a discovery keyring asks
/// KMS to decrypt under any key a message names, which lets whoever wrote the message choose the key.
///
/// ```no_run
/// use kms_envelope::{DecryptOptions, DiscoveryFilter, KmsClients};
///
/// # fn main() -> Result<(), kms_envelope::Error> {
/// // Decrypt under whichever key the message names, if it belongs to one of our two accounts.
/// let filter = DiscoveryFilter::new("aws", ["111122223333", "444455556666"])?;
/// let keyring = KmsClients::from_env_blocking()?.discovery_keyring(Some(filter));
/// let message = std::fs::read("secrets.json.esdk")?;
/// let decrypted = kms_envelope::decrypt(&keyring, &DecryptOptions::new(), &message)?;
/// # let _ = decrypted;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryFilter {
    partition: String,
    accounts: BTreeSet<String>,
}

impl DiscoveryFilter {
    /// Keys of `accounts` in `partition` (`aws`, `aws-cn`, `aws-us-gov`, ...).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the partition is not a known one, no account is given, or an account is not
    /// twelve digits.
    pub fn new(partition: impl Into<String>, accounts: impl IntoIterator<Item = impl Into<String>>) -> Result<Self> {
        let partition = partition.into();
        let accounts: BTreeSet<String> = accounts.into_iter().map(Into::into).collect();
        if !is_known_partition(&partition) {
            return Err(Error::Config(format!("discovery filter: \"{partition}\" is not a known AWS partition")));
        }
        if accounts.is_empty() {
            return Err(Error::Config("discovery filter: give at least one account id".into()));
        }
        if let Some(bad) = accounts.iter().find(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit())) {
            return Err(Error::Config(format!("discovery filter: account \"{bad}\" is not twelve digits")));
        }
        Ok(Self { partition, accounts })
    }

    /// The partition.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The account ids.
    pub fn accounts(&self) -> impl Iterator<Item = &str> {
        self.accounts.iter().map(String::as_str)
    }

    /// Why `arn` is outside the filter, if it is.
    pub(super) fn check(&self, arn: &KmsArn) -> Result<(), String> {
        if arn.partition() != self.partition {
            return Err(format!(
                "key {arn} is in partition {}, the discovery filter allows {}",
                arn.partition(),
                self.partition
            ));
        }
        if !self.accounts.contains(arn.account()) {
            let allowed: Vec<&str> = self.accounts().collect();
            return Err(format!(
                "key {arn} is in account {}, not one the discovery filter allows ({})",
                arn.account(),
                allowed.join(", ")
            ));
        }
        Ok(())
    }
}

/// Where a discovery keyring gets its clients.
#[derive(Clone)]
enum Clients {
    /// One client, for every key (the ESDK's discovery keyring).
    One(Kms),
    /// A client in each key's region.
    PerRegion { clients: Box<KmsClients>, grant_tokens: Vec<String> },
}

/// The AWS KMS discovery keyring: decrypts the data key under whichever KMS key each EDK names (with
/// `KeyId` set to that key), if the [`DiscoveryFilter`] allows it. It cannot encrypt.
///
/// Built with [`new`](Self::new), it sends every call through one client, as the ESDK's discovery keyring
/// does (keys in other regions then fail). Built with
/// [`KmsClients::discovery_keyring`](super::KmsClients::discovery_keyring), it calls each key in its own
/// region.
///
/// ```no_run
/// use kms_envelope::{DecryptOptions, DiscoveryFilter, KmsClients, decrypt};
///
/// fn main() -> kms_envelope::Result<()> {
///     let message = std::fs::read("secrets.esdk")?;
///     let kms = KmsClients::from_env_blocking()?;
///     // Only keys of this account: without a filter, whoever wrote the message picks the key KMS uses.
///     let keyring = kms.discovery_keyring(Some(DiscoveryFilter::new("aws", ["111122223333"])?));
///     let decrypted = decrypt(&keyring, &DecryptOptions::new().context("app", "billing"), &message)?;
///     println!("{} bytes", decrypted.plaintext.len());
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct AwsKmsDiscoveryKeyring {
    clients: Clients,
    filter: Option<DiscoveryFilter>,
    regions: Option<BTreeSet<Region>>,
}

impl fmt::Debug for AwsKmsDiscoveryKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let region = match &self.clients {
            Clients::One(kms) => kms.region(),
            Clients::PerRegion { .. } => Some("(each key's)".into()),
        };
        f.debug_struct("AwsKmsDiscoveryKeyring")
            .field("region", &region)
            .field("filter", &self.filter)
            .field("regions", &self.regions)
            .finish()
    }
}

impl AwsKmsDiscoveryKeyring {
    /// A discovery keyring that calls KMS through `client`, with no filter.
    pub fn new(client: aws_sdk_kms::Client) -> Self {
        Self::with_api(Arc::new(client))
    }

    pub(super) fn with_api(api: Arc<dyn KmsApi>) -> Self {
        Self { clients: Clients::One(Kms { api, grant_tokens: Vec::new() }), filter: None, regions: None }
    }

    pub(super) fn per_region(clients: KmsClients, grant_tokens: Vec<String>) -> Self {
        Self { clients: Clients::PerRegion { clients: Box::new(clients), grant_tokens }, filter: None, regions: None }
    }

    /// Only keys the filter allows are tried.
    pub fn with_filter(mut self, filter: DiscoveryFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Only keys in these regions are tried: a message naming a key elsewhere gets no KMS call, and (for a
    /// keyring from [`KmsClients::discovery_keyring`](super::KmsClients::discovery_keyring)) no client is
    /// built for any other region. Use it when the regions your keys live in are known.
    pub fn with_regions(mut self, regions: impl IntoIterator<Item = Region>) -> Self {
        self.regions = Some(regions.into_iter().collect());
        self
    }

    /// Grant tokens sent with every call.
    pub fn with_grant_tokens(mut self, tokens: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let tokens = tokens.into_iter().map(Into::into).collect();
        match &mut self.clients {
            Clients::One(kms) => kms.grant_tokens = tokens,
            Clients::PerRegion { grant_tokens, .. } => *grant_tokens = tokens,
        }
        self
    }

    /// The filter, if any.
    pub fn filter(&self) -> Option<&DiscoveryFilter> {
        self.filter.as_ref()
    }

    fn kms_for(&self, arn: &KmsArn) -> Result<Kms, String> {
        match &self.clients {
            Clients::One(kms) => Ok(kms.clone()),
            Clients::PerRegion { clients, grant_tokens } => clients
                .client(Some(arn.region()))
                .map(|client| Kms { api: Arc::new(client), grant_tokens: grant_tokens.clone() })
                .map_err(|err| format!("AWS KMS discovery: no client for key {arn}: {err}")),
        }
    }

    async fn encrypt(&self, _materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        discovery_cannot_encrypt()
    }

    async fn decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        materials.require_no_data_key()?;
        let (mut reasons, mut retry) = (Vec::new(), Retry::Never);
        let mut candidates = Vec::new();
        for edk in edks {
            let Some((arn, info)) = edk_key_arn(edk)? else {
                reasons.push(not_kms("AWS KMS discovery", edk));
                continue;
            };
            let allowed =
                self.filter.as_ref().map_or(Ok(()), |filter| filter.check(&arn)).and_then(|()| match &self.regions {
                    Some(regions) if !regions.contains(arn.region()) => {
                        Err(format!("key {arn} is in a region this keyring is not allowed to call"))
                    }
                    _ => Ok(()),
                });
            match allowed {
                Ok(()) => candidates.push((arn, info, edk)),
                Err(reason) => reasons.push(format!("AWS KMS discovery: {reason}")),
            }
        }
        for (arn, info, edk) in candidates {
            let attempt = match self.kms_for(&arn) {
                Ok(kms) => kms.unwrap(info, &materials, edk).await,
                Err(reason) => Err(Reason::from(reason)),
            };
            match attempt {
                Ok(data_key) => {
                    materials.set_data_key(data_key)?;
                    return Ok(materials);
                }
                Err(reason) => {
                    retry = retry.or(reason.retry());
                    reasons.push(reason.to_string());
                }
            }
        }
        Err(Error::NoDataKeyDecrypted { reasons, retry })
    }
}

pub(super) fn discovery_cannot_encrypt<T>() -> Result<T> {
    Err(Error::Config("an AWS KMS discovery keyring cannot encrypt: configure a KMS key to encrypt under".into()))
}

crate::keyring::keyring_by_async_methods!(AwsKmsDiscoveryKeyring);
