//! Files without a central copy loop: encrypting a regular file into a [`PendingFile`], and decrypting a
//! message held in a regular file into one, with workers that read their frames and write their results at
//! known offsets (`pread`/`pwrite`).
//!
//! In an unsigned framed message every frame's place in the input and in the output is known once the
//! header is written or read (as for the one-shot functions over byte slices), so no thread has to put
//! results back in order and no byte passes through a shared buffer. Signed messages (whose footer hashes the body in
//! order), non-framed ones and anything this path does not accept go through the streaming encryptor and
//! decryptor instead, into the same pending file; on decrypt that also reports precisely whatever this path
//! found wrong. Either way the output becomes a file only by [`PendingFile::commit`], which the caller runs
//! after these functions returned `Ok`: until then it has no name (or a temp name), so nothing of a message
//! that fails to verify is ever at the destination.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use zeroize::Zeroizing;

use super::buffer::{self, WipingBufReader, WipingBufWriter};
use super::cmm::{OpenedHeader, PreparedEncryption, open_header, prepare_encrypt};
use super::file::{PendingFile, Writeback};
use super::options::Parallelism;
use super::pipeline::Plan;
use super::whole::{
    FINAL_PREFIX, Layout, REGULAR_PREFIX, open_final_in_place, open_regular_in_place, seal_final_in_place,
    seal_regular_in_place, threads_for,
};
use super::{DecryptOptions, Decryptor, EncryptOptions, Encryptor};
use crate::crypto::AeadKey;
use crate::error::{Error, Result};
use crate::format::header::{ContentType, Header, HeaderDecoder, MessageId, TAG_LEN};
use crate::format::limits::DecryptLimits;
use crate::keyring::{Keyring, block_on};

/// Which side of a file-to-file operation failed.
#[derive(Debug)]
pub enum FileError {
    /// Reading the input failed, or (decrypting) the message in it is not valid.
    Input(Error),
    /// Writing the output failed, or (encrypting) the keyring or the options did.
    Output(Error),
}

impl FileError {
    /// The error, whichever side it is on.
    pub fn into_inner(self) -> Error {
        match self {
            Self::Input(e) | Self::Output(e) => e,
        }
    }
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Input(e) | Self::Output(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for FileError {}

/// Told how many input bytes are done, from any worker thread (a progress bar).
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Encrypts the regular file `input` (from its start to the length it has now) into `output`, which the
/// caller then commits.
///
/// # Errors
///
/// [`FileError::Input`] when reading `input` fails or it changes length while it is read;
/// [`FileError::Output`] when the keyring cannot produce a data key, the options cannot make a message
/// (as [`Encryptor::new`] says), or writing `output` fails.
pub fn encrypt_file(
    keyring: &dyn Keyring,
    options: &EncryptOptions,
    input: &File,
    output: &mut PendingFile,
    progress: Progress<'_>,
) -> std::result::Result<(), FileError> {
    encrypt_into(keyring, options, input, Target::Pending(output), progress).map(drop)
}

/// Encrypts the regular file `input` into the regular file `output` from byte `offset` on, and returns the
/// message's length. For a file that is not this crate's to create, such as standard output redirected to
/// a file (`> file`): the writes are positioned (`pwrite`, from several threads), so `output`'s own position
/// does not move; the caller moves it past the message if later writes must follow it.
///
/// On an error, `output` is cut back to the length it had when the call began: a failed call into a fresh
/// or growing file (one that ended at `offset` or before) leaves it as it was; bytes it held past `offset`
/// may have been written over.
///
/// # Errors
///
/// [`FileError::Output`], writing nothing, if `output` was opened for appending (`>>`), where Linux puts
/// every positioned write at the end, if `offset` is past `i64::MAX`, the largest file position, or if
/// `output` is `input` (the same file through any handle or link); otherwise as [`encrypt_file`].
pub fn encrypt_file_at(
    keyring: &dyn Keyring,
    options: &EncryptOptions,
    input: &File,
    output: &File,
    offset: u64,
    progress: Progress<'_>,
) -> std::result::Result<u64, FileError> {
    refuse_unusable_output(input, output, offset)?;
    cut_back_on_error(output, || encrypt_into(keyring, options, input, Target::At(output, offset), progress))
}

/// Where a file-to-file operation writes: a pending file (from its start, synced as it says), or a file
/// the caller opened, from an offset on.
enum Target<'a> {
    Pending(&'a mut PendingFile),
    At(&'a File, u64),
}

impl Target<'_> {
    /// The positioned view of the target.
    fn sink(&self) -> Sink<'_> {
        match self {
            Self::Pending(pending) => Sink::pending(pending),
            Self::At(file, base) => Sink { file, base: *base, writeback: None },
        }
    }

    /// A writer from the target's start, for the streaming encryptor and decryptor.
    fn writer(&mut self) -> Box<dyn Write + '_> {
        match self {
            Self::Pending(pending) => Box::new(&mut **pending),
            Self::At(file, base) => Box::new(WriteAt { file, offset: *base }),
        }
    }
}

