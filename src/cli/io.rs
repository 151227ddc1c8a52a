//! Inputs and outputs: files or `-`, outputs written to a temp file and renamed into place, and the copy
//! loops that tell a failing input from a failing output.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use kms_envelope::escape::escaped;
use kms_envelope::stream::armor::{self, ArmorReader, ArmorWriter};
use kms_envelope::stream::file::PendingFile;
use kms_envelope::stream::positioned::{self, FileDecryptor, FileError};
use kms_envelope::stream::{WipingBufReader, WipingBufWriter};
use kms_envelope::{DecryptOptions, Decryptor, EncryptOptions, Encryptor, Error, Header, Keyring, SeekableDecryptor};

use super::args::{KeyArgs, OutputArgs, PlaintextRange};
use super::exit::{Code, Failure};
use super::location::{Location, S3Url};
use super::progress::Progress;
use super::s3_prefix::S3Prefix;

/// Output buffer: small writes (the header, frames under 64 KiB) are gathered; a job or frame of at least
/// this size goes to the file directly, without a copy. The buffer is wiped before it is freed: for
/// `decrypt` it holds plaintext.
const OUT_BUFFER: usize = 64 << 10;
/// Input buffer: enough for the small reads of frame prefixes, smaller than any frame body, which the
/// encryptor and decryptor then read straight into their own buffers. Wiped before it is freed: for
/// `encrypt` it holds plaintext.
const IN_BUFFER: usize = 16 << 10;

/// An opened input: its name for messages, its bytes, and its size when known (a file, or stdin
/// redirected from a file).
pub struct Input {
    pub name: String,
    pub reader: Box<dyn Read>,
    pub size: Option<u64>,
    /// The input itself when it is a regular file opened by name: a file-to-file encrypt or decrypt then
    /// reads it at known offsets, on several threads, rather than through `reader`.
    pub file: Option<File>,
    /// Whether its bytes can be read again (a regular file or an S3 object; not a pipe, a terminal or a
    /// directory being packed): an upload that failed late then needs no note that the input is lost.
    pub resendable: bool,
}

/// Fails, before any key is used, if an object is at `url` and `force` is not given: the pre-check (one
/// HeadObject) for a fast refusal. The upload itself still carries `If-None-Match: *` (see
/// [`encrypt_to`]), which refuses an object written after this check. A check that cannot be made (a 403
/// for a caller without `s3:GetObject` or `s3:ListBucket`) leaves the refusal to that condition.
pub fn check_s3_absent(url: &S3Url, force: bool) -> Result<(), Failure> {
    if force { Ok(()) } else { remote::check_absent(url) }
}

/// [`open_input`] for a reader of the header only (`inspect`): an S3 object is read in small ranged GETs,
/// one at a time, so that little more than the header is transferred.
pub fn open_header_input(location: &Location) -> Result<Input, Failure> {
    match location {
        Location::S3(name) => remote::open(name.url()?, &remote::header_options()),
        Location::Stdio | Location::File(_) => open_input(location),
    }
}

/// Opens stdin, a file, or an S3 object. A directory is a usage error (it needs `--recursive` or `bundle`).
pub fn open_input(location: &Location) -> Result<Input, Failure> {
    match location {
        Location::Stdio => {
            Ok(Input { name: "stdin".into(), reader: raw_stdin(), size: stdin_size(), file: None, resendable: false })
        }
        Location::S3(name) => remote::open(name.url()?, &remote::download_options()),
        Location::File(path) => open_file(path),
    }
}

/// [`open_input`] of the file `path` (also one a `--recursive` walk found).
pub fn open_file(path: &Path) -> Result<Input, Failure> {
    let name = path.to_string_lossy().into_owned();
    let file = File::open(path).map_err(|e| Failure::io(format!("cannot open {name}"), e))?;
    let meta = file.metadata().map_err(|e| Failure::io(format!("cannot open {name}"), e))?;
    if meta.is_dir() {
        return Err(Failure::usage(format!(
            "{name} is a directory: use --recursive for one message per file, or the bundle command"
        )));
    }
    let size = meta.is_file().then_some(meta.len());
    let positioned = if meta.is_file() { file.try_clone().ok() } else { None };
    let resendable = positioned.is_some();
    let reader = Box::new(WipingBufReader::with_capacity(IN_BUFFER, file));
    Ok(Input { name, reader, size, file: positioned, resendable })
}

/// [`open_input`] for a message, in either form: base64 armor (see [`armor`]) is decoded as it is read.
pub fn open_message(location: &Location) -> Result<Input, Failure> {
    dearmored(open_input(location)?)
}

/// [`open_header_input`] for a message, in either form.
pub fn open_header_message(location: &Location) -> Result<Input, Failure> {
    dearmored(open_header_input(location)?)
}

/// `input`, a message in either form, as a reader of the binary message: its first byte tells
/// ([`armor::is_armored`]), and armor is decoded as it is read, in constant memory. An armored input loses
/// its `file`: its message is not at known offsets of the file, so it takes the sequential path (one
/// reader, the frames still opened on `--threads` workers); its `size` becomes the message's, about
/// three quarters of the text's, for the progress bar.
pub fn dearmored(mut input: Input) -> Result<Input, Failure> {
    let mut first = [0u8; 1];
    let got = loop {
        match input.reader.read(&mut first) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            got => break got.map_err(|e| Failure::io(format!("cannot read {}", input.name), e))?,
        }
    };
    let reader = io::Cursor::new(first).take(got as u64).chain(input.reader);
    if got == 1 && armor::is_armored(first[0]) {
        input.reader = Box::new(ArmorReader::new(reader));
        input.file = None;
        input.size = input.size.map(|size| size / 4 * 3);
    } else {
        input.reader = Box::new(reader);
    }
    Ok(input)
}

/// The refusal of `--range` for base64 armor: a range is read by the offsets of the binary message.
fn range_of_armor() -> Failure {
    Failure::usage(
        "--range reads the binary message at known offsets, and this is base64 armor; decrypt it whole, or decode \
         it first (base64 -d)"
            .into(),
    )
}

