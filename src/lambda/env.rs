//! Configuration from environment variables, so a function needs no code to say what to decrypt where.
//!
//! | variable | meaning |
//! |---|---|
//! | `KMS_ENVELOPE_BUNDLES` | `source=destination` pairs, separated by commas or newlines. A source is a path (relative: under `$LAMBDA_TASK_ROOT`, then `/opt`) or `s3://bucket/key`; a destination ending in `/` is a directory bundle, else a file. Split at the last `=`, so S3 keys may hold `=` |
//! | `KMS_ENVELOPE_SECRETS` | optional: the source of a JSON secrets bundle, decrypted into memory only ([`load_secrets`](super::load_secrets)) |
//! | `KMS_ENVELOPE_KMS_KEY_ARN` | the KMS key (ARN) that wrapped the data keys; several separated by commas are tried in order. Multi-Region-key aware: an `mrk-` key's ARN also decrypts what its replicas in other regions wrapped, with a call in its own region |
//! | `KMS_ENVELOPE_KMS_DISCOVERY` | `true`: instead of naming keys, ask KMS to decrypt with whichever key each message names, limited to the accounts in `KMS_ENVELOPE_KMS_ACCOUNTS` (comma-separated account ids, or `*` for any account). MRK-aware discovery in the function's region (`AWS_REGION`), or in each region of `KMS_ENVELOPE_KMS_REGIONS` (comma-separated) in turn: a multi-Region key through its replica there, any other key only if it is in one of them |
//! | `KMS_ENVELOPE_KMS_GRANT_TOKENS` | optional: KMS grant tokens (comma-separated, at most 10) sent with every KMS call; never logged |
//! | `KMS_ENVELOPE_KMS_RSA_KEY_ARN` | instead of the two above: the ARN of a KMS RSA key (feature `rsa`) that wrapped the data keys with its public key (the AWS KMS RSA keyring); `KMS_ENVELOPE_KMS_RSA_ALGORITHM` is `RSAES_OAEP_SHA_256` (default) or `RSAES_OAEP_SHA_1` |
//! | `KMS_ENVELOPE_ECDH_CURVE`, `KMS_ENVELOPE_ECDH_PRIVATE_KEY_FILE`, `KMS_ENVELOPE_ECDH_SENDER_PUBLIC_KEY_FILE` | instead of KMS: the raw ECDH keyring (decrypt only). The curve (`p256`, `p384`, `p521`), our private key (a PEM file: `PRIVATE KEY` or `EC PRIVATE KEY`; a relative path is relative to the function's directory), and the expected sender's public key (PEM or DER SubjectPublicKeyInfo): only messages that sender wrote are read. Without the sender's key (unset: set but empty is refused), any sender's message to our key is read (`PublicKeyDiscovery`) |
//! | `KMS_ENVELOPE_ECDH_KMS_KEY_ARN`, `KMS_ENVELOPE_ECDH_KMS_PUBLIC_KEY_FILE` | instead of `KMS_ENVELOPE_ECDH_PRIVATE_KEY_FILE`: the AWS KMS ECDH keyring (decrypt only), with `KMS_ENVELOPE_ECDH_CURVE` and the sender pin as above. Our KMS key agreement key (its ARN) and its public key (PEM or DER SubjectPublicKeyInfo, as `aws kms get-public-key` gives it), so that the cold start makes no `GetPublicKey` call; one `DeriveSharedSecret` per message |
//! | `KMS_ENVELOPE_BRANCH_KEY_ID` | instead of the three above: the Hierarchical keyring (feature `hierarchy-ddb`) with this branch key, in the DynamoDB branch key store `KMS_ENVELOPE_BRANCH_KEY_TABLE` whose keys are encrypted under `KMS_ENVELOPE_BRANCH_KEY_KMS_KEY` (an ARN); `KMS_ENVELOPE_BRANCH_KEY_LOGICAL_NAME` (default: the table's name) and `KMS_ENVELOPE_BRANCH_KEY_CACHE_TTL` (seconds, default 600) |
//! | `KMS_ENVELOPE_CONTEXT` | the encryption context every bundle must carry: `k=v,k2=v2`, or a JSON object of strings |
//! | `KMS_ENVELOPE_ROOT` | where destinations go; default `/tmp` |
//! | `KMS_ENVELOPE_MAX_ENCRYPTED_DATA_KEYS` | refuse a message with more encrypted data keys than this, before any KMS call; default [`RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS`] (10) |
//! | `KMS_ENVELOPE_S3_PART_SIZE`, `KMS_ENVELOPE_S3_CONCURRENCY` | `s3://` sources (feature `s3`): the size of each ranged GET (`16MiB`, `8M`, bytes; 5 MiB to 5 GiB) and how many are in flight (1 to 64); default 8 MiB and 16, fewer in flight if their buffers, `(N + 2) x SIZE`, would take more than a quarter of the function's memory ([`transfer_options`]) |
//!
//! Exactly one of `KMS_ENVELOPE_KMS_KEY_ARN`, `KMS_ENVELOPE_KMS_DISCOVERY=true`,
//! `KMS_ENVELOPE_KMS_RSA_KEY_ARN`, `KMS_ENVELOPE_BRANCH_KEY_ID` and the `KMS_ENVELOPE_ECDH_*` variables must be set.

use std::path::PathBuf;
use std::sync::Arc;

use super::{BundleKind, BundleSpec, ColdStart, Source};
use crate::error::{Error, Result};
use crate::format::context::EncryptionContext;
use crate::format::limits::{DecryptLimits, RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS};
use crate::keyring::Keyring;
use crate::keyring::kms::{DiscoveryFilter, KmsClients, Region, check_grant_tokens};
use crate::stream::DecryptOptions;

