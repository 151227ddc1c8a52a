//! The file part of scripts/range-bench.sh: decrypts `LENGTH` plaintext bytes at `START` of the message in
//! `MESSAGE` (raw AES key file `KEY`, namespace `bench`, name `key`) with `decrypt_range` over a counting
//! source, `RUNS` times, and prints what it read and how long it took:
//!
//! ```text
//! bytes_read=N header_len=H frames_bytes=F final_bytes=L seconds=S
//! ```
//!
//! where `frames_bytes` is the wire size of the frames covering the range and `final_bytes` that of the
//! final frame; `seconds` is the median wall time of one call (header, keyring, final frame, frames).

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use kms_envelope::{DecryptOptions, MessageLayout, RangeSource, RawAesKeyring, decrypt_range};

/// A file that counts the bytes read from it.
struct Counting {
    file: File,
    read: AtomicU64,
}

impl RangeSource for Counting {
    fn total_len(&self) -> std::io::Result<u64> {
        RangeSource::total_len(&self.file)
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
        RangeSource::read_exact_at(&self.file, offset, buf)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [message, key, start, length, runs] = &args[..] else {
        return Err("usage: range_bench MESSAGE KEY START LENGTH RUNS".into());
    };
    let (start, length, runs): (u64, u64, usize) = (start.parse()?, length.parse()?, runs.parse()?);
    let keyring = RawAesKeyring::new("bench", "key", &std::fs::read(key)?)?;
    let options = DecryptOptions::new();
    let mut times = Vec::new();
    let mut read = 0;
    let mut layout = None;
    for _ in 0..runs.max(1) {
        let source = Counting { file: File::open(message)?, read: AtomicU64::new(0) };
        let t0 = Instant::now();
        let got = decrypt_range(&keyring, &options, &source, start..start + length)?;
        times.push(t0.elapsed().as_secs_f64());
        assert_eq!(got.plaintext.len() as u64, length);
        read = source.read.load(Ordering::Relaxed);
        layout = Some(MessageLayout::new(&got.header, source.file.metadata()?.len())?);
    }
    let layout = layout.expect("at least one run");
    let frame = u64::from(layout.frame_length());
    let regular = layout.frame_count() - 1;
    let first = start / frame;
    let last = ((start + length).min(regular * frame).saturating_sub(1)) / frame;
    let frames = if start < regular * frame { last - first + 1 } else { 0 };
    let final_bytes = 4 + 4 + 12 + 4 + u64::from(layout.final_frame_length()) + 16;
    times.sort_by(f64::total_cmp);
    println!(
        "bytes_read={read} header_len={} frames_bytes={} final_bytes={final_bytes} seconds={:.6}",
        layout.header_len(),
        frames * (frame + 32),
        times[times.len() / 2]
    );
    Ok(())
}
