//! A message must never choose where a KMS call goes.
//!
//! The AWS SDK for Rust builds `https://kms.{region}.amazonaws.com` from a client's region without checking
//! it, and the discovery keyrings take the region from the key ARN in the message. A region of
//! `x@127.0.0.1/` once made the host 127.0.0.1, where a forged KMS endpoint received the caller's signed
//! request and answered with a data key of its choosing.
//!
//! These tests run a hostile KMS endpoint (tests/peers/hostile_kms.py: HTTPS, its own CA) on 127.0.0.1:443,
//! where such a region would send a client, and check that messages naming hostile regions fail with a
//! typed error while the endpoint sees **no connection**, through the library's discovery keyrings, the CLI
//! and the Lambda decryptor. Positive controls prove the endpoint would see one: an unchecked SDK client
//! with the same region does connect, and the CLI, told to use the endpoint, accepts its forged key.
// Built only with `kms`, `cli` and `lambda` (required-features in Cargo.toml).

mod common;
#[path = "common/kms.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

use assert_cmd::cargo::CommandCargoExt;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_kms::config::{Credentials, SharedCredentialsProvider};
use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture};
use kms_envelope::{
    DataKey, DecryptOptions, DiscoveryFilter, EncryptOptions, EncryptedDataKey, Error, Keyring, KmsClients,
};
use support::{Reply, StubKms};

/// The data key the hostile endpoint hands out, and with which the forged messages are encrypted.
const FORGED_KEY: [u8; 32] = [0x66; 32];
const FORGED_PLAINTEXT: &[u8] = b"forged configuration chosen by the attacker";
const ACCOUNT: &str = "111122223333";
const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

/// Regions that pick another host than `kms.<region>.amazonaws.com`, or are not AWS regions at all.
fn hostile_regions() -> Vec<String> {
    let mut regions: Vec<String> = [
        "x@127.0.0.1/",
        "evil.example/",
        "us-east-1.evil#",
        "%2e",
        "us-east-1%2f..",
        "US-EAST-1",
        "us-eaſt-1",
        "us-east-1\u{202e}",
        "127.0.0.1",
    ]
    .map(String::from)
    .to_vec();
    regions.push(format!("us-{}-1", "a".repeat(200)));
    regions
}

fn arn_in(region: &str) -> String {
    format!("arn:aws:kms:{region}:{ACCOUNT}:key/{KEY_ID}")
}

// ---------------------------------------------------------------------------------------- the endpoint

/// The hostile endpoint on 127.0.0.1:443, shared by every test of this file; tests take [`serial`] so
/// that connection counts belong to one test.
struct Hostile {
    _child: Child,
    _stdin: ChildStdin,
    dir: PathBuf,
    port: u16,
    ca: PathBuf,
}

impl Hostile {
    fn start(port: u16) -> Hostile {
        let python = common::python().unwrap_or_else(|| panic!("the hostile KMS endpoint needs the test venv"));
        let dir = tempfile::Builder::new().prefix("hostile-kms").tempdir().unwrap().keep();
        let mut child = Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/hostile_kms.py"))
            .args(["--dir", dir.to_str().unwrap(), "--port", &port.to_string(), "--key-hex"])
            .arg(common::hex(&FORGED_KEY))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tests/peers/hostile_kms.py");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "the hostile KMS endpoint did not start on port {port} (binding 443 needs root or \
                 CAP_NET_BIND_SERVICE); it printed {line:?}"
            )
        });
        let ca = PathBuf::from(ready["ca"].as_str().unwrap());
        Hostile { _child: child, _stdin: stdin, dir, port: ready["port"].as_u64().unwrap() as u16, ca }
    }

    /// Where `x@127.0.0.1/` would send a client: the default HTTPS port.
    fn on_443() -> &'static Hostile {
        static HOSTILE: OnceLock<Hostile> = OnceLock::new();
        HOSTILE.get_or_init(|| Hostile::start(443))
    }

    /// Everything it logged: `connect ...` per TCP connection, `request ...` per HTTP request.
    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("connections.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f` and asserts the endpoint on 443 saw no connection meanwhile.
fn expect_no_connection<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let hostile = Hostile::on_443();
    let before = hostile.log().len();
    let out = f();
    // A connection the code under test started may still be on its way; give it time to land.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let after = hostile.log();
    assert_eq!(after.len(), before, "{what}: the hostile endpoint saw {:?}", &after[before..]);
    out
}

