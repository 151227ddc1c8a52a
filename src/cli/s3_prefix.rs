//! `--recursive` over S3: `s3://BUCKET/PREFIX/` names every object whose key starts with `PREFIX/`, and
//! each maps to the same relative key under another prefix.

use std::fmt;

use kms_envelope::escape::Escaped;

use super::exit::Failure;

/// A bucket and a key prefix that is empty (`s3://BUCKET/`, the whole bucket) or ends in `/`
/// (`s3://BUCKET/PREFIX/`). A prefix without its slash is refused: as S3 compares strings, `s3://b/logs`
/// would also take `logs-old/...` and `logs.txt`, and `logs` + `a` would make `logsa` at the target.
#[derive(Debug, PartialEq, Eq)]
pub struct S3Prefix {
    bucket: String,
    prefix: String,
}

impl S3Prefix {
    /// Parses `url`, which `what` (INPUT or OUTPUT) gave.
    pub fn parse(url: &str, what: &str) -> Result<Self, Failure> {
        let refused = |why: &str| {
            Failure::usage(format!(
                "{}: {why}; with --recursive, {what} is s3://BUCKET/PREFIX/ (the objects whose keys start with \
                 PREFIX/) or s3://BUCKET/ (the whole bucket)",
                Escaped(url)
            ))
        };
        let rest = url.strip_prefix("s3://").ok_or_else(|| refused("not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').ok_or_else(|| refused("no / after the bucket"))?;
        if bucket.is_empty() {
            return Err(refused("no bucket"));
        }
        if bucket.contains(':') {
            return Err(refused(
                "an access-point ARN cannot stand in the bucket position; give the access point's alias",
            ));
        }
        if !prefix.is_empty() && !prefix.ends_with('/') {
            return Err(refused("the prefix does not end in /"));
        }
        if let Some(why) = super::io::refused_in_url(prefix, true) {
            return Err(refused(&why.replace("the key", "the prefix")));
        }
        Ok(Self { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
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

    /// `s3://BUCKET/KEY` for the object `key` of this bucket, as the S3 functions take it (unescaped:
    /// never for display).
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// The object `key` of this bucket, for display: bucket and key through [`Escaped`].
    pub fn shown(&self, key: &str) -> String {
        format!("s3://{}/{}", Escaped(&self.bucket), Escaped(key))
    }
}

impl fmt::Display for S3Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", Escaped(&self.bucket), Escaped(&self.prefix))
    }
}

/// INPUT's prefix and the target's (INPUT's own in place), with every refusal of the pair: a prefix
/// without its slash, and a target prefix that overlaps INPUT's in the same bucket (the listing would meet
/// the run's own outputs, or an output would replace another source).
pub fn pair(input: &str, output: Option<&str>) -> Result<(S3Prefix, Option<S3Prefix>), Failure> {
    let from = S3Prefix::parse(input, "INPUT")?;
    let Some(output) = output else { return Ok((from, None)) };
    let to = S3Prefix::parse(output, "OUTPUT")?;
    if to.overlaps(&from) {
        return Err(Failure::usage(format!(
            "{to} and {from} overlap: the listing of one would meet the objects written to the other; use \
             --in-place to replace the objects where they are, or a prefix outside INPUT's"
        )));
    }
    Ok((from, Some(to)))
}
