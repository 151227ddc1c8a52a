//! Random access over mutated messages: `decrypt_range` on a valid message of ours, edited by the
//! mutations the fuzzer's bytes encode, with a range the fuzzer picks (see `kms_envelope_fuzz::check_range`).
//! No panic; an `Ok` range is always the true plaintext's slice; where the whole message decrypts (unsigned,
//! framed), so does every range within it, to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        kms_envelope_fuzz::init();
        kms_envelope_fuzz::reference_messages();
    },
    |data: &[u8]| kms_envelope_fuzz::check_range(data)
);
