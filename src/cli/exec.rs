//! `exec`: secrets messages decrypted into a command's environment, then the command executed in this
//! process (`execve`), so that no parent is left between it and whoever started us, and no plaintext
//! touches a disk.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kms_envelope::environment::{EnvName, SecretString, check_denied, parse_secrets};
use kms_envelope::escape::escaped;
use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture};
use kms_envelope::{EncryptedDataKey, Keyring, MultiKeyring};

use super::args::{DiscoveryArgs, ExecArgs, KeyArgs, KeySource, LocalKind};
use super::exit::{Code, Failure};
use super::location::Location;
use super::offered::Recording;

/// The largest secrets message `exec` reads (whole, into memory), as the Lambda loader's
/// `MAX_SECRETS_LEN`: many times a JSON object of secrets; larger data belongs in a file bundle.
const MAX_SECRETS_MESSAGE: u64 = 1 << 20;

/// The exit status when COMMAND cannot be executed: 127 when it is not found, 126 otherwise, as `env`,
/// `nohup` and the shells report it.
const NOT_FOUND_STATUS: u8 = 127;
/// See [`NOT_FOUND_STATUS`].
const CANNOT_EXECUTE_STATUS: u8 = 126;

/// The text after `exec --help`'s options.
pub fn help() -> String {
    let text = format!(
        "Secrets: each SECRETS message decrypts to a JSON object of strings ({{\"DB_PASSWORD\": \"...\"}}) or to \
         dotenv lines (NAME=value, # comments, blank lines, optional `export `, 'single' or \"double\" quotes; no $ \
         expansion, no multi-line values: the README defines the subset). Anything else is refused, naming the \
         line, never its text. Names are ASCII letters, digits and _, not starting with a digit. A later SECRETS \
         overrides an earlier one's names; a variable already in the environment wins unless --override.\n\
         Refused unless --allow-name NAME: names that change what a program loads or runs ({}). Refused unless \
         --allow-public-key-writers: secrets whose data key an RSA key or --kms-discovery without --account \
         unwrapped, since anyone can write those.\n\
         COMMAND replaces this process (execve): its pid, signals, exit status and stdio are its own; no \
         plaintext is written anywhere. Its environment is readable in /proc/PID/environ by the same user (and \
         root), and every process it starts inherits it.\n\
         Keys: as for decrypt (--raw-key-file, --rsa-private-key, --kms-key, --kms-discovery, ...).\n\
         Exit status: COMMAND's own once it runs; before that, as below, and 126 (COMMAND cannot be executed) or \
         127 (COMMAND not found).",
        kms_envelope::environment::DENIED_NAMES.join(" ")
    );
    format!("{}\n\n{}", super::args::wrap(&text, super::args::HELP_WIDTH), super::args::exit_codes())
}

/// Decrypts every SECRETS message and executes COMMAND with them in its environment. Returns only on a
/// failure: on success this process has become COMMAND.
pub fn run(args: &ExecArgs) -> Result<(), Failure> {
    if let Some(stdin) = args.secrets.iter().find(|location| **location == Location::Stdio) {
        return Err(Failure::usage(format!(
            "exec reads SECRETS from files{}, not {}: COMMAND gets this process's stdin",
            if cfg!(feature = "s3") { " or S3" } else { "" },
            stdin.arg()
        )));
    }
    let keys = watched_keys(&args.keys, &args.discovery)?;
    let keyring: Box<dyn Keyring> = match &keys[..] {
        [one] => Box::new(Arc::clone(&one.keyring)),
        all => Box::new(all.iter().fold(MultiKeyring::without_generator(), |multi, key| {
            multi.with_shared_child(Arc::clone(&key.keyring) as Arc<dyn Keyring>)
        })),
    };
    let keyring = Recording::new(keyring);
    let options = super::decrypt_options(&args.settings);
    let check = super::required_keys(&args.settings);
    // Later messages override earlier ones.
    let mut secrets: BTreeMap<EnvName, SecretString> = BTreeMap::new();
    for location in &args.secrets {
        let name = &*location.arg();
        keyring.forget();
        keys.iter().for_each(|key| key.keyring.unwrapped.store(false, Ordering::Relaxed));
        let message = read_message(location)?;
        let decrypted = kms_envelope::decrypt(&keyring, &options, &message)
            .map_err(|e| keyring.explain(Failure::reading(e).with_file(name)))?;
        check(&decrypted.header).map_err(|f| f.with_file(name))?;
        if !args.allow_public_key_writers
            && let Some(key) =
                keys.iter().find(|key| key.anyone_writes && key.keyring.unwrapped.load(Ordering::Relaxed))
        {
            return Err(Failure::usage(format!(
                "{name}: its data key was unwrapped by {}, to which anyone can encrypt; accept it with \
                 --allow-public-key-writers only if no one else could have written this message",
                key.flag
            )));
        }
        let parsed = parse_secrets(&decrypted.plaintext)
            .map_err(|e| Failure::new(Code::InvalidMessage, format!("{name}: {e}")))?;
        for (secret, value) in parsed {
            check_denied(&secret, &args.allow_name).map_err(|e| {
                Failure::usage(format!("{name}: {e} (add --allow-name {} if this secret must set it)", secret.as_str()))
            })?;
            secrets.insert(secret, value);
        }
    }
    let (program, program_args) = args.command.split_first().expect("clap requires COMMAND");
    let mut command = std::process::Command::new(program);
    command.args(program_args);
    for (name, value) in &secrets {
        if args.override_existing || std::env::var_os(name.as_str()).is_none() {
            command.env(name.as_str(), value.expose());
        }
    }
    let err = execute(&mut command);
    let status = if err.kind() == std::io::ErrorKind::NotFound { NOT_FOUND_STATUS } else { CANNOT_EXECUTE_STATUS };
    let program = program.to_string_lossy();
    Err(Failure::with_status(Code::Usage, format!("cannot execute {}: {err}", escaped(&program)), status))
}