/// Standard input read straight from its descriptor, through a wiping buffer: `Stdin`'s own 8 KiB buffer
/// splits each frame read from a pipe in two and keeps plaintext in memory nobody wipes.
#[cfg(unix)]
fn raw_stdin() -> Box<dyn Read> {
    use std::os::fd::AsFd;
    match io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => {
            let file = File::from(fd);
            widen_pipe(&file);
            #[cfg(feature = "s3")]
            let file = super::interrupt::InterruptibleStdin(file);
            Box::new(WipingBufReader::with_capacity(IN_BUFFER, file))
        }
        Err(_) => Box::new(io::stdin().lock()),
    }
}

#[cfg(not(unix))]
fn raw_stdin() -> Box<dyn Read> {
    Box::new(io::stdin().lock())
}

/// Standard output written straight to its descriptor (the caller buffers): `Stdout` is line-buffered, so
/// each write of binary data became two system calls (up to the last newline byte, then the rest), each
/// waking the reader of a pipe, and the tail sat in a buffer nobody wipes. Nothing else may write to
/// stdout while this is in use.
#[cfg(unix)]
pub fn raw_stdout() -> Box<dyn Write> {
    use std::os::fd::AsFd;
    match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => {
            let file = File::from(fd);
            widen_pipe(&file);
            Box::new(file)
        }
        Err(_) => Box::new(io::stdout().lock()),
    }
}

/// The pipe buffer asked for on a stdin or stdout pipe. Linux's default, 64 KiB, holds one frame: the
/// writer then sleeps after every frame until the reader woke and took it, so the two sides of a pipe
/// take turns instead of overlapping. 1 MiB holds two of the CLI's 512 KiB jobs.
const PIPE_BUFFER: usize = 1 << 20;

