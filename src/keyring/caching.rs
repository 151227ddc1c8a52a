//! Data-key caching: the ESDK's caching cryptographic materials manager (specification
//! `framework/caching-cmm.md` 0.4.0) and local materials cache (`local-cryptographic-materials-cache.md`),
//! in the shape of a keyring that wraps any other keyring.
//!
//! A [`CachingKeyring`] asks its inner keyring for a data key only when [`MaterialsCache`] holds no usable
//! entry for the request. An encrypt entry serves at most [`CacheLimits::max_messages`] messages and
//! [`CacheLimits::max_bytes`] plaintext bytes, and no entry is used once it is as old as the max age given
//! to [`CacheLimits::new`].
//!
//! Reusing a data key links the messages that share it: whoever holds it reads them all, and the messages
//! carry the same encrypted data keys. Keep the limits as low as the call budget allows.
//!
//! Do not wrap a [`HierarchicalKeyring`](super::HierarchicalKeyring): it caches its branch keys already and
//! never reuses a data key, which a caching keyring over it would undo (see its module documentation).
//!
//! What is never cached, and why:
//! - suites without a key derivation (0x0014, 0x0046, 0x0078): the data key is the content key, and the
//!   specification forbids caching them;
//! - encryption with a signing suite: the keyring sees the per-message public key in the encryption context,
//!   so no two messages could share an entry (decryption of signed messages is cached: every message made
//!   with the same cached materials by another ESDK carries the same public key);
//! - encryption whose plaintext length is not declared beforehand (a stream without
//!   [`EncryptOptions::max_plaintext_length`](crate::EncryptOptions::max_plaintext_length)): the byte limit
//!   could not be enforced, so, like the Python and Java ESDKs, the request goes straight to the inner
//!   keyring;
//! - a message longer than the byte limit, and materials another keyring already gave a data key (a caching
//!   keyring inside a multi-keyring, not its generator).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha384};

use super::{DecryptionMaterials, EncryptionMaterials, Keyring, KeyringFuture};
use crate::crypto::DataKey;
use crate::error::{Error, Result};
use crate::format::context::EncryptionContext;
use crate::format::edk::EncryptedDataKey;
use crate::format::suite::{AlgorithmSuite, Kdf};

/// The default and largest number of messages per cached data key (the specification's default).
pub const MAX_MESSAGES_PER_KEY: u64 = 1 << 32;

/// The default and largest number of plaintext bytes per cached data key (the specification's bound).
pub const MAX_BYTES_PER_KEY: u64 = (1 << 63) - 1;

/// A cache identifier: SHA-384 as the specification's Appendix A computes it.
pub(crate) type CacheId = [u8; 48];

/// A source of monotonic time for cache expiry; tests substitute a [`ManualClock`].
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time elapsed since an arbitrary fixed origin; never decreases.
    fn now(&self) -> Duration;
}

/// The process's monotonic clock ([`Instant`]).
#[derive(Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self { origin: Instant::now() }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to: for testing expiry exactly, without sleeping.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// How long and how much one cached data key may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    max_age: Duration,
    max_messages: u64,
    max_bytes: u64,
}

impl CacheLimits {
    /// Entries live less than `max_age` (which must be positive); up to [`MAX_MESSAGES_PER_KEY`] messages and
    /// [`MAX_BYTES_PER_KEY`] bytes per data key unless lowered.
    pub fn new(max_age: Duration) -> Self {
        Self { max_age, max_messages: MAX_MESSAGES_PER_KEY, max_bytes: MAX_BYTES_PER_KEY }
    }

    /// Sets the most messages one data key encrypts (1 to [`MAX_MESSAGES_PER_KEY`]).
    pub fn max_messages(mut self, messages: u64) -> Self {
        self.max_messages = messages;
        self
    }

