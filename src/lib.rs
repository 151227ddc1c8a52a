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
//! Modules follow the data's path, each using only those before it: [`format`](mod@format) (bytes and structures),
//! [`crypto`] (key derivation, AES-GCM, signatures), [`keyring`] (who wraps data keys), [`stream`]
//! (encryptors and decryptors).

#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "bundle")]
pub mod bundle;
pub mod crypto;
mod error;
pub mod escape;
pub mod format;
pub mod keyring;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod stream;

pub use crypto::DataKey;
pub use error::{Error, Result};
pub use format::context::EncryptionContext;
pub use format::edk::EncryptedDataKey;
pub use format::header::{ContentType, Header, MessageId};
pub use format::limits::DecryptLimits;
pub use format::suite::{AlgorithmSuite, CommitmentPolicy};
#[cfg(feature = "rsa")]
pub use keyring::RawRsaKeyring;
#[cfg(feature = "kms")]
pub use keyring::kms::{
    AwsKmsDiscoveryKeyring, AwsKmsKeyring, AwsKmsMrkDiscoveryKeyring, AwsKmsMrkKeyring, DiscoveryFilter, KmsArn,
    KmsClients,
};
pub use keyring::{CacheLimits, CachingKeyring, Keyring, MaterialsCache, MultiKeyring, RawAesKeyring};
pub use stream::file::decrypt_to_path;
#[cfg(feature = "async")]
pub use stream::{AsyncDecryptor, AsyncEncryptor};
pub use stream::{
    DecryptOptions, Decrypted, Decryptor, EncryptOptions, Encryptor, decrypt, decrypt_into, encrypt, encrypt_into,
};
