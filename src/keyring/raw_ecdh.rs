//! The raw ECDH keyring (feature `aws-lc`): the data key wrapped under a key agreed by elliptic-curve
//! Diffie–Hellman between a sender and a recipient key pair, byte-compatible with the raw ECDH keyring of
//! the AWS Material Providers Library (specification `framework/raw-ecdh-keyring.md`; wire format and the
//! specification's slips in `src/format/ecdh.rs` and `docs/design/issue-29-keyrings.md` §2).
//!
//! # How one EDK is made
//!
//! Z = ECDH(sender private, recipient public) (the X coordinate); a 32-byte salt from the operating
//! system's random generator, fresh for this EDK; `KdfCtr(HMAC-SHA-384, Z, fixedInfo, salt)` gives 64
//! bytes, a commitment key and an AES-256-GCM wrapping key; the data key is sealed under the wrapping key
//! with an **all-zero IV** and `fixedInfo` as AAD. `fixedInfo` names the curve, both public keys (sender,
//! recipient) and the message's encryption context. The EDK holds both public keys (provider info), the
//! salt, the commitment key, the wrapped key and its tag.
//!
//! # Why this is sound
//!
//! - **The zero IV**: AES-GCM breaks if one key seals two plaintexts under one IV. Here no wrapping key
//!   seals twice: each EDK draws its own 32-byte salt from the OS CSPRNG, and the KDF turns (Z, salt) into
//!   a key that is, for distinct salts, independent; two EDKs share a key only if two 256-bit salts collide
//!   under the same key pair. The salt is never taken from the message's data key, a counter, a clock or a
//!   user-seeded generator (`tests` check that two encryptions differ in salt, commitment key and EDK).
//! - **The commitment key** (compared in constant time before unwrapping) makes an EDK open under one
//!   (Z, salt, fixedInfo) only: AES-GCM alone is not key-committing, so without it an EDK could be crafted
//!   to unwrap to different data keys for different recipients.
//! - **What the tag binds**: the wrapped data key, and through `fixedInfo` the curve, the keyring version,
//!   both public keys in order and the whole encryption context; an EDK moved to another message with
//!   another context, or with its keys swapped or replaced, does not unwrap.
//!
//! # Who wrote the message
//!
//! Sender authentication holds only for `RawPrivateKeyToStaticPublicKey` on decrypt, configured with the
//! expected sender's public key ([`RawEcdhKeyring::decrypt_from`]). `PublicKeyDiscovery` accepts any sender;
//! `EphemeralPrivateKeyToStaticPublicKey` is anonymous. Static-static ECDH gives no non-repudiation: the
//! recipient can compute the same key and forge a message "from" the sender. In a message for several
//! recipients without a signing suite, any recipient can alter the body: use a signed suite there.

use super::ecdh_edk::{self, EcdhEdk, Peer};
use super::{DecryptionMaterials, EncryptionMaterials};
use crate::crypto::DataKey;
use crate::crypto::ecdh::{EcdhPrivateKey, EcdhPublicKey};
use crate::error::{EcdhError, Error, Result, Retry};
use crate::format::ecdh::{EcdhCurve, RAW_ECDH_PROVIDER_ID};
use crate::format::edk::EncryptedDataKey;

