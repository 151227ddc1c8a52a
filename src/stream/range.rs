//! Random access: any byte range of a message's plaintext, reading only the header, the final frame and the
//! frames that cover the range.
//!
//! In a framed message every regular frame has the same length, so once the header is known the body's
//! length alone says how many regular frames there are and how long the final frame is (the only layout
//! the length allows; see `whole::Layout`), and frame `i` lies at a computed offset. Each frame's AAD binds
//! the message id, its sequence number, whether it is final and its length, so a frame read out of place,
//! from another message or past a cut fails its tag. The order of work:
//!
//! 1. the header, from a first guess of [`HEADER_GUESS`] bytes, grown while the decoder asks for more
//!    (bounded by [`DecryptLimits::max_header_len`](crate::DecryptLimits)); signed and non-framed
//!    messages are refused here, before the keyring runs;
//! 2. one keyring call authenticates the header (a wrong key or context stops here, before any body byte
//!    is read);
//! 3. the final frame, read and verified first: it fixes the plaintext length (a cut or extended message
//!    fails here);
//! 4. the regular frames covering the range, as one contiguous read (split into a few large reads run in
//!    parallel when the range is large), each frame verified before any of its bytes is released.
//!
//! Signed suites are refused: their signature covers the whole message, so a range of one can never be
//! verified. Non-framed (legacy single-block) bodies are refused too: they have no frames to skip to, and
//! [`decrypt`](crate::decrypt) handles them whole.

use std::io::{self, Read, Seek, SeekFrom};
use std::ops::{Bound, RangeBounds};

use zeroize::Zeroizing;

use super::cmm::open_header;
use super::options::Parallelism;
use super::range_source::{RangeSource, SeekSource};
use super::whole::{FINAL_PREFIX, Layout, REGULAR_OVERHEAD, open_final, open_regular};
use super::{DecryptOptions, Decrypted};
use crate::crypto::AeadKey;
use crate::error::{Error, Result};
use crate::format::header::{ContentType, Header, HeaderDecoder, TAG_LEN};
use crate::format::limits::DecryptLimits;
use crate::keyring::{Keyring, block_on};

/// The first read for the header: enough for a header with a few KMS data keys and a modest context, so
/// that most headers cost one read (one request from S3).
pub const HEADER_GUESS: usize = 4096;

/// How many plaintext bytes a [`SeekableDecryptor`] decrypts at once, at least one frame.
const READ_AHEAD: usize = 1 << 20;

/// A piece of a run gets its own read and thread only if it holds at least this many times the parallel
/// threshold (8 MiB by default): a smaller run is read as one request (one GET from S3, where a request
/// costs more than opening a few MiB on one core) and opened on one thread.
const PIECE_PER_THRESHOLD: usize = 8;

/// Where the parts of a framed message lie, computed from its header and its total length.
///
/// Built by [`MessageLayout::new`] from an unauthenticated header and a length, it describes the message
/// *if* the message is intact; the range reader only trusts it after the final frame verified (then a
/// longer or shorter message would have failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLayout {
    header_len: u64,
    frame_length: u32,
    regular_frames: u64,
    final_frame_length: u32,
}

impl MessageLayout {
    /// The layout of a framed message of `total_len` bytes with `header`: the only one its length allows.
    ///
    /// # Errors
    ///
    /// [`Error::RangeRefused`] for a signed or non-framed message (a signed message's footer varies in
    /// length); [`Error::Malformed`] if no framed body of the header's frame length is that long (the
    /// message is cut or has bytes appended).
    pub fn new(header: &Header, total_len: u64) -> Result<Self> {
        Ok(Self::from_layout(header, layout_for(header, total_len)?))
    }

    fn from_layout(header: &Header, layout: Layout) -> Self {
        Self {
            header_len: header.as_bytes().len() as u64,
            frame_length: header.frame_length(),
            regular_frames: layout.regular as u64,
            final_frame_length: layout.last as u32,
        }
    }

    /// The header's length in bytes: where the body starts.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// The frame length of the header: the plaintext length of every regular frame.
    pub fn frame_length(&self) -> u32 {
        self.frame_length
    }

    /// Frames in the body, the final frame included (so at least 1).
    pub fn frame_count(&self) -> u64 {
        self.regular_frames + 1
    }

    /// The plaintext length of the final frame (0 when the plaintext is an exact multiple of the frame
    /// length, as the ESDKs write it).
    pub fn final_frame_length(&self) -> u32 {
        self.final_frame_length
    }

    /// The plaintext length of the whole message.
    pub fn plaintext_len(&self) -> u64 {
        self.regular_frames * u64::from(self.frame_length) + u64::from(self.final_frame_length)
    }

    /// The message's total length in bytes.
    pub fn message_len(&self) -> u64 {
        let stride = u64::from(self.frame_length) + REGULAR_OVERHEAD as u64;
        self.header_len
            + self.regular_frames * stride
            + (FINAL_PREFIX + TAG_LEN) as u64
            + u64::from(self.final_frame_length)
    }
}

