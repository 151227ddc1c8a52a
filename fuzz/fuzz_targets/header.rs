//! The header decoder on arbitrary bytes, default limits: it must never panic, never read past the header,
//! and decode the same header whatever sizes the reader hands the bytes out in.
#![no_main]

use std::io::Read;

use kms_envelope::DecryptLimits;
use kms_envelope::format::header::{ContentType, HeaderDecoder};
use kms_envelope::format::suite::MessageFormat;
use libfuzzer_sys::fuzz_target;

/// A reader that hands out at most one byte per `read`.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() || self.0.is_empty() {
            return Ok(0);
        }
        buf[0] = self.0[0];
        self.0 = &self.0[1..];
        Ok(1)
    }
}

fuzz_target!(init: kms_envelope_fuzz::init(), |data: &[u8]| {
    let limits = DecryptLimits::default();
    let mut reader = data;
    let result = HeaderDecoder::read_from(limits, &mut reader);
    let mut trickle = Trickle(data);
    let trickled = HeaderDecoder::read_from(limits, &mut trickle);
    assert_eq!(result.is_ok(), trickled.is_ok(), "one-byte reads changed the outcome: {result:?} vs {trickled:?}");
    let Ok(header) = result else { return };
    let consumed = data.len() - reader.len();
    assert_eq!(trickle.0.len(), reader.len(), "one-byte reads consumed a different length");
    assert_eq!(header.as_bytes(), &data[..consumed], "the header's bytes are not the bytes read");
    assert_eq!(trickled.unwrap().as_bytes(), header.as_bytes());
    assert!(data.starts_with(header.body_bytes()));
    assert!(header.body_bytes().len() < header.as_bytes().len());
    assert!(consumed <= limits.max_header_len);
    assert!(!header.encrypted_data_keys().is_empty());
    let v2 = header.suite().message_format() == MessageFormat::V2;
    assert_eq!(header.commitment().is_some(), v2);
    assert_eq!(header.message_id().as_bytes().len(), if v2 { 32 } else { 16 });
    assert_eq!(header.as_bytes().len() - header.body_bytes().len(), if v2 { 16 } else { 28 });
    match header.content_type() {
        ContentType::NonFramed => assert_eq!(header.frame_length(), 0),
        ContentType::Framed => {
            assert!(header.frame_length() > 0 && header.frame_length() <= limits.max_frame_length)
        }
    }
});
