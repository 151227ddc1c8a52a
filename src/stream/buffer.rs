//! Growing a buffer of secrets without leaving copies behind.
//!
//! `Vec` grows by `realloc`, which frees the old block as it was: the plaintext or stale plaintext in it
//! stays in freed memory, where `Zeroizing`'s wipe on drop never reaches. Every plaintext or key buffer that
//! can grow goes through these functions, which allocate the new block, copy, and wipe the old block
//! (its whole capacity) before freeing it.

use std::io::{self, Read, Write};

use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

/// The most a read into a buffer claims (and zero-fills) ahead of the data, so that a length promised
/// by a message costs memory only as the bytes arrive.
const READ_CHUNK: usize = 64 << 10;

/// Makes room for at least `additional` more bytes, in a new block of exactly the size asked for if one is
/// needed (the old block is wiped before it is freed): for buffers sized once.
pub(crate) fn reserve_exact(buf: &mut Zeroizing<Vec<u8>>, additional: usize) {
    try_reserve_exact(buf, additional).unwrap_or_else(|e| abort_for(e));
}

/// As [`reserve_exact`], failing with [`Error::OutOfMemory`] rather than aborting the process: for sizes
/// a message chose.
pub(crate) fn try_reserve_exact(buf: &mut Zeroizing<Vec<u8>>, additional: usize) -> Result<()> {
    grow(buf, additional, 0)
}

/// Makes room for at least `additional` more bytes. A new block, when needed, is twice the old capacity
/// (amortized growth) but never more than `cap` bytes unless the bytes asked for need it, and the old
/// block is wiped before it is freed; fails with [`Error::OutOfMemory`] rather than aborting. For a
/// buffer whose final size (`cap`) is known but which grows only as data arrives.
pub(crate) fn try_reserve_within(buf: &mut Zeroizing<Vec<u8>>, additional: usize, cap: usize) -> Result<()> {
    grow(buf, additional, cap)
}

/// Grows to the length needed, or to twice the old capacity if that is larger and within `cap` (to `cap`
/// itself if that is less than half as much again).
fn grow(buf: &mut Zeroizing<Vec<u8>>, additional: usize, cap: usize) -> Result<()> {
    if buf.capacity() - buf.len() >= additional {
        return Ok(());
    }
    let needed = buf.len().checked_add(additional).ok_or(Error::OutOfMemory { bytes: u64::MAX })?;
    let mut capacity = needed.max(buf.capacity().saturating_mul(2).min(cap));
    if cap > capacity && cap - capacity < capacity / 2 {
        // Straight to the final size rather than a last growth by a few bytes, which would copy (and so
        // hold twice) the whole buffer.
        capacity = cap;
    }
    let mut grown = Vec::new();
    grown.try_reserve_exact(capacity).map_err(|_| Error::OutOfMemory { bytes: capacity as u64 })?;
    grown.extend_from_slice(buf);
    // `Vec::zeroize` wipes the spare capacity too: stale plaintext of an earlier use lives there.
    let mut old = std::mem::replace(&mut **buf, grown);
    old.zeroize();
    Ok(())
}

/// What an infallible allocation does when it fails.
fn abort_for(e: Error) -> ! {
    let bytes = match e {
        Error::OutOfMemory { bytes } => usize::try_from(bytes).unwrap_or(usize::MAX),
        _ => usize::MAX,
    };
    std::alloc::handle_alloc_error(std::alloc::Layout::array::<u8>(bytes).unwrap_or(std::alloc::Layout::new::<u8>()))
}

/// Appends `bytes`, growing as [`try_reserve_within`] does.
pub(crate) fn try_extend_within(buf: &mut Zeroizing<Vec<u8>>, bytes: &[u8], cap: usize) -> Result<()> {
    try_reserve_within(buf, bytes.len(), cap)?;
    buf.extend_from_slice(bytes);
    Ok(())
}