/// Refuses what the range reader cannot verify, before the keyring runs.
fn check_supported(header: &Header) -> Result<()> {
    let suite = header.suite();
    if suite.signature().is_some() {
        return Err(Error::RangeRefused(format!(
            "message uses signed suite 0x{:04X}, whose signature covers the whole message: decrypt it whole",
            suite.id()
        )));
    }
    if header.content_type() == ContentType::NonFramed {
        return Err(Error::RangeRefused("the message body is not framed: decrypt it whole".into()));
    }
    Ok(())
}

/// The body layout of a message of `total_len` bytes with `header`.
fn layout_for(header: &Header, total_len: u64) -> Result<Layout> {
    check_supported(header)?;
    let body_start = header.as_bytes().len() as u64;
    let body_len = total_len.saturating_sub(body_start);
    usize::try_from(body_len).ok().and_then(|len| Layout::for_body(header.frame_length() as usize, len)).ok_or_else(
        || {
            Error::malformed(
                body_start,
                format!(
                    "a body of {body_len} bytes cannot hold frames of {} bytes (cut, extended or damaged message)",
                    header.frame_length()
                ),
            )
        },
    )
}

/// The range `range` of a plaintext of `plaintext_len` bytes as `start..end`.
fn resolve(range: &impl RangeBounds<u64>, plaintext_len: u64) -> Result<(u64, u64)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => Some(s),
        Bound::Excluded(&s) => s.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => Some(plaintext_len),
    };
    match (start, end) {
        (Some(start), Some(end)) if start <= end && end <= plaintext_len => Ok((start, end)),
        _ => Err(Error::RangeOutOfBounds {
            start: start.unwrap_or(u64::MAX),
            end: end.unwrap_or(u64::MAX),
            plaintext_len,
        }),
    }
}

/// How far to grow the header buffer when the decoder needs bytes up to `needed`: at least double, so that
/// a large header costs few reads, never past the message or the header limit.
fn header_read_end(fetched: usize, needed: usize, total_len: u64, limits: &DecryptLimits) -> Result<usize> {
    let total = usize::try_from(total_len).unwrap_or(usize::MAX);
    if needed > total {
        return Err(Error::Truncated { offset: total_len, section: "header" });
    }
    Ok(needed.max(fetched.saturating_mul(2)).min(total).min(limits.max_header_len.max(needed)))
}

/// The first header read: [`HEADER_GUESS`] bytes, fewer for a short message (never into the smallest
/// possible final frame, which is read on its own).
fn first_header_read(total_len: u64) -> usize {
    let total = usize::try_from(total_len).unwrap_or(usize::MAX);
    HEADER_GUESS.min(total.saturating_sub(FINAL_PREFIX + TAG_LEN)).max(1).min(total)
}

/// Reads and decodes the header from `source`.
fn read_header<S: RangeSource + ?Sized>(source: &S, limits: DecryptLimits, total_len: u64) -> Result<Header> {
    let mut fetched = vec![0u8; first_header_read(total_len)];
    source.read_exact_at(0, &mut fetched).map_err(|e| read_error(e, 0, "header"))?;
    let mut decoder = HeaderDecoder::new(limits);
    loop {
        let offset = decoder.offset() as usize;
        let Some(buf) = decoder.next_buffer()? else { break };
        let needed = offset + buf.len();
        if needed > fetched.len() {
            let from = fetched.len();
            fetched.resize(header_read_end(from, needed, total_len, &limits)?, 0);
            source
                .read_exact_at(from as u64, &mut fetched[from..])
                .map_err(|e| read_error(e, from as u64, "header"))?;
        }
        buf.copy_from_slice(&fetched[offset..needed]);
        decoder.advance()?;
    }
    Ok(decoder.finish().expect("the loop ends only when the header is complete"))
}

/// A source that ends early is a truncated message; any other failure is I/O.
fn read_error(e: io::Error, offset: u64, section: &'static str) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof { Error::Truncated { offset, section } } else { Error::Io(e) }
}

/// Regular frames `first..first + count` (0-based indexes: frame `i` has sequence number `i + 1`).
#[derive(Clone, Copy, Debug)]
struct Run {
    first: usize,
    count: usize,
}

/// A message whose header authenticated and whose final frame verified: everything needed to open any
/// other frame.
struct Opened {
    header: Header,
    key: AeadKey,
    layout: Layout,
    body_start: u64,
    parallelism: Parallelism,
    /// The final frame's plaintext, verified.
    final_plaintext: Zeroizing<Vec<u8>>,
}

/// The header's keys and where the final frame lies, between the keyring call and the final frame's read.
struct Located {
    header: Header,
    key: AeadKey,
    layout: Layout,
    body_start: u64,
}

impl Located {
    /// Checks `header`'s layout against `total_len` and keeps the content key: no body byte read yet.
    fn new(header: Header, key: AeadKey, total_len: u64) -> Result<Self> {
        let layout = layout_for(&header, total_len)?;
        let body_start = header.as_bytes().len() as u64;
        Ok(Self { header, key, layout, body_start })
    }