/// Widens `file`'s pipe buffer to [`PIPE_BUFFER`] (at most what `/proc/sys/fs/pipe-max-size` allows an
/// unprivileged process), if `file` is a pipe with a smaller one. Best effort: a pipe that cannot grow
/// (the per-user pipe memory is used up) keeps working at its size, and anything else is left alone.
#[cfg(target_os = "linux")]
fn widen_pipe(file: &File) {
    use std::os::unix::fs::FileTypeExt;
    if !file.metadata().is_ok_and(|meta| meta.file_type().is_fifo()) {
        return;
    }
    let allowed = fs::read_to_string("/proc/sys/fs/pipe-max-size").ok().and_then(|max| max.trim().parse().ok());
    let want = allowed.map_or(PIPE_BUFFER, |max: usize| PIPE_BUFFER.min(max));
    if rustix::pipe::fcntl_getpipe_size(file).is_ok_and(|size| size < want) {
        let _ = rustix::pipe::fcntl_setpipe_size(file, want);
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn widen_pipe(_file: &File) {}

#[cfg(not(unix))]
pub fn raw_stdout() -> Box<dyn Write> {
    Box::new(io::stdout().lock())
}

/// Standard output when it is a regular file that takes positioned writes, with its current position: then a
/// file-to-stdout encrypt or decrypt (`kms-envelope encrypt in - > out`) runs like a file-to-file one, its
/// workers writing their frames in place rather than handing them to one writer. Not for `>>`: Linux puts
/// every positioned write of a file opened for appending at its end. (stdout that is the input file was
/// refused earlier, by [`check_stdout_is_not_input`].)
#[cfg(unix)]
fn stdout_file() -> Option<(File, u64)> {
    use std::os::fd::AsFd;
    let mut file = File::from(io::stdout().as_fd().try_clone_to_owned().ok()?);
    let appends = rustix::fs::fcntl_getfl(&file).ok()?.contains(rustix::fs::OFlags::APPEND);
    if !file.metadata().ok()?.is_file() || appends {
        return None;
    }
    let offset = file.stream_position().ok()?;
    Some((file, offset))
}

#[cfg(not(unix))]
fn stdout_file() -> Option<(File, u64)> {
    None
}

/// Device and inode of the file behind `fd`, when it is a regular file: how the checks below tell that
/// stdout is a file the command reads, whatever name or link it was opened by.
#[cfg(unix)]
fn regular_file_identity(fd: std::os::fd::BorrowedFd<'_>) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = File::from(fd.try_clone_to_owned().ok()?).metadata().ok()?;
    meta.is_file().then(|| (meta.dev(), meta.ino()))
}

/// [`regular_file_identity`] of stdout.
#[cfg(unix)]
fn stdout_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    regular_file_identity(io::stdout().as_fd())
}

/// Fails, before any key is used, when stdout is the regular file being read (`encrypt f - 1<>f`,
/// `decrypt f - >> f`, `encrypt - - < f >> f`, or through a hard link), as `cat` refuses "input file is output
/// file": a message is longer than its plaintext, so encrypt wrote over input it had not read yet and exited
/// 0 with a message of its own output (or, appending, read its own output until the disk filled), and
/// decrypt wrote over, or appended plaintext to, the message it was reading. `path` is the input's name on
/// the command line.
#[cfg(unix)]
pub fn check_stdout_is_not_input(location: &Location, input: &Input) -> Result<(), Failure> {
    use std::os::fd::AsFd;
    let input_file = match (&input.file, location) {
        (Some(file), _) => regular_file_identity(file.as_fd()),
        (None, Location::Stdio) => regular_file_identity(io::stdin().as_fd()),
        (None, Location::File(_) | Location::S3(_)) => None,
    };
    if input_file.is_some() && input_file == stdout_identity() {
        return Err(Failure::usage(format!(
            "stdout is the input file {}: refusing to write over what is being read",
            input.name
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check_stdout_is_not_input(_location: &Location, _input: &Input) -> Result<(), Failure> {
    Ok(())
}

/// Fails, before any key is used, when stdout is one of the key files (`encrypt --raw-key-file k in - 1<>k`):
/// the output would be written over the key it was made with, often its only copy.
#[cfg(unix)]
pub fn check_stdout_is_not_a_key_file(keys: &KeyArgs) -> Result<(), Failure> {
    use std::os::unix::fs::MetadataExt;
    let Some(stdout) = stdout_identity() else { return Ok(()) };
    for path in keys.files() {
        // By `stat`, not by opening: opening a named pipe given as a key file would wait for its writer.
        let same = fs::metadata(path).ok().filter(fs::Metadata::is_file).map(|meta| (meta.dev(), meta.ino()));
        if same == Some(stdout) {
            return Err(Failure::usage(format!(
                "stdout is the key file {}: refusing to write over a key",
                path.display()
            )));
        }
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check_stdout_is_not_a_key_file(_keys: &KeyArgs) -> Result<(), Failure> {
    Ok(())
}

/// Fails, before any key is used, when stdout is a regular file inside `dir` (`bundle dir - > dir/out.b`):
/// the bundle would hold a partial copy of itself (tar's "file is the archive"). Symbolic links are not
/// followed (the bundle refuses them anyway).
#[cfg(unix)]
pub fn check_stdout_is_outside(dir: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::MetadataExt;
    fn find(dir: &Path, target: (u64, u64)) -> Option<std::path::PathBuf> {
        for entry in fs::read_dir(dir).ok()?.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if let Some(found) = find(&entry.path(), target) {
                    return Some(found);
                }
            } else if meta.is_file() && (meta.dev(), meta.ino()) == target {
                return Some(entry.path());
            }
        }
        None
    }
    let Some(stdout) = stdout_identity() else { return Ok(()) };
    match find(dir, stdout) {
        Some(path) => Err(Failure::usage(format!(
            "stdout is {}, inside the directory being bundled: the bundle would contain itself",
            path.display()
        ))),
        None => Ok(()),
    }
}

#[cfg(not(unix))]
pub fn check_stdout_is_outside(_dir: &Path) -> Result<(), Failure> {
    Ok(())
}

/// Moves stdout's position past the `len` bytes written at `offset` with positioned writes, where a
/// streaming write would have left it (a command after this one in `{ ...; } > file` continues there).
fn stdout_written(mut stdout: &File, offset: u64, len: u64) -> Result<(), Failure> {
    stdout
        .seek(io::SeekFrom::Start(offset + len))
        .map(drop)
        .map_err(|e| Failure::io("cannot write to stdout".into(), e))
}

/// The size of stdin when it is a regular file (`< file`), for the progress bar.
#[cfg(unix)]
fn stdin_size() -> Option<u64> {
    use std::os::fd::AsFd;
    let fd = io::stdin().as_fd().try_clone_to_owned().ok()?;
    let meta = File::from(fd).metadata().ok()?;
    meta.is_file().then_some(meta.len())
}

#[cfg(not(unix))]
fn stdin_size() -> Option<u64> {
    None
}

/// Whether an encrypted message may go to stdout: never to a terminal, which would show binary noise and
/// may take it for control sequences, unless the user insists with --force (as gzip and age do).
pub fn message_to_stdout_allowed(stdout_is_terminal: bool, force: bool) -> bool {
    !stdout_is_terminal || force
}

/// Fails early, before any key is used, if an encrypted message would go to a terminal.
pub fn check_message_stdout(force: bool) -> Result<(), Failure> {
    use std::io::IsTerminal;
    if message_to_stdout_allowed(io::stdout().is_terminal(), force) {
        Ok(())
    } else {
        Err(Failure::usage(
            "refusing to write an encrypted message to a terminal: redirect stdout (> FILE or | COMMAND), give an \
             OUTPUT path, or add --force"
                .into(),
        ))
    }
}

/// Refuses an OUTPUT that is one of the key files, `--force` or not (the same file by device and inode, so
/// through any name or link): writing a message or plaintext over a wrapping key destroys the key.
pub fn check_output_is_not_a_key_file<'a>(
    keys: impl IntoIterator<Item = &'a std::path::PathBuf>,
    output: &Path,
) -> Result<(), Failure> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(out) = fs::metadata(output) else { return Ok(()) };
        for key in keys {
            // By `stat`, not by opening: opening a named pipe given as a key file would wait for its writer.
            if fs::metadata(key).is_ok_and(|k| (k.dev(), k.ino()) == (out.dev(), out.ino())) {
                return Err(Failure::usage(format!(
                    "{}: is the key file {}; refusing to write over a key",
                    output.display(),
                    key.display()
                )));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (keys.into_iter().count(), output);
    Ok(())
}

/// Fails early, before any key is used, if `path` exists and may not be replaced. A directory is never
/// replaced, `--force` or not: naming one as OUTPUT is a mistake of the command line (exit 2).
pub fn check_output(path: &Path, force: bool) -> Result<(), Failure> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Err(Failure::new(Code::Io, format!("{}: is a symbolic link; refusing to write through it", path.display())))
        }
        Ok(meta) if meta.is_dir() => Err(Failure::usage(format!(
            "{}: is a directory; OUTPUT names the file to write (--recursive writes one file per input below a \
             directory)",
            path.display()
        ))),
        Ok(_) if !force => {
            Err(Failure::new(Code::Io, format!("{}: already exists (use --force to replace it)", path.display())))
        }
        _ => Ok(()),
    }
}

/// Runs `write` against the output: stdout directly, or a 0600 temp file renamed over the file on success.
/// An S3 object is uploaded (see [`encrypt_to`]), never written through this.
fn with_output(
    output: &Location,
    out_args: &OutputArgs,
    write: impl FnOnce(&mut dyn Write) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let path = match output {
        Location::Stdio => {
            let mut stdout = WipingBufWriter::with_capacity(OUT_BUFFER, raw_stdout());
            write(&mut stdout)?;
            return stdout.flush().map_err(|e| Failure::io("cannot write to stdout".into(), e));
        }
        Location::File(path) => path,
        Location::S3(name) => {
            return Err(Failure::usage(format!("{}: only a message is uploaded to S3", escaped(name.as_str()))));
        }
    };
    with_pending(path, out_args, |pending| {
        let mut out = WipingBufWriter::with_capacity(OUT_BUFFER, pending);
        write(&mut out)?;
        out.flush().map_err(|e| Failure::io(format!("cannot write {}", path.display()), e))
    })
}

/// Runs `write` against a 0600 temp file that replaces the file `path` once `write` succeeded.
fn with_pending(
    path: &Path,
    out_args: &OutputArgs,
    write: impl FnOnce(&mut PendingFile) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let force = out_args.force;
    check_output(path, force)?;
    let shown = path.display();
    let mut pending =
        PendingFile::create(path, force).map_err(|e| Failure::new(Code::Io, format!("{shown}: cannot create: {e}")))?;
    // By default the CLI's outputs must survive a power loss once the command reported success; syncing
    // while writing leaves the final sync little to do. --no-fsync trades that for speed.
    if !out_args.no_fsync {
        pending.sync_while_writing();
    }
    write(&mut pending)?;
    pending.commit(!out_args.no_fsync, force).map_err(|e| Failure::new(Code::Io, format!("{shown}: cannot write: {e}")))
}

/// A reader or writer that remembers whether it failed, so that an error coming out of a copy through the
/// encryptor or decryptor can be blamed on the right side.
pub struct Tracked<T> {
    inner: T,
    pub failed: bool,
}

impl<T> Tracked<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, failed: false }
    }
}

