//! No plaintext is left in freed memory: this binary's global allocator looks into every block freed (and
//! every block a `realloc` leaves, as if it always moved) for a marker, while messages full of that marker
//! are encrypted and decrypted every way the crate offers. A `Zeroizing` buffer is wiped before it is
//! freed; one that grows by `realloc` is not, and this is the test that sees it.
//!
//! The test's own plaintext and output buffers are `Zeroizing` (wiped before they are freed) and results
//! are compared through hashes, whose stack is wiped after use (see `wiping_stack`), so every marker found
//! in freed memory was left there by the crate.
//!
//! Plaintext left on the stack counts too: at opt-level 0 a value built on the stack and moved into the
//! heap whole (a channel's shared state, say) carries stale stack bytes in its padding, so a marker left
//! on the stack turns up in the block when it is freed. `SCAN_BACKTRACE=1` with `--nocapture` prints where
//! each such block was freed (see `common/scan_alloc.rs`).

use std::io::{Read, Seek, SeekFrom, Write};

use kms_envelope::OutputOptions;
use kms_envelope::{
    AlgorithmSuite, DecryptOptions, Decryptor, EncryptOptions, Encryptor, RawAesKeyring, ReencryptOptions,
    SeekableDecryptor, decrypt_into, decrypt_range, encrypt, reencrypt_path,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

#[path = "common/scan_alloc.rs"]
mod scan_alloc;
use scan_alloc::{Scanning, freed_matching};

/// 16 bytes that occur nowhere but in the plaintext (and wherever the crate leaves a copy of it).
const MARKER: [u8; 16] = *b"\xa5pl41nt3xt-MRK!\x5a";

#[global_allocator]
static ALLOCATOR: Scanning = Scanning::new(holds_marker);

fn holds_marker(block: &[u8]) -> bool {
    let mut i = 0;
    while i + MARKER.len() <= block.len() {
        if block[i] == MARKER[0] && block[i..i + MARKER.len()] == MARKER {
            return true;
        }
        i += 1;
    }
    false
}

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("freed", "key", &[0x33; 32]).unwrap()
}

/// `len` bytes of marker, in a buffer wiped before it is freed.
fn plaintext(len: usize) -> Zeroizing<Vec<u8>> {
    let mut buf = Zeroizing::new(vec![0u8; len]);
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = MARKER[i % MARKER.len()];
    }
    buf
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    wiping_stack(|| Sha256::digest(bytes).into())
}

/// Runs `hashing`, which feeds plaintext to SHA-256, then zeroes the stack it used: the hasher keeps the
/// tail of each update in its block buffer, and unoptimized code copies the hasher on every move. A value
/// the crate later builds on that stack and moves to the heap whole would carry those bytes in its
/// padding, and this test would blame the crate for them.
fn wiping_stack<T>(hashing: impl FnOnce() -> T) -> T {
    #[inline(never)]
    fn below_this_frame<T>(f: impl FnOnce() -> T) -> T {
        f()
    }
    #[inline(never)]
    fn wipe() {
        std::hint::black_box(&mut [0u8; 64 << 10]);
    }
    let out = below_this_frame(hashing);
    wipe();
    out
}

fn encrypt_streaming(options: &EncryptOptions, plaintext: &[u8], chunk: usize) -> Vec<u8> {
    let mut encryptor = Encryptor::new(&keyring(), options, Vec::new()).unwrap();
    for piece in plaintext.chunks(chunk) {
        encryptor.write_all(piece).unwrap();
    }
    encryptor.finish().unwrap()
}

fn encrypt_copy_from(options: &EncryptOptions, plaintext: &[u8]) -> Vec<u8> {
    let mut encryptor = Encryptor::new(&keyring(), options, Vec::new()).unwrap();
    encryptor.copy_from(plaintext).unwrap();
    encryptor.finish().unwrap()
}

