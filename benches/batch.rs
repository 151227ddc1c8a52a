//! The S3 Batch Operations function's throughput and KMS calls per object (issue #26), through the real
//! `kms-envelope-batch` binary in Lambda Runtime Interface Emulators, S3 and KMS in moto behind a counting
//! proxy, the job played by tests/common/batch_job.rs. BENCH_OBJECTS (default 1,000) messages of 1 to 4 KiB
//! under an old key are re-encrypted in place under a new one, once by a profile without `cache` and once,
//! in a fresh bucket and fresh execution environments, by one with it; then each job runs again (every task
//! skipped). Entry point: scripts/batch-bench.sh, the bench harness's `batch` (it starts moto, finds the
//! emulator, and prints the goal lines from the figures printed here).
//!
//! What the code does per object, so what the goal lines hold it to: the skip check reads the header and
//! tries the *target* keys on its data keys (an object under the old key has none of theirs: no KMS call);
//! the re-encryption makes one `Decrypt` (old key) and one `GenerateDataKey` (new key), so 2 per object;
//! with `cache`, the new data key is reused for up to `max_messages` objects: 1 `Decrypt` per object plus
//! one `GenerateDataKey` per cache entry. Each execution environment also makes one `GenerateDataKey` once,
//! to learn the target keys' data-key set; that is inside the per-object figures printed.
//!
//! Objects per second are moto's and this machine's, not AWS's: no goal, a figure for the cost model.
#![cfg(feature = "batch")]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/batch_job.rs"]
mod engine;
#[path = "../tests/common/http.rs"]
mod fake_http;
#[path = "../tests/common/rie.rs"]
mod rie;

use std::time::Instant;

use engine::{Function, Schema};
use kms_envelope::{EncryptOptions, KmsClients, encrypt};
use serde_json::json;

/// The data key of a caching profile serves this many messages at most.
const MAX_MESSAGES: u64 = 1000;

struct Run {
    objects: usize,
    seconds: f64,
    kms: usize,
    decrypts: usize,
    generates: usize,
    rerun_seconds: f64,
    rerun_kms: usize,
}

fn main() {
    let endpoint = std::env::var("KMS_ENVELOPE_MOTO_ENDPOINT").expect("KMS_ENVELOPE_MOTO_ENDPOINT (moto's URL)");
    let rie =
        std::path::PathBuf::from(std::env::var_os("KMS_ENVELOPE_RIE").expect("KMS_ENVELOPE_RIE (scripts/rie.sh)"));
    let objects: usize = std::env::var("BENCH_OBJECTS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let environments: usize = std::env::var("BENCH_ENVIRONMENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(2);
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(aws_sdk_kms::config::SharedCredentialsProvider::new(
            aws_sdk_kms::config::Credentials::new("testing", "testing", None, None, "bench"),
        ))
        .build();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let s3 = engine::s3_client(&config);
    let kms = aws_sdk_kms::Client::new(&config);
    let new_key = |what: &str| {
        let key = runtime.block_on(kms.create_key().description(what).send()).expect("CreateKey in moto");
        key.key_metadata().and_then(|m| m.arn()).expect("a key ARN").to_owned()
    };
    let (old_key, new_key) = (new_key("batch bench: old"), new_key("batch bench: new"));
    let old = KmsClients::new(&config).keyring(&old_key).unwrap();
    let work = tempfile::tempdir().unwrap();

    let run = |cache: bool| -> Run {
        let bucket = format!("batch-bench-{}-{}", std::process::id(), if cache { "cache" } else { "plain" });
        runtime.block_on(s3.create_bucket().bucket(&bucket).send()).unwrap();
        let keys: Vec<String> = (0..objects).map(|i| format!("bench/{i:05} ü+%.esdk")).collect();
        for (i, key) in keys.iter().enumerate() {
            let plaintext: Vec<u8> = (0..1024 + i * 997 % 3072).map(|b| (b * 31 + i) as u8).collect();
            let body = encrypt(&old, &EncryptOptions::new(), &plaintext).unwrap();
            runtime.block_on(s3.put_object().bucket(&bucket).key(key).body(body.into()).send()).unwrap();
        }
        let manifest = engine::manifest(&bucket, keys.iter().map(String::as_str));
        let mut profile = json!({
            "operation": "reencrypt", "source_keys": [old_key], "target_keys": [new_key], "buckets": [bucket] });
        if cache {
            profile["cache"] = json!({ "max_age_seconds": 300, "max_messages": MAX_MESSAGES });
        }
        let profiles = json!({ "profiles": { "rotate": profile } });
        let (proxy, counts) = engine::counting_proxy(&endpoint);
        let logs = work.path().join(&bucket);
        std::fs::create_dir_all(&logs).unwrap();
        let function = Function::start(&rie, engine_binary(), environments, &logs, |command| {
            engine::function_env(command, &proxy.url, &profiles);
        });
        let schema = |_| Schema::V2(json!({ "profile": "rotate" }));
        let started = Instant::now();
        let outcomes = function.run_job(&manifest, "bench", schema);
        let seconds = started.elapsed().as_secs_f64();
        let failed: Vec<_> = outcomes.iter().filter(|o| o.code != "Succeeded").collect();
        assert!(failed.is_empty(), "{} tasks failed, the first: {:?}\n{}", failed.len(), failed[0], function.logs());
        let (kms, decrypts, generates) = (counts.kms(), counts.of("KMS Decrypt"), counts.of("KMS GenerateDataKey"));
        counts.clear();
        let started = Instant::now();
        let rerun = function.run_job(&manifest, "bench-again", schema);
        let rerun_seconds = started.elapsed().as_secs_f64();
        assert!(rerun.iter().all(|o| o.code == "Succeeded"), "the second run failed a task");
        assert_eq!(counts.writes(), 0, "the second run wrote");
        Run { objects, seconds, kms, decrypts, generates, rerun_seconds, rerun_kms: counts.kms() }
    };
    let plain = run(false);
    let cached = run(true);

    println!(
        "issue #26 batch: {objects} objects of 1-4 KiB re-encrypted in place by kms-envelope-batch ({} build) in \
         {environments} RIE environments, S3+KMS in moto behind a counting proxy; {} cores, load {}",
        if cfg!(debug_assertions) { "debug-assertions" } else { "release" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" "),
    );
    for (name, run) in [("without cache", &plain), (&*format!("cache (max_messages {MAX_MESSAGES})"), &cached)] {
        let per_object = |n: usize| n as f64 / run.objects as f64;
        println!(
            "  {name:<28} {:7.1} objects/s ({:5.1} ms per object per environment); KMS per object {:.3} \
             (Decrypt {:.3}, GenerateDataKey {:.3}); re-run, all skipped: {:7.1} objects/s, KMS per object {:.3}",
            run.objects as f64 / run.seconds,
            run.seconds * 1000.0 * environments as f64 / run.objects as f64,
            per_object(run.kms),
            per_object(run.decrypts),
            per_object(run.generates),
            run.objects as f64 / run.rerun_seconds,
            per_object(run.rerun_kms),
        );
    }
    // The figures the goal lines of the bench harness (examples/bench.rs) hold to their goals.
    println!("kms_calls_per_object_cached {}", cached.kms as f64 / objects as f64);
    println!("kms_calls_per_object_uncached {}", plain.kms as f64 / objects as f64);
}

/// The binary under test, built by cargo beside this bench.
fn engine_binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_kms-envelope-batch"))
}
