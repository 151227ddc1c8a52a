//! What the kms-envelope fuzz targets and the seed generator share: the fixed keyring, the decrypt
//! options and limits, a streaming decrypt that checks the `Read` contract as it goes, the reference
//! messages of the structure-aware `mutate` target, and the mutation language that target speaks.
//!
//! Everything here uses the crate's public API only.

pub mod seeds;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read};
use std::ops::Range;
use std::sync::OnceLock;

use kms_envelope::crypto::kdf::V1Info;
use kms_envelope::crypto::signature::MessageSigner;
use kms_envelope::format::frame::{BlockKind, BodyAad};
use kms_envelope::format::header::{HeaderDecoder, IV_LEN, MessageId};
use kms_envelope::format::suite::MessageFormat;
use kms_envelope::keyring::{EncryptionMaterials, block_on};
use kms_envelope::{
    AlgorithmSuite, CommitmentPolicy, DataKey, DecryptLimits, DecryptOptions, Decryptor, EncryptOptions,
    EncryptionContext, Error, Keyring, RawAesKeyring,
};

/// Every target's `init`. With `KMS_ENVELOPE_FUZZ_WRITE_SEEDS=<corpus dir>` set (and optionally
/// `KMS_ENVELOPE_FUZZ_VECTORS=<vectors dir>`), writes the seed corpora of all targets and exits instead of
/// fuzzing: scripts/fuzz.sh seeds through a target binary it has built anyway.
pub fn init() {
    if let Some(corpus) = std::env::var_os(seeds::SEED_ENV) {
        let vectors = std::env::var_os(seeds::VECTORS_ENV).filter(|v| !v.is_empty());
        seeds::write_all(corpus.as_ref(), vectors.as_deref().map(std::path::Path::new));
        std::process::exit(0);
    }
}

/// The keyring every target decrypts with: `RawAesKeyring::new("fuzz", "key", &[0x11; 32])`.
pub fn keyring() -> &'static RawAesKeyring {
    static KEYRING: OnceLock<RawAesKeyring> = OnceLock::new();
    KEYRING.get_or_init(|| RawAesKeyring::new("fuzz", "key", &[0x11; 32]).expect("a valid raw AES keyring"))
}

/// Limits small enough that no input can make a target allocate more than a few MiB: an out-of-memory
/// report under these limits is a real bug, not a large-but-allowed message.
pub const SMALL_LIMITS: DecryptLimits = DecryptLimits {
    max_frame_length: 1 << 20,
    max_frame_buffers: 4 << 20,
    max_nonframed_body_len: 1 << 20,
    max_header_len: 1 << 16,
    max_encrypted_data_keys: Some(16),
};

/// The decrypt options of every target: legacy (v1) suites allowed, so that every parser path is reachable.
pub fn decrypt_options(limits: DecryptLimits) -> DecryptOptions {
    DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt).limits(limits)
}

/// What a streaming decrypt produced.
#[derive(Debug)]
pub struct Outcome {
    /// Every plaintext byte `read` handed out, in order.
    pub released: Vec<u8>,
    /// Whether the header authenticated (`Decryptor::new` succeeded).
    pub header_ok: bool,
    /// `Ok` once `read` returned `Ok(0)`; the first error otherwise.
    pub result: Result<(), Error>,
}

/// Decrypts `message` through the streaming [`Decryptor`], `read`ing into a buffer of `chunk` bytes, and
/// asserts the `Read` contract on the way: no read returns more than the buffer holds, no more plaintext
/// is released than there was ciphertext, a finished decryptor keeps returning `Ok(0)`, and a failed one
/// keeps failing without releasing anything more.
pub fn stream_decrypt(message: &[u8], limits: DecryptLimits, chunk: usize) -> Outcome {
    stream_decrypt_with(message, &decrypt_options(limits), chunk)
}