/// Wraps and unwraps data keys with ECDH between a sender's and a recipient's key pair, on P-256, P-384 or
/// P-521. Reads EDKs of provider id `raw-ecdh` and `aws-kms-ecdh` (the AWS KMS ECDH keyring's, same
/// format); writes `raw-ecdh`.
///
/// Three key agreement schemes, as the Material Providers Library names them:
///
/// | constructor | scheme | encrypt | decrypt |
/// |---|---|---|---|
/// | [`static_keys`](Self::static_keys) | `RawPrivateKeyToStaticPublicKey` | as the sender, to the recipient | EDKs between the two keys, either way round |
/// | [`decrypt_from`](Self::decrypt_from) | the same, named for the recipient | to the sender | only EDKs the pinned sender wrote to us: **sender authentication** |
/// | [`ephemeral`](Self::ephemeral) | `EphemeralPrivateKeyToStaticPublicKey` | from a fresh key pair per EDK | refused |
/// | [`discovery`](Self::discovery) | `PublicKeyDiscovery` | refused | EDKs to our key from **any** sender |
///
/// Sender authentication holds only for `RawPrivateKeyToStaticPublicKey` on decrypt, configured with the
/// expected sender's public key. Discovery accepts any sender; the ephemeral scheme is anonymous.
/// Static-static ECDH gives no non-repudiation: the recipient can compute the same key and forge a message
/// "from" the sender. In a message for several recipients without a signing suite, any recipient can alter
/// the body: use a signed suite there. (Module documentation: why the all-zero IV is safe.)
///
/// ```
/// use kms_envelope::{DecryptOptions, EcdhCurve, EcdhPrivateKey, EncryptOptions, RawEcdhKeyring};
///
/// # fn main() -> kms_envelope::Result<()> {
/// // In real use: `EcdhPrivateKey::from_pem(EcdhCurve::P384, &std::fs::read("recipient.pem")?)?`, and the
/// // writer holds only the recipient's public key (`EcdhPublicKey::from_der`).
/// let recipient = EcdhPrivateKey::generate(EcdhCurve::P384)?;
/// let writer = RawEcdhKeyring::ephemeral(recipient.public_key().clone());
/// let message = kms_envelope::encrypt(&writer, &EncryptOptions::new(), b"secret")?;
///
/// let reader = RawEcdhKeyring::discovery(recipient);
/// assert_eq!(&*kms_envelope::decrypt(&reader, &DecryptOptions::new(), &message)?.plaintext, b"secret");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RawEcdhKeyring {
    scheme: Scheme,
}

#[derive(Debug)]
enum Scheme {
    /// `RawPrivateKeyToStaticPublicKey`: our static key and the other party's public key.
    Static { own: EcdhPrivateKey, peer: EcdhPublicKey },
    /// `EphemeralPrivateKeyToStaticPublicKey`: the recipient's public key.
    Ephemeral { recipient: EcdhPublicKey },
    /// `PublicKeyDiscovery`: our static key.
    Discovery { own: EcdhPrivateKey },
}

impl Scheme {
    fn name(&self) -> &'static str {
        match self {
            Scheme::Static { .. } => "RawPrivateKeyToStaticPublicKey",
            Scheme::Ephemeral { .. } => "EphemeralPrivateKeyToStaticPublicKey",
            Scheme::Discovery { .. } => "PublicKeyDiscovery",
        }
    }
}

impl RawEcdhKeyring {
    /// `RawPrivateKeyToStaticPublicKey` from the sender's side: encrypts from `sender` to `recipient`, and
    /// decrypts EDKs between the two keys, in either direction (the Material Providers Library's rule).
    ///
    /// # Errors
    ///
    /// [`EcdhError::CurveMismatch`] if the keys are on different curves.
    pub fn static_keys(sender: EcdhPrivateKey, recipient: EcdhPublicKey) -> Result<Self> {
        if sender.curve() != recipient.curve() {
            return Err(EcdhError::CurveMismatch { expected: sender.curve(), found: recipient.curve() }.into());
        }
        Ok(Self { scheme: Scheme::Static { own: sender, peer: recipient } })
    }

    /// `RawPrivateKeyToStaticPublicKey` from the recipient's side, pinning the sender: decrypts only EDKs
    /// agreed between `own` and `expected_sender`, so a message it decrypts was wrapped by the holder of
    /// `expected_sender`'s private key — or by us (no non-repudiation; see the type's documentation). It
    /// encrypts to `expected_sender`.
    ///
    /// # Errors
    ///
    /// [`EcdhError::CurveMismatch`] if the keys are on different curves.
    pub fn decrypt_from(own: EcdhPrivateKey, expected_sender: EcdhPublicKey) -> Result<Self> {
        Self::static_keys(own, expected_sender)
    }

    /// `EphemeralPrivateKeyToStaticPublicKey`: encrypts to `recipient` from a fresh key pair per EDK, whose
    /// private key is dropped at once. Anonymous, and encrypt-only.
    pub fn ephemeral(recipient: EcdhPublicKey) -> Self {
        Self { scheme: Scheme::Ephemeral { recipient } }
    }