// -------------------------------------------------------------------------------------- the messages

/// Writes what an attacker writes: a data key they know, and one EDK per ARN naming a KMS key.
struct Forger(Vec<String>);

impl Keyring for Forger {
    fn on_encrypt<'a>(&'a self, mut materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        Box::pin(async move {
            materials.set_data_key(DataKey::new(FORGED_KEY.to_vec()))?;
            for arn in &self.0 {
                materials.add_encrypted_data_key(EncryptedDataKey {
                    provider_id: "aws-kms".into(),
                    provider_info: arn.as_bytes().to_vec(),
                    ciphertext: format!("wrapped for {arn}").into_bytes(),
                });
            }
            Ok(materials)
        })
    }

    fn on_decrypt<'a>(
        &'a self,
        _: DecryptionMaterials,
        _: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        Box::pin(async { Err(Error::Config("the forger does not decrypt".into())) })
    }
}

fn forged_message(arns: &[String]) -> Vec<u8> {
    kms_envelope::encrypt(&Forger(arns.to_vec()), &EncryptOptions::new(), FORGED_PLAINTEXT).unwrap()
}

/// Clients configured as a user's would be in AWS (no endpoint override): the region picks the host.
fn clients_without_endpoint() -> KmsClients {
    KmsClients::new(&sdk_config_without_endpoint("us-east-1"))
}

fn sdk_config_without_endpoint(region: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIAHOSTILETEST",
            "secret",
            Some("session-token-that-must-not-leak".into()),
            None,
            "hostile-tests",
        )))
        .build()
}

fn assert_refused(result: kms_envelope::Result<kms_envelope::Decrypted>, region: &str) {
    let err = result.map(|d| d.plaintext.to_vec()).expect_err(region);
    assert!(
        matches!(err, Error::Keyring(_) | Error::NoDataKeyDecrypted { .. }),
        "region {region:?}: expected a keyring error, got {err:?}"
    );
    let shown = err.to_string();
    assert!(shown.contains("is not an AWS KMS ARN"), "region {region:?}: {shown}");
    assert!(!shown.chars().any(char::is_control), "region {region:?}: unescaped: {shown:?}");
}

// --------------------------------------------------------------------------------------------- tests

#[test]
fn discovery_never_calls_a_host_a_message_names() {
    let _serial = serial();
    for region in hostile_regions() {
        let message = forged_message(&[arn_in(&region)]);
        let kms = clients_without_endpoint();
        let filter = DiscoveryFilter::new("aws", [ACCOUNT]).unwrap();
        let keyrings: Vec<(&str, Box<dyn Keyring>)> = vec![
            ("discovery", Box::new(kms.discovery_keyring(None))),
            ("filtered discovery", Box::new(kms.discovery_keyring(Some(filter.clone())))),
            ("MRK discovery", Box::new(kms.mrk_discovery_keyring(Some("us-east-1"), Some(filter)).unwrap())),
            ("single-client discovery", Box::new(kms_envelope::AwsKmsDiscoveryKeyring::new(kms.client(None).unwrap()))),
        ];
        for (name, keyring) in keyrings {
            expect_no_connection(&format!("{name}, region {region:?}"), || {
                assert_refused(kms_envelope::decrypt(&*keyring, &DecryptOptions::new(), &message), &region)
            });
        }
        assert!(kms.cached_clients() <= 1, "a client was built for {region:?}");
    }
}

#[test]
fn mrk_keys_in_hostile_regions_are_refused_too() {
    let _serial = serial();
    let kms = clients_without_endpoint();
    for region in hostile_regions() {
        let arn = format!("arn:aws:kms:{region}:{ACCOUNT}:key/mrk-1234abcd12ab34cd56ef1234567890ab");
        let message = forged_message(&[arn]);
        let keyring = kms.mrk_discovery_keyring(None, None).unwrap();
        expect_no_connection(&format!("MRK discovery, region {region:?}"), || {
            assert_refused(kms_envelope::decrypt(&keyring, &DecryptOptions::new(), &message), &region)
        });
    }
}

