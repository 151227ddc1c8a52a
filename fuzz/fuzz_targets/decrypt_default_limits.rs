//! Like `decrypt`, with `DecryptLimits::default()` (16 MiB frames, 64 MiB non-framed bodies, 4 MiB
//! headers, unlimited EDKs): catches allocations sized by untrusted length fields rather than by the
//! bytes actually received. Run with -rss_limit_mb=2048 (libFuzzer's malloc limit follows it).
#![no_main]

use kms_envelope::DecryptLimits;
use kms_envelope_fuzz::check_decrypt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: kms_envelope_fuzz::init(), |data: &[u8]| check_decrypt(data, DecryptLimits::default()));
