//! The Lambda cold-start decryptor: before the handler runs, decrypt every configured bundle (from the
//! function package, a layer or S3) into `/tmp`, with one KMS call each, concurrently, and only once per
//! execution environment.
//!
//! ```no_run
//! # async fn demo(keyring: kms_envelope::RawAesKeyring) -> kms_envelope::Result<()> {
//! use kms_envelope::lambda::{BundleSpec, ColdStart};
//!
//! let cold_start = ColdStart::new(keyring)
//!     .bundle(BundleSpec::file("config/secrets.json.esdk", "secrets.json")?)
//!     .bundle(BundleSpec::directory("s3://my-bucket/certs.esdk", "certs")?);
//! for landed in cold_start.run().await? {
//!     println!("{} ({} bytes, reused: {})", landed.destination.display(), landed.bytes, landed.reused);
//! }
//! # Ok(()) }
//! ```
//!
//! Every destination is written the safe way: a 0600 temp file (or a 0700 staging directory) beside it,
//! renamed into place only after the whole message and its signature verified; on any error the temp is
//! removed and nothing new is at the destination. The directories on the way are reached from the root
//! through handles, never through a link, and must be this user's and writable by no one else (see
//! `place`). A marker beside each destination lets a warm start in the same environment skip both the
//! KMS call and the decryption.

#[cfg(feature = "batch")]
pub mod batch;
mod clients;
pub mod env;
mod place;
mod reuse;
mod secrets;
mod source;
mod space;

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Seek};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::Instrument as _;

pub use clients::{ATTEMPT_TIMEOUT, CALL_TIMEOUT, CONNECT_TIMEOUT, READ_TIMEOUT, load_aws_config, timeouts};
pub use env::{EnvConfig, KmsKeys};
pub use secrets::{SecretString, Secrets};
pub use source::Source;

use crate::bundle;
use crate::error::{Error, Result};
use crate::format::header::HeaderDecoder;
use crate::keyring::{CacheLimits, CachingKeyring, Keyring, MaterialsCache};
use crate::stream::file::{OutputOptions, PendingFile, remove_stale_partials, write_verified};
use crate::stream::positioned::{FileDecryptor, FileError};
use crate::stream::{DecryptOptions, Decrypted, Decryptor};
use place::{Expect, Inode, Place};
use reuse::{Identity, ReuseKey};

/// How a bundle's plaintext lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleKind {
    /// One file.
    File,
    /// A directory packed with [`bundle::encrypt_directory`] (or `kms-envelope bundle`).
    Directory,
}

/// One bundle: where it comes from and where its plaintext goes (relative to the root, `/tmp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSpec {
    /// The encrypted message.
    pub source: Source,
    /// The destination, relative to the cold start's root (or absolute, inside it).
    pub destination: PathBuf,
    /// File or directory.
    pub kind: BundleKind,
}

impl BundleSpec {
    /// A single-file bundle; `source` is a path or `s3://bucket/key`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `source` is empty, or starts with `s3://` but is not `s3://bucket/key`.
    pub fn file(source: &str, destination: impl Into<PathBuf>) -> Result<Self> {
        Ok(Self { source: Source::parse(source)?, destination: destination.into(), kind: BundleKind::File })
    }

    /// A directory bundle; `source` is a path or `s3://bucket/key`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `source` is empty, or starts with `s3://` but is not `s3://bucket/key`.
    pub fn directory(source: &str, destination: impl Into<PathBuf>) -> Result<Self> {
        Ok(Self { source: Source::parse(source)?, destination: destination.into(), kind: BundleKind::Directory })
    }
}

/// Where a bundle landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Landed {
    /// The absolute destination path.
    pub destination: PathBuf,
    /// Plaintext bytes (for directories, the files' content).
    pub bytes: u64,
    /// True when a warm start found it already in place and made no KMS call.
    pub reused: bool,
    /// Time to authenticate the header, including the KMS call.
    pub unwrap_time: Duration,
    /// Total time for this bundle.
    pub total_time: Duration,
}

