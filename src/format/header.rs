//! The message header (format notes §2, §3): a writer for encrypt and a sans-I/O decoder for decrypt.
//!
//! The decoder asks for exactly the bytes of the next field and never reads past the header, so the same
//! decoder serves blocking and async readers, and header authentication runs over the bytes as received.

use super::context::EncryptionContext;
use super::edk::EncryptedDataKey;
use super::limits::DecryptLimits;
use super::suite::{AlgorithmSuite, MessageFormat};
use crate::error::{Error, Result};

/// Length of every AES-GCM IV in the format.
pub const IV_LEN: usize = 12;
/// Length of every AES-GCM tag in the format.
pub const TAG_LEN: usize = 16;
/// Length of the v2 key commitment (the suite data field).
pub const COMMITMENT_LEN: usize = 32;

const V1_TYPE: u8 = 0x80;

/// How the body is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// One AES-GCM block over the whole plaintext. Legacy: decrypted, never written.
    NonFramed,
    /// A sequence of frames of the header's frame length.
    Framed,
}

impl ContentType {
    const fn byte(self) -> u8 {
        match self {
            ContentType::NonFramed => 1,
            ContentType::Framed => 2,
        }
    }
}

/// A message id: 16 random bytes in v1 messages, 32 in v2.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId {
    bytes: [u8; 32],
    len: u8,
}

impl MessageId {
    /// A fresh random id of the length `format` uses.
    ///
    /// Not part of the API's promises (see the crate docs, "API promises"): for the crate's own tests and
    /// the fuzz targets, which build and take apart headers by hand.
    #[doc(hidden)]
    pub fn random(format: MessageFormat) -> Self {
        let mut bytes = [0u8; 32];
        let len = format.message_id_len();
        rand::fill(&mut bytes[..len]);
        Self { bytes, len: len as u8 }
    }

    /// An id from its bytes: 16 (v1) or 32 (v2) of them.
    ///
    /// Not part of the API's promises (see the crate docs, "API promises"): for the crate's own tests and
    /// the fuzz targets, which build and take apart headers by hand.
    #[doc(hidden)]
    pub fn from_bytes(slice: &[u8]) -> Option<Self> {
        if slice.len() != 16 && slice.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 32];
        bytes[..slice.len()].copy_from_slice(slice);
        Some(Self { bytes, len: slice.len() as u8 })
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageId(")?;
        self.as_bytes().iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        write!(f, ")")
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_bytes().iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A message's header: its suite, message id, encryption context and encrypted data keys.
///
/// A [`Decryptor`](crate::Decryptor) hands out a header it has authenticated. [`Header::read_from`] reads
/// one without any key, to see which keys and context a message names; nothing in it is authenticated
/// then.
///
/// ```
/// use kms_envelope::{DecryptLimits, EncryptOptions, Header, RawAesKeyring};
///
/// # fn main() -> Result<(), kms_envelope::Error> {
/// let keyring = RawAesKeyring::new("my-service", "secrets-key-1", &[0x42u8; 32])?;
/// let options = EncryptOptions::new().context("purpose", "example");
/// let message = kms_envelope::encrypt(&keyring, &options, b"database password")?;
///
/// let header = Header::read_from(DecryptLimits::default(), &mut &message[..])?;
/// assert_eq!(header.suite().id(), 0x0478);
/// assert_eq!(header.encryption_context().get("purpose"), Some("example"));
/// assert_eq!(header.encrypted_data_keys()[0].provider_id, "my-service");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Header {
    suite: AlgorithmSuite,
    message_id: MessageId,
    context: EncryptionContext,
    edks: Vec<EncryptedDataKey>,
    content_type: ContentType,
    frame_length: u32,
    commitment: Option<[u8; COMMITMENT_LEN]>,
    header_iv: [u8; IV_LEN],
    auth_tag: [u8; TAG_LEN],
    /// Every header byte as received or written: body, v1 IV, tag.
    raw: Vec<u8>,
    body_len: usize,
}

impl Header {
    /// Reads a header from `reader`, exactly its bytes (the body stays unread), without a key: unlike the
    /// header a [`Decryptor`](crate::Decryptor) hands out, this one is not authenticated, so what it says
    /// (context, key names) is the sender's claim until a decryptor has verified it.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if the reader ends inside the header, [`Error::Io`] if it fails,
    /// [`Error::Malformed`] or [`Error::UnsupportedSuite`] for a header that is not one, and
    /// [`Error::LimitExceeded`] for one beyond `limits`.
    pub fn read_from(limits: DecryptLimits, reader: &mut impl std::io::Read) -> Result<Header> {
        HeaderDecoder::read_from(limits, reader)
    }

