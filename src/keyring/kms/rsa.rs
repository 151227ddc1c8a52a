//! The AWS KMS RSA keyring (features `kms` and `rsa`; ESDK specification `framework/aws-kms/aws-kms-rsa-keyring.md`):
//! encrypt locally with a KMS RSA key's public key, decrypt with KMS `Decrypt`.

use std::fmt;
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha384};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::api::KmsApi;
use super::arn::{KmsArn, mrk_match};
use super::calls::Kms;
use super::runtime::on_runtime;
use crate::crypto::DataKey;
use crate::crypto::rsa::{RsaPadding, RsaPublicKey};
use crate::error::{Error, Reason, Result, Retry};
use crate::format::context::EncryptionContext;
use crate::format::edk::EncryptedDataKey;
use crate::keyring::{DecryptionMaterials, EncryptionMaterials};

/// The EDK provider id of the AWS KMS RSA keyring.
pub const RSA_PROVIDER_ID: &str = "aws-kms-rsa";

/// The encryption algorithms KMS offers for an RSA key of usage `ENCRYPT_DECRYPT` that the keyring may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KmsRsaAlgorithm {
    /// `RSAES_OAEP_SHA_1`.
    OaepSha1,
    /// `RSAES_OAEP_SHA_256`.
    OaepSha256,
}

impl KmsRsaAlgorithm {
    /// The KMS name: `RSAES_OAEP_SHA_1` or `RSAES_OAEP_SHA_256`.
    pub fn name(self) -> &'static str {
        match self {
            KmsRsaAlgorithm::OaepSha1 => "RSAES_OAEP_SHA_1",
            KmsRsaAlgorithm::OaepSha256 => "RSAES_OAEP_SHA_256",
        }
    }

    /// The algorithm KMS calls `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [KmsRsaAlgorithm::OaepSha1, KmsRsaAlgorithm::OaepSha256].into_iter().find(|a| a.name() == name)
    }

    fn padding(self) -> RsaPadding {
        match self {
            KmsRsaAlgorithm::OaepSha1 => RsaPadding::OaepSha1,
            KmsRsaAlgorithm::OaepSha256 => RsaPadding::OaepSha256,
        }
    }
}

impl fmt::Display for KmsRsaAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Length of the encryption-context digest (SHA-384) in front of the data key inside the RSA ciphertext.
const DIGEST_LEN: usize = 48;

/// The AWS KMS RSA keyring: wraps the data key with the public key of a KMS RSA key, locally, and unwraps it
/// with KMS `Decrypt`. A build pipeline that holds only the public key (given as PEM) encrypts without any
/// KMS access; only principals allowed `kms:Decrypt` on the key can decrypt.
///
/// The RSA plaintext is the SHA-384 digest of the encryption context followed by the data key, so the
/// context is bound to the EDK. Signing suites (0x0578, ...) are refused, as the specification's reference
/// implementation does.
///
/// Whoever holds the public key can write a message this keyring decrypts: unlike a symmetric KMS key, it
/// says nothing about who wrote the message.
///
/// ```no_run
/// # fn main() -> kms_envelope::Result<()> {
/// use kms_envelope::keyring::kms::{AwsKmsRsaKeyring, KmsRsaAlgorithm};
/// use kms_envelope::{DecryptOptions, EncryptOptions, KmsClients};
///
/// let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// // In the pipeline: the public key from `aws kms get-public-key`, no KMS call.
/// let public_pem = std::fs::read("deploy-key.pem")?;
/// let pipeline = AwsKmsRsaKeyring::encrypt_only(arn, KmsRsaAlgorithm::OaepSha256, &public_pem)?;
/// let message = kms_envelope::encrypt(&pipeline, &EncryptOptions::new(), b"secret")?;
///
/// // In the function: KMS Decrypt.
/// let kms = KmsClients::from_env_blocking()?;
/// let function = kms.rsa_keyring(arn, KmsRsaAlgorithm::OaepSha256)?;
/// let plaintext = kms_envelope::decrypt(&function, &DecryptOptions::new(), &message)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AwsKmsRsaKeyring {
    key_arn: String,
    algorithm: KmsRsaAlgorithm,
    kms: Option<Kms>,
    public_key: Arc<OnceLock<RsaPublicKey>>,
}

