//! Envelope encryption for AWS in the AWS Encryption SDK message format, byte for byte.
//!
//! What `kms-envelope` encrypts, any AWS Encryption SDK (Python, Java, C, JavaScript, .NET, the CLI)
//! decrypts, and the reverse. Each message gets a fresh data key, wrapped by one or several keyrings (a
//! local AES key, AWS KMS); the body is AES-256-GCM in frames, streamed in constant memory.
//!
//! Encrypt defaults to suite 0x0478 (AES-256-GCM, HKDF-SHA512, key commitment, no signature) with 64 KiB
//! frames; 0x0578 adds an ECDSA P-384 signature. Decrypt accepts what the
//! [`CommitmentPolicy`] allows: by default committing suites only.
//!
//! ```
//! use std::io::{Read, Write};
//! use kms_envelope::{DecryptOptions, Decryptor, EncryptOptions, Encryptor, RawAesKeyring};
//!
//! # fn main() -> Result<(), kms_envelope::Error> {
//! let wrapping_key = [0x42u8; 32]; // in real use: 32 random bytes kept secret
//! let keyring = RawAesKeyring::new("my-service", "secrets-key-1", &wrapping_key)?;
//!
//! let options = EncryptOptions::new().context("purpose", "example");
//! let mut encryptor = Encryptor::new(&keyring, &options, Vec::new())?;
//! encryptor.write_all(b"database password")?;
//! let message = encryptor.finish()?; // without finish the message is incomplete
//!
//! let options = DecryptOptions::new().context("purpose", "example");
//! let mut decryptor = Decryptor::new(&keyring, &options, &message[..])?;
//! let mut plaintext = Vec::new();
//! decryptor.read_to_end(&mut plaintext)?; // Ok only once every frame verified
//! assert_eq!(plaintext, b"database password");
//! assert_eq!(decryptor.header().suite().id(), 0x0478);
//! # Ok(())
//! # }
//! ```
//!
//! What a user names is on this page: the keyrings, [`Encryptor`]/[`Decryptor`], the one-shot functions
//! and their options, [`decrypt_to_path`], what a [`Header`] tells, and the modules [`keyring`] (writing
//! your own keyring, KMS details), [`stream`] (async adapters, files), `bundle` and `lambda`. The message
//! format's internals (`format`: header decoder, frame layout; `crypto`: key derivation, frame sealing) are
//! private: the non-default `fuzzing` feature makes them public for the crates that test them (the fuzz
//! crate, this crate's tests and benches), outside any semver promise.
//!
//! # API promises
//!
//! Promised, and kept across 0.x minor versions only as semver allows: every item this page lists and the
//! public modules' items (`keyring`, `stream`, `escape`, and with their features `bundle`, `environment`,
//! `lambda`, `s3`), each documented; each fallible function says when it fails (`# Errors`) and each
//! that can panic says when (`# Panics`), which clippy's `missing_errors_doc` and `missing_panics_doc`
//! check. [`EncryptionContext::serialize`] is promised: a keyring of your own binds the context as AAD
//! with it, as the raw AES keyring does.
//!
//! Not promised, and hidden from these docs: the modules `format` and `crypto` (public only with the
//! `fuzzing` feature), and the message-building helpers the crate's tests and fuzz targets use,
//! `EncryptionContext::parse`, `EncryptionContext::check_no_reserved_keys` (encryption checks it),
//! `MessageId::random` and `MessageId::from_bytes` (only the encryptor makes a message id): they may change
//! in any release. The `kms-envelope` command line is promised by its `--help`, not by this crate's API.

