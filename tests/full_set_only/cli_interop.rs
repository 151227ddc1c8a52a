//! Interop of the `kms-envelope` CLI with the AWS Encryption SDK CLI (`aws-encryption-cli` 4.x, installed
//! by scripts/test.sh into .venv-esdk-cli and found through KMS_ENVELOPE_ESDK_CLI): its messages decrypt
//! with ours and ours with it, for single files, stdin/stdout and directories, with raw AES keys (through
//! the small key provider plugin in tests/peers/esdk_cli_raw_aes) and with AWS KMS keys in moto.
//! Under CI=true a missing peer fails the run; otherwise the tests print "SKIPPED".
#![cfg(feature = "cli")]

use crate::common;
#[cfg(feature = "kms")]
use crate::support;

#[path = "cli_parts/armor.rs"]
mod armor;
#[cfg(feature = "hierarchy-ddb")]
#[path = "cli_parts/branch_key.rs"]
mod branch_key;
#[path = "cli_parts/metadata.rs"]
mod metadata;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const NS: &str = "pipeline-ns";
const NAME: &str = "pipeline-key";

/// The ESDK CLI executable.
fn esdk_cli() -> Option<PathBuf> {
    match std::env::var_os("KMS_ENVELOPE_ESDK_CLI").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        _ => common::missing("the AWS Encryption SDK CLI peer (KMS_ENVELOPE_ESDK_CLI)"),
    }
}

struct Peers {
    esdk: PathBuf,
    dir: tempfile::TempDir,
    /// The moto endpoint, for the KMS tests.
    kms_endpoint: Option<String>,
}

impl Peers {
    fn new() -> Option<Self> {
        let esdk = esdk_cli()?;
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("wrapping.key"), [0x5au8; 32]).unwrap();
        Some(Self { esdk, dir, kms_endpoint: None })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn env(&self, cmd: &mut Command) {
        cmd.current_dir(self.dir.path()).env("AWS_EC2_METADATA_DISABLED", "true").env_remove("AWS_PROFILE");
        if let Some(endpoint) = &self.kms_endpoint {
            cmd.env("AWS_ENDPOINT_URL_KMS", endpoint)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_DEFAULT_REGION", "us-east-1");
        }
    }

    /// `aws-encryption-cli ARGS`, with metadata suppressed.
    fn theirs(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(&self.esdk);
        self.env(&mut cmd);
        cmd.arg("-S").args(args);
        run(cmd, stdin)
    }

    /// `kms-envelope ARGS`.
    fn ours(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kms-envelope"));
        self.env(&mut cmd);
        cmd.args(args);
        run(cmd, stdin)
    }
}

fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Fed from another thread: a streaming child writes stdout while it still reads stdin.
    let feeder = stdin.map(|data| {
        let (mut pipe, data) = (child.stdin.take().unwrap(), data.to_vec());
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let out = child.wait_with_output().unwrap();
    if let Some(feeder) = feeder {
        feeder.join().unwrap();
    }
    out
}

#[track_caller]
fn ok(out: Output) -> Vec<u8> {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A directory with the raw key of `our_raw()` and our CLI: for the tests of tests/cli_parts that need no peer.
struct Local {
    dir: tempfile::TempDir,
}

impl Local {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("wrapping.key"), [0x5au8; 32]).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn ours(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kms-envelope"));
        cmd.current_dir(self.dir.path()).env("AWS_EC2_METADATA_DISABLED", "true");
        cmd.args(args);
        run(cmd, stdin)
    }
}

/// The ESDK CLI's wrapping key option for the raw AES key.
const THEIR_RAW: [&str; 5] =
    ["--wrapping-keys", "provider=raw-aes", "key=pipeline-key", "namespace=pipeline-ns", "key-file=wrapping.key"];

fn our_raw() -> Vec<&'static str> {
    vec!["--raw-key-file", "wrapping.key", "--key-namespace", NS, "--key-name", NAME]
}

fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i * 131 + 7) % 253) as u8 ^ seed).collect()
}

