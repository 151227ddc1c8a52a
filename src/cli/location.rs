//! What an INPUT or OUTPUT positional names, decided once, by clap, and the refusals of an (input, output)
//! pair, in one place: no code below compares an argument with `"-"` or looks for `s3://` again.
//!
//! Parsing is two steps, as ripgrep's low-level then high-level arguments: clap turns each positional into a
//! [`Location`] (which never fails: what is refused is refused by the same messages and exit codes as
//! before, after parsing, in the order the checks have always run; an `s3://` name is parsed then, into an
//! [`S3Url`] or the reason it names no object), then [`check_names`] (encrypt, decrypt) or
//! [`check_reencrypt`] validates the `s3://` names and refuses the pairs no subcommand takes before anything
//! is read, and [`check_destination`] refuses, once the input is open, an output that would destroy
//! something. Below this, files are opened and objects requested by [`Location`] and [`S3Url`], not by name.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::path::{Path, PathBuf};

use kms_envelope::escape::{Escaped, escaped};

use super::args::KeyArgs;
use super::exit::Failure;
use super::io;
use super::s3_prefix::S3Prefix;

/// The prefix that makes a positional an S3 object rather than a local path.
const S3_PREFIX: &str = "s3://";

/// The positional that names standard input or output.
const STDIO: &str = "-";

/// An INPUT or OUTPUT as the command line gave it: standard input or output, a local path, or an S3 object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `-`: stdin as an input, stdout as an output.
    Stdio,
    /// A local path (a file, or a directory with `--recursive`).
    File(PathBuf),
    /// An `s3://` name, parsed as an object when clap read it; [`check_names`] refuses it (see
    /// [`S3Name::url`]) before anything is read, and a build without the `s3` feature refuses it there by name.
    S3(S3Name),
}

/// An `s3://...` positional: the name as typed, never taken for a local path, and what it parsed to as an
/// object ([`S3Url`]) or why it names none. With `--recursive` the same name is read as a prefix instead
/// ([`Self::prefix`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Name {
    text: String,
    object: Result<S3Url, S3UrlError>,
}

impl S3Name {
    fn parse(text: &str) -> Self {
        Self { text: text.to_owned(), object: S3Url::parse(text) }
    }

    /// The name as typed, `s3://` included (shown only escaped).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The object this names; refused (exit 2, before any key is used) if it is not `s3://BUCKET/KEY` or
    /// holds what this CLI refuses in a key (see [`S3UrlError`]), and in a build without S3 whatever it holds.
    pub fn url(&self) -> Result<&S3Url, Failure> {
        if !cfg!(feature = "s3") {
            return Err(super::features::missing("s3", &self.text));
        }
        self.object.as_ref().map_err(|why| why.refusal(&self.text))
    }

    /// [`Self::url`] for its refusal alone.
    pub fn check(&self) -> Result<(), Failure> {
        self.url().map(drop)
    }

    /// This name as `--recursive` takes it, `s3://BUCKET/PREFIX/` or `s3://BUCKET/`, given as `what` (INPUT
    /// or OUTPUT). A prefix without its slash is refused: as S3 compares strings, `s3://b/logs` would also
    /// take `logs-old/...` and `logs.txt`, and `logs` + `a` would make `logsa` at the target.
    pub fn prefix(&self, what: &str) -> Result<S3Prefix, Failure> {
        if !cfg!(feature = "s3") {
            return Err(super::features::missing("s3", &self.text));
        }
        let url = &self.text;
        let refused = |why: &str| {
            Failure::usage(format!(
                "{}: {why}; with --recursive, {what} is s3://BUCKET/PREFIX/ (the objects whose keys start with \
                 PREFIX/) or s3://BUCKET/ (the whole bucket)",
                Escaped(url)
            ))
        };
        let rest = url.strip_prefix(S3_PREFIX).ok_or_else(|| refused("not an s3:// URL"))?;
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
        if let Some(slip) = KeySlip::of(prefix, true) {
            return Err(refused(&slip.reason().replace("the key", "the prefix")));
        }
        Ok(S3Prefix::new(bucket, prefix))
    }
}

impl From<S3Url> for S3Name {
    fn from(url: S3Url) -> Self {
        Self { text: url.text.clone(), object: Ok(url) }
    }
}

