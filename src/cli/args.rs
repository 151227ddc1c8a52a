//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{ArgMatches, Args, Parser, Subcommand};
use kms_envelope::keyring::kms::Region;
use kms_envelope::{AlgorithmSuite, CommitmentPolicy};

use super::exit::Failure;
use super::location::Location;

/// The exit codes, as `--help` lists them (the S3 line only in a build with `s3://` paths).
pub(super) fn exit_codes() -> String {
    let s3 = if cfg!(feature = "s3") {
        "\n  129, 130, 131, 143  SIGHUP, SIGINT, SIGQUIT or SIGTERM during an upload to S3 (the upload was aborted)"
    } else {
        ""
    };
    let key_access = if cfg!(feature = "kms") {
        "key access failed (no keyring could decrypt a data key, KMS or credential errors)"
    } else {
        "key access failed (no keyring could decrypt a data key)"
    };
    // What an `s3://` name may hold, and the overwrite rule (README, S3).
    let s3_names = if cfg!(feature = "s3") {
        "s3://BUCKET/KEY: BUCKET is a bucket name or an access point's alias (an access-point ARN is refused).
KEY is a string, not a path: a KEY with a . or .. segment, an empty segment (// or a leading /) or a
trailing / is refused. An existing object is replaced only with --force: a HeadObject refuses it first,
and the upload carries If-None-Match: * so that one written meanwhile is refused too (upload aborted).

"
    } else {
        ""
    };
    format!(
        "{s3_names}Exit status:
  0  success
  1  the message is invalid or fails to authenticate (nothing is left at OUTPUT)
  2  usage error
  3  {key_access}
  4  I/O error{s3}
Each failure prints one line on stderr naming the file it is about; stdout only ever carries data."
    )
}

/// Which way a subcommand's keys work.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Encrypt,
    Decrypt,
}

/// The "Keys:" paragraph of a subcommand's `--help`, naming only the key kinds this build has.
fn keys_help(direction: Direction) -> String {
    let local = if cfg!(feature = "rsa") { "raw AES or RSA" } else { "raw AES" };
    let mut kinds = vec!["raw AES keys (--raw-key-file PATH --key-namespace NS --key-name NAME)"];
    if cfg!(feature = "rsa") {
        kinds.push(match direction {
            Direction::Encrypt => {
                "raw RSA keys (--rsa-public-key PEM or --rsa-private-key PEM, each with --key-namespace NS \
                 --key-name NAME; --rsa-padding)"
            }
            Direction::Decrypt => {
                "raw RSA private keys (--rsa-private-key PEM with --key-namespace NS --key-name NAME; --rsa-padding)"
            }
        });
    }
    if cfg!(feature = "kms") {
        kinds.push("AWS KMS keys (--kms-key ID)");
        if direction == Direction::Decrypt {
            kinds.push("--kms-discovery (with --kms-region)");
        }
    }
    let kinds = match kinds.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    };
    let mut text = match direction {
        Direction::Encrypt => format!(
            "Keys: {kinds} may be combined:\nthe first key on the command line generates the data key, each other \
             key adds a wrapped copy, so any one of them decrypts."
        ),
        Direction::Decrypt => {
            let discovery = if cfg!(feature = "kms") { " (discovery last)" } else { "" };
            format!(
                "Keys: {kinds} may be combined:\neach is tried in command-line order{discovery} until one unwraps a \
                 data key of the message."
            )
        }
    };
    text.push_str(&format!(" The n-th --key-namespace and --key-name belong to the n-th {local} key."));
    if direction == Direction::Decrypt {
        text.push_str(
            "\nA raw key cannot tell a wrong --context pair the message does not store from a wrong key: both fail \
             to unwrap (exit 3).",
        );
    }
    if cfg!(feature = "kms") {
        text.push_str(
            "\nKMS credentials, region and endpoint come from the environment as for every AWS SDK (AWS_REGION, \
             AWS_PROFILE, AWS_ENDPOINT_URL_KMS, ...). A --kms-key key ARN is called in its own region; a \
             multi-Region key (key/mrk-...) also decrypts what any of its replicas wrapped.",
        );
        if direction == Direction::Decrypt {
            text.push_str(
                " --kms-discovery calls KMS only in the configured region (AWS_REGION), or in each --kms-region \
                 given: a multi-Region key through its replica there, any other key only if it is in one of them.",
            );
        }
    }
    format!("{}\n\n{}", wrap(&text, HELP_WIDTH), exit_codes())
}

/// The width the help paragraphs are wrapped at (clap prints `after_help` as given).
pub(super) const HELP_WIDTH: usize = 110;

/// `text` with its spaces turned into line breaks so that no line exceeds `width` (a longer word stays
/// whole); its own line breaks are kept, so a phrase that starts a line is never split.
pub(super) fn wrap(text: &str, width: usize) -> String {
    text.lines().map(|line| wrap_line(line, width)).collect::<Vec<_>>().join("\n")
}

