//! What the raw and the AWS KMS ECDH keyrings share (feature `aws-lc`): making one EDK from a shared
//! secret, and choosing and opening the EDKs a keyring may read. Only where the shared secret Z comes from
//! differs: the raw keyring agrees it locally, the KMS keyring asks KMS `DeriveSharedSecret`. The reasons
//! the all-zero IV is safe, and what the EDK binds, are in `raw_ecdh.rs`'s module documentation.

use rand::TryRng as _;
use zeroize::Zeroizing;

use crate::crypto::DataKey;
use crate::crypto::ecdh::{EcdhPublicKey, EcdhWrappingKeys};
use crate::error::{EcdhError, Error, Result};
use crate::format::ecdh::{
    self, EcdhCiphertext, EcdhProviderInfo, KMS_ECDH_PROVIDER_ID, RAW_ECDH_PROVIDER_ID, SALT_LEN,
};
use crate::format::edk::EncryptedDataKey;
use crate::keyring::{DecryptionMaterials, EncryptionMaterials};

/// Sets a fresh data key of the suite's length unless the materials hold one: the data key to wrap.
pub(crate) fn data_key_to_wrap(materials: &mut EncryptionMaterials) -> Result<&DataKey> {
    if materials.data_key().is_none() {
        materials.set_data_key(DataKey::random(materials.suite().key_len()))?;
    }
    Ok(materials.data_key().expect("set above"))
}

/// The EDK of `data_key` from `sender` to `recipient` (same curve) under `provider_id`: a fresh salt,
/// `derive(fixed_info, salt)` for the keys (Z agreed locally or by KMS), the zero-IV seal.
pub(crate) fn wrap_data_key(
    sender: &EcdhPublicKey,
    recipient: &EcdhPublicKey,
    data_key: &[u8],
    serialized_context: &[u8],
    provider_id: &str,
    derive: impl FnOnce(&[u8], &[u8; SALT_LEN]) -> std::result::Result<EcdhWrappingKeys, EcdhError>,
) -> Result<EncryptedDataKey> {
    let curve = recipient.curve();
    let (s, r) = (sender.compressed(), recipient.compressed());
    let fixed_info = ecdh::fixed_info(curve, s, r, serialized_context);
    // Straight from the operating system, for every EDK: the zero IV is safe only if no salt repeats.
    let mut salt = [0u8; SALT_LEN];
    rand::rngs::SysRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| Error::Keyring(format!("the operating system's random generator failed: {e}").into()))?;
    let keys = derive(&fixed_info, &salt)?;
    let (wrapped, tag) = keys.seal(data_key, &fixed_info);
    let mut ciphertext = Vec::with_capacity(EcdhCiphertext::len_for(data_key.len()));
    ciphertext.extend_from_slice(&salt);
    ciphertext.extend_from_slice(keys.commitment_key());
    ciphertext.extend_from_slice(&wrapped);
    ciphertext.extend_from_slice(&tag);
    Ok(EncryptedDataKey {
        provider_id: provider_id.to_owned(),
        provider_info: EcdhProviderInfo { recipient: r, sender: s }.to_bytes(),
        ciphertext,
    })
}

/// Whose public key an EDK is unwrapped with.
#[derive(Clone, Copy)]
pub(crate) enum Peer<'a> {
    /// `RawPrivateKeyToStaticPublicKey` / `KmsPrivateKeyToStaticPublicKey`: the configured other party; the
    /// EDK must be between it and us, either way round.
    Static(&'a EcdhPublicKey),
    /// Discovery: the sender the EDK names, whoever it is; the EDK must be addressed to us.
    Sender,
}

/// The ECDH EDKs among `edks` (provider id `raw-ecdh` or `aws-kms-ecdh`, both keyrings read both), with
/// their index in the message.
pub(crate) fn ecdh_edks(edks: &[EncryptedDataKey]) -> impl Iterator<Item = (usize, &EncryptedDataKey)> {
    edks.iter()
        .enumerate()
        .filter(|(_, edk)| edk.provider_id == RAW_ECDH_PROVIDER_ID || edk.provider_id == KMS_ECDH_PROVIDER_ID)
}

/// The encryption context as the fixed info holds it, and the suite's data key length.
pub(crate) fn context_and_key_len(materials: &DecryptionMaterials) -> Result<(Vec<u8>, usize)> {
    Ok((materials.encryption_context().serialize()?, materials.suite().key_len()))
}

/// An ECDH EDK a keyring may open, checked locally: its provider info parsed, its keys ours and the
/// expected peer's, the peer's point validated on the curve, its ciphertext of the suite's length. Nothing
/// remote (no KMS call) happens before one of these exists.
pub(crate) struct EcdhEdk<'a> {
    /// The public key to agree Z with: the configured peer, or the EDK's validated sender.
    pub peer: EcdhPublicKey,
    ciphertext: EcdhCiphertext<'a>,
    fixed_info: Vec<u8>,
}

