//! The boundary between the keyrings and AWS KMS: the three calls they make, as a small trait.
//!
//! [`KmsApi`] is implemented for [`aws_sdk_kms::Client`]; unit tests implement it with a double to inject
//! what moto cannot produce (disabled keys, multi-Region keys, wrong key ids, throttling).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use aws_sdk_kms::primitives::Blob;
use zeroize::Zeroizing;

use super::error::KmsError;

/// A KMS call in flight. `'static` so that it can run on whichever tokio runtime is at hand.
pub(crate) type KmsFuture<T> = Pin<Box<dyn Future<Output = Result<T, KmsError>> + Send + 'static>>;

/// What every call carries besides its payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CallParams {
    /// The `KeyId` parameter.
    pub key_id: String,
    /// The full materials encryption context.
    pub context: HashMap<String, String>,
    /// The keyring's grant tokens.
    pub grant_tokens: Vec<String>,
}

/// `GenerateDataKey`'s answer.
pub(crate) struct Generated {
    /// The ARN of the key that encrypted the data key, as KMS reports it.
    pub key_id: Option<String>,
    /// The plaintext data key.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The encrypted data key.
    pub ciphertext: Vec<u8>,
}

/// `Encrypt`'s answer.
pub(crate) struct Encrypted {
    /// The ARN of the key that encrypted the data key, as KMS reports it.
    pub key_id: Option<String>,
    /// The encrypted data key.
    pub ciphertext: Vec<u8>,
}

/// `Decrypt`'s answer.
pub(crate) struct Decrypted {
    /// The ARN of the key that decrypted, as KMS reports it.
    pub key_id: Option<String>,
    /// The plaintext data key.
    pub plaintext: Zeroizing<Vec<u8>>,
}

/// `ReEncrypt`'s answer.
#[cfg(feature = "hierarchy-ddb")]
pub(crate) struct ReEncrypted {
    /// The ARN of the key that decrypted, as KMS reports it.
    pub source_key_id: Option<String>,
    /// The ARN of the key that encrypted again, as KMS reports it.
    pub key_id: Option<String>,
    /// The ciphertext under the destination key and context.
    pub ciphertext: Vec<u8>,
}

/// The KMS operations the keyrings use.
pub(crate) trait KmsApi: Send + Sync + 'static {
    /// The region the client sends requests to, if it has one.
    fn region(&self) -> Option<String>;

    /// `GenerateDataKey` for `number_of_bytes` bytes.
    fn generate_data_key(&self, params: CallParams, number_of_bytes: usize) -> KmsFuture<Generated>;

    /// `Encrypt` of `plaintext` (a data key).
    fn encrypt(&self, params: CallParams, plaintext: Zeroizing<Vec<u8>>) -> KmsFuture<Encrypted>;

    /// `Decrypt` of `ciphertext` (an encrypted data key), with `KeyId` always set.
    fn decrypt(&self, params: CallParams, ciphertext: Vec<u8>) -> KmsFuture<Decrypted>;

    /// `Decrypt` with an RSA key: `EncryptionAlgorithm` set, no encryption context (KMS takes none for
    /// asymmetric keys).
    #[cfg(feature = "rsa")]
    fn decrypt_rsa(
        &self,
        _key_id: String,
        _grant_tokens: Vec<String>,
        _ciphertext: Vec<u8>,
        _algorithm: super::rsa::KmsRsaAlgorithm,
    ) -> KmsFuture<Decrypted> {
        unsupported("Decrypt with an RSA key")
    }

    /// `GetPublicKey`: the key's public key as DER SubjectPublicKeyInfo.
    #[cfg(feature = "rsa")]
    fn get_public_key(&self, _key_id: String, _grant_tokens: Vec<String>) -> KmsFuture<Vec<u8>> {
        unsupported("GetPublicKey")
    }

    /// `GetPublicKey` of a key agreement key: the answer as KMS gave it (the ECDH keyring checks it).
    fn get_agreement_public_key(&self, _key_id: String, _grant_tokens: Vec<String>) -> KmsFuture<AgreementPublicKey> {
        unsupported("GetPublicKey")
    }

    /// `DeriveSharedSecret` with `KeyAgreementAlgorithm` ECDH between the key and `public_key` (DER
    /// SubjectPublicKeyInfo): the answer as KMS gave it (the ECDH keyring checks it).
    fn derive_shared_secret(
        &self,
        _key_id: String,
        _grant_tokens: Vec<String>,
        _public_key: Vec<u8>,
    ) -> KmsFuture<SharedSecret> {
        unsupported("DeriveSharedSecret")
    }

    /// `GenerateDataKeyWithoutPlaintext` for `number_of_bytes` bytes: a new key that only KMS ever sees in
    /// plaintext (the branch key store's new branch keys).
    #[cfg(feature = "hierarchy-ddb")]
    fn generate_data_key_without_plaintext(
        &self,
        _params: CallParams,
        _number_of_bytes: usize,
    ) -> KmsFuture<Encrypted> {
        unsupported("GenerateDataKeyWithoutPlaintext")
    }

    /// `ReEncrypt` of `ciphertext` from `source` (key and context) to `destination`, the plaintext never
    /// leaving KMS. Grant tokens are `destination`'s.
    #[cfg(feature = "hierarchy-ddb")]
    fn re_encrypt(
        &self,
        _source: CallParams,
        _destination: CallParams,
        _ciphertext: Vec<u8>,
    ) -> KmsFuture<ReEncrypted> {
        unsupported("ReEncrypt")
    }
}

