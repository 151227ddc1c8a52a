//! The streaming encryptor: a `Write` that frames, seals and signs.

use std::io::{self, Read, Write};

use super::buffer;
use super::cmm::{PreparedEncryption, prepare_encrypt};
use super::options::EncryptOptions;
use super::pipeline::{Direction, FrameSlot, Job, Pipeline};
use crate::crypto::signature::MessageSigner;
use crate::error::{Error, Result};
use crate::format::frame::{BlockKind, FINAL_FRAME_MARKER, FrameCounter, frame_iv};
use crate::format::header::{IV_LEN, MessageId, TAG_LEN};
use crate::format::limits::DecryptLimits;
use crate::keyring::{Keyring, block_on};

/// A regular frame's prefix: sequence number and IV.
const REGULAR_PREFIX: usize = 4 + IV_LEN;

/// Encrypts a stream into an ESDK message written to `W`.
///
/// Bytes written are framed; frames are sealed and written in order as they fill (in groups once the
/// message is long enough for [`EncryptOptions::threads`] workers to share the work). You **must** call
/// [`finish`](Self::finish): it writes the final frame (and the signature for signed suites). An encryptor
/// dropped without `finish` leaves a message without its final frame, which every decryptor rejects.
///
/// ```
/// use kms_envelope::{EncryptOptions, Encryptor, RawAesKeyring};
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let keyring = RawAesKeyring::new("my-service", "key-1", &[0x42; 32])?;
///     let dir = tempfile::tempdir()?;
///     std::fs::write(dir.path().join("config.json"), br#"{"db_password": "hunter2"}"#)?;
///
///     let options = EncryptOptions::new().context("app", "billing");
///     let output = std::fs::File::create(dir.path().join("config.json.esdk"))?;
///     let mut encryptor = Encryptor::new(&keyring, &options, output)?;
///     encryptor.copy_from(std::fs::File::open(dir.path().join("config.json"))?)?; // or `write_all`
///     encryptor.finish()?.sync_all()?; // `finish` hands the output back
///     Ok(())
/// }
/// ```
pub struct Encryptor<W: Write> {
    output: W,
    suite_id: u16,
    message_id: MessageId,
    frame_length: usize,
    signer: Option<MessageSigner>,
    counter: FrameCounter,
    pipeline: Pipeline,
    /// The job being filled: closed regular frames in wire format, then the open frame, whose plaintext
    /// starts at `open` (the `REGULAR_PREFIX` bytes before it are reserved for its prefix).
    job: Job,
    open: usize,
    /// Plaintext bytes in closed frames so far.
    sealed_bytes: u64,
    /// The declared [`EncryptOptions::max_plaintext_length`].
    max_plaintext: Option<u64>,
    poisoned: bool,
}

impl<W: Write> std::fmt::Debug for Encryptor<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field("suite", &format_args!("0x{:04X}", self.suite_id))
            .field("message_id", &self.message_id)
            .field("frame_length", &self.frame_length)
            .finish_non_exhaustive()
    }
}

impl<W: Write> Encryptor<W> {
    /// Asks `keyring` for a data key, writes the header to `output` and returns the encryptor.
    ///
    /// # Errors
    ///
    /// What the keyring returns when it cannot produce a data key (for KMS, [`Error::Keyring`] with the
    /// call's [`Reason`](crate::Reason)); [`Error::CommitmentPolicy`], [`Error::EncryptionContext`] or
    /// [`Error::Config`] for options that cannot make a message; [`Error::Io`] when writing the header fails.
    pub fn new(keyring: &dyn Keyring, options: &EncryptOptions, output: W) -> Result<Self> {
        let prepared = block_on(prepare_encrypt(keyring, options, options.max_plaintext_length))?;
        Self::with_prepared(prepared, options, output)
    }

