//! The integration tests, one module per former test file, in one binary: each feature set links it once
//! instead of once per file (most of them link the AWS SDK). Each module keeps the `cfg` its file had.
//!
//! One process runs them all, two at a time, so a test that changes process-wide state (the umask, a
//! resource limit, a global `tracing` subscriber, or that counts the process's threads) runs its body in a
//! process of its own (`common::in_own_process`). Binaries of their own: a global allocator
//! (tests/freed_memory*.rs, tests/cache_freed_memory.rs), and a child's peak RSS (tests/memory.rs,
//! tests/hostile_kms.rs: a child forked from this large process starts with its resident set counted in
//! its own peak). The suites that run in the full feature set only are tests/full_set_only/ (scripts/test.sh).

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/batch_job.rs"]
#[cfg(feature = "batch")]
mod engine;
#[path = "../common/http.rs"]
mod fake_http;
#[path = "../common/s3.rs"]
mod fake_s3;
#[path = "../common/rie.rs"]
mod rie;
#[cfg(feature = "kms")]
#[path = "../common/kms.rs"]
mod support;

mod batch;
mod batch_job;
mod bundle;
mod bundle_fd_limit;
mod cache;
mod cli;
mod cli_kill;
mod cli_newcomer;
mod cli_progress;
mod cli_reencrypt;
// Hand-built messages (odd frame sizes, v1 headers, signatures) need the header writer and key derivation.
#[cfg(feature = "fuzzing")]
mod handmade;
mod hierarchy;
mod hygiene;
mod interop_ecdh;
mod interop_python;
mod interop_rsa;
mod kms;
mod lambda;
mod parallel;
mod pending_file;
mod plaintext_in_errors;
mod positioned;
mod quickstart;
mod reencrypt;
// Attacks on reencrypt_path with bodies crafted frame by frame under the source's key.
#[cfg(feature = "fuzzing")]
mod reencrypt_attack;
mod s3_reencrypt;
mod stream_properties;
mod vectors;