// One exception, `crypto::rsa::raw`: AWS-LC's raw RSA operation, which `aws-lc-rs` does not offer.
#![deny(unsafe_code)]
#![warn(missing_docs)]
// Every public fallible function says when it fails (`# Errors`), every one that can panic says when
// (`# Panics`): the API's promises (see "API promises" above) include its failure modes.
#![warn(clippy::missing_errors_doc, clippy::missing_panics_doc)]
// Under `--cfg docsrs` (docs.rs, or `RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS="--cfg docsrs" cargo doc`) every item gated
// on a feature says which ("Available on crate feature `kms` only"). `doc_cfg` now derives the badge from the
// item's own `#[cfg]` (it absorbed `doc_auto_cfg`, which rustdoc 1.95 refuses as removed), so no item needs a
// `doc(cfg(..))` of its own. Nightly-only, hence the `cfg_attr`: a stable `cargo doc` ignores it.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "bundle")]
pub mod bundle;
// The message format's internals are public only for the crates that test them (see above): what a user
// needs from them is re-exported below.
#[allow(clippy::missing_errors_doc, clippy::missing_panics_doc)] // outside the promises: `fuzzing` only
#[cfg(feature = "fuzzing")]
pub mod crypto;
#[cfg(not(feature = "fuzzing"))]
pub(crate) mod crypto;
#[cfg(any(feature = "cli", feature = "lambda"))]
pub mod environment;
mod error;
pub mod escape;
#[allow(clippy::missing_errors_doc, clippy::missing_panics_doc)] // outside the promises: `fuzzing` only
#[cfg(feature = "fuzzing")]
pub mod format;
#[cfg(not(feature = "fuzzing"))]
pub(crate) mod format;
pub mod keyring;
#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(feature = "s3")]
pub mod s3;
pub mod stream;

/// The README's Rust blocks, compiled (and run, unless `no_run`) as doctests, so that a snippet a reader
/// pastes compiles. Its blocks use the KMS and Lambda APIs, hence the features.
#[cfg(all(doctest, feature = "kms", feature = "lambda"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

