//! Framed and non-framed bodies (format notes §8): body AAD, IVs and the frame sequence.

use super::header::{IV_LEN, MessageId};
use crate::error::{Error, Result};

/// Marks a final frame where a regular frame's sequence number would stand.
pub const FINAL_FRAME_MARKER: u32 = 0xFFFF_FFFF;

/// Which kind of body block an AAD is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// A regular frame.
    Regular,
    /// The final frame.
    Final,
    /// The single block of a non-framed body.
    SingleBlock,
}

impl BlockKind {
    fn label(self) -> &'static [u8] {
        match self {
            BlockKind::Regular => b"AWSKMSEncryptionClient Frame",
            BlockKind::Final => b"AWSKMSEncryptionClient Final Frame",
            BlockKind::SingleBlock => b"AWSKMSEncryptionClient Single Block",
        }
    }
}

/// The body AAD: message id || label || u32 sequence number || u64 plaintext length. At most 32 + 35 + 12
/// bytes, so it lives on the stack.
pub struct BodyAad {
    bytes: [u8; 80],
    len: usize,
}

impl BodyAad {
    /// The AAD of one block.
    pub fn new(message_id: &MessageId, kind: BlockKind, sequence: u32, plaintext_len: u64) -> Self {
        let mut bytes = [0u8; 80];
        let mut len = 0;
        for part in [message_id.as_bytes(), kind.label(), &sequence.to_be_bytes(), &plaintext_len.to_be_bytes()] {
            bytes[len..len + part.len()].copy_from_slice(part);
            len += part.len();
        }
        Self { bytes, len }
    }

    /// The AAD bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The IV an encryptor writes for a frame: eight zero bytes and the sequence number. Decryptors use the IV
/// stored in the frame instead, because public messages carry other IVs (format notes §8.2).
pub fn frame_iv(sequence: u32) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    iv[8..].copy_from_slice(&sequence.to_be_bytes());
    iv
}

/// Frame sequence numbers, 1, 2, 3, …: cannot produce 0, cannot skip, cannot give a regular frame the final
/// marker's value, and refuses any frame after the final one.
#[derive(Debug)]
pub struct FrameCounter {
    next: u32,
    final_seen: bool,
}

impl Default for FrameCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameCounter {
    /// A counter before the first frame.
    pub const fn new() -> Self {
        Self { next: 1, final_seen: false }
    }

    /// Sequence number for the next regular frame (encrypt side).
    pub fn next_regular(&mut self) -> Result<u32> {
        if self.final_seen {
            return Err(Error::Config("no frame may follow the final frame".into()));
        }
        if self.next == FINAL_FRAME_MARKER {
            return Err(Error::LimitExceeded {
                limit: "frame count",
                value: u64::from(self.next),
                max: u64::from(FINAL_FRAME_MARKER - 1),
            });
        }
        let seq = self.next;
        self.next += 1;
        Ok(seq)
    }

    /// Sequence number for the final frame (encrypt side). The counter is then spent.
    pub fn next_final(&mut self) -> Result<u32> {
        if self.final_seen {
            return Err(Error::Config("the final frame was already written".into()));
        }
        self.final_seen = true;
        Ok(self.next)
    }

    /// Checks a frame read from a message (decrypt side) and advances. `offset` locates it for errors.
    pub fn expect(&mut self, sequence: u32, is_final: bool, offset: u64) -> Result<()> {
        if self.final_seen {
            return Err(Error::TrailingData { offset });
        }
        if sequence != self.next {
            return Err(Error::malformed(offset, format!("frame sequence number {sequence}, expected {}", self.next)));
        }
        if is_final {
            self.final_seen = true;
        } else if self.next == FINAL_FRAME_MARKER - 1 {
            // The next frame could only be numbered 0xFFFFFFFF, which is the marker: it must be final.
            self.next = FINAL_FRAME_MARKER;
        } else {
            self.next += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_starts_at_one_and_never_skips() {
        let mut c = FrameCounter::new();
        assert_eq!(c.next_regular().unwrap(), 1);
        assert_eq!(c.next_regular().unwrap(), 2);
        assert_eq!(c.next_final().unwrap(), 3);
        assert!(c.next_regular().is_err());
        assert!(c.next_final().is_err());

        let mut d = FrameCounter::new();
        assert!(d.expect(2, false, 0).is_err());
        d.expect(1, false, 0).unwrap();
        assert!(d.expect(1, false, 0).is_err());
        d.expect(2, true, 0).unwrap();
        assert!(matches!(d.expect(3, true, 9), Err(Error::TrailingData { offset: 9 })));
    }

    #[test]
    fn a_regular_frame_never_carries_the_marker() {
        let mut c = FrameCounter { next: FINAL_FRAME_MARKER - 1, final_seen: false };
        assert_eq!(c.next_regular().unwrap(), FINAL_FRAME_MARKER - 1);
        assert!(c.next_regular().is_err());
        assert_eq!(c.next_final().unwrap(), FINAL_FRAME_MARKER);
    }

    #[test]
    fn aad_layout() {
        let id = MessageId::random(super::super::suite::MessageFormat::V2);
        let aad = BodyAad::new(&id, BlockKind::Final, 7, 0x0102);
        let b = aad.as_bytes();
        assert_eq!(b.len(), 32 + 34 + 4 + 8);
        assert_eq!(&b[32..66], b"AWSKMSEncryptionClient Final Frame");
        assert_eq!(&b[66..70], &[0, 0, 0, 7]);
        assert_eq!(&b[70..], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(frame_iv(258), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
    }
}
