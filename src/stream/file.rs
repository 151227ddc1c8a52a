//! Writing a file that appears at its destination only when complete and verified.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;

use super::{DecryptOptions, Decryptor, WipingBufWriter};
use crate::error::{Error, Result};
use crate::format::header::Header;
use crate::keyring::Keyring;

/// A file being written next to its destination, which appears there only by [`commit`](Self::commit),
/// mode 0600 whatever the umask, never through a planted symlink.
///
/// On Linux it is an unnamed file (`O_TMPFILE`) in the destination's directory: it has no name until
/// `commit` links it into place, so a process that dies mid-write, even by SIGKILL, leaves nothing on
/// disk. Where the filesystem cannot do that (or off Linux) it is a named temp file
/// `.NAME.XXXXXX.partial` beside the destination (created with `O_CREAT|O_EXCL`), removed on drop and
/// held under an exclusive `flock` while this process lives, so that [`remove_stale_partials`], which
/// `create` runs first, removes it after a crash but never while it is being written.
///
/// Write through the `Write` impl (or [`file`](Self::file)); after
/// [`sync_while_writing`](Self::sync_while_writing), bytes written through the `Write` impl are flushed to
/// disk in the background as they accumulate, so that a syncing `commit` has little left to wait for.
#[derive(Debug)]
pub struct PendingFile {
    temp: Temp,
    destination: PathBuf,
    writeback: Option<Writeback>,
}

#[derive(Debug)]
enum Temp {
    #[cfg(target_os = "linux")]
    Unnamed(unnamed::UnnamedFile),
    Named(tempfile::NamedTempFile),
}

/// How many times a named temp file or staging directory is created again when a cleaner removed it
/// between its creation and our lock on it.
pub(crate) const LOCK_ATTEMPTS: usize = 8;

impl PendingFile {
    /// Starts a file that will become `destination`. Refuses a destination that exists as a symlink or
    /// anything but a regular file, and an existing file unless `overwrite`. Removes what an earlier,
    /// dead process left staged for the same destination (see [`remove_stale_partials`]).
    ///
    /// # Errors
    ///
    /// [`Error::Io`]: of kind `InvalidInput` when `destination` is a symbolic link or exists and is not a
    /// regular file, `AlreadyExists` when it exists and `overwrite` is false, `NotADirectory` or `NotFound`
    /// when its directory is not one, and any error creating the staged file there.
    pub fn create(destination: &Path, overwrite: bool) -> Result<Self> {
        Self::create_with(destination, overwrite, true)
    }

