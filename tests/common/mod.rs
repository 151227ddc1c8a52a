//! Helpers shared by the integration tests: where the external oracles are, and how to treat a missing one.
#![allow(dead_code)]

pub mod s3model;

use std::path::{Path, PathBuf};
use std::process::Command;

/// True when running under CI, where a missing peer is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a missing peer: a panic under CI, a loud skip line otherwise. Returns `None` so callers can
/// `let Some(x) = ... else { return };`.
pub fn missing<T>(what: &str) -> Option<T> {
    if in_ci() {
        panic!("{what} is missing, and CI=true: run the tests through scripts/test.sh");
    }
    eprintln!("SKIPPED: {what} is missing (run scripts/test.sh to install and start the peers)");
    record_skip(what);
    None
}

/// Appends a line to the file named by `KMS_ENVELOPE_SKIP_LOG` (scripts/test.sh sets it and counts the
/// lines): libtest swallows what a passing test prints, so a skip line on stderr alone is never seen.
fn record_skip(what: &str) {
    use std::io::Write as _;
    let Some(log) = std::env::var_os("KMS_ENVELOPE_SKIP_LOG") else { return };
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let binary = std::env::args().next().unwrap_or_default();
    let line = format!("{binary} {test}: {what}\n");
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open KMS_ENVELOPE_SKIP_LOG");
    file.write_all(line.as_bytes()).expect("write KMS_ENVELOPE_SKIP_LOG");
}

/// The official test vectors, vendored unchanged in `tests/vectors/` (origins and license in its README).
/// They are part of the repository, so their absence is a broken checkout: a failure even outside CI.
pub fn vectors_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    assert!(dir.join("raw-aes-index.tsv").is_file(), "the vendored test vectors are missing from {}", dir.display());
    Some(dir)
}

/// The Python interpreter of the test venv, with the official aws-encryption-sdk.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("KMS_ENVELOPE_PYTHON").map(PathBuf::from) {
        Some(p) if p.exists() => Some(p),
        _ => missing("the Python ESDK peer (KMS_ENVELOPE_PYTHON)"),
    }
}

/// The Python ESDK peer script.
pub fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/esdk_peer.py")
}

/// RSA keys made by Python's `cryptography` (an independent implementation), as PEM text: a 2048-bit pair in
/// every form our readers accept, another 2048-bit private key, and a 1024-bit one that must be refused.
pub struct PythonRsaPems {
    /// The 2048-bit private key, PKCS #8 (`PRIVATE KEY`).
    pub private: String,
    /// The same private key, PKCS #1 (`RSA PRIVATE KEY`).
    pub private_pkcs1: String,
    /// Its public key, SubjectPublicKeyInfo (`PUBLIC KEY`).
    pub public_spki: String,
    /// Its public key, PKCS #1 (`RSA PUBLIC KEY`).
    pub public_pkcs1: String,
    /// Another 2048-bit private key (PKCS #8), which must not open messages for the first.
    pub other_private: String,
    /// A 1024-bit private key (PKCS #8), too weak to be accepted.
    pub weak_private: String,
}

