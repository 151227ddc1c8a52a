//! The raw RSA keyring (feature `rsa`): the data key wrapped with a local RSA public key, byte-compatible with
//! every ESDK's raw RSA keyring and RSA master key (ESDK specification, `framework/raw-rsa-keyring.md`).

use super::{DecryptionMaterials, EncryptionMaterials, Keyring, KeyringFuture};
use crate::crypto::DataKey;
use crate::crypto::rsa::pkcs1::Pkcs1V15Decryptor;
use crate::crypto::rsa::{RsaPadding, RsaPrivateKey, RsaPublicKey};
use crate::error::{Error, Result, Retry};
use crate::format::edk::EncryptedDataKey;

/// Wraps data keys with an RSA public key, and unwraps them with the private key.
///
/// A keyring built from a public key alone encrypts but can never decrypt: a build pipeline holding only
/// the public key produces messages that only the private key's holder reads. The EDK's provider id is the
/// namespace and its provider info the key name; nothing records the padding, so encryptor and decryptor
/// must agree on it.
///
/// PKCS #1 v1.5 ([`RsaPadding::Pkcs1V15`]) is decrypt-only: a keyring with it reads old messages and refuses
/// to encrypt ([`Error::DecryptOnlyRsaPadding`]). It unwraps with implicit rejection (reasons and limits in
/// `src/crypto/rsa/pkcs1.rs`): the first EDK with its namespace and name always
/// yields a data key, a synthetic one when the EDK does not hold one, so that a bad padding, a wrong key
/// and a damaged EDK all fail later, alike, at the key commitment or header authentication.
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
    private: Option<Unwrapper>,
}

/// The private half, ready for the keyring's padding.
enum Unwrapper {
    Oaep(RsaPrivateKey),
    Pkcs1V15(Pkcs1V15Decryptor),
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
    /// or more, and an OAEP padding ([`Error::DecryptOnlyRsaPadding`] for PKCS #1 v1.5). The namespace may
    /// not start with `aws-kms`, which is reserved for KMS keyrings.
    ///
    /// # Errors
    ///
    /// [`Error::DecryptOnlyRsaPadding`] for [`RsaPadding::Pkcs1V15`]; [`Error::Config`] when `pem` is not a
    /// PEM public key of one of those two labels, the key is not RSA or is under 2048 bits, the namespace
    /// starts with `aws-kms`, or the namespace or name is longer than 65,535 bytes.
    pub fn from_public_key_pem(
        namespace: impl Into<String>,
        name: impl Into<String>,
        padding: RsaPadding,
        pem: &[u8],
    ) -> Result<Self> {
        if padding == RsaPadding::Pkcs1V15 {
            return Err(Error::DecryptOnlyRsaPadding);
        }
        Self::new(namespace.into(), name.into(), padding, RsaPublicKey::from_pem(pem)?, None)
    }

    /// A keyring for a private key in PEM (`PRIVATE KEY` or `RSA PRIVATE KEY`), of 2048 bits or more: it
    /// decrypts, and encrypts with the key's public half (OAEP only: PKCS #1 v1.5 is decrypt-only).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `pem` is not a PEM private key of one of those two labels (an `ENCRYPTED
    /// PRIVATE KEY` included), the key is not RSA or is under 2048 bits, AWS-LC refuses it for PKCS #1 v1.5
    /// decryption, the namespace starts with `aws-kms`, or the namespace or name is longer than 65,535 bytes.
    pub fn from_private_key_pem(
        namespace: impl Into<String>,
        name: impl Into<String>,
        padding: RsaPadding,
        pem: &[u8],
    ) -> Result<Self> {
        let private = RsaPrivateKey::from_pem(pem)?;
        let public = private.public_key();
        let unwrapper = match padding {
            RsaPadding::Pkcs1V15 => Unwrapper::Pkcs1V15(Pkcs1V15Decryptor::new(&private)?),
            _ => Unwrapper::Oaep(private),
        };
        Self::new(namespace.into(), name.into(), padding, public, Some(unwrapper))
    }