/// Reads `reader` to its end through `buf` and returns the hash of what it gave. Only the hashing runs
/// under the test's stack wipe, not the reads: a wipe around the crate's own code would hide its leaks.
fn hash_to_end(reader: &mut impl Read, buf: &mut [u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    loop {
        let n = reader.read(buf).unwrap();
        if n == 0 {
            break;
        }
        wiping_stack(|| hash.update(&buf[..n]));
    }
    wiping_stack(|| hash.finalize().into())
}

/// Decrypts through `Read` into a fixed buffer and returns the plaintext's hash.
fn decrypt_streaming(options: &DecryptOptions, message: &[u8]) -> [u8; 32] {
    let mut decryptor = Decryptor::new(&keyring(), options, message).unwrap();
    hash_to_end(&mut decryptor, &mut Zeroizing::new(vec![0u8; 100_000]))
}

/// Encrypts and decrypts `plaintext` with `encrypt_options`/`decrypt_options`: streaming by `write`,
/// by `copy_from`, and one-shot, then decrypts streaming and with `decrypt_into` into a buffer that
/// first holds a smaller plaintext (so it grows); and file to file at known offsets. Returns the marker count for each way.
fn every_way(
    what: &str,
    encrypt_options: &EncryptOptions,
    decrypt_options: &DecryptOptions,
    len: usize,
) -> Vec<(String, usize)> {
    let plain = plaintext(len);
    let expected = sha(&plain);
    let small = plaintext(len / 8 + 1);
    let small_message = encrypt(&keyring(), encrypt_options, &small).unwrap();
    let mut counts = Vec::new();
    let mut message = Vec::new();

    counts.push((
        format!("{what}: Encryptor::write"),
        freed_matching(|| message = encrypt_streaming(encrypt_options, &plain, 10_000)),
    ));
    counts.push((
        format!("{what}: Encryptor::copy_from"),
        freed_matching(|| {
            let copied = encrypt_copy_from(encrypt_options, &plain);
            assert_eq!(copied.len(), message.len());
        }),
    ));
    counts.push((
        format!("{what}: Encryptor::copy_from a WipingBufReader"),
        freed_matching(|| {
            let mut encryptor = Encryptor::new(&keyring(), encrypt_options, Vec::new()).unwrap();
            encryptor.copy_from(kms_envelope::stream::WipingBufReader::with_capacity(64 << 10, &plain[..])).unwrap();
            assert_eq!(encryptor.finish().unwrap().len(), message.len());
        }),
    ));
    counts.push((
        format!("{what}: encrypt (one-shot)"),
        freed_matching(|| {
            let one_shot = encrypt(&keyring(), encrypt_options, &plain).unwrap();
            assert_eq!(one_shot.len(), message.len());
        }),
    ));
    counts.push((
        format!("{what}: Decryptor::read"),
        freed_matching(|| assert_eq!(decrypt_streaming(decrypt_options, &message), expected)),
    ));
    counts.push((
        format!("{what}: decrypt_to_path"),
        freed_matching(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("out");
            kms_envelope::decrypt_to_path(
                &keyring(),
                decrypt_options,
                &message[..],
                &path,
                &OutputOptions::new().sync(false),
            )
            .unwrap();
            let written = Zeroizing::new(std::fs::read(&path).unwrap());
            assert!(sha(&written) == expected, "{what}: decrypt_to_path wrote something else");
        }),
    ));
    counts.push((
        format!("{what}: positioned encrypt_file and FileDecryptor"),
        freed_matching(|| {
            use kms_envelope::stream::file::PendingFile;
            use kms_envelope::stream::positioned::{FileDecryptor, encrypt_file};
            let dir = tempfile::tempdir().unwrap();
            let (input, sealed, opened) = (dir.path().join("in"), dir.path().join("ct"), dir.path().join("out"));
            std::fs::write(&input, &plain[..]).unwrap();
            let mut pending = PendingFile::create(&sealed, false).unwrap();
            let file = std::fs::File::open(&input).unwrap();
            encrypt_file(&keyring(), encrypt_options, &file, &mut pending, &|_| {}).unwrap();
            pending.commit(false, false).unwrap();
            let mut pending = PendingFile::create(&opened, false).unwrap();
            let decryptor =
                FileDecryptor::new(&keyring(), decrypt_options, std::fs::File::open(&sealed).unwrap()).unwrap();
            decryptor.decrypt_into(&mut pending, &|_| {}).unwrap();
            pending.commit(false, false).unwrap();
            let written = Zeroizing::new(std::fs::read(&opened).unwrap());
            assert!(sha(&written) == expected, "{what}: the positioned path wrote something else");
        }),
    ));
    counts.push((
        format!("{what}: reencrypt_path"),
        freed_matching(|| {
            let dir = tempfile::tempdir().unwrap();
            let (source, rotated) = (dir.path().join("source"), dir.path().join("rotated"));
            std::fs::write(&source, &message).unwrap();
            let new_key = RawAesKeyring::new("freed", "new", &[0x44; 32]).unwrap();
            let read = ReencryptOptions::new().source(decrypt_options.clone());
            // Target frames as long as the source's (opened and sealed in place), and the default 64 KiB.
            for options in [read.clone().target(encrypt_options.clone()), read] {
                let output = OutputOptions::new().sync(false).overwrite(true);
                reencrypt_path(&keyring(), &new_key, &options, &source, &rotated, &output).unwrap();
                let written = std::fs::read(&rotated).unwrap();
                let mut decryptor = Decryptor::new(&new_key, &DecryptOptions::new(), &written[..]).unwrap();
                let got = hash_to_end(&mut decryptor, &mut Zeroizing::new(vec![0u8; 100_000]));
                assert!(got == expected, "{what}: reencrypt_path wrote another plaintext");
            }
        }),
    ));
    counts.push((
        format!("{what}: decrypt_into a buffer that grows"),
        freed_matching(|| {
            let mut out = Zeroizing::new(Vec::new());
            decrypt_into(&keyring(), decrypt_options, &small_message, &mut out).unwrap();
            decrypt_into(&keyring(), decrypt_options, &message, &mut out).unwrap();
            assert!(sha(&out) == expected, "{what}: decrypt_into returned something else");
        }),
    ));
    counts
}