/// [`stream_decrypt`] with any options.
pub fn stream_decrypt_with(message: &[u8], options: &DecryptOptions, chunk: usize) -> Outcome {
    let mut decryptor = match Decryptor::new(keyring(), options, message) {
        Ok(d) => d,
        Err(e) => {
            return Outcome { released: Vec::new(), header_ok: false, result: Err(e) };
        }
    };
    let mut released = Vec::new();
    let mut buf = vec![0u8; chunk.max(1)];
    loop {
        match decryptor.read(&mut buf) {
            Ok(0) => {
                assert!(decryptor.is_complete(), "read returned Ok(0) but the decryptor is not complete");
                assert!(matches!(decryptor.read(&mut buf), Ok(0)), "a finished decryptor must keep returning Ok(0)");
                return Outcome { released, header_ok: true, result: Ok(()) };
            }
            Ok(n) => {
                assert!(n <= buf.len());
                released.extend_from_slice(&buf[..n]);
                assert!(
                    released.len() <= message.len(),
                    "released {} plaintext bytes from a {}-byte message",
                    released.len(),
                    message.len()
                );
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {
                panic!("the decryptor returned Interrupted: {e}")
            }
            Err(e) => {
                assert!(!decryptor.is_complete(), "a failed decryptor claims to be complete");
                match decryptor.read(&mut buf) {
                    Err(_) => {}
                    Ok(n) => {
                        panic!("read after an error returned Ok({n}) instead of failing again")
                    }
                }
                return Outcome { released, header_ok: true, result: Err(Error::from_io(e)) };
            }
        }
    }
}

/// The decrypt options of the frame pipeline's worker path: two worker threads from the first byte of
/// the body, jobs of `job_length` bytes of frames. Needs `DecryptOptions::threads`, `parallel_threshold`
/// and `job_length` (feature `parallel` of this crate, on by default).
#[cfg(feature = "parallel")]
pub fn parallel_options(limits: DecryptLimits, job_length: usize) -> DecryptOptions {
    decrypt_options(limits).threads(2).parallel_threshold(0).job_length(job_length)
}

/// The body of the `decrypt` targets: a streaming decrypt of arbitrary bytes into a buffer of 1 to 61
/// bytes (from the input's length), with the `Read` contract checks of [`stream_decrypt`]. When the header
/// authenticated, the one-shot [`kms_envelope::decrypt`] must reach the same verdict and plaintext; with
/// feature `parallel` it runs on the worker threads of the frame pipeline, so the two paths are compared.
pub fn check_decrypt(data: &[u8], limits: DecryptLimits) {
    let out = stream_decrypt(data, limits, 1 + data.len() % 61);
    if out.header_ok {
        #[cfg(feature = "parallel")]
        let options = parallel_options(limits, 1 + data.len() % 200);
        #[cfg(not(feature = "parallel"))]
        let options = decrypt_options(limits);
        let one_shot = kms_envelope::decrypt(keyring(), &options, data);
        match (&out.result, one_shot) {
            (Ok(()), Ok(d)) => {
                assert_eq!(&d.plaintext[..], &out.released[..], "one-shot and streaming plaintexts differ")
            }
            (Err(_), Err(_)) => {}
            (stream, one_shot) => {
                panic!("streaming and one-shot decrypt disagree: {stream:?} vs {:?}", one_shot.map(|_| ()))
            }
        }
    }
}

/// The body of the `mutate` targets. Input: byte 0 picks the reference message; byte 1 the read-buffer
/// size (1 to 32, low five bits) and, when `parallel`, the pipeline's job length (1 to 281 bytes, high
/// three bits); the rest are up to 16 [`Mutation`]s. Decrypt must fail, or succeed with exactly the
/// original plaintext and only when the edits were a no-op (or rebuilt another reference message whole,
/// from spliced segments); when it fails, what the streaming decryptor released before the error must be
/// a prefix of the true plaintext that stops before the final frame.
pub fn check_mutation(data: &[u8], parallel: bool) {
    let refs = reference_messages();
    let mut bytes = Bytes(data);
    let (Some(pick), Some(knobs)) = (bytes.u8(), bytes.u8()) else { return };
    let reference = &refs[usize::from(pick) % refs.len()];
    let chunk = usize::from(knobs % 32) + 1;
    let mutations = Mutation::decode(&mut bytes, 16);
    let mut message = reference.message.clone();
    for m in &mutations {
        m.apply(&mut message, reference, refs);
    }
    let options = if parallel {
        #[cfg(feature = "parallel")]
        {
            parallel_options(DecryptLimits::default(), 1 + usize::from(knobs >> 5) * 40)
        }
        #[cfg(not(feature = "parallel"))]
        panic!("the parallel mutate target needs feature `parallel`")
    } else {
        decrypt_options(DecryptLimits::default())
    };
    let out = stream_decrypt_with(&message, &options, chunk);
    // The one-shot helper (with `parallel`: the whole-message path on two threads) reaches the same
    // verdict, and leaves nothing in its buffer when it fails.
    let mut one_shot = zeroize::Zeroizing::new(vec![0x5a; 100]);
    match (&out.result, kms_envelope::decrypt_into(keyring(), &options, &message, &mut one_shot)) {
        (Ok(()), Ok(_)) => assert_eq!(&one_shot[..], &out.released[..], "one-shot and streaming plaintexts differ"),
        (Err(_), Err(_)) => assert!(one_shot.is_empty(), "decrypt_into left bytes after an error"),
        (stream, other) => panic!("streaming and one-shot decrypt disagree: {stream:?} vs {:?}", other.map(drop)),
    }
    let what = || {
        format!(
            "\nreference {}\nmutations {mutations:?}\nmutated message ({} bytes) {}\nreleased {} bytes; result {:?}",
            reference.name,
            message.len(),
            hex(&message),
            out.released.len(),
            out.result
        )
    };
    // Mutations only move, copy and damage bytes of the reference messages, and every header is
    // authenticated: a header that verifies must be, byte for byte, the header of one of them (splices can
    // bring in another's), and that message decides what may come out.
    let origin = refs.iter().find(|r| message.starts_with(&r.message[r.segments[0].clone()]));
    if out.header_ok {
        assert!(origin.is_some(), "a header that is none of the references' authenticated{}", what());
    }
    match (&out.result, origin) {
        (Ok(()), Some(origin)) => {
            assert_eq!(out.released, origin.plaintext, "decrypt succeeded with another plaintext{}", what());
            assert_eq!(message, origin.message, "decrypt accepted a modified message{}", what());
        }
        (Ok(()), None) => unreachable!("Ok implies the header authenticated"),
        (Err(_), origin) => {
            let (plaintext, final_len) = origin.map_or((&[][..], 0), |r| (&r.plaintext[..], r.final_len));
            assert!(
                plaintext.starts_with(&out.released),
                "released plaintext is not a prefix of the true plaintext{}",
                what()
            );
            assert!(
                out.released.len() <= plaintext.len() - final_len,
                "the final frame's plaintext was released by a decrypt that failed{}",
                what()
            );
            assert!(
                !refs.iter().any(|r| r.message == message),
                "an unmodified reference message failed to decrypt{}",
                what()
            );
        }
    }
}

/// The body of the `range` target. Input: bytes 0-3 the plaintext range (two big-endian u16, start and
/// end, reduced modulo the reference plaintext's length + 2 so that a few ranges run past the end), then
/// the `mutate` layout (see [`check_mutation`]): reference, knobs (bit 0: parallel pieces), mutations.
/// `decrypt_range` must never release bytes that are not the true plaintext's slice of the message whose
/// authenticated header it read; where the whole mutated message decrypts (unsigned, framed), the range
/// must decrypt to the same slice of it. A range that skips a damaged frame may succeed where a full
/// decrypt fails, with the original bytes.
pub fn check_range(data: &[u8]) {
    let refs = reference_messages();
    let mut bytes = Bytes(data);
    let (Some(a), Some(b), Some(pick), Some(knobs)) = (bytes.u16(), bytes.u16(), bytes.u8(), bytes.u8()) else {
        return;
    };
    let reference = &refs[usize::from(pick) % refs.len()];
    let span = reference.plaintext.len() as u64 + 2;
    let (start, end) = ((a as u64 % span).min(b as u64 % span), (a as u64 % span).max(b as u64 % span));
    let mutations = Mutation::decode(&mut bytes, 16);
    let mut message = reference.message.clone();
    for m in &mutations {
        m.apply(&mut message, reference, refs);
    }
    #[cfg_attr(not(feature = "parallel"), allow(unused_mut))]
    let mut options = decrypt_options(DecryptLimits::default());
    #[cfg(feature = "parallel")]
    if knobs & 1 == 1 {
        options = options.threads(2).parallel_threshold(0);
    }
    #[cfg(not(feature = "parallel"))]
    let _ = knobs;
    let ranged = kms_envelope::decrypt_range(keyring(), &options, &message, start..end);
    let full = kms_envelope::decrypt(keyring(), &options, &message);
    let what = || format!("\nreference {}\nrange {start}..{end}\nmutations {mutations:?}", reference.name);
    if let Ok(ranged) = &ranged {
        // A header that authenticates is one of the references' (see check_mutation); its plaintext decides.
        let origin = refs.iter().find(|r| message.starts_with(&r.message[r.segments[0].clone()]));
        let origin = origin.unwrap_or_else(|| panic!("a range decrypted under no reference's header{}", what()));
        let expected = origin.plaintext.get(start as usize..end as usize);
        assert_eq!(Some(&ranged.plaintext[..]), expected, "a range released other bytes{}", what());
    }
    if let Ok(full) = &full {
        let suite = full.header.suite();
        let framed = full.header.content_type() == kms_envelope::ContentType::Framed;
        if suite.signature().is_none() && framed && end <= full.plaintext.len() as u64 {
            let ranged =
                ranged.unwrap_or_else(|e| panic!("the message decrypts whole but not by range: {e}{}", what()));
            assert_eq!(ranged.plaintext[..], full.plaintext[start as usize..end as usize], "{}", what());
        } else {
            assert!(ranged.is_err(), "a signed, non-framed or out-of-bounds range decrypted{}", what());
        }
    }
}

/// A message our own encryptor wrote, with its plaintext and layout.
#[derive(Debug, Clone)]
pub struct Reference {
    /// A file-name friendly description.
    pub name: String,
    /// The plaintext encrypted.
    pub plaintext: Vec<u8>,
    /// The message.
    pub message: Vec<u8>,
    /// Byte ranges of the header, each frame in order, then the footer (empty for unsigned suites).
    pub segments: Vec<Range<usize>>,
    /// Plaintext length of the final frame (or of the non-framed body).
    pub final_len: usize,
}

/// The encryption context of every reference message: stored in the header, authenticated.
pub fn reference_context() -> EncryptionContext {
    [("purpose", "fuzz"), ("tenant", "t-42"), ("\u{e9}t\u{e9}", "\u{1F512}")].into_iter().collect()
}

/// A plaintext whose frames all differ, so that a reordered frame cannot pass for the original.
pub fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7 + i / 251) as u8).collect()
}