    /// Sets the most plaintext bytes one data key encrypts, over all its messages (at most
    /// [`MAX_BYTES_PER_KEY`]).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    fn check(&self) -> Result<()> {
        if self.max_age.is_zero() {
            return Err(Error::Config("the cache max age must be positive".into()));
        }
        if !(1..=MAX_MESSAGES_PER_KEY).contains(&self.max_messages) {
            return Err(Error::Config(format!("cache max messages must be 1 to {MAX_MESSAGES_PER_KEY}")));
        }
        if self.max_bytes > MAX_BYTES_PER_KEY {
            return Err(Error::Config(format!("cache max bytes must be at most {MAX_BYTES_PER_KEY}")));
        }
        Ok(())
    }
}

/// One cached data key. [`DataKey`] zeroizes itself on drop, so an entry's key is wiped whenever the entry
/// leaves the cache: eviction, expiry, exhaustion, [`MaterialsCache::clear`] or the cache's drop.
struct CachedDataKey {
    data_key: DataKey,
    /// Empty for decrypt entries.
    edks: Vec<EncryptedDataKey>,
    messages: u64,
    bytes: u64,
}

/// A cached value and its place in the eviction orders.
pub(crate) struct Entry<V> {
    pub(crate) value: V,
    expires_at: Duration,
    /// Position in `State::recency`.
    used: u64,
}

pub(crate) struct State<V> {
    pub(crate) entries: HashMap<CacheId, Entry<V>>,
    /// Least recently used first.
    recency: BTreeMap<u64, CacheId>,
    /// Soonest to expire first: every expired entry goes at the next lookup, however recently it was used
    /// (the specification's pruning of the least recently used few would leave a key created early and used
    /// late in memory past its max age).
    expiry: BTreeSet<(Duration, CacheId)>,
    tick: u64,
    in_flight: HashMap<CacheId, Arc<Flight>>,
}

impl<V> Default for State<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            recency: BTreeMap::new(),
            expiry: BTreeSet::new(),
            tick: 0,
            in_flight: HashMap::new(),
        }
    }
}

impl<V> State<V> {
    pub(crate) fn remove(&mut self, id: &CacheId) {
        if let Some(entry) = self.entries.remove(id) {
            self.recency.remove(&entry.used);
            self.expiry.remove(&(entry.expires_at, *id));
        }
    }

    fn insert(&mut self, id: &CacheId, entry: Entry<V>) {
        self.remove(id);
        self.expiry.insert((entry.expires_at, *id));
        self.entries.insert(*id, entry);
        self.touch(id);
    }

    fn touch(&mut self, id: &CacheId) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(entry) = self.entries.get_mut(id) {
            self.recency.remove(&entry.used);
            entry.used = tick;
            self.recency.insert(tick, *id);
        }
    }

    /// Evicts every expired entry.
    fn prune(&mut self, now: Duration) {
        while let Some(&(expires_at, id)) = self.expiry.first()
            && now >= expires_at
        {
            self.remove(&id);
        }
    }
}

/// A bounded, thread-safe, least-recently-used cache of data keys, shared by [`CachingKeyring`]s through an
/// [`Arc`]. Keyrings with different partition ids never see each other's entries.
///
/// No lock is held while a keyring runs; concurrent misses for the same entry make one inner-keyring call
/// (the others wait for it and then read the cache).
pub struct MaterialsCache {
    cache: LruCache<CachedDataKey>,
}

impl std::fmt::Debug for MaterialsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaterialsCache").field("capacity", &self.cache.capacity).field("len", &self.len()).finish()
    }
}

impl MaterialsCache {
    /// A cache of at most `capacity` entries (0 caches nothing), on the process's monotonic clock.
    pub fn new(capacity: usize) -> Self {
        Self::with_clock(capacity, Arc::new(MonotonicClock::default()))
    }

    /// A cache that reads time from `clock`.
    pub fn with_clock(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        Self { cache: LruCache::with_clock(capacity, clock) }
    }

    /// Entries held now, expired ones not yet pruned included.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops (and so wipes) every entry.
    pub fn clear(&self) {
        self.cache.clear();
    }
}