/// The range readers over a message of `len` bytes of marker: `decrypt_range` of a slice that starts and
/// ends inside frames, and a `SeekableDecryptor` read at its start, then seeked past its first 1 MiB window
/// and read to the end, so that every window after the first replaces one (`len` must pass 1 MiB and a
/// frame). Returns the marker count for each way.
fn every_range_way(
    what: &str,
    encrypt_options: &EncryptOptions,
    decrypt_options: &DecryptOptions,
    len: usize,
) -> Vec<(String, usize)> {
    let plain = plaintext(len);
    let message = encrypt(&keyring(), encrypt_options, &plain).unwrap();
    let (start, end) = (len / 3 + 5, 2 * len / 3 + 7);
    let mut counts = Vec::new();
    counts.push((
        format!("{what}: decrypt_range"),
        freed_matching(|| {
            let slice = decrypt_range(&keyring(), decrypt_options, &message[..], start as u64..end as u64).unwrap();
            assert!(sha(&slice.plaintext) == sha(&plain[start..end]), "{what}: decrypt_range returned something else");
        }),
    ));
    counts.push((
        format!("{what}: SeekableDecryptor past its window"),
        freed_matching(|| {
            let mut reader =
                SeekableDecryptor::new(&keyring(), decrypt_options, std::io::Cursor::new(&message[..])).unwrap();
            let mut buf = Zeroizing::new(vec![0u8; 100_000]);
            reader.read_exact(&mut buf[..]).unwrap();
            assert!(sha(&buf[..]) == sha(&plain[..100_000]), "{what}: SeekableDecryptor read something else");
            // Past the window the first read filled (1 MiB, or one frame if longer).
            let far = (1 << 20) + 4099;
            reader.seek(SeekFrom::Start(far as u64)).unwrap();
            assert!(hash_to_end(&mut reader, &mut buf) == sha(&plain[far..]), "{what}: the tail differs");
        }),
    ));
    counts
}

/// `decrypt_range_async` and `AsyncRangeReader::write_range_to` (in windows of 256 KiB, or one frame if
/// longer) over a message of `len` bytes of marker in memory.
#[cfg(feature = "async")]
fn every_async_range_way(
    what: &str,
    encrypt_options: &EncryptOptions,
    decrypt_options: &DecryptOptions,
    len: usize,
) -> Vec<(String, usize)> {
    use kms_envelope::stream::range::{AsyncRangeReader, MemorySource};

    let plain = plaintext(len);
    let source = MemorySource(encrypt(&keyring(), encrypt_options, &plain).unwrap());
    let (start, end) = (len / 3 + 5, 2 * len / 3 + 7);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let mut counts = Vec::new();
    counts.push((
        format!("{what}: decrypt_range_async"),
        freed_matching(|| {
            let range = start as u64..end as u64;
            let slice =
                runtime.block_on(kms_envelope::decrypt_range_async(&keyring(), decrypt_options, &source, range));
            assert!(sha(&slice.unwrap().plaintext) == sha(&plain[start..end]), "{what}: another range came back");
        }),
    ));
    counts.push((
        format!("{what}: AsyncRangeReader::write_range_to"),
        freed_matching(|| {
            let written: [u8; 32] = wiping_stack(|| {
                let mut out = HashingWriter(Sha256::new());
                runtime.block_on(async {
                    let keyring = keyring();
                    let reader = AsyncRangeReader::open(&keyring, decrypt_options, &source).await.unwrap();
                    reader.with_window_len(256 << 10).write_range_to(start as u64, end as u64, &mut out).await.unwrap();
                });
                out.0.finalize().into()
            });
            assert!(written == sha(&plain[start..end]), "{what}: write_range_to wrote something else");
        }),
    ));
    drop(runtime);
    counts
}

/// A sink that keeps only the hash of what is written to it: it holds no copy of the plaintext.
#[cfg(feature = "async")]
struct HashingWriter(Sha256);