/// The [`PythonRsaPems`] of this test binary, generated on first use by one Python process and shared by
/// every test that needs Python-made RSA keys: each test proves its interop with the same kind of key, and
/// generating it once saves a Python start-up and three key generations per test.
pub fn python_rsa_pems(python: &Path) -> &'static PythonRsaPems {
    static PEMS: std::sync::OnceLock<PythonRsaPems> = std::sync::OnceLock::new();
    PEMS.get_or_init(|| {
        let script = r#"
import json
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import rsa
def private(key, fmt=s.PrivateFormat.PKCS8):
    return key.private_bytes(s.Encoding.PEM, fmt, s.NoEncryption()).decode()
def public(key, fmt):
    return key.public_key().public_bytes(s.Encoding.PEM, fmt).decode()
k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
print(json.dumps({
    "private": private(k),
    "private_pkcs1": private(k, s.PrivateFormat.TraditionalOpenSSL),
    "public_spki": public(k, s.PublicFormat.SubjectPublicKeyInfo),
    "public_pkcs1": public(k, s.PublicFormat.PKCS1),
    "other_private": private(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "weak_private": private(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
}))
"#;
        let out = Command::new(python).args(["-c", script]).output().expect("run Python");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let pems: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let pem = |name: &str| pems[name].as_str().unwrap().to_owned();
        let pems = PythonRsaPems {
            private: pem("private"),
            private_pkcs1: pem("private_pkcs1"),
            public_spki: pem("public_spki"),
            public_pkcs1: pem("public_pkcs1"),
            other_private: pem("other_private"),
            weak_private: pem("weak_private"),
        };
        assert!(pems.public_pkcs1.starts_with("-----BEGIN RSA PUBLIC KEY-----\n"), "{}", pems.public_pkcs1);
        assert!(pems.private_pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"), "{}", pems.private_pkcs1);
        pems
    })
}

/// Runs the Python peer with `args`; returns (success, stderr).
pub fn run_peer(python: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(python).arg(peer_script()).args(args).output().expect("run the Python peer");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs the Python peer's `batch` mode: one JSON argument list per line of `lines`, one JSON result per
/// line of its stdout.
pub fn peer_batch(python: &Path, lines: String) -> std::process::Output {
    peer_batch_in(peer_command(python), lines)
}

/// A command that runs the peer script with `python`.
fn peer_command(python: &Path) -> Command {
    let mut peer = Command::new(python);
    peer.arg(peer_script());
    peer
}

/// [`peer_batch`] in `peer`, a command that runs the peer script (with the environment its jobs need).
fn peer_batch_in(mut peer: Command, lines: String) -> std::process::Output {
    use std::io::Write as _;
    let mut child = peer
        .arg("batch")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Written from a thread: the peer answers line by line, and a full stdout pipe must not block both.
    let writer = std::thread::spawn(move || stdin.write_all(lines.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

/// Runs each of `jobs` (a peer command line, as for [`run_peer`]) in one peer process started by `peer` (a
/// command that runs the peer script): the SDK import, most of a short job's time, is paid once. One result
/// per job, in order: `Ok` or the job's one-line error.
pub fn peer_batch_jobs(peer: Command, jobs: &[Vec<String>]) -> Vec<Result<(), String>> {
    let lines: String = jobs.iter().map(|args| serde_json::to_string(args).unwrap() + "\n").collect();
    let out = peer_batch_in(peer, lines);
    assert!(out.status.success(), "esdk_peer batch failed: {}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<Result<(), String>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            match v["status"].as_i64() {
                Some(0) => Ok(()),
                _ => Err(v["error"].as_str().unwrap_or("?").to_owned()),
            }
        })
        .collect();
    assert_eq!(results.len(), jobs.len(), "one result per job");
    results
}

/// [`peer_batch_jobs`] with the plain peer of `python`.
pub fn python_batch(python: &Path, jobs: &[Vec<String>]) -> Vec<Result<(), String>> {
    peer_batch_jobs(peer_command(python), jobs)
}

/// The entries of the zip at `zip`, read back by Python's zipfile (an independent reader): each one's name,
/// mode and SHA-256, as `name 0o100755 hex`, one line each.
pub fn zip_entry(zip: &Path) -> String {
    let check = "import sys, zipfile, hashlib\n\
                 z = zipfile.ZipFile(sys.argv[1])\n\
                 for i in z.infolist():\n\
                 \x20   print(i.filename, oct(i.external_attr >> 16), hashlib.sha256(z.read(i)).hexdigest())";
    let out = Command::new("python3").arg("-c").arg(check).arg(zip).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `body` in a process of its own: this test binary again, with only `test` selected. What it
/// observes process-wide (thread names, tracing output) is this test's alone, never that of the other tests
/// running beside it in this process.
pub fn in_own_process(test: &str, body: impl FnOnce()) {
    const CHILD: &str = "KMS_ENVELOPE_TEST_OWN_PROCESS";
    if std::env::var_os(CHILD).is_some() {
        body();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{test} in its own process:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("test result: ok. 1 passed"), "{test} did not run in its own process:\n{stdout}");
}

/// Stops `child` with SIGTERM, so that it can shut down what it started (the emulator stops its runtime,
/// which runs in a process group of its own), then SIGKILL if it is still there after `grace`.
pub fn stop_gracefully(child: &mut std::process::Child, grace: std::time::Duration) {
    let _ = std::process::Command::new("kill").args(["-s", "TERM", &child.id().to_string()]).status();
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A keyring that counts the calls into `inner`, encrypt and decrypt (the KMS calls a KMS keyring would make).
pub struct CountingKeyring<K> {
    pub inner: K,
    pub calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<K: kms_envelope::Keyring> kms_envelope::Keyring for CountingKeyring<K> {
    fn on_encrypt<'a>(
        &'a self,
        materials: kms_envelope::keyring::EncryptionMaterials,
    ) -> kms_envelope::keyring::KeyringFuture<'a, kms_envelope::keyring::EncryptionMaterials> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.on_encrypt(materials)
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: kms_envelope::keyring::DecryptionMaterials,
        edks: &'a [kms_envelope::EncryptedDataKey],
    ) -> kms_envelope::keyring::KeyringFuture<'a, kms_envelope::keyring::DecryptionMaterials> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.on_decrypt(materials, edks)
    }
}

/// Fails unless the library runs on the AES-GCM backend this build is meant to test: AWS-LC where a feature
/// that links it anyway is on (`kms`, `rsa`; its FIPS module with `fips`), RustCrypto `aes-gcm` in the raw-key
/// builds. The expectation comes from those features, not from `aws-lc` itself, so that a raw-key build that
/// silently gained AWS-LC (a feature or dev-dependency turning `aws-lc` on) fails here instead of leaving
/// RustCrypto untested. A build that asks for `aws-lc` alone names its backend in
/// `KMS_ENVELOPE_EXPECT_AES_GCM` (e.g. `aws-lc-rs`).
pub fn assert_expected_aes_gcm_backend() {
    let expected = match std::env::var("KMS_ENVELOPE_EXPECT_AES_GCM") {
        Ok(name) => name,
        Err(_) if cfg!(feature = "fips") => "aws-lc-rs (FIPS)".to_owned(),
        Err(_) if cfg!(any(feature = "kms", feature = "rsa")) => "aws-lc-rs".to_owned(),
        Err(_) => "aes-gcm (RustCrypto)".to_owned(),
    };
    let actual = kms_envelope::aes_gcm_backend();
    eprintln!("AES-GCM backend: {actual}");
    assert_eq!(actual, expected, "this test binary runs on another AES-GCM backend than its features ask for");
}
