//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{ArgMatches, Args, Parser, Subcommand};
use kms_envelope::{AlgorithmSuite, CommitmentPolicy};

use super::exit::Failure;

pub const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  the message is invalid or fails to authenticate (nothing is left at OUTPUT)
  2  usage error
  3  key access failed (no keyring could decrypt a data key, KMS or credential errors)
  4  I/O error
  130, 143  SIGINT or SIGTERM during an upload to S3 (the upload was aborted)
Each failure prints one line on stderr naming the file it is about; stdout only ever carries data.";

const KEYS_HELP_ENCRYPT: &str = "\
Keys: raw AES keys (--raw-key-file PATH --key-namespace NS --key-name NAME), raw RSA keys (--rsa-public-key
PEM or --rsa-private-key PEM, each with --key-namespace NS --key-name NAME; --rsa-padding) and AWS KMS keys
(--kms-key ID) may be combined: the first key on the command line generates the data key, each other key
adds a wrapped copy, so any one of them decrypts. The n-th --key-namespace and --key-name belong to the n-th
raw AES or RSA key. KMS credentials, region and endpoint come from the environment as for every AWS SDK
(AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_KMS, ...).";

const KEYS_HELP_DECRYPT: &str = "\
Keys: raw AES keys (--raw-key-file PATH --key-namespace NS --key-name NAME), raw RSA private keys
(--rsa-private-key PEM with --key-namespace NS --key-name NAME; --rsa-padding), AWS KMS keys (--kms-key ID)
and --kms-discovery may be combined: each is tried in command-line order (discovery last) until one
unwraps a data key of the message. The n-th --key-namespace and --key-name belong to the n-th raw AES or RSA
key. A raw key cannot tell a wrong --context pair the message does not store from a wrong key: both
fail to unwrap (exit 3). KMS
credentials, region and endpoint come from the environment as for every AWS SDK (AWS_REGION, AWS_PROFILE,
AWS_ENDPOINT_URL_KMS, ...).";

/// `--version`: the crate version and the AES-GCM backend compiled in.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| format!("{} (AES-GCM: {})", env!("CARGO_PKG_VERSION"), kms_envelope::aes_gcm_backend()))
}

/// Encrypt and decrypt files in the AWS Encryption SDK message format.
#[derive(Parser, Debug)]
#[command(name = "kms-envelope", version = version(), about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Encrypt INPUT (a file, -, or with --recursive a directory) into ESDK messages at OUTPUT.
    #[command(after_help = format!("{KEYS_HELP_ENCRYPT}\n\n{EXIT_CODES}"))]
    Encrypt(EncryptArgs),
    /// Decrypt ESDK messages; each output appears (mode 0600) only once its whole message verified.
    #[command(after_help = format!("{KEYS_HELP_DECRYPT}\n\n{EXIT_CODES}"))]
    Decrypt(DecryptArgs),
    /// Print a message's header (suite, message id, frame length, encryption context, encrypted data keys)
    /// without any key and without calling KMS. The header is not authenticated by this.
    #[command(after_help = EXIT_CODES)]
    Inspect(InspectArgs),
    /// Encrypt a whole directory as one message (a tar stream inside; see also unbundle).
    #[command(after_help = format!("{KEYS_HELP_ENCRYPT}\n\n{EXIT_CODES}"))]
    Bundle(BundleArgs),
    /// Decrypt a bundle into DIRECTORY, which appears (0700, files 0600) only once the message verified.
    #[command(after_help = format!("{KEYS_HELP_DECRYPT}\n\n{EXIT_CODES}"))]
    Unbundle(UnbundleArgs),
}

/// How a raw AES key file holds its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyEncoding {
    /// The key bytes themselves (`head -c 32 /dev/urandom > wrapping.key`).
    Raw,
    /// Hexadecimal digits (`openssl rand -hex 32 > wrapping.key`).
    Hex,
    /// Standard base64 (`openssl rand -base64 32 > wrapping.key`).
    Base64,
}

/// Where a wrapping key came from on the command line, in command-line order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The n-th local key (raw AES or RSA, in command-line order; see [`KeyArgs::local_keys`]).
    Raw(usize),
    /// The n-th --kms-key.
    Kms(usize),
    /// The n-th --kms-rsa-key.
    KmsRsa(usize),
}