    /// `create`, with the unnamed file only when `allow_unnamed` (tests reach the fallback this way).
    fn create_with(destination: &Path, overwrite: bool, allow_unnamed: bool) -> Result<Self> {
        check_destination(destination, overwrite)?;
        remove_stale_partials(destination);
        let (dir, prefix) = staging_place(destination);
        check_directory(dir)?;
        #[cfg(not(target_os = "linux"))]
        let _ = allow_unnamed;
        #[cfg(target_os = "linux")]
        if allow_unnamed && let Some(file) = unnamed::UnnamedFile::create_in(dir)? {
            return Ok(Self { temp: Temp::Unnamed(file), destination: destination.to_path_buf(), writeback: None });
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".partial");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(0o600));
        }
        for _ in 0..LOCK_ATTEMPTS {
            let temp = builder.tempfile_in(dir)?;
            if !lock_in_place(temp.path(), temp.as_file())? {
                continue;
            }
            // The umask may only have narrowed 0600; set it exactly so the result does not depend on it.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                temp.as_file().set_permissions(fs::Permissions::from_mode(0o600))?;
            }
            return Ok(Self { temp: Temp::Named(temp), destination: destination.to_path_buf(), writeback: None });
        }
        Err(Error::Io(io::Error::other(format!(
            "{}: another process keeps removing this output's temp file",
            destination.display()
        ))))
    }

    /// The temp file to write into (bytes written here directly are synced only by `commit`).
    pub fn file(&mut self) -> &mut File {
        match &mut self.temp {
            #[cfg(target_os = "linux")]
            Temp::Unnamed(unnamed) => unnamed.file_mut(),
            Temp::Named(named) => named.as_file_mut(),
        }
    }

    /// The temp file, and what bytes written into it at known offsets (by several threads at once) must
    /// be reported to, so that they are synced in the background like bytes written through `Write`.
    pub(crate) fn positioned(&self) -> (&File, Option<&Writeback>) {
        (self.file_ref(), self.writeback.as_ref())
    }

    fn file_ref(&self) -> &File {
        match &self.temp {
            #[cfg(target_os = "linux")]
            Temp::Unnamed(unnamed) => unnamed.file(),
            Temp::Named(named) => named.as_file(),
        }
    }

    /// Starts syncing written data to disk in the background, every [`WRITEBACK_EVERY`] bytes, for a
    /// file that will be committed with `sync`: the disk then works while the data is still being
    /// produced instead of all at the end. Best effort: if the thread cannot start, `commit` syncs
    /// everything as usual.
    pub fn sync_while_writing(&mut self) {
        if self.writeback.is_none() {
            self.writeback = Writeback::start(self.file_ref()).ok();
        }
    }

    /// Optionally syncs the data to disk, then gives the file the destination's name (replacing an
    /// existing file only when `overwrite`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a background or final sync fails, the destination became a link, a non-file or
    /// (without `overwrite`) an existing file while this one was written, or the rename fails.
    pub fn commit(mut self, sync: bool, overwrite: bool) -> Result<()> {
        if let Some(writeback) = self.writeback.take() {
            // A failed background sync may have consumed the error a final sync would report (the
            // descriptor is shared), so it fails the commit itself.
            writeback.finish()?;
        }
        if sync {
            self.file_ref().sync_all()?;
        }
        // Checked again: the destination may have appeared while we wrote.
        check_destination(&self.destination, overwrite)?;
        match self.temp {
            #[cfg(target_os = "linux")]
            Temp::Unnamed(unnamed) => {
                let Some(name) = self.destination.file_name() else {
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} names no file", self.destination.display()),
                    )));
                };
                let (_, prefix) = staging_place(&self.destination);
                if overwrite {
                    unnamed.link_over(name, &prefix)?;
                } else {
                    unnamed.link_as(name)?;
                }
            }
            Temp::Named(named) => {
                let persisted = if overwrite {
                    named.persist(&self.destination).map(drop)
                } else {
                    named.persist_noclobber(&self.destination).map(drop)
                };
                persisted.map_err(|e| Error::Io(e.error))?;
            }
        }
        if sync && let Some(dir) = self.destination.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl Write for PendingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file().write(buf)?;
        if let Some(writeback) = &self.writeback {
            writeback.wrote(n);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

#[cfg(target_os = "linux")]
pub(crate) mod unnamed {
    //! Files created with `O_TMPFILE`: no name until linked, so the kernel frees them if the process dies.

    use std::ffi::OsStr;
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::path::Path;

    use rustix::fs::{AtFlags, CWD, Mode, OFlags};
    use rustix::io::Errno;

    /// An unnamed 0600 file in a directory, under an exclusive `flock` (which also covers the name it is
    /// later linked under, so no cleaner removes it before this process is done with it).
    #[derive(Debug)]
    pub(crate) struct UnnamedFile {
        file: File,
        dir: OwnedFd,
    }

    impl UnnamedFile {
        /// An unnamed file in `dir`, or `None` where the filesystem or kernel cannot make one or `/proc`
        /// (through which it is linked) is not mounted.
        pub(crate) fn create_in(dir: &Path) -> io::Result<Option<Self>> {
            let dir = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
            let mode = Mode::RUSR | Mode::WUSR;
            let fd = match rustix::fs::openat(&dir, ".", OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC, mode) {
                Ok(fd) => fd,
                // EISDIR: a kernel older than O_TMPFILE read it as O_DIRECTORY.
                Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let file = File::from(fd);
            // The umask may only have narrowed 0600; set it exactly so the result does not depend on it.
            rustix::fs::fchmod(&file, mode)?;
            file.lock()?;
            let unnamed = Self { file, dir };
            if rustix::fs::stat(unnamed.proc_path()).is_err() {
                return Ok(None);
            }
            Ok(Some(unnamed))
        }

        pub(crate) fn file(&self) -> &File {
            &self.file
        }

        pub(crate) fn file_mut(&mut self) -> &mut File {
            &mut self.file
        }

        /// `linkat` with `AT_EMPTY_PATH` needs CAP_DAC_READ_SEARCH; through `/proc` it needs nothing.
        fn proc_path(&self) -> String {
            format!("/proc/self/fd/{}", self.file.as_raw_fd())
        }

        /// Gives the file the name `name` in its directory; an existing name is never replaced
        /// (`AlreadyExists`).
        pub(crate) fn link_as(&self, name: &OsStr) -> io::Result<()> {
            Ok(rustix::fs::linkat(CWD, self.proc_path(), &self.dir, name, AtFlags::SYMLINK_FOLLOW)?)
        }

        /// Gives the file the name `name` in its directory, replacing what is there: `link` cannot replace,
        /// so the file is linked under a fresh `PREFIXXXXXXX.partial` and renamed over `name`.
        pub(crate) fn link_over(&self, name: &OsStr, prefix: &str) -> io::Result<()> {
            for _ in 0..super::LOCK_ATTEMPTS {
                let staged = format!("{prefix}{}.partial", super::random_suffix());
                match self.link_as(OsStr::new(&staged)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
                return match rustix::fs::renameat(&self.dir, &staged, &self.dir, name) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let _ = rustix::fs::unlinkat(&self.dir, &staged, AtFlags::empty());
                        Err(e.into())
                    }
                };
            }
            Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free staging name"))
        }
    }
}

/// Six random letters and digits, for staging names.
#[cfg(target_os = "linux")]
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 6];
    rand::fill(&mut bytes[..]);
    bytes.iter().map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()] as char).collect()
}

