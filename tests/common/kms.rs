//! Helpers for the AWS KMS tests: the moto server scripts/test.sh starts, keys created in it through the
//! SDK, a stub KMS endpoint that misbehaves on cue, and the Python ESDK peer pointed at moto.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::config::{Credentials, SharedCredentialsProvider};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kms_envelope::KmsClients;

pub const REGION: &str = "us-east-1";

/// The moto server's URL, or `None` after a skip (recorded by `common::missing`; a panic under CI=true).
pub fn moto_endpoint() -> Option<String> {
    match std::env::var("KMS_ENVELOPE_MOTO_ENDPOINT") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => crate::common::missing("moto (KMS_ENVELOPE_MOTO_ENDPOINT; scripts/test.sh starts moto and sets it)"),
    }
}

/// An AWS configuration for `endpoint` with static test credentials, independent of the environment.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "kms-tests",
        )))
        .build()
}

/// Runs `future` to completion on a throwaway runtime (for test set-up only).
pub fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// The moto server.
#[derive(Clone)]
pub struct Moto {
    pub endpoint: String,
}

impl Moto {
    /// The running moto, or `None` after the skip line.
    pub fn get() -> Option<Self> {
        moto_endpoint().map(|endpoint| Self { endpoint })
    }

    pub fn config(&self) -> SdkConfig {
        sdk_config(&self.endpoint)
    }

    /// Fresh clients (each call: its own connection pool, so no pool outlives the runtime it was made on).
    pub fn clients(&self) -> KmsClients {
        KmsClients::new(&self.config())
    }

    /// A client for set-up calls, used on a throwaway runtime.
    fn admin(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.config())
    }

    /// Creates a fresh symmetric key and returns its ARN. Fresh keys per test keep tests independent.
    pub fn create_key(&self) -> String {
        let admin = self.admin();
        let out = run(admin.create_key().description("kms-envelope test").send()).expect("CreateKey in moto");
        out.key_metadata().expect("key metadata").arn().expect("key ARN").to_owned()
    }

    /// Creates an RSA key (RSA_2048, ENCRYPT_DECRYPT) and returns its ARN.
    pub fn create_rsa_key(&self) -> String {
        self.create_rsa_key_for(aws_sdk_kms::types::KeyUsageType::EncryptDecrypt)
    }

    /// Creates an RSA_2048 key of `usage` and returns its ARN.
    pub fn create_rsa_key_for(&self, usage: aws_sdk_kms::types::KeyUsageType) -> String {
        use aws_sdk_kms::types::KeySpec;
        let call = self.admin().create_key().key_spec(KeySpec::Rsa2048).key_usage(usage).send();
        let out = run(call).expect("CreateKey RSA_2048 in moto");
        out.key_metadata().expect("key metadata").arn().expect("key ARN").to_owned()
    }

    /// Creates `count` keys.
    pub fn create_keys(&self, count: usize) -> Vec<String> {
        (0..count).map(|_| self.create_key()).collect()
    }

    /// Creates an alias for `key_arn` and returns its name (`alias/...`).
    pub fn create_alias(&self, key_arn: &str) -> String {
        let name = format!("alias/kms-envelope-{}", key_arn.rsplit('/').next().unwrap());
        run(self.admin().create_alias().alias_name(&name).target_key_id(key_arn).send()).expect("CreateAlias");
        name
    }
}

/// The account id of a key ARN.
pub fn account_of(arn: &str) -> String {
    arn.split(':').nth(4).unwrap().to_owned()
}

/// Runs `f` on its own thread and fails the test if it does not finish in `limit`: a deadlock or starvation
/// becomes a failure with a message instead of a hung test run.
pub fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not finish in {limit:?}: deadlock or starvation"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

// ------------------------------------------------------------------------------------------ stub KMS

/// What the stub answers to one request.
pub enum Reply {
    /// Status and JSON body.
    Json(u16, String),
    /// Accept the request and never answer.
    Hang,
}