#[test]
fn the_cli_refuses_hostile_regions_without_a_connection() {
    let _serial = serial();
    let hostile = Hostile::on_443();
    let dir = tempfile::tempdir().unwrap();
    for (i, region) in hostile_regions().into_iter().enumerate() {
        let input = dir.path().join(format!("forged-{i}.enc"));
        std::fs::write(&input, forged_message(&[arn_in(&region)])).unwrap();
        let output = dir.path().join(format!("out-{i}"));
        for account in [Some(ACCOUNT), None] {
            let out = expect_no_connection(&format!("CLI, region {region:?}"), || {
                let mut cmd = cli_without_endpoint(&hostile.ca);
                cmd.args(["decrypt", "--kms-discovery"]);
                if let Some(account) = account {
                    cmd.args(["--account", account]);
                }
                cmd.arg(&input).arg(&output).output().unwrap()
            });
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(3), "region {region:?}: {stderr}");
            assert!(stderr.contains("is not an AWS KMS ARN"), "{stderr}");
            assert!(!output.exists(), "region {region:?}: forged plaintext written");
            assert_terminal_safe(&out.stderr);
        }
    }
}

#[test]
fn the_lambda_decryptor_refuses_hostile_regions_without_a_connection() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let source = root.path().join("bundle.esdk");
    for region in hostile_regions() {
        std::fs::write(&source, forged_message(&[arn_in(&region)])).unwrap();
        let vars = [
            ("KMS_ENVELOPE_BUNDLES", format!("{}=config.json", source.display())),
            ("KMS_ENVELOPE_KMS_DISCOVERY", "true".into()),
            ("KMS_ENVELOPE_KMS_ACCOUNTS", "*".into()),
            ("KMS_ENVELOPE_ROOT", root.path().join("out").display().to_string()),
        ];
        let config = kms_envelope::lambda::EnvConfig::from_lookup(|name| {
            vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
        })
        .unwrap();
        let kms = clients_without_endpoint();
        let cold_start = config.cold_start(config.keyring(&kms).unwrap());
        let err = expect_no_connection(&format!("Lambda, region {region:?}"), || cold_start.run_blocking().map(drop))
            .expect_err(&region);
        assert!(err.to_string().contains("is not an AWS KMS ARN"), "{err}");
        assert!(!root.path().join("out/config.json").exists());
    }
}

#[test]
fn control_an_unchecked_client_with_such_a_region_reaches_the_endpoint() {
    let _serial = serial();
    let hostile = Hostile::on_443();
    let before = hostile.log().len();
    // What the discovery keyring did before regions were checked: an SDK client for the message's region.
    let client = aws_sdk_kms::Client::new(&sdk_config_without_endpoint("x@127.0.0.1/"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let call = client
        .decrypt()
        .key_id(arn_in("x@127.0.0.1/"))
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(b"x".to_vec()))
        .send();
    // The TLS handshake fails (this process does not trust the endpoint's CA), after the connection.
    let _ = runtime.block_on(call);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while hostile.log().len() == before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let log = hostile.log();
    assert!(log[before..].iter().any(|l| l.starts_with("connect 127.0.0.1")), "no connection seen: {log:?}");
}

#[test]
fn control_the_cli_accepts_the_forged_key_from_an_endpoint_it_is_told_to_use() {
    let _serial = serial();
    // A second endpoint on a free port, reached only through the explicit endpoint override: the forged
    // message then decrypts, which proves the harness's forgery would pass had a message reached it.
    let control = Hostile::start(0);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("forged.enc");
    std::fs::write(&input, forged_message(&[arn_in("us-east-1")])).unwrap();
    let output = dir.path().join("out");
    let out = cli_without_endpoint(&control.ca)
        .env("AWS_ENDPOINT_URL_KMS", format!("https://127.0.0.1:{}", control.port))
        .args(["decrypt", "--kms-discovery", "--account", ACCOUNT])
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&output).unwrap(), FORGED_PLAINTEXT);
    let log = control.log();
    assert!(log.iter().any(|l| l.starts_with("request TrentService.Decrypt") && l.contains("AKIAHOSTILETEST")));
}