/// Takes an exclusive lock on `file`, just created at `path`, and checks that `path` is still that file:
/// a cleaner may have locked and removed it in between, and then we hold the lock on nothing (`false`).
pub(crate) fn lock_in_place(path: &Path, file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Ok(false),
        Err(fs::TryLockError::Error(e)) => return Err(e),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let ours = file.metadata()?;
        match fs::symlink_metadata(path) {
            Ok(there) => Ok(there.dev() == ours.dev() && there.ino() == ours.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    Ok(path.exists())
}

/// Removes what an earlier process that died mid-write left beside `destination`: its temp files and
/// staging directories (`.NAME.XXXXXX.partial`), its Lambda marker's (`..NAME.kms-envelope.XXXXXX.partial`)
/// and a directory it was replacing (`.NAME.ID.old`). Only names this crate creates for this destination
/// match, and of those only what no live process holds: every writer keeps an exclusive `flock` on its
/// temp file or staging directory while it lives, the lock dies with it, and what this cannot lock
/// (`LOCK_EX|LOCK_NB`) is left alone. Best effort: returns each path it tried to remove, with the outcome.
pub fn remove_stale_partials(destination: &Path) -> Vec<(PathBuf, io::Result<()>)> {
    let Some(name) = destination.file_name() else { return Vec::new() };
    let (dir, _) = staging_place(destination);
    let name = name.to_string_lossy();
    let prefixes = [format!(".{name}."), format!("..{name}.kms-envelope.")];
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        if is_partial_name(&file_name, &prefixes) {
            let path = entry.path();
            if let Some(outcome) = remove_if_unlocked(&path) {
                removed.push((path, outcome));
            }
        }
    }
    removed
}

/// Exactly the names this crate stages under (the cleanup runs in any directory a user writes to, so a
/// user's `.NAME.backup.old` must not match): six letters or digits before `.partial` (tempfile's and
/// the staging names of `link_over`), a message id (16 or 32 bytes, in hex) before `.old`.
fn is_partial_name(file_name: &OsStr, prefixes: &[String]) -> bool {
    let file_name = file_name.to_string_lossy();
    prefixes.iter().any(|prefix| {
        let Some(rest) = file_name.strip_prefix(prefix.as_str()) else { return false };
        if let Some(middle) = rest.strip_suffix(".partial") {
            middle.len() == 6 && middle.bytes().all(|b| b.is_ascii_alphanumeric())
        } else if let Some(middle) = rest.strip_suffix(".old") {
            matches!(middle.len(), 32 | 64) && middle.bytes().all(|b| b.is_ascii_hexdigit())
        } else {
            false
        }
    })
}

/// Removes `path` (a file or a whole directory) unless another process holds it locked (`None`).
fn remove_if_unlocked(path: &Path) -> Option<io::Result<()>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e)),
    };
    if meta.file_type().is_symlink() {
        // Never one of ours, and nobody's lock: removing the link touches nothing it points to.
        return Some(fs::remove_file(path));
    }
    let opened = open_no_follow(path);
    let handle = match opened {
        Ok(handle) => handle,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e)),
    };
    match handle.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return None,
        Err(fs::TryLockError::Error(e)) => return Some(Err(e)),
    }
    // Held until removed, so that no writer that just created it can believe it is still there.
    Some(if meta.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) })
}