    /// `PublicKeyDiscovery`: decrypts every EDK addressed to `own`'s public key, whoever the sender.
    /// Decrypt-only.
    pub fn discovery(own: EcdhPrivateKey) -> Self {
        Self { scheme: Scheme::Discovery { own } }
    }

    /// The curve of the keyring's keys.
    pub fn curve(&self) -> EcdhCurve {
        match &self.scheme {
            Scheme::Static { own, .. } | Scheme::Discovery { own } => own.curve(),
            Scheme::Ephemeral { recipient } => recipient.curve(),
        }
    }

    /// The key agreement scheme's name in the Material Providers Library: `RawPrivateKeyToStaticPublicKey`,
    /// `EphemeralPrivateKeyToStaticPublicKey` or `PublicKeyDiscovery`.
    pub fn scheme_name(&self) -> &'static str {
        self.scheme.name()
    }

    async fn encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        let ephemeral;
        let (sender, recipient) = match &self.scheme {
            Scheme::Static { own, peer } => (own, peer),
            Scheme::Ephemeral { recipient } => {
                ephemeral = EcdhPrivateKey::generate(recipient.curve())?;
                (&ephemeral, recipient)
            }
            Scheme::Discovery { .. } => return Err(EcdhError::SchemeCannotEncrypt(self.scheme.name()).into()),
        };
        let context = materials.encryption_context().serialize()?;
        let edk = ecdh_edk::wrap_data_key(
            sender.public_key(),
            recipient,
            ecdh_edk::data_key_to_wrap(&mut materials)?.as_bytes(),
            &context,
            RAW_ECDH_PROVIDER_ID,
            |fixed_info, salt| sender.derive(recipient, fixed_info, salt),
        )?;
        materials.add_encrypted_data_key(edk);
        Ok(materials)
    }

    async fn decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        materials.require_no_data_key()?;
        let label = format!("raw ECDH {} ({})", self.scheme.name(), self.curve());
        let own = match &self.scheme {
            Scheme::Static { own, .. } | Scheme::Discovery { own } => own,
            Scheme::Ephemeral { .. } => {
                let reason = format!("{label}: {}", EcdhError::SchemeCannotDecrypt(self.scheme.name()));
                return Err(Error::NoDataKeyDecrypted { reasons: vec![reason], retry: Retry::Never });
            }
        };
        let (context, key_len) = ecdh_edk::context_and_key_len(&materials)?;
        let mut reasons = Vec::new();
        for (index, edk) in ecdh_edk::ecdh_edks(edks) {
            let peer = match &self.scheme {
                Scheme::Static { peer, .. } => Peer::Static(peer),
                _ => Peer::Sender,
            };
            match unwrap_data_key(own, peer, edk, &context, key_len) {
                Ok(Some(key)) => {
                    materials.set_data_key(DataKey::new(key.to_vec()))?;
                    return Ok(materials);
                }
                Ok(None) => reasons.push(format!("{label}: EDK {index} is for other keys")),
                Err(err) => reasons.push(format!("{label}: EDK {index}: {err}")),
            }
        }
        if reasons.is_empty() {
            reasons.push(format!("{label}: no raw-ecdh or aws-kms-ecdh encrypted data key"));
        }
        Err(Error::NoDataKeyDecrypted { reasons, retry: Retry::Never })
    }
}

/// The data key in `edk` for `own` and `peer`: `Ok(None)` if the EDK is between other keys, an error if it
/// is malformed or does not unwrap.
pub(crate) fn unwrap_data_key(
    own: &EcdhPrivateKey,
    peer: Peer<'_>,
    edk: &EncryptedDataKey,
    serialized_context: &[u8],
    key_len: usize,
) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, EcdhError> {
    let Some(edk) = EcdhEdk::select(own.public_key(), peer, edk, serialized_context, key_len)? else {
        return Ok(None);
    };
    edk.open(|fixed_info, salt| own.derive(&edk.peer, fixed_info, salt)).map(Some)
}