    fn new(
        namespace: String,
        name: String,
        padding: RsaPadding,
        public: RsaPublicKey,
        private: Option<Unwrapper>,
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
        // Before a data key is made: a PKCS #1 v1.5 keyring is decrypt-only.
        if self.padding == RsaPadding::Pkcs1V15 {
            return Err(Error::DecryptOnlyRsaPadding);
        }
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
                retry: Retry::Never,
            });
        };
        let mut reasons = Vec::new();
        for edk in edks {
            if edk.provider_id != self.namespace || edk.provider_info != self.name.as_bytes() {
                continue;
            }
            let key_len = materials.suite().key_len();
            let private = match private {
                // Never fails, so the first EDK of ours is the one: see `Pkcs1V15Decryptor`.
                Unwrapper::Pkcs1V15(decryptor) => {
                    let key = decryptor.decrypt_data_key(&edk.ciphertext, key_len);
                    materials.set_data_key(DataKey::new(key.to_vec()))?;
                    return Ok(materials);
                }
                Unwrapper::Oaep(private) => private,
            };
            // A plaintext of the wrong length fails exactly like a bad padding, with no length given.
            match private.decrypt(self.padding, &edk.ciphertext) {
                Ok(key) if key.len() == key_len => {
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
        Err(Error::NoDataKeyDecrypted { reasons, retry: Retry::Never })
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

    fn unwrap(keyring: &RawRsaKeyring, ciphertext: Vec<u8>) -> Result<DecryptionMaterials> {
        let edk = EncryptedDataKey { provider_id: "ns".into(), provider_info: b"name".to_vec(), ciphertext };
        let materials = DecryptionMaterials::new(SUITE, Default::default(), BTreeSet::new());
        block_on(keyring.on_decrypt(materials, &[edk]))
    }

    fn reasons(keyring: &RawRsaKeyring, ciphertext: Vec<u8>) -> Vec<String> {
        match unwrap(keyring, ciphertext) {
            Err(Error::NoDataKeyDecrypted { reasons, .. }) => reasons,
            other => panic!("expected no data key, got {other:?}"),
        }
    }

    /// An OAEP ciphertext whose padding is valid but whose plaintext is not a data key fails exactly like
    /// one whose padding is broken, without giving the plaintext's length.
    #[test]
    fn oaep_valid_padding_with_a_wrong_length_is_indistinguishable_from_bad_padding() {
        let pem = private_pem();
        for padding in RsaPadding::ALL.into_iter().filter(|&p| p != RsaPadding::Pkcs1V15) {
            let keyring = RawRsaKeyring::from_private_key_pem("ns", "name", padding, pem.as_bytes()).unwrap();
            let short = keyring.public.encrypt(padding, &[7u8; 5]).unwrap();
            let garbage = vec![0x01; short.len()];
            let (short, garbage) = (reasons(&keyring, short), reasons(&keyring, garbage));
            assert_eq!(short, garbage, "{padding}");
            assert!(!short[0].contains(" 5 "), "{short:?}");
        }
    }

    /// PKCS #1 v1.5 never fails to unwrap: a bad padding, a valid padding around a wrong-length plaintext,
    /// a short ciphertext and a valid padding around a wrong key each yield a data key of the suite's
    /// length, so the message fails later, alike. Telling the first two apart from the last is the
    /// conformance oracle Bleichenbacher's attack needs.
    #[test]
    fn pkcs1_failures_all_yield_a_data_key() {
        use crate::crypto::rsa::pkcs1::tests::{bad_padding, pkcs1_encrypt};
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let der = base64::engine::general_purpose::STANDARD.encode(key.as_der().unwrap().as_ref());
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{der}\n-----END PRIVATE KEY-----\n");
        let keyring = RawRsaKeyring::from_private_key_pem("ns", "name", RsaPadding::Pkcs1V15, pem.as_bytes()).unwrap();
        let data_key = |ciphertext: Vec<u8>| unwrap(&keyring, ciphertext).unwrap().data_key().unwrap().clone();
        let real = data_key(pkcs1_encrypt(&key, &[7u8; 32]));
        assert_eq!(real.as_bytes(), &[7u8; 32]);
        for ciphertext in
            [bad_padding(&key), pkcs1_encrypt(&key, &[7u8; 5]), vec![1; 17], pkcs1_encrypt(&key, &[8; 32])]
        {
            let key = data_key(ciphertext);
            assert_eq!(key.len(), 32);
            assert_ne!(key, real);
        }
    }

    /// PKCS #1 v1.5 is decrypt-only: a private-key keyring refuses to encrypt, and a public-key one (which
    /// could do nothing else) is refused when built; both say to use OAEP.
    #[test]
    fn pkcs1_refuses_to_encrypt() {
        let pem = private_pem();
        let keyring = RawRsaKeyring::from_private_key_pem("ns", "name", RsaPadding::Pkcs1V15, pem.as_bytes()).unwrap();
        let materials = EncryptionMaterials::new(SUITE, Default::default(), BTreeSet::new());
        let err = block_on(keyring.on_encrypt(materials)).unwrap_err();
        assert!(matches!(err, Error::DecryptOnlyRsaPadding), "{err:?}");
        assert!(err.to_string().contains("encrypt with OAEP"), "{err}");
        let public_pem = {
            let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
            let der = base64::engine::general_purpose::STANDARD.encode(key.public_key().as_der().unwrap().as_ref());
            format!("-----BEGIN PUBLIC KEY-----\n{der}\n-----END PUBLIC KEY-----\n")
        };
        let err = RawRsaKeyring::from_public_key_pem("ns", "name", RsaPadding::Pkcs1V15, public_pem.as_bytes());
        assert!(matches!(err, Err(Error::DecryptOnlyRsaPadding)), "{err:?}");
        assert!(RawRsaKeyring::from_public_key_pem("ns", "name", RsaPadding::OaepSha1, public_pem.as_bytes()).is_ok());
    }
}
