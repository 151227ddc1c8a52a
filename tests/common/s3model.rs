//! A modelled S3 on 127.0.0.1, for tests and benchmarks: the REST calls this crate and boto3's transfer
//! manager make, objects on disk, and knobs for the network and its faults.
//!
//! What it models:
//! - **First-byte latency**: every response waits `Knobs::first_byte` before its status line (after the
//!   request body was read, as S3 answers an upload only once it has it).
//! - **Per-connection rate**: each request body is read, and each response body written, at most at
//!   `Knobs::per_connection` bytes/s (a pacer per connection; S3 gives roughly a steady rate per connection).
//! - **Aggregate rate**: one token bucket shared by every connection and both directions, the machine's NIC
//!   (`Knobs::aggregate`): a Lambda function's few hundred MB/s, an instance's tens of Gbit/s.
//! - **Faults**, each with a `Fault` (which matching request) and `Ops` (which operations): `503 SlowDown`
//!   and `500 InternalError` with S3's XML error body (the request body is read first, so the client sees
//!   the answer, not a broken pipe); a connection reset (`SO_LINGER` 0, so the client sees an RST): a GET
//!   after half its body, any other request before any answer; a trickle: half the response body at once,
//!   then one byte per 100 ms, never finishing.
//! - **Bodies as clients send them**: `Content-Encoding: aws-chunked` (unsigned with a trailer, or signed
//!   chunks `hex;chunk-signature=...`) is decoded and only the decoded bytes stored; `x-amz-decoded-content-
//!   length` must match; a CRC32, CRC32C or CRC64NVME checksum in a header or trailer is verified
//!   (`400 BadDigest` on a mismatch). SHA-1/SHA-256 checksums and `Content-MD5` are accepted unverified.
//! - **Conditional writes**: `If-None-Match: *` and `If-Match` on PutObject, CopyObject and
//!   CompleteMultipartUpload (412 `PreconditionFailed`); a conditional write whose condition held when it
//!   began but no longer holds when it commits, because another write to the key committed meanwhile, loses
//!   the race with 409 `ConditionalRequestConflict`. `If-Match`/`If-None-Match` on GetObject/HeadObject.
//! - **Operations**: CreateBucket, HeadBucket, DeleteBucket, ListObjectsV2 (prefix, delimiter, max-keys,
//!   start-after, continuation token, `encoding-type=url`), HeadObject, GetObject (`Range: bytes=a-b`,
//!   `a-`, `-n`), PutObject, CopyObject, DeleteObject, Get/PutObjectTagging (and `x-amz-tagging`),
//!   CreateMultipartUpload, UploadPart, UploadPartCopy (`x-amz-copy-source-range`), CompleteMultipartUpload
//!   (parts ascending, ETags matching, all but the last at least 5 MiB), AbortMultipartUpload, ListParts,
//!   ListMultipartUploads. Anything else (GetObjectAttributes, DeleteObjects, versioning, ...) answers
//!   `501 NotImplemented` with S3's XML error body.
//! - **ETags are opaque** (quoted, 32 hex digits from a CRC64 of the bytes and their length; multipart ones
//!   end in `-N`), as S3's are for SSE-KMS objects, not MD5: MD5 at ~600 MB/s per core would cap uploads
//!   below the rates modelled. Equal bytes get equal ETags.
//!
//! What it does not model: signatures and authentication (any credentials pass), access control, TLS,
//! virtual-hosted addressing (path style only), versioning, object lock, storage classes, consistency
//! delays (every write is visible at once), request-rate limits other than the `SlowDown` knob, 5 TiB and
//! 10 000-part limits, checksums returned on GET, the 200-with-an-error answer of a slow completion.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

/// Which requests a fault applies to (S3 operation names as S3 names them: "GetObject", "PutObject",
/// "UploadPart", "HeadObject", "CreateMultipartUpload", "CompleteMultipartUpload", ...). Empty = all.
pub type Ops = Vec<&'static str>;

/// Which of the requests matching a fault's `Ops` it hits. Each fault counts its matching requests itself,
/// from 1, starting again at every `S3Model::set_knobs`.
#[derive(Clone, Debug, Default)]
pub enum Fault {
    #[default]
    Never,
    /// The n-th, 2n-th, ... matching request (1-based, counted per fault).
    EveryNth(u64),
    /// Each matching request with this probability, from a seeded PRNG (deterministic per seed: the k-th
    /// matching request is hit or not whatever the order the others arrived in).
    Rate { per_million: u32, seed: u64 },
    /// Only the n-th matching request (1-based).
    Once(u64),
}

/// The network and the faults the model shows its clients; `S3Model::set_knobs` changes them mid-run.
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    /// Before each response's status line.
    pub first_byte: Duration,
    /// Bytes/s, each request's body and each response's body, per connection.
    pub per_connection: Option<u64>,
    /// Bytes/s shared by all connections, both directions.
    pub aggregate: Option<u64>,
    /// 503 SlowDown with S3's XML error body.
    pub slow_down: (Fault, Ops),
    /// 500 InternalError.
    pub internal_error: (Fault, Ops),
    /// Connection reset: GETs after half the body was sent; others before any answer.
    pub reset: (Fault, Ops),
    /// Response body: half at once, then 1 byte per 100 ms, never finishing.
    pub trickle: (Fault, Ops),
}

/// S3's smallest part but the last.
const MIN_PART: u64 = 5 * 1024 * 1024;
/// How much of a file one read takes, and the largest body frame written.
const CHUNK: usize = 256 * 1024;
const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// The modelled S3, serving on its own thread and Tokio runtime until dropped.
pub struct S3Model {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The objects' directory, removed on drop when the model made it.
    _dir: Option<tempfile::TempDir>,
}

impl S3Model {
    /// Starts the model with its objects in a fresh temporary directory, removed on drop.
    pub fn start(knobs: Knobs) -> Self {
        let dir = tempfile::Builder::new().prefix("s3model-").tempdir().expect("create the model's directory");
        let mut model = Self::start_in(dir.path(), knobs);
        model._dir = Some(dir);
        model
    }