/// One line of [`wrap`].
fn wrap_line(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut line = 0;
    for word in text.split(' ') {
        if line > 0 && line + 1 + word.len() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out
}

// The help of the arguments that take `s3://BUCKET/KEY`, which a build without `s3` does not offer.
#[cfg(feature = "s3")]
const ARMOR_HELP: &str = "Write the message as base64 text (standard alphabet, = padding, one line, no final newline): \
    the bytes aws-encryption-cli --encode writes, for YAML, JSON or a CI variable. Text may go to a terminal. Not for \
    s3:// outputs. decrypt, inspect and reencrypt read either form without a flag (reencrypt --in-place keeps an \
    armored file armored)";
#[cfg(not(feature = "s3"))]
const ARMOR_HELP: &str = "Write the message as base64 text (standard alphabet, = padding, one line, no final newline): \
    the bytes aws-encryption-cli --encode writes, for YAML, JSON or a CI variable. Text may go to a terminal. decrypt, \
    inspect and reencrypt read either form without a flag (reencrypt --in-place keeps an armored file armored)";
#[cfg(feature = "s3")]
const ENCRYPT_OUTPUT_HELP: &str = "Message file, - for stdout, s3://BUCKET/KEY (a multipart upload that appears only \
                                   once complete; an existing object only with --force), or a directory with \
                                   --recursive";
#[cfg(not(feature = "s3"))]
const ENCRYPT_OUTPUT_HELP: &str = "Message file, - for stdout, or a directory with --recursive";
#[cfg(feature = "s3")]
const DECRYPT_INPUT_HELP: &str = "Message file, - for stdin, s3://BUCKET/KEY, or a directory with --recursive. Binary or \
                                  base64 armor (as encrypt --armor writes it), told apart by the first byte";
#[cfg(not(feature = "s3"))]
const DECRYPT_INPUT_HELP: &str = "Message file, - for stdin, or a directory with --recursive. Binary or base64 armor (as \
                                  encrypt --armor writes it), told apart by the first byte";
#[cfg(feature = "s3")]
const BUNDLE_OUTPUT_HELP: &str = "Message file, - for stdout, or s3://BUCKET/KEY (uploaded as encrypt does)";
#[cfg(not(feature = "s3"))]
const BUNDLE_OUTPUT_HELP: &str = "Message file, or - for stdout";
#[cfg(feature = "s3")]
const UNBUNDLE_INPUT_HELP: &str = "Bundle message file, - for stdin, or s3://BUCKET/KEY";
#[cfg(not(feature = "s3"))]
const UNBUNDLE_INPUT_HELP: &str = "Bundle message file, or - for stdin";
#[cfg(feature = "s3")]
const INSPECT_INPUT_HELP: &str = "Message file, - for stdin, or s3://BUCKET/KEY, binary or base64 armor. Only the header \
                                  is read";
#[cfg(not(feature = "s3"))]
const INSPECT_INPUT_HELP: &str = "Message file, or - for stdin, binary or base64 armor. Only the header is read";

#[cfg(feature = "s3")]
const EXEC_SECRETS_HELP: &str = "Secrets messages: files or s3://BUCKET/KEY, each a JSON object of strings or dotenv NAME=value lines; a later \
     one's names override an earlier one's";
#[cfg(not(feature = "s3"))]
const EXEC_SECRETS_HELP: &str = "Secrets message files, each a JSON object of strings or dotenv NAME=value lines; a \
                                 later one's names override an earlier one's";

/// `--range`: what it decrypts, and exactly what it reads for that (`SeekableDecryptor` decrypts a file's
/// frames 1 MiB at a time; the S3 reader's windows stop at the range).
#[cfg(feature = "s3")]
const RANGE_HELP: &str = "Decrypt only plaintext bytes START to END, both included, or START- to the end. As in \
    an HTTP Range, an END past the plaintext stands for its end; a START past it is an error. Reads the header, \
    the final frame and the frames holding the range, and decrypts whole frames. From a file, 1 MiB of frames at \
    a time: up to 1 MiB of plaintext past END (or the rest of END's frame, if frames are longer) is also read, \
    verified and discarded, never written. From s3://BUCKET/KEY, a HeadObject, then ranged GETs of the header, \
    the final frame and the range's frames in windows of 8 MiB: nothing past END's frame. INPUT must be a file \
    or an S3 object; signed and non-framed messages are refused.";
#[cfg(not(feature = "s3"))]
const RANGE_HELP: &str = "Decrypt only plaintext bytes START to END, both included, or START- to the end. As in \
    an HTTP Range, an END past the plaintext stands for its end; a START past it is an error. Reads the header, \
    the final frame and the frames holding the range, and decrypts whole frames, 1 MiB of frames at a time: up \
    to 1 MiB of plaintext past END (or the rest of END's frame, if frames are longer) is also read, verified and \
    discarded, never written. INPUT must be a file; signed and non-framed messages are refused.";

/// `--version`: the crate version and the AES-GCM backend compiled in.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| format!("{} (AES-GCM: {})", env!("CARGO_PKG_VERSION"), kms_envelope::aes_gcm_backend()))
}

/// Encrypt and decrypt files in the AWS Encryption SDK message format.
#[derive(Parser, Debug)]
#[command(name = "kms-envelope", version = version(), about, after_help = exit_codes())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Encrypt INPUT (a file, -, or with --recursive a directory) into ESDK messages at OUTPUT.
    #[command(after_help = keys_help(Direction::Encrypt))]
    Encrypt(EncryptArgs),
    /// Decrypt ESDK messages; each output appears (mode 0600) only once its whole message verified.
    #[command(after_help = keys_help(Direction::Decrypt))]
    Decrypt(DecryptArgs),
    /// Print a message's header (suite, message id, frame length, encryption context, encrypted data keys)
    /// without any key and without calling KMS. The header is not authenticated by this.
    #[command(after_help = exit_codes())]
    Inspect(InspectArgs),
    /// Encrypt a whole directory as one message (a tar stream inside; see also unbundle).
    #[command(after_help = keys_help(Direction::Encrypt))]
    Bundle(BundleArgs),
    /// Decrypt a bundle into DIRECTORY, which appears (0700, files 0600) only once the message verified.
    #[command(after_help = keys_help(Direction::Decrypt))]
    Unbundle(UnbundleArgs),
    /// Re-encrypt messages under new keys with a fresh data key, in one pass: the output appears (0600) only
    /// once the whole source verified. The keys that unwrap the source are given as to decrypt; the new keys
    /// as to encrypt, each option prefixed with --new- (--new-kms-key, --new-raw-key-file, ...).
    #[command(after_help = reencrypt_help())]
    Reencrypt(Box<ReencryptArgs>),
    /// Decrypt FILE into a fresh directory on a memory filesystem, open it in $VISUAL or $EDITOR, and replace
    /// FILE by the edited text encrypted again (same suite, context and frame length, a fresh data key under
    /// the key flags' keys). Unchanged text writes nothing; the plaintext is wiped and removed in any case.
    #[command(after_help = edit_help())]
    Edit(EditArgs),
    /// Decrypt secrets messages (JSON or dotenv) into COMMAND's environment and execute it in this process:
    /// no file is written, and COMMAND's signals, exit status and stdio are its own.
    #[command(after_help = super::exec::help())]
    Exec(ExecArgs),
    /// Create a branch key for the Hierarchical keyring (prints its id), or make a new version of one the
    /// active one (prints the version), in a DynamoDB branch key store: the AWS Material Providers Library's
    /// layout, so every AWS Encryption SDK reads it.
    #[command(name = "branch-key", hide = !HIERARCHY)]
    BranchKey(BranchKeyArgs),
    /// Print the completion script for SHELL on stdout (the README's Install section says where it goes).
    Completions(CompletionsArgs),
    /// Print the man page, kms-envelope(1), on stdout as roff (every subcommand, its options and notes).
    Man,
}

/// What `branch-key` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BranchKeyAction {
    /// A new branch key: its first version, active.
    Create,
    /// A new version of --branch-key-id, made the active one; older versions still decrypt.
    Version,
}