#[test]
fn control_characters_in_a_message_never_reach_the_terminal() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let arns = [
        format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/\x1b]0;pwned\x07\x1b[2J\x1b[31m"),
        "\u{9b}31m\r\x08\x08overwritten\n".to_owned(),
    ];
    for (i, arn) in arns.iter().enumerate() {
        let input = dir.path().join(format!("esc-{i}.enc"));
        let mut message = forged_message(std::slice::from_ref(arn));
        std::fs::write(&input, &message).unwrap();
        let hostile = Hostile::on_443();
        let mut decrypt = cli_without_endpoint(&hostile.ca);
        let out = decrypt.args(["decrypt", "--kms-discovery"]).arg(&input).arg("-").output().unwrap();
        assert_terminal_safe(&out.stderr);
        assert_terminal_safe(&out.stdout);
        // inspect prints the header's ARN (to stdout, its default): it must run to the end and show the
        // ARN, escaped, in its text and JSON forms.
        let shown = if i == 0 { "pwned" } else { "overwritten" };
        for json in [false, true] {
            let mut inspect = cli_without_endpoint(&hostile.ca);
            inspect.arg("inspect").args(json.then_some("--json")).arg(&input);
            let out = inspect.output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "inspect (json: {json}): {}", String::from_utf8_lossy(&out.stderr));
            assert!(stdout.contains(shown), "inspect (json: {json}) did not show the ARN: {stdout}");
            assert_terminal_safe(&out.stderr);
            assert_terminal_safe(&out.stdout);
        }
        // Also as the provider id of an EDK no keyring knows.
        let at = message.windows(7).position(|w| w == b"aws-kms").unwrap();
        message[at..at + 7].copy_from_slice(b"\x1b[2J\x07\x1b\x07");
        std::fs::write(&input, &message).unwrap();
        let out = cli_without_endpoint(&hostile.ca)
            .args(["decrypt", "--kms-discovery"])
            .arg(&input)
            .arg("-")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "no key for an EDK of an unknown provider: {stderr}");
        assert!(stderr.contains("no keyring could decrypt a data key"), "{stderr}");
        assert_terminal_safe(&out.stderr);
    }
}

#[test]
fn identical_and_excess_edks_cost_no_extra_kms_calls() {
    // 2,000 copies of one EDK under a strict key: one Decrypt, not 2,000.
    let stub = StubKms::start(|_, _, _| Reply::error(400, "IncorrectKeyException", "no"));
    let kms = stub.clients();
    let arn = arn_in("us-east-1");
    let keyring = kms.keyring(&arn).unwrap();
    let message = forged_message(&vec![arn.clone(); 2000]);
    assert!(kms_envelope::decrypt(&keyring, &DecryptOptions::new(), &message).is_err());
    assert_eq!(stub.requests().iter().filter(|op| *op == "Decrypt").count(), 1, "{:?}", stub.requests().len());

    // 2,000 distinct EDKs under it: as many calls as the configured limit allows, which here refuses the
    // message before the first call.
    let marker = format!("wrapped for {arn}");
    let message = number_ciphertexts(forged_message(&vec![arn.clone(); 2000]), &marker);
    let before = stub.requests().len();
    let limits = kms_envelope::DecryptLimits {
        max_encrypted_data_keys: Some(kms_envelope::RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS),
        ..Default::default()
    };
    let err = kms_envelope::decrypt(&keyring, &DecryptOptions::new().limits(limits), &message).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { value: 2000, .. }), "{err}");
    assert_eq!(stub.requests().len(), before, "no KMS call for a message over the limit");

    // At the limit: each distinct EDK is tried once, so at most the limit in calls.
    let ten = forged_message(&vec![arn.clone(); 10]);
    let ten = number_ciphertexts(ten, &marker);
    let before = stub.requests().len();
    assert!(kms_envelope::decrypt(&keyring, &DecryptOptions::new().limits(limits), &ten).is_err());
    assert_eq!(stub.requests().len() - before, 10);
}

fn number_ciphertexts(mut message: Vec<u8>, marker: &str) -> Vec<u8> {
    let mut n = 0u32;
    let mut at = 0;
    while let Some(pos) = message[at..].windows(marker.len()).position(|w| w == marker.as_bytes()) {
        let start = at + pos;
        message[start..start + 4].copy_from_slice(&n.to_be_bytes());
        n += 1;
        at = start + marker.len();
    }
    message
}

