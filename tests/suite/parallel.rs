//! The multi-threaded frame pipeline: with workers forced on (two threads, no threshold, a few frames per job)
//! the messages are the same ESDK messages, and the release rules are exactly those of the single-thread
//! path: only whole verified frames before the damage, never anything after it, never the final frame of a
//! signed message before the footer verified.

use crate::common;

use std::io::{Read, Write};

use kms_envelope::{AlgorithmSuite, DecryptOptions, Decryptor, EncryptOptions, Encryptor, Error, RawAesKeyring};
use proptest::prelude::*;

const SIGNED: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384;
const FRAME: usize = 32;
const REGULAR: usize = 4 + 12 + FRAME + 16;

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("parallel", "key", &[0x77; 32]).unwrap()
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 29 % 253) as u8).collect()
}

/// Workers on from the first byte, three frames per job.
fn parallel_encrypt() -> EncryptOptions {
    EncryptOptions::new().frame_length(FRAME as u32).threads(2).parallel_threshold(0).job_length(3 * FRAME)
}

fn parallel_decrypt() -> DecryptOptions {
    DecryptOptions::new().threads(2).parallel_threshold(0).job_length(3 * FRAME)
}

fn encrypt(pt: &[u8], options: &EncryptOptions) -> Vec<u8> {
    kms_envelope::encrypt(&keyring(), options, pt).unwrap()
}

/// Decrypts with a small read buffer, returning what was released and the error.
fn stream_decrypt(message: &[u8], options: &DecryptOptions) -> (Vec<u8>, Option<Error>) {
    let mut released = Vec::new();
    let mut decryptor = match Decryptor::new(&keyring(), options, message) {
        Ok(d) => d,
        Err(e) => return (released, Some(e)),
    };
    let mut buf = [0u8; 7];
    loop {
        match decryptor.read(&mut buf) {
            Ok(0) => {
                assert!(decryptor.is_complete());
                return (released, None);
            }
            Ok(n) => released.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert!(!decryptor.is_complete());
                return (released, Some(Error::from_io(e)));
            }
        }
    }
}

fn header_len(message: &[u8]) -> usize {
    Decryptor::new(&keyring(), &DecryptOptions::new(), message).unwrap().header().as_bytes().len()
}

fn assert_whole_frames_prefix(released: &[u8], pt: &[u8]) {
    assert!(pt.starts_with(released), "released bytes are not a prefix of the plaintext");
    assert_eq!(released.len() % FRAME, 0, "released {} bytes: not whole frames", released.len());
}

#[test]
fn parallel_and_serial_messages_decrypt_either_way() {
    for suite in [AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY, SIGNED] {
        for len in [0, 1, FRAME - 1, FRAME, FRAME + 1, 7 * FRAME, 100 * FRAME, 100 * FRAME + 5, 1000 * FRAME + 3] {
            let pt = plaintext(len);
            let parallel = encrypt(&pt, &parallel_encrypt().suite(suite));
            let serial = encrypt(&pt, &EncryptOptions::new().frame_length(FRAME as u32).suite(suite).threads(1));
            assert_eq!(parallel.len(), serial.len(), "len {len}: same framing whatever the threads");
            for message in [&parallel, &serial] {
                for options in [parallel_decrypt(), DecryptOptions::new().threads(1)] {
                    let (released, err) = stream_decrypt(message, &options);
                    assert!(err.is_none(), "len {len}: {err:?}");
                    assert_eq!(released, pt, "len {len}");
                }
            }
        }
    }
}

