use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::format::hierarchy_edk::OVERHEAD;
use crate::format::suite::AlgorithmSuite;
use crate::keyring::caching::ManualClock;
use crate::keyring::{Keyring, block_on};

const ID: &str = "bd3842ff-3076-4092-9918-4395730050b8";
const V1: &str = "e9ce18a3-edb5-4272-9f86-1cacb7997ff6";
const V2: &str = "0f7a8c2e-5d4b-4a39-8e61-2b9c7d0e1f34";
const TTL: Duration = Duration::from_secs(600);
const SUITE: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;

fn version(text: &str) -> BranchKeyVersion {
    text.parse().unwrap()
}

fn materials(id: &str, v: &str, key: u8) -> BranchKeyMaterials {
    BranchKeyMaterials::new(id, version(v), &[key; 32]).unwrap()
}

/// A static store that counts its calls and, while `gate` is closed, holds every call.
struct CountingStore {
    inner: StaticBranchKeyStore,
    active_calls: AtomicUsize,
    version_calls: AtomicUsize,
    gate: Mutex<bool>,
}

impl CountingStore {
    fn new(inner: StaticBranchKeyStore) -> Arc<Self> {
        Arc::new(Self {
            inner,
            active_calls: AtomicUsize::new(0),
            version_calls: AtomicUsize::new(0),
            gate: Mutex::new(true),
        })
    }

    /// Active version V1 of ID (key 7), and V2 (key 8) for decrypting only.
    fn standard() -> Arc<Self> {
        Self::new(
            StaticBranchKeyStore::new("test").with_active(materials(ID, V1, 7)).with_version(materials(ID, V2, 8)),
        )
    }

    /// (get_active, get_version) calls so far.
    fn calls(&self) -> (usize, usize) {
        (self.active_calls.load(Ordering::SeqCst), self.version_calls.load(Ordering::SeqCst))
    }

    fn wait_for_gate(&self) {
        while !*self.gate.lock().unwrap() {
            std::thread::yield_now();
        }
    }
}

impl BranchKeyStore for CountingStore {
    fn logical_name(&self) -> &str {
        self.inner.logical_name()
    }

    fn get_active<'a>(&'a self, branch_key_id: &'a str) -> BranchKeyFuture<'a> {
        self.active_calls.fetch_add(1, Ordering::SeqCst);
        self.wait_for_gate();
        self.inner.get_active(branch_key_id)
    }

    fn get_version<'a>(&'a self, branch_key_id: &'a str, version: &'a BranchKeyVersion) -> BranchKeyFuture<'a> {
        self.version_calls.fetch_add(1, Ordering::SeqCst);
        self.wait_for_gate();
        self.inner.get_version(branch_key_id, version)
    }
}

fn keyring(store: &Arc<CountingStore>) -> HierarchicalKeyring {
    HierarchicalKeyring::new(store.clone(), ID, TTL).unwrap()
}

fn context() -> EncryptionContext {
    [("tenant", "acme")].into_iter().collect()
}

fn encrypt_with(
    keyring: &HierarchicalKeyring,
    suite: AlgorithmSuite,
    context: EncryptionContext,
) -> EncryptionMaterials {
    block_on(keyring.on_encrypt(EncryptionMaterials::new(suite, context, BTreeSet::new()))).unwrap()
}

fn decrypt_with(
    keyring: &HierarchicalKeyring,
    suite: AlgorithmSuite,
    context: EncryptionContext,
    edks: &[EncryptedDataKey],
) -> Result<DecryptionMaterials> {
    block_on(keyring.on_decrypt(DecryptionMaterials::new(suite, context, BTreeSet::new()), edks))
}

fn reasons(err: Error) -> Vec<String> {
    match err {
        Error::NoDataKeyDecrypted { reasons, .. } => reasons,
        other => panic!("expected NoDataKeyDecrypted, got {other}"),
    }
}

#[test]
fn round_trip_every_suite_and_edk_layout() {
    let store = CountingStore::standard();
    let keyring = keyring(&store);
    for &suite in AlgorithmSuite::ALL {
        let enc = encrypt_with(&keyring, suite, context());
        let [edk] = enc.encrypted_data_keys() else { panic!("one EDK") };
        assert_eq!(edk.provider_id, "aws-kms-hierarchy");
        assert_eq!(edk.provider_info, ID.as_bytes());
        assert_eq!(edk.ciphertext.len(), 60 + suite.key_len(), "suite {suite}");
        assert_eq!(edk.ciphertext[28..44], *version(V1).as_bytes(), "the active version's UUID bytes");
        let dec = decrypt_with(&keyring, suite, context(), enc.encrypted_data_keys()).unwrap();
        assert_eq!(dec.data_key(), enc.data_key(), "suite {suite}");
    }
    assert_eq!(store.calls(), (1, 1), "one fetch of the active and one of the same version, then the cache");
}