/// Wrapping keys. Several build a multi-keyring whose first key (in command-line order) is the generator.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// File holding a raw AES wrapping key: 16, 24 or 32 bytes, as raw bytes unless --key-encoding says
    /// otherwise (repeatable).
    #[arg(long = "raw-key-file", value_name = "PATH")]
    pub raw_key_file: Vec<PathBuf>,
    /// How every --raw-key-file holds its key: raw (the bytes themselves), hex or base64 (whitespace and
    /// a final newline ignored).
    #[arg(long = "key-encoding", value_name = "ENCODING", value_enum, default_value_t = KeyEncoding::Raw)]
    pub key_encoding: KeyEncoding,
    /// Key namespace (the EDK provider id) of the raw key at the same position.
    #[arg(long = "key-namespace", value_name = "NS")]
    pub key_namespace: Vec<String>,
    /// Key name of the raw key at the same position.
    #[arg(long = "key-name", value_name = "NAME")]
    pub key_name: Vec<String>,
    /// AWS KMS key: key ARN, key id, alias name or alias ARN (repeatable). On decrypt only these keys are
    /// asked (strict).
    #[arg(long = "kms-key", value_name = "ID")]
    pub kms_key: Vec<String>,
    /// RSA public key (PEM: PUBLIC KEY or RSA PUBLIC KEY) to wrap the data key with; encrypt only. Takes a
    /// --key-namespace and --key-name like a raw AES key (repeatable).
    #[arg(long = "rsa-public-key", value_name = "PEM")]
    pub rsa_public_key: Vec<PathBuf>,
    /// RSA private key (PEM: PRIVATE KEY or RSA PRIVATE KEY): decrypts, and encrypts with its public half.
    /// Takes a --key-namespace and --key-name like a raw AES key (repeatable).
    #[arg(long = "rsa-private-key", value_name = "PEM")]
    pub rsa_private_key: Vec<PathBuf>,
    /// RSA padding of every RSA key: oaep-sha256, oaep-sha1, oaep-sha384, oaep-sha512 or pkcs1. It is not
    /// recorded in the message: decrypt with the padding the message was encrypted with.
    #[arg(long = "rsa-padding", value_name = "PADDING", default_value = "oaep-sha256")]
    pub rsa_padding: String,
    /// AWS KMS RSA key (key ARN of an RSA key for ENCRYPT_DECRYPT): encrypt locally with its public key,
    /// decrypt with KMS Decrypt (repeatable). Unsigned suites only.
    #[arg(long = "kms-rsa-key", value_name = "ARN")]
    pub kms_rsa_key: Vec<String>,
    /// The public key (PEM) of the --kms-rsa-key at the same position, so encrypt needs no AWS access
    /// (without it, encrypt calls GetPublicKey). Give one for each --kms-rsa-key, or none.
    #[arg(long = "kms-rsa-public-key", value_name = "PEM")]
    pub kms_rsa_public_key: Vec<PathBuf>,
    /// KMS encryption algorithm of every --kms-rsa-key: RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1.
    #[arg(long = "kms-rsa-algorithm", value_name = "ALG", default_value = "RSAES_OAEP_SHA_256")]
    pub kms_rsa_algorithm: String,
    /// The keys above in command-line order (filled in from the matches, not parsed).
    #[arg(skip)]
    pub order: Vec<KeySource>,
    /// The local keys (raw AES and RSA) in command-line order (filled in from the matches).
    #[arg(skip)]
    pub local_order: Vec<(LocalKind, usize)>,
}

/// What kind of local key a key file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalKind {
    /// Raw AES key bytes (--raw-key-file).
    Aes,
    /// RSA public key PEM (--rsa-public-key).
    RsaPublic,
    /// RSA private key PEM (--rsa-private-key).
    RsaPrivate,
}

/// A local key: its file, and the namespace and name at its position.
#[derive(Clone, Debug)]
pub struct LocalKey {
    pub kind: LocalKind,
    pub path: PathBuf,
    pub namespace: String,
    pub name: String,
}