#[derive(Args, Debug)]
pub struct BranchKeyArgs {
    /// create or version
    #[arg(value_enum)]
    pub action: BranchKeyAction,
    /// The DynamoDB table of the branch key store.
    #[arg(long, value_name = "TABLE")]
    pub table: String,
    /// The KMS key ARN the store's branch keys are encrypted under.
    #[arg(long = "kms-key", value_name = "ARN")]
    pub kms_key: String,
    /// The store's logical name (part of every branch key's KMS encryption context; give the same to
    /// encrypt and decrypt with --branch-key-logical-name).
    #[arg(long = "logical-name", value_name = "NAME")]
    pub logical_name: String,
    /// create: the new key's id (default: a random UUID; an id of your own needs --ec); version: the key.
    #[arg(long = "branch-key-id", value_name = "ID")]
    pub branch_key_id: Option<String>,
    /// create: a custom encryption context pair for the branch key, kept on all its versions (repeatable).
    #[arg(long = "ec", value_name = "KEY=VALUE")]
    pub ec: Vec<String>,
    /// create: create TABLE first if there is none (key schema branch-key-id, type; billed per request).
    #[arg(long = "create-table")]
    pub create_table: bool,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The "Keys:" and editor paragraphs of `edit --help`.
fn edit_help() -> String {
    let text = "Keys: given as to encrypt (--raw-key-file PATH --key-namespace NS --key-name NAME, --kms-key ID, ...): \
                they unwrap the message's data key and wrap the new one, so they must be able to wrap \
                (--kms-discovery alone is refused), and must cover every key the message's data key is wrapped \
                under (or --drop-key). Both are checked, with one throwaway data key, before the editor opens.\n\
                The plaintext goes to a fresh 0700 directory under $XDG_RUNTIME_DIR or /dev/shm when that is a tmpfs \
                or ramfs (else refused, unless --allow-disk: the system's temp directory), is read back by its path \
                once the editor exits (editors that save by rename work), then overwritten with zeros and removed, \
                on failure and on SIGHUP, SIGINT, SIGQUIT or SIGTERM too (not on SIGKILL).\n\
                The editor is $VISUAL, else $EDITOR, else vi, run much as git runs it: sh -c 'exec $EDITOR \"$@\"'. vim and \
                neovim get -n -i NONE and 'set nobackup nowritebackup noundofile noswapfile viminfo='; other \
                editors' swap, backup, undo and history files, and the terminal's scrollback, are theirs to keep: \
                configure them. While the editor runs, Ctrl-C is the editor's; SIGTERM or SIGHUP is passed on to it \
                and ends the edit.\n\
                A message that held a JSON object of strings (a secrets message) must still hold one: otherwise, \
                on a terminal, edit asks to open the editor again; elsewhere it fails (exit 1). An editor that \
                exits non-zero or is killed leaves FILE as it was (exit 4), as does a FILE (or S3 \
                object: its ETag) that someone else changed while the editor ran: theirs stays, the edit is lost.";
    format!("{}\n\n{}", wrap(text, HELP_WIDTH), exit_codes())
}

/// The "Keys:" paragraph of `reencrypt --help`.
fn reencrypt_help() -> String {
    let text = "Keys: the source's keys are given as to decrypt (--raw-key-file, --kms-key, --kms-discovery, ...) and \
                are only asked to unwrap; the new keys as to encrypt, prefixed --new- (--new-raw-key-file PATH \
                --new-key-namespace NS --new-key-name NAME, --new-kms-key ID, ...): the first generates the new data \
                key. The same key may appear on both sides: a new data key is made either way.\nThe new message keeps \
                the source's encryption context (required pairs given with --context stay required), adds \
                --new-context pairs, and uses the committing suite of the source's kind (0x0578 for a signed \
                source, 0x0478 otherwise) unless --suite says otherwise. Legacy (non-committing) sources are read \
                only with --commitment-policy require-encrypt-allow-decrypt.";
    format!("{}\n\n{}", wrap(text, HELP_WIDTH), exit_codes())
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

/// How much of a message `reencrypt --in-place` authenticates before it leaves it as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SkipCheckArg {
    /// The whole message: header, every frame and the signature (a full read, still one unwrap).
    Full,
    /// The header only (a small read): a body cut short or damaged after a good header is not noticed.
    Header,
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

/// Whether this build has the Hierarchical keyring's DynamoDB store (`--branch-key-*`, `branch-key`).
pub const HIERARCHY: bool = cfg!(feature = "hierarchy-ddb");

/// Whether this build has AWS KMS RSA keys (`--kms-rsa-key`): features `kms` and `rsa`.
pub const KMS_RSA: bool = cfg!(all(feature = "kms", feature = "rsa"));

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
    #[arg(long = "kms-key", value_name = "ID", hide = !cfg!(feature = "kms"))]
    pub kms_key: Vec<String>,
    /// RSA public key (PEM: PUBLIC KEY or RSA PUBLIC KEY) to wrap the data key with; encrypt only. Takes a
    /// --key-namespace and --key-name like a raw AES key (repeatable).
    #[arg(long = "rsa-public-key", value_name = "PEM", hide = !cfg!(feature = "rsa"))]
    pub rsa_public_key: Vec<PathBuf>,
    /// RSA private key (PEM: PRIVATE KEY or RSA PRIVATE KEY): decrypts, and encrypts with its public half.
    /// Takes a --key-namespace and --key-name like a raw AES key (repeatable).
    #[arg(long = "rsa-private-key", value_name = "PEM", hide = !cfg!(feature = "rsa"))]
    pub rsa_private_key: Vec<PathBuf>,
    /// RSA padding of every RSA key: oaep-sha256, oaep-sha1, oaep-sha384, oaep-sha512 or pkcs1 (decrypt
    /// only: reads old messages; encrypting with it is refused). It is not recorded in the message: decrypt
    /// with the padding the message was encrypted with.
    #[arg(long = "rsa-padding", value_name = "PADDING", default_value = "oaep-sha256", hide = !cfg!(feature = "rsa"))]
    pub rsa_padding: String,
    /// AWS KMS RSA key (key ARN of an RSA key for ENCRYPT_DECRYPT): encrypt locally with its public key,
    /// decrypt with KMS Decrypt (repeatable). Unsigned suites only.
    #[arg(long = "kms-rsa-key", value_name = "ARN", hide = !KMS_RSA)]
    pub kms_rsa_key: Vec<String>,
    /// The public key (PEM) of the --kms-rsa-key at the same position, so encrypt needs no AWS access
    /// (without it, encrypt calls GetPublicKey). Give one for each --kms-rsa-key, or none.
    #[arg(long = "kms-rsa-public-key", value_name = "PEM", hide = !KMS_RSA)]
    pub kms_rsa_public_key: Vec<PathBuf>,
    /// KMS encryption algorithm of every --kms-rsa-key: RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1.
    #[arg(long = "kms-rsa-algorithm", value_name = "ALG", default_value = "RSAES_OAEP_SHA_256", hide = !KMS_RSA)]
    pub kms_rsa_algorithm: String,
    /// AWS KMS grant token sent with every KMS call these keys make (discovery included), for a grant not
    /// yet in effect everywhere (repeatable, at most 10). Never printed, but visible in the process list.
    #[arg(long = "grant-token", value_name = "TOKEN", value_parser = parse_grant_token, hide = !cfg!(feature = "kms"))]
    pub grant_token: Vec<GrantToken>,
    /// An ECDH key (raw or AWS KMS), tried after the keys above.
    #[command(flatten)]
    pub ecdh: EcdhArgs,
    /// Hierarchical keyring: the branch key id, in the DynamoDB branch key store --branch-key-table whose
    /// keys are encrypted under --branch-key-kms. Wraps each data key locally under the branch key, which is
    /// fetched once per --branch-key-cache-ttl (one GetItem and one KMS Decrypt).
    #[arg(long = "branch-key-id", value_name = "ID", requires_all = ["branch_key_table", "branch_key_kms"], hide = !HIERARCHY)]
    pub branch_key_id: Option<String>,
    /// The DynamoDB table of the branch key store of --branch-key-id.
    #[arg(long = "branch-key-table", value_name = "TABLE", requires = "branch_key_id", hide = !HIERARCHY)]
    pub branch_key_table: Option<String>,
    /// The KMS key ARN the branch keys of --branch-key-table are encrypted under.
    #[arg(long = "branch-key-kms", value_name = "ARN", requires = "branch_key_id", hide = !HIERARCHY)]
    pub branch_key_kms: Option<String>,
    /// The branch key store's logical name (part of every branch key's KMS encryption context); default:
    /// the table's name.
    #[arg(long = "branch-key-logical-name", value_name = "NAME", requires = "branch_key_id", hide = !HIERARCHY)]
    pub branch_key_logical_name: Option<String>,
    /// How long a fetched branch key is used before it is fetched again.
    #[arg(long = "branch-key-cache-ttl", value_name = "SECONDS", default_value_t = 600, requires = "branch_key_id",
          value_parser = clap::value_parser!(u64).range(1..), hide = !HIERARCHY)]
    pub branch_key_cache_ttl: u64,
    /// The keys above in command-line order (filled in from the matches, not parsed).
    #[arg(skip)]
    pub order: Vec<KeySource>,
    /// The local keys (raw AES and RSA) in command-line order (filled in from the matches).
    #[arg(skip)]
    pub local_order: Vec<(LocalKind, usize)>,
    /// What the options above are prefixed with on the command line: nothing, or `new-` for reencrypt's
    /// new keys, so that an error names the option the user typed.
    #[arg(skip)]
    pub flag_prefix: &'static str,
}