/// Positioned writes into a file: the file, where the message starts in it, and the background sync to
/// tell of each write, if any.
#[derive(Clone, Copy)]
pub(super) struct Sink<'a> {
    file: &'a File,
    base: u64,
    writeback: Option<&'a Writeback>,
}

impl<'a> Sink<'a> {
    /// The positioned view of a pending file, from its start.
    pub(super) fn pending(pending: &'a PendingFile) -> Self {
        let (file, writeback) = pending.positioned();
        Sink { file, base: 0, writeback }
    }

    /// Writes `buf` at `at` bytes into the message.
    pub(super) fn write(&self, buf: &[u8], at: u64) -> io::Result<()> {
        // Wrapped, a worker's frame would land near the file's start, over what the caller kept there.
        let offset = self.base.checked_add(at).ok_or_else(beyond_any_file)?;
        write_all_at(self.file, buf, offset)?;
        landed(self.writeback, buf.len());
        Ok(())
    }

    /// Writes plaintext `buf` at `at` bytes into the message, in writes of at most [`PLAINTEXT_WRITE`].
    fn write_plaintext(&self, buf: &[u8], at: u64) -> io::Result<()> {
        for (i, piece) in buf.chunks(PLAINTEXT_WRITE).enumerate() {
            self.write(piece, at + (i * PLAINTEXT_WRITE) as u64)?;
        }
        Ok(())
    }
}

/// Sequential writes into a file from an offset on, with positioned writes (the file's position stays).
struct WriteAt<'a> {
    file: &'a File,
    offset: u64,
}

impl Write for WriteAt<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_all_at(self.file, buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Refuses, before anything is written, an `output` open for appending, an `offset` past any file
/// position, and `output` being `input` (workers would write over input others have not read yet).
fn refuse_unusable_output(input: &File, output: &File, offset: u64) -> std::result::Result<(), FileError> {
    if appends(output).map_err(output_error)? {
        return Err(output_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the output is open for appending, where positioned writes all land at its end",
        )));
    }
    if i64::try_from(offset).is_err() {
        return Err(output_error(beyond_any_file()));
    }
    if same_file(input, output).map_err(output_error)? {
        return Err(output_error(io::Error::new(io::ErrorKind::InvalidInput, "the output is the input file")));
    }
    Ok(())
}

/// Runs `run`, which writes into `output` from an offset on; on an error, cuts `output` back to the length it
/// had (exactly as it was if the writes began at its end or past it; otherwise nothing written stays past
/// its old end).
fn cut_back_on_error<T>(
    output: &File,
    run: impl FnOnce() -> std::result::Result<T, FileError>,
) -> std::result::Result<T, FileError> {
    let len_before = output.metadata().map_err(output_error)?.len();
    let result = run();
    if result.is_err() {
        // Best effort: the error being reported matters more than one about the cleanup.
        let _ = output.set_len(len_before);
    }
    result
}

/// An offset past the largest one a file position can take (`off_t`).
fn beyond_any_file() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "the output offset is past the largest a file can have")
}

/// Whether `a` and `b` are the same file (device and inode).
#[cfg(unix)]
fn same_file(a: &File, b: &File) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (a.metadata()?, b.metadata()?);
    Ok((a.dev(), a.ino()) == (b.dev(), b.ino()))
}

#[cfg(not(unix))]
fn same_file(_a: &File, _b: &File) -> io::Result<bool> {
    Ok(false)
}

/// Whether `file` was opened with `O_APPEND`.
#[cfg(unix)]
fn appends(file: &File) -> io::Result<bool> {
    Ok(rustix::fs::fcntl_getfl(file).map_err(io::Error::from)?.contains(rustix::fs::OFlags::APPEND))
}

#[cfg(not(unix))]
fn appends(_file: &File) -> io::Result<bool> {
    Ok(false)
}