#[cfg(unix)]
fn open_no_follow(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    // NONBLOCK: a FIFO planted under our name must not hang the cleanup.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::open(path, flags, Mode::empty())?))
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// How many bytes written between two background syncs of a [`PendingFile`].
pub const WRITEBACK_EVERY: u64 = 32 << 20;

/// A thread that runs `fdatasync` on a file each time it is kicked; kicks that arrive while one is queued
/// are merged. It stops at the first failure, which [`finish`](Self::finish) reports.
#[derive(Debug)]
pub(crate) struct Writeback {
    kick: Option<SyncSender<()>>,
    worker: Option<JoinHandle<io::Result<()>>>,
    unsynced: AtomicU64,
}

impl Writeback {
    fn start(file: &File) -> io::Result<Self> {
        let file = file.try_clone()?;
        let (kick, kicks) = mpsc::sync_channel::<()>(1);
        let worker = std::thread::Builder::new().name("kms-envelope-writeback".into()).spawn(move || {
            for () in kicks {
                file.sync_data()?;
            }
            Ok(())
        })?;
        Ok(Self { kick: Some(kick), worker: Some(worker), unsynced: AtomicU64::new(0) })
    }

    /// Counts `n` bytes written, from any thread, and kicks a sync every [`WRITEBACK_EVERY`] bytes.
    pub(crate) fn wrote(&self, n: usize) {
        let before = self.unsynced.fetch_add(n as u64, Ordering::Relaxed);
        if before + n as u64 >= WRITEBACK_EVERY {
            // Threads racing here may each kick: the kicks merge, and the count only paces them.
            self.unsynced.store(0, Ordering::Relaxed);
            if let Some(kick) = &self.kick {
                // Full: a sync is already queued and will cover these bytes. Disconnected: the worker
                // failed, and `finish` reports why.
                let _ = kick.try_send(());
            }
        }
    }

    /// Waits for the sync under way, if any, and returns the first failure.
    fn finish(mut self) -> io::Result<()> {
        drop(self.kick.take());
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the background sync thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        drop(self.kick.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Where work in progress for `destination` is staged: its directory, and the name prefix `.NAME.` that
/// temp files (`.NAME.XXXXXX.partial`) and set-aside directories (`.NAME.ID.old`) share, so that a cleanup
/// after a killed process can find them.
pub(crate) fn staging_place(destination: &Path) -> (&Path, String) {
    let dir = match destination.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = destination.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    (dir, format!(".{name}."))
}

/// The directory a temp file or staging directory goes into must exist: checked first, so that the error
/// names that directory as the caller gave it, not a temp name the caller never chose.
pub(crate) fn check_directory(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::Io(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::Io(io::Error::new(
            io::ErrorKind::NotFound,
            format!("directory {} does not exist", dir.display()),
        ))),
        Err(e) => Err(Error::Io(io::Error::new(e.kind(), format!("directory {}: {e}", dir.display())))),
    }
}

fn check_destination(destination: &Path, overwrite: bool) -> Result<()> {
    match fs::symlink_metadata(destination) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a symbolic link; refusing to write through it", destination.display()),
        ))),
        Ok(meta) if !meta.is_file() => Err(Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} exists and is not a regular file", destination.display()),
        ))),
        Ok(_) if !overwrite => Err(Error::Io(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", destination.display()),
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(e)),
    }
}

