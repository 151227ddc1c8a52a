//! The streaming decryptor: a `Read` that hands out plaintext only after it authenticated.

use std::io::{self, Read, Write};

use super::buffer;
use super::cmm::{OpenedHeader, open_header};
use super::options::DecryptOptions;
use super::pipeline::{Direction, FrameSlot, Job, Pipeline};
use crate::crypto::signature::MessageVerifier;
use crate::error::{Error, Result};
use crate::format::context::EncryptionContext;
use crate::format::frame::{BlockKind, FINAL_FRAME_MARKER, FrameCounter};
use crate::format::header::{ContentType, Header, HeaderDecoder, IV_LEN, TAG_LEN, read_exact_or_truncated};
use crate::format::limits::DecryptLimits;
use crate::keyring::{Keyring, block_on};

/// The GCM limit on one block's plaintext: 2^36 - 32 bytes.
const MAX_GCM_PLAINTEXT: u64 = (1 << 36) - 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Body,
    Done,
    Failed,
}

/// Decrypts an ESDK message read from `R`.
///
/// Construction reads and authenticates the header (so [`header`](Self::header) is trustworthy), then
/// `read` hands out plaintext frame by frame, each only after its tag verified:
///
/// * Unsigned suites: a frame's plaintext is released as soon as its tag verifies.
/// * Signed suites: regular frames likewise, but the final frame (and a non-framed body) only after the
///   footer signature verified. Everything released before that is authenticated by the data key, not yet
///   by the signature; use [`DecryptOptions::unsigned_only`] if that is not acceptable.
///
/// The plaintext is complete and authentic only once `read` has returned `Ok(0)`: a message cut short or
/// tampered with yields an error instead, after the plaintext of the frames before the damage. Callers that
/// write plaintext somewhere must discard it on error (the CLI's decrypt-to-file does this), or use
/// [`decrypt_to_path`](crate::decrypt_to_path), which does.
///
/// ```
/// use std::io::Read;
/// use kms_envelope::{DecryptOptions, Decryptor, EncryptOptions, RawAesKeyring, encrypt};
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let keyring = RawAesKeyring::new("my-service", "key-1", &[0x42; 32])?;
///     let message = encrypt(&keyring, &EncryptOptions::new().context("app", "billing"), b"hunter2")?;
///
///     // The header authenticated here: the context check passed, the data key unwrapped.
///     let options = DecryptOptions::new().context("app", "billing");
///     let mut decryptor = Decryptor::new(&keyring, &options, &message[..])?;
///     assert_eq!(decryptor.encryption_context().get("app"), Some("billing"));
///     let mut plaintext = Vec::new();
///     decryptor.read_to_end(&mut plaintext)?; // Ok: every frame verified
///     assert_eq!(plaintext, b"hunter2");
///
///     // Another context is refused before any plaintext.
///     let wrong = DecryptOptions::new().context("app", "payroll");
///     assert!(Decryptor::new(&keyring, &wrong, &message[..]).is_err());
///     Ok(())
/// }
/// ```
pub struct Decryptor<R: Read> {
    input: R,
    header: Header,
    context: EncryptionContext,
    verifier: Option<MessageVerifier>,
    counter: FrameCounter,
    limits: DecryptLimits,
    pipeline: Pipeline,
    /// The oldest job back from the pipeline, whose first `releasable` frames are handed out in order:
    /// frame `frame`, of which `released` bytes are out.
    current: Option<Job>,
    releasable: usize,
    frame: usize,
    released: usize,
    /// The error to report once the releasable frames of `current` are out.
    pending: Option<Error>,
    /// Reading stopped: the last block was read, or reading failed with `read_error`. Reading stops at the
    /// first problem, so `read_error` belongs after the last job submitted.
    input_done: bool,
    read_error: Option<Error>,
    offset: u64,
    state: State,
    error: Option<String>,
}

