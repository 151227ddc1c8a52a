//! Failing early when the destination filesystem cannot hold the plaintext.

use std::io;
use std::path::Path;

use crate::error::{Error, Result};

/// Fails unless the filesystem holding `dir` has at least `needed` bytes available to this user. The
/// ciphertext length bounds the plaintext length, so callers pass it as `needed`.
pub(crate) fn ensure_space(dir: &Path, needed: u64) -> Result<()> {
    let stat = rustix::fs::statvfs(dir).map_err(|e| Error::Io(io::Error::from(e)))?;
    let available = stat.f_bavail.saturating_mul(stat.f_frsize);
    if available < needed {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "{} has {} MiB free but the bundle needs up to {} MiB; raise the function's ephemeral \
                 storage (Lambda's /tmp: 512 MB by default, up to 10,240 MB)",
                dir.display(),
                available >> 20,
                needed.div_ceil(1 << 20)
            ),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_more_than_the_disk_has_and_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        ensure_space(dir.path(), 1).unwrap();
        let err = ensure_space(dir.path(), u64::MAX).unwrap_err();
        assert!(err.to_string().contains("ephemeral storage"), "{err}");
    }
}
