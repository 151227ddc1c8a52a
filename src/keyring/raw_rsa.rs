//! The raw RSA keyring (feature `rsa`): the data key wrapped with a local RSA public key, byte-compatible with
//! every ESDK's raw RSA keyring and RSA master key (ESDK specification, `framework/raw-rsa-keyring.md`).

use super::{DecryptionMaterials, EncryptionMaterials, Keyring, KeyringFuture};
use crate::crypto::DataKey;
use crate::crypto::rsa::{RsaPadding, RsaPrivateKey, RsaPublicKey};
use crate::error::{Error, Result};
use crate::format::edk::EncryptedDataKey;

/// Wraps data keys with an RSA public key, and unwraps them with the private key.
///
/// A keyring built from a public key alone encrypts but can never decrypt: a build pipeline holding only
/// the public key produces messages that only the private key's holder reads. The EDK's provider id is the
/// namespace and its provider info the key name; nothing records the padding, so encryptor and decryptor
/// must agree on it.
///
/// Unlike the raw AES keyring, RSA wrapping does **not** bind the encryption context to the EDK (the
/// specification's design); the context is still authenticated by the message header. Nor does it
/// authenticate the writer: whoever holds the public key can write a message the private key's holder reads.
///
/// ```no_run
/// use kms_envelope::{DecryptOptions, EncryptOptions, RawRsaKeyring, RsaPadding};
///
/// # fn main() -> kms_envelope::Result<()> {
/// // openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out private.pem
/// // openssl pkey -in private.pem -pubout -out public.pem
/// let public_pem = std::fs::read("public.pem")?;
/// let private_pem = std::fs::read("private.pem")?;
///
/// let pipeline = RawRsaKeyring::from_public_key_pem("deploy", "2026-rsa", RsaPadding::OaepSha256, &public_pem)?;
/// let message = kms_envelope::encrypt(&pipeline, &EncryptOptions::new(), b"secret")?;
/// assert!(kms_envelope::decrypt(&pipeline, &DecryptOptions::new(), &message).is_err()); // public key only
///
/// let holder = RawRsaKeyring::from_private_key_pem("deploy", "2026-rsa", RsaPadding::OaepSha256, &private_pem)?;
/// assert_eq!(&*kms_envelope::decrypt(&holder, &DecryptOptions::new(), &message)?.plaintext, b"secret");
/// # Ok(()) }
/// ```
pub struct RawRsaKeyring {
    namespace: String,
    name: String,
    padding: RsaPadding,
    public: RsaPublicKey,
    private: Option<RsaPrivateKey>,
}

impl std::fmt::Debug for RawRsaKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRsaKeyring")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("padding", &self.padding)
            .field("bits", &self.public.bits())
            .field("can_decrypt", &self.private.is_some())
            .finish()
    }
}

impl RawRsaKeyring {
    /// An encrypt-only keyring for a public key in PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`), of 2048 bits
    /// or more. The namespace may not start with `aws-kms`, which is reserved for KMS keyrings.
    pub fn from_public_key_pem(
        namespace: impl Into<String>,
        name: impl Into<String>,
        padding: RsaPadding,
        pem: &[u8],
    ) -> Result<Self> {
        Self::new(namespace.into(), name.into(), padding, RsaPublicKey::from_pem(pem)?, None)
    }

    /// A keyring for a private key in PEM (`PRIVATE KEY` or `RSA PRIVATE KEY`), of 2048 bits or more: it
    /// decrypts, and encrypts with the key's public half.
    pub fn from_private_key_pem(
        namespace: impl Into<String>,
        name: impl Into<String>,
        padding: RsaPadding,
        pem: &[u8],
    ) -> Result<Self> {
        let private = RsaPrivateKey::from_pem(pem)?;
        Self::new(namespace.into(), name.into(), padding, private.public_key(), Some(private))
    }

    fn new(
        namespace: String,
        name: String,
        padding: RsaPadding,
        public: RsaPublicKey,
        private: Option<RsaPrivateKey>,
    ) -> Result<Self> {
        if namespace.starts_with("aws-kms") {
            return Err(Error::Config(format!("raw RSA key namespace {namespace:?} is reserved for AWS KMS")));
        }
        if namespace.len() > usize::from(u16::MAX) || name.len() > usize::from(u16::MAX) {
            return Err(Error::Config("raw RSA key namespace or name is longer than the format allows".into()));
        }
        Ok(Self { namespace, name, padding, public, private })
    }

