//! The AES-GCM providers. Exactly one is compiled in, chosen by cargo feature: AWS-LC (`aws-lc-rs`) with the
//! `aws-lc` feature, which `kms` and `rsa` turn on since they link AWS-LC anyway (and its FIPS module with
//! `fips`); RustCrypto `aes-gcm` in a build without them (raw keys only, no C toolchain). Both offer the
//! same [`GcmKey`] with the same four operations (three in place, one into another buffer); nothing outside this directory names a backend
//! crate.

#[cfg(feature = "aws-lc")]
mod aws_lc;
#[cfg(not(feature = "aws-lc"))]
mod rust_crypto;

#[cfg(feature = "aws-lc")]
pub(crate) use aws_lc::{BACKEND, GcmKey};
#[cfg(not(feature = "aws-lc"))]
pub(crate) use rust_crypto::{BACKEND, GcmKey};

/// The tag did not verify (or the input was shorter than a tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejected;
