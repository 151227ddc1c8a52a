//! S3 Batch Operations, played for the tests and the bench: a CSV manifest written as S3 wants it, the
//! `kms-envelope-batch` binary in Lambda Runtime Interface Emulators (one per concurrent execution
//! environment), one invocation per manifest row, `TemporaryFailure` retried, and the completion report.
//! Needs `mod common;`, `#[path = "common/rie.rs"] mod rie;` and `#[path = "common/http.rs"] mod fake_http;`
//! beside it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::fake_http::{ForwardingProxy, Verdict};
use crate::rie::Rie;

/// How often a task that answered `TemporaryFailure` is tried in all before it counts as failed.
pub const ATTEMPTS: usize = 3;

/// `key` as a row of a CSV manifest holds it. S3 Batch Operations: "The contents of the manifest must be URL
/// encoded" (Amazon S3 User Guide, "S3 Batch Operations basics", Specifying a manifest; and "Creating a
/// manifest file" in batch-ops-create-job: object keys must be URL-encoded), and the task's `s3Key` is that
/// field as it stands, which AWS's example functions decode with `urllib.parse.unquote_plus` (User Guide,
/// batch-ops-invoke-lambda). The form S3 Inventory reports (the other manifest S3 takes) use is form
/// encoding: letters, digits and `-_.*` as they are, a space as `+`, every other UTF-8 byte as `%XX`, `/`
/// included. So a key that already looks encoded, `a%2Fb`, is `a%252Fb` in the manifest.
pub fn manifest_key(key: &str) -> String {
    let mut out = String::new();
    for byte in key.bytes() {
        match byte {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// A manifest in S3's `S3BatchOperations_CSV_20180820` format with the fields `Bucket,Key`: one row a key.
pub fn manifest<'a>(bucket: &str, keys: impl IntoIterator<Item = &'a str>) -> String {
    keys.into_iter().map(|key| format!("{bucket},{}\n", manifest_key(key))).collect()
}

/// One row of a manifest: bucket, URL-encoded key and version id as they stand in it.
#[derive(Clone, Debug)]
pub struct Row {
    pub bucket: String,
    pub key: String,
    pub version: Option<String>,
}

/// The rows of a manifest (URL-encoded fields hold no comma, quote or line break).
pub fn rows(manifest: &str) -> Vec<Row> {
    manifest
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert!((2..=3).contains(&fields.len()), "not a Bucket,Key[,VersionId] row: {line:?}");
            let version = fields.get(2).filter(|v| !v.is_empty()).map(|v| (*v).to_owned());
            Row { bucket: fields[0].to_owned(), key: fields[1].to_owned(), version }
        })
        .collect()
}

/// The invocation schema a task is sent in.
#[derive(Clone, Debug)]
pub enum Schema {
    /// 1.0: no user arguments, the bucket as `s3BucketArn`.
    V1,
    /// 2.0: the job's user arguments, the bucket as `s3Bucket`.
    V2(serde_json::Value),
}

/// The event S3 Batch Operations sends for one row (Lambda Developer Guide, "Invoke a Lambda function with
/// Amazon S3 batch events"; User Guide, batch-ops-invoke-lambda, for schema 2.0).
pub fn event(schema: &Schema, job: &str, task: &str, row: &Row) -> serde_json::Value {
    let mut entry = serde_json::json!({ "taskId": task, "s3Key": row.key, "s3VersionId": row.version });
    let mut job = serde_json::json!({ "id": job });
    let version = match schema {
        Schema::V1 => {
            entry["s3BucketArn"] = format!("arn:aws:s3:::{}", row.bucket).into();
            "1.0"
        }
        Schema::V2(arguments) => {
            entry["s3Bucket"] = row.bucket.clone().into();
            job["userArguments"] = arguments.clone();
            "2.0"
        }
    };
    serde_json::json!({
        "invocationSchemaVersion": version,
        "invocationId": format!("{task}-invocation"),
        "job": job,
        "tasks": [entry],
    })
}

/// What one task came to.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// `Succeeded`, `TemporaryFailure` (after [`ATTEMPTS`] tries) or `PermanentFailure`.
    pub code: String,
    /// The function's `resultString`, or why the invocation itself failed.
    pub text: String,
    /// Invocations spent on the task.
    pub attempts: usize,
}

/// The function: the binary in `environments` emulators, each set up by `configure`.
pub struct Function {
    emulators: Vec<Rie>,
}

impl Function {
    /// Starts `environments` emulators around `binary`, their logs in `logs`.
    pub fn start(
        rie: &Path,
        binary: &Path,
        environments: usize,
        logs: &Path,
        configure: impl Fn(&mut Command),
    ) -> Self {
        let emulators = (0..environments)
            .map(|i| Rie::start(rie, binary, &logs.join(format!("rie-{i}.log")), &configure))
            .collect();
        Self { emulators }
    }

