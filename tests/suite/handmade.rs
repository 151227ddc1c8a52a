//! Messages built by hand from the crate's format and crypto parts, to break the rules the encryptor keeps:
//! signed suites (the footer is checked, the final frame is held back until it is, the verification key is
//! present exactly when the suite signs), required context, and the ESDK-.NET 4.0.0 header quirk. And
//! headers of EDKs no keyring opens, whose hostile provider ids and infos an error quotes only clipped.

use std::io::Read;
use std::time::Duration;

use kms_envelope::crypto::MessageKeys;
use kms_envelope::crypto::kdf::V1Info;
use kms_envelope::crypto::signature::MessageSigner;
use kms_envelope::escape::needs_escape;
use kms_envelope::format::frame::{BlockKind, BodyAad, FINAL_FRAME_MARKER, frame_iv};
use kms_envelope::format::header::{self, HeaderBody, MessageId};
use kms_envelope::format::suite::SignatureAlgorithm;
use kms_envelope::keyring::hierarchy::{BranchKeyMaterials, HierarchicalKeyring, StaticBranchKeyStore};
use kms_envelope::keyring::{EncryptionMaterials, Keyring, block_on};
use kms_envelope::{
    AlgorithmSuite, CommitmentPolicy, DecryptOptions, Decryptor, EncryptOptions, EncryptedDataKey, EncryptionContext,
    Error, MultiKeyring, RawAesKeyring,
};

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("signed", "key", &[0x24; 32]).unwrap()
}

const SIGNED: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384;

/// Builds a one-frame message by hand, so that the context can break the rules the encryptor enforces.
fn handmade(suite: AlgorithmSuite, context: EncryptionContext, signer: Option<MessageSigner>) -> Vec<u8> {
    handmade_with(suite, context, signer, V1Info::Standard, &[])
}

/// As [`handmade`], with the v1 KDF info variant and the bytes appended to the header-authentication AAD.
fn handmade_with(
    suite: AlgorithmSuite,
    context: EncryptionContext,
    signer: Option<MessageSigner>,
    info: V1Info,
    auth_suffix: &[u8],
) -> Vec<u8> {
    let materials =
        block_on(keyring().on_encrypt(EncryptionMaterials::new(suite, context.clone(), Default::default()))).unwrap();
    let id = MessageId::random(suite.message_format());
    let keys = MessageKeys::derive(suite, materials.data_key().unwrap(), &id, info).unwrap();
    let body = HeaderBody {
        suite,
        message_id: id,
        stored_context: &context,
        edks: materials.encrypted_data_keys(),
        frame_length: 16,
        commitment: keys.commitment,
    }
    .serialize()
    .unwrap();
    let mut aad = body.clone();
    aad.extend_from_slice(auth_suffix);
    let tag = keys.content.seal_in_place(&[0; 12], &aad, &mut []);
    let mut message = header::assemble(body, suite, &tag);
    let mut pt = *b"hello";
    let aad = BodyAad::new(&id, BlockKind::Final, 1, 5);
    let tag = keys.content.seal_in_place(&frame_iv(1), aad.as_bytes(), &mut pt);
    message.extend_from_slice(&FINAL_FRAME_MARKER.to_be_bytes());
    message.extend_from_slice(&1u32.to_be_bytes());
    message.extend_from_slice(&frame_iv(1));
    message.extend_from_slice(&5u32.to_be_bytes());
    message.extend_from_slice(&pt);
    message.extend_from_slice(&tag);
    if let Some(mut signer) = signer {
        signer.update(&message);
        let sig = signer.sign().unwrap();
        message.extend_from_slice(&(sig.len() as u16).to_be_bytes());
        message.extend_from_slice(&sig);
    }
    message
}

#[test]
fn handmade_messages_are_valid_when_they_follow_the_rules() {
    let signer = MessageSigner::generate(SignatureAlgorithm::EcdsaP384Sha384);
    let context: EncryptionContext = [("aws-crypto-public-key", signer.public_key_base64())].into_iter().collect();
    let message = handmade(SIGNED, context, Some(signer));
    let decrypted = kms_envelope::decrypt(&keyring(), &DecryptOptions::new(), &message).unwrap();
    assert_eq!(&*decrypted.plaintext, b"hello");
}

#[test]
fn an_unsigned_suite_carrying_a_public_key_is_refused() {
    let signer = MessageSigner::generate(SignatureAlgorithm::EcdsaP384Sha384);
    let context: EncryptionContext = [("aws-crypto-public-key", signer.public_key_base64())].into_iter().collect();
    let message = handmade(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY, context, None);
    let err = kms_envelope::decrypt(&keyring(), &DecryptOptions::new(), &message).unwrap_err();
    assert!(matches!(err, Error::EncryptionContext(ref m) if m.contains("unsigned suite")), "{err}");
}

