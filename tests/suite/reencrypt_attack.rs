//! Attacks on the fused positioned re-encryption of unsigned file sources (`reencrypt_path`): bodies
//! crafted frame by frame under the source's own key (so that every frame's tag is valid and only the
//! frames' order, numbers, lengths or count are wrong), sources changed while they are read, frame counts
//! near the `u32` limit, and the new message's IVs. Each crafted source must get the verdict of the
//! streaming `reencrypt` over the same bytes, and a refused one must leave nothing beside it.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use kms_envelope::crypto::MessageKeys;
use kms_envelope::crypto::kdf::V1Info;
use kms_envelope::format::frame::{BlockKind, BodyAad, FINAL_FRAME_MARKER, frame_iv};
use kms_envelope::format::header::{self, HeaderBody, MessageId};
use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture, block_on};
use kms_envelope::{
    AlgorithmSuite, CommitmentPolicy, DecryptOptions, EncryptOptions, EncryptedDataKey, EncryptionContext, Error,
    Keyring, OutputOptions, RawAesKeyring, ReencryptOptions, decrypt, encrypt, reencrypt, reencrypt_path,
};

fn old_keyring() -> RawAesKeyring {
    RawAesKeyring::new("attack", "old", &[0x42; 32]).unwrap()
}

fn new_keyring() -> RawAesKeyring {
    RawAesKeyring::new("attack", "new", &[0x17; 32]).unwrap()
}

/// One frame of a crafted body, sealed under the source's content key with exactly these fields.
#[derive(Clone, Debug)]
struct Frame {
    /// The sequence number written and authenticated.
    sequence: u32,
    final_frame: bool,
    /// The plaintext sealed (a regular frame of another length than the header's is possible).
    plaintext: Vec<u8>,
    /// The IV written and used; `frame_iv(sequence)` unless a case says otherwise.
    iv: [u8; 12],
}

fn regular(sequence: u32, len: usize) -> Frame {
    Frame { sequence, final_frame: false, plaintext: bytes(sequence, len), iv: frame_iv(sequence) }
}

fn last(sequence: u32, len: usize) -> Frame {
    Frame { sequence, final_frame: true, plaintext: bytes(sequence, len), iv: frame_iv(sequence) }
}

/// Plaintext that differs from frame to frame, so that a frame in the wrong place shows.
fn bytes(sequence: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32 * 7 + sequence * 31) as u8).collect()
}

/// A message header made by hand under the old key, and the keys its frames are sealed with.
struct Crafted {
    id: MessageId,
    keys: MessageKeys,
    header: Vec<u8>,
}

impl Crafted {
    fn new(suite: AlgorithmSuite, frame_length: u32) -> Self {
        let context: EncryptionContext = [("purpose", "attack")].into_iter().collect();
        let materials =
            block_on(old_keyring().on_encrypt(EncryptionMaterials::new(suite, context.clone(), Default::default())))
                .unwrap();
        let id = MessageId::random(suite.message_format());
        let keys = MessageKeys::derive(suite, materials.data_key().unwrap(), &id, V1Info::Standard).unwrap();
        let body = HeaderBody {
            suite,
            message_id: id,
            stored_context: &context,
            edks: materials.encrypted_data_keys(),
            frame_length,
            commitment: keys.commitment,
        }
        .serialize()
        .unwrap();
        let tag = keys.content.seal_in_place(&[0; 12], &body, &mut []);
        Crafted { id, keys, header: header::assemble(body, suite, &tag) }
    }

    /// The wire form of `frame`.
    fn frame(&self, frame: &Frame) -> Vec<u8> {
        let kind = if frame.final_frame { BlockKind::Final } else { BlockKind::Regular };
        let mut body = frame.plaintext.clone();
        let aad = BodyAad::new(&self.id, kind, frame.sequence, body.len() as u64);
        let tag = self.keys.content.seal_in_place(&frame.iv, aad.as_bytes(), &mut body);
        let mut wire = Vec::new();
        if frame.final_frame {
            wire.extend_from_slice(&FINAL_FRAME_MARKER.to_be_bytes());
        }
        wire.extend_from_slice(&frame.sequence.to_be_bytes());
        wire.extend_from_slice(&frame.iv);
        if frame.final_frame {
            wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
        }
        wire.extend_from_slice(&body);
        wire.extend_from_slice(&tag);
        wire
    }