impl<T: Read> Read for Tracked<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| self.failed |= e.kind() != io::ErrorKind::Interrupted)
    }
}

impl<T: Write> Write for Tracked<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| self.failed |= e.kind() != io::ErrorKind::Interrupted)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

/// Encrypts `input` into the file, stdout or S3 object `output`.
pub fn encrypt_to(
    keyring: &dyn Keyring,
    options: &EncryptOptions,
    input: Input,
    output: &Location,
    out_args: &OutputArgs,
) -> Result<(), Failure> {
    encrypt_recorded(keyring, options, input, output, out_args).map(drop)
}

/// [`encrypt_to`] that also returns the header it wrote when it took the sequential path (an input that
/// is not a regular file, or a regular file with `file` taken away), where the header is seen going out;
/// the positioned and S3 paths return `None`, and the header is then read back from `output`.
pub fn encrypt_recorded(
    keyring: &dyn Keyring,
    options: &EncryptOptions,
    input: Input,
    output: &Location,
    out_args: &OutputArgs,
) -> Result<Option<Header>, Failure> {
    let progress = Progress::new(&input.name, input.size, out_args.quiet);
    if let Location::S3(url) = output {
        let url = url.url()?;
        progress.body_started();
        // A file or an S3 object can be read again for a retry; a pipe or a terminal cannot.
        let source = (input.name.as_str(), input.resendable);
        let reader = progress.reader(input.reader);
        let result = remote::upload(keyring, options, reader, input.size, url, source, out_args.force);
        progress.done(result.is_ok());
        return result.map(|()| None);
    }
    let name = input.name;
    let shown = output.arg();
    let blame = |e| match e {
        FileError::Input(e) => Failure::new(Code::Io, format!("cannot read {name}: {e}")),
        FileError::Output(e) => Failure::writing(e).with_file(&shown),
    };
    if let (Some(file), Location::File(path)) = (&input.file, output) {
        let result = with_pending(path, out_args, |pending| {
            positioned::encrypt_file(keyring, options, file, pending, &|n| progress.inc(n)).map_err(blame)
        });
        progress.done(result.is_ok());
        return result.map(|()| None);
    }
    if let Some((file, (stdout, offset))) =
        input.file.as_ref().filter(|_| *output == Location::Stdio).and_then(|file| Some((file, stdout_file()?)))
    {
        let result = positioned::encrypt_file_at(keyring, options, file, &stdout, offset, &|n| progress.inc(n))
            .map_err(blame)
            .and_then(|len| stdout_written(&stdout, offset, len));
        progress.done(result.is_ok());
        return result.map(|()| None);
    }
    sequential(keyring, options, input.reader, (&name, output), out_args, progress, false).map(Some)
}

/// [`encrypt_to`] with the message written as base64 armor (`--armor`) into a file or stdout: always
/// sequential, since the positioned paths write binary frames at their own offsets.
pub fn encrypt_armored_to(
    keyring: &dyn Keyring,
    options: &EncryptOptions,
    input: Input,
    output: &Location,
    out_args: &OutputArgs,
) -> Result<Header, Failure> {
    let progress = Progress::new(&input.name, input.size, out_args.quiet);
    sequential(keyring, options, input.reader, (&input.name, output), out_args, progress, true)
}

/// Encrypts `reader` into the file or stdout `output` with one [`Encryptor`], armored if `armor`, and
/// returns the header written.
fn sequential(
    keyring: &dyn Keyring,
    options: &EncryptOptions,
    reader: Box<dyn Read>,
    (name, output): (&str, &Location),
    out_args: &OutputArgs,
    progress: Progress,
    armor: bool,
) -> Result<Header, Failure> {
    let mut reader = progress.reader(reader);
    let mut header = None;
    let shown = output.arg();
    let result = with_output(output, out_args, |out| {
        if !armor {
            let (_, written) = seal(keyring, options, &mut reader, out, (name, &shown), &progress)?;
            header = Some(written);
            return Ok(());
        }
        let (armored, written) = seal(keyring, options, &mut reader, ArmorWriter::new(out), (name, &shown), &progress)?;
        header = Some(written);
        armored.finish().map(drop).map_err(|e| Failure::io(format!("cannot write {shown}"), e))
    });
    progress.done(result.is_ok());
    result.map(|()| header.expect("set before a successful write"))
}

/// The bytes written through it until its `header` is taken: what [`Encryptor::new`] writes, the header.
struct HeaderTap<W> {
    inner: W,
    header: std::rc::Rc<std::cell::RefCell<Option<Vec<u8>>>>,
}

