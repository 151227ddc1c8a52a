//! Interop of the Hierarchical keyring and the DynamoDB branch key store with the Python Material Providers
//! Library (1.11, in the test venv) over moto's DynamoDB and KMS, both ways: a key store and branch key
//! created by Python, read by us; a branch key created by us, read by Python; a branch key versioned by
//! each side, with messages under the old and the new version read by the other. Three Python processes in
//! all (the peer's batch mode), as each start costs about a second.
#![cfg(feature = "hierarchy-ddb")]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kms_envelope::keyring::block_on;
use kms_envelope::keyring::hierarchy::{BranchKeyStore, BranchKeyVersion, DynamoDbBranchKeyStore, HierarchicalKeyring};
use kms_envelope::{DecryptOptions, EncryptOptions};

use crate::support::{Moto, PythonPeer};

const LOGICAL_NAME: &str = "interop-store";

fn keyring(moto: &Moto, table: &str, key: &str, branch_key_id: &str) -> HierarchicalKeyring {
    let store = DynamoDbBranchKeyStore::from_clients(&moto.clients(), table, key, LOGICAL_NAME).unwrap();
    HierarchicalKeyring::new(store, branch_key_id, Duration::from_secs(600)).unwrap()
}

fn decrypt_file(keyring: &HierarchicalKeyring, path: &Path) -> Vec<u8> {
    let message = std::fs::read(path).unwrap();
    kms_envelope::decrypt(keyring, &DecryptOptions::new(), &message).unwrap().plaintext.to_vec()
}

fn encrypt_file(keyring: &HierarchicalKeyring, plaintext: &[u8], path: &Path) {
    std::fs::write(path, kms_envelope::encrypt(keyring, &EncryptOptions::new(), plaintext).unwrap()).unwrap();
}

/// Whether the message in `path` carries `version`'s 16 bytes (as its hierarchy EDK does).
fn under_version(path: &str, version: &BranchKeyVersion) -> bool {
    std::fs::read(path).unwrap().windows(16).any(|window| window == version.as_bytes())
}

#[test]
fn python_and_we_share_key_stores_branch_keys_and_versions() {
    let Some(moto) = Moto::get() else { return };
    let Some(peer) = PythonPeer::get(&moto) else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let key = moto.create_key();
    let table = format!("interop-{}", key.rsplit('/').next().unwrap());
    let plaintext = b"hierarchy interop".repeat(10);
    std::fs::write(file("pt"), &plaintext).unwrap();
    let store_args = ["--hierarchy-table", &table, "--kms-key", &key, "--logical-name", LOGICAL_NAME];
    let with_store = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter().chain(&store_args).chain(tail).map(|s| s.to_string()).collect()
    };
    let run = |jobs: Vec<Vec<String>>| {
        let jobs: Vec<Vec<&str>> = jobs.iter().map(|job| job.iter().map(String::as_str).collect()).collect();
        for (job, result) in jobs.iter().zip(peer.batch(&jobs)) {
            result.unwrap_or_else(|err| panic!("{job:?}: {err}"));
        }
    };
    let (pt, py1, py2) = (file("pt"), file("py1.esdk"), file("py2.esdk"));
    let (rs1, rs2, rs3) = (file("rs1.esdk"), file("rs2.esdk"), file("rs3.esdk"));

    // Python: the key store (table), a branch key with a custom context, a message under it.
    run(vec![
        with_store(&["branch-key", "create-store"], &[]),
        with_store(&["branch-key", "create"], &["--branch-key-id", "py-key", "--context-json", r#"{"tenant":"py"}"#]),
        with_store(&["encrypt", "--in", &pt, "--out", &py1], &["--branch-key-id", "py-key"]),
    ]);

    // We read Python's store and key, and write a branch key of our own into it.
    let ours = DynamoDbBranchKeyStore::from_clients(&moto.clients(), &table, &key, LOGICAL_NAME).unwrap();
    let py_key = block_on(ours.get_active("py-key")).unwrap();
    assert_eq!(py_key.custom_context(), &BTreeMap::from([("tenant".to_owned(), "py".to_owned())]));
    assert_eq!(decrypt_file(&keyring(&moto, &table, &key, "py-key"), py1.as_ref()), plaintext);
    let rs_key = ours.create_key_blocking(None, &BTreeMap::from([("tenant".into(), "rs".into())])).unwrap();
    encrypt_file(&keyring(&moto, &table, &key, "py-key"), &plaintext, rs1.as_ref());
    encrypt_file(&keyring(&moto, &table, &key, &rs_key), &plaintext, rs2.as_ref());

    // Python reads ours, versions its key and writes under the new version.
    run(vec![
        with_store(&["decrypt", "--in", &rs1, "--out", &file("rs1.pt")], &["--branch-key-id", "py-key"]),
        with_store(&["decrypt", "--in", &rs2, "--out", &file("rs2.pt")], &["--branch-key-id", &rs_key]),
        with_store(&["branch-key", "version"], &["--branch-key-id", "py-key"]),
        with_store(&["encrypt", "--in", &pt, "--out", &py2], &["--branch-key-id", "py-key"]),
    ]);
    assert_eq!(std::fs::read(file("rs1.pt")).unwrap(), plaintext);
    assert_eq!(std::fs::read(file("rs2.pt")).unwrap(), plaintext);

    // Python's new version is active for us too; both its messages decrypt; we version our key.
    let new_py_version = *block_on(ours.get_active("py-key")).unwrap().version();
    assert_ne!(&new_py_version, py_key.version());
    assert!(under_version(&py2, &new_py_version) && !under_version(&py2, py_key.version()));
    assert!(under_version(&py1, py_key.version()));
    let reader = keyring(&moto, &table, &key, "py-key");
    assert_eq!(decrypt_file(&reader, py1.as_ref()), plaintext);
    assert_eq!(decrypt_file(&reader, py2.as_ref()), plaintext);
    let new_rs_version = ours.version_key_blocking(&rs_key).unwrap();
    encrypt_file(&keyring(&moto, &table, &key, &rs_key), &plaintext, rs3.as_ref());
    assert!(under_version(&rs3, &new_rs_version) && !under_version(&rs2, &new_rs_version));

    // Python reads our old and new versions.
    run(vec![
        with_store(&["decrypt", "--in", &rs2, "--out", &file("rs2b.pt")], &["--branch-key-id", &rs_key]),
        with_store(&["decrypt", "--in", &rs3, "--out", &file("rs3.pt")], &["--branch-key-id", &rs_key]),
    ]);
    assert_eq!(std::fs::read(file("rs2b.pt")).unwrap(), plaintext);
    assert_eq!(std::fs::read(file("rs3.pt")).unwrap(), plaintext);
}
