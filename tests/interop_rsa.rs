//! Raw RSA keyrings against the official Python ESDK (its MPL raw RSA keyring), both ways, for every padding,
//! through our CLI; keys are generated at test time by Python's `cryptography`.
#![cfg(all(feature = "rsa", feature = "cli"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;

const PADDINGS: [&str; 5] = ["oaep-sha1", "oaep-sha256", "oaep-sha384", "oaep-sha512", "pkcs1"];

struct Keys {
    private: PathBuf,
    private_pkcs1: PathBuf,
    public: PathBuf,
    other_private: PathBuf,
    weak_private: PathBuf,
}

/// Writes key pairs as PEM into `dir`: a 2048-bit pair (PKCS #8, PKCS #1 and SPKI forms), another 2048-bit
/// private key, and a 1024-bit one that must be refused.
fn keys(python: &Path, dir: &Path) -> Keys {
    let script = r#"
import sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import rsa
d = sys.argv[1]
def write(name, data):
    open(d + "/" + name, "wb").write(data)
def private(key, fmt=s.PrivateFormat.PKCS8):
    return key.private_bytes(s.Encoding.PEM, fmt, s.NoEncryption())
k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
write("private.pem", private(k))
write("private-pkcs1.pem", private(k, s.PrivateFormat.TraditionalOpenSSL))
write("public.pem", k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
write("other.pem", private(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
write("weak.pem", private(rsa.generate_private_key(public_exponent=65537, key_size=1024)))
"#;
    let out = Command::new(python).args(["-c", script]).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Keys {
        private: dir.join("private.pem"),
        private_pkcs1: dir.join("private-pkcs1.pem"),
        public: dir.join("public.pem"),
        other_private: dir.join("other.pem"),
        weak_private: dir.join("weak.pem"),
    }
}

fn cli(args: &[&str], files: &[&Path]) -> Output {
    let mut cmd = Command::cargo_bin("kms-envelope").unwrap();
    cmd.args(args).args(files);
    cmd.output().unwrap()
}

fn rsa_args<'a>(flag: &'a str, pem: &'a Path, padding: &'a str) -> Vec<&'a str> {
    vec![flag, pem.to_str().unwrap(), "--key-namespace", "deploy", "--key-name", "rsa-2026", "--rsa-padding", padding]
}

/// The Python peer with one raw RSA keyring (suite 0x0478 on encrypt).
fn python_rsa(
    python: &Path,
    op: &str,
    input: &Path,
    output: &Path,
    private: &Path,
    padding: &str,
    (namespace, name): (&str, &str),
) -> (bool, String) {
    let mut args = vec![op, "--in", input.to_str().unwrap(), "--out", output.to_str().unwrap()];
    args.extend(["--rsa-private-pem", private.to_str().unwrap(), "--rsa-padding", padding]);
    args.extend(["--key-namespace", namespace, "--key-name", name]);
    if op == "encrypt" {
        args.extend(["--suite", "0x0478"]);
    }
    common::run_peer(python, &args)
}

#[test]
fn every_padding_interoperates_with_the_python_esdk_both_ways() {
    let Some(python) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(&python, dir.path());
    let plaintext: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let input = dir.path().join("plain.bin");
    std::fs::write(&input, &plaintext).unwrap();
    for padding in PADDINGS {
        // Python encrypts; we decrypt with the private key (PKCS #8 and PKCS #1 forms).
        let theirs = dir.path().join(format!("python-{padding}.esdk"));
        let (ok, err) = python_rsa(&python, "encrypt", &input, &theirs, &keys.private, padding, ("deploy", "rsa-2026"));
        assert!(ok, "{padding}: Python encrypt: {err}");
        for private in [&keys.private, &keys.private_pkcs1] {
            let out_file = dir.path().join(format!("ours-from-python-{padding}"));
            let out = cli(
                &[["decrypt"].as_slice(), &rsa_args("--rsa-private-key", private, padding), &["--force"]].concat(),
                &[&theirs, &out_file],
            );
            assert!(out.status.success(), "{padding}: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(std::fs::read(&out_file).unwrap(), plaintext, "{padding}");
        }

        // We encrypt with the public key only; Python decrypts.
        let ours = dir.path().join(format!("ours-{padding}.esdk"));
        let out = cli(
            &[["encrypt"].as_slice(), &rsa_args("--rsa-public-key", &keys.public, padding)].concat(),
            &[&input, &ours],
        );
        assert!(out.status.success(), "{padding}: {}", String::from_utf8_lossy(&out.stderr));
        let back = dir.path().join(format!("python-from-ours-{padding}"));
        let (ok, err) = python_rsa(&python, "decrypt", &ours, &back, &keys.private, padding, ("deploy", "rsa-2026"));
        assert!(ok, "{padding}: Python decrypt: {err}");
        assert_eq!(std::fs::read(&back).unwrap(), plaintext, "{padding}");

        // A public key cannot decrypt; another private key, or another padding, cannot either (exit 3).
        let other = PADDINGS.iter().find(|&&p| p != padding).unwrap();
        for (flag, pem, pad) in [
            ("--rsa-public-key", &keys.public, padding),
            ("--rsa-private-key", &keys.other_private, padding),
            ("--rsa-private-key", &keys.private, *other),
        ] {
            let dest = dir.path().join("never");
            let out = cli(&[["decrypt"].as_slice(), &rsa_args(flag, pem, pad)].concat(), &[&ours, &dest]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(3), "{padding} with {flag} {pad}: {stderr}");
            assert!(!dest.exists());
        }
    }
}

#[test]
fn rsa_and_aes_in_one_message_and_weak_keys_refused() {
    let Some(python) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(&python, dir.path());
    let aes = dir.path().join("aes.key");
    std::fs::write(&aes, [0x42u8; 32]).unwrap();
    let input = dir.path().join("plain.txt");
    std::fs::write(&input, b"one message, two keys").unwrap();
    let message = dir.path().join("multi.esdk");
    // The namespaces and names pair with the local keys in command-line order: AES first, then RSA.
    let encrypt = [
        "encrypt",
        "--raw-key-file",
        aes.to_str().unwrap(),
        "--rsa-public-key",
        keys.public.to_str().unwrap(),
        "--key-namespace",
        "aes-ns",
        "--key-namespace",
        "rsa-ns",
        "--key-name",
        "aes-name",
        "--key-name",
        "rsa-name",
    ];
    let out = cli(&encrypt, &[&input, &message]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (args, name) in [
        (vec!["--raw-key-file", aes.to_str().unwrap(), "--key-namespace", "aes-ns", "--key-name", "aes-name"], "aes"),
        (
            vec![
                "--rsa-private-key",
                keys.private.to_str().unwrap(),
                "--key-namespace",
                "rsa-ns",
                "--key-name",
                "rsa-name",
            ],
            "rsa",
        ),
    ] {
        let dest = dir.path().join(format!("out-{name}"));
        let out = cli(&[["decrypt"].as_slice(), &args].concat(), &[&message, &dest]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&dest).unwrap(), b"one message, two keys");
    }
    // Python reads the same message with its raw RSA keyring alone.
    let back = dir.path().join("python-out");
    let (ok, err) =
        python_rsa(&python, "decrypt", &message, &back, &keys.private, "oaep-sha256", ("rsa-ns", "rsa-name"));
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&back).unwrap(), b"one message, two keys");

    // A 1024-bit key is refused with a usage error that says why.
    let out = cli(
        &[["encrypt"].as_slice(), &rsa_args("--rsa-private-key", &keys.weak_private, "oaep-sha256")].concat(),
        &[&input, &dir.path().join("weak.esdk")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("keys under 2048 bits are too weak"), "{stderr}");
    // An unknown padding is a usage error too.
    let out = cli(
        &[["encrypt"].as_slice(), &rsa_args("--rsa-public-key", &keys.public, "oaep-md5")].concat(),
        &[&input, &dir.path().join("x.esdk")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A pipeline encrypts under a KMS RSA key with its public key file alone: no AWS call (the KMS endpoint is
/// unreachable), and `inspect` names both kinds of RSA EDK.
#[cfg(feature = "kms")]
#[test]
fn kms_rsa_encrypt_needs_no_aws_and_inspect_labels_rsa_edks() {
    let Some(python) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(&python, dir.path());
    let input = dir.path().join("plain.txt");
    std::fs::write(&input, b"pipeline secret").unwrap();
    let message = dir.path().join("kms-rsa.esdk");
    let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let out = Command::cargo_bin("kms-envelope")
        .unwrap()
        .env("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:9")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["encrypt", "--kms-rsa-key", arn, "--kms-rsa-public-key"])
        .arg(&keys.public)
        .args(["--rsa-public-key"])
        .arg(&keys.public)
        .args(["--key-namespace", "deploy", "--key-name", "rsa-2026"])
        .arg(&input)
        .arg(&message)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&["inspect"], &[&message]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("AWS KMS RSA key \"{arn}\"")), "{text}");
    assert!(text.contains("raw RSA key name \"rsa-2026\" (a 2048-bit key, by its size)"), "{text}");
    // The raw RSA half still decrypts it.
    let back = dir.path().join("back.txt");
    let out = cli(
        &[["decrypt"].as_slice(), &rsa_args("--rsa-private-key", &keys.private, "oaep-sha256")].concat(),
        &[&message, &back],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&back).unwrap(), b"pipeline secret");
    // A signing suite is refused by the KMS RSA keyring.
    let out = Command::cargo_bin("kms-envelope")
        .unwrap()
        .args(["encrypt", "--suite", "0x0578", "--kms-rsa-key", arn, "--kms-rsa-public-key"])
        .arg(&keys.public)
        .arg(&input)
        .arg(dir.path().join("signed.esdk"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("signing suite 0x0578"), "{stderr}");
}

/// A --kms-rsa-public-key without its --kms-rsa-key is refused: ignoring it would write a message that the
/// KMS RSA key the user meant cannot open.
#[test]
fn a_kms_rsa_public_key_without_its_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let aes = dir.path().join("aes.key");
    std::fs::write(&aes, [0x42u8; 32]).unwrap();
    let input = dir.path().join("plain.txt");
    std::fs::write(&input, b"for the KMS RSA key").unwrap();
    let message = dir.path().join("out.esdk");
    let aes_args = ["--raw-key-file", aes.to_str().unwrap(), "--key-namespace", "ns", "--key-name", "name"];
    let out = cli(
        &[["encrypt"].as_slice(), &aes_args, &["--kms-rsa-public-key", "deploy-public.pem"]].concat(),
        &[&input, &message],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("one --kms-rsa-public-key for each --kms-rsa-key"), "{stderr}");
    assert!(!message.exists());
}
