//! Unbundling under a tight descriptor limit: the unpacker holds its files unnamed (one descriptor each)
//! until the message verified, and must name them early rather than fail when descriptors run short.
//! In a process of its own, because the limit applies to the whole process.
#![cfg(all(feature = "bundle", target_os = "linux"))]

use std::fs;

use kms_envelope::OutputOptions;
use kms_envelope::bundle::{decrypt_directory, encrypt_directory};
use kms_envelope::{DecryptOptions, EncryptOptions, RawAesKeyring};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

#[test]
fn a_bundle_of_many_files_unpacks_under_a_64_descriptor_limit() {
    // In a process of its own: the limit applies to the whole process.
    crate::common::in_own_process(
        "bundle_fd_limit::a_bundle_of_many_files_unpacks_under_a_64_descriptor_limit",
        a_bundle_of_many_files_unpacks_under_a_64_descriptor_limit_alone,
    );
}

fn a_bundle_of_many_files_unpacks_under_a_64_descriptor_limit_alone() {
    let keyring = RawAesKeyring::new("bundle", "key", &[0x77; 32]).unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..200 {
        fs::write(src.join(format!("f{i:03}")), format!("file {i}")).unwrap();
    }
    let (message, _) = encrypt_directory(&keyring, &EncryptOptions::new(), &src, Vec::new()).unwrap();

    let before = getrlimit(Resource::Nofile);
    setrlimit(Resource::Nofile, Rlimit { current: Some(64), maximum: before.maximum }).unwrap();
    let out = work.path().join("out");
    let result = decrypt_directory(&keyring, &DecryptOptions::new(), &message[..], &out, &OutputOptions::new());
    setrlimit(Resource::Nofile, before).unwrap();

    let (_, unpacked) = result.unwrap();
    assert_eq!(unpacked.files, 200);
    for i in 0..200 {
        assert_eq!(fs::read_to_string(out.join(format!("f{i:03}"))).unwrap(), format!("file {i}"));
    }
}