impl fmt::Debug for AwsKmsRsaKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsRsaKeyring")
            .field("key_arn", &self.key_arn)
            .field("algorithm", &self.algorithm)
            .field("has_client", &self.kms.is_some())
            .field("public_key", &self.public_key.get())
            .finish()
    }
}

impl AwsKmsRsaKeyring {
    /// A keyring that encrypts with `public_key_pem` (the KMS key's public key, `PUBLIC KEY` PEM, 2048 bits
    /// or more) and cannot decrypt: it has no KMS client.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `key_arn` is not a key ARN (an alias or a bare key id is refused), or
    /// `public_key_pem` is not a PEM RSA public key of 2048 bits or more.
    pub fn encrypt_only(key_arn: impl Into<String>, algorithm: KmsRsaAlgorithm, public_key_pem: &[u8]) -> Result<Self> {
        let keyring = Self::without_client(key_arn.into(), algorithm)?;
        keyring.set_public_key(RsaPublicKey::from_pem(public_key_pem)?);
        Ok(keyring)
    }

    /// A keyring that decrypts through `client` (in the key's region) and encrypts with the key's public
    /// key, fetched with `GetPublicKey` on the first encrypt unless given with
    /// [`with_public_key_pem`](Self::with_public_key_pem).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `key_arn` is not a key ARN (an alias or a bare key id is refused).
    pub fn new(client: aws_sdk_kms::Client, key_arn: impl Into<String>, algorithm: KmsRsaAlgorithm) -> Result<Self> {
        Self::with_api(Arc::new(client), key_arn.into(), algorithm)
    }

    pub(super) fn with_api(api: Arc<dyn KmsApi>, key_arn: String, algorithm: KmsRsaAlgorithm) -> Result<Self> {
        let mut keyring = Self::without_client(key_arn, algorithm)?;
        keyring.kms = Some(Kms { api, grant_tokens: Vec::new() });
        Ok(keyring)
    }

    fn without_client(key_arn: String, algorithm: KmsRsaAlgorithm) -> Result<Self> {
        KmsArn::parse_key(&key_arn).map_err(|err| {
            Error::Config(format!("AWS KMS RSA keyring: {err} (a key ARN is required: aliases are not allowed)"))
        })?;
        Ok(Self { key_arn, algorithm, kms: None, public_key: Arc::default() })
    }

    /// Uses `public_key_pem` instead of calling `GetPublicKey`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `public_key_pem` is not a PEM RSA public key of 2048 bits or more.
    pub fn with_public_key_pem(self, public_key_pem: &[u8]) -> Result<Self> {
        let keyring = Self { public_key: Arc::default(), ..self };
        keyring.set_public_key(RsaPublicKey::from_pem(public_key_pem)?);
        Ok(keyring)
    }

    /// Grant tokens sent with every call.
    pub fn with_grant_tokens(mut self, tokens: impl IntoIterator<Item = impl Into<String>>) -> Self {
        if let Some(kms) = &mut self.kms {
            kms.grant_tokens = tokens.into_iter().map(Into::into).collect();
        }
        self
    }

    /// The key ARN (the EDK's provider info).
    pub fn key_arn(&self) -> &str {
        &self.key_arn
    }

    /// The encryption algorithm.
    pub fn algorithm(&self) -> KmsRsaAlgorithm {
        self.algorithm
    }

    fn set_public_key(&self, key: RsaPublicKey) {
        let _ = self.public_key.set(key);
    }

