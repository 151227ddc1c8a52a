//! Command-line front end: argument parsing, keys, files and directories, progress, exit codes.

mod args;
mod audit;
mod branch_key;
mod completions;
mod edit;
mod exec;
mod exit;
mod features;
mod inspect;
#[cfg(all(unix, feature = "s3"))]
mod interrupt;
mod io;
mod keys;
mod location;
mod offered;
mod progress;
mod reencrypt;
mod s3_prefix;
#[cfg(unix)]
mod signals;
mod tree;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use kms_envelope::OutputOptions;
use kms_envelope::bundle::encrypt_directory;
use kms_envelope::bundle::unpack_verified;
use kms_envelope::{
    CacheLimits, CachingKeyring, DecryptLimits, DecryptOptions, Decryptor, EncryptOptions, FRAME_OVERHEAD, Header,
    Keyring, MaterialsCache,
};

use args::{
    BundleArgs, CacheArgs, Cli, Command, DecryptArgs, DecryptSettings, EncryptArgs, EncryptSettings, OutputArgs,
    UnbundleArgs,
};
use audit::Audit;
use exit::{Code, Failure};
use location::{Location, Pair, Source, Written};
use offered::Recording;
use progress::Progress;

/// `singular` for a count of one, `plural` otherwise: "1 of 1 file failed", "got 1 key".
fn plural<'a>(count: usize, singular: &'a str, plural: &'a str) -> &'a str {
    if count == 1 { singular } else { plural }
}

/// Parses the command line, runs it, and maps the outcome to the documented exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse_with_order();
    #[cfg(feature = "s3")]
    if let Some(s3) = cli.command.s3_args() {
        io::use_s3_transfer(s3.transfer());
    }
    let result = check_s3_names(&cli.command).and_then(|()| match &cli.command {
        Command::Encrypt(args) => encrypt(args),
        Command::Decrypt(args) => decrypt(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Bundle(args) => bundle(args),
        Command::Unbundle(args) => unbundle(args),
        Command::Reencrypt(args) => reencrypt::run(args),
        Command::Edit(args) => edit::run(args),
        Command::Exec(args) => exec::run(args),
        Command::BranchKey(args) => branch_key::run(args),
        Command::Completions(args) => completions::completions(Cli::definition(), args.shell),
        Command::Man => completions::man(Cli::definition()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if failure.is_reported() {
                eprintln!("kms-envelope: {failure}");
            }
            failure.exit_code()
        }
    }
}

/// Every `s3://` name on the command line, checked once, before anything is read: an object named where
/// one is taken (see [`location::S3Name::url`]), and a refusal by name where only a local path is (a
/// bundle's directory, a key file; see [`location::check_local`]). `encrypt` and `decrypt` have every
/// refusal of their (INPUT, OUTPUT) pair in [`location::check_names`], `reencrypt` in
/// [`location::check_reencrypt`], which it calls first.
fn check_s3_names(command: &Command) -> Result<(), Failure> {
    let local = location::check_local;
    let key_files = |keys: &args::KeyArgs| {
        let (raw, rsa_public, rsa_private, kms_public) =
            (&keys.raw_key_file, &keys.rsa_public_key, &keys.rsa_private_key, &keys.kms_rsa_public_key);
        let named = [(raw, "raw-key-file"), (rsa_public, "rsa-public-key"), (rsa_private, "rsa-private-key")];
        for (paths, option) in named.into_iter().chain([(kms_public, "kms-rsa-public-key")]) {
            for path in paths {
                local(path, &format!("--{}{option}", keys.flag_prefix))?;
            }
        }
        Ok(())
    };
    match command {
        Command::Encrypt(a) => {
            key_files(&a.keys)?;
            location::check_names(Pair::Encrypt { armor: a.armor.armor, recursive: a.recursive }, &a.input, &a.output)?;
        }
        Command::Decrypt(a) => {
            key_files(&a.keys)?;
            location::check_names(Pair::Decrypt { recursive: a.recursive }, &a.input, &a.output)?;
        }
        Command::Inspect(a) => a.input.check_object()?,
        Command::Bundle(a) => {
            key_files(&a.keys)?;
            local(&a.directory, "DIRECTORY")?;
            a.output.check_object()?;
        }
        Command::Unbundle(a) => {
            key_files(&a.keys)?;
            a.input.check_object()?;
            local(&a.directory, "DIRECTORY")?;
        }
        Command::Edit(a) => {
            key_files(&a.keys)?;
            a.file.check_object()?;
        }
        Command::Exec(a) => {
            key_files(&a.keys)?;
            a.secrets.iter().try_for_each(Location::check_object)?;
        }
        Command::Completions(_) | Command::Man | Command::BranchKey(_) => {}
        Command::Reencrypt(a) => {
            key_files(&a.keys)?;
            key_files(a.new_keys.keys())?;
        }
    }
    Ok(())
}

fn encrypt_options(settings: &EncryptSettings) -> EncryptOptions {
    let mut options = EncryptOptions::new()
        .frame_length(settings.frame_length)
        .commitment_policy(settings.commitment_policy.0)
        .max_encrypted_data_keys(settings.max_encrypted_data_keys);
    if let Some(suite) = settings.suite {
        options = options.suite(suite.0);
    }
    if let Some(threads) = settings.threads {
        options = options.threads(threads.into());
    }
    for (k, v) in &settings.context {
        options = options.context(k, v);
    }
    for (k, v) in &settings.require_context {
        options = options.required_context(k, v);
    }
    options
}

fn decrypt_options(settings: &DecryptSettings) -> DecryptOptions {
    let mut limits =
        DecryptLimits { max_encrypted_data_keys: Some(settings.max_encrypted_data_keys), ..DecryptLimits::default() };
    if let Some(n) = settings.max_frame_length {
        limits.max_frame_length = n;
        // Frames longer than the default buffers hold are read one at a time.
        limits.max_frame_buffers = limits.max_frame_buffers.max((n as usize).saturating_add(FRAME_OVERHEAD));
    }
    let mut options = DecryptOptions::new()
        .commitment_policy(settings.commitment_policy.0)
        .limits(limits)
        .unsigned_only(settings.unsigned_only);
    if let Some(threads) = settings.threads {
        options = options.threads(threads.into());
    }
    for (k, v) in &settings.context {
        options = options.context(k, v);
    }
    options
}

/// `--require-context-key K`, as in the ESDK CLI: the message's encryption context must hold K, stored in
/// the header or given with `--context K=V` (a required pair, which the decryptor then authenticates).
/// Checked on the authenticated header, before any plaintext is released.
fn required_keys(settings: &DecryptSettings) -> impl Fn(&Header) -> Result<(), Failure> + '_ {
    move |header| match settings.require_context_key.iter().find(|k| {
        !header.encryption_context().contains_key(k) && !settings.context.iter().any(|(given, _)| given == *k)
    }) {
        Some(k) => Err(Failure::new(
            Code::InvalidMessage,
            format!("the encryption context has no key {k:?} (--require-context-key)"),
        )),
        None => Ok(()),
    }
}