/// An S3 object, `s3://BUCKET/KEY`: a bucket (not empty, no `:`, so no access-point ARN, whose own `/`
/// would be taken for the start of the key) and a key (not empty). Built only by [`Self::parse`], which also
/// refuses the likely slips of a key typed on the command line (see [`KeySlip`]), or for a key a listing
/// returned ([`Self::listed`]), which is taken as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    /// `s3://BUCKET/KEY`, as typed or listed.
    text: String,
    /// Where the bucket ends in `text` (the `/` before the key).
    bucket_end: usize,
}

/// Why an `s3://` name is not an object this CLI reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3UrlError {
    /// It does not start with `s3://`.
    NotS3,
    /// An access-point ARN stands in the bucket position: its own `/` would be taken for the start of the key.
    AccessPointArn,
    /// Not `s3://BUCKET/KEY`: no `/` after the bucket, an empty bucket or key, or a `:` in the bucket.
    NotAnObject,
    /// A key that S3 takes but is almost always a slip.
    Key(KeySlip),
}

/// What is refused in a key (or a `--recursive` prefix) typed on the command line. S3 keys are strings, not
/// paths: `s3://b/logs/../k` names the key `logs/../k`, not `k`, and `s3://b/a//k` the key `a//k`; such keys
/// are legal but almost always a slip, and tools that map keys to paths (`aws s3 sync` to a directory,
/// consoles) resolve them elsewhere. Keys a listing returns (the objects of `reencrypt -r`) are taken as they
/// are: they exist, and a rotation must not skip them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySlip {
    /// A `.` or `..` segment.
    DotSegment,
    /// An object's key that ends in `/` (a prefix ends so).
    TrailingSlash,
    /// An empty segment: a leading `/` or `//`.
    EmptySegment,
}

impl KeySlip {
    /// The slip in `key`, if any; a `prefix` ends in `/` (or is empty: the whole bucket), and its last,
    /// empty segment is not a slip.
    fn of(key: &str, prefix: bool) -> Option<Self> {
        let key = if prefix { key.strip_suffix('/').unwrap_or(key) } else { key };
        if prefix && key.is_empty() {
            return None;
        }
        let segments = || key.split('/');
        if segments().any(|segment| segment == "." || segment == "..") {
            Some(Self::DotSegment)
        } else if !prefix && key.ends_with('/') {
            Some(Self::TrailingSlash)
        } else if segments().any(str::is_empty) {
            Some(Self::EmptySegment)
        } else {
            None
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Self::DotSegment => {
                "the key has a . or .. segment, which S3 keeps as it is (keys are strings, not paths: this is not \
                 the key it seems to name); refused as a likely mistake"
            }
            Self::TrailingSlash => "the key ends in /; name the object's whole key (s3://BUCKET/DIR/NAME)",
            Self::EmptySegment => {
                "the key has an empty segment (a leading / or //), which S3 keeps as it is; refused as a likely \
                 mistake"
            }
        }
    }
}

impl S3UrlError {
    /// The refusal (exit 2) of the name `text`, shown escaped.
    fn refusal(self, text: &str) -> Failure {
        let shown = Escaped(text);
        Failure::usage(match self {
            Self::AccessPointArn => format!(
                "{shown}: an access-point ARN cannot stand in the bucket position (its own / would be taken for the \
                 start of the key); give the access point's alias (NAME-...-s3alias), which S3 takes wherever a \
                 bucket name goes"
            ),
            Self::NotS3 | Self::NotAnObject => format!("{shown} is not s3://BUCKET/KEY"),
            Self::Key(slip) => format!("{shown}: {}", slip.reason()),
        })
    }
}

impl S3Url {
    /// Parses `text`, typed on the command line, as `s3://BUCKET/KEY`, refusing a key's likely slips.
    pub fn parse(text: &str) -> Result<Self, S3UrlError> {
        let rest = text.strip_prefix(S3_PREFIX).ok_or(S3UrlError::NotS3)?;
        if rest.starts_with("arn:") {
            return Err(S3UrlError::AccessPointArn);
        }
        let (bucket, key) = rest.split_once('/').ok_or(S3UrlError::NotAnObject)?;
        if bucket.is_empty() || bucket.contains(':') || key.is_empty() {
            return Err(S3UrlError::NotAnObject);
        }
        if let Some(slip) = KeySlip::of(key, false) {
            return Err(S3UrlError::Key(slip));
        }
        Ok(Self { text: text.to_owned(), bucket_end: S3_PREFIX.len() + bucket.len() })
    }

    /// The object `key` of `bucket` as a listing returned it: taken as it is (see [`KeySlip`]).
    pub fn listed(bucket: &str, key: &str) -> Self {
        Self { text: format!("{S3_PREFIX}{bucket}/{key}"), bucket_end: S3_PREFIX.len() + bucket.len() }
    }