/// `GetPublicKey`'s answer for a key agreement key, unchecked.
pub(crate) struct AgreementPublicKey {
    /// The key ARN, as KMS reports it.
    pub key_id: Option<String>,
    /// Whether KMS reports the key's usage as `KEY_AGREEMENT`.
    pub key_agreement: bool,
    /// The public key, DER SubjectPublicKeyInfo.
    pub public_key: Option<Vec<u8>>,
}

/// `DeriveSharedSecret`'s answer, unchecked.
pub(crate) struct SharedSecret {
    /// The key ARN, as KMS reports it.
    pub key_id: Option<String>,
    /// Whether KMS reports the key agreement algorithm as `ECDH`.
    pub ecdh: bool,
    /// The shared secret (the X coordinate of the shared point).
    pub secret: Option<Zeroizing<Vec<u8>>>,
}

/// What a test double that does not implement an operation answers.
fn unsupported<T>(operation: &str) -> KmsFuture<T> {
    let err = KmsError {
        kind: super::error::KmsErrorKind::Other,
        code: None,
        detail: format!("{operation} is not implemented by this KMS client"),
        request_id: None,
    };
    Box::pin(async move { Err(err) })
}

fn plaintext(blob: Option<Blob>) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(blob.map(Blob::into_inner).unwrap_or_default())
}

impl KmsApi for aws_sdk_kms::Client {
    fn region(&self) -> Option<String> {
        self.config().region().map(ToString::to_string)
    }

    fn generate_data_key(&self, params: CallParams, number_of_bytes: usize) -> KmsFuture<Generated> {
        let call = self
            .generate_data_key()
            .key_id(params.key_id)
            .number_of_bytes(i32::try_from(number_of_bytes).unwrap_or(i32::MAX))
            .set_encryption_context(non_empty_map(params.context))
            .set_grant_tokens(non_empty(params.grant_tokens));
        Box::pin(async move {
            let out = call.send().await.map_err(KmsError::from_sdk)?;
            Ok(Generated {
                key_id: out.key_id,
                plaintext: plaintext(out.plaintext),
                ciphertext: out.ciphertext_blob.map(Blob::into_inner).unwrap_or_default(),
            })
        })
    }

    fn encrypt(&self, params: CallParams, plaintext: Zeroizing<Vec<u8>>) -> KmsFuture<Encrypted> {
        // The SDK takes ownership of an ordinary Vec; that copy is not zeroized (nor is the request body).
        let call = self
            .encrypt()
            .key_id(params.key_id)
            .plaintext(Blob::new(plaintext.to_vec()))
            .set_encryption_context(non_empty_map(params.context))
            .set_grant_tokens(non_empty(params.grant_tokens));
        Box::pin(async move {
            let out = call.send().await.map_err(KmsError::from_sdk)?;
            Ok(Encrypted {
                key_id: out.key_id,
                ciphertext: out.ciphertext_blob.map(Blob::into_inner).unwrap_or_default(),
            })
        })
    }

    fn decrypt(&self, params: CallParams, ciphertext: Vec<u8>) -> KmsFuture<Decrypted> {
        let call = self
            .decrypt()
            .key_id(params.key_id)
            .ciphertext_blob(Blob::new(ciphertext))
            .set_encryption_context(non_empty_map(params.context))
            .set_grant_tokens(non_empty(params.grant_tokens));
        Box::pin(async move {
            let out = call.send().await.map_err(KmsError::from_sdk)?;
            Ok(Decrypted { key_id: out.key_id, plaintext: plaintext(out.plaintext) })
        })
    }