super::keyring_by_async_methods!(RawEcdhKeyring);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::ecdh::KMS_ECDH_PROVIDER_ID;
    use crate::keyring::ecdh_edk::test_support::{
        SUITE, assert_two_edks_differ, context, decrypt, encrypt, point_not_on_curve, reasons,
    };

    fn pair(curve: EcdhCurve) -> (EcdhPrivateKey, EcdhPrivateKey) {
        (EcdhPrivateKey::generate(curve).unwrap(), EcdhPrivateKey::generate(curve).unwrap())
    }

    fn copy(key: &EcdhPrivateKey) -> EcdhPrivateKey {
        EcdhPrivateKey::from_der(key.curve(), &key.pkcs8_der_for_tests()).unwrap()
    }

    #[test]
    fn every_scheme_and_curve_round_trips_and_decrypts_only_what_it_should() {
        for curve in EcdhCurve::ALL {
            let (sender, recipient) = pair(curve);
            let (sender_pub, recipient_pub) = (sender.public_key().clone(), recipient.public_key().clone());
            let writer = RawEcdhKeyring::static_keys(copy(&sender), recipient_pub.clone()).unwrap();
            let edks = encrypt(&writer).unwrap();
            let data_key = edks.data_key().unwrap().clone();
            let edks = edks.encrypted_data_keys().to_vec();
            assert_eq!(edks[0].provider_id, "raw-ecdh");
            assert_eq!(edks[0].provider_info.len(), curve.provider_info_len());
            assert_eq!(edks[0].ciphertext.len(), 112);
            // The writer reads its own message; the pinned recipient, and discovery, read it too.
            for reader in [
                writer,
                RawEcdhKeyring::decrypt_from(copy(&recipient), sender_pub.clone()).unwrap(),
                RawEcdhKeyring::discovery(copy(&recipient)),
            ] {
                assert_eq!(decrypt(&reader, &edks).unwrap().data_key(), Some(&data_key), "{}", reader.scheme_name());
            }
            // A recipient pinned to another sender refuses it, as does discovery with another key.
            let stranger = EcdhPrivateKey::generate(curve).unwrap();
            let pinned = RawEcdhKeyring::decrypt_from(copy(&recipient), stranger.public_key().clone()).unwrap();
            assert!(reasons(&pinned, &edks).contains("EDK 0 is for other keys"));
            assert!(reasons(&RawEcdhKeyring::discovery(stranger), &edks).contains("EDK 0 is for other keys"));

            // Ephemeral: discovery reads it; the ephemeral keyring refuses to decrypt.
            let ephemeral = RawEcdhKeyring::ephemeral(recipient_pub.clone());
            let materials = encrypt(&ephemeral).unwrap();
            let edks = materials.encrypted_data_keys();
            assert_eq!(
                decrypt(&RawEcdhKeyring::discovery(copy(&recipient)), edks).unwrap().data_key(),
                materials.data_key()
            );
            assert!(reasons(&ephemeral, edks).contains("EphemeralPrivateKeyToStaticPublicKey cannot decrypt"));
            let err = encrypt(&RawEcdhKeyring::discovery(copy(&recipient))).unwrap_err();
            assert!(matches!(err, Error::Ecdh(EcdhError::SchemeCannotEncrypt("PublicKeyDiscovery"))), "{err:?}");
        }
    }

    /// The zero IV rests on a fresh salt per EDK: two encryptions of the same data key between the same
    /// keys differ in salt, commitment key and wrapped key (a fixed or repeated salt fails this).
    #[test]
    fn two_encryptions_differ_in_salt_commitment_key_and_edk() {
        let (sender, recipient) = pair(EcdhCurve::P256);
        assert_two_edks_differ(&RawEcdhKeyring::static_keys(sender, recipient.public_key().clone()).unwrap());
    }

    /// Hostile EDKs: each is refused with its own reason, and none panics.
    #[test]
    fn hostile_edks_get_typed_refusals() {
        let curve = EcdhCurve::P384;
        let recipient = EcdhPrivateKey::generate(curve).unwrap();
        let writer = RawEcdhKeyring::ephemeral(recipient.public_key().clone());
        let edk = encrypt(&writer).unwrap().encrypted_data_keys()[0].clone();
        let key_len = SUITE.key_len();
        let ctx = context().serialize().unwrap();
        let unwrap = |edk: &EncryptedDataKey| unwrap_data_key(&recipient, Peer::Sender, edk, &ctx, key_len);
        assert!(unwrap(&edk).unwrap().is_some());

        let mut info = edk.clone();
        info.provider_info.push(0);
        assert!(matches!(unwrap(&info), Err(EcdhError::ProviderInfo { .. })));
        info.provider_info.truncate(curve.provider_info_len());
        info.provider_info[0] = 2;
        assert!(matches!(unwrap(&info), Err(EcdhError::ProviderInfo { offset: 0, .. })));

        let mut short = edk.clone();
        short.ciphertext.pop();
        assert_eq!(unwrap(&short), Err(EcdhError::CiphertextLength { len: 111, expected: 112 }));

        let mut commitment = edk.clone();
        commitment.ciphertext[40] ^= 1;
        assert_eq!(unwrap(&commitment), Err(EcdhError::CommitmentMismatch));
        let mut salt = edk.clone();
        salt.ciphertext[0] ^= 1;
        assert_eq!(unwrap(&salt), Err(EcdhError::CommitmentMismatch));
        let mut wrapped = edk.clone();
        wrapped.ciphertext[70] ^= 1;
        assert_eq!(unwrap(&wrapped), Err(EcdhError::UnwrapFailed));
        let other_context = unwrap_data_key(&recipient, Peer::Sender, &edk, b"", key_len);
        assert_eq!(other_context, Err(EcdhError::CommitmentMismatch));

        // The sender key the EDK names. The other parity is -P, on the curve: another shared secret.
        let sender_at = 1 + 4 + curve.compressed_len() + 4;
        let mut parity = edk.clone();
        parity.provider_info[sender_at] ^= 1;
        assert_eq!(unwrap(&parity), Err(EcdhError::CommitmentMismatch));
        let mut prefix = edk.clone();
        prefix.provider_info[sender_at] = 0x05;
        assert!(matches!(unwrap(&prefix), Err(EcdhError::MalformedKey(_))));
        let mut above_p = edk.clone();
        above_p.provider_info[sender_at + 1..].fill(0xff);
        assert_eq!(unwrap(&above_p), Err(EcdhError::NotOnCurve(curve)));
        // A compressed X that is on no point of P-384 (found by search, deterministic).
        let mut off = edk.clone();
        let not_on_curve = point_not_on_curve(curve);
        off.provider_info[sender_at..].copy_from_slice(&not_on_curve);
        assert_eq!(unwrap(&off), Err(EcdhError::NotOnCurve(curve)));

        // Through the keyring: reasons name each, and a P-256 keyring reads none of a P-384 EDK.
        let keyring = RawEcdhKeyring::discovery(copy(&recipient));
        let all = reasons(&keyring, &[info, short, commitment, wrapped, off]);
        for says in ["provider info", "112 expected", "commitment key", "does not authenticate", "not a point"] {
            assert!(all.contains(says), "{all}");
        }
        let p256 = RawEcdhKeyring::discovery(EcdhPrivateKey::generate(EcdhCurve::P256).unwrap());
        assert!(reasons(&p256, std::slice::from_ref(&edk)).contains("length does not fit the curve"));
    }

    #[test]
    fn an_aws_kms_ecdh_edk_is_read_and_foreign_edks_are_skipped() {
        let (sender, recipient) = pair(EcdhCurve::P521);
        let mut edk = encrypt(&RawEcdhKeyring::static_keys(copy(&sender), recipient.public_key().clone()).unwrap())
            .unwrap()
            .encrypted_data_keys()[0]
            .clone();
        edk.provider_id = KMS_ECDH_PROVIDER_ID.into();
        let aes = EncryptedDataKey { provider_id: "other".into(), provider_info: vec![1], ciphertext: vec![2] };
        let reader = RawEcdhKeyring::decrypt_from(recipient, sender.public_key().clone()).unwrap();
        assert!(decrypt(&reader, &[aes.clone(), edk]).is_ok());
        assert!(reasons(&reader, &[aes]).contains("no raw-ecdh or aws-kms-ecdh encrypted data key"));
        let other = EcdhPrivateKey::generate(EcdhCurve::P256).unwrap();
        let err = RawEcdhKeyring::static_keys(other, sender.public_key().clone()).unwrap_err();
        assert!(matches!(err, Error::Ecdh(EcdhError::CurveMismatch { .. })), "{err:?}");
    }
}