    fn message(&self, frames: &[Frame]) -> Vec<u8> {
        let mut message = self.header.clone();
        for frame in frames {
            message.extend_from_slice(&self.frame(frame));
        }
        message
    }
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// What re-encrypting `message` gave: the plaintext of the new message, or the error.
type Verdict = Result<Vec<u8>, Error>;

/// The streaming `reencrypt` of `message` (from a slice: never the positioned path).
fn streamed(message: &[u8], options: &ReencryptOptions) -> Verdict {
    let mut out = Vec::new();
    reencrypt(&old_keyring(), &new_keyring(), options, message, &mut out)?;
    Ok(decrypt(&new_keyring(), &DecryptOptions::new(), &out).unwrap().plaintext.to_vec())
}

/// `reencrypt_path` of `message` held in a file, to another file and in place; a failure must leave the
/// directory as it was and the source untouched, and both must agree.
fn from_file(what: &str, message: &[u8], options: &ReencryptOptions) -> Verdict {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.esdk");
    fs::write(&source, message).unwrap();
    let destination = dir.path().join("rotated.esdk");
    let verdict = reencrypt_path(&old_keyring(), &new_keyring(), options, &source, &destination, &OutputOptions::new())
        .map(|_| decrypt(&new_keyring(), &DecryptOptions::new(), &fs::read(&destination).unwrap()).unwrap());
    let in_place = reencrypt_path(
        &old_keyring(),
        &new_keyring(),
        options,
        &source,
        &source,
        &OutputOptions::new().overwrite(true),
    );
    match &verdict {
        Ok(_) => assert!(in_place.is_ok(), "{what}: in place {in_place:?}, to another file Ok"),
        Err(_) => {
            assert!(in_place.is_err(), "{what}: in place Ok, to another file {verdict:?}");
            assert_eq!(listing(dir.path()), ["source.esdk"], "{what}: something was left");
            assert!(fs::read(&source).unwrap() == message, "{what}: the source changed");
        }
    }
    verdict.map(|d| d.plaintext.to_vec())
}

/// Target options that send every source through the positioned path's jobs: `threads` threads from the
/// first byte, jobs of `job` bytes, frames of `frame_len`.
fn target(frame_len: u32, threads: usize, job: usize) -> EncryptOptions {
    EncryptOptions::new().frame_length(frame_len).threads(threads).parallel_threshold(0).job_length(job)
}

/// The source frame length of the crafted messages.
const F: usize = 32;

/// Bodies crafted frame by frame (every tag valid under the source's key): the two paths give the same
/// verdict, the same plaintext when both succeed, the same error when both fail, and a refused source
/// leaves nothing.
#[test]
fn attack_crafted_bodies_get_the_streaming_verdict_and_leave_nothing() {
    let f = F;
    let stride = f + 4 + 12 + 16;
    let cases: Vec<(&str, Vec<Frame>, Vec<u8>)> = vec![
        ("a final frame alone, empty", vec![last(1, 0)], vec![]),
        ("a final frame alone", vec![last(1, 5)], vec![]),
        ("a full final frame alone", vec![last(1, f)], vec![]),
        ("three frames and an empty final", vec![regular(1, f), regular(2, f), regular(3, f), last(4, 0)], vec![]),
        ("three frames and a full final", vec![regular(1, f), regular(2, f), regular(3, f), last(4, f)], vec![]),
        ("three frames and a short final", vec![regular(1, f), regular(2, f), regular(3, f), last(4, 7)], vec![]),
        ("a final frame one byte too long", vec![regular(1, f), regular(2, f), last(3, f + 1)], vec![]),
        ("a final frame a stride long", vec![regular(1, f), regular(2, f), last(3, stride)], vec![]),
        ("a final frame two strides long", vec![regular(1, f), last(2, 2 * stride)], vec![]),
        ("frames reordered", vec![regular(1, f), regular(3, f), regular(2, f), last(4, 3)], vec![]),
        ("a frame repeated", vec![regular(1, f), regular(2, f), regular(2, f), last(4, 3)], vec![]),
        ("a frame repeated, final numbered after", vec![regular(1, f), regular(1, f), last(2, 3)], vec![]),
        ("a frame skipped", vec![regular(1, f), regular(2, f), regular(4, f), last(5, 3)], vec![]),
        ("numbered from 0", vec![regular(0, f), regular(1, f), last(2, 3)], vec![]),
        ("the final frame numbered as the last regular", vec![regular(1, f), regular(2, f), last(2, 3)], vec![]),
        ("the final frame numbered one too far", vec![regular(1, f), regular(2, f), last(4, 3)], vec![]),
        ("no final frame", vec![regular(1, f), regular(2, f), regular(3, f), regular(4, f)], vec![]),
        ("a regular frame one byte short", vec![regular(1, f), regular(2, f - 1), last(3, 3)], vec![]),
        ("a regular frame one byte long", vec![regular(1, f), regular(2, f + 1), last(3, 3)], vec![]),
        ("a regular frame 8 bytes long, final 8 short", vec![regular(1, f + 8), last(2, 0)], vec![]),
        ("two final frames", vec![regular(1, f), last(2, 3), last(3, 3)], vec![]),
        ("a final frame where a regular one should be", vec![regular(1, f), last(2, f), last(3, 3)], vec![]),
        ("a byte after the final frame", vec![regular(1, f), last(2, 3)], vec![0]),
        ("a stride after the final frame", vec![regular(1, f), last(2, 3)], vec![0; F + 32]),
        ("a fake final prefix after the final frame", vec![regular(1, f), last(2, 3)], fake_final_prefix(3, 0)),
        ("non-standard IVs", vec![odd_iv(regular(1, f)), odd_iv(regular(2, f)), odd_iv(last(3, 9))], vec![]),
        ("a final frame's IV of another frame", vec![regular(1, f), with_iv(last(2, 9), frame_iv(1))], vec![]),
    ];
    let crafted = Crafted::new(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY, F as u32);
    for (what, frames, trailer) in &cases {
        let mut message = crafted.message(frames);
        message.extend_from_slice(trailer);
        // The source's frame length (in place), others, one thread and several.
        for (frame_len, threads, job) in [(F, 1, F), (F, 3, F), (7, 3, 14), (4 * F, 2, 4 * F), (45, 3, 45)] {
            let options = ReencryptOptions::new().target(target(frame_len as u32, threads, job));
            let what = format!("{what} (target frames of {frame_len}, {threads} threads, jobs of {job})");
            let (streamed, fused) = (streamed(&message, &options), from_file(&what, &message, &options));
            match (&streamed, &fused) {
                (Ok(a), Ok(b)) => assert!(a == b, "{what}: other plaintexts"),
                (Err(a), Err(b)) => assert_eq!(b.to_string(), a.to_string(), "{what}: another error"),
                _ => panic!("{what}: streamed {streamed:?}, from a file {fused:?}"),
            }
        }
    }
}

/// A final frame's prefix (marker, sequence number, IV, length) with nothing after it: what a body needs to
/// fit the positioned path's layout.
fn fake_final_prefix(sequence: u32, len: u32) -> Vec<u8> {
    let mut prefix = FINAL_FRAME_MARKER.to_be_bytes().to_vec();
    prefix.extend_from_slice(&sequence.to_be_bytes());
    prefix.extend_from_slice(&frame_iv(sequence));
    prefix.extend_from_slice(&len.to_be_bytes());
    prefix.extend_from_slice(&[0; 16]);
    prefix
}

fn odd_iv(frame: Frame) -> Frame {
    let iv = [frame.sequence as u8 ^ 0x5c; 12];
    with_iv(frame, iv)
}

fn with_iv(mut frame: Frame, iv: [u8; 12]) -> Frame {
    frame.iv = iv;
    frame
}

/// Legacy suites (v1 headers, with and without a KDF) read under the allow-decrypt policy: the positioned
/// path gives the streaming verdict on the valid message and on a reordered one.
#[test]
fn attack_legacy_v1_sources_get_the_streaming_verdict() {
    let allow = DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
    for suite in [
        AlgorithmSuite::AES_128_GCM_IV12_TAG16_NO_KDF,
        AlgorithmSuite::AES_256_GCM_IV12_TAG16_NO_KDF,
        AlgorithmSuite::AES_256_GCM_IV12_TAG16_HKDF_SHA256,
    ] {
        let crafted = Crafted::new(suite, F as u32);
        let valid = [regular(1, F), regular(2, F), regular(3, F), last(4, 11)];
        let reordered = [regular(1, F), regular(3, F), regular(2, F), last(4, 11)];
        for (what, frames, valid) in [("valid", &valid, true), ("reordered", &reordered, false)] {
            let message = crafted.message(frames);
            for (frame_len, threads) in [(F, 2), (13, 3)] {
                let options =
                    ReencryptOptions::new().source(allow.clone()).target(target(frame_len as u32, threads, F));
                let what = format!("{suite:?} {what}, target frames of {frame_len}");
                let (streamed, fused) = (streamed(&message, &options), from_file(&what, &message, &options));
                match (&streamed, &fused) {
                    (Ok(a), Ok(b)) => assert!(a == b, "{what}: other plaintexts"),
                    (Err(_), Err(_)) => {}
                    _ => panic!("{what}: streamed {streamed:?}, from a file {fused:?}"),
                }
                assert_eq!(fused.is_ok(), valid, "{what}: {fused:?}");
            }
        }
    }
}

/// The frames of the message `message` whose header is `header_len` bytes long and frames `frame_len`:
/// (sequence number, final, IV, body length) of each.
fn frames_of(message: &[u8], header_len: usize, frame_len: usize) -> Vec<(u32, bool, [u8; 12], usize)> {
    let mut frames = Vec::new();
    let mut at = header_len;
    while at < message.len() {
        let first = u32::from_be_bytes(message[at..at + 4].try_into().unwrap());
        if first == FINAL_FRAME_MARKER {
            let sequence = u32::from_be_bytes(message[at + 4..at + 8].try_into().unwrap());
            let iv: [u8; 12] = message[at + 8..at + 20].try_into().unwrap();
            let len = u32::from_be_bytes(message[at + 20..at + 24].try_into().unwrap()) as usize;
            frames.push((sequence, true, iv, len));
            at += 24 + len + 16;
            assert_eq!(at, message.len(), "bytes after the final frame");
        } else {
            let iv: [u8; 12] = message[at + 4..at + 16].try_into().unwrap();
            frames.push((first, false, iv, frame_len));
            at += 16 + frame_len + 16;
        }
    }
    frames
}

/// The new message's frames, read back by hand: numbered 1, 2, ... with the final frame last, each IV the
/// frame's own sequence number (so no IV of the new key repeats, header's zero IV included), every regular
/// frame the target's length, the final frame shorter; whatever the source's and the target's frame
/// lengths, threads and jobs.
#[test]
fn attack_the_new_message_uses_each_iv_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    for source_frame in [32u32, 100, 4096] {
        for len in [0usize, 1, 31, 32, 33, 100, 4096, 10_000, 65_537] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
            let source = dir.path().join("source.esdk");
            let encrypted =
                encrypt(&old_keyring(), &EncryptOptions::new().frame_length(source_frame), &plaintext).unwrap();
            fs::write(&source, encrypted).unwrap();
            for (frame_len, threads, job) in [(32u32, 3, 32), (100, 2, 300), (4096, 3, 4096), (45, 4, 1)] {
                let what = format!("{len} bytes in frames of {source_frame} into frames of {frame_len}");
                let destination = dir.path().join("rotated.esdk");
                let options = ReencryptOptions::new().target(target(frame_len, threads, job));
                let output = OutputOptions::new().overwrite(true);
                reencrypt_path(&old_keyring(), &new_keyring(), &options, &source, &destination, &output).unwrap();
                let rotated = fs::read(&destination).unwrap();
                let decrypted = decrypt(&new_keyring(), &DecryptOptions::new(), &rotated).unwrap();
                assert!(decrypted.plaintext[..] == plaintext[..], "{what}");
                let header_len = decrypted.header.as_bytes().len();
                assert_each_iv_once(&what, &rotated, header_len, frame_len as usize, len);
            }
        }
    }
}

