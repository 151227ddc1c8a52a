//! Encryption-context parsing on arbitrary bytes: never panics, and whatever parses re-serializes to bytes
//! that parse back to the same context (round trip), of the same length, and identical to the input when
//! the input was canonical by construction (at most one pair).
#![no_main]

use kms_envelope::{EncryptionContext, Error};
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: kms_envelope_fuzz::init(), |data: &[u8]| {
    let context = match EncryptionContext::parse(data, 0) {
        Ok(context) => context,
        Err(Error::Malformed { offset, .. }) => {
            assert!(offset <= data.len() as u64, "error offset {offset} past the {} input bytes", data.len());
            return;
        }
        Err(e) => panic!("parse failed with a non-Malformed error: {e:?}"),
    };
    let bytes = context.serialize().expect("a context parsed from a u16-length AAD section serializes");
    if data == [0, 0] {
        assert!(bytes.is_empty() && context.is_empty());
    } else {
        assert_eq!(bytes.len(), data.len(), "same pairs, different serialized length");
    }
    if context.len() <= 1 && data != [0, 0] {
        assert_eq!(bytes, data, "a context of at most one pair has one serialization");
    }
    let again = EncryptionContext::parse(&bytes, 0).expect("our serialization parses");
    assert_eq!(again, context, "round trip changed the context");
    assert_eq!(again.serialize().unwrap(), bytes, "serialization is not canonical");
    let keys: Vec<&str> = context.iter().map(|(k, _)| k).collect();
    assert!(keys.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()), "pairs not in canonical order");
});
