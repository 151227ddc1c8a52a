use std::collections::BTreeSet;
use std::sync::atomic::AtomicUsize;

use super::*;
use crate::keyring::{RawAesKeyring, block_on};

/// A raw AES keyring that counts its calls and, while `gate` is closed, holds every call.
struct Counting {
    inner: RawAesKeyring,
    encrypts: AtomicUsize,
    decrypts: AtomicUsize,
    gate: Mutex<bool>,
}

impl Counting {
    fn new() -> Self {
        Self {
            inner: RawAesKeyring::new("cache-test", "key", &[7; 32]).unwrap(),
            encrypts: AtomicUsize::new(0),
            decrypts: AtomicUsize::new(0),
            gate: Mutex::new(true),
        }
    }

    fn calls(&self) -> (usize, usize) {
        (self.encrypts.load(Ordering::SeqCst), self.decrypts.load(Ordering::SeqCst))
    }

    fn wait_for_gate(&self) {
        while !*self.gate.lock().unwrap() {
            std::thread::yield_now();
        }
    }
}

impl Keyring for Counting {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        self.encrypts.fetch_add(1, Ordering::SeqCst);
        self.wait_for_gate();
        self.inner.on_encrypt(materials)
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        self.decrypts.fetch_add(1, Ordering::SeqCst);
        self.wait_for_gate();
        self.inner.on_decrypt(materials, edks)
    }
}

const SUITE: u16 = 0x0478;

fn suite(id: u16) -> AlgorithmSuite {
    AlgorithmSuite::from_id(id).unwrap()
}

fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
    let mut context = EncryptionContext::new();
    for (k, v) in pairs {
        context.insert(*k, *v);
    }
    context
}

fn setup(limits: CacheLimits) -> (Arc<ManualClock>, Arc<MaterialsCache>, CachingKeyring<Arc<Counting>>, Arc<Counting>) {
    let clock = Arc::new(ManualClock::new());
    let cache = Arc::new(MaterialsCache::with_clock(16, clock.clone()));
    let inner = Arc::new(Counting::new());
    let keyring = CachingKeyring::new(inner.clone(), cache.clone(), limits).unwrap();
    (clock, cache, keyring, inner)
}

/// Encrypt materials for one message of `length` bytes; returns the data key and EDKs it got.
fn encrypt_with(
    keyring: &dyn Keyring,
    suite_id: u16,
    ec: &EncryptionContext,
    length: Option<u64>,
) -> (DataKey, Vec<EncryptedDataKey>) {
    let materials =
        EncryptionMaterials::new(suite(suite_id), ec.clone(), BTreeSet::new()).with_max_plaintext_length(length);
    let materials = block_on(keyring.on_encrypt(materials)).unwrap();
    (materials.data_key().unwrap().clone(), materials.encrypted_data_keys().to_vec())
}

fn encrypt(keyring: &dyn Keyring, length: u64) -> DataKey {
    encrypt_with(keyring, SUITE, &EncryptionContext::new(), Some(length)).0
}

fn decrypt_with(keyring: &dyn Keyring, ec: &EncryptionContext, edks: &[EncryptedDataKey]) -> DataKey {
    let materials = DecryptionMaterials::new(suite(SUITE), ec.clone(), BTreeSet::new());
    block_on(keyring.on_decrypt(materials, edks)).unwrap().data_key().unwrap().clone()
}

#[test]
fn the_message_past_the_limit_gets_a_fresh_key() {
    let (_, _, keyring, inner) = setup(CacheLimits::new(Duration::from_secs(60)).max_messages(3));
    let keys: Vec<DataKey> = (0..7).map(|_| encrypt(&keyring, 10)).collect();
    assert_eq!(inner.calls(), (3, 0));
    assert!(keys[0] == keys[1] && keys[1] == keys[2]);
    assert!(keys[3] != keys[2], "the fourth message must not use the key of the first three");
    assert!(keys[3] == keys[4] && keys[4] == keys[5]);
    assert!(keys[6] != keys[5]);
}