/// Appends up to `limit` bytes read from `input` (until it ends, retrying on `Interrupted`), growing as
/// [`try_reserve_within`] does (within `cap`, or the end of these `limit` bytes if that is further) and
/// only as the data arrives. Returns how many bytes were appended; on an error, the bytes read before it
/// are kept. A failed allocation is an error whose inner error is [`Error::OutOfMemory`].
pub(crate) fn read_append(
    buf: &mut Zeroizing<Vec<u8>>,
    mut input: impl Read,
    limit: usize,
    cap: usize,
) -> io::Result<usize> {
    let start = buf.len();
    let cap = cap.max(start.saturating_add(limit));
    let mut filled = start;
    let mut remaining = limit;
    let result = loop {
        if filled == buf.len() {
            if remaining == 0 {
                break Ok(());
            }
            let chunk = remaining.min(READ_CHUNK);
            if let Err(e) = try_reserve_within(buf, chunk, cap) {
                break Err(e.into());
            }
            buf.resize(filled + chunk, 0);
        }
        match input.read(&mut buf[filled..]) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                filled += n;
                remaining -= n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    buf.truncate(filled);
    result.map(|()| filled - start)
}

/// A buffered writer for plaintext: `std::io::BufWriter` frees its buffer as it is, with the last
/// plaintext it gathered still in it; this one wipes it. Writes at least as long as the buffer go
/// straight through, as with `BufWriter`.
///
/// Unlike `BufWriter`, dropping it does not flush: call [`flush`](Write::flush). What is still buffered
/// at drop (after an error, say) is wiped, never written.
pub struct WipingBufWriter<W: Write> {
    inner: W,
    buf: Zeroizing<Vec<u8>>,
}

impl<W: Write> WipingBufWriter<W> {
    /// A writer into `inner` that gathers writes shorter than `capacity` bytes.
    pub fn with_capacity(capacity: usize, inner: W) -> Self {
        Self { inner, buf: Zeroizing::new(Vec::with_capacity(capacity)) }
    }

    fn write_buffered(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf)?;
            // The bytes stay in the spare capacity until overwritten; the whole block is wiped on drop.
            self.buf.clear();
        }
        Ok(())
    }
}

impl<W: Write> Write for WipingBufWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // Never past the capacity: the buffer must not grow (and so be moved by `realloc`).
        if self.buf.len() + data.len() > self.buf.capacity() {
            self.write_buffered()?;
        }
        if data.len() >= self.buf.capacity() {
            self.inner.write(data)
        } else {
            self.buf.extend_from_slice(data);
            Ok(data.len())
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_buffered()?;
        self.inner.flush()
    }
}

impl<W: Write> std::fmt::Debug for WipingBufWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WipingBufWriter").field("buffered", &self.buf.len()).finish_non_exhaustive()
    }
}

/// A buffered reader for plaintext: `std::io::BufReader` frees its buffer as it is, with the last
/// plaintext it read still in it; this one wipes it. Reads at least as long as the buffer, when nothing
/// is buffered, go straight to the inner reader, as with `BufReader`.
pub struct WipingBufReader<R: Read> {
    inner: R,
    buf: Zeroizing<Vec<u8>>,
    pos: usize,
    filled: usize,
}

impl<R: Read> WipingBufReader<R> {
    /// A reader from `inner` that reads ahead `capacity` bytes at a time for shorter reads.
    pub fn with_capacity(capacity: usize, inner: R) -> Self {
        Self { inner, buf: Zeroizing::new(vec![0; capacity]), pos: 0, filled: 0 }
    }
}

impl<R: Read> Read for WipingBufReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.filled {
            if out.len() >= self.buf.len() {
                return self.inner.read(out);
            }
            self.filled = self.inner.read(&mut self.buf)?;
            self.pos = 0;
        }
        let n = out.len().min(self.filled - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl<R: Read> std::fmt::Debug for WipingBufReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WipingBufReader").field("buffered", &(self.filled - self.pos)).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_keeps_the_contents_and_reads_stop_at_the_limit() {
        let mut buf = Zeroizing::new(b"abc".to_vec());
        try_extend_within(&mut buf, &[7; 100], usize::MAX).unwrap();
        assert_eq!(buf.len(), 103);
        assert_eq!(&buf[..3], b"abc");
        reserve_exact(&mut buf, 1000);
        assert!(buf.capacity() >= 1103);
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let before = buf.len();
        assert_eq!(read_append(&mut buf, &data[..], 150_000, 0).unwrap(), 150_000);
        assert_eq!(&buf[before..], &data[..150_000]);
        assert_eq!(buf.capacity(), before + 150_000, "growth stops at the end of the bytes asked for");
        assert_eq!(read_append(&mut buf, &data[..10], usize::MAX, 0).unwrap(), 10);
        assert_eq!(buf.len(), before + 150_010);
    }

    #[test]
    fn the_wiping_writer_gathers_small_writes_and_passes_large_ones() {
        let mut out = Vec::new();
        let mut writer = WipingBufWriter::with_capacity(8, &mut out);
        writer.write_all(b"abc").unwrap();
        writer.write_all(b"defgh").unwrap();
        writer.write_all(b"0123456789").unwrap();
        writer.write_all(b"z").unwrap();
        writer.flush().unwrap();
        drop(writer);
        assert_eq!(out, b"abcdefgh0123456789z");
    }

    #[test]
    fn the_wiping_reader_returns_every_byte_in_order() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut reader = WipingBufReader::with_capacity(100, &data[..]);
        let mut out = Vec::new();
        let mut piece = [0u8; 150];
        for size in [1usize, 3, 99, 100, 150, 7].into_iter().cycle() {
            let n = reader.read(&mut piece[..size]).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&piece[..n]);
        }
        assert_eq!(out, data);
    }
}