    /// The algorithm suite.
    pub fn suite(&self) -> AlgorithmSuite {
        self.suite
    }

    /// The message id.
    pub fn message_id(&self) -> &MessageId {
        &self.message_id
    }

    /// The encryption context stored in the header (required-context pairs are not stored).
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.context
    }

    /// The encrypted data keys.
    pub fn encrypted_data_keys(&self) -> &[EncryptedDataKey] {
        &self.edks
    }

    /// Framed or non-framed.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// The frame length; 0 for a non-framed body.
    pub fn frame_length(&self) -> u32 {
        self.frame_length
    }

    /// The stored key commitment, for v2 messages.
    pub fn commitment(&self) -> Option<&[u8; COMMITMENT_LEN]> {
        self.commitment.as_ref()
    }

    /// The IV header authentication uses: stored in v1 headers, zero in v2.
    pub fn header_iv(&self) -> &[u8; IV_LEN] {
        &self.header_iv
    }

    /// The header authentication tag.
    pub fn auth_tag(&self) -> &[u8; TAG_LEN] {
        &self.auth_tag
    }

    /// The header body: the bytes header authentication covers (everything before the v1 IV and the tag).
    pub fn body_bytes(&self) -> &[u8] {
        &self.raw[..self.body_len]
    }

    /// The whole header as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }
}

/// What the encryptor decided; serialized by [`HeaderBody::serialize`].
pub struct HeaderBody<'a> {
    /// The suite.
    pub suite: AlgorithmSuite,
    /// The message id, of the suite's length.
    pub message_id: MessageId,
    /// The context pairs to store (the materials' context minus required-context pairs).
    pub stored_context: &'a EncryptionContext,
    /// The encrypted data keys, at least one.
    pub edks: &'a [EncryptedDataKey],
    /// Frame length, at least 1.
    pub frame_length: u32,
    /// The commitment, for v2 suites.
    pub commitment: Option<[u8; COMMITMENT_LEN]>,
}

impl HeaderBody<'_> {
    /// The header body bytes, which header authentication covers.
    pub fn serialize(&self) -> Result<Vec<u8>> {
        let context = self.stored_context.serialize()?;
        let mut out = Vec::with_capacity(64 + context.len());
        match self.suite.message_format() {
            MessageFormat::V1 => out.extend_from_slice(&[1, V1_TYPE]),
            MessageFormat::V2 => out.push(2),
        }
        out.extend_from_slice(&self.suite.id().to_be_bytes());
        out.extend_from_slice(self.message_id.as_bytes());
        out.extend_from_slice(&(context.len() as u16).to_be_bytes());
        out.extend_from_slice(&context);
        let count = u16::try_from(self.edks.len()).ok().filter(|&n| n > 0).ok_or_else(|| {
            Error::Keyring(format!("{} encrypted data keys; 1 to 65535 allowed", self.edks.len()).into())
        })?;
        out.extend_from_slice(&count.to_be_bytes());
        for edk in self.edks {
            edk.write_to(&mut out)?;
        }
        out.push(ContentType::Framed.byte());
        if self.suite.message_format() == MessageFormat::V1 {
            out.extend_from_slice(&[0, 0, 0, 0, IV_LEN as u8]);
        }
        out.extend_from_slice(&self.frame_length.to_be_bytes());
        if let Some(commitment) = &self.commitment {
            out.extend_from_slice(commitment);
        }
        Ok(out)
    }
}

/// Assembles a full header from its body, the v1 header IV (zeros) and the tag.
pub fn assemble(mut body: Vec<u8>, suite: AlgorithmSuite, tag: &[u8; TAG_LEN]) -> Vec<u8> {
    if suite.message_format() == MessageFormat::V1 {
        body.extend_from_slice(&[0u8; IV_LEN]);
    }
    body.extend_from_slice(tag);
    body
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Version,
    Prefix,
    AadLen,
    Aad(usize),
    EdkCount,
    EdkFieldLen,
    EdkField(usize),
    Trailer,
    Done,
}

/// A sans-I/O header decoder. Drive it as:
///
/// ```text
/// while let Some(buf) = decoder.next_buffer()? { reader.read_exact(buf)?; decoder.advance()?; }
/// let header = decoder.finish();
/// ```
///
/// It asks for one field at a time, so it never consumes a byte past the header, and it checks every limit
/// before asking for the bytes a length field announced.
pub struct HeaderDecoder {
    limits: DecryptLimits,
    raw: Vec<u8>,
    step: Step,
    field_start: usize,
    suite: Option<AlgorithmSuite>,
    message_id: Option<MessageId>,
    context: EncryptionContext,
    edk_count: u16,
    edks: Vec<EncryptedDataKey>,
    edk_fields: Vec<Vec<u8>>,
    parsed: Option<Header>,
}