fn encrypt(args: &EncryptArgs) -> Result<(), Failure> {
    let options = encrypt_options(&args.settings);
    let out = &args.output_args;
    let armor = args.armor.armor;
    let audited = (!args.recursive).then_some(&args.output);
    let kept = audit::kept_files(&args.input, &args.output, args.keys.files());
    let audit = Audit::open(&args.metadata, audit::Mode::Encrypt, audited, kept)?;
    // Encrypts `input`, read from `from`, and writes the message's audit record once it is complete.
    let encrypt_to =
        |keyring: &dyn Keyring, options: &EncryptOptions, mut input: io::Input, from: &Location, to: &Location| {
            let output = to;
            let Some(audit) = &audit else {
                return if armor {
                    io::encrypt_armored_to(keyring, options, input, output, out).map(drop)
                } else {
                    io::encrypt_to(keyring, options, input, output, out)
                };
            };
            if *to == Location::Stdio {
                // Stdout cannot be read back: the sequential path, which sees the header go out.
                input.file = None;
            }
            let header = if armor {
                Some(io::encrypt_armored_to(keyring, options, input, output, out)?)
            } else {
                io::encrypt_recorded(keyring, options, input, output, out)?
            };
            let header = match header {
                Some(header) => header,
                None => io::written_header(output)?,
            };
            audit.record(from, output, &header)
        };
    if args.recursive {
        let plan = tree::plan(args.input.path(), args.output.path(), &|name| tree::with_suffix(name, &args.suffix))?;
        let keyring = cached(keys::for_encrypt(&args.keys)?, &args.cache)?;
        return tree::run(plan, |job| {
            let input = io::open_file(&job.input)?;
            // The size declared lets a caching keyring count bytes per data key; a file that grows past it
            // while being read fails.
            let options = options.clone().max_plaintext_length(input.size);
            let (from, to) = (Location::File(job.input.clone()), Location::File(job.output.clone()));
            encrypt_to(keyring.as_ref(), &options, input, &from, &to)
        });
    }
    let input = io::open_input(&args.input)?;
    // Armor is text, which a terminal shows as it is.
    let written = if armor { Written::Text } else { Written::Message };
    let source = Source::Opened(&args.input, &input);
    location::check_destination(&args.output, written, source, &[&args.keys], out.force)?;
    let keyring = keys::for_encrypt(&args.keys)?;
    encrypt_to(keyring.as_ref(), &options, input, &args.input, &args.output)
}

