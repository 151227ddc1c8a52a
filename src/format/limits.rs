//! Every resource limit decrypt enforces, in one place.
//!
//! A message is untrusted input: its header chooses frame lengths, EDK counts and body sizes. No allocation
//! is ever sized by such a length beyond these limits, and a message over a limit fails with
//! [`Error::LimitExceeded`](crate::Error::LimitExceeded) before anything is allocated for it.

/// The limit on encrypted data keys per message that the CLI and the Lambda decryptor apply unless told
/// otherwise. A message has one EDK per key it was encrypted under: ten covers a key in each of ten regions
/// plus a break-glass key, while bounding the KMS calls a crafted message can cause to ten.
pub const RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS: u16 = 10;

/// Bytes a frame buffer holds besides the frame's plaintext: the sequence number, IV and tag of a regular
/// frame (4 + 12 + 16). A frame of `n` bytes needs `n + FRAME_OVERHEAD` bytes of
/// [`DecryptLimits::max_frame_buffers`].
pub const FRAME_OVERHEAD: usize = 28;

/// Limits applied while decrypting. The defaults accept every message the AWS Encryption SDKs write with
/// their defaults, and bound memory to a few tens of MiB per decryptor.
///
/// **Memory.** A decryptor holds at most [`max_frame_buffers`](Self::max_frame_buffers) bytes of frames at
/// once (40 MiB by default), whatever the frame length and the number of threads
/// ([`DecryptOptions::threads`](crate::DecryptOptions::threads)): with long frames fewer jobs are in
/// flight, and so fewer threads work, until one frame at a time is left. A framed message whose frame
/// length plus [`FRAME_OVERHEAD`] exceeds `max_frame_buffers` is refused with
/// [`Error::LimitExceeded`](crate::Error::LimitExceeded) right after its header is read, before the keyring
/// is called; with the defaults that never happens, since `max_frame_length` (16 MiB) leaves room for two
/// frames. Besides the frame buffers a decryptor holds the header (up to `max_header_len`), a non-framed
/// body (up to `max_nonframed_body_len`) and a few small fixed buffers; the one-shot
/// [`decrypt`](crate::decrypt()) and [`decrypt_range`](crate::decrypt_range) hold their input and output
/// too. If memory runs out all the same (a process under a memory limit), decrypt fails with
/// [`Error::OutOfMemory`](crate::Error::OutOfMemory) rather than aborting.
///
/// **Encrypted data keys.** Whoever writes a message chooses its EDKs, up to 65,535 of them, and decrypt
/// tries them in order until one opens, before the header is authenticated. What each can cost:
/// - an `aws-kms` EDK a KMS keyring accepts (a discovery keyring accepts any key of its filter): one KMS
///   `Decrypt` call, with its retries and timeouts (identical EDKs are tried once);
/// - an ECDH EDK (`raw-ecdh`, `aws-kms-ecdh`) that names the keyring's public key, which is no secret, as
///   recipient: one elliptic-curve key agreement, and the sender's point checked;
/// - an `aws-kms-hierarchy` EDK of the keyring's branch key: one branch key store lookup (for a DynamoDB
///   store, a `GetItem` and a KMS `Decrypt`) per version not in the cache, and one per EDK for a version
///   the store does not have, since a failed lookup is not cached.
///
/// The default is no limit, as in the other AWS Encryption SDKs, so that every message they write is read.
/// Where messages may come from someone you do not trust, set
/// [`max_encrypted_data_keys`](Self::max_encrypted_data_keys) to
/// [`RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS`] (10), as the CLI and the Lambda decryptor do: a message with more
/// EDKs is refused with [`Error::LimitExceeded`](crate::Error::LimitExceeded) before any keyring is called.
///
/// ```
/// use kms_envelope::{DecryptLimits, DecryptOptions, RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS};
///
/// // Messages from someone you do not trust: at most 10 EDKs (10 KMS calls), small frames.
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
    /// Most bytes of frame buffers a decryptor holds at once, whatever the number of threads; at least one
    /// frame plus [`FRAME_OVERHEAD`]. Default 40 MiB: two frames of the default `max_frame_length` in
    /// flight, or some 80 jobs of 512 KiB (of 64 KiB frames). Raise it with `max_frame_length` to read frames
    /// longer than 40 MiB - 28 bytes.
    pub max_frame_buffers: usize,
    /// Most encrypted data keys in a header. Default `None` (unlimited, like the ESDK). Set it (for example
    /// to [`RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS`]) whenever messages may come from someone you do not trust:
    /// each EDK a keyring accepts can cost a KMS call, an elliptic-curve operation or a branch key store
    /// lookup (see the type's documentation), and a header may hold thousands. The CLI and the Lambda
    /// decryptor apply the recommended value by default.
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
        max_frame_buffers: 40 << 20,
        max_encrypted_data_keys: None,
        max_header_len: 4 << 20,
        max_nonframed_body_len: 64 << 20,
    };
}

impl DecryptLimits {
    /// Refuses a framed message whose frames of `frame_length` bytes do not fit the frame buffers.
    pub(crate) fn check_frame_fits(&self, frame_length: u32) -> crate::error::Result<()> {
        let needed = (frame_length as usize).saturating_add(FRAME_OVERHEAD);
        if needed > self.max_frame_buffers {
            return Err(crate::error::Error::LimitExceeded {
                limit: "frame buffer (frame length + 28 bytes)",
                value: needed as u64,
                max: self.max_frame_buffers as u64,
            });
        }
        Ok(())
    }
}

impl Default for DecryptLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