/// Whether this build has the ECDH keyrings (`--ecdh-*`): feature `aws-lc` (on with `kms` or `rsa`).
pub const ECDH: bool = cfg!(feature = "aws-lc");

/// A curve of the ECDH keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EcdhCurveArg {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
    /// NIST P-521.
    P521,
}

impl From<EcdhCurveArg> for kms_envelope::EcdhCurve {
    fn from(curve: EcdhCurveArg) -> Self {
        match curve {
            EcdhCurveArg::P256 => kms_envelope::EcdhCurve::P256,
            EcdhCurveArg::P384 => kms_envelope::EcdhCurve::P384,
            EcdhCurveArg::P521 => kms_envelope::EcdhCurve::P521,
        }
    }
}

/// One ECDH key agreement (the AWS Material Providers Library's raw ECDH and AWS KMS ECDH keyrings), on
/// one curve. Encrypt: `--ecdh-private` and `--ecdh-peer-public` (static: the recipient can tell who wrote
/// it), `--ecdh-ephemeral` with `--ecdh-peer-public` (anonymous), or `--kms-ecdh-key` with
/// `--ecdh-peer-public`. Decrypt: `--ecdh-private` (or `--kms-ecdh-key`) with the expected sender's
/// `--ecdh-sender-public` (sender authentication), or with `--ecdh-discovery` (any sender).
#[derive(Args, Clone, Debug, Default)]
pub struct EcdhArgs {
    /// Curve of every ECDH key: p256, p384 or p521.
    #[arg(long = "ecdh-curve", value_name = "CURVE", value_enum, hide = !ECDH)]
    pub ecdh_curve: Option<EcdhCurveArg>,
    /// Our ECDH private key (PEM: PRIVATE KEY or EC PRIVATE KEY).
    #[arg(long = "ecdh-private", value_name = "PEM-FILE", hide = !ECDH)]
    pub ecdh_private: Option<PathBuf>,
    /// The other party's ECDH public key (PEM PUBLIC KEY or DER SubjectPublicKeyInfo): on encrypt the
    /// recipient's; on decrypt the expected sender's, and only messages it wrote are read (alias
    /// --ecdh-sender-public).
    #[arg(long = "ecdh-peer-public", visible_alias = "ecdh-sender-public", value_name = "FILE", hide = !ECDH)]
    pub ecdh_peer_public: Option<PathBuf>,
    /// Encrypt from a fresh key pair per message to --ecdh-peer-public: anonymous, no private key needed.
    #[arg(long = "ecdh-ephemeral", hide = !ECDH)]
    pub ecdh_ephemeral: bool,
    /// Decrypt every ECDH message to our key, whoever the sender (no sender authentication).
    #[arg(long = "ecdh-discovery", hide = !ECDH)]
    pub ecdh_discovery: bool,
    /// AWS KMS ECDH key (key ARN of a KEY_AGREEMENT key): our private key, in KMS (DeriveSharedSecret).
    #[arg(long = "kms-ecdh-key", value_name = "ARN", conflicts_with = "ecdh_private", hide = !cfg!(feature = "kms"))]
    pub kms_ecdh_key: Option<String>,
}

impl EcdhArgs {
    /// Whether any ECDH option was given.
    pub fn any(&self) -> bool {
        self.ecdh_curve.is_some()
            || self.ecdh_private.is_some()
            || self.ecdh_peer_public.is_some()
            || self.ecdh_ephemeral
            || self.ecdh_discovery
            || self.kms_ecdh_key.is_some()
    }
}

/// A KMS grant token as given on the command line. Its `Debug` shows no more than that there is one, so
/// that no dump of the arguments prints it.
#[derive(Clone)]
// Read only to send it to KMS: a build without `kms` refuses the flag instead.
pub struct GrantToken(#[cfg_attr(not(feature = "kms"), allow(dead_code))] pub String);

impl std::fmt::Debug for GrantToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrantToken(..)")
    }
}

