//! S3 objects as sources and destinations of messages (feature `s3`).
//!
//! An [`S3Object`] is read with one `HeadObject` (its length and ETag) and then ranged `GetObject`s, each
//! with `If-Match` the ETag seen first: an object overwritten while it is read is an error, never a mix of
//! two objects. A whole message is downloaded with a bounded number of ranged GETs in flight, handed in order
//! to the usual decryptor, in constant memory; to a file, through the usual temp file that appears only
//! once every frame verified.
//!
//! A message is uploaded as it is sealed: a multipart upload whose parts are uploaded concurrently (a bounded
//! number in flight), completed only after the final frame; a message smaller than one part is a single
//! `PutObject`. On any error (the plaintext reader, the keyring, a part upload, a caller that gives up) the
//! multipart upload is aborted, so no partial object ever becomes visible.
//!
//! # Retries and deadlines
//!
//! Each request has exactly one layer that retries it, so that the two never multiply:
//!
//! - **Every request but `GetObject` is the SDK's**, retried by its standard retry strategy as the client is
//!   configured (`AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE`; by default 3 attempts in all, backoff with full
//!   jitter: a random delay up to 1 s, then up to 2 s, capped at 20 s): `SlowDown`, 500/502/503/504, 429,
//!   timeouts, a connection refused or reset before an answer. Their bodies are in memory (an upload's part,
//!   at most [`TransferOptions::part_size`]), so the SDK can send them again. A request that carries a body
//!   (`UploadPart`, `PutObject`) has each attempt cut off after its [`Deadline`] for the body's size, which
//!   the SDK then retries like any timeout; `HeadObject`, by a client without an attempt timeout of its
//!   own, the [`Deadline`]'s patience (a server that never answers would otherwise hold it for ever). A
//!   part that still fails after its last attempt aborts the upload: no object appears and the upload is
//!   not left open.
//! - **`GetObject` is this module's**: it is sent with the SDK's retries off, and retried here with the
//!   client's attempts and backoff. Its body arrives after the response headers, where the SDK's retries no
//!   longer reach: a body broken off (a reset), cut short, or slower than the [`Deadline`] for its bytes is
//!   asked for again, from the first byte still missing (the object is pinned by `If-Match`, so the rest is
//!   of the same object; without an ETag the range is asked for whole). An answer whose ETag or
//!   `Content-Range` is not the one asked for (a server that ignores `If-Match`, a man in the middle) is
//!   refused, never appended to what came before. The answer's own failures
//!   (`SlowDown`, a 5xx, a timeout) take the same turns, so a range makes at most the configured number of
//!   attempts whatever failed.
//!
//! The SDK's stalled-stream protection (on by default) fails a body that moves less than 1 byte/s over a
//! 20 s grace period: it catches a body that stops, never one that trickles (a byte every 100 ms passes
//! it). The [`Deadline`] is what catches a trickle: a request may take 10 s plus its bytes at 64 KiB/s
//! (74 s for a 4 MiB range, 138 s for an 8 MiB part), and a `GetObject` body must also keep that rate in
//! every window of 10 s (the patience), so a body that trickles after a fast start is cut off within 10 s
//! and resumed from its first missing byte rather than held for the rest of its 138 s. Both end in the
//! same retry. An upload's part cannot resume, so it has the whole-request deadline only. The rate is a floor, not
//! an expectation: a connection to S3 moves tens of MB/s, and 64 KiB/s is the rate the CLI's 120 s read
//! timeout already asked of an 8 MiB part, so a link slow enough to fall under it failed before too.
//!
//! Retries are counted, not logged one by one: [`S3Object::retries`] is the count for an object and its
//! clones, and an error after retries says how many attempts were made (`... (HTTP 503; ...) after 3
//! attempts`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use kms_envelope::s3::{S3Object, TransferOptions};
//! use kms_envelope::{DecryptOptions, EncryptOptions, KmsClients, OutputOptions};
//!
//! # async fn example() -> Result<(), kms_envelope::Error> {
//! let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//! let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
//! let keyring = Arc::new(KmsClients::new(&config).keyring(key)?);
//! let object = S3Object::new(aws_sdk_s3::Client::new(&config), "my-bucket", "model.bin.esdk");
//!
//! let plaintext = std::fs::File::open("model.bin")?;
//! object.encrypt_from(keyring.clone(), EncryptOptions::new(), TransferOptions::new(), plaintext).await?;
//!
//! let copy = std::path::PathBuf::from("model-copy.bin"); // appears only once every frame verified
//! let (options, output) = (DecryptOptions::new(), OutputOptions::new());
//! object.decrypt_to_path(keyring, options, copy, output, TransferOptions::new()).await?;
//! # Ok(())
//! # }
//! ```

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart};
use tokio::runtime::Handle;
use tokio::sync::{OnceCell, mpsc};
use tokio::task::JoinHandle;
use zeroize::Zeroize;

use crate::error::{Error, Reason, Result, Retry};
use crate::escape::Escaped;
use crate::format::header::Header;
use crate::keyring::Keyring;
use crate::stream::{
    AsyncRangeSource, DecryptOptions, EncryptOptions, Encryptor, OutputOptions, ReencryptOptions, decrypt_to_path,
    reencrypt,
};

/// The smallest part S3 accepts in a multipart upload, but for the last.
pub const MIN_PART_SIZE: usize = 5 << 20;
/// The largest part S3 accepts in a multipart upload (5 GiB); also the largest ranged GET asked for.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// The part size of uploads, and the size of each ranged GET of a download, unless [`TransferOptions`]
/// sets others: 8 MiB, the lower end of the 8–16 MiB ranges AWS's S3 performance guide recommends (and
/// boto3's and the AWS CLI's part size), so that a download's GETs line up with the parts of an object
/// uploaded with the default.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// The size of each ranged GET of a whole-object download unless [`TransferOptions::chunk_size`] sets one:
/// the part size, as AWS advises (GETs aligned to the parts an object was uploaded in).
pub const DEFAULT_CHUNK_SIZE: usize = DEFAULT_PART_SIZE;
/// Requests in flight per transfer unless [`TransferOptions::concurrency`] sets it: enough connections
/// that the first-byte latency of each GET or part (tens of milliseconds on S3) hides behind the others'
/// transfer and a machine's link fills (AWS's CRT clients open many connections for the same reason).
/// Memory: `(16 + 2) * 8 MiB` = 144 MiB of transfer buffers (see [`TransferOptions::memory_bound`]).
pub const DEFAULT_CONCURRENCY: usize = 16;
/// The most requests in flight [`TransferOptions::from_lookup`] and the CLI accept: 64 connections at S3's
/// ~90 MB/s each are ~5.8 GB/s, more than one process decrypts, and each holds a part in memory.
pub const MAX_CONCURRENCY: usize = 64;
/// The variable that sets the part size (and ranged GET size) of the Lambda decryptor and batch function.
pub const PART_SIZE_VAR: &str = "KMS_ENVELOPE_S3_PART_SIZE";
/// The variable that sets the requests in flight of the Lambda decryptor and batch function.
pub const CONCURRENCY_VAR: &str = "KMS_ENVELOPE_S3_CONCURRENCY";
/// The most parts S3 allows in one multipart upload.
const MAX_PARTS: usize = 10_000;

/// How an object is moved: part and chunk sizes, requests in flight. Memory held by a transfer is about
/// [`memory_bound`](Self::memory_bound): `(concurrency + 2) * part_size` for an upload (the parts in
/// flight, the one handed over, the one being filled) and `(concurrency + 2) * chunk_size` for a download
/// (the GETs in flight, the one handed over, the one being read), besides the frame pipeline's buffers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferOptions {
    part_size: usize,
    chunk_size: usize,
    concurrency: usize,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl TransferOptions {
    /// The defaults: [`DEFAULT_PART_SIZE`], [`DEFAULT_CHUNK_SIZE`], [`DEFAULT_CONCURRENCY`].
    pub fn new() -> Self {
        Self { part_size: DEFAULT_PART_SIZE, chunk_size: DEFAULT_CHUNK_SIZE, concurrency: DEFAULT_CONCURRENCY }
    }

    /// The size of each part of a multipart upload (at least [`MIN_PART_SIZE`], checked when an upload
    /// starts). An upload has at most 10 000 parts, so the part size bounds the message size.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    /// The size of each ranged GET of a whole-object download (at least 1).
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.max(1);
        self
    }

    /// Requests in flight at once (at least 1).
    pub fn concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests.max(1);
        self
    }

    /// The requests in flight at once.
    pub fn requests_in_flight(&self) -> usize {
        self.concurrency
    }

    /// The bytes of transfer buffers these options may hold at once: `(concurrency + 2)` times the larger
    /// of the part and chunk sizes (see [`TransferOptions`]).
    pub fn memory_bound(&self) -> usize {
        self.concurrency.saturating_add(2).saturating_mul(self.part_size.max(self.chunk_size))
    }

    /// These options with fewer requests in flight (never under 1) if needed so that
    /// [`memory_bound`](Self::memory_bound) stays within `bytes`: for a process whose memory is fixed (a
    /// Lambda function's), which the defaults' 144 MiB would not fit.
    pub fn within_memory(mut self, bytes: usize) -> Self {
        let size = self.part_size.max(self.chunk_size).max(1);
        self.concurrency = self.concurrency.min((bytes / size).saturating_sub(2)).max(1);
        self
    }

    /// The options [`PART_SIZE_VAR`] and [`CONCURRENCY_VAR`] set, read through `lookup` (a variable's
    /// value, or `None` if unset); the part size sets the ranged GETs' size too. `None` if neither is set.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the variable whose value [`parse_part_size`] or [`parse_concurrency`]
    /// refuses.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let value = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let (part_size, concurrency) = (value(PART_SIZE_VAR), value(CONCURRENCY_VAR));
        if part_size.is_none() && concurrency.is_none() {
            return Ok(None);
        }
        let mut options = Self::new();
        if let Some(text) = part_size {
            let bytes = parse_part_size(&text).map_err(|e| Error::Config(format!("{PART_SIZE_VAR}: {e}")))?;
            options = options.part_size(bytes).chunk_size(bytes);
        }
        if let Some(text) = concurrency {
            let requests = parse_concurrency(&text).map_err(|e| Error::Config(format!("{CONCURRENCY_VAR}: {e}")))?;
            options = options.concurrency(requests);
        }
        Ok(Some(options))
    }

    /// The part size for a message of about `bytes` (plaintext or ciphertext, when known in advance): the
    /// configured one, or larger so that the message fits in S3's 10 000 parts with room to spare.
    pub fn part_size_for(&self, bytes: u64) -> usize {
        let needed = bytes.saturating_add(bytes / 64).saturating_add(1 << 20) / (MAX_PARTS as u64 - 100);
        self.part_size.max(usize::try_from(needed).unwrap_or(usize::MAX))
    }

    /// The part size for the message `options` makes of `plaintext` bytes:
    /// [`part_size_for`](Self::part_size_for) its length with the frames' overhead (32 bytes a frame), so
    /// that a message of short frames, much longer than its plaintext, still fits in 10 000 parts.
    pub fn part_size_for_plaintext(&self, plaintext: u64, options: &EncryptOptions) -> usize {
        self.part_size_for(crate::stream::framed_body_len(options.frame_length, plaintext))
    }
}