impl Reply {
    /// An AWS JSON error.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Reply::Json(status, format!(r#"{{"__type":"{code}","message":"{message}"}}"#))
    }
}

/// The data key the stub hands out and gives back: fixed, so what one call generates another decrypts.
pub const STUB_DATA_KEY: [u8; 32] = [0x11; 32];

/// A well-behaved answer to `operation` (`GenerateDataKey`, `Encrypt` or `Decrypt`) with request `body`.
pub fn kms_answer(operation: &str, body: &serde_json::Value) -> Reply {
    let key_id = body["KeyId"].as_str().unwrap_or("").to_owned();
    let json = match operation {
        "GenerateDataKey" => serde_json::json!({
            "KeyId": key_id,
            "Plaintext": B64.encode(&STUB_DATA_KEY[..body["NumberOfBytes"].as_u64().unwrap_or(32) as usize]),
            "CiphertextBlob": B64.encode(format!("stub-wrapped-under:{key_id}")),
        }),
        "Encrypt" => serde_json::json!({
            "KeyId": key_id,
            "CiphertextBlob": B64.encode(format!("stub-wrapped-under:{key_id}")),
        }),
        "Decrypt" => serde_json::json!({
            "KeyId": key_id,
            "Plaintext": B64.encode(STUB_DATA_KEY),
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        }),
        other => return Reply::error(400, "UnknownOperationException", other),
    };
    Reply::Json(200, json.to_string())
}

/// What KMS answers to `operation` with request `body` for the RSA key `arn` whose private key is `private`:
/// `Decrypt` with RSA-OAEP under the algorithm the request names (`RSAES_OAEP_SHA_1` or `_256`), as KMS does
/// for an `ENCRYPT_DECRYPT` RSA key; anything else is refused. moto cannot be this KMS: its `Decrypt` reads
/// every ciphertext as its own symmetric format.
#[cfg(feature = "rsa")]
pub fn rsa_kms_answer(
    private: &aws_lc_rs::rsa::PrivateDecryptingKey,
    arn: &str,
    operation: &str,
    body: &serde_json::Value,
) -> Reply {
    use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey};
    let algorithm = body["EncryptionAlgorithm"].as_str().unwrap_or("");
    let oaep = match (operation, body["KeyId"].as_str() == Some(arn), algorithm) {
        ("Decrypt", true, "RSAES_OAEP_SHA_1") => &OAEP_SHA1_MGF1SHA1,
        ("Decrypt", true, "RSAES_OAEP_SHA_256") => &OAEP_SHA256_MGF1SHA256,
        _ => return Reply::error(400, "ValidationException", "not a Decrypt of the RSA key with an RSA algorithm"),
    };
    let ciphertext = B64.decode(body["CiphertextBlob"].as_str().unwrap_or("")).unwrap_or_default();
    let key = OaepPrivateDecryptingKey::new(private.clone()).unwrap();
    let mut out = vec![0u8; key.min_output_size()];
    match key.decrypt(oaep, &ciphertext, &mut out, None) {
        Ok(plaintext) => Reply::Json(
            200,
            serde_json::json!({"KeyId": arn, "Plaintext": B64.encode(plaintext), "EncryptionAlgorithm": algorithm})
                .to_string(),
        ),
        Err(_) => Reply::error(400, "InvalidCiphertextException", "OAEP decryption failed"),
    }
}

type Script = dyn Fn(usize, &str, &serde_json::Value) -> Reply + Send + Sync;

/// A local HTTP endpoint speaking just enough of the KMS JSON protocol, answering request `n` (from 0)
/// as the script says. Lets tests drive the real SDK's retries and timeouts.
pub struct StubKms {
    pub url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl StubKms {
    pub fn start(script: impl Fn(usize, &str, &serde_json::Value) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let counter = Arc::new(AtomicUsize::new(0));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (script, counter, seen) = (script.clone(), counter.clone(), seen.clone());
                std::thread::spawn(move || serve(stream, &*script, &counter, &seen));
            }
        });
        Self { url, requests }
    }

    /// The operations requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Clients for this endpoint.
    pub fn clients(&self) -> KmsClients {
        KmsClients::new(&sdk_config(&self.url))
    }
}