    /// The final frame's offset and wire length.
    fn final_span(&self) -> (u64, usize) {
        let at = self.body_start + (self.layout.regular * self.layout.stride()) as u64;
        (at, FINAL_PREFIX + self.layout.last + TAG_LEN)
    }

    /// Verifies the final frame's wire bytes `wire`: its prefix must be what the layout says, its tag good.
    fn open_final(self, wire: &[u8], parallelism: Parallelism) -> Result<Opened> {
        let (at, _) = self.final_span();
        if !self.layout.final_prefix_matches(wire) {
            return Err(Error::malformed(at, "the final frame is not where the message's length puts it"));
        }
        let mut final_plaintext = zeroed(self.layout.last)?;
        let sequence = self.layout.final_sequence();
        if !open_final(&self.key, self.header.message_id(), sequence, wire, &mut final_plaintext) {
            return Err(Error::FrameAuthentication { sequence });
        }
        let Self { header, key, layout, body_start } = self;
        Ok(Opened { header, key, layout, body_start, parallelism, final_plaintext })
    }
}

impl Opened {
    fn message_layout(&self) -> MessageLayout {
        MessageLayout::from_layout(&self.header, self.layout)
    }

    fn plaintext_len(&self) -> u64 {
        self.layout.plaintext_len() as u64
    }

    /// The regular frames holding plaintext bytes `start..end`, if any (the rest is in the final frame).
    fn covering(&self, start: u64, end: u64) -> Option<Run> {
        let frame_len = self.layout.frame_len as u64;
        let regular_end = (self.layout.regular as u64) * frame_len;
        if start >= end || start >= regular_end {
            return None;
        }
        let first = (start / frame_len) as usize;
        let last = ((end.min(regular_end) - 1) / frame_len) as usize;
        Some(Run { first, count: last - first + 1 })
    }

    /// The offset and wire length of `run`.
    fn span(&self, run: Run) -> (u64, usize) {
        (self.body_start + (run.first * self.layout.stride()) as u64, run.count * self.layout.stride())
    }

    /// `run` split into at most one piece per thread, each at least [`PIECE_PER_THRESHOLD`] times the
    /// parallel threshold.
    fn pieces(&self, run: Run) -> Vec<Run> {
        let (_, wire_len) = self.span(run);
        let threshold = usize::try_from(self.parallelism.threshold).unwrap_or(usize::MAX);
        let min_piece = threshold.saturating_mul(PIECE_PER_THRESHOLD).max(1);
        let count = self.parallelism.threads.max(1).min(wire_len / min_piece).max(1);
        if count == 1 {
            return vec![run];
        }
        let per_piece = run.count.div_ceil(count);
        (run.first..run.first + run.count)
            .step_by(per_piece)
            .map(|first| Run { first, count: per_piece.min(run.first + run.count - first) })
            .collect()
    }

    /// Verifies and decrypts the frames of `run`, whose wire bytes are `wire`, into `out`; the error names
    /// the first frame that fails.
    fn open_run(&self, run: Run, wire: &[u8], out: &mut [u8]) -> Result<()> {
        let (stride, frame_len) = (self.layout.stride(), self.layout.frame_len);
        let frames = wire.chunks(stride).zip(out.chunks_mut(frame_len));
        for (sequence, (wire, out)) in (run.first as u32 + 1..).zip(frames) {
            if !open_regular(&self.key, self.header.message_id(), sequence, wire, out) {
                return Err(Error::FrameAuthentication { sequence });
            }
        }
        Ok(())
    }

    /// The plaintext buffer for bytes up to `end`: room for `run`'s frames (if any, zeroed, to be opened
    /// into), then the final frame's verified plaintext when `end` reaches into it.
    fn output_for(&self, run: Option<Run>, end: u64) -> Result<Zeroizing<Vec<u8>>> {
        let run_len = run.map_or(0, |r| r.count * self.layout.frame_len);
        let with_final = end > (self.layout.regular * self.layout.frame_len) as u64;
        let mut out = Zeroizing::new(Vec::new());
        super::buffer::try_reserve_exact(&mut out, run_len + if with_final { self.layout.last } else { 0 })?;
        out.resize(run_len, 0);
        if with_final {
            out.extend_from_slice(&self.final_plaintext);
        }
        Ok(out)
    }

    /// Cuts the frames' plaintext `plain` (from the start of `run`'s first frame, or of the final frame) down
    /// to bytes `start..end`. The bytes cut off stay in the buffer's capacity, wiped on drop.
    fn cut(&self, run: Option<Run>, mut plain: Zeroizing<Vec<u8>>, start: u64, end: u64) -> Zeroizing<Vec<u8>> {
        let base = match run {
            Some(run) => (run.first * self.layout.frame_len) as u64,
            None => (self.layout.regular * self.layout.frame_len) as u64,
        };
        if end <= start {
            plain.clear();
            return plain;
        }
        let (from, len) = ((start - base) as usize, (end - start) as usize);
        plain.copy_within(from..from + len, 0);
        plain.truncate(len);
        plain
    }

