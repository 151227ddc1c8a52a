//! `reencrypt`: messages under new keys, one streaming pass each, for a file, stdin, or a tree.

use std::io::Write;
use std::path::Path;

use kms_envelope::stream::armor::ArmorWriter;
use kms_envelope::stream::file::PendingFile;
use kms_envelope::stream::{WipingBufReader, WipingBufWriter, default_target_suite};
use kms_envelope::{
    DecryptLimits, DecryptOptions, EncryptOptions, Header, Keyring, OutputOptions, ReencryptOptions, Rotation,
    SkipCheck, TargetKeys, reencrypt, reencrypt_path, rotation_status_with,
};

use super::args::{ReencryptArgs, SkipCheckArg};
use super::exit::{Code, Failure};
use super::inspect::describe;
use super::io;
use super::location::{self, Location, Reencryption, S3Url, Source, Written};
use super::offered::{Recording, shortened};
use super::s3_prefix::S3Prefix;
use super::{keys, tree};

/// The source's reading options and the new message's, from the command line.
fn options(args: &ReencryptArgs) -> ReencryptOptions {
    let limits =
        DecryptLimits { max_encrypted_data_keys: Some(args.max_encrypted_data_keys), ..DecryptLimits::default() };
    let mut source = DecryptOptions::new().commitment_policy(args.commitment_policy.0).limits(limits);
    let mut target = EncryptOptions::new().frame_length(args.frame_length);
    if let Some(threads) = args.threads {
        source = source.threads(threads.into());
        target = target.threads(threads.into());
    }
    if let Some(suite) = args.suite {
        target = target.suite(suite.0);
    }
    for (k, v) in &args.context {
        source = source.context(k, v);
    }
    for (k, v) in &args.new_context {
        target = target.context(k, v);
    }
    for (k, v) in &args.new_require_context {
        target = target.required_context(k, v);
    }
    ReencryptOptions::new().source(source).target(target).keep_context(!args.replace_context)
}

pub fn run(args: &ReencryptArgs) -> Result<(), Failure> {
    let pair = location::check_reencrypt(&args.input, args.output.as_ref(), args.in_place, args.recursive)?;
    check_usage(args)?;
    if args.dry_run {
        return dry_run(args, &pair);
    }
    let options = options(args);
    match pair {
        Reencryption::Prefixes { from, to } => s3_prefix_to_prefix(args, &options, &from, to.as_ref()),
        Reencryption::Object { input, output } => s3_to_s3(args, &options, input, output),
        Reencryption::Local { input, output } if args.recursive => tree_to_tree(args, &options, input, output),
        Reencryption::Local { input, output } => local(args, &options, input, output),
    }
}

/// What the new message is, for the refusals of stdout: base64 text with --armor, else a binary message.
fn written(args: &ReencryptArgs) -> Written {
    if args.armor.armor { Written::Text } else { Written::Message }
}

/// `-r` over local trees: each file below INPUT into the same name below OUTPUT, or in place.
fn tree_to_tree(
    args: &ReencryptArgs,
    options: &ReencryptOptions,
    input: &Location,
    output: &Location,
) -> Result<(), Failure> {
    let plan = if args.in_place {
        tree::plan_in_place(input.path())?
    } else {
        tree::plan(input.path(), output.path(), &|name| name.to_os_string())?
    };
    let (source, target) = keyrings(args)?;
    // In place, each file is its own destination; otherwise an existing one is replaced only with --force.
    let files =
        OutputOptions::new().overwrite(args.in_place || args.output_args.force).sync(!args.output_args.no_fsync);
    let skip = skip_check(args, target.as_ref())?;
    tree::run(plan, |job| {
        check_single_link(args, &job.input)?;
        if already_done(args, skip.as_ref(), target.as_ref(), options, &job.input)? {
            return Ok(());
        }
        file_to_file(args, &source, target.as_ref(), options, &job.input, &job.output, &files)
            .map_err(|f| source.explain(f))
    })
}

/// A file into another or in place, or stdin or stdout at either end (see [`streamed`]).
fn local(args: &ReencryptArgs, options: &ReencryptOptions, input: &Location, output: &Location) -> Result<(), Failure> {
    let (Location::File(input_path), Location::File(output_path)) = (input, output) else {
        return streamed(args, options, input, output);
    };
    check_file_output(args, input_path, output)?;
    check_single_link(args, input_path)?;
    let (source, target) = keyrings(args)?;
    let skip = skip_check(args, target.as_ref())?;
    if already_done(args, skip.as_ref(), target.as_ref(), options, input_path)? {
        return Ok(());
    }
    let files =
        OutputOptions::new().overwrite(args.in_place || args.output_args.force).sync(!args.output_args.no_fsync);
    file_to_file(args, &source, target.as_ref(), options, input_path, output_path, &files)
        .map_err(|f| source.explain(f))
}

