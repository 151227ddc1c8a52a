//! Multi-Region-key-aware keyrings: a replica of a multi-Region key (`key/mrk-…`) in another region
//! decrypts what any replica encrypted (format notes §11, "MRK match").

use std::fmt;
use std::sync::Arc;

use super::api::KmsApi;
use super::arn::Region;
use super::calls::{Kms, edk_key_arn, not_kms};
use super::discovery::{DiscoveryFilter, discovery_cannot_encrypt};
use super::strict::{KeyMatch, Strict};
use crate::error::{Error, Result, Retry};
use crate::format::edk::EncryptedDataKey;
use crate::keyring::{DecryptionMaterials, EncryptionMaterials};

/// The MRK-aware strict keyring: like [`AwsKmsKeyring`](super::AwsKmsKeyring), but on decrypt an EDK
/// written under any replica of the configured multi-Region key matches too. It is decrypted by the
/// configured key (`Decrypt` with `KeyId` = the configured ARN), so a message encrypted in one region
/// decrypts in another without a cross-region call.
///
/// ```no_run
/// use kms_envelope::{DecryptOptions, KmsClients, decrypt};
///
/// fn main() -> kms_envelope::Result<()> {
///     let message = std::fs::read("secrets.esdk")?; // encrypted under the us-east-1 replica
///     let kms = KmsClients::from_env_blocking()?;
///     // The eu-west-1 replica of the same multi-Region key decrypts it, with a call to eu-west-1 only.
///     let keyring = kms.mrk_keyring("arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab")?;
///     let decrypted = decrypt(&keyring, &DecryptOptions::new(), &message)?;
///     println!("{} bytes", decrypted.plaintext.len());
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct AwsKmsMrkKeyring(Strict);

impl AwsKmsMrkKeyring {
    /// A keyring for `key_id` that calls KMS through `client` (whose region should be the key's).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `key_id` cannot be a KMS key identifier (empty, an ARN that does not parse,
    /// or neither `alias/NAME` nor a key id), or is an ARN in a region other than `client`'s.
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Result<Self> {
        Self::with_api(Arc::new(client), key_id.into())
    }

    pub(super) fn with_api(api: Arc<dyn KmsApi>, key_id: String) -> Result<Self> {
        Strict::new(api, key_id, KeyMatch::MultiRegion).map(Self)
    }
}

super::strict::strict_keyring_common!(AwsKmsMrkKeyring);

/// The MRK-aware discovery keyring: decrypt-only, bound to its client's region. An EDK under a multi-Region
/// key is decrypted by that key's replica in this region (the ARN with its region replaced); an EDK under
/// a single-region key is tried only if the key is in this region.
///
/// ```no_run
/// use kms_envelope::{DecryptOptions, DiscoveryFilter, KmsClients, decrypt};
///
/// fn main() -> kms_envelope::Result<()> {
///     let message = std::fs::read("secrets.esdk")?;
///     let kms = KmsClients::from_env_blocking()?;
///     let filter = DiscoveryFilter::new("aws", ["111122223333"])?;
///     let keyring = kms.mrk_discovery_keyring(Some("eu-west-1"), Some(filter))?; // calls eu-west-1 only
///     let decrypted = decrypt(&keyring, &DecryptOptions::new(), &message)?;
///     println!("{} bytes", decrypted.plaintext.len());
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct AwsKmsMrkDiscoveryKeyring {
    kms: Kms,
    region: Region,
    filter: Option<DiscoveryFilter>,
}

impl fmt::Debug for AwsKmsMrkDiscoveryKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsMrkDiscoveryKeyring").field("region", &self.region).field("filter", &self.filter).finish()
    }
}

impl AwsKmsMrkDiscoveryKeyring {
    /// A keyring calling KMS through `client`, which must have a region.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `client` has no region or its region is not well-formed.
    pub fn new(client: aws_sdk_kms::Client) -> Result<Self> {
        Self::with_api(Arc::new(client))
    }

    pub(super) fn with_api(api: Arc<dyn KmsApi>) -> Result<Self> {
        let name = api.region().ok_or_else(|| {
            Error::Config("an MRK discovery keyring needs a KMS client with a region (set AWS_REGION)".into())
        })?;
        let region = Region::parse(&name).map_err(|err| Error::Config(format!("MRK discovery keyring: {err}")))?;
        Ok(Self { kms: Kms { api, grant_tokens: Vec::new() }, region, filter: None })
    }

    /// Only keys the filter allows are tried.
    pub fn with_filter(mut self, filter: DiscoveryFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Grant tokens sent with every call.
    pub fn with_grant_tokens(mut self, tokens: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.kms.grant_tokens = tokens.into_iter().map(Into::into).collect();
        self
    }

    /// The region whose keys this keyring asks.
    pub fn region(&self) -> &str {
        self.region.as_str()
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
        let name = format!("AWS KMS MRK discovery in {}", self.region);
        let (mut reasons, mut retry) = (Vec::new(), Retry::Never);
        let mut candidates = Vec::new();
        for edk in edks {
            let Some((arn, info)) = edk_key_arn(edk)? else {
                reasons.push(not_kms(&name, edk));
                continue;
            };
            if let Some(Err(reason)) = self.filter.as_ref().map(|filter| filter.check(&arn)) {
                reasons.push(format!("{name}: {reason}"));
            } else if arn.is_multi_region_key() {
                match arn.in_region(&self.region) {
                    Some(replica) => candidates.push((replica.to_string(), edk)),
                    None => reasons.push(format!(
                        "{name}: key {arn} is in partition {}, this keyring's region is not",
                        arn.partition()
                    )),
                }
            } else if arn.region() == &self.region {
                candidates.push((info.to_owned(), edk));
            } else {
                reasons.push(format!(
                    "{name}: key {arn} is a single-region key in {}; use a keyring with a client in that region",
                    arn.region()
                ));
            }
        }
        for (key_id, edk) in candidates {
            match self.kms.unwrap(&key_id, &materials, edk).await {
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

crate::keyring::keyring_by_async_methods!(AwsKmsMrkDiscoveryKeyring);
