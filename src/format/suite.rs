//! The ESDK algorithm suites (format notes §1) and the commitment policy that decides which may be used.

use crate::error::{Error, Result};

/// Header layout a suite is written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageFormat {
    /// Version 1 header: type byte, 16-byte message id, stored header IV. Non-committing suites.
    V1,
    /// Version 2 header: 32-byte message id and a 32-byte key commitment. Committing suites.
    V2,
}

impl MessageFormat {
    /// Length of the message id in this header version.
    pub const fn message_id_len(self) -> usize {
        match self {
            MessageFormat::V1 => 16,
            MessageFormat::V2 => 32,
        }
    }
}

/// How the content key is derived from the data key (format notes §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kdf {
    /// The data key is the content key.
    Identity,
    /// HKDF-SHA256, info = suite id || message id, no salt.
    HkdfSha256,
    /// HKDF-SHA384, info = suite id || message id, no salt.
    HkdfSha384,
    /// HKDF-SHA512 with the message id as salt, plus a 32-byte key commitment.
    HkdfSha512Commit,
}

/// The curve and hash of a message signature (format notes §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// ECDSA over P-256 with SHA-256; compressed public key of 33 bytes.
    EcdsaP256Sha256,
    /// ECDSA over P-384 with SHA-384; compressed public key of 49 bytes.
    EcdsaP384Sha384,
}

/// One of the eleven AWS Encryption SDK algorithm suites. All use AES-GCM with a 12-byte IV and a 16-byte tag.
///
/// ```
/// use kms_envelope::{AlgorithmSuite, EncryptOptions, RawAesKeyring, SignatureAlgorithm};
///
/// # fn main() -> Result<(), kms_envelope::Error> {
/// // The default suite, 0x0478, plus an ECDSA P-384 signature: whoever can decrypt a message (and so
/// // holds its data key) still cannot forge one under it; only the writer held the signing key.
/// let suite = AlgorithmSuite::from_id(0x0578)?;
/// assert_eq!(suite, AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384);
/// assert_eq!(suite.signature(), Some(SignatureAlgorithm::EcdsaP384Sha384));
/// assert!(suite.is_committing());
///
/// let keyring = RawAesKeyring::new("my-service", "secrets-key-1", &[0x42u8; 32])?;
/// let message = kms_envelope::encrypt(&keyring, &EncryptOptions::new().suite(suite), b"report")?;
/// assert_eq!(message[1..3], [0x05, 0x78]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AlgorithmSuite {
    id: u16,
    format: MessageFormat,
    key_len: usize,
    kdf: Kdf,
    signature: Option<SignatureAlgorithm>,
}