impl<W: Write> Write for HeaderTap<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(header) = self.header.borrow_mut().as_mut() {
            header.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Encrypts all of `reader` into `out` with one [`Encryptor`] and returns `out` and the header written;
/// `names` are the input's and the output's, for the failure, which blames the side that failed.
fn seal<W: Write>(
    keyring: &dyn Keyring,
    options: &EncryptOptions,
    reader: &mut dyn Read,
    out: W,
    (name, output): (&str, &str),
    progress: &Progress,
) -> Result<(W, Header), Failure> {
    let recording = std::rc::Rc::new(std::cell::RefCell::new(Some(Vec::new())));
    let tap = HeaderTap { inner: out, header: recording.clone() };
    let mut encryptor = Encryptor::new(keyring, options, tap).map_err(|e| Failure::writing(e).with_file(output))?;
    let written = recording.borrow_mut().take().unwrap_or_default();
    // Our own header, just written: only the limits that bound memory apply.
    let header =
        Header::read_from(PRECHECK_LIMITS, &mut &written[..]).map_err(|e| Failure::writing(e).with_file(output))?;
    progress.body_started();
    let mut input = Tracked::new(reader);
    encryptor.copy_from(&mut input).map_err(|e| {
        if input.failed {
            Failure::io(format!("cannot read {name}"), e)
        } else {
            Failure::writing(Error::from_io(e)).with_file(output)
        }
    })?;
    let tap = encryptor.finish().map_err(|e| Failure::writing(e).with_file(output))?;
    Ok((tap.inner, header))
}

/// The header of the message just written at `output` (a file, armored or not, or an S3 object), read
/// back for its audit record.
pub fn written_header(output: &Location) -> Result<Header, Failure> {
    let mut written = open_header_message(output)?;
    Header::read_from(PRECHECK_LIMITS, &mut written.reader).map_err(|e| Failure::reading(e).with_file(&output.arg()))
}

/// Decrypts the message `input` into the file or stdout `output`.
pub fn decrypt_to(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    check: &dyn Fn(&Header) -> Result<(), Failure>,
    input: Input,
    output: &Location,
    out_args: &OutputArgs,
) -> Result<(), Failure> {
    let progress = Progress::new(&input.name, input.size, out_args.quiet);
    let name = input.name;
    let shown = output.arg();
    if let Some((file, (stdout, offset))) =
        input.file.as_ref().filter(|_| *output == Location::Stdio).and_then(|file| Some((file, stdout_file()?)))
    {
        let file = file.try_clone().map_err(|e| Failure::io(format!("cannot read {name}"), e))?;
        let result = (|| {
            let decryptor =
                FileDecryptor::new(keyring, options, file).map_err(|e| Failure::reading(e).with_file(&name))?;
            check(decryptor.header()).map_err(|f| f.with_file(&name))?;
            progress.body_started();
            let (_, len) = decryptor.decrypt_into_at(&stdout, offset, &|n| progress.inc(n)).map_err(|e| match e {
                FileError::Input(e) => Failure::reading(e).with_file(&name),
                FileError::Output(e) => Failure::new(Code::Io, format!("cannot write to stdout: {e}")),
            })?;
            stdout_written(&stdout, offset, len)
        })();
        progress.done(result.is_ok());
        return result;
    }
    if let (Some(file), Location::File(path)) = (input.file, output) {
        let result = with_pending(path, out_args, |pending| {
            let decryptor =
                FileDecryptor::new(keyring, options, file).map_err(|e| Failure::reading(e).with_file(&name))?;
            check(decryptor.header()).map_err(|f| f.with_file(&name))?;
            progress.body_started();
            decryptor.decrypt_into(pending, &|n| progress.inc(n)).map(drop).map_err(|e| match e {
                FileError::Input(e) => Failure::reading(e).with_file(&name),
                FileError::Output(e) => Failure::new(Code::Io, format!("cannot write {shown}: {e}")),
            })
        });
        progress.done(result.is_ok());
        return result;
    }
    let reader = progress.reader(input.reader);
    let result = with_output(output, out_args, |out| {
        let mut decryptor =
            Decryptor::new(keyring, options, reader).map_err(|e| Failure::reading(e).with_file(&name))?;
        check(decryptor.header()).map_err(|f| f.with_file(&name))?;
        progress.body_started();
        let mut out = Tracked::new(out);
        decryptor.write_to(&mut out).map_err(|e| {
            if out.failed {
                Failure::io(format!("cannot write {shown}"), e)
            } else {
                Failure::reading(Error::from_io(e)).with_file(&name)
            }
        })?;
        Ok(())
    });
    progress.done(result.is_ok());
    result
}

/// The limits of the header read for an early `check` in `decrypt --range`: only those that bound memory, as
/// in `inspect` (the decryptor applies the configured ones).
const PRECHECK_LIMITS: kms_envelope::DecryptLimits =
    kms_envelope::DecryptLimits { max_frame_length: u32::MAX, ..kms_envelope::DecryptLimits::DEFAULT };

/// `decrypt --range`: plaintext bytes `range` of the message in the file `input` into `output`, through a
/// [`SeekableDecryptor`] (so memory stays at one read-ahead window whatever the range's size). A file
/// output appears only once every frame of the range verified.
pub fn decrypt_range_to(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    check: &dyn Fn(&Header) -> Result<(), Failure>,
    input: Input,
    range: PlaintextRange,
    output: &Location,
    out_args: &OutputArgs,
) -> Result<(), Failure> {
    let name = input.name;
    let Some(file) = input.file else {
        return Err(Failure::usage(format!(
            "{name}: --range needs a message in a regular file, which it reads by offset"
        )));
    };
    // `SeekableDecryptor::new` reads and opens the final frame before the header reaches `check`: refuse a
    // header `check` refuses first, before the keyring or any body byte (the authenticated header is
    // checked again below).
    let mut header = io::BufReader::new(&file);
    let first = io::BufRead::fill_buf(&mut header).map_err(|e| Failure::io(format!("cannot read {name}"), e))?;
    if first.first().copied().is_some_and(armor::is_armored) {
        return Err(range_of_armor().with_file(&name));
    }
    let unauthenticated =
        Header::read_from(PRECHECK_LIMITS, &mut header).map_err(|e| Failure::reading(e).with_file(&name))?;
    check(&unauthenticated).map_err(|f| f.with_file(&name))?;
    let mut reader =
        SeekableDecryptor::new(keyring, options, file).map_err(|e| Failure::reading(e).with_file(&name))?;
    check(reader.header()).map_err(|f| f.with_file(&name))?;
    let (start, end) = range.within(reader.plaintext_len()).map_err(|f| f.with_file(&name))?;
    reader.seek(io::SeekFrom::Start(start)).map_err(|e| Failure::reading(Error::from_io(e)).with_file(&name))?;
    with_output(output, out_args, |out| {
        // Wiped when dropped, unlike `io::copy`'s buffer on the stack: it holds plaintext.
        let mut buf = zeroize::Zeroizing::new(vec![0u8; OUT_BUFFER]);
        let mut left = end - start;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = reader.read(&mut buf[..want]).map_err(|e| Failure::reading(Error::from_io(e)).with_file(&name))?;
            if n == 0 {
                return Err(
                    Failure::reading(Error::Truncated { offset: end - left, section: "range" }).with_file(&name)
                );
            }
            out.write_all(&buf[..n]).map_err(|e| Failure::io(format!("cannot write {}", output.arg()), e))?;
            left -= n as u64;
        }
        Ok(())
    })
}