struct Config {
    keyring: Arc<dyn Keyring>,
    options: DecryptOptions,
    root: PathBuf,
    task_root: Option<PathBuf>,
    sync: bool,
    #[cfg(feature = "s3")]
    s3: Option<aws_sdk_s3::Client>,
    /// How `s3://` sources are read.
    #[cfg(feature = "s3")]
    transfer: crate::s3::TransferOptions,
    /// What runs landed (or found in place, vouched for by a marker): all that `discard` may remove.
    landed: Arc<Mutex<Vec<LandedEntry>>>,
}

/// An entry a run put under the root (a destination or its marker), by its inode, so that `discard`
/// leaves alone whatever has since taken its name.
#[derive(Debug)]
struct LandedEntry {
    /// The destination it belongs to, whose parent directory holds it.
    destination: PathBuf,
    /// Its name in that directory.
    name: OsString,
    inode: Inode,
}

impl Config {
    /// Notes that `name`, in `place`'s directory, is this run's.
    fn note(&self, place: &Place, name: &std::ffi::OsStr) -> Result<()> {
        if let Some(inode) = place.inode(name)? {
            let entry = LandedEntry { destination: place.destination(), name: name.to_owned(), inode };
            self.landed.lock().unwrap_or_else(PoisonError::into_inner).push(entry);
        }
        Ok(())
    }
}

/// What must stand at a destination of this kind, if anything does.
fn expect(kind: BundleKind) -> Expect {
    match kind {
        BundleKind::File => Expect::File,
        BundleKind::Directory => Expect::Directory,
    }
}

/// Decrypts bundles at cold start. Build it once (in `main`, before the runtime loop) and call
/// [`run`](Self::run): a second call in the same process returns the first result.
///
/// Configured from the environment (`KMS_ENVELOPE_BUNDLES`, `KMS_ENVELOPE_KMS_KEY_ARN`, ...: see the
/// README) with [`from_env`](Self::from_env), or in code:
///
/// ```no_run
/// use kms_envelope::lambda::{BundleSpec, ColdStart};
/// use kms_envelope::{DecryptOptions, KmsClients};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let kms = KmsClients::from_env().await?;
///     let keyring = kms.keyring("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")?;
///     let cold_start = ColdStart::new(keyring)
///         .options(DecryptOptions::new().context("stage", "prod"))
///         .bundle(BundleSpec::file("config.json.esdk", "app/config.json")?) // from $LAMBDA_TASK_ROOT
///         .bundle(BundleSpec::directory("s3://my-bucket/certs.esdk", "certs")?);
///     for landed in cold_start.run().await? {
///         println!("{landed:?}"); // then start the Lambda runtime loop; the handler reads /tmp/app, /tmp/certs
///     }
///     Ok(())
/// }
/// ```
pub struct ColdStart {
    config: Config,
    bundles: Vec<BundleSpec>,
    /// The keyring of [`decrypt_event`](Self::decrypt_event): the configured one, or a caching keyring
    /// around it.
    event_keyring: Arc<dyn Keyring>,
    done: tokio::sync::OnceCell<Vec<Landed>>,
}

impl std::fmt::Debug for ColdStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdStart").field("root", &self.config.root).field("bundles", &self.bundles).finish()
    }
}

impl ColdStart {
    /// A cold start that unwraps data keys with `keyring`, into `/tmp`, with default decrypt options.
    pub fn new(keyring: impl Keyring + 'static) -> Self {
        Self::with_shared_keyring(Arc::new(keyring))
    }

    /// As [`new`](Self::new), with a keyring shared elsewhere.
    pub fn with_shared_keyring(keyring: Arc<dyn Keyring>) -> Self {
        Self {
            event_keyring: keyring.clone(),
            config: Config {
                keyring,
                options: DecryptOptions::new(),
                root: PathBuf::from("/tmp"),
                task_root: std::env::var_os("LAMBDA_TASK_ROOT").map(PathBuf::from),
                sync: false,
                #[cfg(feature = "s3")]
                s3: None,
                #[cfg(feature = "s3")]
                transfer: env::fitted_transfer_options(|name| std::env::var(name).ok()),
                landed: Arc::default(),
            },
            bundles: Vec::new(),
            done: tokio::sync::OnceCell::new(),
        }
    }