/// Any text: whether it can be a grant token is checked with the others, by the library, before any call,
/// in an error that names the token by its position (clap's would quote it).
fn parse_grant_token(s: &str) -> Result<GrantToken, std::convert::Infallible> {
    Ok(GrantToken(s.to_owned()))
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
    /// The option `--NAME` as spelled on the command line (`--new-NAME` for reencrypt's new keys).
    pub fn flag(&self, name: &str) -> String {
        format!("--{}{name}", self.flag_prefix)
    }

    /// Every key file named on the command line (raw AES keys, RSA keys, KMS RSA public keys).
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.raw_key_file
            .iter()
            .chain(&self.rsa_public_key)
            .chain(&self.rsa_private_key)
            .chain(&self.kms_rsa_public_key)
            .chain(&self.ecdh.ecdh_private)
            .chain(&self.ecdh.ecdh_peer_public)
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
            let (namespaces, names) = (self.key_namespace.len(), self.key_name.len());
            let keys = match (cfg!(feature = "rsa"), self.flag_prefix.is_empty()) {
                (true, true) => "each --raw-key-file, --rsa-public-key and --rsa-private-key".to_owned(),
                (true, false) => format!("each {} and {}", self.flag("raw-key-file"), self.flag("rsa-public-key")),
                (false, _) => format!("each {}", self.flag("raw-key-file")),
            };
            let (namespace, name) = (self.flag("key-namespace"), self.flag("key-name"));
            return Err(Failure::usage(format!(
                "{keys} needs one {namespace} and one {name} (got {n} {}, {namespaces} {}, {names} {})",
                super::plural(n, "key", "keys"),
                super::plural(namespaces, "namespace", "namespaces"),
                super::plural(names, "name", "names"),
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
        self.record_order_of(matches, "");
    }

    /// [`record_order`](Self::record_order) for the arguments whose ids carry `prefix`.
    fn record_order_of(&mut self, matches: &ArgMatches, prefix: &str) {
        let positions = |id: &str| -> Vec<usize> {
            let id = format!("{prefix}{id}");
            let id = id.as_str();
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

/// Data-key caching over the files (or objects) of one `--recursive` run, for encrypt and reencrypt.
#[derive(Args, Debug)]
pub struct CacheArgs {
    /// With --recursive: reuse one (new) data key across files for up to SECONDS (one KMS call per data key,
    /// not per file). Off by default, since files that share a data key are linked: whoever can decrypt one
    /// file's data key can decrypt them all. Signed suites make a data key per file whatever this says.
    #[arg(long, value_name = "SECONDS", requires = "recursive", value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_max_age: Option<u64>,
    /// With --cache-max-age: at most N files per data key (default 2^32).
    #[arg(long, value_name = "N", requires = "cache_max_age", value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
    pub cache_max_messages: Option<u64>,
}

/// The new keys of `reencrypt`: [`KeyArgs`] with every option prefixed `--new-`.
#[derive(Args, Debug)]
pub struct NewKeyArgs {
    /// File holding a raw AES key to wrap the new data key with (as --raw-key-file; repeatable).
    #[arg(long = "new-raw-key-file", value_name = "PATH")]
    pub new_raw_key_file: Vec<PathBuf>,
    /// How every --new-raw-key-file holds its key: raw, hex or base64.
    #[arg(long = "new-key-encoding", value_name = "ENCODING", value_enum, default_value_t = KeyEncoding::Raw)]
    pub new_key_encoding: KeyEncoding,
    /// Key namespace of the new raw or RSA key at the same position.
    #[arg(long = "new-key-namespace", value_name = "NS")]
    pub new_key_namespace: Vec<String>,
    /// Key name of the new raw or RSA key at the same position.
    #[arg(long = "new-key-name", value_name = "NAME")]
    pub new_key_name: Vec<String>,
    /// New AWS KMS key: key ARN, key id, alias name or alias ARN (repeatable).
    #[arg(long = "new-kms-key", value_name = "ID", hide = !cfg!(feature = "kms"))]
    pub new_kms_key: Vec<String>,
    /// New RSA public key (PEM) to wrap the new data key with (repeatable).
    #[arg(long = "new-rsa-public-key", value_name = "PEM", hide = !cfg!(feature = "rsa"))]
    pub new_rsa_public_key: Vec<PathBuf>,
    /// RSA padding of every new RSA key (default oaep-sha256).
    #[arg(long = "new-rsa-padding", value_name = "PADDING", default_value = "oaep-sha256", hide = !cfg!(feature = "rsa"))]
    pub new_rsa_padding: String,
    /// New AWS KMS RSA key (key ARN): wraps locally with its public key (repeatable).
    #[arg(long = "new-kms-rsa-key", value_name = "ARN", hide = !KMS_RSA)]
    pub new_kms_rsa_key: Vec<String>,
    /// The public key (PEM) of the --new-kms-rsa-key at the same position (without it, GetPublicKey).
    #[arg(long = "new-kms-rsa-public-key", value_name = "PEM", hide = !KMS_RSA)]
    pub new_kms_rsa_public_key: Vec<PathBuf>,
    /// KMS encryption algorithm of every --new-kms-rsa-key: RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1.
    #[arg(long = "new-kms-rsa-algorithm", value_name = "ALG", default_value = "RSAES_OAEP_SHA_256", hide = !KMS_RSA)]
    pub new_kms_rsa_algorithm: String,
    /// AWS KMS grant token sent with every KMS call of the new keys (repeatable, at most 10); --grant-token
    /// goes with the source's keys only.
    #[arg(long = "new-grant-token", value_name = "TOKEN", value_parser = parse_grant_token,
          hide = !cfg!(feature = "kms"))]
    pub new_grant_token: Vec<GrantToken>,
    /// The keys as [`KeyArgs`], in command-line order (filled in from the matches).
    #[arg(skip)]
    pub ordered: Option<KeyArgs>,
}

impl NewKeyArgs {
    /// These keys as encrypt's [`KeyArgs`], with their command-line order.
    fn record_order(&mut self, matches: &ArgMatches) {
        let mut keys = KeyArgs {
            raw_key_file: self.new_raw_key_file.clone(),
            key_encoding: self.new_key_encoding,
            key_namespace: self.new_key_namespace.clone(),
            key_name: self.new_key_name.clone(),
            kms_key: self.new_kms_key.clone(),
            rsa_public_key: self.new_rsa_public_key.clone(),
            rsa_private_key: Vec::new(),
            rsa_padding: self.new_rsa_padding.clone(),
            kms_rsa_key: self.new_kms_rsa_key.clone(),
            kms_rsa_public_key: self.new_kms_rsa_public_key.clone(),
            kms_rsa_algorithm: self.new_kms_rsa_algorithm.clone(),
            grant_token: self.new_grant_token.clone(),
            ecdh: EcdhArgs::default(),
            branch_key_id: None,
            branch_key_table: None,
            branch_key_kms: None,
            branch_key_logical_name: None,
            branch_key_cache_ttl: 600,
            order: Vec::new(),
            local_order: Vec::new(),
            flag_prefix: "new-",
        };
        keys.record_order_of(matches, "new_");
        self.ordered = Some(keys);
    }

    /// The new keys as encrypt takes them.
    pub fn keys(&self) -> &KeyArgs {
        self.ordered.as_ref().expect("recorded by Cli::parse_with_order")
    }
}

/// AWS KMS discovery (decrypt only).
#[derive(Args, Debug)]
pub struct DiscoveryArgs {
    /// Let AWS KMS decrypt under whichever key the message names. Limit it with --account: without a
    /// filter, whoever wrote the message chooses the key.
    #[arg(long, hide = !cfg!(feature = "kms"))]
    pub kms_discovery: bool,
    /// With --kms-discovery: only keys of this AWS account (repeatable).
    #[arg(long = "account", value_name = "ID", requires = "kms_discovery", hide = !cfg!(feature = "kms"))]
    pub account: Vec<String>,
    /// With --account: the AWS partition of the accounts (default: the configured region's, usually aws).
    #[arg(long, value_name = "PARTITION", requires = "account", hide = !cfg!(feature = "kms"))]
    pub partition: Option<String>,
    /// With --kms-discovery: a region discovery calls KMS in (repeatable; default: the configured region,
    /// AWS_REGION, only). A multi-Region key is decrypted by its replica in each region given, in order; a
    /// single-Region key only if it is in one of them. No other region is ever called.
    #[arg(long = "kms-region", value_name = "REGION", requires = "kms_discovery", value_parser = parse_region,
          hide = !cfg!(feature = "kms"))]
    pub kms_region: Vec<Region>,
}

/// A `--kms-region`: the one region grammar of the library ([`Region::parse`]), checked as the argument is
/// parsed, since a region chooses a network endpoint (`kms.REGION.amazonaws.com`).
fn parse_region(s: &str) -> Result<Region, String> {
    Region::parse(s).map_err(|e| e.to_string())
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
    /// Algorithm suite id, in hex with 0x as inspect prints it: 0x0478 (default; AES-256-GCM, HKDF-SHA512, key
    /// commitment), 0x0578 (the same and an ECDSA P-384 signature); without key commitment (needs
    /// --commitment-policy forbid-encrypt-allow-decrypt) 0x0014, 0x0046, 0x0078, 0x0114, 0x0146, 0x0178,
    /// 0x0214, 0x0346, 0x0378.
    #[arg(long, value_name = "ID", value_parser = parse_suite)]
    pub suite: Option<Suite>,
    /// Commitment policy: require-encrypt-require-decrypt (default), require-encrypt-allow-decrypt (the same
    /// when encrypting), or forbid-encrypt-allow-decrypt (for the suites without key commitment).
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
    /// Commitment policy: require-encrypt-require-decrypt (default; only messages with key commitment), or
    /// require-encrypt-allow-decrypt or forbid-encrypt-allow-decrypt for legacy (non-committing) messages too.
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

/// `--armor`: the message as base64 text (see `kms_envelope::stream::armor`).
#[derive(Args, Debug, Clone, Copy)]
pub struct ArmorArgs {
    // Write the message as base64 text, for YAML, JSON or a CI variable.
    #[arg(long, help = ARMOR_HELP)]
    pub armor: bool,
}

/// `--metadata-output` (encrypt, decrypt): audit records, as `aws-encryption-cli --metadata-output` writes them.
#[derive(Args, Debug, Clone)]
pub struct MetadataArgs {
    /// Append one JSON line per message to FILE (- for stdout, unless OUTPUT is - too): mode, input, output,
    /// and the header's message id, algorithm, encryption context, wrapping keys (provider id and key info
    /// in base64, key_id as text) and frame length, with aws-encryption-cli's field names. Never plaintext or
    /// a data key. decrypt writes a message's line only once it verified; a message that fails has none.
    #[arg(long, value_name = "FILE", value_parser = Location::parse)]
    pub metadata_output: Option<Location>,
    /// With --metadata-output FILE: replace FILE rather than append to it.
    #[arg(long, requires = "metadata_output")]
    pub overwrite_metadata: bool,
}

/// How `s3://` objects are moved: the size of each part uploaded and each ranged GET, and how many are in
/// flight. Memory for the transfer is about (N + 2) x SIZE.
#[cfg(feature = "s3")]
#[derive(Args, Debug, Clone, Copy)]
pub struct S3Args {
    /// With an s3:// INPUT or OUTPUT: the size of each multipart part uploaded and of each ranged GET, from
    /// 5MiB to 5GiB (16MiB, 8M, or bytes; units are binary) [default: 8MiB; a file whose message would
    /// need more than 10 000 parts gets larger ones]
    #[arg(long, value_name = "SIZE", value_parser = kms_envelope::s3::parse_part_size)]
    pub s3_part_size: Option<usize>,
    /// With an s3:// INPUT or OUTPUT: requests in flight at once, from 1 to 64 [default: 16]. Memory is about
    /// (N + 2) x the part size
    #[arg(long, value_name = "N", value_parser = kms_envelope::s3::parse_concurrency)]
    pub s3_concurrency: Option<usize>,
}

#[cfg(feature = "s3")]
impl S3Args {
    /// The transfer options these flags choose: the part size sets the ranged GETs' size too.
    pub fn transfer(&self) -> kms_envelope::s3::TransferOptions {
        let mut transfer = kms_envelope::s3::TransferOptions::new();
        if let Some(bytes) = self.s3_part_size {
            transfer = transfer.part_size(bytes).chunk_size(bytes);
        }
        if let Some(requests) = self.s3_concurrency {
            transfer = transfer.concurrency(requests);
        }
        transfer
    }
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
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub armor: ArmorArgs,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    #[cfg(feature = "s3")]
    #[command(flatten)]
    pub s3: S3Args,
    /// Plaintext file, - for stdin, or a directory with --recursive.
    #[arg(value_parser = Location::parse)]
    pub input: Location,
    // Message file, - for stdout, s3://BUCKET/KEY with `s3`, or a directory with --recursive.
    #[arg(help = ENCRYPT_OUTPUT_HELP, value_parser = Location::parse)]
    pub output: Location,
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
    // Plaintext bytes START to END of the message, and what is read for them.
    #[arg(long, value_name = "START-END", conflicts_with = "recursive", value_parser = parse_range, help = RANGE_HELP)]
    pub range: Option<PlaintextRange>,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    #[cfg(feature = "s3")]
    #[command(flatten)]
    pub s3: S3Args,
    // Message file, - for stdin, s3://BUCKET/KEY with `s3`, or a directory with --recursive.
    #[arg(help = DECRYPT_INPUT_HELP, value_parser = Location::parse)]
    pub input: Location,
    /// Plaintext file, - for stdout (which receives each frame once it verified; discard it on failure), or
    /// a directory with --recursive.
    #[arg(value_parser = Location::parse)]
    pub output: Location,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Refuse headers with more encrypted data keys than N.
    #[arg(long, value_name = "N")]
    pub max_encrypted_data_keys: Option<u16>,
    // Message file, - for stdin, or s3://BUCKET/KEY with `s3`. Only the header is read.
    #[arg(help = INSPECT_INPUT_HELP, value_parser = Location::parse)]
    pub input: Location,
}

#[derive(Args, Debug)]
pub struct BundleArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub settings: EncryptSettings,
    #[command(flatten)]
    pub output_args: OutputArgs,
    #[cfg(feature = "s3")]
    #[command(flatten)]
    pub s3: S3Args,
    /// Directory to pack: regular files and directories only (symlinks and special files are refused).
    pub directory: PathBuf,
    // Message file, - for stdout, or s3://BUCKET/KEY with `s3`.
    #[arg(help = BUNDLE_OUTPUT_HELP, value_parser = Location::parse)]
    pub output: Location,
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
    #[cfg(feature = "s3")]
    #[command(flatten)]
    pub s3: S3Args,
    // Bundle message file, - for stdin, or s3://BUCKET/KEY with `s3`.
    #[arg(help = UNBUNDLE_INPUT_HELP, value_parser = Location::parse)]
    pub input: Location,
    /// Directory to create; an existing one is replaced only with --force.
    pub directory: PathBuf,
}

#[derive(Args, Debug)]
pub struct ReencryptArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    #[command(flatten)]
    pub new_keys: NewKeyArgs,
    /// Encryption context pair the source must have: stored in its header, or a required pair it
    /// authenticates (which stays required in the new message) (repeatable).
    #[arg(long = "context", value_name = "K=V", value_parser = parse_pair)]
    pub context: Vec<(String, String)>,
    /// Commitment policy for reading the source: require-encrypt-require-decrypt (default; committing
    /// sources only), or require-encrypt-allow-decrypt to upgrade legacy (non-committing) messages.
    #[arg(long, value_name = "POLICY", default_value = "require-encrypt-require-decrypt", value_parser = parse_policy)]
    pub commitment_policy: Policy,
    /// Refuse sources with more encrypted data keys than N, before any KMS call.
    #[arg(long, value_name = "N", default_value_t = kms_envelope::RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS)]
    pub max_encrypted_data_keys: u16,
    /// Encryption context pair added to the kept context of the new message (repeatable).
    #[arg(long = "new-context", value_name = "K=V", value_parser = parse_pair)]
    pub new_context: Vec<(String, String)>,
    /// Required pair added to the new message: authenticated, not stored (repeatable).
    #[arg(long = "new-require-context", value_name = "K=V", value_parser = parse_pair)]
    pub new_require_context: Vec<(String, String)>,
    /// Do not keep the source's encryption context: the new message has the --new-context and
    /// --new-require-context pairs alone.
    #[arg(long)]
    pub replace_context: bool,
    /// Suite of the new message, in hex as inspect prints it (default: 0x0578 for a signed source, 0x0478
    /// otherwise). A signed source becomes unsigned only this way.
    #[arg(long, value_name = "ID", value_parser = parse_suite)]
    pub suite: Option<Suite>,
    /// Plaintext bytes per frame of the new message.
    #[arg(long, value_name = "N", default_value_t = kms_envelope::stream::DEFAULT_FRAME_LENGTH,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub frame_length: u32,
    /// Threads opening and sealing frames (default: the available cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    #[command(flatten)]
    pub output_args: OutputArgs,
    /// Replace each INPUT file by its re-encryption (atomically, once it verified); no OUTPUT. A message
    /// the new keys already open, with exactly their data keys and the target suite and context, is left as
    /// it is (say so with --force to re-encrypt it anyway), so a retried run does no work twice.
    #[arg(long)]
    pub in_place: bool,
    /// INPUT is a directory: re-encrypt each file below it, into OUTPUT (a directory mirroring the tree, the
    /// same names) or with --in-place. Or INPUT is s3://BUCKET/PREFIX/ (ending in /; s3://BUCKET/ for the
    /// whole bucket): each object under it, into the same relative key under OUTPUT's s3://BUCKET/PREFIX/
    /// (which must not overlap INPUT's) or with --in-place; empty keys ending in / (folder markers) skipped.
    #[arg(long, short)]
    pub recursive: bool,
    /// With --in-place, before the skip of a message already under the new keys: also unwrap each of its
    /// data keys with the new keys (one KMS call per key), not just one.
    #[arg(long, requires = "in_place")]
    pub verify_all_keys: bool,
    /// With --in-place: how much of a message already under the new keys is authenticated before it is
    /// left as it is: full (every frame and the signature: "left as it is" then means it decrypts) or
    /// header (the header alone, a small read). Default: full.
    #[arg(long, value_name = "CHECK", value_enum, requires = "in_place")]
    pub skip_check: Option<SkipCheckArg>,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Print what would change, from each source's header, which is not authenticated by this (no key is
    /// used, nothing is written).
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub armor: ArmorArgs,
    #[cfg(feature = "s3")]
    #[command(flatten)]
    pub s3: S3Args,
    /// Message file, - for stdin, s3://BUCKET/KEY, or a directory or s3://BUCKET/PREFIX/ with --recursive.
    #[arg(value_parser = Location::parse)]
    pub input: Location,
    /// Message file to write, - for stdout, s3://BUCKET/KEY, or a directory or s3://BUCKET/PREFIX/ with
    /// --recursive; absent with --in-place.
    #[arg(required_unless_present_any = ["in_place", "dry_run"], conflicts_with = "in_place",
          value_parser = Location::parse)]
    pub output: Option<Location>,
}

