//! The crate's one error type.
//!
//! Every variant names something a caller can act on: fix the input, fix the configuration, grant a key,
//! raise a limit. No variant ever carries key material or plaintext, and every string a variant holds is
//! shown through [`Escaped`](crate::escape::Escaped): much of it (ARNs, provider ids, context keys, bundle
//! entry names) was written by whoever wrote the message.

use std::fmt;
use std::io;

use crate::escape::{Escaped, EscapedBytes, OneLine};
use crate::format::ecdh::EcdhCurve;

/// Everything that can go wrong while encrypting or decrypting a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is not a well-formed message: `what` is wrong at byte `offset` of the message.
    #[error("malformed message at byte {offset}: {}", Escaped(.what))]
    Malformed {
        /// Byte offset from the start of the message where the problem was found.
        offset: u64,
        /// What was expected or what is wrong there.
        what: String,
    },

    /// The input is text armor (base64, see [`stream::armor`](crate::stream::armor)) that is not well formed:
    /// `what` is wrong at byte `offset` of the text. Typically a byte that is not base64 (a URL-safe `-` or
    /// `_`, a quote pasted along), or text cut short inside a 4-character group.
    #[error("malformed base64 armor at byte {offset} of the text: {}", Escaped(.what))]
    MalformedArmor {
        /// Byte offset from the start of the armor text.
        offset: u64,
        /// What is wrong there.
        what: String,
    },

    /// The input ended before the message did (a cut file or an interrupted download).
    #[error("message is truncated: input ended at byte {offset} inside the {section}")]
    Truncated {
        /// Byte offset at which the input ended.
        offset: u64,
        /// The part of the message that was being read.
        section: &'static str,
    },

    /// Bytes follow a complete message; the ESDK rejects them, and so do we.
    #[error("trailing data after the end of the message at byte {offset}")]
    TrailingData {
        /// Byte offset of the first byte after the message.
        offset: u64,
    },

    /// The message asks for more resources than the configured limit allows.
    #[error(
        "{limit} is {value}, over the configured limit of {max} (raise it in the decrypt limits if the message is trusted)"
    )]
    LimitExceeded {
        /// Which limit.
        limit: &'static str,
        /// The value the message or call asked for.
        value: u64,
        /// The configured maximum.
        max: u64,
    },

    /// The algorithm suite is unknown, not an ESDK suite, or not usable in this position.
    #[error("unsupported algorithm suite 0x{0:04X}")]
    UnsupportedSuite(u16),

    /// The commitment policy forbids this suite (see [`CommitmentPolicy`](crate::CommitmentPolicy)).
    #[error("{}", Escaped(.0))]
    CommitmentPolicy(String),

    /// The key commitment stored in the header does not match the data key: the message was crafted so that
    /// different keys decrypt it to different plaintexts, or it is corrupt.
    #[error("key commitment mismatch: the data key does not commit to this message")]
    CommitmentMismatch,

    /// The header authentication tag did not verify: the header was modified, the encryption context given on
    /// decrypt differs from the one used on encrypt, or the data key is wrong.
    #[error("header authentication failed (tampered header, wrong encryption context or wrong data key)")]
    HeaderAuthentication,

    /// A frame's tag did not verify. Plaintext of earlier frames may have been released; this frame's was not.
    #[error("authentication failed for frame {sequence}")]
    FrameAuthentication {
        /// The frame's sequence number (1-based); 1 for a non-framed body.
        sequence: u32,
    },

    /// The message signature in the footer did not verify.
    #[error("message signature verification failed")]
    SignatureVerification,

    /// A signed suite was met where the caller asked for unsigned messages only.
    #[error("message uses signed suite 0x{0:04X}, but only unsigned messages are accepted")]
    SignedMessageRefused(u16),

    /// No keyring could decrypt any of the message's encrypted data keys; `reasons` lists why, one per attempt.
    /// `Display` shows the first 16 and counts the rest.
    #[error("no keyring could decrypt a data key: {}", Reasons(.reasons))]
    NoDataKeyDecrypted {
        /// One line per keyring or EDK that was tried.
        reasons: Vec<String>,
        /// [`Retry::Later`] if an attempt failed for a reason that may pass (KMS throttled, timed out or
        /// was unavailable): then a later try may unwrap the data key after all.
        retry: Retry,
    },

    /// A keyring failed on encrypt, or failed in a way that is not a mere "not my key" on decrypt.
    #[error("keyring error: {}", Escaped(.0))]
    Keyring(Reason),

    /// A raw RSA keyring was asked to encrypt with PKCS #1 v1.5 (`RsaPadding::Pkcs1V15`), which is
    /// decrypt-only: kept to read old messages, refused for new ones, which must use OAEP.
    #[error("RSA padding pkcs1 (PKCS #1 v1.5) is decrypt-only, to read old messages; encrypt with OAEP (oaep-sha256)")]
    DecryptOnlyRsaPadding,

    /// An ECDH key, EDK or keyring configuration was refused (the raw ECDH keyring): the reason says which.
    #[error("ECDH: {0}")]
    Ecdh(#[from] EcdhError),

    /// The encryption context is not acceptable (reserved key, too large, invalid UTF-8, duplicate key).
    #[error("invalid encryption context: {}", Escaped(.0))]
    EncryptionContext(String),

    /// The encryption context the caller expects does not match the message's.
    #[error("encryption context mismatch for key \"{}\": {detail}", Escaped(.key))]
    ContextMismatch {
        /// The key whose value differs or is missing.
        key: String,
        /// What differs.
        detail: &'static str,
    },

    /// Random access was asked of a message that cannot be read by range (signed, non-framed); the
    /// reason says what to do instead.
    #[error("random access refused: {}", Escaped(.0))]
    RangeRefused(String),

    /// A plaintext range that does not lie within the message's plaintext.
    #[error("plaintext bytes {start}..{end} (end excluded) are outside the plaintext of {plaintext_len} bytes")]
    RangeOutOfBounds {
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The message's verified plaintext length.
        plaintext_len: u64,
    },

    /// A directory bundle holds an entry that may not be unpacked (absolute path, `..`, link, device), or
    /// a directory to pack holds something that cannot be bundled.
    #[error("bundle rejected: {}", Escaped(.0))]
    Bundle(String),

    /// The Lambda cold start refuses to write at `path`: a symbolic link, not the kind of entry the bundle
    /// makes, or a directory that another user owns or can write into (a shared host, a mounted EFS), where
    /// that user could swap what was checked for a link before it is written.
    #[error("refusing to write at {}: {}", EscapedBytes(.path.as_os_str().as_encoded_bytes()), Escaped(.reason))]
    UnsafeDestination {
        /// The entry refused.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },

    /// A secrets bundle, which the Lambda decryptor reads whole into memory, is larger than its limit
    /// (`lambda::MAX_SECRETS_LEN`): a source named by mistake, or data that belongs in a file bundle.
    #[error("{} is {len} bytes or more, over the {max}-byte limit of a secrets bundle", Escaped(.name))]
    SecretsTooLarge {
        /// The bundle's source (a path or `s3://bucket/key`).
        name: String,
        /// Its size as its length said, or the bytes read when reading stopped.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// The call's configuration is invalid (API misuse rather than bad input).
    #[error("invalid configuration: {}", Escaped(.0))]
    Config(String),

    /// A frame buffer of `bytes` bytes could not be allocated: the process is short of memory (under a limit
    /// such as `ulimit -v` or a cgroup's). What a message can make decrypt buffer is bounded by the
    /// [`DecryptLimits`](crate::DecryptLimits); lower ones need less.
    #[error("out of memory: cannot allocate a buffer of {bytes} bytes")]
    OutOfMemory {
        /// The size of the allocation that failed.
        bytes: u64,
    },

    /// Reading the input or writing the output failed. A failed request to a service (S3) carries a
    /// [`Reason`] inside the [`io::Error`], which says whether a retry may succeed ([`Error::retry`]).
    /// Shown through [`OneLine`]: the S3 texts escape their names and the endpoint's words already, so only
    /// what is still a control is escaped here, not their backslashes a second time.
    #[error("I/O error: {}", OneLine(&.0.to_string()))]
    Io(#[from] io::Error),
}

/// Why the ECDH keyrings refused a key, an encrypted data key or a configuration: what [`Error::Ecdh`]
/// holds, and each reason an ECDH keyring gives for an EDK it could not decrypt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EcdhError {
    /// Not a key this crate reads: not PEM, not DER of the expected structure, encrypted, or not an EC key.
    #[error("not a usable EC key: {}", Escaped(.0))]
    MalformedKey(String),
    /// An EC key on a curve other than P-256, P-384 and P-521 (SM2, secp256k1, explicit parameters).
    #[error("the key is on a curve other than P-256, P-384 and P-521")]
    UnknownCurve,
    /// A key on another curve than the one configured.
    #[error("the key is on {found}, but {expected} is configured")]
    CurveMismatch {
        /// The configured curve.
        expected: EcdhCurve,
        /// The key's curve.
        found: EcdhCurve,
    },
    /// A public key that is not a point of the curve (or whose coordinates are out of the field).
    #[error("the public key is not a point on {0}")]
    NotOnCurve(EcdhCurve),
    /// A public key that is the point at infinity, which would make the shared secret predictable.
    #[error("the public key is the point at infinity")]
    PointAtInfinity,
    /// An EDK's provider info is not `01 ‖ u32 len ‖ recipient ‖ u32 len ‖ sender` for the curve.
    #[error("malformed provider info at byte {offset}: {what}")]
    ProviderInfo {
        /// Byte offset in the provider info.
        offset: usize,
        /// What is wrong there.
        what: &'static str,
    },
    /// An EDK's ciphertext is not `salt(32) ‖ commitment key(32) ‖ wrapped key ‖ tag(16)` for the suite.
    #[error("the EDK ciphertext is {len} bytes, {expected} expected for this suite")]
    CiphertextLength {
        /// Its length.
        len: usize,
        /// The length for the suite's data key.
        expected: usize,
    },
    /// The commitment key in the EDK differs from the one derived: the EDK was made with other keys or
    /// was altered.
    #[error("the EDK's commitment key does not match the one derived (other keys, or an altered EDK)")]
    CommitmentMismatch,
    /// The wrapped data key did not authenticate: an altered EDK or another encryption context.
    #[error("the wrapped data key does not authenticate (altered EDK or another encryption context)")]
    UnwrapFailed,
    /// A shared secret (from AWS KMS `DeriveSharedSecret`) that is not one field element of the curve.
    #[error("the shared secret is {len} bytes, not the length of a {curve} field element")]
    SharedSecretLength {
        /// Its length.
        len: usize,
        /// The keyring's curve.
        curve: EcdhCurve,
    },
    /// The key agreement scheme cannot encrypt (`PublicKeyDiscovery`).
    #[error("{0} cannot encrypt")]
    SchemeCannotEncrypt(&'static str),
    /// The key agreement scheme cannot decrypt (`EphemeralPrivateKeyToStaticPublicKey`).
    #[error("{0} cannot decrypt")]
    SchemeCannotDecrypt(&'static str),
}

/// Whether work that failed may succeed if it is simply tried again later, unchanged.
///
/// Only a service's own answer, classified where the SDK's error is converted (its type, HTTP status
/// and error code, never its message text), makes a failure [`Later`](Retry::Later): anything a message
/// or an endpoint's free text says cannot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Retry {
    /// Trying again changes nothing until someone changes the input, the configuration or the rights.
    #[default]
    Never,
    /// Trying again later may succeed: the service throttled (KMS `ThrottlingException`, S3 `SlowDown`),
    /// failed on its side (a 5xx), the request timed out or could not be sent, or an object changed while
    /// it was read or replaced (S3 412 `PreconditionFailed` on a conditional request, 409
    /// `ConditionalRequestConflict`).
    Later,
}

impl Retry {
    /// `Later` if either is.
    pub fn or(self, other: Retry) -> Retry {
        if self == Retry::Later { self } else { other }
    }
}

/// A failure's one-line reason and whether a retry may cure it: what [`Error::Keyring`] holds, and what
/// an [`Error::Io`] from a service request carries inside its [`io::Error`]. It displays as its text
/// alone (the error types escape it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    text: String,
    retry: Retry,
}

impl Reason {
    /// `text`, and whether a retry may cure what it describes.
    pub fn new(text: impl Into<String>, retry: Retry) -> Self {
        Self { text: text.into(), retry }
    }

    /// Whether a retry may cure it.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// An [`io::Error`] that displays as this reason and keeps it for [`Error::retry`].
    /// (Of kind `Other` either way: `Interrupted` would make `Read::read_exact` retry in a loop.)
    pub fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

/// A reason that no retry cures (the kind most keyring failures are).
impl From<String> for Reason {
    fn from(text: String) -> Self {
        Self::new(text, Retry::Never)
    }
}

/// A reason that no retry cures.
impl From<&str> for Reason {
    fn from(text: &str) -> Self {
        Self::new(text, Retry::Never)
    }
}

impl std::ops::Deref for Reason {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Reason {}

/// The most reasons [`Error::NoDataKeyDecrypted`] shows; the rest are counted. A keyring gives a reason
/// for each EDK it tried, and a message may carry thousands: even with every quoted string
/// [`clipped`](crate::escape::clipped), all of them would make an error line of megabytes.
const REASONS_SHOWN: usize = 16;

struct Reasons<'a>(&'a [String]);

impl fmt::Display for Reasons<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no encrypted data key matched any configured key");
        }
        for (i, reason) in self.0.iter().take(REASONS_SHOWN).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            Escaped(reason).fmt(f)?;
        }
        if self.0.len() > REASONS_SHOWN {
            write!(f, "; … ({} more reasons)", self.0.len() - REASONS_SHOWN)?;
        }
        Ok(())
    }
}

