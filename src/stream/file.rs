//! Writing a file that appears at its destination only when complete and verified.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;

use super::{DecryptOptions, Decryptor, WipingBufWriter};
use crate::error::{Error, Result};
use crate::format::header::Header;
use crate::keyring::Keyring;

/// A file being written next to its destination: a fresh temp file (created with `O_CREAT|O_EXCL`, so never
/// through a planted symlink, mode 0600) that is renamed over the destination only by
/// [`commit`](Self::commit). Dropped without `commit`, the temp file is removed.
///
/// Write through the `Write` impl (or [`file`](Self::file)); after
/// [`sync_while_writing`](Self::sync_while_writing), bytes written through the `Write` impl are flushed to
/// disk in the background as they accumulate, so that a syncing `commit` has little left to wait for.
#[derive(Debug)]
pub struct PendingFile {
    temp: tempfile::NamedTempFile,
    destination: PathBuf,
    writeback: Option<Writeback>,
}

impl PendingFile {
    /// Starts a file that will become `destination`. Refuses a destination that exists as a symlink or
    /// anything but a regular file, and an existing file unless `overwrite`.
    pub fn create(destination: &Path, overwrite: bool) -> Result<Self> {
        check_destination(destination, overwrite)?;
        let (dir, prefix) = staging_place(destination);
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".partial");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(0o600));
        }
        let temp = builder.tempfile_in(dir)?;
        // The umask may only have narrowed 0600; set it exactly so the result does not depend on it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            temp.as_file().set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        Ok(Self { temp, destination: destination.to_path_buf(), writeback: None })
    }

    /// The temp file to write into (bytes written here directly are synced only by `commit`).
    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Starts syncing written data to disk in the background, every [`WRITEBACK_EVERY`] bytes, for a
    /// file that will be committed with `sync`: the disk then works while the data is still being
    /// produced instead of all at the end. Best effort: if the thread cannot start, `commit` syncs
    /// everything as usual.
    pub fn sync_while_writing(&mut self) {
        if self.writeback.is_none() {
            self.writeback = Writeback::start(self.temp.as_file()).ok();
        }
    }

    /// Optionally syncs the data to disk, then renames the temp file over the destination.
    pub fn commit(mut self, sync: bool, overwrite: bool) -> Result<()> {
        if let Some(writeback) = self.writeback.take() {
            // A failed background sync may have consumed the error a final sync would report (the
            // descriptor is shared), so it fails the commit itself.
            writeback.finish()?;
        }
        if sync {
            self.temp.as_file().sync_all()?;
        }
        // Checked again: the destination may have appeared while we wrote.
        check_destination(&self.destination, overwrite)?;
        let persisted = if overwrite {
            self.temp.persist(&self.destination).map(drop)
        } else {
            self.temp.persist_noclobber(&self.destination).map(drop)
        };
        persisted.map_err(|e| Error::Io(e.error))?;
        if sync && let Some(dir) = self.destination.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl Write for PendingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.temp.as_file_mut().write(buf)?;
        if let Some(writeback) = &mut self.writeback {
            writeback.wrote(n);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.as_file_mut().flush()
    }
}

/// How many bytes written between two background syncs of a [`PendingFile`].
pub const WRITEBACK_EVERY: u64 = 32 << 20;

/// A thread that runs `fdatasync` on a file each time it is kicked; kicks that arrive while one is queued
/// are merged. It stops at the first failure, which [`finish`](Self::finish) reports.
#[derive(Debug)]
struct Writeback {
    kick: Option<SyncSender<()>>,
    worker: Option<JoinHandle<io::Result<()>>>,
    unsynced: u64,
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
        Ok(Self { kick: Some(kick), worker: Some(worker), unsynced: 0 })
    }

    fn wrote(&mut self, n: usize) {
        self.unsynced += n as u64;
        if self.unsynced >= WRITEBACK_EVERY {
            self.unsynced = 0;
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

/// Decrypts `input` into the file `destination`, which appears (mode 0600) only after the whole message,
/// including any signature, verified. On any error nothing new is left at `destination`.
pub fn decrypt_to_path(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    input: impl Read,
    destination: &Path,
    overwrite: bool,
    sync: bool,
) -> Result<Header> {
    let pending = PendingFile::create(destination, overwrite)?;
    let decryptor = Decryptor::new(keyring, options, input)?;
    write_verified(decryptor, pending, overwrite, sync)
}

/// Drains a decryptor whose header already authenticated into `pending`, and commits the file only once
/// the decryptor reached the verified end of the message.
pub fn write_verified<R: Read>(
    mut decryptor: Decryptor<R>,
    mut pending: PendingFile,
    overwrite: bool,
    sync: bool,
) -> Result<Header> {
    if sync {
        pending.sync_while_writing();
    }
    {
        // Frames at least this long go straight from the decryptor's buffers to the file.
        let mut out = WipingBufWriter::with_capacity(64 << 10, &mut pending);
        decryptor.write_to(&mut out).map_err(Error::from_io)?;
        out.flush()?;
    }
    let header = decryptor.header().clone();
    pending.commit(sync, overwrite)?;
    Ok(header)
}