/// The refusals of a file OUTPUT (not in place) that need nothing opened, for the run and `--dry-run`
/// alike: OUTPUT is INPUT under another name (`./a`, a symbolic or hard link), a key file, a directory, or
/// exists without --force.
fn check_file_output(args: &ReencryptArgs, input: &Path, output: &Location) -> Result<(), Failure> {
    if args.in_place {
        return Ok(());
    }
    let keys = [&args.keys, args.new_keys.keys()];
    location::check_destination(output, written(args), Source::Unopened(input), &keys, args.output_args.force)
}

/// The new keys as the skip check compares them, for an in-place run without --force (one throwaway data
/// key made and wrapped, once per run).
fn skip_check(args: &ReencryptArgs, target: &dyn Keyring) -> Result<Option<TargetKeys>, Failure> {
    if !args.in_place || args.output_args.force {
        return Ok(None);
    }
    TargetKeys::of(target).map(Some).map_err(|e| {
        Failure::writing(e).with_note("the new keys could not wrap a data key (needed to tell which files are done)")
    })
}

/// Whether `path` is already under the new keys, authenticated as --skip-check says (see `rotation_status_with`): then it is left as
/// it is, with a line on stderr unless --quiet.
fn already_done(
    args: &ReencryptArgs,
    skip: Option<&TargetKeys>,
    target: &dyn Keyring,
    options: &ReencryptOptions,
    path: &Path,
) -> Result<bool, Failure> {
    let Some(target_keys) = skip else { return Ok(false) };
    let name = path.display().to_string();
    let input = std::fs::File::open(path).map_err(|e| Failure::io(format!("cannot open {name}"), e))?;
    let reader = WipingBufReader::with_capacity(64 << 10, input);
    let input = io::Input { name: name.clone(), reader: Box::new(reader), size: None, file: None, resendable: false };
    let reader = io::dearmored(input)?;
    let status =
        rotation_status_with(target, target_keys, options, args.verify_all_keys, how_much(args), reader.reader)
            .map_err(|e| Failure::reading(e).with_file(&name))?;
    if status == Rotation::Done {
        // `name` goes to stderr through the one escaper here; failures are escaped where they are printed.
        report_done(args, &kms_envelope::escape::escaped(&name));
    }
    Ok(status == Rotation::Done)
}

/// [`already_done`] for the S3 object `url` (`shown` for display): its header read in small ranged GETs.
fn s3_already_done(
    args: &ReencryptArgs,
    skip: Option<&TargetKeys>,
    target: &dyn Keyring,
    options: &ReencryptOptions,
    url: &S3Url,
    shown: &str,
) -> Result<bool, Failure> {
    let Some(target_keys) = skip else { return Ok(false) };
    let check = how_much(args);
    let object = Location::from(url.clone());
    let input = if check == SkipCheck::Header { io::open_header_message(&object)? } else { io::open_message(&object)? };
    let status = rotation_status_with(target, target_keys, options, args.verify_all_keys, check, input.reader)
        .map_err(|e| Failure::reading(e).with_file(shown))?;
    if status == Rotation::Done {
        report_done(args, shown);
    }
    Ok(status == Rotation::Done)
}

/// How much of a source the skip check authenticates (--skip-check).
fn how_much(args: &ReencryptArgs) -> SkipCheck {
    match args.skip_check {
        None | Some(SkipCheckArg::Full) => SkipCheck::Full,
        Some(SkipCheckArg::Header) => SkipCheck::Header,
    }
}

/// The line, unless --quiet, for a source left as it is because the new keys already open it (`shown`
/// already escaped).
fn report_done(args: &ReencryptArgs, shown: &str) {
    if !args.output_args.quiet {
        let checked = match how_much(args) {
            SkipCheck::Header => "header authenticated; body not read",
            _ => "authenticated in full",
        };
        eprintln!(
            "kms-envelope: {shown}: already under the new keys ({checked}); left as it is (--force re-encrypts it)"
        );
    }
}

