//! The suites whose outcome does not depend on the feature set (oracles outside this crate, run through
//! code that every set compiles the same way), one module per former test file, in one binary that
//! scripts/test.sh runs in the full feature set only. Each module keeps the `cfg` its file had.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/http.rs"]
mod fake_http;
#[path = "../common/s3.rs"]
mod fake_s3;
#[cfg(feature = "kms")]
#[path = "../common/kms.rs"]
mod support;

mod branch_key_store;
mod cli_interop;
mod extension;
mod interop_hierarchy;
mod limits;
mod mutation;
mod range;
mod s3;