/// Encrypts with our encryptor under the fuzz keyring.
pub fn encrypt(suite: AlgorithmSuite, frame_length: u32, plaintext: &[u8]) -> Vec<u8> {
    let policy = if suite.is_committing() {
        CommitmentPolicy::RequireEncryptRequireDecrypt
    } else {
        CommitmentPolicy::ForbidEncryptAllowDecrypt
    };
    let options = EncryptOptions::new()
        .suite(suite)
        .commitment_policy(policy)
        .frame_length(frame_length)
        .encryption_context(reference_context());
    kms_envelope::encrypt(keyring(), &options, plaintext).expect("our encryptor encrypts")
}

/// Splits a well-formed message into header, frames (or the non-framed body) and footer.
pub fn segments(message: &[u8]) -> (Vec<Range<usize>>, usize) {
    let header = HeaderDecoder::read_from(DecryptLimits::default(), &mut &message[..]).expect("a valid header");
    let mut out = Vec::with_capacity(8);
    out.push(0..header.as_bytes().len());
    let mut at = header.as_bytes().len();
    let be32 = |at: usize| u32::from_be_bytes(message[at..at + 4].try_into().unwrap()) as usize;
    let final_len;
    if header.frame_length() == 0 {
        // Non-framed: IV, u64 length, ciphertext, tag.
        let len = u64::from_be_bytes(message[at + IV_LEN..at + IV_LEN + 8].try_into().unwrap()) as usize;
        let end = at + IV_LEN + 8 + len + 16;
        out.push(at..end);
        at = end;
        final_len = len;
    } else {
        loop {
            if be32(at) == 0xFFFF_FFFF {
                let len = be32(at + 4 + 4 + IV_LEN);
                let end = at + 4 + 4 + IV_LEN + 4 + len + 16;
                out.push(at..end);
                at = end;
                final_len = len;
                break;
            }
            let end = at + 4 + IV_LEN + header.frame_length() as usize + 16;
            out.push(at..end);
            at = end;
        }
    }
    out.push(at..message.len());
    (out, final_len)
}

