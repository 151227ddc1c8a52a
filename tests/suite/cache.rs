//! Data-key caching against real components: KMS call counts through a counting proxy in front of moto,
//! and interop with the Python ESDK's caching CMM. The limits themselves (with an injectable clock) are
//! unit-tested in src/keyring/caching/tests.rs.
#![cfg(feature = "kms")]

use crate::common;
use crate::support;

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture};
use kms_envelope::{
    CacheLimits, CachingKeyring, DecryptOptions, Decryptor, EncryptOptions, EncryptedDataKey, Encryptor, Keyring,
    MaterialsCache, RawAesKeyring, decrypt, encrypt,
};
use support::{CountingProxy, Moto, within};

const MESSAGES: usize = 1000;
const PER_KEY: u64 = 100;

fn limits() -> CacheLimits {
    CacheLimits::new(Duration::from_secs(600)).max_messages(PER_KEY)
}

fn edks(message: &[u8]) -> Vec<EncryptedDataKey> {
    kms_envelope::Header::read_from(Default::default(), &mut &message[..]).unwrap().encrypted_data_keys().to_vec()
}

#[test]
fn a_thousand_messages_make_ten_kms_calls_each_way() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.create_key();
    let proxy = CountingProxy::start(&moto.endpoint);
    let options = EncryptOptions::new().context("tenant", "t-1");

    let keyring =
        CachingKeyring::new(proxy.clients().keyring(&key).unwrap(), Arc::new(MaterialsCache::new(8)), limits())
            .unwrap();
    let messages: Vec<Vec<u8>> =
        (0..MESSAGES).map(|i| encrypt(&keyring, &options, format!("record {i}").as_bytes()).unwrap()).collect();
    assert_eq!(proxy.calls("GenerateDataKey"), MESSAGES / PER_KEY as usize);
    assert_eq!(proxy.calls("Encrypt"), 0);
    let distinct: std::collections::HashSet<_> = messages.iter().map(|m| edks(m)).collect();
    assert_eq!(distinct.len(), MESSAGES / PER_KEY as usize);

    // A fresh cache (another process, say) for decrypt: one Decrypt per data key.
    let keyring =
        CachingKeyring::new(proxy.clients().keyring(&key).unwrap(), Arc::new(MaterialsCache::new(8)), limits())
            .unwrap();
    for (i, message) in messages.iter().enumerate() {
        let decrypted = decrypt(&keyring, &DecryptOptions::new(), message).unwrap();
        assert_eq!(&decrypted.plaintext[..], format!("record {i}").as_bytes());
    }
    assert_eq!(proxy.calls("Decrypt"), MESSAGES / PER_KEY as usize);

    // The same keyring without a cache: one call per message.
    let plain = proxy.clients().keyring(&key).unwrap();
    for message in &messages[..20] {
        decrypt(&plain, &DecryptOptions::new(), message).unwrap();
    }
    assert_eq!(proxy.calls("Decrypt"), MESSAGES / PER_KEY as usize + 20);
}

const CONCURRENT: usize = 64;

#[test]
fn sixty_four_concurrent_misses_make_one_kms_call() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.create_key();
    let proxy = CountingProxy::start(&moto.endpoint);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let clients = proxy.clients();
    let (message, proxy) = within(Duration::from_secs(120), "64 concurrent cached encrypts", move || {
        let message = runtime.block_on(async move {
            let inner = clients.keyring(&key).unwrap();
            let keyring = Arc::new(CachingKeyring::new(inner, Arc::new(MaterialsCache::new(8)), limits()).unwrap());
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..CONCURRENT {
                let keyring = keyring.clone();
                tasks.spawn(async move {
                    let options = EncryptOptions::new().max_plaintext_length(Some(5));
                    let mut encryptor = Encryptor::new_async(&*keyring, &options, Vec::new()).await.unwrap();
                    std::io::Write::write_all(&mut encryptor, b"hello").unwrap();
                    encryptor.finish().unwrap()
                });
            }
            let mut messages = Vec::new();
            while let Some(message) = tasks.join_next().await {
                messages.push(message.unwrap());
            }
            assert!(messages.iter().all(|m| edks(m) == edks(&messages[0])), "the tasks got different data keys");
            messages.swap_remove(0)
        });
        (message, proxy)
    });
    assert_eq!(proxy.calls("GenerateDataKey"), 1);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let clients = proxy.clients();
    let key = String::from_utf8(edks(&message)[0].provider_info.clone()).unwrap();
    let proxy = within(Duration::from_secs(120), "64 concurrent cached decrypts", move || {
        runtime.block_on(async move {
            let inner = clients.keyring(&key).unwrap();
            let keyring = Arc::new(CachingKeyring::new(inner, Arc::new(MaterialsCache::new(8)), limits()).unwrap());
            let message = Arc::new(message);
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..CONCURRENT {
                let (keyring, message) = (keyring.clone(), message.clone());
                tasks.spawn(async move {
                    let decryptor = Decryptor::new_async(&*keyring, &DecryptOptions::new(), &message[..]).await?;
                    decryptor.read_all()
                });
            }
            while let Some(plaintext) = tasks.join_next().await {
                assert_eq!(plaintext.unwrap().unwrap(), b"hello");
            }
        });
        proxy
    });
    assert_eq!(proxy.calls("Decrypt"), 1);
}

