//! The raw AES keyring (format notes §10): the data key wrapped under a local AES key, byte-compatible with
//! every ESDK's raw AES keyring and master key.

use zeroize::Zeroizing;

use super::{DecryptionMaterials, EncryptionMaterials, Keyring, KeyringFuture};
use crate::crypto::DataKey;
use crate::crypto::aead::AeadKey;
use crate::error::{Error, Result, Retry};
use crate::escape::clipped;
use crate::format::edk::EncryptedDataKey;
use crate::format::header::{IV_LEN, TAG_LEN};

const TAG_BITS: u32 = (TAG_LEN * 8) as u32;

/// Wraps data keys with a local AES-GCM key of 16, 24 or 32 bytes. The EDK's provider id is the
/// namespace; its provider info is the key name, the tag length in bits, the IV length and the IV.
///
/// Namespace and name identify the key in every message (other ESDKs must use the same pair to decrypt);
/// the key itself is copied and wiped on drop.
///
/// ```
/// use kms_envelope::{DecryptOptions, EncryptOptions, RawAesKeyring, decrypt, encrypt};
///
/// fn main() -> Result<(), kms_envelope::Error> {
///     // In real use: 32 random bytes (`head -c 32 /dev/urandom > wrapping.key`), kept secret.
///     let wrapping_key = [0x42u8; 32];
///     let keyring = RawAesKeyring::new("my-service", "secrets-key-2026", &wrapping_key)?;
///     let message = encrypt(&keyring, &EncryptOptions::new(), b"secret")?;
///
///     let other = RawAesKeyring::new("my-service", "secrets-key-2026", &[0x43u8; 32])?;
///     assert!(decrypt(&other, &DecryptOptions::new(), &message).is_err()); // another key
///     assert!(RawAesKeyring::new("my-service", "short", &[0u8; 20]).is_err()); // 16, 24 or 32 bytes only
///     Ok(())
/// }
/// ```
pub struct RawAesKeyring {
    namespace: String,
    name: String,
    key: AeadKey,
}

impl std::fmt::Debug for RawAesKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAesKeyring").field("namespace", &self.namespace).field("name", &self.name).finish()
    }
}

impl RawAesKeyring {
    /// A keyring for `wrapping_key` (16, 24 or 32 bytes), known to decryptors as `namespace` and `name`.
    /// The namespace may not start with `aws-kms`, which is reserved for KMS keyrings.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a wrapping key of another length or a reserved namespace.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, wrapping_key: &[u8]) -> Result<Self> {
        let namespace = namespace.into();
        let name = name.into();
        if namespace.starts_with("aws-kms") {
            return Err(Error::Config(format!("raw AES key namespace {namespace:?} is reserved for AWS KMS")));
        }
        if namespace.len() > usize::from(u16::MAX) || name.len() + 20 > usize::from(u16::MAX) {
            return Err(Error::Config("raw AES key namespace or name is longer than the format allows".into()));
        }
        let key = AeadKey::new(wrapping_key).map_err(|_| {
            Error::Config(format!("raw AES wrapping key of {} bytes; 16, 24 or 32 required", wrapping_key.len()))
        })?;
        Ok(Self { namespace, name, key })
    }

    /// The key namespace (the EDK provider id).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn wrap(&self, materials: &mut EncryptionMaterials) -> Result<()> {
        if materials.data_key().is_none() {
            materials.set_data_key(DataKey::random(materials.suite().key_len()))?;
        }
        let aad = materials.encryption_context().serialize()?;
        let data_key = materials.data_key().expect("set above");
        let mut iv = [0u8; IV_LEN];
        rand::fill(&mut iv);
        let mut ciphertext = data_key.as_bytes().to_vec();
        let tag = self.key.seal_in_place(&iv, &aad, &mut ciphertext);
        ciphertext.extend_from_slice(&tag);

        let mut provider_info = Vec::with_capacity(self.name.len() + 8 + IV_LEN);
        provider_info.extend_from_slice(self.name.as_bytes());
        provider_info.extend_from_slice(&TAG_BITS.to_be_bytes());
        provider_info.extend_from_slice(&(IV_LEN as u32).to_be_bytes());
        provider_info.extend_from_slice(&iv);
        materials.add_encrypted_data_key(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info,
            ciphertext,
        });
        Ok(())
    }

    /// Why `edk` is not ours, or its IV if it may be.
    fn match_edk(&self, edk: &EncryptedDataKey) -> Result<[u8; IV_LEN], String> {
        if edk.provider_id != self.namespace {
            return Err(format!(
                "raw AES {}/{}: provider id \"{}\" differs",
                self.namespace,
                self.name,
                clipped(&edk.provider_id)
            ));
        }
        let info = &edk.provider_info;
        let name = self.name.as_bytes();
        let layout_ok = info.len() == name.len() + 8 + IV_LEN
            && info.starts_with(name)
            && info[name.len()..name.len() + 4] == TAG_BITS.to_be_bytes()
            && info[name.len() + 4..name.len() + 8] == (IV_LEN as u32).to_be_bytes();
        if !layout_ok {
            return Err(format!("raw AES {}/{}: key name or IV/tag layout differs", self.namespace, self.name));
        }
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&info[info.len() - IV_LEN..]);
        Ok(iv)
    }

    fn unwrap(&self, materials: &mut DecryptionMaterials, edks: &[EncryptedDataKey]) -> Result<()> {
        materials.require_no_data_key()?;
        let aad = materials.encryption_context().serialize()?;
        let key_len = materials.suite().key_len();
        let mut reasons = Vec::new();
        for edk in edks {
            let iv = match self.match_edk(edk) {
                Ok(iv) => iv,
                Err(reason) => {
                    reasons.push(reason);
                    continue;
                }
            };
            if edk.ciphertext.len() != key_len + TAG_LEN {
                reasons.push(format!(
                    "raw AES {}/{}: wrapped key is {} bytes, expected {}",
                    self.namespace,
                    self.name,
                    edk.ciphertext.len(),
                    key_len + TAG_LEN
                ));
                continue;
            }
            let mut buf = Zeroizing::new(edk.ciphertext[..key_len].to_vec());
            let tag: [u8; TAG_LEN] = edk.ciphertext[key_len..].try_into().expect("length checked above");
            if self.key.open_in_place(&iv, &aad, &mut buf, &tag).is_err() {
                reasons.push(format!(
                    "raw AES {}/{}: unwrapping failed (wrong key or encryption context)",
                    self.namespace, self.name
                ));
                continue;
            }
            return materials.set_data_key(DataKey::new(std::mem::take(&mut *buf)));
        }
        Err(Error::NoDataKeyDecrypted { reasons, retry: Retry::Never })
    }
}