/// How long one request may take before it is cut off and retried (see the [module docs](self)):
/// `patience` for the answer to begin, plus its bytes at `min_rate`. A floor under which a connection is
/// taken for sick, not a forecast: set it below the slowest rate a healthy connection of yours gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    patience: Duration,
    /// Bytes per second, at least 1.
    min_rate: u64,
}

impl Deadline {
    /// 10 s plus 64 KiB/s: 74 s for a 4 MiB range, 138 s for an 8 MiB part.
    pub const DEFAULT: Deadline = Deadline { patience: Duration::from_secs(10), min_rate: 64 << 10 };

    /// `patience` plus the request's bytes at `min_rate` bytes per second (at least 1).
    pub fn new(patience: Duration, min_rate: u64) -> Self {
        Self { patience, min_rate: min_rate.max(1) }
    }

    /// The time a request moving `bytes` bytes may take.
    pub fn for_bytes(&self, bytes: u64) -> Duration {
        let transfer = Duration::from_millis(bytes.saturating_mul(1000) / self.min_rate);
        self.patience.saturating_add(transfer)
    }
}

impl Default for Deadline {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The [`Deadline`]'s minimum rate applied to a `GetObject` body window by window (each as long as the
/// deadline's patience, at least 1 s), not only to the whole request: a body that trickles after a fast
/// start is cut off within one window and asked for again from its first missing byte, instead of at the
/// end of a deadline sized for the whole range (138 s for 8 MiB).
#[derive(Debug)]
struct RateWindow {
    /// When the current window ends.
    end: tokio::time::Instant,
    length: Duration,
    /// Bytes the window must see: the minimum rate over its length.
    floor: u64,
    seen: u64,
}

impl RateWindow {
    fn new(deadline: Deadline) -> Self {
        let length = deadline.patience.max(Duration::from_secs(1));
        let floor = u64::try_from(u128::from(deadline.min_rate) * length.as_millis() / 1000).unwrap_or(u64::MAX);
        Self { end: tokio::time::Instant::now() + length, length, floor, seen: 0 }
    }

    fn received(&mut self, bytes: usize) {
        self.seen = self.seen.saturating_add(bytes as u64);
    }

    /// Ends the current window: an error (to be retried) if it saw fewer bytes than its floor.
    fn roll(&mut self) -> std::result::Result<(), (String, Attempt)> {
        if self.seen < self.floor {
            let (seen, secs, floor) = (self.seen, self.length.as_secs_f64(), self.floor);
            return Err((
                format!("{seen} bytes in {secs} s, under the {floor} the minimum rate needs"),
                Attempt::Again,
            ));
        }
        self.end = tokio::time::Instant::now() + self.length;
        self.seen = 0;
        Ok(())
    }
}

/// The retry policy of a client's configuration (the SDK's standard one if it has none), applied by this
/// module to the requests whose retries it owns: attempts in all, and exponential backoff with full jitter.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    attempts: u32,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    fn of(client: &aws_sdk_s3::Client) -> Self {
        let standard = RetryConfig::standard();
        let config = client.config().retry_config().unwrap_or(&standard);
        Self { attempts: config.max_attempts().max(1), initial: config.initial_backoff(), max: config.max_backoff() }
    }

    /// The pause before retry number `retry` (1 for the first): a random part of `initial * 2^(retry - 1)`,
    /// at most `max`, as the SDK's standard strategy waits.
    fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.initial.saturating_mul(1u32 << retry.saturating_sub(1).min(20)).min(self.max);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

/// Counts the attempts of one request whose retries the SDK owns, and adds its retries to the object's.
#[derive(Debug)]
struct CountAttempts {
    made: Arc<AtomicU32>,
    retries: Arc<AtomicU64>,
}

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "kms_envelope::s3::CountAttempts"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        if self.made.fetch_add(1, Ordering::SeqCst) > 0 {
            self.retries.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// What a failed attempt of a request whose retries this module owns allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    /// Another attempt, if the budget has one.
    Again,
    /// None: the request fails, and the error says whether the whole work may pass later.
    Final(Retry),
}

/// " after N attempts" when a request was tried more than once.
fn after_attempts(attempts: u32) -> String {
    if attempts > 1 { format!(" after {attempts} attempts") } else { String::new() }
}

/// A size as `16MiB`, `8M`, `512KiB`, `1G` or plain bytes (`8388608`): the units are binary whichever way
/// they are spelt (`MB` too, as in the AWS CLI's `multipart_chunksize`), case aside.
///
/// # Errors
///
/// Anything else, with the forms accepted.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let bad = || format!("expected a size such as 16MiB, 8M or 8388608 (bytes), got {:?}", Escaped(text));
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        _ => return Err(bad()),
    };
    number.checked_mul(1 << shift).ok_or_else(bad)
}

/// A part size (and ranged GET size) as [`parse_size`] reads it, from [`MIN_PART_SIZE`] to
/// [`MAX_PART_SIZE`]: S3's limits for the parts of a multipart upload.
///
/// # Errors
///
/// Not a size, or outside those limits.
pub fn parse_part_size(text: &str) -> std::result::Result<usize, String> {
    let bytes = parse_size(text)?;
    if !(MIN_PART_SIZE as u64..=MAX_PART_SIZE).contains(&bytes) {
        return Err(format!(
            "a part size of {bytes} bytes is outside S3's limits for multipart parts: 5MiB to 5GiB              ({MIN_PART_SIZE} to {MAX_PART_SIZE} bytes)"
        ));
    }
    usize::try_from(bytes).map_err(|_| format!("a part size of {bytes} bytes does not fit this platform's memory"))
}

/// Requests in flight, from 1 to [`MAX_CONCURRENCY`].
///
/// # Errors
///
/// Not a number in that range.
pub fn parse_concurrency(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => {
            Err(format!("expected a number of requests in flight from 1 to {MAX_CONCURRENCY}, got {:?}", Escaped(text)))
        }
    }
}

/// The length and ETag an object had when it was first looked at; every later read must see the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    /// The object's length in bytes.
    pub len: u64,
    /// Its ETag, if the server gave one (S3 always does); reads then carry `If-Match` with it.
    pub etag: Option<String>,
    /// What the object carries besides its bytes, which a re-encryption keeps.
    carried: Carried,
}

/// An object's settings that a re-encryption carries over to the new object: content type, user metadata,
/// storage class, server-side encryption (SSE-S3 or SSE-KMS with its key and bucket-key setting), the
/// additional checksum's algorithm and type (never its value: the new object's is of the new bytes) and,
/// when the object has tags, its tags (one `GetObjectTagging`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Carried {
    content_type: Option<String>,
    metadata: Option<std::collections::HashMap<String, String>>,
    storage_class: Option<aws_sdk_s3::types::StorageClass>,
    sse: Option<aws_sdk_s3::types::ServerSideEncryption>,
    sse_kms_key_id: Option<String>,
    bucket_key_enabled: Option<bool>,
    checksum_algorithm: Option<ChecksumAlgorithm>,
    /// `COMPOSITE` or `FULL_OBJECT`, if S3 said (moto does not).
    checksum_type: Option<ChecksumType>,
    has_tags: bool,
}

impl Carried {
    /// The checksum type for a multipart upload under the carried algorithm: SHA-1 and SHA-256 have only
    /// `COMPOSITE` (S3's default), CRC64NVME only `FULL_OBJECT`, and a CRC32 or CRC32C keeps the source's
    /// (a single `PutObject`'s is `FULL_OBJECT`).
    fn multipart_checksum_type(&self) -> Option<ChecksumType> {
        match self.checksum_algorithm.as_ref()? {
            ChecksumAlgorithm::Crc64Nvme => Some(ChecksumType::FullObject),
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32C => self.checksum_type.clone(),
            _ => None,
        }
    }
}

/// The algorithm of the additional checksum `head` shows (asked with `ChecksumMode::Enabled`): the one
/// whose value is present.
fn checksum_algorithm(head: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> Option<ChecksumAlgorithm> {
    [
        (head.checksum_crc32(), ChecksumAlgorithm::Crc32),
        (head.checksum_crc32_c(), ChecksumAlgorithm::Crc32C),
        (head.checksum_crc64_nvme(), ChecksumAlgorithm::Crc64Nvme),
        (head.checksum_sha1(), ChecksumAlgorithm::Sha1),
        (head.checksum_sha256(), ChecksumAlgorithm::Sha256),
    ]
    .into_iter()
    .find_map(|(value, algorithm)| value.map(|_| algorithm))
}

/// `part` with the checksum under `algorithm` that `UploadPart` returned, which `CompleteMultipartUpload`
/// needs for every part of an upload created with an algorithm.
fn with_part_checksum(
    part: aws_sdk_s3::types::builders::CompletedPartBuilder,
    uploaded: &aws_sdk_s3::operation::upload_part::UploadPartOutput,
    algorithm: Option<&ChecksumAlgorithm>,
) -> aws_sdk_s3::types::builders::CompletedPartBuilder {
    let owned = |value: Option<&str>| value.map(str::to_owned);
    match algorithm {
        Some(ChecksumAlgorithm::Crc32) => part.set_checksum_crc32(owned(uploaded.checksum_crc32())),
        Some(ChecksumAlgorithm::Crc32C) => part.set_checksum_crc32_c(owned(uploaded.checksum_crc32_c())),
        Some(ChecksumAlgorithm::Crc64Nvme) => part.set_checksum_crc64_nvme(owned(uploaded.checksum_crc64_nvme())),
        Some(ChecksumAlgorithm::Sha1) => part.set_checksum_sha1(owned(uploaded.checksum_sha1())),
        Some(ChecksumAlgorithm::Sha256) => part.set_checksum_sha256(owned(uploaded.checksum_sha256())),
        _ => part,
    }
}

/// An object in S3: a source of ranged reads pinned to the version first seen, and a destination for
/// encrypted uploads. Clones share the pin.
#[derive(Clone, Debug)]
pub struct S3Object {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    /// The version read, if one was named; `None`: the current one.
    version: Option<String>,
    /// Whether an upload may replace an object already at the key (see [`S3Object::overwrite`]).
    overwrite: bool,
    pinned: Arc<OnceCell<Pinned>>,
    deadline: Deadline,
    /// Requests retried, by this module or the SDK, for this object and its clones.
    retries: Arc<AtomicU64>,
}

/// What [`S3Object::encrypt_from`] uploaded.
#[derive(Clone, Debug)]
pub struct Uploaded {
    /// The message's length in bytes.
    pub bytes: u64,
    /// Parts uploaded: 0 for a single `PutObject`.
    pub parts: usize,
    /// The new object's ETag, as S3 returned it.
    pub etag: Option<String>,
}

/// Splits `s3://bucket/key` into its bucket and key; `None` for anything else (a bucket without a key too).
/// The key is taken as it is (`.`, `..` and empty segments included: S3 keys are strings, not paths). An
/// access-point ARN in the bucket position (`s3://arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME/key`) is
/// `None`: a bucket name has no `:`, and the ARN's own `/` would end the bucket early and shift `NAME` into
/// the key; the access point's alias, which S3 takes wherever a bucket name goes, works.
pub fn parse_url(url: &str) -> Option<(&str, &str)> {
    let (bucket, key) = url.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty() && !bucket.contains(':') && !key.is_empty()).then_some((bucket, key))
}