fn cat(parts: &[&[&str]]) -> Vec<String> {
    parts.concat().into_iter().map(str::to_owned).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn raw_key_files_both_ways() {
    let Some(p) = Peers::new() else { return };
    // 300_000 is an exact multiple of our 1000-byte frames: the 3.x Python SDK under aws-encryption-cli 4.3
    // rejects a final frame as long as the frame length, so we must end such a message with an empty one.
    for (n, len) in [0usize, 1, 4096, 300_000, 300_001].into_iter().enumerate() {
        let data = plaintext(len, n as u8);
        fs::write(p.path("pt"), &data).unwrap();
        let (theirs, ours, back) = (format!("t{n}"), format!("o{n}"), format!("b{n}"));

        // Theirs (default suite 0x0578, 4096-byte frames) decrypts with ours, context checked by us.
        let args = cat(&[&["-e", "-i", "pt", "-o", &theirs, "-c", "stage=prod", "team=infra"], &THEIR_RAW]);
        ok(p.theirs(&strs(&args), None));
        let args = cat(&[
            &["decrypt"],
            &our_raw(),
            &["--context", "stage=prod", "--require-context-key", "team", &theirs, &back],
        ]);
        ok(p.ours(&strs(&args), None));
        assert_eq!(fs::read(p.path(&back)).unwrap(), data, "theirs -> ours, {len} bytes");

        // Ours (0x0478 and 0x0578, odd frame lengths) decrypts with theirs, which checks the context too.
        for suite in ["0x0478", "0x0578"] {
            let ours = format!("{ours}-{suite}");
            let args = cat(&[
                &["encrypt"],
                &our_raw(),
                &["--suite", suite, "--frame-length", "1000", "--context", "stage=prod", "pt", &ours],
            ]);
            ok(p.ours(&strs(&args), None));
            let out = format!("{ours}.plain");
            let args = cat(&[&["-d", "-i", &ours, "-o", &out, "-c", "stage=prod"], &THEIR_RAW]);
            ok(p.theirs(&strs(&args), None));
            assert_eq!(fs::read(p.path(&out)).unwrap(), data, "ours -> theirs, {suite}, {len} bytes");
        }
    }
    // Their CLI skips a message whose context differs from the one it is told (it exits 0 and deletes its
    // output): the messages really carry the context we say.
    let args = cat(&[&["encrypt"], &our_raw(), &["--context", "stage=dev", "pt", "dev"]]);
    ok(p.ours(&strs(&args), None));
    let args = cat(&[&["-d", "-i", "dev", "-o", "dev.plain", "-c", "stage=prod"], &THEIR_RAW]);
    let out = p.theirs(&strs(&args), None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not match"), "{out:?}");
    assert!(!p.path("dev.plain").exists());
    let args = cat(&[&["-d", "-i", "dev", "-o", "dev.plain", "-c", "stage=dev"], &THEIR_RAW]);
    ok(p.theirs(&strs(&args), None));
    assert!(p.path("dev.plain").exists());
}

#[test]
fn stdin_and_stdout_both_ways() {
    let Some(p) = Peers::new() else { return };
    let data = plaintext(150_000, 9);
    let message = ok(p.theirs(&strs(&cat(&[&["-e", "-i", "-", "-o", "-"], &THEIR_RAW])), Some(&data)));
    let plain = ok(p.ours(&strs(&cat(&[&["decrypt"], &our_raw(), &["-", "-"]])), Some(&message)));
    assert_eq!(plain, data, "theirs -> ours through pipes");

    let message = ok(p.ours(&strs(&cat(&[&["encrypt"], &our_raw(), &["-", "-"]])), Some(&data)));
    let plain = ok(p.theirs(&strs(&cat(&[&["-d", "-i", "-", "-o", "-"], &THEIR_RAW])), Some(&message)));
    assert_eq!(plain, data, "ours -> theirs through pipes");
}

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("certs/inner")).unwrap();
    fs::write(root.join("app.env"), b"A=1\n").unwrap();
    fs::write(root.join("certs/tls.pem"), plaintext(5000, 1)).unwrap();
    fs::write(root.join("certs/inner/deep.bin"), plaintext(70_000, 2)).unwrap();
}

fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push((path.strip_prefix(root).unwrap().display().to_string(), fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn directories_both_ways() {
    let Some(p) = Peers::new() else { return };
    make_tree(&p.path("src"));
    let original = tree(&p.path("src"));

    // Theirs: src/x -> enc/x.encrypted; ours strips the suffix again.
    fs::create_dir(p.path("enc")).unwrap();
    ok(p.theirs(&strs(&cat(&[&["-e", "-r", "-i", "src", "-o", "enc"], &THEIR_RAW])), None));
    ok(p.ours(&strs(&cat(&[&["decrypt", "--recursive"], &our_raw(), &["enc", "dec"]])), None));
    assert_eq!(tree(&p.path("dec")), original, "theirs -> ours, a tree");

    // Ours: src/x -> ours/x.encrypted, the names theirs writes; theirs appends .decrypted.
    ok(p.ours(&strs(&cat(&[&["encrypt", "--recursive"], &our_raw(), &["src", "ours"]])), None));
    let names: Vec<String> = tree(&p.path("ours")).into_iter().map(|(n, _)| n).collect();
    let their_names: Vec<String> = tree(&p.path("enc")).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, their_names, "the same names as the ESDK CLI");
    fs::create_dir(p.path("theirs-dec")).unwrap();
    ok(p.theirs(&strs(&cat(&[&["-d", "-r", "-i", "ours", "-o", "theirs-dec"], &THEIR_RAW])), None));
    let expected: Vec<(String, Vec<u8>)> =
        original.iter().map(|(n, d)| (format!("{n}.encrypted.decrypted"), d.clone())).collect();
    assert_eq!(tree(&p.path("theirs-dec")), expected, "ours -> theirs, a tree");
}

#[cfg(feature = "kms")]
#[test]
fn kms_keys_in_moto_both_ways() {
    let Some(mut p) = Peers::new() else { return };
    let Some(moto) = support::Moto::get() else { return };
    let key = moto.create_key();
    let account = support::account_of(&key);
    p.kms_endpoint = Some(moto.endpoint.clone());
    let data = plaintext(100_000, 3);
    fs::write(p.path("pt"), &data).unwrap();

    // Theirs under a KMS key (and our raw key as a second provider) -> ours, strict and discovery.
    let their_key = format!("key={key}");
    let args =
        cat(&[&["-e", "-i", "pt", "-o", "t.kms", "-c", "app=deploy", "--wrapping-keys", &their_key], &THEIR_RAW]);
    ok(p.theirs(&strs(&args), None));
    let inspected = String::from_utf8(ok(p.ours(&["inspect", "t.kms"], None))).unwrap();
    assert!(inspected.contains(&key), "{inspected}");
    for keys in [vec!["--kms-key", key.as_str()], vec!["--kms-discovery", "--account", account.as_str()]] {
        let mut args = vec!["decrypt", "--context", "app=deploy"];
        args.extend(&keys);
        args.extend(["t.kms", "-"]);
        assert_eq!(ok(p.ours(&args, None)), data, "theirs -> ours with {keys:?}");
    }
    let plain = ok(p.ours(&strs(&cat(&[&["decrypt"], &our_raw(), &["t.kms", "-"]])), None));
    assert_eq!(plain, data, "theirs -> ours, the raw key of a mixed message");

    // Ours under a KMS key -> theirs, strict and discovery with an account filter.
    ok(p.ours(&["encrypt", "--kms-key", &key, "--context", "app=deploy", "pt", "o.kms"], None));
    let strict =
        ok(p.theirs(&["-d", "-i", "o.kms", "-o", "-", "-c", "app=deploy", "--wrapping-keys", &their_key], None));
    assert_eq!(strict, data, "ours -> theirs, strict");
    let discovery_account = format!("discovery-account={account}");
    let args = [
        "-d",
        "-i",
        "o.kms",
        "-o",
        "-",
        "--wrapping-keys",
        "discovery=true",
        "discovery-partition=aws",
        &discovery_account,
    ];
    assert_eq!(ok(p.theirs(&args, None)), data, "ours -> theirs, discovery");
    // Through pipes too.
    let message = ok(p.ours(&["encrypt", "--kms-key", &key, "-", "-"], Some(&data)));
    assert_eq!(ok(p.theirs(&["-d", "-i", "-", "-o", "-", "--wrapping-keys", &their_key], Some(&message))), data);
}

/// `inspect` on a message the Python ESDK 4.x wrote (tests/peers/esdk_peer.py in .venv): what it shows is
/// what the SDK put there.
#[test]
fn inspect_a_python_esdk_message() {
    let Some(python) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (pt, ct) = (dir.path().join("pt"), dir.path().join("ct"));
    fs::write(&pt, plaintext(10_000, 4)).unwrap();
    let (pt, ct) = (pt.to_str().unwrap(), ct.to_str().unwrap());
    let key = common::hex(&[0x5a; 32]);
    let args = ["encrypt", "--in", pt, "--out", ct, "--raw-key-hex", &key, "--key-namespace", NS, "--key-name", NAME];
    let context = ["--context-json", r#"{"app":"billing","stage":"prod"}"#, "--frame-length", "4096"];
    let (success, stderr) = common::run_peer(&python, &[&args[..], &context[..]].concat());
    assert!(success, "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_kms-envelope")).args(["inspect", "--json", ct]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = String::from_utf8(out.stdout).unwrap();
    for needle in [
        r#""id":"0x0578""#,
        r#""signed":true"#,
        r#""frame_length":4096"#,
        r#""app":"billing""#,
        r#""stage":"prod""#,
        r#""aws-crypto-public-key":"#,
        r#""provider_id":"pipeline-ns","kind":"raw-aes","key_name":"pipeline-key""#,
    ] {
        assert!(json.contains(needle), "{needle} missing from {json}");
    }
}

/// Key rotation between the two CLIs: `reencrypt` takes the ESDK CLI's messages (under a KMS key, and under
/// the raw key in a directory re-encrypted in place) to new keys, and the ESDK CLI decrypts the results with
/// the new keys only, the stored context kept; the old key no longer opens them.
#[cfg(feature = "kms")]
#[test]
fn reencrypt_takes_their_messages_to_new_keys_they_decrypt() {
    let Some(mut p) = Peers::new() else { return };
    let Some(moto) = support::Moto::get() else { return };
    let (old, new) = (moto.create_key(), moto.create_key());
    p.kms_endpoint = Some(moto.endpoint.clone());
    let data = plaintext(300_000, 9);
    fs::write(p.path("pt"), &data).unwrap();
    let (their_old, their_new) = (format!("key={old}"), format!("key={new}"));

    // One file, KMS key to KMS key, context kept.
    ok(p.theirs(&["-e", "-i", "pt", "-o", "t.old", "-c", "app=deploy", "--wrapping-keys", &their_old], None));
    ok(p.ours(&["reencrypt", "--kms-key", &old, "--new-kms-key", &new, "t.old", "t.new"], None));
    let args = ["-d", "-i", "t.new", "-o", "-", "-c", "app=deploy", "--wrapping-keys", &their_new];
    assert_eq!(ok(p.theirs(&args, None)), data, "re-encrypted -> theirs under the new key, context kept");
    let old_only = p.theirs(&["-d", "-i", "t.new", "-o", "-", "--wrapping-keys", &their_old], None);
    assert!(!old_only.status.success(), "the old key must not open the re-encrypted message");
    assert!(old_only.stdout.is_empty(), "nothing released by a failed decrypt");

    // A directory of their raw-key messages, re-encrypted in place to the KMS key and the signed suite.
    fs::create_dir(p.path("tree")).unwrap();
    for (name, len) in [("a", 0usize), ("b", 1), ("c", 70_000)] {
        fs::write(p.path(name), plaintext(len, len as u8)).unwrap();
        let out = format!("tree/{name}.enc");
        ok(p.theirs(&strs(&cat(&[&["-e", "-i", name, "-o", &out], &THEIR_RAW])), None));
    }
    let args = cat(&[
        &["reencrypt", "--recursive", "--in-place"],
        &our_raw(),
        &["--new-kms-key", &new, "--suite", "0x0578", "tree"],
    ]);
    ok(p.ours(&strs(&args), None));
    for (name, len) in [("a", 0usize), ("b", 1), ("c", 70_000)] {
        let message = format!("tree/{name}.enc");
        let plain = ok(p.theirs(&["-d", "-i", &message, "-o", "-", "--wrapping-keys", &their_new], None));
        assert_eq!(plain, plaintext(len, len as u8), "{name}: in place -> theirs under the new key");
        let raw = p.theirs(&strs(&cat(&[&["-d", "-i", &message, "-o", "-"], &THEIR_RAW])), None);
        assert!(!raw.status.success(), "{name}: the old raw key must not open it");
    }
}
