//! Full streaming decrypt of arbitrary bytes with the fixed fuzz keyring and small limits: every input
//! either decrypts or fails with an error; no panic, no allocation beyond the limits (run with
//! -rss_limit_mb=2048).
#![no_main]

use kms_envelope_fuzz::{SMALL_LIMITS, check_decrypt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: kms_envelope_fuzz::init(), |data: &[u8]| check_decrypt(data, SMALL_LIMITS));