    /// Runs the job over `manifest` as Batch does: each row one invocation with one task, the rows spread over
    /// the execution environments, a `TemporaryFailure` tried again. Outcomes in manifest order.
    pub fn run_job(&self, manifest: &str, job: &str, schema: impl Fn(usize) -> Schema + Sync) -> Vec<Outcome> {
        let rows = rows(manifest);
        let next = AtomicUsize::new(0);
        let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; rows.len()]);
        std::thread::scope(|scope| {
            for emulator in &self.emulators {
                let (rows, next, outcomes, schema) = (&rows, &next, &outcomes, &schema);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(row) = rows.get(i) else { return };
                        let outcome = run_task(emulator, &schema(i), job, &format!("{job}-task-{i}"), row);
                        outcomes.lock().unwrap()[i] = Some(outcome);
                    }
                });
            }
        });
        outcomes.into_inner().unwrap().into_iter().map(|o| o.expect("every row ran")).collect()
    }

    /// What the emulators and the function printed.
    pub fn logs(&self) -> String {
        self.emulators.iter().map(Rie::log_text).collect::<Vec<_>>().join("\n")
    }
}

fn run_task(emulator: &Rie, schema: &Schema, job: &str, task: &str, row: &Row) -> Outcome {
    let event = event(schema, job, task, row).to_string();
    for attempt in 1..=ATTEMPTS {
        let (status, body) = emulator.invoke(&event);
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        // Batch reads the one result of the task it sent; an answer without it counts as
        // `treatMissingKeysAs`, and a function error fails the task.
        let result = answer["results"].as_array().and_then(|r| r.iter().find(|r| r["taskId"] == task));
        let outcome = match (status, result) {
            (200, Some(result)) => Outcome {
                code: result["resultCode"].as_str().unwrap_or("PermanentFailure").to_owned(),
                text: result["resultString"].as_str().unwrap_or_default().to_owned(),
                attempts: attempt,
            },
            (200, None) => Outcome {
                code: answer["treatMissingKeysAs"].as_str().unwrap_or("PermanentFailure").to_owned(),
                text: format!("no result for the task in the answer: {body}"),
                attempts: attempt,
            },
            _ => Outcome {
                code: "PermanentFailure".into(),
                text: format!("Lambda returned function error (HTTP {status}): {body}"),
                attempts: attempt,
            },
        };
        if outcome.code != "TemporaryFailure" || attempt == ATTEMPTS {
            return outcome;
        }
    }
    unreachable!("the last attempt returns")
}

/// The completion report Batch writes (`Report_CSV_20180820`, User Guide "Examples: S3 Batch Operations
/// completion reports"): one row a task, `Bucket,Key,VersionId,TaskStatus,ErrorCode,HTTPStatusCode,
/// ResultMessage` in the report's schema line, written as its Lambda examples show them:
/// `bucket,key,,failed,200,PermanentFailure,"message"`, with the key as the manifest had it.
pub fn completion_report(manifest: &str, outcomes: &[Outcome]) -> String {
    let quote = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
    rows(manifest)
        .iter()
        .zip(outcomes)
        .map(|(row, outcome)| {
            let (status, code) = match outcome.code.as_str() {
                "Succeeded" => ("succeeded", ""),
                code => ("failed", code),
            };
            let version = row.version.as_deref().unwrap_or_default();
            format!("{},{},{version},{status},200,{code},{}\n", row.bucket, row.key, quote(&outcome.text))
        })
        .collect()
}

/// What reached the server behind a [`counting_proxy`]: `KMS <operation>` and `S3 <method>`, counted.
#[derive(Clone, Debug, Default)]
pub struct Counts(Arc<Mutex<BTreeMap<String, usize>>>);

impl Counts {
    /// Requests counted as `what` (`KMS Decrypt`, `S3 PUT`, ...).
    pub fn of(&self, what: &str) -> usize {
        self.0.lock().unwrap().get(what).copied().unwrap_or(0)
    }

    /// KMS requests of any operation.
    pub fn kms(&self) -> usize {
        self.0.lock().unwrap().iter().filter(|(what, _)| what.starts_with("KMS ")).map(|(_, n)| n).sum()
    }

    /// S3 requests that write or delete (PutObject, multipart uploads, DeleteObject).
    pub fn writes(&self) -> usize {
        ["S3 PUT", "S3 POST", "S3 DELETE"].iter().map(|what| self.of(what)).sum()
    }

    /// Forgets what was counted so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// A proxy in front of `upstream` (moto) that forwards everything and counts it.
pub fn counting_proxy(upstream: &str) -> (ForwardingProxy, Counts) {
    let (proxy, counts) = (ForwardingProxy::start(upstream), Counts::default());
    let seen = counts.clone();
    proxy.set_policy(move |request| {
        let what = match request.header("x-amz-target") {
            Some(target) => format!("KMS {}", target.rsplit('.').next().unwrap_or_default()),
            None => format!("S3 {}", request.method),
        };
        *seen.0.lock().unwrap().entry(what).or_default() += 1;
        Verdict::Forward
    });
    (proxy, counts)
}

/// The function's environment: S3 and KMS at `endpoint`, test credentials, `profiles` as its configuration,
/// nothing AWS- or kms-envelope-related from the host.
pub fn function_env(command: &mut Command, endpoint: &str, profiles: &serde_json::Value) {
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("AWS_") || text.starts_with("KMS_ENVELOPE_") {
            command.env_remove(&name);
        }
    }
    command
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("KMS_ENVELOPE_BATCH_PROFILES", profiles.to_string());
}

/// An S3 client for moto (or a proxy in front of it) at `endpoint`.
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build())
}