/// An object found under a prefix by [`Listing`]: its key, decoded, and its size as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The object's key, whole (prefix included). Whoever can write the bucket chooses it: show it only
    /// through [`Escaped`].
    pub key: String,
    /// Its size in bytes, as the listing gave it (`None` if it gave none).
    pub size: Option<u64>,
}

impl Listed {
    /// Whether this is what consoles and tools create for a "folder": an empty object whose key ends in
    /// `/`. It holds no message.
    pub fn is_folder_marker(&self) -> bool {
        self.key.ends_with('/') && self.size == Some(0)
    }
}

/// The objects of a bucket whose keys start with a prefix (a string prefix, as S3 has it: `logs` also
/// matches `logs-old/a`), in key order, one `ListObjectsV2` page (up to 1,000 keys) at a time, following
/// continuation tokens. Keys are asked for URL-encoded, since XML cannot carry every character a key may
/// hold (control characters), and decoded here.
///
/// An endpoint chooses the tokens: one it gave before is refused (the listing would go round forever), and
/// so is a page that says it is truncated without a token (the rest could not be listed, and taking it for
/// the end would pass a partial listing for a whole one). Each page's token is remembered by a 64-bit
/// keyed hash, some 16 bytes per page of up to 1,000 keys. An endpoint that gives fresh tokens forever is
/// listed until the caller stops, as a bucket without end would be.
#[derive(Debug)]
pub struct Listing {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    /// The token of the next page; `None` before the first.
    next: Option<String>,
    /// The hashes (by `hasher`) of the tokens given so far.
    tokens: HashSet<u64>,
    hasher: RandomState,
    done: bool,
}

impl Listing {
    /// The objects of `bucket` whose keys start with `prefix` (`""`: the whole bucket). Nothing is
    /// requested until [`next_page`](Self::next_page).
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        let (tokens, hasher) = (HashSet::new(), RandomState::new());
        Self { client, bucket: bucket.into(), prefix: prefix.into(), next: None, tokens, hasher, done: false }
    }

    /// The next page of objects, `None` once the listing is complete.
    ///
    /// # Errors
    ///
    /// The request fails (no such bucket, no `s3:ListBucket`); the answer holds a key that is not valid
    /// URL encoding of UTF-8, gives a token it gave before (a listing that would never end), or says it is
    /// truncated without a token.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Listed>>> {
        if self.done {
            return Ok(None);
        }
        let failure = |what: &str| {
            let (bucket, prefix) = (Escaped(&self.bucket), Escaped(&self.prefix));
            Error::Io(io::Error::other(format!("S3 ListObjectsV2 s3://{bucket}/{prefix}: {}", Escaped(what))))
        };
        let request = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .set_continuation_token(self.next.clone());
        let page = request.send().await.map_err(|e| failure(&sdk_error_text(e)))?;
        let encoded = page.encoding_type() == Some(&aws_sdk_s3::types::EncodingType::Url);
        let mut objects = Vec::with_capacity(page.contents().len());
        for object in page.contents() {
            let key = object.key().unwrap_or_default();
            let key = if encoded { decode_key(key).map_err(|why| failure(&why))? } else { key.to_owned() };
            objects.push(Listed { key, size: object.size().and_then(|n| u64::try_from(n).ok()) });
        }
        match (page.is_truncated() == Some(true), page.next_continuation_token()) {
            (false, _) => self.done = true,
            (true, None) => {
                return Err(failure("a page says it is truncated but gives no continuation token to list the rest"));
            }
            (true, Some(token)) if !self.tokens.insert(self.hasher.hash_one(token)) => {
                return Err(failure("a continuation token it gave before (the listing would go round forever)"));
            }
            (true, Some(token)) => self.next = Some(token.to_owned()),
        }
        Ok(Some(objects))
    }
}