#[test]
fn a_data_key_set_by_another_keyring_is_wrapped_not_replaced() {
    let keyring = keyring(&CountingStore::standard());
    let mut materials = EncryptionMaterials::new(SUITE, context(), BTreeSet::new());
    materials.set_data_key(DataKey::new(vec![9; 32])).unwrap();
    let enc = block_on(keyring.on_encrypt(materials)).unwrap();
    assert_eq!(enc.data_key().unwrap().as_bytes(), &[9; 32]);
    let dec = decrypt_with(&keyring, SUITE, context(), enc.encrypted_data_keys()).unwrap();
    assert_eq!(dec.data_key().unwrap().as_bytes(), &[9; 32]);
}

#[test]
fn two_encryptions_of_one_data_key_draw_fresh_salt_and_iv() {
    let keyring = keyring(&CountingStore::standard());
    let edk = || {
        let mut materials = EncryptionMaterials::new(SUITE, context(), BTreeSet::new());
        materials.set_data_key(DataKey::new(vec![9; 32])).unwrap();
        block_on(keyring.on_encrypt(materials)).unwrap().encrypted_data_keys()[0].ciphertext.clone()
    };
    let (a, b) = (edk(), edk());
    assert_ne!(a[..16], b[..16], "salt");
    assert_ne!(a[16..28], b[16..28], "IV");
    assert_ne!(a[44..], b[44..], "wrapped key and tag");
}

/// The tag binds the encryption context, the branch key id and the version: changing any of them in the
/// EDK or the message fails the unwrap, never yields a key.
#[test]
fn the_tag_binds_context_id_and_version() {
    // Two ids with the same key and version, so that only the AAD tells them apart.
    let store = CountingStore::new(
        StaticBranchKeyStore::new("test")
            .with_active(materials(ID, V1, 7))
            .with_version(materials(ID, V2, 7))
            .with_active(materials("other", V1, 7)),
    );
    let keyring = keyring(&store);
    let enc = encrypt_with(&keyring, SUITE, context());
    let edk = enc.encrypted_data_keys()[0].clone();

    let err = decrypt_with(&keyring, SUITE, EncryptionContext::new(), std::slice::from_ref(&edk)).unwrap_err();
    assert!(reasons(err)[0].contains("unwrapping with branch key"), "another context");

    let mut other_version = edk.clone();
    other_version.ciphertext[28..44].copy_from_slice(version(V2).as_bytes());
    let err = decrypt_with(&keyring, SUITE, context(), &[other_version]).unwrap_err();
    assert!(reasons(err)[0].contains("unwrapping with branch key"), "another version, same key");

    let other_keyring = HierarchicalKeyring::new(store.clone(), "other", TTL).unwrap();
    let mut other_id = edk.clone();
    other_id.provider_info = b"other".to_vec();
    let err = decrypt_with(&other_keyring, SUITE, context(), &[other_id]).unwrap_err();
    assert!(reasons(err)[0].contains("unwrapping with branch key"), "another id, same key");

    let mut flipped = edk;
    *flipped.ciphertext.last_mut().unwrap() ^= 1;
    let err = decrypt_with(&keyring, SUITE, context(), &[flipped]).unwrap_err();
    assert!(reasons(err)[0].contains("unwrapping with branch key"), "a flipped tag bit");
}

