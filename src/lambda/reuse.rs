//! Warm reuse: a small marker beside each destination records which message produced it and what the
//! destination looked like right after, so a warm start (same execution environment, same `/tmp`) skips
//! the KMS call and the decryption only while the destination is untouched.
//!
//! "Untouched" is judged by metadata, not content (reading back every byte would cost what reuse saves):
//! the device, inode, type, mode, size, mtime and ctime (to the nanosecond) of the destination and, for a
//! directory, of every entry below it, with their names. Any write, truncation, `chmod`, rename, creation
//! or removal changes one of them, and ctime cannot be set back by a user. The marker is committed only
//! once the file system's clock has moved past the newest ctime it records, so even a change made in the
//! same clock tick as the decryption is seen.
//!
//! The marker detects accidental change, not tampering: it is an unkeyed digest, and whoever can write
//! beside the destination can write a marker that vouches for anything. Only this user can (the
//! directories on the way are checked to be this user's and writable by no one else), and this user can
//! as well change the plaintext itself. What a marker records was authenticated: the message id of the
//! header the decryption verified, or the ETag every S3 read was pinned to; an S3 object without an ETag
//! is never reused.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::format::header::{Header, MessageId};
use crate::stream::file::PendingFile;

/// The marker of `destination`: a hidden 0600 file beside it.
pub(crate) fn marker_path(destination: &Path) -> PathBuf {
    destination.with_file_name(marker_name(destination.file_name().unwrap_or_default()))
}

/// The name of the marker of the destination called `name`.
pub(crate) fn marker_name(name: &OsStr) -> OsString {
    format!(".{}.kms-envelope", name.to_string_lossy()).into()
}

/// What identifies a bundle's content: the message id for files, the object version for S3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity(pub String);

impl Identity {
    /// The identity of the message with this id.
    pub(crate) fn message(id: &MessageId) -> Self {
        Self(format!("message {id}"))
    }
}

/// How a bundle's content is recognised on a warm start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReuseKey {
    /// A local file, by its message id. The id read before decrypting only looks for a marker: it is not
    /// authenticated yet, so at most it skips work that an existing marker vouches for. A new marker
    /// records the id of the header the decryption verified.
    MessageId(Identity),
    /// An S3 object, by the ETag that every read of it was pinned to.
    ETag(Identity),
    /// Never reused, never recorded: an S3 object without an ETag has nothing that tells its versions
    /// apart.
    Never,
}

impl ReuseKey {
    /// The key of an S3 object read with `etag` pinned.
    pub(crate) fn s3(bucket: &str, key: &str, etag: Option<&str>) -> Self {
        match etag {
            Some(etag) if !etag.is_empty() => Self::ETag(Identity(format!("s3://{bucket}/{key} etag {etag}"))),
            _ => Self::Never,
        }
    }

    /// What a marker must name for the destination to be reused.
    pub(crate) fn lookup(&self) -> Option<&Identity> {
        match self {
            Self::MessageId(identity) | Self::ETag(identity) => Some(identity),
            Self::Never => None,
        }
    }

    /// What the marker records once the message, whose header is `verified`, fully verified.
    pub(crate) fn recorded(&self, verified: &Header) -> Option<Identity> {
        match self {
            Self::MessageId(_) => Some(Identity::message(verified.message_id())),
            Self::ETag(identity) => Some(identity.clone()),
            Self::Never => None,
        }
    }
}

const MARKER_VERSION: &str = "kms-envelope marker v2";

fn marker_text(identity: &Identity, plaintext_len: u64, fingerprint: &str) -> String {
    format!("{MARKER_VERSION}\n{}\n{plaintext_len}\n{fingerprint}\n", identity.0)
}

/// A digest of the metadata of `destination` and, for a directory, of everything below it (never
/// following symlinks), and the newest ctime among them.
struct Fingerprint {
    digest: String,
    newest_ctime: (i64, i64),
}

fn fingerprint(destination: &Path) -> io::Result<Fingerprint> {
    let mut hasher = Sha256::new();
    let mut newest_ctime = (i64::MIN, 0);
    walk(destination, Path::new(""), &mut hasher, &mut newest_ctime)?;
    let digest = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Fingerprint { digest, newest_ctime })
}