impl<R: Read> std::fmt::Debug for Decryptor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("suite", &self.header.suite())
            .field("message_id", self.header.message_id())
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Decryptor<R> {
    /// Reads and authenticates the header with `keyring`, ready to decrypt the body.
    ///
    /// # Errors
    ///
    /// A malformed, truncated or oversized header ([`Error::Malformed`], [`Error::Truncated`],
    /// [`Error::LimitExceeded`]), a suite the options refuse ([`Error::CommitmentPolicy`],
    /// [`Error::SignedMessageRefused`], [`Error::UnsupportedSuite`]), a context that does not match
    /// ([`Error::ContextMismatch`]), no keyring able to unwrap a data key ([`Error::NoDataKeyDecrypted`]),
    /// a header that fails to authenticate ([`Error::HeaderAuthentication`], [`Error::CommitmentMismatch`]),
    /// or [`Error::Io`] from `input`.
    pub fn new(keyring: &dyn Keyring, options: &DecryptOptions, mut input: R) -> Result<Self> {
        let header = HeaderDecoder::read_from(options.limits, &mut input)?;
        let opened = block_on(open_header(keyring, options, &header))?;
        Ok(Self::with_opened(header, opened, options, input))
    }

    /// Like [`new`](Self::new), for async callers whose keyring (KMS) must run on their runtime. The input
    /// is still a blocking `Read`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub async fn new_async(keyring: &dyn Keyring, options: &DecryptOptions, mut input: R) -> Result<Self> {
        let header = HeaderDecoder::read_from(options.limits, &mut input)?;
        let opened = open_header(keyring, options, &header).await?;
        Ok(Self::with_opened(header, opened, options, input))
    }

    pub(crate) fn with_opened(header: Header, opened: OpenedHeader, options: &DecryptOptions, input: R) -> Self {
        let OpenedHeader { keys, mut verifier, context } = opened;
        if let Some(verifier) = &mut verifier {
            verifier.update(header.as_bytes());
        }
        let offset = header.as_bytes().len() as u64;
        let frame_len = header.frame_length() as usize;
        let pipeline = Pipeline::new(
            keys.content.clone(),
            *header.message_id(),
            Direction::Open,
            options.parallelism,
            frame_len,
            frame_len + TAG_LEN,
            options.limits.max_frame_buffers,
        );
        Self {
            input,
            header,
            context,
            verifier,
            counter: FrameCounter::new(),
            limits: options.limits,
            pipeline,
            current: None,
            releasable: 0,
            frame: 0,
            released: 0,
            pending: None,
            input_done: false,
            read_error: None,
            offset,
            state: State::Body,
            error: None,
        }
    }

    /// The authenticated header: suite, message id, stored encryption context, EDK providers.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The encryption context the message was authenticated with: the header's pairs plus the reproduced
    /// required pairs.
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.context
    }

    /// Whether the whole message has been verified (the last `read` returned `Ok(0)`).
    pub fn is_complete(&self) -> bool {
        self.state == State::Done && self.current.as_ref().is_none_or(|_| self.frame >= self.releasable)
    }

    /// Reads the whole plaintext into a vector (which is not zeroized; prefer `read` into your own buffer
    /// for secrets) and returns it after every check passed.
    ///
    /// # Errors
    ///
    /// Any error of the body: a frame or signature that fails to verify ([`Error::FrameAuthentication`],
    /// [`Error::SignatureVerification`]), a malformed or truncated body, trailing data, or [`Error::Io`].
    pub fn read_all(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_to_end(&mut out).map_err(Error::from_io)?;
        Ok(out)
    }

    fn read_array<const N: usize>(&mut self, section: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        read_exact_or_truncated(&mut self.input, &mut out, self.offset, section)?;
        self.offset += N as u64;
        if let Some(v) = &mut self.verifier {
            v.update(&out);
        }
        Ok(out)
    }

    /// Reads blocks into a fresh job until it holds its share of frames or the last block, and submits it.
    /// A read or format error stops reading for good; the frames read before it are still submitted, so
    /// that they are verified and released before the error is reported.
    fn read_job(&mut self) {
        let frames = self.pipeline.frames_per_job();
        let mut job = match self.pipeline.take_job() {
            Ok(job) => job,
            Err(e) => {
                self.read_error = Some(e);
                self.input_done = true;
                return;
            }
        };
        while job.frames.len() < frames {
            match self.read_block(&mut job) {
                Ok(true) => {
                    self.input_done = true;
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    self.read_error = Some(e);
                    self.input_done = true;
                    break;
                }
            }
        }
        if job.frames.is_empty() {
            self.pipeline.recycle(job);
        } else {
            self.pipeline.submit(job);
        }
        let body_bytes = self.offset - self.header.as_bytes().len() as u64;
        self.pipeline.maybe_start(body_bytes);
    }

    /// Reads the next block (prefix checked, `ciphertext || tag` appended to `job`); true if it was the last.
    fn read_block(&mut self, job: &mut Job) -> Result<bool> {
        let (sequence, kind, iv, len) = match self.header.content_type() {
            ContentType::Framed => self.read_frame_prefix()?,
            ContentType::NonFramed => {
                let iv = self.read_array::<IV_LEN>("body")?;
                let len = u64::from_be_bytes(self.read_array::<8>("body")?);
                let max = self.limits.max_nonframed_body_len.min(MAX_GCM_PLAINTEXT);
                if len > max {
                    return Err(Error::LimitExceeded { limit: "non-framed body length", value: len, max });
                }
                self.counter.expect(1, true, self.offset)?;
                (1, BlockKind::SingleBlock, iv, len as usize)
            }
        };
        let start = job.buf.len();
        let want = len + TAG_LEN;
        // Grow with the data actually received, so a header that promises a large frame costs nothing
        // until the bytes arrive.
        let got = buffer::read_append(&mut job.buf, &mut self.input, want, job.cap).map_err(Error::from_io);
        match got {
            Ok(got) if got == want => {}
            Ok(got) => {
                job.buf.truncate(start);
                return Err(Error::Truncated { offset: self.offset + got as u64, section: "frame" });
            }
            Err(e) => {
                job.buf.truncate(start);
                return Err(e);
            }
        }
        if let Some(v) = &mut self.verifier {
            v.update(&job.buf[start..]);
        }
        self.offset += want as u64;
        job.frames.push(FrameSlot { sequence, kind, iv, start, len });
        Ok(kind != BlockKind::Regular)
    }

    /// Reads ahead as far as the pipeline allows, then takes back the oldest job and decides how much of it
    /// may be released and which error follows.
    fn next_job(&mut self) -> Result<()> {
        while !self.input_done && !self.pipeline.is_full() {
            self.read_job();
        }
        let Some(job) = self.pipeline.next()? else {
            // Nothing in flight: reading failed right at a job boundary, or the message ended.
            return Err(self.read_error.take().unwrap_or_else(|| Error::Config("no body block left".into())));
        };
        self.frame = 0;
        self.released = 0;
        self.releasable = job.verified;
        if !job.all_verified() {
            // Frames before the damaged one verified and are released; nothing at or after it, ever.
            self.pending = Some(Error::FrameAuthentication { sequence: job.frames[job.verified].sequence });
        } else if job.frames.last().is_some_and(|f| f.kind != BlockKind::Regular) {
            // The final frame (or single block) comes out only once the footer and the end of input check
            // out.
            if let Err(e) = self.finish_message() {
                self.releasable -= 1;
                self.pending = Some(e);
            }
        } else if self.pipeline.in_flight() == 0 && self.input_done {
            self.pending = self.read_error.take();
        }
        self.current = Some(job);
        Ok(())
    }

    fn read_frame_prefix(&mut self) -> Result<(u32, BlockKind, [u8; IV_LEN], usize)> {
        let at = self.offset;
        let first = u32::from_be_bytes(self.read_array::<4>("frame")?);
        let frame_length = self.header.frame_length();
        let (sequence, is_final) = if first == FINAL_FRAME_MARKER {
            (u32::from_be_bytes(self.read_array::<4>("frame")?), true)
        } else {
            (first, false)
        };
        self.counter.expect(sequence, is_final, at)?;
        let iv = self.read_array::<IV_LEN>("frame")?;
        let len = if is_final {
            let len_at = self.offset;
            let len = u32::from_be_bytes(self.read_array::<4>("frame")?);
            if len > frame_length {
                return Err(Error::malformed(
                    len_at,
                    format!("final frame length {len} exceeds the frame length {frame_length}"),
                ));
            }
            len
        } else {
            frame_length
        };
        let kind = if is_final { BlockKind::Final } else { BlockKind::Regular };
        Ok((sequence, kind, iv, len as usize))
    }

    /// After the last block: the footer for signed suites, then nothing may follow.
    fn finish_message(&mut self) -> Result<()> {
        if let Some(verifier) = self.verifier.take() {
            let mut len = [0u8; 2];
            read_exact_or_truncated(&mut self.input, &mut len, self.offset, "footer")?;
            self.offset += 2;
            let len = usize::from(u16::from_be_bytes(len));
            let mut signature = vec![0u8; len];
            read_exact_or_truncated(&mut self.input, &mut signature, self.offset, "footer")?;
            self.offset += len as u64;
            verifier.verify(&signature)?;
        }
        let mut probe = [0u8; 1];
        loop {
            match self.input.read(&mut probe) {
                Ok(0) => break,
                Ok(_) => return Err(Error::TrailingData { offset: self.offset }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
        self.state = State::Done;
        Ok(())
    }
}

impl<R: Read> Decryptor<R> {
    /// Decrypts the rest of the message into `output`, writing each frame's plaintext straight from the
    /// buffer it was verified in (no intermediate copy), under the same release rules as `read`. Returns
    /// the number of bytes written once the whole message verified.
    ///
    /// On an error, what was written before it is exactly the plaintext of the frames before the damage,
    /// as with `read`: discard it (or use [`decrypt_to_path`](crate::decrypt_to_path)).
    ///
    /// # Errors
    ///
    /// As [`read_all`](Self::read_all) (the crate's [`Error`] inside the `io::Error`), and any error of
    /// `output`.
    ///
    /// # Panics
    ///
    /// Never: the `expect` states that released bytes always lie in the frame job being released.
    pub fn write_to<W: Write>(&mut self, mut output: W) -> io::Result<u64> {
        let mut total = 0;
        while let Some(range) = self.releasable_bytes()? {
            let job = self.current.as_ref().expect("releasable bytes lie in the current job");
            output.write_all(&job.buf[range.clone()])?;
            self.consume(range.len());
            total += range.len() as u64;
        }
        Ok(total)
    }

    /// The unreleased plaintext of the next frame that may be released, as a range of the current job's
    /// buffer, fetching and checking jobs as needed; `None` once the whole message verified and every byte
    /// was released. An error is reported only after everything releasable before it.
    fn releasable_bytes(&mut self) -> io::Result<Option<std::ops::Range<usize>>> {
        loop {
            if let Some(job) = &self.current {
                while self.frame < self.releasable {
                    let frame = &job.frames[self.frame];
                    if self.released < frame.len {
                        return Ok(Some(frame.start + self.released..frame.start + frame.len));
                    }
                    self.frame += 1;
                    self.released = 0;
                }
                if let Some(e) = self.pending.take() {
                    self.state = State::Failed;
                    self.error = Some(e.to_string());
                    return Err(e.into());
                }
                let job = self.current.take().expect("checked above");
                self.pipeline.recycle(job);
            }
            match self.state {
                State::Done => return Ok(None),
                State::Failed => {
                    let what = self.error.clone().unwrap_or_default();
                    return Err(io::Error::other(format!("decryption already failed: {what}")));
                }
                State::Body => {
                    if let Err(e) = self.next_job() {
                        self.state = State::Failed;
                        self.error = Some(e.to_string());
                        return Err(e.into());
                    }
                }
            }
        }
    }

    /// Marks `n` bytes of the current frame as released.
    fn consume(&mut self, n: usize) {
        self.released += n;
        let frame_len = self.current.as_ref().map_or(0, |job| job.frames[self.frame].len);
        if self.released == frame_len {
            self.frame += 1;
            self.released = 0;
        }
    }

    /// Whether the current job still holds plaintext that may be released (so that fetching it cannot
    /// meet an error first).
    fn current_has_releasable_bytes(&self) -> bool {
        self.current.as_ref().is_some_and(|job| {
            job.frames[self.frame.min(self.releasable)..self.releasable]
                .iter()
                .enumerate()
                .any(|(i, frame)| frame.len > if i == 0 { self.released } else { 0 })
        })
    }
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        // Once some bytes are out, stop where fetching more could meet an error: it is reported by the
        // next call, so that no released byte is lost to it.
        while n < out.len() && (n == 0 || self.current_has_releasable_bytes()) {
            let Some(range) = self.releasable_bytes()? else { break };
            let take = range.len().min(out.len() - n);
            let job = self.current.as_ref().expect("releasable bytes lie in the current job");
            out[n..n + take].copy_from_slice(&job.buf[range.start..range.start + take]);
            self.consume(take);
            n += take;
        }
        Ok(n)
    }
}