impl S3Object {
    /// The object `key` in `bucket`. Nothing is requested until the first read or upload.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>, key: impl Into<String>) -> Self {
        let (bucket, key) = (bucket.into(), key.into());
        let (pinned, retries) = (Arc::default(), Arc::default());
        Self { client, bucket, key, version: None, overwrite: true, pinned, deadline: Deadline::DEFAULT, retries }
    }

    /// Whether uploads to this object may replace an object already at its key: yes by default, as S3's
    /// own `PutObject`. With `false`, the `PutObject` or `CompleteMultipartUpload` that makes the object
    /// carries `If-None-Match: *`, so that S3 itself refuses to replace an object, one written by another
    /// client while this upload ran included: the upload then fails with an [`io::ErrorKind::AlreadyExists`]
    /// error inside [`Error::Io`], the multipart upload is aborted, and the object at the key stays as it
    /// was. A multipart upload learns this only at its completion, once every part was sent:
    /// [`exists`](Self::exists) refuses sooner in the common case. Re-encryption in place is unaffected (it
    /// replaces the object only while it has the ETag that was read).
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Whether an object is at the key now (one `HeadObject`): `Ok(false)` on a 404, whether the key or
    /// the bucket is missing. Only a hint, raced by any other writer; an upload with
    /// [`overwrite(false)`](Self::overwrite) is what refuses for certain.
    ///
    /// # Errors
    ///
    /// The request fails otherwise (a 403 without `s3:ListBucket`, which S3 gives for a missing key too).
    pub async fn exists(&self) -> Result<bool> {
        match self.client.head_object().bucket(&self.bucket).key(&self.key).send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(service)) if service.raw().status().as_u16() == 404 => Ok(false),
            Err(e) => Err(Error::Io(self.request_failure("HeadObject", e))),
        }
    }

    /// The same object with each request cut off after `deadline` for its size (default
    /// [`Deadline::DEFAULT`]; see the [module docs](self)).
    pub fn with_deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = deadline;
        self
    }

    /// How many requests for this object (and its clones) were retried so far, by this module or by the
    /// SDK: a number to report once per transfer.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::SeqCst)
    }

    /// The version `version_id` of the object, as a source: its reads (`HeadObject`, `GetObject`,
    /// `GetObjectTagging`) name that version. Uploads still write the object's new current version;
    /// re-encrypting in place replaces it only while the current version has this version's ETag, and
    /// [`is_current_version`](Self::is_current_version) tells whether it still is the current one.
    pub fn with_version(mut self, version_id: impl Into<String>) -> Self {
        self.version = Some(version_id.into());
        self.pinned = Arc::default();
        self
    }

    /// The version named by [`with_version`](Self::with_version), if any.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Whether the version this object names is the object's current version (one `HeadObject` without a
    /// version id); true when it names none.
    ///
    /// # Errors
    ///
    /// The request fails (no current version, no access).
    pub async fn is_current_version(&self) -> Result<bool> {
        let Some(version) = &self.version else { return Ok(true) };
        let head = self.client.head_object().bucket(&self.bucket).key(&self.key).send().await;
        let head = head.map_err(|e| self.request_failure("HeadObject", e))?;
        Ok(head.version_id() == Some(version.as_str()))
    }

    /// The object named by `s3://bucket/key`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `url` is not of that form.
    pub fn from_url(client: aws_sdk_s3::Client, url: &str) -> Result<Self> {
        let (bucket, key) =
            parse_url(url).ok_or_else(|| Error::Config(format!("{} is not s3://bucket/key", Escaped(url))))?;
        Ok(Self::new(client, bucket, key))
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A failure no retry cures (see [`failure_with`](Self::failure_with)).
    fn failure(&self, what: &str, err: impl std::fmt::Display) -> io::Error {
        self.failure_with(what, err, Retry::Never)
    }

    /// The one place S3's answers become errors: the service's message (an endpoint's, so a hostile
    /// server's) is escaped like the names, so that a library user who logs the error logs no control
    /// bytes; whether a retry may help is `retry`, decided from the answer's kind, never from this text.
    fn failure_with(&self, what: &str, err: impl std::fmt::Display, retry: Retry) -> io::Error {
        let (bucket, key, err) = (Escaped(&self.bucket), Escaped(&self.key), err.to_string());
        Reason::new(format!("S3 {what} s3://{bucket}/{key}: {}", Escaped(&err)), retry).into_io()
    }

    /// The failure of a request, classified by [`sdk_retry`].
    fn request_failure<E>(&self, what: &str, e: SdkError<E, HttpResponse>) -> io::Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let retry = sdk_retry(&e);
        self.failure_with(what, sdk_error_text(e), retry)
    }

    /// [`request_failure`](Self::request_failure) of a request the SDK made `attempts` attempts at.
    fn retried_failure<E>(&self, what: &str, e: SdkError<E, HttpResponse>, attempts: &AtomicU32) -> io::Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let retry = sdk_retry(&e);
        let attempts = after_attempts(attempts.load(Ordering::SeqCst));
        self.failure_with(what, format!("{}{attempts}", sdk_error_text(e)), retry)
    }

    /// What a request whose retries the SDK owns, carrying a body of `body_len` bytes, is sent with: each
    /// attempt cut off after the [`Deadline`] for its body (the client's other timeouts kept), and an
    /// interceptor that counts its attempts into the returned counter.
    fn sdk_retried(&self, body_len: u64) -> (aws_sdk_s3::config::Builder, CountAttempts, Arc<AtomicU32>) {
        let timeouts =
            self.client.config().timeout_config().cloned().unwrap_or_else(|| TimeoutConfig::builder().build());
        let timeouts = timeouts.to_builder().operation_attempt_timeout(self.deadline.for_bytes(body_len)).build();
        let made = Arc::new(AtomicU32::new(0));
        let count = CountAttempts { made: made.clone(), retries: self.retries.clone() };
        (aws_sdk_s3::config::Builder::default().timeout_config(timeouts), count, made)
    }

    /// The object's tags as a `Tagging` header value (`k=v&k2=v2`, URL-encoded), if it has any.
    async fn tagging(&self, carried: &Carried) -> io::Result<Option<String>> {
        if !carried.has_tags {
            return Ok(None);
        }
        let tags = self.client.get_object_tagging().bucket(&self.bucket).key(&self.key);
        let tags = tags.set_version_id(self.version.clone()).send().await;
        let tags = tags.map_err(|e| self.request_failure("GetObjectTagging", e))?;
        let pairs: Vec<String> =
            tags.tag_set().iter().map(|tag| format!("{}={}", url_encode(tag.key()), url_encode(tag.value()))).collect();
        Ok((!pairs.is_empty()).then(|| pairs.join("&")))
    }

    /// [`request_failure`](Self::request_failure) for a request that carried `If-Match` or, with
    /// `if_absent`, `If-None-Match: *`. With `If-Match`, a 412 says the object changed, which a retry
    /// (that reads the object anew) may get past. With `If-None-Match`, a 412 says an object is at the key
    /// (of kind [`io::ErrorKind::AlreadyExists`]), and a 409 that another conditional write to the key ran
    /// at the same time; either way nothing was replaced.
    fn conditional_failure<E>(&self, what: &str, e: SdkError<E, HttpResponse>, if_absent: bool) -> io::Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        if if_absent && e.code() == Some("PreconditionFailed") {
            let (bucket, key) = (Escaped(&self.bucket), Escaped(&self.key));
            let text = format!("S3 {what} s3://{bucket}/{key}: an object is already at the key; it was left as it was");
            io::Error::new(io::ErrorKind::AlreadyExists, Reason::new(text, Retry::Never))
        } else if if_absent && e.code() == Some("ConditionalRequestConflict") {
            let raced = "another write to the key ran at the same time (409 ConditionalRequestConflict); nothing was \
                         replaced";
            self.failure_with(what, raced, Retry::Later)
        } else if e.code() == Some("PreconditionFailed") {
            self.failure_with(
                what,
                "the object changed while it was re-encrypted (its ETag no longer matches); it was left as the other writer made it",
                Retry::Later,
            )
        } else {
            self.request_failure(what, e)
        }
    }

    /// The object's length and ETag, from one `HeadObject` (with checksums enabled, for the algorithm a
    /// re-encryption carries over) on the first call; later calls (and clones) return the same without a
    /// request.
    ///
    /// # Errors
    ///
    /// The request fails (no such object, no access).
    pub async fn pin(&self) -> Result<&Pinned> {
        let pinned = self.pinned.get_or_try_init(|| async {
            let head = self.client.head_object().bucket(&self.bucket).key(&self.key);
            let head = head.set_version_id(self.version.clone()).checksum_mode(ChecksumMode::Enabled).customize();
            // A server that accepts and never answers would hold a client without timeouts for ever: give
            // each attempt the Deadline's patience, unless the client has an attempt timeout of its own.
            let (config, count, attempts) = self.sdk_retried(0);
            let own = self.client.config().timeout_config().and_then(TimeoutConfig::operation_attempt_timeout);
            let head = if own.is_none() { head.config_override(config) } else { head };
            let head = head.interceptor(count).send().await;
            let head = head.map_err(|e| self.retried_failure("HeadObject", e, &attempts))?;
            let len = head.content_length().and_then(|n| u64::try_from(n).ok());
            let len = len.ok_or_else(|| self.failure("HeadObject", "no content length in the response"))?;
            let carried = Carried {
                content_type: head.content_type().map(str::to_owned),
                metadata: head.metadata().filter(|m| !m.is_empty()).cloned(),
                storage_class: head.storage_class().cloned(),
                sse: head.server_side_encryption().cloned(),
                sse_kms_key_id: head.ssekms_key_id().map(str::to_owned),
                bucket_key_enabled: head.bucket_key_enabled(),
                checksum_algorithm: checksum_algorithm(&head),
                checksum_type: head.checksum_type().cloned(),
                has_tags: head.tag_count().is_some_and(|n| n > 0),
            };
            Ok::<_, io::Error>(Pinned { len, etag: head.e_tag().map(str::to_owned), carried })
        });
        Ok(pinned.await?)
    }

    /// The `length` bytes at `offset` of the pinned object, by ranged `GetObject`s: one, unless it fails in
    /// a way a retry may get past; then again, for the bytes still missing, as the module docs say.
    async fn get_range(&self, offset: u64, length: usize) -> io::Result<Vec<u8>> {
        self.get_range_into(offset, length, Vec::new()).await
    }

    /// [`get_range`](Self::get_range) into `bytes` (cleared first): a buffer a reader gave back is
    /// reused instead of a new one allocated.
    async fn get_range_into(&self, offset: u64, length: usize, mut bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        let pinned = self.pin().await.map_err(io::Error::from)?;
        bytes.clear();
        if length == 0 {
            return Ok(bytes);
        }
        if offset.checked_add(length as u64).is_none_or(|end| end > pinned.len) {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a read past the end of the S3 object"));
        }
        use Attempt::{Again, Final};
        let backoff = Backoff::of(&self.client);
        bytes.reserve_exact(length);
        let mut attempt = 1;
        loop {
            let missing = length - bytes.len();
            let deadline = self.deadline.for_bytes(missing as u64);
            let got = tokio::time::timeout(deadline, self.get_into(pinned, offset, length, &mut bytes)).await;
            let (text, next) = match got {
                Ok(Ok(())) => return Ok(bytes),
                Ok(Err(failed)) => failed,
                Err(_) => {
                    let (received, rate) = (bytes.len() - (length - missing), self.deadline.min_rate);
                    let secs = deadline.as_secs_f64();
                    (
                        format!("{received} of {missing} bytes in {secs} s, under the minimum rate of {rate} bytes/s"),
                        Again,
                    )
                }
            };
            let retry = match next {
                Again if attempt < backoff.attempts => None,
                Again => Some(Retry::Later),
                Final(retry) => Some(retry),
            };
            if let Some(retry) = retry {
                return Err(self.failure_with("GetObject", format!("{text}{}", after_attempts(attempt)), retry));
            }
            if pinned.etag.is_none() {
                // Nothing pins the object: the rest might come from another one.
                bytes.clear();
            }
            self.retries.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(backoff.delay(attempt)).await;
            attempt += 1;
        }
    }

    /// One `GetObject` (without the SDK's retries) of the bytes of `offset..offset + length` that `bytes`
    /// does not hold yet, appended to it as they arrive, so that what came before a failure is kept.
    async fn get_into(
        &self,
        pinned: &Pinned,
        offset: u64,
        length: usize,
        bytes: &mut Vec<u8>,
    ) -> std::result::Result<(), (String, Attempt)> {
        use Attempt::{Again, Final};
        let (from, end) = (offset + bytes.len() as u64, offset + length as u64);
        let request = self.client.get_object().bucket(&self.bucket).key(&self.key);
        let request = request.set_version_id(self.version.clone()).range(format!("bytes={from}-{}", end - 1));
        let request = request.set_if_match(pinned.etag.clone()).customize();
        let no_retries = aws_sdk_s3::config::Builder::default().retry_config(RetryConfig::disabled());
        let response = request.config_override(no_retries).send().await.map_err(|e| {
            if e.code() == Some("PreconditionFailed") {
                // Another try of the whole work (a re-encryption that reads the object anew) may pass.
                let changed = "the object changed while it was read (its ETag no longer matches)";
                (changed.to_owned(), Final(Retry::Later))
            } else {
                let next = if sdk_retry(&e) == Retry::Later { Again } else { Final(Retry::Never) };
                (sdk_error_text(e), next)
            }
        })?;
        // A server that ignores `If-Match` (or a man in the middle) may answer from another version or for
        // other bytes: appended to what an earlier attempt kept, they would splice two objects into one.
        if let (Some(pinned_etag), Some(etag)) = (&pinned.etag, response.e_tag())
            && etag != pinned_etag
        {
            let changed = "the object changed while it was read (another ETag in a ranged answer)";
            return Err((changed.to_owned(), Final(Retry::Later)));
        }
        let asked = format!("bytes {from}-{}/{}", end - 1, pinned.len);
        if let Some(range) = response.content_range()
            && range != asked
        {
            return Err((format!("an answer for {range} where {asked} was asked for"), Final(Retry::Never)));
        }
        // A body broken off, cut short or too slow is the connection's fault, which another may not have.
        let mut body = response.body;
        let mut window = RateWindow::new(self.deadline);
        loop {
            let next = match tokio::time::timeout_at(window.end, body.try_next()).await {
                Ok(next) => next.map_err(|e| (DisplayErrorContext(e).to_string(), Again))?,
                Err(_) => {
                    window.roll()?;
                    continue;
                }
            };
            let Some(chunk) = next else { break };
            if chunk.len() > length - bytes.len() {
                return Err((format!("more than the {length} bytes asked for"), Final(Retry::Never)));
            }
            bytes.extend_from_slice(&chunk);
            window.received(chunk.len());
            if tokio::time::Instant::now() >= window.end {
                window.roll()?;
            }
        }
        if bytes.len() != length {
            return Err((format!("{} bytes where {length} were asked for", bytes.len()), Again));
        }
        Ok(())
    }

    /// The whole object, read as [`reader`](Self::reader) does (on the blocking pool).
    ///
    /// # Errors
    ///
    /// A request fails, or the object changed while it was read.
    pub async fn read_all(&self, transfer: &TransferOptions) -> Result<Vec<u8>> {
        let len = self.pin().await?.len;
        let reader = self.reader(Handle::current(), transfer);
        // The length is the server's claim: reserve no more than the GETs in flight hold, grow with the bytes.
        let in_flight = transfer.chunk_size.saturating_mul(transfer.concurrency.saturating_add(2));
        let capacity = usize::try_from(len).unwrap_or(usize::MAX).min(in_flight);
        tokio::task::spawn_blocking(move || {
            let mut all = Vec::with_capacity(capacity);
            let mut reader = reader;
            reader.read_to_end(&mut all).map(|_| all).map_err(Error::from_io)
        })
        .await
        .map_err(|e| Error::Io(io::Error::other(e)))?
    }

    /// A blocking `Read` of the whole object: ranged GETs of [`TransferOptions::chunk_size`], at most
    /// [`TransferOptions::concurrency`] in flight, run on `handle` and returned in order. Read it on a
    /// thread that is not one of the runtime's executors (the blocking pool, or a thread of your own).
    pub fn reader(&self, handle: Handle, transfer: &TransferOptions) -> ObjectReader {
        self.range_reader(handle, transfer, 0..u64::MAX)
    }

    /// [`reader`](Self::reader) of the object's bytes in `range` only (its end cut at the object's end):
    /// the first GETs are sent at once, so a caller that may not need the rest reads the start with one
    /// reader and makes the next only when it needs it.
    pub fn range_reader(&self, handle: Handle, transfer: &TransferOptions, range: Range<u64>) -> ObjectReader {
        let (to_reader, from_producer) = mpsc::channel(1);
        let chunks = (transfer.chunk_size, transfer.concurrency);
        let spent = Arc::new(SpentBuffers::new(transfer.concurrency.saturating_add(2)));
        let producer = handle.spawn(produce(self.clone(), to_reader, Arc::clone(&spent), chunks, range));
        ObjectReader { from_producer, current: Vec::new(), at: 0, spent, _producer: AbortOnDrop(producer) }
    }

    /// Decrypts the object into the file `destination`, which appears only once the whole message
    /// verified (see [`decrypt_to_path`]); blocking: call it off the runtime's executor threads, with
    /// `handle` a runtime for the requests.
    ///
    /// # Errors
    ///
    /// As [`decrypt_to_path`]; a request fails, or the object changed while it was read.
    pub fn decrypt_to_path_blocking(
        &self,
        handle: Handle,
        keyring: &dyn Keyring,
        options: &DecryptOptions,
        destination: &Path,
        output: &OutputOptions,
        transfer: &TransferOptions,
    ) -> Result<Header> {
        decrypt_to_path(keyring, options, self.reader(handle, transfer), destination, output)
    }

    /// [`decrypt_to_path_blocking`](Self::decrypt_to_path_blocking) on the blocking pool.
    ///
    /// # Errors
    ///
    /// As [`decrypt_to_path`]; a request fails, or the object changed while it was read.
    pub async fn decrypt_to_path(
        &self,
        keyring: Arc<dyn Keyring>,
        options: DecryptOptions,
        destination: PathBuf,
        output: OutputOptions,
        transfer: TransferOptions,
    ) -> Result<Header> {
        let (object, handle) = (self.clone(), Handle::current());
        tokio::task::spawn_blocking(move || {
            object.decrypt_to_path_blocking(handle, keyring.as_ref(), &options, &destination, &output, &transfer)
        })
        .await
        .map_err(|e| Error::Io(io::Error::other(e)))?
    }

    /// Encrypts `plaintext` (read to its end) into this object, uploading parts while frames are sealed;
    /// blocking: call it off the runtime's executor threads, with `handle` a runtime for the requests. The
    /// object appears only after the final frame is sealed and uploaded; on any error the multipart upload
    /// is aborted (and awaited) before this returns.
    ///
    /// # Errors
    ///
    /// The keyring or options fail as for [`Encryptor::new`], reading `plaintext` fails, the part size is
    /// under [`MIN_PART_SIZE`], the message needs more than 10 000 parts, or a request fails.
    pub fn encrypt_from_blocking(
        &self,
        handle: Handle,
        keyring: &dyn Keyring,
        options: &EncryptOptions,
        transfer: &TransferOptions,
        plaintext: impl Read,
    ) -> Result<Uploaded> {
        self.encrypt_from_blocking_cancellable(handle, keyring, options, transfer, plaintext, Arc::default())
    }

    /// [`encrypt_from_blocking`](Self::encrypt_from_blocking) that gives up once `cancelled` is set: the
    /// next write of sealed bytes fails, and an upload whose input has ended is not completed if the flag
    /// is set by then, so a flag set before end-of-input is seen (a signal handler's, say, when the
    /// producer of a pipe dies of the same Ctrl-C) never yields a truncated but valid object. Either way
    /// the multipart upload is aborted (and the abort awaited) before this returns. Setting the flag does
    /// not interrupt a read of `plaintext` that is blocked: a reader that may block should itself fail
    /// once the flag is set.
    ///
    /// # Errors
    ///
    /// As [`encrypt_from_blocking`](Self::encrypt_from_blocking), and an I/O error once cancelled.
    pub fn encrypt_from_blocking_cancellable(
        &self,
        handle: Handle,
        keyring: &dyn Keyring,
        options: &EncryptOptions,
        transfer: &TransferOptions,
        mut plaintext: impl Read,
        cancelled: Arc<AtomicBool>,
    ) -> Result<Uploaded> {
        let conditions = Conditions { if_absent: !self.overwrite, ..Conditions::default() };
        self.upload_sealed(handle, transfer, cancelled, conditions, |parts| {
            let mut encryptor = Encryptor::new(keyring, options, parts)?;
            encryptor.copy_from(&mut plaintext).map_err(Error::from_io)?;
            encryptor.finish().map(drop)
        })
    }

    /// Uploads what `seal` writes, completing the upload only if `seal` succeeded (and, with `if_match`, only
    /// while the object's ETag is still that one); otherwise the upload is aborted before this returns.
    fn upload_sealed(
        &self,
        handle: Handle,
        transfer: &TransferOptions,
        cancelled: Arc<AtomicBool>,
        conditions: Conditions,
        seal: impl FnOnce(&mut PartWriter) -> Result<()>,
    ) -> Result<Uploaded> {
        if transfer.part_size < MIN_PART_SIZE {
            return Err(Error::Config(format!(
                "an S3 part size of {} bytes is under S3's minimum of {MIN_PART_SIZE}",
                transfer.part_size
            )));
        }
        let (to_uploader, from_writer) = mpsc::channel(1);
        // The parts in flight, one queued, one being filled.
        let spent = Arc::new(SpentBuffers::new(transfer.concurrency.saturating_add(2)));
        let concurrency = (transfer.concurrency, Arc::clone(&spent));
        let upload = upload(self.clone(), from_writer, concurrency, cancelled.clone(), conditions);
        let uploader = handle.spawn(upload);
        let part_size = transfer.part_size;
        let mut parts = PartWriter { part: Vec::new(), part_size, to_uploader, cancelled, spent };
        let sealed = seal(&mut parts).and_then(|()| parts.finish());
        // Without `Last` (an error above dropped the writer) the uploader aborts the upload before it ends.
        let uploaded = handle.block_on(uploader).map_err(|e| Error::Io(io::Error::other(e)))?;
        match (sealed, uploaded) {
            (Ok(()), uploaded) => uploaded,
            // The writer failed because the uploader stopped: the uploader's error says why.
            (Err(Error::Io(e)), Err(upload_error)) if e.kind() == io::ErrorKind::BrokenPipe => Err(upload_error),
            (Err(e), _) => Err(e),
        }
    }

    /// Re-encrypts the message in `source` into this object under a fresh data key from `target_keyring`
    /// (see [`reencrypt`]), streaming: the source is downloaded in ranged GETs pinned to
    /// its ETag, the new message uploaded as it is sealed, in memory bounded by `transfer`, with plaintext
    /// only in the pipelines' wiped buffers. The object appears only once the whole source verified and the
    /// new message is complete; on any error the upload is aborted (and the abort awaited) and nothing
    /// changes. Blocking: call it off the runtime's executor threads, with `handle` a runtime for the
    /// requests.
    ///
    /// In place (this object is `source`), the upload completes only if the object still has the ETag that
    /// was read (`If-Match` on `PutObject` or `CompleteMultipartUpload`): a writer that replaced it meanwhile
    /// wins, and this fails. Unless the options declare a plaintext bound, the source's length is declared
    /// (for a caching target keyring), and the part size grows with it so that the message fits in 10 000
    /// parts. The new object keeps the source's content type, user metadata, storage class, server-side
    /// encryption settings, tags (reading them needs `s3:GetObjectTagging` when it has tags) and additional
    /// checksum algorithm (CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256; for a multipart upload every part
    /// carries one and the object gets S3's composite or full-object value), with a value computed over the
    /// new bytes. Object Lock settings and ACLs are not carried over.
    ///
    /// # Errors
    ///
    /// As [`reencrypt`]; a request fails; the source changed while it was read; in place,
    /// the object changed before the new one could replace it; `cancelled` was set.
    #[allow(clippy::too_many_arguments)]
    pub fn reencrypt_from_blocking(
        &self,
        handle: Handle,
        source: &S3Object,
        source_keyring: &dyn Keyring,
        target_keyring: &dyn Keyring,
        options: &ReencryptOptions,
        transfer: &TransferOptions,
        cancelled: Arc<AtomicBool>,
    ) -> Result<Uploaded> {
        let pinned = handle.block_on(source.pin())?.clone();
        let in_place = self.bucket == source.bucket && self.key == source.key;
        let if_match = if in_place { pinned.etag.clone() } else { None };
        if in_place && if_match.is_none() {
            return Err(Error::Io(source.failure("HeadObject", "no ETag, which replacing the object in place needs")));
        }
        let tagging = handle.block_on(source.tagging(&pinned.carried))?;
        let if_absent = !in_place && !self.overwrite;
        let conditions = Conditions { if_match, if_absent, carried: pinned.carried.clone(), tagging };
        let mut declared = options.clone();
        if declared.target.max_plaintext_length.is_none() {
            declared.target.max_plaintext_length = Some(pinned.len);
        }
        let transfer = transfer.clone().part_size(transfer.part_size_for(pinned.len));
        let reader = source.reader(handle.clone(), &transfer);
        self.upload_sealed(handle, &transfer, cancelled, conditions, |parts| {
            reencrypt(source_keyring, target_keyring, &declared, reader, parts).map(drop)
        })
    }

    /// Replaces this object by `message`, a message sealed from what was read of it (`kms-envelope edit`),
    /// only while the object still has the ETag it was pinned to ([`pin`](Self::pin), which the reads
    /// did): `If-Match` on `PutObject` or `CompleteMultipartUpload`, so a writer who replaced it meanwhile
    /// wins and this fails. The new object keeps the old one's settings and tags as
    /// [`reencrypt_from_blocking`](Self::reencrypt_from_blocking) in place does. On any error the upload is
    /// aborted (and the abort awaited) and nothing changes. Blocking, as that one.
    ///
    /// # Errors
    ///
    /// The object has no ETag, a request fails, the object changed since it was pinned, `cancelled` was set.
    pub fn replace_pinned_blocking(
        &self,
        handle: Handle,
        message: &[u8],
        transfer: &TransferOptions,
        cancelled: Arc<AtomicBool>,
    ) -> Result<Uploaded> {
        let pinned = handle.block_on(self.pin())?.clone();
        let Some(etag) = pinned.etag.clone() else {
            return Err(Error::Io(self.failure("HeadObject", "no ETag, which replacing the object in place needs")));
        };
        let tagging = handle.block_on(self.tagging(&pinned.carried))?;
        let conditions =
            Conditions { if_match: Some(etag), if_absent: false, carried: pinned.carried.clone(), tagging };
        let transfer = transfer.clone().part_size(transfer.part_size_for(message.len() as u64));
        self.upload_sealed(handle, &transfer, cancelled, conditions, |parts| {
            parts.write_all(message).map_err(Error::from_io)
        })
    }

    /// Decrypts the message in `source` into this object, its plaintext, streaming as
    /// [`reencrypt_from_blocking`](Self::reencrypt_from_blocking) does: the object appears only once the
    /// whole message verified (every frame, the signature of a signed suite), since the upload is completed
    /// only after the decryptor released its final frame; on any error it is aborted and nothing appears.
    /// Blocking: call it off the runtime's executor threads, with `handle` a runtime for the requests.
    ///
    /// # Errors
    ///
    /// As [`decrypt`](crate::decrypt); a request fails; the source changed while it was read; `cancelled`
    /// was set; this object is `source` itself ([`Error::Config`]: its plaintext would replace the message).
    pub fn decrypt_from_blocking(
        &self,
        handle: Handle,
        source: &S3Object,
        keyring: &dyn Keyring,
        options: &DecryptOptions,
        transfer: &TransferOptions,
        cancelled: Arc<AtomicBool>,
    ) -> Result<Uploaded> {
        if self.bucket == source.bucket && self.key == source.key {
            return Err(Error::Config(format!(
                "s3://{}/{} cannot be decrypted onto itself: its plaintext would replace the message",
                Escaped(&self.bucket),
                Escaped(&self.key)
            )));
        }
        let pinned = handle.block_on(source.pin())?.clone();
        let transfer = transfer.clone().part_size(transfer.part_size_for(pinned.len));
        let reader = source.reader(handle.clone(), &transfer);
        let conditions = Conditions { if_absent: !self.overwrite, ..Conditions::default() };
        self.upload_sealed(handle, &transfer, cancelled, conditions, |parts| {
            let mut decryptor = crate::stream::Decryptor::new(keyring, options, reader)?;
            decryptor.write_to(parts).map(drop).map_err(Error::from_io)
        })
    }

    /// [`encrypt_from_blocking`](Self::encrypt_from_blocking) on the blocking pool. If this future is
    /// dropped before it completes, the upload is aborted and the object never appears.
    ///
    /// # Errors
    ///
    /// As [`encrypt_from_blocking`](Self::encrypt_from_blocking).
    pub async fn encrypt_from(
        &self,
        keyring: Arc<dyn Keyring>,
        options: EncryptOptions,
        transfer: TransferOptions,
        plaintext: impl Read + Send + 'static,
    ) -> Result<Uploaded> {
        let (object, handle) = (self.clone(), Handle::current());
        let cancel = CancelOnDrop(Arc::default());
        let cancelled = cancel.0.clone();
        let result = tokio::task::spawn_blocking(move || {
            object.encrypt_from_blocking_cancellable(
                handle,
                keyring.as_ref(),
                &options,
                &transfer,
                plaintext,
                cancelled,
            )
        })
        .await;
        drop(cancel);
        result.map_err(|e| Error::Io(io::Error::other(e)))?
    }
}

