//! The keyrings' EDK parsers on arbitrary bytes: the ECDH provider info and ciphertext layout, the
//! SubjectPublicKeyInfo walker, the Hierarchical keyring's EDK ciphertext and branch key version, and (with
//! the fuzz crate's `aws-lc` feature) the validated key types and the ECDH keyrings' decrypt path that the
//! AWS KMS ECDH keyring shares (an `aws-kms-ecdh` or `raw-ecdh` EDK addressed to our key, its sender key
//! and ciphertext from the input: every check before the key agreement). The first byte picks the curve,
//! the key length and the provider id; the rest is the input. Never a panic; what the parsers accept
//! re-serializes to what they read (provider info, hierarchy ciphertext) or re-parses to the same value
//! (SPKI, branch key version), and an accepted public key names itself by a compressed point of its
//! curve's length.
#![no_main]

use kms_envelope::EcdhCurve;
use kms_envelope::format::ecdh::{self, EcdhCiphertext, EcdhProviderInfo};
use kms_envelope::format::hierarchy_edk::{BranchKeyVersion, WrappedDataKey};
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
    if let Ok(wrapped) = WrappedDataKey::parse(input, key_len) {
        assert_eq!(wrapped.to_bytes(), input, "hierarchy ciphertext must re-serialize as read");
        let text = wrapped.version.to_string();
        assert_eq!(text.parse::<BranchKeyVersion>(), Ok(wrapped.version), "a version's text parses back");
    }
    if let Ok(text) = std::str::from_utf8(input)
        && let Ok(version) = text.parse::<BranchKeyVersion>()
    {
        assert_eq!(version.to_string(), text.to_ascii_lowercase(), "a version writes itself in lowercase");
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
        ecdh_decrypt(curve, key_len, selector, input);
    }
});

/// One EDK addressed to our key on `curve`, its sender key the input's first compressed point and its
/// ciphertext the rest, decrypted by the raw ECDH keyring (discovery): the local checks the AWS KMS ECDH
/// keyring runs before any KMS call, then the key agreement, commitment check and unwrap. The keys are made
/// once per process.
#[cfg(feature = "aws-lc")]
fn ecdh_decrypt(curve: EcdhCurve, key_len: usize, selector: u8, input: &[u8]) {
    use std::collections::BTreeSet;
    use std::sync::OnceLock;

    use kms_envelope::format::suite::AlgorithmSuite;
    use kms_envelope::keyring::{DecryptionMaterials, block_on};
    use kms_envelope::{EcdhPrivateKey, EncryptedDataKey, EncryptionContext, Keyring, RawEcdhKeyring};

    static KEYRINGS: OnceLock<Vec<(EcdhCurve, Vec<u8>, RawEcdhKeyring)>> = OnceLock::new();
    let keyrings = KEYRINGS.get_or_init(|| {
        EcdhCurve::ALL
            .into_iter()
            .map(|curve| {
                let own = EcdhPrivateKey::generate(curve).unwrap();
                (curve, own.public_key().compressed().to_vec(), RawEcdhKeyring::discovery(own))
            })
            .collect()
    });
    let (_, recipient, keyring) = keyrings.iter().find(|(c, _, _)| *c == curve).unwrap();
    let Some((sender, ciphertext)) = input.split_at_checked(curve.compressed_len()) else { return };
    let provider_id = [ecdh::RAW_ECDH_PROVIDER_ID, ecdh::KMS_ECDH_PROVIDER_ID][usize::from(selector / 9 % 2)];
    let edk = EncryptedDataKey {
        provider_id: provider_id.into(),
        provider_info: EcdhProviderInfo { recipient, sender }.to_bytes(),
        ciphertext: ciphertext.to_vec(),
    };
    let suite = [0x0014, 0x0046, 0x0078][[16, 24, 32].iter().position(|&n| n == key_len).unwrap()];
    let suite = AlgorithmSuite::from_id(suite).unwrap();
    let materials = DecryptionMaterials::new(suite, EncryptionContext::new(), BTreeSet::new());
    // No one without our private key can make an EDK we unwrap: the input never decrypts.
    let result = block_on(keyring.on_decrypt(materials, std::slice::from_ref(&edk)));
    let err = result.expect_err("a fuzzed EDK does not unwrap");
    assert!(!err.to_string().chars().any(char::is_control), "unescaped error: {err}");
}