/// `decrypt --range` of an S3 object: a HeadObject, then ranged GETs of the header, the final frame (one
/// keyring call) and the frames holding the range, in windows of 8 MiB: memory stays
/// at about two windows whatever the range's size. Each window is verified before `output` gets it; a file
/// output appears only once every window verified.
pub fn decrypt_s3_range_to(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    check: &(dyn Fn(&Header) -> Result<(), Failure> + Sync),
    url: &S3Url,
    range: PlaintextRange,
    output: &Location,
    out_args: &OutputArgs,
) -> Result<(), Failure> {
    remote::decrypt_range_to(keyring, options, check, url, range, output, out_args)
}

#[cfg(feature = "s3")]
pub use remote::PinnedObject;

/// `reencrypt` from the S3 object `input` into the S3 object `output` (which may be `input`: then replaced
/// only if its ETag is still the one read; another object only with `force`, else `If-None-Match: *`).
/// SIGHUP, SIGINT, SIGQUIT or SIGTERM aborts the upload (exit 128 + the signal's number).
pub fn reencrypt_s3(
    source: &dyn Keyring,
    target: &dyn Keyring,
    options: &kms_envelope::ReencryptOptions,
    input: &S3Url,
    output: &S3Url,
    force: bool,
) -> Result<(), Failure> {
    remote::reencrypt(source, target, options, input, output, force)
}

/// The tar stream of the directory `dir` as [`kms_envelope::bundle::pack_directory`] writes it, as a
/// reader (for `bundle DIR s3://...`, which uploads what it reads): a thread packs into a channel of
/// 1 MiB chunks, wiped once read, at most two of them waiting. A failure to pack is an error of the read
/// that meets it, never an early end: a tar stream cut short must not become a complete message.
pub fn packed_directory(dir: &Path) -> Box<dyn Read + Send> {
    /// The packer's side: each chunk sent; an empty one (never sent otherwise) marks a complete stream.
    struct ToReader(std::sync::mpsc::SyncSender<io::Result<zeroize::Zeroizing<Vec<u8>>>>);
    impl Write for ToReader {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.is_empty() {
                return Ok(0);
            }
            let chunk = zeroize::Zeroizing::new(buf.to_vec());
            self.0.send(Ok(chunk)).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader is gone"))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    struct FromPacker {
        from_packer: std::sync::mpsc::Receiver<io::Result<zeroize::Zeroizing<Vec<u8>>>>,
        current: zeroize::Zeroizing<Vec<u8>>,
        at: usize,
        done: bool,
    }
    impl Read for FromPacker {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            while self.at == self.current.len() && !self.done {
                match self.from_packer.recv() {
                    Ok(Ok(chunk)) if chunk.is_empty() => self.done = true,
                    Ok(Ok(chunk)) => (self.current, self.at) = (chunk, 0),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(io::Error::other("the directory's packing stopped")),
                }
            }
            let n = buf.len().min(self.current.len() - self.at);
            buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }
    let (to_reader, from_packer) = std::sync::mpsc::sync_channel(2);
    let dir = dir.to_owned();
    std::thread::spawn(move || {
        let sender = to_reader.clone();
        let packed =
            kms_envelope::bundle::pack_directory(&dir, WipingBufWriter::with_capacity(1 << 20, ToReader(sender)));
        let last = match packed {
            Ok(_) => Ok(zeroize::Zeroizing::new(Vec::new())),
            Err(e) => Err(io::Error::from(e)),
        };
        let _ = to_reader.send(last);
    });
    Box::new(FromPacker { from_packer, current: zeroize::Zeroizing::new(Vec::new()), at: 0, done: false })
}

/// Moves every `s3://` object of this run with `transfer` (the `--s3-*` flags) instead of the defaults.
/// Called once, before any transfer: like the S3 client, one setting serves the whole process.
#[cfg(feature = "s3")]
pub fn use_s3_transfer(transfer: kms_envelope::s3::TransferOptions) {
    remote::use_transfer(transfer);
}

/// An object met by [`list_s3`].
pub struct ListedObject {
    /// Its whole key, as the bucket's writer chose it: shown only escaped.
    pub key: String,
    /// An empty object whose key ends in `/`: what consoles make for a "folder", holding no message.
    pub folder_marker: bool,
}

/// Calls `each` with every object under `prefix`, in key order, listed a page (up to 1,000 keys) at a
/// time. Stops at the first failure, of the listing or of `each`.
pub fn list_s3(prefix: &S3Prefix, each: impl FnMut(ListedObject) -> Result<(), Failure>) -> Result<(), Failure> {
    remote::list(prefix.bucket(), prefix.prefix(), each)
}

/// `s3://bucket/key` inputs and outputs: one runtime for the requests, the S3 client from the usual AWS
/// configuration (`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` for an S3-compatible endpoint).
#[cfg(feature = "s3")]
mod remote {
    use std::sync::OnceLock;

    use kms_envelope::s3::{Listing, S3Object, TransferOptions};
    use kms_envelope::stream::AsyncRangeReader;

    use super::*;

    /// Plaintext bytes per window of an S3 `decrypt --range`: large enough that a window's GET costs little
    /// next to its transfer, small enough that two windows (one being written, the next in flight) stay small.
    const RANGE_WINDOW: usize = 8 << 20;

    fn runtime() -> Result<&'static tokio::runtime::Runtime, Failure> {
        static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        if let Some(runtime) = RUNTIME.get() {
            return Ok(runtime);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kms-envelope-s3")
            .enable_all()
            .build()
            .map_err(|e| Failure::io("cannot start the S3 client".into(), e))?;
        Ok(RUNTIME.get_or_init(|| runtime))
    }

