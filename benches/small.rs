//! Small messages, for scripts/cache-bench.sh: 1 KiB encrypt+decrypt round trips per second through the
//! one-shot helpers into reused buffers, beside the fixed-cost floor of one message (two HKDF expansions
//! and one AES-GCM seal and open of 1 KiB, measured here), and, with `BENCH_KMS_ENDPOINT` set, a KMS keyring
//! (moto) with and without a data-key cache, counting keyring calls.
//!
//! Prints `key value` lines the script reads. Settings from the environment: BENCH_SECONDS (per
//! measurement, default 3), BENCH_SIZE (default 1024), BENCH_KMS_MESSAGES (default 1000).
//!
//! With `BENCH_HIERARCHY_MESSAGES` (and `BENCH_KMS_ENDPOINT`) set, only this (`bench hierarchy`, issue
//! #29): that many encrypts with the Hierarchical keyring (DynamoDB branch key store in moto, cache TTL
//! 600 s) and with the plain KMS keyring, each with its store or keyring calls counted.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kms_envelope::crypto::kdf::V1Info;
use kms_envelope::crypto::{AeadKey, DataKey, MessageKeys};
use kms_envelope::format::header::MessageId;
use kms_envelope::{
    AlgorithmSuite, DecryptOptions, EncryptOptions, Keyring, RawAesKeyring, decrypt_into, encrypt_into,
};
use zeroize::Zeroizing;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `op` for about `seconds` and returns operations per second.
fn rate(seconds: f64, mut op: impl FnMut()) -> f64 {
    for _ in 0..100 {
        op();
    }
    let (start, mut count) = (Instant::now(), 0u64);
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        for _ in 0..100 {
            op();
        }
        count += 100;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn round_trips(keyring: &dyn Keyring, plaintext: &[u8], seconds: f64) -> f64 {
    let encrypt_options = EncryptOptions::new().threads(1);
    let decrypt_options = DecryptOptions::new().threads(1);
    let mut message = Vec::new();
    let mut out = Zeroizing::new(Vec::new());
    rate(seconds, || {
        encrypt_into(keyring, &encrypt_options, plaintext, &mut message).unwrap();
        decrypt_into(keyring, &decrypt_options, &message, &mut out).unwrap();
        assert_eq!(out.len(), plaintext.len());
    })
}

/// One message's unavoidable work: derive the content key and commitment from a data key (two HKDF
/// expansions) and seal and open the body.
fn floor(size: usize, seconds: f64) -> f64 {
    let suite = AlgorithmSuite::from_id(0x0478).unwrap();
    let data_key = DataKey::random(32);
    let message_id = MessageId::random(suite.message_format());
    let mut buf = vec![0x5au8; size];
    rate(seconds, || {
        let keys = MessageKeys::derive(suite, &data_key, &message_id, V1Info::Standard).unwrap();
        let key: &AeadKey = &keys.content;
        let tag = key.seal_in_place(&[1; 12], b"aad", &mut buf);
        key.open_in_place(&[1; 12], b"aad", &mut buf, &tag).unwrap();
        black_box(&buf);
    })
}

fn main() {
    let seconds = env("BENCH_SECONDS", 3) as f64;
    let size = env("BENCH_SIZE", 1024);
    let plaintext: Vec<u8> = (0..size).map(|i| (i * 131 % 251) as u8).collect();
    #[cfg(feature = "hierarchy-ddb")]
    if let (Ok(endpoint), Ok(messages)) =
        (std::env::var("BENCH_KMS_ENDPOINT"), std::env::var("BENCH_HIERARCHY_MESSAGES"))
    {
        hierarchy::run(&endpoint, &plaintext, messages.parse().expect("BENCH_HIERARCHY_MESSAGES: a number"));
        return;
    }
    let keyring = RawAesKeyring::new("bench", "key", &[7u8; 32]).unwrap();
    println!("raw_aes_round_trips_per_s {:.0}", round_trips(&keyring, &plaintext, seconds));
    println!("floor_per_s {:.0}", floor(size, seconds));
    #[cfg(feature = "kms")]
    if let Ok(endpoint) = std::env::var("BENCH_KMS_ENDPOINT") {
        kms::run(&endpoint, &plaintext, env("BENCH_KMS_MESSAGES", 1000));
    }
}

#[cfg(feature = "hierarchy-ddb")]
mod hierarchy {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use kms_envelope::keyring::hierarchy::{
        BranchKeyFuture, BranchKeyStore, BranchKeyVersion, DynamoDbBranchKeyStore, HierarchicalKeyring,
    };
    use kms_envelope::{EncryptOptions, Keyring, KmsClients, encrypt};

    use super::kms::{Counted, config};

    /// Counts the store's fetches: each is one DynamoDB `GetItem` and one KMS `Decrypt`.
    struct CountedStore {
        inner: DynamoDbBranchKeyStore,
        calls: AtomicUsize,
    }

    impl BranchKeyStore for CountedStore {
        fn logical_name(&self) -> &str {
            self.inner.logical_name()
        }

        fn get_active<'a>(&'a self, branch_key_id: &'a str) -> BranchKeyFuture<'a> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.inner.get_active(branch_key_id)
        }

        fn get_version<'a>(&'a self, branch_key_id: &'a str, version: &'a BranchKeyVersion) -> BranchKeyFuture<'a> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.inner.get_version(branch_key_id, version)
        }
    }

    fn encrypts(keyring: &dyn Keyring, plaintext: &[u8], messages: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..messages {
            std::hint::black_box(encrypt(keyring, &EncryptOptions::new(), plaintext).unwrap());
        }
        messages as f64 / start.elapsed().as_secs_f64()
    }

    pub fn run(endpoint: &str, plaintext: &[u8], messages: usize) {
        let (config, key) = config(endpoint);
        let clients = KmsClients::new(&config);
        let table = format!("bench-{}", key.rsplit('/').next().unwrap());
        let store = DynamoDbBranchKeyStore::from_clients(&clients, &table, &key, "bench").unwrap();
        store.create_table_blocking().unwrap();
        let id = store.create_key_blocking(None, &BTreeMap::new()).unwrap();
        let counted = Arc::new(CountedStore { inner: store, calls: AtomicUsize::new(0) });
        let keyring = HierarchicalKeyring::new(counted.clone(), &id, Duration::from_secs(600)).unwrap();
        let rate = encrypts(&keyring, plaintext, messages);
        println!("hierarchy_encrypts_per_s {rate:.1}");
        println!("hierarchy_store_calls {}", counted.calls.load(Ordering::Relaxed));
        let plain = Counted { inner: clients.keyring(&key).unwrap(), calls: AtomicUsize::new(0) };
        let rate = encrypts(&plain, plaintext, messages);
        println!("kms_encrypts_per_s {rate:.1}");
        println!("kms_keyring_calls {}", plain.calls.load(Ordering::Relaxed));
        println!("messages {messages}");
    }
}

