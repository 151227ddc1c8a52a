//! The S3 Batch Operations function (feature `batch`): for each object of a Batch job, re-encrypt it in
//! place under new KMS keys, encrypt a plaintext object into a message, or decrypt a message, into a
//! destination prefix, as a *profile* of the function's own configuration says.
//!
//! # Not a confused deputy
//!
//! Whoever may create a Batch job that names this function borrows its role's `kms:Decrypt` and S3
//! rights. So a job chooses nothing but which configured profile runs: the operation, the source and
//! target keys, the buckets a task may name and the destination all come from [`PROFILES_VAR`]. A job's
//! user arguments (schema 2.0) may hold only [`PROFILE_ARGUMENT`]; anything else (a key, a bucket, an
//! operation), an unknown profile, a bucket the profile does not list: every task is a `PermanentFailure`
//! before any S3 or KMS request. `decrypt` writes plaintext objects and runs only from a profile that says
//! `"allow_plaintext_output": true`.
//!
//! # The configuration
//!
//! [`PROFILES_VAR`] holds JSON, read once per execution environment:
//!
//! ```json
//! {
//!   "default_profile": "rotate-2026",
//!   "profiles": {
//!     "rotate-2026": {
//!       "operation": "reencrypt",
//!       "source_keys": ["arn:aws:kms:us-east-1:111122223333:key/old..."],
//!       "target_keys": ["arn:aws:kms:us-east-1:111122223333:key/new..."],
//!       "buckets": ["my-bucket"],
//!       "cache": { "max_age_seconds": 300, "max_messages": 1000 }
//!     },
//!     "seal-uploads": {
//!       "operation": "encrypt",
//!       "target_keys": ["arn:aws:kms:us-east-1:111122223333:key/new..."],
//!       "buckets": ["incoming"],
//!       "destination": "s3://sealed/incoming/"
//!     }
//!   }
//! }
//! ```
//!
//! `reencrypt` works in place unless a `destination` is given (then into `destination` + the task's key);
//! `encrypt` and `decrypt` need one. `default_profile` runs for jobs that name none (schema 1.0 has no user
//! arguments). `legacy_sources: true` reads non-committing messages too (to upgrade them). `cache` reuses
//! the new data key across small objects (committing unsigned target suites only; each execution
//! environment has its own cache). `skip_check` (`reencrypt`: `"full"`, the default, or `"header"`) and
//! `max_object_bytes` are described below.
//!
//! # Results
//!
//! `Succeeded`; `TemporaryFailure` where a retry can succeed (KMS or S3 throttling, `SlowDown` and 503, a
//! 5xx, a timeout, an object that changed while it was re-encrypted in place: the retry repeats the
//! authenticated skip check; a task stopped before the invocation deadline); `PermanentFailure` otherwise
//! (a missing object, not a message, a damaged one, no key opens it, too large for Lambda), with a
//! one-line escaped reason that never holds plaintext. Which failures are retried is decided where the
//! SDK's error is converted, from its kind, HTTP status and error code ([`Error::is_transient`]), never
//! from error text, which a message (an EDK's key ARN) or an endpoint may choose.
//!
//! # The skip check
//!
//! A retried task does no work twice: an object already under exactly the target keys is left alone and
//! reported `Succeeded`. Since `Succeeded` tells the operator the old key may be retired, by default the
//! whole message must first authenticate under the target keys ([`SkipCheck::Full`]: the data key unwrapped
//! by one KMS call or a cache hit, the key commitment, the header tag, every frame and the signature, the
//! plaintext discarded); the result says "authenticated in full". A profile with `"skip_check": "header"`
//! accepts the cheaper check of the header alone ([`SkipCheck::Header`]: one small ranged GET), and its
//! result says "header authenticated; body not read": a message whose body was cut or damaged after a
//! good header is then reported `Succeeded`. An object still under the old keys costs one header GET
//! either way; the rest is read only once the header passed.
//!
//! # Versions
//!
//! A task that names a version (`s3VersionId`) acts on that version: it is read (and skip-checked) by its
//! version id. In place, the new message becomes the object's new current version only if the named one
//! is still the current version (checked first, and again by `If-Match` on its ETag when the upload
//! completes); otherwise the task is a `PermanentFailure` "version ... is not the current version". Older
//! versions stay readable with the old keys until they expire.
//!
//! # Lambda limits
//!
//! * **Deadline.** [`BatchFunction::handle_until`] (the binary passes the invocation's deadline) stops a
//!   task [`DEADLINE_MARGIN`] before the deadline, aborts its multipart upload and answers
//!   `TemporaryFailure` "stopped before the invocation deadline"; Batch retries it.
//! * **Size.** An object larger than the function can be trusted to handle within 900 s is a
//!   `PermanentFailure` "too large for Lambda (N bytes ...); re-encrypt it with the CLI", decided from its
//!   `HeadObject` before any KMS request. The cap is [`lambda_size_cap`] of the function's memory
//!   ([`MEMORY_VAR`]; Lambda gives one vCPU per 1,769 MB) at [`BYTES_PER_SECOND_PER_VCPU`], a conservative
//!   estimate **to be confirmed by measurement**: about 2.2 GB at 256 MB. A profile's `max_object_bytes`
//!   replaces it (lower it to be safe, raise it once measured; tests set a tiny one). Off Lambda (no
//!   [`MEMORY_VAR`]) only `max_object_bytes` caps.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::error::{Error, Result};
use crate::escape::{Escaped, OneLine};
use crate::format::suite::CommitmentPolicy;
use crate::keyring::kms::{KmsArn, KmsClients};
use crate::keyring::{CacheLimits, CachingKeyring, Keyring, MaterialsCache};
use crate::s3::{S3Object, TransferOptions};
use crate::stream::{
    DecryptOptions, EncryptOptions, ReencryptOptions, Rotation, SkipCheck, TargetKeys, rotation_status_with,
};

