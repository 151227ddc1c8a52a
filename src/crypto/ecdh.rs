//! Elliptic-curve Diffie–Hellman on P-256, P-384 and P-521 (feature `aws-lc`), on AWS-LC through
//! `aws-lc-rs`, and the ECDH keyrings' key derivation and key wrapping on top of it.
//!
//! Every public key is validated when it is built, whatever it comes from (a key file, an EDK): its curve
//! is the configured one, it is not the point at infinity, and AWS-LC's `EC_KEY_check_key` accepts it
//! (coordinates in the field, point on the curve). The shared secret Z never leaves [`EcdhPrivateKey::derive`]:
//! it goes straight into the counter-mode KDF. AWS-LC clears private keys and Z when it frees them.

use std::fmt;

use aws_lc_rs::agreement::{self, ECDH_P256, ECDH_P384, ECDH_P521, ParsedPublicKey, UnparsedPublicKey};
use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyCompressedBin};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::aead::AeadKey;
use super::kdf_ctr::{self, KdfCtrDigest};
use crate::error::EcdhError;
use crate::format::ecdh::{self, COMMITMENT_KEY_LEN, EcdhCurve, SALT_LEN, WRAP_TAG_LEN};
use crate::format::header::IV_LEN;

fn algorithm(curve: EcdhCurve) -> &'static agreement::Algorithm {
    match curve {
        EcdhCurve::P256 => &ECDH_P256,
        EcdhCurve::P384 => &ECDH_P384,
        EcdhCurve::P521 => &ECDH_P521,
    }
}

fn malformed(what: impl Into<String>) -> EcdhError {
    EcdhError::MalformedKey(what.into())
}

/// A validated public key of one of the ECDH curves.
#[derive(Clone)]
pub struct EcdhPublicKey {
    curve: EcdhCurve,
    compressed: Vec<u8>,
    parsed: ParsedPublicKey,
}

impl fmt::Debug for EcdhPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.compressed.iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "EcdhPublicKey({}, {hex})", self.curve)
    }
}

impl PartialEq for EcdhPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.curve == other.curve && self.compressed == other.compressed
    }
}

impl Eq for EcdhPublicKey {}

impl EcdhPublicKey {
    /// From DER SubjectPublicKeyInfo (what `openssl pkey -pubout -outform DER` writes, and what the Material
    /// Providers Library takes), on `curve`.
    ///
    /// # Errors
    ///
    /// [`EcdhError::MalformedKey`], [`EcdhError::UnknownCurve`], [`EcdhError::CurveMismatch`],
    /// [`EcdhError::PointAtInfinity`] or [`EcdhError::NotOnCurve`].
    pub fn from_der(curve: EcdhCurve, der: &[u8]) -> Result<Self, EcdhError> {
        let (found, point) = ecdh::spki_point(der)?;
        if found != curve {
            return Err(EcdhError::CurveMismatch { expected: curve, found });
        }
        Self::from_point(curve, point)
    }

    /// From PEM (`PUBLIC KEY`, SubjectPublicKeyInfo), on `curve`.
    ///
    /// # Errors
    ///
    /// As [`from_der`](Self::from_der), and [`EcdhError::MalformedKey`] for a PEM file of another kind.
    pub fn from_pem(curve: EcdhCurve, pem: &[u8]) -> Result<Self, EcdhError> {
        let (label, der) = super::pem::decode(pem).map_err(malformed)?;
        if label != "PUBLIC KEY" {
            return Err(malformed(format!("a PEM public key is PUBLIC KEY, not {label}")));
        }
        Self::from_der(curve, &der)
    }