#[test]
fn the_byte_past_the_limit_gets_a_fresh_key() {
    let (_, _, keyring, inner) = setup(CacheLimits::new(Duration::from_secs(60)).max_bytes(100));
    let first = encrypt(&keyring, 40);
    assert!(encrypt(&keyring, 60) == first, "exactly 100 bytes fit one key");
    let zero = encrypt(&keyring, 0);
    assert!(zero == first, "an empty message adds no bytes");
    let next = encrypt(&keyring, 1);
    assert!(next != first, "byte 101 must get a fresh key");
    assert_eq!(inner.calls(), (2, 0));
    // A message longer than the limit is never cached, nor does it disturb the entry.
    let big = encrypt(&keyring, 101);
    assert!(big != next);
    assert!(encrypt(&keyring, 1) == next);
    assert_eq!(inner.calls(), (3, 0));
}

#[test]
fn an_entry_as_old_as_max_age_is_never_used() {
    let max_age = Duration::from_secs(10);
    let (clock, cache, keyring, inner) = setup(CacheLimits::new(max_age));
    let first = encrypt(&keyring, 1);
    let edks = encrypt_with(&keyring, SUITE, &EncryptionContext::new(), Some(1)).1;
    let decrypted = decrypt_with(&keyring, &EncryptionContext::new(), &edks);
    assert!(decrypted == first);
    clock.advance(max_age - Duration::from_nanos(1));
    assert!(encrypt(&keyring, 1) == first);
    assert!(decrypt_with(&keyring, &EncryptionContext::new(), &edks) == first);
    assert_eq!(inner.calls(), (1, 1));
    clock.advance(Duration::from_nanos(1));
    let fresh = encrypt(&keyring, 1);
    assert!(fresh != first, "an entry max_age old was used");
    decrypt_with(&keyring, &EncryptionContext::new(), &edks);
    assert_eq!(inner.calls(), (2, 2));
    // Expired entries among the least recently used go at the next lookup.
    clock.advance(max_age);
    assert_eq!(cache.len(), 2);
    encrypt(&keyring, 1);
    assert_eq!(cache.len(), 1);
}

#[test]
fn partitions_are_isolated() {
    let (_, cache, first, inner) = setup(CacheLimits::new(Duration::from_secs(60)));
    let second = CachingKeyring::new(inner.clone(), cache.clone(), first.limits).unwrap();
    let key = encrypt(&first, 1);
    assert!(encrypt(&second, 1) != key, "two keyrings with random partitions shared an entry");
    assert_eq!(inner.calls(), (2, 0));

    let named =
        |name: &str| CachingKeyring::new(inner.clone(), cache.clone(), first.limits).unwrap().partition_id(name);
    let (a, b, c) = (named("shared"), named("shared"), named("other"));
    let key = encrypt(&a, 1);
    assert!(encrypt(&b, 1) == key, "the same partition id shares entries");
    assert!(encrypt(&c, 1) != key);
    assert_eq!(inner.calls(), (4, 0));
}

#[test]
fn different_contexts_and_suites_never_share() {
    let (_, _, keyring, inner) = setup(CacheLimits::new(Duration::from_secs(60)));
    let a = context(&[("tenant", "a")]);
    let b = context(&[("tenant", "b")]);
    let ka = encrypt_with(&keyring, SUITE, &a, Some(1)).0;
    let kb = encrypt_with(&keyring, SUITE, &b, Some(1)).0;
    let kv1 = encrypt_with(&keyring, 0x0178, &a, Some(1)).0;
    assert!(ka != kb && ka != kv1);
    assert!(encrypt_with(&keyring, SUITE, &a, Some(1)).0 == ka);
    assert!(encrypt_with(&keyring, SUITE, &b, Some(1)).0 == kb);
    assert_eq!(inner.calls(), (3, 0));
}

