//! Failures and the exit codes they map to (documented in `--help` and the README).

use std::fmt;
use std::process::ExitCode;

use kms_envelope::Error;

/// Exit codes of the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// 1: the message is invalid or fails to authenticate.
    InvalidMessage = 1,
    /// 2: the command line is wrong.
    Usage = 2,
    /// 3: no key could be used (no keyring decrypted a data key, KMS error, credentials).
    KeyAccess = 3,
    /// 4: reading or writing a file failed.
    Io = 4,
}

/// One failure: a one-line reason and its exit code.
#[derive(Debug)]
pub struct Failure {
    code: Code,
    message: String,
}

impl Failure {
    pub fn new(code: Code, message: String) -> Self {
        Self { code, message }
    }

    pub fn usage(message: String) -> Self {
        Self::new(Code::Usage, message)
    }

    pub fn io(what: String, err: std::io::Error) -> Self {
        Self::new(Code::Io, format!("{what}: {err}"))
    }

    /// A failure while reading a message (decrypt, unbundle, inspect).
    pub fn reading(err: Error) -> Self {
        let err = unwrap_io(err);
        let code = match &err {
            Error::Io(_) => Code::Io,
            Error::NoDataKeyDecrypted { .. } | Error::Keyring(_) => Code::KeyAccess,
            Error::Config(_) => Code::Usage,
            _ => Code::InvalidMessage,
        };
        Self::new(code, err.to_string())
    }

    /// A failure while writing a message (encrypt, bundle): nothing here is about an existing message, so
    /// what is not a key or I/O problem is the caller's configuration.
    pub fn writing(err: Error) -> Self {
        let err = unwrap_io(err);
        let code = match &err {
            Error::Io(_) | Error::Bundle(_) => Code::Io,
            Error::NoDataKeyDecrypted { .. } | Error::Keyring(_) => Code::KeyAccess,
            _ => Code::Usage,
        };
        Self::new(code, err.to_string())
    }

    /// Names the file the failure is about.
    pub fn with_file(mut self, file: &str) -> Self {
        self.message = format!("{file}: {}", self.message);
        self
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code as u8)
    }
}

/// A crate error that travelled inside an `io::Error` (through a `Read` or `Write` adapter such as the tar
/// reader) is that error, not an I/O failure.
fn unwrap_io(err: Error) -> Error {
    match err {
        Error::Io(io) => Error::from_io(io),
        other => other,
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line with no control characters, whatever the error text and the file names hold.
        write!(f, "{}", kms_envelope::escape::OneLine(&self.message))
    }
}
