//! Bytes to structures and back: suites, encryption context, encrypted data keys, header, body framing.
//! Nothing here calls a cipher.

pub mod context;
pub mod edk;
pub mod frame;
pub mod header;
pub mod hierarchy_edk;
pub mod limits;
pub mod suite;