    /// Plaintext bytes `start..end` (within the plaintext length), read from `source`.
    fn read_range<S: RangeSource + ?Sized>(&self, source: &S, start: u64, end: u64) -> Result<Zeroizing<Vec<u8>>> {
        let run = self.covering(start, end);
        let mut plain = self.output_for(run, end)?;
        if let Some(run) = run {
            let pieces = self.pieces(run);
            let frame_len = self.layout.frame_len;
            let outs = split_by_runs(&mut plain[..run.count * frame_len], &pieces, frame_len);
            let work = |(piece, out): (Run, &mut [u8])| -> Result<()> {
                let (at, len) = self.span(piece);
                let mut wire = zeroed(len)?;
                source.read_exact_at(at, &mut wire).map_err(|e| read_error(e, at, "frame"))?;
                self.open_run(piece, &wire, out)
            };
            run_pieces(pieces.into_iter().zip(outs).collect(), work)?;
        }
        Ok(self.cut(run, plain, start, end))
    }
}

/// A buffer of `len` zero bytes, wiped on drop; [`Error::OutOfMemory`] rather than an abort if memory is
/// short (the length comes from a message).
fn zeroed(len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    super::buffer::try_reserve_exact(&mut buf, len)?;
    buf.resize(len, 0);
    Ok(buf)
}

/// `out` split into one slice per piece of a run, in order.
fn split_by_runs<'a>(mut out: &'a mut [u8], pieces: &[Run], frame_len: usize) -> Vec<&'a mut [u8]> {
    pieces
        .iter()
        .map(|piece| {
            let (head, rest) = std::mem::take(&mut out).split_at_mut(piece.count * frame_len);
            out = rest;
            head
        })
        .collect()
}

/// Runs `work` on every item, one thread per item past the first (which runs on the caller's thread);
/// the first error in item order wins.
fn run_pieces<T: Send>(items: Vec<T>, work: impl Fn(T) -> Result<()> + Sync) -> Result<()> {
    if items.len() <= 1 {
        return items.into_iter().try_for_each(work);
    }
    let work = &work;
    std::thread::scope(|scope| {
        let mut items = items.into_iter();
        let first = items.next();
        let handles: Vec<_> = items.map(|item| scope.spawn(move || work(item))).collect();
        let mut result = first.map_or(Ok(()), work);
        for handle in handles {
            let outcome = handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            result = result.and(outcome);
        }
        result
    })
}

/// Reads the header, authenticates it (one keyring call) and verifies the final frame.
fn open_source<S: RangeSource + ?Sized>(keyring: &dyn Keyring, options: &DecryptOptions, source: &S) -> Result<Opened> {
    let total_len = source.total_len().map_err(Error::Io)?;
    let header = read_header(source, options.limits, total_len)?;
    check_supported(&header)?;
    let opened = block_on(open_header(keyring, options, &header))?;
    let located = Located::new(header, opened.keys.content.clone(), total_len)?;
    let (at, len) = located.final_span();
    let mut wire = zeroed(len)?;
    source.read_exact_at(at, &mut wire).map_err(|e| read_error(e, at, "final frame"))?;
    located.open_final(&wire, options.parallelism)
}

/// Decrypts the plaintext bytes `range` of the message in `source`, reading only its header, its final
/// frame and the frames that cover the range; nothing is returned unless every frame read verified.
///
/// The keyring is called once. `range` is in plaintext bytes (`..` for all of it, `a..b`, `a..=b`, `a..`);
/// an empty range still verifies the header and the final frame. The range's frames are held in memory
/// (ciphertext and plaintext): for a range of gigabytes read through a [`SeekableDecryptor`] instead.
///
/// # Errors
///
/// [`Error::RangeRefused`] for a signed or non-framed message (before the keyring runs);
/// [`Error::RangeOutOfBounds`] if the range ends past the plaintext; [`Error::FrameAuthentication`] naming
/// the frame that failed; [`Error::Malformed`] if the message's length allows no framed body; and every
/// error of [`decrypt`](crate::decrypt)'s header step (a wrong key or context is refused before any body
/// byte is read).
///
/// ```
/// use kms_envelope::{DecryptOptions, EncryptOptions, RawAesKeyring, decrypt_range, encrypt};
///
/// fn main() -> Result<(), kms_envelope::Error> {
///     let keyring = RawAesKeyring::new("my-service", "key-1", &[0x42; 32])?;
///     let plaintext: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
///     let message = encrypt(&keyring, &EncryptOptions::new().frame_length(4096), &plaintext)?;
///     // A slice or a `Vec`, a `File` (positioned reads) or any `Read + Seek` in a `SeekSource`.
///     let slice = decrypt_range(&keyring, &DecryptOptions::new(), &message, 50_000..50_010)?;
///     assert_eq!(&slice.plaintext[..], &plaintext[50_000..50_010]);
///     Ok(())
/// }
/// ```
pub fn decrypt_range<S: RangeSource + ?Sized>(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    source: &S,
    range: impl RangeBounds<u64>,
) -> Result<Decrypted> {
    let opened = open_source(keyring, options, source)?;
    let (start, end) = resolve(&range, opened.plaintext_len())?;
    let plaintext = opened.read_range(source, start, end)?;
    Ok(Decrypted { plaintext, header: opened.header })
}