    async fn public_key(&self) -> Result<&RsaPublicKey> {
        if let Some(key) = self.public_key.get() {
            return Ok(key);
        }
        let kms = self.kms.as_ref().ok_or_else(|| Error::Config("AWS KMS RSA keyring: no public key".into()))?;
        let call = kms.api.get_public_key(self.key_arn.clone(), kms.grant_tokens.clone());
        let der = on_runtime(call).await?.map_err(|err| {
            let text = format!("AWS KMS GetPublicKey with key {}: {}", self.key_arn, err.describe("GetPublicKey"));
            Error::Keyring(Reason::new(text, err.retry()))
        })?;
        self.set_public_key(RsaPublicKey::from_der(&der)?);
        Ok(self.public_key.get().expect("set above"))
    }

    async fn encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        refuse_signing(materials.suite().signature().is_some(), materials.suite().id())?;
        let public_key = self.public_key().await?;
        if materials.data_key().is_none() {
            materials.set_data_key(DataKey::random(materials.suite().key_len()))?;
        }
        let mut plaintext = Zeroizing::new(context_digest(materials.encryption_context())?.to_vec());
        plaintext.extend_from_slice(materials.data_key().expect("set above").as_bytes());
        let ciphertext = public_key.encrypt(self.algorithm.padding(), &plaintext)?;
        materials.add_encrypted_data_key(EncryptedDataKey {
            provider_id: RSA_PROVIDER_ID.to_owned(),
            provider_info: self.key_arn.as_bytes().to_vec(),
            ciphertext,
        });
        Ok(materials)
    }

    async fn decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        materials.require_no_data_key()?;
        refuse_signing(materials.suite().signature().is_some(), materials.suite().id())?;
        let name = format!("AWS KMS RSA key {}", self.key_arn);
        let Some(kms) = &self.kms else {
            return Err(Error::NoDataKeyDecrypted {
                reasons: vec![format!("{name}: no KMS client: it can only encrypt")],
                retry: Retry::Never,
            });
        };
        let mut candidates = Vec::new();
        let (mut reasons, mut retry) = (Vec::new(), Retry::Never);
        for edk in edks.iter().filter(|edk| edk.provider_id == RSA_PROVIDER_ID) {
            let info = std::str::from_utf8(&edk.provider_info)
                .map_err(|_| Error::Keyring("an aws-kms-rsa encrypted data key's provider info is not UTF-8".into()))?;
            KmsArn::parse_key(info).map_err(|err| {
                Error::Keyring(format!("an aws-kms-rsa encrypted data key names no key ARN: {err}").into())
            })?;
            if mrk_match(&self.key_arn, info) {
                candidates.push(edk);
            } else {
                reasons.push(format!("{name}: the message's data key under {info} is for another key"));
            }
        }
        let expected = context_digest(materials.encryption_context())?;
        for edk in candidates {
            let call = kms.api.decrypt_rsa(
                self.key_arn.clone(),
                kms.grant_tokens.clone(),
                edk.ciphertext.clone(),
                self.algorithm,
            );
            let out = match on_runtime(call).await? {
                Ok(out) => out,
                Err(err) => {
                    retry = retry.or(err.retry());
                    reasons.push(format!("{name}: {}", err.describe("Decrypt")));
                    continue;
                }
            };
            if out.key_id.as_deref() != Some(self.key_arn.as_str()) {
                reasons.push(format!("{name}: KMS reports another key decrypted; the data key is not used"));
                continue;
            }
            let key_len = materials.suite().key_len();
            if out.plaintext.len() != DIGEST_LEN + key_len {
                reasons.push(format!("{name}: the decrypted key material is not a digest and a {key_len}-byte key"));
                continue;
            }
            let (digest, data_key) = out.plaintext.split_at(DIGEST_LEN);
            // A mismatch rules out this EDK only: each EDK's failure is collected and the next one tried, as
            // the MPL does (ReduceToSuccess).
            if !bool::from(digest.ct_eq(&expected)) {
                reasons
                    .push(format!("{name}: the encryption context differs from the one the data key was wrapped with"));
                continue;
            }
            materials.set_data_key(DataKey::new(data_key.to_vec()))?;
            return Ok(materials);
        }
        Err(Error::NoDataKeyDecrypted { reasons, retry })
    }
}

