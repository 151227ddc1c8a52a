//! Cached data keys are wiped when they leave the cache: a scanning allocator looks into every block freed
//! while entries are evicted (capacity), expire, are exhausted, cleared, or dropped with the cache.

#[path = "common/scan_alloc.rs"]
mod scan_alloc;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kms_envelope::keyring::caching::ManualClock;
use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture, block_on};
use kms_envelope::{
    AlgorithmSuite, CacheLimits, CachingKeyring, DataKey, EncryptedDataKey, EncryptionContext, Keyring, MaterialsCache,
};
use scan_alloc::{Scanning, freed_matching};

/// 32 bytes that occur nowhere but in the data keys the test keyring makes.
const MARKER: [u8; 32] = *b"\xa5c4ch3d-d4t4-k3y-M4RK3R-01234567";

#[global_allocator]
static ALLOCATOR: Scanning = Scanning::new(holds_marker);

fn holds_marker(block: &[u8]) -> bool {
    block.windows(MARKER.len()).any(|w| w == MARKER)
}

/// Generates the marker as data key, with a placeholder EDK.
struct MarkerKeyring;

impl Keyring for MarkerKeyring {
    fn on_encrypt<'a>(&'a self, mut materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        Box::pin(async move {
            materials.set_data_key(DataKey::new(MARKER.to_vec()))?;
            materials.add_encrypted_data_key(EncryptedDataKey {
                provider_id: "marker".into(),
                provider_info: b"info".to_vec(),
                ciphertext: b"wrapped".to_vec(),
            });
            Ok(materials)
        })
    }

    fn on_decrypt<'a>(
        &'a self,
        mut materials: DecryptionMaterials,
        _: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        Box::pin(async move {
            materials.set_data_key(DataKey::new(MARKER.to_vec()))?;
            Ok(materials)
        })
    }
}

fn encrypt(keyring: &dyn Keyring, tenant: &str) {
    let mut context = EncryptionContext::new();
    context.insert("tenant", tenant);
    let suite = AlgorithmSuite::from_id(0x0478).unwrap();
    let materials = EncryptionMaterials::new(suite, context, BTreeSet::new()).with_max_plaintext_length(Some(1));
    drop(block_on(keyring.on_encrypt(materials)).unwrap());
}

fn decrypt(keyring: &dyn Keyring, edk: &[u8]) {
    let suite = AlgorithmSuite::from_id(0x0478).unwrap();
    let materials = DecryptionMaterials::new(suite, EncryptionContext::new(), BTreeSet::new());
    let edks = [EncryptedDataKey { provider_id: "marker".into(), provider_info: edk.to_vec(), ciphertext: vec![1] }];
    drop(block_on(keyring.on_decrypt(materials, &edks)).unwrap());
}

#[test]
fn no_freed_block_holds_a_cached_data_key() {
    let hits = freed_matching(|| {
        let clock = Arc::new(ManualClock::new());
        let cache = Arc::new(MaterialsCache::with_clock(2, clock.clone()));
        let limits = CacheLimits::new(Duration::from_secs(60)).max_messages(2);
        let keyring = CachingKeyring::new(MarkerKeyring, cache.clone(), limits).unwrap();
        // Capacity: the third entry evicts the first.
        encrypt(&keyring, "a");
        encrypt(&keyring, "b");
        decrypt(&keyring, b"c");
        // Exhaustion: the second use of "b" is its last; the third replaces it.
        encrypt(&keyring, "b");
        encrypt(&keyring, "b");
        // Expiry.
        clock.advance(Duration::from_secs(60));
        decrypt(&keyring, b"d");
        // Clear, then the cache's drop with an entry in it.
        cache.clear();
        encrypt(&keyring, "e");
        assert_eq!(cache.len(), 1);
        drop(keyring);
        drop(cache);
    });

    // The scan is live: a key copied into a plain `Vec` and freed is seen.
    let control = freed_matching(|| drop(std::hint::black_box(MARKER.to_vec())));
    assert!(control > 0, "the allocator saw no marker in a freed Vec: the scan is broken");
    assert_eq!(hits, 0, "freed blocks still held a cached data key");
}