/// What can be refused from the EDK alone is refused before any store call: another provider id, provider
/// info that is not UTF-8 (skipped and recorded, where the MPL fails the whole call), another branch key
/// id, a ciphertext one byte short or long. Each gets its reason; no panic.
#[test]
fn malformed_or_foreign_edks_never_reach_the_store() {
    let store = CountingStore::standard();
    let keyring = keyring(&store);
    let enc = encrypt_with(&keyring, SUITE, context());
    let good = enc.encrypted_data_keys()[0].clone();
    let store = CountingStore::standard();
    let keyring = HierarchicalKeyring::new(store.clone(), ID, TTL).unwrap();

    let with = |change: &dyn Fn(&mut EncryptedDataKey)| {
        let mut edk = good.clone();
        change(&mut edk);
        edk
    };
    let hostile = [
        with(&|e| e.provider_id = "aws-kms".into()),
        with(&|e| e.provider_info = vec![0xff, 0xfe, b'a']),
        with(&|e| e.provider_info = b"bd3842ff-3076-4092-9918-4395730050b9".to_vec()),
        with(&|e| {
            e.ciphertext.pop();
        }),
        with(&|e| e.ciphertext.push(0)),
        with(&|e| e.ciphertext.truncate(OVERHEAD - 1)),
        with(&|e| e.ciphertext.clear()),
    ];
    let err = decrypt_with(&keyring, SUITE, context(), &hostile).unwrap_err();
    let why = reasons(err);
    assert_eq!(store.calls(), (0, 0), "no store call for {why:?}");
    assert_eq!(why.len(), hostile.len());
    assert!(why[0].contains("provider id \"aws-kms\""), "{}", why[0]);
    assert!(why[1].contains("not UTF-8"), "{}", why[1]);
    assert!(why[2].contains("not \"bd3842ff"), "{}", why[2]);
    for (reason, len) in why[3..].iter().zip([91, 93, 59, 0]) {
        assert!(reason.contains(&format!("ciphertext is {len} bytes, expected 92")), "{reason}");
    }

    // The same EDKs before a good one: each skipped, the good one decrypts.
    let mut all = hostile.to_vec();
    all.push(good);
    let dec = decrypt_with(&keyring, SUITE, context(), &all).unwrap();
    assert_eq!(dec.data_key(), enc.data_key());
    assert_eq!(store.calls(), (0, 1));
}

/// A well-formed EDK whose version (or branch key) the store lacks: the store's typed `NotFound`, one call.
#[test]
fn a_version_or_branch_key_not_in_the_store_is_a_typed_not_found() {
    let store = CountingStore::standard();
    let enc = encrypt_with(&keyring(&store), SUITE, context());
    let mut unknown_version = enc.encrypted_data_keys()[0].clone();
    let missing = version("00000000-0000-4000-8000-000000000000");
    unknown_version.ciphertext[28..44].copy_from_slice(missing.as_bytes());

    let store = CountingStore::standard();
    let keyring = keyring(&store);
    let err = decrypt_with(&keyring, SUITE, context(), std::slice::from_ref(&unknown_version)).unwrap_err();
    assert!(matches!(err, Error::NoDataKeyDecrypted { retry: Retry::Never, .. }));
    let why = reasons(err);
    assert!(why[0].contains("not found"), "{why:?}");
    assert_eq!(store.calls(), (0, 1));
    assert_eq!(
        block_on(store.get_version(ID, &missing)).unwrap_err(),
        BranchKeyStoreError::NotFound { branch_key_id: ID.into(), version: Some(missing) }
    );

    // A keyring for a branch key the store does not hold: refused on encrypt, and on decrypt after one call.
    let stranger = HierarchicalKeyring::new(store.clone(), "no-such-key", TTL).unwrap();
    let err = block_on(stranger.on_encrypt(EncryptionMaterials::new(SUITE, context(), BTreeSet::new()))).unwrap_err();
    assert!(
        matches!(&err, Error::Keyring(r) if r.as_str().contains("no-such-key") && r.as_str().contains("not found"))
    );
    assert_eq!(
        block_on(store.get_active("no-such-key")).unwrap_err(),
        BranchKeyStoreError::NotFound { branch_key_id: "no-such-key".into(), version: None }
    );
    let mut edk = enc.encrypted_data_keys()[0].clone();
    edk.provider_info = b"no-such-key".to_vec();
    let err = decrypt_with(&stranger, SUITE, context(), &[edk]).unwrap_err();
    assert!(reasons(err)[0].contains("not found"));
}

/// A store that answers with another branch key than asked is not believed.
#[test]
fn a_store_answering_with_another_key_is_refused() {
    struct Liar(StaticBranchKeyStore);
    impl BranchKeyStore for Liar {
        fn logical_name(&self) -> &str {
            "liar"
        }
        fn get_active<'a>(&'a self, _: &'a str) -> BranchKeyFuture<'a> {
            self.0.get_active("other")
        }
        fn get_version<'a>(&'a self, id: &'a str, _: &'a BranchKeyVersion) -> BranchKeyFuture<'a> {
            self.0.get_active(id)
        }
    }
    let inner = StaticBranchKeyStore::new("x").with_active(materials(ID, V1, 7)).with_active(materials("other", V1, 7));
    let liar = HierarchicalKeyring::new(Liar(inner), ID, TTL).unwrap();
    let err = block_on(liar.on_encrypt(EncryptionMaterials::new(SUITE, context(), BTreeSet::new()))).unwrap_err();
    assert!(err.to_string().contains("answered with another key"), "{err}");

    let enc = encrypt_with(&keyring(&CountingStore::standard()), SUITE, context());
    let mut edk = enc.encrypted_data_keys()[0].clone();
    edk.ciphertext[28..44].copy_from_slice(version(V2).as_bytes());
    let err = decrypt_with(&liar, SUITE, context(), &[edk]).unwrap_err();
    assert!(reasons(err)[0].contains("answered with another key"));
}

