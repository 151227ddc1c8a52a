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
    /// 4: reading or writing a file failed, or memory ran out.
    Io = 4,
}

/// The status of a process whose reader closed the pipe it wrote to: what a shell reports for `cat` or
/// `yes` killed by SIGPIPE (128 + 13). Rust ignores SIGPIPE, so the write fails with EPIPE instead and the
/// CLI exits with this status, silently, as those tools do.
pub const BROKEN_PIPE_STATUS: u8 = 128 + 13;

/// One failure: a one-line reason and its exit code.
#[derive(Debug)]
pub struct Failure {
    code: Code,
    message: String,
    /// stdout's reader went away (EPIPE): nothing to say, the pipeline's reader decided to stop.
    broken_pipe: bool,
    /// The exit status instead of the code's: when a signal stopped the work, the status a shell reports for
    /// a process it killed (128 + its number); `exec`'s 126 or 127 ([`Failure::with_status`]).
    signal_status: Option<u8>,
}

impl Failure {
    pub fn new(code: Code, message: String) -> Self {
        Self { code, message, broken_pipe: false, signal_status: None }
    }

    /// A signal (SIGHUP, SIGINT, SIGQUIT, SIGTERM) stopped the work, which was then cleaned up; `status` is the signal's exit status.
    #[cfg_attr(not(all(unix, feature = "s3")), allow(dead_code))]
    pub fn interrupted(message: String, status: u8) -> Self {
        Self { signal_status: Some(status), ..Self::new(Code::Io, message) }
    }

    /// A write failed because stdout's reader went away. Only pipes and sockets fail with EPIPE, and every
    /// file output is a regular file, so such an error is always stdout's.
    fn with_pipe_check(mut self, kind: std::io::ErrorKind) -> Self {
        self.broken_pipe = kind == std::io::ErrorKind::BrokenPipe;
        self
    }

    /// A failure that exits with `status` rather than its code's: `exec`'s 126 and 127 for a command that
    /// cannot be executed, as `env` reports them.
    pub fn with_status(code: Code, message: String, status: u8) -> Self {
        Self { signal_status: Some(status), ..Self::new(code, message) }
    }

    pub fn usage(message: String) -> Self {
        Self::new(Code::Usage, message)
    }

    pub fn io(what: String, err: std::io::Error) -> Self {
        Self::new(Code::Io, format!("{what}: {err}")).with_pipe_check(err.kind())
    }

    /// A failure while reading a message (decrypt, unbundle, inspect).
    pub fn reading(err: Error) -> Self {
        let err = unwrap_io(err);
        let code = match &err {
            Error::Io(_) | Error::OutOfMemory { .. } => Code::Io,
            Error::NoDataKeyDecrypted { .. } | Error::Keyring(_) => Code::KeyAccess,
            // Asking for bytes a message does not have, or random access to one that does not allow it.
            Error::Config(_) | Error::RangeOutOfBounds { .. } | Error::RangeRefused(_) => Code::Usage,
            _ => Code::InvalidMessage,
        };
        Self::new(code, err.to_string()).with_pipe_check(io_kind(&err))
    }

    /// A failure while writing a message (encrypt, bundle): nothing here is about an existing message, so
    /// what is not a key or I/O problem is the caller's configuration.
    pub fn writing(err: Error) -> Self {
        let err = unwrap_io(err);
        let code = match &err {
            Error::Io(_) | Error::Bundle(_) | Error::OutOfMemory { .. } => Code::Io,
            Error::NoDataKeyDecrypted { .. } | Error::Keyring(_) => Code::KeyAccess,
            _ => Code::Usage,
        };
        Self::new(code, err.to_string()).with_pipe_check(io_kind(&err))
    }

    /// Names the file the failure is about.
    pub fn with_file(mut self, file: &str) -> Self {
        self.message = format!("{file}: {}", self.message);
        self
    }

    /// Adds `note` after the reason.
    pub fn with_note(mut self, note: &str) -> Self {
        self.message = format!("{}; {note}", self.message);
        self
    }

    /// Whether a signal stopped the work: a run over many inputs stops there too.
    pub fn is_interrupted(&self) -> bool {
        self.signal_status.is_some()
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn exit_code(&self) -> ExitCode {
        if let Some(status) = self.signal_status {
            return ExitCode::from(status);
        }
        if self.broken_pipe { ExitCode::from(BROKEN_PIPE_STATUS) } else { ExitCode::from(self.code as u8) }
    }

    /// Whether the failure is worth a line on stderr: not when stdout's reader simply stopped reading.
    pub fn is_reported(&self) -> bool {
        !self.broken_pipe
    }
}

/// A crate error that travelled inside an `io::Error` (through a `Read` or `Write` adapter such as the tar
/// reader) is that error, not an I/O failure.
fn io_kind(err: &Error) -> std::io::ErrorKind {
    match err {
        Error::Io(io) => io.kind(),
        _ => std::io::ErrorKind::Other,
    }
}

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
