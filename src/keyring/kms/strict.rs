//! The strict AWS KMS keyring: one configured key, used for encrypt and the only key tried on decrypt.

use std::fmt;
use std::sync::Arc;

use super::api::KmsApi;
use super::arn::{KmsArn, check_key_identifier, mrk_match};
use super::calls::{Kms, edk_key_arn, not_kms};
use crate::crypto::DataKey;
use crate::error::{Error, Result, Retry};
use crate::format::edk::EncryptedDataKey;
use crate::keyring::{DecryptionMaterials, EncryptionMaterials};

/// The builder methods, `Debug` and `Keyring` impls that [`AwsKmsKeyring`] and
/// [`AwsKmsMrkKeyring`](super::AwsKmsMrkKeyring) share: both wrap a [`Strict`] and differ only in how
/// they match EDKs.
macro_rules! strict_keyring_common {
    ($ty:ident) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.debug(stringify!($ty), f)
            }
        }

        impl $ty {
            /// Grant tokens sent with every call (at most 10, as KMS allows).
            pub fn with_grant_tokens(mut self, tokens: impl IntoIterator<Item = impl Into<String>>) -> Self {
                self.0.set_grant_tokens(tokens.into_iter().map(Into::into).collect());
                self
            }

            /// As generator, make the data key locally (from the operating system's random generator) and
            /// wrap it with `Encrypt`, instead of calling `GenerateDataKey`: for callers who must not receive
            /// plaintext keys from KMS, or who are granted `kms:Encrypt` but not `kms:GenerateDataKey`.
            /// Still one call.
            pub fn generate_data_key_locally(mut self) -> Self {
                self.0.set_local_data_key();
                self
            }

            /// The configured key identifier.
            pub fn key_id(&self) -> &str {
                self.0.key_id()
            }
        }

        impl crate::keyring::Keyring for $ty {
            fn on_encrypt<'a>(
                &'a self,
                materials: crate::keyring::EncryptionMaterials,
            ) -> crate::keyring::KeyringFuture<'a, crate::keyring::EncryptionMaterials> {
                Box::pin(self.0.encrypt(materials))
            }

            fn on_decrypt<'a>(
                &'a self,
                materials: crate::keyring::DecryptionMaterials,
                edks: &'a [crate::format::edk::EncryptedDataKey],
            ) -> crate::keyring::KeyringFuture<'a, crate::keyring::DecryptionMaterials> {
                Box::pin(self.0.decrypt(materials, edks))
            }
        }
    };
}
pub(super) use strict_keyring_common;

/// Which EDKs a strict keyring considers its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyMatch {
    /// The provider info equals the configured identifier.
    Exact,
    /// "MRK match": equal, or replicas of one multi-Region key.
    MultiRegion,
}

/// What [`AwsKmsKeyring`] and [`AwsKmsMrkKeyring`](super::AwsKmsMrkKeyring) share.
#[derive(Clone)]
pub(super) struct Strict {
    kms: Kms,
    key_id: String,
    local_data_key: bool,
    key_match: KeyMatch,
}

impl Strict {
    pub fn new(api: Arc<dyn KmsApi>, key_id: String, key_match: KeyMatch) -> Result<Self> {
        let arn = check_key_identifier(&key_id).map_err(Error::Config)?;
        if let (Some(arn), Some(region)) = (arn, api.region())
            && arn.region().as_str() != region
        {
            return Err(Error::Config(format!(
                "KMS key {key_id} is in region {}, but the client is for {region}: KMS serves each region's \
                 keys only there (KmsClients::keyring picks the client by the key's region)",
                arn.region()
            )));
        }
        Ok(Self { kms: Kms { api, grant_tokens: Vec::new() }, key_id, local_data_key: false, key_match })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn set_grant_tokens(&mut self, tokens: Vec<String>) {
        self.kms.grant_tokens = tokens;
    }

    pub fn set_local_data_key(&mut self) {
        self.local_data_key = true;
    }

    pub fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("key_id", &self.key_id)
            .field("region", &self.kms.region())
            .field("grant_tokens", &self.kms.grant_tokens.len())
            .field("local_data_key", &self.local_data_key)
            .finish()
    }