/// The reference messages of the `mutate` target, built once per process: suites 0x0478 and 0x0578,
/// frame lengths from 1 to 64, several frames (including a plaintext that is an exact multiple of the frame
/// length, and an empty one), all with a non-empty encryption context.
///
/// Message ids, data keys and signatures are random, so each process has different bytes but always the
/// same layout: a crash input reproduces by its structure.
pub fn reference_messages() -> &'static [Reference] {
    static REFS: OnceLock<Vec<Reference>> = OnceLock::new();
    REFS.get_or_init(|| {
        let mut refs = Vec::new();
        let cases: &[(u32, usize)] = &[(1, 5), (3, 9), (16, 40), (64, 150), (7, 0), (64, 64), (5, 23)];
        for suite in [
            AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
            AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
        ] {
            for &(frame_length, len) in cases {
                let plaintext = plaintext(len);
                let message = encrypt(suite, frame_length, &plaintext);
                let (segments, final_len) = segments(&message);
                refs.push(Reference {
                    name: format!("{:04x}-frame{frame_length}-len{len}", suite.id()),
                    plaintext,
                    message,
                    segments,
                    final_len,
                });
            }
        }
        refs
    })
}

/// Builds a message by hand from the crate's building blocks, with a known data key: how the seed
/// generator gets non-framed messages (which our encryptor never writes) that the fuzz keyring opens.
/// `frame_length` 0 makes a non-framed body. A plaintext that is an exact multiple of the frame length ends
/// with an empty final frame, as our encryptor writes it; see [`craft_message_full_final`] for the other
/// legal encoding.
pub fn craft_message(suite: AlgorithmSuite, frame_length: u32, plaintext: &[u8]) -> Vec<u8> {
    craft(suite, frame_length, plaintext, false)
}