/// The environment variable holding the function's profiles, as JSON (see the module documentation).
pub const PROFILES_VAR: &str = "KMS_ENVELOPE_BATCH_PROFILES";
/// The one user argument a job may pass: the name of the profile to run.
pub const PROFILE_ARGUMENT: &str = "profile";
/// The most user arguments S3 Batch Operations passes.
pub const MAX_USER_ARGUMENTS: usize = 10;
/// The longest user argument value S3 Batch Operations passes, in characters.
pub const MAX_USER_ARGUMENT_LENGTH: usize = 1024;
/// The longest user argument key S3 Batch Operations passes, in characters.
pub const MAX_USER_ARGUMENT_KEY_LENGTH: usize = 64;
/// The longest result string this function returns, in bytes (it lands in the job's completion report).
pub const MAX_RESULT_STRING: usize = 1024;
/// How many data keys a caching profile keeps (one is in use at a time; a few cover a rotation of limits).
const CACHE_CAPACITY: usize = 8;
/// What the header read of the skip check fetches per request: most headers fit in one.
const HEADER_CHUNK: usize = 64 << 10;
/// How long before the invocation's deadline a task stops (and aborts its upload): time to abort, answer
/// and let the runtime post the answer.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(10);
/// The environment variable in which Lambda gives the function's memory, in MB.
pub const MEMORY_VAR: &str = super::env::FUNCTION_MEMORY_VAR;
/// The longest a Lambda invocation may run.
pub const LAMBDA_MAX_DURATION: Duration = Duration::from_secs(900);
/// Lambda gives a function one vCPU per 1,769 MB of memory, in proportion below (AWS documentation).
const MB_PER_VCPU: u64 = 1769;
/// A conservative rate at which one vCPU re-encrypts an object from S3 to S3 (download, decrypt, encrypt,
/// upload), in bytes per second. An estimate to be confirmed by measurement (the batch benchmark), kept
/// low on purpose: a task refused here runs with the CLI instead; one accepted and cut at 900 s costs a
/// retry and still fails.
pub const BYTES_PER_SECOND_PER_VCPU: u64 = 16 << 20;

/// The largest object a function with `memory_mb` MB is trusted to handle within [`LAMBDA_MAX_DURATION`]
/// (less [`DEADLINE_MARGIN`]) at [`BYTES_PER_SECOND_PER_VCPU`]: about 2.2 GB at 256 MB, 8.6 GB at 1,024
/// MB, 86 GB at 10,240 MB.
pub fn lambda_size_cap(memory_mb: u64) -> u64 {
    let seconds = (LAMBDA_MAX_DURATION - DEADLINE_MARGIN).as_secs();
    let rate = u128::from(BYTES_PER_SECOND_PER_VCPU) * u128::from(memory_mb) / u128::from(MB_PER_VCPU);
    u64::try_from(rate * u128::from(seconds)).unwrap_or(u64::MAX)
}

// ------------------------------------------------------------------------------------------- the event

/// One invocation by S3 Batch Operations (schema 1.0 or 2.0): the job and its tasks (one, in practice).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInvocation {
    /// `"1.0"` or `"2.0"`; echoed in the response.
    pub invocation_schema_version: String,
    /// Echoed in the response.
    pub invocation_id: String,
    /// The job.
    pub job: BatchJob,
    /// The objects to act on.
    pub tasks: Vec<BatchTask>,
}

/// The job an invocation belongs to.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchJob {
    /// The job id.
    pub id: String,
    /// Schema 2.0 only: the job's user arguments, checked by the function (values are kept as JSON, so
    /// that a value that is not a string is refused like any other bad argument, not the whole event).
    #[serde(default)]
    pub user_arguments: Option<BTreeMap<String, serde_json::Value>>,
}

/// One object of the job.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchTask {
    /// Echoed in the result.
    pub task_id: String,
    /// The object key, URL-encoded as in the manifest (`+` for a space, `%XX` for a byte).
    pub s3_key: String,
    /// The version named in the manifest, if any.
    #[serde(default)]
    pub s3_version_id: Option<String>,
    /// Schema 2.0: the bucket name.
    #[serde(default)]
    pub s3_bucket: Option<String>,
    /// Schema 1.0: the bucket ARN (`arn:aws:s3:::bucket`).
    #[serde(default)]
    pub s3_bucket_arn: Option<String>,
}

/// The function's answer to one invocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    /// The invocation's schema version.
    pub invocation_schema_version: String,
    /// What a task without a result counts as: always `PermanentFailure`.
    pub treat_missing_keys_as: ResultCode,
    /// The invocation's id.
    pub invocation_id: String,
    /// One result per task, in the tasks' order.
    pub results: Vec<TaskResult>,
}

/// The result of one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    /// The task's id.
    pub task_id: String,
    /// What happened.
    pub result_code: ResultCode,
    /// One line, escaped, at most [`MAX_RESULT_STRING`] bytes: what was done, or why not.
    pub result_string: String,
}