#[test]
fn a_signed_suite_without_a_public_key_is_refused() {
    let message =
        handmade(SIGNED, EncryptionContext::new(), Some(MessageSigner::generate(SignatureAlgorithm::EcdsaP384Sha384)));
    let err = kms_envelope::decrypt(&keyring(), &DecryptOptions::new(), &message).unwrap_err();
    assert!(matches!(err, Error::EncryptionContext(ref m) if m.contains("no aws-crypto-public-key")), "{err}");
}

#[test]
fn a_signature_by_another_key_fails_after_all_tags_verified() {
    let signer = MessageSigner::generate(SignatureAlgorithm::EcdsaP384Sha384);
    let context: EncryptionContext = [("aws-crypto-public-key", signer.public_key_base64())].into_iter().collect();
    let impostor = MessageSigner::generate(SignatureAlgorithm::EcdsaP384Sha384);
    let message = handmade(SIGNED, context, Some(impostor));
    let mut decryptor = Decryptor::new(&keyring(), &DecryptOptions::new(), &message[..]).unwrap();
    let mut out = Vec::new();
    let err = decryptor.read_to_end(&mut out).unwrap_err();
    assert!(matches!(Error::from_io(err), Error::SignatureVerification));
    assert!(out.is_empty(), "the final frame was released before the signature verified");
}

#[test]
fn signed_final_frame_is_held_until_the_footer_verifies() {
    let pt: Vec<u8> = (0..100u8).collect();
    let options = EncryptOptions::new().suite(SIGNED).frame_length(40);
    let message = kms_envelope::encrypt(&keyring(), &options, &pt).unwrap();
    // Cut inside the footer: the two regular frames may be out, the final 20 bytes must not be.
    for cut in [message.len() - 1, message.len() - 50, message.len() - 104] {
        let mut decryptor = Decryptor::new(&keyring(), &DecryptOptions::new(), &message[..cut]).unwrap();
        let mut out = Vec::new();
        let err = Error::from_io(decryptor.read_to_end(&mut out).unwrap_err());
        assert!(matches!(err, Error::Truncated { section: "footer", .. }), "cut {cut}: {err}");
        assert_eq!(out, &pt[..80], "cut {cut}");
    }
}

#[test]
fn other_signed_suites_round_trip_under_the_allow_policy() {
    for suite in [
        AlgorithmSuite::AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256,
        AlgorithmSuite::AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384,
        AlgorithmSuite::AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384,
    ] {
        let options = EncryptOptions::new().suite(suite).commitment_policy(CommitmentPolicy::ForbidEncryptAllowDecrypt);
        let message = kms_envelope::encrypt(&keyring(), &options, b"legacy signed").unwrap();
        let allow = DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
        assert_eq!(&*kms_envelope::decrypt(&keyring(), &allow, &message).unwrap().plaintext, b"legacy signed");
        let err = kms_envelope::decrypt(&keyring(), &DecryptOptions::new(), &message).unwrap_err();
        assert!(matches!(err, Error::CommitmentPolicy(_)), "{suite}: {err:?}");
    }
}

#[test]
fn required_context_is_authenticated_but_not_stored() {
    let options = EncryptOptions::new().context("stored", "1").required_context("tenant", "acme");
    let message = kms_envelope::encrypt(&keyring(), &options, b"data").unwrap();
    let without = kms_envelope::decrypt(&keyring(), &DecryptOptions::new(), &message).unwrap_err();
    assert!(matches!(without, Error::NoDataKeyDecrypted { .. } | Error::HeaderAuthentication), "{without}");
    let wrong = DecryptOptions::new().context("tenant", "other");
    let err = kms_envelope::decrypt(&keyring(), &wrong, &message).unwrap_err();
    assert!(matches!(err, Error::NoDataKeyDecrypted { .. } | Error::HeaderAuthentication), "{err:?}");
    let right = DecryptOptions::new().context("tenant", "acme").require_context_key("tenant");
    let decrypted = kms_envelope::decrypt(&keyring(), &right, &message).unwrap();
    assert_eq!(&*decrypted.plaintext, b"data");
    assert!(!decrypted.header.encryption_context().contains_key("tenant"));
    assert_eq!(decrypted.header.encryption_context().get("stored"), Some("1"));
    let missing_key = DecryptOptions::new().context("tenant", "acme").require_context_key("region");
    assert!(matches!(kms_envelope::decrypt(&keyring(), &missing_key, &message), Err(Error::ContextMismatch { .. })));
}

