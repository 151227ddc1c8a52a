//! The progress bar on stderr: only for inputs over 64 MiB, only when stderr is a terminal, never with
//! `--quiet`. It counts bytes read from the input (or, for a bundle, bytes of the archive written).

use std::io::{IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Inputs of this size or smaller never get a bar.
pub const THRESHOLD: u64 = 64 << 20;

const TEMPLATE: &str = "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} ({elapsed})";
/// Until the header is done (a KMS call may take seconds while a few hundred bytes were read), a rate and
/// an ETA would be nonsense ("ETA 13h"): none are shown.
const HEADER_TEMPLATE: &str = "{msg} [{bar:30}] {bytes}/{total_bytes} reading the header... ({elapsed})";

/// A bar, or nothing when there is no terminal, the input is small or of unknown size, or `--quiet`.
pub struct Progress {
    bar: Option<ProgressBar>,
    body: AtomicBool,
}

impl Progress {
    /// A bar for `total` bytes labelled `label`, if the conditions above hold.
    pub fn new(label: &str, total: Option<u64>, quiet: bool) -> Self {
        let bar = match total {
            Some(total) if total > THRESHOLD && !quiet && std::io::stderr().is_terminal() => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                    .with_style(style(HEADER_TEMPLATE));
                // A file name can hold controls (a received tree decrypted with --recursive): escaped as
                // in error lines.
                bar.set_message(kms_envelope::escape::OneLine(label).to_string());
                #[cfg(unix)]
                interrupted::show(&bar);
                Some(bar)
            }
            _ => None,
        };
        Self { bar, body: AtomicBool::new(false) }
    }

    /// The header is done (the data key unwrapped or made): from now on the rate and the ETA mean
    /// something. The time spent so far is left out of the estimate.
    pub fn body_started(&self) {
        if self.body.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(bar) = &self.bar {
            bar.set_style(style(TEMPLATE));
            bar.reset_eta();
        }
    }

    /// Counts the bytes read through `reader`.
    pub fn reader<'a, R: Read + 'a>(&self, reader: R) -> Box<dyn Read + 'a> {
        match &self.bar {
            Some(bar) => Box::new(bar.wrap_read(reader)),
            None => Box::new(reader),
        }
    }

    /// Counts the bytes written through `writer`.
    pub fn writer<'a, W: Write + 'a>(&self, writer: W) -> Box<dyn Write + 'a> {
        match &self.bar {
            Some(bar) => Box::new(bar.wrap_write(writer)),
            None => Box::new(writer),
        }
    }

    /// Counts `n` bytes of the input done, from any thread. The file-to-file paths report only body bytes,
    /// and only once the data key is there, so the first count also ends the header phase.
    pub fn inc(&self, n: u64) {
        self.body_started();
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Leaves the bar at its final state on success, or where it stopped on failure.
    pub fn done(self, success: bool) {
        #[cfg(unix)]
        interrupted::hide();
        if let Some(bar) = self.bar {
            if success {
                bar.finish();
            } else {
                bar.abandon();
            }
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("the templates are valid").progress_chars("=> ")
}

/// SIGINT (Ctrl-C) or SIGTERM while a bar is drawn: the bar's line is ended before the process dies, so the
/// shell's prompt does not start in the middle of it. Installed with the first bar shown: a handler only
/// wakes a thread (nothing else is safe inside one), which ends the bar and then takes the signal's default
/// action itself. During an S3 upload the signal is the upload's to handle (`interrupt`), which ends the bar
/// as any failure does.
#[cfg(unix)]
mod interrupted {
    use std::ffi::c_int;
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, Once, PoisonError};

    use indicatif::ProgressBar;
    use signal_hook::consts::{SIGINT, SIGTERM};

    /// The bar being drawn, if any.
    static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

    /// Records `bar` as the one drawn, and watches for the signals from then on.
    pub fn show(bar: &ProgressBar) {
        static WATCH: Once = Once::new();
        WATCH.call_once(|| {
            // Best effort: without the watcher a signal simply ends the process mid-line, as before.
            let _ = watch();
        });
        *SHOWN.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar.clone());
    }

    /// The bar is done with: a signal from now on has nothing to end.
    pub fn hide() {
        SHOWN.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    fn watch() -> std::io::Result<()> {
        let (mut wake, wake_handler_end) = UnixStream::pair()?;
        let signal = Arc::new(AtomicUsize::new(0));
        for number in [SIGINT, SIGTERM].into_iter().filter(|&number| !super::super::signals::ignored(number)) {
            let value = usize::try_from(number).expect("signal numbers are positive");
            // In this order: the number is stored before the wake-up.
            signal_hook::flag::register_usize(number, signal.clone(), value)?;
            signal_hook::low_level::pipe::register(number, wake_handler_end.try_clone()?)?;
        }
        std::thread::Builder::new().name("progress-signals".into()).spawn(move || {
            let mut byte = [0u8; 1];
            loop {
                match wake.read(&mut byte) {
                    Ok(0) => return,
                    Ok(_) if upload_in_progress() => continue,
                    Ok(_) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                }
            }
            if let Some(bar) = SHOWN.lock().unwrap_or_else(PoisonError::into_inner).take() {
                // Stops its redraws; it leaves the cursor at the end of the bar's line, which the newline ends.
                bar.abandon();
                eprintln!();
            }
            let number = c_int::try_from(signal.load(Ordering::SeqCst)).unwrap_or(SIGINT);
            let _ = signal_hook::low_level::emulate_default_handler(number);
            // Not reached unless the default action could not be taken: the status a shell shows for it.
            std::process::exit(128 + number);
        })?;
        Ok(())
    }

    fn upload_in_progress() -> bool {
        #[cfg(feature = "s3")]
        return super::super::interrupt::upload_in_progress();
        #[cfg(not(feature = "s3"))]
        false
    }
}