/// How many encryption contexts (so data keys) a `--cache-max-age` run keeps at once.
const CACHED_CONTEXTS: usize = 16;

/// The keyring that makes the data keys of `encrypt --recursive` or `reencrypt --recursive`, caching them
/// if `--cache-max-age` asked for it. An encrypt run uses one encryption context and suite; a reencrypt
/// run keeps each source's context, so its files may need a few entries (a data key is never shared
/// across contexts).
fn cached(keyring: Box<dyn Keyring>, args: &CacheArgs) -> Result<Box<dyn Keyring>, Failure> {
    let Some(max_age) = args.cache_max_age else { return Ok(keyring) };
    let mut limits = CacheLimits::new(Duration::from_secs(max_age));
    if let Some(messages) = args.cache_max_messages {
        limits = limits.max_messages(messages);
    }
    let cache = Arc::new(MaterialsCache::new(CACHED_CONTEXTS));
    let caching = CachingKeyring::new(keyring, cache, limits).map_err(|e| Failure::usage(e.to_string()))?;
    Ok(Box::new(caching))
}

fn decrypt(args: &DecryptArgs) -> Result<(), Failure> {
    let options = decrypt_options(&args.settings);
    let required = required_keys(&args.settings);
    let audited = (!args.recursive).then_some(&args.output);
    let kept = audit::kept_files(&args.input, &args.output, args.keys.files());
    let audit = Audit::open(&args.metadata, audit::Mode::Decrypt, audited, kept)?;
    // The last header checked: the authenticated one, once a decrypt succeeded (each path checks the
    // authenticated header last), for the audit record.
    let checked = std::sync::Mutex::new(None);
    let auditing = audit.is_some();
    let check = |header: &Header| {
        required(header)?;
        if auditing {
            *checked.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(header.clone());
        }
        Ok(())
    };
    // Writes the audit record of a message that decrypted: only then, never for one that failed.
    let record = |input: &Location, output: &Location| match &audit {
        Some(audit) => match checked.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            Some(header) => audit.record(input, output, &header),
            None => Err(Failure::new(Code::Io, format!("{}: no verified header to record", input.arg()))),
        },
        None => Ok(()),
    };
    let out = &args.output_args;
    if args.recursive {
        let rename = |name: &std::ffi::OsStr| match &args.suffix {
            Some(suffix) => tree::with_suffix(name, suffix),
            None => tree::decrypted_name(name),
        };
        let plan = tree::plan(args.input.path(), args.output.path(), &rename)?;
        let keyring = Recording::new(keys::for_decrypt(&args.keys, &args.discovery)?);
        return tree::run(plan, |job| {
            let (input, output) = (Location::File(job.input.clone()), Location::File(job.output.clone()));
            let message = io::open_message(&input)?;
            io::decrypt_to(&keyring, &options, &check, message, &output, out).map_err(|f| keyring.explain(f))?;
            record(&input, &output)
        });
    }
    let (input, output) = (&args.input, &args.output);
    if let (Some(range), Location::S3(name)) = (args.range.clone(), input) {
        location::check_destination(output, Written::Text, Source::Later, &[&args.keys], out.force)?;
        let keyring = Recording::new(keys::for_decrypt(&args.keys, &args.discovery)?);
        io::decrypt_s3_range_to(&keyring, &options, &check, name.url()?, range, output, out)
            .map_err(|f| keyring.explain(f))?;
        return record(input, output);
    }
    // --range reads a binary message by offset (and refuses armor); otherwise either form is read.
    let opened = if args.range.is_some() { io::open_input(input)? } else { io::open_message(input)? };
    location::check_destination(output, Written::Text, Source::Opened(input, &opened), &[&args.keys], out.force)?;
    let keyring = Recording::new(keys::for_decrypt(&args.keys, &args.discovery)?);
    match args.range.clone() {
        Some(range) => io::decrypt_range_to(&keyring, &options, &check, opened, range, output, out),
        None => io::decrypt_to(&keyring, &options, &check, opened, output, out),
    }
    .map_err(|f| keyring.explain(f))?;
    record(input, output)
}

/// Bytes of regular files below `dir`, for the bundle progress bar (the archive adds a little).
fn directory_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => directory_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

