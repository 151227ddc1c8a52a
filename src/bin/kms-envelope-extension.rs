//! `kms-envelope-extension`: the cold-start decryptor as an external Lambda extension, for functions in any
//! language. Installed as `/opt/extensions/kms-envelope` (a layer, or a `COPY` in a container image), it
//! decrypts the bundles that the function's `KMS_ENVELOPE_*` variables name (see
//! `kms_envelope::lambda::env`) into `/tmp` before the runtime starts, so the function's own init code finds
//! plain, verified files there.
//!
//! # Why decrypting before `register` is enough
//!
//! The Lambda documentation (runtimes-extensions-api.html, "Lambda execution environment lifecycle") splits
//! the Init phase into three sub-phases in order, *Extension init*, *Runtime init*, *Function init*, so that
//! the extensions and the runtime finish their setup before function code runs; in Extension init every
//! executable under `/opt/extensions` is started and must call `/extension/register`. The conservative
//! reading, which this binary follows: do all the work before `register`, so that no runtime or function
//! code can start before the files are in place. The Runtime Interface Emulator behaves so:
//! tests/full_set_only/extension.rs serves a bundle from an S3 that stalls halfway for 1.5 s and checks that the
//! function's module-level code still finds its file. Init counts against the Init phase's limit (10 s on demand),
//! in which a 100 MiB bundle takes about 0.1 s to decrypt.
//!
//! # Failure
//!
//! On any error the extension still registers (an identifier is needed to report), then posts
//! `/extension/init/error` with the error type `Extension.KmsEnvelopeFailed` and a one-line reason (the
//! library's error messages never carry plaintext; text from a message is escaped), and exits 1. Lambda
//! then fails the init phase: the function never runs without its configuration.
//!
//! Whatever fails (decryption, or the Extensions API itself: no `AWS_LAMBDA_RUNTIME_API`, `register`
//! refused or answered without an identifier, a next event that is not JSON, a refused connection, even a
//! panic), the files this run decrypted or reused are removed from the root before the process exits
//! non-zero with one escaped line on stderr: [`Landing`] removes them when dropped, and only the `SHUTDOWN`
//! exit and a successful `--once` keep them.
//!
//! # Afterwards
//!
//! It registers for `SHUTDOWN` only (so it adds no latency to invokes), waits for it, and exits.
//!
//! `kms-envelope-extension --once` decrypts and exits without the Extensions API: a way to try a
//! configuration outside Lambda. `--help` and `--version` print and exit 0; any other argument is a usage
//! error (exit 2). Lambda starts extensions without arguments.
//!
//! # The exec wrapper
//!
//! `kms-envelope-extension --exec -- COMMAND [ARGS]` is what the layer's `/opt/kms-envelope-exec-wrapper`
//! runs when the function sets `AWS_LAMBDA_EXEC_WRAPPER` to it: Lambda then starts the managed runtime as
//! `wrapper RUNTIME ARGS`, and this decrypts the JSON secrets `KMS_ENVELOPE_SECRETS` names (with the same
//! keys and context as the extension) into memory and executes the runtime with them in its environment,
//! as `kms-envelope exec` does: valid names only, the deny-list of `kms_envelope::environment` (lifted per
//! name by `KMS_ENVELOPE_EXEC_ALLOW_NAMES`), a variable of the function's own configuration wins, and a
//! KMS RSA key or discovery of any account (which anyone can encrypt to) only with
//! `KMS_ENVELOPE_EXEC_ALLOW_PUBLIC_KEY_WRITERS=true`. Under SnapStart it refuses: the environment would be
//! frozen into the snapshot. With the wrapper configured, the extension itself writes no secrets file.

use std::ffi::OsString;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use kms_envelope::KmsClients;
use kms_envelope::escape::{EscapedBytes, OneLine};
use kms_envelope::lambda::{BundleKind, BundleSpec, ColdStart, EnvConfig, Landed, Secrets};
use lambda_extension::requests::{ErrorRequest, init_error};
use lambda_extension::{Extension, LambdaEvent, NextEvent, service_fn};
use lambda_runtime_api_client::Client;
use zeroize::Zeroizing;

