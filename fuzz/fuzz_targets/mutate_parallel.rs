//! `mutate` through the frame pipeline's worker threads: two workers from the first body byte, jobs of
//! 1 to 281 bytes of frames (from the input), so damaged frames land at every position of a job and jobs
//! return out of order. The same properties as `mutate`, whose corpus this target shares.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        kms_envelope_fuzz::init();
        kms_envelope_fuzz::reference_messages();
    },
    |data: &[u8]| kms_envelope_fuzz::check_mutation(data, true)
);