/// [`encrypt_file`] into `target`; returns the message's length.
fn encrypt_into(
    keyring: &dyn Keyring,
    options: &EncryptOptions,
    input: &File,
    mut target: Target<'_>,
    progress: Progress<'_>,
) -> std::result::Result<u64, FileError> {
    let input_len = input.metadata().map_err(|e| FileError::Input(Error::Io(e)))?.len();
    // A declared maximum (a caching keyring counts bytes per data key by it) must hold for the whole file.
    let declared = options.max_plaintext_length;
    if let Some(max) = declared.filter(|&max| input_len > max) {
        return Err(FileError::Input(Error::LimitExceeded { limit: "plaintext length", value: input_len, max }));
    }
    let prepared = block_on(prepare_encrypt(keyring, options, declared)).map_err(FileError::Output)?;
    let layout = usize::try_from(input_len)
        .ok()
        .filter(|_| prepared.signer.is_none() && cfg!(unix))
        .and_then(|len| Layout::for_plaintext(prepared.frame_length as usize, len));
    let written = match layout {
        Some(layout) => {
            let len = (prepared.header.len() + layout.body_len()) as u64;
            let work = Work { parallelism: options.parallelism, budget: DecryptLimits::DEFAULT.max_frame_buffers };
            seal_file(&prepared, layout, work, input, target.sink(), progress)?;
            len
        }
        None => return stream_encrypt(prepared, options, input, &mut target.writer(), progress),
    };
    // Bytes past the length read would be silently left out of the message.
    let mut probe = [0u8; 1];
    if read_at(input, &mut probe, input_len).map_err(|e| FileError::Input(Error::Io(e)))? != 0 {
        return Err(FileError::Input(Error::Io(changed_while_read())));
    }
    Ok(written)
}

fn changed_while_read() -> io::Error {
    io::Error::other("the input file changed length while it was being encrypted")
}

/// Encrypts `input` into `output` with the streaming encryptor; returns the message's length.
fn stream_encrypt(
    prepared: PreparedEncryption,
    options: &EncryptOptions,
    input: &File,
    output: &mut dyn Write,
    progress: Progress<'_>,
) -> std::result::Result<u64, FileError> {
    let read_failed = AtomicBool::new(false);
    let reader = At { file: input, offset: 0, progress, failed: &read_failed };
    let mut out = Counted { inner: WipingBufWriter::with_capacity(64 << 10, output), count: 0 };
    let mut encryptor = Encryptor::with_prepared(prepared, options, &mut out).map_err(FileError::Output)?;
    encryptor.copy_from(WipingBufReader::with_capacity(16 << 10, reader)).map_err(|e| {
        if read_failed.load(Ordering::Relaxed) { FileError::Input(Error::Io(e)) } else { output_error(e) }
    })?;
    encryptor.finish().map_err(FileError::Output)?;
    out.flush().map_err(output_error)?;
    Ok(out.count)
}

/// A writer that counts the bytes it took.
struct Counted<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn output_error(e: io::Error) -> FileError {
    FileError::Output(Error::from_io(e))
}

/// A message in a regular file whose header authenticated, ready to be decrypted into a [`PendingFile`].
pub struct FileDecryptor {
    input: File,
    header: Header,
    opened: OpenedHeader,
    options: DecryptOptions,
}

impl std::fmt::Debug for FileDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDecryptor")
            .field("suite", &self.header.suite())
            .field("message_id", self.header.message_id())
            .finish_non_exhaustive()
    }
}

impl FileDecryptor {
    /// Reads the header at the start of `input` and authenticates it with `keyring`.
    ///
    /// # Errors
    ///
    /// As [`Decryptor::new`]: a malformed, truncated or oversized header, a suite the options refuse, a
    /// context that does not match, no keyring able to unwrap a data key, a header that fails to
    /// authenticate, or [`Error::Io`] reading `input`.
    pub fn new(keyring: &dyn Keyring, options: &DecryptOptions, input: File) -> Result<Self> {
        let unread = AtomicBool::new(false);
        let at = At { file: &input, offset: 0, progress: &|_| {}, failed: &unread };
        let header = HeaderDecoder::read_from(options.limits, &mut io::BufReader::with_capacity(16 << 10, at))?;
        let opened = block_on(open_header(keyring, options, &header))?;
        Ok(Self { input, header, opened, options: options.clone() })
    }