/// How long `register` and `init/error` may take to answer. Lambda's own endpoint answers at once; one that
/// does not must not keep the plaintext on disk until the init timeout kills the process (a SIGKILL, which
/// runs no cleanup). `event/next` has no such limit: it is a long poll that waits for SHUTDOWN by design.
const API_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The error type reported to Lambda: an `Extension.` prefix is what Lambda expects from extensions.
const ERROR_TYPE: &str = "Extension.KmsEnvelopeFailed";
/// Where the JSON secrets bundle (`KMS_ENVELOPE_SECRETS`) lands, relative to the root, unless
/// `KMS_ENVELOPE_SECRETS_FILE` names another file.
const DEFAULT_SECRETS_FILE: &str = "kms-envelope-secrets.json";
/// Overrides [`DEFAULT_SECRETS_FILE`].
const SECRETS_FILE_VAR: &str = "KMS_ENVELOPE_SECRETS_FILE";
/// The Extensions API's `host:port`, set by Lambda (and by the Runtime Interface Emulator).
const RUNTIME_API_VAR: &str = "AWS_LAMBDA_RUNTIME_API";
/// The variable in which the function names its runtime's wrapper script (set by the function's owner).
const EXEC_WRAPPER_VAR: &str = "AWS_LAMBDA_EXEC_WRAPPER";
/// The file name of this layer's wrapper script, `/opt/kms-envelope-exec-wrapper`.
const EXEC_WRAPPER_NAME: &str = "kms-envelope-exec-wrapper";
/// The variable naming the JSON secrets bundle.
const SECRETS_VAR_NAME: &str = kms_envelope::lambda::env::SECRETS_VAR;
/// Set by Lambda to `snap-start` when the init runs to take a SnapStart snapshot.
const INIT_TYPE_VAR: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";
/// Names the exec wrapper may set although the deny-list refuses them (comma-separated).
const ALLOW_NAMES_VAR: &str = "KMS_ENVELOPE_EXEC_ALLOW_NAMES";
/// `true`: the exec wrapper accepts secrets under keys anyone can encrypt to.
const ALLOW_PUBLIC_KEY_WRITERS_VAR: &str = "KMS_ENVELOPE_EXEC_ALLOW_PUBLIC_KEY_WRITERS";
/// The name to register under when the executable's own file name cannot be read.
const FALLBACK_NAME: &str = "kms-envelope";
/// The name this binary is built under, for `--help`, `--version` and usage errors.
const BINARY: &str = "kms-envelope-extension";
/// The one-line synopsis, also the tail of a usage error.
const USAGE: &str = "kms-envelope-extension [--once | --help | --version | --exec -- COMMAND [ARGS]]";
/// Exit status of a usage error, as the `kms-envelope` command's.
const USAGE_ERROR: u8 = 2;

/// Lambda checks that the registered name equals the extension's file name under `/opt/extensions`.
fn extension_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg0| std::path::Path::new(&arg0).file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .unwrap_or_else(|| FALLBACK_NAME.to_owned())
}

/// One stderr line (CloudWatch Logs in Lambda), prefixed so it can be found among the function's lines,
/// and written with one `write` so that the runtime's lines, on the same descriptor, cannot split it.
macro_rules! log {
    ($($arg:tt)*) => {{
        let line = format!("[kms-envelope] {}\n", format_args!($($arg)*));
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    }};
}

/// What the command line asks for.
enum Command {
    Run(Mode),
    /// `--exec -- COMMAND [ARGS]`: the exec wrapper (see the module documentation).
    Exec(Vec<OsString>),
    Help,
    Version,
}

/// How the extension runs. Lambda passes no argument: [`Mode::Extension`].
enum Mode {
    /// Decrypt, register with the Extensions API, wait for `SHUTDOWN`.
    Extension,
    /// Decrypt, report and exit, without the Extensions API.
    Once,
}

