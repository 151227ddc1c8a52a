//! SIGHUP, SIGINT, SIGQUIT and SIGTERM while an S3 upload runs: the upload is aborted rather than left open
//! (its parts stored and billed until a lifecycle rule removes them). SIGHUP is what a closed terminal or a
//! dropped SSH session sends, SIGQUIT what Ctrl-\ sends: each ends the process as SIGINT does, so each
//! aborts the upload first.
//!
//! The handler itself sets the cancellation flag, before anything else of this process can run: a producer
//! killed by the same Ctrl-C closes the pipe, and were the flag set later (by a thread woken after the
//! handler), end-of-input could be seen first and a truncated but valid object completed. The handler also
//! writes a byte to a socket that stdin's reader polls beside stdin, so a read blocked on a pipe that stays
//! open wakes up and fails. A second signal, or any signal outside an upload, terminates the process as if
//! no handler were installed.

use std::ffi::c_int;
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use rustix::event::{PollFd, PollFlags, poll};
use signal_hook::SigId;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::flag;
use signal_hook::low_level::{pipe, unregister};

use super::signals::ignored;

/// What the handlers share with the process, made once: at most one upload runs at a time.
struct Shared {
    /// Set by the first signal: the upload's cancellation flag.
    cancelled: Arc<AtomicBool>,
    /// The number of the signal that set `cancelled`.
    signal: Arc<AtomicUsize>,
    /// Set outside an upload and by the first signal: a signal then takes its default action.
    default_action: Arc<AtomicBool>,
    /// Readable once a signal arrived (the handler writes to its peer, non-blocking).
    wake: UnixStream,
    wake_handler_end: UnixStream,
    /// Whether an upload runs: only then does stdin's reader poll `wake`.
    armed: AtomicBool,
    /// SIGHUP, SIGINT, SIGQUIT and SIGTERM, less any this process was started ignoring (`nohup`, a
    /// background job of a script): a handler would make it answer what it was told to ignore.
    signals: Vec<c_int>,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn shared() -> io::Result<&'static Shared> {
    if let Some(shared) = SHARED.get() {
        return Ok(shared);
    }
    let (wake, wake_handler_end) = UnixStream::pair()?;
    wake.set_nonblocking(true)?;
    let shared = Shared {
        cancelled: Arc::default(),
        signal: Arc::default(),
        default_action: Arc::new(AtomicBool::new(true)),
        wake,
        wake_handler_end,
        armed: AtomicBool::new(false),
        signals: [SIGHUP, SIGINT, SIGQUIT, SIGTERM].into_iter().filter(|&signal| !ignored(signal)).collect(),
    };
    let shared = SHARED.get_or_init(|| shared);
    for &signal in &shared.signals {
        // Registered first, so that it runs before the actions below, and never removed: `signal_hook`
        // cannot restore the default action itself once a handler is installed.
        flag::register_conditional_default(signal, shared.default_action.clone())?;
    }
    Ok(shared)
}

/// Whether an upload is under way: the signals above then cancel it rather than end the process.
pub fn upload_in_progress() -> bool {
    SHARED.get().is_some_and(|shared| shared.armed.load(Ordering::SeqCst))
}

/// SIGHUP, SIGINT, SIGQUIT and SIGTERM cancel the upload for as long as this lives.
pub struct Interrupts {
    shared: &'static Shared,
    actions: Vec<SigId>,
}

impl Interrupts {
    pub fn arm() -> io::Result<Self> {
        let shared = shared()?;
        let mut interrupts = Self { shared, actions: Vec::new() };
        for &signal in &shared.signals {
            let number = usize::try_from(signal).expect("signal numbers are positive");
            // In this order: the flag is set before the wake-up, so a woken reader sees it.
            interrupts.actions.push(flag::register_usize(signal, shared.signal.clone(), number)?);
            interrupts.actions.push(flag::register(signal, shared.cancelled.clone())?);
            interrupts.actions.push(pipe::register(signal, shared.wake_handler_end.try_clone()?)?);
        }
        shared.armed.store(true, Ordering::SeqCst);
        shared.default_action.store(false, Ordering::SeqCst);
        // A second signal (an abort that hangs) terminates at once.
        for &signal in &shared.signals {
            interrupts.actions.push(flag::register(signal, shared.default_action.clone())?);
        }
        Ok(interrupts)
    }

    /// The flag the upload checks.
    pub fn cancelled(&self) -> Arc<AtomicBool> {
        self.shared.cancelled.clone()
    }

    /// The exit status of a process killed by the signal that arrived, if one did (128 + its number).
    pub fn exit_status(&self) -> Option<u8> {
        if !self.shared.cancelled.load(Ordering::SeqCst) {
            return None;
        }
        u8::try_from(128 + self.shared.signal.load(Ordering::SeqCst)).ok()
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        // Default first, so that no signal falls between the two and is lost.
        self.shared.default_action.store(true, Ordering::SeqCst);
        self.shared.armed.store(false, Ordering::SeqCst);
        for action in self.actions.drain(..) {
            unregister(action);
        }
    }
}

/// Stdin, read only once it is readable or a signal has cancelled the upload, so a read from a pipe whose
/// writer neither writes nor closes cannot outlast a Ctrl-C. Sits under the input buffer: poll says
/// nothing about bytes already buffered.
pub struct InterruptibleStdin(pub std::fs::File);

impl Read for InterruptibleStdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(shared) = SHARED.get().filter(|shared| shared.armed.load(Ordering::SeqCst)) else {
            return self.0.read(buf);
        };
        loop {
            if shared.cancelled.load(Ordering::SeqCst) {
                // Not `Interrupted`: readers retry on that.
                return Err(io::Error::other("interrupted"));
            }
            let mut fds = [PollFd::new(&self.0, PollFlags::IN), PollFd::new(&shared.wake, PollFlags::IN)];
            match poll(&mut fds, None) {
                Ok(_) if !fds[0].revents().is_empty() => return self.0.read(buf),
                Ok(_) => {
                    // A wake-up left from a signal of an earlier upload: drop it and wait again.
                    let _ = (&shared.wake).read(&mut [0; 16]);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
