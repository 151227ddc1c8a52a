//! AWS KMS keyrings (format notes §11): the data key wrapped by AWS KMS.
//!
//! * [`AwsKmsKeyring`]: one KMS key. Encrypt: `GenerateDataKey` if it is the generator, else `Encrypt`
//!   (or, with [`generate_data_key_locally`](AwsKmsKeyring::generate_data_key_locally), a local random data
//!   key and `Encrypt`). Decrypt: `Decrypt` with `KeyId` set, only for the message's data key under that key.
//! * [`AwsKmsMrkKeyring`]: the same, but a replica of a multi-Region key in another region also matches.
//! * [`AwsKmsDiscoveryKeyring`]: decrypt-only; asks KMS to decrypt under whichever key the message names,
//!   optionally only keys of some accounts ([`DiscoveryFilter`]).
//! * [`AwsKmsEcdhKeyring`]: ECDH with a KMS key agreement key (`DeriveSharedSecret`); EDKs of provider id
//!   `aws-kms-ecdh`, the raw ECDH keyring's format.
//! * [`AwsKmsMrkDiscoveryKeyring`]: discovery that sends multi-Region keys to the replica in its own region.
//! * [`KmsClients`]: one AWS configuration, one KMS client per region, and the keyrings above built from it
//!   (several keys with the first as generator, per-region clients for keys in other regions).
//!
//! Every EDK these keyrings write has provider id `aws-kms` and the key ARN KMS returned as provider info,
//! so messages are interchangeable with every AWS Encryption SDK.
//!
//! KMS calls per message: encrypt makes one call per key (`GenerateDataKey` for the generator, `Encrypt`
//! for each other key); decrypt makes one `Decrypt` call, plus one per earlier EDK that failed to decrypt.
//!
//! Keyring calls are `async`. Each KMS call runs as a task on the caller's tokio runtime when there is one,
//! else on a small runtime shared by the whole process (see `runtime.rs`), so the blocking stream API works
//! from synchronous code and the async API never blocks a runtime thread.

//!
//! The ARN and region grammar ([`arn`]) is compiled in every build, the raw-key-only one included, so
//! that tools and fuzzers can check what a message names without the AWS SDK; the keyrings need feature
//! `kms`.

#[cfg(feature = "kms")]
pub(crate) mod api;
pub mod arn;
#[cfg(feature = "kms")]
mod calls;
#[cfg(feature = "kms")]
mod clients;
#[cfg(feature = "kms")]
mod discovery;
#[cfg(feature = "kms")]
mod ecdh;
#[cfg(feature = "kms")]
pub(crate) mod error;
// The SDK error chain on one line, request bodies withheld: the S3 module's errors use it too.
#[cfg(feature = "s3")]
pub(crate) use error::error_chain;
#[cfg(feature = "kms")]
mod mrk;
#[cfg(all(feature = "kms", feature = "rsa"))]
mod rsa;
#[cfg(feature = "kms")]
pub(crate) mod runtime;
#[cfg(feature = "kms")]
mod strict;
#[cfg(all(test, feature = "kms"))]
mod tests;

pub use arn::{InvalidArn, InvalidRegion, KmsArn, Region};
#[cfg(feature = "kms")]
pub use clients::{
    DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_CALL_TIMEOUT, KmsClients, MAX_CACHED_CLIENTS, MAX_GRANT_TOKENS,
    check_grant_tokens, refuse_mrk_replicas,
};
#[cfg(feature = "kms")]
pub use discovery::{AwsKmsDiscoveryKeyring, DiscoveryFilter};
#[cfg(feature = "kms")]
pub use ecdh::AwsKmsEcdhKeyring;
#[cfg(feature = "kms")]
pub use mrk::{AwsKmsMrkDiscoveryKeyring, AwsKmsMrkKeyring};
#[cfg(all(feature = "kms", feature = "rsa"))]
pub use rsa::{AwsKmsRsaKeyring, KmsRsaAlgorithm, RSA_PROVIDER_ID};
#[cfg(feature = "kms")]
pub use strict::AwsKmsKeyring;

/// The EDK provider id of every AWS KMS keyring.
pub const PROVIDER_ID: &str = "aws-kms";