/// [`craft_message`], but a non-empty plaintext that is an exact multiple of the frame length ends with a
/// **full-length** final frame, as the Python ESDK 4.x writes it (the encoding the one-shot decrypt path
/// must also accept).
pub fn craft_message_full_final(suite: AlgorithmSuite, frame_length: u32, plaintext: &[u8]) -> Vec<u8> {
    craft(suite, frame_length, plaintext, true)
}

fn craft(suite: AlgorithmSuite, frame_length: u32, plaintext: &[u8], full_final: bool) -> Vec<u8> {
    let mut signer = suite.signature().map(MessageSigner::generate);
    let mut context = reference_context();
    if let Some(signer) = &signer {
        context.insert("aws-crypto-public-key", signer.public_key_base64());
    }
    let data_key: Vec<u8> = (0..suite.key_len() as u8).map(|i| i.wrapping_mul(7) ^ 0x5a).collect();
    let mut materials = EncryptionMaterials::new(suite, context.clone(), BTreeSet::new());
    materials.set_data_key(DataKey::new(data_key.clone())).expect("a data key of the suite's length");
    let materials = block_on(keyring().on_encrypt(materials)).expect("the raw AES keyring wraps");
    let message_id = match suite.message_format() {
        MessageFormat::V1 => MessageId::from_bytes(&[0xA1; 16]),
        MessageFormat::V2 => MessageId::from_bytes(&[0xA2; 32]),
    }
    .expect("16 or 32 bytes");
    let keys = kms_envelope::crypto::MessageKeys::derive(suite, &DataKey::new(data_key), &message_id, V1Info::Standard)
        .expect("keys derive");

    let v1 = suite.message_format() == MessageFormat::V1;
    let mut header = Vec::new();
    if v1 {
        header.extend_from_slice(&[1, 0x80]);
    } else {
        header.push(2);
    }
    header.extend_from_slice(&suite.id().to_be_bytes());
    header.extend_from_slice(message_id.as_bytes());
    let aad = context.serialize().expect("the context serializes");
    header.extend_from_slice(&(aad.len() as u16).to_be_bytes());
    header.extend_from_slice(&aad);
    let edks = materials.encrypted_data_keys();
    header.extend_from_slice(&(edks.len() as u16).to_be_bytes());
    for edk in edks {
        for field in [edk.provider_id.as_bytes(), &edk.provider_info, &edk.ciphertext] {
            header.extend_from_slice(&(field.len() as u16).to_be_bytes());
            header.extend_from_slice(field);
        }
    }
    header.push(if frame_length == 0 { 1 } else { 2 });
    if v1 {
        header.extend_from_slice(&[0, 0, 0, 0, IV_LEN as u8]);
    }
    header.extend_from_slice(&frame_length.to_be_bytes());
    if let Some(commitment) = &keys.commitment {
        header.extend_from_slice(commitment);
    }
    let header_iv = if v1 { [0x77u8; IV_LEN] } else { [0u8; IV_LEN] };
    let tag = keys.content.seal_in_place(&header_iv, &header, &mut []);
    if v1 {
        header.extend_from_slice(&header_iv);
    }
    header.extend_from_slice(&tag);

    let mut message = header;
    let seal = |message: &mut Vec<u8>, kind: BlockKind, sequence: u32, chunk: &[u8]| {
        // Deliberately not the canonical sequence-number IV: decryptors must use the stored one.
        let mut iv = [0x3cu8; IV_LEN];
        iv[..4].copy_from_slice(&sequence.to_be_bytes());
        let aad = BodyAad::new(&message_id, kind, sequence, chunk.len() as u64);
        let mut ciphertext = chunk.to_vec();
        let tag = keys.content.seal_in_place(&iv, aad.as_bytes(), &mut ciphertext);
        match kind {
            BlockKind::SingleBlock => {
                message.extend_from_slice(&iv);
                message.extend_from_slice(&(chunk.len() as u64).to_be_bytes());
            }
            BlockKind::Regular => {
                message.extend_from_slice(&sequence.to_be_bytes());
                message.extend_from_slice(&iv);
            }
            BlockKind::Final => {
                message.extend_from_slice(&0xFFFF_FFFFu32.to_be_bytes());
                message.extend_from_slice(&sequence.to_be_bytes());
                message.extend_from_slice(&iv);
                message.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            }
        }
        message.extend_from_slice(&ciphertext);
        message.extend_from_slice(&tag);
    };
    if frame_length == 0 {
        seal(&mut message, BlockKind::SingleBlock, 1, plaintext);
    } else {
        let frame = frame_length as usize;
        let mut chunks: Vec<&[u8]> = plaintext.chunks(frame).collect();
        // An exact multiple ends with an empty final frame (what our encryptor writes) unless a full final
        // frame is asked for; an empty plaintext always has one empty final frame.
        if plaintext.is_empty() || (plaintext.len().is_multiple_of(frame) && !full_final) {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.iter().enumerate() {
            let kind = if i == last { BlockKind::Final } else { BlockKind::Regular };
            seal(&mut message, kind, i as u32 + 1, chunk);
        }
    }
    if let Some(mut signer) = signer.take() {
        signer.update(&message);
        let signature = signer.sign().expect("signing works");
        message.extend_from_slice(&(signature.len() as u16).to_be_bytes());
        message.extend_from_slice(&signature);
    }
    message
}

/// Reads the fuzzer's bytes as numbers; everything past the end reads as absent.
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    /// The next byte.
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> Option<usize> {
        Some(usize::from(self.u8()?) << 8 | usize::from(self.u8()?))
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (out, rest) = self.0.split_at(n);
        self.0 = rest;
        out
    }
}