/// `source=destination` pairs; a destination ending in `/` is a directory bundle.
pub const BUNDLES_VAR: &str = "KMS_ENVELOPE_BUNDLES";
/// The source of a JSON secrets bundle decrypted into memory.
pub const SECRETS_VAR: &str = "KMS_ENVELOPE_SECRETS";
/// Comma-separated KMS key ARNs for strict decryption.
pub const KEY_ARN_VAR: &str = "KMS_ENVELOPE_KMS_KEY_ARN";
/// `true` for discovery decryption.
pub const DISCOVERY_VAR: &str = "KMS_ENVELOPE_KMS_DISCOVERY";
/// The accounts discovery may use (comma-separated, or `*`).
pub const ACCOUNTS_VAR: &str = "KMS_ENVELOPE_KMS_ACCOUNTS";
/// The regions discovery calls (comma-separated; default: the configured region).
pub const REGIONS_VAR: &str = "KMS_ENVELOPE_KMS_REGIONS";
/// Grant tokens sent with every KMS call (comma-separated).
pub const GRANT_TOKENS_VAR: &str = "KMS_ENVELOPE_KMS_GRANT_TOKENS";
/// The KMS RSA key for the AWS KMS RSA keyring.
pub const RSA_KEY_ARN_VAR: &str = "KMS_ENVELOPE_KMS_RSA_KEY_ARN";
/// The KMS RSA key's encryption algorithm.
pub const RSA_ALGORITHM_VAR: &str = "KMS_ENVELOPE_KMS_RSA_ALGORITHM";
/// The curve of the raw ECDH keyring's keys.
pub const ECDH_CURVE_VAR: &str = "KMS_ENVELOPE_ECDH_CURVE";
/// The raw ECDH keyring's private key (PEM file).
pub const ECDH_PRIVATE_KEY_FILE_VAR: &str = "KMS_ENVELOPE_ECDH_PRIVATE_KEY_FILE";
/// The expected sender's public key (PEM or DER file) for the raw ECDH keyring: the sender pin.
pub const ECDH_SENDER_PUBLIC_KEY_FILE_VAR: &str = "KMS_ENVELOPE_ECDH_SENDER_PUBLIC_KEY_FILE";
/// Our KMS key agreement key (ARN) for the AWS KMS ECDH keyring, instead of a private key file.
pub const ECDH_KMS_KEY_ARN_VAR: &str = "KMS_ENVELOPE_ECDH_KMS_KEY_ARN";
/// That KMS key's public key (PEM or DER file), so that building the keyring calls no `GetPublicKey`.
pub const ECDH_KMS_PUBLIC_KEY_FILE_VAR: &str = "KMS_ENVELOPE_ECDH_KMS_PUBLIC_KEY_FILE";
/// The branch key of the Hierarchical keyring.
pub const BRANCH_KEY_ID_VAR: &str = "KMS_ENVELOPE_BRANCH_KEY_ID";
/// The DynamoDB table of its branch key store.
pub const BRANCH_KEY_TABLE_VAR: &str = "KMS_ENVELOPE_BRANCH_KEY_TABLE";
/// The KMS key (ARN) the store's branch keys are encrypted under.
pub const BRANCH_KEY_KMS_KEY_VAR: &str = "KMS_ENVELOPE_BRANCH_KEY_KMS_KEY";
/// The store's logical name (default: the table's name).
pub const BRANCH_KEY_LOGICAL_NAME_VAR: &str = "KMS_ENVELOPE_BRANCH_KEY_LOGICAL_NAME";
/// How long a fetched branch key is used, in seconds (default 600).
pub const BRANCH_KEY_CACHE_TTL_VAR: &str = "KMS_ENVELOPE_BRANCH_KEY_CACHE_TTL";
/// The expected encryption context.
pub const CONTEXT_VAR: &str = "KMS_ENVELOPE_CONTEXT";
/// The root destinations are relative to.
pub const ROOT_VAR: &str = "KMS_ENVELOPE_ROOT";
/// The most encrypted data keys a message may have.
pub const MAX_EDKS_VAR: &str = "KMS_ENVELOPE_MAX_ENCRYPTED_DATA_KEYS";
/// The variable in which Lambda gives the function's memory, in MB.
pub const FUNCTION_MEMORY_VAR: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";

/// The S3 transfer options of the Lambda decryptor and the batch function, read through `lookup`: those
/// [`PART_SIZE_VAR`](crate::s3::PART_SIZE_VAR) and [`CONCURRENCY_VAR`](crate::s3::CONCURRENCY_VAR) set, as
/// given; otherwise [`fitted_transfer_options`].
///
/// # Errors
///
/// [`Error::Config`] naming a variable whose value is refused.
#[cfg(feature = "s3")]
pub fn transfer_options(lookup: impl Fn(&str) -> Option<String>) -> Result<crate::s3::TransferOptions> {
    match crate::s3::TransferOptions::from_lookup(&lookup)? {
        Some(chosen) => Ok(chosen),
        None => Ok(fitted_transfer_options(lookup)),
    }
}

/// The default transfer options with fewer requests in flight if their buffers would take more than a
/// quarter of the function's memory ([`FUNCTION_MEMORY_VAR`], read through `lookup`; unset off Lambda):
/// 2 in flight at 128 MB, all 16 from 576 MB.
#[cfg(feature = "s3")]
pub fn fitted_transfer_options(lookup: impl Fn(&str) -> Option<String>) -> crate::s3::TransferOptions {
    let defaults = crate::s3::TransferOptions::new();
    match lookup(FUNCTION_MEMORY_VAR).and_then(|mb| mb.trim().parse::<usize>().ok()) {
        Some(mb) => defaults.within_memory(mb.saturating_mul(1 << 20) / 4),
        None => defaults,
    }
}

/// Which keys may unwrap the data keys.
///
/// Non-exhaustive: each new keyring the Lambda decryptor learns adds a variant.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KmsKeys {
    /// These keys, tried in order (MRK-aware strict keyrings: a replica of a multi-Region key matches).
    Strict(Vec<String>),
    /// Whichever key a message names, if it belongs to one of these accounts (`None`: any account), asked
    /// in these regions only (MRK-aware discovery).
    Discovery {
        /// Allowed account ids; `None` when configured as `*`.
        accounts: Option<Vec<String>>,
        /// The regions called, in order; empty: the configured region alone.
        regions: Vec<Region>,
    },
    /// A KMS RSA key (the AWS KMS RSA keyring): KMS `Decrypt` with this encryption algorithm.
    Rsa {
        /// The key ARN.
        arn: String,
        /// `RSAES_OAEP_SHA_256` or `RSAES_OAEP_SHA_1`.
        algorithm: String,
    },
    /// The raw ECDH keyring (no KMS): our private key, and the expected sender's public key (the sender
    /// pin) or none (any sender: `PublicKeyDiscovery`). The files are read when the keyring is built.
    Ecdh {
        /// The keys' curve.
        curve: crate::format::ecdh::EcdhCurve,
        /// Our private key, PEM.
        private_key_file: PathBuf,
        /// The expected sender's public key, PEM or DER; `None`: any sender.
        sender_public_key_file: Option<PathBuf>,
    },
    /// The AWS KMS ECDH keyring: our KMS key agreement key and its public key, and the expected sender's
    /// public key (the sender pin) or none (any sender: `KmsPublicKeyDiscovery`). The files are read when
    /// the keyring is built; no KMS call is made then.
    KmsEcdh {
        /// The keys' curve.
        curve: crate::format::ecdh::EcdhCurve,
        /// The KMS key's ARN.
        key_arn: String,
        /// The KMS key's public key, PEM or DER.
        public_key_file: PathBuf,
        /// The expected sender's public key, PEM or DER; `None`: any sender.
        sender_public_key_file: Option<PathBuf>,
    },
    /// A branch key (the Hierarchical keyring) in a DynamoDB branch key store.
    BranchKey {
        /// The branch key id.
        branch_key_id: String,
        /// The store's DynamoDB table.
        table: String,
        /// The KMS key ARN the branch keys are encrypted under.
        kms_key_arn: String,
        /// The store's logical name.
        logical_name: String,
        /// How long a fetched branch key is used.
        cache_ttl_seconds: u64,
    },
}

/// Grant tokens, which `Debug` shows only by number.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GrantTokens(pub Vec<String>);

impl std::fmt::Debug for GrantTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GrantTokens({} given)", self.0.len())
    }
}

/// The cold start as the environment describes it. Holds no secret: names, paths, key ARNs, regions and
/// grant tokens (which `Debug` does not show).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvConfig {
    /// The bundles, in order.
    pub bundles: Vec<BundleSpec>,
    /// The JSON secrets bundle to load into memory, if any.
    pub secrets: Option<Source>,
    /// The KMS keys.
    pub keys: KmsKeys,
    /// Grant tokens sent with every KMS call.
    pub grant_tokens: GrantTokens,
    /// The encryption context every message must carry.
    pub context: EncryptionContext,
    /// Where destinations go.
    pub root: PathBuf,
    /// The most encrypted data keys a message may have (each may cost a KMS call).
    pub max_encrypted_data_keys: u16,
    /// How `s3://` sources are read ([`transfer_options`]).
    #[cfg(feature = "s3")]
    pub transfer: crate::s3::TransferOptions,
}

fn config_error(message: impl Into<String>) -> Error {
    Error::Config(message.into())
}

/// `result` with a `Config` error prefixed by `variable`, the one whose value caused it (the parsers it
/// calls do not know which variable their text came from).
fn from_variable<T>(variable: &str, result: Result<T>) -> Result<T> {
    result.map_err(|error| match error {
        Error::Config(message) => config_error(format!("{variable}: {message}")),
        other => other,
    })
}

