//! Warm reuse: a small marker beside each destination records which message produced it, so a warm start
//! (same execution environment, same `/tmp`) skips the KMS call and the decryption.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::stream::file::PendingFile;

/// The marker of `destination`: a hidden 0600 file beside it.
pub(crate) fn marker_path(destination: &Path) -> PathBuf {
    let name = destination.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    destination.with_file_name(format!(".{name}.kms-envelope"))
}

/// What identifies a bundle's content: the message id for files, the object version for S3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity(pub String);

fn marker_text(identity: &Identity, plaintext_len: u64) -> String {
    format!("kms-envelope marker v1\n{}\n{plaintext_len}\n", identity.0)
}

/// True when `destination` holds the plaintext of `identity`, as the marker written after a successful
/// decrypt records.
pub(crate) fn is_current(destination: &Path, identity: &Identity, is_directory: bool) -> bool {
    let Ok(text) = fs::read_to_string(marker_path(destination)) else { return false };
    let mut lines = text.lines();
    if lines.next() != Some("kms-envelope marker v1") || lines.next() != Some(identity.0.as_str()) {
        return false;
    }
    let Some(len) = lines.next().and_then(|l| l.parse::<u64>().ok()) else { return false };
    match fs::symlink_metadata(destination) {
        Ok(m) if is_directory => m.is_dir(),
        Ok(m) => m.is_file() && m.len() == len,
        Err(_) => false,
    }
}

/// Records that `destination` now holds the plaintext of `identity`. Written after the destination, so a
/// marker never vouches for a file that is not complete.
pub(crate) fn record(destination: &Path, identity: &Identity, plaintext_len: u64) -> Result<()> {
    let mut pending = PendingFile::create(&marker_path(destination), true)?;
    pending.file().write_all(marker_text(identity, plaintext_len).as_bytes())?;
    pending.commit(false, true)
}

/// Forgets the marker before a destination is replaced, so a crash in between never leaves a stale one.
pub(crate) fn forget(destination: &Path) {
    let _ = fs::remove_file(marker_path(destination));
}