    /// Adds a bundle.
    pub fn bundle(mut self, spec: BundleSpec) -> Self {
        self.bundles.push(spec);
        self
    }

    /// Keeps the data keys that [`decrypt_event`](Self::decrypt_event) unwraps in a cache of at most
    /// `capacity` entries, held by this `ColdStart`. A function builds its `ColdStart` once per execution
    /// environment (in `main`, before the runtime loop), so the cache survives warm invocations: a function
    /// that decrypts one message per event makes one KMS call per distinct data key per
    /// [`CacheLimits`] max age, not one per event. (Bundles decrypted by [`run`](Self::run) do not use it:
    /// each is decrypted once per environment anyway.)
    ///
    /// The trade-off: an unwrapped data key stays in the function's memory for up to the max age, and
    /// anyone who can read that memory (a dump, a compromised dependency) reads every message under it,
    /// including ones whose KMS key access was revoked in the meantime: revocation takes effect only
    /// when the entry expires. Choose the max age as the longest time a revocation may lag (minutes, not
    /// hours), and the capacity as the number of distinct data keys a warm environment sees in that time.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `limits` are out of range (see [`CachingKeyring::new`]).
    pub fn event_key_cache(mut self, limits: CacheLimits, capacity: usize) -> Result<Self> {
        let cache = Arc::new(MaterialsCache::new(capacity));
        self.event_keyring = Arc::new(CachingKeyring::new(self.config.keyring.clone(), cache, limits)?);
        Ok(self)
    }

    /// Decrypts one event's message in memory with this cold start's keyring and options, through the
    /// [event key cache](Self::event_key_cache) if one is set. The crypto runs on the blocking pool; nothing
    /// is returned unless the whole message verified.
    ///
    /// # Errors
    ///
    /// As [`decrypt`](crate::decrypt) fails (the message is malformed, no data key is unwrapped, a frame
    /// or the signature does not verify, the encryption context does not match); [`Error::Io`] when the
    /// blocking task cannot run to its end.
    pub async fn decrypt_event(&self, message: Vec<u8>) -> Result<Decrypted> {
        let (keyring, options) = (self.event_keyring.clone(), self.config.options.clone());
        blocking(move || crate::stream::decrypt(keyring.as_ref(), &options, &message)).await
    }

    /// Sets the decrypt options (expected encryption context, commitment policy, limits).
    pub fn options(mut self, options: DecryptOptions) -> Self {
        self.config.options = options;
        self
    }