    /// The authenticated header: suite, message id, stored encryption context, EDK providers.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Decrypts the body into `output` and returns the header once every frame (and any signature)
    /// verified. The caller commits `output` only after `Ok`; on an error what `output` holds must be
    /// dropped with it (as `PendingFile` does).
    ///
    /// # Errors
    ///
    /// [`FileError::Input`] when reading the message fails or its body does not verify (a frame or the
    /// signature, [`Error::FrameAuthentication`], [`Error::SignatureVerification`]; a malformed or
    /// truncated body; trailing data); [`FileError::Output`] when writing `output` fails.
    pub fn decrypt_into(
        self,
        output: &mut PendingFile,
        progress: Progress<'_>,
    ) -> std::result::Result<Header, FileError> {
        self.decrypt_to(Target::Pending(output), progress).map(|(header, _)| header)
    }

    /// Decrypts the body into the regular file `output` from byte `offset` on, and returns the header and
    /// the plaintext's length once every frame (and any signature) verified. For a file that is not this
    /// crate's to create, such as standard output redirected to a file: the writes are positioned
    /// (`pwrite`, from several threads, each frame once it verified), so `output`'s own position does not
    /// move.
    ///
    /// On an error, `output` is cut back to the length it had when the call began, so no plaintext of a
    /// message that failed stays in a fresh file or past the old end of one; bytes it held past `offset` may
    /// hold verified frames written over them: discard them.
    ///
    /// # Errors
    ///
    /// [`FileError::Output`], writing nothing, if `output` was opened for appending (`>>`), where Linux puts
    /// every positioned write at the end, if `offset` is past `i64::MAX`, the largest file position, or if
    /// `output` is the message's file (through any handle or link); otherwise as
    /// [`decrypt_into`](Self::decrypt_into).
    pub fn decrypt_into_at(
        self,
        output: &File,
        offset: u64,
        progress: Progress<'_>,
    ) -> std::result::Result<(Header, u64), FileError> {
        refuse_unusable_output(&self.input, output, offset)?;
        cut_back_on_error(output, || self.decrypt_to(Target::At(output, offset), progress))
    }

    /// [`Self::decrypt_into`] into `target`; also returns the plaintext's length.
    fn decrypt_to(
        self,
        mut target: Target<'_>,
        progress: Progress<'_>,
    ) -> std::result::Result<(Header, u64), FileError> {
        let Self { input, header, opened, options } = self;
        let body_start = header.as_bytes().len() as u64;
        if opened.verifier.is_none() && header.content_type() == ContentType::Framed && cfg!(unix) {
            let input_len = input.metadata().map_err(|e| FileError::Input(Error::Io(e)))?.len();
            let (key, id, frame_len) = (&opened.keys.content, header.message_id(), header.frame_length());
            let body = Body { file: &input, start: body_start, len: input_len.saturating_sub(body_start) };
            let work = Work { parallelism: options.parallelism, budget: options.limits.max_frame_buffers };
            if let Some(len) = open_file(key, id, frame_len, work, body, target.sink(), progress)? {
                return Ok((header, len));
            }
            // Something about the body is wrong: the streaming decryptor finds and reports it, from scratch
            // (over what was written, from the start).
            if let Target::Pending(pending) = &mut target {
                pending.file().set_len(0).map_err(|e| FileError::Output(Error::Io(e)))?;
            }
        }
        let read_failed = AtomicBool::new(false);
        let reader = At { file: &input, offset: body_start, progress, failed: &read_failed };
        let mut decryptor =
            Decryptor::with_opened(header, opened, &options, WipingBufReader::with_capacity(16 << 10, reader));
        let write_failed = AtomicBool::new(false);
        let mut writer = target.writer();
        let mut out = Flagged {
            inner: Counted { inner: WipingBufWriter::with_capacity(64 << 10, &mut *writer), count: 0 },
            failed: &write_failed,
        };
        let blame = |e: io::Error| {
            if write_failed.load(Ordering::Relaxed) { output_error(e) } else { FileError::Input(Error::from_io(e)) }
        };
        decryptor.write_to(&mut out).map_err(blame)?;
        out.flush().map_err(output_error)?;
        Ok((decryptor.header().clone(), out.inner.count))
    }
}

/// The body of a message in a file: `len` bytes from offset `start`.
#[derive(Clone, Copy)]
struct Body<'a> {
    file: &'a File,
    start: u64,
    len: u64,
}

/// Reads a file from `offset` on with `pread` (so no other reader's position matters), reporting bytes read
/// to `progress` and failures to `failed`.
struct At<'a> {
    file: &'a File,
    offset: u64,
    progress: Progress<'a>,
    failed: &'a AtomicBool,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = read_at(self.file, buf, self.offset)
            .inspect_err(|e| self.failed.store(e.kind() != io::ErrorKind::Interrupted, Ordering::Relaxed))?;
        self.offset += n as u64;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// A writer that remembers whether it failed, so that an error out of the decryptor can be blamed on the
