//! The S3 Batch Operations function as Batch drives it: the real `kms-envelope-batch` binary in AWS's Lambda
//! Runtime Interface Emulator (two execution environments at once), S3 and KMS in moto behind a proxy that
//! counts what reaches them, and this test as the Batch engine (tests/common/batch_job.rs): a CSV manifest
//! of URL-encoded keys, one invocation per row in schema 2.0 (and 1.0 for some), the completion report.
//! Without moto, the emulator or the Python ESDK the test prints "SKIPPED: ..." (and fails under CI=true).
#![cfg(feature = "batch")]

use crate::common;
use crate::engine;
use crate::rie;
use crate::support;

use std::collections::BTreeMap;
use std::time::Instant;

use engine::{Function, Schema};
use kms_envelope::{DecryptOptions, EncryptOptions, decrypt, encrypt};
use serde_json::json;

/// Messages in the bucket (and one object that is not a message).
const MESSAGES: usize = 320;
/// Execution environments the job runs in at once (emulators).
const ENVIRONMENTS: usize = 2;

/// Keys S3 Batch Operations must carry through its URL encoding: a space, `+`, `%`, `/`, non-ASCII, a key
/// that looks encoded already next to the key it would decode to, a trailing space.
const AWKWARD_KEYS: [&str; 12] = [
    "with space.esdk",
    "plus+sign.esdk",
    "per%cent.esdk",
    "a%2Fb",
    "a/b",
    "dir/sub/deep/file.esdk",
    "über/grüße ü.esdk",
    "日本/日本語 ファイル.esdk",
    "mixed +%/ü日本 a%2Fb.esdk",
    "trailing space ",
    "a+b",
    "a b",
];
const PLANTED: &str = "planted/not a message.txt";

fn plaintext(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i.wrapping_add(seed).wrapping_mul(2654435761)) >> 13) as u8).collect()
}

/// The messages' keys and plaintexts: the awkward keys, then numbered ones with a few awkward suffixes; a few
/// KiB each, one empty, one of several frames.
fn messages() -> Vec<(String, Vec<u8>)> {
    let suffixes = ["", " x", "+y", "%z", "ü"];
    let names = AWKWARD_KEYS.iter().map(|k| (*k).to_owned());
    let numbered = (AWKWARD_KEYS.len()..MESSAGES).map(|i| format!("data/{i:04}{}.esdk", suffixes[i % suffixes.len()]));
    names
        .chain(numbered)
        .enumerate()
        .map(|(i, key)| {
            let len = match i {
                3 => 0,
                20 => 200_000,
                _ => 100 + i * 997 % 6000,
            };
            (key, plaintext(len, i))
        })
        .collect()
}

/// Every object's (key, ETag, LastModified, size), from a listing.
fn listing(runtime: &tokio::runtime::Runtime, s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = runtime.block_on(s3.list_objects_v2().bucket(bucket).set_continuation_token(token).send()).unwrap();
        for object in page.contents() {
            out.push(format!(
                "{:?} {:?} {:?} {:?}",
                object.key(),
                object.e_tag(),
                object.last_modified(),
                object.size()
            ));
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return out;
        }
    }
}

