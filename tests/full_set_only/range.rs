//! Random access (`decrypt_range`, `SeekableDecryptor`, `decrypt_range_async`): every range equals the same
//! slice of a full decrypt; damage is an error or, outside the range with the final frame intact, the right
//! bytes, never wrong ones; what cannot be verified by range is refused; a wrong key reads no frame.
//! Messages from the Python ESDK and the official vectors decrypt by range too.

use crate::common;

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;

use kms_envelope::stream::range::{AsyncRangeReader, MemorySource};
use kms_envelope::{
    AlgorithmSuite, CommitmentPolicy, DecryptOptions, EncryptOptions, Error, Keyring, MultiKeyring, RangeSource,
    RawAesKeyring, SeekableDecryptor, decrypt, decrypt_range, decrypt_range_async, encrypt,
};
use serde_json::Value;

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("range", "key", &[0x17; 32]).unwrap()
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i as u32).wrapping_mul(2654435761) >> 13) as u8).collect()
}

/// A small deterministic generator (xorshift), so that a failing sample can be reproduced.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 { 0 } else { self.0 % n }
    }
}

/// Every `(start, end)` of a plaintext of `len` bytes when there are few, else the ranges touching each
/// frame boundary and the ends, and a dense random sample.
fn ranges(len: u64, frame: u64, seed: u64) -> Vec<(u64, u64)> {
    if len <= 80 {
        return (0..=len).flat_map(|s| (s..=len).map(move |e| (s, e))).collect();
    }
    let mut points: Vec<u64> = vec![0, 1, len - 1, len];
    for boundary in (0..=len).step_by(frame as usize).chain([len - len % frame]) {
        points.extend([boundary.saturating_sub(1), boundary, (boundary + 1).min(len)]);
    }
    points.sort_unstable();
    points.dedup();
    let mut out: Vec<(u64, u64)> =
        points.iter().flat_map(|&s| points.iter().filter(move |&&e| e >= s).map(move |&e| (s, e))).collect();
    let mut rng = Rng(seed | 1);
    for _ in 0..300 {
        let s = rng.below(len + 1);
        out.push((s, s + rng.below(len - s + 1)));
    }
    out
}

fn sizes(frame: usize) -> Vec<usize> {
    let mut sizes = vec![0, 1, frame - 1, frame, frame + 1, 2 * frame, 3 * frame - 1, 3 * frame + 7];
    sizes.retain(|&s| s <= 3 * frame + 7);
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn parallel() -> DecryptOptions {
    // Pieces from the first byte, on three threads: the parallel path for every range.
    DecryptOptions::new().threads(3).parallel_threshold(0)
}

#[test]
fn every_range_equals_the_slice_of_a_full_decrypt() {
    for frame in [1usize, 16, 4096, 65536] {
        for size in sizes(frame) {
            let pt = plaintext(size);
            let message = encrypt(&keyring(), &EncryptOptions::new().frame_length(frame as u32), &pt).unwrap();
            assert_eq!(*decrypt(&keyring(), &DecryptOptions::new(), &message).unwrap().plaintext, pt);
            for (i, (s, e)) in ranges(size as u64, frame as u64, size as u64).into_iter().enumerate() {
                let options = if i % 2 == 0 { DecryptOptions::new() } else { parallel() };
                let got = decrypt_range(&keyring(), &options, &message, s..e)
                    .unwrap_or_else(|err| panic!("frame {frame}, size {size}, {s}..{e}: {err}"));
                assert!(*got.plaintext == pt[s as usize..e as usize], "frame {frame}, size {size}, {s}..{e}");
            }
        }
    }
}

#[test]
fn range_bounds_of_every_kind_and_past_the_end() {
    let pt = plaintext(100);
    let message = encrypt(&keyring(), &EncryptOptions::new().frame_length(16), &pt).unwrap();
    let get = |r: (std::ops::Bound<u64>, std::ops::Bound<u64>)| {
        decrypt_range(&keyring(), &DecryptOptions::new(), &message, r).map(|d| d.plaintext.to_vec())
    };
    use std::ops::Bound::*;
    assert_eq!(get((Unbounded, Unbounded)).unwrap(), pt);
    assert_eq!(get((Included(10), Included(20))).unwrap(), &pt[10..=20]);
    assert_eq!(get((Excluded(10), Unbounded)).unwrap(), &pt[11..]);
    assert_eq!(get((Included(100), Unbounded)).unwrap(), b"");
    for bad in [(Included(0), Excluded(101)), (Included(101), Unbounded), (Included(5), Excluded(4))] {
        assert!(matches!(get(bad), Err(Error::RangeOutOfBounds { plaintext_len: 100, .. })), "{bad:?}");
    }
    assert!(matches!(get((Included(0), Included(u64::MAX))), Err(Error::RangeOutOfBounds { .. })));
}

#[test]
fn the_async_path_gives_the_same_slices() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    for frame in [1usize, 16, 4096, 65536] {
        for size in sizes(frame) {
            let pt = plaintext(size);
            let message = encrypt(&keyring(), &EncryptOptions::new().frame_length(frame as u32), &pt).unwrap();
            let source = MemorySource(message);
            let mut all = ranges(size as u64, frame as u64, 7 + size as u64);
            // The async path is slower per call; a sample of each set is enough beside the sync path.
            all.retain(|&(s, e)| (s * 31 + e) % 5 == 0 || all_small(size));
            for (i, (s, e)) in all.into_iter().enumerate() {
                let options = if i % 2 == 0 { DecryptOptions::new() } else { parallel() };
                let got = runtime
                    .block_on(decrypt_range_async(&keyring(), &options, &source, s..e))
                    .unwrap_or_else(|err| panic!("frame {frame}, size {size}, {s}..{e}: {err}"));
                assert!(*got.plaintext == pt[s as usize..e as usize], "frame {frame}, size {size}, {s}..{e}");
            }
        }
    }
}