/// Command-line mistakes besides INPUT's and OUTPUT's (see [`location::check_reencrypt`]), refused (exit 2)
/// before any file or key is read, --dry-run included.
fn check_usage(args: &ReencryptArgs) -> Result<(), Failure> {
    // Checked here: clap's `requires` takes a flag's implicit `false` for presence.
    if !args.in_place && (args.verify_all_keys || args.skip_check.is_some()) {
        return Err(Failure::usage(
            "--verify-all-keys and --skip-check are about the skip check of --in-place; add --in-place".into(),
        ));
    }
    if let Some(suite) = args.suite.filter(|s| !s.0.is_committing()) {
        return Err(Failure::usage(format!(
            "--suite 0x{:04X} has no key commitment: a re-encrypted message uses 0x0478 or 0x0578",
            suite.0.id()
        )));
    }
    let mut seen = std::collections::BTreeMap::new();
    for (k, v) in args.new_context.iter().chain(&args.new_require_context) {
        if seen.insert(k, v).is_some_and(|earlier| earlier != v) {
            return Err(Failure::usage(format!("--new-context/--new-require-context give {k:?} two values")));
        }
    }
    Ok(())
}

/// The keyring that unwraps the source's data key (remembering what the message offered, for exit 3's
/// explanation) and the one that makes the new data key.
fn keyrings(args: &ReencryptArgs) -> Result<(Recording, Box<dyn Keyring>), Failure> {
    let source = Recording::new(keys::for_decrypt(&args.keys, &args.discovery)?);
    let target = super::cached(keys::for_encrypt(args.new_keys.keys())?, &args.cache)?;
    Ok((source, target))
}

