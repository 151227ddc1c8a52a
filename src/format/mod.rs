//! Bytes to structures and back: suites, encryption context, encrypted data keys, header, body framing.
//! Nothing here calls a cipher.

pub mod context;
// Read by the ECDH keyrings (on AWS-LC, feature `aws-lc`); in every build for the fuzz crate.
#[cfg_attr(not(feature = "aws-lc"), allow(dead_code))]
pub mod ecdh;
pub mod edk;
pub mod frame;
pub mod header;
pub mod hierarchy_edk;
pub mod limits;
pub mod suite;