    fn name(&self) -> String {
        format!("AWS KMS key {}", self.key_id)
    }

    pub async fn encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        if materials.data_key().is_some() {
            self.kms.wrap(&self.key_id, &mut materials).await?;
        } else if self.local_data_key {
            materials.set_data_key(DataKey::random(materials.suite().key_len()))?;
            self.kms.wrap(&self.key_id, &mut materials).await?;
        } else {
            self.kms.generate(&self.key_id, &mut materials).await?;
        }
        Ok(materials)
    }

    pub async fn decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        materials.require_no_data_key()?;
        // Filter every EDK before the first call: a malformed KMS EDK fails the keyring.
        let (mut reasons, mut retry) = (Vec::new(), Retry::Never);
        let mut candidates = Vec::new();
        // Every EDK names a key ARN: a key id, an alias name or an alias ARN never equals one.
        let hint = if KmsArn::parse_key(&self.key_id).is_ok() { "" } else { " (strict decrypt needs the key ARN)" };
        for edk in edks {
            let Some((_, info)) = edk_key_arn(edk)? else {
                reasons.push(not_kms(&self.name(), edk));
                continue;
            };
            let matches = match self.key_match {
                KeyMatch::Exact => info == self.key_id,
                KeyMatch::MultiRegion => mrk_match(&self.key_id, info),
            };
            if matches {
                candidates.push(edk);
            } else {
                reasons.push(format!("{}: the message's data key under {info} is for another key{hint}", self.name()));
            }
        }
        for edk in candidates {
            match self.kms.unwrap(&self.key_id, &materials, edk).await {
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

/// The strict AWS KMS keyring: one KMS key, given as a key ARN, key id, alias name or alias ARN.
///
/// On encrypt, as generator it calls `GenerateDataKey`; otherwise (or with
/// [`generate_data_key_locally`](Self::generate_data_key_locally)) it calls `Encrypt` on the data key. The
/// EDK's provider info is the key ARN KMS returns. On decrypt it calls `Decrypt` with `KeyId` set, only for
/// EDKs whose provider info is exactly the configured identifier: configure the **key ARN** to decrypt.
///
/// The client's region must be the key's (a key ARN in another region is refused):
/// [`KmsClients::keyring`](super::KmsClients::keyring) picks the client by the ARN's region.
///
/// ```no_run
/// use kms_envelope::{DecryptOptions, EncryptOptions, KmsClients, decrypt, encrypt};
///
/// fn main() -> kms_envelope::Result<()> {
///     let kms = KmsClients::from_env_blocking()?; // region, credentials, endpoint as every AWS SDK
///     let keyring = kms.keyring("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")?;
///     let message = encrypt(&keyring, &EncryptOptions::new().context("app", "billing"), b"secret")?;
///     let decrypted = decrypt(&keyring, &DecryptOptions::new().context("app", "billing"), &message)?;
///     assert_eq!(&decrypted.plaintext[..], b"secret");
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct AwsKmsKeyring(Strict);

impl AwsKmsKeyring {
    /// A keyring for `key_id` that calls KMS through `client`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `key_id` cannot be a KMS key identifier (empty, an ARN that does not parse,
    /// or neither `alias/NAME` nor a key id), or is an ARN in a region other than `client`'s.
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Result<Self> {
        Self::with_api(Arc::new(client), key_id.into())
    }

    pub(super) fn with_api(api: Arc<dyn KmsApi>, key_id: String) -> Result<Self> {
        Strict::new(api, key_id, KeyMatch::Exact).map(Self)
    }
}

strict_keyring_common!(AwsKmsKeyring);
