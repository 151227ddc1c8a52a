//! What a caller chooses for encrypt and decrypt.

use std::collections::BTreeSet;

use crate::format::context::EncryptionContext;
use crate::format::limits::DecryptLimits;
use crate::format::suite::{AlgorithmSuite, CommitmentPolicy};

/// The frame length encrypt uses unless told otherwise: 64 KiB, which every ESDK decrypts and which costs
/// far fewer per-frame operations than the ESDK's 4096.
pub const DEFAULT_FRAME_LENGTH: u32 = 65536;

/// Settings for encrypting one message.
#[derive(Clone, Debug)]
pub struct EncryptOptions {
    pub(crate) suite: Option<AlgorithmSuite>,
    pub(crate) frame_length: u32,
    pub(crate) context: EncryptionContext,
    pub(crate) required_context_keys: BTreeSet<String>,
    pub(crate) policy: CommitmentPolicy,
    pub(crate) max_encrypted_data_keys: Option<u16>,
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

    /// Fails encrypt when keyrings produce more encrypted data keys than this.
    pub fn max_encrypted_data_keys(mut self, max: Option<u16>) -> Self {
        self.max_encrypted_data_keys = max;
        self
    }
}

/// Settings for decrypting messages.
#[derive(Clone, Debug, Default)]
pub struct DecryptOptions {
    pub(crate) policy: CommitmentPolicy,
    pub(crate) limits: DecryptLimits,
    pub(crate) reproduced_context: EncryptionContext,
    pub(crate) required_context_keys: BTreeSet<String>,
    pub(crate) unsigned_only: bool,
    pub(crate) net_v4_0_0_retry: bool,
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
}