impl Command {
    /// Parses the arguments after the program name; an unknown one is returned as the error.
    fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, OsString> {
        let mut mode = Mode::Extension;
        let mut args = args.into_iter().peekable();
        if args.peek().is_some_and(|arg| arg == "--exec") {
            let exec = args.next().unwrap_or_default();
            if args.next().is_none_or(|arg| arg != "--") || args.peek().is_none() {
                return Err(exec);
            }
            return Ok(Command::Exec(args.collect()));
        }
        for arg in args {
            match arg.to_str() {
                Some("-h" | "--help") => return Ok(Command::Help),
                Some("-V" | "--version") => return Ok(Command::Version),
                Some("--once") => mode = Mode::Once,
                _ => return Err(arg),
            }
        }
        Ok(Command::Run(mode))
    }
}

fn help() -> String {
    format!(
        "The kms-envelope cold-start decryptor as a Lambda extension, installed as /opt/extensions/kms-envelope.\n\
         It decrypts the bundles that the KMS_ENVELOPE_* variables name into KMS_ENVELOPE_ROOT (default /tmp),\n\
         then registers with the Lambda Extensions API ({RUNTIME_API_VAR}) and waits for SHUTDOWN.\n\n\
         Usage: {USAGE}\n\n\
         Options:\n  \
           --once         decrypt and exit, without the Extensions API: to try a configuration outside Lambda\n  \
           --exec -- COMMAND [ARGS]\n                 \
                          the exec wrapper: KMS_ENVELOPE_SECRETS into COMMAND's environment, then execute it\n  \
           -h, --help     print this help\n  \
           -V, --version  print the version\n"
    )
}

/// The bundles this run decrypted (or found in place): removed from the root when dropped, so that every
/// way out but the two successful ones (the `SHUTDOWN` exit, which runs no destructor, and a `--once`
/// that calls [`keep`](Self::keep)) leaves no plaintext behind, a panic's unwinding included.
struct Landing(Option<ColdStart>);

impl Landing {
    /// Leaves the files in place for the function (and for reuse by a later cold start).
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        if let Some(cold_start) = self.0.take()
            && let Err(e) = cold_start.discard()
        {
            log!("cannot remove the bundles that landed: {}", OneLine(&e.to_string()));
        }
    }
}

/// The cold start the environment describes, and where the secrets bundle lands if there is one.
async fn cold_start_from_env() -> kms_envelope::Result<(ColdStart, Option<PathBuf>)> {
    let config = EnvConfig::from_env()?;
    let aws = kms_envelope::lambda::load_aws_config().await;
    let keyring = config.keyring(&KmsClients::new(&aws))?;
    let mut cold_start = config.cold_start(keyring).s3_client(aws_sdk_s3::Client::new(&aws));
    let secrets_file = match &config.secrets {
        Some(_) if exec_wrapper_configured() => {
            log!("{SECRETS_VAR_NAME}: left to the exec wrapper ({EXEC_WRAPPER_VAR}), no file written");
            None
        }
        Some(source) => {
            // A file like any bundle (atomic, 0600, reused when warm), checked below to be what the
            // in-process loader accepts.
            let file = secrets_file()?;
            let spec = BundleSpec { source: source.clone(), destination: file.clone().into(), kind: BundleKind::File };
            cold_start = cold_start.bundle(spec);
            Some(config.root.join(file))
        }
        None => None,
    };
    Ok((cold_start, secrets_file))
}

/// Whether the function runs its runtime through this layer's exec wrapper, which puts the secrets in the
/// runtime's environment: then they need no file.
fn exec_wrapper_configured() -> bool {
    std::env::var_os(EXEC_WRAPPER_VAR)
        .is_some_and(|wrapper| std::path::Path::new(&wrapper).file_name().is_some_and(|name| name == EXEC_WRAPPER_NAME))
}