#[test]
fn a_tampered_middle_frame_releases_exactly_the_frames_before_it() {
    let pt = plaintext(101 * FRAME + 9);
    let message = encrypt(&pt, &parallel_encrypt());
    let h = header_len(&message);
    for damaged in [1usize, 2, 3, 4, 50, 51, 52, 101] {
        let mut bad = message.clone();
        bad[h + (damaged - 1) * REGULAR + 20] ^= 0x10; // inside frame `damaged`'s ciphertext
        let (released, err) = stream_decrypt(&bad, &parallel_decrypt());
        assert!(
            matches!(err, Some(Error::FrameAuthentication { sequence }) if sequence as usize == damaged),
            "{err:?}"
        );
        assert_eq!(released, &pt[..(damaged - 1) * FRAME], "damaged frame {damaged}");
    }
    // The final frame (sequence 102) damaged: every regular frame, not the final one.
    let mut bad = message.clone();
    let last = message.len() - 16 - 9;
    bad[last] ^= 1;
    let (released, err) = stream_decrypt(&bad, &parallel_decrypt());
    assert!(matches!(err, Some(Error::FrameAuthentication { sequence: 102 })), "{err:?}");
    assert_eq!(released, &pt[..101 * FRAME]);
}

#[test]
fn every_single_byte_flip_is_rejected_in_parallel() {
    for suite in [AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY, SIGNED] {
        let pt = plaintext(10 * FRAME + 4);
        let message = encrypt(&pt, &parallel_encrypt().suite(suite).context("k", "v"));
        let h = header_len(&message);
        for i in h..message.len() {
            let mut bad = message.clone();
            bad[i] ^= 0x01;
            let (released, err) = stream_decrypt(&bad, &parallel_decrypt());
            assert!(err.is_some(), "suite {suite}: flipping byte {i} went unnoticed");
            assert_whole_frames_prefix(&released, &pt);
            // Nothing at or after the damaged frame: frame k starts at h + (k - 1) * REGULAR.
            let damaged_frame = (i - h) / REGULAR;
            assert!(released.len() <= damaged_frame.min(10) * FRAME, "byte {i}: released {}", released.len());
        }
    }
}

#[test]
fn every_truncation_is_rejected_and_never_releases_the_final_frame() {
    for suite in [AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY, SIGNED] {
        let pt = plaintext(10 * FRAME + 4);
        let message = encrypt(&pt, &parallel_encrypt().suite(suite));
        let h = header_len(&message);
        for cut in 0..message.len() {
            let (released, err) = stream_decrypt(&message[..cut], &parallel_decrypt());
            assert!(err.is_some(), "suite {suite}: cut at {cut} went unnoticed");
            assert_whole_frames_prefix(&released, &pt);
            assert!(released.len() <= 10 * FRAME, "cut {cut}: the final frame was released");
            // Every frame read whole before the cut verified, and is released before the error.
            if cut >= h {
                let whole = ((cut - h) / REGULAR).min(10);
                assert_eq!(released.len(), whole * FRAME, "suite {suite}: cut at {cut}");
            }
        }
        let mut longer = message.clone();
        longer.push(0);
        let (released, err) = stream_decrypt(&longer, &parallel_decrypt());
        assert!(matches!(err, Some(Error::TrailingData { .. })), "{err:?}");
        assert_eq!(released, &pt[..10 * FRAME]);
    }
}

#[test]
fn signed_final_frame_is_held_until_the_footer_verifies() {
    let pt = plaintext(40 * FRAME + 20);
    let message = encrypt(&pt, &parallel_encrypt().suite(SIGNED));
    for cut in [message.len() - 1, message.len() - 50, message.len() - 104] {
        let (released, err) = stream_decrypt(&message[..cut], &parallel_decrypt());
        assert!(matches!(err, Some(Error::Truncated { section: "footer", .. })), "cut {cut}: {err:?}");
        assert_eq!(released, &pt[..40 * FRAME], "cut {cut}");
    }
    let mut bad = message.clone();
    let at = message.len() - 5;
    bad[at] ^= 0x20; // inside the signature
    let (released, err) = stream_decrypt(&bad, &parallel_decrypt());
    assert!(err.is_some());
    assert_eq!(released, &pt[..40 * FRAME]);
}