impl HeaderDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: DecryptLimits) -> Self {
        Self {
            limits,
            raw: Vec::with_capacity(256),
            step: Step::Version,
            field_start: 0,
            suite: None,
            message_id: None,
            context: EncryptionContext::new(),
            edk_count: 0,
            edks: Vec::new(),
            edk_fields: Vec::with_capacity(3),
            parsed: None,
        }
    }

    /// Bytes of the header consumed so far; the offset of the next field.
    pub fn offset(&self) -> u64 {
        self.raw.len() as u64
    }

    fn wanted(&self) -> usize {
        let format = self.suite.map(|s| s.message_format());
        match self.step {
            Step::Version => 1,
            // v1: type, suite, 16-byte id. v2: suite, 32-byte id. The version byte decided which.
            Step::Prefix => {
                if self.raw[0] == 1 {
                    1 + 2 + 16
                } else {
                    2 + 32
                }
            }
            Step::AadLen | Step::EdkCount | Step::EdkFieldLen => 2,
            Step::Aad(n) | Step::EdkField(n) => n,
            Step::Trailer => match format {
                // content type, reserved, IV length, frame length | header IV, tag
                Some(MessageFormat::V1) => 1 + 4 + 1 + 4 + IV_LEN + TAG_LEN,
                // content type, frame length, commitment | tag
                _ => 1 + 4 + COMMITMENT_LEN + TAG_LEN,
            },
            Step::Done => 0,
        }
    }

    /// The buffer to fill with the next field's bytes, or `None` when the header is complete.
    pub fn next_buffer(&mut self) -> Result<Option<&mut [u8]>> {
        let wanted = self.wanted();
        if wanted == 0 && matches!(self.step, Step::Done) {
            return Ok(None);
        }
        let total = self.raw.len() + wanted;
        if total > self.limits.max_header_len {
            return Err(Error::LimitExceeded {
                limit: "header length",
                value: total as u64,
                max: self.limits.max_header_len as u64,
            });
        }
        self.field_start = self.raw.len();
        self.raw.resize(total, 0);
        Ok(Some(&mut self.raw[self.field_start..]))
    }

    /// Interprets the bytes just written into the buffer from [`next_buffer`](Self::next_buffer).
    pub fn advance(&mut self) -> Result<()> {
        let at = self.field_start as u64;
        let field = &self.raw[self.field_start..];
        self.step = match self.step {
            Step::Version => match field[0] {
                1 | 2 => Step::Prefix,
                v => return Err(Error::malformed(at, format!("unknown message version 0x{v:02x}"))),
            },
            Step::Prefix => {
                let (suite_bytes, id) = if self.raw[0] == 1 {
                    if field[0] != V1_TYPE {
                        return Err(Error::malformed(at, format!("unknown v1 message type 0x{:02x}", field[0])));
                    }
                    (&field[1..3], &field[3..])
                } else {
                    (&field[..2], &field[2..])
                };
                let suite = AlgorithmSuite::from_id(u16::from_be_bytes([suite_bytes[0], suite_bytes[1]]))?;
                let version = if self.raw[0] == 1 { MessageFormat::V1 } else { MessageFormat::V2 };
                if suite.message_format() != version {
                    return Err(Error::malformed(
                        at,
                        format!("suite {suite} cannot appear in a version {} header", self.raw[0]),
                    ));
                }
                self.suite = Some(suite);
                self.message_id = MessageId::from_bytes(id);
                Step::AadLen
            }
            Step::AadLen => match u16::from_be_bytes([field[0], field[1]]) {
                0 => Step::EdkCount,
                n => Step::Aad(usize::from(n)),
            },
            Step::Aad(_) => {
                self.context = EncryptionContext::parse(field, at)?;
                Step::EdkCount
            }
            Step::EdkCount => {
                let count = u16::from_be_bytes([field[0], field[1]]);
                if count == 0 {
                    return Err(Error::malformed(at, "a message needs at least one encrypted data key"));
                }
                if let Some(max) = self.limits.max_encrypted_data_keys.filter(|&max| count > max) {
                    return Err(Error::LimitExceeded {
                        limit: "encrypted data key count",
                        value: count.into(),
                        max: max.into(),
                    });
                }
                self.edk_count = count;
                Step::EdkFieldLen
            }
            Step::EdkFieldLen => match usize::from(u16::from_be_bytes([field[0], field[1]])) {
                0 => self.push_edk_field(Vec::new(), at)?,
                n => Step::EdkField(n),
            },
            Step::EdkField(_) => {
                let bytes = field.to_vec();
                self.push_edk_field(bytes, at)?
            }
            Step::Trailer => {
                self.finish_trailer(at)?;
                Step::Done
            }
            Step::Done => Step::Done,
        };
        Ok(())
    }

    fn push_edk_field(&mut self, bytes: Vec<u8>, at: u64) -> Result<Step> {
        self.edk_fields.push(bytes);
        if self.edk_fields.len() < 3 {
            return Ok(Step::EdkFieldLen);
        }
        let mut fields = self.edk_fields.drain(..);
        let (id, info, ciphertext) = (fields.next(), fields.next(), fields.next());
        drop(fields);
        let provider_id = String::from_utf8(id.unwrap_or_default())
            .map_err(|_| Error::malformed(at, "EDK provider id is not valid UTF-8"))?;
        self.edks.push(EncryptedDataKey {
            provider_id,
            provider_info: info.unwrap_or_default(),
            ciphertext: ciphertext.unwrap_or_default(),
        });
        Ok(if self.edks.len() == usize::from(self.edk_count) { Step::Trailer } else { Step::EdkFieldLen })
    }

    fn finish_trailer(&mut self, at: u64) -> Result<()> {
        let suite = self.suite.expect("the prefix step sets the suite");
        let t = &self.raw[self.field_start..];
        let content_type = match t[0] {
            1 => ContentType::NonFramed,
            2 => ContentType::Framed,
            b => return Err(Error::malformed(at, format!("unknown content type 0x{b:02x}"))),
        };
        let (frame_length, rest, commitment, body_end) = match suite.message_format() {
            MessageFormat::V1 => {
                if t[1..5] != [0, 0, 0, 0] {
                    return Err(Error::malformed(at + 1, "reserved field is not zero"));
                }
                if usize::from(t[5]) != IV_LEN {
                    return Err(Error::malformed(at + 5, format!("IV length {} is not 12", t[5])));
                }
                let frame_length = u32::from_be_bytes([t[6], t[7], t[8], t[9]]);
                (frame_length, &t[10..], None, self.field_start + 10)
            }
            MessageFormat::V2 => {
                let frame_length = u32::from_be_bytes([t[1], t[2], t[3], t[4]]);
                let mut commitment = [0u8; COMMITMENT_LEN];
                commitment.copy_from_slice(&t[5..5 + COMMITMENT_LEN]);
                (frame_length, &t[5 + COMMITMENT_LEN..], Some(commitment), self.field_start + 5 + COMMITMENT_LEN)
            }
        };
        let frame_at = at + if suite.message_format() == MessageFormat::V1 { 6 } else { 1 };
        match content_type {
            ContentType::NonFramed if frame_length != 0 => {
                return Err(Error::malformed(frame_at, "a non-framed message must have frame length 0"));
            }
            ContentType::Framed if frame_length == 0 => {
                return Err(Error::malformed(frame_at, "a framed message must have a frame length above 0"));
            }
            ContentType::Framed if frame_length > self.limits.max_frame_length => {
                return Err(Error::LimitExceeded {
                    limit: "frame length",
                    value: frame_length.into(),
                    max: self.limits.max_frame_length.into(),
                });
            }
            _ => {}
        }
        let mut header_iv = [0u8; IV_LEN];
        let rest = if suite.message_format() == MessageFormat::V1 {
            header_iv.copy_from_slice(&rest[..IV_LEN]);
            &rest[IV_LEN..]
        } else {
            rest
        };
        let mut auth_tag = [0u8; TAG_LEN];
        auth_tag.copy_from_slice(rest);
        self.parsed = Some(Header {
            suite,
            message_id: self.message_id.expect("the prefix step sets the message id"),
            context: std::mem::take(&mut self.context),
            edks: std::mem::take(&mut self.edks),
            content_type,
            frame_length,
            commitment,
            header_iv,
            auth_tag,
            raw: Vec::new(),
            body_len: body_end,
        });
        Ok(())
    }

    /// The parsed header, once [`next_buffer`](Self::next_buffer) returned `None`. Not yet authenticated.
    pub fn finish(mut self) -> Option<Header> {
        let mut header = self.parsed.take()?;
        header.raw = self.raw;
        Some(header)
    }

    /// Decodes a header from a blocking reader, reading exactly its bytes.
    pub fn read_from(limits: DecryptLimits, reader: &mut impl std::io::Read) -> Result<Header> {
        let mut decoder = Self::new(limits);
        loop {
            let offset = decoder.offset();
            let Some(buf) = decoder.next_buffer()? else { break };
            read_exact_or_truncated(reader, buf, offset, "header")?;
            decoder.advance()?;
        }
        Ok(decoder.finish().expect("the loop ends only when the header is complete"))
    }
}

