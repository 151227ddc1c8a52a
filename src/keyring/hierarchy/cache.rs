//! The cache of branch keys: the caching module's bounded, expiring, single-flight cache holding branch key
//! materials, under the ids of the specification's Appendix A (design note §1.7).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha384};

use super::{BranchKeyMaterials, BranchKeyStoreError, BranchKeyVersion};
use crate::keyring::caching::{CacheId, Claim, Clock, LruCache, MonotonicClock};

/// The number of branch key versions a keyring's own cache holds (the Material Providers Library's
/// default).
pub const DEFAULT_CAPACITY: usize = 1000;

/// A bounded, thread-safe, least-recently-used cache of branch keys, which several
/// [`HierarchicalKeyring`](super::HierarchicalKeyring)s may share through an [`Arc`]. An entry leaves (and
/// its key is wiped, once no call still uses it) when it expires, when it is evicted, on [`clear`](Self::clear)
/// and when the cache is dropped. Concurrent misses for one branch key version make one store call.
pub struct BranchKeyCache {
    cache: LruCache<CachedBranchKey>,
}

/// A branch key and when it was fetched: a keyring uses it only while it is younger than that keyring's
/// TTL, whichever keyring put it there.
struct CachedBranchKey {
    materials: Arc<BranchKeyMaterials>,
    fetched_at: Duration,
}

impl std::fmt::Debug for BranchKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BranchKeyCache").field("capacity", &self.cache.capacity()).field("len", &self.len()).finish()
    }
}

impl BranchKeyCache {
    /// A cache of at most `capacity` branch key versions (0 caches nothing), on the process's monotonic
    /// clock.
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

    /// Drops every entry.
    pub fn clear(&self) {
        self.cache.clear();
    }

    /// Callers waiting for another's store call.
    #[cfg(test)]
    pub(super) fn waiters(&self) -> usize {
        self.cache.waiters()
    }

    /// The entry for `id` if it is younger than `ttl` and `fits` it; otherwise what `fetch` returns, which
    /// is then cached for `ttl`. While one caller fetches, others asking for `id` wait for it and then read
    /// the cache.
    ///
    /// `fits` says whether cached materials are the branch key asked for. Ids hash names joined by NUL
    /// bytes, without their lengths (Appendix A), so two keyrings sharing this cache can meet on one id
    /// when a partition id, store name or branch key id holds a NUL (a supplier's id comes from the
    /// message's context): an entry that does not fit is fetched again, never used.
    pub(super) async fn get_or_fetch<F, Fut>(
        &self,
        id: &CacheId,
        ttl: Duration,
        fits: impl Fn(&BranchKeyMaterials) -> bool,
        fetch: F,
    ) -> Result<Arc<BranchKeyMaterials>, BranchKeyStoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<BranchKeyMaterials, BranchKeyStoreError>>,
    {
        loop {
            let now = self.cache.now();
            let claim = self.cache.claim(id, |state| {
                let entry = &state.entries.get(id)?.value;
                (now.saturating_sub(entry.fetched_at) < ttl && fits(&entry.materials)).then(|| entry.materials.clone())
            });
            match claim {
                Claim::Hit(materials) => return Ok(materials),
                Claim::Wait(flight) => flight.await,
                Claim::Lead(leader) => {
                    let materials = Arc::new(fetch().await?);
                    let fetched_at = self.cache.now();
                    self.cache.put(id, CachedBranchKey { materials: materials.clone(), fetched_at }, ttl);
                    drop(leader);
                    return Ok(materials);
                }
            }
        }
    }
}

/// The resource id of the Hierarchical keyring in the specification's cache ids.
const HIERARCHICAL_KEYRING: u8 = 0x02;
const SCOPE_ENCRYPT: u8 = 0x01;
const SCOPE_DECRYPT: u8 = 0x02;

/// `SHA-384(02 ‖ 00 ‖ 01 ‖ 00 ‖ partition ‖ 00 ‖ store name ‖ 00 ‖ branch key id)`: the active version.
pub(super) fn active_id(partition_id: &[u8], logical_name: &str, branch_key_id: &str) -> CacheId {
    id_of(SCOPE_ENCRYPT, partition_id, logical_name, branch_key_id, None)
}

/// `SHA-384(02 ‖ 00 ‖ 02 ‖ 00 ‖ partition ‖ 00 ‖ store name ‖ 00 ‖ branch key id ‖ 00 ‖ version)`: one version.
pub(super) fn version_id(
    partition_id: &[u8],
    logical_name: &str,
    branch_key_id: &str,
    version: &BranchKeyVersion,
) -> CacheId {
    id_of(SCOPE_DECRYPT, partition_id, logical_name, branch_key_id, Some(version))
}

fn id_of(
    scope: u8,
    partition_id: &[u8],
    logical_name: &str,
    branch_key_id: &str,
    version: Option<&BranchKeyVersion>,
) -> CacheId {
    let mut hash = Sha384::new();
    hash.update([HIERARCHICAL_KEYRING, 0, scope, 0]);
    hash.update(partition_id);
    hash.update([0]);
    hash.update(logical_name.as_bytes());
    hash.update([0]);
    hash.update(branch_key_id.as_bytes());
    if let Some(version) = version {
        hash.update([0]);
        hash.update(version.to_string().as_bytes());
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The specification's Appendix A formulas, as computed by Python's `hashlib.sha384` over the bytes
    /// spelled out in the docs above (not by this code).
    #[test]
    fn cache_ids_follow_the_specification() {
        let id = "bd3842ff-3076-4092-9918-4395730050b8";
        let version = "e9ce18a3-edb5-4272-9f86-1cacb7997ff6".parse().unwrap();
        assert_eq!(
            hex(&active_id(b"p", "store", id)),
            "2f399a9df243a9b646c25bf7cdf5a68ba6a5dab8698e490bc8ea485c4d56faef9e1b59fe7bb9932e667733327b195202"
        );
        assert_eq!(
            hex(&version_id(b"p", "store", id, &version)),
            "9b7e8fba75d54fcdf1294ec1e6e9c43f5dbdcf887e15bb76e41a9e389be1104bff020418c069dc0b0567fae5fb23b08e"
        );
    }
}