/// The result codes S3 Batch Operations knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResultCode {
    /// Done (or already done by an earlier run).
    Succeeded,
    /// Batch retries the task: throttling, a timeout, an object changed meanwhile.
    TemporaryFailure,
    /// Batch records the failure and moves on.
    PermanentFailure,
}

// ------------------------------------------------------------------------------------------- profiles

/// What a profile does with each object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// A message into a new message under the target keys (in place, or into the destination).
    Reencrypt,
    /// A plaintext object into a message under the target keys, at the destination.
    Encrypt,
    /// A message into its plaintext, at the destination.
    Decrypt,
}

/// Where a profile writes: `destination` bucket, and a prefix put before each task's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The bucket.
    pub bucket: String,
    /// Put before each task's key (may be empty, when the bucket is not a source).
    pub prefix: String,
}

/// One profile, validated: the operation has exactly the keys and destination it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Profile {
    /// What it does.
    pub operation: Operation,
    /// The keys that may unwrap a source's data key (`reencrypt`, `decrypt`).
    pub source_keys: Vec<KmsArn>,
    /// The keys new messages are encrypted under (`reencrypt`, `encrypt`); the first generates.
    pub target_keys: Vec<KmsArn>,
    /// The buckets a task may name.
    pub buckets: Vec<String>,
    /// Where results go; `None`: in place (`reencrypt` only).
    pub destination: Option<Destination>,
    /// Whether non-committing (legacy) sources are read.
    pub legacy_sources: bool,
    /// Caching of the new data key, if on.
    pub cache: Option<CacheLimits>,
    /// How much of an object already under the target keys is authenticated before it is reported
    /// `Succeeded` (`reencrypt` in place): the whole message unless the profile says `"header"`.
    pub skip_check: SkipCheck,
    /// The largest object a task takes (`max_object_bytes`); `None`: the cap derived from the function's
    /// memory ([`lambda_size_cap`]), if it runs on Lambda.
    pub max_object_bytes: Option<u64>,
}