    /// Starts the model with its objects in `dir` (created if missing, left in place on drop).
    pub fn start_in(dir: &Path, knobs: Knobs) -> Self {
        std::fs::create_dir_all(dir).expect("create the model's directory");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            store: Mutex::new(Store { dir: dir.to_owned(), ..Store::default() }),
            live: Mutex::new(Live { knobs, seen: [0; 4] }),
            aggregate: Pacer::default(),
            counts: Mutex::new(HashMap::new()),
            faults: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            aws_chunked: AtomicUsize::new(0),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let serving = shared.clone();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        let thread = std::thread::Builder::new()
            .name("s3model".into())
            .spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    tokio::select! {
                        _ = stopped => {}
                        () = accept_loop(listener, serving) => {}
                    }
                });
                runtime.shutdown_background();
            })
            .unwrap();
        Self { url, shared, stop: Some(stop), thread: Some(thread), _dir: None }
    }

    /// Changes the knobs from the next request on; the faults count their requests from 1 again.
    pub fn set_knobs(&self, knobs: Knobs) {
        *self.shared.live.lock().unwrap() = Live { knobs, seen: [0; 4] };
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.shared.store.lock().unwrap().buckets.entry(bucket.to_owned()).or_default();
    }

    /// Stores `bytes` at `bucket`/`key` (the bucket is created if missing), as a PutObject would.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let (path, file) = self.shared.new_file();
        let mut sink = Sink::new(file, None);
        sink.write(bytes).unwrap();
        let written = sink.finish().unwrap();
        self.commit_direct(bucket, key, path, written);
    }

    /// Stores the file at `source` as `bucket`/`key` (copied, never read into memory; the bucket is created
    /// if missing): a 1 GiB object for a benchmark.
    pub fn put_file(&self, bucket: &str, key: &str, source: &Path) -> io::Result<()> {
        let (path, file) = self.shared.new_file();
        let mut sink = Sink::new(file, None);
        let mut from = File::open(source)?;
        let mut buf = vec![0; CHUNK];
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sink.write(&buf[..n])?;
        }
        let written = sink.finish()?;
        self.commit_direct(bucket, key, path, written);
        Ok(())
    }

    fn commit_direct(&self, bucket: &str, key: &str, path: PathBuf, written: Written) {
        let mut store = self.shared.store.lock().unwrap();
        store.buckets.entry(bucket.to_owned()).or_default();
        let object = Object::new(path, written.size, etag_of(written.crc64, written.size), Meta::default());
        store.replace(bucket, key, object);
    }

    /// The object's bytes, read from its file.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let path = self.shared.store.lock().unwrap().object(bucket, key)?.path.clone();
        std::fs::read(path).ok()
    }

    /// The object's ETag, quoted as S3 sends it.
    pub fn etag(&self, bucket: &str, key: &str) -> Option<String> {
        Some(self.shared.store.lock().unwrap().object(bucket, key)?.etag.clone())
    }

    /// The keys of `bucket`, in order.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let store = self.shared.store.lock().unwrap();
        store.buckets.get(bucket).map(|objects| objects.keys().cloned().collect()).unwrap_or_default()
    }

    /// Multipart uploads created in `bucket`, neither completed nor aborted.
    pub fn open_uploads(&self, bucket: &str) -> usize {
        self.shared.store.lock().unwrap().uploads.values().filter(|upload| upload.bucket == bucket).count()
    }

    /// Requests received for `operation` ("GetObject", ...), faulted ones too.
    pub fn count(&self, operation: &str) -> usize {
        self.shared.counts.lock().unwrap().get(operation).copied().unwrap_or(0)
    }

    /// Request bodies received `aws-chunked` (and decoded) so far.
    pub fn aws_chunked_bodies(&self) -> usize {
        self.shared.aws_chunked.load(Ordering::SeqCst)
    }

    /// Faults injected so far (every kind, every operation).
    pub fn faults_injected(&self) -> usize {
        self.shared.faults.load(Ordering::SeqCst)
    }
}

impl Drop for S3Model {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the server's tasks share with the handle.
struct Shared {
    store: Mutex<Store>,
    live: Mutex<Live>,
    aggregate: Pacer,
    counts: Mutex<HashMap<String, usize>>,
    faults: AtomicUsize,
    requests: AtomicU64,
    aws_chunked: AtomicUsize,
}

/// The knobs in force, and how many requests each fault has matched since they were set.
struct Live {
    knobs: Knobs,
    seen: [u64; 4],
}

/// A fault chosen for one request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Injected {
    Reset,
    SlowDown,
    InternalError,
    Trickle,
}

impl Shared {
    fn new_file(&self) -> (PathBuf, File) {
        let path = {
            let mut store = self.store.lock().unwrap();
            store.files += 1;
            store.dir.join(format!("f{}", store.files))
        };
        let file = File::create(&path).expect("create a file in the model's directory");
        (path, file)
    }

    fn knobs(&self) -> Knobs {
        self.live.lock().unwrap().knobs.clone()
    }

    /// Counts the request and picks the fault (if any) it gets: every fault counts its matching requests;
    /// the first that fires, in the order reset, SlowDown, InternalError, trickle, wins.
    fn classify(&self, operation: &'static str) -> Option<Injected> {
        *self.counts.lock().unwrap().entry(operation.to_owned()).or_default() += 1;
        let mut live = self.live.lock().unwrap();
        let Live { knobs, seen } = &mut *live;
        let faults = [
            (&knobs.reset, Injected::Reset),
            (&knobs.slow_down, Injected::SlowDown),
            (&knobs.internal_error, Injected::InternalError),
            (&knobs.trickle, Injected::Trickle),
        ];
        let mut chosen = None;
        for (((fault, ops), kind), seen) in faults.into_iter().zip(seen.iter_mut()) {
            if !ops.is_empty() && !ops.contains(&operation) {
                continue;
            }
            *seen += 1;
            let fires = match *fault {
                Fault::Never => false,
                Fault::EveryNth(n) => n > 0 && *seen % n == 0,
                Fault::Once(n) => *seen == n,
                Fault::Rate { per_million, seed } => {
                    splitmix64(seed ^ seen.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % 1_000_000 < u64::from(per_million)
                }
            };
            if fires && chosen.is_none() {
                chosen = Some(kind);
            }
        }
        if chosen.is_some() {
            self.faults.fetch_add(1, Ordering::SeqCst);
        }
        chosen
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Paces bytes at a rate: each reservation starts when the previous one ends (or now, when idle), so the
/// average never exceeds the rate and an idle pacer keeps no burst.
#[derive(Default)]
struct Pacer {
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// Reserves `bytes` at `rate` bytes/s; returns when they are through.
    fn reserve(&self, bytes: usize, rate: u64) -> Instant {
        let mut next = self.next.lock().unwrap();
        let now = Instant::now();
        let start = next.map_or(now, |next| next.max(now));
        let end = start + Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
        *next = Some(end);
        end
    }
}

/// One connection's view: the shared state, its own pacer, and its socket (to reset it).
struct Connection {
    shared: Arc<Shared>,
    pacer: Pacer,
    fd: i32,
}

impl Connection {
    /// Waits until `bytes` may pass under the per-connection and aggregate rates.
    async fn pace(&self, bytes: usize) {
        let (per_connection, aggregate) = {
            let live = self.shared.live.lock().unwrap();
            (live.knobs.per_connection, live.knobs.aggregate)
        };
        let mut until = None;
        if let Some(rate) = per_connection {
            until = Some(self.pacer.reserve(bytes, rate));
        }
        if let Some(rate) = aggregate {
            let end = self.shared.aggregate.reserve(bytes, rate);
            until = Some(until.map_or(end, |until: Instant| until.max(end)));
        }
        if let Some(until) = until {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    /// Makes the socket's close an RST (`SO_LINGER` 0) instead of a FIN.
    fn arm_reset(&self) {
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: `fd` is this connection's socket, open while its requests are served; the option value is
        // a `linger` of the size passed.
        unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let connection = Arc::new(Connection { shared: shared.clone(), pacer: Pacer::default(), fd });
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let connection = connection.clone();
                async move { serve(connection, request).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .max_buf_size(4 * CHUNK)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A response body: small answers whole, objects streamed from a producer task that reads, paces and
/// faults them.
pub struct ModelBody {
    whole: Option<Bytes>,
    /// What the producer will stream, started at the first poll: after the status line, so the pacing
    /// begins after the first-byte latency, not during it.
    pending: Option<(Arc<Connection>, Source, Option<Injected>)>,
    stream: Option<tokio::sync::mpsc::Receiver<io::Result<Bytes>>>,
}

impl ModelBody {
    fn empty() -> Self {
        Self { whole: None, pending: None, stream: None }
    }

    fn whole(bytes: impl Into<Bytes>) -> Self {
        Self { whole: Some(bytes.into()), pending: None, stream: None }
    }
}

impl Body for ModelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        if let Some(bytes) = this.whole.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if let Some((connection, source, fault)) = this.pending.take() {
            this.stream = Some(produce(connection, source, fault));
        }
        match &mut this.stream {
            Some(stream) => stream.poll_recv(cx).map(|next| next.map(|chunk| chunk.map(Frame::data))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.whole.is_none() && self.pending.is_none() && self.stream.is_none()
    }
}

/// Where a streamed body's bytes come from.
enum Source {
    File { file: File, offset: u64, len: u64 },
    Memory(Bytes),
}

impl Source {
    fn len(&self) -> u64 {
        match self {
            Self::File { len, .. } => *len,
            Self::Memory(bytes) => bytes.len() as u64,
        }
    }
}

/// Streams `source` through the connection's pacing, with a trickle or a reset after half of it.
fn stream_body(connection: Arc<Connection>, source: Source, fault: Option<Injected>) -> ModelBody {
    ModelBody { whole: None, pending: Some((connection, source, fault)), stream: None }
}

/// The task that reads, paces and faults a streamed body.
fn produce(
    connection: Arc<Connection>,
    source: Source,
    fault: Option<Injected>,
) -> tokio::sync::mpsc::Receiver<io::Result<Bytes>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let total = source.len();
        let half = if matches!(fault, Some(Injected::Trickle | Injected::Reset)) { total / 2 } else { total };
        let mut source = source;
        let mut sent = 0;
        while sent < half {
            let want = (half - sent).min(CHUNK as u64) as usize;
            let chunk = match &mut source {
                Source::File { file, offset, .. } => {
                    let mut buf = vec![0; want];
                    let read = file.seek(SeekFrom::Start(*offset + sent)).and_then(|_| file.read_exact(&mut buf));
                    if let Err(error) = read {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                    Bytes::from(buf)
                }
                Source::Memory(bytes) => bytes.slice(sent as usize..sent as usize + want),
            };
            connection.pace(want).await;
            if sender.send(Ok(chunk)).await.is_err() {
                return; // the client is gone
            }
            sent += want as u64;
        }
        match fault {
            Some(Injected::Reset) => {
                // Gives hyper the time to write what was sent before the socket goes.
                tokio::time::sleep(Duration::from_millis(50)).await;
                connection.arm_reset();
                let _ = sender.send(Err(io::Error::new(io::ErrorKind::ConnectionReset, "modelled reset"))).await;
            }
            Some(Injected::Trickle) => loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if sent >= total {
                    // Never finishing: holds the body open until the client goes.
                    sender.closed().await;
                    return;
                }
                let byte = match &mut source {
                    Source::File { file, offset, .. } => {
                        let mut buf = [0; 1];
                        if file.seek(SeekFrom::Start(*offset + sent)).and_then(|_| file.read_exact(&mut buf)).is_err() {
                            return;
                        }
                        Bytes::copy_from_slice(&buf)
                    }
                    Source::Memory(bytes) => bytes.slice(sent as usize..sent as usize + 1),
                };
                if sender.send(Ok(byte)).await.is_err() {
                    return;
                }
                sent += 1;
            },
            _ => {}
        }
    });
    receiver
}

/// An S3 error answer.
#[derive(Debug)]
struct S3Error {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl S3Error {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    fn no_such_bucket() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NoSuchBucket", "The specified bucket does not exist")
    }

    fn no_such_key() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NoSuchKey", "The specified key does not exist.")
    }

    fn no_such_upload() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchUpload",
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
        )
    }

    fn precondition() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
        )
    }

