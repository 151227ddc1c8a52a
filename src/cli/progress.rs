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
