//! Command-line front end: argument parsing, key loading, files, exit codes.

mod args;
mod exit;
mod io;

use std::process::ExitCode;

use clap::Parser;
use kms_envelope::{DecryptOptions, EncryptOptions, Error, Keyring, MultiKeyring, RawAesKeyring};

use args::{Cli, Command, DecryptArgs, EncryptArgs, KeyArgs};
use exit::Failure;

/// Parses the command line, runs it, and maps the outcome to the documented exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Encrypt(args) => encrypt(args),
        Command::Decrypt(args) => decrypt(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("kms-envelope: {failure}");
            failure.exit_code()
        }
    }
}

fn keyring(keys: &KeyArgs) -> Result<Box<dyn Keyring>, Failure> {
    let triples = keys.raw_keys()?;
    let mut keyrings: Vec<Box<dyn Keyring>> = Vec::new();
    for (path, namespace, name) in triples {
        let material = zeroize::Zeroizing::new(
            std::fs::read(&path).map_err(|e| Failure::io(format!("cannot read key file {}", path.display()), e))?,
        );
        let keyring = RawAesKeyring::new(namespace, name, &material)
            .map_err(|e| Failure::usage(format!("key file {}: {e}", path.display())))?;
        keyrings.push(Box::new(keyring));
    }
    if keyrings.is_empty() {
        return Err(Failure::usage("no key given: use --raw-key-file PATH --key-namespace NS --key-name NAME".into()));
    }
    if keyrings.len() == 1 {
        return Ok(keyrings.remove(0));
    }
    let mut rest = keyrings.into_iter();
    let mut multi = MultiKeyring::new(rest.next().expect("checked non-empty"));
    for child in rest {
        multi = multi.with_child(child);
    }
    Ok(Box::new(multi))
}

fn encrypt(args: &EncryptArgs) -> Result<(), Failure> {
    let keyring = keyring(&args.keys)?;
    let mut options = EncryptOptions::new().frame_length(args.frame_length).commitment_policy(args.commitment_policy.0);
    if let Some(suite) = args.suite {
        options = options.suite(suite.0);
    }
    for (k, v) in &args.context {
        options = options.context(k, v);
    }
    for (k, v) in &args.require_context {
        options = options.required_context(k, v);
    }
    let input = io::open_input(&args.input)?;
    io::encrypt_to(keyring.as_ref(), &options, input, &args.output, args.force)
}

fn decrypt(args: &DecryptArgs) -> Result<(), Failure> {
    let keyring = keyring(&args.keys)?;
    let mut limits = kms_envelope::DecryptLimits::default();
    if let Some(n) = args.max_encrypted_data_keys {
        limits.max_encrypted_data_keys = Some(n);
    }
    if let Some(n) = args.max_frame_length {
        limits.max_frame_length = n;
    }
    let mut options = DecryptOptions::new()
        .commitment_policy(args.commitment_policy.0)
        .limits(limits)
        .unsigned_only(args.unsigned_only);
    for (k, v) in &args.context {
        options = options.context(k, v);
    }
    for k in &args.require_context_key {
        options = options.require_context_key(k);
    }
    let input = io::open_input(&args.input)?;
    io::decrypt_to(keyring.as_ref(), &options, input, &args.output, args.force).map_err(|f| f.with_file(&args.input))
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::from_error(err)
    }
}