    fn conflict() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "ConditionalRequestConflict",
            "A conflicting conditional action is currently in progress against this resource. Try again.",
        )
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    fn into_response(self, resource: &str, request_id: &str, head: bool) -> Response<ModelBody> {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>{request_id}</RequestId></Error>",
            self.code,
            xml(&self.message),
            xml(resource),
        );
        let mut response = Response::builder()
            .status(self.status)
            .header("content-type", "application/xml")
            .header("x-amz-request-id", request_id);
        if head {
            response = response.header("content-length", "0");
            return response.body(ModelBody::empty()).unwrap();
        }
        response.header("content-length", body.len()).body(ModelBody::whole(body)).unwrap()
    }
}

impl From<io::Error> for S3Error {
    fn from(error: io::Error) -> Self {
        Self::internal(format!("the model's disk: {error}"))
    }
}

/// Metadata kept with an object or an upload.
#[derive(Clone, Debug, Default)]
struct Meta {
    content_type: Option<String>,
    user: Vec<(String, String)>,
    tags: Vec<(String, String)>,
}

impl Meta {
    fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let user = headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-amz-meta-"))
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect();
        let tags = text("x-amz-tagging").map(|tags| parse_query(&tags).into_iter().collect()).unwrap_or_default();
        Self { content_type: text("content-type"), user, tags }
    }
}

#[derive(Clone, Debug)]
struct Object {
    path: PathBuf,
    size: u64,
    etag: String,
    modified: SystemTime,
    meta: Meta,
    /// Which commit wrote it (every commit has its own): a conditional write's race detector.
    generation: u64,
}

impl Object {
    fn new(path: PathBuf, size: u64, etag: String, meta: Meta) -> Self {
        Self { path, size, etag, modified: SystemTime::now(), meta, generation: 0 }
    }
}

#[derive(Debug)]
struct Part {
    path: PathBuf,
    size: u64,
    etag: String,
    modified: SystemTime,
}

#[derive(Debug)]
struct Upload {
    bucket: String,
    key: String,
    meta: Meta,
    initiated: SystemTime,
    parts: BTreeMap<u32, Part>,
}

#[derive(Default)]
struct Store {
    dir: PathBuf,
    buckets: BTreeMap<String, BTreeMap<String, Object>>,
    uploads: BTreeMap<String, Upload>,
    files: u64,
    generations: u64,
}

impl Store {
    fn object(&self, bucket: &str, key: &str) -> Option<&Object> {
        self.buckets.get(bucket)?.get(key)
    }

    fn bucket(&self, bucket: &str) -> Result<&BTreeMap<String, Object>, S3Error> {
        self.buckets.get(bucket).ok_or_else(S3Error::no_such_bucket)
    }

    /// The open upload `id`, if it is one of `bucket`/`key`.
    fn upload(&self, id: &str, bucket: &str, key: &str) -> Result<&Upload, S3Error> {
        self.uploads.get(id).filter(|u| u.bucket == bucket && u.key == key).ok_or_else(S3Error::no_such_upload)
    }

    /// Puts `object` at the key, removing the file of the one it replaces.
    fn replace(&mut self, bucket: &str, key: &str, mut object: Object) {
        self.generations += 1;
        object.generation = self.generations;
        let objects = self.buckets.entry(bucket.to_owned()).or_default();
        if let Some(old) = objects.insert(key.to_owned(), object) {
            let _ = std::fs::remove_file(old.path);
        }
    }
}

/// A write's preconditions (`If-None-Match: *`, `If-Match: "etag"`), and the key's state when it began.
struct Conditions {
    if_none_match: bool,
    if_match: Option<String>,
    began: Option<u64>,
}

impl Conditions {
    fn from_headers(headers: &HeaderMap) -> Result<Self, S3Error> {
        let if_none_match = match header(headers, "if-none-match") {
            None => false,
            Some("*") => true,
            Some(_) => {
                return Err(S3Error::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "NotImplemented",
                    "If-None-Match on a write takes only *",
                ));
            }
        };
        Ok(Self { if_none_match, if_match: header(headers, "if-match").map(str::to_owned), began: None })
    }

    fn any(&self) -> bool {
        self.if_none_match || self.if_match.is_some()
    }

    fn check(&self, existing: Option<&Object>) -> Result<(), S3Error> {
        if self.if_none_match && existing.is_some() {
            return Err(S3Error::precondition());
        }
        if let Some(wanted) = &self.if_match {
            let Some(existing) = existing else { return Err(S3Error::no_such_key()) };
            if !etag_matches(wanted, &existing.etag) {
                return Err(S3Error::precondition());
            }
        }
        Ok(())
    }

    /// The fast refusal when the write begins; remembers the key's state for the race at commit.
    fn begin(&mut self, store: &Store, bucket: &str, key: &str) -> Result<(), S3Error> {
        let existing = store.object(bucket, key);
        self.began = existing.map(|object| object.generation);
        if self.any() { self.check(existing) } else { Ok(()) }
    }

    /// At commit: a condition that held when the write began but no longer does lost a race (409).
    fn commit(&self, store: &Store, bucket: &str, key: &str) -> Result<(), S3Error> {
        if !self.any() {
            return Ok(());
        }
        let existing = store.object(bucket, key);
        match self.check(existing) {
            Err(_) if existing.map(|object| object.generation) != self.began => Err(S3Error::conflict()),
            other => other,
        }
    }
}