// One `pub use` per item, inlined, so that the crate root lists each with its summary.
#[doc(inline)]
pub use crypto::DataKey;
#[cfg(feature = "aws-lc")]
#[doc(inline)]
pub use crypto::ecdh::EcdhPrivateKey;
#[cfg(feature = "aws-lc")]
#[doc(inline)]
pub use crypto::ecdh::EcdhPublicKey;
#[cfg(feature = "rsa")]
#[doc(inline)]
pub use crypto::rsa::RsaPadding;
#[doc(inline)]
pub use error::EcdhError;
#[doc(inline)]
pub use error::Error;
#[doc(inline)]
pub use error::Reason;
#[doc(inline)]
pub use error::Result;
#[doc(inline)]
pub use error::Retry;
#[doc(inline)]
pub use format::context::EncryptionContext;
#[doc(inline)]
pub use format::ecdh::EcdhCurve;
#[doc(inline)]
pub use format::edk::EncryptedDataKey;
#[doc(inline)]
pub use format::header::ContentType;
#[doc(inline)]
pub use format::header::Header;
#[doc(inline)]
pub use format::header::MessageId;
#[doc(inline)]
pub use format::limits::DecryptLimits;
#[doc(inline)]
pub use format::limits::FRAME_OVERHEAD;
#[doc(inline)]
pub use format::limits::RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS;
#[doc(inline)]
pub use format::suite::AlgorithmSuite;
#[doc(inline)]
pub use format::suite::CommitmentPolicy;
#[doc(inline)]
pub use format::suite::Kdf;
#[doc(inline)]
pub use format::suite::MessageFormat;
#[doc(inline)]
pub use format::suite::SignatureAlgorithm;
#[doc(inline)]
pub use keyring::Keyring;
#[doc(inline)]
pub use keyring::MultiKeyring;
#[doc(inline)]
pub use keyring::RawAesKeyring;
#[cfg(feature = "aws-lc")]
#[doc(inline)]
pub use keyring::RawEcdhKeyring;
#[cfg(feature = "rsa")]
#[doc(inline)]
pub use keyring::RawRsaKeyring;
#[cfg(feature = "kms")]
#[doc(inline)]
pub use keyring::kms::AwsKmsDiscoveryKeyring;
#[cfg(feature = "kms")]
#[doc(inline)]
pub use keyring::kms::AwsKmsEcdhKeyring;
#[cfg(feature = "kms")]
#[doc(inline)]
pub use keyring::kms::AwsKmsKeyring;
#[cfg(feature = "kms")]
#[doc(inline)]
pub use keyring::kms::AwsKmsMrkDiscoveryKeyring;
#[cfg(feature = "kms")]
#[doc(inline)]
pub use keyring::kms::AwsKmsMrkKeyring;
#[cfg(feature = "kms")]
#[doc(inline)]
pub use keyring::kms::DiscoveryFilter;
#[cfg(feature = "kms")]
#[doc(inline)]
pub use keyring::kms::KmsArn;
#[cfg(feature = "kms")]
#[doc(inline)]
pub use keyring::kms::KmsClients;
#[doc(inline)]
pub use keyring::{CacheLimits, CachingKeyring, MaterialsCache};
#[cfg(feature = "async")]
#[doc(inline)]
pub use stream::AsyncDecryptor;
#[cfg(feature = "async")]
#[doc(inline)]
pub use stream::AsyncEncryptor;
#[cfg(feature = "async")]
#[doc(inline)]
pub use stream::AsyncRangeReader;
#[cfg(feature = "async")]
#[doc(inline)]
pub use stream::AsyncRangeSource;
#[doc(inline)]
pub use stream::DecryptOptions;
#[doc(inline)]
pub use stream::Decrypted;
#[doc(inline)]
pub use stream::Decryptor;
#[doc(inline)]
pub use stream::EncryptOptions;
#[doc(inline)]
pub use stream::Encryptor;
#[doc(inline)]
pub use stream::MessageLayout;
#[doc(inline)]
pub use stream::OutputOptions;
#[doc(inline)]
pub use stream::RangeSource;
#[doc(inline)]
pub use stream::ReencryptOptions;
#[doc(inline)]
pub use stream::Reencrypted;
#[doc(inline)]
pub use stream::Rotation;
#[doc(inline)]
pub use stream::SeekSource;
#[doc(inline)]
pub use stream::SeekableDecryptor;
#[doc(inline)]
pub use stream::SkipCheck;
#[doc(inline)]
pub use stream::TargetKeys;
#[doc(inline)]
pub use stream::decrypt;
#[doc(inline)]
pub use stream::decrypt_into;
#[doc(inline)]
pub use stream::decrypt_range;
#[cfg(feature = "async")]
#[doc(inline)]
pub use stream::decrypt_range_async;
#[doc(inline)]
pub use stream::decrypt_to_path;
#[doc(inline)]
pub use stream::encrypt;
#[doc(inline)]
pub use stream::encrypt_into;
#[doc(inline)]
pub use stream::reencrypt;
#[doc(inline)]
pub use stream::reencrypt_path;
#[doc(inline)]
pub use stream::rotation_status;
#[doc(inline)]
pub use stream::rotation_status_with;
/// The AES-GCM implementation this build seals frames with: `"aes-gcm (RustCrypto)"`, `"aws-lc-rs"` (with
/// feature `aws-lc`, which `kms` and `rsa` turn on) or `"aws-lc-rs (FIPS)"` (feature `fips`); for version
/// strings and benchmark reports.
///
/// ```
/// eprintln!("frames sealed with {}", kms_envelope::aes_gcm_backend());
/// # // The build this runs in: the crate's features pick the provider (`fips`, else `aws-lc`, which `kms`
/// # // and `rsa` turn on, else RustCrypto), so the default build and a raw-key build each see their own.
/// # let expected = if cfg!(feature = "fips") {
/// #     "aws-lc-rs (FIPS)"
/// # } else if cfg!(feature = "aws-lc") {
/// #     "aws-lc-rs"
/// # } else {
/// #     "aes-gcm (RustCrypto)"
/// # };
/// # assert_eq!(kms_envelope::aes_gcm_backend(), expected);
/// ```
pub fn aes_gcm_backend() -> &'static str {
    crypto::aead::backend_name()
}

/// The buffer [`decrypt_into`] and [`encrypt_into`] fill, and the type of [`Decrypted::plaintext`]: a
/// wrapper that wipes its contents on drop (from the `zeroize` crate, re-exported so that users need not
/// depend on it).
pub use zeroize::Zeroizing;