    /// Sets the root destinations are relative to (default `/tmp`). It, and every directory below it that
    /// a destination lies in, must belong to this process's user and be writable by no one else; the root
    /// may instead be a sticky directory owned by root or this user, like `/tmp`. A missing one is made
    /// 0700.
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.config.root = root.into();
        self
    }

    /// Sets where relative file sources are looked up first (default `$LAMBDA_TASK_ROOT`); `/opt` follows.
    pub fn task_root(mut self, task_root: impl Into<PathBuf>) -> Self {
        self.config.task_root = Some(task_root.into());
        self
    }

    /// Syncs each file to disk before the rename. Off by default: Lambda's `/tmp` never outlives the
    /// execution environment, and the rename alone already protects against a process killed mid-write.
    pub fn sync_to_disk(mut self, sync: bool) -> Self {
        self.config.sync = sync;
        self
    }

    /// The S3 client for `s3://` sources.
    #[cfg(feature = "s3")]
    pub fn s3_client(mut self, client: aws_sdk_s3::Client) -> Self {
        self.config.s3 = Some(client);
        self
    }

    /// How `s3://` sources are read: ranged GETs of the part size, so many in flight (memory about
    /// [`memory_bound`](crate::s3::TransferOptions::memory_bound) per bundle being read). Default:
    /// [`env::fitted_transfer_options`] (the defaults, fewer in flight in a small function);
    /// [`from_env`](Self::from_env) reads `KMS_ENVELOPE_S3_PART_SIZE` and `KMS_ENVELOPE_S3_CONCURRENCY`.
    #[cfg(feature = "s3")]
    pub fn s3_transfer(mut self, transfer: crate::s3::TransferOptions) -> Self {
        self.config.transfer = transfer;
        self
    }

    /// Decrypts every bundle, concurrently, and returns where each landed. Within a process the first
    /// successful result is cached; a failed run may be retried.
    ///
    /// # Errors
    ///
    /// The first bundle's failure, once every bundle's task ended: [`Error::Config`] when a destination
    /// is not a plain path inside the root or two destinations overlap (before anything is read), or a
    /// source is in S3 in a build without the `s3` feature; [`Error::UnsafeDestination`] when the root
    /// or a directory on the way to a destination is not this user's alone, or a link; [`Error::Io`] when
    /// a source is not found or reading or writing fails; and the message's own decryption errors.
    pub async fn run(&self) -> Result<&[Landed]> {
        self.done.get_or_try_init(|| self.run_uncached()).await.map(Vec::as_slice)
    }

    /// [`run`](Self::run) for synchronous `main` functions: runs on a runtime of its own. Do not call it
    /// from inside an async context.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run), and [`Error::Io`] when its runtime cannot start.
    pub fn run_blocking(&self) -> Result<&[Landed]> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        runtime.block_on(self.run())
    }

    /// Decrypts a JSON secrets bundle into memory with this cold start's keyring, options, task root and
    /// S3 client, like [`load_secrets`]; nothing touches the disk.
    ///
    /// # Errors
    ///
    /// As [`load_secrets`]; also [`Error::Io`] when a relative path source is found neither under the task
    /// root nor under `/opt`.
    pub async fn load_secrets(&self, source: &Source) -> Result<Secrets> {
        let message = match source {
            Source::Path(path) => {
                read_secrets_file(source, &source::resolve_path(path, self.config.task_root.as_deref())?).await?
            }
            #[cfg(feature = "s3")]
            Source::S3 { bucket, key } => match &self.config.s3 {
                Some(client) => s3::read_secrets(client, source, bucket, key, &self.config.transfer).await?,
                None => return load_secrets(self.config.keyring.clone(), self.config.options.clone(), source).await,
            },
            #[cfg(not(feature = "s3"))]
            Source::S3 { .. } => return Err(Error::Config(format!("{source}: S3 sources need the `s3` feature"))),
        };
        secrets_from_message(self.config.keyring.clone(), self.config.options.clone(), message).await
    }

    /// Removes what the runs of this cold start landed (files, directory trees, reuse markers), for a caller
    /// that gives up after a failed [`run`](Self::run): the bundles that did land must not outlive the
    /// failure (the Lambda extension fails the Init phase and leaves nothing in `/tmp`). Only entries a run
    /// created, or found in place and vouched for by their marker, are removed, and only while the same
    /// inode still stands under the same name, reached from the root as a run reaches it (no link
    /// followed, every directory this user's): a link, a FIFO or a file someone else put at a destination
    /// stays, and so does everything else under the root.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a landed entry cannot be removed, or a directory on its way cannot be opened for
    /// a reason other than its absence; entries after it in the order of removal stay.
    pub fn discard(&self) -> Result<()> {
        let landed = std::mem::take(&mut *self.config.landed.lock().unwrap_or_else(PoisonError::into_inner));
        // Markers were noted after their destinations: removed first, so none outlives what it vouches for.
        for entry in landed.iter().rev() {
            if let Some(place) = Place::find(&self.config.root, &entry.destination)? {
                place.remove_if_same(&entry.name, entry.inode)?;
            }
        }
        Ok(())
    }

    async fn run_uncached(&self) -> Result<Vec<Landed>> {
        let config = Arc::new(Config {
            keyring: self.config.keyring.clone(),
            options: self.config.options.clone(),
            root: self.config.root.clone(),
            task_root: self.config.task_root.clone(),
            sync: self.config.sync,
            #[cfg(feature = "s3")]
            s3: self.config.s3.clone(),
            #[cfg(feature = "s3")]
            transfer: self.config.transfer.clone(),
            landed: self.config.landed.clone(),
        });
        let destinations = self
            .bundles
            .iter()
            .map(|spec| destination_path(&config.root, &spec.destination))
            .collect::<Result<Vec<_>>>()?;
        check_distinct(&destinations)?;
        let mut tasks = Vec::new();
        for (spec, destination) in self.bundles.iter().zip(destinations) {
            let span = tracing::info_span!("bundle", source = %spec.source, destination = %destination.display());
            let task = land(config.clone(), spec.clone(), destination).instrument(span);
            tasks.push(tokio::spawn(task));
        }
        // Every task is awaited, even after a failure, so that when this returns nothing is still
        // writing: a caller that discards the destinations after an error (the extension) is not raced.
        let mut landed = Vec::with_capacity(tasks.len());
        let mut first_error = None;
        for task in tasks {
            match task.await.map_err(|e| Error::Io(io::Error::other(e))).and_then(|result| result) {
                Ok(one) => landed.push(one),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(landed),
        }
    }
}