fn all_small(size: usize) -> bool {
    size <= 40
}

#[test]
fn a_seekable_decryptor_reads_like_the_plaintext() {
    for (frame, size) in [(16usize, 0usize), (16, 16), (16, 100), (4096, 3 * 4096 + 7), (1, 33), (65536, 1 << 21)] {
        let pt = plaintext(size);
        let message = encrypt(&keyring(), &EncryptOptions::new().frame_length(frame as u32), &pt).unwrap();
        let mut reader = SeekableDecryptor::new(&keyring(), &DecryptOptions::new(), io::Cursor::new(message)).unwrap();
        assert_eq!(reader.plaintext_len(), size as u64);
        assert_eq!(reader.frame_count(), (size / frame) as u64 + 1);
        assert_eq!(reader.layout().frame_length(), frame as u32);
        let mut whole = Vec::new();
        reader.read_to_end(&mut whole).unwrap();
        assert!(whole == pt, "frame {frame}, size {size}: a full read");
        assert_eq!(reader.read(&mut [0u8; 8]).unwrap(), 0, "reading at the end returns 0");

        let mut rng = Rng(size as u64 + 3);
        for _ in 0..50 {
            let s = rng.below(size as u64 + 1);
            let n = rng.below((size as u64 - s).min(3 * frame as u64) + 1) as usize;
            assert_eq!(reader.seek(SeekFrom::Start(s)).unwrap(), s);
            let mut buf = vec![0u8; n];
            reader.read_exact(&mut buf).unwrap();
            assert!(buf == pt[s as usize..s as usize + n], "frame {frame}, size {size}, {s}+{n}");
        }
        assert_eq!(reader.seek(SeekFrom::End(0)).unwrap(), size as u64);
        assert_eq!(reader.seek(SeekFrom::End(-(size as i64))).unwrap(), 0);
        assert_eq!(reader.stream_position().unwrap(), 0);
        let past = reader.seek(SeekFrom::End(1)).unwrap_err();
        assert_eq!(past.kind(), io::ErrorKind::InvalidInput);
        assert!(reader.seek(SeekFrom::Current(-1)).is_err());
        assert!(reader.seek(SeekFrom::Start(size as u64 + 1)).is_err());
    }
}

const FRAME: usize = 16;
const REGULAR: usize = 6;
const STRIDE: usize = FRAME + 32;

/// A message of 6 regular frames of 16 bytes and a final frame of 5: its bytes, its plaintext and where its
/// body starts.
fn damaged_base() -> (Vec<u8>, Vec<u8>, usize) {
    let pt = plaintext(REGULAR * FRAME + 5);
    let message = encrypt(&keyring(), &EncryptOptions::new().frame_length(FRAME as u32), &pt).unwrap();
    let header_len = message.len() - REGULAR * STRIDE - (4 + 4 + 12 + 4 + 5 + 16);
    (message, pt, header_len)
}

/// Frame `i` (0-based; `REGULAR` is the final frame) of the body starting at `body`, as a byte range.
fn frame_span(body: usize, i: usize) -> std::ops::Range<usize> {
    let start = body + i * STRIDE;
    if i == REGULAR { start..start + 4 + 4 + 12 + 4 + 5 + 16 } else { start..start + STRIDE }
}

/// Every range of `message`: an error, or exactly the original plaintext's slice. Returns the ranges that
/// decrypted.
fn only_right_bytes_or_errors(message: &[u8], pt: &[u8], what: &str) -> Vec<(u64, u64)> {
    let mut ok = Vec::new();
    for (s, e) in ranges(pt.len() as u64, FRAME as u64, 1) {
        if let Ok(got) = decrypt_range(&keyring(), &DecryptOptions::new(), message, s..e) {
            assert!(*got.plaintext == pt[s as usize..e as usize], "{what}: {s}..{e} released wrong bytes");
            ok.push((s, e));
        }
    }
    ok
}

/// Whether the plaintext range `s..e` needs regular frame `i` (0-based).
fn covers(s: u64, e: u64, i: usize) -> bool {
    let (fs, fe) = ((i * FRAME) as u64, ((i + 1) * FRAME) as u64);
    s < e && s < fe && e > fs
}