    /// The bucket, or an access point's alias.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub fn bucket(&self) -> &str {
        &self.text[S3_PREFIX.len()..self.bucket_end]
    }

    /// The object's key.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub fn key(&self) -> &str {
        &self.text[self.bucket_end + 1..]
    }

    /// `s3://BUCKET/KEY`, unescaped: for requests and names, shown only through [`Escaped`] (as `Display` does).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Escaped: whoever writes a bucket chooses its keys.
impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Escaped(&self.text).fmt(f)
    }
}

/// `s3://BUCKET/KEY` (or a prefix) for display: bucket and key escaped.
pub fn shown_s3(bucket: &str, key: &str) -> String {
    format!("{S3_PREFIX}{}/{}", Escaped(bucket), Escaped(key))
}

impl Location {
    /// clap's value parser for INPUT and OUTPUT: `-`, `s3://...`, or else a local path. Never fails: an
    /// `s3://` name is refused after parsing, by [`check_names`], with this CLI's own messages and in the
    /// order they have always come.
    pub fn parse(arg: &str) -> Result<Self, Infallible> {
        Ok(if arg == STDIO {
            Self::Stdio
        } else if arg.starts_with(S3_PREFIX) {
            Self::S3(S3Name::parse(arg))
        } else {
            Self::File(PathBuf::from(arg))
        })
    }

    /// The argument as given (`-` for stdio): the name the messages use.
    pub fn arg(&self) -> Cow<'_, str> {
        match self {
            Self::Stdio => Cow::Borrowed(STDIO),
            // Made from a `str` by `parse`: the conversion is lossless.
            Self::File(path) => path.to_string_lossy(),
            Self::S3(name) => Cow::Borrowed(name.as_str()),
        }
    }

    /// The local path, `-` for stdio, for `--recursive`, which walks local trees only (see [`check_names`]).
    pub fn path(&self) -> &Path {
        match self {
            Self::Stdio => Path::new(STDIO),
            Self::File(path) => path,
            Self::S3(name) => Path::new(name.as_str()),
        }
    }

    /// Refuses an `s3://` name that does not name an object (see [`S3Name::url`]); anything else passes.
    pub fn check_object(&self) -> Result<(), Failure> {
        match self {
            Self::S3(name) => name.check(),
            Self::Stdio | Self::File(_) => Ok(()),
        }
    }

    /// The local path, if this is one (not stdio, not S3).
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Stdio | Self::S3(_) => None,
        }
    }

    /// Whether this is an `s3://` name.
    pub fn is_s3(&self) -> bool {
        matches!(self, Self::S3(_))
    }
}

impl From<S3Url> for Location {
    fn from(url: S3Url) -> Self {
        Self::S3(url.into())
    }
}

/// Refuses an `s3://` name where only a local path is taken (a bundle's DIRECTORY, a key file), which would
/// otherwise be taken for the relative path `s3:/BUCKET/...`; `what` names the argument.
pub fn check_local(path: &Path, what: &str) -> Result<(), Failure> {
    match path.to_str().filter(|name| name.starts_with(S3_PREFIX)) {
        Some(name) => Err(Failure::usage(format!(
            "{what} {}: must be a local path; S3 objects are not read or written there",
            escaped(name)
        ))),
        None => Ok(()),
    }
}

/// What a subcommand makes of its (input, output) pair: the rules [`check_names`] and
/// [`check_destination`] apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pair {
    /// `encrypt`: plaintext in, a message out; `armor` writes base64 text, which has no S3 form.
    Encrypt { armor: bool, recursive: bool },
    /// `decrypt`: a message in, plaintext out, which never goes to S3.
    Decrypt { recursive: bool },
}

impl Pair {
    fn recursive(self) -> bool {
        match self {
            Self::Encrypt { recursive, .. } | Self::Decrypt { recursive } => recursive,
        }
    }
}