/// An SDK error on one short line: for S3's answer, its error code, message, HTTP status and request id
/// (`NoSuchKey: The specified key does not exist. (HTTP 404; request id ...)`); otherwise (no answer: a
/// timeout, a refused connection) the messages of the SDK's error chain, joined by `: `, as KMS errors show
/// theirs (request bodies withheld) — never the `Debug` dump of the error's structure that the SDK's
/// `DisplayErrorContext` appends.
fn sdk_error_text<E>(e: SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let SdkError::ServiceError(service) = &e else { return crate::keyring::kms::error_chain(&e) };
    let status = service.raw().status().as_u16();
    let code = service.err().code().unwrap_or("no error code");
    let mut text = match service.err().message() {
        Some(message) => format!("{code}: {message} (HTTP {status}"),
        None => format!("{code} (HTTP {status}"),
    };
    if let Some(id) = e.request_id() {
        text.push_str(&format!("; request id {id}"));
    }
    text.push(')');
    text
}

/// Whether a failed S3 request may get through later, from the SDK error's kind, S3's HTTP status and its
/// error code, never from the message text (an endpoint's words): a timeout, a request that could not be
/// sent or an unreadable answer; throttling (`SlowDown`, 503, 429); a 5xx; a 408 `RequestTimeout`; a 409
/// `ConditionalRequestConflict` (a conditional write raced another: restart). Not a 404, a 403, a 400.
fn sdk_retry<E>(e: &SdkError<E, HttpResponse>) -> Retry
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    const TRANSIENT_CODES: [&str; 9] = [
        "SlowDown",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "ConditionalRequestConflict",
    ];
    match e {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => Retry::Later,
        SdkError::DispatchFailure(failure) if !failure.is_user() => Retry::Later,
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("");
            if status >= 500 || status == 429 || status == 408 || TRANSIENT_CODES.contains(&code) {
                Retry::Later
            } else {
                Retry::Never
            }
        }
        _ => Retry::Never,
    }
}

