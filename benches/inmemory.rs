//! In-memory throughput, for scripts/bench.sh: encrypts and decrypts SIZE bytes held in memory and prints
//! one line per API and direction with GB/s (10^9 bytes/s): the one-shot `encrypt`/`decrypt` (which
//! allocate their output, page faults included), and the streaming `Encryptor`/`Decryptor` (output into a
//! buffer allocated once).
//!
//! Not a criterion bench: the bench script needs one number per configuration on the same 1 GiB it hands
//! to openssl, cp and the Python ESDK. Settings come from the environment:
//!   BENCH_SIZE (bytes, default 1 GiB), BENCH_FRAME (default 65536), BENCH_THREADS (default 2),
//!   BENCH_RUNS (best of, default 3), BENCH_INPUT (a file to use as the plaintext instead of generated
//!   bytes; BENCH_SIZE is then its length).

use std::io::{Read, Write};
use std::time::Instant;

use kms_envelope::{DecryptOptions, Decryptor, EncryptOptions, Encryptor, RawAesKeyring};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let input = std::env::var_os("BENCH_INPUT").map(|path| std::fs::read(path).expect("read BENCH_INPUT"));
    let size = input.as_ref().map_or_else(|| env("BENCH_SIZE", 1 << 30), Vec::len);
    let frame = env("BENCH_FRAME", 65536);
    let threads = env("BENCH_THREADS", 2);
    let runs = env("BENCH_RUNS", 3);
    let keyring = RawAesKeyring::new("bench", "key", &[7u8; 32]).unwrap();
    let plaintext: Vec<u8> = input.unwrap_or_else(|| (0..size).map(|i| (i * 131 % 251) as u8).collect());
    let mut message = Vec::with_capacity(size + size / frame * 40 + 4096);
    let options = EncryptOptions::new().frame_length(frame as u32).threads(threads);
    let mut best_enc = f64::MAX;
    for _ in 0..runs {
        message.clear();
        let start = Instant::now();
        let mut encryptor = Encryptor::new(&keyring, &options, &mut message).unwrap();
        for chunk in plaintext.chunks(1 << 20) {
            encryptor.write_all(chunk).unwrap();
        }
        encryptor.finish().unwrap();
        best_enc = best_enc.min(start.elapsed().as_secs_f64());
    }
    let options = DecryptOptions::new().threads(threads);
    let mut out = vec![0u8; size];
    let mut best_dec = f64::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        let mut decryptor = Decryptor::new(&keyring, &options, &message[..]).unwrap();
        let mut at = 0;
        loop {
            let end = (at + (1 << 20)).min(size);
            let n = decryptor.read(&mut out[at..end]).unwrap();
            if n == 0 {
                break;
            }
            at += n;
        }
        assert_eq!(at, size);
        best_dec = best_dec.min(start.elapsed().as_secs_f64());
    }
    assert!(out == plaintext);
    // One-shot into buffers reused from run to run (`encrypt_into`/`decrypt_into`), and allocating
    // (`encrypt`/`decrypt`, whose fresh output costs a page fault per 4 KiB).
    let encrypt_options = EncryptOptions::new().frame_length(frame as u32).threads(threads);
    let (mut best_into_enc, mut best_into_dec, mut best_alloc_enc, mut best_alloc_dec) =
        (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    let mut decrypted = zeroize::Zeroizing::new(Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        kms_envelope::encrypt_into(&keyring, &encrypt_options, &plaintext, &mut message).unwrap();
        best_into_enc = best_into_enc.min(start.elapsed().as_secs_f64());
        let start = Instant::now();
        kms_envelope::decrypt_into(&keyring, &options, &message, &mut decrypted).unwrap();
        best_into_dec = best_into_dec.min(start.elapsed().as_secs_f64());
        assert!(*decrypted == plaintext);
    }
    drop(decrypted);
    for _ in 0..runs.min(2) {
        let start = Instant::now();
        let message = kms_envelope::encrypt(&keyring, &encrypt_options, &plaintext).unwrap();
        best_alloc_enc = best_alloc_enc.min(start.elapsed().as_secs_f64());
        let start = Instant::now();
        let decrypted = kms_envelope::decrypt(&keyring, &options, &message).unwrap();
        best_alloc_dec = best_alloc_dec.min(start.elapsed().as_secs_f64());
        assert!(*decrypted.plaintext == plaintext);
    }
    let backend = kms_envelope::aes_gcm_backend();
    raw_seal(&mut out, frame, runs, backend);
    // The memory ceiling: one core copying the plaintext into a buffer that is already mapped. The
    // streaming API's caller thread copies every byte twice (into a job, and out to the writer).
    let mut best_copy = f64::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        out.copy_from_slice(std::hint::black_box(&plaintext));
        best_copy = best_copy.min(start.elapsed().as_secs_f64());
    }
    println!("memcpy, one core: {:.2} GB/s", size as f64 / best_copy / 1e9);
    for (what, secs) in [
        ("encrypt", best_into_enc),
        ("decrypt", best_into_dec),
        ("stream-encrypt", best_enc),
        ("stream-decrypt", best_dec),
        ("allocating-encrypt", best_alloc_enc),
        ("allocating-decrypt", best_alloc_dec),
    ] {
        println!(
            "in-memory {what} {size} B, frame {frame}, threads {threads}, {backend}: {:.3} s, {:.2} GB/s",
            secs,
            size as f64 / secs / 1e9
        );
    }
}

/// The backend alone, one core, in place over the same buffer in frames: the ceiling per core. It needs
/// the crate's internals, public only with feature `fuzzing`; scripts/bench.sh reads no number from it.
#[cfg(feature = "fuzzing")]
fn raw_seal(out: &mut [u8], frame: usize, runs: usize, backend: &str) {
    let key = kms_envelope::crypto::AeadKey::new(&[9u8; 32]).unwrap();
    let mut best_raw = f64::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        for (i, chunk) in out.chunks_mut(frame).enumerate() {
            let mut iv = [0u8; 12];
            iv[8..].copy_from_slice(&(i as u32).to_be_bytes());
            std::hint::black_box(key.seal_in_place(&iv, b"aad", chunk));
        }
        best_raw = best_raw.min(start.elapsed().as_secs_f64());
    }
    println!("raw {backend} seal, one core, frame {frame}: {:.2} GB/s", out.len() as f64 / best_raw / 1e9);
}

#[cfg(not(feature = "fuzzing"))]
fn raw_seal(_: &mut [u8], _: usize, _: usize, backend: &str) {
    println!("raw {backend} seal: not measured (build with --features fuzzing)");
}