/// ESDK-.NET 4.0.0 derived v1 keys without the message id and authenticated an empty required context as
/// `00 00` (format notes §17.10). Such messages fail by default and decrypt with the opt-in retry.
#[test]
fn net_v4_0_0_messages_need_the_opt_in_retry() {
    let suite = AlgorithmSuite::AES_256_GCM_IV12_TAG16_HKDF_SHA256;
    let message = handmade_with(suite, EncryptionContext::new(), None, V1Info::NetV400, &[0, 0]);
    let allow = DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
    let err = kms_envelope::decrypt(&keyring(), &allow, &message).unwrap_err();
    assert!(matches!(err, Error::HeaderAuthentication), "{err}");
    let retry = allow.net_v4_0_0_retry(true);
    assert_eq!(&*kms_envelope::decrypt(&keyring(), &retry, &message).unwrap().plaintext, b"hello");
    // The retry is no back door: a message that fails both ways still fails.
    let mut broken = message.clone();
    let tag_at = broken.len() - 16 - 5 - 4 - 12 - 4 - 4 - 1;
    broken[tag_at] ^= 1;
    let err = kms_envelope::decrypt(&keyring(), &retry, &broken).unwrap_err();
    assert!(matches!(err, Error::HeaderAuthentication), "{err:?}");
}

/// A header whose EDKs are `edks`, with no body: no keyring here can unwrap them, so decrypt fails on the
/// keyring's reasons before the header's tag (zeros) would be checked.
fn header_with_edks(edks: &[EncryptedDataKey]) -> Vec<u8> {
    let suite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;
    let body = HeaderBody {
        suite,
        message_id: MessageId::random(suite.message_format()),
        stored_context: &EncryptionContext::new(),
        edks,
        frame_length: 4096,
        commitment: Some([0; 32]),
    }
    .serialize()
    .unwrap();
    header::assemble(body, suite, &[0; 16])
}

/// A raw AES keyring (which quotes an EDK's provider id) and a Hierarchical keyring (which quotes its
/// provider info, the branch key id), each giving a reason per EDK.
fn quoting_keyrings() -> MultiKeyring {
    let version = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c".parse().unwrap();
    let store =
        StaticBranchKeyStore::new("tests").with_active(BranchKeyMaterials::new("tenant-7", version, &[3; 32]).unwrap());
    let hierarchy = HierarchicalKeyring::new(store, "tenant-7", Duration::from_secs(600)).unwrap();
    MultiKeyring::new(keyring()).with_child(hierarchy)
}

/// The error's `Display`, checked to hold no character that could act on a terminal.
fn shown_without_controls(err: &Error) -> String {
    let shown = err.to_string();
    assert!(!shown.chars().any(needs_escape), "a raw control reached the error line");
    shown
}

/// The start of a long error line, for a failure's message.
fn start(shown: &str) -> String {
    shown.chars().take(1000).collect()
}

#[test]
fn an_error_quotes_at_most_a_few_hundred_bytes_of_a_huge_provider_id_or_info() {
    let hostile = "\x1b[2J\u{9b}\u{202e}\n".repeat(65_535 / 10);
    let edks = [
        EncryptedDataKey { provider_id: hostile.clone(), provider_info: b"k".to_vec(), ciphertext: vec![0; 48] },
        EncryptedDataKey {
            provider_id: "aws-kms-hierarchy".into(),
            provider_info: hostile.clone().into_bytes(),
            ciphertext: vec![0; 76],
        },
    ];
    let message = header_with_edks(&edks);
    let err = kms_envelope::decrypt(&quoting_keyrings(), &DecryptOptions::new(), &message).unwrap_err();
    assert!(matches!(err, Error::NoDataKeyDecrypted { .. }), "{err:?}");
    let shown = shown_without_controls(&err);
    // Four reasons (two keyrings, two EDKs), three of which quote the hostile text, each clipped to 256
    // bytes and escaped (at most 6 characters a byte): well under 8 KiB, where in full it is half a MB.
    assert!(shown.len() < 8 << 10, "an error line of {} bytes: {}", shown.len(), start(&shown));
    let cut = format!("({} more bytes)", hostile.len() - 256);
    assert_eq!(shown.matches(&cut).count(), 3, "{}", start(&shown));
}

#[test]
fn an_error_shows_sixteen_reasons_and_counts_the_rest() {
    let edk = |i: usize| EncryptedDataKey {
        provider_id: format!("{i:03}\x1b]0;{}", "x".repeat(300)),
        provider_info: b"k".to_vec(),
        ciphertext: vec![0; 48],
    };
    let message = header_with_edks(&(0..1000).map(edk).collect::<Vec<_>>());
    let err = kms_envelope::decrypt(&keyring(), &DecryptOptions::new(), &message).unwrap_err();
    let shown = shown_without_controls(&err);
    assert!(shown.contains("raw AES signed/key: provider id \"015\\u{1b}]0;xxx"), "{}", start(&shown));
    assert!(!shown.contains("\"016"), "a 17th reason: {}", start(&shown));
    assert!(shown.ends_with("; … (984 more reasons)"), "{}", start(&shown));
    assert!(shown.len() < 8 << 10, "an error line of {} bytes", shown.len());
}