#[cfg(feature = "async")]
impl Write for HashingWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `AsyncEncryptor` and `AsyncDecryptor`, which hand plaintext buffers between the caller's task and a
/// blocking thread.
#[cfg(feature = "async")]
fn async_io(encrypt_options: &EncryptOptions, decrypt_options: &DecryptOptions, len: usize) -> Vec<(String, usize)> {
    use kms_envelope::{AsyncDecryptor, AsyncEncryptor};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let plain = plaintext(len);
    let expected = sha(&plain);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let mut message = Vec::new();
    let mut counts = Vec::new();
    counts.push((
        "AsyncEncryptor".to_string(),
        freed_matching(|| {
            message = runtime.block_on(async {
                let mut encryptor = AsyncEncryptor::new(&keyring(), encrypt_options, Vec::new()).await.unwrap();
                for piece in plain.chunks(10_000) {
                    encryptor.write_all(piece).await.unwrap();
                }
                encryptor.finish().await.unwrap()
            })
        }),
    ));
    counts.push((
        "AsyncDecryptor".to_string(),
        freed_matching(|| {
            let hash = wiping_stack(|| {
                runtime.block_on(async {
                    let mut decryptor =
                        AsyncDecryptor::new(&keyring(), decrypt_options, std::io::Cursor::new(message.clone()))
                            .await
                            .unwrap();
                    let mut buf = Zeroizing::new(vec![0u8; 100_000]);
                    let mut hash = Sha256::new();
                    loop {
                        let n = decryptor.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        hash.update(&buf[..n]);
                    }
                    <[u8; 32]>::from(hash.finalize())
                })
            });
            assert!(hash == expected, "AsyncDecryptor returned something else");
        }),
    ));
    drop(runtime);
    counts
}

#[test]
fn no_freed_block_holds_plaintext() {
    scan_alloc::trace_if_asked();
    let single = EncryptOptions::new().frame_length(4096).threads(1);
    let single_decrypt = DecryptOptions::new().threads(1);
    // The pool starts after 64 KiB; jobs then grow from one frame to 16 KiB and are recycled.
    let pool = EncryptOptions::new().frame_length(1024).threads(3).parallel_threshold(64 << 10).job_length(16 << 10);
    let pool_decrypt = DecryptOptions::new().threads(3).parallel_threshold(64 << 10).job_length(16 << 10);
    // Frames larger than the 4 MiB a job reserves up front: the job grows as data arrives.
    let big_frames = EncryptOptions::new().frame_length(5 << 20).threads(2).parallel_threshold(1);
    let big_frames_decrypt = DecryptOptions::new().threads(2).parallel_threshold(1);
    // Signed: the one-shot paths fall back to the streaming ones.
    let signed = EncryptOptions::new().frame_length(4096).suite(AlgorithmSuite::from_id(0x0578).unwrap());

    let mut counts = Vec::new();
    counts.extend(every_way("one thread", &single, &single_decrypt, 1 << 20));
    counts.extend(every_way("worker pool", &pool, &pool_decrypt, 2 << 20));
    counts.extend(every_way("5 MiB frames", &big_frames, &big_frames_decrypt, 11 << 20));
    counts.extend(every_way("signed", &signed, &DecryptOptions::new(), 1 << 20));
    // Random access refuses signed messages; the sizes pass the seekable reader's 1 MiB window.
    counts.extend(every_range_way("one thread", &single, &single_decrypt, 3 << 20));
    counts.extend(every_range_way("worker pool", &pool, &pool_decrypt, 12 << 20));
    counts.extend(every_range_way("5 MiB frames", &big_frames, &big_frames_decrypt, 11 << 20));

    #[cfg(feature = "async")]
    {
        counts.extend(async_io(&pool, &pool_decrypt, 2 << 20));
        counts.extend(every_async_range_way("one thread", &single, &single_decrypt, 3 << 20));
        counts.extend(every_async_range_way("worker pool", &pool, &pool_decrypt, 12 << 20));
        counts.extend(every_async_range_way("5 MiB frames", &big_frames, &big_frames_decrypt, 11 << 20));
    }

    // The scan is live: a plain `Vec` of plaintext that grows is seen.
    let control = freed_matching(|| {
        let mut leaky = Vec::with_capacity(16);
        leaky.extend_from_slice(&plaintext(64));
        leaky.extend_from_slice(&plaintext(4096));
        leaky.fill(0);
    });
    assert!(control > 0, "the allocator saw no marker in a grown Vec: the scan is broken");

    let leaks: Vec<_> = counts.iter().filter(|(_, hits)| *hits > 0).collect();
    assert!(leaks.is_empty(), "freed blocks still held plaintext: {leaks:?}");
}
