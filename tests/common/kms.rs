//! Helpers for the AWS KMS tests: the moto server scripts/test.sh starts, keys created in it through the
//! SDK, a stub KMS endpoint that misbehaves on cue, and the Python ESDK peer pointed at moto.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
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

/// What KMS answers to `operation` with request `body` for the ECDH key agreement key `arn` whose private
/// key is `private`: `GetPublicKey` (usage `KEY_AGREEMENT`) and `DeriveSharedSecret` (ECDH with the
/// SubjectPublicKeyInfo the request sends), as KMS does; anything else is refused. moto has no
/// `DeriveSharedSecret`.
pub fn ecdh_kms_answer(
    private: &aws_lc_rs::agreement::PrivateKey,
    arn: &str,
    operation: &str,
    body: &serde_json::Value,
) -> Reply {
    use aws_lc_rs::agreement::{UnparsedPublicKey, agree};
    use aws_lc_rs::encoding::AsDer;
    if body["KeyId"].as_str() != Some(arn) {
        return Reply::error(400, "NotFoundException", "not the ECDH key");
    }
    match operation {
        "GetPublicKey" => {
            let spki = private.compute_public_key().unwrap().as_der().unwrap();
            let json = serde_json::json!({"KeyId": arn, "KeyUsage": "KEY_AGREEMENT", "PublicKey": B64.encode(spki.as_ref()),
                "KeySpec": "ECC_NIST_P256", "KeyAgreementAlgorithms": ["ECDH"]});
            Reply::Json(200, json.to_string())
        }
        "DeriveSharedSecret" if body["KeyAgreementAlgorithm"] == "ECDH" => {
            let peer = B64.decode(body["PublicKey"].as_str().unwrap_or("")).unwrap_or_default();
            let peer = UnparsedPublicKey::new(private.algorithm(), peer);
            match agree(private, peer, (), |z| Ok(B64.encode(z))) {
                Ok(secret) => Reply::Json(
                    200,
                    serde_json::json!({"KeyId": arn, "SharedSecret": secret, "KeyAgreementAlgorithm": "ECDH", "KeyOrigin": "AWS_KMS"})
                        .to_string(),
                ),
                Err(()) => Reply::error(400, "ValidationException", "not a public key of the key's curve"),
            }
        }
        _ => Reply::error(400, "ValidationException", "not GetPublicKey or an ECDH DeriveSharedSecret"),
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
        let out =
            self.command().args(args).args(["--kms-endpoint", &self.endpoint]).output().expect("run the Python peer");
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
    }

    /// Runs each of `jobs` (as for [`run`](Self::run)) in one peer process: the SDK import, most of a short
    /// job's time, is paid once. One result per job, in order.
    pub fn batch(&self, jobs: &[Vec<&str>]) -> Vec<Result<(), String>> {
        let jobs: Vec<Vec<String>> = jobs
            .iter()
            .map(|args| args.iter().copied().chain(["--kms-endpoint", &self.endpoint]).map(str::to_owned).collect())
            .collect();
        crate::common::peer_batch_jobs(self.command(), &jobs)
    }

    /// The peer script under Python, with moto's credentials and region and no others.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.python);
        command
            .arg(crate::common::peer_script())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
        command
    }
}

// ------------------------------------------------------------------------------------ counting proxy

/// An HTTP proxy in front of moto that counts the KMS operations (`X-Amz-Target`) it forwards, so that a
/// test can assert exactly how many calls reached KMS, and records each call's region and body.
///
/// It also plays a multi-Region key for moto ([`present_as_mrk`](Self::present_as_mrk)), which cannot: moto
/// 5 gives multi-Region keys ids of `mrk-` and a dashed UUID (40 characters, where KMS issues `mrk-` and 32
/// hex digits), its ciphertext header keeps 36 characters of key id, so it cannot decrypt under its own
/// multi-Region keys at all, and its `ReplicateKey` copies only those. The proxy shows a plain moto key as
/// `key/mrk-` and its UUID's 32 digits, in its own region and in each replica region, and forwards a
/// request signed for one of those regions that names the key's ARN *in that region* to the key in its own
/// region (moto picks the regional backend from the signature's region). Anything else naming the key (its
/// ARN in another region, or in a region without a replica) reaches moto under that region's ARN, where no
/// such key exists, as KMS would answer.
pub struct CountingProxy {
    pub url: String,
    shared: Arc<ProxyState>,
}

/// What [`CountingProxy::before`] runs.
type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct ProxyState {
    calls: Mutex<std::collections::HashMap<String, usize>>,
    log: Mutex<Vec<KmsCall>>,
    mrks: Mutex<Vec<PlayedMrk>>,
    /// Run once, before forwarding the first request for their operation.
    before: Mutex<Vec<(String, Hook)>>,
}

/// A moto key the proxy shows as a multi-Region key with replicas.
#[derive(Clone)]
struct PlayedMrk {
    /// The moto key's ARN (its id a dashed UUID).
    moto_arn: String,
    /// Its region, then the replicas'.
    regions: Vec<String>,
}

impl PlayedMrk {
    fn uuid(&self) -> &str {
        self.moto_arn.rsplit('/').next().unwrap()
    }

    fn mrk_id(&self) -> String {
        format!("mrk-{}", self.uuid().replace('-', ""))
    }

    /// The key's ARN as clients see it in `region`.
    fn arn_in(&self, region: &str) -> String {
        self.moto_arn
            .replace(&format!(":{}:", self.regions[0]), &format!(":{region}:"))
            .replace(self.uuid(), &self.mrk_id())
    }
}