fn etag_matches(wanted: &str, etag: &str) -> bool {
    wanted.split(',').map(str::trim).any(|one| one == "*" || one.trim_matches('"') == etag.trim_matches('"'))
}

fn etag_of(crc64: u64, size: u64) -> String {
    format!("\"{crc64:016x}{size:016x}\"")
}

/// The checksum a client claimed for a body, and what it must be.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
}

impl Algorithm {
    fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().trim_start_matches("x-amz-checksum-") {
            "crc32" => Some(Self::Crc32),
            "crc32c" => Some(Self::Crc32c),
            "crc64nvme" => Some(Self::Crc64Nvme),
            _ => None,
        }
    }

    fn header(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
        }
    }

    fn digest(self) -> crc_fast::Digest {
        crc_fast::Digest::new(match self {
            Self::Crc32 => crc_fast::CrcAlgorithm::Crc32IsoHdlc,
            Self::Crc32c => crc_fast::CrcAlgorithm::Crc32Iscsi,
            Self::Crc64Nvme => crc_fast::CrcAlgorithm::Crc64Nvme,
        })
    }

    /// The base64 of the big-endian checksum, as S3 writes it.
    fn encode(self, value: u64) -> String {
        let engine = base64::engine::general_purpose::STANDARD;
        match self {
            Self::Crc64Nvme => engine.encode(value.to_be_bytes()),
            Self::Crc32 | Self::Crc32c => engine.encode((value as u32).to_be_bytes()),
        }
    }
}

/// Where decoded body bytes go: a file, the ETag's CRC64 and the client's checksum.
struct Sink {
    file: File,
    size: u64,
    crc64: crc_fast::Digest,
    claimed: Option<(Algorithm, crc_fast::Digest)>,
}

/// What a sink wrote.
struct Written {
    size: u64,
    crc64: u64,
    /// The client's checksum algorithm and the value of what arrived, base64 as S3 writes it.
    checksum: Option<(Algorithm, String)>,
}

impl Sink {
    fn new(file: File, claimed: Option<Algorithm>) -> Self {
        let crc64 = Algorithm::Crc64Nvme.digest();
        Self { file, size: 0, crc64, claimed: claimed.map(|algorithm| (algorithm, algorithm.digest())) }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.crc64.update(bytes);
        if let Some((_, digest)) = &mut self.claimed {
            digest.update(bytes);
        }
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn finish(self) -> io::Result<Written> {
        let checksum = self.claimed.map(|(algorithm, digest)| (algorithm, algorithm.encode(digest.finalize())));
        Ok(Written { size: self.size, crc64: self.crc64.finalize(), checksum })
    }
}

/// Decodes an `aws-chunked` body: `hex[;chunk-signature=...]\r\n` + data + `\r\n`, ..., a zero-length chunk,
/// then trailer lines `name:value\r\n` and an empty line.
#[derive(Default)]
struct AwsChunked {
    state: ChunkState,
    line: Vec<u8>,
    trailers: Vec<(String, String)>,
}

#[derive(Default, PartialEq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd(u8),
    Trailers,
    Done,
}

impl AwsChunked {
    /// Feeds `input`, writing the decoded data to `sink`.
    fn feed(&mut self, mut input: &[u8], sink: &mut Sink) -> Result<(), S3Error> {
        let malformed =
            |what: &str| S3Error::bad_request("IncompleteBody", format!("malformed aws-chunked body: {what}"));
        while !input.is_empty() {
            match self.state {
                ChunkState::Size | ChunkState::Trailers => {
                    let Some(end) = input.iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(input);
                        if self.line.len() > 64 * 1024 {
                            return Err(malformed("a line longer than 64 KiB"));
                        }
                        return Ok(());
                    };
                    self.line.extend_from_slice(&input[..end]);
                    input = &input[end + 1..];
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").ok_or_else(|| malformed("a line without CRLF"))?;
                    let line = std::str::from_utf8(line).map_err(|_| malformed("a line that is not UTF-8"))?;
                    if self.state == ChunkState::Size {
                        let hex = line.split(';').next().unwrap_or("").trim();
                        let size =
                            u64::from_str_radix(hex, 16).map_err(|_| malformed("a chunk size that is not hex"))?;
                        self.state = if size == 0 { ChunkState::Trailers } else { ChunkState::Data(size) };
                    } else if line.is_empty() {
                        self.state = ChunkState::Done;
                    } else {
                        let (name, value) = line.split_once(':').ok_or_else(|| malformed("a trailer without ':'"))?;
                        self.trailers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                    }
                }
                ChunkState::Data(left) => {
                    let take = left.min(input.len() as u64) as usize;
                    sink.write(&input[..take])?;
                    input = &input[take..];
                    self.state =
                        if take as u64 == left { ChunkState::DataEnd(0) } else { ChunkState::Data(left - take as u64) };
                }
                ChunkState::DataEnd(seen) => {
                    let expected = if seen == 0 { b'\r' } else { b'\n' };
                    if input[0] != expected {
                        return Err(malformed("chunk data not followed by CRLF"));
                    }
                    input = &input[1..];
                    self.state = if seen == 0 { ChunkState::DataEnd(1) } else { ChunkState::Size };
                }
                ChunkState::Done => return Err(malformed("bytes after the final chunk")),
            }
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), S3Error> {
        // A body that ends right after the final chunk's trailers, without the empty line, is accepted.
        if matches!(self.state, ChunkState::Done | ChunkState::Trailers) && self.line.is_empty() {
            Ok(())
        } else {
            Err(S3Error::bad_request("IncompleteBody", "the aws-chunked body ended inside a chunk"))
        }
    }
}

/// Reads a request body into a new file, decoding `aws-chunked` and checking the client's checksum; paced
/// by the connection's rates.
async fn receive(connection: &Connection, body: Incoming, headers: &HeaderMap) -> Result<(PathBuf, Written), S3Error> {
    let chunked = header(headers, "content-encoding").is_some_and(|v| v.split(',').any(|e| e.trim() == "aws-chunked"))
        || header(headers, "x-amz-content-sha256").is_some_and(|v| v.starts_with("STREAMING-"));
    if chunked {
        connection.shared.aws_chunked.fetch_add(1, Ordering::SeqCst);
    }
    let trailer = header(headers, "x-amz-trailer").map(str::to_owned);
    let claimed_header = headers
        .keys()
        .filter_map(|name| name.as_str().strip_prefix("x-amz-checksum-"))
        .find_map(|name| Algorithm::from_name(name).map(|algorithm| (algorithm, name)));
    let algorithm = match (&trailer, claimed_header) {
        (Some(trailer), _) => Algorithm::from_name(trailer),
        (None, Some((algorithm, _))) => Some(algorithm),
        (None, None) => None,
    };
    let (path, file) = connection.shared.new_file();
    let mut sink = Sink::new(file, algorithm);
    let mut decoder = chunked.then(AwsChunked::default);
    let mut body = body;
    let outcome: Result<(), S3Error> = async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|error| S3Error::bad_request("IncompleteBody", format!("reading the body: {error}")))?;
            let Ok(data) = frame.into_data() else { continue };
            connection.pace(data.len()).await;
            match &mut decoder {
                Some(decoder) => decoder.feed(&data, &mut sink)?,
                None => sink.write(&data)?,
            }
        }
        Ok(())
    }
    .await;
    if outcome.is_err() {
        while let Some(Ok(_)) = body.frame().await {}
    }
    let written = outcome.and_then(|()| {
        if let Some(decoder) = &decoder {
            decoder.finish()?;
        }
        Ok(sink.finish()?)
    });
    let written = match written {
        Ok(written) => written,
        Err(error) => {
            let _ = std::fs::remove_file(&path);
            return Err(error);
        }
    };
    let check = || -> Result<(), S3Error> {
        if let Some(decoded) = header(headers, "x-amz-decoded-content-length").filter(|_| chunked)
            && decoded.parse::<u64>().ok() != Some(written.size)
        {
            return Err(S3Error::bad_request(
                "IncompleteBody",
                format!("x-amz-decoded-content-length {decoded}, but {} bytes arrived", written.size),
            ));
        }
        let Some((algorithm, actual)) = &written.checksum else { return Ok(()) };
        let sent = match (&trailer, &decoder) {
            (Some(name), Some(decoder)) => decoder
                .trailers
                .iter()
                .find(|(trailer, _)| trailer == &name.to_ascii_lowercase())
                .map(|(_, v)| v.as_str()),
            _ => header(headers, algorithm.header()),
        };
        match sent {
            Some(sent) if sent == actual => Ok(()),
            Some(sent) => Err(S3Error::bad_request(
                "BadDigest",
                format!(
                    "The {} you specified ({sent}) did not match the calculated checksum ({actual}).",
                    algorithm.header()
                ),
            )),
            None => Err(S3Error::bad_request(
                "InvalidRequest",
                format!("the {} trailer announced did not come", algorithm.header()),
            )),
        }
    };
    match check() {
        Ok(()) => Ok((path, written)),
        Err(error) => {
            let _ = std::fs::remove_file(&path);
            Err(error)
        }
    }
}