/// How a decrypted file or directory is put at its destination: whether an existing one is replaced, and
/// whether it is flushed to disk before it appears there.
///
/// ```
/// use kms_envelope::OutputOptions;
///
/// let replace_fast = OutputOptions::new().overwrite(true).sync(false);
/// assert!(replace_fast.overwrites() && !replace_fast.syncs());
/// assert!(!OutputOptions::default().overwrites() && OutputOptions::default().syncs());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputOptions {
    overwrite: bool,
    sync: bool,
}

impl Default for OutputOptions {
    fn default() -> Self {
        Self { overwrite: false, sync: true }
    }
}

impl OutputOptions {
    /// An existing destination is refused; the output is flushed to disk (`fsync`) before it appears.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace an existing destination (default: refuse it). A symlink or an entry of another kind there
    /// is refused either way.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Flush the output to disk before it appears (default: on). Off is faster, but after a power loss or
    /// a kernel crash right then the output may be missing or empty (never unverified).
    pub fn sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }

    /// Whether an existing destination is replaced.
    pub fn overwrites(&self) -> bool {
        self.overwrite
    }

    /// Whether the output is flushed to disk before it appears.
    pub fn syncs(&self) -> bool {
        self.sync
    }
}

/// Decrypts `input` into the file `destination`, which appears (mode 0600) only after the whole message,
/// including any signature, verified. On any error nothing new is left at `destination`.
///
/// # Errors
///
/// An existing `destination` without [`OutputOptions::overwrite`], a symlink there, a message that fails
/// to decrypt or verify ([`Error`]'s variants say which), or an I/O error writing the file.
///
/// ```
/// use kms_envelope::{DecryptOptions, EncryptOptions, OutputOptions, RawAesKeyring, decrypt_to_path, encrypt};
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let keyring = RawAesKeyring::new("my-service", "key-1", &[0x42; 32])?;
///     let message = encrypt(&keyring, &EncryptOptions::new(), b"tls private key")?;
///
///     let dir = tempfile::tempdir()?;
///     let path = dir.path().join("server.key");
///     decrypt_to_path(&keyring, &DecryptOptions::new(), &message[..], &path, &OutputOptions::new())?;
///     assert_eq!(std::fs::read(&path)?, b"tls private key");
///
///     // A second run refuses to replace it unless told to.
///     assert!(decrypt_to_path(&keyring, &DecryptOptions::new(), &message[..], &path, &OutputOptions::new()).is_err());
///     let replace = OutputOptions::new().overwrite(true);
///     decrypt_to_path(&keyring, &DecryptOptions::new(), &message[..], &path, &replace)?;
///     Ok(())
/// }
/// ```
pub fn decrypt_to_path(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    input: impl Read,
    destination: &Path,
    output: &OutputOptions,
) -> Result<Header> {
    let pending = PendingFile::create(destination, output.overwrite)?;
    let decryptor = Decryptor::new(keyring, options, input)?;
    write_verified(decryptor, pending, output)
}

