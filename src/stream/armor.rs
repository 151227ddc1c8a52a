//! Text armor: a message as standard base64 text, the form `aws-encryption-cli --encode` writes and
//! `--decode` reads, so that a message can travel inside YAML, JSON or a CI variable.
//!
//! The armor is the RFC 4648 standard alphabet (`A-Z a-z 0-9 + /`) with `=` padding, on one line, without a
//! final newline: byte for byte what the ESDK CLI's `Base64IO` writes (it encodes whole 3-byte groups as
//! they come and pads the last one on close). Reading, ASCII whitespace (space, tab, CR, LF, VT, FF) is
//! skipped anywhere, as `Base64IO` skips it, so wrapped lines (`base64` wraps at 76) and a final newline
//! are fine; anything else that is not base64 is refused, where Python's `b64decode` would silently drop
//! it and hand the decryptor other bytes.
//!
//! Both directions stream in constant memory: [`ArmorReader`] decodes through a fixed 16 KiB buffer,
//! [`ArmorWriter`] encodes through a 1 KiB one.
//!
//! ## Telling armor from a binary message
//!
//! [`is_armored`] decides from the first byte alone, and the two forms cannot be confused:
//! - a binary message starts with its version byte, `0x01` (format v1) or `0x02` (format v2);
//! - armor of a message starts with `A`: the first character encodes the top six bits of that version
//!   byte, which are zero for both versions (v1 armor begins `AY`, v2 armor `Ag`). Armor may also begin
//!   with whitespace (a YAML block, an indented paste).
//!
//! `0x01` and `0x02` are neither base64 characters nor whitespace, and `A` and the whitespace bytes are
//! not message versions, so no input is both. Any other first byte is neither form; it is read as binary,
//! and the header decoder refuses it as an unknown version. Armor is decoded once: armor of armor (it
//! begins `QW`) is not taken for armor, and its decoding (`AY...`/`Ag...`) is refused the same way.

use std::io::{self, Read, Write};

use base64::engine::general_purpose::STANDARD;

use crate::error::Error;

/// Whether a message input whose first byte is `first` is text armor rather than a binary message (see
/// the module documentation for why the two cannot be confused).
pub fn is_armored(first: u8) -> bool {
    first == b'A' || is_space(first)
}

/// The whitespace skipped inside armor: Python's `string.whitespace`, which the ESDK CLI skips.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// The value of a standard base64 character, or [`NOT_BASE64`].
const fn sextet_table() -> [u8; 256] {
    let mut table = [NOT_BASE64; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
}

const NOT_BASE64: u8 = 0xff;
const SEXTETS: [u8; 256] = sextet_table();

/// Armor text read from the inner reader at a time.
const TEXT_BUFFER: usize = 16 << 10;

/// A reader of the message that the base64 armor read from `inner` encodes, decoded as it is read.
///
/// Errors are [`Error::MalformedArmor`] (inside the [`io::Error`], as the decryptor's own are) with the
/// byte offset in the text: a byte that is neither base64 nor whitespace, padding (`=`) where a group
/// cannot end, text after the padded last group, padding bits that are not zero (armor that no encoder
/// writes), and text that ends inside a 4-character group (cut short).
pub struct ArmorReader<R> {
    inner: R,
    text: Box<[u8]>,
    /// The unread part of `text` is `text[at..filled]`.
    at: usize,
    filled: usize,
    /// Offset in the armor text of `text[at]`.
    offset: u64,
    /// The sextets of the group being read, and how many it has.
    group: [u8; 4],
    in_group: usize,
    /// `=` met in the group being read.
    padding: usize,
    /// A padded group ended the armor: only whitespace may follow.
    ended: bool,
    /// Decoded bytes not yet returned: `decoded[next..len]`.
    decoded: [u8; 3],
    next: usize,
    len: usize,
}

impl<R: Read> ArmorReader<R> {
    /// A reader of the message whose armor `inner` holds, from its first byte.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            text: vec![0; TEXT_BUFFER].into_boxed_slice(),
            at: 0,
            filled: 0,
            offset: 0,
            group: [0; 4],
            in_group: 0,
            padding: 0,
            ended: false,
            decoded: [0; 3],
            next: 0,
            len: 0,
        }
    }

    fn refused(&self, offset: u64, what: String) -> io::Error {
        Error::MalformedArmor { offset, what }.into()
    }

    /// Takes one character of armor at `offset`; a complete group's bytes go to `decoded`.
    fn take(&mut self, byte: u8, offset: u64) -> io::Result<()> {
        if is_space(byte) {
            return Ok(());
        }
        if self.ended {
            return Err(self.refused(offset, "text after the padded last group".into()));
        }
        if byte == b'=' {
            if self.in_group < 2 {
                return Err(self.refused(offset, "padding (=) where a 4-character group cannot end".into()));
            }
            self.padding += 1;
            self.group[self.in_group] = 0;
        } else {
            let sextet = SEXTETS[usize::from(byte)];
            if sextet == NOT_BASE64 {
                return Err(self.refused(
                    offset,
                    format!("byte 0x{byte:02X} is not standard base64 (A-Z a-z 0-9 + / and = padding)"),
                ));
            }
            if self.padding > 0 {
                return Err(self.refused(offset, "a character after padding (=) inside a group".into()));
            }
            self.group[self.in_group] = sextet;
        }
        self.in_group += 1;
        if self.in_group == 4 {
            let [a, b, c, d] = self.group;
            let bits = (u32::from(a) << 18) | (u32::from(b) << 12) | (u32::from(c) << 6) | u32::from(d);
            // The bits that padding stands for must be zero: only then is the armor the one an encoder writes.
            let unused = match self.padding {
                1 => bits & 0xff,
                2 => bits & 0xffff,
                _ => 0,
            };
            if unused != 0 {
                return Err(self.refused(offset, "padding bits that are not zero (not written by an encoder)".into()));
            }
            self.decoded = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
            (self.next, self.len) = (0, 3 - self.padding);
            self.ended = self.padding > 0;
            self.in_group = 0;
        }
        Ok(())
    }
}