#[test]
fn swapped_and_duplicated_frames_are_rejected() {
    let pt = plaintext(20 * FRAME + 1);
    let message = encrypt(&pt, &parallel_encrypt());
    let h = header_len(&message);
    let at = |k: usize| h + (k - 1) * REGULAR;

    let mut swapped = message.clone();
    swapped[at(8)..at(9)].copy_from_slice(&message[at(9)..at(10)]);
    swapped[at(9)..at(10)].copy_from_slice(&message[at(8)..at(9)]);
    let (released, err) = stream_decrypt(&swapped, &parallel_decrypt());
    assert!(matches!(err, Some(Error::Malformed { .. })), "{err:?}");
    assert_eq!(released, &pt[..7 * FRAME]);

    let mut duplicated = message[..at(12)].to_vec();
    duplicated.extend_from_slice(&message[at(11)..at(12)]);
    duplicated.extend_from_slice(&message[at(12)..]);
    let (released, err) = stream_decrypt(&duplicated, &parallel_decrypt());
    assert!(matches!(err, Some(Error::Malformed { .. })), "{err:?}");
    assert_eq!(released, &pt[..11 * FRAME]);
}

/// Names of this process's threads (Linux), to see the workers.
fn thread_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    dir.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok()).collect()
}

/// How many threads this process has (Linux; `None` elsewhere).
fn thread_count() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

/// Fails unless the process is back to `before` threads: every worker a stream started was joined by the
/// time `what` returned, none left running detached.
fn assert_workers_joined(before: Option<usize>, what: &str) {
    let after = thread_count();
    assert_eq!(after, before, "{what} left threads behind: {:?}", thread_names());
}

#[test]
fn workers_start_past_the_threshold_and_streams_drop_cleanly() {
    common::in_own_process(
        "parallel::workers_start_past_the_threshold_and_streams_drop_cleanly",
        workers_and_clean_drops,
    );
}