    /// From a SEC 1 point on `curve`: compressed (`02|03 ‖ X`) as ECDH EDKs hold them, or uncompressed.
    ///
    /// # Errors
    ///
    /// [`EcdhError::PointAtInfinity`] for the one-byte `00`, [`EcdhError::MalformedKey`] for a length or
    /// first byte that is no point encoding of the curve, [`EcdhError::NotOnCurve`] for the rest AWS-LC
    /// refuses.
    pub fn from_point(curve: EcdhCurve, point: &[u8]) -> Result<Self, EcdhError> {
        let field = curve.field_len();
        let compressed = match (point.first(), point.len()) {
            (Some(0x00), 1) => return Err(EcdhError::PointAtInfinity),
            (Some(0x02 | 0x03), len) if len == 1 + field => point.to_vec(),
            (Some(0x04), len) if len == 1 + 2 * field => {
                let mut compressed = Vec::with_capacity(1 + field);
                compressed.push(0x02 | (point[len - 1] & 1));
                compressed.extend_from_slice(&point[1..=field]);
                compressed
            }
            _ => return Err(malformed(format!("not a SEC 1 point encoding on {curve}"))),
        };
        let parsed = ParsedPublicKey::try_from(UnparsedPublicKey::new(algorithm(curve), point))
            .map_err(|_| EcdhError::NotOnCurve(curve))?;
        Ok(Self { curve, compressed, parsed })
    }

    /// The curve.
    pub fn curve(&self) -> EcdhCurve {
        self.curve
    }

    /// The SEC 1 compressed point, as ECDH EDKs name keys.
    pub fn compressed(&self) -> &[u8] {
        &self.compressed
    }

    /// DER SubjectPublicKeyInfo with the *uncompressed* point: what KMS `DeriveSharedSecret` takes as the
    /// peer's public key, and what the Material Providers Library sends (it decompresses the EDK's keys).
    ///
    /// # Errors
    ///
    /// [`EcdhError::MalformedKey`] if AWS-LC cannot encode the key (it can: the key was validated).
    pub fn to_spki_der(&self) -> Result<Vec<u8>, EcdhError> {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, ECDSA_P521_SHA512_ASN1};
        // The ECDSA view of the same point: aws-lc-rs encodes that one as DER, uncompressed.
        let verification = match self.curve {
            EcdhCurve::P256 => &ECDSA_P256_SHA256_ASN1,
            EcdhCurve::P384 => &ECDSA_P384_SHA384_ASN1,
            EcdhCurve::P521 => &ECDSA_P521_SHA512_ASN1,
        };
        let parsed = aws_lc_rs::signature::UnparsedPublicKey::new(verification, &self.compressed)
            .parse()
            .map_err(|_| malformed("AWS-LC could not decompress the public key"))?;
        let der: PublicKeyX509Der<'_> =
            parsed.as_der().map_err(|_| malformed("AWS-LC could not encode the public key"))?;
        Ok(der.as_ref().to_vec())
    }
}

/// A private key of one of the ECDH curves. Never printed; AWS-LC clears it when dropped.
pub struct EcdhPrivateKey {
    key: agreement::PrivateKey,
    public: EcdhPublicKey,
}

impl fmt::Debug for EcdhPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EcdhPrivateKey({}, public {:?}, <redacted>)", self.public.curve, self.public)
    }
}

impl EcdhPrivateKey {
    /// From PEM: `PRIVATE KEY` (PKCS #8, what the Material Providers Library takes) or `EC PRIVATE KEY`
    /// (SEC 1, what `openssl ecparam -genkey` writes), on `curve`. Encrypted PEM is not supported.
    ///
    /// # Errors
    ///
    /// [`EcdhError::MalformedKey`] (the reason says what is wrong), [`EcdhError::CurveMismatch`].
    pub fn from_pem(curve: EcdhCurve, pem: &[u8]) -> Result<Self, EcdhError> {
        let (label, der) = super::pem::decode(pem).map_err(malformed)?;
        match label.as_str() {
            "PRIVATE KEY" | "EC PRIVATE KEY" => Self::from_der(curve, &der),
            "ENCRYPTED PRIVATE KEY" => Err(malformed(super::pem::ENCRYPTED)),
            other => Err(malformed(format!("a PEM private key is PRIVATE KEY or EC PRIVATE KEY, not {other}"))),
        }
    }