/// One request the proxy forwarded, as a test asserts on it.
#[derive(Clone, Debug)]
pub struct KmsCall {
    /// The operation (`Decrypt`, ...).
    pub operation: String,
    /// The region the request was signed for: the credential scope of its `Authorization` header, which
    /// is the region of the client that sent it.
    pub region: String,
    /// The JSON body as the client sent it (`KeyId`, `GrantTokens`, ...).
    pub body: serde_json::Value,
}

impl CountingProxy {
    pub fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(ProxyState::default());
        let state = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (upstream, state) = (upstream.clone(), state.clone());
                std::thread::spawn(move || forward(stream, &upstream, &state));
            }
        });
        Self { url, shared }
    }

    /// Requests forwarded so far for `operation` (e.g. `GenerateDataKey`).
    pub fn calls(&self, operation: &str) -> usize {
        self.shared.calls.lock().unwrap().get(operation).copied().unwrap_or(0)
    }

    /// Every request forwarded so far, in arrival order.
    pub fn log(&self) -> Vec<KmsCall> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Clients for this proxy.
    pub fn clients(&self) -> KmsClients {
        KmsClients::new(&sdk_config(&self.url))
    }

    /// Runs `hook` once, when the next request for `operation` arrives and before it is forwarded: a racing
    /// writer (say) gets in between a client's read and its write.
    pub fn before(&self, operation: &str, hook: impl FnOnce() + Send + 'static) {
        self.shared.before.lock().unwrap().push((operation.to_owned(), Box::new(hook)));
    }

    /// From now on, shows the plain moto key `moto_arn` as a multi-Region key replicated into `replicas`;
    /// returns its ARN as clients see it in its own region, then in each replica region.
    pub fn present_as_mrk(&self, moto_arn: &str, replicas: &[&str]) -> Vec<String> {
        let region = moto_arn.split(':').nth(3).unwrap().to_owned();
        let regions: Vec<String> = std::iter::once(region).chain(replicas.iter().map(|r| r.to_string())).collect();
        let played = PlayedMrk { moto_arn: moto_arn.to_owned(), regions };
        assert_eq!(played.uuid().len(), 36, "a plain moto key: {moto_arn}");
        let arns = played.regions.iter().map(|region| played.arn_in(region)).collect();
        self.shared.mrks.lock().unwrap().push(played);
        arns
    }
}

impl ProxyState {
    /// The request `body` signed for `region` as moto gets it, and the region to sign it for.
    fn sent_to_moto(&self, region: &str, body: &str) -> (String, String) {
        let (mut body, mut routed) = (body.to_owned(), region.to_owned());
        for key in self.mrks.lock().unwrap().iter() {
            if key.regions.iter().any(|r| r == region) && body.contains(&key.arn_in(region)) {
                body = body.replace(&key.arn_in(region), &key.moto_arn);
                routed = key.regions[0].clone();
            }
            body = body.replace(&key.mrk_id(), key.uuid());
        }
        (body, routed)
    }

    /// moto's response `body` to a request signed for `region`, as the client sees it.
    fn shown_to_client(&self, region: &str, body: &str) -> String {
        let mut body = body.to_owned();
        for key in self.mrks.lock().unwrap().iter() {
            if key.regions.iter().any(|r| r == region) {
                body = body.replace(&key.moto_arn, &key.arn_in(region));
            }
            body = body.replace(key.uuid(), &key.mrk_id());
        }
        body
    }
}

/// Relays each request on `client` to `upstream` on a fresh connection (`connection: close`, so the
/// response ends at EOF) and the response back, counting and recording the request.
fn forward(client: TcpStream, upstream: &str, state: &ProxyState) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut writer = client;
    loop {
        let mut lines = Vec::new();
        let (mut length, mut target, mut region) = (0usize, String::new(), String::new());
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
                    "content-length" => {
                        length = value.trim().parse().unwrap_or(0);
                        continue;
                    }
                    "x-amz-target" => target = value.trim().trim_start_matches("TrentService.").to_owned(),
                    "authorization" => region = signed_region(value),
                    "connection" => continue,
                    _ => {}
                }
            }
            lines.push(trimmed.to_owned());
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        *state.calls.lock().unwrap().entry(target.clone()).or_default() += 1;
        let hook = {
            let mut hooks = state.before.lock().unwrap();
            hooks.iter().position(|(operation, _)| *operation == target).map(|at| hooks.remove(at).1)
        };
        if let Some(hook) = hook {
            hook();
        }
        let body_json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        state.log.lock().unwrap().push(KmsCall { operation: target, region: region.clone(), body: body_json });
        let (body, routed) = state.sent_to_moto(&region, &String::from_utf8_lossy(&body));
        let mut head = String::new();
        for line in lines {
            let line = if line.to_ascii_lowercase().starts_with("authorization:") {
                line.replace(&format!("/{region}/kms/"), &format!("/{routed}/kms/"))
            } else {
                line
            };
            head.push_str(&line);
            head.push_str("\r\n");
        }
        let mut response = Vec::new();
        let relayed = TcpStream::connect(upstream).and_then(|mut up| {
            up.write_all(head.as_bytes())?;
            up.write_all(format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes())?;
            up.write_all(body.as_bytes())?;
            up.read_to_end(&mut response)
        });
        if relayed.is_err() || writer.write_all(&shown_response(state, &region, &response)).is_err() {
            return;
        }
    }
}

/// moto's `response` to a request signed for `region` as the client sees it, its length to match.
fn shown_response(state: &ProxyState, region: &str, response: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return response.to_vec() };
    let body = state.shown_to_client(region, body);
    let mut out = String::new();
    for line in head.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(&format!("content-length: {}", body.len()));
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// The region of a SigV4 `Authorization` header: `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/kms/...`.
fn signed_region(authorization: &str) -> String {
    let scope = authorization.split("Credential=").nth(1).unwrap_or("");
    scope.split(['/', ',']).nth(2).unwrap_or("").to_owned()
}