/// Every refusal of the pair (`input`, `output`) that needs nothing opened, in the order the CLI has always
/// reported them: an `s3://` name that is not an object (or S3 not built in), then `--armor` to S3,
/// `--recursive` with an `s3://` name, and plaintext to S3.
pub fn check_names(pair: Pair, input: &Location, output: &Location) -> Result<(), Failure> {
    // Decrypt's S3 OUTPUT is refused below by what it is, whatever its name holds.
    let objects = match pair {
        Pair::Encrypt { recursive: false, .. } => [Some(input), Some(output)],
        Pair::Decrypt { recursive: false } => [Some(input), None],
        Pair::Encrypt { recursive: true, .. } | Pair::Decrypt { recursive: true } => [None, None],
    };
    objects.into_iter().flatten().try_for_each(Location::check_object)?;
    match (pair, output) {
        (Pair::Encrypt { armor: true, recursive: false }, Location::S3(name)) => {
            return Err(Failure::usage(format!(
                "{}: --armor writes text to a file or stdout; an S3 object holds the binary message",
                escaped(name.as_str())
            )));
        }
        _ if pair.recursive() => {
            if let Some(name) = [input, output].into_iter().find(|location| location.is_s3()) {
                return Err(Failure::usage(format!(
                    "--recursive works on local directories, not on {}: encrypt or decrypt one object at a time",
                    escaped(&name.arg())
                )));
            }
        }
        (Pair::Decrypt { .. }, Location::S3(name)) => {
            return Err(Failure::usage(format!(
                "{}: decrypt writes a file or - (stdout), not an S3 object",
                escaped(name.as_str())
            )));
        }
        _ => {}
    }
    Ok(())
}

/// What `reencrypt` goes from and to, once its (INPUT, OUTPUT) names passed every refusal that needs nothing
/// opened ([`check_reencrypt`]).
#[derive(Debug)]
pub enum Reencryption<'a> {
    /// Files, stdin or stdout (directories with `--recursive`): INPUT into OUTPUT, which is INPUT itself in
    /// place (and with `--dry-run` and no OUTPUT, where nothing is written).
    Local { input: &'a Location, output: &'a Location },
    /// An S3 object into another, or into itself in place.
    Object { input: &'a S3Url, output: &'a S3Url },
    /// With `--recursive`, each object under INPUT's prefix into the same relative key under OUTPUT's, or
    /// in place (`to` is `None`).
    Prefixes { from: S3Prefix, to: Option<S3Prefix> },
}

/// Every refusal of `reencrypt`'s (`input`, `output`) pair that needs nothing opened, in this order: an
/// `s3://` name that is not an object (or S3 not built in; with `--recursive` names are prefixes, checked
/// below), stdin in place or with `--recursive`, S3 at one end only, a prefix that is not one or a target
/// prefix that overlaps INPUT's (the listing would meet the run's own outputs, or an output would replace
/// another source), and an S3 OUTPUT that is INPUT without `--in-place`. `output` is `None` in place (and
/// for `--dry-run` without OUTPUT).
pub fn check_reencrypt<'a>(
    input: &'a Location,
    output: Option<&'a Location>,
    in_place: bool,
    recursive: bool,
) -> Result<Reencryption<'a>, Failure> {
    if !recursive {
        [Some(input), output].into_iter().flatten().try_for_each(Location::check_object)?;
    }
    if *input == Location::Stdio && (in_place || recursive) {
        return Err(Failure::usage("INPUT - (stdin) cannot be re-encrypted in place or with --recursive".into()));
    }
    let target = output.unwrap_or(input);
    match (input, target) {
        (Location::S3(from), Location::S3(to)) if recursive => {
            let from_prefix = from.prefix("INPUT")?;
            if output.is_none() {
                return Ok(Reencryption::Prefixes { from: from_prefix, to: None });
            }
            let to_prefix = to.prefix("OUTPUT")?;
            if to_prefix.overlaps(&from_prefix) {
                return Err(Failure::usage(format!(
                    "{to_prefix} and {from_prefix} overlap: the listing of one would meet the objects written to \
                     the other; use --in-place to replace the objects where they are, or a prefix outside INPUT's"
                )));
            }
            Ok(Reencryption::Prefixes { from: from_prefix, to: Some(to_prefix) })
        }
        (Location::S3(from), Location::S3(to)) => {
            let (from, to) = (from.url()?, to.url()?);
            if output.is_some() && from == to {
                return Err(Failure::usage(format!("{to}: is INPUT; to replace it, use --in-place without OUTPUT")));
            }
            Ok(Reencryption::Object { input: from, output: to })
        }
        (Location::S3(_), _) | (_, Location::S3(_)) => Err(s3_at_one_end()),
        _ => Ok(Reencryption::Local { input, output: target }),
    }
}