/// `edit`.
#[derive(Args, Debug)]
pub struct EditArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    /// Commitment policy for reading FILE: require-encrypt-require-decrypt (default), or
    /// require-encrypt-allow-decrypt to edit a legacy (non-committing) message, which is then written under
    /// the committing suite of its kind (0x0478, or 0x0578 if signed).
    #[arg(long, value_name = "POLICY", default_value = "require-encrypt-require-decrypt", value_parser = parse_policy)]
    pub commitment_policy: Policy,
    /// Write the plaintext to the system's temp directory when no memory filesystem ($XDG_RUNTIME_DIR,
    /// /dev/shm) is there. It is overwritten and removed afterwards, but a disk (and its snapshots, journal
    /// or wear levelling) may keep copies.
    #[arg(long)]
    pub allow_disk: bool,
    /// Write the edited message even though the key flags leave out keys the message's data key was wrapped
    /// under (whoever held only those can no longer decrypt it).
    #[arg(long)]
    pub drop_key: bool,
    #[cfg(feature = "s3")]
    #[command(flatten)]
    pub s3: S3Args,
    /// Message file to edit (replaced atomically), or s3://BUCKET/KEY (replaced only if its ETag is unchanged).
    #[arg(value_parser = Location::parse)]
    pub file: Location,
}