/// Drains a decryptor whose header already authenticated into `pending`, and commits the file only once
/// the decryptor reached the verified end of the message.
///
/// # Errors
///
/// A frame or the signature fails to verify, the message is truncated, or an I/O error on the file; then
/// nothing is committed.
pub fn write_verified<R: Read>(
    mut decryptor: Decryptor<R>,
    mut pending: PendingFile,
    output: &OutputOptions,
) -> Result<Header> {
    if output.sync {
        pending.sync_while_writing();
    }
    {
        // Frames at least this long go straight from the decryptor's buffers to the file.
        let mut out = WipingBufWriter::with_capacity(64 << 10, &mut pending);
        decryptor.write_to(&mut out).map_err(Error::from_io)?;
        out.flush()?;
    }
    let header = decryptor.header().clone();
    pending.commit(output.sync, output.overwrite)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    #[test]
    fn leftovers_of_this_destination_only_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let id = "0123456789abcdef".repeat(4);
        let ours = [
            ".a.Xy12Zq.partial",
            "..a.kms-envelope.Q1w2E3.partial",
            &format!(".a.{id}.old"),
            &format!(".a.{}.old", &id[..32]),
        ];
        let theirs = [
            ".a.b.Xy12Zq.partial",
            ".ab.Xy12Zq.partial",
            "a",
            ".a.kms-envelope",
            ".a..partial",
            "x.partial",
            ".a.backup.old",
            ".a.0123abcd.old",
            ".a.Xy12Zq7.partial",
            ".a.Xy-2Zq.partial",
        ];
        for name in ours.iter().chain(&theirs) {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        fs::create_dir(dir.path().join(".a.Staged.partial")).unwrap();
        fs::write(dir.path().join(".a.Staged.partial/inner"), b"x").unwrap();
        remove_stale_partials(&dir.path().join("a"));
        let mut left: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let mut expected: Vec<String> = theirs.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn stale_partials_are_removed_but_not_those_a_live_writer_holds_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        fs::write(path(".a.Stale1.partial"), b"plaintext").unwrap();
        fs::create_dir(path(".a.Stale2.partial")).unwrap();
        fs::write(path(".a.Stale2.partial/inner"), b"plaintext").unwrap();
        fs::write(path(".a.Live01.partial"), b"plaintext").unwrap();
        fs::create_dir(path(".a.Live02.partial")).unwrap();
        fs::write(path(".a.Live02.partial/inner"), b"plaintext").unwrap();
        // Another open file description, as another process's would be: flock locks do not merge.
        let live_file = File::open(path(".a.Live01.partial")).unwrap();
        live_file.lock().unwrap();
        let live_dir = File::open(path(".a.Live02.partial")).unwrap();
        live_dir.lock().unwrap();

        let removed: Vec<PathBuf> =
            remove_stale_partials(&path("a")).into_iter().map(|(p, r)| r.map(|()| p).unwrap()).collect();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert_eq!(names(dir.path()), [".a.Live01.partial", ".a.Live02.partial"]);
        assert_eq!(fs::read(path(".a.Live02.partial/inner")).unwrap(), b"plaintext");

        // Once its writer is gone, the lock is too, and the next run removes it.
        drop((live_file, live_dir));
        remove_stale_partials(&path("a"));
        assert_eq!(names(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn the_named_fallback_is_locked_while_written_and_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("out");
        let mut pending = PendingFile::create_with(&destination, false, false).unwrap();
        assert!(matches!(pending.temp, Temp::Named(_)));
        pending.sync_while_writing();
        pending.write_all(b"plaintext").unwrap();
        let staged = names(dir.path());
        assert_eq!(staged.len(), 1);
        assert!(staged[0].starts_with(".out.") && staged[0].ends_with(".partial"), "{staged:?}");
        // A second writer's cleanup must not take the first's temp file away.
        let second = PendingFile::create_with(&destination, false, false).unwrap();
        assert_eq!(remove_stale_partials(&destination).len(), 0);
        assert!(names(dir.path()).contains(&staged[0]));
        drop(second);
        pending.commit(true, false).unwrap();
        assert_eq!(names(dir.path()), ["out"]);
        assert_eq!(fs::read(&destination).unwrap(), b"plaintext");

        drop(PendingFile::create_with(&destination, true, false).unwrap());
        assert_eq!(names(dir.path()), ["out"]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_unnamed_file_has_no_name_until_commit_and_never_clobbers_unless_asked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("out");
        let mut pending = PendingFile::create(&destination, false).unwrap();
        assert!(matches!(pending.temp, Temp::Unnamed(_)), "O_TMPFILE unsupported in {}", dir.path().display());
        pending.write_all(b"first").unwrap();
        assert_eq!(names(dir.path()), Vec::<String>::new(), "an unnamed file shows up in its directory");
        // Appeared while we wrote: refused, as by today's named temp.
        let mut racing = PendingFile::create(&destination, false).unwrap();
        racing.write_all(b"racer").unwrap();
        pending.commit(false, false).unwrap();
        let err = racing.commit(false, false).unwrap_err();
        assert!(matches!(&err, Error::Io(e) if e.kind() == io::ErrorKind::AlreadyExists), "{err:?}");
        assert_eq!(fs::read(&destination).unwrap(), b"first");
        assert_eq!(fs::metadata(&destination).unwrap().permissions().mode() & 0o777, 0o600);

        let mut replacing = PendingFile::create(&destination, true).unwrap();
        replacing.write_all(b"second").unwrap();
        replacing.commit(true, true).unwrap();
        assert_eq!(fs::read(&destination).unwrap(), b"second");
        assert_eq!(names(dir.path()), ["out"]);
    }
}