/// The refusal of `reencrypt` between S3 and a file or stdio.
pub fn s3_at_one_end() -> Failure {
    Failure::usage(
        "reencrypt goes from an S3 object to an S3 object (s3://BUCKET/KEY, or --in-place), or with --recursive \
         from a prefix to a prefix (s3://BUCKET/PREFIX/), not between S3 and files"
            .into(),
    )
}

/// Where what is written to OUTPUT comes from, for the refusals that depend on it.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// INPUT, opened: stdout must not be the file it is.
    Opened(&'a Location, &'a io::Input),
    /// INPUT, read only later (an S3 object read by ranges), never stdout's file.
    Later,
    /// The file INPUT, opened only later (`reencrypt` file to file): OUTPUT must not be it.
    Unopened(&'a Path),
    /// A directory being packed: stdout must not be a file inside it.
    Directory(&'a Path),
}

/// What is written to OUTPUT, for the refusals that depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// A binary message: never to a terminal without `--force`.
    Message,
    /// Text a terminal shows as it is (base64 armor) or plaintext.
    Text,
}

/// Every refusal of OUTPUT once the input is open, before any key is used: stdout that is a terminal (for a
/// binary message), the input file, a file inside the directory bundled, or a key file of any of `keys`
/// (`reencrypt` has two sets); an OUTPUT file that is INPUT (see [`Source::Unopened`]) or a key file, an
/// existing S3 object or file without `--force` (a directory or symbolic link never).
pub fn check_destination(
    output: &Location,
    written: Written,
    source: Source<'_>,
    keys: &[&KeyArgs],
    force: bool,
) -> Result<(), Failure> {
    match output {
        Location::Stdio => {
            if written == Written::Message {
                io::check_message_stdout(force)?;
            }
            match source {
                Source::Opened(location, input) => io::check_stdout_is_not_input(location, input)?,
                Source::Directory(dir) => io::check_stdout_is_outside(dir)?,
                Source::Later | Source::Unopened(_) => {}
            }
            keys.iter().try_for_each(|keys| io::check_stdout_is_not_a_key_file(keys))
        }
        Location::S3(name) => io::check_s3_absent(name.url()?, force),
        Location::File(path) => {
            if let Source::Unopened(input) = source
                && same_file(input, path)
            {
                return Err(Failure::usage(format!(
                    "{}: is INPUT; to replace it, use --in-place without OUTPUT",
                    path.display()
                )));
            }
            io::check_output_is_not_a_key_file(keys.iter().flat_map(|keys| keys.files()), path)?;
            io::check_output(path, force)
        }
    }
}