    /// The key namespace (the EDK provider id).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The key name (the EDK provider info).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The padding scheme.
    pub fn padding(&self) -> RsaPadding {
        self.padding
    }

    fn wrap(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        if materials.data_key().is_none() {
            materials.set_data_key(DataKey::random(materials.suite().key_len()))?;
        }
        let data_key = materials.data_key().expect("set above");
        let ciphertext = self.public.encrypt(self.padding, data_key.as_bytes())?;
        materials.add_encrypted_data_key(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info: self.name.as_bytes().to_vec(),
            ciphertext,
        });
        Ok(materials)
    }

    fn unwrap(&self, mut materials: DecryptionMaterials, edks: &[EncryptedDataKey]) -> Result<DecryptionMaterials> {
        materials.require_no_data_key()?;
        let Some(private) = &self.private else {
            return Err(Error::NoDataKeyDecrypted {
                reasons: vec![format!(
                    "raw RSA key {}/{} has no private key: it can only encrypt",
                    self.namespace, self.name
                )],
            });
        };
        let mut reasons = Vec::new();
        for edk in edks {
            if edk.provider_id != self.namespace || edk.provider_info != self.name.as_bytes() {
                continue;
            }
            // A plaintext of the wrong length fails exactly like a bad padding, with no length given: with
            // PKCS #1 v1.5, "padding valid" versus "padding invalid" is Bleichenbacher's oracle.
            match private.decrypt(self.padding, &edk.ciphertext) {
                Ok(key) if key.len() == materials.suite().key_len() => {
                    materials.set_data_key(DataKey::new(key.to_vec()))?;
                    return Ok(materials);
                }
                Ok(_) | Err(_) => reasons.push(format!(
                    "raw RSA key {}/{}: the encrypted data key does not decrypt to a data key with this key and \
                     padding {}",
                    self.namespace, self.name, self.padding
                )),
            }
        }
        if reasons.is_empty() {
            reasons.push(format!("raw RSA key {}/{}: no encrypted data key for this key", self.namespace, self.name));
        }
        Err(Error::NoDataKeyDecrypted { reasons })
    }
}

impl Keyring for RawRsaKeyring {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        Box::pin(async move { self.wrap(materials) })
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        Box::pin(async move { self.unwrap(materials, edks) })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
    use base64::Engine as _;

    use super::*;
    use crate::format::suite::AlgorithmSuite;
    use crate::keyring::{Keyring, block_on};

    const SUITE: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;

    fn private_pem() -> String {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let der = base64::engine::general_purpose::STANDARD.encode(key.as_der().unwrap().as_ref());
        format!("-----BEGIN PRIVATE KEY-----\n{der}\n-----END PRIVATE KEY-----\n")
    }

    fn reasons(keyring: &RawRsaKeyring, ciphertext: Vec<u8>) -> Vec<String> {
        let edk = EncryptedDataKey { provider_id: "ns".into(), provider_info: b"name".to_vec(), ciphertext };
        let materials = DecryptionMaterials::new(SUITE, Default::default(), BTreeSet::new());
        match block_on(keyring.on_decrypt(materials, &[edk])) {
            Err(Error::NoDataKeyDecrypted { reasons }) => reasons,
            other => panic!("expected no data key, got {other:?}"),
        }
    }

    /// A PKCS #1 v1.5 ciphertext whose padding is valid but whose plaintext is not a data key must fail
    /// exactly like one whose padding is broken: telling them apart (or giving the plaintext's length) is
    /// the conformance oracle Bleichenbacher's attack needs to decrypt any EDK of the key.
    #[test]
    fn valid_padding_with_a_wrong_length_is_indistinguishable_from_bad_padding() {
        let pem = private_pem();
        for padding in RsaPadding::ALL {
            let keyring = RawRsaKeyring::from_private_key_pem("ns", "name", padding, pem.as_bytes()).unwrap();
            let short = keyring.public.encrypt(padding, &[7u8; 5]).unwrap();
            let garbage = vec![0x01; short.len()];
            let (short, garbage) = (reasons(&keyring, short), reasons(&keyring, garbage));
            assert_eq!(short, garbage, "{padding}");
            assert!(!short[0].contains(" 5 "), "{short:?}");
        }
    }
}
