//! Key derivation, key commitment, frame sealing and opening, and message signatures.
//!
//! The AES-GCM backend sits behind [`aead::AeadKey`]; the format and stream code never name a backend crate.

pub mod aead;
mod backend;
pub mod kdf;
#[cfg(feature = "rsa")]
pub mod rsa;
pub mod signature;

pub use aead::AeadKey;
pub use kdf::{DataKey, MessageKeys};