/// Non-empty items of a comma- or newline-separated list, trimmed.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split([',', '\n']).map(str::trim).filter(|item| !item.is_empty())
}

fn parse_bundles(value: &str) -> Result<Vec<BundleSpec>> {
    list(value)
        .map(|item| {
            let (source, destination) = item
                .rsplit_once('=')
                .ok_or_else(|| config_error(format!("{BUNDLES_VAR}: {item:?} is not source=destination")))?;
            let (source, destination) = (source.trim(), destination.trim());
            if destination.is_empty() || destination == "/" {
                return Err(config_error(format!("{BUNDLES_VAR}: {item:?} has no destination")));
            }
            from_variable(
                BUNDLES_VAR,
                match destination.strip_suffix('/') {
                    Some(directory) => BundleSpec::directory(source, directory),
                    None => BundleSpec::file(source, destination),
                },
            )
        })
        .collect()
}

fn parse_context(value: &str) -> Result<EncryptionContext> {
    let mut context = EncryptionContext::new();
    let value = value.trim();
    if value.starts_with('{') {
        let pairs: std::collections::BTreeMap<String, String> = serde_json::from_str(value)
            .map_err(|e| config_error(format!("{CONTEXT_VAR} is not a JSON object of strings: {e}")))?;
        for (key, value) in pairs {
            context.insert(key, value);
        }
        return Ok(context);
    }
    for pair in list(value) {
        let (key, value) = pair
            .split_once('=')
            .filter(|(key, _)| !key.trim().is_empty())
            .ok_or_else(|| config_error(format!("{CONTEXT_VAR}: {pair:?} is not key=value")))?;
        if context.insert(key.trim(), value.trim()).is_some() {
            return Err(config_error(format!("{CONTEXT_VAR}: key {:?} appears twice", key.trim())));
        }
    }
    Ok(context)
}

/// [`REGIONS_VAR`]: each a [`Region`], and only with discovery (strict keys are called in their own region).
fn parse_regions(value: Option<&str>, keys: &mut KmsKeys) -> Result<()> {
    let named: Vec<Region> = list(value.unwrap_or_default())
        .map(|name| Region::parse(name).map_err(|e| config_error(format!("{REGIONS_VAR}: {e}"))))
        .collect::<Result<_>>()?;
    match keys {
        _ if named.is_empty() => Ok(()),
        KmsKeys::Discovery { regions, .. } => {
            *regions = named;
            Ok(())
        }
        _ => Err(config_error(format!(
            "{REGIONS_VAR} is for {DISCOVERY_VAR}=true: a key ARN is always called in its own region"
        ))),
    }
}

/// The value of [`GRANT_TOKENS_VAR`] (comma-separated), checked as KMS would check the tokens; an error
/// names the variable and a token by its position only. The batch function reads it too.
///
/// # Errors
///
/// [`Error::Config`] naming [`GRANT_TOKENS_VAR`], as [`check_grant_tokens`] refuses the tokens.
pub fn parse_grant_tokens(value: Option<&str>) -> Result<GrantTokens> {
    let tokens: Vec<String> = list(value.unwrap_or_default()).map(str::to_owned).collect();
    from_variable(GRANT_TOKENS_VAR, check_grant_tokens(&tokens))?;
    Ok(GrantTokens(tokens))
}

