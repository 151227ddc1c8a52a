//! `--recursive` over S3: `s3://BUCKET/PREFIX/` names every object whose key starts with `PREFIX/`, and
//! each maps to the same relative key under another prefix. [`super::location`] parses and refuses the
//! names; this is what a run does with them.

use std::fmt;

use super::location::{S3Url, shown_s3};

/// A bucket and a key prefix that is empty (`s3://BUCKET/`, the whole bucket) or ends in `/`
/// (`s3://BUCKET/PREFIX/`): made only by [`super::location::S3Name::prefix`], which refuses the rest.
#[derive(Debug, PartialEq, Eq)]
pub struct S3Prefix {
    bucket: String,
    prefix: String,
}

impl S3Prefix {
    /// `bucket` and `prefix`, already checked by [`super::location::S3Name::prefix`].
    pub(super) fn new(bucket: &str, prefix: &str) -> Self {
        Self { bucket: bucket.to_owned(), prefix: prefix.to_owned() }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether an object of one prefix may lie under the other: the same bucket, and one prefix starts
    /// the other (both end in `/`, so this is one tree inside the other, or the same).
    pub fn overlaps(&self, other: &S3Prefix) -> bool {
        self.bucket == other.bucket
            && (self.prefix.starts_with(&other.prefix) || other.prefix.starts_with(&self.prefix))
    }

    /// The key under this prefix for the object `key` listed under `from`: this prefix followed by what
    /// follows `from`'s. `None` if `key` does not start with `from`'s prefix (a listing that returned a key
    /// it was not asked for) or the result would be no key at all. S3 keys are plain strings (`..`, `//`
    /// and a leading `/` are bytes like any other, never a path), so the result always starts with this
    /// prefix.
    pub fn target_key(&self, from: &S3Prefix, key: &str) -> Option<String> {
        let relative = key.strip_prefix(from.prefix.as_str())?;
        let target = format!("{}{relative}", self.prefix);
        (!target.is_empty()).then_some(target)
    }

    /// The object `key` of this bucket, as the S3 functions take it (taken as listed: see [`S3Url::listed`]).
    pub fn url(&self, key: &str) -> S3Url {
        S3Url::listed(&self.bucket, key)
    }

    /// The object `key` of this bucket, for display: bucket and key escaped.
    pub fn shown(&self, key: &str) -> String {
        shown_s3(&self.bucket, key)
    }
}

impl fmt::Display for S3Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shown_s3(&self.bucket, &self.prefix))
    }
}