/// The absolute destination: relative to `root`, or absolute inside it; never outside.
fn destination_path(root: &Path, destination: &Path) -> Result<PathBuf> {
    if destination.components().any(|c| matches!(c, Component::ParentDir)) || destination.file_name().is_none() {
        return Err(Error::Config(format!("bundle destination {} is not a plain path", destination.display())));
    }
    let path = if destination.is_absolute() { destination.to_path_buf() } else { root.join(destination) };
    // The root itself (`/tmp/.` compares equal too) is not a destination: a directory bundle there would
    // replace the whole root, and `discard` would remove it.
    if path == root {
        return Err(Error::Config(format!("bundle destination {} is the root itself", path.display())));
    }
    if !path.starts_with(root) {
        return Err(Error::Config(format!(
            "bundle destination {} is outside the root {}",
            path.display(),
            root.display()
        )));
    }
    Ok(path)
}

/// Two bundles must not write the same path, nor one inside the other's directory, nor one under a name
/// the other's landing uses beside it: its reuse marker (`.NAME.kms-envelope`), its staging files and
/// set-aside directories (`.NAME.*`), its marker's staging files (`..NAME.kms-envelope.*`). Otherwise one
/// bundle's landing overwrites the other's marker, or its leftover cleanup removes the other bundle.
fn check_distinct(destinations: &[PathBuf]) -> Result<()> {
    let beside = |a: &Path, b: &Path| {
        let (Some(a_name), Some(b_name)) = (a.file_name(), b.file_name()) else { return false };
        let (a_name, b_name) = (a_name.to_string_lossy(), b_name.to_string_lossy());
        a.parent() == b.parent()
            && (b_name.starts_with(&format!(".{a_name}.")) || b_name.starts_with(&format!("..{a_name}.kms-envelope.")))
    };
    for (i, a) in destinations.iter().enumerate() {
        let clash = |b: &&PathBuf| a.starts_with(b) || b.starts_with(a) || beside(a, b) || beside(b, a);
        if let Some(b) = destinations[i + 1..].iter().find(clash) {
            return Err(Error::Config(format!("bundle destinations {} and {} overlap", a.display(), b.display())));
        }
    }
    Ok(())
}

/// Removes what an earlier process killed mid-decrypt left beside the destination (see
/// [`remove_stale_partials`]), logging each removal.
fn remove_leftovers(place: &Place) {
    let through = place.dir_through_handle();
    for (path, outcome) in remove_stale_partials(&place.through_handle(place.name())) {
        let path = place.destination().with_file_name(path.strip_prefix(&through).unwrap_or(&path));
        match outcome {
            Ok(()) => tracing::info!(path = %path.display(), "removed a leftover of an interrupted decrypt"),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover"),
        }
    }
}

