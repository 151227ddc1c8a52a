//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kms_envelope::{AlgorithmSuite, CommitmentPolicy};

use super::exit::Failure;

const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  the message is invalid or fails to authenticate (nothing is left at OUTPUT)
  2  usage error
  3  key access failed (no keyring could decrypt a data key, KMS or credential errors)
  4  I/O error";

/// Encrypt and decrypt files in the AWS Encryption SDK message format.
#[derive(Parser, Debug)]
#[command(name = "kms-envelope", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Encrypt INPUT into an ESDK message at OUTPUT.
    #[command(after_help = EXIT_CODES)]
    Encrypt(EncryptArgs),
    /// Decrypt the ESDK message INPUT into OUTPUT, which appears only once the whole message verified.
    #[command(after_help = EXIT_CODES)]
    Decrypt(DecryptArgs),
}

/// Wrapping keys. A repeated triple builds a multi-keyring whose first key is the generator.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// File holding a raw AES wrapping key: exactly 16, 24 or 32 bytes.
    #[arg(long = "raw-key-file", value_name = "PATH")]
    pub raw_key_file: Vec<PathBuf>,
    /// Key namespace (the EDK provider id) of the raw key at the same position.
    #[arg(long = "key-namespace", value_name = "NS")]
    pub key_namespace: Vec<String>,
    /// Key name of the raw key at the same position.
    #[arg(long = "key-name", value_name = "NAME")]
    pub key_name: Vec<String>,
}

impl KeyArgs {
    pub fn raw_keys(&self) -> Result<Vec<(PathBuf, String, String)>, Failure> {
        let n = self.raw_key_file.len();
        if self.key_namespace.len() != n || self.key_name.len() != n {
            return Err(Failure::usage(format!(
                "each --raw-key-file needs one --key-namespace and one --key-name (got {n}, {}, {})",
                self.key_namespace.len(),
                self.key_name.len()
            )));
        }
        Ok(self
            .raw_key_file
            .iter()
            .zip(&self.key_namespace)
            .zip(&self.key_name)
            .map(|((p, ns), name)| (p.clone(), ns.clone(), name.clone()))
            .collect())
    }
}

#[derive(Args, Debug)]
pub struct EncryptArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
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
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// Plaintext file, or - for stdin.
    pub input: String,
    /// Message file, or - for stdout.
    pub output: String,
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Expected encryption context pair: must match the message, or be a required pair it authenticates.
    #[arg(long = "context", value_name = "K=V", value_parser = parse_pair)]
    pub context: Vec<(String, String)>,
    /// Fail unless K is among the --context pairs (repeatable).
    #[arg(long = "require-context-key", value_name = "K")]
    pub require_context_key: Vec<String>,
    /// Commitment policy; use require-encrypt-allow-decrypt for legacy (non-committing) messages.
    #[arg(long, value_name = "POLICY", default_value = "require-encrypt-require-decrypt", value_parser = parse_policy)]
    pub commitment_policy: Policy,
    /// Refuse messages with more encrypted data keys than N.
    #[arg(long, value_name = "N")]
    pub max_encrypted_data_keys: Option<u16>,
    /// Refuse messages whose frame length exceeds N bytes (default 16 MiB).
    #[arg(long, value_name = "N")]
    pub max_frame_length: Option<u32>,
    /// Refuse signed messages right after the header.
    #[arg(long)]
    pub unsigned_only: bool,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// Message file, or - for stdin.
    pub input: String,
    /// Plaintext file, or - for stdout (which receives each frame once it verified; discard it on failure).
    pub output: String,
}

#[derive(Clone, Copy, Debug)]
pub struct Suite(pub AlgorithmSuite);

#[derive(Clone, Copy, Debug)]
pub struct Policy(pub CommitmentPolicy);

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("expected K=V, got {s:?}"))
}

fn parse_suite(s: &str) -> Result<Suite, String> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    let id = u16::from_str_radix(digits, 16).map_err(|_| format!("not a hex suite id: {s:?}"))?;
    AlgorithmSuite::from_id(id).map(Suite).map_err(|e| e.to_string())
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse().map(Policy).map_err(|e: kms_envelope::Error| e.to_string())
}