    /// From DER: PKCS #8 or SEC 1 (RFC 5915) `ECPrivateKey`, on `curve`.
    ///
    /// # Errors
    ///
    /// As [`from_pem`](Self::from_pem).
    pub fn from_der(curve: EcdhCurve, der: &[u8]) -> Result<Self, EcdhError> {
        let key =
            agreement::PrivateKey::from_private_key_der(algorithm(curve), der).map_err(|_| {
                match EcdhCurve::ALL
                    .into_iter()
                    .find(|&other| agreement::PrivateKey::from_private_key_der(algorithm(other), der).is_ok())
                {
                    Some(found) => EcdhError::CurveMismatch { expected: curve, found },
                    None => malformed(format!("not a {curve} private key (PKCS #8 or SEC 1 DER)")),
                }
            })?;
        Self::new(curve, key)
    }

    /// A fresh key from AWS-LC's random generator: the ephemeral sender key of one EDK.
    ///
    /// # Errors
    ///
    /// [`EcdhError::MalformedKey`] if AWS-LC fails to make one (it does not, short of a broken RNG).
    pub fn generate(curve: EcdhCurve) -> Result<Self, EcdhError> {
        let key = agreement::PrivateKey::generate(algorithm(curve))
            .map_err(|_| malformed("AWS-LC could not generate a key"))?;
        Self::new(curve, key)
    }

    fn new(curve: EcdhCurve, key: agreement::PrivateKey) -> Result<Self, EcdhError> {
        let public = key.compute_public_key().map_err(|_| malformed("AWS-LC could not compute the public key"))?;
        // Cross-checked against AWS-LC's own compression, so that a key names itself as every ESDK does.
        let compressed: EcPublicKeyCompressedBin<'_> =
            public.as_be_bytes().map_err(|_| malformed("AWS-LC could not compress the public key"))?;
        let public = EcdhPublicKey::from_point(curve, public.as_ref())?;
        debug_assert_eq!(public.compressed(), compressed.as_ref());
        Ok(Self { key, public })
    }

    /// The public half.
    pub fn public_key(&self) -> &EcdhPublicKey {
        &self.public
    }

    /// The curve.
    pub fn curve(&self) -> EcdhCurve {
        self.public.curve
    }

    /// The key as PKCS #8 DER, for tests that need two handles on one key.
    #[cfg(test)]
    pub(crate) fn pkcs8_der_for_tests(&self) -> Vec<u8> {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
        AsDer::<Pkcs8V1Der>::as_der(&self.key).unwrap().as_ref().to_vec()
    }

    /// The commitment and wrapping keys of one EDK: `KdfCtr(HMAC-SHA-384, Z, fixed_info, salt, 64 bytes)`
    /// with Z = the X coordinate of this key times `peer`.
    ///
    /// # Errors
    ///
    /// [`EcdhError::CurveMismatch`] if `peer` is on another curve.
    pub(crate) fn derive(
        &self,
        peer: &EcdhPublicKey,
        fixed_info: &[u8],
        salt: &[u8; SALT_LEN],
    ) -> Result<EcdhWrappingKeys, EcdhError> {
        if peer.curve != self.curve() {
            return Err(EcdhError::CurveMismatch { expected: self.curve(), found: peer.curve });
        }
        agreement::agree(&self.key, peer.parsed.clone(), EcdhError::NotOnCurve(peer.curve), |z| {
            EcdhWrappingKeys::from_shared_secret(self.curve(), z, fixed_info, salt)
        })
    }
}

/// The KDF output of one ECDH EDK: the commitment key, then the AES-256-GCM wrapping key. Wiped on drop.
pub(crate) struct EcdhWrappingKeys(Zeroizing<[u8; COMMITMENT_KEY_LEN + 32]>);

impl EcdhWrappingKeys {
    /// The AES-GCM IV: all zero. Safe only because every EDK has its own random salt, hence its own key.
    const IV: [u8; IV_LEN] = [0; IV_LEN];

    /// `KdfCtr(HMAC-SHA-384, z, fixed_info, salt, 64 bytes)` for a shared secret agreed elsewhere (by AWS
    /// KMS `DeriveSharedSecret`): `z` is the X coordinate of the shared point on `curve`.
    ///
    /// # Errors
    ///
    /// [`EcdhError::SharedSecretLength`] if `z` is not a field element's length for `curve`.
    pub(crate) fn from_shared_secret(
        curve: EcdhCurve,
        z: &[u8],
        fixed_info: &[u8],
        salt: &[u8; SALT_LEN],
    ) -> Result<Self, EcdhError> {
        if z.len() != curve.field_len() {
            return Err(EcdhError::SharedSecretLength { len: z.len(), curve });
        }
        let mut okm = Zeroizing::new([0u8; COMMITMENT_KEY_LEN + 32]);
        kdf_ctr::derive(KdfCtrDigest::Sha384, z, fixed_info, salt, &mut okm[..]);
        Ok(Self(okm))
    }