/// The function's configuration: its profiles, and the one a job that names none runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchConfig {
    /// The profiles, by name.
    pub profiles: BTreeMap<String, Profile>,
    /// The profile of jobs that name none (schema 1.0 jobs, which cannot).
    pub default_profile: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigText {
    #[serde(default)]
    default_profile: Option<String>,
    profiles: BTreeMap<String, ProfileText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileText {
    operation: Operation,
    #[serde(default)]
    source_keys: Vec<String>,
    #[serde(default)]
    target_keys: Vec<String>,
    buckets: Vec<String>,
    #[serde(default)]
    destination: Option<String>,
    #[serde(default)]
    allow_plaintext_output: bool,
    #[serde(default)]
    legacy_sources: bool,
    #[serde(default)]
    cache: Option<CacheText>,
    #[serde(default)]
    skip_check: Option<SkipCheckText>,
    #[serde(default)]
    max_object_bytes: Option<u64>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SkipCheckText {
    Full,
    Header,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheText {
    max_age_seconds: u64,
    #[serde(default)]
    max_messages: Option<u64>,
}

fn config_error(message: String) -> Error {
    Error::Config(format!("{PROFILES_VAR}: {message}"))
}

impl BatchConfig {
    /// The configuration in [`PROFILES_VAR`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the variable: it is unset, or [`parse`](Self::parse) refuses it.
    pub fn from_env() -> Result<Self> {
        let text = std::env::var(PROFILES_VAR).map_err(|_| config_error("is not set (or not UTF-8)".into()))?;
        Self::parse(&text)
    }

    /// Parses and checks the JSON text of [`PROFILES_VAR`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the variable and the profile: not JSON of the documented shape (unknown
    /// fields included, so a misspelt setting is never silently ignored), a key that is not a KMS key ARN,
    /// an operation without the keys or destination it needs or with ones it does not use, `decrypt`
    /// without `allow_plaintext_output`, no buckets, a default profile that does not exist.
    pub fn parse(text: &str) -> Result<Self> {
        let parsed: ConfigText =
            serde_json::from_str(text).map_err(|e| config_error(format!("not the expected JSON: {e}")))?;
        if parsed.profiles.is_empty() {
            return Err(config_error("defines no profile".into()));
        }
        let mut profiles = BTreeMap::new();
        for (name, profile) in parsed.profiles {
            let checked = check_profile(profile).map_err(|why| config_error(format!("profile {name:?}: {why}")))?;
            if name.is_empty() || name.chars().count() > MAX_USER_ARGUMENT_LENGTH {
                return Err(config_error(format!(
                    "profile name {name:?} cannot be passed as a user argument (1 to {MAX_USER_ARGUMENT_LENGTH} characters)"
                )));
            }
            profiles.insert(name, checked);
        }
        if let Some(default) = &parsed.default_profile
            && !profiles.contains_key(default)
        {
            return Err(config_error(format!("default_profile {default:?} is not a profile")));
        }
        Ok(Self { profiles, default_profile: parsed.default_profile })
    }
}

fn key_arns(which: &str, keys: &[String]) -> std::result::Result<Vec<KmsArn>, String> {
    keys.iter()
        .map(|key| KmsArn::parse_key(key).map_err(|e| format!("{which} {key:?} is not a KMS key ARN: {e}")))
        .collect()
}

fn check_profile(text: ProfileText) -> std::result::Result<Profile, String> {
    let source_keys = key_arns("source key", &text.source_keys)?;
    let target_keys = key_arns("target key", &text.target_keys)?;
    let (needs_source, needs_target, needs_destination) = match text.operation {
        Operation::Reencrypt => (true, true, false),
        Operation::Encrypt => (false, true, true),
        Operation::Decrypt => (true, false, true),
    };
    if needs_source == source_keys.is_empty() {
        return Err(if needs_source { "needs source_keys" } else { "encrypt takes no source_keys" }.into());
    }
    if needs_target == target_keys.is_empty() {
        return Err(if needs_target { "needs target_keys" } else { "decrypt takes no target_keys" }.into());
    }
    if text.operation == Operation::Decrypt && !text.allow_plaintext_output {
        return Err("decrypt writes plaintext objects: set \"allow_plaintext_output\": true to mean it".into());
    }
    if text.operation != Operation::Decrypt && text.allow_plaintext_output {
        return Err("allow_plaintext_output is for decrypt profiles only".into());
    }
    if text.buckets.is_empty() || text.buckets.iter().any(String::is_empty) {
        return Err("needs buckets, the bucket names its tasks may name".into());
    }
    let destination = match text.destination.as_deref() {
        None if needs_destination => return Err("needs a destination (s3://bucket/prefix)".into()),
        None => None,
        Some(url) => {
            let (bucket, prefix) = url
                .strip_prefix("s3://")
                .map(|rest| rest.split_once('/').unwrap_or((rest, "")))
                .filter(|(bucket, _)| !bucket.is_empty())
                .ok_or_else(|| format!("destination {url:?} is not s3://bucket/prefix"))?;
            if prefix.is_empty() && text.buckets.iter().any(|b| b == bucket) {
                return Err("a destination in a source bucket needs a prefix (else results overwrite sources)".into());
            }
            Some(Destination { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
        }
    };
    let cache = match text.cache {
        None => None,
        Some(_) if target_keys.is_empty() => return Err("cache is for the target keys; this profile has none".into()),
        Some(cache) if cache.max_age_seconds == 0 => return Err("cache max_age_seconds must be positive".into()),
        Some(cache) => {
            let limits = CacheLimits::new(Duration::from_secs(cache.max_age_seconds));
            Some(match cache.max_messages {
                Some(messages) => limits.max_messages(messages),
                None => limits,
            })
        }
    };
    let skip_check = match (text.skip_check, text.operation) {
        (None | Some(SkipCheckText::Full), _) => SkipCheck::Full,
        (Some(SkipCheckText::Header), Operation::Reencrypt) => SkipCheck::Header,
        (Some(SkipCheckText::Header), _) => return Err("skip_check is for reencrypt profiles".into()),
    };
    if text.max_object_bytes == Some(0) {
        return Err("max_object_bytes must be positive".into());
    }
    Ok(Profile {
        operation: text.operation,
        source_keys,
        target_keys,
        buckets: text.buckets,
        destination,
        legacy_sources: text.legacy_sources,
        cache,
        skip_check,
        max_object_bytes: text.max_object_bytes,
    })
}

// ------------------------------------------------------------------------------------------- outcomes

/// What one task came to: a code and its one-line reason.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    code: ResultCode,
    text: String,
}

impl Outcome {
    fn succeeded(text: impl fmt::Display) -> Self {
        Self { code: ResultCode::Succeeded, text: result_string(&text.to_string()) }
    }

    fn refused(text: impl fmt::Display) -> Self {
        Self { code: ResultCode::PermanentFailure, text: result_string(&text.to_string()) }
    }

    fn later(text: impl fmt::Display) -> Self {
        Self { code: ResultCode::TemporaryFailure, text: result_string(&text.to_string()) }
    }

    /// A failure of the library: `TemporaryFailure` where a retry can succeed ([`Error::is_transient`]:
    /// throttling, a 5xx, a timeout, an object changed while it was re-encrypted in place, each as the
    /// service's answer said, never as its text reads), `PermanentFailure` otherwise.
    fn failed(error: &Error) -> Self {
        let code = if error.is_transient() { ResultCode::TemporaryFailure } else { ResultCode::PermanentFailure };
        Self { code, text: result_string(&error.to_string()) }
    }
}

/// `text` on one line (controls and bidirectional characters escaped; the crate's error texts escape what
/// came from a message already), cut at [`MAX_RESULT_STRING`] bytes.
fn result_string(text: &str) -> String {
    let mut line = OneLine(text).to_string();
    if line.len() > MAX_RESULT_STRING {
        let mut cut = MAX_RESULT_STRING - 3;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str("...");
    }
    line
}

pub use crate::s3::decode_key;

/// The bucket a task names: `s3Bucket` (schema 2.0) or the name in `s3BucketArn` (schema 1.0).
fn task_bucket(task: &BatchTask) -> std::result::Result<String, String> {
    if let Some(bucket) = task.s3_bucket.as_deref().filter(|b| !b.is_empty()) {
        return Ok(bucket.to_owned());
    }
    let arn = task.s3_bucket_arn.as_deref().ok_or("the task names no bucket")?;
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    match fields[..] {
        ["arn", _, "s3", "", "", bucket] if !bucket.is_empty() && !bucket.contains('/') => Ok(bucket.to_owned()),
        _ => Err(format!("s3BucketArn {} is not an S3 bucket ARN", Escaped(arn))),
    }
}

// ------------------------------------------------------------------------------------------- the function

/// A profile with its keyrings, built once per execution environment.
struct Ready {
    profile: Profile,
    work: Work,
}

/// The keyrings an operation uses: exactly those, so that no operation can reach another's keys.
enum Work {
    Reencrypt { source: Arc<dyn Keyring>, target: Arc<dyn Keyring>, target_keys: Mutex<Option<TargetKeys>> },
    Encrypt { target: Arc<dyn Keyring> },
    Decrypt { source: Arc<dyn Keyring> },
}

struct Inner {
    profiles: BTreeMap<String, Ready>,
    default_profile: Option<String>,
    s3: aws_sdk_s3::Client,
    transfer: TransferOptions,
    /// [`lambda_size_cap`] of the function's memory, on Lambda.
    memory_cap: Option<u64>,
}

/// The S3 Batch Operations function: [`handle`](Self::handle) answers one invocation. Clones share the
/// keyrings and caches.
#[derive(Clone)]
pub struct BatchFunction {
    inner: Arc<Inner>,
}

impl fmt::Debug for BatchFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchFunction").field("profiles", &self.inner.profiles.keys()).finish_non_exhaustive()
    }
}

impl BatchFunction {
    /// The function for `config`, its KMS keyrings on `kms`, its objects on `s3`, moved with `transfer`
    /// (part size, requests in flight: memory is about `(concurrency + 2) * part_size` per transfer).
    /// Makes no request. On Lambda ([`MEMORY_VAR`] set), objects over [`lambda_size_cap`] of its memory
    /// are refused, unless a profile sets its own `max_object_bytes`.
    ///
    /// # Errors
    ///
    /// A keyring cannot be built for a configured key.
    pub fn new(
        config: BatchConfig,
        kms: &KmsClients,
        s3: aws_sdk_s3::Client,
        transfer: TransferOptions,
    ) -> Result<Self> {
        let keyring = |keys: &[KmsArn], cache: Option<CacheLimits>| -> Result<Arc<dyn Keyring>> {
            let ids: Vec<String> = keys.iter().map(ToString::to_string).collect();
            // MRK-aware, as the CLI's keys: a source under any replica of a multi-Region key opens.
            let multi = kms.mrk_multi_keyring(&ids)?;
            Ok(match cache {
                Some(limits) => {
                    Arc::new(CachingKeyring::new(multi, Arc::new(MaterialsCache::new(CACHE_CAPACITY)), limits)?)
                }
                None => Arc::new(multi),
            })
        };
        let mut profiles = BTreeMap::new();
        for (name, profile) in config.profiles {
            let work = match profile.operation {
                Operation::Reencrypt => Work::Reencrypt {
                    source: keyring(&profile.source_keys, None)?,
                    target: keyring(&profile.target_keys, profile.cache)?,
                    target_keys: Mutex::new(None),
                },
                Operation::Encrypt => Work::Encrypt { target: keyring(&profile.target_keys, profile.cache)? },
                Operation::Decrypt => Work::Decrypt { source: keyring(&profile.source_keys, None)? },
            };
            profiles.insert(name, Ready { profile, work });
        }
        let memory_cap = std::env::var(MEMORY_VAR).ok().and_then(|mb| mb.parse().ok()).map(lambda_size_cap);
        let inner = Inner { profiles, default_profile: config.default_profile, s3, transfer, memory_cap };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Answers one invocation: a result per task, in order. A task's failure never fails the invocation.
    /// Runs the transfers on the blocking pool of the current tokio runtime. No deadline: see
    /// [`handle_until`](Self::handle_until).
    pub async fn handle(&self, invocation: BatchInvocation) -> BatchResponse {
        self.handle_until(invocation, None).await
    }

    /// [`handle`](Self::handle) within the invocation's `deadline` (the Lambda context's): a task still
    /// running [`DEADLINE_MARGIN`] before it is stopped, its multipart upload aborted, and answered
    /// `TemporaryFailure` "stopped before the invocation deadline" (as is a task that would start later),
    /// so that Batch retries it rather than count a timeout against the whole invocation.
    pub async fn handle_until(&self, invocation: BatchInvocation, deadline: Option<Instant>) -> BatchResponse {
        let stop_at = deadline.map(|deadline| deadline.checked_sub(DEADLINE_MARGIN).unwrap_or_else(Instant::now));
        let profile = self.inner.profile_for(&invocation);
        let mut results = Vec::with_capacity(invocation.tasks.len());
        for task in invocation.tasks {
            let outcome = match &profile {
                Err(refusal) => refusal.clone(),
                Ok(name) => self.run(name, &task, stop_at).await,
            };
            results.push(TaskResult { task_id: task.task_id, result_code: outcome.code, result_string: outcome.text });
        }
        BatchResponse {
            invocation_schema_version: invocation.invocation_schema_version,
            treat_missing_keys_as: ResultCode::PermanentFailure,
            invocation_id: invocation.invocation_id,
            results,
        }
    }

    async fn run(&self, profile: &str, task: &BatchTask, stop_at: Option<Instant>) -> Outcome {
        let (bucket, key) = match (task_bucket(task), decode_key(&task.s3_key)) {
            (Ok(bucket), Ok(key)) => (bucket, key),
            (Err(why), _) | (_, Err(why)) => return Outcome::refused(why),
        };
        let Some(ready) = self.inner.profiles.get(profile) else {
            return Outcome::refused("no such profile");
        };
        if !ready.profile.buckets.contains(&bucket) {
            return Outcome::refused(format!(
                "bucket {} is not one of profile {}'s buckets",
                Escaped(&bucket),
                Escaped(profile)
            ));
        }
        if key.is_empty() {
            return Outcome::refused("the task names no key");
        }
        let version = task.s3_version_id.clone().filter(|v| !v.is_empty());
        if stop_at.is_some_and(|at| at <= Instant::now()) {
            return Outcome::later("stopped before the invocation deadline; nothing was written");
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        let (inner, profile, handle) = (self.inner.clone(), profile.to_owned(), Handle::current());
        let object = (bucket, key, version);
        let stop = cancelled.clone();
        let mut work = tokio::task::spawn_blocking(move || inner.process(handle, &profile, object, stop));
        let finished = |done: std::result::Result<Outcome, tokio::task::JoinError>| {
            done.unwrap_or_else(|e| Outcome::refused(format!("the task stopped: {e}")))
        };
        let Some(stop_at) = stop_at else { return finished(work.await) };
        match tokio::time::timeout_at(stop_at.into(), &mut work).await {
            Ok(done) => finished(done),
            Err(_) => {
                // The upload aborts at once when told; the reading side follows at its next write.
                cancelled.store(true, Ordering::SeqCst);
                match tokio::time::timeout(DEADLINE_MARGIN / 2, work).await {
                    // It completed just as it was told to stop.
                    Ok(Ok(done)) if done.code == ResultCode::Succeeded => done,
                    _ => Outcome::later(
                        "stopped before the invocation deadline; the upload was aborted, nothing was written",
                    ),
                }
            }
        }
    }
}

impl Inner {
    /// The profile the job runs, or the refusal every task gets: checked before any request.
    fn profile_for(&self, invocation: &BatchInvocation) -> std::result::Result<String, Outcome> {
        let refuse = |why: String| Err(Outcome::refused(why));
        let arguments = match (invocation.invocation_schema_version.as_str(), &invocation.job.user_arguments) {
            ("1.0", None) => BTreeMap::new(),
            ("1.0", Some(_)) => return refuse("schema 1.0 carries no user arguments".into()),
            ("2.0", arguments) => arguments.clone().unwrap_or_default(),
            (other, _) => {
                return refuse(format!("invocation schema {} is not 1.0 or 2.0", Escaped(other)));
            }
        };
        if arguments.len() > MAX_USER_ARGUMENTS {
            return refuse(format!("{} user arguments, over S3's {MAX_USER_ARGUMENTS}", arguments.len()));
        }
        let mut named = None;
        for (key, value) in &arguments {
            if key.is_empty() || key.chars().count() > MAX_USER_ARGUMENT_KEY_LENGTH {
                return refuse(format!("a user argument key of {} characters", key.chars().count()));
            }
            if key != PROFILE_ARGUMENT {
                return refuse(format!(
                    "user argument {} is refused: a job names only a profile ({PROFILE_ARGUMENT:?}); keys, \
                     operations and destinations come from the function's configuration",
                    Escaped(key)
                ));
            }
            let Some(value) = value.as_str() else {
                return refuse(format!("user argument {PROFILE_ARGUMENT:?} is not a string"));
            };
            if value.chars().count() > MAX_USER_ARGUMENT_LENGTH {
                return refuse(format!(
                    "user argument {PROFILE_ARGUMENT:?} is over {MAX_USER_ARGUMENT_LENGTH} characters"
                ));
            }
            named = Some(value.to_owned());
        }
        let name = match named.or_else(|| self.default_profile.clone()) {
            Some(name) => name,
            None => {
                return refuse(format!(
                    "the job names no profile (user argument {PROFILE_ARGUMENT:?}) and the function has no default_profile"
                ));
            }
        };
        if !self.profiles.contains_key(&name) {
            return refuse(format!("no profile {} is configured", Escaped(&name)));
        }
        Ok(name)
    }

    /// One task, blocking (on the blocking pool, `handle` the runtime for the requests): the object
    /// `bucket`/`key` (at `version`, if the task names one), given up once `cancelled` is set.
    fn process(
        &self,
        handle: Handle,
        profile: &str,
        (bucket, key, version): (String, String, Option<String>),
        cancelled: Arc<AtomicBool>,
    ) -> Outcome {
        let Some(ready) = self.profiles.get(profile) else { return Outcome::refused("no such profile") };
        let mut source = S3Object::new(self.s3.clone(), &bucket, &key);
        if let Some(version) = &version {
            source = source.with_version(version);
        }
        let destination = match &ready.profile.destination {
            Some(to) => S3Object::new(self.s3.clone(), &to.bucket, format!("{}{key}", to.prefix)),
            None => S3Object::new(self.s3.clone(), &bucket, &key),
        };
        if let Err(refusal) = self.admit(&handle, ready, &source, &destination) {
            return refusal;
        }
        let mut source_options = DecryptOptions::new();
        if ready.profile.legacy_sources {
            source_options = source_options.commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
        }
        let done = match &ready.work {
            Work::Reencrypt { source: from, target, target_keys } => {
                let options = ReencryptOptions::new().source(source_options);
                let keyrings = (from.as_ref(), target.as_ref());
                let check = ready.profile.skip_check;
                self.reencrypt(&handle, (&source, &destination), keyrings, (target_keys, check), &options, cancelled)
            }
            Work::Encrypt { target } => self.encrypt(&handle, &source, &destination, target.as_ref(), cancelled),
            Work::Decrypt { source: from } => {
                let transfer = &self.transfer;
                destination
                    .decrypt_from_blocking(handle, &source, from.as_ref(), &source_options, transfer, cancelled)
                    .map(|uploaded| format!("decrypted into {} ({} bytes)", url(&destination), uploaded.bytes))
            }
        };
        match done {
            Ok(text) => Outcome::succeeded(text),
            Err(error) => Outcome::failed(&error),
        }
    }

    /// What is checked before any KMS request: in place on a named version, that it is still the current
    /// one (a new current version replaces only it); the object's size (its `HeadObject`) against the
    /// profile's `max_object_bytes` or the function's [`lambda_size_cap`].
    fn admit(&self, handle: &Handle, ready: &Ready, source: &S3Object, destination: &S3Object) -> Result<(), Outcome> {
        let in_place = source.bucket() == destination.bucket() && source.key() == destination.key();
        if let Some(version) = source.version().filter(|_| in_place) {
            match handle.block_on(source.is_current_version()) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(Outcome::refused(format!(
                        "version {} is not the current version; only the current version is re-encrypted in place",
                        Escaped(version)
                    )));
                }
                Err(error) => return Err(Outcome::failed(&error)),
            }
        }
        let len = handle.block_on(source.pin()).map_err(|error| Outcome::failed(&error))?.len;
        if let Some(cap) = ready.profile.max_object_bytes.or(self.memory_cap)
            && len > cap
        {
            let verb = match ready.profile.operation {
                Operation::Reencrypt => "re-encrypt",
                Operation::Encrypt => "encrypt",
                Operation::Decrypt => "decrypt",
            };
            return Err(Outcome::refused(format!(
                "too large for Lambda ({len} bytes, over {cap}); {verb} it with the CLI"
            )));
        }
        Ok(())
    }

    /// Encrypts the plaintext object `source` into `destination`.
    fn encrypt(
        &self,
        handle: &Handle,
        source: &S3Object,
        destination: &S3Object,
        target: &dyn Keyring,
        cancelled: Arc<AtomicBool>,
    ) -> Result<String> {
        let len = handle.block_on(source.pin())?.len;
        let options = EncryptOptions::new().max_plaintext_length(Some(len));
        let transfer = self.transfer.clone().part_size(self.transfer.part_size_for_plaintext(len, &options));
        let plaintext = source.reader(handle.clone(), &transfer);
        let uploaded = destination.encrypt_from_blocking_cancellable(
            handle.clone(),
            target,
            &options,
            &transfer,
            plaintext,
            cancelled,
        )?;
        Ok(format!("encrypted into {} ({} bytes)", url(destination), uploaded.bytes))
    }

    /// Re-encrypts `objects.0` into `objects.1` (the same object in place), unless it already is under the
    /// target keys, as the target keys themselves authenticate (the whole message, or its header alone,
    /// as `check` says).
    fn reencrypt(
        &self,
        handle: &Handle,
        (source, destination): (&S3Object, &S3Object),
        (from, target): (&dyn Keyring, &dyn Keyring),
        (target_keys, check): (&Mutex<Option<TargetKeys>>, SkipCheck),
        options: &ReencryptOptions,
        cancelled: Arc<AtomicBool>,
    ) -> Result<String> {
        let in_place = source.bucket() == destination.bucket() && source.key() == destination.key();
        if in_place {
            let keys = {
                let mut known = target_keys.lock().unwrap_or_else(PoisonError::into_inner);
                match &*known {
                    Some(keys) => keys.clone(),
                    None => known.insert(TargetKeys::of(target)?).clone(),
                }
            };
            // The header in one small GET; the rest, only if the header passed and the check reads on.
            let header = TransferOptions::new().chunk_size(HEADER_CHUNK).concurrency(1);
            let first = source.range_reader(handle.clone(), &header, 0..HEADER_CHUNK as u64);
            let rest =
                Lazily(None, || source.range_reader(handle.clone(), &self.transfer, HEADER_CHUNK as u64..u64::MAX));
            let status = rotation_status_with(target, &keys, options, false, check, first.chain(rest))?;
            if status == Rotation::Done {
                return Ok(match check {
                    SkipCheck::Header => {
                        "already re-encrypted under the profile's keys (header authenticated; body not read); left as it is"
                    }
                    SkipCheck::Full => {
                        "already re-encrypted under the profile's keys (authenticated in full); left as it is"
                    }
                }
                .into());
            }
        }
        let uploaded = destination.reencrypt_from_blocking(
            handle.clone(),
            source,
            from,
            target,
            options,
            &self.transfer,
            cancelled,
        )?;
        Ok(format!("re-encrypted into {} ({} bytes)", url(destination), uploaded.bytes))
    }
}

/// A reader made on its first read: the rest of an object is requested only if it is read.
struct Lazily<R, F>(Option<R>, F);

impl<R: Read, F: FnMut() -> R> Read for Lazily<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.0 {
            Some(reader) => reader.read(buf),
            None => self.0.insert((self.1)()).read(buf),
        }
    }
}

