//! What an INPUT or OUTPUT positional names, decided once, by clap, and the refusals of an (input, output)
//! pair, in one place: no code below compares an argument with `"-"` or looks for `s3://` again.
//!
//! Parsing is two steps, as ripgrep's low-level then high-level arguments: clap turns each positional into a
//! [`Location`] (which never fails: what is refused is refused by the same messages and exit codes as
//! before, after parsing, in the order the checks have always run), then [`check_names`] validates the
//! `s3://` names and refuses the pairs no subcommand takes before anything is read, and
//! [`check_destination`] refuses, once the input is open, an output that would destroy something.

use std::borrow::Cow;
use std::convert::Infallible;
use std::path::{Path, PathBuf};

use kms_envelope::escape::escaped;

use super::args::KeyArgs;
use super::exit::Failure;
use super::io;

/// The prefix that makes a positional an S3 object rather than a local path.
const S3_PREFIX: &str = "s3://";

/// An INPUT or OUTPUT as the command line gave it: standard input or output, a local path, or an S3 object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `-`: stdin as an input, stdout as an output.
    Stdio,
    /// A local path (a file, or a directory with `--recursive`).
    File(PathBuf),
    /// An `s3://` name, as given; [`check_names`] validates it (see [`S3Name::check`]) before anything is
    /// read, and a build without the `s3` feature refuses it there by name.
    S3(S3Name),
}

/// An `s3://...` positional as given. It is never taken for a local path; whether it names an object
/// (`s3://BUCKET/KEY`, no access-point ARN, no `.`, `..` or empty key segment) is checked by [`Self::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Name(String);

impl S3Name {
    /// The name as typed, `s3://` included (shown only escaped).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Refuses a name that is not `s3://BUCKET/KEY` or holds what this CLI refuses in a key (see
    /// [`io::refused_in_url`]), and every `s3://` name in a build without S3 (exit 2, before any key is used).
    pub fn check(&self) -> Result<(), Failure> {
        io::check_s3_url(&self.0)
    }
}

impl Location {
    /// clap's value parser for INPUT and OUTPUT: `-`, `s3://...`, or else a local path. Never fails: an
    /// `s3://` name is validated after parsing, by [`check_names`], with this CLI's own messages.
    pub fn parse(arg: &str) -> Result<Self, Infallible> {
        Ok(if arg == "-" {
            Self::Stdio
        } else if arg.starts_with(S3_PREFIX) {
            Self::S3(S3Name(arg.to_owned()))
        } else {
            Self::File(PathBuf::from(arg))
        })
    }

    /// The argument as given (`-` for stdio): the name the lower layers and the messages use.
    pub fn arg(&self) -> Cow<'_, str> {
        match self {
            Self::Stdio => Cow::Borrowed("-"),
            // Made from a `str` by `parse`: the conversion is lossless.
            Self::File(path) => path.to_string_lossy(),
            Self::S3(name) => Cow::Borrowed(name.as_str()),
        }
    }

    /// The local path, `-` for stdio, for `--recursive`, which walks local trees only (see [`check_names`]).
    pub fn path(&self) -> &Path {
        match self {
            Self::Stdio => Path::new("-"),
            Self::File(path) => path,
            Self::S3(name) => Path::new(name.as_str()),
        }
    }

    /// Refuses an `s3://` name that does not name an object (see [`S3Name::check`]); anything else passes.
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
                    name.arg()
                )));
            }
        }
        (Pair::Decrypt { .. }, Location::S3(name)) => {
            return Err(Failure::usage(format!(
                "{}: decrypt writes a file or - (stdout), not an S3 object",
                name.as_str()
            )));
        }
        _ => {}
    }
    Ok(())
}

/// Where what is written to OUTPUT comes from, for the refusals of stdout that depend on it.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// INPUT, opened: stdout must not be the file it is.
    Opened(&'a Location, &'a io::Input),
    /// INPUT, read only later (an S3 object read by ranges), never stdout's file.
    Later,
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
/// binary message), the input file, a file inside the directory bundled, or a key file; an existing S3
/// object or file without `--force` (a directory or symbolic link never), an OUTPUT that is a key file.
pub fn check_destination(
    output: &Location,
    written: Written,
    source: Source<'_>,
    keys: &KeyArgs,
    force: bool,
) -> Result<(), Failure> {
    match output {
        Location::Stdio => {
            if written == Written::Message {
                io::check_message_stdout(force)?;
            }
            match source {
                Source::Opened(location, input) => io::check_stdout_is_not_input(&location.arg(), input)?,
                Source::Directory(dir) => io::check_stdout_is_outside(dir)?,
                Source::Later => {}
            }
            io::check_stdout_is_not_a_key_file(keys)
        }
        Location::S3(name) => io::check_s3_absent(name.as_str(), force),
        Location::File(path) => {
            io::check_output_is_not_a_key_file(keys.files(), path)?;
            io::check_output(path, force)
        }
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
        assert_eq!(at("s3://b/k"), Location::S3(S3Name("s3://b/k".into())));
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
        let why = refusal(check_destination(&existing, Written::Message, none, &keys, false));
        assert!(why.ends_with("already exists (use --force to replace it)"), "{why}");
        assert!(check_destination(&existing, Written::Text, none, &keys, true).is_ok());
        let why = refusal(check_destination(&Location::File(dir.clone()), Written::Text, none, &keys, true));
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
        let why = refusal(check_destination(&Location::File(key), Written::Text, Source::Later, &keys, true));
        assert!(why.contains("refusing to write over a key"), "{why}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