#[test]
fn a_tampered_frame_fails_every_range_that_needs_it_and_no_other() {
    let (message, pt, body) = damaged_base();
    for i in 0..=REGULAR {
        for offset in [0, 4, 16, STRIDE - 1] {
            let span = frame_span(body, i);
            let at = span.start + offset.min(span.len() - 1);
            let mut tampered = message.clone();
            tampered[at] ^= 0x40;
            let ok = only_right_bytes_or_errors(&tampered, &pt, &format!("frame {i} byte {offset}"));
            for (s, e) in ranges(pt.len() as u64, FRAME as u64, 1) {
                let needed = i == REGULAR || covers(s, e, i);
                assert_eq!(ok.contains(&(s, e)), !needed, "frame {i} byte {offset} tampered, range {s}..{e}");
            }
            if i < REGULAR {
                let first = (i * FRAME) as u64;
                let err = decrypt_range(&keyring(), &DecryptOptions::new(), &tampered, first..first + 1).unwrap_err();
                assert!(
                    matches!(err, Error::FrameAuthentication { sequence } if sequence == i as u32 + 1)
                        || matches!(err, Error::FrameAuthentication { .. }) && offset < 4,
                    "frame {i}: {err}"
                );
            }
        }
    }
}

#[test]
fn swapped_and_duplicated_frames_fail_where_they_are_read() {
    let (message, pt, body) = damaged_base();
    for (a, b) in [(0, 1), (2, 5), (1, 4)] {
        for duplicate in [false, true] {
            let mut damaged = message.clone();
            let (fa, fb) = (message[frame_span(body, a)].to_vec(), message[frame_span(body, b)].to_vec());
            damaged[frame_span(body, b)].copy_from_slice(&fa);
            if !duplicate {
                damaged[frame_span(body, a)].copy_from_slice(&fb);
            }
            let what = format!("frames {a},{b} {}", if duplicate { "duplicated" } else { "swapped" });
            let ok = only_right_bytes_or_errors(&damaged, &pt, &what);
            for (s, e) in ranges(pt.len() as u64, FRAME as u64, 1) {
                let needed = covers(s, e, b) || (!duplicate && covers(s, e, a));
                assert_eq!(ok.contains(&(s, e)), !needed, "{what}, range {s}..{e}");
            }
        }
    }
    // The final frame in a regular frame's place, and a regular frame in the final frame's.
    let mut moved = message.clone();
    let last = frame_span(body, REGULAR);
    moved.truncate(last.start);
    moved.truncate(moved.len() - STRIDE);
    moved.extend_from_slice(&message[last.clone()]);
    assert!(only_right_bytes_or_errors(&moved, &pt, "final frame moved up").is_empty());
}

#[test]
fn a_cut_or_extended_message_fails_every_range() {
    let (message, pt, body) = damaged_base();
    let cuts = [1, 5, 16, 21, STRIDE, STRIDE + 1, message.len() - body - 1];
    for cut in cuts {
        let short = &message[..message.len() - cut];
        assert!(only_right_bytes_or_errors(short, &pt, &format!("cut by {cut}")).is_empty(), "cut by {cut}");
    }
    for extra in [1usize, 16, STRIDE] {
        let mut long = message.clone();
        long.extend(std::iter::repeat_n(0u8, extra));
        assert!(only_right_bytes_or_errors(&long, &pt, &format!("{extra} appended")).is_empty());
        // A whole copy of the last regular frame appended after the final frame.
        let mut again = message.clone();
        again.extend_from_slice(&message[frame_span(body, REGULAR - 1)]);
        assert!(only_right_bytes_or_errors(&again, &pt, "frame appended").is_empty());
    }
    for keep in [0, 1, body - 1, body] {
        assert!(decrypt_range(&keyring(), &DecryptOptions::new(), &message[..keep], ..).is_err(), "{keep}");
    }
}

#[test]
fn signed_and_non_framed_messages_are_refused_before_the_keyring_runs() {
    let signed = EncryptOptions::new().suite(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384);
    let message = encrypt(&keyring(), &signed, b"signed plaintext").unwrap();
    let counting = Counting::new(&message);
    let never = CountingKeyring::default();
    let err = decrypt_range(&never, &DecryptOptions::new(), &counting, ..).unwrap_err();
    assert!(matches!(&err, Error::RangeRefused(why) if why.contains("0x0578")), "{err}");
    assert_eq!(never.0.load(std::sync::atomic::Ordering::SeqCst), 0, "the keyring must not run");
    assert_eq!(counting.reads().len(), 1, "the header alone is read");
    assert!(err.to_string().contains("signed suite 0x0578"), "{err}");
    let reader = SeekableDecryptor::new(&keyring(), &DecryptOptions::new(), io::Cursor::new(message));
    assert!(matches!(reader, Err(Error::RangeRefused(_))));
}

/// A message source that records every read.
struct Counting<'a> {
    bytes: &'a [u8],
    reads: Mutex<Vec<(u64, usize)>>,
}

impl<'a> Counting<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, reads: Mutex::new(Vec::new()) }
    }

    fn reads(&self) -> Vec<(u64, usize)> {
        self.reads.lock().unwrap().clone()
    }
}

