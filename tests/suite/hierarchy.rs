//! The Hierarchical keyring through whole messages: every suite, composed with the multi-keyring and the
//! required-encryption-context pairs (which its wrapping AAD binds though the header leaves them out).
//! The official vectors are in `vectors.rs`; the keyring's own checks are its unit tests.

use std::time::Duration;

use kms_envelope::keyring::hierarchy::{BranchKeyMaterials, HierarchicalKeyring, StaticBranchKeyStore};
use kms_envelope::{AlgorithmSuite, CommitmentPolicy, DecryptOptions, EncryptOptions, MultiKeyring, RawAesKeyring};

const ID: &str = "tenant-7";

fn keyring(key: u8) -> HierarchicalKeyring {
    let version = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c".parse().unwrap();
    let store =
        StaticBranchKeyStore::new("tests").with_active(BranchKeyMaterials::new(ID, version, &[key; 32]).unwrap());
    HierarchicalKeyring::new(store, ID, Duration::from_secs(600)).unwrap()
}

#[test]
fn every_suite_round_trips_and_another_branch_key_cannot_read_it() {
    let (keyring, stranger) = (keyring(1), keyring(2));
    let decrypt = DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
    for &suite in AlgorithmSuite::ALL {
        let policy = match suite.is_committing() {
            true => CommitmentPolicy::RequireEncryptRequireDecrypt,
            false => CommitmentPolicy::ForbidEncryptAllowDecrypt,
        };
        let options = EncryptOptions::new().suite(suite).commitment_policy(policy).context("purpose", "test");
        let message = kms_envelope::encrypt(&keyring, &options, b"payload").unwrap();
        let out = kms_envelope::decrypt(&keyring, &decrypt, &message).unwrap();
        assert_eq!(&out.plaintext[..], b"payload", "suite {suite}");
        assert!(kms_envelope::decrypt(&stranger, &decrypt, &message).is_err(), "suite {suite}");
    }
}

#[test]
fn composes_with_a_multi_keyring_and_required_context() {
    let aes = || RawAesKeyring::new("ns", "aes", &[3; 32]).unwrap();
    let multi = MultiKeyring::new(keyring(1)).with_child(aes());
    let options = EncryptOptions::new().required_context("tenant", "acme");
    let message = kms_envelope::encrypt(&multi, &options, b"payload").unwrap();
    let decrypt = DecryptOptions::new().context("tenant", "acme").require_context_key("tenant");
    for alone in [&keyring(1) as &dyn kms_envelope::Keyring, &aes()] {
        assert_eq!(&kms_envelope::decrypt(alone, &decrypt, &message).unwrap().plaintext[..], b"payload");
    }
    // The pair is not in the header, and the wrapped key is bound to it: without it, nothing unwraps.
    let wrong = DecryptOptions::new().context("tenant", "other").require_context_key("tenant");
    assert!(kms_envelope::decrypt(&keyring(1), &wrong, &message).is_err());
}