fn serve(stream: TcpStream, script: &Script, counter: &AtomicUsize, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut target = String::new();
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return; // connection closed
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "x-amz-target" => target = value.trim().trim_start_matches("TrentService.").to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        let n = counter.fetch_add(1, Ordering::SeqCst);
        seen.lock().unwrap().push(target.clone());
        match script(n, &target, &body) {
            Reply::Hang => {
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
            Reply::Json(status, json) => {
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\
                     x-amzn-requestid: stub-{n}\r\n\r\n{json}",
                    json.len()
                );
                if writer.write_all(response.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------ Python peer

/// The Python ESDK peer: the venv's interpreter and the script, or `None` after the skip line.
pub struct PythonPeer {
    python: PathBuf,
    endpoint: String,
}

impl PythonPeer {
    pub fn get(moto: &Moto) -> Option<Self> {
        let python = match std::env::var_os("KMS_ENVELOPE_PYTHON").map(PathBuf::from) {
            Some(p) if p.exists() => p,
            _ => return crate::common::missing("the Python ESDK peer (KMS_ENVELOPE_PYTHON)"),
        };
        Some(Self { python, endpoint: moto.endpoint.clone() })
    }

    /// Runs `esdk_peer.py` with `args` against moto; Ok or its one-line error.
    pub fn run(&self, args: &[&str]) -> Result<(), String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/esdk_peer.py");
        let out = Command::new(&self.python)
            .arg(script)
            .args(args)
            .args(["--kms-endpoint", &self.endpoint])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .expect("run the Python peer");
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
    }
}

// ------------------------------------------------------------------------------------ counting proxy

/// An HTTP proxy in front of moto that counts the KMS operations (`X-Amz-Target`) it forwards, so that a
/// test can assert exactly how many calls reached KMS.
pub struct CountingProxy {
    pub url: String,
    calls: Arc<Mutex<std::collections::HashMap<String, usize>>>,
}

impl CountingProxy {
    pub fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let counts = calls.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (upstream, counts) = (upstream.clone(), counts.clone());
                std::thread::spawn(move || forward(stream, &upstream, &counts));
            }
        });
        Self { url, calls }
    }

    /// Requests forwarded so far for `operation` (e.g. `GenerateDataKey`).
    pub fn calls(&self, operation: &str) -> usize {
        self.calls.lock().unwrap().get(operation).copied().unwrap_or(0)
    }

    /// Clients for this proxy.
    pub fn clients(&self) -> KmsClients {
        KmsClients::new(&sdk_config(&self.url))
    }
}

/// Relays each request on `client` to `upstream` on a fresh connection (`connection: close`, so the
/// response ends at EOF) and the response back, counting the request's target.
fn forward(client: TcpStream, upstream: &str, counts: &Mutex<std::collections::HashMap<String, usize>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut writer = client;
    loop {
        let mut head = String::new();
        let (mut length, mut target) = (0usize, String::new());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "x-amz-target" => target = value.trim().trim_start_matches("TrentService.").to_owned(),
                    "connection" => continue,
                    _ => {}
                }
            }
            head.push_str(trimmed);
            head.push_str("\r\n");
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        *counts.lock().unwrap().entry(target).or_default() += 1;
        let mut response = Vec::new();
        let relayed = TcpStream::connect(upstream).and_then(|mut up| {
            up.write_all(head.as_bytes())?;
            up.write_all(b"connection: close\r\n\r\n")?;
            up.write_all(&body)?;
            up.read_to_end(&mut response)
        });
        if relayed.is_err() || writer.write_all(&response).is_err() {
            return;
        }
    }
}