/// In place, a file with other hard links is refused unless --force: the other names would keep the old
/// message, under the old key, which a rotation must not leave behind unseen.
fn check_single_link(args: &ReencryptArgs, path: &Path) -> Result<(), Failure> {
    #[cfg(unix)]
    if args.in_place && !args.output_args.force {
        use std::os::unix::fs::MetadataExt;
        let links = std::fs::symlink_metadata(path).map(|m| m.nlink()).unwrap_or(1);
        if links > 1 {
            return Err(Failure::new(
                Code::Io,
                format!(
                    "{}: has {links} hard links; in place only this name would get the new message, the others \
                     keeping the old one (re-encrypt each elsewhere, or --force to replace this name anyway)",
                    path.display()
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (args, path);
    Ok(())
}

/// `input` into `output` (which may be `input`, in place). A binary message into a binary one goes by
/// positioned reads and writes ([`reencrypt_path`]); base64 armor at either end goes in one sequential
/// pass. The new message is armored with `--armor`, and in place when the source was.
fn file_to_file(
    args: &ReencryptArgs,
    source: &Recording,
    target: &dyn Keyring,
    options: &ReencryptOptions,
    input: &Path,
    output: &Path,
    files: &OutputOptions,
) -> Result<(), Failure> {
    let name = input.display().to_string();
    let message = io::dearmored(io::open_file(input)?)?;
    // `dearmored` leaves `file` only to a binary message in a regular file.
    let armored = message.file.is_none();
    let armor = args.armor.armor || (args.in_place && armored);
    if !armored && !armor {
        drop(message);
        return reencrypt_path(source, target, options, input, output, files)
            .map(drop)
            .map_err(|e| Failure::reading(e).with_file(&name));
    }
    let shown = output.display();
    let pending = PendingFile::create(output, files.overwrites())
        .map_err(|e| Failure::new(Code::Io, format!("{shown}: cannot create: {e}")))?;
    streamed_into(source, target, options, message, pending, armor)?
        .commit(files.syncs(), files.overwrites())
        .map_err(|e| Failure::new(Code::Io, format!("{shown}: cannot write: {e}")))
}

/// An S3 object into another, or in place (replaced only if unchanged since it was read; skipped, as a file
/// is, when it is already under the new keys).
fn s3_to_s3(args: &ReencryptArgs, options: &ReencryptOptions, input: &S3Url, output: &S3Url) -> Result<(), Failure> {
    let force = replaces_objects(args);
    io::check_s3_absent(output, force)?;
    let (source, target) = keyrings(args)?;
    let skip = skip_check(args, target.as_ref())?;
    if s3_already_done(args, skip.as_ref(), target.as_ref(), options, input, &input.to_string())? {
        return Ok(());
    }
    io::reencrypt_s3(&source, target.as_ref(), options, input, output, force).map_err(|f| source.explain(f))
}

/// Whether an object that exists at an S3 OUTPUT may be replaced, for the run and `--dry-run` alike: in
/// place it is the source itself; another object only with --force, as a file is.
fn replaces_objects(args: &ReencryptArgs) -> bool {
    args.in_place || args.output_args.force
}

/// What became of the objects of a run over a prefix.
#[derive(Default)]
struct Tally {
    reencrypted: usize,
    already_done: usize,
    folder_markers: usize,
    failed: usize,
    first_failure: Option<Code>,
}

/// The failure of an object a listing returned that is not under the prefix it was asked for (`shown`): it
/// is left alone, no request made about it.
fn not_under(from: &S3Prefix, shown: &str) -> Failure {
    Failure::new(Code::Io, format!("{shown}: listed, but not under {from}; left alone"))
}

/// The line for a folder marker met under a prefix: it holds no message, and is left as it is.
fn report_folder_marker(shown: &str) {
    eprintln!("kms-envelope: {shown}: a folder marker (empty, its key ends in /); skipped");
}

/// `-r` over S3: each object under INPUT's prefix into the same relative key under OUTPUT's, or in place
/// (with the skip check and `If-Match` of a single object), one object at a time, each streamed with its
/// parts in parallel. An object that fails is reported on its own line and the others are still done;
/// folder markers are skipped. A signal aborts the current upload and stops the run.
fn s3_prefix_to_prefix(
    args: &ReencryptArgs,
    options: &ReencryptOptions,
    from: &S3Prefix,
    to: Option<&S3Prefix>,
) -> Result<(), Failure> {
    let to = to.unwrap_or(from);
    let (source, target) = keyrings(args)?;
    let skip = skip_check(args, target.as_ref())?;
    let mut tally = Tally::default();
    io::list_s3(from, |listed| {
        let shown = from.shown(&listed.key);
        if listed.folder_marker {
            report_folder_marker(&shown);
            tally.folder_markers += 1;
            return Ok(());
        }
        source.forget();
        let done = (|| {
            let Some(key) = to.target_key(from, &listed.key) else { return Err(not_under(from, &shown)) };
            let (input, output) = (from.url(&listed.key), to.url(&key));
            if s3_already_done(args, skip.as_ref(), target.as_ref(), options, &input, &shown)? {
                return Ok(false);
            }
            let force = replaces_objects(args);
            io::check_s3_absent(&output, force)?;
            io::reencrypt_s3(&source, target.as_ref(), options, &input, &output, force)
                .map_err(|f| source.explain(f))?;
            if !args.output_args.quiet {
                let into = if args.in_place { "in place".to_owned() } else { format!("into {}", to.shown(&key)) };
                eprintln!("kms-envelope: {shown}: re-encrypted {into}");
            }
            Ok(true)
        })();
        match done {
            Ok(true) => tally.reencrypted += 1,
            Ok(false) => tally.already_done += 1,
            Err(failure) if failure.is_interrupted() => return Err(failure),
            Err(failure) => {
                eprintln!("kms-envelope: {failure}");
                tally.first_failure.get_or_insert(failure.code());
                tally.failed += 1;
            }
        }
        Ok(())
    })?;
    let Tally { reencrypted, already_done, folder_markers, failed, first_failure } = tally;
    let total = reencrypted + already_done + failed;
    let summary = format!(
        "{reencrypted} re-encrypted, {already_done} already under the new keys, {failed} failed, \
         {folder_markers} {} skipped",
        super::plural(folder_markers, "folder marker", "folder markers")
    );
    match first_failure {
        Some(code) => Err(Failure::new(
            code,
            format!("{failed} of {total} {} failed ({summary})", super::plural(total, "object", "objects")),
        )),
        None => {
            if !args.output_args.quiet {
                eprintln!("kms-envelope: {from}: {summary}");
            }
            Ok(())
        }
    }
}

/// stdin or stdout at either end: the new message's final frame is written only after the whole source
/// verified, so a failure leaves on stdout a message that no reader accepts.
fn streamed(
    args: &ReencryptArgs,
    options: &ReencryptOptions,
    input: &Location,
    output: &Location,
) -> Result<(), Failure> {
    let opened = io::open_message(input)?;
    let keys = [&args.keys, args.new_keys.keys()];
    let force = args.output_args.force;
    location::check_destination(output, written(args), Source::Opened(input, &opened), &keys, force)?;
    let armor = args.armor.armor;
    let path = match output {
        Location::File(path) => path,
        Location::Stdio => {
            let (source, target) = keyrings(args)?;
            let stdout = WipingBufWriter::with_capacity(64 << 10, io::raw_stdout());
            let mut stdout = streamed_into(&source, target.as_ref(), options, opened, stdout, armor)
                .map_err(|f| source.explain(f))?;
            return stdout.flush().map_err(|e| Failure::io("cannot write to stdout".into(), e));
        }
        // Never here: an S3 pair is not local (see `location::check_reencrypt`).
        Location::S3(_) => return Err(location::s3_at_one_end()),
    };
    let (source, target) = keyrings(args)?;
    let files = OutputOptions::new().overwrite(force).sync(!args.output_args.no_fsync);
    let shown = path.display();
    let pending = PendingFile::create(path, files.overwrites())
        .map_err(|e| Failure::new(Code::Io, format!("{shown}: cannot create: {e}")))?;
    let pending =
        streamed_into(&source, target.as_ref(), options, opened, pending, armor).map_err(|f| source.explain(f))?;
    pending
        .commit(files.syncs(), files.overwrites())
        .map_err(|e| Failure::new(Code::Io, format!("{shown}: cannot write: {e}")))
}

/// Re-encrypts the message `input` into `out` in one sequential pass, armored if `armor`, and returns `out`
/// (the caller commits or flushes it only then).
fn streamed_into<W: Write>(
    source: &Recording,
    target: &dyn Keyring,
    options: &ReencryptOptions,
    input: io::Input,
    mut out: W,
    armor: bool,
) -> Result<W, Failure> {
    let failed = |e| Failure::reading(e).with_file(&input.name);
    if !armor {
        reencrypt(source, target, options, input.reader, &mut out).map_err(failed)?;
        return Ok(out);
    }
    let mut armored = ArmorWriter::new(out);
    reencrypt(source, target, options, input.reader, &mut armored).map_err(failed)?;
    armored.finish().map_err(|e| Failure::io("cannot write the new message".into(), e))
}

/// `--dry-run`: each source's suite and data keys, read from its header without a key, and what the new
/// message would have. Nothing is authenticated, so every line says so. An OUTPUT the run would refuse is
/// refused as the run refuses it: a dry run does not promise what the run will not do. A file first; an S3
/// object that exists without --force first too, or, under a prefix, on its source's line (one HeadObject
/// each, as the run makes).
fn dry_run(args: &ReencryptArgs, pair: &Reencryption<'_>) -> Result<(), Failure> {
    if let (Reencryption::Local { input: Location::File(input), .. }, Some(output @ Location::File(_))) =
        (pair, &args.output)
        && !args.recursive
    {
        check_file_output(args, input, output)?;
    }
    if let (Reencryption::Object { output, .. }, Some(_)) = (pair, &args.output) {
        io::check_s3_absent(output, replaces_objects(args))?;
    }
    let new_keys = describe_new_keys(args);
    let mut stdout = std::io::stdout().lock();
    let mut first_failure = None;
    let describe = |location: &Location| {
        let name = &*location.arg();
        io::open_header_message(location).and_then(|mut input| {
            let limits = DecryptLimits {
                max_encrypted_data_keys: Some(args.max_encrypted_data_keys),
                ..DecryptLimits::default()
            };
            let header = Header::read_from(limits, &mut input.reader)
                .map_err(|e| Failure::reading(e).with_file(&kms_envelope::escape::escaped(name)))?;
            Ok(describe_change(name, &header, args, &new_keys))
        })
    };
    // A source's line on stdout, or its failure on stderr.
    let mut report = |line: Result<String, Failure>| -> Result<(), Failure> {
        match line {
            Ok(line) => writeln!(stdout, "{line}").map_err(|e| Failure::io("cannot write to stdout".into(), e))?,
            Err(failure) => {
                eprintln!("kms-envelope: {failure}");
                first_failure.get_or_insert(failure.code());
            }
        }
        Ok(())
    };
    match pair {
        Reencryption::Prefixes { from, to } => io::list_s3(from, |listed| {
            let shown = from.shown(&listed.key);
            let Some(key) = to.as_ref().unwrap_or(from).target_key(from, &listed.key) else {
                return report(Err(not_under(from, &shown)));
            };
            if listed.folder_marker {
                report_folder_marker(&shown);
                return Ok(());
            }
            if let Some(to) = to
                && let Err(refused) = io::check_s3_absent(&to.url(&key), replaces_objects(args))
            {
                return report(Err(refused));
            }
            report(describe(&from.url(&listed.key).into()))
        })?,
        Reencryption::Local { input, .. } if args.recursive => {
            let plan = tree::plan_in_place(input.path())?;
            for path in plan.inputs() {
                report(describe(&Location::File(path.to_owned())))?;
            }
        }
        Reencryption::Local { .. } | Reencryption::Object { .. } => report(describe(&args.input))?,
    }
    match first_failure {
        Some(code) => Err(Failure::new(
            code,
            "--dry-run: some sources could not be read, or their OUTPUT would be refused".into(),
        )),
        None => Ok(()),
    }
}

fn describe_new_keys(args: &ReencryptArgs) -> String {
    let keys = args.new_keys.keys();
    let mut described: Vec<String> = keys
        .key_namespace
        .iter()
        .zip(&keys.key_name)
        .map(|(namespace, name)| format!("key {name:?} of namespace {namespace:?}"))
        .collect();
    described.extend(keys.kms_key.iter().map(|id| format!("AWS KMS key {id:?}")));
    described.extend(keys.kms_rsa_key.iter().map(|id| format!("AWS KMS RSA key {id:?}")));
    described.join("; ")
}

fn describe_change(name: &str, header: &Header, args: &ReencryptArgs, new_keys: &str) -> String {
    let from = header.suite();
    let to = args.suite.map_or_else(|| default_target_suite(from), |s| s.0);
    let old_keys: Vec<String> = header.encrypted_data_keys().iter().map(|edk| shortened(describe(edk))).collect();
    let context = if args.replace_context { "replaced" } else { "kept" };
    format!(
        "{}: would re-encrypt (from its unauthenticated header): suite 0x{:04X} -> 0x{:04X}; data keys [{}] -> \
         [{new_keys}]; context {context}",
        kms_envelope::escape::escaped(name),
        from.id(),
        to.id(),
        old_keys.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{Cli, Command};

    /// `reencrypt` with old and new raw keys and `line`, parsed as `Cli::parse_with_order` parses it.
    fn args(line: &[&str]) -> ReencryptArgs {
        let keys = ["--raw-key-file", "old.key", "--key-namespace", "n", "--key-name", "old"];
        let new_keys = ["--new-raw-key-file", "new.key", "--new-key-namespace", "n", "--new-key-name", "new"];
        let line = ["kms-envelope", "reencrypt"].iter().chain(&keys).chain(&new_keys).chain(line);
        let matches = Cli::definition().try_get_matches_from(line).expect("parses");
        match Cli::from_matches_with_order(&matches).expect("parses").command {
            Command::Reencrypt(args) => *args,
            _ => unreachable!("parsed as reencrypt"),
        }
    }

    /// `--dry-run` refuses the OUTPUTs the run refuses, before it reads anything: INPUT under another
    /// spelling, through a symbolic or a hard link, and an existing file without --force. Before, it read
    /// the source's header and answered "would re-encrypt" where the run refuses (exit 2, and 4 for the
    /// existing file) before reading anything.
    #[cfg(unix)]
    #[test]
    fn a_dry_run_refuses_the_outputs_the_run_refuses() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (input, other) = (dir.path().join("m.esdk"), dir.path().join("other.esdk"));
        std::fs::write(&input, b"not read").expect("write");
        std::fs::write(&other, b"x").expect("write");
        std::os::unix::fs::symlink(&input, dir.path().join("link")).expect("symlink");
        std::fs::hard_link(&input, dir.path().join("hard")).expect("hard link");
        let shown = |path: &Path| path.to_str().expect("utf-8 temp dir").to_owned();
        let input_arg = shown(&input);
        for (output, says, code) in [
            (shown(&dir.path().join(".").join("m.esdk")), "is INPUT", Code::Usage),
            (shown(&dir.path().join("link")), "is INPUT", Code::Usage),
            (shown(&dir.path().join("hard")), "is INPUT", Code::Usage),
            (shown(&other), "already exists", Code::Io),
        ] {
            let failure = run(&args(&["--dry-run", &input_arg, &output])).expect_err("refused");
            assert_eq!(failure.code(), code, "{output}: {failure}");
            assert!(failure.to_string().contains(says), "{output}: {failure}");
        }
        assert_eq!(std::fs::read(&input).expect("read"), b"not read");
    }
}
