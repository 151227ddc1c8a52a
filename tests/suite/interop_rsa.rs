//! Raw RSA keyrings against the official Python ESDK (its MPL raw RSA keyring), both ways, for every padding,
//! through our CLI; keys are generated at test time by Python's `cryptography`.
#![cfg(all(feature = "rsa", feature = "cli"))]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, Pkcs1PrivateDecryptingKey, Pkcs1PublicEncryptingKey,
    PrivateDecryptingKey,
};
use base64::Engine as _;

const PADDINGS: [&str; 5] = ["oaep-sha1", "oaep-sha256", "oaep-sha384", "oaep-sha512", "pkcs1"];

struct Keys {
    private: PathBuf,
    private_pkcs1: PathBuf,
    public: PathBuf,
    other_private: PathBuf,
    weak_private: PathBuf,
}

/// Writes the Python-made key pairs of this test binary ([`common::python_rsa_pems`]) as PEM into `dir`: a
/// 2048-bit pair (PKCS #8, PKCS #1 and SPKI forms), another 2048-bit private key, and a 1024-bit one that
/// must be refused.
fn keys(python: &Path, dir: &Path) -> Keys {
    let pems = common::python_rsa_pems(python);
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    Keys {
        private: write("private.pem", &pems.private),
        private_pkcs1: write("private-pkcs1.pem", &pems.private_pkcs1),
        public: write("public.pem", &pems.public_spki),
        other_private: write("other.pem", &pems.other_private),
        weak_private: write("weak.pem", &pems.weak_private),
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

/// A Python peer command line with one raw RSA keyring (suite 0x0478 on encrypt).
fn python_rsa(
    op: &str,
    input: &Path,
    output: &Path,
    private: &Path,
    padding: &str,
    (namespace, name): (&str, &str),
) -> Vec<String> {
    let mut args = vec![op, "--in", input.to_str().unwrap(), "--out", output.to_str().unwrap()];
    args.extend(["--rsa-private-pem", private.to_str().unwrap(), "--rsa-padding", padding]);
    args.extend(["--key-namespace", namespace, "--key-name", name]);
    if op == "encrypt" {
        args.extend(["--suite", "0x0478"]);
    }
    args.into_iter().map(str::to_owned).collect()
}

/// Every padding, both ways. Python's encryptions, then its decryptions, run as one batch each (one peer
/// process, one SDK import): the same messages cross in the same directions as with a process per message.
#[test]
fn every_padding_interoperates_with_the_python_esdk_both_ways() {
    let Some(python) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(&python, dir.path());
    let plaintext: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let input = dir.path().join("plain.bin");
    std::fs::write(&input, &plaintext).unwrap();
    let theirs = |padding: &str| dir.path().join(format!("python-{padding}.esdk"));
    let python_encrypts: Vec<Vec<String>> = PADDINGS
        .iter()
        .map(|padding| python_rsa("encrypt", &input, &theirs(padding), &keys.private, padding, ("deploy", "rsa-2026")))
        .collect();
    for (padding, result) in PADDINGS.iter().zip(common::python_batch(&python, &python_encrypts)) {
        result.unwrap_or_else(|err| panic!("{padding}: Python encrypt: {err}"));
    }
    let mut python_decrypts = Vec::new();
    for padding in PADDINGS {
        // Python encrypted; we decrypt with the private key (PKCS #8 and PKCS #1 forms).
        let theirs = theirs(padding);
        for private in [&keys.private, &keys.private_pkcs1] {
            let out_file = dir.path().join(format!("ours-from-python-{padding}"));
            let out = cli(
                &[["decrypt"].as_slice(), &rsa_args("--rsa-private-key", private, padding), &["--force"]].concat(),
                &[&theirs, &out_file],
            );
            assert!(out.status.success(), "{padding}: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(std::fs::read(&out_file).unwrap(), plaintext, "{padding}");
        }

        // We encrypt with the public key only; Python decrypts (below, in one batch). PKCS #1 v1.5 is
        // decrypt-only: refused (exit 2).
        let ours = dir.path().join(format!("ours-{padding}.esdk"));
        let out = cli(
            &[["encrypt"].as_slice(), &rsa_args("--rsa-public-key", &keys.public, padding)].concat(),
            &[&input, &ours],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = if padding == "pkcs1" {
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            assert!(stderr.contains("decrypt-only") && stderr.contains("oaep-sha256"), "{stderr}");
            assert!(!ours.exists());
            theirs
        } else {
            assert!(out.status.success(), "{padding}: {stderr}");
            let back = dir.path().join(format!("python-from-ours-{padding}"));
            let args = python_rsa("decrypt", &ours, &back, &keys.private, padding, ("deploy", "rsa-2026"));
            python_decrypts.push((padding, args, back));
            ours
        };

        // A public key cannot decrypt; another private key, or another padding, cannot either (exit 3). With
        // PKCS #1 v1.5 a public key is refused outright (exit 2), and another private key yields a synthetic
        // data key (implicit rejection) that the key commitment refuses (exit 1).
        let other = PADDINGS.iter().find(|&&p| p != padding).unwrap();
        let pkcs1 = padding == "pkcs1";
        for (flag, pem, pad, status) in [
            ("--rsa-public-key", &keys.public, padding, if pkcs1 { 2 } else { 3 }),
            ("--rsa-private-key", &keys.other_private, padding, if pkcs1 { 1 } else { 3 }),
            ("--rsa-private-key", &keys.private, *other, 3),
        ] {
            let dest = dir.path().join("never");
            let out = cli(&[["decrypt"].as_slice(), &rsa_args(flag, pem, pad)].concat(), &[&message, &dest]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(status), "{padding} with {flag} {pad}: {stderr}");
            assert!(!dest.exists());
        }
    }
    let jobs: Vec<Vec<String>> = python_decrypts.iter().map(|(_, args, _)| args.clone()).collect();
    assert_eq!(jobs.len(), PADDINGS.len() - 1, "Python decrypts every OAEP padding's message");
    for ((padding, _, back), result) in python_decrypts.iter().zip(common::python_batch(&python, &jobs)) {
        result.unwrap_or_else(|err| panic!("{padding}: Python decrypt: {err}"));
        assert_eq!(std::fs::read(back).unwrap(), plaintext, "{padding}");
    }
}

/// The private key as PKCS #8 PEM.
fn rsa_key_pem(key: &PrivateDecryptingKey) -> String {
    let der = base64::engine::general_purpose::STANDARD.encode(key.as_der().unwrap().as_ref());
    format!("-----BEGIN PRIVATE KEY-----\n{der}\n-----END PRIVATE KEY-----\n")
}

/// A PKCS #1 v1.5 EDK with a bad padding must fail exactly like one with a valid padding around a wrong
/// data key, or around a plaintext of the wrong length: same error, same exit status, same stderr. Were they
/// told apart, by error, status or at what step decryption stops, anyone who can submit messages would
/// have Bleichenbacher's padding oracle on the private key. The EDKs are made with AWS-LC's own PKCS #1
/// v1.5 encryption (ours refuses), the bad padding by encrypting garbage with OAEP (and checked bad by
/// AWS-LC's own unpadding); each replaces the EDK of a message our OAEP keyring wrote, so the header tag
/// would fail too: the suites' first check of the data key (commitment for 0x0478, header tag for 0x0178)
/// must be where all of them fail.
#[test]
fn a_bad_pkcs1_padding_fails_like_a_wrong_key() {
    use kms_envelope::{AlgorithmSuite, CommitmentPolicy, DecryptOptions, EncryptOptions, RawRsaKeyring, RsaPadding};
    let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let pem = rsa_key_pem(&key);
    let oaep =
        RawRsaKeyring::from_private_key_pem("deploy", "rsa-2026", RsaPadding::OaepSha256, pem.as_bytes()).unwrap();
    let pkcs1 =
        RawRsaKeyring::from_private_key_pem("deploy", "rsa-2026", RsaPadding::Pkcs1V15, pem.as_bytes()).unwrap();
    let public = Pkcs1PublicEncryptingKey::new(key.public_key()).unwrap();
    let pkcs1_encrypt = |plaintext: &[u8]| {
        let mut out = vec![0u8; public.ciphertext_size()];
        public.encrypt(plaintext, &mut out).unwrap().to_vec()
    };
    let bad_padding = {
        let oaep_public = OaepPublicEncryptingKey::new(key.public_key()).unwrap();
        let pkcs1_private = Pkcs1PrivateDecryptingKey::new(key.clone()).unwrap();
        loop {
            let mut ciphertext = vec![0u8; oaep_public.ciphertext_size()];
            oaep_public.encrypt(&OAEP_SHA256_MGF1SHA256, &[0x5a; 32], &mut ciphertext, None).unwrap();
            let mut plain = vec![0u8; pkcs1_private.min_output_size()];
            if pkcs1_private.decrypt(&ciphertext, &mut plain).is_err() {
                break ciphertext;
            }
        }
    };
    let edks = [
        ("bad padding", bad_padding),
        ("a valid padding around a wrong key", pkcs1_encrypt(&[0x3c; 32])),
        ("a valid padding around 5 bytes", pkcs1_encrypt(&[7; 5])),
    ];

    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("private.pem");
    std::fs::write(&pem_path, &pem).unwrap();
    let (message_path, dest) = (dir.path().join("message.esdk"), dir.path().join("never"));
    let legacy = ["--commitment-policy", "require-encrypt-allow-decrypt"];
    for (suite, policy) in [
        (AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY, CommitmentPolicy::RequireEncryptRequireDecrypt),
        (AlgorithmSuite::AES_256_GCM_IV12_TAG16_HKDF_SHA256, CommitmentPolicy::ForbidEncryptAllowDecrypt),
    ] {
        let options = EncryptOptions::new().suite(suite).commitment_policy(policy);
        let message = kms_envelope::encrypt(&oaep, &options, b"legacy secret").unwrap();
        let header = kms_envelope::Header::read_from(Default::default(), &mut &message[..]).unwrap();
        let original = header.encrypted_data_keys()[0].ciphertext.clone();
        let at = message.windows(original.len()).position(|w| w == original).unwrap();
        let mut seen: Option<(String, Option<i32>, String)> = None;
        for (what, edk) in &edks {
            assert_eq!(edk.len(), original.len());
            let mut message = message.clone();
            message[at..at + edk.len()].copy_from_slice(edk);
            let decrypt_options = DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
            let err = kms_envelope::decrypt(&pkcs1, &decrypt_options, &message).err().unwrap();
            std::fs::write(&message_path, &message).unwrap();
            let out = cli(
                &[["decrypt"].as_slice(), &rsa_args("--rsa-private-key", &pem_path, "pkcs1"), &legacy].concat(),
                &[&message_path, &dest],
            );
            assert!(!dest.exists(), "{what}");
            let result = (format!("{err:?}"), out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned());
            match &seen {
                None => seen = Some(result),
                Some(first) => assert_eq!(&result, first, "{suite:?}: {what} fails unlike {}", edks[0].0),
            }
        }
        let (err, status, stderr) = seen.unwrap();
        let expected = if suite.is_committing() { "CommitmentMismatch" } else { "HeaderAuthentication" };
        assert_eq!((err.as_str(), status), (expected, Some(1)), "{stderr}");
    }

    // Encrypting with PKCS #1 v1.5 is refused, with a private key too, saying to use OAEP (exit 2).
    let input = dir.path().join("plain.txt");
    std::fs::write(&input, b"new secret").unwrap();
    let new_message = dir.path().join("new.esdk");
    let out = cli(
        &[["encrypt"].as_slice(), &rsa_args("--rsa-private-key", &pem_path, "pkcs1")].concat(),
        &[&input, &new_message],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!new_message.exists());
    assert!(stderr.contains("decrypt-only") && stderr.contains("encrypt with OAEP"), "{stderr}");
    let err = kms_envelope::encrypt(&pkcs1, &EncryptOptions::new(), b"new secret").unwrap_err();
    assert!(matches!(err, kms_envelope::Error::DecryptOnlyRsaPadding), "{err:?}");
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
    let job = python_rsa("decrypt", &message, &back, &keys.private, "oaep-sha256", ("rsa-ns", "rsa-name"));
    common::python_batch(&python, &[job]).remove(0).unwrap();
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