/// A message in any `Read + Seek` read as its plaintext, with `Read + Seek` over plaintext offsets.
///
/// [`new`](Self::new) authenticates the header (one keyring call) and verifies the final frame, which fixes
/// [`plaintext_len`](Self::plaintext_len). Each read then decrypts the frames around the position (up to
/// 1 MiB of them at once) into a buffer that is wiped when replaced or dropped; only verified frames are
/// released, and a frame that fails is an error at that position, never a short read. Seeking past the end
/// is an error; reading at the end returns 0. Signed and non-framed messages are refused.
///
/// ```
/// use std::io::{Cursor, Read, Seek, SeekFrom};
///
/// use kms_envelope::{DecryptOptions, EncryptOptions, RawAesKeyring, SeekableDecryptor, encrypt};
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let keyring = RawAesKeyring::new("my-service", "key-1", &[0x42; 32])?;
///     let plaintext: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
///     let message = encrypt(&keyring, &EncryptOptions::new().frame_length(1024), &plaintext)?;
///
///     let mut reader = SeekableDecryptor::new(&keyring, &DecryptOptions::new(), Cursor::new(message))?;
///     assert_eq!(reader.plaintext_len(), 10_000);
///     reader.seek(SeekFrom::End(-5))?;
///     let mut tail = Vec::new();
///     reader.read_to_end(&mut tail)?;
///     assert_eq!(tail, &plaintext[9_995..]);
///     Ok(())
/// }
/// ```
pub struct SeekableDecryptor<R> {
    source: SeekSource<R>,
    opened: Opened,
    position: u64,
    /// Plaintext from offset `window_start`, verified; wiped when replaced or dropped.
    window: Zeroizing<Vec<u8>>,
    window_start: u64,
}

impl<R> std::fmt::Debug for SeekableDecryptor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeekableDecryptor")
            .field("message_id", self.opened.header.message_id())
            .field("plaintext_len", &self.opened.plaintext_len())
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl<R: Read + Seek + Send> SeekableDecryptor<R> {
    /// Reads and authenticates the header of the message in `reader` (one keyring call) and verifies its
    /// final frame.
    ///
    /// # Errors
    ///
    /// As [`decrypt_range`], for the header and the final frame.
    pub fn new(keyring: &dyn Keyring, options: &DecryptOptions, reader: R) -> Result<Self> {
        let source = SeekSource::new(reader);
        let opened = open_source(keyring, options, &source)?;
        Ok(Self { source, opened, position: 0, window: Zeroizing::new(Vec::new()), window_start: 0 })
    }

    /// The plaintext length of the whole message (verified: the final frame fixed it).
    pub fn plaintext_len(&self) -> u64 {
        self.opened.plaintext_len()
    }

    /// The authenticated header.
    pub fn header(&self) -> &Header {
        &self.opened.header
    }

    /// Frames in the body, the final frame included.
    pub fn frame_count(&self) -> u64 {
        self.opened.message_layout().frame_count()
    }

    /// Where the message's parts lie.
    pub fn layout(&self) -> MessageLayout {
        self.opened.message_layout()
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.source.into_inner()
    }

    /// Decrypts the frames from the one holding the current position, up to [`READ_AHEAD`] bytes of them.
    fn fill_window(&mut self) -> io::Result<()> {
        let frame_len = self.opened.layout.frame_len as u64;
        let window_start = self.position / frame_len * frame_len;
        let frames = (READ_AHEAD as u64 / frame_len).max(1);
        let end = window_start.saturating_add(frames * frame_len).min(self.plaintext_len());
        // The old window is wiped first, so that two windows are never held at once.
        self.window = Zeroizing::new(Vec::new());
        self.window = self.opened.read_range(&self.source, window_start, end)?;
        self.window_start = window_start;
        Ok(())
    }
}

impl<R: Read + Seek + Send> Read for SeekableDecryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.position >= self.plaintext_len() {
            return Ok(0);
        }
        let window_end = self.window_start + self.window.len() as u64;
        if self.position < self.window_start || self.position >= window_end {
            self.fill_window()?;
        }
        let from = (self.position - self.window_start) as usize;
        let n = out.len().min(self.window.len() - from);
        out[..n].copy_from_slice(&self.window[from..from + n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek + Send> Seek for SeekableDecryptor<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self.plaintext_len();
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => len.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        match target {
            Some(n) if n <= len => {
                self.position = n;
                Ok(n)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot seek to {to:?}: the plaintext is {len} bytes long"),
            )),
        }
    }
}