fn refuse_signing(signed: bool, suite: u16) -> Result<()> {
    if signed {
        return Err(Error::Config(format!(
            "the AWS KMS RSA keyring cannot be used with signing suite 0x{suite:04X}; use an unsigned suite such \
             as 0x0478"
        )));
    }
    Ok(())
}

/// SHA-384 of the encryption context serialized as in the header.
fn context_digest(context: &EncryptionContext) -> Result<[u8; DIGEST_LEN]> {
    Ok(Sha384::digest(context.serialize()?).into())
}

crate::keyring::keyring_by_async_methods!(AwsKmsRsaKeyring);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};
    use aws_lc_rs::signature::KeyPair;

    use super::*;
    use crate::format::suite::AlgorithmSuite;
    use crate::keyring::Keyring;
    use crate::keyring::kms::api::{CallParams, Decrypted, Encrypted, Generated, KmsFuture};
    use crate::keyring::kms::error::{KmsError, KmsErrorKind};

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    const REPLICA: &str = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";

    /// KMS with one RSA key whose private half does the real work, as KMS would.
    struct RsaKms {
        arn: String,
        private: PrivateDecryptingKey,
        calls: Mutex<Vec<&'static str>>,
        answer_key_id: Option<String>,
        /// Rewrites the plaintext KMS answers with, as a broken or hostile KMS might.
        tamper: Option<fn(&mut Vec<u8>)>,
    }

    impl RsaKms {
        fn new(arn: &str) -> Arc<Self> {
            Arc::new(Self {
                arn: arn.into(),
                private: PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap(),
                calls: Mutex::default(),
                answer_key_id: None,
                tamper: None,
            })
        }

        fn public_der(&self) -> Vec<u8> {
            let pkcs8 = self.private.as_der().unwrap();
            let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            pair.public_key().as_der().unwrap().as_ref().to_vec()
        }

        fn calls(&self) -> Vec<&'static str> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl KmsApi for RsaKms {
        fn region(&self) -> Option<String> {
            Some("us-east-1".into())
        }

        fn generate_data_key(&self, _: CallParams, _: usize) -> KmsFuture<Generated> {
            unreachable!("an RSA key cannot generate data keys")
        }

        fn encrypt(&self, _: CallParams, _: Zeroizing<Vec<u8>>) -> KmsFuture<Encrypted> {
            unreachable!("the RSA keyring encrypts locally")
        }

        fn decrypt(&self, _: CallParams, _: Vec<u8>) -> KmsFuture<Decrypted> {
            unreachable!("the RSA keyring decrypts with decrypt_rsa")
        }

        fn decrypt_rsa(
            &self,
            key_id: String,
            _: Vec<String>,
            ciphertext: Vec<u8>,
            algorithm: KmsRsaAlgorithm,
        ) -> KmsFuture<Decrypted> {
            self.calls.lock().unwrap().push("Decrypt");
            let result = if key_id != self.arn {
                Err(KmsError::new(KmsErrorKind::NotFound, "no such key"))
            } else {
                let oaep = match algorithm {
                    KmsRsaAlgorithm::OaepSha1 => &aws_lc_rs::rsa::OAEP_SHA1_MGF1SHA1,
                    KmsRsaAlgorithm::OaepSha256 => &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
                };
                let key = OaepPrivateDecryptingKey::new(self.private.clone()).unwrap();
                let mut out = vec![0u8; 256];
                match key.decrypt(oaep, &ciphertext, &mut out, None) {
                    Ok(plaintext) => {
                        let mut plaintext = plaintext.to_vec();
                        if let Some(tamper) = self.tamper {
                            tamper(&mut plaintext);
                        }
                        Ok(Decrypted {
                            key_id: Some(self.answer_key_id.clone().unwrap_or_else(|| self.arn.clone())),
                            plaintext: Zeroizing::new(plaintext),
                        })
                    }
                    Err(_) => Err(KmsError::new(KmsErrorKind::InvalidCiphertext, "")),
                }
            };
            Box::pin(async move { result })
        }

        fn get_public_key(&self, _: String, _: Vec<String>) -> KmsFuture<Vec<u8>> {
            self.calls.lock().unwrap().push("GetPublicKey");
            let der = self.public_der();
            Box::pin(async move { Ok(der) })
        }
    }

    fn context(value: &str) -> EncryptionContext {
        [("purpose", value)].into_iter().collect()
    }

    fn suite() -> AlgorithmSuite {
        AlgorithmSuite::from_id(0x0478).unwrap()
    }

    fn encrypt(keyring: &AwsKmsRsaKeyring, context: EncryptionContext) -> Result<EncryptionMaterials> {
        crate::keyring::block_on(keyring.on_encrypt(EncryptionMaterials::new(suite(), context, BTreeSet::new())))
    }

    fn decrypt(
        keyring: &AwsKmsRsaKeyring,
        context: EncryptionContext,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        let materials = DecryptionMaterials::new(suite(), context, BTreeSet::new());
        crate::keyring::block_on(keyring.on_decrypt(materials, edks))
    }

    #[test]
    fn encrypts_locally_and_decrypts_through_kms_with_the_context_bound() {
        let kms = RsaKms::new(ARN);
        for algorithm in [KmsRsaAlgorithm::OaepSha1, KmsRsaAlgorithm::OaepSha256] {
            let keyring = AwsKmsRsaKeyring::with_api(kms.clone(), ARN.into(), algorithm).unwrap();
            let encrypted = encrypt(&keyring, context("a")).unwrap();
            let edk = &encrypted.encrypted_data_keys()[0];
            assert_eq!((edk.provider_id.as_str(), edk.provider_info.as_slice()), (RSA_PROVIDER_ID, ARN.as_bytes()));
            encrypt(&keyring, context("b")).unwrap();
            let decrypted = decrypt(&keyring, context("a"), encrypted.encrypted_data_keys()).unwrap();
            assert_eq!(
                decrypted.data_key().unwrap().as_bytes(),
                encrypted.data_key().unwrap().as_bytes(),
                "{algorithm}"
            );
            let err = decrypt(&keyring, context("other"), encrypted.encrypted_data_keys()).unwrap_err();
            assert!(err.to_string().contains("encryption context differs"), "{err}");
        }
        // GetPublicKey once per keyring, however many encrypts.
        assert_eq!(kms.calls().iter().filter(|c| **c == "GetPublicKey").count(), 2);
    }

    #[test]
    fn a_replica_arn_matches_and_another_key_or_answer_does_not() {
        let kms = RsaKms::new(ARN);
        let keyring = AwsKmsRsaKeyring::with_api(kms.clone(), ARN.into(), KmsRsaAlgorithm::OaepSha256).unwrap();
        let mut edks = encrypt(&keyring, context("a")).unwrap().encrypted_data_keys().to_vec();
        edks[0].provider_info = REPLICA.as_bytes().to_vec();
        assert!(decrypt(&keyring, context("a"), &edks).is_ok(), "MRK replicas match");

        edks[0].provider_info = b"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".to_vec();
        let before = kms.calls().len();
        assert!(matches!(decrypt(&keyring, context("a"), &edks), Err(Error::NoDataKeyDecrypted { .. })));
        assert_eq!(kms.calls().len(), before, "no call for another key's EDK");

        edks[0].provider_info = b"arn:aws:kms:x@127.0.0.1/:111122223333:key/abc".to_vec();
        assert!(matches!(decrypt(&keyring, context("a"), &edks), Err(Error::Keyring(_))));

        let lying =
            Arc::new(RsaKms { answer_key_id: Some(REPLICA.into()), ..Arc::into_inner(RsaKms::new(ARN)).unwrap() });
        let keyring = AwsKmsRsaKeyring::with_api(lying, ARN.into(), KmsRsaAlgorithm::OaepSha256).unwrap();
        let edks = encrypt(&keyring, context("a")).unwrap().encrypted_data_keys().to_vec();
        let err = decrypt(&keyring, context("a"), &edks).unwrap_err();
        assert!(err.to_string().contains("another key decrypted"), "{err}");
    }

    #[test]
    fn signing_suites_aliases_and_missing_clients_are_refused() {
        let kms = RsaKms::new(ARN);
        let keyring = AwsKmsRsaKeyring::with_api(kms.clone(), ARN.into(), KmsRsaAlgorithm::OaepSha256).unwrap();
        let signed = AlgorithmSuite::from_id(0x0578).unwrap();
        let err = crate::keyring::block_on(keyring.on_encrypt(EncryptionMaterials::new(
            signed,
            context("a"),
            BTreeSet::new(),
        )))
        .unwrap_err();
        assert!(err.to_string().contains("signing suite 0x0578"), "{err}");
        let err = crate::keyring::block_on(
            keyring.on_decrypt(DecryptionMaterials::new(signed, context("a"), BTreeSet::new()), &[]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("signing suite 0x0578"), "{err}");

        let alias = "arn:aws:kms:us-east-1:111122223333:alias/deploy";
        assert!(AwsKmsRsaKeyring::with_api(kms.clone(), alias.into(), KmsRsaAlgorithm::OaepSha256).is_err());

        // A PEM-only keyring encrypts without KMS and cannot decrypt.
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, kms.public_der())
        );
        let pipeline = AwsKmsRsaKeyring::encrypt_only(ARN, KmsRsaAlgorithm::OaepSha256, pem.as_bytes()).unwrap();
        let calls = kms.calls().len();
        let edks = encrypt(&pipeline, context("a")).unwrap().encrypted_data_keys().to_vec();
        assert_eq!(kms.calls().len(), calls);
        assert!(matches!(decrypt(&pipeline, context("a"), &edks), Err(Error::NoDataKeyDecrypted { .. })));
        assert!(decrypt(&keyring, context("a"), &edks).is_ok(), "the KMS keyring reads what the pipeline wrote");
    }

    #[test]
    fn a_context_mismatch_rules_out_one_edk_and_the_next_is_tried() {
        let kms = RsaKms::new(ARN);
        let keyring = AwsKmsRsaKeyring::with_api(kms, ARN.into(), KmsRsaAlgorithm::OaepSha256).unwrap();
        let other = encrypt(&keyring, context("b")).unwrap();
        let wanted = encrypt(&keyring, context("a")).unwrap();
        let edks = [other.encrypted_data_keys()[0].clone(), wanted.encrypted_data_keys()[0].clone()];
        let decrypted = decrypt(&keyring, context("a"), &edks).unwrap();
        assert_eq!(decrypted.data_key().unwrap().as_bytes(), wanted.data_key().unwrap().as_bytes());
        let err = decrypt(&keyring, context("c"), &edks).unwrap_err();
        assert!(matches!(&err, Error::NoDataKeyDecrypted { reasons, .. } if reasons.len() == 2), "{err}");
        assert!(err.to_string().contains("encryption context differs"), "{err}");
    }

    /// KMS answers that are not a 48-byte digest and a data key of the suite's length are refused, even
    /// when the digest in front matches.
    #[test]
    fn kms_answers_of_the_wrong_length_are_refused() {
        let tampers: [fn(&mut Vec<u8>); 5] = [
            |p| p.truncate(p.len() - 1),
            |p| p.push(0),
            |p| p.truncate(DIGEST_LEN),
            |p| p.truncate(DIGEST_LEN - 1),
            Vec::clear,
        ];
        for tamper in tampers {
            let kms = Arc::new(RsaKms { tamper: Some(tamper), ..Arc::into_inner(RsaKms::new(ARN)).unwrap() });
            let keyring = AwsKmsRsaKeyring::with_api(kms, ARN.into(), KmsRsaAlgorithm::OaepSha256).unwrap();
            let edks = encrypt(&keyring, context("a")).unwrap().encrypted_data_keys().to_vec();
            let err = decrypt(&keyring, context("a"), &edks).unwrap_err();
            assert!(err.to_string().contains("not a digest and a 32-byte key"), "{err}");
        }
    }
}