/// Replaces this process with `command`; returns only why it could not.
#[cfg(unix)]
fn execute(command: &mut std::process::Command) -> std::io::Error {
    std::os::unix::process::CommandExt::exec(command)
}

/// Without `execve` there is no way to become COMMAND.
#[cfg(not(unix))]
fn execute(_: &mut std::process::Command) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::Unsupported, "exec needs a Unix system")
}

/// A secrets message, whole: a file or an S3 object, refused past [`MAX_SECRETS_MESSAGE`].
fn read_message(location: &Location) -> Result<Vec<u8>, Failure> {
    let name = location.arg();
    let input = super::io::open_message(location)?;
    let too_large = || {
        Failure::usage(format!(
            "{name}: larger than {} KiB, too large for a secrets message (use a bundle)",
            MAX_SECRETS_MESSAGE >> 10
        ))
    };
    if input.size.is_some_and(|size| size > MAX_SECRETS_MESSAGE) {
        return Err(too_large());
    }
    let mut message = Vec::new();
    input
        .reader
        .take(MAX_SECRETS_MESSAGE + 1)
        .read_to_end(&mut message)
        .map_err(|e| Failure::io(format!("cannot read {name}"), e))?;
    if message.len() as u64 > MAX_SECRETS_MESSAGE {
        return Err(too_large());
    }
    Ok(message)
}

/// One decrypt key, watched, and whether anyone (not only its holders) can write messages it unwraps.
struct WatchedKey {
    keyring: Arc<Watched>,
    anyone_writes: bool,
    /// The option that gave the key, for the refusal.
    flag: String,
}

/// The decrypt keys in the order they are tried, each watched for unwrapping a data key.
fn watched_keys(keys: &KeyArgs, discovery: &DiscoveryArgs) -> Result<Vec<WatchedKey>, Failure> {
    let built = super::keys::each_for_decrypt(keys, discovery)?;
    let local = keys.local_keys()?;
    // `order` is filled from the command line; it is empty only when no key but discovery was given.
    let mut writers: Vec<(bool, String)> = keys
        .order
        .iter()
        .map(|source| match *source {
            KeySource::Raw(n) => {
                let key = &local[n];
                let (anyone, option) = match key.kind {
                    LocalKind::Aes => (false, "--raw-key-file"),
                    LocalKind::RsaPublic => (true, "--rsa-public-key"),
                    LocalKind::RsaPrivate => (true, "--rsa-private-key"),
                };
                (anyone, format!("{option} {}", escaped(&key.path.to_string_lossy())))
            }
            KeySource::Kms(n) => (false, format!("--kms-key {}", escaped(&keys.kms_key[n]))),
            KeySource::KmsRsa(n) => (true, format!("--kms-rsa-key {}", escaped(&keys.kms_rsa_key[n]))),
        })
        .collect();
    // The ECDH key comes after the others (keys::build): pinned to a sender, only that sender (or we)
    // can write; by discovery, anyone with our public key.
    if keys.ecdh.any() {
        let own = if keys.ecdh.kms_ecdh_key.is_some() { "--kms-ecdh-key" } else { "--ecdh-private" };
        let by_discovery = keys.ecdh.ecdh_discovery || keys.ecdh.ecdh_peer_public.is_none();
        let how = if by_discovery { "with --ecdh-discovery" } else { "with --ecdh-sender-public" };
        writers.push((by_discovery, format!("{own} {how}")));
    }
    // Then the Hierarchical keyring: only holders of the branch key (its store's KMS key) write to it.
    if let Some(id) = &keys.branch_key_id {
        writers.push((false, format!("{} {}", keys.flag("branch-key-id"), escaped(id))));
    }
    if discovery.kms_discovery {
        let unfiltered = discovery.account.is_empty();
        writers.push((
            unfiltered,
            if unfiltered { "--kms-discovery without --account" } else { "--kms-discovery" }.into(),
        ));
    }
    if writers.len() != built.len() {
        return Err(Failure::usage(format!(
            "internal error: {} keys built for {} given; refusing to guess which can be trusted",
            built.len(),
            writers.len()
        )));
    }
    Ok(built
        .into_iter()
        .zip(writers)
        .map(|(inner, (anyone_writes, flag))| WatchedKey {
            keyring: Arc::new(Watched { inner, unwrapped: AtomicBool::new(false) }),
            anyone_writes,
            flag,
        })
        .collect())
}

/// A keyring that notes when it unwrapped a data key, so that `exec` knows which key vouches for a message.
struct Watched {
    inner: Arc<dyn Keyring>,
    unwrapped: AtomicBool,
}

impl Keyring for Watched {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        self.inner.on_encrypt(materials)
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        Box::pin(async move {
            let materials = self.inner.on_decrypt(materials, edks).await?;
            if materials.data_key().is_some() {
                self.unwrapped.store(true, Ordering::Relaxed);
            }
            Ok(materials)
        })
    }
}