/// The async counterpart of [`decrypt_range`] (feature `async`), over an [`AsyncRangeSource`] such as an S3
/// object: an [`AsyncRangeReader`] opened once and read as one window. The whole range is held in memory;
/// for a range of gigabytes use [`AsyncRangeReader::write_range_to`], which holds a few MiB at a time.
///
/// # Errors
///
/// As [`decrypt_range`].
///
/// ```
/// use kms_envelope::{DecryptOptions, EncryptOptions, RawAesKeyring, decrypt_range_async, encrypt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kms_envelope::Error> {
/// let keyring = RawAesKeyring::new("my-service", "key-1", &[0x42; 32])?;
/// let message = encrypt(&keyring, &EncryptOptions::new(), b"hello, random access")?;
/// let source = kms_envelope::stream::range::MemorySource(message);
/// let slice = decrypt_range_async(&keyring, &DecryptOptions::new(), &source, 7..13).await?;
/// assert_eq!(&slice.plaintext[..], b"random");
/// # Ok(())
/// # }
/// ```
///
/// [`AsyncRangeSource`]: super::range_source::AsyncRangeSource
#[cfg(feature = "async")]
pub async fn decrypt_range_async<S: super::range_source::AsyncRangeSource + ?Sized>(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    source: &S,
    range: impl RangeBounds<u64>,
) -> Result<Decrypted> {
    let reader = AsyncRangeReader::open(keyring, options, source).await?;
    let (start, end) = resolve(&range, reader.plaintext_len())?;
    let plaintext = reader.read_window(start, end).await?;
    Ok(Decrypted { plaintext, header: reader.header().clone() })
}

/// How many plaintext bytes [`AsyncRangeReader::write_range_to`] holds per window by default.
#[cfg(feature = "async")]
pub const ASYNC_WINDOW: usize = 8 << 20;

/// A message in an [`AsyncRangeSource`](super::range_source::AsyncRangeSource) opened once for random access
/// (feature `async`): the async counterpart of [`SeekableDecryptor`].
///
/// [`open`](Self::open) reads the header, authenticates it (one keyring call) and verifies the final frame,
/// which fixes [`plaintext_len`](Self::plaintext_len); signed and non-framed messages are refused before the
/// keyring runs. Each [`read_window`](Self::read_window) then reads only the frames covering its bytes (one
/// request, or a few concurrent ones for a window past 8 times the parallel threshold
/// per piece) and opens them on the blocking pool; only verified frames are released, and a frame that fails
/// is an error naming it. [`write_range_to`](Self::write_range_to) streams a range of any size through
/// windows of [`window_len`](Self::with_window_len) bytes, the next window's read in flight while the
/// current one is opened and written.
///
/// ```
/// use kms_envelope::stream::range::{AsyncRangeReader, MemorySource};
/// use kms_envelope::{DecryptOptions, EncryptOptions, RawAesKeyring, encrypt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kms_envelope::Error> {
/// let keyring = RawAesKeyring::new("my-service", "key-1", &[0x42; 32])?;
/// let plaintext: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
/// let message = encrypt(&keyring, &EncryptOptions::new().frame_length(1024), &plaintext)?;
/// let source = MemorySource(message);
/// let reader = AsyncRangeReader::open(&keyring, &DecryptOptions::new(), &source).await?.with_window_len(4096);
/// assert_eq!(&reader.read_window(1000, 1010).await?[..], &plaintext[1000..1010]);
/// let mut out = Vec::new();
/// reader.write_range_to(500, 9_500, &mut out).await?;
/// assert_eq!(out, &plaintext[500..9_500]);
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "async")]
pub struct AsyncRangeReader<'a, S: ?Sized> {
    source: &'a S,
    /// Shared with the blocking pool's tasks that open frames.
    opened: std::sync::Arc<Opened>,
    window_len: usize,
}

#[cfg(feature = "async")]
impl<S: ?Sized> std::fmt::Debug for AsyncRangeReader<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncRangeReader")
            .field("message_id", self.opened.header.message_id())
            .field("plaintext_len", &self.opened.plaintext_len())
            .field("window_len", &self.window_len)
            .finish_non_exhaustive()
    }
}

/// A clone shares the opened message (no further keyring call) and reads the same source.
#[cfg(feature = "async")]
impl<S: ?Sized> Clone for AsyncRangeReader<'_, S> {
    fn clone(&self) -> Self {
        Self { source: self.source, opened: std::sync::Arc::clone(&self.opened), window_len: self.window_len }
    }
}

/// The wire bytes of the frames covering plaintext bytes `start..end`, read but not yet opened.
#[cfg(feature = "async")]
struct Fetched {
    start: u64,
    end: u64,
    run: Option<Run>,
    pieces: Vec<Run>,
    wires: Vec<Vec<u8>>,
}

