//! The S3 Batch Operations function's handler (`kms_envelope::lambda::batch`), called directly (no Lambda
//! runtime): a job of mixed objects against S3 and KMS in moto, in schema 1.0 and 2.0, run twice; hostile
//! jobs that must cost no request at all; throttling that must come back as `TemporaryFailure`. Without
//! moto the moto tests print "SKIPPED: ..." (and fail under CI=true).
#![cfg(feature = "batch")]

use crate::common;
use crate::fake_http;
use crate::support;

use std::collections::BTreeMap;

use fake_http::{ForwardingProxy, Verdict};
use kms_envelope::lambda::batch::{BatchConfig, BatchFunction, BatchInvocation, BatchResponse, ResultCode};
use kms_envelope::s3::{MIN_PART_SIZE, TransferOptions};
use kms_envelope::{DecryptOptions, EncryptOptions, KmsClients, decrypt, encrypt};
use serde_json::json;
use support::Moto;

/// How S3 Batch Operations puts a key in `s3Key` (Python's `quote_plus` with `/` kept): written here
/// independently of the function's decoder.
fn url_encode(key: &str) -> String {
    let mut out = String::new();
    for byte in key.bytes() {
        match byte {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

fn plaintext(len: usize, seed: u32) -> Vec<u8> {
    (0..len).map(|i| ((i as u32).wrapping_add(seed).wrapping_mul(2654435761) >> 13) as u8).collect()
}

/// The invocation S3 Batch Operations sends for one object: schema 2.0 with `arguments` as the job's user
/// arguments (and `s3Bucket`), or 1.0 (no user arguments, `s3BucketArn`), as the AWS documentation shows.
fn invocation(
    schema: &str,
    arguments: Option<serde_json::Value>,
    bucket: &str,
    key: &str,
    task: &str,
) -> BatchInvocation {
    let event = if schema == "1.0" {
        json!({
            "invocationSchemaVersion": "1.0",
            "invocationId": "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo",
            "job": { "id": "f3cc4f60-61f6-4a2b-8a21-d07600c373ce" },
            "tasks": [{ "taskId": task, "s3Key": url_encode(key), "s3VersionId": null,
                        "s3BucketArn": format!("arn:aws:s3:::{bucket}") }]
        })
    } else {
        let mut job = json!({ "id": "ac3f0a3b-0000-4000-8000-000000000000" });
        if let Some(arguments) = arguments {
            job["userArguments"] = arguments;
        }
        json!({
            "invocationSchemaVersion": schema,
            "invocationId": "Ymxhaapp",
            "job": job,
            "tasks": [{ "taskId": task, "s3Key": url_encode(key), "s3VersionId": null, "s3Bucket": bucket }]
        })
    };
    serde_json::from_value(event).expect("the documented event shape")
}

struct Env {
    moto: Moto,
    bucket: String,
    runtime: tokio::runtime::Runtime,
    old_key: String,
    new_key: String,
}

impl Env {
    fn new(test: &str) -> Option<Self> {
        let moto = Moto::get()?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let bucket = format!("batch-{test}-{}-{unique}", std::process::id()).replace('_', "-");
        let (old_key, new_key) = (moto.create_key(), moto.create_key());
        let env = Self { moto, bucket, runtime, old_key, new_key };
        env.runtime.block_on(env.client(&env.moto.endpoint).create_bucket().bucket(&env.bucket).send()).unwrap();
        Some(env)
    }

    /// An S3 client for `endpoint` (moto, or a proxy in front of it), one attempt per request so that a
    /// refused request shows at once.
    fn client(&self, endpoint: &str) -> aws_sdk_s3::Client {
        let retry = aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(1);
        let config = aws_sdk_s3::config::Builder::from(&support::sdk_config(endpoint))
            .force_path_style(true)
            .retry_config(retry)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    fn config_json(&self) -> serde_json::Value {
        json!({
            "default_profile": "rotate",
            "profiles": {
                "rotate": {
                    "operation": "reencrypt",
                    "source_keys": [self.old_key],
                    "target_keys": [self.new_key],
                    "buckets": [self.bucket],
                },
                "rotate-cached": {
                    "operation": "reencrypt",
                    "source_keys": [self.old_key],
                    "target_keys": [self.new_key],
                    "buckets": [self.bucket],
                    "cache": { "max_age_seconds": 300, "max_messages": 100 },
                },
                "seal": {
                    "operation": "encrypt",
                    "target_keys": [self.new_key],
                    "buckets": [self.bucket],
                    "destination": format!("s3://{}/sealed/", self.bucket),
                },
                "open": {
                    "operation": "decrypt",
                    "source_keys": [self.new_key],
                    "buckets": [self.bucket],
                    "destination": format!("s3://{}/opened/", self.bucket),
                    "allow_plaintext_output": true,
                }
            }
        })
    }

    /// The function on `endpoint` for both S3 and KMS (moto, or a proxy in front of it).
    fn function(&self, endpoint: &str) -> BatchFunction {
        self.function_with(endpoint, json!({}))
    }

    /// [`function`](Self::function) with `profiles` (a JSON object of profiles) besides the usual ones.
    fn function_with(&self, endpoint: &str, profiles: serde_json::Value) -> BatchFunction {
        let mut config = self.config_json();
        for (name, profile) in profiles.as_object().unwrap() {
            config["profiles"][name] = profile.clone();
        }
        let config = BatchConfig::parse(&config.to_string()).unwrap();
        let kms = KmsClients::new(&support::sdk_config(endpoint)).with_max_attempts(1);
        let transfer = TransferOptions::new().part_size(MIN_PART_SIZE);
        BatchFunction::new(config, &kms, self.client(endpoint), transfer).unwrap()
    }

    fn put(&self, key: &str, body: Vec<u8>) {
        let put = self.client(&self.moto.endpoint).put_object().bucket(&self.bucket).key(key).body(body.into()).send();
        self.runtime.block_on(put).expect("PutObject in moto");
    }

    /// The object's bytes and ETag, `None` if there is none.
    fn get(&self, key: &str) -> Option<(Vec<u8>, String)> {
        let got = self.client(&self.moto.endpoint).get_object().bucket(&self.bucket).key(key).send();
        let got = self.runtime.block_on(got).ok()?;
        let etag = got.e_tag().unwrap_or_default().to_owned();
        Some((self.runtime.block_on(got.body.collect()).unwrap().into_bytes().to_vec(), etag))
    }

    fn keyring(&self, arn: &str) -> kms_envelope::AwsKmsKeyring {
        self.moto.clients().keyring(arn).unwrap()
    }

    fn run(&self, function: &BatchFunction, invocation: BatchInvocation) -> BatchResponse {
        self.runtime.block_on(function.handle(invocation))
    }

    /// Puts `body` at `key` and returns the new version's id (versioning on).
    fn put_version(&self, key: &str, body: Vec<u8>) -> String {
        let put = self.client(&self.moto.endpoint).put_object().bucket(&self.bucket).key(key).body(body.into()).send();
        self.runtime.block_on(put).expect("PutObject in moto").version_id().expect("a version id").to_owned()
    }

    /// The bytes of version `version` of `key`.
    fn get_version(&self, key: &str, version: &str) -> Vec<u8> {
        let got = self.client(&self.moto.endpoint).get_object().bucket(&self.bucket).key(key).version_id(version);
        let got = self.runtime.block_on(got.send()).expect("GetObject of a version");
        self.runtime.block_on(got.body.collect()).unwrap().into_bytes().to_vec()
    }

    /// The multipart uploads open in the bucket.
    fn open_uploads(&self) -> usize {
        let list = self.client(&self.moto.endpoint).list_multipart_uploads().bucket(&self.bucket).send();
        self.runtime.block_on(list).expect("ListMultipartUploads in moto").uploads().len()
    }
}

/// What an object of the mixed job is, and so what its task must answer.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// A message under the old key: re-encrypted.
    Old,
    /// A message under the new key already: left alone, `Succeeded`.
    AlreadyNew,
    /// No such object.
    Missing,
    /// A message with a flipped byte in its body, or cut short.
    Damaged,
    /// Bytes that are not a message.
    NotAMessage,
}

/// ~30 objects of every state, with keys as S3 Batch Operations sends them URL-encoded (a space, `+`, `%`,
/// non-ASCII), in schema 2.0 (naming the profile) and 1.0 (the default profile), in place: each result code
/// as specified; each `Succeeded` object decrypts with the new key only, to its plaintext; failures leave
/// their object as it was; and a second run of the same job changes no object (bytes and ETags).
#[test]
fn a_mixed_job_in_both_schemas_and_its_rerun() {
    let Some(env) = Env::new("mixed") else { return };
    let (old, new) = (env.keyring(&env.old_key), env.keyring(&env.new_key));
    let mut objects: Vec<(String, State, Option<Vec<u8>>)> = Vec::new();
    let names = ["with space.esdk", "plus+sign.esdk", "per%cent.esdk", "café/ünïcödé €.esdk", "a+b c%2B/d.esdk"];
    for (i, name) in names.iter().enumerate() {
        objects.push((name.to_string(), State::Old, Some(plaintext(1000 * i, i as u32))));
    }
    for (i, len) in [0usize, 1, 4096, 65536, 100_000, 300_000, 6 << 20].into_iter().enumerate() {
        objects.push((format!("old/{i}.esdk"), State::Old, Some(plaintext(len, 100 + i as u32))));
    }
    for i in 0..8 {
        objects.push((format!("more/old {i}+x.esdk"), State::Old, Some(plaintext(777 * i, 200 + i as u32))));
    }
    for i in 0..3 {
        objects.push((format!("new/{i} é.esdk"), State::AlreadyNew, Some(plaintext(500 * i + 1, 300 + i as u32))));
    }
    objects.push(("missing/a b.esdk".into(), State::Missing, None));
    objects.push(("missing/ü+%.esdk".into(), State::Missing, None));
    objects.push(("damaged/flipped.esdk".into(), State::Damaged, Some(plaintext(200_000, 400))));
    objects.push(("damaged/cut short.esdk".into(), State::Damaged, Some(plaintext(200_000, 401))));
    objects.push(("not/a message.txt".into(), State::NotAMessage, Some(b"hello, world\n".to_vec())));
    objects.push(("not/empty".into(), State::NotAMessage, Some(Vec::new())));
    objects.push(("not/json+%25.json".into(), State::NotAMessage, Some(br#"{"a": 1}"#.to_vec())));

    for (key, state, data) in &objects {
        let Some(data) = data else { continue };
        let body = match state {
            State::Old => encrypt(&old, &EncryptOptions::new(), data).unwrap(),
            State::AlreadyNew => encrypt(&new, &EncryptOptions::new(), data).unwrap(),
            State::Damaged => {
                let mut message = encrypt(&old, &EncryptOptions::new().frame_length(4096), data).unwrap();
                if key.contains("flipped") {
                    let middle = message.len() / 2;
                    message[middle] ^= 1;
                } else {
                    message.truncate(message.len() - 100);
                }
                message
            }
            State::NotAMessage | State::Missing => data.clone(),
        };
        env.put(key, body);
    }
    let before: BTreeMap<&str, Option<(Vec<u8>, String)>> =
        objects.iter().map(|(k, _, _)| (k.as_str(), env.get(k))).collect();

    let function = env.function(&env.moto.endpoint);
    let run_job = |round: usize| -> Vec<(ResultCode, String)> {
        objects
            .iter()
            .enumerate()
            .map(|(i, (key, _, _))| {
                let task = format!("task-{round}-{i}");
                let invocation = if i % 2 == 0 {
                    invocation("2.0", Some(json!({ "profile": "rotate" })), &env.bucket, key, &task)
                } else {
                    invocation("1.0", None, &env.bucket, key, &task)
                };
                let response = env.run(&function, invocation);
                let echoed = serde_json::to_value(&response).unwrap();
                assert_eq!(echoed["treatMissingKeysAs"], "PermanentFailure");
                assert_eq!(echoed["invocationSchemaVersion"], if i % 2 == 0 { "2.0" } else { "1.0" });
                assert_eq!(echoed["results"][0]["taskId"], task.as_str());
                let result = &response.results[0];
                (result.result_code, result.result_string.clone())
            })
            .collect()
    };

    let first = run_job(1);
    for ((key, state, data), (code, text)) in objects.iter().zip(&first) {
        let expected = match state {
            State::Old | State::AlreadyNew => ResultCode::Succeeded,
            State::Missing | State::Damaged | State::NotAMessage => ResultCode::PermanentFailure,
        };
        assert_eq!(*code, expected, "{key} ({state:?}): {text}");
        assert!(!text.contains('\n') && text.len() <= 1024, "{key}: {text:?}");
        match state {
            State::Old => assert!(text.starts_with("re-encrypted"), "{key}: {text}"),
            State::AlreadyNew => assert!(text.starts_with("already re-encrypted"), "{key}: {text}"),
            // One short line: S3's error code and status, not the SDK's debug dump.
            State::Missing => assert!(text.contains("(HTTP 404") && text.len() < 300, "{key}: {text}"),
            State::Damaged | State::NotAMessage => {}
        }
        if matches!(state, State::Missing | State::Damaged | State::NotAMessage) {
            assert_eq!(env.get(key), before[key.as_str()], "{key} ({state:?}) changed: {text}");
        }
        if *code == ResultCode::Succeeded {
            let (message, _) = env.get(key).unwrap();
            let data = data.as_ref().unwrap();
            assert_eq!(&decrypt(&new, &DecryptOptions::new(), &message).unwrap().plaintext[..], &data[..], "{key}");
            assert!(decrypt(&old, &DecryptOptions::new(), &message).is_err(), "{key} still opens with the old key");
        }
    }

    let after_first: BTreeMap<&str, Option<(Vec<u8>, String)>> =
        objects.iter().map(|(k, _, _)| (k.as_str(), env.get(k))).collect();
    let second = run_job(2);
    for ((key, state, _), ((code, text), (first_code, _))) in objects.iter().zip(second.iter().zip(&first)) {
        assert_eq!(code, first_code, "{key} ({state:?}) on the second run: {text}");
        if *code == ResultCode::Succeeded {
            assert!(text.starts_with("already re-encrypted"), "{key} was re-encrypted again: {text}");
        }
        assert_eq!(env.get(key), after_first[key.as_str()], "{key} changed on the second run: {text}");
    }
}

/// The encrypt and decrypt profiles write to their destination prefix, never over the source: a plaintext
/// object sealed under the new key, and opened back into the same bytes.
#[test]
fn encrypt_and_decrypt_profiles_write_to_their_destination() {
    let Some(env) = Env::new("destination") else { return };
    let data = plaintext(70_000, 9);
    env.put("in/report 1+2.csv", data.clone());
    let function = env.function(&env.moto.endpoint);
    let sealed =
        env.run(&function, invocation("2.0", Some(json!({"profile": "seal"})), &env.bucket, "in/report 1+2.csv", "t1"));
    assert_eq!(sealed.results[0].result_code, ResultCode::Succeeded, "{:?}", sealed.results[0]);
    let (message, _) = env.get("sealed/in/report 1+2.csv").expect("the sealed object");
    let new = env.keyring(&env.new_key);
    assert_eq!(&decrypt(&new, &DecryptOptions::new(), &message).unwrap().plaintext[..], &data[..]);
    assert_eq!(env.get("in/report 1+2.csv").unwrap().0, data, "the source changed");

    let opened = env.run(
        &function,
        invocation("2.0", Some(json!({"profile": "open"})), &env.bucket, "sealed/in/report 1+2.csv", "t2"),
    );
    assert_eq!(opened.results[0].result_code, ResultCode::Succeeded, "{:?}", opened.results[0]);
    assert_eq!(env.get("opened/sealed/in/report 1+2.csv").unwrap().0, data);

    // A damaged message is never opened into a plaintext object, not even a partial one.
    let mut damaged = message.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 1;
    env.put("sealed/damaged", damaged);
    let refused =
        env.run(&function, invocation("2.0", Some(json!({"profile": "open"})), &env.bucket, "sealed/damaged", "t3"));
    assert_eq!(refused.results[0].result_code, ResultCode::PermanentFailure, "{:?}", refused.results[0]);
    assert_eq!(env.get("opened/sealed/damaged"), None);
}

/// Jobs that try to choose what the function does (keys, buckets, an operation), name an unknown profile,
/// or break S3's own limits on user arguments: every task is a `PermanentFailure` saying why, and neither
/// S3 nor KMS sees a single request (both point at a server that records any).
#[test]
fn hostile_jobs_are_refused_before_any_request() {
    let server = fake_http::FakeServer::start(|_| Some(fake_http::response(500, &[], b"")));
    let endpoint = format!("http://{}", server.address);
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let config = json!({
        "profiles": { "rotate": { "operation": "reencrypt", "source_keys": [key], "target_keys": [key], "buckets": ["data"] } }
    });
    let config = BatchConfig::parse(&config.to_string()).unwrap();
    let s3 = aws_sdk_s3::config::Builder::from(&support::sdk_config(&endpoint)).force_path_style(true).build();
    let kms = KmsClients::new(&support::sdk_config(&endpoint));
    let function = BatchFunction::new(config, &kms, aws_sdk_s3::Client::from_conf(s3), TransferOptions::new()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    let eleven: serde_json::Map<String, serde_json::Value> =
        (0..11).map(|i| (format!("k{i}"), json!("v"))).chain([("profile".to_owned(), json!("rotate"))]).collect();
    let hostile: Vec<(&str, BatchInvocation)> = vec![
        ("an unknown profile", invocation("2.0", Some(json!({"profile": "admin"})), "data", "k", "t")),
        (
            "keys beside the profile",
            invocation("2.0", Some(json!({"profile": "rotate", "target_keys": key})), "data", "k", "t"),
        ),
        (
            "a destination",
            invocation("2.0", Some(json!({"profile": "rotate", "destination": "s3://evil/"})), "data", "k", "t"),
        ),
        (
            "an operation",
            invocation("2.0", Some(json!({"profile": "rotate", "operation": "decrypt"})), "data", "k", "t"),
        ),
        ("a key and no profile", invocation("2.0", Some(json!({"kms_key": key})), "data", "k", "t")),
        ("no profile and no default", invocation("2.0", Some(json!({})), "data", "k", "t")),
        ("schema 1.0, no default", invocation("1.0", None, "data", "k", "t")),
        ("eleven arguments", invocation("2.0", Some(serde_json::Value::Object(eleven)), "data", "k", "t")),
        ("a value over 1024", invocation("2.0", Some(json!({"profile": "r".repeat(1025)})), "data", "k", "t")),
        ("a value not a string", invocation("2.0", Some(json!({"profile": ["rotate"]})), "data", "k", "t")),
        ("a bucket the profile lacks", invocation("2.0", Some(json!({"profile": "rotate"})), "other", "k", "t")),
        ("an unknown schema", invocation("3.0", Some(json!({"profile": "rotate"})), "data", "k", "t")),
    ];
    let mut with_user_arguments = invocation("1.0", None, "data", "k", "t");
    with_user_arguments.job.user_arguments = Some([("profile".to_owned(), json!("rotate"))].into());
    let mut bad_key = invocation("2.0", Some(json!({"profile": "rotate"})), "data", "k", "t");
    bad_key.tasks[0].s3_key = "bad%zzkey".into();
    let hostile = hostile
        .into_iter()
        .chain([("schema 1.0 with user arguments", with_user_arguments), ("a bad %-escape", bad_key)]);
    for (what, invocation) in hostile {
        let response = runtime.block_on(function.handle(invocation));
        let result = &response.results[0];
        assert_eq!(result.result_code, ResultCode::PermanentFailure, "{what}: {result:?}");
        assert!(!result.result_string.is_empty() && !result.result_string.contains('\n'), "{what}: {result:?}");
    }
    assert_eq!(server.requests(), Vec::<String>::new(), "a hostile job reached S3 or KMS");
}

/// Throttling is a `TemporaryFailure`, so that Batch retries the task: S3 `SlowDown` (503) on the object's
/// reads, and KMS `ThrottlingException` on the data key's unwrapping; the object stays as it was, and once
/// the throttling stops the retry succeeds.
#[test]
fn throttling_is_a_temporary_failure_and_the_retry_succeeds() {
    let Some(env) = Env::new("throttled") else { return };
    let old = env.keyring(&env.old_key);
    let data = plaintext(50_000, 5);
    env.put("SlowDown 503 timeout", encrypt(&old, &EncryptOptions::new(), &data).unwrap());
    let before = env.get("SlowDown 503 timeout");
    let proxy = ForwardingProxy::start(&env.moto.endpoint);
    let function = env.function(&proxy.url);
    let job = || invocation("2.0", Some(json!({"profile": "rotate"})), &env.bucket, "SlowDown 503 timeout", "t");

    let slow_down = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"#;
    proxy.set_policy(move |request| match (request.header("x-amz-target"), request.method.as_str()) {
        (None, "GET") => Verdict::Answer(fake_http::response(503, &[("content-type", "application/xml")], slow_down)),
        // A HEAD's answer has no body, so S3's only sign is the status.
        (None, "HEAD") => Verdict::Answer(fake_http::response(503, &[], b"")),
        _ => Verdict::Forward,
    });
    let result = env.run(&function, job()).results.remove(0);
    assert_eq!(result.result_code, ResultCode::TemporaryFailure, "S3 SlowDown: {result:?}");

    // The object's HEAD goes through, its reads are throttled: the class survives the reading pipeline.
    proxy.set_policy(move |request| match (request.header("x-amz-target"), request.method.as_str()) {
        (None, "GET") => Verdict::Answer(fake_http::response(503, &[("content-type", "application/xml")], slow_down)),
        _ => Verdict::Forward,
    });
    let result = env.run(&function, job()).results.remove(0);
    assert_eq!(result.result_code, ResultCode::TemporaryFailure, "S3 SlowDown on a read: {result:?}");

    let throttled = br#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
    proxy.set_policy(move |request| match request.header("x-amz-target") {
        Some(target) if target.ends_with(".Decrypt") => {
            Verdict::Answer(fake_http::response(400, &[("content-type", "application/x-amz-json-1.1")], throttled))
        }
        _ => Verdict::Forward,
    });
    let result = env.run(&function, job()).results.remove(0);
    assert_eq!(result.result_code, ResultCode::TemporaryFailure, "KMS ThrottlingException: {result:?}");
    assert_eq!(env.get("SlowDown 503 timeout"), before, "a throttled task changed the object");

    proxy.set_policy(|_| Verdict::Forward);
    let result = env.run(&function, job()).results.remove(0);
    assert_eq!(result.result_code, ResultCode::Succeeded, "once the throttling stopped: {result:?}");
    let (message, _) = env.get("SlowDown 503 timeout").unwrap();
    let new = env.keyring(&env.new_key);
    assert_eq!(&decrypt(&new, &DecryptOptions::new(), &message).unwrap().plaintext[..], &data[..]);
}

/// The `kms-envelope-batch` binary on the Lambda runtime API (a fake one that records what it is sent):
/// it takes a Batch invocation from `invocation/next` and posts its answer in S3 Batch Operations' shape. The
/// job names no configured profile, so the answer needs neither S3 nor KMS. Without its configuration the
/// binary fails its init with one line naming the variable.
#[test]
fn the_binary_answers_an_invocation_through_the_runtime_api() {
    use std::sync::{Arc, Mutex};
    let event = json!({
        "invocationSchemaVersion": "2.0",
        "invocationId": "inv-1",
        "job": { "id": "job-1", "userArguments": { "profile": "nope" } },
        "tasks": [{ "taskId": "task-1", "s3Key": "a+b", "s3VersionId": null, "s3Bucket": "data" }]
    })
    .to_string();
    let answered: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let answer = answered.clone();
    let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let api = fake_http::FakeServer::start(move |request| {
        if request.path.ends_with("/invocation/next") {
            if served.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_secs(60)); // no second invocation
                return None;
            }
            let headers = [
                ("content-type", "application/json"),
                ("lambda-runtime-aws-request-id", "req-1"),
                ("lambda-runtime-deadline-ms", "9999999999999"),
                ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:111122223333:function:batch"),
            ];
            return Some(fake_http::response(200, &headers, event.as_bytes()));
        }
        if request.path.ends_with("/invocation/req-1/response") {
            *answer.lock().unwrap() = Some(request.body.clone());
        }
        Some(fake_http::response(202, &[], b""))
    });
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let profiles = json!({ "profiles": { "rotate": {
        "operation": "reencrypt", "source_keys": [key], "target_keys": [key], "buckets": ["data"] } } });
    let binary = assert_cmd::cargo::cargo_bin!("kms-envelope-batch");
    let command = |profiles: Option<&str>| {
        let mut command = std::process::Command::new(binary);
        command.env("AWS_LAMBDA_RUNTIME_API", &api.address).env("AWS_LAMBDA_FUNCTION_NAME", "batch");
        command.env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256").env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
        command.env("AWS_LAMBDA_LOG_STREAM_NAME", "s").env("AWS_LAMBDA_LOG_GROUP_NAME", "g");
        command.env("AWS_REGION", "us-east-1").env("AWS_ACCESS_KEY_ID", "testing");
        command.env("AWS_SECRET_ACCESS_KEY", "testing").env("AWS_EC2_METADATA_DISABLED", "true");
        command.env_remove("AWS_PROFILE").env_remove("KMS_ENVELOPE_BATCH_PROFILES");
        if let Some(profiles) = profiles {
            command.env("KMS_ENVELOPE_BATCH_PROFILES", profiles);
        }
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        command
    };

    let unconfigured = command(None).output().unwrap();
    let stderr = String::from_utf8_lossy(&unconfigured.stderr);
    assert!(!unconfigured.status.success(), "{stderr}");
    assert!(stderr.contains("KMS_ENVELOPE_BATCH_PROFILES") && stderr.trim_end().lines().count() == 1, "{stderr}");

    let mut child = command(Some(&profiles.to_string())).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while answered.lock().unwrap().is_none() && std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the binary exited ({status}) without answering");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    common::stop_gracefully(&mut child, std::time::Duration::from_secs(2));
    let body = answered.lock().unwrap().take().expect("an answer within a minute");
    let response: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(response["invocationSchemaVersion"], "2.0", "{response}");
    assert_eq!(response["invocationId"], "inv-1", "{response}");
    assert_eq!(response["treatMissingKeysAs"], "PermanentFailure", "{response}");
    assert_eq!(response["results"][0]["taskId"], "task-1", "{response}");
    assert_eq!(response["results"][0]["resultCode"], "PermanentFailure", "{response}");
    assert!(response["results"][0]["resultString"].as_str().unwrap().contains("nope"), "{response}");
}

/// A profile with `cache` reuses the new data key across small objects: one `GenerateDataKey` for the
/// whole job beside the one that learns the target keys, where the profile without it makes one per object;
/// either way every object decrypts with the new key alone.
#[test]
fn a_caching_profile_makes_one_generate_data_key_per_job() {
    use std::sync::{Arc, Mutex};
    let Some(env) = Env::new("caching") else { return };
    let old = env.keyring(&env.old_key);
    let proxy = ForwardingProxy::start(&env.moto.endpoint);
    let calls: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let counts = calls.clone();
    proxy.set_policy(move |request| {
        if let Some(target) = request.header("x-amz-target") {
            *counts.lock().unwrap().entry(target.rsplit('.').next().unwrap_or("").to_owned()).or_default() += 1;
        }
        Verdict::Forward
    });
    let generated = |profile: &str| -> usize {
        let function = env.function(&proxy.url);
        calls.lock().unwrap().clear();
        for i in 0..10 {
            let key = format!("{profile}/{i}");
            env.put(&key, encrypt(&old, &EncryptOptions::new(), &plaintext(1000 + i, i as u32)).unwrap());
            let result =
                env.run(&function, invocation("2.0", Some(json!({"profile": profile})), &env.bucket, &key, "t"));
            assert_eq!(result.results[0].result_code, ResultCode::Succeeded, "{key}: {:?}", result.results[0]);
            let (message, _) = env.get(&key).unwrap();
            let new = env.keyring(&env.new_key);
            assert_eq!(
                &decrypt(&new, &DecryptOptions::new(), &message).unwrap().plaintext[..],
                &plaintext(1000 + i, i as u32)[..]
            );
            assert!(decrypt(&old, &DecryptOptions::new(), &message).is_err(), "{key}");
        }
        calls.lock().unwrap().get("GenerateDataKey").copied().unwrap_or(0)
    };
    assert_eq!(generated("rotate"), 11, "without a cache: the target keys, then one per object");
    assert_eq!(generated("rotate-cached"), 2, "with a cache: the target keys, then one for the whole job");
}

/// From the attack review: a manifest that names a version that is not the current one (here, one that
/// does not exist). Acting on the current object would report another version's fate, so the task is
/// refused, and the current object left as it is.
#[test]
fn a_task_naming_an_object_version_is_refused() {
    let Some(env) = Env::new("version") else { return };
    let old = env.keyring(&env.old_key);
    env.put("v/obj", encrypt(&old, &EncryptOptions::new(), &plaintext(1000, 3)).unwrap());
    let before = env.get("v/obj");
    let function = env.function(&env.moto.endpoint);
    let mut task = invocation("2.0", Some(json!({"profile": "rotate"})), &env.bucket, "v/obj", "t");
    task.tasks[0].s3_version_id = Some("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY".into());
    let answer = env.run(&function, task);
    assert_eq!(answer.results[0].result_code, ResultCode::PermanentFailure, "{:?}", answer.results[0]);
    assert!(answer.results[0].result_string.contains("version"), "{:?}", answer.results[0]);
    assert_eq!(env.get("v/obj"), before, "the current object was touched");
}

// ------------------------------------------------------------------ attack review (h-attack)

/// A writer with no KMS rights plants a message whose EDK names a key ARN with `timeout` in it (bytes
/// edited, same length: no KMS call needed). No key of the profile opens it, a permanent fault; the
/// reason text quotes the planted ARN, and `retryable` reads the text: it must stay `PermanentFailure`.
#[test]
fn attack_planted_edk_text_does_not_make_a_failure_retryable() {
    let Some(env) = Env::new("attack-edk") else { return };
    let old = env.keyring(&env.old_key);
    let mut message = encrypt(&old, &EncryptOptions::new(), &plaintext(1000, 1)).unwrap();
    let (_, id) = env.old_key.rsplit_once('/').unwrap();
    let planted = format!("{:x<width$}", "timeout", width = id.len());
    let at = message.windows(id.len()).position(|w| w == id.as_bytes()).expect("the key id in the header");
    message[at..at + id.len()].copy_from_slice(planted.as_bytes());
    env.put("planted/edk", message);
    let function = env.function(&env.moto.endpoint);
    for profile in ["rotate", "open"] {
        let answer =
            env.run(&function, invocation("2.0", Some(json!({"profile": profile})), &env.bucket, "planted/edk", "t"));
        assert_eq!(answer.results[0].result_code, ResultCode::PermanentFailure, "{profile}: {:?}", answer.results[0]);
    }
}

/// A writer plants a message under the new key with its body cut short (here: another object's message,
/// truncated after the header). The skip check authenticates the header only, so the task reports
/// `Succeeded` ("authenticated; left as it is") for an object that does not decrypt.
#[test]
fn attack_a_damaged_message_under_the_new_key_is_not_reported_succeeded() {
    let Some(env) = Env::new("attack-skip") else { return };
    let new = env.keyring(&env.new_key);
    let data = plaintext(200_000, 7);
    let mut message = encrypt(&new, &EncryptOptions::new().frame_length(4096), &data).unwrap();
    message.truncate(message.len() - 100_000);
    env.put("planted/cut", message);
    let function = env.function(&env.moto.endpoint);
    let answer =
        env.run(&function, invocation("2.0", Some(json!({"profile": "rotate"})), &env.bucket, "planted/cut", "t"));
    assert_ne!(answer.results[0].result_code, ResultCode::Succeeded, "{:?}", answer.results[0]);
}

/// A manifest that names a version: the task must act on that version or refuse, never on the current
/// object (here the named version does not exist, so anything but a failure acted on another version).
#[test]
fn attack_a_task_s_version_id_is_not_ignored() {
    let Some(env) = Env::new("attack-version") else { return };
    let old = env.keyring(&env.old_key);
    env.put("v/obj", encrypt(&old, &EncryptOptions::new(), &plaintext(1000, 3)).unwrap());
    let function = env.function(&env.moto.endpoint);
    let mut task = invocation("2.0", Some(json!({"profile": "rotate"})), &env.bucket, "v/obj", "t");
    task.tasks[0].s3_version_id = Some("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY".into());
    let answer = env.run(&function, task);
    assert_ne!(answer.results[0].result_code, ResultCode::Succeeded, "{:?}", answer.results[0]);
}

/// A retried task whose object is already under the new key, while KMS throttles: the skip check's failed
/// unwrap counts as "needs re-encrypting", the source keyring then finds no old key, and the task ends
/// `PermanentFailure`, although the object is done and a retry would say so.
#[test]
fn attack_throttling_during_the_skip_check_is_not_a_permanent_failure() {
    let Some(env) = Env::new("attack-skip-throttle") else { return };
    let new = env.keyring(&env.new_key);
    env.put("done", encrypt(&new, &EncryptOptions::new(), &plaintext(5000, 2)).unwrap());
    let proxy = ForwardingProxy::start(&env.moto.endpoint);
    let function = env.function(&proxy.url);
    let throttled = br#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
    proxy.set_policy(move |request| match request.header("x-amz-target") {
        Some(target) if target.ends_with(".Decrypt") => {
            Verdict::Answer(fake_http::response(400, &[("content-type", "application/x-amz-json-1.1")], throttled))
        }
        _ => Verdict::Forward,
    });
    let job = invocation("2.0", Some(json!({"profile": "rotate"})), &env.bucket, "done", "t");
    let result = env.run(&function, job).results.remove(0);
    assert_eq!(result.result_code, ResultCode::TemporaryFailure, "{result:?}");
}

/// An endpoint's error text decides the code: a 404 NoSuchKey whose message says "timeout" is retried.
#[test]
fn attack_an_endpoint_s_message_does_not_make_a_missing_object_retryable() {
    let Some(env) = Env::new("attack-404") else { return };
    env.put("gone", b"soon gone".to_vec());
    let proxy = ForwardingProxy::start(&env.moto.endpoint);
    let function = env.function(&proxy.url);
    let missing = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>gone (not a timeout)</Message></Error>"#;
    proxy.set_policy(move |request| match (request.header("x-amz-target"), request.method.as_str()) {
        (None, "GET") => Verdict::Answer(fake_http::response(404, &[("content-type", "application/xml")], missing)),
        _ => Verdict::Forward,
    });
    let job = invocation("2.0", Some(json!({"profile": "rotate"})), &env.bucket, "gone", "t");
    let result = env.run(&function, job).results.remove(0);
    assert_eq!(result.result_code, ResultCode::PermanentFailure, "{result:?}");
}

// ------------------------------------------------------------------ skip check, versions, Lambda limits

/// A message under the new key with its body cut short: the default (full) skip check reads it to the
/// end, so the task is not `Succeeded` and says why; a profile with `"skip_check": "header"` accepts the
/// cheaper check and says which one ran. An intact message under the new key is `Succeeded`, saying it
/// was authenticated in full.
#[test]
fn the_skip_check_authenticates_the_whole_message_unless_the_profile_says_header() {
    let Some(env) = Env::new("skip-full") else { return };
    let new = env.keyring(&env.new_key);
    let mut cut = encrypt(&new, &EncryptOptions::new().frame_length(4096), &plaintext(200_000, 7)).unwrap();
    cut.truncate(cut.len() - 100_000);
    env.put("cut", cut);
    env.put("whole", encrypt(&new, &EncryptOptions::new().frame_length(4096), &plaintext(200_000, 8)).unwrap());
    let (cut_before, whole_before) = (env.get("cut"), env.get("whole"));
    let header_only = json!({ "rotate-header": {
        "operation": "reencrypt", "source_keys": [env.old_key], "target_keys": [env.new_key],
        "buckets": [env.bucket], "skip_check": "header" } });
    let function = env.function_with(&env.moto.endpoint, header_only);
    let run = |profile: &str, key: &str| {
        env.run(&function, invocation("2.0", Some(json!({"profile": profile})), &env.bucket, key, "t"))
            .results
            .remove(0)
    };

    let full = run("rotate", "cut");
    assert_eq!(full.result_code, ResultCode::PermanentFailure, "{full:?}");
    assert!(full.result_string.contains("truncated"), "{full:?}");
    let header = run("rotate-header", "cut");
    assert_eq!(header.result_code, ResultCode::Succeeded, "{header:?}");
    assert!(header.result_string.contains("header authenticated; body not read"), "{header:?}");
    let whole = run("rotate", "whole");
    assert_eq!(whole.result_code, ResultCode::Succeeded, "{whole:?}");
    assert!(whole.result_string.contains("authenticated in full"), "{whole:?}");
    assert_eq!((env.get("cut"), env.get("whole")), (cut_before, whole_before), "a skipped object changed");
}

/// With versioning on, a task acts on the version it names: in place, only while that version is the
/// current one (a version since replaced is refused, saying so, and nothing changes); into a destination,
/// from the named version's bytes, not the current object's.
#[test]
fn a_task_naming_a_version_acts_on_that_version() {
    let Some(env) = Env::new("versions") else { return };
    let versioning = aws_sdk_s3::types::VersioningConfiguration::builder()
        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
        .build();
    let enable = env.client(&env.moto.endpoint).put_bucket_versioning().bucket(&env.bucket);
    env.runtime.block_on(enable.versioning_configuration(versioning).send()).unwrap();
    let (old, new) = (env.keyring(&env.old_key), env.keyring(&env.new_key));
    let (first, second) = (plaintext(3000, 1), plaintext(4000, 2));
    let v1 = env.put_version("obj", encrypt(&old, &EncryptOptions::new(), &first).unwrap());
    let v2 = env.put_version("obj", encrypt(&old, &EncryptOptions::new(), &second).unwrap());
    let copy = json!({ "rotate-copy": {
        "operation": "reencrypt", "source_keys": [env.old_key], "target_keys": [env.new_key],
        "buckets": [env.bucket], "destination": format!("s3://{}/copies/", env.bucket) } });
    let function = env.function_with(&env.moto.endpoint, copy);
    let run = |profile: &str, version: &str| {
        let mut job = invocation("2.0", Some(json!({"profile": profile})), &env.bucket, "obj", "t");
        job.tasks[0].s3_version_id = Some(version.to_owned());
        env.run(&function, job).results.remove(0)
    };

    let before = env.get("obj");
    let stale = run("rotate", &v1);
    assert_eq!(stale.result_code, ResultCode::PermanentFailure, "{stale:?}");
    assert!(stale.result_string.contains(&format!("version {v1} is not the current version")), "{stale:?}");
    assert_eq!(env.get("obj"), before, "the current version changed");

    let copied = run("rotate-copy", &v1);
    assert_eq!(copied.result_code, ResultCode::Succeeded, "{copied:?}");
    let (message, _) = env.get("copies/obj").expect("the copy");
    assert_eq!(&decrypt(&new, &DecryptOptions::new(), &message).unwrap().plaintext[..], &first[..]);

    let current = run("rotate", &v2);
    assert_eq!(current.result_code, ResultCode::Succeeded, "{current:?}");
    let (message, _) = env.get("obj").unwrap();
    assert_eq!(&decrypt(&new, &DecryptOptions::new(), &message).unwrap().plaintext[..], &second[..]);
    let kept = env.get_version("obj", &v1);
    assert_eq!(&decrypt(&old, &DecryptOptions::new(), &kept).unwrap().plaintext[..], &first[..], "v1 changed");
}

/// An object over the size cap (here a profile's `max_object_bytes`; on Lambda, by default, the cap its
/// memory allows) is a `PermanentFailure` pointing to the CLI, decided from `HeadObject` before any KMS
/// request; an object within it is re-encrypted.
#[test]
fn an_object_too_large_for_lambda_is_refused_before_any_kms_request() {
    let Some(env) = Env::new("too-large") else { return };
    let old = env.keyring(&env.old_key);
    let (large, small) = (
        encrypt(&old, &EncryptOptions::new(), &plaintext(20_000, 1)).unwrap(),
        encrypt(&old, &EncryptOptions::new(), &plaintext(10, 2)).unwrap(),
    );
    let large_len = large.len();
    env.put("large", large);
    env.put("small", small);
    let before = env.get("large");
    let proxy = ForwardingProxy::start(&env.moto.endpoint);
    let capped = json!({ "rotate-capped": {
        "operation": "reencrypt", "source_keys": [env.old_key], "target_keys": [env.new_key],
        "buckets": [env.bucket], "max_object_bytes": large_len - 1 } });
    let function = env.function_with(&proxy.url, capped);
    let job = |key: &str| invocation("2.0", Some(json!({"profile": "rotate-capped"})), &env.bucket, key, "t");

    let refused = env.run(&function, job("large")).results.remove(0);
    assert_eq!(refused.result_code, ResultCode::PermanentFailure, "{refused:?}");
    let expected = format!("too large for Lambda ({large_len} bytes");
    assert!(refused.result_string.contains(&expected) && refused.result_string.contains("CLI"), "{refused:?}");
    let kms_requests = proxy.seen().iter().filter(|seen| seen.method == "POST" && seen.path == "/").count();
    assert_eq!(kms_requests, 0, "KMS was asked: {:?}", proxy.seen());
    assert_eq!(env.get("large"), before);

    let accepted = env.run(&function, job("small")).results.remove(0);
    assert_eq!(accepted.result_code, ResultCode::Succeeded, "{accepted:?}");
}

/// A task that would start inside the margin before the invocation's deadline does nothing and is
/// retried; one whose upload is under way when the margin is reached (its parts held by the proxy) stops,
/// aborts its multipart upload and is retried, leaving the object as it was; the retry succeeds.
#[test]
fn a_task_at_the_invocation_deadline_aborts_its_upload_and_is_retried() {
    use kms_envelope::lambda::batch::DEADLINE_MARGIN;
    use std::time::{Duration, Instant};
    let Some(env) = Env::new("deadline") else { return };
    let old = env.keyring(&env.old_key);
    let data = plaintext(MIN_PART_SIZE + 100_000, 3);
    env.put("big", encrypt(&old, &EncryptOptions::new(), &data).unwrap());
    let before = env.get("big");
    let proxy = ForwardingProxy::start(&env.moto.endpoint);
    let _open = fake_http::OpenOnDrop(&proxy);
    let function = env.function(&proxy.url);
    let job = || invocation("2.0", Some(json!({"profile": "rotate"})), &env.bucket, "big", "t");

    let late = env.runtime.block_on(function.handle_until(job(), Some(Instant::now() + DEADLINE_MARGIN / 2)));
    assert_eq!(late.results[0].result_code, ResultCode::TemporaryFailure, "{:?}", late.results[0]);
    assert!(late.results[0].result_string.contains("stopped before the invocation deadline"), "{:?}", late.results[0]);
    assert!(proxy.seen().is_empty(), "a task past its time made requests: {:?}", proxy.seen());

    proxy.set_policy(|request| match request.method.as_str() {
        "PUT" if request.path.contains("partNumber=") => Verdict::Hold,
        _ => Verdict::Forward,
    });
    let deadline = Instant::now() + DEADLINE_MARGIN + Duration::from_secs(8);
    let stopped = env.runtime.block_on(function.handle_until(job(), Some(deadline))).results.remove(0);
    assert_eq!(stopped.result_code, ResultCode::TemporaryFailure, "{stopped:?}");
    assert!(stopped.result_string.contains("stopped before the invocation deadline"), "{stopped:?}");
    assert!(proxy.most_held() >= 1, "no part was under way: {:?}", proxy.seen());
    assert_eq!(env.open_uploads(), 0, "the multipart upload was left open");
    proxy.open();
    assert_eq!(env.get("big"), before, "the object changed");

    let retried = env.run(&function, job()).results.remove(0);
    assert_eq!(retried.result_code, ResultCode::Succeeded, "{retried:?}");
}

// ------------------------------------------------------------------ attack review (h-attack3)

/// The function on a fake endpoint (S3 and KMS) that answers every request with a 404 `NoSuchKey` whose
/// message holds a carriage return, an ESC and a bidirectional override: profile `rotate` over bucket
/// `data`, in place.
fn hostile_endpoint_function() -> (fake_http::FakeServer, BatchFunction) {
    let server = fake_http::FakeServer::start(|_| {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message>gone&#13;\
                    Succeeded \u{202e}txt.exe</Message><RequestId>r\u{1b}[2J</RequestId></Error>";
        Some(fake_http::response(404, &[("content-type", "application/xml")], body.as_bytes()))
    });
    let endpoint = format!("http://{}", server.address);
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let config = json!({
        "profiles": { "rotate": { "operation": "reencrypt", "source_keys": [key], "target_keys": [key], "buckets": ["data"] } }
    });
    let config = BatchConfig::parse(&config.to_string()).unwrap();
    let retry = aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(1);
    let s3 = aws_sdk_s3::config::Builder::from(&support::sdk_config(&endpoint))
        .force_path_style(true)
        .retry_config(retry)
        .build();
    let kms = KmsClients::new(&support::sdk_config(&endpoint)).with_max_attempts(1);
    let function = BatchFunction::new(config, &kms, aws_sdk_s3::Client::from_conf(s3), TransferOptions::new()).unwrap();
    (server, function)
}

/// Asserts that `result` is a one-line result string of at most 1,024 bytes with nothing a terminal or a
/// report reader would act on (controls, bidirectional overrides).
fn assert_clean(what: &str, result: &kms_envelope::lambda::batch::TaskResult) {
    let text = &result.result_string;
    assert!(!text.is_empty() && text.len() <= 1024, "{what}: {} bytes", text.len());
    assert!(!text.chars().any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)), "{what}: {text:?}");
}

/// Crafted tasks: keys decoding to NUL, `..`, ESC and CR, or not decoding at all (`%`, `%0`, a lone UTF-8
/// lead byte); version ids with ESC, CR and LF; a bucket name of 5,000 characters with controls; an
/// endpoint whose error answers hold the same. Every task is a `PermanentFailure` (retrying cannot help)
/// with a bounded, one-line, escaped result string; nothing is written.
#[test]
fn attack_crafted_tasks_get_permanent_bounded_escaped_results() {
    let (server, function) = hostile_endpoint_function();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let task = |key: &str, version: Option<&str>, bucket: &str| {
        let mut job = invocation("2.0", Some(json!({"profile": "rotate"})), bucket, "k", "t");
        job.tasks[0].s3_key = key.to_owned();
        job.tasks[0].s3_version_id = version.map(str::to_owned);
        job
    };
    let long_bucket = format!("\u{1b}[2J{}\r", "b".repeat(5000));
    let crafted = [
        ("a key of NUL", task("%00", None, "data")),
        ("a key with .. and controls", task("..%2F..%2F%1B%5B2J%0Dx", None, "data")),
        ("a lone %", task("a%", None, "data")),
        ("a % and one digit", task("a%0", None, "data")),
        ("a lone lead byte", task("a%C3", None, "data")),
        ("a version id with controls", task("k", Some("v\u{1b}[2J\r\nSucceeded"), "data")),
        ("a long bucket with controls", task("k", None, &long_bucket)),
    ];
    for (what, job) in crafted {
        let result = runtime.block_on(function.handle(job)).results.remove(0);
        assert_eq!(result.result_code, ResultCode::PermanentFailure, "{what}: {result:?}");
        assert_clean(what, &result);
    }
    let requests = server.requests();
    assert!(requests.iter().all(|r| r.starts_with("HEAD ") || r.starts_with("GET ")), "{requests:?}");
}

/// An invocation of 10,000 tasks (S3 Batch Operations sends one): each gets its own result, in order, with
/// no request for a bucket the profile lacks; and once the deadline is already past, none starts (each a
/// `TemporaryFailure`, no request at all).
#[test]
fn attack_ten_thousand_tasks_and_a_deadline_already_past() {
    let (server, function) = hostile_endpoint_function();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let many = |bucket: &str| {
        let mut job = invocation("2.0", Some(json!({"profile": "rotate"})), bucket, "k", "t");
        let one = job.tasks.remove(0);
        job.tasks = (0..10_000)
            .map(|i| {
                let mut task = one.clone();
                task.task_id = format!("t{i}");
                task
            })
            .collect();
        job
    };
    let response = runtime.block_on(function.handle(many("elsewhere")));
    assert_eq!(response.results.len(), 10_000);
    for (i, result) in response.results.iter().enumerate() {
        assert_eq!(
            (result.task_id.as_str(), result.result_code),
            (format!("t{i}").as_str(), ResultCode::PermanentFailure)
        );
    }
    let past = std::time::Instant::now() - std::time::Duration::from_secs(1);
    let response = runtime.block_on(function.handle_until(many("data"), Some(past)));
    assert!(
        response.results.iter().all(|r| r.result_code == ResultCode::TemporaryFailure),
        "{:?}",
        response.results[0]
    );
    assert!(response.results[0].result_string.contains("stopped before the invocation deadline"));
    assert_eq!(server.requests(), Vec::<String>::new());
}

/// In place, the object is replaced by another writer between the skip check (which read the pinned
/// version) and the re-encryption: the task never writes the re-encryption of the first object over the
/// second. Here the swap happens when the re-encryption's first read arrives: the object ends as the
/// other writer left it, and the task is retried (`TemporaryFailure`, "changed").
#[test]
fn attack_an_object_swapped_after_the_skip_check_is_not_overwritten() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Some(env) = Env::new("attack-swap") else { return };
    let old = env.keyring(&env.old_key);
    let (first, second) = (plaintext(5000, 1), plaintext(6000, 2));
    env.put("obj", encrypt(&old, &EncryptOptions::new(), &first).unwrap());
    let replacement = encrypt(&old, &EncryptOptions::new(), &second).unwrap();
    let proxy = ForwardingProxy::start(&env.moto.endpoint);
    let function = env.function(&proxy.url);
    let (gets, endpoint, bucket) =
        (std::sync::Arc::new(AtomicUsize::new(0)), env.moto.endpoint.clone(), env.bucket.clone());
    let swap = replacement.clone();
    proxy.set_policy(move |request| {
        let object_get =
            request.method == "GET" && request.path.contains("/obj") && request.header("x-amz-target").is_none();
        // The skip check reads the header (GET 1); the re-encryption's first read is GET 2.
        if object_get && gets.fetch_add(1, Ordering::SeqCst) == 1 {
            let config =
                aws_sdk_s3::config::Builder::from(&support::sdk_config(&endpoint)).force_path_style(true).build();
            let client = aws_sdk_s3::Client::from_conf(config);
            let put = client.put_object().bucket(&bucket).key("obj").body(swap.clone().into()).send();
            support::run(put).expect("the other writer's PutObject");
        }
        Verdict::Forward
    });
    let result = env.run(&function, invocation("2.0", Some(json!({"profile": "rotate"})), &env.bucket, "obj", "t"));
    let result = &result.results[0];
    assert_eq!(result.result_code, ResultCode::TemporaryFailure, "{result:?}");
    assert!(result.result_string.contains("changed"), "{result:?}");
    assert_eq!(env.get("obj").unwrap().0, replacement, "the other writer's object was replaced");
    assert_eq!(env.open_uploads(), 0);
}
