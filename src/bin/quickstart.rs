//! The main job, offline and with a raw AES key made for the run: bundle a secrets directory, encrypt it, decrypt
//! it back into a temp root, and watch a tampered copy be refused with nothing left behind.
//!
//! ```text
//! cargo run --release --no-default-features --features quickstart --bin quickstart
//! ```
//!
//! A binary rather than an example so that it builds without the dev-dependencies (proptest, hyper,
//! the Lambda runtime) and without the AWS SDK: a newcomer's first command should take seconds, not minutes.

use std::fs;
use std::path::Path;
use std::time::Instant;

use kms_envelope::OutputOptions;
use kms_envelope::bundle::{decrypt_directory, encrypt_directory};
use kms_envelope::{DecryptOptions, EncryptOptions, RawAesKeyring, Zeroizing};

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let work = tempfile::tempdir()?;
    // A fresh random key for this run, so that the run needs nothing and there is no key constant to copy
    // into real code (an embedded key is one anybody who reads the source holds). A real wrapping key is
    // 32 random bytes kept secret (`head -c 32 /dev/urandom > wrapping.key`), or an AWS KMS key.
    let mut wrapping_key = Zeroizing::new([0u8; 32]);
    rand::fill(&mut wrapping_key[..]);
    let keyring = RawAesKeyring::new("quickstart", "demo-key-1", &wrapping_key[..])?;

    // 1. A secrets directory as a deployment would have it: a config, a certificate, 8 MiB of model weights.
    let secrets = work.path().join("secrets");
    fs::create_dir_all(secrets.join("tls"))?;
    fs::write(secrets.join("app.env"), "DB_PASSWORD=correct horse battery staple\nAPI_TOKEN=tok_live_1234\n")?;
    fs::write(secrets.join("tls/server.pem"), "-----BEGIN PRIVATE KEY-----\n(demo)\n-----END PRIVATE KEY-----\n")?;
    let weights: Vec<u8> = (0..8u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    fs::write(secrets.join("model.bin"), &weights)?;

    // 2. Bundle and encrypt it into one message, bound to an encryption context decrypt must present again.
    let bundle = work.path().join("secrets.esdk");
    let encrypt_options = EncryptOptions::new().context("app", "quickstart").context("stage", "demo");
    let started = Instant::now();
    let (_, packed) = encrypt_directory(&keyring, &encrypt_options, &secrets, fs::File::create(&bundle)?)?;
    let encrypt_time = started.elapsed();

    // 3. Decrypt it into a fresh root: the directory appears (0700, files 0600) only once every frame verified.
    let root = work.path().join("run");
    fs::create_dir(&root)?;
    let restored = root.join("secrets");
    let decrypt_options = DecryptOptions::new().context("app", "quickstart").context("stage", "demo");
    let started = Instant::now();
    let (header, unpacked) =
        decrypt_directory(&keyring, &decrypt_options, fs::File::open(&bundle)?, &restored, &OutputOptions::new())?;
    let decrypt_time = started.elapsed();
    let identical = ["app.env", "tls/server.pem", "model.bin"]
        .iter()
        .all(|name| same_file(&secrets.join(name), &restored.join(name)));

    println!("kms-envelope quickstart (raw AES key, no AWS account needed)");
    println!(
        "  bundled       {} files, {} directories, {} bytes from {}",
        packed.files,
        packed.directories,
        packed.bytes,
        secrets.display()
    );
    println!("  message       {} bytes  {}", fs::metadata(&bundle)?.len(), bundle.display());
    println!("  suite         {} (AES-256-GCM, HKDF-SHA512, key commitment)", header.suite());
    println!("  message id    {}", header.message_id());
    for (key, value) in header.encryption_context().iter() {
        println!("  context       {key} = {value}");
    }
    for edk in header.encrypted_data_keys() {
        println!("  data key      wrapped by provider {:?}", edk.provider_id);
    }
    println!("  encrypt       {:.1} ms", encrypt_time.as_secs_f64() * 1e3);
    println!(
        "  decrypt       {:.1} ms  -> {} ({} files)",
        decrypt_time.as_secs_f64() * 1e3,
        restored.display(),
        unpacked.files
    );
    println!("  round trip    {}", if identical { "identical" } else { "MISMATCH" });
    if !identical {
        return Err("a restored file differs from the original".into());
    }

    // 4. One flipped bit in the middle of the message: refused, and nothing appears at the destination.
    let mut tampered = fs::read(&bundle)?;
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    let target = root.join("tampered");
    let refused = decrypt_directory(&keyring, &decrypt_options, &tampered[..], &target, &OutputOptions::new());
    let left_behind = fs::read_dir(&root)?.count() - 1; // everything in the root but `secrets`
    println!(
        "  tampered      refused ({}); entries left behind: {left_behind}",
        refused.as_ref().err().map(ToString::to_string).unwrap_or_else(|| "NOT REFUSED".into()),
    );
    if refused.is_ok() || left_behind != 0 {
        return Err("a tampered message was not refused cleanly".into());
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((fs::read(a), fs::read(b)), (Ok(a), Ok(b)) if a == b)
}