impl KeyArgs {
    /// Every key file named on the command line (raw AES keys, RSA keys, KMS RSA public keys).
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.raw_key_file
            .iter()
            .chain(&self.rsa_public_key)
            .chain(&self.rsa_private_key)
            .chain(&self.kms_rsa_public_key)
    }

    /// The raw AES and RSA keys in command-line order, each with the namespace and name at its position.
    pub fn local_keys(&self) -> Result<Vec<LocalKey>, Failure> {
        let file = |kind: LocalKind, n: usize| -> &PathBuf {
            match kind {
                LocalKind::Aes => &self.raw_key_file[n],
                LocalKind::RsaPublic => &self.rsa_public_key[n],
                LocalKind::RsaPrivate => &self.rsa_private_key[n],
            }
        };
        let order: Vec<(LocalKind, usize)> = if self.local_order.is_empty() {
            (0..self.raw_key_file.len())
                .map(|n| (LocalKind::Aes, n))
                .chain((0..self.rsa_public_key.len()).map(|n| (LocalKind::RsaPublic, n)))
                .chain((0..self.rsa_private_key.len()).map(|n| (LocalKind::RsaPrivate, n)))
                .collect()
        } else {
            self.local_order.clone()
        };
        let n = order.len();
        if self.key_namespace.len() != n || self.key_name.len() != n {
            return Err(Failure::usage(format!(
                "each --raw-key-file, --rsa-public-key and --rsa-private-key needs one --key-namespace and one \
                 --key-name (got {n} keys, {} namespaces, {} names)",
                self.key_namespace.len(),
                self.key_name.len()
            )));
        }
        Ok(order
            .into_iter()
            .zip(self.key_namespace.iter().zip(&self.key_name))
            .map(|((kind, i), (namespace, name))| LocalKey {
                kind,
                path: file(kind, i).clone(),
                namespace: namespace.clone(),
                name: name.clone(),
            })
            .collect())
    }

    /// Records the command-line order of local and KMS keys from the subcommand's matches.
    fn record_order(&mut self, matches: &ArgMatches) {
        let positions = |id: &str| -> Vec<usize> {
            matches.try_get_raw(id).ok().flatten().and_then(|_| matches.indices_of(id)).into_iter().flatten().collect()
        };
        let mut local: Vec<(usize, (LocalKind, usize))> = Vec::new();
        for (id, kind) in [
            ("raw_key_file", LocalKind::Aes),
            ("rsa_public_key", LocalKind::RsaPublic),
            ("rsa_private_key", LocalKind::RsaPrivate),
        ] {
            local.extend(positions(id).into_iter().enumerate().map(|(n, at)| (at, (kind, n))));
        }
        local.sort_by_key(|&(at, _)| at);
        let mut order: Vec<(usize, KeySource)> =
            local.iter().enumerate().map(|(n, &(at, _))| (at, KeySource::Raw(n))).collect();
        order.extend(positions("kms_key").into_iter().enumerate().map(|(n, at)| (at, KeySource::Kms(n))));
        order.extend(positions("kms_rsa_key").into_iter().enumerate().map(|(n, at)| (at, KeySource::KmsRsa(n))));
        order.sort_by_key(|&(at, _)| at);
        self.local_order = local.into_iter().map(|(_, key)| key).collect();
        self.order = order.into_iter().map(|(_, source)| source).collect();
    }
}

/// AWS KMS discovery (decrypt only).
#[derive(Args, Debug)]
pub struct DiscoveryArgs {
    /// Let AWS KMS decrypt under whichever key the message names. Limit it with --account: without a
    /// filter, whoever wrote the message chooses the key.
    #[arg(long)]
    pub kms_discovery: bool,
    /// With --kms-discovery: only keys of this AWS account (repeatable).
    #[arg(long = "account", value_name = "ID", requires = "kms_discovery")]
    pub account: Vec<String>,
    /// With --account: the AWS partition of the accounts (default: the configured region's, usually aws).
    #[arg(long, value_name = "PARTITION", requires = "account")]
    pub partition: Option<String>,
}