/// Reads and drops a request body (before a fault's answer, so the client reads the answer).
async fn drain(body: Incoming) {
    let mut body = body;
    while let Some(Ok(_)) = body.frame().await {}
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// A parsed request: operation, bucket, key, query.
struct Target {
    bucket: String,
    key: String,
    query: BTreeMap<String, String>,
}

impl Target {
    fn parse(uri: &hyper::Uri) -> Self {
        let path = percent_decode(uri.path().trim_start_matches('/'));
        let (bucket, key) = path.split_once('/').unwrap_or((&path, ""));
        let mut query = uri.query().map(parse_query).unwrap_or_default();
        // The Rust SDK names the operation in the query (`?x-id=GetObject`); S3 ignores it.
        query.remove("x-id");
        Self { bucket: bucket.to_owned(), key: key.to_owned(), query }
    }

    fn has(&self, name: &str) -> bool {
        self.query.contains_key(name)
    }

    fn operation(&self, method: &Method, headers: &HeaderMap) -> &'static str {
        let copy = headers.contains_key("x-amz-copy-source");
        match (method.as_str(), self.key.is_empty()) {
            (_, true) if self.bucket.is_empty() => "ListBuckets",
            ("PUT", true) => "CreateBucket",
            ("HEAD", true) => "HeadBucket",
            ("DELETE", true) => "DeleteBucket",
            ("GET", true) if self.has("uploads") => "ListMultipartUploads",
            ("GET", true) if self.query.get("list-type").is_some_and(|v| v == "2") => "ListObjectsV2",
            ("GET", true) if self.query.is_empty() || self.has("prefix") || self.has("marker") => "ListObjects",
            ("POST", true) if self.has("delete") => "DeleteObjects",
            ("HEAD", false) => "HeadObject",
            ("GET", false) if self.has("uploadId") => "ListParts",
            ("GET", false) if self.has("tagging") => "GetObjectTagging",
            ("GET", false) if self.has("attributes") => "GetObjectAttributes",
            ("GET", false)
                if self.query.keys().all(|k| k == "partNumber" || k == "versionId" || k.starts_with("response-")) =>
            {
                "GetObject"
            }
            ("PUT", false) if self.has("uploadId") && copy => "UploadPartCopy",
            ("PUT", false) if self.has("uploadId") => "UploadPart",
            ("PUT", false) if self.has("tagging") => "PutObjectTagging",
            ("PUT", false) if copy => "CopyObject",
            ("PUT", false) if self.query.is_empty() => "PutObject",
            ("POST", false) if self.has("uploads") => "CreateMultipartUpload",
            ("POST", false) if self.has("uploadId") => "CompleteMultipartUpload",
            ("DELETE", false) if self.has("uploadId") => "AbortMultipartUpload",
            ("DELETE", false) if self.has("tagging") => "DeleteObjectTagging",
            ("DELETE", false) if self.query.is_empty() => "DeleteObject",
            _ => "Unknown",
        }
    }
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// URL encoding as S3's `encoding-type=url` writes it (unreserved characters and `/` as they are).
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn xml_unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&apos;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The texts of every `<tag>...</tag>` in `xml`, in order (no nesting of the same tag).
fn elements<'x>(xml: &'x str, tag: &str) -> Vec<&'x str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's civil_from_days.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn split_time(time: SystemTime) -> (i64, u32, u32, u64, u64, u64, i64) {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let (year, month, day) = civil(days);
    (year, month, day, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60, days)
}

/// `2026-12-06T15:13:54.000Z`.
fn iso8601(time: SystemTime) -> String {
    let (year, month, day, hour, minute, second, _) = split_time(time);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.000Z")
}

/// `Sun, 06 Dec 2026 15:13:54 GMT`.
fn http_date(time: SystemTime) -> String {
    let (year, month, day, hour, minute, second, days) = split_time(time);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let weekday = WEEKDAYS[days.rem_euclid(7) as usize];
    let month = MONTHS[month as usize - 1];
    format!("{weekday}, {day:02} {month} {year:04} {hour:02}:{minute:02}:{second:02} GMT")
}

/// A `Range: bytes=...` header against an object of `size` bytes: the first and one-past-last byte.
fn parse_range(range: &str, size: u64) -> Result<(u64, u64), S3Error> {
    let invalid =
        || S3Error::new(StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange", "The requested range is not satisfiable");
    let spec = range.trim().strip_prefix("bytes=").ok_or_else(invalid)?;
    let (first, last) = spec.split_once('-').ok_or_else(invalid)?;
    let (start, end) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| invalid())?;
            (size.saturating_sub(n), size)
        }
        (first, "") => (first.parse().map_err(|_| invalid())?, size),
        (first, last) => {
            let (first, last): (u64, u64) =
                (first.parse().map_err(|_| invalid())?, last.parse().map_err(|_| invalid())?);
            if last < first {
                return Err(invalid());
            }
            (first, (last + 1).min(size))
        }
    };
    if start >= size || start >= end {
        return Err(invalid());
    }
    Ok((start, end))
}

type Answer = Result<Response<ModelBody>, S3Error>;

/// Serves one request: counts it, injects its fault if one fires, else answers it as S3 would.
async fn serve(connection: Arc<Connection>, request: Request<Incoming>) -> Result<Response<ModelBody>, io::Error> {
    let shared = connection.shared.clone();
    let request_id = format!("{:016X}", shared.requests.fetch_add(1, Ordering::SeqCst) + 1);
    let target = Target::parse(request.uri());
    let operation = target.operation(request.method(), request.headers());
    let resource = request.uri().path().to_owned();
    let head = request.method() == Method::HEAD;
    let fault = shared.classify(operation);
    let knobs = shared.knobs();
    match fault {
        Some(Injected::Reset) if operation != "GetObject" => {
            connection.arm_reset();
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "modelled reset"));
        }
        Some(kind @ (Injected::SlowDown | Injected::InternalError)) => {
            drain(request.into_body()).await;
            tokio::time::sleep(knobs.first_byte).await;
            let error = if kind == Injected::SlowDown {
                S3Error::new(StatusCode::SERVICE_UNAVAILABLE, "SlowDown", "Please reduce your request rate.")
            } else {
                S3Error::internal("We encountered an internal error. Please try again.")
            };
            return Ok(error.into_response(&resource, &request_id, head));
        }
        _ => {}
    }
    let answer = answer(&connection, operation, target, request, fault).await;
    tokio::time::sleep(knobs.first_byte).await;
    let mut response = match answer {
        Ok(response) => response,
        Err(error) => error.into_response(&resource, &request_id, head),
    };
    response.headers_mut().insert("x-amz-request-id", HeaderValue::from_str(&request_id).unwrap());
    Ok(response)
}

