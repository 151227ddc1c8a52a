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
//! tests/extension.rs holds this extension back before `register` and checks that the function's
//! module-level code still finds its file. Init counts against the Init phase's limit (10 s on demand),
//! in which a 100 MiB bundle takes about 0.1 s to decrypt.
//!
//! # Failure
//!
//! On any error the extension still registers (an identifier is needed to report), then posts
//! `/extension/init/error` with the error type `Extension.KmsEnvelopeFailed` and a one-line reason (the
//! library's error messages never carry plaintext; text from a message is escaped), and exits 1. Lambda
//! then fails the init phase: the function never runs without its configuration.
//!
//! # Afterwards
//!
//! It registers for `SHUTDOWN` only (so it adds no latency to invokes), waits for it, and exits.
//!
//! `kms-envelope-extension --once` decrypts and exits without the Extensions API: a way to try a
//! configuration outside Lambda.

use std::process::ExitCode;
use std::time::Instant;

use kms_envelope::KmsClients;
use kms_envelope::escape::OneLine;
use kms_envelope::lambda::{BundleKind, BundleSpec, EnvConfig, Landed, Secrets};
use lambda_extension::requests::{ErrorRequest, init_error};
use lambda_extension::{Extension, LambdaEvent, NextEvent, service_fn};
use lambda_runtime_api_client::Client;
use zeroize::Zeroizing;

/// The error type reported to Lambda: an `Extension.` prefix is what Lambda expects from extensions.
const ERROR_TYPE: &str = "Extension.KmsEnvelopeFailed";
/// Where the JSON secrets bundle (`KMS_ENVELOPE_SECRETS`) lands, relative to the root, unless
/// `KMS_ENVELOPE_SECRETS_FILE` names another file.
const DEFAULT_SECRETS_FILE: &str = "kms-envelope-secrets.json";
/// Overrides [`DEFAULT_SECRETS_FILE`].
const SECRETS_FILE_VAR: &str = "KMS_ENVELOPE_SECRETS_FILE";
/// The name to register under when the executable's own file name cannot be read.
const FALLBACK_NAME: &str = "kms-envelope";

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

/// Decrypts every bundle the environment names, and the secrets bundle into a 0600 JSON file.
async fn decrypt_all() -> kms_envelope::Result<Vec<Landed>> {
    let config = EnvConfig::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let keyring = config.keyring(&KmsClients::new(&aws))?;
    let mut cold_start = config.cold_start(keyring).s3_client(aws_sdk_s3::Client::new(&aws));
    let secrets_file = match &config.secrets {
        Some(source) => {
            // A file like any bundle (atomic, 0600, reused when warm), checked below to be what the
            // in-process loader accepts.
            let file = std::env::var(SECRETS_FILE_VAR).unwrap_or_else(|_| DEFAULT_SECRETS_FILE.to_owned());
            let spec = BundleSpec { source: source.clone(), destination: file.clone().into(), kind: BundleKind::File };
            cold_start = cold_start.bundle(spec);
            Some(config.root.join(file))
        }
        None => None,
    };
    let outcome = async {
        let landed = cold_start.run().await?.to_vec();
        if let Some(path) = secrets_file {
            Secrets::from_json(Zeroizing::new(tokio::fs::read(&path).await?))?;
        }
        Ok(landed)
    }
    .await;
    if outcome.is_err() {
        // The init fails: what did land (other bundles, a secrets file that is not JSON) must not stay.
        if let Err(e) = cold_start.discard() {
            log!("cannot remove the bundles that landed: {}", OneLine(&e.to_string()));
        }
    }
    outcome
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
        // The crate's loop would ask for another event; after SHUTDOWN there is none to wait for.
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

async fn run() -> ExitCode {
    let started = Instant::now();
    let outcome = decrypt_all().await;
    if std::env::args().nth(1).as_deref() == Some("--once") {
        return match outcome {
            Ok(landed) => {
                report(&landed, started);
                ExitCode::SUCCESS
            }
            Err(e) => {
                log!("failed: {}", OneLine(&e.to_string()));
                ExitCode::FAILURE
            }
        };
    }

    let name = extension_name();
    let registered = Extension::new()
        .with_extension_name(&name)
        .with_events(&["SHUTDOWN"])
        .with_events_processor(service_fn(on_event))
        .register()
        .await;
    let registered = match registered {
        Ok(registered) => registered,
        Err(e) => {
            log!("cannot register with the Lambda Extensions API: {}", OneLine(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(landed) => report(&landed, started),
        Err(e) => {
            let reason = OneLine(&e.to_string()).to_string();
            log!("failed: {reason}");
            let error = ErrorRequest { error_message: &reason, error_type: ERROR_TYPE, stack_trace: Vec::new() };
            if let Err(e) = report_init_error(&registered.extension_id, error).await {
                log!("cannot report the init error: {}", OneLine(&e.to_string()));
            }
            return ExitCode::FAILURE;
        }
    }
    match registered.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log!("event loop failed: {}", OneLine(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // One thread of our own: the decryption pipeline has its worker threads, and the Extensions API needs
    // no more than a current-thread runtime.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            log!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run())
}