/// Where the secrets file lands, relative to the root: [`SECRETS_FILE_VAR`] if set, checked here to be a
/// relative path to a file (no `..`, no trailing `/`), so that a mistake is a `Config` error naming the
/// variable, as for the other variables; [`DEFAULT_SECRETS_FILE`] otherwise.
fn secrets_file() -> kms_envelope::Result<String> {
    use std::path::{Component, Path};
    let file = match std::env::var(SECRETS_FILE_VAR) {
        Ok(file) => file,
        Err(std::env::VarError::NotPresent) => return Ok(DEFAULT_SECRETS_FILE.to_owned()),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(kms_envelope::Error::Config(format!("{SECRETS_FILE_VAR} is not UTF-8")));
        }
    };
    let path = Path::new(&file);
    let plain = !file.ends_with('/')
        && path.file_name().is_some()
        && path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if plain {
        Ok(file)
    } else {
        Err(kms_envelope::Error::Config(format!(
            "{SECRETS_FILE_VAR}: {file:?} is not a relative path to a file under the root"
        )))
    }
}

/// Decrypts every bundle the environment names, and the secrets bundle into a 0600 JSON file. What lands
/// is in the returned [`Landing`] even when the outcome is an error.
async fn decrypt_all() -> (Landing, kms_envelope::Result<Vec<Landed>>) {
    let (cold_start, secrets_file) = match cold_start_from_env().await {
        Ok(configured) => configured,
        Err(e) => return (Landing(None), Err(e)),
    };
    let outcome = async {
        let landed = cold_start.run().await?.to_vec();
        if let Some(path) = secrets_file {
            Secrets::from_json(Zeroizing::new(tokio::fs::read(&path).await?))?;
        }
        Ok(landed)
    }
    .await;
    (Landing(Some(cold_start)), outcome)
}

fn report(landed: &[Landed], started: Instant) {
    for bundle in landed {
        log!(
            "{} {} ({} bytes) in {:.1} ms, KMS {:.1} ms",
            if bundle.reused { "reused" } else { "decrypted" },
            kms_envelope::escape::Escaped(&bundle.destination.to_string_lossy()),
            bundle.bytes,
            bundle.total_time.as_secs_f64() * 1e3,
            bundle.unwrap_time.as_secs_f64() * 1e3,
        );
    }
    log!("{} bundle(s) ready in {:.1} ms", landed.len(), started.elapsed().as_secs_f64() * 1e3);
}

async fn on_event(event: LambdaEvent) -> Result<(), lambda_extension::Error> {
    if let NextEvent::Shutdown(_) = event.next {
        // The crate's loop would ask for another event; after SHUTDOWN there is none to wait for. No
        // destructor runs: the landed files stay for a later cold start in this environment to reuse.
        std::process::exit(0);
    }
    Ok(())
}

async fn report_init_error(extension_id: &str, error: ErrorRequest<'_>) -> Result<(), lambda_extension::Error> {
    let request = init_error(extension_id, ERROR_TYPE, Some(error))?;
    let response = Client::builder().build()?.call(request).await?;
    if !response.status().is_success() {
        return Err(format!("the Extensions API answered {}", response.status()).into());
    }
    Ok(())
}

/// Checks that [`RUNTIME_API_VAR`] holds a `host:port`, the only form Lambda sets: the Extensions API
/// client panics on a missing or malformed one instead of returning an error.
fn check_runtime_api() -> Result<(), String> {
    let value = std::env::var(RUNTIME_API_VAR)
        .map_err(|_| format!("{RUNTIME_API_VAR} is not set: outside Lambda, try `{BINARY} --once`"))?;
    let well_formed = value.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'))
            && port.parse::<u16>().is_ok()
    });
    if well_formed {
        Ok(())
    } else {
        Err(format!("{RUNTIME_API_VAR} is not a host:port: {:?}", kms_envelope::escape::Escaped(&value)))
    }
}