/// Checks the frames of the new message `rotated` (of `len` plaintext bytes in frames of `frame_len`):
/// numbered 1, 2, ... with the final frame last, each IV its own sequence number, every regular frame the
/// target's length, the final one shorter.
fn assert_each_iv_once(what: &str, rotated: &[u8], header_len: usize, frame_len: usize, len: usize) {
    let frames = frames_of(rotated, header_len, frame_len);
    let n = frames.len();
    for (i, (sequence, final_frame, iv, body)) in frames.into_iter().enumerate() {
        assert_eq!(sequence, i as u32 + 1, "{what}: frame {i}");
        assert_eq!(iv, frame_iv(sequence), "{what}: frame {sequence}'s IV");
        assert_eq!(final_frame, i + 1 == n, "{what}: frame {sequence}");
        if final_frame {
            assert!(body < frame_len, "{what}: final frame of {body}");
        } else {
            assert_eq!(body, frame_len, "{what}: regular frame {sequence}");
        }
    }
    assert_eq!(n, len / frame_len + 1, "{what}");
}

/// Legacy unsigned target suites (v1 headers, with and without a KDF), chosen under the forbid-encrypt
/// policy: the fused path's message decrypts, and its IVs are each frame's own sequence number.
#[test]
fn attack_legacy_target_suites_use_each_iv_once() {
    let dir = tempfile::tempdir().unwrap();
    let plaintext: Vec<u8> = (0..5000usize).map(|i| (i * 7 % 253) as u8).collect();
    let source = dir.path().join("source.esdk");
    fs::write(&source, encrypt(&old_keyring(), &EncryptOptions::new().frame_length(64), &plaintext).unwrap()).unwrap();
    let allow = DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
    for suite in [
        AlgorithmSuite::AES_128_GCM_IV12_TAG16_NO_KDF,
        AlgorithmSuite::AES_256_GCM_IV12_TAG16_NO_KDF,
        AlgorithmSuite::AES_256_GCM_IV12_TAG16_HKDF_SHA256,
    ] {
        for frame_len in [64u32, 100] {
            let what = format!("{suite:?}, frames of {frame_len}");
            let options =
                target(frame_len, 3, 256).suite(suite).commitment_policy(CommitmentPolicy::ForbidEncryptAllowDecrypt);
            let destination = dir.path().join("rotated.esdk");
            let output = OutputOptions::new().overwrite(true);
            let options = ReencryptOptions::new().target(options);
            reencrypt_path(&old_keyring(), &new_keyring(), &options, &source, &destination, &output).unwrap();
            let rotated = fs::read(&destination).unwrap();
            let decrypted = decrypt(&new_keyring(), &allow, &rotated).unwrap();
            assert!(decrypted.plaintext[..] == plaintext[..], "{what}");
            assert_eq!(decrypted.header.suite(), suite, "{what}");
            let header_len = decrypted.header.as_bytes().len();
            assert_each_iv_once(&what, &rotated, header_len, frame_len as usize, plaintext.len());
        }
    }
}