// ------------------------------------------------------------------------------ no lock in the call

/// A raw AES keyring whose encrypt call for the context `hold=yes` says so on `entered`, then stays in the
/// call until `release` says go: an inner-keyring call in flight for as long as the test wants.
struct Holding {
    inner: RawAesKeyring,
    entered: mpsc::SyncSender<()>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl Keyring for Holding {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        if materials.encryption_context().get("hold") == Some("yes") {
            self.entered.send(()).unwrap();
            self.release.lock().unwrap().recv().unwrap();
        }
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

/// README: "no lock is held during the call". While one entry's miss is inside the inner keyring (held
/// there by the test), another caller's hit, encrypt miss and decrypt miss, all for other entries, finish.
#[test]
fn lookups_for_other_entries_proceed_while_a_miss_is_in_the_inner_keyring() {
    let (entered_tx, entered) = mpsc::sync_channel(1);
    let (release, release_rx) = mpsc::channel();
    let holding = Holding { inner: raw_keyring(), entered: entered_tx, release: Mutex::new(release_rx) };
    let keyring = CachingKeyring::new(holding, Arc::new(MaterialsCache::new(8)), limits()).unwrap();
    let warm = EncryptOptions::new().context("tenant", "warm");
    let warm_message = encrypt(&keyring, &warm, b"warm").unwrap();
    let uncached = encrypt(&raw_keyring(), &EncryptOptions::new().context("tenant", "cold"), b"cold").unwrap();

    std::thread::scope(|scope| {
        let held = scope.spawn(|| encrypt(&keyring, &EncryptOptions::new().context("hold", "yes"), b"held"));
        entered.recv().unwrap();
        let (done, finished) = mpsc::channel();
        let (keyring, warm, uncached) = (&keyring, &warm, &uncached);
        let other = scope.spawn(move || {
            let hit = encrypt(keyring, warm, b"hit").unwrap();
            let miss = encrypt(keyring, &EncryptOptions::new().context("tenant", "other"), b"miss").unwrap();
            let decrypted = decrypt(keyring, &DecryptOptions::new(), uncached).unwrap();
            done.send((hit, miss, decrypted.plaintext.to_vec())).unwrap();
        });
        // A guard against a hang, not a measurement: the other caller needs milliseconds, and one that waited
        // for the held call would wait until the release below.
        let finished = finished.recv_timeout(Duration::from_secs(60));
        release.send(()).unwrap();
        let held = held.join().unwrap().unwrap();
        other.join().unwrap();
        let (hit, miss, decrypted) = finished.expect("a lookup for another entry waited for the call in flight");
        assert_eq!(edks(&hit), edks(&warm_message), "the warm entry was not served from the cache");
        assert_ne!(edks(&miss), edks(&warm_message));
        assert_eq!(decrypted, b"cold");
        assert_eq!(&decrypt(keyring, &DecryptOptions::new(), &held).unwrap().plaintext[..], b"held");
    });
}

// ------------------------------------------------------------------------------------ Python ESDK

const RAW_KEY: [u8; 32] = [0x5c; 32];

fn raw_keyring() -> RawAesKeyring {
    RawAesKeyring::new("cache-interop", "key-1", &RAW_KEY).unwrap()
}

fn python() -> Option<std::path::PathBuf> {
    common::python()
}

#[test]
fn python_decrypts_messages_made_with_cached_materials() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let keyring = CachingKeyring::new(raw_keyring(), Arc::new(MaterialsCache::new(4)), limits()).unwrap();
    let options = EncryptOptions::new().context("purpose", "interop");
    let messages: Vec<Vec<u8>> =
        (0..3).map(|i| encrypt(&keyring, &options, format!("cached {i}").as_bytes()).unwrap()).collect();
    assert_eq!(edks(&messages[0]), edks(&messages[2]), "the messages should share a cached data key");
    let hex = common::hex(&RAW_KEY);
    let output = |i: usize| dir.path().join(format!("{i}.out"));
    // One peer process decrypts the three messages, each a job of its own: one SDK import instead of three.
    let mut jobs = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let input = dir.path().join(format!("{i}.esdk"));
        std::fs::write(&input, message).unwrap();
        let (input, output) = (input.to_str().unwrap(), output(i));
        let args = [
            "decrypt",
            "--in",
            input,
            "--out",
            output.to_str().unwrap(),
            "--raw-key-hex",
            hex.as_str(),
            "--key-namespace",
            "cache-interop",
            "--key-name",
            "key-1",
        ];
        jobs.push(args.map(str::to_owned).to_vec());
    }
    for (i, result) in common::python_batch(&python, &jobs).into_iter().enumerate() {
        result.unwrap_or_else(|stderr| panic!("Python could not decrypt cached message {i}: {stderr}"));
        assert_eq!(std::fs::read(output(i)).unwrap(), format!("cached {i}").as_bytes());
    }
}

