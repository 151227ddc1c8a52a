//! The streaming encryptor: a `Write` that frames, seals and signs.

use std::io::{self, Write};

use zeroize::Zeroizing;

use super::cmm::{PreparedEncryption, prepare_encrypt};
use super::options::EncryptOptions;
use crate::crypto::MessageKeys;
use crate::crypto::signature::MessageSigner;
use crate::error::{Error, Result};
use crate::format::frame::{BlockKind, BodyAad, FINAL_FRAME_MARKER, FrameCounter, frame_iv};
use crate::format::header::{IV_LEN, MessageId, TAG_LEN};
use crate::keyring::{Keyring, block_on};

/// Room before the plaintext for the longest frame prefix: marker, sequence number, IV, content length.
const PREFIX: usize = 4 + 4 + IV_LEN + 4;
/// Plaintext buffer reserved up front at most; larger frames grow as data arrives.
const MAX_RESERVE: usize = 16 << 20;

/// Encrypts a stream into an ESDK message written to `W`.
///
/// Bytes written are framed and each full frame is sealed and written at once. You **must** call
/// [`finish`](Self::finish): it writes the final frame (and the signature for signed suites). An encryptor
/// dropped without `finish` leaves a message without its final frame, which every decryptor rejects.
pub struct Encryptor<W: Write> {
    output: W,
    suite_id: u16,
    message_id: MessageId,
    frame_length: usize,
    keys: MessageKeys,
    signer: Option<MessageSigner>,
    counter: FrameCounter,
    /// `PREFIX` bytes of frame prefix, then the plaintext of the frame being filled, then room for the tag.
    frame: Zeroizing<Vec<u8>>,
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
    pub fn new(keyring: &dyn Keyring, options: &EncryptOptions, output: W) -> Result<Self> {
        let prepared = block_on(prepare_encrypt(keyring, options))?;
        Self::with_prepared(prepared, output)
    }

    /// Like [`new`](Self::new), for async callers whose keyring (KMS) must run on their runtime. The
    /// output is still a blocking `Write`.
    pub async fn new_async(keyring: &dyn Keyring, options: &EncryptOptions, output: W) -> Result<Self> {
        let prepared = prepare_encrypt(keyring, options).await?;
        Self::with_prepared(prepared, output)
    }

    fn with_prepared(prepared: PreparedEncryption, mut output: W) -> Result<Self> {
        let PreparedEncryption { header, suite, message_id, frame_length, keys, mut signer } = prepared;
        output.write_all(&header)?;
        if let Some(signer) = &mut signer {
            signer.update(&header);
        }
        let frame_length = frame_length as usize;
        let mut frame = Zeroizing::new(Vec::with_capacity(PREFIX + frame_length.min(MAX_RESERVE) + TAG_LEN));
        frame.resize(PREFIX, 0);
        Ok(Self {
            output,
            suite_id: suite.id(),
            message_id,
            frame_length,
            keys,
            signer,
            counter: FrameCounter::new(),
            frame,
            poisoned: false,
        })
    }

    /// The message id of the message being written.
    pub fn message_id(&self) -> &MessageId {
        &self.message_id
    }

    fn buffered(&self) -> usize {
        self.frame.len() - PREFIX
    }

    /// Seals the buffered plaintext as a regular or the final frame and writes it.
    fn seal_frame(&mut self, is_final: bool) -> Result<()> {
        let len = self.buffered();
        let (sequence, kind, start) = if is_final {
            (self.counter.next_final()?, BlockKind::Final, 0)
        } else {
            (self.counter.next_regular()?, BlockKind::Regular, 8)
        };
        let iv = frame_iv(sequence);
        let aad = BodyAad::new(&self.message_id, kind, sequence, len as u64);
        let tag = self.keys.content.seal_in_place(&iv, aad.as_bytes(), &mut self.frame[PREFIX..]);
        self.frame.extend_from_slice(&tag);
        let prefix = &mut self.frame[..PREFIX];
        if is_final {
            prefix[..4].copy_from_slice(&FINAL_FRAME_MARKER.to_be_bytes());
            prefix[4..8].copy_from_slice(&sequence.to_be_bytes());
            prefix[8..20].copy_from_slice(&iv);
            prefix[20..24].copy_from_slice(&(len as u32).to_be_bytes());
        } else {
            prefix[8..12].copy_from_slice(&sequence.to_be_bytes());
            prefix[12..24].copy_from_slice(&iv);
        }
        let bytes = &self.frame[start..];
        if let Some(signer) = &mut self.signer {
            signer.update(bytes);
        }
        let written = self.output.write_all(bytes);
        self.frame.truncate(PREFIX);
        written.map_err(|e| {
            self.poisoned = true;
            Error::Io(e)
        })
    }

    fn check_usable(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Config("an earlier write failed; the message cannot be completed".into()));
        }
        Ok(())
    }

    /// Writes the final frame and, for signed suites, the footer; flushes and returns the output.
    pub fn finish(mut self) -> Result<W> {
        self.check_usable()?;
        self.seal_frame(true)?;
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
        let mut rest = buf;
        while !rest.is_empty() {
            // Seal a full frame only once more data arrives: a plaintext that is an exact multiple of the
            // frame length then ends with a full final frame instead of an extra empty one (both encodings
            // are legal; .NET and the Dafny ESDK write this one).
            if self.buffered() == self.frame_length {
                self.seal_frame(false)?;
            }
            let take = (self.frame_length - self.buffered()).min(rest.len());
            self.frame.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.output.flush()
    }
}