/// A target keyring that runs `change` on the source (after its header was read and its length measured,
/// before any frame is read).
struct ChangesTheSource<C: Fn(&Path) + Send + Sync> {
    inner: RawAesKeyring,
    source: PathBuf,
    change: C,
}

impl<C: Fn(&Path) + Send + Sync> Keyring for ChangesTheSource<C> {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        (self.change)(&self.source);
        self.inner.on_encrypt(materials)
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        self.inner.on_decrypt(materials, edks)
    }
}

/// The source changed in place between its header read and the frames' reads: two frames swapped, the
/// whole file rewritten with another message of the same length under the same key, the final frame
/// replaced by the one of a message of the same length, a regular frame removed and the file kept at its
/// length: refused, nothing left.
#[test]
fn attack_a_source_rewritten_in_place_while_read_writes_nothing() {
    let plaintext = vec![0x33u8; 10_500];
    let options = EncryptOptions::new().frame_length(1024);
    let first = encrypt(&old_keyring(), &options, &plaintext).unwrap();
    let second = encrypt(&old_keyring(), &options, &vec![0x44u8; 10_500]).unwrap();
    assert_eq!(first.len(), second.len());
    let stride = 1024 + 32;
    let final_at = first.len() - (24 + 260 + 16);
    type Change = Box<dyn Fn(&Path) + Send + Sync>;
    let second_final = second[final_at..].to_vec();
    let changes: Vec<(&str, Change)> = vec![
        (
            "two frames swapped",
            Box::new(move |path: &Path| {
                let mut bytes = fs::read(path).unwrap();
                let (a, b) = (final_at - 3 * stride, final_at - 2 * stride);
                let frame_a = bytes[a..b].to_vec();
                bytes.copy_within(b..b + stride, a);
                bytes[b..b + stride].copy_from_slice(&frame_a);
                fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(&bytes, 0).unwrap();
            }),
        ),
        (
            "another message of the same length",
            Box::new(move |path: &Path| {
                fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(&second, 0).unwrap();
            }),
        ),
        (
            "another message's final frame",
            Box::new(move |path: &Path| {
                let file = fs::OpenOptions::new().write(true).open(path).unwrap();
                file.write_all_at(&second_final, final_at as u64).unwrap();
            }),
        ),
        (
            "a frame removed, the length kept",
            Box::new(move |path: &Path| {
                let mut bytes = fs::read(path).unwrap();
                let at = final_at - 4 * stride;
                bytes.drain(at..at + stride);
                bytes.extend_from_slice(&vec![0; stride]);
                fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(&bytes, 0).unwrap();
            }),
        ),
    ];
    for (what, change) in changes {
        for (frame_len, threads) in [(1024u32, 2), (1000, 3)] {
            let dir = tempfile::tempdir().unwrap();
            let source = dir.path().join("source.esdk");
            fs::write(&source, &first).unwrap();
            let target_keyring = ChangesTheSource { inner: new_keyring(), source: source.clone(), change: &change };
            let options = ReencryptOptions::new().target(target(frame_len, threads, 1024));
            let destination = dir.path().join("rotated.esdk");
            let result =
                reencrypt_path(&old_keyring(), &target_keyring, &options, &source, &destination, &OutputOptions::new());
            let what = format!("{what}, target frames of {frame_len}");
            assert!(result.is_err(), "{what}: re-encrypted");
            assert_eq!(listing(dir.path()), ["source.esdk"], "{what}: something was left");
        }
    }
}

