//! Key derivation, key commitment, frame sealing and opening, and message signatures.
//!
//! The AES-GCM backend sits behind [`aead::AeadKey`]; the format and stream code never name a backend crate.

pub mod aead;
mod backend;
#[cfg(feature = "aws-lc")]
pub mod ecdh;
pub mod kdf;
// Used by the Hierarchical and ECDH keyrings (issue #29), which land after it.
#[allow(dead_code)]
pub mod kdf_ctr;
#[cfg(feature = "aws-lc")]
mod pem;
#[cfg(feature = "rsa")]
pub mod rsa;
mod scrub;
pub mod signature;

pub use aead::AeadKey;
pub use kdf::{DataKey, MessageKeys};