/// How messages are written.
#[derive(Args, Debug)]
pub struct EncryptSettings {
    /// Encryption context pair, stored in the header and authenticated (repeatable).
    #[arg(long = "context", value_name = "K=V", value_parser = parse_pair)]
    pub context: Vec<(String, String)>,
    /// Required encryption context pair: authenticated but not stored; decrypt must give it (repeatable).
    #[arg(long = "require-context", value_name = "K=V", value_parser = parse_pair)]
    pub require_context: Vec<(String, String)>,
    /// Plaintext bytes per frame.
    #[arg(long, value_name = "N", default_value_t = kms_envelope::stream::DEFAULT_FRAME_LENGTH,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub frame_length: u32,
    /// Algorithm suite, e.g. 0x0478 (default) or 0x0578 (adds an ECDSA P-384 signature).
    #[arg(long, value_name = "ID", value_parser = parse_suite)]
    pub suite: Option<Suite>,
    /// Commitment policy.
    #[arg(long, value_name = "POLICY", default_value = "require-encrypt-require-decrypt", value_parser = parse_policy)]
    pub commitment_policy: Policy,
    /// Fail if the keys would write more than N encrypted data keys.
    #[arg(long, value_name = "N")]
    pub max_encrypted_data_keys: Option<u16>,
    /// Threads sealing frames (default: the available cores; 1 keeps all crypto on one thread).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

/// How messages are read.
#[derive(Args, Debug)]
pub struct DecryptSettings {
    /// Expected encryption context pair: must match the message, or be a required pair it authenticates.
    #[arg(long = "context", value_name = "K=V", value_parser = parse_pair)]
    pub context: Vec<(String, String)>,
    /// Fail unless the message's encryption context has key K, stored or given with --context (repeatable).
    #[arg(long = "require-context-key", value_name = "K")]
    pub require_context_key: Vec<String>,
    /// Commitment policy; use require-encrypt-allow-decrypt for legacy (non-committing) messages.
    #[arg(long, value_name = "POLICY", default_value = "require-encrypt-require-decrypt", value_parser = parse_policy)]
    pub commitment_policy: Policy,
    /// Refuse messages with more encrypted data keys than N, before any KMS call (each may cost one).
    #[arg(long, value_name = "N",
          default_value_t = kms_envelope::RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS)]
    pub max_encrypted_data_keys: u16,
    /// Refuse messages whose frame length exceeds N bytes (default 16 MiB). Decrypt buffers at most 40 MiB of
    /// frames whatever --threads says, or one frame (N + 28 bytes) if N is larger.
    #[arg(long, value_name = "N")]
    pub max_frame_length: Option<u32>,
    /// Refuse signed messages right after the header.
    #[arg(long)]
    pub unsigned_only: bool,
    /// Threads opening frames (default: the available cores; 1 keeps all crypto on one thread).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

/// What happens around the outputs.
#[derive(Args, Debug)]
pub struct OutputArgs {
    /// Replace outputs that exist; with OUTPUT `-`, write an encrypted message even to a terminal.
    #[arg(long)]
    pub force: bool,
    /// No progress bar (it shows on a terminal for inputs over 64 MiB).
    #[arg(long, short)]
    pub quiet: bool,
    /// Do not sync outputs to disk before reporting success. Faster; but after a power loss or kernel crash
    /// right after the command, the output may be missing or empty. It is never unverified: the output
    /// still appears only once the whole message verified.
    #[arg(long)]
    pub no_fsync: bool,
}

#[derive(Args, Debug)]
pub struct EncryptArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub settings: EncryptSettings,
    #[command(flatten)]
    pub output_args: OutputArgs,
    /// INPUT is a directory: encrypt each file below it into OUTPUT (a directory), mirroring the tree, one
    /// message per file named with --suffix.
    #[arg(long, short)]
    pub recursive: bool,
    /// With --recursive: appended to each output file name.
    #[arg(long, value_name = "SUFFIX", default_value = ".encrypted", requires = "recursive")]
    pub suffix: String,
    /// With --recursive: reuse one data key across files for up to SECONDS (one KMS call per data key, not
    /// per file). Off by default, since files that share a data key are linked: whoever can decrypt one
    /// file's data key can decrypt them all.
    #[arg(long, value_name = "SECONDS", requires = "recursive", value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_max_age: Option<u64>,
    /// With --cache-max-age: at most N files per data key (default 2^32).
    #[arg(long, value_name = "N", requires = "cache_max_age", value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
    pub cache_max_messages: Option<u64>,
    /// Plaintext file, - for stdin, or a directory with --recursive.
    pub input: String,
    /// Message file, - for stdout, s3://BUCKET/KEY (a multipart upload that appears only once complete),
    /// or a directory with --recursive.
    pub output: String,
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    #[command(flatten)]
    pub settings: DecryptSettings,
    #[command(flatten)]
    pub output_args: OutputArgs,
    /// INPUT is a directory: decrypt each file below it into OUTPUT (a directory), mirroring the tree.
    /// Output names drop a trailing .encrypted, or else get .decrypted appended (or --suffix).
    #[arg(long, short)]
    pub recursive: bool,
    /// With --recursive: append SUFFIX to every output file name instead (may be empty).
    #[arg(long, value_name = "SUFFIX", requires = "recursive")]
    pub suffix: Option<String>,
    /// Decrypt only plaintext bytes START to END, both included (as in HTTP Range), or START- to the end,
    /// reading only the header, the frames that hold them and the final frame. INPUT must be a file or
    /// s3://BUCKET/KEY (a HeadObject and three ranged GETs); signed and non-framed messages are refused.
    #[arg(long, value_name = "START-END", conflicts_with = "recursive", value_parser = parse_range)]
    pub range: Option<PlaintextRange>,
    /// Message file, - for stdin, s3://BUCKET/KEY, or a directory with --recursive.
    pub input: String,
    /// Plaintext file, - for stdout (which receives each frame once it verified; discard it on failure), or
    /// a directory with --recursive.
    pub output: String,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Refuse headers with more encrypted data keys than N.
    #[arg(long, value_name = "N")]
    pub max_encrypted_data_keys: Option<u16>,
    /// Message file, - for stdin, or s3://BUCKET/KEY. Only the header is read.
    pub input: String,
}