fn walk(root: &Path, relative: &Path, hasher: &mut Sha256, newest_ctime: &mut (i64, i64)) -> io::Result<()> {
    // `join` of an empty path would add a trailing slash, which a file's path must not have.
    let path = if relative.as_os_str().is_empty() { root.to_path_buf() } else { root.join(relative) };
    let meta = fs::symlink_metadata(&path)?;
    let name = relative.as_os_str().as_bytes();
    // Length-prefixed, so that no two trees serialize alike.
    hasher.update((name.len() as u64).to_le_bytes());
    hasher.update(name);
    for field in [meta.dev(), meta.ino(), u64::from(meta.mode()), meta.size()] {
        hasher.update(field.to_le_bytes());
    }
    for field in [meta.mtime(), meta.mtime_nsec(), meta.ctime(), meta.ctime_nsec()] {
        hasher.update(field.to_le_bytes());
    }
    *newest_ctime = (*newest_ctime).max((meta.ctime(), meta.ctime_nsec()));
    if meta.is_dir() {
        let mut children: Vec<_> = fs::read_dir(&path)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
        children.sort();
        hasher.update((children.len() as u64).to_le_bytes());
        for child in children {
            walk(root, &relative.join(child), hasher, newest_ctime)?;
        }
    }
    Ok(())
}

/// True when `destination` holds the plaintext of `identity` untouched since the marker was written after
/// a successful decrypt.
pub(crate) fn is_current(destination: &Path, identity: &Identity, is_directory: bool) -> bool {
    let Some(text) = read_marker(&marker_path(destination)) else { return false };
    let mut lines = text.lines();
    if lines.next() != Some(MARKER_VERSION) || lines.next() != Some(identity.0.as_str()) {
        return false;
    }
    let (Some(len), Some(recorded)) = (lines.next().and_then(|l| l.parse::<u64>().ok()), lines.next()) else {
        return false;
    };
    let shape_matches = match fs::symlink_metadata(destination) {
        Ok(m) if is_directory => m.is_dir(),
        Ok(m) => m.is_file() && m.len() == len,
        Err(_) => false,
    };
    shape_matches && fingerprint(destination).is_ok_and(|now| now.digest == recorded)
}

/// The marker's text, if it is a regular file of this user's (a FIFO or a link planted under its name is
/// neither opened through nor waited on).
fn read_marker(path: &Path) -> Option<String> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = fs::File::from(rustix::fs::open(path, flags, Mode::empty()).ok()?);
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.uid() != rustix::process::geteuid().as_raw() || meta.len() > 4096 {
        return None;
    }
    let mut text = String::new();
    file.take(4096).read_to_string(&mut text).ok()?;
    Some(text)
}

/// How long `record` waits, at most, for the file system's clock to pass the destination's last change
/// (a clock tick is a few milliseconds at worst).
const CLOCK_WAIT: Duration = Duration::from_secs(2);

/// Records that `destination` now holds the plaintext of `identity`. Written after the destination, so a
/// marker never vouches for a file that is not complete. Without a marker (the clock did not move) the
/// next start decrypts again, which is safe.
pub(crate) fn record(destination: &Path, identity: &Identity, plaintext_len: u64) -> Result<()> {
    let print = fingerprint(destination)?;
    let mut pending = PendingFile::create(&marker_path(destination), true)?;
    let text = marker_text(identity, plaintext_len, &print.digest);
    let started = std::time::Instant::now();
    loop {
        // Each write stamps the marker with the file system's "now" (same file system as the destination).
        pending.file().write_all(text.as_bytes())?;
        let marker = pending.file().metadata()?;
        if (marker.ctime(), marker.ctime_nsec()) > print.newest_ctime {
            break;
        }
        if started.elapsed() > CLOCK_WAIT {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
        pending.file().set_len(0)?;
        io::Seek::rewind(pending.file())?;
    }
    pending.commit(false, true)
}

/// Forgets the marker before a destination is replaced, so a crash in between never leaves a stale one.
pub(crate) fn forget(destination: &Path) {
    let _ = fs::remove_file(marker_path(destination));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_same_length_edit_chmod_or_new_entry_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"abcdef").unwrap();
        let identity = Identity("message 01".into());
        record(&file, &identity, 6).unwrap();
        assert!(is_current(&file, &identity, false));
        assert!(!is_current(&file, &Identity("message 02".into()), false));
        // Same length, in place, right after the marker: the marker's ctime is past the file's, so this
        // write's ctime differs whatever the clock's granularity.
        fs::OpenOptions::new().write(true).open(&file).unwrap().write_all(b"abcdeF").unwrap();
        assert!(!is_current(&file, &identity, false));

        let tree = dir.path().join("t");
        fs::create_dir_all(tree.join("nested")).unwrap();
        fs::write(tree.join("nested/a"), b"1234").unwrap();
        record(&tree, &identity, 0).unwrap();
        assert!(is_current(&tree, &identity, true));
        fs::OpenOptions::new().write(true).open(tree.join("nested/a")).unwrap().write_all(b"1235").unwrap();
        assert!(!is_current(&tree, &identity, true));
        record(&tree, &identity, 0).unwrap();
        fs::write(tree.join("nested/new"), b"").unwrap();
        assert!(!is_current(&tree, &identity, true));
        record(&tree, &identity, 0).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tree.join("nested/a"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!is_current(&tree, &identity, true));
    }
}
