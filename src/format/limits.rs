//! Every resource limit decrypt enforces, in one place.
//!
//! A message is untrusted input: its header chooses frame lengths, EDK counts and body sizes. No allocation
//! is ever sized by such a length beyond these limits, and a message over a limit fails with
//! [`Error::LimitExceeded`](crate::Error::LimitExceeded) before anything is allocated for it.

/// The limit on encrypted data keys per message that the CLI and the Lambda decryptor apply unless told
/// otherwise. A message has one EDK per key it was encrypted under: ten covers a key in each of ten regions
/// plus a break-glass key, while bounding the KMS calls a crafted message can cause to ten.
pub const RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS: u16 = 10;

/// Limits applied while decrypting. The defaults accept every message the AWS Encryption SDKs write with
/// their defaults, and bound memory to a few tens of MiB per decryptor.
///
/// ```
/// use kms_envelope::{DecryptLimits, DecryptOptions, RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS};
///
/// // Messages from someone you do not trust: few EDKs (each may cost a KMS call), small frames.
/// let limits = DecryptLimits {
///     max_encrypted_data_keys: Some(RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS),
///     max_frame_length: 1 << 20,
///     ..DecryptLimits::default()
/// };
/// let options = DecryptOptions::new().limits(limits);
/// # let _ = options;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecryptLimits {
    /// Largest frame length (header field) a decryptor will buffer. Default 16 MiB; the ESDKs write 4096.
    pub max_frame_length: u32,
    /// Most encrypted data keys in a header. Default `None` (unlimited, like the ESDK). Set it (for example
    /// to [`RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS`]) whenever messages may come from someone you do not trust:
    /// each distinct EDK a keyring accepts can cost one KMS call (with its retries and timeouts), and a
    /// header may hold thousands. The CLI and the Lambda decryptor apply the recommended value by default.
    pub max_encrypted_data_keys: Option<u16>,
    /// Largest header, in bytes, including encryption context and EDKs. Default 4 MiB.
    pub max_header_len: usize,
    /// Largest non-framed (legacy, single-block) body, which must be buffered whole before it can be
    /// authenticated. Default 64 MiB.
    pub max_nonframed_body_len: u64,
}

impl DecryptLimits {
    /// The default limits, as a constant.
    pub const DEFAULT: DecryptLimits = DecryptLimits {
        max_frame_length: 16 << 20,
        max_encrypted_data_keys: None,
        max_header_len: 4 << 20,
        max_nonframed_body_len: 64 << 20,
    };
}

impl Default for DecryptLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