fn xml_response(status: StatusCode, body: String) -> Response<ModelBody> {
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}");
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .header("content-length", body.len())
        .body(ModelBody::whole(body))
        .unwrap()
}

fn empty_response(status: StatusCode) -> Response<ModelBody> {
    Response::builder().status(status).header("content-length", "0").body(ModelBody::empty()).unwrap()
}

fn not_implemented(operation: &str) -> S3Error {
    S3Error::new(
        StatusCode::NOT_IMPLEMENTED,
        "NotImplemented",
        format!("the modelled S3 does not implement {operation}"),
    )
}

async fn answer(
    connection: &Arc<Connection>,
    operation: &'static str,
    target: Target,
    request: Request<Incoming>,
    fault: Option<Injected>,
) -> Answer {
    let shared = &connection.shared;
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let Target { bucket, key, query } = &target;
    match operation {
        "CreateBucket" => {
            drain(body).await;
            shared.store.lock().unwrap().buckets.entry(bucket.clone()).or_default();
            let mut response = empty_response(StatusCode::OK);
            response
                .headers_mut()
                .insert("location", HeaderValue::from_str(&format!("/{}", url_encode(bucket))).unwrap());
            Ok(response)
        }
        "HeadBucket" => {
            shared.store.lock().unwrap().bucket(bucket)?;
            Ok(empty_response(StatusCode::OK))
        }
        "DeleteBucket" => {
            let mut store = shared.store.lock().unwrap();
            if !store.bucket(bucket)?.is_empty() {
                return Err(S3Error::new(
                    StatusCode::CONFLICT,
                    "BucketNotEmpty",
                    "The bucket you tried to delete is not empty",
                ));
            }
            store.buckets.remove(bucket);
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        "ListObjectsV2" => list_objects(shared, bucket, query),
        "ListMultipartUploads" => {
            let store = shared.store.lock().unwrap();
            store.bucket(bucket)?;
            let prefix = query.get("prefix").map_or("", String::as_str);
            let mut body = format!(
                "<ListMultipartUploadsResult xmlns=\"{XMLNS}\"><Bucket>{}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><Prefix>{}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>",
                xml(bucket),
                xml(prefix)
            );
            let mut open: Vec<_> =
                store.uploads.iter().filter(|(_, u)| &u.bucket == bucket && u.key.starts_with(prefix)).collect();
            open.sort_by(|a, b| (&a.1.key, a.1.initiated).cmp(&(&b.1.key, b.1.initiated)));
            for (id, upload) in open {
                body.push_str(&format!(
                    "<Upload><Key>{}</Key><UploadId>{}</UploadId><Initiated>{}</Initiated><StorageClass>STANDARD</StorageClass></Upload>",
                    xml(&upload.key),
                    xml(id),
                    iso8601(upload.initiated)
                ));
            }
            body.push_str("</ListMultipartUploadsResult>");
            Ok(xml_response(StatusCode::OK, body))
        }
        "HeadObject" | "GetObject" => get_object(connection, operation, &target, headers, fault),
        "PutObject" => {
            let began = || -> Result<Conditions, S3Error> {
                let mut conditions = Conditions::from_headers(headers)?;
                let store = shared.store.lock().unwrap();
                store.bucket(bucket)?;
                conditions.begin(&store, bucket, key)?;
                Ok(conditions)
            };
            let conditions = match began() {
                Ok(conditions) => conditions,
                Err(error) => {
                    drain(body).await;
                    return Err(error);
                }
            };
            let (path, written) = receive(connection, body, headers).await?;
            let object = Object::new(
                path.clone(),
                written.size,
                etag_of(written.crc64, written.size),
                Meta::from_headers(headers),
            );
            let etag = object.etag.clone();
            let mut store = shared.store.lock().unwrap();
            if let Err(error) = conditions.commit(&store, bucket, key) {
                let _ = std::fs::remove_file(path);
                return Err(error);
            }
            store.replace(bucket, key, object);
            let mut response = empty_response(StatusCode::OK);
            response.headers_mut().insert("etag", HeaderValue::from_str(&etag).unwrap());
            if let Some((algorithm, value)) = written.checksum {
                response.headers_mut().insert(algorithm.header(), HeaderValue::from_str(&value).unwrap());
            }
            Ok(response)
        }
        "CopyObject" => {
            drain(body).await;
            let mut conditions = Conditions::from_headers(headers)?;
            conditions.begin(&shared.store.lock().unwrap(), bucket, key)?;
            let (path, written, _) = copy_source(shared, headers, false)?;
            let meta = if header(headers, "x-amz-metadata-directive") == Some("REPLACE") {
                Meta::from_headers(headers)
            } else {
                let (source_bucket, source_key) = copy_source_name(headers)?;
                shared
                    .store
                    .lock()
                    .unwrap()
                    .object(&source_bucket, &source_key)
                    .map(|o| o.meta.clone())
                    .unwrap_or_default()
            };
            let object = Object::new(path.clone(), written.size, etag_of(written.crc64, written.size), meta);
            let (etag, modified) = (object.etag.clone(), object.modified);
            let mut store = shared.store.lock().unwrap();
            store.bucket(bucket)?;
            if let Err(error) = conditions.commit(&store, bucket, key) {
                let _ = std::fs::remove_file(path);
                return Err(error);
            }
            store.replace(bucket, key, object);
            Ok(xml_response(
                StatusCode::OK,
                format!(
                    "<CopyObjectResult><ETag>{}</ETag><LastModified>{}</LastModified></CopyObjectResult>",
                    xml(&etag),
                    iso8601(modified)
                ),
            ))
        }
        "DeleteObject" => {
            drain(body).await;
            let mut store = shared.store.lock().unwrap();
            store.bucket(bucket)?;
            if let Some(old) = store.buckets.get_mut(bucket).and_then(|objects| objects.remove(key)) {
                let _ = std::fs::remove_file(old.path);
            }
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        "GetObjectTagging" => {
            let store = shared.store.lock().unwrap();
            store.bucket(bucket)?;
            let object = store.object(bucket, key).ok_or_else(S3Error::no_such_key)?;
            let tags: String = object
                .meta
                .tags
                .iter()
                .map(|(k, v)| format!("<Tag><Key>{}</Key><Value>{}</Value></Tag>", xml(k), xml(v)))
                .collect();
            Ok(xml_response(StatusCode::OK, format!("<Tagging xmlns=\"{XMLNS}\"><TagSet>{tags}</TagSet></Tagging>")))
        }
        "PutObjectTagging" | "DeleteObjectTagging" => {
            let text = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            let tags = elements(&text, "Tag")
                .into_iter()
                .map(|tag| {
                    let one = |name| elements(tag, name).first().map(|v| xml_unescape(v)).unwrap_or_default();
                    (one("Key"), one("Value"))
                })
                .collect();
            let mut store = shared.store.lock().unwrap();
            store.bucket(bucket)?;
            let object = store
                .buckets
                .get_mut(bucket)
                .and_then(|objects| objects.get_mut(key))
                .ok_or_else(S3Error::no_such_key)?;
            object.meta.tags = tags;
            Ok(empty_response(if operation == "PutObjectTagging" { StatusCode::OK } else { StatusCode::NO_CONTENT }))
        }
        "CreateMultipartUpload" => {
            drain(body).await;
            let mut store = shared.store.lock().unwrap();
            store.bucket(bucket)?;
            store.files += 1;
            let id = format!(
                "{:016x}{:08x}",
                splitmix64(
                    store.files ^ SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
                ),
                store.files
            );
            let upload = Upload {
                bucket: bucket.clone(),
                key: key.clone(),
                meta: Meta::from_headers(headers),
                initiated: SystemTime::now(),
                parts: BTreeMap::new(),
            };
            store.uploads.insert(id.clone(), upload);
            let mut response = xml_response(
                StatusCode::OK,
                format!(
                    "<InitiateMultipartUploadResult xmlns=\"{XMLNS}\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>",
                    xml(bucket),
                    xml(key)
                ),
            );
            if let Some(algorithm) = headers.get("x-amz-checksum-algorithm") {
                response.headers_mut().insert("x-amz-checksum-algorithm", algorithm.clone());
            }
            Ok(response)
        }
        "UploadPart" | "UploadPartCopy" => {
            let id = query.get("uploadId").cloned().unwrap_or_default();
            let number: u32 =
                query.get("partNumber").and_then(|n| n.parse().ok()).filter(|n| (1..=10_000).contains(n)).ok_or_else(
                    || {
                        S3Error::bad_request(
                            "InvalidArgument",
                            "Part number must be an integer between 1 and 10000, inclusive",
                        )
                    },
                )?;
            if shared.store.lock().unwrap().upload(&id, bucket, key).is_err() {
                drain(body).await;
                return Err(S3Error::no_such_upload());
            }
            let (path, written) = if operation == "UploadPart" {
                receive(connection, body, headers).await?
            } else {
                drain(body).await;
                let (path, written, _) = copy_source(shared, headers, true)?;
                (path, written)
            };
            let etag = etag_of(written.crc64, written.size);
            let modified = SystemTime::now();
            let part = Part { path: path.clone(), size: written.size, etag: etag.clone(), modified };
            let mut store = shared.store.lock().unwrap();
            let Some(upload) = store.uploads.get_mut(&id) else {
                let _ = std::fs::remove_file(path);
                return Err(S3Error::no_such_upload());
            };
            if let Some(old) = upload.parts.insert(number, part) {
                let _ = std::fs::remove_file(old.path);
            }
            if operation == "UploadPartCopy" {
                return Ok(xml_response(
                    StatusCode::OK,
                    format!(
                        "<CopyPartResult><ETag>{}</ETag><LastModified>{}</LastModified></CopyPartResult>",
                        xml(&etag),
                        iso8601(modified)
                    ),
                ));
            }
            let mut response = empty_response(StatusCode::OK);
            response.headers_mut().insert("etag", HeaderValue::from_str(&etag).unwrap());
            if let Some((algorithm, value)) = written.checksum {
                response.headers_mut().insert(algorithm.header(), HeaderValue::from_str(&value).unwrap());
            }
            Ok(response)
        }
        "CompleteMultipartUpload" => complete(connection, &target, headers, body).await,
        "AbortMultipartUpload" => {
            drain(body).await;
            let id = query.get("uploadId").cloned().unwrap_or_default();
            let mut store = shared.store.lock().unwrap();
            let upload = store.uploads.remove(&id).ok_or_else(S3Error::no_such_upload)?;
            for part in upload.parts.into_values() {
                let _ = std::fs::remove_file(part.path);
            }
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        "ListParts" => {
            let id = query.get("uploadId").cloned().unwrap_or_default();
            let store = shared.store.lock().unwrap();
            let upload = store.upload(&id, bucket, key)?;
            let marker: u32 = query.get("part-number-marker").and_then(|n| n.parse().ok()).unwrap_or(0);
            let max: usize = query.get("max-parts").and_then(|n| n.parse().ok()).unwrap_or(1000).min(1000);
            let listed: Vec<_> = upload.parts.range(marker + 1..).take(max + 1).collect();
            let truncated = listed.len() > max;
            let listed = &listed[..listed.len().min(max)];
            let next = listed.last().map_or(0, |(n, _)| **n);
            let mut body = format!(
                "<ListPartsResult xmlns=\"{XMLNS}\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{}</UploadId><PartNumberMarker>{marker}</PartNumberMarker><NextPartNumberMarker>{next}</NextPartNumberMarker><MaxParts>{max}</MaxParts><IsTruncated>{truncated}</IsTruncated><StorageClass>STANDARD</StorageClass>",
                xml(bucket),
                xml(key),
                xml(&id)
            );
            for (number, part) in listed {
                body.push_str(&format!(
                    "<Part><PartNumber>{number}</PartNumber><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size></Part>",
                    iso8601(part.modified),
                    xml(&part.etag),
                    part.size
                ));
            }
            body.push_str("</ListPartsResult>");
            Ok(xml_response(StatusCode::OK, body))
        }
        other => {
            drain(body).await;
            Err(not_implemented(other))
        }
    }
}

fn list_objects(shared: &Shared, bucket: &str, query: &BTreeMap<String, String>) -> Answer {
    let store = shared.store.lock().unwrap();
    let objects = store.bucket(bucket)?;
    let text = |name: &str| query.get(name).map_or("", String::as_str);
    let (prefix, delimiter) = (text("prefix"), text("delimiter"));
    let url = text("encoding-type") == "url";
    let encode = |value: &str| if url { url_encode(value) } else { xml(value) };
    let max: usize = query.get("max-keys").and_then(|n| n.parse().ok()).unwrap_or(1000).min(1000);
    let after = match query.get("continuation-token") {
        Some(token) => Some(
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| {
                S3Error::bad_request("InvalidArgument", "The continuation token provided is incorrect")
            })?)
            .map_err(|_| S3Error::bad_request("InvalidArgument", "The continuation token provided is incorrect"))?,
        ),
        None => query.get("start-after").cloned(),
    };
    let mut contents = String::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut count = 0;
    let mut last = None;
    let mut truncated = false;
    let start = after.as_deref().map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
    for (key, object) in objects.range::<str, _>((start, std::ops::Bound::Unbounded)) {
        if !key.starts_with(prefix) {
            if key.as_str() > prefix {
                break;
            }
            continue;
        }
        let common = (!delimiter.is_empty())
            .then(|| {
                key[prefix.len()..].find(delimiter).map(|at| key[..prefix.len() + at + delimiter.len()].to_owned())
            })
            .flatten();
        if let Some(common) = &common
            && prefixes.last() == Some(common)
        {
            last = Some(key.clone());
            continue;
        }
        if count == max {
            truncated = true;
            break;
        }
        count += 1;
        last = Some(key.clone());
        match common {
            Some(common) => prefixes.push(common),
            None => contents.push_str(&format!(
                "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                encode(key),
                iso8601(object.modified),
                xml(&object.etag),
                object.size
            )),
        }
    }
    let mut body = format!(
        "<ListBucketResult xmlns=\"{XMLNS}\"><Name>{}</Name><Prefix>{}</Prefix><KeyCount>{count}</KeyCount><MaxKeys>{max}</MaxKeys><IsTruncated>{truncated}</IsTruncated>",
        xml(bucket),
        encode(prefix)
    );
    if !delimiter.is_empty() {
        body.push_str(&format!("<Delimiter>{}</Delimiter>", encode(delimiter)));
    }
    if url {
        body.push_str("<EncodingType>url</EncodingType>");
    }
    if let Some(token) = query.get("continuation-token") {
        body.push_str(&format!("<ContinuationToken>{}</ContinuationToken>", xml(token)));
    }
    if let Some(after) = query.get("start-after") {
        body.push_str(&format!("<StartAfter>{}</StartAfter>", encode(after)));
    }
    if truncated {
        let token = base64::engine::general_purpose::STANDARD.encode(last.unwrap_or_default());
        body.push_str(&format!("<NextContinuationToken>{token}</NextContinuationToken>"));
    }
    body.push_str(&contents);
    for common in prefixes {
        body.push_str(&format!("<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>", encode(&common)));
    }
    body.push_str("</ListBucketResult>");
    Ok(xml_response(StatusCode::OK, body))
}

fn get_object(
    connection: &Arc<Connection>,
    operation: &str,
    target: &Target,
    headers: &HeaderMap,
    fault: Option<Injected>,
) -> Answer {
    let store = connection.shared.store.lock().unwrap();
    store.bucket(&target.bucket)?;
    let object = store.object(&target.bucket, &target.key).ok_or_else(S3Error::no_such_key)?;
    if let Some(wanted) = header(headers, "if-match")
        && !etag_matches(wanted, &object.etag)
    {
        return Err(S3Error::precondition());
    }
    if let Some(unwanted) = header(headers, "if-none-match")
        && etag_matches(unwanted, &object.etag)
    {
        return Ok(empty_response(StatusCode::NOT_MODIFIED));
    }
    let range = match header(headers, "range") {
        Some(range) if object.size > 0 => Some(parse_range(range, object.size)?),
        Some(_) => {
            return Err(S3Error::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The requested range is not satisfiable",
            ));
        }
        None => None,
    };
    let (start, end) = range.unwrap_or((0, object.size));
    let mut response = Response::builder()
        .status(if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header("content-length", end - start)
        .header("etag", &object.etag)
        .header("last-modified", http_date(object.modified))
        .header("accept-ranges", "bytes")
        .header("content-type", object.meta.content_type.as_deref().unwrap_or("binary/octet-stream"));
    if range.is_some() {
        response = response.header("content-range", format!("bytes {start}-{}/{}", end - 1, object.size));
    }
    for (name, value) in &object.meta.user {
        response = response.header(name, value);
    }
    if !object.meta.tags.is_empty() {
        response = response.header("x-amz-tagging-count", object.meta.tags.len());
    }
    if operation == "HeadObject" || end == start {
        return Ok(response.body(ModelBody::empty()).unwrap());
    }
    // Opened under the lock: a replaced object's file is removed, but an open one stays readable.
    let file = File::open(&object.path)?;
    drop(store);
    let source = Source::File { file, offset: start, len: end - start };
    Ok(response.body(stream_body(connection.clone(), source, fault)).unwrap())
}

fn copy_source_name(headers: &HeaderMap) -> Result<(String, String), S3Error> {
    let source = header(headers, "x-amz-copy-source").unwrap_or("");
    let source = percent_decode(source.split('?').next().unwrap_or(""));
    let source = source.trim_start_matches('/');
    let (bucket, key) = source.split_once('/').filter(|(_, key)| !key.is_empty()).ok_or_else(|| {
        S3Error::bad_request(
            "InvalidArgument",
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
        )
    })?;
    Ok((bucket.to_owned(), key.to_owned()))
}

/// Copies the object `x-amz-copy-source` names (the range `x-amz-copy-source-range` gives, for a part) to a
/// new file.
fn copy_source(shared: &Shared, headers: &HeaderMap, part: bool) -> Result<(PathBuf, Written, u64), S3Error> {
    let (bucket, key) = copy_source_name(headers)?;
    let (mut file, size) = {
        let store = shared.store.lock().unwrap();
        store.bucket(&bucket)?;
        let object = store.object(&bucket, &key).ok_or_else(S3Error::no_such_key)?;
        if let Some(wanted) = header(headers, "x-amz-copy-source-if-match")
            && !etag_matches(wanted, &object.etag)
        {
            return Err(S3Error::precondition());
        }
        (File::open(&object.path)?, object.size)
    };
    let (start, end) = match header(headers, "x-amz-copy-source-range").filter(|_| part) {
        Some(range) => {
            let (start, end) = parse_range(range, size)
                .map_err(|_| S3Error::bad_request("InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"))?;
            (start, end)
        }
        None => (0, size),
    };
    let (path, out) = shared.new_file();
    let mut sink = Sink::new(out, None);
    file.seek(SeekFrom::Start(start))?;
    let mut left = end - start;
    let mut buf = vec![0; CHUNK];
    while left > 0 {
        let n = file.read(&mut buf[..left.min(CHUNK as u64) as usize])?;
        if n == 0 {
            return Err(S3Error::internal("the copy source ended early"));
        }
        sink.write(&buf[..n])?;
        left -= n as u64;
    }
    Ok((path, sink.finish()?, size))
}

/// CompleteMultipartUpload: the parts listed, ascending, with their ETags, all but the last at least 5 MiB,
/// joined into the object; the write's conditions checked when it begins and again at its commit.
async fn complete(connection: &Arc<Connection>, target: &Target, headers: &HeaderMap, body: Incoming) -> Answer {
    let shared = &connection.shared;
    let Target { bucket, key, query } = target;
    let id = query.get("uploadId").cloned().unwrap_or_default();
    let text = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let text = String::from_utf8_lossy(&text).into_owned();
    let mut conditions = Conditions::from_headers(headers)?;
    let listed: Vec<(u32, String)> = elements(&text, "Part")
        .into_iter()
        .map(|part| {
            let number = elements(part, "PartNumber").first().and_then(|n| n.trim().parse().ok()).unwrap_or(0);
            let etag = elements(part, "ETag").first().map(|e| xml_unescape(e.trim())).unwrap_or_default();
            (number, etag)
        })
        .collect();
    let malformed = || {
        S3Error::bad_request(
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema",
        )
    };
    if listed.is_empty() {
        return Err(malformed());
    }
    let files: Vec<PathBuf> = {
        let store = shared.store.lock().unwrap();
        let upload = store.upload(&id, bucket, key)?;
        conditions.begin(&store, bucket, key)?;
        let mut previous = 0;
        let mut files = Vec::new();
        for (index, (number, etag)) in listed.iter().enumerate() {
            if *number <= previous {
                return Err(S3Error::bad_request(
                    "InvalidPartOrder",
                    "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
                ));
            }
            previous = *number;
            let part = upload.parts.get(number).filter(|part| etag_matches(etag, &part.etag)).ok_or_else(|| {
                S3Error::bad_request(
                    "InvalidPart",
                    "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
                )
            })?;
            if index + 1 < listed.len() && part.size < MIN_PART {
                return Err(S3Error::bad_request(
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed size",
                ));
            }
            files.push(part.path.clone());
        }
        files
    };
    // Joins the parts outside the lock (a large object takes a while), then commits under it.
    let (path, out) = shared.new_file();
    let joined = tokio::task::block_in_place(|| -> io::Result<u64> {
        let mut out = out;
        let mut size = 0;
        for file in &files {
            size += io::copy(&mut File::open(file)?, &mut out)?;
        }
        Ok(size)
    });
    let size = match joined {
        Ok(size) => size,
        Err(error) => {
            let _ = std::fs::remove_file(&path);
            return Err(error.into());
        }
    };
    let mut store = shared.store.lock().unwrap();
    let Some(upload) = store.uploads.get(&id) else {
        let _ = std::fs::remove_file(&path);
        return Err(S3Error::no_such_upload());
    };
    if let Err(error) = conditions.commit(&store, bucket, key) {
        let _ = std::fs::remove_file(&path);
        return Err(error);
    }
    let mut digest = Algorithm::Crc64Nvme.digest();
    for (number, _) in &listed {
        digest.update(upload.parts[number].etag.as_bytes());
    }
    let etag = format!("\"{:016x}{size:016x}-{}\"", digest.finalize(), listed.len());
    let upload = store.uploads.remove(&id).expect("the upload just found");
    for part in upload.parts.into_values() {
        let _ = std::fs::remove_file(part.path);
    }
    store.replace(bucket, key, Object::new(path, size, etag.clone(), upload.meta));
    drop(store);
    let location = format!("{}/{}", url_encode(bucket), url_encode(key));
    Ok(xml_response(
        StatusCode::OK,
        format!(
            "<CompleteMultipartUploadResult xmlns=\"{XMLNS}\"><Location>/{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
            xml(&location),
            xml(bucket),
            xml(key),
            xml(&etag)
        ),
    ))
}