    /// One client for the process: a run over a prefix makes requests about many objects, and each new
    /// client would load the configuration and fetch credentials again.
    fn client() -> Result<&'static aws_sdk_s3::Client, Failure> {
        static CLIENT: OnceLock<aws_sdk_s3::Client> = OnceLock::new();
        if let Some(client) = CLIENT.get() {
            return Ok(client);
        }
        let runtime = runtime()?;
        // Without a read timeout a silent endpoint (a request accepted, never answered) hangs the CLI for
        // ever. Generous enough for an 8 MiB part on a slow uplink (~0.6 Mbit/s); a stall is then an error
        // after the SDK's retries, and an upload in progress is aborted.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(120))
            .build();
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts);
        let config = runtime.block_on(loader.load());
        Ok(CLIENT.get_or_init(|| aws_sdk_s3::Client::new(&config)))
    }

    fn object(url: &S3Url) -> Result<S3Object, Failure> {
        Ok(S3Object::new(client()?.clone(), url.bucket(), url.key()))
    }

    pub fn list(
        bucket: &str,
        prefix: &str,
        mut each: impl FnMut(ListedObject) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let mut listing = Listing::new(client()?.clone(), bucket, prefix);
        let runtime = runtime()?;
        while let Some(page) = runtime.block_on(listing.next_page()).map_err(Failure::reading)? {
            for object in page {
                let folder_marker = object.is_folder_marker();
                each(ListedObject { key: object.key, folder_marker })?;
            }
        }
        Ok(())
    }

    /// The failure of an object found at `url` that may not be replaced: as for a file (exit 4).
    fn already_exists(url: &str, note: &str) -> Failure {
        Failure::new(Code::Io, format!("{}: already exists{note} (use --force to replace it)", escaped(url)))
    }

    pub fn check_absent(url: &S3Url) -> Result<(), Failure> {
        let object = object(url)?;
        match runtime()?.block_on(object.exists()) {
            Ok(true) => Err(already_exists(url.as_str(), "")),
            // A check that could not be made: the upload's condition decides.
            Ok(false) | Err(_) => Ok(()),
        }
    }

    /// The transfer options of this run: the `--s3-*` flags', or the defaults.
    static TRANSFER: OnceLock<TransferOptions> = OnceLock::new();

    pub fn use_transfer(transfer: TransferOptions) {
        let _ = TRANSFER.set(transfer);
    }

    fn transfer() -> TransferOptions {
        TRANSFER.get().cloned().unwrap_or_default()
    }

    /// Ranged GETs of the part size, the configured number in flight: bounded memory, in order.
    pub fn download_options() -> TransferOptions {
        transfer()
    }

    /// 64 KiB per GET, one at a time: most headers fit in the first.
    pub fn header_options() -> TransferOptions {
        TransferOptions::new().chunk_size(64 << 10).concurrency(1)
    }

    pub fn open(url: &S3Url, transfer: &TransferOptions) -> Result<Input, Failure> {
        let object = object(url)?;
        let runtime = runtime()?;
        let size = runtime.block_on(object.pin()).map_err(|e| Failure::reading(e).with_file(&url.to_string()))?.len;
        let reader = object.reader(runtime.handle().clone(), transfer);
        let name = url.as_str().to_owned();
        Ok(Input { name, reader: Box::new(reader), size: Some(size), file: None, resendable: true })
    }

    pub fn decrypt_range_to(
        keyring: &dyn Keyring,
        options: &DecryptOptions,
        check: &(dyn Fn(&Header) -> Result<(), Failure> + Sync),
        url: &S3Url,
        range: PlaintextRange,
        output: &Location,
        out_args: &OutputArgs,
    ) -> Result<(), Failure> {
        let (object, url) = (object(url)?, url.as_str());
        let object = CheckedHeader { object, check, refused: std::sync::Mutex::new(None) };
        let runtime = runtime()?;
        let opened = runtime.block_on(AsyncRangeReader::open(keyring, options, &object));
        let refused = object.refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let reader = match (opened, refused) {
            (_, Some(refused)) => return Err(refused.with_file(url)),
            (opened, None) => opened.map_err(|e| Failure::reading(e).with_file(url))?,
        };
        let reader = reader.with_window_len(RANGE_WINDOW);
        check(reader.header()).map_err(|f| f.with_file(url))?;
        let (start, end) = range.within(reader.plaintext_len()).map_err(|f| f.with_file(url))?;
        with_output(output, out_args, |out| {
            let mut out = Tracked::new(out);
            runtime.block_on(reader.write_range_to(start, end, &mut out)).map(drop).map_err(|e| match e {
                Error::Io(e) if out.failed => Failure::io(format!("cannot write {}", output.arg()), e),
                e => Failure::reading(e).with_file(url),
            })
        })
    }

    /// An S3 object whose first read (the header's, at offset 0) goes through `check` when it holds the whole
    /// header: a header `check` refuses stops the range reader before the keyring and any body byte, at no
    /// extra request. The authenticated header is checked again once the range is read.
    struct CheckedHeader<'a> {
        object: S3Object,
        check: &'a (dyn Fn(&Header) -> Result<(), Failure> + Sync),
        refused: std::sync::Mutex<Option<Failure>>,
    }

    impl kms_envelope::stream::AsyncRangeSource for CheckedHeader<'_> {
        async fn total_len(&self) -> io::Result<u64> {
            self.object.total_len().await
        }

        async fn read_at(&self, offset: u64, length: usize) -> io::Result<Vec<u8>> {
            let bytes = self.object.read_at(offset, length).await?;
            if offset == 0 && bytes.first().copied().is_some_and(armor::is_armored) {
                *self.refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(range_of_armor());
                return Err(io::Error::other("base64 armor"));
            }
            if offset == 0
                && let Ok(header) = Header::read_from(PRECHECK_LIMITS, &mut &bytes[..])
                && let Err(refused) = (self.check)(&header)
            {
                *self.refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(refused);
                return Err(io::Error::other("the header was refused"));
            }
            Ok(bytes)
        }
    }

    pub fn reencrypt(
        source_keyring: &dyn Keyring,
        target_keyring: &dyn Keyring,
        options: &kms_envelope::ReencryptOptions,
        input: &S3Url,
        output: &S3Url,
        force: bool,
    ) -> Result<(), Failure> {
        let (source, destination) = (object(input)?, object(output)?.overwrite(force));
        let handle = runtime()?.handle().clone();
        let transfer = transfer();
        let uploaded = interruptible(|cancelled| {
            destination.reencrypt_from_blocking(
                handle,
                &source,
                source_keyring,
                target_keyring,
                options,
                &transfer,
                cancelled,
            )
        })?;
        uploaded.map(drop).map_err(|e| match e {
            Error::Io(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                already_exists(output.as_str(), " (written while this ran; nothing was replaced or left behind)")
            }
            e => Failure::reading(e).with_file(&input.to_string()),
        })
    }

    /// Runs an upload with SIGHUP, SIGINT, SIGQUIT and SIGTERM turned into its `cancelled` flag (which aborts it); after a
    /// signal, the failure carries the signal's exit status, whatever the upload returned.
    fn interruptible<T>(
        upload: impl FnOnce(std::sync::Arc<std::sync::atomic::AtomicBool>) -> kms_envelope::Result<T>,
    ) -> Result<kms_envelope::Result<T>, Failure> {
        #[cfg(unix)]
        let interrupts = super::super::interrupt::Interrupts::arm()
            .map_err(|e| Failure::io("cannot handle SIGHUP, SIGINT, SIGQUIT and SIGTERM".into(), e))?;
        #[cfg(unix)]
        let cancelled = interrupts.cancelled();
        #[cfg(not(unix))]
        let cancelled = std::sync::Arc::default();
        let uploaded = upload(cancelled);
        #[cfg(unix)]
        if let Some(status) = interrupts.exit_status() {
            let what = if uploaded.is_ok() { "the S3 upload had completed" } else { "the S3 upload was aborted" };
            return Err(Failure::interrupted(format!("interrupted; {what}"), status));
        }
        Ok(uploaded)
    }

    /// An S3 object read whole, pinned to the ETag it had (`edit`).
    pub struct PinnedObject {
        object: S3Object,
        url: S3Url,
    }

    impl PinnedObject {
        /// The object at `url` and its bytes, refused past `max_len` by its length in `HeadObject`.
        pub fn read(url: &S3Url, max_len: u64) -> Result<(Self, Vec<u8>), Failure> {
            let object = object(url)?;
            let runtime = runtime()?;
            let shown = url.to_string();
            let len = runtime.block_on(object.pin()).map_err(|e| Failure::reading(e).with_file(&shown))?.len;
            if len > max_len {
                return Err(Failure::new(Code::Io, format!("{shown}: over {} MiB, more than fits", max_len >> 20)));
            }
            let bytes =
                runtime.block_on(object.read_all(&transfer())).map_err(|e| Failure::reading(e).with_file(&shown))?;
            Ok((Self { object, url: url.clone() }, bytes))
        }

        /// Replaces the object by `message` while it still has the ETag it was read with. SIGHUP, SIGINT,
        /// SIGQUIT or SIGTERM aborts the upload (exit 128 + the signal's number).
        pub fn replace(&self, message: &[u8]) -> Result<(), Failure> {
            let handle = runtime()?.handle().clone();
            let uploaded = interruptible(|cancelled| {
                self.object.replace_pinned_blocking(handle, message, &transfer(), cancelled)
            })?;
            uploaded.map(drop).map_err(|e| Failure::writing(e).with_file(&self.url.to_string()))
        }
    }

    pub fn upload(
        keyring: &dyn Keyring,
        options: &EncryptOptions,
        plaintext: Box<dyn Read + '_>,
        size: Option<u64>,
        url: &S3Url,
        (name, resendable): (&str, bool),
        force: bool,
    ) -> Result<(), Failure> {
        let object = object(url)?.overwrite(force);
        let url = url.as_str();
        let handle = runtime()?.handle().clone();
        let chosen = transfer();
        let transfer = match size {
            Some(size) => chosen.clone().part_size(chosen.part_size_for_plaintext(size, options)),
            None => chosen,
        };
        let mut input = Tracked::new(plaintext);
        let uploaded = interruptible(|cancelled| {
            object.encrypt_from_blocking_cancellable(handle, keyring, options, &transfer, &mut input, cancelled)
        })?;
        uploaded.map(drop).map_err(|e| match e {
            Error::Io(e) if input.failed => Failure::io(format!("cannot read {name}"), e),
            Error::Io(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let note = if resendable {
                    " (written while this ran; nothing was replaced or left behind)"
                } else {
                    " (written while this ran; nothing was replaced or left behind, and the input, a stream \
                     read once, was not kept: send it again)"
                };
                already_exists(url, note)
            }
            e => Failure::writing(e).with_file(url),
        })
    }
}

