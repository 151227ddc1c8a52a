//! The streaming decryptor: a `Read` that hands out plaintext only after it authenticated.

use std::io::{self, Read};

use zeroize::Zeroizing;

use super::cmm::{OpenedHeader, open_header};
use super::options::DecryptOptions;
use crate::crypto::MessageKeys;
use crate::crypto::signature::MessageVerifier;
use crate::error::{Error, Result};
use crate::format::context::EncryptionContext;
use crate::format::frame::{BlockKind, BodyAad, FINAL_FRAME_MARKER, FrameCounter};
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
/// write plaintext somewhere must discard it on error (the CLI's decrypt-to-file does this).
pub struct Decryptor<R: Read> {
    input: R,
    header: Header,
    context: EncryptionContext,
    keys: MessageKeys,
    verifier: Option<MessageVerifier>,
    counter: FrameCounter,
    limits: DecryptLimits,
    /// Ciphertext while a block is read, plaintext once it verified; `released` bytes handed out.
    block: Zeroizing<Vec<u8>>,
    released: usize,
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
    pub fn new(keyring: &dyn Keyring, options: &DecryptOptions, mut input: R) -> Result<Self> {
        let header = HeaderDecoder::read_from(options.limits, &mut input)?;
        let opened = block_on(open_header(keyring, options, &header))?;
        Ok(Self::with_opened(header, opened, options.limits, input))
    }

    /// Like [`new`](Self::new), for async callers whose keyring (KMS) must run on their runtime. The input
    /// is still a blocking `Read`.
    pub async fn new_async(keyring: &dyn Keyring, options: &DecryptOptions, mut input: R) -> Result<Self> {
        let header = HeaderDecoder::read_from(options.limits, &mut input)?;
        let opened = open_header(keyring, options, &header).await?;
        Ok(Self::with_opened(header, opened, options.limits, input))
    }

    fn with_opened(header: Header, opened: OpenedHeader, limits: DecryptLimits, input: R) -> Self {
        let OpenedHeader { keys, mut verifier, context } = opened;
        if let Some(verifier) = &mut verifier {
            verifier.update(header.as_bytes());
        }
        let offset = header.as_bytes().len() as u64;
        Self {
            input,
            header,
            context,
            keys,
            verifier,
            counter: FrameCounter::new(),
            limits,
            block: Zeroizing::new(Vec::new()),
            released: 0,
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
        self.state == State::Done && self.released == self.block.len()
    }

    /// Reads the whole plaintext into a vector (which is not zeroized; prefer `read` into your own buffer
    /// for secrets) and returns it after every check passed.
    pub fn read_all(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_to_end(&mut out).map_err(Error::from_io)?;
        Ok(out)
    }

    fn fill(&mut self, len: usize, section: &'static str) -> Result<()> {
        let start = self.block.len();
        // Grow with the data actually received, so a header that promises a large frame costs nothing
        // until the bytes arrive.
        let got = (&mut self.input).take(len as u64).read_to_end(&mut self.block).map_err(Error::from_io)?;
        if got < len {
            return Err(Error::Truncated { offset: self.offset + (start + got) as u64, section });
        }
        Ok(())
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

    /// Reads, verifies and decrypts the next block into `self.block`.
    fn next_block(&mut self) -> Result<()> {
        self.block.clear();
        self.released = 0;
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
        self.fill(len + TAG_LEN, "frame")?;
        if let Some(v) = &mut self.verifier {
            v.update(&self.block);
        }
        self.offset += (len + TAG_LEN) as u64;
        let tag: [u8; TAG_LEN] = self.block[len..].try_into().expect("filled len + TAG_LEN bytes");
        self.block.truncate(len);
        let aad = BodyAad::new(self.header.message_id(), kind, sequence, len as u64);
        if self.keys.content.open_in_place(&iv, aad.as_bytes(), &mut self.block, &tag).is_err() {
            self.block.clear();
            return Err(Error::FrameAuthentication { sequence });
        }
        if kind != BlockKind::Regular {
            if let Err(e) = self.finish_message() {
                self.block.clear();
                return Err(e);
            }
        }
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

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.released < self.block.len() {
                let n = (self.block.len() - self.released).min(out.len());
                out[..n].copy_from_slice(&self.block[self.released..self.released + n]);
                self.released += n;
                return Ok(n);
            }
            match self.state {
                State::Done => return Ok(0),
                State::Failed => {
                    let what = self.error.clone().unwrap_or_default();
                    return Err(io::Error::other(format!("decryption already failed: {what}")));
                }
                State::Body => {
                    if let Err(e) = self.next_block() {
                        self.state = State::Failed;
                        self.error = Some(e.to_string());
                        return Err(e.into());
                    }
                }
            }
        }
    }
}