#[cfg(feature = "async")]
impl<'a, S: super::range_source::AsyncRangeSource + ?Sized> AsyncRangeReader<'a, S> {
    /// Reads and authenticates the header of the message in `source` (one keyring call) and verifies its
    /// final frame.
    ///
    /// # Errors
    ///
    /// As [`decrypt_range`], for the header and the final frame.
    pub async fn open(keyring: &dyn Keyring, options: &DecryptOptions, source: &'a S) -> Result<Self> {
        let total_len = source.total_len().await.map_err(Error::Io)?;
        let header = read_header_async(source, options.limits, total_len).await?;
        check_supported(&header)?;
        let keys = open_header(keyring, options, &header).await?;
        let located = Located::new(header, keys.keys.content.clone(), total_len)?;
        let (at, len) = located.final_span();
        let wire = read_at_async(source, at, len, "final frame").await?;
        let parallelism = options.parallelism;
        let opened = blocking(move || located.open_final(&wire, parallelism)).await?;
        Ok(Self { source, opened: std::sync::Arc::new(opened), window_len: ASYNC_WINDOW })
    }

    /// The same reader with windows of `bytes` plaintext bytes (rounded down to whole frames, at least one)
    /// in [`write_range_to`](Self::write_range_to).
    #[must_use]
    pub fn with_window_len(mut self, bytes: usize) -> Self {
        self.window_len = bytes;
        self
    }

    /// The plaintext length of the whole message (verified: the final frame fixed it).
    pub fn plaintext_len(&self) -> u64 {
        self.opened.plaintext_len()
    }

    /// The authenticated header.
    pub fn header(&self) -> &Header {
        &self.opened.header
    }

    /// Where the message's parts lie.
    pub fn layout(&self) -> MessageLayout {
        self.opened.message_layout()
    }

    /// Plaintext bytes `start..end`, every frame holding them verified. The window is held in memory
    /// (ciphertext and plaintext).
    ///
    /// # Errors
    ///
    /// [`Error::RangeOutOfBounds`] if `start..end` is not within the plaintext; [`Error::FrameAuthentication`]
    /// naming the first frame that fails; [`Error::Truncated`] or [`Error::Io`] if a read fails.
    pub async fn read_window(&self, start: u64, end: u64) -> Result<Zeroizing<Vec<u8>>> {
        let (start, end) = resolve(&(start..end), self.plaintext_len())?;
        let fetched = self.fetch(start, end).await?;
        self.open_fetched(fetched).await
    }

    /// Writes plaintext bytes `start..end` to `out` one verified window at a time, holding about two
    /// windows (the one being opened and written, the next one's ciphertext being read) whatever the
    /// range's length. Returns the number of bytes written.
    ///
    /// `out` gets each window once its frames verified: when a later window fails, the earlier ones were
    /// already written, so a caller that must not release a partial range writes to a temporary file.
    ///
    /// # Errors
    ///
    /// As [`read_window`](Self::read_window), for the window that fails; [`Error::Io`] if `out` fails.
    pub async fn write_range_to<W: io::Write + ?Sized>(&self, start: u64, end: u64, out: &mut W) -> Result<u64> {
        let (start, end) = resolve(&(start..end), self.plaintext_len())?;
        let mut next = Some(self.fetch(start, self.window_end(start, end)).await?);
        while let Some(current) = next.take() {
            let after = current.end;
            let write = async {
                let plain = self.open_fetched(current).await?;
                out.write_all(&plain).map_err(Error::Io)
            };
            let prefetch = async {
                if after < end { self.fetch(after, self.window_end(after, end)).await.map(Some) } else { Ok(None) }
            };
            let (written, fetched) = join(write, prefetch).await;
            written?;
            next = fetched?;
        }
        Ok(end - start)
    }

    /// Where the window from `at` ends: whole frames, at least one, never past `end`.
    fn window_end(&self, at: u64, end: u64) -> u64 {
        let frame_len = self.opened.layout.frame_len as u64;
        let frames = (self.window_len as u64 / frame_len).max(1);
        (at / frame_len + frames).saturating_mul(frame_len).min(end)
    }

    /// Reads the wire bytes of the frames covering `start..end` (within the plaintext).
    async fn fetch(&self, start: u64, end: u64) -> Result<Fetched> {
        let run = self.opened.covering(start, end);
        let pieces = run.map_or_else(Vec::new, |run| self.opened.pieces(run));
        let wires = futures_join_all(pieces.iter().map(|&piece| {
            let (at, len) = self.opened.span(piece);
            read_at_async(self.source, at, len, "frame")
        }))
        .await?;
        Ok(Fetched { start, end, run, pieces, wires })
    }

    /// Opens the frames of `fetched` on the blocking pool and cuts them to its bytes.
    async fn open_fetched(&self, fetched: Fetched) -> Result<Zeroizing<Vec<u8>>> {
        let opened = std::sync::Arc::clone(&self.opened);
        blocking(move || {
            let Fetched { start, end, run, pieces, wires } = fetched;
            let mut plain = opened.output_for(run, end)?;
            if let Some(run) = run {
                let frame_len = opened.layout.frame_len;
                let outs = split_by_runs(&mut plain[..run.count * frame_len], &pieces, frame_len);
                let items: Vec<_> = pieces.iter().copied().zip(wires.iter()).zip(outs).collect();
                run_pieces(items, |((piece, wire), out)| opened.open_run(piece, wire, out))?;
            }
            Ok(opened.cut(run, plain, start, end))
        })
        .await
    }
}