fn workers_and_clean_drops() {
    // Default threshold (1 MiB) and job length, two threads: a 6 MiB message in 64 KiB frames.
    let pt = plaintext(6 << 20);
    let before = thread_count();
    let mut encryptor = Encryptor::new(&keyring(), &EncryptOptions::new().threads(2), Vec::new()).unwrap();
    for chunk in pt.chunks(100_000) {
        encryptor.write_all(chunk).unwrap();
    }
    if cfg!(target_os = "linux") {
        // A new thread carries its creator's name until it first runs and renames itself; on a busy
        // machine that can take a while, and the workers live until `finish`.
        let named = |names: &[String]| names.iter().any(|n| n.starts_with("kms-envelope-c"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !named(&thread_names()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let names = thread_names();
        assert!(named(&names), "no worker threads running: {names:?}");
    }
    let message = encryptor.finish().unwrap();
    assert_workers_joined(before, "Encryptor::finish");

    let mut decryptor = Decryptor::new(&keyring(), &DecryptOptions::new().threads(2), &message[..]).unwrap();
    let mut out = vec![0u8; 3 << 20];
    decryptor.read_exact(&mut out).unwrap();
    assert_eq!(out, &pt[..3 << 20]);
    drop(decryptor); // mid-stream, with jobs in flight: joins its workers
    assert_workers_joined(before, "a Decryptor dropped mid-stream");

    let mut decryptor = Decryptor::new(&keyring(), &DecryptOptions::new().threads(2), &message[..]).unwrap();
    std::io::copy(&mut decryptor, &mut std::io::sink()).unwrap();
    assert!(decryptor.is_complete());
    drop(decryptor);
    assert_workers_joined(before, "a Decryptor read to the end");

    // A frame fails halfway: the error, then the drop, with the frames after it still in flight.
    let mut tampered = message.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    let mut decryptor = Decryptor::new(&keyring(), &DecryptOptions::new().threads(2), &tampered[..]).unwrap();
    let err = std::io::copy(&mut decryptor, &mut std::io::sink()).unwrap_err();
    assert!(matches!(Error::from_io(err), Error::FrameAuthentication { .. }));
    drop(decryptor);
    assert_workers_joined(before, "a Decryptor dropped after a frame failed");

    let decrypted = kms_envelope::decrypt(&keyring(), &DecryptOptions::new().threads(2), &message).unwrap();
    assert!(*decrypted.plaintext == pt);
    assert_workers_joined(before, "decrypt");

    // An encryptor dropped with jobs in flight does not hang either.
    let mut abandoned = Encryptor::new(&keyring(), &parallel_encrypt(), Vec::new()).unwrap();
    abandoned.write_all(&pt[..1 << 20]).unwrap();
    drop(abandoned);
    assert_workers_joined(before, "an Encryptor dropped unfinished");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trips_for_any_threads_jobs_and_chunking(
        len in 0usize..20_000,
        frame_length in 1u32..700,
        job_length in 1usize..3000,
        threads in 1usize..5,
        threshold in 0u64..5000,
        write_chunk in 1usize..5000,
        read_chunk in 1usize..5000,
        signed in any::<bool>(),
        stale in 0usize..30_000,
    ) {
        let pt = plaintext(len);
        let mut options = EncryptOptions::new()
            .frame_length(frame_length)
            .threads(threads)
            .parallel_threshold(threshold)
            .job_length(job_length);
        if signed {
            options = options.suite(SIGNED);
        }
        let mut encryptor = Encryptor::new(&keyring(), &options, Vec::new()).unwrap();
        for chunk in pt.chunks(write_chunk) {
            encryptor.write_all(chunk).unwrap();
        }
        let message = encryptor.finish().unwrap();
        let encrypt_options = options;
        let options =
            DecryptOptions::new().threads(threads).parallel_threshold(threshold).job_length(job_length);
        let mut decryptor = Decryptor::new(&keyring(), &options, &message[..]).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_chunk];
        loop {
            let n = decryptor.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        prop_assert!(decryptor.is_complete());
        prop_assert_eq!(&out, &pt);

        // The one-shot helpers (the whole-message path when unsigned and past the threshold) read what
        // the stream wrote and write what the stream reads, frame for frame.
        let decrypted = kms_envelope::decrypt(&keyring(), &options, &message).unwrap();
        prop_assert_eq!(&*decrypted.plaintext, &pt);
        let whole = kms_envelope::encrypt(&keyring(), &encrypt_options, &pt).unwrap();
        prop_assert_eq!(whole.len(), message.len());
        let streamed = Decryptor::new(&keyring(), &DecryptOptions::new(), &whole[..]).unwrap().read_all().unwrap();
        prop_assert_eq!(&streamed, &pt);

        // Into buffers that held something else, longer or shorter: replaced, not appended to.
        let mut reused = vec![0xEE; stale];
        kms_envelope::encrypt_into(&keyring(), &encrypt_options, &pt, &mut reused).unwrap();
        prop_assert_eq!(reused.len(), message.len());
        let mut plain = zeroize::Zeroizing::new(vec![0xDD; stale]);
        let header = kms_envelope::decrypt_into(&keyring(), &options, &reused, &mut plain).unwrap();
        prop_assert_eq!(&*plain, &pt);
        prop_assert_eq!(header.frame_length(), frame_length);
    }
}

/// The tokio adapters: 64 concurrent streams, each encrypting through a pipe into a concurrent decryptor,
/// on a current-thread runtime and on a two-worker runtime; more streams than cores must not deadlock.
#[cfg(feature = "async")]
mod async_streams {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use kms_envelope::keyring::block_on;
    use kms_envelope::{AsyncDecryptor, AsyncEncryptor, DecryptOptions, EncryptOptions, Error};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{common, keyring, plaintext};

    async fn one_stream(i: usize) {
        let pt = plaintext(300_000 + i * 1000);
        let (writer, reader) = tokio::io::duplex(64 << 10);
        let options = EncryptOptions::new().frame_length(4096).threads(2).parallel_threshold(0).job_length(16 << 10);
        let expected = pt.clone();
        let encrypt = tokio::spawn(async move {
            let keyring = keyring();
            let mut encryptor = AsyncEncryptor::new(&keyring, &options, writer).await.unwrap();
            for chunk in pt.chunks(10_000) {
                encryptor.write_all(chunk).await.unwrap();
            }
            encryptor.shutdown().await.unwrap();
        });
        let keyring = keyring();
        let options = DecryptOptions::new().threads(2).parallel_threshold(0).job_length(16 << 10);
        let mut decryptor = AsyncDecryptor::new(&keyring, &options, reader).await.unwrap();
        let mut out = Vec::new();
        decryptor.read_to_end(&mut out).await.unwrap();
        assert!(decryptor.is_complete());
        assert!(out == expected, "stream {i}");
        encrypt.await.unwrap();
    }

    async fn many_streams() {
        let streams: Vec<_> = (0..64).map(|i| tokio::spawn(one_stream(i))).collect();
        let all = async {
            for s in streams {
                s.await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(300), all).await.expect("64 concurrent streams deadlocked");
    }

    #[test]
    fn sixty_four_streams_on_a_current_thread_runtime() {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(many_streams());
    }

    #[test]
    fn sixty_four_streams_on_a_two_worker_runtime() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(many_streams());
    }

    fn assert_no_runtime_error(result: Result<impl std::fmt::Debug, Error>, caller: &str) {
        match result {
            Err(Error::Config(reason)) => {
                assert!(reason.contains(caller) && reason.contains("outside a tokio runtime"), "{reason}")
            }
            other => panic!("{caller} outside a runtime gave {other:?}"),
        }
    }

    /// Outside a tokio runtime (no blocking pool to run the stream on), both constructors return a typed
    /// error instead of panicking, and the encryptor does so before asking the keyring for a data key.
    #[test]
    fn outside_a_runtime_the_constructors_fail_with_a_config_error() {
        let keyring = common::CountingKeyring { inner: keyring(), calls: Default::default() };
        let encryptor = block_on(AsyncEncryptor::new(&keyring, &EncryptOptions::new(), Vec::new()));
        assert_no_runtime_error(encryptor, "AsyncEncryptor::new");
        assert_eq!(keyring.calls.load(Ordering::SeqCst), 0, "a data key was asked for a stream that cannot run");

        let message = super::encrypt(b"outside", &EncryptOptions::new());
        let decryptor = block_on(AsyncDecryptor::new(&keyring, &DecryptOptions::new(), std::io::Cursor::new(message)));
        assert_no_runtime_error(decryptor, "AsyncDecryptor::new");
    }

    #[test]
    fn async_decrypt_releases_only_the_frames_before_the_damage() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let pt = plaintext(200 * 32 + 5);
            let options = super::parallel_encrypt();
            let mut encryptor = AsyncEncryptor::new(&keyring(), &options, Vec::new()).await.unwrap();
            encryptor.write_all(&pt).await.unwrap();
            let message = encryptor.finish().await.unwrap();
            let h = super::header_len(&message);
            let mut bad = message.clone();
            bad[h + 120 * super::REGULAR + 20] ^= 4; // frame 121
            let mut decryptor =
                AsyncDecryptor::new(&keyring(), &super::parallel_decrypt(), std::io::Cursor::new(bad)).await.unwrap();
            let mut out = Vec::new();
            let mut buf = [0u8; 1000];
            let err = loop {
                match decryptor.read(&mut buf).await {
                    Ok(0) => panic!("tampering went unnoticed"),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) => break Error::from_io(e),
                }
            };
            assert!(matches!(err, Error::FrameAuthentication { sequence: 121 }), "{err:?}");
            assert_eq!(out, &pt[..120 * 32]);
            assert!(!decryptor.is_complete());
        });
    }
}
