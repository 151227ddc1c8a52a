//! What a caller chooses for encrypt and decrypt.

use std::collections::BTreeSet;

use crate::format::context::EncryptionContext;
use crate::format::limits::DecryptLimits;
use crate::format::suite::{AlgorithmSuite, CommitmentPolicy};

/// The frame length encrypt uses unless told otherwise: 64 KiB, which every ESDK decrypts and which costs
/// far fewer per-frame operations than the ESDK's 4096.
pub const DEFAULT_FRAME_LENGTH: u32 = 65536;

/// Messages shorter than this (in body bytes) never start worker threads: 1 MiB.
pub const DEFAULT_PARALLEL_THRESHOLD: u64 = 1 << 20;

/// Bytes of frames handed to a worker as one job unless told otherwise: 512 KiB (at least one frame).
pub const DEFAULT_JOB_LENGTH: usize = 512 << 10;

/// How a stream spreads AES-GCM over cores; shared by [`EncryptOptions`] and [`DecryptOptions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Parallelism {
    /// Crypto worker threads; 1 means everything runs on the caller's thread.
    pub threads: usize,
    /// Body bytes after which the workers start.
    pub threshold: u64,
    /// Target bytes of frames per job.
    pub job_length: usize,
}

impl Default for Parallelism {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            threshold: DEFAULT_PARALLEL_THRESHOLD,
            job_length: DEFAULT_JOB_LENGTH,
        }
    }
}

/// Settings for encrypting one message.
///
/// The defaults: suite 0x0478 (AES-256-GCM, HKDF-SHA512, key commitment, no signature), 64 KiB frames, an
/// empty encryption context, worker threads past 1 MiB. Every setter consumes and returns the options.
///
/// ```
/// use kms_envelope::{AlgorithmSuite, DecryptOptions, EncryptOptions, RawAesKeyring, decrypt, encrypt};
///
/// fn main() -> Result<(), kms_envelope::Error> {
///     let keyring = RawAesKeyring::new("my-service", "key-1", &[0x42; 32])?;
///     let options = EncryptOptions::new()
///         .context("tenant", "acme") // authenticated, stored in clear in the header
///         .suite(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384) // signed: 0x0578
///         .frame_length(4096);
///     let message = encrypt(&keyring, &options, b"config")?;
///     let decrypted = decrypt(&keyring, &DecryptOptions::new().context("tenant", "acme"), &message)?;
///     assert_eq!(decrypted.header.suite().id(), 0x0578);
///     assert_eq!(decrypted.header.frame_length(), 4096);
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct EncryptOptions {
    pub(crate) suite: Option<AlgorithmSuite>,
    pub(crate) frame_length: u32,
    pub(crate) context: EncryptionContext,
    pub(crate) required_context_keys: BTreeSet<String>,
    pub(crate) policy: CommitmentPolicy,
    pub(crate) max_encrypted_data_keys: Option<u16>,
    pub(crate) parallelism: Parallelism,
    pub(crate) max_plaintext_length: Option<u64>,
}

impl Default for EncryptOptions {
    fn default() -> Self {
        Self {
            suite: None,
            frame_length: DEFAULT_FRAME_LENGTH,
            context: EncryptionContext::new(),
            required_context_keys: BTreeSet::new(),
            policy: CommitmentPolicy::default(),
            max_encrypted_data_keys: None,
            parallelism: Parallelism::default(),
            max_plaintext_length: None,
        }
    }
}

impl EncryptOptions {
    /// Defaults: suite 0x0478 (committing, unsigned), 64 KiB frames, empty context, require-require policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `suite`, which the commitment policy must allow. 0x0578 adds an ECDSA P-384 signature.
    pub fn suite(mut self, suite: AlgorithmSuite) -> Self {
        self.suite = Some(suite);
        self
    }