#[test]
fn branch_keys_are_cached_for_the_ttl_then_fetched_again() {
    let clock = Arc::new(ManualClock::new());
    let cache = Arc::new(BranchKeyCache::with_clock(10, clock.clone()));
    let store = CountingStore::standard();
    let keyring = keyring(&store).cache(cache.clone());
    let first = encrypt_with(&keyring, SUITE, context());
    encrypt_with(&keyring, SUITE, context());
    decrypt_with(&keyring, SUITE, context(), first.encrypted_data_keys()).unwrap();
    decrypt_with(&keyring, SUITE, context(), first.encrypted_data_keys()).unwrap();
    assert_eq!(store.calls(), (1, 1));
    assert_eq!(cache.len(), 2, "the active entry and the version entry");

    clock.advance(TTL - Duration::from_nanos(1));
    encrypt_with(&keyring, SUITE, context());
    assert_eq!(store.calls(), (1, 1));
    clock.advance(Duration::from_nanos(1));
    encrypt_with(&keyring, SUITE, context());
    decrypt_with(&keyring, SUITE, context(), first.encrypted_data_keys()).unwrap();
    assert_eq!(store.calls(), (2, 2), "expired at the TTL");

    cache.clear();
    assert!(cache.is_empty());
    encrypt_with(&keyring, SUITE, context());
    assert_eq!(store.calls(), (3, 2));
}

/// One cache, several keyrings: partitions keep them apart unless they share a partition id, and a keyring
/// uses a shared entry only while it is younger than its own TTL.
#[test]
fn a_shared_cache_respects_partitions_and_each_readers_ttl() {
    let clock = Arc::new(ManualClock::new());
    let cache = Arc::new(BranchKeyCache::with_clock(10, clock.clone()));
    let store = CountingStore::standard();
    let a = keyring(&store).cache(cache.clone());
    let b = keyring(&store).cache(cache.clone());
    encrypt_with(&a, SUITE, context());
    encrypt_with(&b, SUITE, context());
    assert_eq!(store.calls(), (2, 0), "random partitions share nothing");

    let short = Duration::from_secs(10);
    let p = keyring(&store).cache(cache.clone()).partition_id("p");
    let q = HierarchicalKeyring::new(store.clone(), ID, short).unwrap().cache(cache.clone()).partition_id("p");
    encrypt_with(&p, SUITE, context());
    encrypt_with(&q, SUITE, context());
    assert_eq!(store.calls(), (3, 0), "one partition, one fetch");
    clock.advance(short);
    encrypt_with(&p, SUITE, context());
    assert_eq!(store.calls(), (3, 0), "young enough for p's TTL");
    encrypt_with(&q, SUITE, context());
    assert_eq!(store.calls(), (4, 0), "too old for q's TTL");
}

#[test]
fn concurrent_misses_make_one_store_call() {
    let store = CountingStore::standard();
    let cache = Arc::new(BranchKeyCache::new(10));
    let keyring = keyring(&store).cache(cache.clone());
    *store.gate.lock().unwrap() = false;
    let keys = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| encrypt_with(&keyring, SUITE, context()).encrypted_data_keys()[0].clone()))
            .collect();
        while store.calls().0 + cache.waiters() < 16 {
            std::thread::yield_now();
        }
        *store.gate.lock().unwrap() = true;
        threads.into_iter().map(|t| t.join().unwrap()).collect::<Vec<_>>()
    });
    assert_eq!(store.calls(), (1, 0));
    assert!(keys.iter().all(|edk| edk.ciphertext[28..44] == *version(V1).as_bytes()));
}