/// `read_exact` that reports a short read as [`Error::Truncated`] at the right offset.
pub(crate) fn read_exact_or_truncated(
    reader: &mut impl std::io::Read,
    buf: &mut [u8],
    offset: u64,
    section: &'static str,
) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Err(Error::Truncated { offset: offset + filled as u64, section }),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::from_io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of test 1 of the Python ESDK's commitment vectors (format notes §3), as published there.
    const VECTOR_HEADER_B64: &str = "AgR4TfvRMU2dVZJbgXIyxeNtbj5eIw8BiTDiwsHyQ/Z9wXkAAAABAAxQcm92aWRlck5hbWUAGUtleUlkAAAAgAAAAAz45sc3cDvJZ7D4P3sAMKE7d/w8ziQt2C0qHsy1Qu2E2q92eIGE/kLnF/Y003HKvTxx7xv2Zv83YuOdwHML5QIAABAAF88I9zPbUQSfOlzLXv+uIY2+m/E6j2PMsbgeHVH/L0wLqQlY+5CL0z3xnNOMIZae";

    fn vector_header() -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(VECTOR_HEADER_B64).unwrap()
    }

    #[test]
    fn decodes_the_documented_v2_header_and_stops_at_its_end() {
        let mut bytes = vector_header();
        bytes.extend_from_slice(&[0xff; 8]); // the body follows; the decoder must not touch it
        let mut reader = &bytes[..];
        let header = HeaderDecoder::read_from(DecryptLimits::default(), &mut reader).unwrap();
        assert_eq!(reader.len(), 8);
        assert_eq!(header.as_bytes().len(), 183);
        assert_eq!(header.body_bytes().len(), 167);
        assert_eq!(header.suite().id(), 0x0478);
        assert_eq!(header.message_id().as_bytes().len(), 32);
        assert_eq!(header.frame_length(), 4096);
        assert_eq!(header.encrypted_data_keys()[0].provider_id, "ProviderName");
        assert_eq!(header.encrypted_data_keys()[0].ciphertext.len(), 48);
        assert!(header.encryption_context().is_empty());
    }

    #[test]
    fn every_truncation_is_reported_as_truncated() {
        let bytes = vector_header();
        for cut in 0..bytes.len() {
            let err = HeaderDecoder::read_from(DecryptLimits::default(), &mut &bytes[..cut]).unwrap_err();
            assert!(matches!(err, Error::Truncated { section: "header", .. }), "cut {cut}: {err}");
        }
    }

    #[test]
    fn limits_are_checked_before_allocation() {
        let bytes = vector_header();
        let limits = DecryptLimits { max_frame_length: 4095, ..DecryptLimits::default() };
        let err = HeaderDecoder::read_from(limits, &mut &bytes[..]).unwrap_err();
        assert!(matches!(err, Error::LimitExceeded { limit: "frame length", value: 4096, .. }), "{err}");
        let limits = DecryptLimits { max_header_len: 100, ..DecryptLimits::default() };
        assert!(matches!(
            HeaderDecoder::read_from(limits, &mut &bytes[..]),
            Err(Error::LimitExceeded { limit: "header length", .. })
        ));
        let limits = DecryptLimits { max_encrypted_data_keys: Some(0), ..DecryptLimits::default() };
        assert!(matches!(
            HeaderDecoder::read_from(limits, &mut &bytes[..]),
            Err(Error::LimitExceeded { limit: "encrypted data key count", .. })
        ));
    }

    #[test]
    fn wrong_version_suite_pairing_and_zero_edks_are_malformed() {
        let mut bytes = vector_header();
        bytes[1] = 0x01; // suite 0x0178 in a v2 header
        assert!(matches!(
            HeaderDecoder::read_from(DecryptLimits::default(), &mut &bytes[..]),
            Err(Error::Malformed { offset: 1, .. })
        ));
        let mut bytes = vector_header();
        bytes[38] = 0; // EDK count 0
        assert!(matches!(
            HeaderDecoder::read_from(DecryptLimits::default(), &mut &bytes[..]),
            Err(Error::Malformed { offset: 37, .. })
        ));
        let mut bytes = vector_header();
        bytes[0] = 3;
        assert!(HeaderDecoder::read_from(DecryptLimits::default(), &mut &bytes[..]).is_err());
    }
}
