//! From data key to content key and key commitment (format notes §6).

use hkdf::Hkdf;
use rand::TryRng as _;
use sha2::{Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::aead::AeadKey;
use super::scrub::scrubbed;
use crate::error::{Error, Result};
use crate::format::header::{COMMITMENT_LEN, MessageId};
use crate::format::suite::{AlgorithmSuite, Kdf};

/// A plaintext data key. Zeroized on drop; its `Debug` shows only the length.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct DataKey(Vec<u8>);

impl DataKey {
    /// Wraps key bytes (taking ownership, so no copy is left behind).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// A fresh random key of `len` bytes, from the operating system's generator.
    ///
    /// # Panics
    /// If the operating system's random number generator fails (as `rand`'s thread-local generator would
    /// when it seeds itself).
    pub fn random(len: usize) -> Self {
        let mut bytes = vec![0u8; len];
        // Not `rand::fill`: the thread-local generator keeps the block of output a key was drawn from in
        // its buffer, which is freed unwiped when the thread exits (a worker, a blocking-pool thread).
        rand::rngs::SysRng.try_fill_bytes(&mut bytes).expect("the operating system's random number generator failed");
        Self(bytes)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty (never true for a usable key).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey(<{} bytes redacted>)", self.0.len())
    }
}

/// The keys of one message: the content key for the header tag and every frame, and for v2 suites the
/// key commitment.
#[derive(Debug)]
pub struct MessageKeys {
    /// AES-GCM under the derived content key.
    pub content: AeadKey,
    /// The commitment that v2 headers store and decryptors compare.
    pub commitment: Option<[u8; COMMITMENT_LEN]>,
}

/// Which variant of the v1 HKDF info to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V1Info {
    /// `suite_id || message_id`, as every ESDK writes.
    Standard,
    /// `suite_id` only: what ESDK-.NET 4.0.0 wrote by mistake (format notes §17.10).
    NetV400,
}

impl MessageKeys {
    /// Derives the keys of a message from its data key.
    pub fn derive(suite: AlgorithmSuite, data_key: &DataKey, message_id: &MessageId, info: V1Info) -> Result<Self> {
        // HMAC and SHA-2 copy the data key and the derived keys through stack temporaries (crypto::scrub).
        let (content, commitment) = scrubbed(|| derive_bytes(suite, data_key, message_id, info))?;
        Ok(Self { content: AeadKey::new(&content)?, commitment })
    }

    /// Compares the derived commitment with the one stored in a header, in constant time.
    pub fn verify_commitment(&self, stored: Option<&[u8; COMMITMENT_LEN]>) -> Result<()> {
        match (&self.commitment, stored) {
            (None, None) => Ok(()),
            (Some(ours), Some(theirs)) if bool::from(ours.ct_eq(theirs)) => Ok(()),
            _ => Err(Error::CommitmentMismatch),
        }
    }
}

type DerivedBytes = (Zeroizing<Vec<u8>>, Option<[u8; COMMITMENT_LEN]>);

fn derive_bytes(
    suite: AlgorithmSuite,
    data_key: &DataKey,
    message_id: &MessageId,
    info: V1Info,
) -> Result<DerivedBytes> {
    let pdk = data_key.as_bytes();
    if pdk.len() != suite.key_len() {
        return Err(Error::Keyring(
            format!("data key is {} bytes, suite {suite} needs {}", pdk.len(), suite.key_len()).into(),
        ));
    }
    let mut content = Zeroizing::new(vec![0u8; suite.key_len()]);
    let suite_id = suite.id().to_be_bytes();
    let v1_info: &[&[u8]] = match info {
        V1Info::Standard => &[&suite_id, message_id.as_bytes()],
        V1Info::NetV400 => &[&suite_id],
    };
    let mut commitment = None;
    // Output lengths are at most 32 bytes, far below HKDF's limit, so expansion cannot fail.
    const OK: &str = "HKDF output length within 255 hash lengths";
    match suite.kdf() {
        Kdf::Identity => content.copy_from_slice(pdk),
        // `extract` rather than `new`, which drops the PRK it computed without wiping it. What `Hkdf` keeps
        // (HMAC states keyed with the PRK) is wiped on drop through sha2's `zeroize` feature.
        Kdf::HkdfSha256 => {
            let (mut prk, hkdf) = Hkdf::<Sha256>::extract(None, pdk);
            prk[..].zeroize();
            hkdf.expand_multi_info(v1_info, &mut content).expect(OK);
        }
        Kdf::HkdfSha384 => {
            let (mut prk, hkdf) = Hkdf::<Sha384>::extract(None, pdk);
            prk[..].zeroize();
            hkdf.expand_multi_info(v1_info, &mut content).expect(OK);
        }
        Kdf::HkdfSha512Commit => {
            let (mut prk, hkdf) = Hkdf::<Sha512>::extract(Some(message_id.as_bytes()), pdk);
            prk[..].zeroize();
            hkdf.expand_multi_info(&[&suite_id, b"DERIVEKEY"], &mut content).expect(OK);
            let mut key = [0u8; COMMITMENT_LEN];
            hkdf.expand(b"COMMITKEY", &mut key).expect(OK);
            commitment = Some(key);
        }
    }
    Ok((content, commitment))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::suite::MessageFormat;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn zero_id(format: MessageFormat) -> MessageId {
        MessageId::from_bytes(&vec![0u8; format.message_id_len()]).unwrap()
    }

    /// Known answers from the format notes §6.3, taken from the Python ESDK's commitment vectors.
    #[test]
    fn committing_kdf_matches_python_vectors() {
        let keys = MessageKeys::derive(
            AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
            &DataKey::new(vec![0; 32]),
            &zero_id(MessageFormat::V2),
            V1Info::Standard,
        )
        .unwrap();
        assert_eq!(
            keys.commitment.unwrap().to_vec(),
            hex("433d837f59cb7e9bc6334d154aff831109c6372d98f8b5ac8588bff7efaba651")
        );
        assert!(keys.verify_commitment(keys.commitment.as_ref()).is_ok());
        assert!(keys.verify_commitment(Some(&[0; 32])).is_err());
        assert!(keys.verify_commitment(None).is_err());
    }

    /// Known answers from the format notes §6.2 and §6.3 (the latter from the Python commitment vectors).
    #[test]
    fn content_keys_match_known_answers() {
        let (v1, none) = derive_bytes(
            AlgorithmSuite::AES_256_GCM_IV12_TAG16_HKDF_SHA256,
            &DataKey::new(vec![0; 32]),
            &zero_id(MessageFormat::V1),
            V1Info::Standard,
        )
        .unwrap();
        assert_eq!(v1.to_vec(), hex("77ac19da5eb7792f2e26866584753902431f7567c44fb36bad90cd284834e07d"));
        assert!(none.is_none());
        let (v2, _) = derive_bytes(
            AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
            &DataKey::new(vec![0; 32]),
            &zero_id(MessageFormat::V2),
            V1Info::Standard,
        )
        .unwrap();
        assert_eq!(v2.to_vec(), hex("a9299dde8c7bafe70878698986e82e6378b94bf2cc29551824681647bae113a3"));
    }

    #[test]
    fn wrong_data_key_length_is_refused() {
        let err = MessageKeys::derive(
            AlgorithmSuite::AES_128_GCM_IV12_TAG16_NO_KDF,
            &DataKey::new(vec![0; 32]),
            &MessageId::random(MessageFormat::V1),
            V1Info::Standard,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Keyring(_)));
        assert_eq!(format!("{:?}", DataKey::new(vec![7; 32])), "DataKey(<32 bytes redacted>)");
    }
}