impl RangeSource for Counting<'_> {
    fn total_len(&self) -> io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.reads.lock().unwrap().push((offset, buf.len()));
        self.bytes.read_exact_at(offset, buf)
    }
}

/// A keyring that counts its calls and never decrypts anything.
#[derive(Default)]
struct CountingKeyring(std::sync::atomic::AtomicUsize);

impl Keyring for CountingKeyring {
    fn on_encrypt<'a>(
        &'a self,
        materials: kms_envelope::keyring::EncryptionMaterials,
    ) -> kms_envelope::keyring::KeyringFuture<'a, kms_envelope::keyring::EncryptionMaterials> {
        Box::pin(async move { Ok(materials) })
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: kms_envelope::keyring::DecryptionMaterials,
        _edks: &'a [kms_envelope::EncryptedDataKey],
    ) -> kms_envelope::keyring::KeyringFuture<'a, kms_envelope::keyring::DecryptionMaterials> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move { Ok(materials) })
    }
}

#[test]
fn a_wrong_key_or_context_reads_no_frame() {
    let pt = plaintext(20 * 4096 + 3);
    let options = EncryptOptions::new().frame_length(4096).context("tenant", "a");
    let message = encrypt(&keyring(), &options, &pt).unwrap();
    let wrong_key = RawAesKeyring::new("range", "key", &[0x18; 32]).unwrap();
    let cases: [(&dyn Keyring, DecryptOptions); 3] = [
        (&wrong_key, DecryptOptions::new()),
        (&keyring(), DecryptOptions::new().context("tenant", "b")),
        (&keyring(), DecryptOptions::new().reproduced_context([("tenant", "b")].into_iter().collect())),
    ];
    for (i, (keyring, options)) in cases.iter().enumerate() {
        let counting = Counting::new(&message);
        assert!(decrypt_range(*keyring, options, &counting, 40_000..40_001).is_err(), "case {i}");
        let reads = counting.reads();
        // The header's first guess (4 KiB) is the only read: no frame, not even the final one.
        assert_eq!(reads, vec![(0, 4096)], "case {i}");
    }
    // The same key and context: the header, the final frame, and one run of the covering frame.
    let counting = Counting::new(&message);
    let got = decrypt_range(&keyring(), &DecryptOptions::new().context("tenant", "a"), &counting, 40_000..40_001);
    assert_eq!(*got.unwrap().plaintext, pt[40_000..40_001]);
    let reads = counting.reads();
    assert_eq!(reads.len(), 3, "{reads:?}");
    assert_eq!(reads[1], (message.len() as u64 - (4 + 4 + 12 + 4 + 3 + 16), 4 + 4 + 12 + 4 + 3 + 16));
    assert_eq!(reads[2].1, 4096 + 32, "one frame covers one byte");
}

#[test]
fn a_header_longer_than_the_first_guess_is_read_by_growing() {
    let mut options = EncryptOptions::new().frame_length(64);
    for i in 0..200 {
        options = options.context(format!("key-{i:03}"), "v".repeat(60));
    }
    let pt = plaintext(1000);
    let message = encrypt(&keyring(), &options, &pt).unwrap();
    let counting = Counting::new(&message);
    let got = decrypt_range(&keyring(), &DecryptOptions::new(), &counting, 500..700).unwrap();
    assert!(*got.plaintext == pt[500..700]);
    let header_reads: Vec<_> = counting.reads().into_iter().filter(|&(at, _)| at < 4096 * 8).collect();
    assert!(header_reads.len() >= 3 && header_reads.len() <= 5, "{header_reads:?}");
    let limited = DecryptOptions::new()
        .limits(kms_envelope::DecryptLimits { max_header_len: 8192, ..kms_envelope::DecryptLimits::DEFAULT });
    let err = decrypt_range(&keyring(), &limited, &message, ..).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { limit: "header length", .. }), "{err}");
}