impl Error {
    /// Recovers a crate error carried inside an [`io::Error`] by the streaming `Read`/`Write` adapters;
    /// other I/O errors become [`Error::Io`].
    pub fn from_io(err: io::Error) -> Self {
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            match err.into_inner().map(|inner| inner.downcast::<Error>()) {
                Some(Ok(inner)) => return *inner,
                _ => unreachable!("checked above that the inner error is an Error"),
            }
        }
        Error::Io(err)
    }

    /// Whether the work that failed may succeed if tried again later, unchanged: [`Retry::Later`] only
    /// where a service said so ([`Reason`], [`Error::NoDataKeyDecrypted`]'s `retry`); a message's own
    /// faults, a configuration, a limit are [`Retry::Never`].
    pub fn retry(&self) -> Retry {
        match self {
            Error::Keyring(reason) => reason.retry(),
            Error::NoDataKeyDecrypted { retry, .. } => *retry,
            Error::Io(io) => {
                io.get_ref().and_then(|inner| inner.downcast_ref::<Reason>()).map_or(Retry::Never, Reason::retry)
            }
            Error::Malformed { .. }
            | Error::MalformedArmor { .. }
            | Error::Truncated { .. }
            | Error::TrailingData { .. }
            | Error::LimitExceeded { .. }
            | Error::SecretsTooLarge { .. }
            | Error::UnsupportedSuite(_)
            | Error::CommitmentPolicy(_)
            | Error::CommitmentMismatch
            | Error::HeaderAuthentication
            | Error::FrameAuthentication { .. }
            | Error::SignatureVerification
            | Error::SignedMessageRefused(_)
            | Error::DecryptOnlyRsaPadding
            | Error::Ecdh(_)
            | Error::EncryptionContext(_)
            | Error::ContextMismatch { .. }
            | Error::RangeRefused(_)
            | Error::RangeOutOfBounds { .. }
            | Error::Bundle(_)
            | Error::UnsafeDestination { .. }
            | Error::Config(_)
            | Error::OutOfMemory { .. } => Retry::Never,
        }
    }

    /// Whether [`retry`](Self::retry) is [`Retry::Later`].
    pub fn is_transient(&self) -> bool {
        self.retry() == Retry::Later
    }

    pub(crate) fn malformed(offset: u64, what: impl Into<String>) -> Self {
        Error::Malformed { offset, what: what.into() }
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::Io(io) => io,
            other => {
                let kind = match other {
                    Error::Truncated { .. } => io::ErrorKind::UnexpectedEof,
                    Error::OutOfMemory { .. } => io::ErrorKind::OutOfMemory,
                    _ => io::ErrorKind::InvalidData,
                };
                io::Error::new(kind, other)
            }
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