#[test]
fn a_supplier_picks_the_branch_key_from_the_context() {
    let store = CountingStore::new(
        StaticBranchKeyStore::new("tenants")
            .with_active(materials("key-a", V1, 1))
            .with_active(materials("key-b", V2, 2)),
    );
    let supplier = |context: &EncryptionContext| match context.get("tenant") {
        Some(tenant) => Ok(format!("key-{tenant}")),
        None => Err(Error::Keyring("no tenant".into())),
    };
    let keyring = HierarchicalKeyring::with_supplier(store.clone(), supplier, TTL).unwrap();
    let tenant = |t: &str| -> EncryptionContext { [("tenant", t)].into_iter().collect() };
    let a = encrypt_with(&keyring, SUITE, tenant("a"));
    assert_eq!(a.encrypted_data_keys()[0].provider_info, b"key-a");
    assert_eq!(encrypt_with(&keyring, SUITE, tenant("b")).encrypted_data_keys()[0].provider_info, b"key-b");
    let dec = decrypt_with(&keyring, SUITE, tenant("a"), a.encrypted_data_keys()).unwrap();
    assert_eq!(dec.data_key(), a.data_key());

    // A message claiming tenant b with tenant a's EDK: the supplier names key-b, the EDK key-a, no store call.
    let calls = store.calls();
    let err = decrypt_with(&keyring, SUITE, tenant("b"), a.encrypted_data_keys()).unwrap_err();
    assert!(reasons(err)[0].contains("EDK for branch key \"key-a\", not \"key-b\""));
    assert_eq!(store.calls(), calls);

    let err = block_on(keyring.on_encrypt(EncryptionMaterials::new(SUITE, context_without_tenant(), BTreeSet::new())));
    assert!(err.unwrap_err().to_string().contains("no tenant"));
    let empty = HierarchicalKeyring::with_supplier(store, |_: &EncryptionContext| Ok(String::new()), TTL).unwrap();
    let err = block_on(empty.on_encrypt(EncryptionMaterials::new(SUITE, tenant("a"), BTreeSet::new())));
    assert!(err.unwrap_err().to_string().contains("empty id"));
}

fn context_without_tenant() -> EncryptionContext {
    [("purpose", "x")].into_iter().collect()
}

#[test]
fn configuration_is_checked_and_nothing_secret_is_shown() {
    let store = CountingStore::standard();
    assert!(HierarchicalKeyring::new(store.clone(), ID, Duration::ZERO).is_err());
    assert!(HierarchicalKeyring::new(store.clone(), "", TTL).is_err());
    assert!(BranchKeyMaterials::new(ID, version(V1), &[7; 31]).is_err());
    assert!(BranchKeyMaterials::new("", version(V1), &[7; 32]).is_err());

    let shown = format!("{:?} {:?}", materials(ID, V1, 0xab), keyring(&store));
    assert!(shown.contains(ID) && shown.contains(V1), "{shown}");
    assert!(!shown.contains("171") && !shown.to_lowercase().contains("abab"), "{shown}");

    // Materials that already hold a data key are refused on decrypt.
    let mut dec = DecryptionMaterials::new(SUITE, context(), BTreeSet::new());
    dec.set_data_key(DataKey::new(vec![0; 32])).unwrap();
    assert!(matches!(block_on(keyring(&store).on_decrypt(dec, &[])), Err(Error::Keyring(_))));
}

/// Cache ids hash partition id, store name and branch key id joined by NUL bytes, without their lengths, so
/// two keyrings sharing a cache can meet on one id: partition `p\0s` with id `k`, and partition `p` with id
/// `s\0k` (which a supplier may take from a message's context). Each must still get its own branch key:
/// before the hit was checked, the second keyring wrapped its data keys under the first one's key, and
/// named that key (`k`) in its EDKs.
#[test]
fn a_cache_entry_for_another_branch_key_is_never_used() {
    assert_eq!(cache::active_id(b"p\0s", "s", "k"), cache::active_id(b"p", "s", "s\0k"), "the ids meet");
    assert_eq!(
        cache::version_id(b"p\0s", "s", "k", &version(V1)),
        cache::version_id(b"p", "s", "s\0k", &version(V1)),
        "the ids meet"
    );
    let store = CountingStore::new(
        StaticBranchKeyStore::new("s").with_active(materials("k", V1, 1)).with_active(materials("s\0k", V1, 2)),
    );
    let cache = Arc::new(BranchKeyCache::new(10));
    let first = HierarchicalKeyring::new(store.clone(), "k", TTL).unwrap().cache(cache.clone()).partition_id("p\0s");
    let second = HierarchicalKeyring::new(store.clone(), "s\0k", TTL).unwrap().cache(cache.clone()).partition_id("p");

    let first_edk = encrypt_with(&first, SUITE, context()).encrypted_data_keys()[0].clone();
    let materials = encrypt_with(&second, SUITE, context());
    let edk = &materials.encrypted_data_keys()[0];
    assert_eq!(edk.provider_info, b"s\0k", "the second keyring names its own branch key");
    assert_eq!(store.calls(), (2, 0), "the entry the first keyring left was fetched again, not used");
    let decrypted = decrypt_with(&second, SUITE, context(), std::slice::from_ref(edk)).unwrap();
    assert_eq!(decrypted.data_key(), materials.data_key());

    // Decrypting, the same: each keyring unwraps only with its own branch key's version.
    let fresh = Arc::new(BranchKeyCache::new(10));
    let first = HierarchicalKeyring::new(store.clone(), "k", TTL).unwrap().cache(fresh.clone()).partition_id("p\0s");
    let second = HierarchicalKeyring::new(store.clone(), "s\0k", TTL).unwrap().cache(fresh).partition_id("p");
    assert!(decrypt_with(&first, SUITE, context(), &[first_edk]).is_ok());
    let decrypted = decrypt_with(&second, SUITE, context(), std::slice::from_ref(edk)).unwrap();
    assert_eq!(decrypted.data_key(), materials.data_key());
}