impl<'a> EcdhEdk<'a> {
    /// `Ok(None)` if `edk` is between other keys than `own` and `peer`; an error if it is malformed.
    /// Checks in the Material Providers Library's order: provider info, keys, ciphertext length.
    pub(crate) fn select(
        own: &EcdhPublicKey,
        peer: Peer<'_>,
        edk: &'a EncryptedDataKey,
        serialized_context: &[u8],
        key_len: usize,
    ) -> std::result::Result<Option<Self>, EcdhError> {
        let curve = own.curve();
        let info = EcdhProviderInfo::parse(curve, &edk.provider_info)?;
        let mine = own.compressed();
        let peer = match peer {
            Peer::Static(peer) => {
                let theirs = peer.compressed();
                if (info.recipient, info.sender) != (mine, theirs) && (info.recipient, info.sender) != (theirs, mine) {
                    return Ok(None);
                }
                peer.clone()
            }
            Peer::Sender => {
                if info.recipient != mine {
                    return Ok(None);
                }
                EcdhPublicKey::from_point(curve, info.sender)?
            }
        };
        let ciphertext = EcdhCiphertext::parse(key_len, &edk.ciphertext)?;
        let fixed_info = ecdh::fixed_info(curve, info.sender, info.recipient, serialized_context);
        Ok(Some(Self { peer, ciphertext, fixed_info }))
    }

    /// The keys for this EDK from `derive(fixed_info, salt)`, then the commitment check (constant time)
    /// and the unwrap.
    pub(crate) fn open(
        &self,
        derive: impl FnOnce(&[u8], &[u8; SALT_LEN]) -> std::result::Result<EcdhWrappingKeys, EcdhError>,
    ) -> std::result::Result<Zeroizing<Vec<u8>>, EcdhError> {
        let keys = derive(&self.fixed_info, self.ciphertext.salt)?;
        let c = &self.ciphertext;
        keys.open(c.commitment_key, c.wrapped_key, c.tag, &self.fixed_info)
    }
}

/// What the two ECDH keyrings' tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeSet;

    use super::*;
    use crate::format::context::EncryptionContext;
    use crate::format::ecdh::EcdhCurve;
    use crate::format::suite::AlgorithmSuite;
    use crate::keyring::{Keyring, block_on};

    /// The suite of every test: committing, unsigned, 32-byte data key.
    pub(crate) const SUITE: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;

    /// The encryption context of every test.
    pub(crate) fn context() -> EncryptionContext {
        [("tenant", "acme")].into_iter().collect()
    }

    pub(crate) fn encrypt(keyring: &dyn Keyring) -> Result<EncryptionMaterials> {
        block_on(keyring.on_encrypt(EncryptionMaterials::new(SUITE, context(), BTreeSet::new())))
    }

    pub(crate) fn decrypt(keyring: &dyn Keyring, edks: &[EncryptedDataKey]) -> Result<DecryptionMaterials> {
        block_on(keyring.on_decrypt(DecryptionMaterials::new(SUITE, context(), BTreeSet::new()), edks))
    }

    /// The reasons a decrypt that must fail gives, joined.
    pub(crate) fn reasons(keyring: &dyn Keyring, edks: &[EncryptedDataKey]) -> String {
        match decrypt(keyring, edks) {
            Err(Error::NoDataKeyDecrypted { reasons, .. }) => reasons.join("; "),
            other => panic!("expected no data key, got {other:?}"),
        }
    }

    /// The zero IV rests on a fresh salt per EDK: two EDKs of the same data key between the same keys
    /// (made by `keyring`) must differ in salt, commitment key and wrapped key.
    pub(crate) fn assert_two_edks_differ(keyring: &dyn Keyring) {
        let edk = || {
            let mut materials = EncryptionMaterials::new(SUITE, context(), BTreeSet::new());
            materials.set_data_key(DataKey::new(vec![7; 32])).unwrap();
            block_on(keyring.on_encrypt(materials)).unwrap().encrypted_data_keys()[0].clone()
        };
        let (a, b) = (edk(), edk());
        assert_eq!(a.provider_info, b.provider_info);
        assert_ne!(a.ciphertext[..32], b.ciphertext[..32], "salt");
        assert_ne!(a.ciphertext[32..64], b.ciphertext[32..64], "commitment key");
        assert_ne!(a.ciphertext[64..], b.ciphertext[64..], "wrapped key and tag");
    }

    /// A compressed point whose X is on no point of `curve` (found by search, deterministic).
    pub(crate) fn point_not_on_curve(curve: EcdhCurve) -> Vec<u8> {
        (0u8..=255)
            .map(|b| {
                let mut point = vec![0x02];
                point.extend(std::iter::repeat_n(b, curve.field_len()));
                point
            })
            .find(|p| EcdhPublicKey::from_point(curve, p) == Err(EcdhError::NotOnCurve(curve)))
            .expect("half of all X values are on no point")
    }
}
