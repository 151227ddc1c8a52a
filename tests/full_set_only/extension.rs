//! The Lambda extension (`kms-envelope-extension`) under AWS's Runtime Interface Emulator, with a Python
//! function run by `awslambdaric` whose module-level init code reads the files the extension decrypted.
//! KMS and S3 are moto. The emulator starts every executable under `/opt/extensions`: each run gets a
//! private mount namespace (`unshare -m`, root needed) with the test's own directory bind-mounted over
//! `/opt`, so the machine's `/opt` is untouched. Without a peer a test prints "SKIPPED: ..." (and fails
//! under CI=true).
//!
//! The extension alone, against a fake Extensions API (tests/common/http.rs) and a stub KMS, needs no peer:
//! its command line, and what it leaves when the Extensions API misbehaves.
#![cfg(feature = "extension")]

use crate::common;
#[path = "cli_parts/exec_wrapper.rs"]
mod exec_wrapper;
use crate::fake_http;
use crate::fake_s3;
use crate::support;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kms_envelope::{EncryptOptions, Encryptor, Keyring};
use support::Moto;

/// The function: it knows nothing of kms-envelope. Its init fails if the file is not there yet.
const HANDLER: &str = r#"
import hashlib, json, os
ROOT = os.environ["KMS_ENVELOPE_ROOT"]
with open(os.path.join(ROOT, "app.bin"), "rb") as f:
    APP = hashlib.sha256(f.read()).hexdigest()
with open(os.path.join(ROOT, "models", "model.bin"), "rb") as f:
    MODEL = hashlib.sha256(f.read()).hexdigest()
with open(os.path.join(ROOT, "kms-envelope-secrets.json")) as f:
    SECRETS = json.load(f)

def handler(event, context):
    return {"app": APP, "model": MODEL, "secret_names": sorted(SECRETS),
            "secret_sha256": hashlib.sha256(SECRETS["DB_PASSWORD"].encode()).hexdigest()}
"#;

/// The secret value: it must reach the function's file and nothing else (no log line).
const SECRET: &str = "extension-secret-marker-5d1c";

/// Runs inside the private mount namespace: `/opt` replaced by the test's directory, optionally a tiny
/// tmpfs as the root; the emulator as a child, stopped on SIGTERM; then the root's listing, for the
/// "nothing left behind" checks (a tmpfs root vanishes with the namespace).
const NAMESPACE_SCRIPT: &str = r#"#!/bin/bash
set -e
mount --bind "$TEST_OPT" /opt
if [ -n "$TEST_ROOT_TMPFS_SIZE" ]; then mount -t tmpfs -o "size=$TEST_ROOT_TMPFS_SIZE" tmpfs "$KMS_ENVELOPE_ROOT"; fi
set +e
"$@" &
child=$!
trap 'kill -TERM $child' TERM
wait $child
wait $child
find "$KMS_ENVELOPE_ROOT" -mindepth 1 -type f -printf '%P\n' | sort > "$TEST_LISTING"
"#;

fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(seed as u32 % 31) as u8 ^ seed).collect()
}