#[test]
fn what_must_not_be_cached_goes_to_the_inner_keyring() {
    let (_, cache, keyring, inner) = setup(CacheLimits::new(Duration::from_secs(60)));
    let ec = EncryptionContext::new();
    for _ in 0..2 {
        encrypt_with(&keyring, 0x0014, &ec, Some(1)); // no key derivation
        encrypt_with(&keyring, 0x0578, &ec, Some(1)); // signing
        encrypt_with(&keyring, SUITE, &ec, None); // length unknown
    }
    assert_eq!(inner.calls(), (6, 0));
    let (_, edks) = encrypt_with(&keyring, 0x0014, &ec, Some(1));
    let materials = DecryptionMaterials::new(suite(0x0014), ec.clone(), BTreeSet::new());
    block_on(keyring.on_decrypt(materials, &edks)).unwrap();
    let materials = DecryptionMaterials::new(suite(0x0014), ec.clone(), BTreeSet::new());
    block_on(keyring.on_decrypt(materials, &edks)).unwrap();
    assert_eq!(inner.calls(), (7, 2));
    assert!(cache.is_empty());
}

#[test]
fn a_decrypt_entry_serves_only_the_same_edk_set_and_context() {
    let (_, _, keyring, inner) = setup(CacheLimits::new(Duration::from_secs(60)));
    let other = RawAesKeyring::new("cache-test", "other", &[8; 32]).unwrap();
    let ec = context(&[("purpose", "test")]);
    // Materials with two EDKs: one from the counted keyring, one from another key.
    let materials = EncryptionMaterials::new(suite(SUITE), ec.clone(), BTreeSet::new());
    let materials = block_on(inner.inner.on_encrypt(materials)).unwrap();
    let materials = block_on(other.on_encrypt(materials)).unwrap();
    let key = materials.data_key().unwrap().clone();
    let edks = materials.encrypted_data_keys().to_vec();
    let reversed: Vec<_> = edks.iter().rev().cloned().collect();

    assert!(decrypt_with(&keyring, &ec, &edks) == key);
    assert!(decrypt_with(&keyring, &ec, &reversed) == key);
    assert_eq!(inner.calls(), (0, 1), "the order of the EDKs does not matter");
    decrypt_with(&keyring, &ec, &edks[..1]);
    assert_eq!(inner.calls(), (0, 2), "a subset of the EDKs is another entry");
    let wrong = context(&[("purpose", "other")]);
    let materials = DecryptionMaterials::new(suite(SUITE), wrong, BTreeSet::new());
    assert!(block_on(keyring.on_decrypt(materials, &edks)).is_err(), "another context must reach the keyring");
    assert_eq!(inner.calls(), (0, 3));
}

#[test]
fn the_least_recently_used_entry_is_evicted() {
    let clock = Arc::new(ManualClock::new());
    let cache = Arc::new(MaterialsCache::with_clock(2, clock));
    let inner = Arc::new(Counting::new());
    let keyring = CachingKeyring::new(inner.clone(), cache.clone(), CacheLimits::new(Duration::from_secs(60))).unwrap();
    let ec = |v: &str| context(&[("k", v)]);
    let a = encrypt_with(&keyring, SUITE, &ec("a"), Some(1)).0;
    encrypt_with(&keyring, SUITE, &ec("b"), Some(1));
    assert!(encrypt_with(&keyring, SUITE, &ec("a"), Some(1)).0 == a); // a is now the most recent
    encrypt_with(&keyring, SUITE, &ec("c"), Some(1)); // evicts b
    assert_eq!(cache.len(), 2);
    assert!(encrypt_with(&keyring, SUITE, &ec("a"), Some(1)).0 == a);
    assert_eq!(inner.calls(), (3, 0));
    encrypt_with(&keyring, SUITE, &ec("b"), Some(1));
    assert_eq!(inner.calls(), (4, 0));
}

#[test]
fn concurrent_misses_make_one_call() {
    let (_, cache, keyring, inner) = setup(CacheLimits::new(Duration::from_secs(60)).max_messages(1000));
    *inner.gate.lock().unwrap() = false;
    let keys = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..64).map(|_| scope.spawn(|| encrypt(&keyring, 1))).collect();
        // Open the gate only once every thread either holds a call in the inner keyring or waits for one.
        while inner.calls().0 + cache.cache.waiters() < 64 {
            std::thread::yield_now();
        }
        *inner.gate.lock().unwrap() = true;
        threads.into_iter().map(|t| t.join().unwrap()).collect::<Vec<_>>()
    });
    assert_eq!(inner.calls(), (1, 0));
    assert!(keys.iter().all(|k| *k == keys[0]));
}