/// One edit of a message. Byte positions are reduced modulo the current length; segment numbers index
/// the reference message's layout (header, frames, footer), clamped to the current length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// XOR the byte at `at` with `mask`.
    Flip { at: usize, mask: u8 },
    /// Keep the first `len` bytes.
    Truncate { len: usize },
    /// Insert `bytes` before `at`.
    Insert { at: usize, bytes: Vec<u8> },
    /// Delete `len` bytes from `at`.
    Delete { at: usize, len: usize },
    /// Exchange two non-overlapping ranges (possibly of different lengths).
    SwapRanges { a: usize, a_len: usize, gap: usize, b_len: usize },
    /// Insert a copy of segment `segment` before segment `before` (a duplicated or replayed frame).
    DuplicateSegment { segment: usize, before: usize },
    /// Exchange two segments (reordered frames).
    SwapSegments { i: usize, j: usize },
    /// Remove a segment (a dropped frame, header or footer).
    DeleteSegment { segment: usize },
    /// Insert segment `segment` of reference message `from` before segment `before` (a frame from another
    /// message: other message id, other key).
    SpliceForeign { from: usize, segment: usize, before: usize },
    /// Set a 4-byte big-endian field at `at` to `value` (length fields, sequence numbers, frame length).
    SetU32 { at: usize, value: u32 },
}