#[test]
fn we_decrypt_messages_of_the_python_caching_cmm() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("plaintext");
    std::fs::write(&input, b"from Python's cache").unwrap();
    let hex = common::hex(&RAW_KEY);
    // Python's default suite, 0x0578, signs: its caching CMM reuses the signing key with the data key.
    let args = [
        "cached-encrypt",
        "--in",
        input.to_str().unwrap(),
        "--out-dir",
        dir.path().to_str().unwrap(),
        "--count",
        "6",
        "--max-messages",
        "3",
        "--raw-key-hex",
        hex.as_str(),
        "--key-namespace",
        "cache-interop",
        "--key-name",
        "key-1",
    ];
    let (ok, stderr) = common::run_peer(&python, &args);
    assert!(ok, "the Python caching CMM failed: {stderr}");
    let messages: Vec<Vec<u8>> = (0..6).map(|i| std::fs::read(dir.path().join(format!("{i}.esdk"))).unwrap()).collect();
    assert_eq!(edks(&messages[0]), edks(&messages[2]));
    assert_ne!(edks(&messages[2]), edks(&messages[3]));

    // Our cache serves the second message of each Python data key: two inner calls for six messages.
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let keyring = CachingKeyring::new(
        common::CountingKeyring { inner: raw_keyring(), calls: calls.clone() },
        Arc::new(MaterialsCache::new(4)),
        limits(),
    )
    .unwrap();
    for message in &messages {
        let decrypted = decrypt(&keyring, &DecryptOptions::new(), message).unwrap();
        assert_eq!(&decrypted.plaintext[..], b"from Python's cache");
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// The byte limit counts on the declared length: a stream may not exceed it.
#[test]
fn a_stream_past_its_declared_length_fails() {
    let keyring = raw_keyring();
    let options = EncryptOptions::new().max_plaintext_length(Some(10));
    let mut encryptor = Encryptor::new(&keyring, &options, Vec::new()).unwrap();
    std::io::Write::write_all(&mut encryptor, b"0123456789").unwrap();
    assert!(std::io::Write::write_all(&mut encryptor, b"x").is_err());
    assert!(encryptor.finish().is_err(), "a message past its declared length must not be completed");
    let mut encryptor = Encryptor::new(&keyring, &options, Vec::new()).unwrap();
    assert!(encryptor.copy_from(&b"01234567890"[..]).is_err());
    assert!(encryptor.finish().is_err());
    assert!(encrypt(&keyring, &options, b"01234567890").is_err());
    let message = encrypt(&keyring, &options, b"0123456789").unwrap();
    assert_eq!(&decrypt(&keyring, &DecryptOptions::new(), &message).unwrap().plaintext[..], b"0123456789");
}

/// Lambda: the event key cache lives in the `ColdStart`, so a warm invocation's message under a data key
/// seen before costs no keyring call.
#[cfg(feature = "lambda")]
#[test]
fn lambda_events_share_the_cold_starts_key_cache() {
    use kms_envelope::lambda::ColdStart;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counting = common::CountingKeyring { inner: raw_keyring(), calls: calls.clone() };
    let cold_start = ColdStart::new(counting).event_key_cache(CacheLimits::new(Duration::from_secs(60)), 10).unwrap();
    let writer = CachingKeyring::new(raw_keyring(), Arc::new(MaterialsCache::new(4)), limits()).unwrap();
    let messages: Vec<Vec<u8>> =
        (0..5).map(|i| encrypt(&writer, &EncryptOptions::new(), format!("event {i}").as_bytes()).unwrap()).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for (i, message) in messages.into_iter().enumerate() {
        let decrypted = runtime.block_on(cold_start.decrypt_event(message)).unwrap();
        assert_eq!(&decrypted.plaintext[..], format!("event {i}").as_bytes());
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "one data key, one keyring call");
}