/// Another writer keeps rewriting the source in place, alternately with two messages of the same length
/// under the same key, while it is re-encrypted (to another file, from several threads): every success
/// holds exactly one of the two plaintexts, never a mix; every failure leaves nothing.
#[test]
fn attack_a_source_rewritten_meanwhile_never_gives_a_mix() {
    let options = EncryptOptions::new().frame_length(1024);
    let plaintexts = [vec![0x33u8; 200_000], vec![0x44u8; 200_000]];
    let messages: Vec<Vec<u8>> = plaintexts.iter().map(|p| encrypt(&old_keyring(), &options, p).unwrap()).collect();
    assert_eq!(messages[0].len(), messages[1].len());
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.esdk");
    fs::write(&source, &messages[0]).unwrap();
    let stop = AtomicBool::new(false);
    let (mut successes, mut failures) = (0, 0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let file = fs::OpenOptions::new().write(true).open(&source).unwrap();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Frame by frame, so that readers see every mix of the two.
                for chunk in (0..messages[0].len()).step_by(1056) {
                    let end = (chunk + 1056).min(messages[0].len());
                    file.write_all_at(&messages[i % 2][chunk..end], chunk as u64).unwrap();
                }
            }
        });
        for round in 0..60 {
            let destination = dir.path().join("rotated.esdk");
            let frame_len = [1024u32, 1000, 4096][round % 3];
            let options = ReencryptOptions::new().target(target(frame_len, 3, 4096));
            let result =
                reencrypt_path(&old_keyring(), &new_keyring(), &options, &source, &destination, &OutputOptions::new());
            match result {
                Ok(_) => {
                    let rotated = fs::read(&destination).unwrap();
                    let plaintext = decrypt(&new_keyring(), &DecryptOptions::new(), &rotated).unwrap().plaintext;
                    assert!(plaintexts.iter().any(|p| p[..] == plaintext[..]), "round {round}: a mix");
                    fs::remove_file(&destination).unwrap();
                    successes += 1;
                }
                Err(_) => {
                    assert_eq!(listing(dir.path()), ["source.esdk"], "round {round}: something was left");
                    failures += 1;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    println!("{successes} re-encrypted whole, {failures} refused");
}

/// A sparse source whose length implies frames of one byte numbered up to the `u32` limit (the final frame
/// `2^32 - 2`, the last number the format allows, and one past it), with a final frame's prefix where
/// that layout puts it: refused by both paths at the first frame, with nothing allocated for the count and
/// nothing left.
#[test]
fn attack_a_frame_count_at_the_u32_limit_is_refused_quickly() {
    let crafted = Crafted::new(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY, 1);
    let stride = 1 + 4 + 12 + 16;
    for count in [u32::MAX as u64 - 2, u32::MAX as u64 - 1] {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source.esdk");
        let file = fs::File::create(&source).unwrap();
        file.write_all_at(&crafted.header, 0).unwrap();
        let body_at = crafted.header.len() as u64;
        // The first frame genuine, the rest holes (zeros).
        file.write_all_at(&crafted.frame(&regular(1, 1)), body_at).unwrap();
        let final_at = body_at + count * stride as u64;
        let Ok(()) = file.write_all_at(&fake_final_prefix(count as u32 + 1, 0), final_at) else {
            println!("no sparse file of {final_at} bytes here: nothing to check");
            return;
        };
        drop(file);
        let options = ReencryptOptions::new().target(target(65536, 3, 1 << 20));
        let destination = dir.path().join("rotated.esdk");
        let error =
            reencrypt_path(&old_keyring(), &new_keyring(), &options, &source, &destination, &OutputOptions::new())
                .expect_err("re-encrypted");
        assert!(matches!(error, Error::FrameAuthentication { .. } | Error::Malformed { .. }), "{count}: {error:?}");
        assert_eq!(listing(dir.path()), ["source.esdk"], "{count}: something was left");
    }
}

/// A body whose frames all carry valid tags but one is out of place (reordered, repeated, skipped,
/// numbered from 0, a final frame where a regular one belongs), or a tag that fails before a frame out of
/// place: the positioned path reports what the streaming `reencrypt` reports (the first thing wrong, in
/// the message's order), not an authentication failure of a frame whose tag is valid.
#[test]
fn attack_a_frame_out_of_place_gets_the_streaming_error() {
    let f = F;
    let crafted = Crafted::new(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY, F as u32);
    let cases: Vec<(&str, Vec<Frame>)> = vec![
        ("frames reordered", vec![regular(1, f), regular(3, f), regular(2, f), last(4, 3)]),
        ("a frame repeated", vec![regular(1, f), regular(2, f), regular(2, f), last(4, 3)]),
        ("a frame skipped", vec![regular(1, f), regular(2, f), regular(4, f), regular(5, f), last(5, 3)]),
        ("numbered from 0", vec![regular(0, f), regular(1, f), last(2, 3)]),
        // A final frame exactly a regular frame long, then another final frame: the body fits the layout.
        ("a final frame where a regular one belongs", vec![regular(1, f), last(2, f - 8), last(3, 3)]),
    ];
    let mut messages: Vec<(&str, Vec<u8>)> =
        cases.iter().map(|(what, frames)| (*what, crafted.message(frames))).collect();
    // Frame 2's tag fails, frame 4 is out of place: frame 2's failure comes first.
    let mut both = crafted.message(&[regular(1, f), regular(2, f), regular(3, f), regular(5, f), last(5, 3)]);
    let tag_of_2 = crafted.header.len() + 2 * (f + 32) - 1;
    both[tag_of_2] ^= 1;
    messages.push(("a failed tag before a frame out of place", both));
    for (what, message) in &messages {
        for (frame_len, threads, job) in [(F, 1, F), (F, 3, F), (45, 3, 45)] {
            let options = ReencryptOptions::new().target(target(frame_len as u32, threads, job));
            let what = format!("{what} (target frames of {frame_len}, {threads} threads)");
            let streamed = streamed(message, &options).expect_err(&what);
            let fused = from_file(&what, message, &options).expect_err(&what);
            assert_eq!(fused.to_string(), streamed.to_string(), "{what}");
        }
    }
}