#[test]
fn a_failed_call_lets_a_waiter_try() {
    struct Failing;
    impl Keyring for Failing {
        fn on_encrypt<'a>(&'a self, _: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
            Box::pin(async { Err(Error::Keyring("down".into())) })
        }
        fn on_decrypt<'a>(
            &'a self,
            _: DecryptionMaterials,
            _: &'a [EncryptedDataKey],
        ) -> KeyringFuture<'a, DecryptionMaterials> {
            Box::pin(async { Err(Error::Keyring("down".into())) })
        }
    }
    let cache = Arc::new(MaterialsCache::new(4));
    let keyring = CachingKeyring::new(Failing, cache.clone(), CacheLimits::new(Duration::from_secs(1))).unwrap();
    let materials = EncryptionMaterials::new(suite(SUITE), EncryptionContext::new(), BTreeSet::new())
        .with_max_plaintext_length(Some(1));
    assert!(block_on(keyring.on_encrypt(materials)).is_err());
    assert!(cache.cache.lock().in_flight.is_empty(), "a failed leader left its flight behind");
    assert!(cache.is_empty());
}

#[test]
fn limits_are_checked() {
    let cache = Arc::new(MaterialsCache::new(4));
    let make = |limits| CachingKeyring::new(Counting::new(), cache.clone(), limits).map(drop);
    assert!(make(CacheLimits::new(Duration::ZERO)).is_err());
    assert!(make(CacheLimits::new(Duration::from_secs(1)).max_messages(0)).is_err());
    assert!(make(CacheLimits::new(Duration::from_secs(1)).max_messages(MAX_MESSAGES_PER_KEY + 1)).is_err());
    assert!(make(CacheLimits::new(Duration::from_secs(1)).max_bytes(MAX_BYTES_PER_KEY + 1)).is_err());
    assert!(make(CacheLimits::new(Duration::from_secs(1)).max_messages(MAX_MESSAGES_PER_KEY)).is_ok());
}

/// The identifiers of the specification's Appendix A (with the EDK count `decrypt_id` adds), from the formulas
/// written out byte by byte.
#[test]
fn cache_ids_follow_appendix_a() {
    let ec = context(&[("a", "b")]);
    let mut expected = vec![1, 0, 1, 0];
    expected.extend_from_slice(b"part");
    expected.extend_from_slice(&[0, 1, 0, 0x04, 0x78, 0]);
    expected.extend_from_slice(&[0, 1, 0, 1, b'a', 0, 1, b'b']);
    let id: CacheId = Sha384::digest(&expected).into();
    assert_eq!(encrypt_id("part", suite(SUITE), &ec).unwrap(), id);

    let edk = |id: &str| EncryptedDataKey { provider_id: id.into(), provider_info: vec![9], ciphertext: vec![8, 7] };
    let mut expected = vec![1, 0, 2, 0];
    expected.extend_from_slice(b"part");
    expected.extend_from_slice(&[0, 0x04, 0x78, 0]);
    expected.extend_from_slice(&2u64.to_be_bytes());
    expected.extend_from_slice(&[0, 1, b'a', 0, 1, 9, 0, 2, 8, 7]);
    expected.extend_from_slice(&[0, 1, b'b', 0, 1, 9, 0, 2, 8, 7]);
    expected.push(0);
    expected.extend_from_slice(&[0, 1, 0, 1, b'a', 0, 1, b'b']);
    let id: CacheId = Sha384::digest(&expected).into();
    assert_eq!(decrypt_id("part", suite(SUITE), &[edk("b"), edk("a")], &ec).unwrap(), id);
}

/// Splits one header-serialized EDK off the front of `bytes` (three u16-length-prefixed fields).
fn split_edk(bytes: &[u8]) -> (EncryptedDataKey, &[u8]) {
    let mut fields = Vec::new();
    let mut rest = bytes;
    for _ in 0..3 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        fields.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    let ciphertext = fields.pop().unwrap();
    let provider_info = fields.pop().unwrap();
    let provider_id = String::from_utf8(fields.pop().unwrap()).unwrap();
    (EncryptedDataKey { provider_id, provider_info, ciphertext }, rest)
}

