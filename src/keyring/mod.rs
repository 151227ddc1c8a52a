//! Keyrings: who may wrap and unwrap a message's data key.
//!
//! A keyring takes materials and returns them with more filled in: on encrypt a data key (if none yet) and
//! its encrypted data key; on decrypt the plaintext data key recovered from one of the message's EDKs.
//! Keyring calls are `async`, because KMS calls are; the blocking stream API drives them with
//! [`block_on`], which needs no runtime for local keyrings.

pub mod caching;
#[cfg(feature = "aws-lc")]
mod ecdh_edk;
pub mod hierarchy;
pub mod kms;
mod materials;
pub mod multi;
pub mod raw_aes;
#[cfg(feature = "aws-lc")]
pub mod raw_ecdh;
#[cfg(feature = "rsa")]
pub mod raw_rsa;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

pub use caching::{CacheLimits, CachingKeyring, MaterialsCache};
pub use hierarchy::HierarchicalKeyring;
pub use materials::{DecryptionMaterials, EncryptionMaterials};
pub use multi::MultiKeyring;
pub use raw_aes::RawAesKeyring;
#[cfg(feature = "aws-lc")]
pub use raw_ecdh::RawEcdhKeyring;
#[cfg(feature = "rsa")]
pub use raw_rsa::RawRsaKeyring;

use crate::error::Result;
use crate::format::edk::EncryptedDataKey;

/// `impl Keyring for $ty` by its inherent `async fn encrypt(&self, EncryptionMaterials)` and
/// `async fn decrypt(&self, DecryptionMaterials, &[EncryptedDataKey])`, which is how every keyring here is
/// written.
macro_rules! keyring_by_async_methods {
    ($ty:ty) => {
        impl $crate::keyring::Keyring for $ty {
            fn on_encrypt<'a>(
                &'a self,
                materials: $crate::keyring::EncryptionMaterials,
            ) -> $crate::keyring::KeyringFuture<'a, $crate::keyring::EncryptionMaterials> {
                Box::pin(self.encrypt(materials))
            }

            fn on_decrypt<'a>(
                &'a self,
                materials: $crate::keyring::DecryptionMaterials,
                edks: &'a [$crate::format::edk::EncryptedDataKey],
            ) -> $crate::keyring::KeyringFuture<'a, $crate::keyring::DecryptionMaterials> {
                Box::pin(self.decrypt(materials, edks))
            }
        }
    };
}
pub(crate) use keyring_by_async_methods;

/// The future a keyring returns.
pub type KeyringFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Wraps and unwraps data keys.
///
/// Implementations must not log or put key material into errors. On decrypt, "none of these EDKs is mine"
/// is [`Error::NoDataKeyDecrypted`](crate::Error::NoDataKeyDecrypted) with one reason per EDK tried, so
/// that a multi-keyring can report every attempt.
///
/// A keyring of your own usually adds a policy around one of these; wrapping keys is theirs to do:
///
/// ```
/// use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture};
/// use kms_envelope::{EncryptOptions, EncryptedDataKey, Error, Keyring, RawAesKeyring};
///
/// /// Encrypts only messages that name their tenant, so that a decryptor can require it.
/// struct TenantKeyring(RawAesKeyring);
///
/// impl Keyring for TenantKeyring {
///     fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
///         Box::pin(async move {
///             if !materials.encryption_context().contains_key("tenant") {
///                 return Err(Error::Keyring("no tenant in the encryption context".into()));
///             }
///             self.0.on_encrypt(materials).await
///         })
///     }
///
///     fn on_decrypt<'a>(
///         &'a self,
///         materials: DecryptionMaterials,
///         edks: &'a [EncryptedDataKey],
///     ) -> KeyringFuture<'a, DecryptionMaterials> {
///         self.0.on_decrypt(materials, edks)
///     }
/// }
///
/// # fn main() -> Result<(), Error> {
/// let keyring = TenantKeyring(RawAesKeyring::new("my-service", "secrets-key-1", &[0x42u8; 32])?);
/// assert!(kms_envelope::encrypt(&keyring, &EncryptOptions::new(), b"x").is_err());
/// kms_envelope::encrypt(&keyring, &EncryptOptions::new().context("tenant", "acme"), b"x")?;
/// # Ok(())
/// # }
/// ```
pub trait Keyring: Send + Sync {
    /// Adds a data key if the materials have none (only a generator may), then an encrypted copy of it.
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials>;

    /// Recovers the data key from one of `edks` into the materials, which must not have one yet.
    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials>;
}

impl<K: Keyring + ?Sized> Keyring for Arc<K> {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        (**self).on_encrypt(materials)
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        (**self).on_decrypt(materials, edks)
    }
}

impl<K: Keyring + ?Sized> Keyring for Box<K> {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        (**self).on_encrypt(materials)
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        (**self).on_decrypt(materials, edks)
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on the current thread by parking between polls.
///
/// Local keyrings complete on the first poll. The KMS keyrings run their calls on a tokio runtime of their
/// own when none is current, so this works from plain synchronous code. Do not call it from inside an async
/// task: use the async API there.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
