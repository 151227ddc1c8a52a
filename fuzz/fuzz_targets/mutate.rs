//! Structure-aware: a valid message from our encryptor, edited by the mutations the fuzzer's bytes
//! encode (see `kms_envelope_fuzz::Mutation` and `check_mutation` for the input layout). Decrypt must fail,
//! or succeed with exactly the original plaintext and only when the edits were a no-op; when it fails,
//! what the streaming decryptor released before the error must be a prefix of the true plaintext that
//! stops before the final frame. Single-thread decrypt (the default options).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        kms_envelope_fuzz::init();
        kms_envelope_fuzz::reference_messages();
    },
    |data: &[u8]| kms_envelope_fuzz::check_mutation(data, false)
);