fn url(object: &S3Object) -> String {
    format!("s3://{}/{}", Escaped(object.bucket()), Escaped(object.key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn keys_decode_as_s3_batch_operations_encodes_them() {
        // Python's urllib.parse.quote_plus, which AWS's own examples reverse with unquote_plus.
        assert_eq!(decode_key("a+b%2Bc%25d").unwrap(), "a b+c%d");
        assert_eq!(decode_key("caf%C3%A9/%E2%82%AC.txt").unwrap(), "café/€.txt");
        assert_eq!(decode_key("plain/key.esdk").unwrap(), "plain/key.esdk");
        for bad in ["%", "%4", "%zz", "%+1", "%C3", "%FF"] {
            assert!(decode_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bucket_arns_of_schema_1_name_their_bucket() {
        let task = |bucket: Option<&str>, arn: Option<&str>| BatchTask {
            task_id: "t".into(),
            s3_key: "k".into(),
            s3_version_id: None,
            s3_bucket: bucket.map(Into::into),
            s3_bucket_arn: arn.map(Into::into),
        };
        assert_eq!(task_bucket(&task(None, Some("arn:aws:s3:::my-bucket"))).unwrap(), "my-bucket");
        assert_eq!(task_bucket(&task(Some("b2"), None)).unwrap(), "b2");
        for bad in ["my-bucket", "arn:aws:s3:::", "arn:aws:s3:::b/k", "arn:aws:kms:::b", "arn:aws:s3:us-east-1::b"] {
            assert!(task_bucket(&task(None, Some(bad))).is_err(), "{bad}");
        }
        assert!(task_bucket(&task(None, None)).is_err());
    }

    #[test]
    fn profiles_refuse_what_their_operation_does_not_use() {
        let ok = format!(
            r#"{{"profiles":{{"p":{{"operation":"reencrypt","source_keys":["{KEY}"],"target_keys":["{KEY}"],"buckets":["b"]}}}}}}"#
        );
        assert!(BatchConfig::parse(&ok).is_ok());
        let refused = [
            // decrypt without saying it means plaintext output
            format!(r#"{{"profiles":{{"p":{{"operation":"decrypt","source_keys":["{KEY}"],"buckets":["b"],"destination":"s3://o/p/"}}}}}}"#),
            // a misspelt setting
            format!(r#"{{"profiles":{{"p":{{"operation":"reencrypt","source_keys":["{KEY}"],"target_keys":["{KEY}"],"buckets":["b"],"destinaton":"s3://o/"}}}}}}"#),
            // an alias, not a key ARN
            r#"{"profiles":{"p":{"operation":"encrypt","target_keys":["alias/new"],"buckets":["b"],"destination":"s3://o/p/"}}}"#.to_owned(),
            // encrypt with source keys, or without a destination
            format!(r#"{{"profiles":{{"p":{{"operation":"encrypt","source_keys":["{KEY}"],"target_keys":["{KEY}"],"buckets":["b"],"destination":"s3://o/p/"}}}}}}"#),
            format!(r#"{{"profiles":{{"p":{{"operation":"encrypt","target_keys":["{KEY}"],"buckets":["b"]}}}}}}"#),
            // results over their sources
            format!(r#"{{"profiles":{{"p":{{"operation":"encrypt","target_keys":["{KEY}"],"buckets":["b"],"destination":"s3://b"}}}}}}"#),
            // no buckets; a default that does not exist; no profiles
            format!(r#"{{"profiles":{{"p":{{"operation":"encrypt","target_keys":["{KEY}"],"buckets":[],"destination":"s3://o/"}}}}}}"#),
            ok.replace(r#"{"profiles""#, r#"{"default_profile":"q","profiles""#),
            r#"{"profiles":{}}"#.to_owned(),
            // a skip check for an operation that skips nothing, one that does not exist, a zero cap
            format!(r#"{{"profiles":{{"p":{{"operation":"encrypt","target_keys":["{KEY}"],"buckets":["b"],"destination":"s3://o/p/","skip_check":"header"}}}}}}"#),
            ok.replace(r#""buckets""#, r#""skip_check":"none","buckets""#),
            ok.replace(r#""buckets""#, r#""max_object_bytes":0,"buckets""#),
        ];
        for text in refused {
            let err = BatchConfig::parse(&text).unwrap_err();
            assert!(matches!(&err, Error::Config(m) if m.starts_with(PROFILES_VAR)), "{text}: {err}");
        }
    }

    #[test]
    fn the_size_cap_follows_the_memory_setting() {
        // 16 MiB/s per 1,769 MB of memory, for 890 s (900 s less the 10 s margin), worked out by hand.
        assert_eq!(lambda_size_cap(1769), 14_931_722_240);
        assert_eq!(lambda_size_cap(256), 2_160_836_340);
        assert_eq!(lambda_size_cap(0), 0);
        let parsed = |extra: &str| {
            let text = format!(
                r#"{{"profiles":{{"p":{{"operation":"reencrypt","source_keys":["{KEY}"],"target_keys":["{KEY}"],"buckets":["b"]{extra}}}}}}}"#
            );
            BatchConfig::parse(&text).unwrap().profiles.remove("p").unwrap()
        };
        let defaults = parsed("");
        assert_eq!((defaults.skip_check, defaults.max_object_bytes), (SkipCheck::Full, None));
        let set = parsed(r#","skip_check":"header","max_object_bytes":5"#);
        assert_eq!((set.skip_check, set.max_object_bytes), (SkipCheck::Header, Some(5)));
    }

    #[test]
    fn result_strings_are_one_bounded_line() {
        let text = result_string(&format!("bad\nline\x1b[2J\u{202e}{}", "é".repeat(2000)));
        assert!(!text.chars().any(|c| c.is_control() || c == '\u{202e}'), "{text:?}");
        assert!(text.len() <= MAX_RESULT_STRING && text.ends_with("..."), "{}", text.len());
    }
}