    /// The commitment key (first half), to store in the EDK.
    pub(crate) fn commitment_key(&self) -> &[u8; COMMITMENT_KEY_LEN] {
        self.0[..COMMITMENT_KEY_LEN].try_into().expect("first half")
    }

    fn wrapping_key(&self) -> AeadKey {
        AeadKey::new(&self.0[COMMITMENT_KEY_LEN..]).expect("a 32-byte AES key")
    }

    /// Wraps `data_key` under the zero IV with `fixed_info` as AAD: the ciphertext and its tag.
    pub(crate) fn seal(&self, data_key: &[u8], fixed_info: &[u8]) -> (Vec<u8>, [u8; WRAP_TAG_LEN]) {
        let mut ciphertext = data_key.to_vec();
        let tag = self.wrapping_key().seal_in_place(&Self::IV, fixed_info, &mut ciphertext);
        (ciphertext, tag)
    }

    /// Checks the EDK's commitment key in constant time, then unwraps the data key.
    ///
    /// # Errors
    ///
    /// [`EcdhError::CommitmentMismatch`], then [`EcdhError::UnwrapFailed`].
    pub(crate) fn open(
        &self,
        stored_commitment: &[u8; COMMITMENT_KEY_LEN],
        wrapped_key: &[u8],
        tag: &[u8; WRAP_TAG_LEN],
        fixed_info: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EcdhError> {
        if !bool::from(self.commitment_key().ct_eq(stored_commitment)) {
            return Err(EcdhError::CommitmentMismatch);
        }
        let mut data_key = Zeroizing::new(wrapped_key.to_vec());
        self.wrapping_key()
            .open_in_place(&Self::IV, fixed_info, &mut data_key, tag)
            .map_err(|_| EcdhError::UnwrapFailed)?;
        Ok(data_key)
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der, Pkcs8V1Der};

    use super::*;

    fn generated(curve: EcdhCurve) -> (agreement::PrivateKey, Vec<u8>, Vec<u8>) {
        let key = agreement::PrivateKey::generate(algorithm(curve)).unwrap();
        let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&key).unwrap().as_ref().to_vec();
        let spki = key.compute_public_key().unwrap().as_der().unwrap().as_ref().to_vec();
        (key, pkcs8, spki)
    }

    #[test]
    fn both_sides_derive_the_same_keys_and_unwrap() {
        for curve in EcdhCurve::ALL {
            let (_, a_der, a_spki) = generated(curve);
            let (b_key, _, b_spki) = generated(curve);
            let sec1 = AsDer::<EcPrivateKeyRfc5915Der>::as_der(&b_key).unwrap().as_ref().to_vec();
            let a = EcdhPrivateKey::from_der(curve, &a_der).unwrap();
            let b = EcdhPrivateKey::from_der(curve, &sec1).unwrap();
            assert_eq!(a.public_key(), &EcdhPublicKey::from_der(curve, &a_spki).unwrap());
            assert_eq!(b.public_key(), &EcdhPublicKey::from_der(curve, &b_spki).unwrap());
            assert_eq!(a.public_key().compressed().len(), curve.compressed_len());
            // What KMS DeriveSharedSecret is sent: the uncompressed SubjectPublicKeyInfo AWS-LC writes.
            assert_eq!(a.public_key().to_spki_der().unwrap(), a_spki);
            let from_compressed = EcdhPublicKey::from_point(curve, b.public_key().compressed()).unwrap();
            assert_eq!(from_compressed.to_spki_der().unwrap(), b_spki);
            let salt = [9u8; SALT_LEN];
            let ab = a.derive(b.public_key(), b"info", &salt).unwrap();
            let ba = b.derive(a.public_key(), b"info", &salt).unwrap();
            assert_eq!(ab.0, ba.0);
            let (ciphertext, tag) = ab.seal(&[7; 32], b"info");
            assert_eq!(&*ba.open(ab.commitment_key(), &ciphertext, &tag, b"info").unwrap(), &[7; 32]);
            assert_eq!(ba.open(ab.commitment_key(), &ciphertext, &tag, b"infO"), Err(EcdhError::UnwrapFailed));
            assert_eq!(ba.open(&[0; 32], &ciphertext, &tag, b"info"), Err(EcdhError::CommitmentMismatch));
            let other = a.derive(b.public_key(), b"info", &[8u8; SALT_LEN]).unwrap();
            assert_ne!(other.0, ab.0, "another salt, other keys");
            assert!(format!("{a:?}").contains("redacted"));
        }
    }