/// A bucket of messages under an old KMS key (and one planted object that is not a message), a manifest
/// naming them all, run as a Batch job through the real binary under the emulator with a profile that
/// re-encrypts in place under a new key: every message task `Succeeded` and the completion report says so;
/// every object now opens with the new key only (our library for all, the Python ESDK for the awkward keys)
/// to its plaintext; the planted object is a `PermanentFailure` and stays as it was. A second run of the
/// same manifest reports every message `Succeeded` with no write at all: every object's ETag and
/// LastModified stay as they were.
#[test]
fn a_manifest_run_as_batch_operations_rotates_every_object_once() {
    let Some(moto) = support::Moto::get() else { return };
    let Some(rie) = rie::emulator() else { return };
    let Some(python) = common::python() else { return };
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let s3 = engine::s3_client(&support::sdk_config(&moto.endpoint));
    let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let bucket = format!("batch-job-{}-{unique}", std::process::id());
    runtime.block_on(s3.create_bucket().bucket(&bucket).send()).unwrap();
    let (old_key, new_key) = (moto.create_key(), moto.create_key());
    let clients = moto.clients();
    let (old, new) = (clients.keyring(&old_key).unwrap(), clients.keyring(&new_key).unwrap());

    let messages = messages();
    for (key, data) in &messages {
        let body = encrypt(&old, &EncryptOptions::new(), data).unwrap();
        runtime.block_on(s3.put_object().bucket(&bucket).key(key).body(body.into()).send()).unwrap();
    }
    let planted = b"a plain text file, not a message\n".to_vec();
    runtime.block_on(s3.put_object().bucket(&bucket).key(PLANTED).body(planted.clone().into()).send()).unwrap();
    let manifest = engine::manifest(&bucket, messages.iter().map(|(k, _)| k.as_str()).chain([PLANTED]));
    assert!(manifest.contains(&format!("{bucket},a%252Fb\n")) && manifest.contains(",a%2Fb\n"), "{manifest}");
    let set_up = started.elapsed();

    let (proxy, counts) = engine::counting_proxy(&moto.endpoint);
    let profiles = json!({
        "default_profile": "rotate",
        "profiles": { "rotate": {
            "operation": "reencrypt", "source_keys": [old_key], "target_keys": [new_key], "buckets": [bucket] } }
    });
    let work = tempfile::tempdir().unwrap();
    let binary = assert_cmd::cargo::cargo_bin!("kms-envelope-batch");
    let function = Function::start(&rie, binary, ENVIRONMENTS, work.path(), |command| {
        engine::function_env(command, &proxy.url, &profiles);
    });
    // Schema 2.0 naming the profile, and every 40th task in schema 1.0 (the default profile).
    let schema = |row: usize| {
        if row % 40 == 7 { Schema::V1 } else { Schema::V2(json!({ "profile": "rotate" })) }
    };

    let first_started = Instant::now();
    let first = function.run_job(&manifest, "job-1", schema);
    let first_time = first_started.elapsed();
    let report = engine::completion_report(&manifest, &first);
    let logs = || function.logs();
    for ((key, _), outcome) in messages.iter().zip(&first) {
        assert_eq!(outcome.code, "Succeeded", "{key:?}: {outcome:?}\n{}", logs());
        assert!(outcome.text.starts_with("re-encrypted into"), "{key:?}: {outcome:?}");
    }
    let planted_outcome = &first[MESSAGES];
    assert_eq!(planted_outcome.code, "PermanentFailure", "{planted_outcome:?}");
    assert_eq!(planted_outcome.attempts, 1, "a permanent failure is not retried: {planted_outcome:?}");
    let failed: Vec<&str> = report.lines().filter(|line| line.contains(",failed,")).collect();
    let planted_row = format!("{bucket},{},,failed,200,PermanentFailure,\"", engine::manifest_key(PLANTED));
    assert!(failed.len() == 1 && failed[0].starts_with(&planted_row), "{report}");
    assert_eq!(report.lines().filter(|line| line.contains(",,succeeded,200,,\"re-encrypted")).count(), MESSAGES);
    let (first_writes, first_counts) = (counts.writes(), format!("{counts:?}"));
    assert!(first_writes >= MESSAGES, "{first_writes} writes for {MESSAGES} re-encrypted objects: {counts:?}");

    let verify_started = Instant::now();
    let mut bodies = BTreeMap::new();
    for (key, data) in &messages {
        let got = runtime.block_on(s3.get_object().bucket(&bucket).key(key).send()).unwrap();
        let message = runtime.block_on(got.body.collect()).unwrap().into_bytes().to_vec();
        let opened = decrypt(&new, &DecryptOptions::new(), &message).unwrap_or_else(|e| panic!("{key:?}: {e}"));
        assert_eq!(&opened.plaintext[..], &data[..], "{key:?}");
        assert!(decrypt(&old, &DecryptOptions::new(), &message).is_err(), "{key:?} still opens with the old key");
        bodies.insert(key.as_str(), message);
    }
    let got = runtime.block_on(s3.get_object().bucket(&bucket).key(PLANTED).send()).unwrap();
    assert_eq!(runtime.block_on(got.body.collect()).unwrap().into_bytes().to_vec(), planted);

    // The reference implementation agrees, for every awkward key: the new key opens it, the old one does not.
    let dir = work.path().join("python");
    std::fs::create_dir_all(&dir).unwrap();
    let mut lines = String::new();
    for (i, key) in AWKWARD_KEYS.iter().enumerate() {
        let message = dir.join(format!("{i}.esdk"));
        std::fs::write(&message, &bodies[key]).unwrap();
        for (arn, out) in [(&new_key, format!("{i}.new")), (&old_key, format!("{i}.old"))] {
            let (message, out) = (message.to_str().unwrap(), dir.join(out));
            let args = ["decrypt", "--in", message, "--out", out.to_str().unwrap(), "--kms-key", arn];
            let args: Vec<&str> = args.into_iter().chain(["--kms-endpoint", &moto.endpoint]).collect();
            lines.push_str(&serde_json::to_string(&args).unwrap());
            lines.push('\n');
        }
    }
    let out = common::peer_batch(&python, lines);
    let results: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(results.len(), 2 * AWKWARD_KEYS.len(), "{}", String::from_utf8_lossy(&out.stderr));
    for (i, key) in AWKWARD_KEYS.iter().enumerate() {
        assert_eq!(results[2 * i]["status"], 0, "the Python ESDK with the new key, {key:?}: {}", results[2 * i]);
        assert_eq!(std::fs::read(dir.join(format!("{i}.new"))).unwrap(), messages[i].1, "{key:?}");
        assert_eq!(results[2 * i + 1]["status"], 1, "the Python ESDK with the old key, {key:?}");
    }
    let verify_time = verify_started.elapsed();

    let before = listing(&runtime, &s3, &bucket);
    counts.clear();
    let second_started = Instant::now();
    let second = function.run_job(&manifest, "job-2", schema);
    let second_time = second_started.elapsed();
    for ((key, _), outcome) in messages.iter().zip(&second) {
        assert_eq!(outcome.code, "Succeeded", "{key:?} on the second run: {outcome:?}");
        assert!(!outcome.text.starts_with("re-encrypted into"), "{key:?} re-encrypted twice: {outcome:?}");
    }
    assert_eq!(second[MESSAGES].code, "PermanentFailure", "{:?}", second[MESSAGES]);
    assert_eq!(counts.writes(), 0, "the second run wrote: {counts:?}");
    assert_eq!(listing(&runtime, &s3, &bucket), before, "the second run changed objects");

    eprintln!(
        "batch job of {} objects in {ENVIRONMENTS} environments: set-up {:.1}s, first run {:.1}s \
         ({first_counts}), checks {:.1}s, second run {:.1}s ({:?}); {:.1}s in all",
        MESSAGES + 1,
        set_up.as_secs_f64(),
        first_time.as_secs_f64(),
        verify_time.as_secs_f64(),
        second_time.as_secs_f64(),
        counts,
        started.elapsed().as_secs_f64(),
    );
}

/// scripts/package-batch.sh puts the binary where an OS-only runtime (`provided.al2023`) starts it: one entry,
/// `bootstrap`, executable, with the binary's bytes; and it refuses a binary that needs a newer glibc than
/// AL2023's 2.34 (this test's build, linked here, passes the check or the script says why not).
#[test]
fn the_function_zip_holds_bootstrap_where_lambda_starts_it() {
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("function.zip");
    let binary = assert_cmd::cargo::cargo_bin!("kms-envelope-batch");
    let out =
        std::process::Command::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package-batch.sh"))
            .arg("--binary")
            .arg(binary)
            .arg("--out")
            .arg(&zip)
            .output()
            .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sha = common::hex(&<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(binary).unwrap()));
    assert_eq!(common::zip_entry(&zip), format!("bootstrap 0o100755 {sha}\n"));
}