fn parse_keys(arns: Option<&str>, discovery: Option<&str>, accounts: Option<&str>) -> Result<KmsKeys> {
    let discovery = match discovery.map(str::trim) {
        None | Some("") => false,
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => false,
        Some(v) => return Err(config_error(format!("{DISCOVERY_VAR} is {v:?}; expected true or false"))),
    };
    let arns: Vec<String> = arns.map(|v| list(v).map(str::to_owned).collect()).unwrap_or_default();
    match (discovery, arns.is_empty()) {
        (true, false) => Err(config_error(format!("set either {KEY_ARN_VAR} or {DISCOVERY_VAR}=true, not both"))),
        (false, true) => Err(config_error(format!(
            "no KMS key configured: set {KEY_ARN_VAR} (the key ARN), or {DISCOVERY_VAR}=true with {ACCOUNTS_VAR}"
        ))),
        (false, false) => Ok(KmsKeys::Strict(arns)),
        (true, true) => {
            let accounts: Vec<String> = accounts.map(|v| list(v).map(str::to_owned).collect()).unwrap_or_default();
            match accounts.as_slice() {
                [] => Err(config_error(format!(
                    "{DISCOVERY_VAR}=true needs {ACCOUNTS_VAR}: the AWS account ids whose keys may be used \
                     (or * for any account)"
                ))),
                [any] if any == "*" => Ok(KmsKeys::Discovery { accounts: None, regions: Vec::new() }),
                accounts => {
                    if let Some(bad) = accounts.iter().find(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
                    {
                        return Err(config_error(format!("{ACCOUNTS_VAR}: {bad:?} is not a 12-digit account id")));
                    }
                    Ok(KmsKeys::Discovery { accounts: Some(accounts.to_vec()), regions: Vec::new() })
                }
            }
        }
    }
}

/// The Hierarchical keyring's variables, if [`BRANCH_KEY_ID_VAR`] is set.
fn parse_branch_key(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<KmsKeys>> {
    let value = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let Some(branch_key_id) = value(BRANCH_KEY_ID_VAR) else {
        for name in
            [BRANCH_KEY_TABLE_VAR, BRANCH_KEY_KMS_KEY_VAR, BRANCH_KEY_LOGICAL_NAME_VAR, BRANCH_KEY_CACHE_TTL_VAR]
        {
            if value(name).is_some() {
                return Err(config_error(format!("{name} is set, but not {BRANCH_KEY_ID_VAR}")));
            }
        }
        return Ok(None);
    };
    let needed = |name: &str| value(name).ok_or_else(|| config_error(format!("{BRANCH_KEY_ID_VAR} needs {name} too")));
    let (table, kms_key_arn) = (needed(BRANCH_KEY_TABLE_VAR)?, needed(BRANCH_KEY_KMS_KEY_VAR)?);
    let cache_ttl_seconds = match value(BRANCH_KEY_CACHE_TTL_VAR) {
        None => 600,
        Some(ttl) => ttl.parse::<u64>().ok().filter(|&ttl| ttl > 0).ok_or_else(|| {
            config_error(format!("{BRANCH_KEY_CACHE_TTL_VAR} is {ttl:?}; expected a number of seconds above 0"))
        })?,
    };
    Ok(Some(KmsKeys::BranchKey {
        branch_key_id,
        logical_name: value(BRANCH_KEY_LOGICAL_NAME_VAR).unwrap_or_else(|| table.clone()),
        table,
        kms_key_arn,
        cache_ttl_seconds,
    }))
}

impl EnvConfig {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    ///
    /// As [`from_lookup`](Self::from_lookup).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable's value, or `None` if unset).
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the variable, when a value does not parse (a bundle that is not
    /// `source=destination`, a source that is not a path or `s3://bucket/key`, a context that is neither
    /// `k=v` pairs nor a JSON object of strings, a relative root, an EDK limit outside 1 to 65,535, an
    /// account that is not twelve digits, a region or grant token KMS would refuse, an S3 part size or
    /// concurrency out of range), when nothing is to be decrypted, when not exactly one key source (key
    /// ARNs, discovery, an RSA key ARN) is set, or when regions are named without discovery.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let bundles = parse_bundles(&lookup(BUNDLES_VAR).unwrap_or_default())?;
        let secrets = match lookup(SECRETS_VAR).as_deref().map(str::trim) {
            None | Some("") => None,
            Some(source) => Some(from_variable(SECRETS_VAR, Source::parse(source))?),
        };
        if bundles.is_empty() && secrets.is_none() {
            return Err(config_error(format!("nothing to decrypt: set {BUNDLES_VAR} or {SECRETS_VAR}")));
        }
        let set = |var: &str| lookup(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let ecdh = [
            ECDH_CURVE_VAR,
            ECDH_PRIVATE_KEY_FILE_VAR,
            ECDH_SENDER_PUBLIC_KEY_FILE_VAR,
            ECDH_KMS_KEY_ARN_VAR,
            ECDH_KMS_PUBLIC_KEY_FILE_VAR,
        ]
        .map(set);
        let branch_key = parse_branch_key(&lookup)?;
        let rsa_key_arn = lookup(RSA_KEY_ARN_VAR).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let mut keys = match (rsa_key_arn.as_deref(), branch_key) {
            _ if ecdh.iter().any(Option::is_some) => {
                let other = [KEY_ARN_VAR, RSA_KEY_ARN_VAR, BRANCH_KEY_ID_VAR].into_iter().any(|var| set(var).is_some())
                    || set(DISCOVERY_VAR).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"));
                if other {
                    return Err(config_error(format!(
                        "set the ECDH variables ({ECDH_CURVE_VAR}, ...) or a KMS key ({KEY_ARN_VAR}, \
                         {DISCOVERY_VAR}, {RSA_KEY_ARN_VAR}, {BRANCH_KEY_ID_VAR}), not both"
                    )));
                }
                // Unlike the other variables, a blank sender key is not "unset": it would silently read
                // every sender's message where a pin was asked for.
                if lookup(ECDH_SENDER_PUBLIC_KEY_FILE_VAR).is_some_and(|v| v.trim().is_empty()) {
                    return Err(config_error(format!(
                        "{ECDH_SENDER_PUBLIC_KEY_FILE_VAR} is set but empty; name the expected sender's public key \
                         file, or unset it to read messages from any sender"
                    )));
                }
                let [curve, private_key_file, sender_public_key_file, kms_key_arn, kms_public_key_file] = ecdh;
                let curve = curve.ok_or_else(|| config_error(format!("the ECDH variables need {ECDH_CURVE_VAR}")))?;
                let curve = crate::format::ecdh::EcdhCurve::from_name(&curve).ok_or_else(|| {
                    config_error(format!("{ECDH_CURVE_VAR} is {curve:?}; expected p256, p384 or p521"))
                })?;
                let sender_public_key_file = sender_public_key_file.map(PathBuf::from);
                match (private_key_file, kms_key_arn, kms_public_key_file) {
                    (Some(_), Some(_), _) | (Some(_), None, Some(_)) => {
                        return Err(config_error(format!(
                            "set {ECDH_PRIVATE_KEY_FILE_VAR} (a raw ECDH key) or {ECDH_KMS_KEY_ARN_VAR} with \
                             {ECDH_KMS_PUBLIC_KEY_FILE_VAR} (an AWS KMS key), not both"
                        )));
                    }
                    (Some(private_key_file), None, None) => {
                        KmsKeys::Ecdh { curve, private_key_file: private_key_file.into(), sender_public_key_file }
                    }
                    (None, Some(key_arn), Some(public_key_file)) => KmsKeys::KmsEcdh {
                        curve,
                        key_arn,
                        public_key_file: public_key_file.into(),
                        sender_public_key_file,
                    },
                    (None, Some(_), None) => {
                        return Err(config_error(format!(
                            "{ECDH_KMS_KEY_ARN_VAR} needs {ECDH_KMS_PUBLIC_KEY_FILE_VAR}: the KMS key's public key \
                             (aws kms get-public-key), so that the cold start makes no GetPublicKey call"
                        )));
                    }
                    (None, None, _) => {
                        return Err(config_error(format!(
                            "the ECDH variables need {ECDH_PRIVATE_KEY_FILE_VAR} (our private key) or \
                             {ECDH_KMS_KEY_ARN_VAR} (our AWS KMS key)"
                        )));
                    }
                }
            }
            (None, Some(branch_key)) => {
                let discovery = lookup(DISCOVERY_VAR).unwrap_or_default();
                if lookup(KEY_ARN_VAR).is_some_and(|v| !v.trim().is_empty())
                    || !matches!(discovery.trim(), "" | "0") && !discovery.trim().eq_ignore_ascii_case("false")
                {
                    return Err(config_error(format!(
                        "set one of {KEY_ARN_VAR}, {DISCOVERY_VAR} and {BRANCH_KEY_ID_VAR}, not several"
                    )));
                }
                branch_key
            }
            (Some(_), Some(_)) => {
                return Err(config_error(format!("set one of {RSA_KEY_ARN_VAR} and {BRANCH_KEY_ID_VAR}, not both")));
            }
            (None, None) => parse_keys(
                lookup(KEY_ARN_VAR).as_deref(),
                lookup(DISCOVERY_VAR).as_deref(),
                lookup(ACCOUNTS_VAR).as_deref(),
            )?,
            // Discovery set to false is not a second key source (parse_keys reads it the same way).
            (Some(_), None)
                if lookup(KEY_ARN_VAR).is_some_and(|v| !v.trim().is_empty())
                    || lookup(DISCOVERY_VAR)
                        .is_some_and(|v| !matches!(v.trim(), "" | "0") && !v.trim().eq_ignore_ascii_case("false")) =>
            {
                return Err(config_error(format!(
                    "set one of {KEY_ARN_VAR}, {DISCOVERY_VAR} and {RSA_KEY_ARN_VAR}, not several"
                )));
            }
            (Some(arn), None) => {
                let algorithm = lookup(RSA_ALGORITHM_VAR).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
                let algorithm = algorithm.unwrap_or_else(|| "RSAES_OAEP_SHA_256".to_owned());
                if !matches!(algorithm.as_str(), "RSAES_OAEP_SHA_256" | "RSAES_OAEP_SHA_1") {
                    return Err(config_error(format!(
                        "{RSA_ALGORITHM_VAR} is {algorithm:?}; expected RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1"
                    )));
                }
                KmsKeys::Rsa { arn: arn.to_owned(), algorithm }
            }
        };
        parse_regions(lookup(REGIONS_VAR).as_deref(), &mut keys)?;
        let grant_tokens = parse_grant_tokens(lookup(GRANT_TOKENS_VAR).as_deref())?;
        let context = parse_context(&lookup(CONTEXT_VAR).unwrap_or_default())?;
        let root = match lookup(ROOT_VAR).as_deref().map(str::trim) {
            None | Some("") => PathBuf::from("/tmp"),
            Some(root) if root.starts_with('/') => PathBuf::from(root),
            Some(root) => return Err(config_error(format!("{ROOT_VAR} must be an absolute path, not {root:?}"))),
        };
        let max_encrypted_data_keys = match lookup(MAX_EDKS_VAR).as_deref().map(str::trim) {
            None | Some("") => RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS,
            Some(n) => n.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(|| {
                config_error(format!("{MAX_EDKS_VAR} is {n:?}; expected a number from 1 to {}", u16::MAX))
            })?,
        };
        Ok(Self {
            bundles,
            secrets,
            keys,
            grant_tokens,
            context,
            root,
            max_encrypted_data_keys,
            #[cfg(feature = "s3")]
            transfer: transfer_options(&lookup)?,
        })
    }

    /// The decrypt options: the expected encryption context and the EDK limit, otherwise the defaults.
    pub fn decrypt_options(&self) -> DecryptOptions {
        let limits =
            DecryptLimits { max_encrypted_data_keys: Some(self.max_encrypted_data_keys), ..DecryptLimits::default() };
        DecryptOptions::new().reproduced_context(self.context.clone()).limits(limits)
    }

    /// The keyring for [`keys`](Self::keys), from `kms`, sending [`grant_tokens`](Self::grant_tokens).
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the variable, when [`KmsClients`] refuses a key ARN or region, two key ARNs
    /// are replicas of one multi-Region key, discovery has no region (none named and none configured), or
    /// an RSA key is configured in a build without the `rsa` feature.
    pub fn keyring(&self, kms: &KmsClients) -> Result<Arc<dyn Keyring>> {
        let kms = &kms.clone().with_grant_tokens(self.grant_tokens.0.iter().cloned());
        Ok(match &self.keys {
            KmsKeys::Strict(arns) if arns.len() == 1 => {
                Arc::new(from_variable(KEY_ARN_VAR, kms.mrk_keyring(&arns[0]))?)
            }
            KmsKeys::Strict(arns) => Arc::new(from_variable(KEY_ARN_VAR, kms.mrk_multi_keyring(arns))?),
            KmsKeys::Discovery { accounts, regions } => {
                let filter = match accounts {
                    Some(accounts) => {
                        Some(from_variable(ACCOUNTS_VAR, DiscoveryFilter::new(kms.partition(), accounts))?)
                    }
                    None => None,
                };
                if regions.is_empty() {
                    Arc::new(kms.mrk_discovery_keyring(None, filter).map_err(|e| {
                        config_error(format!("{DISCOVERY_VAR}: {e}; or name the regions in {REGIONS_VAR}"))
                    })?)
                } else {
                    Arc::new(from_variable(REGIONS_VAR, kms.mrk_discovery_multi_keyring(regions, filter))?)
                }
            }
            #[cfg(feature = "rsa")]
            KmsKeys::Rsa { arn, algorithm } => {
                let algorithm = crate::keyring::kms::KmsRsaAlgorithm::from_name(algorithm)
                    .ok_or_else(|| config_error(format!("{RSA_ALGORITHM_VAR}: unknown algorithm {algorithm:?}")))?;
                Arc::new(from_variable(RSA_KEY_ARN_VAR, kms.rsa_keyring(arn, algorithm))?)
            }
            #[cfg(not(feature = "rsa"))]
            KmsKeys::Rsa { .. } => {
                return Err(config_error(format!("{RSA_KEY_ARN_VAR} needs a kms-envelope built with feature rsa")));
            }
            KmsKeys::Ecdh { curve, private_key_file, sender_public_key_file } => {
                use crate::crypto::ecdh::EcdhPrivateKey;
                use crate::keyring::RawEcdhKeyring;
                let refused = |var: &str, path: &std::path::Path, why: &dyn std::fmt::Display| {
                    config_error(format!("{var}: {}: {why}", path.display()))
                };
                let pem = read_key_file(private_key_file)
                    .map_err(|e| refused(ECDH_PRIVATE_KEY_FILE_VAR, private_key_file, &e))?;
                let own = EcdhPrivateKey::from_pem(*curve, &pem)
                    .map_err(|e| refused(ECDH_PRIVATE_KEY_FILE_VAR, private_key_file, &e))?;
                match sender_public_key_file {
                    Some(path) => {
                        let sender = read_public_key(*curve, ECDH_SENDER_PUBLIC_KEY_FILE_VAR, path)?;
                        Arc::new(RawEcdhKeyring::decrypt_from(own, sender)?)
                    }
                    None => Arc::new(RawEcdhKeyring::discovery(own)),
                }
            }
            KmsKeys::KmsEcdh { curve, key_arn, public_key_file, sender_public_key_file } => {
                use crate::keyring::kms::AwsKmsEcdhKeyring;
                let client = from_variable(ECDH_KMS_KEY_ARN_VAR, kms.client_for_key(key_arn))?;
                let own = read_public_key(*curve, ECDH_KMS_PUBLIC_KEY_FILE_VAR, public_key_file)?;
                let keyring = match sender_public_key_file {
                    Some(path) => {
                        let sender = read_public_key(*curve, ECDH_SENDER_PUBLIC_KEY_FILE_VAR, path)?;
                        AwsKmsEcdhKeyring::with_public_key(client, key_arn.as_str(), own, sender)
                    }
                    None => AwsKmsEcdhKeyring::discovery_with_public_key(client, key_arn.as_str(), own),
                };
                let keyring = from_variable(ECDH_KMS_KEY_ARN_VAR, keyring)?;
                Arc::new(keyring.with_grant_tokens(self.grant_tokens.0.iter().cloned()))
            }
            #[cfg(feature = "hierarchy-ddb")]
            KmsKeys::BranchKey { branch_key_id, table, kms_key_arn, logical_name, cache_ttl_seconds } => {
                let store = crate::keyring::hierarchy::DynamoDbBranchKeyStore::from_clients(
                    kms,
                    table,
                    kms_key_arn,
                    logical_name,
                );
                let store = from_variable(BRANCH_KEY_KMS_KEY_VAR, store)?;
                let ttl = std::time::Duration::from_secs(*cache_ttl_seconds);
                Arc::new(from_variable(
                    BRANCH_KEY_ID_VAR,
                    crate::keyring::HierarchicalKeyring::new(store, branch_key_id, ttl),
                )?)
            }
            #[cfg(not(feature = "hierarchy-ddb"))]
            KmsKeys::BranchKey { .. } => {
                return Err(config_error(format!(
                    "{BRANCH_KEY_ID_VAR} needs a kms-envelope built with feature hierarchy-ddb"
                )));
            }
        })
    }

    /// A cold start for these bundles with `keyring`.
    pub fn cold_start(&self, keyring: Arc<dyn Keyring>) -> ColdStart {
        let cold_start = self
            .bundles
            .iter()
            .cloned()
            .fold(ColdStart::with_shared_keyring(keyring), ColdStart::bundle)
            .options(self.decrypt_options())
            .root(&self.root);
        #[cfg(feature = "s3")]
        let cold_start = cold_start.s3_transfer(self.transfer.clone());
        cold_start
    }
}

/// A key file's bytes, wiped when dropped; at most 1 MiB (a file named by mistake is refused, not read
/// whole).
fn read_key_file(path: &std::path::Path) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read as _;
    const LIMIT: u64 = 1 << 20;
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(LIMIT as usize + 1));
    std::fs::File::open(path)?.take(LIMIT + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > LIMIT {
        return Err(std::io::Error::other("more than 1 MiB: not a key file"));
    }
    Ok(bytes)
}

/// The public key on `curve` in the file `path` names (PEM, or DER SubjectPublicKeyInfo), for the variable
/// `variable`: an error names both.
fn read_public_key(
    curve: crate::format::ecdh::EcdhCurve,
    variable: &str,
    path: &std::path::Path,
) -> Result<crate::crypto::ecdh::EcdhPublicKey> {
    use crate::crypto::ecdh::EcdhPublicKey;
    let refused = |why: &dyn std::fmt::Display| config_error(format!("{variable}: {}: {why}", path.display()));
    let key = read_key_file(path).map_err(|e| refused(&e))?;
    let key = if key.trim_ascii_start().starts_with(b"-----BEGIN") {
        EcdhPublicKey::from_pem(curve, &key)
    } else {
        EcdhPublicKey::from_der(curve, &key)
    };
    key.map_err(|e| refused(&e))
}

impl ColdStart {
    /// A cold start configured entirely by environment variables (see [`EnvConfig`] and the table in the
    /// [module docs](crate::lambda::env)), with KMS (and S3) clients from the standard AWS environment and
    /// the cold start's timeouts ([`load_aws_config`](super::load_aws_config)).
    ///
    /// # Errors
    ///
    /// [`Error::Config`], as [`EnvConfig::from_env`] and [`EnvConfig::keyring`] say. No KMS or S3 call is
    /// made here.
    pub async fn from_env() -> Result<Self> {
        let config = EnvConfig::from_env()?;
        let aws = super::load_aws_config().await;
        let keyring = config.keyring(&KmsClients::new(&aws))?;
        let cold_start = config.cold_start(keyring);
        #[cfg(feature = "s3")]
        let cold_start = cold_start.s3_client(aws_sdk_s3::Client::new(&aws));
        Ok(cold_start)
    }
}

impl BundleSpec {
    /// The `source=destination` form [`EnvConfig`] reads (a directory's destination ends in `/`).
    pub fn to_env_entry(&self) -> String {
        let slash = if self.kind == BundleKind::Directory { "/" } else { "" };
        format!("{}={}{slash}", self.source, self.destination.display())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn read(vars: &[(&str, &str)]) -> Result<EnvConfig> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        EnvConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn bundles_keys_context_and_root() {
        let config = read(&[
            (BUNDLES_VAR, "secrets.json.esdk=secrets.json, s3://bucket/p=1/certs.esdk=certs/\n/opt/x.esdk=a/b.bin"),
            (KEY_ARN_VAR, ARN),
            (CONTEXT_VAR, "purpose=cold start, stage=prod"),
            (SECRETS_VAR, "s3://bucket/secrets.esdk"),
        ])
        .unwrap();
        assert_eq!(
            config.bundles,
            vec![
                BundleSpec::file("secrets.json.esdk", "secrets.json").unwrap(),
                BundleSpec::directory("s3://bucket/p=1/certs.esdk", "certs").unwrap(),
                BundleSpec::file("/opt/x.esdk", "a/b.bin").unwrap(),
            ]
        );
        assert_eq!(config.bundles[1].source, Source::S3 { bucket: "bucket".into(), key: "p=1/certs.esdk".into() });
        assert_eq!(config.bundles[1].to_env_entry(), "s3://bucket/p=1/certs.esdk=certs/");
        assert_eq!(config.keys, KmsKeys::Strict(vec![ARN.into()]));
        assert_eq!(config.context.get("purpose"), Some("cold start"));
        assert_eq!(config.context.get("stage"), Some("prod"));
        assert_eq!(config.root, PathBuf::from("/tmp"));
        assert_eq!(config.secrets, Some(Source::parse("s3://bucket/secrets.esdk").unwrap()));
    }

    #[test]
    fn json_context_discovery_and_root() {
        let config = read(&[
            (BUNDLES_VAR, "a.esdk=a"),
            (DISCOVERY_VAR, "TRUE"),
            (ACCOUNTS_VAR, "111122223333,444455556666"),
            (CONTEXT_VAR, r#"{"a,b": "c=d"}"#),
            (ROOT_VAR, "/mnt/scratch"),
        ])
        .unwrap();
        assert_eq!(
            config.keys,
            KmsKeys::Discovery {
                accounts: Some(vec!["111122223333".into(), "444455556666".into()]),
                regions: Vec::new()
            }
        );
        assert_eq!(config.context.get("a,b"), Some("c=d"));
        assert_eq!(config.root, PathBuf::from("/mnt/scratch"));
        let any = read(&[(BUNDLES_VAR, "a.esdk=a"), (DISCOVERY_VAR, "1"), (ACCOUNTS_VAR, "*")]).unwrap();
        assert_eq!(any.keys, KmsKeys::Discovery { accounts: None, regions: Vec::new() });
        let two = read(&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, &format!("{ARN}, {ARN}"))]).unwrap();
        assert_eq!(two.keys, KmsKeys::Strict(vec![ARN.into(), ARN.into()]));
    }

    #[test]
    fn mistakes_are_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[(KEY_ARN_VAR, ARN)], "nothing to decrypt"),
            (&[(BUNDLES_VAR, "a.esdk")], "not source=destination"),
            (&[(BUNDLES_VAR, "a.esdk=")], "no destination"),
            (&[(BUNDLES_VAR, "s3://bucket=x")], "not s3://bucket/key"),
            (&[(BUNDLES_VAR, "a.esdk=a")], "no KMS key configured"),
            (&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN), (DISCOVERY_VAR, "true")], "not both"),
            (&[(BUNDLES_VAR, "a.esdk=a"), (DISCOVERY_VAR, "yes")], "expected true or false"),
            (&[(BUNDLES_VAR, "a.esdk=a"), (DISCOVERY_VAR, "true")], "needs KMS_ENVELOPE_KMS_ACCOUNTS"),
            (&[(BUNDLES_VAR, "a.esdk=a"), (DISCOVERY_VAR, "true"), (ACCOUNTS_VAR, "12")], "12-digit"),
            (&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN), (CONTEXT_VAR, "novalue")], "not key=value"),
            (&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN), (CONTEXT_VAR, "k=1,k=2")], "appears twice"),
            (&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN), (CONTEXT_VAR, "{\"k\": 1}")], "JSON object"),
            (&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN), (ROOT_VAR, "tmp")], "absolute"),
            (&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN), (RSA_KEY_ARN_VAR, ARN)], "not several"),
            (
                &[(BUNDLES_VAR, "a.esdk=a"), (RSA_KEY_ARN_VAR, ARN), (RSA_ALGORITHM_VAR, "RSAES_PKCS1")],
                "expected RSAES",
            ),
            (&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN), (MAX_EDKS_VAR, "0")], "from 1 to"),
        ];
        let rsa = read(&[(BUNDLES_VAR, "a.esdk=a"), (RSA_KEY_ARN_VAR, ARN)]).unwrap();
        assert_eq!(rsa.keys, KmsKeys::Rsa { arn: ARN.into(), algorithm: "RSAES_OAEP_SHA_256".into() });
        let rsa = read(&[(BUNDLES_VAR, "a.esdk=a"), (RSA_KEY_ARN_VAR, ARN), (DISCOVERY_VAR, "false")]).unwrap();
        assert!(matches!(rsa.keys, KmsKeys::Rsa { .. }), "discovery off is no second key source");
        let err = read(&[(BUNDLES_VAR, "a.esdk=a"), (RSA_KEY_ARN_VAR, ARN), (DISCOVERY_VAR, "true")]).unwrap_err();
        assert!(err.to_string().contains("not several"), "{err}");
        for (vars, expected) in cases {
            let err = read(vars).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{vars:?}: {err:?}");
            assert!(err.to_string().contains(expected), "{vars:?}: {err} (expected {expected:?})");
        }
    }

    /// `KMS_ENVELOPE_KMS_REGIONS` names discovery's regions, each checked as a region (it picks an endpoint)
    /// and refused beside key ARNs; `KMS_ENVELOPE_KMS_GRANT_TOKENS` is checked as KMS would, in errors that
    /// never quote a token, and hidden from `Debug`.
    #[test]
    fn discovery_regions_and_grant_tokens() {
        let discovery = [(BUNDLES_VAR, "a.esdk=a"), (DISCOVERY_VAR, "true"), (ACCOUNTS_VAR, "*")];
        let config = read(&[&discovery[..], &[(REGIONS_VAR, "eu-west-1, us-east-1")]].concat()).unwrap();
        let regions = vec![Region::parse("eu-west-1").unwrap(), Region::parse("us-east-1").unwrap()];
        assert_eq!(config.keys, KmsKeys::Discovery { accounts: None, regions });
        let marker = "GRANT-MARKER-1c9e";
        let tokens = format!("{marker}-a,{marker}-b");
        let config = read(&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN), (GRANT_TOKENS_VAR, &tokens)]).unwrap();
        assert_eq!(config.grant_tokens.0, [format!("{marker}-a"), format!("{marker}-b")]);
        assert!(!format!("{config:?}").contains(marker), "{config:?}");

        let eleven = (0..11).map(|n| format!("{marker}-{n}")).collect::<Vec<_>>().join(",");
        let spaced = format!("{marker} with a space");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN), (REGIONS_VAR, "eu-west-1")], "is for"),
            (&[&discovery[..], &[(REGIONS_VAR, "evil.example/")]].concat(), "is not an AWS region"),
            (&[&discovery[..], &[(REGIONS_VAR, "eu-west-1,x@127.0.0.1/")]].concat(), "is not an AWS region"),
            (&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN), (GRANT_TOKENS_VAR, &eleven)], "at most 10"),
            (&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN), (GRANT_TOKENS_VAR, &spaced)], "grant token 1"),
        ];
        for (vars, expected) in cases {
            let err = read(vars).unwrap_err().to_string();
            assert!(err.contains(expected), "{vars:?}: {err}");
            assert!(!err.contains(marker), "a grant token in the error: {err}");
        }
        let variable = read(&[&discovery[..], &[(REGIONS_VAR, "nowhere")]].concat()).unwrap_err().to_string();
        assert!(variable.contains(REGIONS_VAR), "{variable}");
        let variable = read(&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN), (GRANT_TOKENS_VAR, &spaced)]);
        assert!(variable.unwrap_err().to_string().contains(GRANT_TOKENS_VAR));
    }

    /// The variables reach the cold start's transfer; unset, the defaults fit a quarter of the function's
    /// memory; a bad value names its variable.
    #[cfg(feature = "s3")]
    #[test]
    fn s3_transfer_from_the_variables_or_the_functions_memory() {
        use crate::s3::{CONCURRENCY_VAR, DEFAULT_CONCURRENCY, PART_SIZE_VAR, TransferOptions};
        let base = [(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN)];
        assert_eq!(read(&base).unwrap().transfer, TransferOptions::new());
        let set = read(&[&base[..], &[(PART_SIZE_VAR, "16MiB"), (CONCURRENCY_VAR, "4")]].concat()).unwrap();
        assert_eq!(set.transfer, TransferOptions::new().part_size(16 << 20).chunk_size(16 << 20).concurrency(4));
        let small = read(&[&base[..], &[(FUNCTION_MEMORY_VAR, "128")]].concat()).unwrap();
        assert_eq!(small.transfer.requests_in_flight(), 2);
        assert!(small.transfer.memory_bound() <= 32 << 20, "{:?}", small.transfer);
        let large = read(&[&base[..], &[(FUNCTION_MEMORY_VAR, "1769")]].concat()).unwrap();
        assert_eq!(large.transfer.requests_in_flight(), DEFAULT_CONCURRENCY);
        // Set explicitly, a value is taken as given, whatever the memory.
        let given = read(&[&base[..], &[(FUNCTION_MEMORY_VAR, "128"), (CONCURRENCY_VAR, "8")]].concat()).unwrap();
        assert_eq!(given.transfer.requests_in_flight(), 8);
        let err = read(&[&base[..], &[(PART_SIZE_VAR, "1M")]].concat()).unwrap_err().to_string();
        assert!(err.contains(PART_SIZE_VAR) && err.contains("5MiB to 5GiB"), "{err}");
    }

    #[test]
    fn the_keyring_follows_the_keys() {
        let aws = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let kms = KmsClients::new(&aws);
        for vars in [
            &[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, ARN)][..],
            &[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, "alias/one,alias/two")][..],
            &[(BUNDLES_VAR, "a.esdk=a"), (DISCOVERY_VAR, "true"), (ACCOUNTS_VAR, "111122223333")][..],
            &[(BUNDLES_VAR, "a.esdk=a"), (DISCOVERY_VAR, "true"), (ACCOUNTS_VAR, "*")][..],
            &[(BUNDLES_VAR, "a.esdk=a"), (DISCOVERY_VAR, "true"), (ACCOUNTS_VAR, "*"), (REGIONS_VAR, "eu-west-1")][..],
        ] {
            read(vars).unwrap().keyring(&kms).unwrap();
        }
        let branch = read(&[
            (BUNDLES_VAR, "a.esdk=a"),
            (BRANCH_KEY_ID_VAR, "tenant-1"),
            (BRANCH_KEY_TABLE_VAR, "branch-keys"),
            (BRANCH_KEY_KMS_KEY_VAR, ARN),
        ])
        .unwrap();
        assert_eq!(
            branch.keys,
            KmsKeys::BranchKey {
                branch_key_id: "tenant-1".into(),
                table: "branch-keys".into(),
                kms_key_arn: ARN.into(),
                logical_name: "branch-keys".into(),
                cache_ttl_seconds: 600,
            }
        );
        #[cfg(feature = "hierarchy-ddb")]
        branch.keyring(&kms).unwrap();
        for (vars, named) in [
            (&[(BRANCH_KEY_ID_VAR, "t"), (BRANCH_KEY_TABLE_VAR, "b")][..], BRANCH_KEY_KMS_KEY_VAR),
            (&[(BRANCH_KEY_TABLE_VAR, "b")][..], BRANCH_KEY_TABLE_VAR),
            (
                &[
                    (BRANCH_KEY_ID_VAR, "t"),
                    (BRANCH_KEY_TABLE_VAR, "b"),
                    (BRANCH_KEY_KMS_KEY_VAR, ARN),
                    (KEY_ARN_VAR, ARN),
                ][..],
                KEY_ARN_VAR,
            ),
            (
                &[
                    (BRANCH_KEY_ID_VAR, "t"),
                    (BRANCH_KEY_TABLE_VAR, "b"),
                    (BRANCH_KEY_KMS_KEY_VAR, ARN),
                    (BRANCH_KEY_CACHE_TTL_VAR, "0"),
                ][..],
                BRANCH_KEY_CACHE_TTL_VAR,
            ),
        ] {
            let vars: Vec<(&str, &str)> = [(BUNDLES_VAR, "a.esdk=a")].into_iter().chain(vars.iter().copied()).collect();
            let err = read(&vars).unwrap_err();
            assert!(matches!(err, Error::Config(_)) && err.to_string().contains(named), "{err}");
        }
        let config = read(&[(BUNDLES_VAR, "a.esdk=a,b.esdk=b/"), (KEY_ARN_VAR, ARN), (ROOT_VAR, "/srv")]).unwrap();
        let debug = format!("{:?}", config.cold_start(config.keyring(&kms).unwrap()));
        assert!(debug.contains("/srv") && debug.contains("b.esdk"), "{debug}");
        // Two replicas of one multi-Region key are one key twice.
        let mrk = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
        let both = format!("{mrk},{}", mrk.replace("us-east-1", "eu-west-1"));
        let err = read(&[(BUNDLES_VAR, "a.esdk=a"), (KEY_ARN_VAR, &both)]).unwrap().keyring(&kms).err().unwrap();
        assert!(err.to_string().contains("replicas of the same multi-Region key"), "{err}");
    }

    /// The ECDH variables: a keyring pinned to the sender (PEM or DER key file) reads that sender's message
    /// and not another's; without the sender's key, any sender's (discovery); what cannot work is refused
    /// naming the variable.
    #[test]
    fn the_ecdh_variables_make_a_raw_ecdh_keyring_with_the_sender_pinned() {
        use base64::Engine as _;

        use crate::crypto::ecdh::EcdhPrivateKey;
        use crate::format::ecdh::EcdhCurve;
        use crate::keyring::RawEcdhKeyring;
        use crate::stream::EncryptOptions;

        let dir = tempfile::tempdir().unwrap();
        let curve = EcdhCurve::P384;
        let [sender, recipient, stranger] = [(); 3].map(|()| EcdhPrivateKey::generate(curve).unwrap());
        let b64 = base64::engine::general_purpose::STANDARD.encode(recipient.pkcs8_der_for_tests());
        let own = dir.path().join("own.pem");
        std::fs::write(&own, format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")).unwrap();
        let sender_der = dir.path().join("sender.der");
        std::fs::write(&sender_der, sender.public_key().to_spki_der().unwrap()).unwrap();
        let writer = RawEcdhKeyring::static_keys(sender, recipient.public_key().clone()).unwrap();
        let message = crate::encrypt(&writer, &EncryptOptions::new(), b"cold start").unwrap();
        let forged = RawEcdhKeyring::static_keys(stranger, recipient.public_key().clone()).unwrap();
        let forged = crate::encrypt(&forged, &EncryptOptions::new(), b"forged").unwrap();

        let kms = KmsClients::new(&aws_config::SdkConfig::builder().build());
        let (own, sender_der) = (own.to_str().unwrap(), sender_der.to_str().unwrap());
        let base = [(BUNDLES_VAR, "a.esdk=a"), (ECDH_CURVE_VAR, "p384"), (ECDH_PRIVATE_KEY_FILE_VAR, own)];
        let pinned = read(&[&base[..], &[(ECDH_SENDER_PUBLIC_KEY_FILE_VAR, sender_der)]].concat()).unwrap();
        assert!(matches!(&pinned.keys, KmsKeys::Ecdh { curve: EcdhCurve::P384, sender_public_key_file: Some(_), .. }));
        let pinned = pinned.keyring(&kms).unwrap();
        let options = crate::DecryptOptions::new();
        assert_eq!(&*crate::decrypt(&*pinned, &options, &message).unwrap().plaintext, b"cold start");
        assert!(crate::decrypt(&*pinned, &options, &forged).is_err(), "another sender's message");
        let discovery = read(&base).unwrap().keyring(&kms).unwrap();
        assert_eq!(&*crate::decrypt(&*discovery, &options, &forged).unwrap().plaintext, b"forged");

        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[(BUNDLES_VAR, "a.esdk=a"), (ECDH_PRIVATE_KEY_FILE_VAR, own)], "need KMS_ENVELOPE_ECDH_CURVE"),
            (&[(BUNDLES_VAR, "a.esdk=a"), (ECDH_CURVE_VAR, "p512"), (ECDH_PRIVATE_KEY_FILE_VAR, own)], "expected p256"),
            (&[(BUNDLES_VAR, "a.esdk=a"), (ECDH_CURVE_VAR, "p384")], "need KMS_ENVELOPE_ECDH_PRIVATE_KEY_FILE"),
            (&[&base[..], &[(KEY_ARN_VAR, ARN)]].concat(), "not both"),
            (&[&base[..], &[(DISCOVERY_VAR, "true")]].concat(), "not both"),
        ];
        for (vars, expected) in cases {
            let err = read(vars).unwrap_err().to_string();
            assert!(err.contains(expected), "{vars:?}: {err}");
        }
        let wrong_curve = [(BUNDLES_VAR, "a.esdk=a"), (ECDH_CURVE_VAR, "p256"), (ECDH_PRIVATE_KEY_FILE_VAR, own)];
        let err = read(&wrong_curve).unwrap().keyring(&kms).err().unwrap().to_string();
        assert!(err.contains(ECDH_PRIVATE_KEY_FILE_VAR) && err.contains("P-384, but P-256"), "{err}");
        let missing = [&base[..], &[(ECDH_SENDER_PUBLIC_KEY_FILE_VAR, "/nonexistent/sender.der")]].concat();
        let err = read(&missing).unwrap().keyring(&kms).err().unwrap().to_string();
        assert!(err.contains(ECDH_SENDER_PUBLIC_KEY_FILE_VAR), "{err}");
    }

    /// The AWS KMS ECDH variables: a key ARN with its public key file make a `KmsEcdh` key set, whose
    /// keyring is built without any KMS call (these clients have no region or endpoint, so a call would
    /// fail); a private key file beside them, an ARN without its public key, or a public key of another
    /// curve is refused, naming the variable.
    #[test]
    fn the_ecdh_kms_variables_make_an_aws_kms_ecdh_keyring_without_a_kms_call() {
        use crate::crypto::ecdh::EcdhPrivateKey;
        use crate::format::ecdh::EcdhCurve;

        let dir = tempfile::tempdir().unwrap();
        let kms_public = dir.path().join("kms.der");
        let public = EcdhPrivateKey::generate(EcdhCurve::P256).unwrap().public_key().to_spki_der().unwrap();
        std::fs::write(&kms_public, public).unwrap();
        let kms_public = kms_public.to_str().unwrap();
        let arn = "arn:aws:kms:us-east-1:111122223333:key/bbbbbbbb-1111-2222-3333-444444444444";
        let base = [
            (BUNDLES_VAR, "a.esdk=a"),
            (ECDH_CURVE_VAR, "p256"),
            (ECDH_KMS_KEY_ARN_VAR, arn),
            (ECDH_KMS_PUBLIC_KEY_FILE_VAR, kms_public),
        ];
        let config = read(&base).unwrap();
        assert!(
            matches!(&config.keys, KmsKeys::KmsEcdh { curve: EcdhCurve::P256, key_arn, sender_public_key_file: None, .. } if key_arn == arn),
            "{:?}",
            config.keys
        );
        let kms = KmsClients::new(&aws_config::SdkConfig::builder().build());
        config.keyring(&kms).unwrap();

        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[&base[..], &[(ECDH_PRIVATE_KEY_FILE_VAR, "own.pem")]].concat(), "not both"),
            (
                &[(BUNDLES_VAR, "a.esdk=a"), (ECDH_CURVE_VAR, "p256"), (ECDH_KMS_KEY_ARN_VAR, arn)],
                "needs KMS_ENVELOPE_ECDH_KMS_PUBLIC_KEY_FILE",
            ),
            (
                &[
                    (BUNDLES_VAR, "a.esdk=a"),
                    (ECDH_CURVE_VAR, "p256"),
                    (ECDH_PRIVATE_KEY_FILE_VAR, "own.pem"),
                    (ECDH_KMS_PUBLIC_KEY_FILE_VAR, kms_public),
                ],
                "not both",
            ),
            (&[&base[..], &[(KEY_ARN_VAR, ARN)]].concat(), "not both"),
            (
                &[(BUNDLES_VAR, "a.esdk=a"), (ECDH_CURVE_VAR, "p256")],
                "need KMS_ENVELOPE_ECDH_PRIVATE_KEY_FILE (our private key) or KMS_ENVELOPE_ECDH_KMS_KEY_ARN",
            ),
        ];
        for (vars, expected) in cases {
            let err = read(vars).unwrap_err().to_string();
            assert!(err.contains(expected), "{vars:?}: {err}");
        }
        let other_curve = [
            (BUNDLES_VAR, "a.esdk=a"),
            (ECDH_CURVE_VAR, "p384"),
            (ECDH_KMS_KEY_ARN_VAR, arn),
            (ECDH_KMS_PUBLIC_KEY_FILE_VAR, kms_public),
        ];
        let err = read(&other_curve).unwrap().keyring(&kms).err().unwrap().to_string();
        assert!(err.contains(ECDH_KMS_PUBLIC_KEY_FILE_VAR), "{err}");
    }

    #[test]
    fn a_blank_ecdh_sender_variable_is_refused_not_read_as_any_sender() {
        // A deployment template whose substitution came out empty must not turn the sender pin into
        // PublicKeyDiscovery: the variable is set, so a pin was asked for.
        let base = [(BUNDLES_VAR, "a.esdk=a"), (ECDH_CURVE_VAR, "p384"), (ECDH_PRIVATE_KEY_FILE_VAR, "own.pem")];
        for blank in ["", "  ", "\n"] {
            let vars = [&base[..], &[(ECDH_SENDER_PUBLIC_KEY_FILE_VAR, blank)]].concat();
            let err = read(&vars).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(ECDH_SENDER_PUBLIC_KEY_FILE_VAR) && err.contains("empty"), "{blank:?}: {err:?}");
        }
    }
}