fn sha(bytes: &[u8]) -> String {
    common::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The peers this file needs, or `None` after the skip line.
struct Peers {
    moto: Moto,
    rie: PathBuf,
    python: PathBuf,
}

impl Peers {
    fn get() -> Option<Self> {
        let moto = Moto::get()?;
        let rie = std::env::var_os("KMS_ENVELOPE_RIE").map(PathBuf::from).filter(|p| p.is_file()).or_else(|| {
            common::missing("the Lambda Runtime Interface Emulator (KMS_ENVELOPE_RIE; scripts/rie.sh fetches it)")
        })?;
        let python = common::python()?;
        let ric = Command::new(&python).args(["-c", "import awslambdaric"]).status();
        if !ric.is_ok_and(|s| s.success()) {
            return common::missing("awslambdaric in the test venv (scripts/requirements-test.txt)");
        }
        let unshare = Command::new("unshare").args(["-m", "true"]).stderr(Stdio::null()).status();
        if !unshare.is_ok_and(|s| s.success()) {
            return common::missing("a private mount namespace (`unshare -m`, needs root) for /opt/extensions");
        }
        Some(Self { moto, rie, python })
    }
}

/// One function's files: the package (task root), the layer (`/opt`), the root (`/tmp`), a moto key and
/// bucket.
struct Function {
    peers: Peers,
    work: tempfile::TempDir,
    key_arn: String,
    bucket: String,
}

impl Function {
    fn new(peers: Peers) -> Self {
        let key_arn = peers.moto.create_key();
        let bucket = format!("kms-envelope-ext-{}", key_arn.rsplit('/').next().unwrap());
        support::run(s3(&peers.moto).create_bucket().bucket(&bucket).send()).expect("CreateBucket in moto");
        let function = Self { peers, work: tempfile::tempdir().unwrap(), key_arn, bucket };
        for dir in ["task", "opt/extensions", "root"] {
            fs::create_dir_all(function.path(dir)).unwrap();
        }
        fs::write(function.path("task/handler.py"), HANDLER).unwrap();
        function.install();
        function
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.work.path().join(relative)
    }

    /// Installs the extension as `/opt/extensions/kms-envelope` (mode 0755, as the layer zip has it).
    fn install(&self) {
        let target = self.path("opt/extensions/kms-envelope");
        fs::copy(env!("CARGO_BIN_EXE_kms-envelope-extension"), &target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn keyring(&self) -> impl Keyring {
        self.peers.moto.clients().keyring(&self.key_arn).unwrap()
    }

    fn encrypt(&self, bytes: &[u8]) -> Vec<u8> {
        let options = EncryptOptions::new().context("purpose", "extension test").frame_length(4096);
        let mut encryptor = Encryptor::new(&self.keyring(), &options, Vec::new()).unwrap();
        encryptor.write_all(bytes).unwrap();
        encryptor.finish().unwrap()
    }

    fn put(&self, key: &str, body: Vec<u8>) -> String {
        let put = s3(&self.peers.moto).put_object().bucket(&self.bucket).key(key).body(body.into()).send();
        support::run(put).expect("PutObject in moto");
        format!("s3://{}/{key}", self.bucket)
    }

    /// Writes the three bundles the handler reads: `app.bin` from the package, `models/model.bin` from S3
    /// (moto), and the JSON secrets. Returns the plaintexts' digests.
    fn write_bundles(&self) -> (String, String) {
        self.write_bundles_with_model_in(|model| self.put("model.esdk", model))
    }

    /// [`write_bundles`](Self::write_bundles), with the encrypted model stored by `store`, which returns
    /// its `s3://` source.
    fn write_bundles_with_model_in(&self, store: impl FnOnce(Vec<u8>) -> String) -> (String, String) {
        let app = plaintext(300_001, 7);
        let model = plaintext(200_000, 9);
        fs::write(self.path("task/app.esdk"), self.encrypt(&app)).unwrap();
        let model_source = store(self.encrypt(&model));
        let secrets = format!(r#"{{"DB_PASSWORD": "{SECRET}", "API_KEY": "k"}}"#);
        fs::write(self.path("task/secrets.esdk"), self.encrypt(secrets.as_bytes())).unwrap();
        fs::write(self.path("bundles"), format!("app.esdk=app.bin,{model_source}=models/model.bin")).unwrap();
        (sha(&app), sha(&model))
    }

    /// Starts the emulator with the function and the extension in a private mount namespace; `vars`
    /// override the defaults (a value of "" removes the variable).
    fn start(&self, vars: &[(&str, &str)]) -> Rie {
        self.start_as(vars, None, "handler.handler")
    }

    /// [`start`](Self::start) with the runtime started through `wrapper` (as a managed runtime does when
    /// `AWS_LAMBDA_EXEC_WRAPPER` names it: `exec -- "$wrapper" python3 ... bootstrap`; the emulator does
    /// not apply the variable itself), and `handler` as the function.
    fn start_as(&self, vars: &[(&str, &str)], wrapper: Option<&str>, handler: &str) -> Rie {
        let log = self.path("rie.log");
        let script = self.path("namespace.sh");
        fs::write(&script, NAMESPACE_SCRIPT).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let listing = self.path("listing");
        let _ = fs::remove_file(&listing);
        // Two free ports, released before the emulator binds them: if another process takes one
        // meanwhile, the emulator exits at once and a fresh pair is tried.
        for _attempt in 0..5 {
            let (api_port, rie_port) = (free_port(), free_port());
            let log_file = fs::File::create(&log).unwrap();
            let mut command = Command::new("unshare");
            command.arg("-m").arg(&script).arg(&self.peers.rie);
            command
                .arg("--runtime-interface-emulator-address")
                .arg(format!("127.0.0.1:{rie_port}"))
                .arg("--runtime-api-address")
                .arg(format!("127.0.0.1:{api_port}"))
                .args(wrapper)
                .arg(&self.peers.python)
                .args(["-m", "awslambdaric", handler])
                .current_dir(self.path("task"));
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy().into_owned();
                if name.starts_with("AWS_") || name.starts_with("KMS_ENVELOPE_") || name.starts_with("TEST_") {
                    command.env_remove(name);
                }
            }
            let bundles = fs::read_to_string(self.path("bundles")).unwrap_or_default();
            let defaults = [
                ("AWS_ENDPOINT_URL", self.peers.moto.endpoint.as_str()),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_REGION", support::REGION),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("KMS_ENVELOPE_KMS_KEY_ARN", self.key_arn.as_str()),
                ("KMS_ENVELOPE_CONTEXT", "purpose=extension test"),
                ("KMS_ENVELOPE_BUNDLES", bundles.as_str()),
                ("KMS_ENVELOPE_SECRETS", "secrets.esdk"),
            ];
            for (name, value) in defaults.iter().chain(vars) {
                if value.is_empty() {
                    command.env_remove(name);
                } else {
                    command.env(name, value);
                }
            }
            command
                .env("KMS_ENVELOPE_ROOT", self.path("root"))
                .env("LAMBDA_TASK_ROOT", self.path("task"))
                .env("TEST_OPT", self.path("opt"))
                .env("TEST_LISTING", &listing)
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file);
            let mut rie =
                Rie { child: command.spawn().unwrap(), port: rie_port, log: log.clone(), listing: listing.clone() };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", rie_port)).is_ok() {
                    return rie;
                }
                if matches!(rie.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("the emulator never listened: {}", fs::read_to_string(&log).unwrap_or_default());
    }
}

fn s3(moto: &Moto) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(&moto.config()).force_path_style(true).build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The emulator in its namespace, stopped on drop (SIGTERM, so that the script lists the root).
struct Rie {
    child: Child,
    port: u16,
    log: PathBuf,
    listing: PathBuf,
}

impl Rie {
    /// POSTs an invoke; returns the status and the body.
    fn invoke(&self, event: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        write!(
            stream,
            "POST /2015-03-31/functions/function/invocations HTTP/1.0\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{event}",
            event.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        (head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), body.to_owned())
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the emulator; returns its log and what was left under the root.
    fn stop(mut self) -> (String, Vec<String>) {
        self.terminate();
        let listing = fs::read_to_string(&self.listing).unwrap_or_else(|e| panic!("no root listing: {e}"));
        (self.log(), listing.lines().map(str::to_owned).collect())
    }

    fn terminate(&mut self) {
        // SIGTERM reaches the namespace script, which stops the emulator and then lists the root.
        common::stop_gracefully(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for Rie {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn ok_json(rie: &Rie) -> serde_json::Value {
    let (status, body) = rie.invoke("{}");
    assert_eq!(status, 200, "{body}\n{}", rie.log());
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}\n{}", rie.log()))
}

#[test]
fn the_function_init_reads_what_the_extension_decrypted_and_a_restart_reuses_it() {
    let Some(peers) = Peers::get() else { return };
    let function = Function::new(peers);
    // The model comes from an S3 that stops halfway through it for 1.5 s: the function's init, which
    // reads it, runs after that only if the extension registers after decrypting, as the emulator starts
    // the runtime once every extension registered.
    let mut slow_s3 = None;
    let (app, model) = function.write_bundles_with_model_in(|model| {
        let s3 = fake_s3::TricklingS3::pausing(vec![("model.esdk", model)], Duration::from_millis(1500));
        slow_s3 = Some(s3.url.clone());
        "s3://slow-bucket/model.esdk".to_owned()
    });
    let slow_s3 = slow_s3.unwrap();

    let started = Instant::now();
    let rie = function.start(&[("AWS_ENDPOINT_URL_S3", &slow_s3)]);
    let first = ok_json(&rie);
    assert_eq!(first["app"], app.as_str());
    assert_eq!(first["model"], model.as_str());
    assert_eq!(first["secret_names"], serde_json::json!(["API_KEY", "DB_PASSWORD"]));
    assert_eq!(first["secret_sha256"], sha(SECRET.as_bytes()).as_str());
    assert!(started.elapsed() >= Duration::from_millis(1500), "the model was not served slowly");
    // Warm: later invokes cost the extension nothing (it registered for SHUTDOWN only).
    assert_eq!(ok_json(&rie), first);
    let (log, left) = rie.stop();
    assert!(
        log.contains("External agent kms-envelope") && log.contains("registered, subscribed to [SHUTDOWN]"),
        "{log}"
    );
    assert_eq!(log.matches("[kms-envelope] decrypted").count(), 3, "{log}");
    assert!(!log.contains(SECRET), "the secret reached the log:\n{log}");
    for file in ["app.bin", "models/model.bin", "kms-envelope-secrets.json"] {
        let mode = fs::metadata(function.path("root").join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
        assert!(left.contains(&file.to_owned()), "{left:?}");
    }
    assert!(!left.iter().any(|name| name.contains(".partial") || name.contains(".staging")), "{left:?}");

    // A new execution environment over the same root (as after a restart with /tmp kept): the files are
    // reused with no KMS call at all -- its endpoint is a closed port (S3 is still asked for the object's
    // ETag, to notice a replaced bundle).
    let closed = format!("http://127.0.0.1:{}", free_port());
    let rie = function.start(&[("AWS_ENDPOINT_URL_KMS", &closed), ("AWS_ENDPOINT_URL_S3", &slow_s3)]);
    assert_eq!(ok_json(&rie), first);
    let (log, _) = rie.stop();
    assert_eq!(log.matches("[kms-envelope] reused").count(), 3, "{log}");
    assert!(!log.contains("[kms-envelope] decrypted"), "{log}");
}

/// Starts the function with one thing wrong; the init must fail with `expected` in the extension's
/// reason, the invoke must fail, and no plaintext may be left under the root.
fn init_fails(function: &Function, vars: &[(&str, &str)], expected: &str) {
    let rie = function.start(vars);
    let (status, body) = rie.invoke("{}");
    let (log, left) = rie.stop();
    assert_ne!(status, 200, "{body}\n{log}");
    let reason = log.lines().find(|l| l.starts_with("[kms-envelope] failed:")).unwrap_or_else(|| panic!("{log}"));
    assert!(reason.contains(expected), "{expected:?} not in {reason:?}\n{log}");
    assert!(log.contains("Extension.InitError"), "the init error was not reported:\n{log}");
    // Our exit status as the emulator saw it. The emulator logs every init error as Extension.InitError,
    // never the type we send: that our `Extension.KmsEnvelopeFailed` reaches the Extensions API is checked
    // at a fake API (a_secrets_bundle_that_is_not_json_fails_the_init_with_our_error_type_and_leaves_nothing).
    assert!(log.contains("exit status 1"), "the extension did not exit 1:\n{log}");
    assert!(!log.contains(SECRET), "the secret reached the log:\n{log}");
    assert!(left.is_empty(), "files left under the root: {left:?}\n{log}");
}

#[test]
fn a_failed_decryption_fails_the_init_and_leaves_nothing() {
    let Some(peers) = Peers::get() else { return };
    let function = Function::new(peers);
    function.write_bundles();

    init_fails(&function, &[("KMS_ENVELOPE_CONTEXT", "purpose=another")], "encryption context");
    let other_key = function.peers.moto.create_key();
    init_fails(&function, &[("KMS_ENVELOPE_KMS_KEY_ARN", &other_key)], "no keyring could decrypt a data key");
    let missing = format!("s3://{}/missing.esdk=models/model.bin", function.bucket);
    init_fails(&function, &[("KMS_ENVELOPE_BUNDLES", &format!("app.esdk=app.bin,{missing}"))], "missing.esdk");
    // Room for the small files, not for app.bin.
    init_fails(&function, &[("TEST_ROOT_TMPFS_SIZE", "64k")], "ephemeral storage");

    let mut tampered = fs::read(function.path("task/app.esdk")).unwrap();
    let at = tampered.len() - 100;
    tampered[at] ^= 1;
    fs::write(function.path("task/app.esdk"), tampered).unwrap();
    init_fails(&function, &[], "authentic");
}

#[test]
fn the_layer_zip_holds_the_extension_where_lambda_starts_it() {
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("layer.zip");
    let binary = env!("CARGO_BIN_EXE_kms-envelope-extension");
    let status = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package-layer.sh"))
        .arg("--binary")
        .arg(binary)
        .arg("--out")
        .arg(&zip)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let wrapper = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kms-envelope-exec-wrapper");
    let expected = format!(
        "extensions/kms-envelope 0o100755 {}\nkms-envelope-exec-wrapper 0o100755 {}\n",
        sha(&fs::read(binary).unwrap()),
        sha(&fs::read(wrapper).unwrap())
    );
    assert_eq!(common::zip_entry(&zip), expected);
}

// ------------------------------------------------------------------------- alone, with a fake Extensions API

/// A key ARN for the stub KMS, which unwraps whatever it is asked to.
const STUB_KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// A bundle, the secrets bundle and an empty root, decryptable through a stub KMS: what the extension
/// needs to land plaintext without any peer.
struct Alone {
    work: tempfile::TempDir,
    kms: support::StubKms,
    app: Vec<u8>,
}

/// What the secrets bundle `task/not-json.esdk` holds: the secret, but not as JSON.
const NOT_JSON_SECRETS: &str = "DB_PASSWORD=extension-secret-marker-5d1c";

/// How one run of the extension ended.
struct Ended {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
    /// Every entry under the root, files and directories, relative, sorted.
    listing: Vec<String>,
}

impl Alone {
    fn new() -> Self {
        let work = tempfile::tempdir().unwrap();
        for dir in ["task", "root"] {
            fs::create_dir_all(work.path().join(dir)).unwrap();
        }
        let kms = support::StubKms::start(|_, operation, body| support::kms_answer(operation, body));
        let keyring = kms.clients().keyring(STUB_KEY_ARN).unwrap();
        let encrypt = |bytes: &[u8]| {
            let mut encryptor = Encryptor::new(&keyring, &EncryptOptions::new(), Vec::new()).unwrap();
            encryptor.write_all(bytes).unwrap();
            encryptor.finish().unwrap()
        };
        let mut app = plaintext(70_000, 3);
        app.extend_from_slice(SECRET.as_bytes());
        fs::write(work.path().join("task/app.esdk"), encrypt(&app)).unwrap();
        let secrets = format!(r#"{{"DB_PASSWORD": "{SECRET}"}}"#);
        fs::write(work.path().join("task/secrets.esdk"), encrypt(secrets.as_bytes())).unwrap();
        fs::write(work.path().join("task/not-json.esdk"), encrypt(NOT_JSON_SECRETS.as_bytes())).unwrap();
        Self { work, kms, app }
    }

    fn root(&self) -> PathBuf {
        self.work.path().join("root")
    }

    /// Runs the extension with `args`, the Extensions API at `runtime_api` (unset when `None`) and a
    /// configuration that decrypts both bundles; fails the test if it runs for a minute.
    fn run(&self, args: &[&str], runtime_api: Option<&str>) -> Ended {
        self.run_with(args, runtime_api, &[])
    }

    /// [`run`](Self::run) with `vars` added to the configuration.
    fn run_with(&self, args: &[&str], runtime_api: Option<&str>, vars: &[(&str, &str)]) -> Ended {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kms-envelope-extension"));
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("AWS_") || name.starts_with("KMS_ENVELOPE_") || name.starts_with("LAMBDA_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .env("HOME", self.work.path())
            .env("AWS_CONFIG_FILE", self.work.path().join("no-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.work.path().join("no-credentials"))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", support::REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL_KMS", &self.kms.url)
            .env("KMS_ENVELOPE_KMS_KEY_ARN", STUB_KEY_ARN)
            .env("KMS_ENVELOPE_BUNDLES", "app.esdk=app.bin")
            .env("KMS_ENVELOPE_SECRETS", "secrets.esdk")
            .env("KMS_ENVELOPE_ROOT", self.root())
            .env("LAMBDA_TASK_ROOT", self.work.path().join("task"))
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(address) = runtime_api {
            command.env("AWS_LAMBDA_RUNTIME_API", address);
        }
        let child = command.spawn().unwrap();
        let id = child.id();
        let out = support::within(Duration::from_secs(60), "the extension", move || child.wait_with_output());
        let out = out.unwrap_or_else(|e| panic!("extension {id}: {e}"));
        Ended {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            listing: listing(&self.root()),
        }
    }
}

/// Every entry under `dir`, relative, sorted; symbolic links not followed.
fn listing(dir: &Path) -> Vec<String> {
    let mut entries = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            entries.push(path.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                pending.push(path);
            }
        }
    }
    entries.sort();
    entries
}

/// A fake Lambda Extensions API: `register` and the next event answered as the arguments say (a `None`
/// closes the connection unanswered), `init/error` accepted.
fn extensions_api(register: Option<Vec<u8>>, next_event: Option<Vec<u8>>) -> fake_http::FakeServer {
    fake_http::FakeServer::start(move |request| match request.path.as_str() {
        "/2020-01-01/extension/register" => register.clone(),
        "/2020-01-01/extension/event/next" => next_event.clone(),
        "/2020-01-01/extension/init/error" => Some(fake_http::response(202, &[], b"{}")),
        _ => Some(fake_http::response(404, &[], b"")),
    })
}

/// What the Extensions API answers to `register`: the identifier header, and the function's description.
fn registered() -> Vec<u8> {
    let body = br#"{"functionName": "fn", "functionVersion": "$LATEST", "handler": "handler.handler"}"#;
    fake_http::response(200, &[("Lambda-Extension-Identifier", "ext-id-1")], body)
}

fn shutdown() -> Vec<u8> {
    fake_http::response(200, &[], br#"{"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 1}"#)
}

#[test]
fn help_and_version_exit_0_and_any_other_argument_is_a_one_line_usage_error() {
    let alone = Alone::new();
    let set_up = alone.kms.requests();
    for flag in ["--help", "-h"] {
        let ended = alone.run(&[flag], None);
        assert!(ended.status.success(), "{flag}: {:?} {}", ended.status, ended.stderr);
        let usage = "Usage: kms-envelope-extension [--once | --help | --version | --exec -- COMMAND [ARGS]]";
        assert!(ended.stdout.contains(usage), "{flag}: {}", ended.stdout);
        assert!(ended.stdout.contains("--once") && ended.stdout.contains("the exec wrapper"), "{flag}");
        assert_eq!(ended.stderr, "", "{flag}");
    }
    for flag in ["--version", "-V"] {
        let ended = alone.run(&[flag], None);
        assert!(ended.status.success(), "{flag}: {:?} {}", ended.status, ended.stderr);
        assert_eq!(ended.stdout, format!("kms-envelope-extension {}\n", env!("CARGO_PKG_VERSION")), "{flag}");
        assert_eq!(ended.stderr, "", "{flag}");
    }
    for (args, shown) in [
        (&["--bogus"][..], "'--bogus'"),
        (&["--once", "extra"][..], "'extra'"),
        // The exec wrapper's form is `--exec -- COMMAND [ARGS]`, exactly.
        (&["--exec"][..], "'--exec'"),
        (&["--exec", "--"][..], "'--exec'"),
        (&["--exec", "echo"][..], "'--exec'"),
        (&["--once", "--exec", "--", "echo"][..], "'--exec'"),
        (&["\u{1b}[2Jcleared"][..], "'\\u{1b}[2Jcleared'"),
    ] {
        let ended = alone.run(args, None);
        assert_eq!(ended.status.code(), Some(2), "{args:?}: {}", ended.stderr);
        assert_eq!(ended.stderr.lines().count(), 1, "{args:?}: {}", ended.stderr);
        assert!(ended.stderr.contains(shown) && ended.stderr.contains("usage:"), "{args:?}: {}", ended.stderr);
        assert!(!ended.stderr.contains('\u{1b}'), "{args:?}: an unescaped ESC");
        assert_eq!(ended.stdout, "", "{args:?}");
    }
    // None of these decrypted anything: no KMS request after the set-up's, nothing under the root.
    assert_eq!(alone.kms.requests(), set_up);
    assert_eq!(listing(&alone.root()), Vec::<String>::new());
}

/// The extension decrypts both bundles, then `api` fails it: it must exit non-zero with escaped one-line
/// errors containing `expected`, and leave nothing under the root.
fn api_failure_leaves_nothing(alone: &Alone, case: &str, api: Option<&str>, expected: &str) {
    let ended = alone.run(&[], api);
    let context = format!("{case}: {:?}\n{}", ended.status, ended.stderr);
    assert!(!ended.status.success(), "{context}");
    assert_eq!(ended.listing, Vec::<String>::new(), "plaintext left under the root: {context}");
    // It did land before the failure: the check above is not vacuous.
    assert_eq!(ended.stderr.matches("[kms-envelope] decrypted").count(), 2, "{context}");
    assert!(!ended.stderr.contains(SECRET) && !ended.stdout.contains(SECRET), "the secret was printed: {context}");
    assert!(ended.stderr.lines().all(|line| line.starts_with("[kms-envelope] ")), "not one line each: {context}");
    assert!(ended.stderr.contains(expected), "{expected:?} missing: {context}");
}

#[test]
fn an_extensions_api_that_misbehaves_fails_the_extension_and_leaves_no_plaintext() {
    let alone = Alone::new();

    // The control: a well-behaved API; the files stay after SHUTDOWN, for a later cold start to reuse.
    let api = extensions_api(Some(registered()), Some(shutdown()));
    let ended = alone.run(&[], Some(&api.address));
    assert!(ended.status.success(), "{:?}\n{}", ended.status, ended.stderr);
    assert_eq!(fs::read(alone.root().join("app.bin")).unwrap(), alone.app);
    assert!(ended.listing.contains(&"kms-envelope-secrets.json".to_owned()), "{:?}", ended.listing);
    assert_eq!(api.requests(), ["POST /2020-01-01/extension/register", "GET /2020-01-01/extension/event/next"]);
    fs::remove_dir_all(alone.root()).unwrap();
    fs::create_dir(alone.root()).unwrap();

    let unset = "AWS_LAMBDA_RUNTIME_API is not set";
    api_failure_leaves_nothing(&alone, "no Extensions API address", None, unset);
    let malformed = "AWS_LAMBDA_RUNTIME_API is not a host:port";
    api_failure_leaves_nothing(&alone, "a path for an address", Some("/2020-01-01"), malformed);
    let closed = format!("127.0.0.1:{}", free_port());
    api_failure_leaves_nothing(&alone, "connection refused", Some(&closed), "cannot register");

    let cannot_register = [
        ("register refused", Some(fake_http::response(500, &[], br#"{"errorType": "Boom"}"#))),
        ("no identifier header", Some(fake_http::response(200, &[], br#"{"functionName": "fn"}"#))),
        ("register body not JSON", Some(fake_http::response(200, &[("Lambda-Extension-Identifier", "x")], b"<"))),
        ("register unanswered", None),
    ];
    for (case, register) in cannot_register {
        let api = extensions_api(register, Some(shutdown()));
        api_failure_leaves_nothing(&alone, case, Some(&api.address), "cannot register");
        assert_eq!(api.requests(), ["POST /2020-01-01/extension/register"], "{case}");
    }
    // An API that holds `register` open and never answers: the extension gives up, rather than keeping the
    // plaintext until Lambda's init timeout kills it (a SIGKILL, after which nothing cleans up).
    let silent = fake_http::FakeServer::start(|_| {
        std::thread::sleep(std::time::Duration::from_secs(60));
        None
    });
    api_failure_leaves_nothing(&alone, "register never answered", Some(&silent.address), "no answer in 5 s");

    let bad_next_event = [
        ("next event not JSON", Some(fake_http::response(200, &[], b"\x1b[2J not json"))),
        ("next event an unknown type", Some(fake_http::response(200, &[], br#"{"eventType": "RESTORE"}"#))),
        ("next event an error", Some(fake_http::response(500, &[], br#"{"errorMessage": "x", "errorType": "y"}"#))),
        ("next event unanswered", None),
    ];
    for (case, next_event) in bad_next_event {
        let api = extensions_api(Some(registered()), next_event);
        api_failure_leaves_nothing(&alone, case, Some(&api.address), "event loop failed");
        assert_eq!(api.requests()[1], "GET /2020-01-01/extension/event/next", "{case}");
    }
}

#[test]
fn once_decrypts_and_keeps_the_files_without_the_extensions_api_and_keeps_nothing_on_a_failure() {
    let alone = Alone::new();
    let ended = alone.run(&["--once"], None);
    assert!(ended.status.success(), "{:?}\n{}", ended.status, ended.stderr);
    assert_eq!(fs::read(alone.root().join("app.bin")).unwrap(), alone.app);
    let secrets: serde_json::Value =
        serde_json::from_slice(&fs::read(alone.root().join("kms-envelope-secrets.json")).unwrap()).unwrap();
    assert_eq!(secrets["DB_PASSWORD"], SECRET);
    assert_eq!(ended.stderr.matches("[kms-envelope] decrypted").count(), 2, "{}", ended.stderr);
    assert!(ended.stderr.contains("[kms-envelope] 2 bundle(s) ready"), "{}", ended.stderr);
    assert!(!ended.stderr.contains(SECRET) && !ended.stdout.contains(SECRET), "the secret was printed");

    // One bundle fails after the other landed: exit 1, and neither is kept.
    fs::remove_dir_all(alone.root()).unwrap();
    fs::create_dir(alone.root()).unwrap();
    let ended = alone.run_with(&["--once"], None, &[("KMS_ENVELOPE_BUNDLES", "app.esdk=app.bin,missing.esdk=m")]);
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    assert!(
        ended.stderr.contains("[kms-envelope] failed:") && ended.stderr.contains("missing.esdk"),
        "{}",
        ended.stderr
    );
    assert_eq!(ended.listing, Vec::<String>::new(), "{}", ended.stderr);
}

#[test]
fn the_secrets_file_variable_names_where_the_secrets_land() {
    let alone = Alone::new();
    let ended = alone.run_with(&["--once"], None, &[("KMS_ENVELOPE_SECRETS_FILE", "conf/db.json")]);
    assert!(ended.status.success(), "{:?}\n{}", ended.status, ended.stderr);
    let path = alone.root().join("conf/db.json");
    let secrets: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(secrets["DB_PASSWORD"], SECRET);
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!alone.root().join("kms-envelope-secrets.json").exists(), "{:?}", ended.listing);
}

#[test]
fn a_secrets_bundle_that_is_not_json_fails_the_init_with_our_error_type_and_leaves_nothing() {
    let alone = Alone::new();
    let reported = Arc::new(Mutex::new(Vec::new()));
    let seen = reported.clone();
    let api = fake_http::FakeServer::start(move |request| match request.path.as_str() {
        "/2020-01-01/extension/register" => Some(registered()),
        "/2020-01-01/extension/init/error" => {
            let error_type = request.header("Lambda-Extension-Function-Error-Type").unwrap_or("").to_owned();
            seen.lock().unwrap().push((error_type, String::from_utf8_lossy(&request.body).into_owned()));
            Some(fake_http::response(202, &[], b"{}"))
        }
        _ => Some(fake_http::response(404, &[], b"")),
    });
    let ended = alone.run_with(&[], Some(&api.address), &[("KMS_ENVELOPE_SECRETS", "not-json.esdk")]);
    let context = format!("{:?}\n{}", ended.status, ended.stderr);
    assert_eq!(ended.status.code(), Some(1), "{context}");
    assert!(
        ended.stderr.contains("[kms-envelope] failed: ") && ended.stderr.contains("not a JSON object"),
        "{context}"
    );
    assert_eq!(ended.listing, Vec::<String>::new(), "plaintext left under the root: {context}");
    assert!(!ended.stderr.contains(SECRET) && !ended.stdout.contains(SECRET), "the secret was printed: {context}");
    let reported = reported.lock().unwrap();
    let [(error_type, body)] = &reported[..] else { panic!("init/error reports: {reported:?}\n{context}") };
    assert_eq!(error_type, "Extension.KmsEnvelopeFailed");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["errorType"], "Extension.KmsEnvelopeFailed");
    assert!(body["errorMessage"].as_str().unwrap().contains("not a JSON object"), "{body}");
    assert!(!body.to_string().contains(SECRET), "the secret was reported: {body}");
}

/// README: "a mistake in the variables is a `Config` error naming the variable", for the extension's own
/// `KMS_ENVELOPE_SECRETS_FILE` too: a path that leaves the root, is absolute, empty, a directory (trailing
/// `/`) or the root itself fails before anything is decrypted, naming the variable, and leaves nothing.
#[test]
fn a_bad_secrets_file_value_is_a_config_error_naming_the_variable() {
    let alone = Alone::new();
    for value in ["../outside.json", "/etc/kms-envelope-secrets.json", "", "conf/", ".", "a/../../x.json"] {
        let ended = alone.run_with(&["--once"], None, &[("KMS_ENVELOPE_SECRETS_FILE", value)]);
        let context = format!("{value:?}: {:?}\n{}", ended.status, ended.stderr);
        assert_eq!(ended.status.code(), Some(1), "{context}");
        let expected = "[kms-envelope] failed: invalid configuration: KMS_ENVELOPE_SECRETS_FILE: ";
        assert!(ended.stderr.starts_with(expected), "{context}");
        assert!(!ended.stderr.contains("decrypted"), "decrypted before the check: {context}");
        assert_eq!(ended.listing, Vec::<String>::new(), "{context}");
    }
}