impl<R> ArmorReader<R> {
    /// The fast path: decodes the run of whole 4-character groups of plain base64 (no whitespace, no
    /// padding) at the start of the text in hand straight into `out`, as far as `out` holds them, and
    /// returns the bytes written. What it stops at is left to [`take`](Self::take), which knows the rules.
    fn whole_groups(&mut self, out: &mut [u8]) -> usize {
        if self.in_group != 0 || self.ended || self.next != self.len {
            return 0;
        }
        let groups = (out.len() / 3).min((self.filled - self.at) / 4);
        let text = &self.text[self.at..self.at + groups * 4];
        let mut done = 0;
        for (chars, bytes) in text.chunks_exact(4).zip(out.chunks_exact_mut(3)) {
            let [a, b, c, d] = [0, 1, 2, 3].map(|i| SEXTETS[usize::from(chars[i])]);
            // A valid sextet is below 64; NOT_BASE64 (and so `=`) has the top bits set.
            if (a | b | c | d) & 0xc0 != 0 {
                break;
            }
            let bits = (u32::from(a) << 18) | (u32::from(b) << 12) | (u32::from(c) << 6) | u32::from(d);
            bytes.copy_from_slice(&[(bits >> 16) as u8, (bits >> 8) as u8, bits as u8]);
            done += 1;
        }
        self.at += done * 4;
        self.offset += done as u64 * 4;
        done * 3
    }
}

impl<R: Read> Read for ArmorReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < out.len() {
            if self.next < self.len {
                let n = (self.len - self.next).min(out.len() - written);
                out[written..written + n].copy_from_slice(&self.decoded[self.next..self.next + n]);
                (self.next, written) = (self.next + n, written + n);
                continue;
            }
            if self.at == self.filled {
                // Return what is decoded rather than wait for more text.
                if written > 0 {
                    break;
                }
                let got = self.inner.read(&mut self.text)?;
                if got == 0 {
                    if self.in_group > 0 {
                        return Err(
                            self.refused(self.offset, "the text ends inside a 4-character group (cut short?)".into())
                        );
                    }
                    break;
                }
                (self.at, self.filled) = (0, got);
            }
            written += self.whole_groups(&mut out[written..]);
            // Characters one at a time (whitespace, padding, a refusal) until a group completes or the text
            // in hand ends.
            while self.at < self.filled && self.next == self.len {
                let (byte, offset) = (self.text[self.at], self.offset);
                self.at += 1;
                self.offset += 1;
                self.take(byte, offset)?;
            }
        }
        Ok(written)
    }
}

impl<R> std::fmt::Debug for ArmorReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmorReader").field("offset", &self.offset).finish_non_exhaustive()
    }
}

/// A writer that armors what is written to it into `inner`: standard base64 with padding, one line, no
/// final newline (the bytes `aws-encryption-cli --encode` writes).
///
/// You MUST call [`finish`](Self::finish): the last one or two bytes of a message wait there for their
/// group, and without it the armor is cut short.
pub struct ArmorWriter<W: Write> {
    encoder: base64::write::EncoderWriter<'static, base64::engine::GeneralPurpose, W>,
}