/// Registers with the Extensions API, then reports `failure` as the init error, or waits for `SHUTDOWN`
/// (which exits the process). Returns only on a failure, already logged.
async fn register_and_wait(failure: Option<&str>) -> ExitCode {
    if let Err(reason) = check_runtime_api() {
        log!("cannot register with the Lambda Extensions API: {reason}");
        return ExitCode::FAILURE;
    }
    let name = extension_name();
    let register = Extension::new()
        .with_extension_name(&name)
        .with_events(&["SHUTDOWN"])
        .with_events_processor(service_fn(on_event))
        .register();
    let registered = match tokio::time::timeout(API_ANSWER_TIMEOUT, register).await {
        Ok(Ok(registered)) => registered,
        Ok(Err(e)) => {
            log!("cannot register with the Lambda Extensions API: {}", OneLine(&e.to_string()));
            return ExitCode::FAILURE;
        }
        Err(_) => {
            log!("cannot register with the Lambda Extensions API: no answer in {} s", API_ANSWER_TIMEOUT.as_secs());
            return ExitCode::FAILURE;
        }
    };
    if let Some(reason) = failure {
        let error = ErrorRequest { error_message: reason, error_type: ERROR_TYPE, stack_trace: Vec::new() };
        match tokio::time::timeout(API_ANSWER_TIMEOUT, report_init_error(&registered.extension_id, error)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log!("cannot report the init error: {}", OneLine(&e.to_string())),
            Err(_) => log!("cannot report the init error: no answer in {} s", API_ANSWER_TIMEOUT.as_secs()),
        }
        return ExitCode::FAILURE;
    }
    match registered.run().await {
        Ok(()) => log!("event loop failed: the Extensions API's events ended before SHUTDOWN"),
        Err(e) => log!("event loop failed: {}", OneLine(&e.to_string())),
    }
    ExitCode::FAILURE
}

async fn run(mode: Mode) -> ExitCode {
    let started = Instant::now();
    let (landing, outcome) = decrypt_all().await;
    match outcome {
        Ok(landed) => report(&landed, started),
        Err(e) => {
            // Removed before the Extensions API is tried: it might not answer before Lambda's init timeout.
            drop(landing);
            let reason = OneLine(&e.to_string()).to_string();
            log!("failed: {reason}");
            return match mode {
                Mode::Once => ExitCode::FAILURE,
                Mode::Extension => register_and_wait(Some(&reason)).await,
            };
        }
    }
    match mode {
        Mode::Once => {
            landing.keep();
            ExitCode::SUCCESS
        }
        Mode::Extension => {
            let failed = register_and_wait(None).await;
            // The files go only now that the Extensions API failed: the SHUTDOWN exit never gets here.
            drop(landing);
            failed
        }
    }
}

fn main() -> ExitCode {
    let mode = match Command::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(mode)) => mode,
        Ok(Command::Exec(command)) => return exec_wrapper(&command),
        Ok(Command::Help) => return print_and_exit(&help()),
        Ok(Command::Version) => return print_and_exit(&format!("{BINARY} {}\n", env!("CARGO_PKG_VERSION"))),
        Err(argument) => {
            let argument = EscapedBytes(argument.as_encoded_bytes());
            eprintln!("error: unexpected argument '{argument}'; usage: {USAGE}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    // A panic (the Extensions API client panics on some inputs) is one escaped line like any failure, and
    // is caught below, after unwinding has dropped the Landing, so no plaintext outlives it.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let payload = info.payload();
        let message =
            payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        log!("internal error{location}: {}", OneLine(message.unwrap_or("panic")));
    }));
    // One thread of our own: the decryption pipeline has its worker threads, and the Extensions API needs
    // no more than a current-thread runtime.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            log!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::panic::catch_unwind(AssertUnwindSafe(|| runtime.block_on(run(mode)))).unwrap_or(ExitCode::FAILURE)
}

/// `--help` and `--version`: stdout, exit 0 (a closed stdout is not worth a panic).
fn print_and_exit(text: &str) -> ExitCode {
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    ExitCode::SUCCESS
}

