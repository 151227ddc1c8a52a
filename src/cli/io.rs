//! Inputs and outputs: files or `-`, outputs written to a temp file and renamed into place, and the copy
//! loops that tell a failing input from a failing output.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use kms_envelope::stream::file::PendingFile;
use kms_envelope::{DecryptOptions, Decryptor, EncryptOptions, Encryptor, Error, Header, Keyring};

use super::exit::{Code, Failure};
use super::progress::Progress;

const BUFFER: usize = 1 << 20;

/// An opened input: its name for messages, its bytes, and its size when known (a file, or stdin
/// redirected from a file).
pub struct Input {
    pub name: String,
    pub reader: Box<dyn Read>,
    pub size: Option<u64>,
}

/// Opens a file, or stdin for `-`. A directory is a usage error (it needs `--recursive` or `bundle`).
pub fn open_input(path: &str) -> Result<Input, Failure> {
    if path == "-" {
        return Ok(Input { name: "stdin".into(), reader: Box::new(io::stdin().lock()), size: stdin_size() });
    }
    let file = File::open(path).map_err(|e| Failure::io(format!("cannot open {path}"), e))?;
    let meta = file.metadata().map_err(|e| Failure::io(format!("cannot open {path}"), e))?;
    if meta.is_dir() {
        return Err(Failure::usage(format!(
            "{path} is a directory: use --recursive for one message per file, or the bundle command"
        )));
    }
    let size = meta.is_file().then_some(meta.len());
    Ok(Input { name: path.to_owned(), reader: Box::new(BufReader::with_capacity(BUFFER, file)), size })
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

/// Fails early, before any key is used, if `path` exists and may not be replaced.
pub fn check_output(path: &Path, force: bool) -> Result<(), Failure> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Err(Failure::new(Code::Io, format!("{}: is a symbolic link; refusing to write through it", path.display())))
        }
        Ok(_) if !force => {
            Err(Failure::new(Code::Io, format!("{}: already exists (use --force to replace it)", path.display())))
        }
        _ => Ok(()),
    }
}

/// Runs `write` against the output: stdout directly, or a 0600 temp file renamed over `path` on success.
fn with_output(
    path: &str,
    force: bool,
    write: impl FnOnce(&mut dyn Write) -> Result<(), Failure>,
) -> Result<(), Failure> {
    if path == "-" {
        let mut stdout = BufWriter::with_capacity(BUFFER, io::stdout().lock());
        write(&mut stdout)?;
        return stdout.flush().map_err(|e| Failure::io("cannot write to stdout".into(), e));
    }
    check_output(Path::new(path), force)?;
    let mut pending = PendingFile::create(Path::new(path), force)
        .map_err(|e| Failure::new(Code::Io, format!("{path}: cannot create: {e}")))?;
    {
        let mut out = BufWriter::with_capacity(BUFFER, pending.file());
        write(&mut out)?;
        out.flush().map_err(|e| Failure::io(format!("cannot write {path}"), e))?;
    }
    // The CLI's outputs must survive a power loss once the command reported success.
    pending.commit(true, force).map_err(|e| Failure::new(Code::Io, format!("{path}: cannot write: {e}")))
}

/// Which side of a copy failed.
pub enum Side {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` into `to` until `from` ends.
pub fn pump(from: &mut dyn Read, to: &mut dyn Write) -> Result<u64, Side> {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Side::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(Side::Write)?;
        total += n as u64;
    }
}

/// Encrypts `input` into the file or stdout `output`.
pub fn encrypt_to(
    keyring: &dyn Keyring,
    options: &EncryptOptions,
    input: Input,
    output: &str,
    force: bool,
    quiet: bool,
) -> Result<(), Failure> {
    let progress = Progress::new(&input.name, input.size, quiet);
    let name = input.name;
    let mut reader = progress.reader(input.reader);
    let result = with_output(output, force, |out| {
        let mut encryptor = Encryptor::new(keyring, options, out).map_err(|e| Failure::writing(e).with_file(output))?;
        pump(&mut reader, &mut encryptor).map_err(|side| match side {
            Side::Read(e) => Failure::io(format!("cannot read {name}"), e),
            Side::Write(e) => Failure::writing(Error::from_io(e)).with_file(output),
        })?;
        encryptor.finish().map_err(|e| Failure::writing(e).with_file(output))?;
        Ok(())
    });
    progress.done(result.is_ok());
    result
}

/// Decrypts the message `input` into the file or stdout `output`.
pub fn decrypt_to(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    check: &dyn Fn(&Header) -> Result<(), Failure>,
    input: Input,
    output: &str,
    force: bool,
    quiet: bool,
) -> Result<(), Failure> {
    let progress = Progress::new(&input.name, input.size, quiet);
    let name = input.name;
    let reader = progress.reader(input.reader);
    let result = with_output(output, force, |out| {
        let mut decryptor =
            Decryptor::new(keyring, options, reader).map_err(|e| Failure::reading(e).with_file(&name))?;
        check(decryptor.header()).map_err(|f| f.with_file(&name))?;
        pump(&mut decryptor, out).map_err(|side| match side {
            Side::Read(e) => Failure::reading(Error::from_io(e)).with_file(&name),
            Side::Write(e) => Failure::io(format!("cannot write {output}"), e),
        })?;
        Ok(())
    });
    progress.done(result.is_ok());
    result
}