macro_rules! suites {
    ($($(#[$doc:meta])* $name:ident = $id:literal, $format:ident, $key_len:literal, $kdf:ident, $sig:expr;)*) => {
        impl AlgorithmSuite {
            $(
                $(#[$doc])*
                pub const $name: AlgorithmSuite = AlgorithmSuite {
                    id: $id,
                    format: MessageFormat::$format,
                    key_len: $key_len,
                    kdf: Kdf::$kdf,
                    signature: $sig,
                };
            )*

            /// Every ESDK suite, in id order.
            pub const ALL: &'static [AlgorithmSuite] = &[$(AlgorithmSuite::$name),*];
        }
    };
}

suites! {
    /// 0x0014: AES-128-GCM, no KDF. Legacy; decrypt only under an allow-decrypt policy.
    AES_128_GCM_IV12_TAG16_NO_KDF = 0x0014, V1, 16, Identity, None;
    /// 0x0046: AES-192-GCM, no KDF.
    AES_192_GCM_IV12_TAG16_NO_KDF = 0x0046, V1, 24, Identity, None;
    /// 0x0078: AES-256-GCM, no KDF.
    AES_256_GCM_IV12_TAG16_NO_KDF = 0x0078, V1, 32, Identity, None;
    /// 0x0114: AES-128-GCM, HKDF-SHA256.
    AES_128_GCM_IV12_TAG16_HKDF_SHA256 = 0x0114, V1, 16, HkdfSha256, None;
    /// 0x0146: AES-192-GCM, HKDF-SHA256.
    AES_192_GCM_IV12_TAG16_HKDF_SHA256 = 0x0146, V1, 24, HkdfSha256, None;
    /// 0x0178: AES-256-GCM, HKDF-SHA256. Our default under the forbid-encrypt policy.
    AES_256_GCM_IV12_TAG16_HKDF_SHA256 = 0x0178, V1, 32, HkdfSha256, None;
    /// 0x0214: AES-128-GCM, HKDF-SHA256, ECDSA P-256 with SHA-256.
    AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256 = 0x0214, V1, 16, HkdfSha256, Some(SignatureAlgorithm::EcdsaP256Sha256);
    /// 0x0346: AES-192-GCM, HKDF-SHA384, ECDSA P-384 with SHA-384.
    AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384 = 0x0346, V1, 24, HkdfSha384, Some(SignatureAlgorithm::EcdsaP384Sha384);
    /// 0x0378: AES-256-GCM, HKDF-SHA384, ECDSA P-384 with SHA-384. The ESDK default under the forbid policy.
    AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384 = 0x0378, V1, 32, HkdfSha384, Some(SignatureAlgorithm::EcdsaP384Sha384);
    /// 0x0478: AES-256-GCM, HKDF-SHA512, key commitment, no signature. Our default.
    AES_256_GCM_HKDF_SHA512_COMMIT_KEY = 0x0478, V2, 32, HkdfSha512Commit, None;
    /// 0x0578: AES-256-GCM, HKDF-SHA512, key commitment, ECDSA P-384. The ESDK default.
    AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384 = 0x0578, V2, 32, HkdfSha512Commit, Some(SignatureAlgorithm::EcdsaP384Sha384);
}

impl AlgorithmSuite {
    /// The suite with this id, if it is an ESDK suite.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedSuite`] for any other id.
    pub fn from_id(id: u16) -> Result<AlgorithmSuite> {
        Self::ALL.iter().copied().find(|s| s.id == id).ok_or(Error::UnsupportedSuite(id))
    }

    /// The 2-byte suite id as written in the header.
    pub const fn id(&self) -> u16 {
        self.id
    }

    /// The header version this suite is written with.
    pub const fn message_format(&self) -> MessageFormat {
        self.format
    }

    /// Length of the data key (the KDF input), equal to the AES key length.
    pub const fn key_len(&self) -> usize {
        self.key_len
    }

    /// How the content key is derived.
    pub const fn kdf(&self) -> Kdf {
        self.kdf
    }

    /// The signature algorithm, for suites that sign.
    pub const fn signature(&self) -> Option<SignatureAlgorithm> {
        self.signature
    }

    /// Whether the header carries a key commitment.
    pub const fn is_committing(&self) -> bool {
        matches!(self.kdf, Kdf::HkdfSha512Commit)
    }
}

impl std::fmt::Display for AlgorithmSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:04X}", self.id)
    }
}

/// Which suites encrypt may use and decrypt may accept, with the ESDK's semantics (format notes §13).
///
/// ```
/// use kms_envelope::{CommitmentPolicy, DecryptOptions};
///
/// // Reading messages that ESDK 1.x wrote (non-committing suites) during a migration:
/// let policy: CommitmentPolicy = "require-encrypt-allow-decrypt".parse()?;
/// assert_eq!(policy, CommitmentPolicy::RequireEncryptAllowDecrypt);
/// let options = DecryptOptions::new().commitment_policy(policy);
/// # let _ = options;
/// # Ok::<(), kms_envelope::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CommitmentPolicy {
    /// Encrypt with non-committing (v1) suites only; decrypt anything. For writing to readers on ESDK 1.x.
    ForbidEncryptAllowDecrypt,
    /// Encrypt with committing suites only; still decrypt legacy non-committing messages.
    RequireEncryptAllowDecrypt,
    /// Committing suites only, both ways. The ESDK's and our default.
    #[default]
    RequireEncryptRequireDecrypt,
}