#[test]
fn the_cli_and_lambda_limit_edks_by_default() {
    let stub = StubKms::start(|_, _, _| Reply::error(400, "AccessDeniedException", "no"));
    let dir = tempfile::tempdir().unwrap();
    let arns: Vec<String> = (0..11).map(|_| arn_in("us-east-1")).collect();
    let message = number_ciphertexts(forged_message(&arns), &format!("wrapped for {}", arn_in("us-east-1")));
    let input = dir.path().join("eleven.enc");
    std::fs::write(&input, &message).unwrap();
    let out = Command::cargo_bin("kms-envelope")
        .unwrap()
        .env("AWS_ENDPOINT_URL_KMS", &stub.url)
        .args(["decrypt", "--kms-discovery", "--account", ACCOUNT])
        .arg(&input)
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("encrypted data key count is 11, over the configured limit of 10"), "{stderr}");
    assert!(stub.requests().is_empty());
    assert!(!dir.path().join("out").exists(), "no output for a refused message");

    let config = kms_envelope::lambda::EnvConfig::from_lookup(|name| match name {
        "KMS_ENVELOPE_BUNDLES" => Some(format!("{}=x", input.display())),
        "KMS_ENVELOPE_KMS_DISCOVERY" => Some("true".into()),
        "KMS_ENVELOPE_KMS_ACCOUNTS" => Some(ACCOUNT.into()),
        "KMS_ENVELOPE_ROOT" => Some(dir.path().join("root").display().to_string()),
        _ => None,
    })
    .unwrap();
    let err = config.cold_start(config.keyring(&stub.clients()).unwrap()).run_blocking().map(drop).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { value: 11, max: 10, .. }), "{err}");
    assert!(stub.requests().is_empty());
}

#[test]
fn two_thousand_regions_in_a_message_get_no_call_and_discovery_memory_stays_bounded() {
    let Some(python) = common::python() else { return };
    let stub = StubKms::start(|_, _, _| Reply::error(400, "AccessDeniedException", "no"));
    let letters = |i: usize| -> String {
        let mut s = String::new();
        let mut n = i;
        for _ in 0..3 {
            s.push((b'a' + (n % 26) as u8) as char);
            n /= 26;
        }
        s
    };
    let arns: Vec<String> = (0..2000).map(|i| arn_in(&format!("eu-x{}-1", letters(i)))).collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("regions.enc");
    std::fs::write(&input, forged_message(&arns)).unwrap();
    let cli = assert_cmd::cargo::cargo_bin("kms-envelope");
    // Python's getrusage(RUSAGE_CHILDREN) reports the peak RSS of exactly the one child it waited for.
    let script = "import resource, subprocess, sys\n\
                  p = subprocess.run(sys.argv[1:], capture_output=True)\n\
                  print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
                  sys.stderr.buffer.write(p.stderr[-2000:])";
    let out = Command::new(python)
        .env("AWS_ENDPOINT_URL_KMS", &stub.url)
        .args(["-c", script])
        .arg(cli)
        .args(["decrypt", "--kms-discovery", "--account", ACCOUNT, "--max-encrypted-data-keys", "2000"])
        .arg(&input)
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (code, max_rss_kib) = stdout.trim().split_once(' ').unwrap();
    assert_eq!(code, "3", "{}", String::from_utf8_lossy(&out.stderr));
    let max_rss_mib = max_rss_kib.parse::<u64>().unwrap() / 1024;
    // Discovery calls only the regions the operator named (here the configured one): a message that names
    // 2,000 others makes no call and no client (before `--kms-region`, it made 2,000 of each).
    assert_eq!(stub.requests().iter().filter(|op| *op == "Decrypt").count(), 0);
    assert!(max_rss_mib < 64, "peak RSS {max_rss_mib} MiB for 2,000 regions");
}

/// A CLI run configured as in AWS: no endpoint override, the region picks the host, and the hostile CA
/// trusted, so that a connection to the hostile endpoint would succeed.
fn cli_without_endpoint(ca: &Path) -> Command {
    let mut cmd = Command::cargo_bin("kms-envelope").unwrap();
    cmd.env_remove("AWS_ENDPOINT_URL_KMS")
        .env_remove("AWS_ENDPOINT_URL")
        .env("SSL_CERT_FILE", ca)
        .env("AWS_ACCESS_KEY_ID", "AKIAHOSTILETEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1");
    cmd
}

/// No byte below 0x20 but newline, no DEL, and no C1 control (as UTF-8).
fn assert_terminal_safe(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let bad: Vec<char> = text.chars().filter(|&c| c != '\n' && c.is_control()).collect();
    assert!(bad.is_empty(), "control characters {bad:?} in {text:?}");
    let _ = std::io::stdout().flush();
}