    /// Like [`new`](Self::new), for async callers whose keyring (KMS) must run on their runtime. The
    /// output is still a blocking `Write`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub async fn new_async(keyring: &dyn Keyring, options: &EncryptOptions, output: W) -> Result<Self> {
        let prepared = prepare_encrypt(keyring, options, options.max_plaintext_length).await?;
        Self::with_prepared(prepared, options, output)
    }

    pub(crate) fn with_prepared(prepared: PreparedEncryption, options: &EncryptOptions, mut output: W) -> Result<Self> {
        let PreparedEncryption { header, suite, message_id, frame_length, keys, mut signer } = prepared;
        output.write_all(&header)?;
        if let Some(signer) = &mut signer {
            signer.update(&header);
        }
        let frame_length = frame_length as usize;
        let mut pipeline = Pipeline::new(
            keys.content.clone(),
            message_id,
            Direction::Seal,
            options.parallelism,
            frame_length,
            REGULAR_PREFIX + frame_length + TAG_LEN,
            DecryptLimits::DEFAULT.max_frame_buffers,
        );
        let job = pipeline.take_job()?;
        let mut encryptor = Self {
            output,
            suite_id: suite.id(),
            message_id,
            frame_length,
            signer,
            counter: FrameCounter::new(),
            pipeline,
            job,
            open: 0,
            sealed_bytes: 0,
            max_plaintext: options.max_plaintext_length,
            poisoned: false,
        };
        encryptor.open_frame()?;
        Ok(encryptor)
    }

    /// The message id of the message being written.
    pub fn message_id(&self) -> &MessageId {
        &self.message_id
    }

    fn buffered(&self) -> usize {
        self.job.buf.len() - self.open
    }

    fn open_frame(&mut self) -> Result<()> {
        self.extend(&[0; REGULAR_PREFIX])?;
        self.open = self.job.buf.len();
        Ok(())
    }

    /// Appends `bytes` to the job, within its size.
    fn extend(&mut self, bytes: &[u8]) -> Result<()> {
        buffer::try_extend_within(&mut self.job.buf, bytes, self.job.cap)
    }

    /// Closes the open (full) frame as a regular frame, and starts the next one: in this job, or in a
    /// fresh one after handing this job over.
    fn close_regular(&mut self) -> Result<()> {
        let sequence = self.counter.next_regular()?;
        let iv = frame_iv(sequence);
        let start = self.open;
        self.job.buf[start - REGULAR_PREFIX..start - IV_LEN].copy_from_slice(&sequence.to_be_bytes());
        self.job.buf[start - IV_LEN..start].copy_from_slice(&iv);
        self.extend(&[0; TAG_LEN])?;
        let len = self.frame_length;
        self.job.frames.push(FrameSlot { sequence, kind: BlockKind::Regular, iv, start, len });
        self.sealed_bytes += len as u64;
        self.pipeline.maybe_start(self.sealed_bytes);
        // Once the workers run, the job being filled holds a job's worth of frames.
        self.job.cap = self.job.cap.max(self.pipeline.job_bytes());
        if self.job.frames.len() >= self.pipeline.frames_per_job() {
            self.submit()?;
        }
        self.open_frame()
    }

    /// Hands the current job over and writes every job that is done, waiting for the oldest while the
    /// number in flight is at its bound; only then takes the next job, so that no more jobs exist than the
    /// pipeline allows.
    fn submit(&mut self) -> Result<()> {
        let job = std::mem::replace(&mut self.job, Job::empty());
        self.pipeline.submit(job);
        while self.pipeline.is_full() {
            let done = self.pipeline.next()?.expect("a full pipeline has a job in flight");
            self.emit(done)?;
        }
        self.job = self.pipeline.take_job()?;
        Ok(())
    }

    /// Reads `input` to its end straight into the frames being built and encrypts it: what `io::copy`
    /// into this encryptor does, without the intermediate buffer and its copy. Returns the number of bytes
    /// read. The message still needs [`finish`](Self::finish).
    ///
    /// # Errors
    ///
    /// An error may come from `input` or from the output; bytes read before it are part of the message.
    /// After an error the encryptor is unusable: later calls and [`finish`](Self::finish) fail.
    pub fn copy_from<R: Read>(&mut self, mut input: R) -> io::Result<u64> {
        self.check_usable()?;
        let mut total = 0u64;
        loop {
            if self.buffered() == self.frame_length {
                self.close_regular()?;
            }
            let want = self.frame_length - self.buffered();
            // Read in place into the job (retrying on `Interrupted`), keeping what was read before an error.
            let before = self.job.buf.len();
            let read = buffer::read_append(&mut self.job.buf, &mut input, want, self.job.cap);
            total += (self.job.buf.len() - before) as u64;
            self.check_room(0)?;
            if read? < want {
                return Ok(total);
            }
        }
    }

    /// Signs and writes a sealed job, in wire order.
    fn emit(&mut self, job: Job) -> Result<()> {
        let written = match job.frames.last() {
            Some(last) if last.kind == BlockKind::Final => {
                // The final frame's prefix is longer than the space reserved for a regular one: write it
                // on its own between the frames before it and its body.
                let mut prefix = [0u8; 4 + 4 + IV_LEN + 4];
                prefix[..4].copy_from_slice(&FINAL_FRAME_MARKER.to_be_bytes());
                prefix[4..8].copy_from_slice(&last.sequence.to_be_bytes());
                prefix[8..20].copy_from_slice(&last.iv);
                prefix[20..].copy_from_slice(&(last.len as u32).to_be_bytes());
                let before = &job.buf[..last.start - REGULAR_PREFIX];
                let body = &job.buf[last.start..];
                self.write_signed(before)
                    .and_then(|()| self.write_signed(&prefix))
                    .and_then(|()| self.write_signed(body))
            }
            _ => self.write_signed(&job.buf),
        };
        self.pipeline.recycle(job);
        written.map_err(|e| {
            self.poisoned = true;
            Error::Io(e)
        })
    }

    fn write_signed(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(signer) = &mut self.signer {
            signer.update(bytes);
        }
        self.output.write_all(bytes)
    }

    /// Refuses (and poisons the message) when `more` bytes would take the plaintext past the declared
    /// maximum, which a caching keyring counted on.
    fn check_room(&mut self, more: u64) -> Result<()> {
        let Some(max) = self.max_plaintext else { return Ok(()) };
        let total = (self.sealed_bytes + self.buffered() as u64).saturating_add(more);
        if total > max {
            self.poisoned = true;
            return Err(Error::LimitExceeded { limit: "plaintext length", value: total, max });
        }
        Ok(())
    }

    fn check_usable(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Config("an earlier write failed; the message cannot be completed".into()));
        }
        Ok(())
    }

    /// Writes the final frame and, for signed suites, the footer; flushes and returns the output.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when writing or flushing the output fails; [`Error::Config`] when an earlier write
    /// failed (the message cannot be completed).
    pub fn finish(mut self) -> Result<W> {
        self.check_usable()?;
        // An exact multiple of the frame length ends with an empty final frame, as the Python ESDK writes:
        // ESDK-Python 3.x (and so aws-encryption-cli 4.3) rejects a final frame of the full frame length.
        if self.buffered() == self.frame_length {
            self.close_regular()?;
        }
        let sequence = self.counter.next_final()?;
        let (start, len) = (self.open, self.buffered());
        self.extend(&[0; TAG_LEN])?;
        self.job.frames.push(FrameSlot { sequence, kind: BlockKind::Final, iv: frame_iv(sequence), start, len });
        let job = std::mem::replace(&mut self.job, Job::empty());
        self.pipeline.submit(job);
        while let Some(done) = self.pipeline.next()? {
            self.emit(done)?;
        }
        if let Some(signer) = self.signer.take() {
            let signature = signer.sign()?;
            self.output.write_all(&(signature.len() as u16).to_be_bytes())?;
            self.output.write_all(&signature)?;
        }
        self.output.flush()?;
        Ok(self.output)
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check_usable()?;
        self.check_room(buf.len() as u64)?;
        let mut rest = buf;
        while !rest.is_empty() {
            // A full frame is sealed when more data arrives or at `finish`, which adds the empty final frame.
            if self.buffered() == self.frame_length {
                self.close_regular()?;
            }
            let take = (self.frame_length - self.buffered()).min(rest.len());
            self.extend(&rest[..take])?;
            rest = &rest[take..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.output.flush()
    }
}
