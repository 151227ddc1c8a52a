//! `kms-envelope branch-key create|version` and the `--branch-key-*` flags of encrypt and decrypt, over
//! moto's DynamoDB and KMS, each result checked through the library's store (not through the CLI itself).

use std::collections::BTreeMap;
use std::process::{Command, Output};

use kms_envelope::keyring::block_on;
use kms_envelope::keyring::hierarchy::{BranchKeyStore, BranchKeyVersion, DynamoDbBranchKeyStore};

use crate::support::Moto;

fn ours(moto: &Moto, dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kms-envelope"))
        .args(args)
        .current_dir(dir)
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ENDPOINT_URL_KMS", &moto.endpoint)
        .env("AWS_ENDPOINT_URL_DYNAMODB", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn branch_key_create_version_and_the_encrypt_decrypt_flags() {
    let Some(moto) = Moto::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pt"), b"branch key by the CLI").unwrap();
    let key = moto.create_key();
    let table = format!("cli-{}", key.rsplit('/').next().unwrap());
    let store = ["--table", &table, "--kms-key", &key, "--logical-name", "cli-store"];
    let create = |extra: &[&str]| ours(&moto, dir.path(), &[&["branch-key", "create"], &store[..], extra].concat());

    let tenant = ok(create(&["--create-table", "--branch-key-id", "tenant-1", "--ec", "team=blue"]));
    assert_eq!(tenant, "tenant-1");
    let random = ok(create(&[]));
    assert!(random.parse::<BranchKeyVersion>().is_ok(), "a UUID id: {random}");
    let refused = create(&["--branch-key-id", "tenant-2"]);
    assert_eq!(refused.status.code(), Some(3), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs an encryption context"));

    let library = DynamoDbBranchKeyStore::from_clients(&moto.clients(), &table, &key, "cli-store").unwrap();
    let first = block_on(library.get_active("tenant-1")).unwrap();
    assert_eq!(first.custom_context(), &BTreeMap::from([("team".to_owned(), "blue".to_owned())]));

    let flags = |name: &str| -> Vec<String> {
        ["--branch-key-id", "tenant-1", "--branch-key-table", &table, "--branch-key-kms", &key]
            .into_iter()
            .chain(["--branch-key-logical-name", name, "--branch-key-cache-ttl", "60"])
            .map(str::to_owned)
            .collect()
    };
    let run = |args: &[&str], name: &str| {
        let flags = flags(name);
        let all: Vec<&str> = args.iter().copied().chain(flags.iter().map(String::as_str)).collect();
        ours(&moto, dir.path(), &all)
    };
    ok(run(&["encrypt", "pt", "old.esdk"], "cli-store"));
    let version = ok(ours(
        &moto,
        dir.path(),
        &[&["branch-key", "version"], &store[..], &["--branch-key-id", "tenant-1"]].concat(),
    ));
    let version: BranchKeyVersion = version.parse().unwrap();
    assert_ne!(&version, first.version());
    assert_eq!(block_on(library.get_active("tenant-1")).unwrap().version(), &version);
    ok(run(&["encrypt", "pt", "new.esdk"], "cli-store"));
    let message = std::fs::read(dir.path().join("new.esdk")).unwrap();
    assert!(message.windows(16).any(|w| w == version.as_bytes()), "the new message is under the new version");
    for name in ["old", "new"] {
        ok(run(&["decrypt", &format!("{name}.esdk"), &format!("{name}.pt")], "cli-store"));
        assert_eq!(std::fs::read(dir.path().join(format!("{name}.pt"))).unwrap(), b"branch key by the CLI");
    }

    // `exec` reads secrets under the branch key: only holders of the store's KMS key write those.
    std::fs::write(dir.path().join("env"), b"BRANCH_SECRET=from-the-branch-key\n").unwrap();
    ok(run(&["encrypt", "env", "env.esdk"], "cli-store"));
    let flags = flags("cli-store");
    let exec: Vec<&str> = ["exec"]
        .into_iter()
        .chain(flags.iter().map(String::as_str))
        .chain(["env.esdk", "--", "printenv", "BRANCH_SECRET"])
        .collect();
    let printed = ok(ours(&moto, dir.path(), &exec));
    assert_eq!(printed, "from-the-branch-key");

    let wrong_name = run(&["decrypt", "old.esdk", "wrong.pt"], "another-store");
    assert_eq!(wrong_name.status.code(), Some(3), "{}", String::from_utf8_lossy(&wrong_name.stderr));
    assert!(String::from_utf8_lossy(&wrong_name.stderr).contains("KMS refused the store item"));
    let incomplete = ours(&moto, dir.path(), &["encrypt", "pt", "x.esdk", "--branch-key-id", "tenant-1"]);
    assert_eq!(incomplete.status.code(), Some(2), "{}", String::from_utf8_lossy(&incomplete.stderr));
}
