//! Inputs and outputs: files or `-`, outputs written to a temp file and renamed into place.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use kms_envelope::stream::file::PendingFile;
use kms_envelope::{DecryptOptions, Decryptor, EncryptOptions, Encryptor, Error, Keyring};

use super::exit::Failure;

const BUFFER: usize = 1 << 20;

pub fn open_input(path: &str) -> Result<Box<dyn Read>, Failure> {
    if path == "-" {
        return Ok(Box::new(io::stdin().lock()));
    }
    let file = File::open(path).map_err(|e| Failure::io(format!("cannot open {path}"), e))?;
    Ok(Box::new(BufReader::with_capacity(BUFFER, file)))
}

/// Runs `write` against the output: stdout directly, or a temp file renamed over `path` on success.
fn with_output(
    path: &str,
    force: bool,
    write: impl FnOnce(&mut dyn Write) -> Result<(), Failure>,
) -> Result<(), Failure> {
    if path == "-" {
        let mut stdout = io::stdout().lock();
        write(&mut stdout)?;
        return stdout.flush().map_err(|e| Failure::io("cannot write to stdout".into(), e));
    }
    let mut pending =
        PendingFile::create(Path::new(path), force).map_err(|e| Failure::from_error(e).with_file(path))?;
    {
        let mut out = BufWriter::with_capacity(BUFFER, pending.file());
        write(&mut out)?;
        out.flush().map_err(|e| Failure::io(format!("cannot write {path}"), e))?;
    }
    // The CLI's outputs must survive a power loss once the command reported success.
    pending.commit(true, force).map_err(|e| Failure::from_error(e).with_file(path))
}

pub fn encrypt_to(
    keyring: &dyn Keyring,
    options: &EncryptOptions,
    mut input: Box<dyn Read>,
    output: &str,
    force: bool,
) -> Result<(), Failure> {
    with_output(output, force, |out| {
        let mut encryptor = Encryptor::new(keyring, options, out)?;
        io::copy(&mut input, &mut encryptor).map_err(|e| Failure::from_error(Error::from_io(e)))?;
        encryptor.finish()?;
        Ok(())
    })
}

pub fn decrypt_to(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    input: Box<dyn Read>,
    output: &str,
    force: bool,
) -> Result<(), Failure> {
    with_output(output, force, |out| {
        let mut decryptor = Decryptor::new(keyring, options, input)?;
        io::copy(&mut decryptor, out).map_err(|e| Failure::from_error(Error::from_io(e)))?;
        Ok(())
    })
}
