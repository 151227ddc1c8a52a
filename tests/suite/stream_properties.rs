//! Properties of the streaming encryptor and decryptor: round trips, and tampering of every kind is
//! rejected with nothing but whole verified frames released before the error.

use std::io::{Read, Write};

use kms_envelope::{
    AlgorithmSuite, DecryptOptions, Decryptor, EncryptOptions, EncryptionContext, Encryptor, Error, RawAesKeyring,
};
use proptest::prelude::*;

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("props", "key", &[0x5a; 32]).unwrap()
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn encrypt(pt: &[u8], options: &EncryptOptions) -> Vec<u8> {
    kms_envelope::encrypt(&keyring(), options, pt).unwrap()
}

/// Decrypts through the streaming API with a small read buffer, returning what was released and the error.
fn stream_decrypt(message: &[u8]) -> (Vec<u8>, Option<Error>) {
    let mut released = Vec::new();
    let mut decryptor = match Decryptor::new(&keyring(), &DecryptOptions::new(), message) {
        Ok(d) => d,
        Err(e) => return (released, Some(e)),
    };
    let mut buf = [0u8; 7];
    loop {
        match decryptor.read(&mut buf) {
            Ok(0) => return (released, None),
            Ok(n) => released.extend_from_slice(&buf[..n]),
            Err(e) => return (released, Some(Error::from_io(e))),
        }
    }
}

/// Offsets of each frame in a framed message made by our encryptor with an empty context and one EDK.
fn frame_offsets(message: &[u8], header_len: usize, frame_len: usize, frames: usize) -> Vec<usize> {
    let regular = 4 + 12 + frame_len + 16;
    let offsets: Vec<usize> = (0..frames).map(|i| header_len + i * regular).collect();
    assert!(offsets.last().unwrap() < &message.len());
    offsets
}

fn header_len(message: &[u8]) -> usize {
    Decryptor::new(&keyring(), &DecryptOptions::new(), message).unwrap().header().as_bytes().len()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trips(
        len in 0usize..5000,
        frame_length in 1u32..600,
        pairs in proptest::collection::btree_map("[a-zA-Z\u{80}-\u{10FFFF}]{1,8}", ".{0,12}", 0..4),
        signed in any::<bool>(),
    ) {
        let pt = plaintext(len);
        let context: EncryptionContext = pairs.into_iter().collect();
        let mut options = EncryptOptions::new().frame_length(frame_length).encryption_context(context.clone());
        if signed {
            options = options.suite(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384);
        }
        let message = encrypt(&pt, &options);
        let decrypted = kms_envelope::decrypt(&keyring(), &DecryptOptions::new(), &message).unwrap();
        prop_assert_eq!(&*decrypted.plaintext, &pt);
        for (k, v) in context.iter() {
            prop_assert_eq!(decrypted.header.encryption_context().get(k), Some(v));
        }
        let (released, err) = stream_decrypt(&message);
        prop_assert!(err.is_none());
        prop_assert_eq!(released, pt);
    }

    #[test]
    fn writes_in_any_chunking_give_a_decryptable_message(chunks in proptest::collection::vec(0usize..300, 0..20)) {
        let total: usize = chunks.iter().sum();
        let pt = plaintext(total);
        let mut encryptor = Encryptor::new(&keyring(), &EncryptOptions::new().frame_length(128), Vec::new()).unwrap();
        let mut at = 0;
        for c in chunks {
            encryptor.write_all(&pt[at..at + c]).unwrap();
            at += c;
        }
        let message = encryptor.finish().unwrap();
        let (released, error) = stream_decrypt(&message);
        prop_assert!(error.is_none(), "{:?}", error);
        prop_assert_eq!(released, pt);
    }

    /// `copy_from` reads straight into the frames, through short reads of any size and mixed with `write`,
    /// and frames the bytes exactly as `write` does.
    #[test]
    fn copy_from_frames_like_write(
        reads in proptest::collection::vec(0usize..300, 0..20),
        written in 0usize..300,
        threads in 1usize..3,
    ) {
        let total = written + reads.iter().sum::<usize>();
        let pt = plaintext(total);
        let options = EncryptOptions::new().frame_length(128).threads(threads).parallel_threshold(0).job_length(256);
        let mut encryptor = Encryptor::new(&keyring(), &options, Vec::new()).unwrap();
        encryptor.write_all(&pt[..written]).unwrap();
        let copied = encryptor.copy_from(ShortReads { data: &pt[written..], reads: reads.into_iter() }).unwrap();
        prop_assert_eq!(copied as usize, total - written);
        let message = encryptor.finish().unwrap();
        prop_assert_eq!(message.len(), encrypt(&pt, &options).len());
        let (released, err) = stream_decrypt(&message);
        prop_assert!(err.is_none(), "{:?}", err);
        prop_assert_eq!(released, pt);
    }
}

/// A reader that hands out its data in reads of the given sizes (zero-sized ones become `Interrupted`), then
/// the rest at once.
struct ShortReads<'a, I: Iterator<Item = usize>> {
    data: &'a [u8],
    reads: I,
}