    /// Sets the plaintext bytes per frame (at least 1). The Python ESDK encrypts only multiples of 128
    /// but every ESDK decrypts any length.
    pub fn frame_length(mut self, frame_length: u32) -> Self {
        self.frame_length = frame_length;
        self
    }

    /// Adds an encryption-context pair, stored in the header and authenticated.
    pub fn context(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.context.insert(key, value);
        self
    }

    /// Replaces the whole encryption context.
    pub fn encryption_context(mut self, context: EncryptionContext) -> Self {
        self.context = context;
        self
    }

    /// Adds a required pair: authenticated but not stored in the header, so decrypt must reproduce it.
    pub fn required_context(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.context.insert(key.clone(), value);
        self.required_context_keys.insert(key);
        self
    }

    /// Sets the commitment policy.
    pub fn commitment_policy(mut self, policy: CommitmentPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Declares that a streamed message holds at most `bytes` of plaintext: the [`Encryptor`](crate::Encryptor)
    /// fails a write past it. A [`CachingKeyring`](crate::CachingKeyring) caches a stream's data key only when
    /// this is set, since it counts bytes per data key before the message is written. (The one-shot
    /// [`encrypt()`](crate::encrypt()) knows the length and needs no declaration; the async encryptor does not
    /// enforce it and never has its data key cached.)
    pub fn max_plaintext_length(mut self, bytes: Option<u64>) -> Self {
        self.max_plaintext_length = bytes;
        self
    }

    /// Fails encrypt when keyrings produce more encrypted data keys than this.
    pub fn max_encrypted_data_keys(mut self, max: Option<u16>) -> Self {
        self.max_encrypted_data_keys = max;
        self
    }

    /// Sets how many threads seal or open frames: the default is the available parallelism; 1 keeps all
    /// crypto on the calling thread. Workers start only once a message passes the
    /// [`parallel_threshold`](Self::parallel_threshold), live as long as the stream, and are joined when
    /// it finishes or is dropped. The output is the same for every setting.
    ///
    /// Memory does not grow with it: the frames being sealed take at most 40 MiB
    /// ([`DecryptLimits::DEFAULT`]`.max_frame_buffers`) at once, so long frames run on fewer threads (one
    /// frame at a time if two do not fit; a single frame longer than that is still sealed, alone).
    pub fn threads(mut self, threads: usize) -> Self {
        self.parallelism.threads = threads.max(1);
        self
    }

    /// Sets the body length in bytes after which worker threads start (default 1 MiB): shorter messages
    /// take the single-thread path with no thread start-up.
    pub fn parallel_threshold(mut self, bytes: u64) -> Self {
        self.parallelism.threshold = bytes;
        self
    }

    /// Sets the bytes of consecutive frames handed to a worker as one job (default 512 KiB; always at least
    /// one frame). At most `2 * threads + 1` jobs exist at once, and no more than fit in 40 MiB (a job is
    /// shortened so that two fit, if two frames do), which bounds the memory of a stream.
    pub fn job_length(mut self, bytes: usize) -> Self {
        self.parallelism.job_length = bytes.max(1);
        self
    }
}

/// Settings for decrypting messages.
///
/// The defaults: any suite the commitment policy `RequireEncryptRequireDecrypt` allows (committing suites
/// only), [`DecryptLimits::default`], no context expected. A context pair given here must match the
/// message's authenticated context (or, for a key the header does not hold, the pair required on encrypt),
/// or the decrypt fails before any plaintext is released.
///
/// ```
/// use kms_envelope::{DecryptLimits, DecryptOptions, EncryptOptions, RawAesKeyring, decrypt, encrypt};
///
/// fn main() -> Result<(), kms_envelope::Error> {
///     let keyring = RawAesKeyring::new("my-service", "key-1", &[0x42; 32])?;
///     let message = encrypt(&keyring, &EncryptOptions::new().context("stage", "prod"), b"token")?;
///
///     let strict = DecryptOptions::new()
///         .context("stage", "prod") // must match the message's context
///         .unsigned_only(true) // refuse signed suites: nothing released before a signature is checked
///         .limits(DecryptLimits { max_encrypted_data_keys: Some(3), ..DecryptLimits::default() });
///     assert_eq!(&decrypt(&keyring, &strict, &message)?.plaintext[..], b"token");
///
///     let wrong = DecryptOptions::new().context("stage", "dev");
///     assert!(decrypt(&keyring, &wrong, &message).is_err());
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug, Default)]
pub struct DecryptOptions {
    pub(crate) policy: CommitmentPolicy,
    pub(crate) limits: DecryptLimits,
    pub(crate) reproduced_context: EncryptionContext,
    pub(crate) required_context_keys: BTreeSet<String>,
    pub(crate) unsigned_only: bool,
    pub(crate) net_v4_0_0_retry: bool,
    pub(crate) parallelism: Parallelism,
}