#[cfg(feature = "kms")]
mod kms {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_kms::config::{Credentials, SharedCredentialsProvider};
    use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture};
    use kms_envelope::{
        CacheLimits, CachingKeyring, DecryptOptions, EncryptOptions, EncryptedDataKey, Keyring, KmsClients,
        MaterialsCache, decrypt, encrypt,
    };

    /// Counts the calls that reach the KMS keyring (each is one KMS request).
    pub(crate) struct Counted<K> {
        pub inner: K,
        pub calls: AtomicUsize,
    }

    impl<K: Keyring> Keyring for Counted<K> {
        fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.inner.on_encrypt(materials)
        }

        fn on_decrypt<'a>(
            &'a self,
            materials: DecryptionMaterials,
            edks: &'a [EncryptedDataKey],
        ) -> KeyringFuture<'a, DecryptionMaterials> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.inner.on_decrypt(materials, edks)
        }
    }

    fn round_trips(keyring: &dyn Keyring, plaintext: &[u8], messages: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..messages {
            let message = encrypt(keyring, &EncryptOptions::new(), plaintext).unwrap();
            decrypt(keyring, &DecryptOptions::new(), &message).unwrap();
        }
        messages as f64 / start.elapsed().as_secs_f64()
    }

    /// moto's configuration, and a fresh key in it.
    pub(crate) fn config(endpoint: &str) -> (SdkConfig, String) {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "bench",
            )))
            .build();
        let admin = aws_sdk_kms::Client::new(&config);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let key =
            runtime.block_on(admin.create_key().send()).unwrap().key_metadata().unwrap().arn().unwrap().to_owned();
        drop(runtime);
        (config, key)
    }

    pub fn run(endpoint: &str, plaintext: &[u8], messages: usize) {
        let (config, key) = config(endpoint);
        let clients = KmsClients::new(&config);

        let plain = Counted { inner: clients.keyring(&key).unwrap(), calls: AtomicUsize::new(0) };
        // Without a cache each round trip costs two calls; a tenth of the messages is enough for the rate.
        let uncached_messages = (messages / 10).max(10);
        let uncached = round_trips(&plain, plaintext, uncached_messages);
        println!("kms_uncached_round_trips_per_s {uncached:.1}");
        println!(
            "kms_uncached_calls_per_1000 {:.0}",
            plain.calls.load(Ordering::Relaxed) as f64 * 1000.0 / uncached_messages as f64
        );

        let counted = Arc::new(Counted { inner: clients.keyring(&key).unwrap(), calls: AtomicUsize::new(0) });
        let limits = CacheLimits::new(Duration::from_secs(300)).max_messages(100);
        let cached = CachingKeyring::new(counted.clone(), Arc::new(MaterialsCache::new(100)), limits).unwrap();
        let rate = round_trips(&cached, plaintext, messages);
        println!("kms_cached_round_trips_per_s {rate:.1}");
        println!(
            "kms_cached_calls_per_1000 {:.0}",
            counted.calls.load(Ordering::Relaxed) as f64 * 1000.0 / messages as f64
        );
    }
}