impl Mutation {
    /// Decodes at most `max` mutations from the fuzzer's bytes.
    pub fn decode(bytes: &mut Bytes<'_>, max: usize) -> Vec<Mutation> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(op) = bytes.u8() else { break };
            let m = (|| {
                Some(match op % 10 {
                    0 => Mutation::Flip { at: bytes.u16()?, mask: bytes.u8()? },
                    1 => Mutation::Truncate { len: bytes.u16()? },
                    2 => {
                        let at = bytes.u16()?;
                        let n = usize::from(bytes.u8()? % 32) + 1;
                        Mutation::Insert { at, bytes: bytes.take(n).to_vec() }
                    }
                    3 => Mutation::Delete { at: bytes.u16()?, len: usize::from(bytes.u8()?) + 1 },
                    4 => Mutation::SwapRanges {
                        a: bytes.u16()?,
                        a_len: usize::from(bytes.u8()?),
                        gap: bytes.u16()?,
                        b_len: usize::from(bytes.u8()?),
                    },
                    5 => Mutation::DuplicateSegment { segment: bytes.u8()?.into(), before: bytes.u8()?.into() },
                    6 => Mutation::SwapSegments { i: bytes.u8()?.into(), j: bytes.u8()?.into() },
                    7 => Mutation::DeleteSegment { segment: bytes.u8()?.into() },
                    8 => Mutation::SpliceForeign {
                        from: bytes.u8()?.into(),
                        segment: bytes.u8()?.into(),
                        before: bytes.u8()?.into(),
                    },
                    _ => Mutation::SetU32 {
                        at: bytes.u16()?,
                        value: u32::from_be_bytes([bytes.u8()?, bytes.u8()?, bytes.u8()?, bytes.u8()?]),
                    },
                })
            })();
            match m {
                Some(m) => out.push(m),
                None => break,
            }
        }
        out
    }

    /// Applies the mutation to `msg`, a (possibly already mutated) copy of `reference`.
    pub fn apply(&self, msg: &mut Vec<u8>, reference: &Reference, all: &[Reference]) {
        let len = msg.len();
        let seg = |msg: &Vec<u8>, r: &Reference, i: usize| {
            let s = &r.segments[i % r.segments.len()];
            s.start.min(msg.len())..s.end.min(msg.len())
        };
        match *self {
            Mutation::Flip { at, mask } => {
                if len > 0 {
                    msg[at % len] ^= mask;
                }
            }
            Mutation::Truncate { len: keep } => msg.truncate(keep % (len + 1)),
            Mutation::Insert { at, ref bytes } => {
                let at = at % (len + 1);
                msg.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete { at, len: n } => {
                let at = at % (len + 1);
                msg.drain(at..(at + n).min(len));
            }
            Mutation::SwapRanges { a, a_len, gap, b_len } => {
                let a = a % (len + 1);
                let a_end = (a + a_len).min(len);
                let b = a_end + gap % (len - a_end + 1);
                let b_end = (b + b_len).min(len);
                let mut out = Vec::with_capacity(len);
                out.extend_from_slice(&msg[..a]);
                out.extend_from_slice(&msg[b..b_end]);
                out.extend_from_slice(&msg[a_end..b]);
                out.extend_from_slice(&msg[a..a_end]);
                out.extend_from_slice(&msg[b_end..]);
                *msg = out;
            }
            Mutation::DuplicateSegment { segment, before } => {
                let copy = msg[seg(msg, reference, segment)].to_vec();
                let at = seg(msg, reference, before).start;
                msg.splice(at..at, copy);
            }
            Mutation::SwapSegments { i, j } => {
                let (x, y) = (seg(msg, reference, i), seg(msg, reference, j));
                let (x, y) = if x.start <= y.start { (x, y) } else { (y, x) };
                if x.end <= y.start {
                    let mut out = Vec::with_capacity(len);
                    out.extend_from_slice(&msg[..x.start]);
                    out.extend_from_slice(&msg[y.clone()]);
                    out.extend_from_slice(&msg[x.end..y.start]);
                    out.extend_from_slice(&msg[x.clone()]);
                    out.extend_from_slice(&msg[y.end..]);
                    *msg = out;
                }
            }
            Mutation::DeleteSegment { segment } => {
                msg.drain(seg(msg, reference, segment));
            }
            Mutation::SpliceForeign { from, segment, before } => {
                let other = &all[from % all.len()];
                let s = &other.segments[segment % other.segments.len()];
                let copy = other.message[s.clone()].to_vec();
                let at = seg(msg, reference, before).start;
                msg.splice(at..at, copy);
            }
            Mutation::SetU32 { at, value } => {
                if len >= 4 {
                    let at = at % (len - 3);
                    msg[at..at + 4].copy_from_slice(&value.to_be_bytes());
                }
            }
        }
    }

    /// Encodes the mutation in the form [`decode`](Self::decode) reads (for seed inputs).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let u16 = |out: &mut Vec<u8>, v: usize| out.extend_from_slice(&(v as u16).to_be_bytes());
        match *self {
            Mutation::Flip { at, mask } => {
                out.push(0);
                u16(out, at);
                out.push(mask);
            }
            Mutation::Truncate { len } => {
                out.push(1);
                u16(out, len);
            }
            Mutation::Insert { at, ref bytes } => {
                out.push(2);
                u16(out, at);
                out.push((bytes.len().clamp(1, 32) - 1) as u8);
                out.extend_from_slice(&bytes[..bytes.len().clamp(1, 32)]);
            }
            Mutation::Delete { at, len } => {
                out.push(3);
                u16(out, at);
                out.push((len.clamp(1, 256) - 1) as u8);
            }
            Mutation::SwapRanges { a, a_len, gap, b_len } => {
                out.push(4);
                u16(out, a);
                out.push(a_len as u8);
                u16(out, gap);
                out.push(b_len as u8);
            }
            Mutation::DuplicateSegment { segment, before } => out.extend_from_slice(&[5, segment as u8, before as u8]),
            Mutation::SwapSegments { i, j } => out.extend_from_slice(&[6, i as u8, j as u8]),
            Mutation::DeleteSegment { segment } => out.extend_from_slice(&[7, segment as u8]),
            Mutation::SpliceForeign { from, segment, before } => {
                out.extend_from_slice(&[8, from as u8, segment as u8, before as u8])
            }
            Mutation::SetU32 { at, value } => {
                out.push(9);
                u16(out, at);
                out.extend_from_slice(&value.to_be_bytes());
            }
        }
    }
}