impl AsyncRangeSource for S3Object {
    /// The length from the object's `HeadObject`, requested once.
    async fn total_len(&self) -> io::Result<u64> {
        Ok(self.pin().await?.len)
    }

    /// One ranged `GetObject` with `If-Match` the pinned ETag; exactly `length` bytes or an error.
    async fn read_at(&self, offset: u64, length: usize) -> io::Result<Vec<u8>> {
        self.get_range(offset, length).await
    }
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sets the flag when dropped: the caller of an upload has gone.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Range buffers the reader is done with, for the producer's next GETs.
///
/// A fresh buffer per range costs its page faults anew (one per 4 KiB page the first time it is written:
/// ~110,000 for a 1 GiB download in 8 MiB ranges, against ~6,500 for a client that reuses its buffers),
/// which cost a download about a tenth of its rate on the modelled S3. At most `keep` are kept (as many as a
/// download holds at once), and they are wiped when the download ends: an object read may be plaintext
/// (`encrypt s3://...`).
#[derive(Debug)]
struct SpentBuffers {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl SpentBuffers {
    fn new(keep: usize) -> Self {
        Self { free: std::sync::Mutex::new(Vec::new()), keep }
    }

    /// A buffer given back earlier (emptied), or an empty one (allocated by whoever fills it).
    fn take(&self) -> Vec<u8> {
        let mut buffer = self.free.lock().map(|mut free| free.pop().unwrap_or_default()).unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// Keeps `buffer` for another range, or wipes it when `keep` are kept already.
    fn give_back(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() == 0 {
            return;
        }
        if let Ok(mut free) = self.free.lock()
            && free.len() < self.keep
        {
            free.push(buffer);
            return;
        }
        buffer.zeroize();
    }
}

impl Drop for SpentBuffers {
    fn drop(&mut self) {
        let free = self.free.get_mut().map(std::mem::take).unwrap_or_default();
        for mut buffer in free {
            buffer.zeroize();
        }
    }
}

/// The blocking side of a whole-object download: chunks in order, as the producer task fetched them.
#[derive(Debug)]
pub struct ObjectReader {
    from_producer: mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
    spent: Arc<SpentBuffers>,
    _producer: AbortOnDrop<()>,
}

impl Drop for ObjectReader {
    fn drop(&mut self) {
        self.current.zeroize();
    }
}

impl<T> std::fmt::Debug for AbortOnDrop<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AbortOnDrop")
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.from_producer.blocking_recv() {
                Some(Ok(chunk)) => {
                    let spent = std::mem::replace(&mut self.current, chunk);
                    self.at = 0;
                    self.spent.give_back(spent);
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Fetches `range` of the pinned object in chunks, `concurrency` GETs in flight, and sends them in order;
/// stops at the first error (sent on) or when the reader is gone.
async fn produce(
    object: S3Object,
    to_reader: mpsc::Sender<io::Result<Vec<u8>>>,
    spent: Arc<SpentBuffers>,
    (chunk, concurrency): (usize, usize),
    range: Range<u64>,
) {
    let len = match object.pin().await {
        Ok(pinned) => pinned.len.min(range.end),
        Err(e) => {
            let _ = to_reader.send(Err(e.into())).await;
            return;
        }
    };
    let mut in_flight = VecDeque::with_capacity(concurrency);
    let mut next = range.start;
    loop {
        while in_flight.len() < concurrency && next < len {
            let length = chunk.min(usize::try_from(len - next).unwrap_or(usize::MAX));
            let (object, buffer) = (object.clone(), spent.take());
            let get = async move { object.get_range_into(next, length, buffer).await };
            in_flight.push_back(AbortOnDrop(tokio::spawn(get)));
            next += length as u64;
        }
        let Some(mut oldest) = in_flight.pop_front() else { return };
        let result = (&mut oldest.0).await.unwrap_or_else(|e| Err(io::Error::other(e)));
        let failed = result.is_err();
        if to_reader.send(result).await.is_err() || failed {
            return;
        }
    }
}

enum ToUploader {
    Part(Vec<u8>),
    /// The rest of the message after the final frame (possibly empty): complete the upload.
    Last(Vec<u8>),
}

/// The encryptor's output: gathers parts and hands each full one to the uploader.
struct PartWriter {
    part: Vec<u8>,
    part_size: usize,
    to_uploader: mpsc::Sender<ToUploader>,
    cancelled: Arc<AtomicBool>,
    /// Parts the SDK is done with (see [`PartBody`]).
    spent: Arc<SpentBuffers>,
}

fn uploader_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the S3 upload stopped")
}

impl PartWriter {
    /// Hands the rest to the uploader, which completes the upload.
    fn finish(self) -> Result<()> {
        self.to_uploader.blocking_send(ToUploader::Last(self.part)).map_err(|_| Error::Io(uploader_gone()))
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(io::Error::other("the S3 upload was cancelled"));
        }
        if self.part.capacity() == 0 {
            self.part = self.spent.take();
            self.part.reserve_exact(self.part_size);
        }
        let n = data.len().min(self.part_size - self.part.len());
        self.part.extend_from_slice(&data[..n]);
        if self.part.len() == self.part_size {
            let part = std::mem::take(&mut self.part);
            self.to_uploader.blocking_send(ToUploader::Part(part)).map_err(|_| uploader_gone())?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What an upload must respect or carry: complete only while the object has the ETag `if_match`
/// (re-encryption in place) or, with `if_absent`, only while no object is at the key; and give the new
/// object the source's settings and tags.
#[derive(Default)]
struct Conditions {
    if_match: Option<String>,
    if_absent: bool,
    carried: Carried,
    tagging: Option<String>,
}

/// `text` percent-encoded for a `Tagging` header: RFC 3986's unreserved characters stay as they are.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A key as S3 URL-encodes it (`ListObjectsV2` with `encoding-type=url`, an S3 Batch Operations task's
/// `s3Key`), decoded: `+` is a space, `%XX` a byte, and the bytes UTF-8.
///
/// # Errors
///
/// A `%` not followed by two hex digits, or bytes that are not UTF-8.
pub fn decode_key(encoded: &str) -> std::result::Result<String, String> {
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = rest.get(..2).filter(|hex| hex.iter().all(u8::is_ascii_hexdigit));
                let hex = hex.ok_or_else(|| "a % in the key is not followed by two hex digits".to_owned())?;
                let digits = std::str::from_utf8(hex).map_err(|_| "unreachable: ASCII hex digits".to_owned())?;
                bytes.push(u8::from_str_radix(digits, 16).map_err(|e| e.to_string())?);
                rest = &rest[2..];
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| "the decoded key is not UTF-8".to_owned())
}

/// How many times an upload is aborted before it is left to the bucket's lifecycle rule.
const ABORT_ATTEMPTS: u32 = 4;

/// Uploads what the writer sends: one `PutObject` if the first thing is the whole message, else a
/// multipart upload, completed only on `Last` and aborted on anything else.
async fn upload(
    object: S3Object,
    mut from_writer: mpsc::Receiver<ToUploader>,
    (concurrency, spent): (usize, Arc<SpentBuffers>),
    cancelled: Arc<AtomicBool>,
    conditions: Conditions,
) -> Result<Uploaded> {
    let Conditions { if_match, if_absent, carried, tagging } = conditions;
    let if_none_match = if_absent.then(|| "*".to_owned());
    let incomplete = || Error::Io(io::Error::other("the message was not completed; nothing was uploaded"));
    let first = match from_writer.recv().await {
        None => return Err(incomplete()),
        Some(ToUploader::Last(message)) => {
            if cancelled.load(Ordering::SeqCst) {
                return Err(incomplete());
            }
            let bytes = message.len() as u64;
            let put = object.client.put_object().bucket(&object.bucket).key(&object.key).set_if_match(if_match);
            let put = put.set_if_none_match(if_none_match);
            let put = put
                .set_content_type(carried.content_type)
                .set_metadata(carried.metadata)
                .set_storage_class(carried.storage_class)
                .set_server_side_encryption(carried.sse)
                .set_ssekms_key_id(carried.sse_kms_key_id)
                .set_bucket_key_enabled(carried.bucket_key_enabled)
                .set_checksum_algorithm(carried.checksum_algorithm)
                .set_tagging(tagging);
            let (config, count, _) = object.sdk_retried(bytes);
            let put = put.body(ByteStream::from(message)).customize().config_override(config).interceptor(count);
            let put = put.send().await.map_err(|e| object.conditional_failure("PutObject", e, if_absent))?;
            return Ok(Uploaded { bytes, parts: 0, etag: put.e_tag().map(str::to_owned) });
        }
        Some(ToUploader::Part(part)) => part,
    };
    let checksum_type = carried.multipart_checksum_type();
    let created = object.client.create_multipart_upload().bucket(&object.bucket).key(&object.key);
    let created = created
        .set_content_type(carried.content_type)
        .set_metadata(carried.metadata)
        .set_storage_class(carried.storage_class)
        .set_server_side_encryption(carried.sse)
        .set_ssekms_key_id(carried.sse_kms_key_id)
        .set_bucket_key_enabled(carried.bucket_key_enabled)
        .set_checksum_algorithm(carried.checksum_algorithm.clone())
        .set_checksum_type(checksum_type)
        .set_tagging(tagging)
        .send()
        .await;
    let created = created.map_err(|e| object.request_failure("CreateMultipartUpload", e))?;
    let upload_id = created.upload_id().ok_or_else(|| object.failure("CreateMultipartUpload", "no upload id"))?;
    let mut multipart = Multipart {
        object: &object,
        if_match,
        if_absent,
        checksum_algorithm: carried.checksum_algorithm,
        upload_id: upload_id.to_owned(),
        in_flight: VecDeque::new(),
        done: Vec::new(),
        bytes: 0,
        spent,
    };
    // A cancelled upload stops at once, even with a part in flight or the writer silent (a deadline).
    let result = {
        let mut run = std::pin::pin!(multipart.run(first, &mut from_writer, concurrency, &cancelled));
        let mut stop = std::pin::pin!(until_cancelled(&cancelled));
        std::future::poll_fn(|cx| match run.as_mut().poll(cx) {
            std::task::Poll::Ready(result) => std::task::Poll::Ready(result),
            std::task::Poll::Pending => {
                stop.as_mut().poll(cx).map(|()| Err(Error::Io(io::Error::other("the S3 upload was cancelled"))))
            }
        })
        .await
    };
    if result.is_err() {
        // The writer may still be blocked on a send: let it fail rather than wait.
        drop(from_writer);
        multipart.abort().await;
    }
    result
}

/// How often an upload looks at its cancellation flag while it waits.
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Resolves once `cancelled` is set. It is polled: whoever sets it (a signal handler, a deadline) need
/// not know the task to wake.
async fn until_cancelled(cancelled: &AtomicBool) {
    while !cancelled.load(Ordering::SeqCst) {
        tokio::time::sleep(CANCEL_POLL).await;
    }
}

struct Multipart<'a> {
    object: &'a S3Object,
    /// Complete only while the object has this ETag (re-encryption in place).
    if_match: Option<String>,
    /// Complete only while no object is at the key (`If-None-Match: *`).
    if_absent: bool,
    /// Each part's additional checksum (computed by the SDK), given back on completion.
    checksum_algorithm: Option<ChecksumAlgorithm>,
    upload_id: String,
    in_flight: VecDeque<AbortOnDrop<io::Result<CompletedPart>>>,
    done: Vec<CompletedPart>,
    bytes: u64,
    /// Where a part's buffer goes once the SDK dropped its body (see [`PartBody`]).
    spent: Arc<SpentBuffers>,
}

/// A part's bytes as the SDK's body: the buffer goes back to the writer once the SDK has dropped every
/// clone of the body (after its last attempt), so that parts reuse buffers as GETs do.
struct PartBody {
    buffer: Vec<u8>,
    spent: Arc<SpentBuffers>,
}

impl AsRef<[u8]> for PartBody {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for PartBody {
    fn drop(&mut self) {
        self.spent.give_back(std::mem::take(&mut self.buffer));
    }
}

impl Multipart<'_> {
    async fn run(
        &mut self,
        first: Vec<u8>,
        from_writer: &mut mpsc::Receiver<ToUploader>,
        concurrency: usize,
        cancelled: &AtomicBool,
    ) -> Result<Uploaded> {
        self.send(first)?;
        loop {
            while self.in_flight.len() >= concurrency {
                self.wait_oldest().await?;
            }
            match from_writer.recv().await {
                Some(ToUploader::Part(part)) => self.send(part)?,
                Some(ToUploader::Last(rest)) => {
                    if !rest.is_empty() {
                        self.send(rest)?;
                    }
                    break;
                }
                None => return Err(Error::Io(io::Error::other("the message was not completed; upload aborted"))),
            }
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest().await?;
        }
        if cancelled.load(Ordering::SeqCst) {
            return Err(Error::Io(io::Error::other("the S3 upload was cancelled")));
        }
        let count = self.done.len();
        let parts = CompletedMultipartUpload::builder().set_parts(Some(std::mem::take(&mut self.done))).build();
        let object = self.object;
        let completed = object.client.complete_multipart_upload().bucket(&object.bucket).key(&object.key);
        let completed = completed.set_if_match(self.if_match.clone());
        let completed = completed.set_if_none_match(self.if_absent.then(|| "*".to_owned()));
        let completed = completed.upload_id(&self.upload_id).multipart_upload(parts).send().await;
        let completed =
            completed.map_err(|e| object.conditional_failure("CompleteMultipartUpload", e, self.if_absent))?;
        Ok(Uploaded { bytes: self.bytes, parts: count, etag: completed.e_tag().map(str::to_owned) })
    }

    /// Starts uploading the next part.
    fn send(&mut self, part: Vec<u8>) -> Result<()> {
        let number = self.done.len() + self.in_flight.len() + 1;
        if number > MAX_PARTS {
            return Err(Error::Config(format!(
                "the message needs more than S3's {MAX_PARTS} parts: raise the part size"
            )));
        }
        self.bytes += part.len() as u64;
        let number = i32::try_from(number).expect("at most MAX_PARTS");
        let (object, spent) = (self.object.clone(), Arc::clone(&self.spent));
        let (upload_id, algorithm) = (self.upload_id.clone(), self.checksum_algorithm.clone());
        self.in_flight.push_back(AbortOnDrop(tokio::spawn(async move {
            let request = object.client.upload_part().bucket(&object.bucket).key(&object.key);
            let request = request.upload_id(upload_id).part_number(number).set_checksum_algorithm(algorithm.clone());
            let (config, count, attempts) = object.sdk_retried(part.len() as u64);
            let body = ByteStream::from(bytes::Bytes::from_owner(PartBody { buffer: part, spent }));
            let request = request.body(body).customize().config_override(config).interceptor(count);
            let uploaded = request.send().await.map_err(|e| object.retried_failure("UploadPart", e, &attempts))?;
            let part = CompletedPart::builder().part_number(number).set_e_tag(uploaded.e_tag().map(str::to_owned));
            Ok(with_part_checksum(part, &uploaded, algorithm.as_ref()).build())
        })));
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<()> {
        let Some(mut oldest) = self.in_flight.pop_front() else { return Ok(()) };
        let part = (&mut oldest.0).await.map_err(io::Error::other)??;
        self.done.push(part);
        Ok(())
    }

    /// Stops the parts in flight, then aborts the upload, so that S3 keeps none of it. A part whose request
    /// was already on its way when it was stopped may still land after the abort, and S3 then lists the
    /// upload again ("it might be necessary to abort a given multipart upload multiple times", says
    /// AbortMultipartUpload's documentation): the abort is repeated, a few times and a moment apart, until
    /// `ListParts` no longer finds the upload.
    async fn abort(&mut self) {
        for mut part in self.in_flight.drain(..) {
            part.0.abort();
            let _ = (&mut part.0).await;
        }
        let object = self.object;
        for attempt in 0..ABORT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
            let aborted = object.client.abort_multipart_upload().bucket(&object.bucket).key(&object.key);
            let _ = aborted.upload_id(&self.upload_id).send().await;
            let parts = object.client.list_parts().bucket(&object.bucket).key(&object.key);
            match parts.upload_id(&self.upload_id).send().await {
                Err(e) if e.code() == Some("NoSuchUpload") => return,
                Ok(_) => continue,
                // Another failure (no s3:ListMultipartUploadParts permission, say): the abort was sent.
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    /// README, S3: "parts of 8 MiB (from a file, larger for messages over ~76 GiB, frames' overhead
    /// included, to stay within S3's 10 000 parts ...)": the CLI's part size for a file of known length.
    #[test]
    fn parts_grow_past_about_76_gib_and_every_message_fits_in_10_000_parts() {
        let (defaults, options) = (TransferOptions::new(), EncryptOptions::new());
        for plaintext in [0, 1, GIB, 70 * GIB, 76 * GIB] {
            assert_eq!(defaults.part_size_for_plaintext(plaintext, &options), 8 << 20, "{plaintext} bytes");
        }
        for plaintext in [77 * GIB, 78 * GIB, 100 * GIB, 5 << 40] {
            assert!(defaults.part_size_for_plaintext(plaintext, &options) > 8 << 20, "{plaintext} bytes");
        }
        // Frames from the default down to one byte, up to S3's largest object (5 TiB of message), in steps
        // around the growth point that catch an off-by-a-part.
        for frame in [65536, 4096, 1024, 64, 1] {
            // What a frame of `frame` bytes takes on the wire: sequence number, IV, tag (4 + 12 + 16).
            let wire = |plaintext: u64| plaintext + plaintext / frame * 32;
            let largest = (5u64 << 40) / wire(frame) * frame;
            let around = (0..2000).map(|i| 75 * GIB / wire(frame) * frame + i * (GIB / 500));
            let sizes = around.chain((1..=64).map(|i| i * (largest / 64))).filter(|&n| n <= largest);
            let options = EncryptOptions::new().frame_length(frame as u32);
            for plaintext in sizes {
                // The body, its final frame (40 bytes) and a header of under 64 KiB.
                let message = wire(plaintext) + 40 + (64 << 10);
                let part = defaults.part_size_for_plaintext(plaintext, &options) as u64;
                let parts = message.div_ceil(part);
                assert!(parts <= MAX_PARTS as u64, "{plaintext} bytes in {frame}-byte frames: {parts} parts of {part}");
                assert!(part <= 5 * GIB, "{plaintext} bytes in {frame}-byte frames: parts of {part}, over 5 GiB");
            }
        }
    }

    /// The module docs: "10 s plus its bytes at 64 KiB/s (74 s for a 4 MiB range, 138 s for an 8 MiB part)".
    #[test]
    fn spent_buffers_come_back_emptied_with_their_capacity_and_at_most_keep_are_kept() {
        let spent = SpentBuffers::new(2);
        assert_eq!(spent.take().capacity(), 0, "nothing given back yet: the filler allocates");
        for _ in 0..3 {
            spent.give_back(vec![7u8; 4096]);
        }
        assert_eq!(spent.free.lock().unwrap().len(), 2, "the third was wiped, not kept");
        let reused = spent.take();
        assert!(reused.is_empty() && reused.capacity() >= 4096);
    }

    #[test]
    fn a_part_body_gives_its_buffer_back_only_when_the_sdk_dropped_every_clone() {
        let spent = Arc::new(SpentBuffers::new(4));
        let body = bytes::Bytes::from_owner(PartBody { buffer: vec![1u8; 1024], spent: Arc::clone(&spent) });
        let retry = body.clone();
        drop(body);
        assert!(spent.free.lock().unwrap().is_empty(), "a retry may still send it");
        assert_eq!(&retry[..], &[1u8; 1024][..]);
        drop(retry);
        assert_eq!(spent.take().capacity(), 1024);
    }

    #[test]
    fn the_default_deadline_is_10_s_plus_the_bytes_at_64_kib_per_second() {
        assert_eq!(Deadline::DEFAULT.for_bytes(0), Duration::from_secs(10));
        assert_eq!(Deadline::DEFAULT.for_bytes(4 << 20), Duration::from_secs(74));
        assert_eq!(Deadline::DEFAULT.for_bytes(8 << 20), Duration::from_secs(138));
        assert_eq!(Deadline::new(Duration::ZERO, 0).for_bytes(3), Duration::from_secs(3), "a rate of 0 is 1 byte/s");
        assert_eq!(
            Deadline::DEFAULT.for_bytes(u64::MAX),
            Duration::from_secs(10) + Duration::from_millis(u64::MAX / (64 << 10))
        );
    }

    /// GETs are retried with the client's own policy: its attempts, and a pause drawn at random up to
    /// `initial * 2^(retry - 1)`, at most `max` (the SDK's standard strategy: 1 s, 2 s, 4 s ... 20 s).
    #[test]
    fn gets_back_off_as_the_client_is_configured_with_full_jitter() {
        let client = |retry: Option<RetryConfig>| {
            let mut config = aws_sdk_s3::Config::builder().behavior_version_latest();
            config.set_retry_config(retry);
            aws_sdk_s3::Client::from_conf(config.build())
        };
        let standard = Backoff::of(&client(None));
        assert_eq!(
            (standard.attempts, standard.initial, standard.max),
            (3, Duration::from_secs(1), Duration::from_secs(20))
        );
        let configured = RetryConfig::standard().with_max_attempts(5).with_initial_backoff(Duration::from_millis(10));
        assert_eq!(Backoff::of(&client(Some(configured))).attempts, 5);
        assert_eq!(Backoff::of(&client(Some(RetryConfig::disabled()))).attempts, 1);
        for (retry, ceiling) in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 20), (40, 20)] {
            let delays: Vec<Duration> = (0..200).map(|_| standard.delay(retry)).collect();
            let ceiling = Duration::from_secs(ceiling);
            assert!(delays.iter().all(|&d| d <= ceiling), "retry {retry}: over {ceiling:?}");
            assert!(delays.iter().any(|&d| d < ceiling / 4), "retry {retry}: no jitter down to 0");
            assert!(delays.iter().any(|&d| d > ceiling * 3 / 4), "retry {retry}: no jitter up to {ceiling:?}");
        }
    }

    /// `--s3-part-size` and `KMS_ENVELOPE_S3_PART_SIZE`: binary units however spelt, S3's part limits
    /// (5 MiB to 5 GiB) enforced with a message that says them; requests in flight from 1 to 64.
    #[test]
    fn sizes_and_concurrency_are_parsed_within_s3s_limits() {
        for (text, bytes) in
            [("16MiB", 16 << 20), ("8M", 8 << 20), ("8mb", 8 << 20), ("5242880", 5 << 20), ("5GiB", 5 << 30)]
        {
            assert_eq!(parse_part_size(text), Ok(bytes), "{text}");
        }
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        for (text, why) in [
            ("4MiB", "5MiB to 5GiB"),
            ("5242879", "5MiB to 5GiB"),
            ("6GiB", "5MiB to 5GiB"),
            ("8 MiB", "expected a size"),
            ("8TiB", "expected a size"),
            ("-8M", "expected a size"),
            ("M", "expected a size"),
            ("", "expected a size"),
            ("99999999999999999999", "expected a size"),
            ("18446744073709551615G", "expected a size"),
            ("8\u{1b}[2J", "expected a size"),
        ] {
            let err = parse_part_size(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(!err.chars().any(char::is_control), "{err:?}");
        }
        assert_eq!(parse_concurrency("1"), Ok(1));
        assert_eq!(parse_concurrency("64"), Ok(64));
        for bad in ["0", "65", "-1", "", "8x"] {
            assert!(parse_concurrency(bad).unwrap_err().contains("from 1 to 64"), "{bad:?}");
        }
    }

    #[test]
    fn the_variables_set_part_size_gets_and_concurrency_and_name_themselves_when_wrong() {
        let read = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            TransferOptions::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        };
        assert_eq!(read(&[]).unwrap(), None);
        assert_eq!(read(&[(PART_SIZE_VAR, " ")]).unwrap(), None);
        let both = read(&[(PART_SIZE_VAR, "16MiB"), (CONCURRENCY_VAR, "4")]).unwrap().unwrap();
        assert_eq!(both, TransferOptions::new().part_size(16 << 20).chunk_size(16 << 20).concurrency(4));
        let one = read(&[(CONCURRENCY_VAR, "2")]).unwrap().unwrap();
        assert_eq!(one, TransferOptions::new().concurrency(2));
        let err = read(&[(PART_SIZE_VAR, "1MiB")]).unwrap_err().to_string();
        assert!(err.contains(PART_SIZE_VAR) && err.contains("5MiB to 5GiB"), "{err}");
        let err = read(&[(PART_SIZE_VAR, "8MiB"), (CONCURRENCY_VAR, "100")]).unwrap_err().to_string();
        assert!(err.contains(CONCURRENCY_VAR) && err.contains("from 1 to 64"), "{err}");
    }

    /// The bound the docs state, and a budget that lowers the requests in flight, never to 0.
    #[test]
    fn memory_is_bounded_by_requests_in_flight_times_part_size() {
        let defaults = TransferOptions::new();
        assert_eq!(defaults.memory_bound(), (DEFAULT_CONCURRENCY + 2) * DEFAULT_PART_SIZE);
        let parts = TransferOptions::new().part_size(16 << 20).chunk_size(4 << 20).concurrency(4);
        assert_eq!(parts.memory_bound(), 6 * (16 << 20));
        assert_eq!(defaults.clone().within_memory(32 << 20).requests_in_flight(), 2);
        assert_eq!(defaults.clone().within_memory(1 << 20).requests_in_flight(), 1);
        assert_eq!(defaults.clone().within_memory(1 << 40), defaults);
        let fitted = defaults.within_memory(100 << 20);
        assert!(fitted.memory_bound() <= 100 << 20, "{fitted:?}");
    }

    /// Keys as S3 URL-encodes them in a listing (`+` a space, `%2B` a plus; python's `quote` as moto uses
    /// it, `%20` a space), and malformed escapes refused rather than guessed.
    #[test]
    fn listed_keys_are_url_decoded_as_s3_encodes_them() {
        for (encoded, key) in [
            ("a+b%2Bc", "a b+c"),
            ("a%20b/%25/%C3%A9t%C3%A9", "a b/%/\u{e9}t\u{e9}"),
            ("%1B%5B31m/..//x/", "\u{1b}[31m/..//x/"),
            ("/leading", "/leading"),
        ] {
            assert_eq!(decode_key(encoded).as_deref(), Ok(key), "{encoded}");
        }
        for malformed in ["%", "%4", "%+1", "%zz", "%FF", "a%C3"] {
            assert!(decode_key(malformed).is_err(), "{malformed}");
        }
    }

    #[test]
    fn s3_answers_are_retried_by_status_and_code_never_by_their_text() {
        use aws_sdk_s3::error::ErrorMetadata;
        use aws_sdk_s3::operation::get_object::GetObjectError;
        use aws_sdk_s3::primitives::SdkBody;
        let answer = |status: u16, code: &str, message: &str| {
            let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
            let err = GetObjectError::generic(ErrorMetadata::builder().code(code).message(message).build());
            SdkError::service_error(err, raw)
        };
        let cases = [
            (503, "SlowDown", "Please reduce your request rate.", Retry::Later),
            (500, "InternalError", "", Retry::Later),
            (503, "", "", Retry::Later),
            (400, "RequestTimeout", "", Retry::Later),
            (409, "ConditionalRequestConflict", "", Retry::Later),
            (429, "", "", Retry::Later),
            (404, "NoSuchKey", "gone (not a timeout; SlowDown; 503)", Retry::Never),
            (403, "AccessDenied", "throttled", Retry::Never),
            (409, "BucketAlreadyExists", "", Retry::Never),
            (400, "InvalidRequest", "RequestTimeout", Retry::Never),
        ];
        for (status, code, message, retry) in cases {
            assert_eq!(sdk_retry(&answer(status, code, message)), retry, "{status} {code} {message}");
        }
        let timeout: SdkError<GetObjectError, HttpResponse> = SdkError::timeout_error("operation timeout");
        assert_eq!(sdk_retry(&timeout), Retry::Later);
        // What a failure says reaches its error, and the error keeps the answer's class.
        let config = aws_sdk_s3::Config::builder().behavior_version_latest().build();
        let object = S3Object::new(aws_sdk_s3::Client::from_conf(config), "b", "SlowDown-503-timeout");
        let missing = Error::Io(object.request_failure("GetObject", answer(404, "NoSuchKey", "timeout")));
        assert!(!missing.is_transient(), "{missing}");
        let slow = Error::from_io(object.request_failure("GetObject", answer(503, "SlowDown", "")));
        assert!(slow.is_transient(), "{slow}");
        assert!(Error::from_io(io::Error::from(slow)).is_transient(), "lost through io::Error");
    }

    /// A key is taken as it is (S3 keys are strings); an access-point ARN, whose own `/` would end the
    /// bucket early and shift the access point's name into the key, is no `s3://bucket/key`.
    #[test]
    fn keys_are_strings_and_an_access_point_arn_is_not_a_bucket() {
        assert_eq!(parse_url("s3://b/a/../k"), Some(("b", "a/../k")));
        assert_eq!(parse_url("s3://b//k/"), Some(("b", "/k/")));
        assert_eq!(parse_url("s3://arn:aws:s3:us-east-1:123456789012:accesspoint/ap/key"), None);
        assert_eq!(
            parse_url("s3://ap-123456789012-abcdefghijklmnopqrstuvwxyz-s3alias/key"),
            Some(("ap-123456789012-abcdefghijklmnopqrstuvwxyz-s3alias", "key"))
        );
    }

    #[test]
    fn service_error_text_is_escaped_like_the_names() {
        let config = aws_sdk_s3::Config::builder().behavior_version_latest().build();
        let object = S3Object::new(aws_sdk_s3::Client::from_conf(config), "b\x1b", "k\n");
        let text = object.failure("GetObject", "denied\x1b[2J\u{202e}\r\nforged line").to_string();
        assert!(!text.chars().any(|c| c.is_control() || c == '\u{202e}'), "{text:?}");
        assert!(text.starts_with("S3 GetObject s3://") && text.contains("forged line"), "{text:?}");
    }
}