/// `exec`: secrets into a command's environment.
#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    #[command(flatten)]
    pub settings: DecryptSettings,
    /// Let the secrets replace variables already set (by default a variable already in the environment
    /// wins over a secret of the same name).
    #[arg(long = "override")]
    pub override_existing: bool,
    /// Let the secrets set NAME although the deny-list refuses it (LD_*, PATH, AWS_*, ...; see below)
    /// (repeatable).
    #[arg(long = "allow-name", value_name = "NAME")]
    pub allow_name: Vec<String>,
    /// Accept secrets whose data key was unwrapped by a key that anyone can encrypt to: an RSA key
    /// (--rsa-private-key, --kms-rsa-key: encrypting needs only the public key) or --kms-discovery without
    /// --account. Refused by default, since whoever writes the secrets chooses COMMAND's environment.
    #[arg(long)]
    pub allow_public_key_writers: bool,
    // Secrets messages: files, or s3://BUCKET/KEY with `s3`.
    #[arg(required = true, value_name = "SECRETS", help = EXEC_SECRETS_HELP, value_parser = Location::parse)]
    pub secrets: Vec<Location>,
    /// The command to execute, after --, and its arguments (looked up in PATH).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

impl Command {
    /// The `--s3-*` flags of a subcommand that moves S3 objects.
    #[cfg(feature = "s3")]
    pub fn s3_args(&self) -> Option<&S3Args> {
        match self {
            Command::Encrypt(a) => Some(&a.s3),
            Command::Decrypt(a) => Some(&a.s3),
            Command::Reencrypt(a) => Some(&a.s3),
            Command::Edit(a) => Some(&a.s3),
            Command::Bundle(a) => Some(&a.s3),
            Command::Unbundle(a) => Some(&a.s3),
            Command::Inspect(_) | Command::Exec(_) | Command::BranchKey(_) | Command::Completions(_) | Command::Man => {
                None
            }
        }
    }
}