/// A message's EDKs and context are both the attacker's: with the EDKs and the context simply concatenated
/// in the identifier, one EDK set and context could be read as another (an extra EDK made of the front of a
/// large context), and a data key unwrapped for one context served to a message claiming another.
#[test]
fn an_edk_made_of_context_bytes_does_not_reach_another_contexts_entry() {
    let (_, _, keyring, inner) = setup(CacheLimits::new(Duration::from_secs(60)));
    let forged = context(&[("tenant", "victim")]);
    // A context the attacker may encrypt under, laid out so that its serialization is an EDK (without its
    // first byte, 0) that sorts after the keyring's, then 0, then the forged context: 0x0a64 pairs make the
    // EDK's provider id 10 bytes starting with 'd' ("cache-test" < "d..."); the first value holds the
    // provider info's length; the last value holds the ciphertext's length, the ciphertext, 0 and the
    // forged context.
    let fillers = 0x0a64 - 2;
    let info_len: u16 = fillers * 9 + 5;
    let [hi, lo] = info_len.to_be_bytes();
    let mut pairs = vec![("a".to_string(), format!("pppp{}{}", char::from(hi), char::from(lo)))];
    pairs.extend((0..fillers).map(|i| (format!("b{i:04}"), String::new())));
    let mut last = vec![0, 16];
    last.extend_from_slice(&[b'x'; 16]);
    last.push(0);
    last.extend_from_slice(&forged.serialize().unwrap());
    pairs.push(("c".to_string(), String::from_utf8(last).unwrap()));
    let mut legit = EncryptionContext::new();
    pairs.into_iter().for_each(|(k, v)| drop(legit.insert(k, v)));
    let mut bytes = vec![0];
    bytes.extend_from_slice(&legit.serialize().unwrap());
    let (extra, rest) = split_edk(&bytes);
    let mut tail = vec![0];
    tail.extend_from_slice(&forged.serialize().unwrap());
    assert_eq!(rest, &tail[..], "the crafted context splits as intended");

    let materials = EncryptionMaterials::new(suite(SUITE), legit.clone(), BTreeSet::new());
    let materials = block_on(inner.inner.on_encrypt(materials)).unwrap();
    let edk = materials.encrypted_data_keys()[0].clone();
    assert!(decrypt_with(&keyring, &legit, std::slice::from_ref(&edk)) == *materials.data_key().unwrap());
    assert_eq!(inner.calls(), (0, 1));

    let materials = DecryptionMaterials::new(suite(SUITE), forged, BTreeSet::new());
    let result = block_on(keyring.on_decrypt(materials, &[edk, extra]));
    assert!(result.is_err(), "a data key unwrapped for one context must not serve another");
    assert_eq!(inner.calls(), (0, 2));
}

/// Expiry wipes a data key at the next lookup of any entry, not only when the entry is among the least
/// recently used: an entry created early and used late sits at the recent end of the order.
#[test]
fn an_expired_entry_goes_at_the_next_lookup_wherever_it_is_in_the_order() {
    let max_age = Duration::from_secs(10);
    let (clock, cache, keyring, _) = setup(CacheLimits::new(max_age));
    let ec = |v: &str| context(&[("k", v)]);
    encrypt_with(&keyring, SUITE, &ec("old"), Some(1));
    clock.advance(Duration::from_secs(5));
    for v in ["a", "b", "c", "d", "e"] {
        encrypt_with(&keyring, SUITE, &ec(v), Some(1));
    }
    clock.advance(Duration::from_secs(4));
    encrypt_with(&keyring, SUITE, &ec("old"), Some(1)); // the most recently used, and the first to expire
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.len(), 6);
    encrypt_with(&keyring, SUITE, &ec("a"), Some(1));
    assert_eq!(cache.len(), 5, "the expired entry (and its data key) stayed in the cache");
}