async fn land(config: Arc<Config>, spec: BundleSpec, destination: PathBuf) -> Result<Landed> {
    let started = Instant::now();
    let landed = match &spec.source {
        Source::Path(path) => {
            let path = source::resolve_path(path, config.task_root.as_deref())?;
            let config = config.clone();
            let destination = destination.clone();
            blocking(move || {
                let mut file = fs::File::open(&path)
                    .map_err(|e| Error::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display()))))?;
                let len = file.metadata()?.len();
                // Not authenticated: only looks for a marker (see `ReuseKey::MessageId`).
                let header = HeaderDecoder::read_from(config.options.limits, &mut file)?;
                let key = ReuseKey::MessageId(Identity::message(header.message_id()));
                file.rewind()?;
                land_from_reader(&config, Message::<io::Empty>::File(file), len, key, &destination, spec.kind)
            })
            .await?
        }
        #[cfg(feature = "s3")]
        Source::S3 { bucket, key } => s3::land(config.clone(), bucket, key, &destination, spec.kind).await?,
        #[cfg(not(feature = "s3"))]
        Source::S3 { .. } => {
            return Err(Error::Config(format!("{}: S3 sources need the `s3` feature", spec.source)));
        }
    };
    let landed = Landed { total_time: started.elapsed(), ..landed };
    tracing::info!(
        bytes = landed.bytes,
        reused = landed.reused,
        unwrap_ms = landed.unwrap_time.as_secs_f64() * 1e3,
        total_ms = landed.total_time.as_secs_f64() * 1e3,
        "bundle ready"
    );
    Ok(landed)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Io(io::Error::other(e)))?
}

/// Where a message is read from: a local file, decrypted at known offsets (on several threads when it is
/// large), or a stream.
enum Message<R> {
    File(fs::File),
    Stream(R),
}

/// The destination as a warm start finds it, if its marker names `identity` and it is untouched.
fn reused(config: &Config, destination: &Path, identity: &Identity, kind: BundleKind) -> Result<Option<Landed>> {
    let place = Place::open(&config.root, destination, expect(kind))?;
    let target = place.through_handle(place.name());
    if !reuse::is_current(&target, identity, kind == BundleKind::Directory) {
        return Ok(None);
    }
    let bytes = if kind == BundleKind::Directory { 0 } else { fs::symlink_metadata(&target)?.len() };
    config.note(&place, place.name())?;
    config.note(&place, &reuse::marker_name(place.name()))?;
    Ok(Some(Landed {
        destination: place.destination(),
        bytes,
        reused: true,
        unwrap_time: Duration::ZERO,
        total_time: Duration::ZERO,
    }))
}

/// Decrypts one message into its destination, unless the marker shows it is already there.
fn land_from_reader<R: Read>(
    config: &Config,
    input: Message<R>,
    ciphertext_len: u64,
    key: ReuseKey,
    destination: &Path,
    kind: BundleKind,
) -> Result<Landed> {
    if let Some(identity) = key.lookup()
        && let Some(landed) = reused(config, destination, identity, kind)?
    {
        return Ok(landed);
    }
    let place = Place::open(&config.root, destination, expect(kind))?;
    decrypt_into_place(config, input, ciphertext_len, &key, &place, kind).map_err(|e| place.real_paths(e))
}

/// Decrypts one message into `place`, writing only through its handle.
fn decrypt_into_place<R: Read>(
    config: &Config,
    input: Message<R>,
    ciphertext_len: u64,
    key: &ReuseKey,
    place: &Place,
    kind: BundleKind,
) -> Result<Landed> {
    let target = place.through_handle(place.name());
    remove_leftovers(place);
    space::ensure_space(&place.dir_through_handle(), ciphertext_len)?;
    reuse::forget(&target);

    let started = Instant::now();
    let keyring = config.keyring.as_ref();
    let (bytes, unwrap_time, verified) = match (kind, input) {
        (BundleKind::File, Message::File(file)) => {
            // Created first, so a symlink or directory at the destination fails before any KMS call.
            let mut pending = PendingFile::create(&target, true)?;
            let decryptor = FileDecryptor::new(keyring, &config.options, file)?;
            let unwrap_time = started.elapsed();
            if config.sync {
                pending.sync_while_writing();
            }
            let verified = decryptor.decrypt_into(&mut pending, &|_| {}).map_err(FileError::into_inner)?;
            pending.commit(config.sync, true)?;
            (fs::symlink_metadata(&target)?.len(), unwrap_time, verified)
        }
        (BundleKind::File, Message::Stream(input)) => {
            let pending = PendingFile::create(&target, true)?;
            let decryptor = Decryptor::new(keyring, &config.options, input)?;
            let unwrap_time = started.elapsed();
            let output = OutputOptions::new().overwrite(true).sync(config.sync);
            let verified = write_verified(decryptor, pending, &output)?;
            (fs::symlink_metadata(&target)?.len(), unwrap_time, verified)
        }
        (BundleKind::Directory, input) => {
            let input: Box<dyn Read> = match input {
                Message::File(file) => Box::new(io::BufReader::with_capacity(16 << 10, file)),
                Message::Stream(input) => Box::new(input),
            };
            let decryptor = Decryptor::new(keyring, &config.options, input)?;
            let unwrap_time = started.elapsed();
            // The tar reader hands the decryptor's errors back inside `io::Error`s; unwrap them so that a
            // tampered frame reads as `FrameAuthentication`, as it does for files.
            match bundle::unpack_verified(decryptor, &target, &OutputOptions::new().overwrite(true)) {
                Ok((verified, summary)) => (summary.bytes, unwrap_time, verified),
                Err(Error::Io(e)) => return Err(Error::from_io(e)),
                Err(e) => return Err(e),
            }
        }
    };
    config.note(place, place.name())?;
    // Only now, with the whole message verified, is its identity known.
    if let Some(identity) = key.recorded(&verified) {
        reuse::record(&target, &identity, if kind == BundleKind::Directory { 0 } else { bytes })?;
        config.note(place, &reuse::marker_name(place.name()))?;
    }
    Ok(Landed { destination: place.destination(), bytes, reused: false, unwrap_time, total_time: Duration::ZERO })
}