#[test]
fn files_and_seek_sources_are_sources() {
    let dir = tempfile::tempdir().unwrap();
    let pt = plaintext(300_000);
    let message = encrypt(&keyring(), &EncryptOptions::new().frame_length(4096), &pt).unwrap();
    let path = dir.path().join("message");
    fs::write(&path, &message).unwrap();
    let file = fs::File::open(&path).unwrap();
    let got = decrypt_range(&keyring(), &DecryptOptions::new(), &file, 123_456..234_567).unwrap();
    assert!(*got.plaintext == pt[123_456..234_567]);
    let seek = kms_envelope::SeekSource::new(fs::File::open(&path).unwrap());
    let got = decrypt_range(&keyring(), &parallel(), &seek, 4095..=4096).unwrap();
    assert!(*got.plaintext == pt[4095..=4096]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let got = runtime.block_on(decrypt_range_async(&keyring(), &parallel(), &file, 100..200_000)).unwrap();
    assert!(*got.plaintext == pt[100..200_000], "a file as an async source");
}

// --- messages from other implementations -------------------------------------------------------------------

const PEER_KEY: [u8; 32] = [0x2b; 32];

fn peer_keyring() -> RawAesKeyring {
    RawAesKeyring::new("range-interop", "peer-key", &PEER_KEY).unwrap()
}

/// Every sampled range of `message` equals the slice of its full decrypt, by the sync and the async path.
fn ranges_match_full(keyring: &dyn Keyring, options: &DecryptOptions, message: &[u8], what: &str) {
    let full = decrypt(keyring, options, message).unwrap_or_else(|e| panic!("{what}: full decrypt: {e}"));
    let pt = &full.plaintext;
    let frame = u64::from(full.header.frame_length());
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let source = MemorySource(message.to_vec());
    for (i, (s, e)) in ranges(pt.len() as u64, frame, pt.len() as u64).into_iter().enumerate() {
        if i % 3 == 0 {
            let got = runtime.block_on(decrypt_range_async(keyring, options, &source, s..e));
            let got = got.unwrap_or_else(|err| panic!("{what}: async {s}..{e}: {err}"));
            assert!(*got.plaintext == pt[s as usize..e as usize], "{what}: async {s}..{e}");
        }
        let got =
            decrypt_range(keyring, options, message, s..e).unwrap_or_else(|err| panic!("{what}: {s}..{e}: {err}"));
        assert!(*got.plaintext == pt[s as usize..e as usize], "{what}: {s}..{e}");
    }
}

#[test]
fn python_esdk_messages_decrypt_by_range() {
    let Some(python) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = String::new();
    let mut cases = Vec::new();
    // Python frames are multiples of 128 bytes; frame length 0 is a non-framed body; 0x0578 is signed.
    for (suite, frame, size) in [
        ("0x0478", 4096, 0),
        ("0x0478", 4096, 1),
        ("0x0478", 4096, 4096),
        ("0x0478", 4096, 3 * 4096 + 5),
        ("0x0478", 128, 128 * 5),
        ("0x0478", 65536, 200_000),
        ("0x0178", 256, 1000),
        ("0x0578", 4096, 100),
        ("0x0478", 0, 100),
    ] {
        let tag = format!("{suite}-{frame}-{size}");
        let (input, output) = (dir.path().join(format!("{tag}.pt")), dir.path().join(format!("{tag}.ct")));
        fs::write(&input, plaintext(size)).unwrap();
        let args = [
            "encrypt",
            "--in",
            input.to_str().unwrap(),
            "--out",
            output.to_str().unwrap(),
            "--raw-key-hex",
            &common::hex(&PEER_KEY),
            "--key-namespace",
            "range-interop",
            "--key-name",
            "peer-key",
            "--suite",
            suite,
            "--frame-length",
            &frame.to_string(),
            "--commitment-policy",
            if suite == "0x0178" { "forbid-encrypt-allow-decrypt" } else { "require-encrypt-allow-decrypt" },
        ];
        jobs.push_str(&serde_json::to_string(&args).unwrap());
        jobs.push('\n');
        cases.push((suite, frame, size, output));
    }
    let out = run_batch(&python, &jobs);
    assert_eq!(out.lines().count(), cases.len(), "one result per job: {out}");
    let options = DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
    for ((suite, frame, size, path), line) in cases.into_iter().zip(out.lines()) {
        let status: Value = serde_json::from_str(line).unwrap();
        assert_eq!(status["status"], 0, "python encrypt {suite} {frame} {size}: {line}");
        let message = fs::read(&path).unwrap();
        let what = format!("python {suite} frame {frame} size {size}");
        if suite == "0x0578" || frame == 0 {
            let err = decrypt_range(&peer_keyring(), &options, &message, ..).unwrap_err();
            assert!(matches!(err, Error::RangeRefused(_)), "{what}: {err}");
        } else {
            ranges_match_full(&peer_keyring(), &options, &message, &what);
        }
    }
}

fn run_batch(python: &Path, jobs: &str) -> String {
    let out = common::peer_batch(python, jobs.to_owned());
    assert!(out.status.success(), "esdk_peer batch: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn unsigned_framed_vectors_decrypt_by_range_and_signed_ones_are_refused() {
    let Some(vectors) = common::vectors_dir() else { return };
    let dir = vectors.join("net-v4");
    let manifest: Value = serde_json::from_str(&fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let keys: Value = serde_json::from_str(&fs::read_to_string(dir.join("keys.json")).unwrap()).unwrap();
    let options = DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
    let (mut by_range, mut refused) = (0, 0);
    for (id, test) in manifest["tests"].as_object().unwrap() {
        let Some(keyring) = vector_keyring(&keys, test["master-keys"].as_array().unwrap()) else { continue };
        let uri = test["ciphertext"].as_str().unwrap().strip_prefix("file://").unwrap();
        let message = fs::read(dir.join(uri)).unwrap();
        let Ok(full) = decrypt(&keyring, &options, &message) else { continue };
        let framed = full.header.content_type() == kms_envelope::ContentType::Framed;
        if full.header.suite().signature().is_none() && framed {
            ranges_match_full(&keyring, &options, &message, id);
            by_range += 1;
        } else {
            let err = decrypt_range(&keyring, &options, &message, ..).unwrap_err();
            assert!(matches!(err, Error::RangeRefused(_)), "{id}: {err}");
            refused += 1;
        }
    }
    eprintln!("vectors: {by_range} decrypted by range, {refused} refused (signed or non-framed)");
    assert!(by_range >= 10 && refused >= 5, "{by_range} by range, {refused} refused");
}

/// The raw AES master keys of a v4 test as one keyring, or `None` if any is of another kind.
fn vector_keyring(keys: &Value, master_keys: &[Value]) -> Option<MultiKeyring> {
    use base64::Engine as _;
    let mut keyrings = master_keys.iter().map(|mk| {
        if mk["type"] != "raw" || mk["encryption-algorithm"] != "aes" {
            return None;
        }
        let key = &keys["keys"][mk["key"].as_str()?];
        let material = base64::engine::general_purpose::STANDARD.decode(key["material"].as_str()?).ok()?;
        RawAesKeyring::new(mk["provider-id"].as_str()?, key["key-id"].as_str()?, &material).ok()
    });
    let mut multi = MultiKeyring::new(keyrings.next()??);
    for keyring in keyrings {
        multi = multi.with_child(keyring?);
    }
    Some(multi)
}

// --- the CLI ------------------------------------------------------------------------------------------------

/// `kms-envelope` in `dir` with a raw key (written there) and `args`: its exit code, stdout and stderr.
fn cli(dir: &Path, args: &[&str], stdin: Option<Vec<u8>>) -> (i32, Vec<u8>, String) {
    fs::write(dir.join("wrapping.key"), [0x44u8; 32]).unwrap();
    let key = ["--raw-key-file", "wrapping.key", "--key-namespace", "range-cli", "--key-name", "k"];
    let mut cmd = assert_cmd::Command::cargo_bin("kms-envelope").unwrap();
    cmd.current_dir(dir).arg(args[0]);
    if args[0] != "inspect" {
        cmd.args(key);
    }
    cmd.args(&args[1..]);
    if let Some(stdin) = stdin {
        cmd.write_stdin(stdin);
    }
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A directory holding `ct`, a message of 3 frames of 4096 bytes and a final frame of 100, encrypted by the
/// CLI; and its plaintext.
fn cli_message() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let pt = plaintext(3 * 4096 + 100);
    fs::write(dir.path().join("pt"), &pt).unwrap();
    assert_eq!(cli(dir.path(), &["encrypt", "--frame-length", "4096", "pt", "ct"], None).0, 0);
    (dir, pt)
}

#[test]
fn cli_decrypt_range_writes_exactly_the_inclusive_range() {
    let (dir, pt) = cli_message();
    let len = pt.len();
    let cases =
        [("0-0", 0, 1), ("4095-4096", 4095, 4097), ("100-", 100, len), ("0-", 0, len), (&*format!("{len}-"), len, len)];
    for (i, (spec, start, end)) in cases.into_iter().enumerate() {
        let (code, stdout, err) = cli(dir.path(), &["decrypt", "--range", spec, "ct", "-"], None);
        assert_eq!(code, 0, "{spec}: {err}");
        assert!(stdout == pt[start..end], "{spec}: stdout");
        let out = format!("out-{i}");
        assert_eq!(cli(dir.path(), &["decrypt", "--range", spec, "ct", &out], None).0, 0, "{spec}");
        assert!(fs::read(dir.path().join(&out)).unwrap() == pt[start..end], "{spec}: file");
    }
    // As in HTTP, an END past the plaintext is cut to its end; a START past it is a usage error.
    let last = format!("0-{len}");
    let (code, stdout, err) = cli(dir.path(), &["decrypt", "--range", &last, "ct", "-"], None);
    assert_eq!(code, 0, "{err}");
    assert!(stdout == pt, "END clamped to the plaintext's end");
    let past = format!("{}-", len + 1);
    let (code, _, err) = cli(dir.path(), &["decrypt", "--range", &past, "ct", "past"], None);
    assert_eq!(code, 2, "a start past the end is a usage error: {err}");
    assert!(err.contains("outside the plaintext"), "{err}");
    assert!(!dir.path().join("past").exists());
    for bad in ["5-4", "x-3", "-3", "3", "1-2-3", "+1-2"] {
        assert_eq!(cli(dir.path(), &["decrypt", "--range", bad, "ct", "bad"], None).0, 2, "{bad}");
    }
    let (code, _, err) =
        cli(dir.path(), &["decrypt", "--range", "0-1", "-", "-"], Some(fs::read(dir.path().join("ct")).unwrap()));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("regular file"), "{err}");
    let (code, stdout, _) = cli(dir.path(), &["inspect", "ct"], None);
    assert_eq!(code, 0);
    let text = String::from_utf8(stdout).unwrap();
    assert!(text.contains(&format!("plaintext length:   {len} bytes in 4 frame(s)")), "{text}");
    let (_, stdout, _) = cli(dir.path(), &["inspect", "--json", "ct"], None);
    let json: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(json["layout"]["plaintext_length"], len as u64);
    assert_eq!(json["layout"]["frame_count"], 4);
}

/// Every name in `dir`, hidden ones included, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// README, Random access: "A frame that fails is an error naming it, never a short read"; rules for every
/// subcommand: "on failure nothing is left at `OUTPUT`" (nor a temp file: an unnamed one on Linux, else a
/// hidden `.OUTPUT.XXXXXX.partial` the next run removes). A range over a tampered frame exits 1 naming the
/// frame, and the directory holds exactly what it held before, whatever a temp file would be called; a
/// range outside the frame decrypts, and the whole message fails as tampered (exit 1).
#[test]
fn cli_decrypt_range_leaves_no_output_when_a_frame_in_it_fails() {
    let (dir, pt) = cli_message();
    let mut message = fs::read(dir.path().join("ct")).unwrap();
    let second_frame = message.len() - (4 + 4 + 12 + 4 + 100 + 16) - 2 * (4096 + 32) + 100;
    message[second_frame] ^= 1;
    fs::write(dir.path().join("ct"), &message).unwrap();
    let before = listing(dir.path());
    let (code, _, err) = cli(dir.path(), &["decrypt", "--range", "0-8191", "ct", "out"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ct:") && err.contains("frame 2"), "{err}");
    assert_eq!(listing(dir.path()), before, "a failed range left something behind");
    // Outside the damaged frame (and with the final frame intact): the right bytes.
    assert_eq!(cli(dir.path(), &["decrypt", "--range", "8192-", "ct", "out"], None).0, 0);
    assert!(fs::read(dir.path().join("out")).unwrap() == pt[8192..]);
    let before = listing(dir.path());
    let (code, _, err) = cli(dir.path(), &["decrypt", "ct", "whole"], None);
    assert_eq!(code, 1, "the whole message fails as tampered: {err}");
    assert!(err.contains("ct:") && err.contains("authentication failed"), "{err}");
    assert_eq!(listing(dir.path()), before, "a failed decrypt left something behind");
}

#[test]
fn cli_decrypt_range_refuses_a_missing_context_key_before_reading_the_body() {
    let (dir, _) = cli_message();
    // A damaged final frame: a reader that reaches the body reports the frame, not the missing key.
    let mut message = fs::read(dir.path().join("ct")).unwrap();
    let last = message.len() - 1;
    message[last] ^= 1;
    fs::write(dir.path().join("ct"), &message).unwrap();
    let args = ["decrypt", "--require-context-key", "tenant", "--range", "0-0", "ct", "out"];
    let (code, _, err) = cli(dir.path(), &args, None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--require-context-key"), "refused on the header, before any frame: {err}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn cli_argument_errors_quote_the_argument_escaped() {
    let (dir, _) = cli_message();
    // Clap quotes a value it cannot parse; a carriage return, a C1 CSI or a bidirectional override in it
    // must not reach stderr as is.
    let (code, _, err) = cli(dir.path(), &["decrypt", "--range", "\u{202e}\u{9b}2J\r-5", "ct", "out"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--range"), "{err}");
    assert!(!err.contains(['\u{202e}', '\u{9b}', '\r']), "{err:?}");
}

/// An async source that records every read, as an S3 source would count its ranged GETs.
struct CountingAsync {
    inner: MemorySource,
    reads: Mutex<Vec<(u64, usize)>>,
}

impl kms_envelope::stream::AsyncRangeSource for CountingAsync {
    async fn total_len(&self) -> io::Result<u64> {
        self.inner.total_len().await
    }

    async fn read_at(&self, offset: u64, length: usize) -> io::Result<Vec<u8>> {
        self.reads.lock().unwrap().push((offset, length));
        self.inner.read_at(offset, length).await
    }
}

#[test]
fn the_async_path_reads_the_header_the_final_frame_and_one_run() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let pt = plaintext(20 * 4096 + 3);
    let message = encrypt(&keyring(), &EncryptOptions::new().frame_length(4096).context("tenant", "a"), &pt).unwrap();
    let source = || CountingAsync { inner: MemorySource(message.clone()), reads: Mutex::new(Vec::new()) };
    let wrong = source();
    let options = DecryptOptions::new().context("tenant", "b");
    assert!(runtime.block_on(decrypt_range_async(&keyring(), &options, &wrong, 9000..20000)).is_err());
    assert_eq!(*wrong.reads.lock().unwrap(), vec![(0, 4096)], "a wrong context reads no frame");
    let right = source();
    let options = DecryptOptions::new().context("tenant", "a");
    let got = runtime.block_on(decrypt_range_async(&keyring(), &options, &right, 9000..20000)).unwrap();
    assert!(*got.plaintext == pt[9000..20000]);
    let reads = right.reads.lock().unwrap().clone();
    assert_eq!(reads.len(), 3, "header, final frame, one run: {reads:?}");
    assert_eq!(reads[2].1, 3 * (4096 + 32), "frames 3 to 5 hold bytes 9000..20000");

    let signed = EncryptOptions::new().suite(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384);
    let signed = CountingAsync {
        inner: MemorySource(encrypt(&keyring(), &signed, &pt).unwrap()),
        reads: Mutex::new(Vec::new()),
    };
    let never = CountingKeyring::default();
    let err = runtime.block_on(decrypt_range_async(&never, &DecryptOptions::new(), &signed, ..)).unwrap_err();
    assert!(matches!(err, Error::RangeRefused(_)), "{err}");
    assert_eq!(never.0.load(std::sync::atomic::Ordering::SeqCst), 0, "the keyring must not run");
    assert_eq!(signed.reads.lock().unwrap().len(), 1, "the header alone is read");
}

/// Every window of `reader` (a message of `pt`), across frame boundaries and into the final frame, equals
/// the slice; `write_range_to` in windows of a few frames writes exactly the range.
async fn windows_equal_the_slice<S: kms_envelope::stream::AsyncRangeSource>(
    reader: &AsyncRangeReader<'_, S>,
    pt: &[u8],
) {
    let len = pt.len() as u64;
    assert_eq!(reader.plaintext_len(), len);
    assert_eq!(reader.layout().frame_count(), REGULAR as u64 + 1);
    for start in 0..=len {
        for end in (start..=len).step_by(3) {
            let got = reader.read_window(start, end).await.unwrap_or_else(|e| panic!("{start}..{end}: {e}"));
            assert!(*got == pt[start as usize..end as usize], "window {start}..{end}");
        }
    }
    assert!(matches!(reader.read_window(0, len + 1).await, Err(Error::RangeOutOfBounds { .. })));
    for window in [1, FRAME, 2 * FRAME + 7, 1 << 20] {
        let reader = reader.clone().with_window_len(window);
        for (start, end) in [(0, len), (3, len - 2), (FRAME as u64 - 1, 3 * FRAME as u64 + 1), (len, len)] {
            let mut out = Vec::new();
            let written = reader.write_range_to(start, end, &mut out).await.unwrap();
            assert_eq!(written, end - start);
            assert!(out == pt[start as usize..end as usize], "window {window}, {start}..{end}");
        }
    }
}

/// An `AsyncRangeReader` over memory and over a file reads every window right on one keyring call each,
/// and `write_range_to` never reads more than a window of frames at once.
#[test]
fn async_windows_equal_the_slice_on_one_keyring_call() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let pt = plaintext(REGULAR * FRAME + 5);
    let message = encrypt(&keyring(), &EncryptOptions::new().frame_length(FRAME as u32), &pt).unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ct"), &message).unwrap();
    let file = fs::File::open(dir.path().join("ct")).unwrap();
    let memory = CountingAsync { inner: MemorySource(message.clone()), reads: Mutex::new(Vec::new()) };
    let counted = common::CountingKeyring { inner: keyring(), calls: Default::default() };
    let options = DecryptOptions::new();
    runtime.block_on(async {
        let from_file = AsyncRangeReader::open(&counted, &options, &file).await.unwrap();
        windows_equal_the_slice(&from_file, &pt).await;
        let from_memory = AsyncRangeReader::open(&counted, &options, &memory).await.unwrap();
        windows_equal_the_slice(&from_memory, &pt).await;
        for window in [1, 2 * FRAME + 7] {
            let reader = from_memory.clone().with_window_len(window);
            memory.reads.lock().unwrap().clear();
            reader.write_range_to(0, pt.len() as u64, &mut io::sink()).await.unwrap();
            let reads = memory.reads.lock().unwrap().clone();
            let frames_per_window = (window / FRAME).max(1);
            assert_eq!(reads.len(), REGULAR.div_ceil(frames_per_window), "window {window}: {reads:?}");
            assert!(reads.iter().all(|&(_, length)| length <= frames_per_window * STRIDE), "{window}: {reads:?}");
        }
    });
    assert_eq!(counted.calls.load(std::sync::atomic::Ordering::SeqCst), 2, "one keyring call per reader opened");
}

/// A tampered frame in a later window: the windows before it are written, verified and right, then the
/// error names that frame; a window read alone before it is fine.
#[test]
fn a_tampered_frame_in_a_later_window_fails_at_that_window() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let (mut message, pt, body) = damaged_base();
    message[frame_span(body, 4).start + 4 + 3] ^= 0x01;
    let source = MemorySource(message);
    runtime.block_on(async {
        let reader = AsyncRangeReader::open(&keyring(), &DecryptOptions::new(), &source).await.unwrap();
        let reader = reader.with_window_len(2 * FRAME);
        assert!(*reader.read_window(0, 4 * FRAME as u64).await.unwrap() == pt[..4 * FRAME]);
        let err = reader.read_window(4 * FRAME as u64, 4 * FRAME as u64 + 1).await.unwrap_err();
        assert!(matches!(err, Error::FrameAuthentication { sequence: 5 }), "{err}");
        let mut out = Vec::new();
        let err = reader.write_range_to(1, pt.len() as u64, &mut out).await.unwrap_err();
        assert!(matches!(err, Error::FrameAuthentication { sequence: 5 }), "{err}");
        assert!(out == pt[1..4 * FRAME], "the two windows before the tampered frame, and nothing after");
    });
}
