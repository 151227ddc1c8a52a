//! The ECDH keyrings' parsers on arbitrary bytes: the EDK provider info and ciphertext layout, the
//! SubjectPublicKeyInfo walker, and (with the fuzz crate's `aws-lc` feature) the validated key types. The
//! first byte picks the curve and the key length; the rest is the input. Never a panic; what the parsers
//! accept re-serializes to what they read (provider info) or re-parses to the same value (SPKI), and an
//! accepted public key names itself by a compressed point of its curve's length.
#![no_main]

use kms_envelope::EcdhCurve;
use kms_envelope::format::ecdh::{self, EcdhCiphertext, EcdhProviderInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: kms_envelope_fuzz::init(), |data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else { return };
    let curve = EcdhCurve::ALL[usize::from(selector % 3)];
    let key_len = [16, 24, 32][usize::from(selector / 3 % 3)];

    if let Ok(info) = EcdhProviderInfo::parse(curve, input) {
        assert_eq!(info.to_bytes(), input, "provider info must re-serialize as read");
        assert_eq!((info.recipient.len(), info.sender.len()), (curve.compressed_len(), curve.compressed_len()));
    }
    if let Ok(ciphertext) = EcdhCiphertext::parse(key_len, input) {
        assert_eq!(ciphertext.wrapped_key.len(), key_len);
        assert_eq!(input.len(), EcdhCiphertext::len_for(key_len));
    }
    match ecdh::spki_point(input) {
        Ok((found, point)) => assert_eq!(ecdh::spki_point(&ecdh::spki_der(found, point)), Ok((found, point))),
        Err(err) => assert!(!err.to_string().chars().any(char::is_control), "unescaped error: {err}"),
    }

    #[cfg(feature = "aws-lc")]
    {
        use kms_envelope::{EcdhPrivateKey, EcdhPublicKey};
        for key in [EcdhPublicKey::from_der(curve, input), EcdhPublicKey::from_point(curve, input)].into_iter().flatten() {
            assert_eq!(key.compressed().len(), curve.compressed_len());
            assert_eq!(EcdhPublicKey::from_point(curve, key.compressed()).as_ref(), Ok(&key));
        }
        if let Ok(key) = EcdhPrivateKey::from_der(curve, input) {
            assert_eq!(key.curve(), curve);
        }
        let _ = EcdhPrivateKey::from_pem(curve, input);
    }
});
