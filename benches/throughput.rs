//! Encrypt and decrypt throughput through the streaming API and the one-shot helpers into reused buffers
//! (`encrypt_into`/`decrypt_into`), by frame length (4 KiB, 64 KiB, 1 MiB) and thread count (1, 2), in
//! memory. The AES-GCM backend is the one compiled in; run once per backend:
//!
//!   cargo bench --bench throughput                                        # aes-gcm (RustCrypto)
//!   cargo bench --bench throughput --no-default-features --features aws-lc
//!
//! Each run moves 32 MiB, far past the 1 MiB threshold where workers start. Every configuration runs
//! BENCH_RUNS times (default 7; a first, unmeasured run warms caches and the worker pool) and prints the
//! median with the fastest and slowest run, in GB/s (10^9 bytes/s): on a noisy machine the median is the
//! figure to quote, the spread says how noisy the run was.
//!
//! Not criterion: a median of a few runs is what the bench harness (examples/bench.rs) reports everywhere,
//! and criterion as a dev-dependency was compiled into every test build of every feature set (about 40 s
//! of CPU each) for this one file.

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Instant;

use kms_envelope::{DecryptOptions, Decryptor, EncryptOptions, Encryptor, RawAesKeyring};

const SIZE: usize = 32 << 20;
const FRAMES: [u32; 3] = [4 << 10, 64 << 10, 1 << 20];
const THREADS: [usize; 2] = [1, 2];

/// Runs `run` once to warm up, then `runs` times, and prints one line: the median, fastest and slowest
/// throughput of SIZE bytes.
fn measure(group: &str, frame: u32, threads: usize, runs: usize, mut run: impl FnMut()) {
    run();
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            run();
            SIZE as f64 / start.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "{group:<28} frame {:>4}K  {threads} threads  median {:6.2} GB/s  (min {:.2}, max {:.2}, {runs} runs)",
        frame >> 10,
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1],
    );
}

fn main() {
    // `cargo test --benches` runs this binary with `--bench` absent: a smoke run of one iteration each.
    let benching = std::env::args().any(|a| a == "--bench");
    let runs = if benching {
        std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(7)
    } else {
        1
    };
    let keyring = RawAesKeyring::new("bench", "key", &[7u8; 32]).unwrap();
    let plaintext: Vec<u8> = (0..SIZE).map(|i| (i * 131 % 251) as u8).collect();
    let backend = kms_envelope::aes_gcm_backend();

    let mut output = Vec::with_capacity(SIZE + SIZE / 64 + 4096);
    for frame in FRAMES {
        for threads in THREADS {
            let options = EncryptOptions::new().frame_length(frame).threads(threads);
            measure(&format!("encrypt/{backend}"), frame, threads, runs, || {
                output.clear();
                let mut encryptor = Encryptor::new(&keyring, &options, &mut output).unwrap();
                for chunk in plaintext.chunks(1 << 20) {
                    encryptor.write_all(chunk).unwrap();
                }
                encryptor.finish().unwrap();
            });
        }
    }

    let mut buf = vec![0u8; 1 << 20];
    for frame in FRAMES {
        let message = kms_envelope::encrypt(&keyring, &EncryptOptions::new().frame_length(frame), &plaintext).unwrap();
        for threads in THREADS {
            let options = DecryptOptions::new().threads(threads);
            measure(&format!("decrypt/{backend}"), frame, threads, runs, || {
                let mut decryptor = Decryptor::new(&keyring, &options, &message[..]).unwrap();
                while decryptor.read(&mut buf).unwrap() != 0 {
                    black_box(&buf);
                }
            });
        }
    }

    let mut plain = zeroize::Zeroizing::new(Vec::new());
    for frame in FRAMES {
        let message = kms_envelope::encrypt(&keyring, &EncryptOptions::new().frame_length(frame), &plaintext).unwrap();
        for threads in THREADS {
            let encrypt_options = EncryptOptions::new().frame_length(frame).threads(threads);
            let decrypt_options = DecryptOptions::new().threads(threads);
            measure(&format!("encrypt_into/{backend}"), frame, threads, runs, || {
                kms_envelope::encrypt_into(&keyring, &encrypt_options, &plaintext, &mut output).unwrap();
            });
            measure(&format!("decrypt_into/{backend}"), frame, threads, runs, || {
                kms_envelope::decrypt_into(&keyring, &decrypt_options, &message, &mut plain).unwrap();
            });
        }
    }
}