#[test]
fn store_errors_quote_ids_and_item_attributes_clipped_and_escaped() {
    use crate::escape::QUOTED_MAX;
    // A branch key id from an encryption context, or attributes of a store item, may be 64 KiB; an error
    // quotes at most QUOTED_MAX bytes of each, escaped.
    let long = format!("\x1b[2J{}", "x".repeat(64 * 1024));
    let errors = [
        BranchKeyStoreError::NotFound { branch_key_id: long.clone(), version: None },
        BranchKeyStoreError::WrongBranchKey { branch_key_id: long.clone(), version: None },
        BranchKeyStoreError::Unavailable(Reason::from(long.clone())),
        BranchKeyStoreError::InvalidItem { branch_key_id: long.clone(), reason: long.clone() },
        BranchKeyStoreError::UnsupportedHierarchyVersion {
            branch_key_id: long.clone(),
            hierarchy_version: long.clone(),
        },
        BranchKeyStoreError::KmsKeyMismatch {
            branch_key_id: long.clone(),
            item_key_arn: long.clone(),
            configured_key_arn: long.clone(),
        },
        BranchKeyStoreError::ItemContextMismatch { branch_key_id: long.clone(), detail: long.clone() },
        BranchKeyStoreError::AlreadyExists { branch_key_id: long.clone() },
        BranchKeyStoreError::VersionRace { branch_key_id: long.clone() },
        BranchKeyStoreError::InvalidRequest(long.clone()),
    ];
    for err in errors {
        let shown = err.to_string();
        assert!(shown.len() < 4 * (QUOTED_MAX + 200), "{} bytes: {err:?}", shown.len());
        assert!(shown.contains("\\u{1b}[2J") && !shown.contains('\x1b'), "{shown}");
        assert!(shown.contains(&format!("({} more bytes)", long.len() - QUOTED_MAX)), "{shown}");
    }
}

#[test]
fn edks_naming_a_version_the_store_just_refused_cost_no_further_store_call() {
    let store = CountingStore::standard();
    let enc = encrypt_with(&keyring(&store), SUITE, context());
    let mut unknown = enc.encrypted_data_keys()[0].clone();
    unknown.ciphertext[28..44].copy_from_slice(version("00000000-0000-4000-8000-000000000000").as_bytes());
    // A message may carry thousands of EDKs; each naming the same missing version would otherwise be one
    // GetItem (and for a DynamoDB store, a round trip) apiece.
    let edks = vec![unknown; 50];

    let store = CountingStore::standard();
    let why = reasons(decrypt_with(&keyring(&store), SUITE, context(), &edks).unwrap_err());
    assert_eq!(store.calls(), (0, 1));
    assert_eq!(why.len(), 50, "{why:?}");
    assert!(why[0].contains("not found") && why[49].contains("not found"), "{why:?}");

    // A good EDK after them still decrypts.
    let mut with_good = edks;
    with_good.push(enc.encrypted_data_keys()[0].clone());
    let store = CountingStore::standard();
    let decrypted = decrypt_with(&keyring(&store), SUITE, context(), &with_good).unwrap();
    assert_eq!(decrypted.data_key().map(DataKey::as_bytes), enc.data_key().map(DataKey::as_bytes));
    assert_eq!(store.calls(), (0, 2));
}