/// The largest secrets bundle [`load_secrets`] reads: it is read whole into memory, so its size is checked
/// before reading (a file's length, an S3 object's `Content-Length`) and while reading. 1 MiB holds a JSON
/// object of secrets many times over (a Secrets Manager secret is at most 64 KiB); larger data belongs in
/// a file bundle, which is streamed to disk.
pub const MAX_SECRETS_LEN: u64 = 1 << 20;

/// Decrypts a JSON secrets bundle (`{"NAME": "value", …}`) into memory; nothing touches the disk.
///
/// # Errors
///
/// [`Error::SecretsTooLarge`] for a bundle over [`MAX_SECRETS_LEN`], and as the decryption fails.
pub async fn load_secrets(keyring: Arc<dyn Keyring>, options: DecryptOptions, source: &Source) -> Result<Secrets> {
    let message = match source {
        Source::Path(path) => {
            let path = source::resolve_path(path, std::env::var_os("LAMBDA_TASK_ROOT").map(PathBuf::from).as_deref())?;
            read_secrets_file(source, &path).await?
        }
        #[cfg(feature = "s3")]
        Source::S3 { bucket, key } => {
            let client = aws_sdk_s3::Client::new(&load_aws_config().await);
            let transfer = env::transfer_options(|name| std::env::var(name).ok())?;
            s3::read_secrets(&client, source, bucket, key, &transfer).await?
        }
        #[cfg(not(feature = "s3"))]
        Source::S3 { .. } => return Err(Error::Config(format!("{source}: S3 sources need the `s3` feature"))),
    };
    secrets_from_message(keyring, options, message).await
}

/// The secrets bundle at `path`, whole, refused past [`MAX_SECRETS_LEN`] by its length and as it is read.
async fn read_secrets_file(source: &Source, path: &Path) -> Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let too_large = |len| Error::SecretsTooLarge { name: source.describe(), len, max: MAX_SECRETS_LEN };
    let file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    if len > MAX_SECRETS_LEN {
        return Err(too_large(len));
    }
    let mut message = Vec::with_capacity(len as usize);
    file.take(MAX_SECRETS_LEN + 1).read_to_end(&mut message).await?;
    match message.len() as u64 {
        read if read > MAX_SECRETS_LEN => Err(too_large(read)),
        _ => Ok(message),
    }
}

async fn secrets_from_message(keyring: Arc<dyn Keyring>, options: DecryptOptions, message: Vec<u8>) -> Result<Secrets> {
    let started = Instant::now();
    let decrypted = blocking(move || crate::stream::decrypt(keyring.as_ref(), &options, &message)).await?;
    let secrets = Secrets::from_json(decrypted.plaintext)?;
    tracing::info!(
        secrets = secrets.names().count(),
        total_ms = started.elapsed().as_secs_f64() * 1e3,
        "secrets ready (in memory)"
    );
    Ok(secrets)
}