    #[test]
    fn hostile_public_keys_are_refused_with_their_reason() {
        let curve = EcdhCurve::P256;
        let (_, _, spki) = generated(curve);
        let (_, point) = ecdh::spki_point(&spki).unwrap();
        assert_eq!(EcdhPublicKey::from_point(curve, &[0]), Err(EcdhError::PointAtInfinity));
        assert_eq!(EcdhPublicKey::from_der(curve, &ecdh::spki_der(curve, &[0])), Err(EcdhError::PointAtInfinity));
        // Y + 1: off the curve.
        let mut off = point.to_vec();
        *off.last_mut().unwrap() ^= 1;
        assert_eq!(EcdhPublicKey::from_point(curve, &off), Err(EcdhError::NotOnCurve(curve)));
        assert_eq!(EcdhPublicKey::from_der(curve, &ecdh::spki_der(curve, &off)), Err(EcdhError::NotOnCurve(curve)));
        // X = 2^256 - 1 > p: not a field element, compressed.
        let mut big = vec![0x02];
        big.extend_from_slice(&[0xff; 32]);
        assert_eq!(EcdhPublicKey::from_point(curve, &big), Err(EcdhError::NotOnCurve(curve)));
        for bad in [&[0x05; 33][..], &[0x02; 32], &[0x04; 64], &[], &[0x00, 0x00]] {
            assert!(matches!(EcdhPublicKey::from_point(curve, bad), Err(EcdhError::MalformedKey(_))), "{bad:?}");
        }
        // Another curve's key, in both key kinds.
        let (_, p384_der, p384_spki) = generated(EcdhCurve::P384);
        let mismatch = EcdhError::CurveMismatch { expected: curve, found: EcdhCurve::P384 };
        assert_eq!(EcdhPublicKey::from_der(curve, &p384_spki), Err(mismatch.clone()));
        assert_eq!(EcdhPrivateKey::from_der(curve, &p384_der).unwrap_err(), mismatch);
        // A compressed point of P-256's length read as P-384: a length that is no P-384 encoding.
        let a = EcdhPrivateKey::generate(curve).unwrap();
        let p384 = EcdhPrivateKey::generate(EcdhCurve::P384).unwrap();
        assert!(EcdhPublicKey::from_point(EcdhCurve::P384, a.public_key().compressed()).is_err());
        assert!(matches!(a.derive(p384.public_key(), b"", &[0; 32]), Err(EcdhError::CurveMismatch { .. })));
    }

    #[test]
    fn key_files_are_read_as_pem_and_errors_say_why() {
        let (_, der, spki) = generated(EcdhCurve::P521);
        let b64 = |der: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", b64(&der));
        let public = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", b64(&spki));
        let key = EcdhPrivateKey::from_pem(EcdhCurve::P521, pem.as_bytes()).unwrap();
        assert_eq!(key.public_key(), &EcdhPublicKey::from_pem(EcdhCurve::P521, public.as_bytes()).unwrap());
        for (pem, says) in [
            ("not a pem", "not a PEM file"),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not CERTIFICATE"),
            ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted PEM"),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a P-521 private key"),
        ] {
            let err = EcdhPrivateKey::from_pem(EcdhCurve::P521, pem.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
        assert!(EcdhPublicKey::from_pem(EcdhCurve::P521, pem.as_bytes()).is_err());
    }
}