/// The machinery behind [`MaterialsCache`] and the Hierarchical keyring's
/// [`BranchKeyCache`](super::hierarchy::BranchKeyCache): at most `capacity` values of type `V` by
/// [`CacheId`], least recently used evicted first, every expired value dropped at the next lookup, one
/// call at a time per missing id. A value's own `Drop` wipes its secrets whenever it leaves.
pub(crate) struct LruCache<V> {
    state: Mutex<State<V>>,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

impl<V> LruCache<V> {
    pub(crate) fn with_clock(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        Self { state: Mutex::new(State::default()), capacity, clock }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub(crate) fn clear(&self) {
        let mut state = self.lock();
        state.entries.clear();
        state.recency.clear();
        state.expiry.clear();
    }

    /// The cache clock's time now.
    pub(crate) fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Callers waiting for another's call.
    #[cfg(test)]
    pub(crate) fn waiters(&self) -> usize {
        let flights: Vec<Arc<Flight>> = self.lock().in_flight.values().cloned().collect();
        flights.iter().map(|f| f.state.lock().unwrap_or_else(PoisonError::into_inner).wakers.len()).sum()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<V>> {
        // Every update leaves the state consistent before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `lookup` on the entry for `id` (expired entries pruned first). If it finds nothing and no call
    /// for `id` is under way, the caller leads one; otherwise it waits for that call.
    pub(crate) fn claim<T>(&self, id: &CacheId, lookup: impl FnOnce(&mut State<V>) -> Option<T>) -> Claim<'_, V, T> {
        let mut state = self.lock();
        state.prune(self.clock.now());
        if let Some(found) = lookup(&mut state) {
            state.touch(id);
            return Claim::Hit(found);
        }
        if let Some(flight) = state.in_flight.get(id) {
            return Claim::Wait(FlightWait(flight.clone()));
        }
        let flight = Arc::new(Flight::default());
        state.in_flight.insert(*id, flight.clone());
        Claim::Lead(Leader { cache: self, id: *id, flight })
    }

    /// Puts `value` under `id` for `max_age` from now, evicting the least recently used beyond capacity.
    pub(crate) fn put(&self, id: &CacheId, value: V, max_age: Duration) {
        if self.capacity == 0 {
            return;
        }
        let mut state = self.lock();
        let expires_at = self.clock.now().saturating_add(max_age);
        state.insert(id, Entry { value, expires_at, used: 0 });
        while state.entries.len() > self.capacity {
            let Some((_, oldest)) = state.recency.pop_first() else { break };
            if let Some(entry) = state.entries.remove(&oldest) {
                state.expiry.remove(&(entry.expires_at, oldest));
            }
        }
    }
}

pub(crate) enum Claim<'a, V, T> {
    Hit(T),
    Wait(FlightWait),
    Lead(Leader<'a, V>),
}

/// One inner-keyring call under way for a cache id; waiters are woken when it ends, however it ends.
#[derive(Default)]
pub(crate) struct Flight {
    state: Mutex<FlightState>,
}

#[derive(Default)]
struct FlightState {
    finished: bool,
    wakers: Vec<Waker>,
}

/// Resolves once the flight has ended.
pub(crate) struct FlightWait(Arc<Flight>);

impl Future for FlightWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.finished {
            return Poll::Ready(());
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The right and duty to make the call for a cache id: dropping it (after the result went into the cache,
/// or on an error, or when the caller's future is dropped) ends the flight and wakes the waiters, which
/// then find the entry or lead a call of their own.
pub(crate) struct Leader<'a, V> {
    cache: &'a LruCache<V>,
    id: CacheId,
    flight: Arc<Flight>,
}

impl<V> Drop for Leader<'_, V> {
    fn drop(&mut self) {
        let mut state = self.cache.lock();
        if state.in_flight.get(&self.id).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
            state.in_flight.remove(&self.id);
        }
        drop(state);
        let wakers = {
            let mut flight = self.flight.state.lock().unwrap_or_else(PoisonError::into_inner);
            flight.finished = true;
            std::mem::take(&mut flight.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Caches the data keys of another keyring (see the [module documentation](self)).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use kms_envelope::keyring::caching::{CacheLimits, CachingKeyring, MaterialsCache};
/// use kms_envelope::{DecryptOptions, EncryptOptions, RawAesKeyring};
///
/// # fn main() -> Result<(), kms_envelope::Error> {
/// let inner = RawAesKeyring::new("my-service", "key-1", &[0x42; 32])?;
/// let cache = Arc::new(MaterialsCache::new(1000));
/// let limits = CacheLimits::new(Duration::from_secs(300)).max_messages(100);
/// let keyring = CachingKeyring::new(inner, cache, limits)?;
///
/// let first = kms_envelope::encrypt(&keyring, &EncryptOptions::new(), b"record 1")?;
/// let second = kms_envelope::encrypt(&keyring, &EncryptOptions::new(), b"record 2")?;
/// // One data key, wrapped once: both headers carry the same encrypted data key.
/// let first = kms_envelope::decrypt(&keyring, &DecryptOptions::new(), &first)?;
/// let second = kms_envelope::decrypt(&keyring, &DecryptOptions::new(), &second)?;
/// assert_eq!(first.header.encrypted_data_keys(), second.header.encrypted_data_keys());
/// # Ok(())
/// # }
/// ```
pub struct CachingKeyring<K> {
    inner: K,
    cache: Arc<MaterialsCache>,
    limits: CacheLimits,
    partition_id: String,
}

impl<K> std::fmt::Debug for CachingKeyring<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingKeyring")
            .field("partition_id", &self.partition_id)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<K: Keyring> CachingKeyring<K> {
    /// Caches `inner`'s data keys in `cache` under `limits`, in a partition of its own (a random id), so
    /// that no other caching keyring sharing `cache` uses its entries.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `limits` are out of range: a zero max age, max messages outside 1 to
    /// [`MAX_MESSAGES_PER_KEY`], or max bytes above [`MAX_BYTES_PER_KEY`].
    pub fn new(inner: K, cache: Arc<MaterialsCache>, limits: CacheLimits) -> Result<Self> {
        limits.check()?;
        let mut random = [0u8; 16];
        rand::fill(&mut random);
        let partition_id = random.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { inner, cache, limits, partition_id })
    }

    /// Uses `partition_id` instead of a random one: caching keyrings with the same partition id share
    /// entries, so give it only to keyrings that wrap the same keys and may read each other's messages.
    pub fn partition_id(mut self, partition_id: impl Into<String>) -> Self {
        self.partition_id = partition_id.into();
        self
    }

    /// The keyring whose data keys are cached.
    pub fn inner(&self) -> &K {
        &self.inner
    }

    async fn encrypt(&self, materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        let suite = materials.suite();
        let length = match materials.max_plaintext_length() {
            Some(length)
                if materials.data_key().is_none()
                    && materials.encrypted_data_keys().is_empty()
                    && suite.kdf() != Kdf::Identity
                    && suite.signature().is_none()
                    && length <= self.limits.max_bytes =>
            {
                length
            }
            _ => return self.inner.on_encrypt(materials).await,
        };
        let id = encrypt_id(&self.partition_id, suite, materials.encryption_context())?;
        let limits = self.limits;
        loop {
            let claim = self.cache.cache.claim(&id, |state| {
                let entry = &mut state.entries.get_mut(&id)?.value;
                if entry.messages >= limits.max_messages || entry.bytes.saturating_add(length) > limits.max_bytes {
                    state.remove(&id);
                    return None;
                }
                entry.messages += 1;
                entry.bytes += length;
                Some((entry.data_key.clone(), entry.edks.clone()))
            });
            match claim {
                Claim::Hit((data_key, edks)) => {
                    let mut materials = materials;
                    materials.set_data_key(data_key)?;
                    edks.into_iter().for_each(|edk| materials.add_encrypted_data_key(edk));
                    return Ok(materials);
                }
                Claim::Wait(flight) => flight.await,
                Claim::Lead(leader) => {
                    let materials = self.inner.on_encrypt(materials).await?;
                    if let Some(data_key) = materials.data_key().filter(|_| limits.max_messages > 1) {
                        let edks = materials.encrypted_data_keys().to_vec();
                        let entry = CachedDataKey { data_key: data_key.clone(), edks, messages: 1, bytes: length };
                        self.cache.cache.put(&id, entry, limits.max_age);
                    }
                    drop(leader);
                    return Ok(materials);
                }
            }
        }
    }

    async fn decrypt(&self, materials: DecryptionMaterials, edks: &[EncryptedDataKey]) -> Result<DecryptionMaterials> {
        let suite = materials.suite();
        if materials.data_key().is_some() || suite.kdf() == Kdf::Identity {
            return self.inner.on_decrypt(materials, edks).await;
        }
        let id = decrypt_id(&self.partition_id, suite, edks, materials.encryption_context())?;
        loop {
            match self.cache.cache.claim(&id, |state| state.entries.get(&id).map(|e| e.value.data_key.clone())) {
                Claim::Hit(data_key) => {
                    let mut materials = materials;
                    materials.set_data_key(data_key)?;
                    return Ok(materials);
                }
                Claim::Wait(flight) => flight.await,
                Claim::Lead(leader) => {
                    let materials = self.inner.on_decrypt(materials, edks).await?;
                    if let Some(data_key) = materials.data_key() {
                        let entry =
                            CachedDataKey { data_key: data_key.clone(), edks: Vec::new(), messages: 1, bytes: 0 };
                        self.cache.cache.put(&id, entry, self.limits.max_age);
                    }
                    drop(leader);
                    return Ok(materials);
                }
            }
        }
    }
}

impl<K: Keyring> Keyring for CachingKeyring<K> {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        Box::pin(self.encrypt(materials))
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        Box::pin(self.decrypt(materials, edks))
    }
}

const CACHING_CMM: u8 = 0x01;
const SCOPE_ENCRYPT: u8 = 0x01;
const SCOPE_DECRYPT: u8 = 0x02;
/// The resource suffix's marker for "encryption materials with algorithm suite": a keyring always sees the
/// resolved suite (the caller's or the commitment policy's default), and the cached key fits only it.
const WITH_SUITE: u8 = 0x01;

/// Appendix A, "Encryption Materials, With Algorithm Suite".
fn encrypt_id(partition_id: &str, suite: AlgorithmSuite, context: &EncryptionContext) -> Result<CacheId> {
    let mut hash = Sha384::new();
    hash.update([CACHING_CMM, 0, SCOPE_ENCRYPT, 0]);
    hash.update(partition_id.as_bytes());
    hash.update([0, WITH_SUITE, 0]);
    hash.update(suite.id().to_be_bytes());
    hash.update([0]);
    hash.update(context.serialize()?);
    Ok(hash.finalize().into())
}

/// Appendix A, "Decryption Materials": the EDKs serialized as in the header, sorted bytewise, with their
/// number in front. The number is not in the specification's formula, but without it the EDKs and the
/// context (both the message's, so the attacker's) are an ambiguous concatenation: a context can be laid
/// out so that its front reads as one more EDK, and a message claiming another context would then get the
/// data key unwrapped for the first. With the number the EDKs parse in one way only (each is
/// length-prefixed), and the context is what remains. Identifiers never leave the process, so no other
/// implementation needs to agree.
fn decrypt_id(
    partition_id: &str,
    suite: AlgorithmSuite,
    edks: &[EncryptedDataKey],
    context: &EncryptionContext,
) -> Result<CacheId> {
    let mut serialized = edks
        .iter()
        .map(|edk| {
            let mut out = Vec::new();
            edk.write_to(&mut out).map(|()| out)
        })
        .collect::<Result<Vec<_>>>()?;
    serialized.sort_unstable();
    let mut hash = Sha384::new();
    hash.update([CACHING_CMM, 0, SCOPE_DECRYPT, 0]);
    hash.update(partition_id.as_bytes());
    hash.update([0]);
    hash.update(suite.id().to_be_bytes());
    hash.update([0]);
    hash.update((serialized.len() as u64).to_be_bytes());
    serialized.iter().for_each(|edk| hash.update(edk));
    hash.update([0]);
    hash.update(context.serialize()?);
    Ok(hash.finalize().into())
}

#[cfg(test)]
mod tests;