/// Whether two paths name one existing file (the same device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        a == b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(arg: &str) -> Location {
        Location::parse(arg).unwrap_or_else(|never| match never {})
    }

    /// The key flags of `encrypt ARGS... in out`, as clap parses them.
    fn keys(args: &[&str]) -> KeyArgs {
        use clap::Parser;
        let line = ["kms-envelope", "encrypt"].iter().chain(args).chain(&["in", "out"]);
        match super::super::args::Cli::try_parse_from(line).expect("parses").command {
            super::super::args::Command::Encrypt(a) => a.keys,
            _ => unreachable!("parsed as encrypt"),
        }
    }

    fn refusal(result: Result<(), Failure>) -> String {
        result.expect_err("refused").to_string()
    }

    #[test]
    fn positionals_parse_into_their_kind_and_keep_their_text() {
        assert_eq!(at("-"), Location::Stdio);
        assert_eq!(at("./-"), Location::File(PathBuf::from("./-")));
        assert_eq!(at("s3:/b/k"), Location::File(PathBuf::from("s3:/b/k")));
        assert_eq!(at("S3://b/k"), Location::File(PathBuf::from("S3://b/k")));
        assert_eq!(at("s3://b/k"), Location::S3(S3Name::parse("s3://b/k")));
        for arg in ["-", "a/b", "s3://b/k", ""] {
            assert_eq!(at(arg).arg(), arg);
        }
    }

    #[test]
    fn only_an_s3_name_is_checked_as_an_object() {
        assert!(at("-").check_object().is_ok());
        assert!(at("dir/").check_object().is_ok());
        assert!(at("s3:/b/k").check_object().is_ok());
        let why = refusal(at("s3://b/dir/").check_object());
        assert!(why.starts_with("s3://b/dir/: "), "{why}");
    }

    #[test]
    fn recursive_refuses_s3_on_either_side() {
        for (input, output) in [("s3://b/k", "out"), ("in", "s3://b/p/")] {
            for pair in [Pair::Encrypt { armor: false, recursive: true }, Pair::Decrypt { recursive: true }] {
                let why = refusal(check_names(pair, &at(input), &at(output)));
                assert!(why.contains("--recursive works on local directories, not on s3://b/"), "{why}");
            }
        }
        let local = check_names(Pair::Decrypt { recursive: true }, &at("in"), &at("out"));
        assert!(local.is_ok());
    }

    #[test]
    fn decrypt_refuses_an_s3_output_whatever_its_name() {
        for output in ["s3://b/k", "s3://b/k/", "s3://b"] {
            let why = refusal(check_names(Pair::Decrypt { recursive: false }, &at("in"), &at(output)));
            assert_eq!(why, format!("{output}: decrypt writes a file or - (stdout), not an S3 object"));
        }
    }

    #[test]
    fn encrypt_refuses_armor_to_s3_and_bad_object_names() {
        let pair = Pair::Encrypt { armor: true, recursive: false };
        let why = refusal(check_names(pair, &at("in"), &at("s3://b/k")));
        // A build without S3 refuses the name first, as it always has.
        let refused = if cfg!(feature = "s3") { "--armor writes text to a file or stdout" } else { "`s3` feature" };
        assert!(why.contains(refused), "{why}");
        assert!(check_names(pair, &at("in"), &at("-")).is_ok());
        let plain = Pair::Encrypt { armor: false, recursive: false };
        // Without S3 every s3:// name is refused by the feature it needs; with it, a key ending in / is.
        let why = refusal(check_names(plain, &at("s3://b/dir/"), &at("out")));
        assert!(why.starts_with("s3://b/dir/: "), "{why}");
        let why = refusal(check_names(plain, &at("in"), &at("s3://b/a/../k")));
        assert!(why.starts_with("s3://b/a/../k: "), "{why}");
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_names_are_checked_as_objects() {
        let plain = Pair::Encrypt { armor: false, recursive: false };
        assert!(check_names(plain, &at("s3://b/k"), &at("s3://b/dir/k")).is_ok());
        let why = refusal(check_names(plain, &at("s3://b/dir/"), &at("out")));
        assert!(why.contains("the key ends in /"), "{why}");
        let why = refusal(check_names(plain, &at("in"), &at("s3://arn:aws:s3:r:1:accesspoint/a/k")));
        assert!(why.contains("access-point ARN"), "{why}");
        let why = refusal(check_names(Pair::Decrypt { recursive: false }, &at("s3://b"), &at("-")));
        assert!(why.contains("is not s3://BUCKET/KEY"), "{why}");
    }

    #[cfg(not(feature = "s3"))]
    #[test]
    fn s3_names_need_the_s3_feature() {
        let why = refusal(check_names(Pair::Decrypt { recursive: false }, &at("s3://b/k"), &at("-")));
        assert!(why.contains("built without the `s3` feature"), "{why}");
    }

    #[test]
    fn an_existing_output_needs_force_and_a_directory_is_never_replaced() {
        let dir = std::env::temp_dir().join(format!("kms-envelope-location-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("out");
        std::fs::write(&file, b"x").expect("write");
        let keys = keys(&[]);
        let none = Source::Later;
        let existing = Location::File(file.clone());
        let why = refusal(check_destination(&existing, Written::Message, none, &[&keys], false));
        assert!(why.ends_with("already exists (use --force to replace it)"), "{why}");
        assert!(check_destination(&existing, Written::Text, none, &[&keys], true).is_ok());
        let why = refusal(check_destination(&Location::File(dir.clone()), Written::Text, none, &[&keys], true));
        assert!(why.contains("is a directory"), "{why}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn an_output_that_is_a_key_file_is_refused_even_with_force() {
        let dir = std::env::temp_dir().join(format!("kms-envelope-location-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key = dir.join("key");
        std::fs::write(&key, [7u8; 32]).expect("write");
        let keys = keys(&["--raw-key-file", key.to_str().expect("utf-8 temp dir")]);
        let why = refusal(check_destination(&Location::File(key), Written::Text, Source::Later, &[&keys], true));
        assert!(why.contains("refusing to write over a key"), "{why}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn an_s3_url_is_split_once_into_bucket_and_key_and_keeps_its_text() {
        for (text, bucket, key) in [
            ("s3://b/k", "b", "k"),
            ("s3://b/dir/sub/k.esdk", "b", "dir/sub/k.esdk"),
            (
                "s3://ap-123456789012-abcdefghijklmnopqrstuvwxyz-s3alias/k",
                "ap-123456789012-abcdefghijklmnopqrstuvwxyz-s3alias",
                "k",
            ),
            // Multi-byte characters on both sides of the split: bucket and key are cut on char boundaries.
            ("s3://bü/ķ/é", "bü", "ķ/é"),
            ("s3://b/k:with:colons", "b", "k:with:colons"),
        ] {
            let url = S3Url::parse(text).unwrap_or_else(|why| panic!("{text}: {why:?}"));
            assert_eq!((url.bucket(), url.key(), url.as_str()), (bucket, key, text));
        }
    }

    #[test]
    fn hostile_s3_names_get_a_typed_refusal() {
        use S3UrlError::{AccessPointArn, Key, NotAnObject, NotS3};
        for (text, why) in [
            ("s3://", NotAnObject),
            ("s3:///", NotAnObject),
            ("s3:///k", NotAnObject),
            ("s3://b", NotAnObject),
            ("s3://b/", NotAnObject),
            ("s3://b:x/k", NotAnObject),
            ("s3://arn:aws:s3:us-east-1:123456789012:accesspoint/ap/k", AccessPointArn),
            ("S3://b/k", NotS3),
            ("s3:/b/k", NotS3),
            ("", NotS3),
            ("s3://b/a/../k", Key(KeySlip::DotSegment)),
            ("s3://b/./k", Key(KeySlip::DotSegment)),
            ("s3://b/dir/", Key(KeySlip::TrailingSlash)),
            ("s3://b//k", Key(KeySlip::EmptySegment)),
            ("s3://b/a//k", Key(KeySlip::EmptySegment)),
        ] {
            assert_eq!(S3Url::parse(text), Err(why), "{text:?}");
        }
    }

    #[test]
    fn control_characters_in_an_s3_name_are_kept_and_only_ever_shown_escaped() {
        // A bucket or key with control characters is S3's to refuse (the rules here are the URL's shape);
        // what this CLI shows of it is escaped.
        let url = S3Url::parse("s3://b\u{1b}[2J/k\u{7}\n").expect("the shape of an object");
        assert_eq!((url.bucket(), url.key()), ("b\u{1b}[2J", "k\u{7}\n"));
        assert_eq!(url.to_string(), "s3://b\\u{1b}[2J/k\\u{7}\\n");
        assert_eq!(S3Url::parse("s3://\u{1b}]0;x\u{7}"), Err(S3UrlError::NotAnObject));
        assert_eq!(S3Url::parse("s3://b/\u{1b}/../k"), Err(S3UrlError::Key(KeySlip::DotSegment)));
    }

    #[cfg(feature = "s3")]
    #[test]
    fn the_refusal_of_a_hostile_s3_name_is_one_escaped_line() {
        for text in ["s3://\u{1b}]0;x\u{7}", "s3://b/\u{1b}[2J/", "s3://arn:\u{1b}[31m/k"] {
            let why = refusal(S3Name::parse(text).check());
            assert!(!why.chars().any(char::is_control), "{why:?}");
            assert!(why.contains("\\u{1b}"), "{why:?}");
        }
    }

    #[test]
    fn a_very_long_s3_name_is_parsed_whole_or_refused_without_a_panic() {
        let long = "x".repeat(1 << 20);
        assert_eq!(S3Url::parse(&format!("s3://{long}")), Err(S3UrlError::NotAnObject));
        assert_eq!(S3Url::parse(&format!("s3://b/{long}/")), Err(S3UrlError::Key(KeySlip::TrailingSlash)));
        assert_eq!(
            S3Url::parse(&format!("s3://b/{}", "a/".repeat(1 << 19))),
            Err(S3UrlError::Key(KeySlip::TrailingSlash))
        );
        // The length of a key is S3's to refuse (1,024 bytes): nothing here is cut or lost.
        let url = S3Url::parse(&format!("s3://{long}/{long}")).expect("the shape of an object");
        assert_eq!((url.bucket().len(), url.key().len()), (1 << 20, 1 << 20));
    }

    #[test]
    fn a_listed_key_is_taken_as_it_is() {
        let url = S3Url::listed("b", "a/../k/");
        assert_eq!((url.bucket(), url.key(), url.as_str()), ("b", "a/../k/", "s3://b/a/../k/"));
        assert_eq!(
            Location::from(url.clone()),
            Location::S3(S3Name { text: "s3://b/a/../k/".into(), object: Ok(url) })
        );
    }

    /// An `s3://` name in a refusal is shown as `Escaped` shows it, backslashes doubled, so that a name
    /// holding the six characters `\u{1b}` cannot pass for one holding ESC. Before, three refusals put the
    /// name in raw and left escaping to the line's `OneLine`, which escapes the ESC but keeps a backslash:
    /// both names read the same.
    #[test]
    fn refusals_tell_a_control_character_from_its_escape() {
        let (control, lookalike) = ("s3://b/k\u{1b}", "s3://b/k\\u{1b}");
        let refusals = |name: &str| {
            let mut refusals = vec![
                refusal(check_names(Pair::Decrypt { recursive: false }, &at("in"), &at(name))),
                refusal(check_names(Pair::Decrypt { recursive: true }, &at(name), &at("out"))),
            ];
            if cfg!(feature = "s3") {
                refusals.push(reencrypt(name, Some(name), false, false).expect_err("refused"));
            }
            refusals
        };
        for (shown, lookalike) in refusals(control).into_iter().zip(refusals(lookalike)) {
            assert!(shown.contains("s3://b/k\\u{1b}"), "{shown}");
            assert_ne!(shown, lookalike);
        }
    }

    fn reencrypt(input: &str, output: Option<&str>, in_place: bool, recursive: bool) -> Result<String, String> {
        let (input, output) = (at(input), output.map(at));
        check_reencrypt(&input, output.as_ref(), in_place, recursive)
            .map(|pair| format!("{pair:?}"))
            .map_err(|failure| failure.to_string())
    }

    #[test]
    fn reencrypt_refuses_stdin_in_place_or_recursive_and_s3_at_one_end() {
        for (in_place, recursive) in [(true, false), (false, true)] {
            let why = reencrypt("-", None, in_place, recursive).expect_err("refused");
            assert_eq!(why, "INPUT - (stdin) cannot be re-encrypted in place or with --recursive");
        }
        let at_one_end = s3_at_one_end().to_string();
        for (input, output, recursive) in [
            ("s3://b/k", "out", false),
            ("in", "s3://b/k", false),
            ("s3://b/p/", "-", true),
            ("dir", "s3://b/p/", true),
        ] {
            // Without S3 an object name is refused first, by the feature it needs.
            if !recursive && !cfg!(feature = "s3") {
                continue;
            }
            assert_eq!(reencrypt(input, Some(output), false, recursive), Err(at_one_end.clone()), "{input} {output}");
        }
        assert!(reencrypt("in", Some("-"), false, false).expect("local").starts_with("Local"));
        assert!(reencrypt("-", Some("out"), false, false).expect("local").starts_with("Local"));
    }

    #[cfg(feature = "s3")]
    #[test]
    fn reencrypt_refuses_an_object_into_itself_unless_in_place() {
        let why = reencrypt("s3://b/k", Some("s3://b/k"), false, false).expect_err("refused");
        assert_eq!(why, "s3://b/k: is INPUT; to replace it, use --in-place without OUTPUT");
        assert!(reencrypt("s3://b/k", None, true, false).expect("in place").starts_with("Object"));
        assert!(reencrypt("s3://b/k", Some("s3://b/k2"), false, false).expect("another").starts_with("Object"));
        let why = reencrypt("s3://b/k", Some("s3://b/k/"), false, false).expect_err("refused");
        assert!(why.contains("the key ends in /"), "{why}");
    }

    #[cfg(feature = "s3")]
    #[test]
    fn reencrypt_takes_prefixes_with_recursive_and_refuses_overlapping_ones() {
        assert!(reencrypt("s3://b/p/", Some("s3://c/p/"), false, true).expect("prefixes").starts_with("Prefixes"));
        assert!(reencrypt("s3://b/", None, true, true).expect("in place").starts_with("Prefixes"));
        for (input, output, says) in [
            ("s3://b/p", "s3://c/q/", "the prefix does not end in /"),
            ("s3://b", "s3://c/", "no / after the bucket"),
            ("s3:///p/", "s3://c/", "no bucket"),
            ("s3://b/p/", "s3://b/p/sub/", "overlap"),
            ("s3://b/", "s3://b/p/", "overlap"),
            ("s3://b/a/../", "s3://c/", "the prefix has a . or .. segment"),
            ("s3://arn:aws:s3:r:1:accesspoint/ap/p/", "s3://c/", "access-point ARN"),
        ] {
            let why = reencrypt(input, Some(output), false, true).expect_err("refused");
            assert!(why.contains(says), "{input} {output}: {why}");
        }
    }
}
