//! Writes the seed corpora of every fuzz target (see `kms_envelope_fuzz::seeds`).
//!
//! Usage: `cargo run --release --example seed -- <corpus dir> [<vectors dir>]`. scripts/fuzz.sh does the
//! same through an already built target binary (`KMS_ENVELOPE_FUZZ_WRITE_SEEDS`), to save a build.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let corpus = PathBuf::from(args.next().expect("usage: seed <corpus dir> [<vectors dir>]"));
    let vectors = args.next().map(PathBuf::from);
    kms_envelope_fuzz::seeds::write_all(&corpus, vectors.as_deref());
}