#[derive(Args, Debug)]
pub struct BundleArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub settings: EncryptSettings,
    #[command(flatten)]
    pub output_args: OutputArgs,
    /// Directory to pack: regular files and directories only (symlinks and special files are refused).
    pub directory: PathBuf,
    /// Message file, or - for stdout.
    pub output: String,
}

#[derive(Args, Debug)]
pub struct UnbundleArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    #[command(flatten)]
    pub settings: DecryptSettings,
    #[command(flatten)]
    pub output_args: OutputArgs,
    /// Bundle message file, or - for stdin.
    pub input: String,
    /// Directory to create; an existing one is replaced only with --force.
    pub directory: PathBuf,
}

impl Cli {
    /// Parses the process arguments (exiting with status 2 on a usage error) and records key order.
    pub fn parse_with_order() -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command().try_get_matches().unwrap_or_else(|e| exit_escaped(&e));
        let mut cli = Self::from_arg_matches(&matches).unwrap_or_else(|e| exit_escaped(&e));
        if let Some((_, sub)) = matches.subcommand() {
            match &mut cli.command {
                Command::Encrypt(a) => a.keys.record_order(sub),
                Command::Decrypt(a) => a.keys.record_order(sub),
                Command::Bundle(a) => a.keys.record_order(sub),
                Command::Unbundle(a) => a.keys.record_order(sub),
                Command::Inspect(_) => {}
            }
        }
        cli
    }
}

/// Exits as [`clap::Error::exit`] does, except that an error's text, which quotes the offending argument as
/// given, reaches stderr with its control and bidirectional characters escaped (and without clap's colours):
/// an argument holding a terminal sequence, perhaps passed on from elsewhere by a script, must not act on
/// the terminal. Help and version output go to stdout as clap writes them.
fn exit_escaped(e: &clap::Error) -> ! {
    if !e.use_stderr() {
        e.exit()
    }
    // Line by line, to keep clap's layout (message, usage, hint).
    for line in e.render().to_string().lines() {
        eprintln!("{}", kms_envelope::escape::OneLine(line));
    }
    std::process::exit(e.exit_code())
}

#[derive(Clone, Copy, Debug)]
pub struct Suite(pub AlgorithmSuite);

#[derive(Clone, Copy, Debug)]
pub struct Policy(pub CommitmentPolicy);

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("expected K=V, got {s:?}"))
}

/// Plaintext bytes `start..=end` (`end` `None`: to the end), as `--range` spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaintextRange {
    pub start: u64,
    pub end: Option<u64>,
}

impl PlaintextRange {
    /// The range as `start..end` (end excluded) in a plaintext of `plaintext_len` bytes.
    pub fn within(&self, plaintext_len: u64) -> Result<(u64, u64), kms_envelope::Error> {
        let end = self.end.map_or(Some(plaintext_len), |end| end.checked_add(1));
        match end {
            Some(end) if self.start <= end && end <= plaintext_len => Ok((self.start, end)),
            _ => Err(kms_envelope::Error::RangeOutOfBounds {
                start: self.start,
                end: end.unwrap_or(u64::MAX),
                plaintext_len,
            }),
        }
    }
}

fn parse_range(s: &str) -> Result<PlaintextRange, String> {
    let bad = || format!("expected START-END or START- (plaintext bytes, END included), got {s:?}");
    let (start, end) = s.split_once('-').ok_or_else(bad)?;
    let number = |n: &str| n.parse::<u64>().ok().filter(|_| n.bytes().all(|b| b.is_ascii_digit()));
    let start = number(start).ok_or_else(bad)?;
    let end = if end.is_empty() { None } else { Some(number(end).ok_or_else(bad)?) };
    if end.is_some_and(|end| end < start) {
        return Err(format!("the range {s:?} ends before it starts"));
    }
    Ok(PlaintextRange { start, end })
}

fn parse_suite(s: &str) -> Result<Suite, String> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    let id = u16::from_str_radix(digits, 16).map_err(|_| format!("not a hex suite id: {s:?}"))?;
    AlgorithmSuite::from_id(id).map(Suite).map_err(|e| e.to_string())
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse().map(Policy).map_err(|e: kms_envelope::Error| e.to_string())
}