/// Hex of up to the first 4 KiB of `bytes`, for panic messages that must carry their reproducer.
pub fn hex(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(4096)];
    let mut s: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    if bytes.len() > shown.len() {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_crafted_messages_decrypt() {
        for r in reference_messages() {
            let out = stream_decrypt(&r.message, SMALL_LIMITS, 5);
            assert!(out.result.is_ok(), "{}: {:?}", r.name, out.result);
            assert_eq!(out.released, r.plaintext, "{}", r.name);
            assert_eq!(r.segments.last().unwrap().end, r.message.len());
        }
        for &suite in AlgorithmSuite::ALL {
            for frame_length in [0, 4, 10] {
                let pt = plaintext(20);
                let msg = craft_message(suite, frame_length, &pt);
                let out = stream_decrypt(&msg, SMALL_LIMITS, 3);
                assert!(out.result.is_ok(), "{suite} frame {frame_length}: {:?}", out.result);
                assert_eq!(out.released, pt);
                let (segs, final_len) = segments(&msg);
                assert_eq!(segs.last().unwrap().end, msg.len());
                assert_eq!(final_len, if frame_length == 0 { 20 } else { 20 % frame_length as usize });
            }
        }
    }

    #[test]
    fn full_length_final_frames_decrypt() {
        for &suite in AlgorithmSuite::ALL {
            for (frame_length, len) in [(4u32, 16usize), (8, 8)] {
                let pt = plaintext(len);
                let msg = craft_message_full_final(suite, frame_length, &pt);
                let (segs, final_len) = segments(&msg);
                assert_eq!(final_len, frame_length as usize, "{suite}: the final frame is full");
                assert_eq!(segs.last().unwrap().end, msg.len());
                let out = stream_decrypt(&msg, SMALL_LIMITS, 3);
                assert!(out.result.is_ok(), "{suite} frame {frame_length}: {:?}", out.result);
                assert_eq!(out.released, pt);
                let options = kms_envelope::DecryptOptions::new()
                    .commitment_policy(kms_envelope::CommitmentPolicy::RequireEncryptAllowDecrypt);
                let whole = kms_envelope::decrypt(keyring(), &options, &msg).expect("the one-shot path");
                assert_eq!(&whole.plaintext[..], &pt[..]);
            }
            // Empty plaintext: one empty final frame either way.
            let empty = craft_message_full_final(suite, 4, &[]);
            assert_eq!(segments(&empty).1, 0);
            assert!(stream_decrypt(&empty, SMALL_LIMITS, 3).result.is_ok());
        }
    }

    #[test]
    fn mutations_round_trip_through_their_encoding() {
        let ms = vec![
            Mutation::Flip { at: 300, mask: 0x80 },
            Mutation::Truncate { len: 12 },
            Mutation::Insert { at: 5, bytes: vec![1, 2, 3] },
            Mutation::Delete { at: 9, len: 4 },
            Mutation::SwapRanges { a: 1, a_len: 2, gap: 3, b_len: 4 },
            Mutation::DuplicateSegment { segment: 1, before: 2 },
            Mutation::SwapSegments { i: 1, j: 2 },
            Mutation::DeleteSegment { segment: 3 },
            Mutation::SpliceForeign { from: 2, segment: 1, before: 1 },
            Mutation::SetU32 { at: 7, value: 0xFFFF_FFFF },
        ];
        let mut bytes = Vec::new();
        ms.iter().for_each(|m| m.encode(&mut bytes));
        assert_eq!(Mutation::decode(&mut Bytes(&bytes), 100), ms);
    }
}
