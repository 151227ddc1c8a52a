//! The main job on an embedded default, offline: make a raw AES key, encrypt a sample secrets bundle,
//! decrypt it back into a temp directory, and show what happened.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use std::fs;
use std::time::Instant;

use kms_envelope::{DecryptOptions, EncryptOptions, Encryptor, RawAesKeyring, decrypt_to_path};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let work = tempfile::tempdir()?;

    // 1. A local wrapping key. In production this is KMS; a raw key needs no AWS account.
    let mut wrapping_key = [0u8; 32];
    rand::fill(&mut wrapping_key);
    let keyring = RawAesKeyring::new("quickstart", "demo-key-1", &wrapping_key)?;

    // 2. A sample secrets file: a config plus 8 MiB of "model weights".
    let secrets = work.path().join("secrets.bin");
    let mut sample = b"db_password=correct horse battery staple\napi_token=tok_live_1234\n".to_vec();
    sample.extend((0..8u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    fs::write(&secrets, &sample)?;

    // 3. Encrypt it, streamed, with an encryption context that decrypt must present again.
    let encrypted = work.path().join("secrets.bin.esdk");
    let options = EncryptOptions::new().context("app", "quickstart").context("stage", "demo");
    let started = Instant::now();
    let mut encryptor = Encryptor::new(&keyring, &options, fs::File::create(&encrypted)?)?;
    std::io::copy(&mut fs::File::open(&secrets)?, &mut encryptor)?;
    encryptor.finish()?;
    let encrypt_time = started.elapsed();

    // 4. Decrypt into a fresh directory: the file appears (mode 0600) only once every frame verified.
    let out_dir = work.path().join("decrypted");
    fs::create_dir(&out_dir)?;
    let decrypted = out_dir.join("secrets.bin");
    let decrypt_options = DecryptOptions::new().context("app", "quickstart").context("stage", "demo");
    let started = Instant::now();
    let header = decrypt_to_path(&keyring, &decrypt_options, fs::File::open(&encrypted)?, &decrypted, false, false)?;
    let decrypt_time = started.elapsed();

    let round_trip_ok = fs::read(&decrypted)? == sample;
    println!("kms-envelope quickstart (raw AES key, no AWS account needed)");
    println!("  plaintext     {} bytes  {}", sample.len(), secrets.display());
    println!("  message       {} bytes  {}", fs::metadata(&encrypted)?.len(), encrypted.display());
    println!("  suite         {} (AES-256-GCM, HKDF-SHA512, key commitment)", header.suite());
    println!("  message id    {}", header.message_id());
    println!("  frame length  {}", header.frame_length());
    for (k, v) in header.encryption_context().iter() {
        println!("  context       {k} = {v}");
    }
    for edk in header.encrypted_data_keys() {
        println!("  data key      wrapped by provider {:?}", edk.provider_id);
    }
    println!("  encrypt       {:.1} ms", encrypt_time.as_secs_f64() * 1e3);
    println!("  decrypt       {:.1} ms  -> {}", decrypt_time.as_secs_f64() * 1e3, decrypted.display());
    println!("  round trip    {}", if round_trip_ok { "identical" } else { "MISMATCH" });
    if !round_trip_ok {
        return Err("decrypted file differs from the original".into());
    }

    // 5. A tampered copy is refused and leaves nothing behind.
    let mut tampered = fs::read(&encrypted)?;
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    let target = out_dir.join("tampered.bin");
    let refused = decrypt_to_path(&keyring, &decrypt_options, &tampered[..], &target, false, false);
    println!(
        "  tampered      refused ({}); output left behind: {}",
        refused.as_ref().err().map(ToString::to_string).unwrap_or_else(|| "NOT REFUSED".into()),
        target.exists()
    );
    if refused.is_ok() || target.exists() {
        return Err("a tampered message was not refused cleanly".into());
    }
    Ok(())
}
