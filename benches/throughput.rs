//! Encrypt and decrypt throughput through the streaming API and the one-shot helpers into reused buffers
//! (`encrypt_into`/`decrypt_into`), by frame length (4 KiB, 64 KiB, 1 MiB) and thread count (1, 2), in
//! memory. The AES-GCM backend is the one compiled in; run once per backend:
//!
//!   cargo bench --bench throughput                                        # aes-gcm (RustCrypto)
//!   cargo bench --bench throughput --no-default-features --features aws-lc
//!
//! Each iteration moves 32 MiB, far past the 1 MiB threshold where workers start.

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kms_envelope::{DecryptOptions, Decryptor, EncryptOptions, Encryptor, RawAesKeyring};

const SIZE: usize = 32 << 20;
const FRAMES: [u32; 3] = [4 << 10, 64 << 10, 1 << 20];
const THREADS: [usize; 2] = [1, 2];

fn throughput(c: &mut Criterion) {
    let keyring = RawAesKeyring::new("bench", "key", &[7u8; 32]).unwrap();
    let plaintext: Vec<u8> = (0..SIZE).map(|i| (i * 131 % 251) as u8).collect();
    let backend = kms_envelope::aes_gcm_backend();

    let mut group = c.benchmark_group(format!("encrypt/{backend}"));
    group.throughput(Throughput::Bytes(SIZE as u64));
    let mut output = Vec::with_capacity(SIZE + SIZE / 64 + 4096);
    for frame in FRAMES {
        for threads in THREADS {
            let options = EncryptOptions::new().frame_length(frame).threads(threads);
            let id = BenchmarkId::new(format!("frame {}K", frame >> 10), format!("{threads} threads"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    output.clear();
                    let mut encryptor = Encryptor::new(&keyring, &options, &mut output).unwrap();
                    for chunk in plaintext.chunks(1 << 20) {
                        encryptor.write_all(chunk).unwrap();
                    }
                    encryptor.finish().unwrap();
                })
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group(format!("decrypt/{backend}"));
    group.throughput(Throughput::Bytes(SIZE as u64));
    let mut buf = vec![0u8; 1 << 20];
    for frame in FRAMES {
        let message = kms_envelope::encrypt(&keyring, &EncryptOptions::new().frame_length(frame), &plaintext).unwrap();
        for threads in THREADS {
            let options = DecryptOptions::new().threads(threads);
            let id = BenchmarkId::new(format!("frame {}K", frame >> 10), format!("{threads} threads"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    let mut decryptor = Decryptor::new(&keyring, &options, &message[..]).unwrap();
                    while decryptor.read(&mut buf).unwrap() != 0 {
                        black_box(&buf);
                    }
                })
            });
        }
    }
    group.finish();

    for (direction, encrypting) in [("encrypt_into", true), ("decrypt_into", false)] {
        let mut group = c.benchmark_group(format!("{direction}/{backend}"));
        group.throughput(Throughput::Bytes(SIZE as u64));
        let mut plain = zeroize::Zeroizing::new(Vec::new());
        for frame in FRAMES {
            let message =
                kms_envelope::encrypt(&keyring, &EncryptOptions::new().frame_length(frame), &plaintext).unwrap();
            for threads in THREADS {
                let encrypt_options = EncryptOptions::new().frame_length(frame).threads(threads);
                let decrypt_options = DecryptOptions::new().threads(threads);
                let id = BenchmarkId::new(format!("frame {}K", frame >> 10), format!("{threads} threads"));
                group.bench_function(id, |b| {
                    b.iter(|| {
                        if encrypting {
                            kms_envelope::encrypt_into(&keyring, &encrypt_options, &plaintext, &mut output).unwrap();
                        } else {
                            kms_envelope::decrypt_into(&keyring, &decrypt_options, &message, &mut plain).unwrap();
                        }
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = throughput
}
criterion_main!(benches);
