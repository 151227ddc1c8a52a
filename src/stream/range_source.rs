//! Ciphertext that can be read at any offset: the boundary between the range reader (which decides which
//! bytes of a message it needs) and where the message lives (a file, a byte slice, an S3 object).
//!
//! The range reader asks for exactly the runs it needs, each once: the header (a first guess, grown if the
//! header is longer), the final frame, then the frames covering the requested range as one contiguous run
//! (or a few large runs, read concurrently). A remote source turns each call into one ranged request, so
//! the number of calls is the number of requests. Every byte a source returns is untrusted: the reader
//! authenticates it before releasing any plaintext.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Mutex;

/// Ciphertext readable at any offset, from several threads at once (`&self`).
///
/// Invariant the range reader relies on: the source does not change while it is read. A source that can
/// change underneath (a file another process rewrites, an S3 object overwritten) must either pin its
/// version (S3: `If-Match` with the ETag seen first) or accept that the reader reports a frame that fails
/// its tag, which it does: bytes of two messages never verify as one.
pub trait RangeSource: Send + Sync {
    /// The total length of the message in bytes.
    ///
    /// # Errors
    ///
    /// The source cannot tell (an I/O error, a failed request).
    fn total_len(&self) -> io::Result<u64>;

    /// Fills `buf` with the bytes at `offset..offset + buf.len()`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::UnexpectedEof`] if the source ends before `buf` is full; any other I/O error.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl RangeSource for [u8] {
    fn total_len(&self) -> io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start.checked_add(buf.len()).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(self.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?);
        Ok(())
    }
}

impl RangeSource for Vec<u8> {
    fn total_len(&self) -> io::Result<u64> {
        RangeSource::total_len(self.as_slice())
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_exact_at(offset, buf)
    }
}

/// A file read with positioned reads (`pread`), concurrently and without moving its cursor.
impl RangeSource for File {
    fn total_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    #[cfg(unix)]
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }

    #[cfg(not(unix))]
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut file = self;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

/// Any `Read + Seek` as a [`RangeSource`]: each read seeks, under a lock (so concurrent reads take turns).
#[derive(Debug)]
pub struct SeekSource<R>(Mutex<R>);

impl<R: Read + Seek + Send> SeekSource<R> {
    /// Wraps `inner`; its cursor position is irrelevant and is left wherever the last read ended.
    pub fn new(inner: R) -> Self {
        Self(Mutex::new(inner))
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.0.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<R: Read + Seek + Send> RangeSource for SeekSource<R> {
    fn total_len(&self) -> io::Result<u64> {
        let mut inner = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.seek(SeekFrom::End(0))
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut inner = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.seek(SeekFrom::Start(offset))?;
        inner.read_exact(buf)
    }
}

/// The asynchronous counterpart of [`RangeSource`] (feature `async`): an S3 object read with ranged
/// `GetObject`s, a Tokio file.
///
/// Same invariant as [`RangeSource`]: the source does not change while it is read, or says so by an error.
#[cfg(feature = "async")]
pub trait AsyncRangeSource: Send + Sync {
    /// The total length of the message in bytes.
    ///
    /// # Errors
    ///
    /// The source cannot tell (an I/O error, a failed request).
    fn total_len(&self) -> impl std::future::Future<Output = io::Result<u64>> + Send;

    /// The `length` bytes at `offset`, as one request for a remote source.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::UnexpectedEof`] if the source ends first (a source must not return fewer bytes);
    /// any other I/O error.
    fn read_at(&self, offset: u64, length: usize) -> impl std::future::Future<Output = io::Result<Vec<u8>>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_read_exactly_or_report_eof() {
        let data: Vec<u8> = (0..=255).collect();
        let mut buf = [0u8; 4];
        data.read_exact_at(252, &mut buf).unwrap();
        assert_eq!(buf, [252, 253, 254, 255]);
        assert_eq!(data.read_exact_at(253, &mut buf).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(data.read_exact_at(u64::MAX, &mut buf).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(RangeSource::total_len(&data).unwrap(), 256);
    }

    #[test]
    fn seek_sources_read_at_any_offset_in_any_order() {
        let data: Vec<u8> = (0..=255).collect();
        let source = SeekSource::new(io::Cursor::new(data));
        let mut buf = [0u8; 3];
        source.read_exact_at(10, &mut buf).unwrap();
        assert_eq!(buf, [10, 11, 12]);
        source.read_exact_at(1, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3]);
        assert_eq!(source.total_len().unwrap(), 256);
        assert_eq!(source.read_exact_at(254, &mut buf).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