impl Cli {
    /// Parses the process arguments (exiting with status 2 on a usage error) and records key order.
    pub fn parse_with_order() -> Self {
        let matches = Self::definition().try_get_matches().unwrap_or_else(|e| exit_escaped(&e));
        Self::from_matches_with_order(&matches).unwrap_or_else(|e| exit_escaped(&e))
    }

    /// The command line `matches` holds, with the order of its key flags recorded (tests parse their own
    /// command lines with it).
    pub fn from_matches_with_order(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        use clap::FromArgMatches;
        let mut cli = Self::from_arg_matches(matches)?;
        if let Some((_, sub)) = matches.subcommand() {
            match &mut cli.command {
                Command::Encrypt(a) => a.keys.record_order(sub),
                Command::Decrypt(a) => a.keys.record_order(sub),
                Command::Bundle(a) => a.keys.record_order(sub),
                Command::Unbundle(a) => a.keys.record_order(sub),
                Command::Edit(a) => a.keys.record_order(sub),
                Command::Reencrypt(a) => {
                    a.keys.record_order(sub);
                    a.new_keys.record_order(sub);
                }
                Command::Exec(a) => a.keys.record_order(sub),
                Command::Inspect(_) | Command::BranchKey(_) | Command::Completions(_) | Command::Man => {}
            }
        }
        Ok(cli)
    }
}

impl Cli {
    /// The command line's definition, as it parses and as `--help`, the completions and the man page show it.
    pub fn definition() -> clap::Command {
        use clap::CommandFactory;
        with_decrypt_help(Self::command())
    }
}

/// The help of the options that `decrypt` and `unbundle` share with `encrypt` and `bundle` (one struct for
/// both directions) but that mean something else there, or nothing.
fn with_decrypt_help(command: clap::Command) -> clap::Command {
    let force: [(&str, &str); 2] = [
        ("decrypt", "Replace outputs that exist (with --recursive, each output file that exists)"),
        ("unbundle", "Replace DIRECTORY if it exists (once the message verified)"),
    ];
    let command = command.mut_subcommand("reencrypt", |sub| {
        sub.mut_arg("force", |arg| arg.help("Replace OUTPUT (with --recursive, each output file) if it exists"))
            // The source's keys only unwrap.
            .mut_arg("rsa_public_key", |arg| arg.hide(true))
            .mut_arg("kms_rsa_public_key", |arg| arg.hide(true))
            .mut_arg("ecdh_ephemeral", |arg| arg.hide(true))
    });
    force.into_iter().fold(command, |command, (name, force)| {
        command.mut_subcommand(name, |sub| {
            sub.mut_arg("force", |arg| arg.help(force))
                // A public key wraps; it cannot unwrap (decrypt says so if one is given anyway).
                .mut_arg("rsa_public_key", |arg| arg.hide(true))
                // KMS Decrypt needs no public key.
                .mut_arg("kms_rsa_public_key", |arg| arg.hide(true))
                // An ephemeral key is gone once the message is written.
                .mut_arg("ecdh_ephemeral", |arg| arg.hide(true))
        })
    })
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaintextRange {
    pub start: u64,
    pub end: Option<u64>,
    /// The range as the user wrote it, for error messages.
    pub text: String,
}

impl PlaintextRange {
    /// The range as `start..end` (end excluded) in a plaintext of `plaintext_len` bytes. As in an HTTP range,
    /// an end past the plaintext is cut to its end; a start past the end is a usage error that quotes the
    /// range as given.
    pub fn within(&self, plaintext_len: u64) -> Result<(u64, u64), Failure> {
        if self.start > plaintext_len {
            return Err(Failure::usage(format!(
                "--range {}: starts outside the plaintext, which is {plaintext_len} bytes long",
                self.text
            )));
        }
        let end = self.end.map_or(plaintext_len, |end| end.saturating_add(1).min(plaintext_len));
        Ok((self.start, end))
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
    Ok(PlaintextRange { start, end, text: s.to_owned() })
}

/// A suite id as the ESDK specification and `inspect` write it: hexadecimal with `0x` (`0x0578`, or `0x578`).
/// Digits without `0x` are refused rather than guessed at: `578` is 0x0578 read as hex, 0x0242 as decimal.
fn parse_suite(s: &str) -> Result<Suite, String> {
    let known =
        || AlgorithmSuite::ALL.iter().map(|suite| format!("0x{:04X}", suite.id())).collect::<Vec<_>>().join(", ");
    let Some(digits) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) else {
        let meant = u16::from_str_radix(s, 16).ok().and_then(|id| AlgorithmSuite::from_id(id).ok());
        return Err(match meant {
            Some(suite) => {
                format!("suite ids are hexadecimal with 0x, as inspect prints them: did you mean 0x{:04X}?", suite.id())
            }
            None => format!("suite ids are hexadecimal with 0x, one of {}", known()),
        });
    };
    let id = u16::from_str_radix(digits, 16).map_err(|_| format!("not a hex suite id: {s:?}"))?;
    AlgorithmSuite::from_id(id).map(Suite).map_err(|e| format!("{e}; known suites: {}", known()))
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse().map(Policy).map_err(|e: kms_envelope::Error| e.to_string())
}