/// Both futures driven together; both results once both finished.
#[cfg(feature = "async")]
async fn join<A: std::future::Future, B: std::future::Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut a_out, mut b_out) = (None, None);
    std::future::poll_fn(|cx| {
        if a_out.is_none()
            && let std::task::Poll::Ready(out) = a.as_mut().poll(cx)
        {
            a_out = Some(out);
        }
        if b_out.is_none()
            && let std::task::Poll::Ready(out) = b.as_mut().poll(cx)
        {
            b_out = Some(out);
        }
        if a_out.is_some() && b_out.is_some() { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    (a_out.expect("finished"), b_out.expect("finished"))
}

/// Runs `work` on the blocking pool: frames are opened off the async threads.
#[cfg(feature = "async")]
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Io(io::Error::other(format!("the decrypting task failed: {e}"))))?
}

/// All the reads at once, in order; the first error wins.
#[cfg(feature = "async")]
async fn futures_join_all<F: std::future::Future<Output = Result<Vec<u8>>>>(
    reads: impl Iterator<Item = F>,
) -> Result<Vec<Vec<u8>>> {
    let mut pending: Vec<_> = reads.map(Box::pin).collect();
    let mut done: Vec<Option<Vec<u8>>> = vec![None; pending.len()];
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (slot, read) in done.iter_mut().zip(pending.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            match read.as_mut().poll(cx) {
                std::task::Poll::Ready(Ok(bytes)) => *slot = Some(bytes),
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => all = false,
            }
        }
        if all { std::task::Poll::Ready(Ok(())) } else { std::task::Poll::Pending }
    })
    .await?;
    Ok(done.into_iter().map(|bytes| bytes.expect("every read finished")).collect())
}

/// `length` bytes at `offset`, exactly.
#[cfg(feature = "async")]
async fn read_at_async<S: super::range_source::AsyncRangeSource + ?Sized>(
    source: &S,
    offset: u64,
    length: usize,
    section: &'static str,
) -> Result<Vec<u8>> {
    let bytes = source.read_at(offset, length).await.map_err(|e| read_error(e, offset, section))?;
    if bytes.len() != length {
        // A source must not return fewer or more bytes; fewer means the message ended.
        return Err(Error::Truncated { offset: offset + bytes.len().min(length) as u64, section });
    }
    Ok(bytes)
}

/// Reads and decodes the header from an async source, as [`read_header`] does.
#[cfg(feature = "async")]
async fn read_header_async<S: super::range_source::AsyncRangeSource + ?Sized>(
    source: &S,
    limits: DecryptLimits,
    total_len: u64,
) -> Result<Header> {
    let mut fetched = read_at_async(source, 0, first_header_read(total_len), "header").await?;
    let mut decoder = HeaderDecoder::new(limits);
    loop {
        let offset = decoder.offset() as usize;
        let Some(buf) = decoder.next_buffer()? else { break };
        let needed = offset + buf.len();
        if needed > fetched.len() {
            let from = fetched.len();
            let end = header_read_end(from, needed, total_len, &limits)?;
            fetched.extend(read_at_async(source, from as u64, end - from, "header").await?);
        }
        buf.copy_from_slice(&fetched[offset..needed]);
        decoder.advance()?;
    }
    Ok(decoder.finish().expect("the loop ends only when the header is complete"))
}

/// A message held in memory as an [`AsyncRangeSource`](super::range_source::AsyncRangeSource) (feature
/// `async`): for tests and examples, and for callers that already hold the bytes.
#[cfg(feature = "async")]
#[derive(Clone, Debug)]
pub struct MemorySource(pub Vec<u8>);

#[cfg(feature = "async")]
impl super::range_source::AsyncRangeSource for MemorySource {
    async fn total_len(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }

    async fn read_at(&self, offset: u64, length: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; length];
        RangeSource::read_exact_at(&self.0, offset, &mut buf)?;
        Ok(buf)
    }
}

/// A file as an [`AsyncRangeSource`](super::range_source::AsyncRangeSource) (feature `async`): each read is
/// a positioned read (`pread`) of a duplicate of its descriptor on the blocking pool, so reads run
/// concurrently and never move a cursor.
#[cfg(feature = "async")]
impl super::range_source::AsyncRangeSource for std::fs::File {
    async fn total_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    async fn read_at(&self, offset: u64, length: usize) -> io::Result<Vec<u8>> {
        let file = self.try_clone()?;
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; length];
            RangeSource::read_exact_at(&file, offset, &mut buf)?;
            Ok(buf)
        })
        .await
        .map_err(io::Error::other)?
    }
}