impl CommitmentPolicy {
    /// The name used by the CLI and the ESDK CLI.
    pub const fn name(self) -> &'static str {
        match self {
            CommitmentPolicy::ForbidEncryptAllowDecrypt => "forbid-encrypt-allow-decrypt",
            CommitmentPolicy::RequireEncryptAllowDecrypt => "require-encrypt-allow-decrypt",
            CommitmentPolicy::RequireEncryptRequireDecrypt => "require-encrypt-require-decrypt",
        }
    }

    /// The suite encrypt uses when the caller names none: unsigned, and committing where allowed.
    pub const fn default_suite(self) -> AlgorithmSuite {
        match self {
            CommitmentPolicy::ForbidEncryptAllowDecrypt => AlgorithmSuite::AES_256_GCM_IV12_TAG16_HKDF_SHA256,
            _ => AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        }
    }

    /// Fails unless this policy allows encrypting with `suite`.
    ///
    /// # Errors
    ///
    /// [`Error::CommitmentPolicy`] for a suite without key commitment under the two `require-encrypt`
    /// policies, and for a committing suite under `forbid-encrypt-allow-decrypt`.
    pub fn check_encrypt(self, suite: AlgorithmSuite) -> Result<()> {
        let allowed = match self {
            CommitmentPolicy::ForbidEncryptAllowDecrypt => !suite.is_committing(),
            _ => suite.is_committing(),
        };
        if allowed {
            Ok(())
        } else {
            Err(Error::CommitmentPolicy(format!(
                "commitment policy {} does not allow encrypting with suite {suite}",
                self.name()
            )))
        }
    }

    /// Fails unless this policy allows decrypting a message of `suite`.
    ///
    /// # Errors
    ///
    /// [`Error::CommitmentPolicy`] for a suite without key commitment under
    /// `require-encrypt-require-decrypt`.
    pub fn check_decrypt(self, suite: AlgorithmSuite) -> Result<()> {
        if self == CommitmentPolicy::RequireEncryptRequireDecrypt && !suite.is_committing() {
            return Err(Error::CommitmentPolicy(format!(
                "message uses non-committing suite {suite}, which commitment policy {} refuses; \
                 to decrypt legacy messages use require-encrypt-allow-decrypt",
                self.name()
            )));
        }
        Ok(())
    }
}

impl std::str::FromStr for CommitmentPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        [
            CommitmentPolicy::ForbidEncryptAllowDecrypt,
            CommitmentPolicy::RequireEncryptAllowDecrypt,
            CommitmentPolicy::RequireEncryptRequireDecrypt,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| Error::Config(format!("unknown commitment policy {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_rejected() {
        for suite in AlgorithmSuite::ALL {
            assert_eq!(AlgorithmSuite::from_id(suite.id()).unwrap(), *suite);
        }
        assert_eq!(AlgorithmSuite::ALL.len(), 11);
        for id in [0x0000, 0x0070, 0x6700, 0xFFFF] {
            assert!(matches!(AlgorithmSuite::from_id(id), Err(Error::UnsupportedSuite(i)) if i == id));
        }
    }

    #[test]
    fn default_policy_refuses_legacy_and_names_the_way_out() {
        let err =
            CommitmentPolicy::default().check_decrypt(AlgorithmSuite::AES_256_GCM_IV12_TAG16_HKDF_SHA256).unwrap_err();
        assert!(err.to_string().contains("require-encrypt-allow-decrypt"), "{err}");
        assert!(
            CommitmentPolicy::RequireEncryptAllowDecrypt
                .check_decrypt(AlgorithmSuite::AES_128_GCM_IV12_TAG16_NO_KDF)
                .is_ok()
        );
        assert!(
            CommitmentPolicy::ForbidEncryptAllowDecrypt
                .check_encrypt(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY)
                .is_err()
        );
    }
}