    #[cfg(feature = "rsa")]
    fn decrypt_rsa(
        &self,
        key_id: String,
        grant_tokens: Vec<String>,
        ciphertext: Vec<u8>,
        algorithm: super::rsa::KmsRsaAlgorithm,
    ) -> KmsFuture<Decrypted> {
        let call = self
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(ciphertext))
            .encryption_algorithm(rsa_spec(algorithm))
            .set_grant_tokens(non_empty(grant_tokens));
        Box::pin(async move {
            let out = call.send().await.map_err(KmsError::from_sdk)?;
            Ok(Decrypted { key_id: out.key_id, plaintext: plaintext(out.plaintext) })
        })
    }

    #[cfg(feature = "rsa")]
    fn get_public_key(&self, key_id: String, grant_tokens: Vec<String>) -> KmsFuture<Vec<u8>> {
        let call = self.get_public_key().key_id(key_id).set_grant_tokens(non_empty(grant_tokens));
        Box::pin(async move {
            let out = call.send().await.map_err(KmsError::from_sdk)?;
            // A SIGN_VERIFY key has a public key too: encrypting under it would write messages that KMS
            // refuses to decrypt, ever.
            match out.key_usage() {
                Some(aws_sdk_kms::types::KeyUsageType::EncryptDecrypt) | None => {}
                Some(usage) => {
                    return Err(KmsError {
                        kind: super::error::KmsErrorKind::Other,
                        code: None,
                        detail: format!(
                            "the key's usage is {usage}, not ENCRYPT_DECRYPT: KMS would never decrypt what it encrypts"
                        ),
                        request_id: None,
                    });
                }
            }
            Ok(out.public_key.map(Blob::into_inner).unwrap_or_default())
        })
    }

    fn get_agreement_public_key(&self, key_id: String, grant_tokens: Vec<String>) -> KmsFuture<AgreementPublicKey> {
        let call = self.get_public_key().key_id(key_id).set_grant_tokens(non_empty(grant_tokens));
        Box::pin(async move {
            let out = call.send().await.map_err(KmsError::from_sdk)?;
            Ok(AgreementPublicKey {
                key_agreement: out.key_usage == Some(aws_sdk_kms::types::KeyUsageType::KeyAgreement),
                key_id: out.key_id,
                public_key: out.public_key.map(Blob::into_inner),
            })
        })
    }

    fn derive_shared_secret(
        &self,
        key_id: String,
        grant_tokens: Vec<String>,
        public_key: Vec<u8>,
    ) -> KmsFuture<SharedSecret> {
        let call = self
            .derive_shared_secret()
            .key_id(key_id)
            .key_agreement_algorithm(aws_sdk_kms::types::KeyAgreementAlgorithmSpec::Ecdh)
            .public_key(Blob::new(public_key))
            .set_grant_tokens(non_empty(grant_tokens));
        Box::pin(async move {
            let out = call.send().await.map_err(KmsError::from_sdk)?;
            Ok(SharedSecret {
                ecdh: out.key_agreement_algorithm == Some(aws_sdk_kms::types::KeyAgreementAlgorithmSpec::Ecdh),
                key_id: out.key_id,
                secret: out.shared_secret.map(|blob| Zeroizing::new(blob.into_inner())),
            })
        })
    }

    #[cfg(feature = "hierarchy-ddb")]
    fn generate_data_key_without_plaintext(&self, params: CallParams, number_of_bytes: usize) -> KmsFuture<Encrypted> {
        let call = self
            .generate_data_key_without_plaintext()
            .key_id(params.key_id)
            .number_of_bytes(i32::try_from(number_of_bytes).unwrap_or(i32::MAX))
            .set_encryption_context(non_empty_map(params.context))
            .set_grant_tokens(non_empty(params.grant_tokens));
        Box::pin(async move {
            let out = call.send().await.map_err(KmsError::from_sdk)?;
            Ok(Encrypted {
                key_id: out.key_id,
                ciphertext: out.ciphertext_blob.map(Blob::into_inner).unwrap_or_default(),
            })
        })
    }

    #[cfg(feature = "hierarchy-ddb")]
    fn re_encrypt(&self, source: CallParams, destination: CallParams, ciphertext: Vec<u8>) -> KmsFuture<ReEncrypted> {
        let call = self
            .re_encrypt()
            .ciphertext_blob(Blob::new(ciphertext))
            .source_key_id(source.key_id)
            .set_source_encryption_context(non_empty_map(source.context))
            .destination_key_id(destination.key_id)
            .set_destination_encryption_context(non_empty_map(destination.context))
            .set_grant_tokens(non_empty(destination.grant_tokens));
        Box::pin(async move {
            let out = call.send().await.map_err(KmsError::from_sdk)?;
            Ok(ReEncrypted {
                source_key_id: out.source_key_id,
                key_id: out.key_id,
                ciphertext: out.ciphertext_blob.map(Blob::into_inner).unwrap_or_default(),
            })
        })
    }
}

#[cfg(feature = "rsa")]
fn rsa_spec(algorithm: super::rsa::KmsRsaAlgorithm) -> aws_sdk_kms::types::EncryptionAlgorithmSpec {
    use aws_sdk_kms::types::EncryptionAlgorithmSpec;
    match algorithm {
        super::rsa::KmsRsaAlgorithm::OaepSha1 => EncryptionAlgorithmSpec::RsaesOaepSha1,
        super::rsa::KmsRsaAlgorithm::OaepSha256 => EncryptionAlgorithmSpec::RsaesOaepSha256,
    }
}

fn non_empty(tokens: Vec<String>) -> Option<Vec<String>> {
    (!tokens.is_empty()).then_some(tokens)
}

fn non_empty_map(context: HashMap<String, String>) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then_some(context)
}