impl DecryptOptions {
    /// Defaults: require-require policy, [`DecryptLimits::DEFAULT`], no expected context, signed allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the commitment policy. Use [`CommitmentPolicy::RequireEncryptAllowDecrypt`] for legacy messages.
    pub fn commitment_policy(mut self, policy: CommitmentPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the resource limits.
    pub fn limits(mut self, limits: DecryptLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Expects `key` = `value`: if the header holds the key the values must match; if not, the pair was a
    /// required context pair on encrypt and is authenticated now.
    pub fn context(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.reproduced_context.insert(key, value);
        self
    }

    /// Replaces the whole reproduced (expected) context.
    pub fn reproduced_context(mut self, context: EncryptionContext) -> Self {
        self.reproduced_context = context;
        self
    }

    /// Fails unless `key` is among the reproduced context pairs (the ESDK's required-encryption-context CMM).
    pub fn require_context_key(mut self, key: impl Into<String>) -> Self {
        self.required_context_keys.insert(key.into());
        self
    }

    /// Refuses signed suites right after the header, so that no plaintext is ever released before a
    /// signature could be checked (the ESDK's "streaming unsigned only" mode).
    pub fn unsigned_only(mut self, unsigned_only: bool) -> Self {
        self.unsigned_only = unsigned_only;
        self
    }

    /// Retries a failed header authentication the way ESDK-.NET 4.0.0 computed it (format notes §17.10).
    /// Off by default; turn it on only to read data that .NET 4.0.0 wrote.
    pub fn net_v4_0_0_retry(mut self, enabled: bool) -> Self {
        self.net_v4_0_0_retry = enabled;
        self
    }

    /// Sets how many threads seal or open frames: the default is the available parallelism; 1 keeps all
    /// crypto on the calling thread. Workers start only once a message passes the
    /// [`parallel_threshold`](Self::parallel_threshold), live as long as the stream, and are joined when
    /// it finishes or is dropped. The output is the same for every setting.
    ///
    /// Memory does not grow with it: the frames being opened take at most
    /// [`DecryptLimits::max_frame_buffers`] (40 MiB by default) at once, so long frames run on fewer threads
    /// (down to one frame at a time).
    pub fn threads(mut self, threads: usize) -> Self {
        self.parallelism.threads = threads.max(1);
        self
    }

    /// Sets the body length in bytes after which worker threads start (default 1 MiB): shorter messages
    /// take the single-thread path with no thread start-up.
    pub fn parallel_threshold(mut self, bytes: u64) -> Self {
        self.parallelism.threshold = bytes;
        self
    }

    /// Sets the bytes of consecutive frames handed to a worker as one job (default 512 KiB; always at least
    /// one frame). At most `2 * threads + 1` jobs exist at once, and no more than fit in
    /// [`DecryptLimits::max_frame_buffers`] (a job is shortened so that two fit, if two frames do), which
    /// bounds the memory of a stream.
    pub fn job_length(mut self, bytes: usize) -> Self {
        self.parallelism.job_length = bytes.max(1);
        self
    }
}