impl<W: Write> ArmorWriter<W> {
    /// A writer armoring into `inner`.
    pub fn new(inner: W) -> Self {
        Self { encoder: base64::write::EncoderWriter::new(inner, &STANDARD) }
    }

    /// Writes the last, padded group and returns `inner` (not flushed).
    ///
    /// # Errors
    ///
    /// The error writing to `inner` returned.
    pub fn finish(mut self) -> io::Result<W> {
        self.encoder.finish()
    }
}

impl<W: Write> Write for ArmorWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.encoder.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

impl<W: Write> std::fmt::Debug for ArmorWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmorWriter").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `text` with reads of at most `chunk` bytes.
    fn decode(text: &[u8], chunk: usize) -> Result<Vec<u8>, Error> {
        let mut reader = ArmorReader::new(text);
        let mut out = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return Err(Error::from_io(e)),
            }
        }
    }

    fn refusal(text: &[u8]) -> (u64, String) {
        match decode(text, 64) {
            Err(Error::MalformedArmor { offset, what }) => (offset, what),
            other => panic!("{:?}: expected a refusal, got {other:?}", String::from_utf8_lossy(text)),
        }
    }

    #[test]
    fn decodes_rfc4648_vectors_in_any_read_size() {
        // RFC 4648 section 10.
        let vectors: [(&[u8], &[u8]); 7] = [
            (b"", b""),
            (b"Zg==", b"f"),
            (b"Zm8=", b"fo"),
            (b"Zm9v", b"foo"),
            (b"Zm9vYg==", b"foob"),
            (b"Zm9vYmE=", b"fooba"),
            (b"Zm9vYmFy", b"foobar"),
        ];
        for (text, bytes) in vectors {
            for chunk in [1, 2, 3, 5, 64] {
                assert_eq!(decode(text, chunk).unwrap(), bytes, "{text:?} read {chunk} at a time");
            }
        }
    }

    #[test]
    fn long_text_decodes_alike_in_one_line_and_wrapped() {
        use base64::Engine as _;
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 131 % 251) as u8).collect();
        let line = STANDARD.encode(&bytes).into_bytes();
        let wrapped: Vec<u8> = line.chunks(76).flat_map(|l| [l, b"\r\n"].concat()).collect();
        for text in [&line, &wrapped] {
            for chunk in [1, 7, 4096, 65536] {
                assert_eq!(decode(text, chunk).unwrap(), bytes, "read {chunk} at a time");
            }
        }
    }

    #[test]
    fn skips_whitespace_anywhere_as_the_esdk_cli_does() {
        assert_eq!(decode(b" \tZm9v\r\nYm\x0bFy\x0c\n", 4).unwrap(), b"foobar");
        assert_eq!(decode(b"Zm8\n=\n", 1).unwrap(), b"fo");
    }

    #[test]
    fn refuses_what_is_not_armor_with_its_offset() {
        let (offset, what) = refusal(b"Zm9v-mFy");
        assert_eq!(offset, 4);
        assert!(what.contains("0x2D"), "{what}");
        assert_eq!(refusal(b"Zm9vYmF").0, 7, "cut inside a group");
        assert_eq!(refusal(b"Zm9vY===").0, 5, "padding after one character");
        assert_eq!(refusal(b"Zg==Zg==").0, 4, "text after the padded group");
        assert_eq!(refusal(b"Zg=g").0, 3, "a character after padding");
        assert_eq!(refusal(b"Zh==").0, 3, "non-zero padding bits");
        assert_eq!(refusal(b"Zm9\xc3\xa9").0, 3, "non-ASCII");
    }

    #[test]
    fn writes_what_the_reference_encoder_writes() {
        use base64::Engine as _;
        for len in 0..8 {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8 * 37).collect();
            let mut writer = ArmorWriter::new(Vec::new());
            for byte in &bytes {
                writer.write_all(std::slice::from_ref(byte)).unwrap();
            }
            let text = writer.finish().unwrap();
            assert_eq!(text, STANDARD.encode(&bytes).into_bytes());
            assert_eq!(decode(&text, 7).unwrap(), bytes);
        }
    }

    #[test]
    fn tells_armor_from_both_message_versions() {
        use base64::Engine as _;
        for version in [1u8, 2] {
            assert!(!is_armored(version));
            let armor = STANDARD.encode([version, 0x80, 0x04, 0x78]);
            assert!(is_armored(armor.as_bytes()[0]), "{armor}");
        }
        assert!(is_armored(b'\n') && is_armored(b' '));
        assert!(!is_armored(b'Q'), "armor of armor is not armor of a message");
    }
}
