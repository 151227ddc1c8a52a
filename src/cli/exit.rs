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
    pub fn usage(message: String) -> Self {
        Self { code: Code::Usage, message }
    }

    pub fn io(what: String, err: std::io::Error) -> Self {
        Self { code: Code::Io, message: format!("{what}: {err}") }
    }

    pub fn from_error(err: Error) -> Self {
        let code = match &err {
            Error::Io(_) => Code::Io,
            Error::NoDataKeyDecrypted { .. } | Error::Keyring(_) => Code::KeyAccess,
            Error::Config(_) => Code::Usage,
            _ => Code::InvalidMessage,
        };
        Self { code, message: err.to_string() }
    }

    /// Names the file the failure is about.
    pub fn with_file(mut self, file: &str) -> Self {
        self.message = format!("{file}: {}", self.message);
        self
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code as u8)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the error text holds.
        f.write_str(&self.message.replace('\n', " "))
    }
}