#[cfg(feature = "s3")]
mod s3 {
    //! S3 sources: the object pinned by HeadObject (its ETag is the warm-reuse identity), then read with
    //! parallel ranged GETs pinned to that ETag, streamed into the decryptor.

    use super::*;
    use crate::s3::{S3Object, TransferOptions};

    /// The secrets bundle in `bucket`/`key`, whole: refused past [`MAX_SECRETS_LEN`] by its length in
    /// `HeadObject`, before any GET; the GETs then ask for that length and take no byte more.
    pub(super) async fn read_secrets(
        client: &aws_sdk_s3::Client,
        source: &Source,
        bucket: &str,
        key: &str,
        transfer: &TransferOptions,
    ) -> Result<Vec<u8>> {
        let object = S3Object::new(client.clone(), bucket, key);
        let len = object.pin().await?.len;
        if len > MAX_SECRETS_LEN {
            return Err(Error::SecretsTooLarge { name: source.describe(), len, max: MAX_SECRETS_LEN });
        }
        object.read_all(transfer).await
    }

    pub(super) async fn land(
        config: Arc<Config>,
        bucket: &str,
        key: &str,
        destination: &Path,
        kind: BundleKind,
    ) -> Result<Landed> {
        let client = match &config.s3 {
            Some(client) => client.clone(),
            None => aws_sdk_s3::Client::new(&load_aws_config().await),
        };
        let object = S3Object::new(client, bucket, key);
        let pinned = object.pin().await?.clone();
        let reuse_key = ReuseKey::s3(bucket, key, pinned.etag.as_deref());
        if let Some(identity) = reuse_key.lookup().cloned() {
            let (config, destination) = (config.clone(), destination.to_path_buf());
            if let Some(landed) = blocking(move || reused(&config, &destination, &identity, kind)).await? {
                return Ok(landed);
            }
        }
        // Every GET carries If-Match with the ETag the marker will record.
        let reader = object.reader(tokio::runtime::Handle::current(), &config.transfer);
        let destination = destination.to_path_buf();
        let landed = blocking(move || {
            let reader = Message::Stream(io::BufReader::with_capacity(64 << 10, reader));
            land_from_reader(&config, reader, pinned.len, reuse_key, &destination, kind)
        })
        .await;
        // One line per bundle, in its span, however many requests were retried.
        if object.retries() > 0 {
            tracing::info!(retries = object.retries(), "S3 requests retried");
        }
        landed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_stay_under_the_root() {
        let root = Path::new("/tmp");
        assert_eq!(destination_path(root, Path::new("a/b.json")).unwrap(), Path::new("/tmp/a/b.json"));
        assert_eq!(destination_path(root, Path::new("/tmp/x")).unwrap(), Path::new("/tmp/x"));
        assert!(destination_path(root, Path::new("../etc/passwd")).is_err());
        assert!(destination_path(root, Path::new("/etc/passwd")).is_err());
        assert!(destination_path(root, Path::new("/tmp/..")).is_err());
        assert!(destination_path(root, Path::new("/tmp/.")).is_err());
    }

    #[test]
    fn overlapping_destinations_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        assert!(check_distinct(&[r.join("a"), r.join("b"), r.join("ab")]).is_ok());
        assert!(check_distinct(&[r.join("a"), r.join("a/b")]).is_err());
        assert!(check_distinct(&[r.join("a"), r.join("b"), r.join("a")]).is_err());
        // A name that another destination's landing uses beside it: its marker, a staging file, a
        // set-aside directory, its marker's staging file; in either order.
        for beside in [".a.kms-envelope", ".a.Xy12Zq.partial", ".a.0123.old", "..a.kms-envelope.Xy12Zq.partial"] {
            assert!(check_distinct(&[r.join("a"), r.join(beside)]).is_err(), "{beside}");
            assert!(check_distinct(&[r.join(beside), r.join("a")]).is_err(), "{beside}");
        }
        // The same names in another directory, or for another bundle, are fine.
        assert!(check_distinct(&[r.join("a"), r.join("d/.a.kms-envelope"), r.join(".b.kms-envelope")]).is_ok());
    }
}