impl Keyring for RawAesKeyring {
    fn on_encrypt<'a>(&'a self, mut materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        Box::pin(async move {
            self.wrap(&mut materials)?;
            Ok(materials)
        })
    }

    fn on_decrypt<'a>(
        &'a self,
        mut materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        Box::pin(async move {
            self.unwrap(&mut materials, edks)?;
            Ok(materials)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::context::EncryptionContext;
    use crate::format::suite::AlgorithmSuite;
    use crate::keyring::block_on;

    const SUITE: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;

    fn ec() -> EncryptionContext {
        [("purpose", "test")].into_iter().collect()
    }

    #[test]
    fn provider_info_layout_and_round_trip() {
        let keyring = RawAesKeyring::new("ns", "my key", &[7; 32]).unwrap();
        let enc = block_on(keyring.on_encrypt(EncryptionMaterials::new(SUITE, ec(), Default::default()))).unwrap();
        let edk = &enc.encrypted_data_keys()[0];
        assert_eq!(edk.provider_id, "ns");
        assert_eq!(&edk.provider_info[..6], b"my key");
        assert_eq!(&edk.provider_info[6..14], &[0, 0, 0, 0x80, 0, 0, 0, 12]);
        assert_eq!(edk.provider_info.len(), 6 + 20);
        assert_eq!(edk.ciphertext.len(), 48);

        let dec = block_on(
            keyring.on_decrypt(DecryptionMaterials::new(SUITE, ec(), Default::default()), enc.encrypted_data_keys()),
        )
        .unwrap();
        assert_eq!(dec.data_key(), enc.data_key());
    }

    #[test]
    fn wrong_key_name_or_context_is_not_decrypted() {
        let keyring = RawAesKeyring::new("ns", "k", &[7; 16]).unwrap();
        let enc = block_on(keyring.on_encrypt(EncryptionMaterials::new(SUITE, ec(), Default::default()))).unwrap();
        let other_name = RawAesKeyring::new("ns", "k2", &[7; 16]).unwrap();
        let err = block_on(
            other_name.on_decrypt(DecryptionMaterials::new(SUITE, ec(), Default::default()), enc.encrypted_data_keys()),
        )
        .unwrap_err();
        assert!(matches!(err, Error::NoDataKeyDecrypted { ref reasons, .. } if reasons.len() == 1), "{err}");
        let err = block_on(keyring.on_decrypt(
            DecryptionMaterials::new(SUITE, EncryptionContext::new(), Default::default()),
            enc.encrypted_data_keys(),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("unwrapping failed"), "{err}");
    }

    #[test]
    fn reserved_namespace_and_bad_key_sizes_are_refused() {
        assert!(RawAesKeyring::new("aws-kms", "k", &[0; 32]).is_err());
        assert!(RawAesKeyring::new("ns", "k", &[0; 31]).is_err());
        assert!(format!("{:?}", RawAesKeyring::new("ns", "k", &[9; 32]).unwrap()).find("9").is_none());
    }
}
