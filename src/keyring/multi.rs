//! The multi-keyring: one generator that makes the data key, and children that each add a wrapped copy.

use std::sync::Arc;

use super::{DecryptionMaterials, EncryptionMaterials, Keyring};
use crate::error::{Error, Result, Retry};
use crate::format::edk::EncryptedDataKey;

/// Combines keyrings. On encrypt the generator runs first and must produce the data key, then each child
/// wraps it; any failure fails the whole call. On decrypt the generator and then each child are tried in
/// order and the first that recovers the data key wins.
///
/// ```
/// use kms_envelope::{DecryptOptions, EncryptOptions, MultiKeyring, RawAesKeyring};
///
/// # fn main() -> Result<(), kms_envelope::Error> {
/// // Every message readable with the service's key, and with a break-glass key kept elsewhere.
/// let break_glass_key = [0x17u8; 32];
/// let service = RawAesKeyring::new("my-service", "service-key", &[0x42u8; 32])?;
/// let break_glass = RawAesKeyring::new("my-service", "break-glass", &break_glass_key)?;
/// let keyring = MultiKeyring::new(service).with_child(break_glass);
/// let message = kms_envelope::encrypt(&keyring, &EncryptOptions::new(), b"database password")?;
///
/// // Later, elsewhere, with the break-glass key alone:
/// let break_glass = RawAesKeyring::new("my-service", "break-glass", &break_glass_key)?;
/// let decrypted = kms_envelope::decrypt(&break_glass, &DecryptOptions::new(), &message)?;
/// assert_eq!(&decrypted.plaintext[..], b"database password");
/// assert_eq!(decrypted.header.encrypted_data_keys().len(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MultiKeyring {
    generator: Option<Arc<dyn Keyring>>,
    children: Vec<Arc<dyn Keyring>>,
}

impl std::fmt::Debug for MultiKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiKeyring")
            .field("has_generator", &self.generator.is_some())
            .field("children", &self.children.len())
            .finish()
    }
}

impl MultiKeyring {
    /// A multi-keyring whose generator makes the data key.
    pub fn new(generator: impl Keyring + 'static) -> Self {
        Self { generator: Some(Arc::new(generator)), children: Vec::new() }
    }

    /// A multi-keyring without a generator: usable for decrypt, and for encrypt only under another generator.
    pub fn without_generator() -> Self {
        Self::default()
    }

    /// Adds a child keyring.
    pub fn with_child(mut self, child: impl Keyring + 'static) -> Self {
        self.children.push(Arc::new(child));
        self
    }

    /// Adds a child keyring already shared elsewhere.
    pub fn with_shared_child(mut self, child: Arc<dyn Keyring>) -> Self {
        self.children.push(child);
        self
    }

    fn all(&self) -> impl Iterator<Item = &Arc<dyn Keyring>> {
        self.generator.iter().chain(self.children.iter())
    }

    async fn encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        match &self.generator {
            Some(generator) => {
                materials = generator.on_encrypt(materials).await?;
                if materials.data_key().is_none() {
                    return Err(Error::Keyring("the generator keyring produced no data key".into()));
                }
            }
            None if materials.data_key().is_none() => {
                return Err(Error::Config("a multi-keyring without a generator cannot create a data key".into()));
            }
            None => {}
        }
        for child in &self.children {
            materials = child.on_encrypt(materials).await?;
        }
        Ok(materials)
    }

    async fn decrypt(&self, materials: DecryptionMaterials, edks: &[EncryptedDataKey]) -> Result<DecryptionMaterials> {
        materials.require_no_data_key()?;
        let (mut reasons, mut retry) = (Vec::new(), Retry::Never);
        let (suite, context, required) =
            (materials.suite(), materials.encryption_context().clone(), materials.required_context_keys().clone());
        for keyring in self.all() {
            let attempt = DecryptionMaterials::new(suite, context.clone(), required.clone());
            match keyring.on_decrypt(attempt, edks).await {
                Ok(done) => return Ok(done),
                Err(Error::NoDataKeyDecrypted { reasons: inner, retry: inner_retry }) => {
                    retry = retry.or(inner_retry);
                    reasons.extend(inner);
                }
                Err(other) => {
                    retry = retry.or(other.retry());
                    reasons.push(other.to_string());
                }
            }
        }
        Err(Error::NoDataKeyDecrypted { reasons, retry })
    }
}

crate::keyring::keyring_by_async_methods!(MultiKeyring);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::suite::AlgorithmSuite;
    use crate::keyring::{RawAesKeyring, block_on};

    const SUITE: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;

    #[test]
    fn every_member_can_decrypt_alone() {
        let a = RawAesKeyring::new("ns", "a", &[1; 32]).unwrap();
        let b = RawAesKeyring::new("ns", "b", &[2; 24]).unwrap();
        let multi = MultiKeyring::new(a).with_child(b);
        let enc = block_on(multi.on_encrypt(EncryptionMaterials::new(SUITE, Default::default(), Default::default())))
            .unwrap();
        assert_eq!(enc.encrypted_data_keys().len(), 2);
        for name in ["a", "b"] {
            let key: &[u8] = if name == "a" { &[1; 32] } else { &[2; 24] };
            let alone = RawAesKeyring::new("ns", name, key).unwrap();
            let dec = block_on(alone.on_decrypt(
                DecryptionMaterials::new(SUITE, Default::default(), Default::default()),
                enc.encrypted_data_keys(),
            ))
            .unwrap();
            assert_eq!(dec.data_key(), enc.data_key());
        }
        let stranger = MultiKeyring::new(RawAesKeyring::new("ns", "c", &[3; 32]).unwrap())
            .with_child(RawAesKeyring::new("other", "a", &[1; 32]).unwrap());
        let err = block_on(stranger.on_decrypt(
            DecryptionMaterials::new(SUITE, Default::default(), Default::default()),
            enc.encrypted_data_keys(),
        ))
        .unwrap_err();
        assert!(matches!(err, Error::NoDataKeyDecrypted { ref reasons, .. } if reasons.len() == 4), "{err}");
    }

    #[test]
    fn no_generator_cannot_encrypt() {
        let multi = MultiKeyring::without_generator().with_child(RawAesKeyring::new("ns", "a", &[1; 32]).unwrap());
        let res = block_on(multi.on_encrypt(EncryptionMaterials::new(SUITE, Default::default(), Default::default())));
        assert!(matches!(res, Err(Error::Config(_))));
    }
}