/// right side.
struct Flagged<'a, W> {
    inner: W,
    failed: &'a AtomicBool,
}

impl<W: Write> Write for Flagged<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|_| self.failed.store(true, Ordering::Relaxed))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed.store(true, Ordering::Relaxed))
    }
}

#[cfg(unix)]
pub(super) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(unix)]
pub(super) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Frames whose bodies one `preadv` fills at most: well under Linux's `IOV_MAX` (1024), and few enough
/// that the slice list costs nothing even for tiny frames.
const BODIES_PER_READ: usize = 256;

/// Fills the body (`body`, a range within each `stride`-byte frame) of every frame in `out` with the
/// consecutive bytes of `file` from `offset` on, by vectored reads: the plaintext lands where it is sealed,
/// with no copy between a read buffer and the frames.
#[cfg(unix)]
fn read_bodies_at(
    file: &File,
    out: &mut [u8],
    stride: usize,
    body: std::ops::Range<usize>,
    mut offset: u64,
) -> io::Result<()> {
    for frames in out.chunks_mut(stride * BODIES_PER_READ) {
        let mut slices: Vec<io::IoSliceMut<'_>> =
            frames.chunks_mut(stride).map(|frame| io::IoSliceMut::new(&mut frame[body.clone()])).collect();
        let mut unfilled = &mut slices[..];
        while !unfilled.is_empty() {
            match rustix::io::preadv(file, unfilled, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    offset += n as u64;
                    io::IoSliceMut::advance_slices(&mut unfilled, n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn read_bodies_at(
    file: &File,
    out: &mut [u8],
    stride: usize,
    body: std::ops::Range<usize>,
    mut offset: u64,
) -> io::Result<()> {
    for frame in out.chunks_mut(stride) {
        read_exact_at(file, &mut frame[body.clone()], offset)?;
        offset += body.len() as u64;
    }
    Ok(())
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

// Off Unix the positioned path is never taken (`cfg!(unix)` above); these only keep it compiling.
#[cfg(not(unix))]
pub(super) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::io::{Seek, SeekFrom};
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    file.read(buf)
}

#[cfg(not(unix))]
pub(super) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

#[cfg(not(unix))]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(buf)
}

/// The most one `pwrite` of plaintext carries. Plaintext lands at offsets aligned to the frame length, and
/// a large write at an aligned offset lets the page cache take large folios (one of 512 KiB per 512 KiB
/// job). Under a hypervisor that backs guest memory lazily (Firecracker, which Lambda runs on, and this
/// project's test machine) filling those cost about three times the CPU of 64 KiB writes: 1 GiB decrypted
/// on one core, median of 8, 2.1 s CPU and 3.0 s wall in 512 KiB writes, 0.74 s and 1.0 s in 64 KiB ones.
/// Encrypt's output offsets are not aligned (header and frame overhead), so it writes whole jobs.
const PLAINTEXT_WRITE: usize = 64 << 10;

/// One worker's buffer, reused from job to job and wiped on drop: its frames are sealed or opened in
/// place, so it holds plaintext.
#[derive(Default)]
pub(super) struct Scratch {
    buf: Zeroizing<Vec<u8>>,
}

impl Scratch {
    /// Makes room for `len` bytes at once, so that [`sized`](Self::sized) up to `len` never grows the buffer
    /// by a copy (which holds the old block and the new one together); an error if memory is short.
    pub(super) fn reserve(&mut self, len: usize) -> io::Result<()> {
        let missing = len.saturating_sub(self.buf.len());
        Ok(buffer::try_reserve_exact(&mut self.buf, missing)?)
    }

    /// The buffer, `len` bytes long; an error if memory is short.
    pub(super) fn sized(&mut self, len: usize) -> io::Result<&mut [u8]> {
        // Grown by a copy that wipes the old block: it may hold the plaintext of the last job.
        self.buf.truncate(len);
        let missing = len - self.buf.len();
        buffer::try_reserve_exact(&mut self.buf, missing)?;
        self.buf.resize(len, 0);
        Ok(&mut self.buf[..])
    }
}

/// How a file operation spreads over threads: as configured, with at most `budget` bytes of job buffers
/// (one per thread) at once.
#[derive(Clone, Copy)]
struct Work {
    parallelism: Parallelism,
    budget: usize,
}

impl Work {
    /// Frames per job and threads for `layout`: as many threads as configured (past the threshold) and as
    /// the budget holds jobs.
    fn plan(&self, layout: &Layout) -> (usize, usize) {
        let plan = Plan::new(&self.parallelism, layout.frame_len, layout.stride(), self.budget);
        (plan.frames_per_job, threads_for(&self.parallelism, layout.body_len()).min(plan.jobs))
    }
}

/// How a job went: done, or (decrypting) a frame did not verify.
pub(super) type Outcome = io::Result<bool>;

/// Runs jobs `0..jobs` on `threads` threads (the caller's among them), each thread with its own
/// [`Scratch`], handing jobs out one at a time. Stops handing them out at the first job that fails or
/// returns false; returns the first error, else whether every job returned true.
pub(super) fn run_jobs(threads: usize, jobs: usize, work: impl Fn(usize, &mut Scratch) -> Outcome + Sync) -> Outcome {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failure = Mutex::new(None::<io::Error>);
    let drain = || {
        let mut scratch = Scratch::default();
        while !stop.load(Ordering::Relaxed) {
            let job = next.fetch_add(1, Ordering::Relaxed);
            if job >= jobs {
                return;
            }
            match work(job, &mut scratch) {
                Ok(true) => {}
                Ok(false) => stop.store(true, Ordering::Relaxed),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    failure.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(e);
                }
            }
        }
    };
    super::whole::on_threads("kms-envelope-file", threads.min(jobs), drain);
    match failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
        Some(e) => Err(e),
        None => Ok(!stop.load(Ordering::Relaxed)),
    }
}

/// Where job `job` of `layout` lies: its first frame's index and how many frames it holds (the last job
/// is the final frame alone).
fn job_frames(layout: &Layout, per_job: usize, job: usize) -> (usize, usize) {
    let first = job * per_job;
    (first, per_job.min(layout.regular - first))
}

fn regular_jobs(layout: &Layout, per_job: usize) -> usize {
    layout.regular.div_ceil(per_job)
}

/// Writes the plaintext of the opened regular frames in `wire` (each body `frame_len` bytes at
/// `REGULAR_PREFIX` in its `stride`-byte frame) at `at` bytes into the output: each body on its own when
/// it fills a [`PLAINTEXT_WRITE`] or more, else gathered first at the buffer's start (a move within it),
/// so that short frames still go out in writes of that size.
fn write_bodies(output: Sink<'_>, wire: &mut [u8], stride: usize, frame_len: usize, at: u64) -> io::Result<()> {
    let frames = wire.len() / stride;
    if frame_len >= PLAINTEXT_WRITE {
        for (i, frame) in wire.chunks(stride).enumerate() {
            output.write_plaintext(&frame[REGULAR_PREFIX..REGULAR_PREFIX + frame_len], at + (i * frame_len) as u64)?;
        }
        return Ok(());
    }
    for i in 0..frames {
        wire.copy_within(i * stride + REGULAR_PREFIX..i * stride + REGULAR_PREFIX + frame_len, i * frame_len);
    }
    output.write_plaintext(&wire[..frames * frame_len], at)
}

/// A write of `n` bytes at a known offset landed: counts it for the background sync, if any.
fn landed(writeback: Option<&Writeback>, n: usize) {
    if let Some(writeback) = writeback {
        writeback.wrote(n);
    }
}

/// Writes the header and the sealed body of `layout` from `input` into `output`.
fn seal_file(
    prepared: &PreparedEncryption,
    layout: Layout,
    work: Work,
    input: &File,
    output: Sink<'_>,
    progress: Progress<'_>,
) -> std::result::Result<(), FileError> {
    let (key, id, header) = (&prepared.keys.content, &prepared.message_id, &prepared.header[..]);
    output.write(header, 0).map_err(output_error)?;
    let (per_job, threads) = work.plan(&layout);
    let regular_jobs = regular_jobs(&layout, per_job);
    let body_start = header.len() as u64;
    // Which side failed, for the caller's message: set by a failed read.
    let read_failed = AtomicBool::new(false);
    let reading = |e: io::Error| {
        read_failed.store(true, Ordering::Relaxed);
        // A file that shrank while read ends early.
        if e.kind() == io::ErrorKind::UnexpectedEof { changed_while_read() } else { e }
    };
    let seal_job = |job: usize, scratch: &mut Scratch| -> Outcome {
        let (plain_len, out_at, out) = if job == regular_jobs {
            let out = scratch.sized(FINAL_PREFIX + layout.last + TAG_LEN)?;
            let plain = &mut out[FINAL_PREFIX..FINAL_PREFIX + layout.last];
            read_exact_at(input, plain, (layout.regular * layout.frame_len) as u64).map_err(reading)?;
            seal_final_in_place(key, id, layout.final_sequence(), out);
            (layout.last, layout.regular * layout.stride(), out)
        } else {
            let (first, frames) = job_frames(&layout, per_job, job);
            let out = scratch.sized(frames * layout.stride())?;
            let bodies = REGULAR_PREFIX..REGULAR_PREFIX + layout.frame_len;
            read_bodies_at(input, out, layout.stride(), bodies, (first * layout.frame_len) as u64).map_err(reading)?;
            for (sequence, frame) in (first as u32 + 1..).zip(out.chunks_mut(layout.stride())) {
                seal_regular_in_place(key, id, sequence, frame);
            }
            (frames * layout.frame_len, first * layout.stride(), out)
        };
        output.write(out, body_start + out_at as u64)?;
        progress(plain_len as u64);
        Ok(true)
    };
    run_jobs(threads, regular_jobs + 1, seal_job)
        .map(drop)
        .map_err(|e| if read_failed.load(Ordering::Relaxed) { FileError::Input(Error::Io(e)) } else { output_error(e) })
}

/// Decrypts the framed body `body` into `output`; `Ok(Some(plaintext length))` once every frame verified,
/// `Ok(None)` if anything about the body is wrong or it does not have the only layout its length allows (the
/// streaming decryptor must then run and report what), an error if reading or writing failed.
fn open_file(
    key: &AeadKey,
    id: &MessageId,
    frame_len: u32,
    work: Work,
    body: Body<'_>,
    output: Sink<'_>,
    progress: Progress<'_>,
) -> std::result::Result<Option<u64>, FileError> {
    let input_error = |e: io::Error| FileError::Input(Error::from_io(e));
    let Some(layout) = usize::try_from(body.len).ok().and_then(|len| Layout::for_body(frame_len as usize, len)) else {
        return Ok(None);
    };
    let final_at = body.start + (layout.regular * layout.stride()) as u64;
    let mut prefix = [0u8; FINAL_PREFIX];
    read_exact_at(body.file, &mut prefix, final_at).map_err(input_error)?;
    if !layout.final_prefix_matches(&prefix) {
        return Ok(None);
    }
    let (per_job, threads) = work.plan(&layout);
    let regular_jobs = regular_jobs(&layout, per_job);
    let write_failed = AtomicBool::new(false);
    let open_job = |job: usize, scratch: &mut Scratch| -> Outcome {
        // Opened in place: one buffer per job, the plaintext left where the ciphertext was.
        // Only verified plaintext reaches the (unnamed or temp) output.
        let written = |_: &io::Error| write_failed.store(true, Ordering::Relaxed);
        let in_len = if job == regular_jobs {
            let rest = scratch.sized(layout.last + TAG_LEN)?;
            read_exact_at(body.file, rest, final_at + FINAL_PREFIX as u64)?;
            if !open_final_in_place(key, id, layout.final_sequence(), &prefix, rest) {
                return Ok(false);
            }
            let at = (layout.regular * layout.frame_len) as u64;
            output.write_plaintext(&rest[..layout.last], at).inspect_err(written)?;
            FINAL_PREFIX + rest.len()
        } else {
            let (first, frames) = job_frames(&layout, per_job, job);
            let wire = scratch.sized(frames * layout.stride())?;
            read_exact_at(body.file, wire, body.start + (first * layout.stride()) as u64)?;
            let verified = (first as u32 + 1..)
                .zip(wire.chunks_mut(layout.stride()))
                .all(|(sequence, frame)| open_regular_in_place(key, id, sequence, frame));
            if !verified {
                return Ok(false);
            }
            let at = (first * layout.frame_len) as u64;
            write_bodies(output, wire, layout.stride(), layout.frame_len, at).inspect_err(written)?;
            wire.len()
        };
        progress(in_len as u64);
        Ok(true)
    };
    let plaintext_len = layout.plaintext_len() as u64;
    let verified = run_jobs(threads, regular_jobs + 1, open_job).map_err(|e| {
        // A file that shrank while read ends early: the streaming decryptor cannot do better, so the error
        // stands as an input error.
        if write_failed.load(Ordering::Relaxed) { output_error(e) } else { input_error(e) }
    })?;
    Ok(verified.then_some(plaintext_len))
}

#[cfg(all(test, unix))]
mod tests {
    use std::fs;

    use super::*;
    use crate::keyring::RawAesKeyring;

    const FRAME: usize = 32;

    fn keyring() -> RawAesKeyring {
        RawAesKeyring::new("positioned", "key", &[0x5a; 32]).unwrap()
    }

    fn work(parallelism: Parallelism) -> Work {
        Work { parallelism, budget: DecryptLimits::DEFAULT.max_frame_buffers }
    }

    fn parallelism(threads: usize) -> Parallelism {
        Parallelism { threads, threshold: 0, job_length: 3 * FRAME }
    }

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn sealed_files_are_the_one_shot_messages_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let options = EncryptOptions::new().frame_length(FRAME as u32);
        // Jobs of 3 frames, and of more frames than one vectored read fills (the rest read by a second).
        let jobs = [(1, 3), (3, 3), (1, BODIES_PER_READ + 5), (2, BODIES_PER_READ + 5)];
        let lens = [0, 1, FRAME - 1, FRAME, FRAME + 1, 3 * FRAME, 7 * FRAME + 3, 9 * FRAME, 700 * FRAME + 1];
        for (threads, job_frames) in jobs {
            let sealing = Parallelism { job_length: job_frames * FRAME, ..parallelism(threads) };
            for len in lens {
                let pt = plaintext(len);
                fs::write(dir.path().join("pt"), &pt).unwrap();
                let prepared = block_on(prepare_encrypt(&keyring(), &options, None)).unwrap();
                let layout = Layout::for_plaintext(FRAME, len).unwrap();
                let destination = dir.path().join("ct");
                let pending = PendingFile::create(&destination, true).unwrap();
                let input = File::open(dir.path().join("pt")).unwrap();
                let (file, writeback) = pending.positioned();
                let sink = Sink { file, base: 0, writeback };
                seal_file(&prepared, layout, work(sealing), &input, sink, &|_| {}).unwrap();
                pending.commit(false, true).unwrap();

                let mut expected = Vec::new();
                let (key, id) = (&prepared.keys.content, &prepared.message_id);
                let one_shot = super::super::whole::encrypt(
                    key,
                    id,
                    &prepared.header,
                    FRAME as u32,
                    &parallelism(2),
                    &pt,
                    &mut expected,
                );
                assert!(one_shot);
                let what = format!("{len} bytes, {threads} threads, {job_frames} frames per job");
                assert!(fs::read(&destination).unwrap() == expected, "{what}");
            }
        }
    }

    /// `open_file` on `message` (in a file): its verdict and what it wrote.
    fn open(message: &[u8], threads: usize) -> (bool, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ct"), message).unwrap();
        let options = DecryptOptions::new();
        let decryptor = FileDecryptor::new(&keyring(), &options, File::open(dir.path().join("ct")).unwrap()).unwrap();
        let header = &decryptor.header;
        let start = header.as_bytes().len() as u64;
        let body = Body { file: &decryptor.input, start, len: message.len() as u64 - start };
        let (key, id) = (&decryptor.opened.keys.content, header.message_id());
        let pending = PendingFile::create(&dir.path().join("out"), false).unwrap();
        let (file, writeback) = pending.positioned();
        let sink = Sink { file, base: 0, writeback };
        let verified = open_file(key, id, header.frame_length(), work(parallelism(threads)), body, sink, &|_| {})
            .unwrap()
            .is_some();
        let mut written = Vec::new();
        pending.positioned().0.read_to_end(&mut written).unwrap();
        (verified, written)
    }

    #[test]
    fn bodies_open_at_known_offsets_only_when_every_frame_verifies() {
        let pt = plaintext(10 * FRAME + 5);
        let options = EncryptOptions::new().frame_length(FRAME as u32).threads(1);
        let message = crate::stream::encrypt(&keyring(), &options, &pt).unwrap();
        for threads in [1, 3] {
            assert_eq!(open(&message, threads), (true, pt.clone()), "{threads} threads");
            let mut tampered = message.clone();
            let middle = message.len() - 5 * (FRAME + 32);
            tampered[middle] ^= 1;
            assert!(!open(&tampered, threads).0, "{threads} threads");
            assert!(!open(&message[..message.len() - 1], threads).0, "{threads} threads");
            let mut longer = message.clone();
            longer.push(0);
            assert!(!open(&longer, threads).0, "{threads} threads");
        }
    }
}