fn bundle(args: &BundleArgs) -> Result<(), Failure> {
    let dir = &args.directory;
    let name = dir.display().to_string();
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Failure::usage(format!("{name}: not a directory"))),
        Err(e) => return Err(Failure::io(format!("cannot open {name}"), e)),
    }
    let out = &args.output_args;
    location::check_destination(&args.output, Written::Message, Source::Directory(dir), &[&args.keys], out.force)?;
    let output = match &args.output {
        Location::Stdio => None,
        Location::File(path) => Some(path.as_path()),
        Location::S3(_) => {
            let options = encrypt_options(&args.settings);
            let keyring = keys::for_encrypt(&args.keys)?;
            // The upload path of `encrypt`, reading the tar stream as its plaintext: the object appears only
            // once the whole directory was packed and sealed.
            let size = directory_size(dir);
            let reader = io::packed_directory(dir);
            let input = io::Input { name, reader, size: Some(size), file: None, resendable: false };
            return io::encrypt_to(keyring.as_ref(), &options, input, &args.output, out);
        }
    };
    let options = encrypt_options(&args.settings);
    let keyring = keys::for_encrypt(&args.keys)?;
    let progress = Progress::new(&name, Some(directory_size(dir)), out.quiet);
    // The bar counts archive bytes written, which start only once the data key exists.
    progress.body_started();
    let result = write_bundle(keyring.as_ref(), &options, dir, output, out, &progress);
    progress.done(result.is_ok());
    result.map_err(|f| f.with_file(&name))
}

fn write_bundle(
    keyring: &dyn Keyring,
    options: &EncryptOptions,
    dir: &Path,
    output: Option<&Path>,
    out: &OutputArgs,
    progress: &Progress,
) -> Result<(), Failure> {
    let force = out.force;
    let Some(path) = output else {
        let stdout = kms_envelope::stream::WipingBufWriter::with_capacity(64 << 10, io::raw_stdout());
        let (mut written, _) =
            encrypt_directory(keyring, options, dir, progress.writer(stdout)).map_err(Failure::writing)?;
        return std::io::Write::flush(&mut written).map_err(|e| Failure::io("cannot write to stdout".into(), e));
    };
    let output = path.display();
    let mut pending = kms_envelope::stream::file::PendingFile::create(path, force)
        .map_err(|e| Failure::new(Code::Io, format!("{output}: cannot create: {e}")))?;
    if !out.no_fsync {
        pending.sync_while_writing();
    }
    {
        let writer = std::io::BufWriter::with_capacity(64 << 10, &mut pending);
        let (mut written, _) =
            encrypt_directory(keyring, options, dir, progress.writer(writer)).map_err(Failure::writing)?;
        std::io::Write::flush(&mut written).map_err(|e| Failure::io(format!("cannot write {output}"), e))?;
    }
    pending.commit(!out.no_fsync, force).map_err(|e| Failure::new(Code::Io, format!("{output}: cannot write: {e}")))
}

fn unbundle(args: &UnbundleArgs) -> Result<(), Failure> {
    let destination = &args.directory;
    let out = &args.output_args;
    match std::fs::symlink_metadata(destination) {
        Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
            return Err(Failure::new(Code::Io, format!("{}: exists and is not a directory", destination.display())));
        }
        Ok(_) if !out.force => {
            return Err(Failure::new(
                Code::Io,
                format!("{}: already exists (use --force to replace it)", destination.display()),
            ));
        }
        _ => {}
    }
    if let Some(parent) = destination.parent().filter(|parent| !parent.as_os_str().is_empty())
        && std::fs::symlink_metadata(parent).is_err()
    {
        return Err(Failure::new(
            Code::Io,
            format!(
                "{}: the directory {} does not exist; create it first (mkdir -p {})",
                destination.display(),
                parent.display(),
                parent.display()
            ),
        ));
    }
    let input = match &args.input {
        Location::Stdio | Location::S3(_) => io::open_message(&args.input)?,
        Location::File(path) => {
            let name = args.input.arg().into_owned();
            let file = File::open(path).map_err(|e| Failure::io(format!("cannot open {name}"), e))?;
            let size = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
            let reader = Box::new(BufReader::with_capacity(16 << 10, file));
            io::dearmored(io::Input { name, reader, size, file: None, resendable: false })?
        }
    };
    let options = decrypt_options(&args.settings);
    let keyring = Recording::new(keys::for_decrypt(&args.keys, &args.discovery)?);
    let progress = Progress::new(&input.name, input.size, out.quiet);
    let reader = progress.reader(input.reader);
    let check = required_keys(&args.settings);
    let result = Decryptor::new(&keyring, &options, reader)
        .map_err(Failure::reading)
        .and_then(|decryptor| {
            check(decryptor.header())?;
            progress.body_started();
            unpack_verified(decryptor, destination, &OutputOptions::new().overwrite(out.force))
                .map_err(Failure::reading)
        })
        .map(drop)
        .map_err(|f| keyring.explain(f.with_file(&input.name)));
    progress.done(result.is_ok());
    result
}