/// Without the `s3` feature: never reached, since [`super::location::S3Name`] refuses every `s3://` name
/// then, by the feature it needs; refused again by name here.
#[cfg(not(feature = "s3"))]
mod remote {
    use super::*;

    pub struct TransferOptions;

    fn unsupported(url: &S3Url) -> Failure {
        super::super::features::missing("s3", url.as_str())
    }

    pub fn download_options() -> TransferOptions {
        TransferOptions
    }

    pub fn header_options() -> TransferOptions {
        TransferOptions
    }

    pub fn open(url: &S3Url, _: &TransferOptions) -> Result<Input, Failure> {
        Err(unsupported(url))
    }

    pub fn decrypt_range_to(
        _: &dyn Keyring,
        _: &DecryptOptions,
        _: &(dyn Fn(&Header) -> Result<(), Failure> + Sync),
        url: &S3Url,
        _: PlaintextRange,
        _: &Location,
        _: &OutputArgs,
    ) -> Result<(), Failure> {
        Err(unsupported(url))
    }

    pub fn upload(
        _: &dyn Keyring,
        _: &EncryptOptions,
        _: Box<dyn Read + '_>,
        _: Option<u64>,
        url: &S3Url,
        _: (&str, bool),
        _: bool,
    ) -> Result<(), Failure> {
        Err(unsupported(url))
    }

    pub fn check_absent(url: &S3Url) -> Result<(), Failure> {
        Err(unsupported(url))
    }

    pub fn reencrypt(
        _: &dyn Keyring,
        _: &dyn Keyring,
        _: &kms_envelope::ReencryptOptions,
        input: &S3Url,
        _: &S3Url,
        _: bool,
    ) -> Result<(), Failure> {
        Err(unsupported(input))
    }

    pub fn list(bucket: &str, prefix: &str, _: impl FnMut(ListedObject) -> Result<(), Failure>) -> Result<(), Failure> {
        Err(super::super::features::missing("s3", &super::super::location::shown_s3(bucket, prefix)))
    }
}