/// The exec wrapper: the secrets into `command`'s environment, then `command` in this process's place.
/// Returns only on a failure, logged: the runtime then never starts and Lambda fails the Init phase.
fn exec_wrapper(command: &[OsString]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            log!("exec wrapper: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let secrets = match runtime.block_on(secrets_for_environment()) {
        Ok(secrets) => secrets,
        Err(reason) => {
            log!("exec wrapper failed: {}", OneLine(&reason));
            return ExitCode::FAILURE;
        }
    };
    drop(runtime);
    let (program, args) = command.split_first().expect("parse requires a command");
    let mut child = std::process::Command::new(program);
    child.args(args);
    // A variable of the function's own configuration wins.
    for name in secrets.names().filter(|name| std::env::var_os(name).is_none()) {
        child.env(name, secrets.get(name).unwrap_or_default());
    }
    log!(
        "exec wrapper: {} secret(s) in the environment of {}",
        secrets.names().count(),
        EscapedBytes(program.as_encoded_bytes())
    );
    let err = std::os::unix::process::CommandExt::exec(&mut child);
    log!("exec wrapper: cannot execute {}: {err}", EscapedBytes(program.as_encoded_bytes()));
    ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 })
}

/// The secrets `KMS_ENVELOPE_SECRETS` names, decrypted into memory and checked to be fit for an
/// environment, or why not (one line, no value).
async fn secrets_for_environment() -> Result<Secrets, String> {
    use kms_envelope::environment::{EnvName, check_denied};
    use kms_envelope::lambda::env::KmsKeys;
    if std::env::var(INIT_TYPE_VAR).is_ok_and(|kind| kind == "snap-start") {
        return Err(format!(
            "{INIT_TYPE_VAR} is snap-start: SnapStart would freeze the secrets into the snapshot and restore \
             them unchanged in every environment; read them from the file the extension writes instead \
             (remove {EXEC_WRAPPER_VAR})"
        ));
    }
    let config = EnvConfig::from_env().map_err(|e| e.to_string())?;
    let Some(source) = config.secrets.clone() else {
        return Err(format!(
            "{SECRETS_VAR_NAME} is not set: the exec wrapper has no secrets to put in the environment"
        ));
    };
    let anyone_writes = match &config.keys {
        KmsKeys::Rsa { .. } => {
            Some("a KMS RSA key (KMS_ENVELOPE_KMS_RSA_KEY_ARN), to which anyone with its public key can encrypt")
        }
        KmsKeys::Discovery { accounts: None, .. } => {
            Some("discovery of any account (KMS_ENVELOPE_KMS_ACCOUNTS=*), to which anyone can encrypt")
        }
        KmsKeys::Ecdh { sender_public_key_file: None, .. } | KmsKeys::KmsEcdh { sender_public_key_file: None, .. } => {
            Some(
                "ECDH with no sender pinned (no KMS_ENVELOPE_ECDH_SENDER_PUBLIC_KEY_FILE), to which anyone with the \
                 public key can encrypt",
            )
        }
        _ => None,
    };
    if let Some(keys) = anyone_writes
        && std::env::var(ALLOW_PUBLIC_KEY_WRITERS_VAR).map_or(true, |v| v != "true")
    {
        return Err(format!(
            "the secrets are unwrapped by {keys}, so whoever writes them chooses the runtime's environment; set \
             {ALLOW_PUBLIC_KEY_WRITERS_VAR}=true only if no one else could have written them"
        ));
    }
    let aws = kms_envelope::lambda::load_aws_config().await;
    let keyring = config.keyring(&KmsClients::new(&aws)).map_err(|e| e.to_string())?;
    let cold_start = config.cold_start(keyring).s3_client(aws_sdk_s3::Client::new(&aws));
    let secrets = cold_start.load_secrets(&source).await.map_err(|e| e.to_string())?;
    let allowed: Vec<String> = std::env::var(ALLOW_NAMES_VAR)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    for name in secrets.names() {
        let name = EnvName::new(name).map_err(|e| e.to_string())?;
        check_denied(&name, &allowed)
            .map_err(|e| format!("{e} (add it to {ALLOW_NAMES_VAR} if this secret must set it)"))?;
        if secrets.get(name.as_str()).is_some_and(|value| value.contains('\0')) {
            return Err(kms_envelope::environment::EnvError::Nul { name }.to_string());
        }
    }
    Ok(secrets)
}
