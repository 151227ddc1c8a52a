//! Where a bundle comes from: a file in the function package or a layer, or an S3 object.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A bundle's source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file. Relative paths are looked up under `LAMBDA_TASK_ROOT` (the package, `/var/task`), then `/opt`
    /// (layers).
    Path(PathBuf),
    /// An S3 object, streamed with GetObject (feature `s3`).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
    },
}

impl Source {
    /// Parses `s3://bucket/key` or a path.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `text` is empty, or starts with `s3://` but is not `s3://bucket/key` with a
    /// non-empty bucket and key.
    pub fn parse(text: &str) -> Result<Self> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, key) = rest
                .split_once('/')
                .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                .ok_or_else(|| Error::Config(format!("S3 source {text:?} is not s3://bucket/key")))?;
            return Ok(Source::S3 { bucket: bucket.into(), key: key.into() });
        }
        if text.is_empty() {
            return Err(Error::Config("empty bundle source".into()));
        }
        Ok(Source::Path(PathBuf::from(text)))
    }

    /// A one-line description for logs and errors.
    pub fn describe(&self) -> String {
        match self {
            Source::Path(p) => p.display().to_string(),
            Source::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Finds a file source: absolute as given; relative under `task_root`, then under `/opt`.
pub(crate) fn resolve_path(path: &Path, task_root: Option<&Path>) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let candidates: Vec<PathBuf> =
        task_root.into_iter().map(|root| root.join(path)).chain([Path::new("/opt").join(path)]).collect();
    candidates.iter().find(|c| c.is_file()).cloned().ok_or_else(|| {
        let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
        Error::Io(io::Error::new(
            io::ErrorKind::NotFound,
            format!("bundle {} not found (tried {})", path.display(), tried.join(", ")),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_urls_and_paths() {
        assert_eq!(
            Source::parse("s3://b/dir/k.esdk").unwrap(),
            Source::S3 { bucket: "b".into(), key: "dir/k.esdk".into() }
        );
        assert!(Source::parse("s3://bucket-only").is_err());
        assert!(Source::parse("s3:///k").is_err());
        assert_eq!(Source::parse("certs.esdk").unwrap(), Source::Path("certs.esdk".into()));
    }

    #[test]
    fn relative_paths_prefer_the_task_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("b.esdk"), b"x").unwrap();
        assert_eq!(resolve_path(Path::new("b.esdk"), Some(root.path())).unwrap(), root.path().join("b.esdk"));
        let err = resolve_path(Path::new("missing.esdk"), Some(root.path())).unwrap_err();
        assert!(err.to_string().contains("/opt/missing.esdk"), "{err}");
    }
}