impl<I: Iterator<Item = usize>> Read for ShortReads<'_, I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.reads.next() {
            Some(0) if !self.data.is_empty() => return Err(std::io::ErrorKind::Interrupted.into()),
            Some(n) => n,
            None => self.data.len(),
        };
        let n = n.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn copy_from_passes_a_read_error_on_and_keeps_the_bytes_before_it() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = self.0.min(buf.len());
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }
    let mut encryptor = Encryptor::new(&keyring(), &EncryptOptions::new().frame_length(64), Vec::new()).unwrap();
    let err = encryptor.copy_from(Failing(100)).unwrap_err();
    assert_eq!(err.to_string(), "disk on fire");
    let message = encryptor.finish().unwrap();
    let (released, err) = stream_decrypt(&message);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(released, vec![7; 100]);
}

fn assert_prefix_of_whole_frames(released: &[u8], pt: &[u8], frame_len: usize) {
    assert!(pt.starts_with(released), "released bytes are not a prefix of the plaintext");
    assert!(
        released.len().is_multiple_of(frame_len),
        "released {} bytes: not whole frames of {frame_len}",
        released.len()
    );
}

#[test]
fn every_single_byte_flip_is_rejected() {
    for suite in [
        AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
    ] {
        let pt = plaintext(100);
        let message = encrypt(&pt, &EncryptOptions::new().frame_length(32).suite(suite).context("k", "v"));
        for i in 0..message.len() {
            for bit in [0x01, 0x80] {
                let mut bad = message.clone();
                bad[i] ^= bit;
                let (released, err) = stream_decrypt(&bad);
                assert!(err.is_some(), "suite {suite}: flipping bit {bit:#x} of byte {i} went unnoticed");
                assert_prefix_of_whole_frames(&released, &pt, 32);
            }
        }
    }
}

#[test]
fn every_truncation_is_rejected_and_trailing_data_too() {
    for suite in [
        AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
    ] {
        let pt = plaintext(100);
        let message = encrypt(&pt, &EncryptOptions::new().frame_length(32).suite(suite));
        for cut in 0..message.len() {
            let (released, err) = stream_decrypt(&message[..cut]);
            assert!(err.is_some(), "suite {suite}: cut at {cut} went unnoticed");
            assert_prefix_of_whole_frames(&released, &pt, 32);
            // The final frame's plaintext (the last 4 bytes) is never released from a cut message.
            assert!(released.len() <= 96);
        }
        let mut longer = message.clone();
        longer.push(0);
        let (_, err) = stream_decrypt(&longer);
        assert!(matches!(err, Some(Error::TrailingData { .. })), "{err:?}");
    }
}

#[test]
fn swapped_and_duplicated_frames_are_rejected() {
    let pt = plaintext(160);
    let message = encrypt(&pt, &EncryptOptions::new().frame_length(32));
    let h = header_len(&message);
    let regular = 4 + 12 + 32 + 16;
    let offsets = frame_offsets(&message, h, 32, 4);

    let mut swapped = message.clone();
    let (a, b) = (offsets[1], offsets[2]);
    swapped[a..a + regular].copy_from_slice(&message[b..b + regular]);
    swapped[b..b + regular].copy_from_slice(&message[a..a + regular]);
    let (released, err) = stream_decrypt(&swapped);
    assert!(err.is_some());
    assert_eq!(released, &pt[..32]);

    let mut duplicated = message[..offsets[2]].to_vec();
    duplicated.extend_from_slice(&message[offsets[1]..offsets[2]]);
    duplicated.extend_from_slice(&message[offsets[2]..]);
    let (released, err) = stream_decrypt(&duplicated);
    assert!(matches!(err, Some(Error::Malformed { .. })), "{err:?}");
    assert_eq!(released, &pt[..64]);
}

#[test]
fn a_tampered_middle_frame_releases_exactly_the_frames_before_it() {
    let pt = plaintext(32 * 5 + 3);
    let message = encrypt(&pt, &EncryptOptions::new().frame_length(32));
    let offsets = frame_offsets(&message, header_len(&message), 32, 5);
    let mut bad = message.clone();
    bad[offsets[3] + 20] ^= 0x40; // inside frame 4's ciphertext
    let (released, err) = stream_decrypt(&bad);
    assert!(matches!(err, Some(Error::FrameAuthentication { sequence: 4 })), "{err:?}");
    assert_eq!(released, &pt[..96]);
}

/// ESDK-Python 3.x (aws-encryption-cli 4.3) rejects a final frame as long as the frame length, so an exact
/// multiple must end with an empty final frame.
#[test]
fn exact_multiples_end_with_an_empty_final_frame() {
    for len in [32, 64, 96] {
        let message = encrypt(&plaintext(len), &EncryptOptions::new().frame_length(32));
        let regular = 4 + 12 + 32 + 16;
        let final_at = header_len(&message) + (len / 32) * regular;
        assert_eq!(&message[final_at..final_at + 4], &[0xff; 4], "len {len}");
        assert_eq!(&message[final_at + 20..final_at + 24], &[0, 0, 0, 0], "len {len}: final frame not empty");
        assert_eq!(message.len(), final_at + 24 + 16, "len {len}");
    }
}

#[test]
fn exact_multiples_and_empty_plaintext_round_trip() {
    for len in [0, 1, 31, 32, 33, 64, 96] {
        let pt = plaintext(len);
        let message = encrypt(&pt, &EncryptOptions::new().frame_length(32));
        let (released, error) = stream_decrypt(&message);
        assert!(error.is_none(), "len {len}: {error:?}");
        assert_eq!(released, pt, "len {len}");
    }
}
