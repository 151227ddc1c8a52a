//! The ECDH keyrings' bytes (`raw-ecdh`, `aws-kms-ecdh`; design note `docs/design/issue-29-keyrings.md`
//! §2.2–2.4): the curves, the EDK provider info and ciphertext layout, the KDF's fixed info, and the public
//! key encodings (SubjectPublicKeyInfo DER, SEC 1 points). Nothing here calls a cipher or checks that a
//! point lies on its curve: `crypto::ecdh` does that with AWS-LC.
//!
//! Where the specification (`framework/raw-ecdh-keyring.md`) disagrees with the Material Providers Library
//! 1.11 and the 99 `raw-ecdh` test vectors, those decide; the deviations, each pinned by the vectors:
//! 1. the curve it calls "ECC NIST P512" is P-521 (`p521` in the fixed info);
//! 2. public keys in the provider info are SEC 1 *compressed* points of 33, 49 and 67 bytes, not "32 or 48
//!    or 56";
//! 3. the fixed info's label is lowercase `ecdh-key-derivation`;
//! 4. the provider info's version is one byte `0x01`, not a "UInt32 of length 1";
//! 5. the AES-GCM AAD is exactly the fixed info (which already holds the version and the context);
//! 6. the provider info orders recipient, sender; the fixed info orders sender, recipient (both real).

use std::fmt;

use crate::error::EcdhError;

/// The provider id the raw ECDH keyring writes.
pub const RAW_ECDH_PROVIDER_ID: &str = "raw-ecdh";
/// The provider id the AWS KMS ECDH keyring writes. Both ECDH keyrings read EDKs of either id, as the
/// Material Providers Library's do: the wire format is the same.
pub const KMS_ECDH_PROVIDER_ID: &str = "aws-kms-ecdh";
/// The one keyring version byte that opens the provider info.
pub const ECDH_KEYRING_VERSION: u8 = 0x01;
/// The random KDF salt at the start of the EDK ciphertext.
pub const SALT_LEN: usize = 32;
/// The commitment key after the salt.
pub const COMMITMENT_KEY_LEN: usize = 32;
/// The AES-GCM tag at the end of the EDK ciphertext.
pub const WRAP_TAG_LEN: usize = 16;

/// A NIST curve of the ECDH keyrings. (The specification also names SM2, which the Material Providers
/// Library refuses: so do we, as an unknown curve.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcdhCurve {
    /// NIST P-256 (secp256r1), `ECC_NIST_P256`.
    P256,
    /// NIST P-384 (secp384r1), `ECC_NIST_P384`.
    P384,
    /// NIST P-521 (secp521r1), `ECC_NIST_P521`.
    P521,
}

impl EcdhCurve {
    /// Every curve.
    pub const ALL: [EcdhCurve; 3] = [EcdhCurve::P256, EcdhCurve::P384, EcdhCurve::P521];

    /// Bytes of a field element: of the shared secret Z and of a point's X coordinate (32, 48, 66).
    pub const fn field_len(self) -> usize {
        match self {
            EcdhCurve::P256 => 32,
            EcdhCurve::P384 => 48,
            EcdhCurve::P521 => 66,
        }
    }

    /// Bytes of a SEC 1 compressed point: `02|03 ‖ X` (33, 49, 67).
    pub const fn compressed_len(self) -> usize {
        1 + self.field_len()
    }

    /// Bytes of the whole provider info: version, then two length-prefixed compressed points (75, 107, 143).
    pub const fn provider_info_len(self) -> usize {
        1 + 2 * (4 + self.compressed_len())
    }

    /// The curve's name in the fixed info: `p256`, `p384`, `p521`.
    pub const fn kdf_name(self) -> &'static str {
        match self {
            EcdhCurve::P256 => "p256",
            EcdhCurve::P384 => "p384",
            EcdhCurve::P521 => "p521",
        }
    }

    /// The Material Providers Library's name: `ECC_NIST_P256`, `ECC_NIST_P384`, `ECC_NIST_P521`.
    pub const fn mpl_name(self) -> &'static str {
        match self {
            EcdhCurve::P256 => "ECC_NIST_P256",
            EcdhCurve::P384 => "ECC_NIST_P384",
            EcdhCurve::P521 => "ECC_NIST_P521",
        }
    }

    /// The curve named `name`: `p256`/`P-256`/`ECC_NIST_P256` (any case) and likewise for 384 and 521.
    pub fn from_name(name: &str) -> Option<Self> {
        let bits = name.to_ascii_lowercase().replace(['-', '_'], "");
        let bits = bits.strip_prefix("eccnist").unwrap_or(&bits);
        match bits.strip_prefix('p')? {
            "256" => Some(EcdhCurve::P256),
            "384" => Some(EcdhCurve::P384),
            "521" => Some(EcdhCurve::P521),
            _ => None,
        }
    }

    /// The named curve's object identifier, as DER (tag, length, value).
    const fn oid_der(self) -> &'static [u8] {
        match self {
            // 1.2.840.10045.3.1.7
            EcdhCurve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            // 1.3.132.0.34
            EcdhCurve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
            // 1.3.132.0.35
            EcdhCurve::P521 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
        }
    }
}

impl fmt::Display for EcdhCurve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EcdhCurve::P256 => "P-256",
            EcdhCurve::P384 => "P-384",
            EcdhCurve::P521 => "P-521",
        })
    }
}

/// The two public keys an ECDH EDK names, as SEC 1 compressed points of its curve (lengths checked, points
/// not yet validated: `EcdhPublicKey::from_point` does that).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcdhProviderInfo<'a> {
    /// The recipient's public key: whoever can decrypt with the matching private key.
    pub recipient: &'a [u8],
    /// The sender's public key: a static sender's, or a fresh ephemeral one.
    pub sender: &'a [u8],
}

impl<'a> EcdhProviderInfo<'a> {
    /// Parses `01 ‖ u32 len ‖ recipient ‖ u32 len ‖ sender` of exactly `curve`'s length
    /// ([`EcdhCurve::provider_info_len`]).
    ///
    /// # Errors
    ///
    /// [`EcdhError::ProviderInfo`] with the offset of the first byte that does not fit.
    pub fn parse(curve: EcdhCurve, info: &'a [u8]) -> Result<Self, EcdhError> {
        let bad = |offset: usize, what: &'static str| EcdhError::ProviderInfo { offset, what };
        if info.len() != curve.provider_info_len() {
            return Err(bad(info.len().min(curve.provider_info_len()), "length does not fit the curve"));
        }
        if info[0] != ECDH_KEYRING_VERSION {
            return Err(bad(0, "unknown keyring version (only 1 is defined)"));
        }
        let point_len = curve.compressed_len();
        let mut at = 1;
        let mut point = || {
            let len = u32::from_be_bytes(info[at..at + 4].try_into().expect("4 bytes"));
            if usize::try_from(len).ok() != Some(point_len) {
                return Err(bad(at, "public key length does not fit the curve"));
            }
            let key = &info[at + 4..at + 4 + point_len];
            at += 4 + point_len;
            Ok(key)
        };
        let recipient = point()?;
        let sender = point()?;
        Ok(Self { recipient, sender })
    }

    /// The provider info's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.recipient.len() + self.sender.len());
        out.push(ECDH_KEYRING_VERSION);
        for key in [self.recipient, self.sender] {
            out.extend_from_slice(&(key.len() as u32).to_be_bytes());
            out.extend_from_slice(key);
        }
        out
    }
}

/// An ECDH EDK's ciphertext: `salt(32) ‖ commitment key(32) ‖ wrapped data key ‖ tag(16)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcdhCiphertext<'a> {
    /// The KDF salt, fresh for every EDK.
    pub salt: &'a [u8; SALT_LEN],
    /// The first half of the KDF output, compared in constant time before unwrapping.
    pub commitment_key: &'a [u8; COMMITMENT_KEY_LEN],
    /// The AES-256-GCM ciphertext of the data key.
    pub wrapped_key: &'a [u8],
    /// Its tag.
    pub tag: &'a [u8; WRAP_TAG_LEN],
}

impl<'a> EcdhCiphertext<'a> {
    /// The total length for a data key of `key_len` bytes.
    pub const fn len_for(key_len: usize) -> usize {
        SALT_LEN + COMMITMENT_KEY_LEN + key_len + WRAP_TAG_LEN
    }

    /// Splits `ciphertext`, which must be exactly [`len_for`](Self::len_for)`(key_len)` bytes (the Material
    /// Providers Library reads any longer tail as the tag, which then fails; refusing first is cheaper).
    ///
    /// # Errors
    ///
    /// [`EcdhError::CiphertextLength`].
    pub fn parse(key_len: usize, ciphertext: &'a [u8]) -> Result<Self, EcdhError> {
        let expected = Self::len_for(key_len);
        if ciphertext.len() != expected {
            return Err(EcdhError::CiphertextLength { len: ciphertext.len(), expected });
        }
        let (salt, rest) = ciphertext.split_at(SALT_LEN);
        let (commitment_key, rest) = rest.split_at(COMMITMENT_KEY_LEN);
        let (wrapped_key, tag) = rest.split_at(key_len);
        Ok(Self {
            salt: salt.try_into().expect("split at SALT_LEN"),
            commitment_key: commitment_key.try_into().expect("split at COMMITMENT_KEY_LEN"),
            wrapped_key,
            tag: tag.try_into().expect("the rest is WRAP_TAG_LEN"),
        })
    }
}

/// The KDF's fixed info, which is also the AES-GCM AAD:
/// `"ecdh-key-derivation" 00 curve 00 "HMAC_SHA384" 00 sender ‖ recipient 00 01 00 context`, where `context`
/// is the encryption context as the header serializes it (empty for an empty context).
pub fn fixed_info(curve: EcdhCurve, sender: &[u8], recipient: &[u8], serialized_context: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + sender.len() + recipient.len() + serialized_context.len());
    out.extend_from_slice(b"ecdh-key-derivation\x00");
    out.extend_from_slice(curve.kdf_name().as_bytes());
    out.extend_from_slice(b"\x00HMAC_SHA384\x00");
    out.extend_from_slice(sender);
    out.extend_from_slice(recipient);
    out.extend_from_slice(&[0x00, ECDH_KEYRING_VERSION, 0x00]);
    out.extend_from_slice(serialized_context);
    out
}

/// The `id-ecPublicKey` AlgorithmIdentifier OID, DER.
const EC_PUBLIC_KEY_OID: [u8; 9] = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// The curve and the SEC 1 point of a DER SubjectPublicKeyInfo for an EC key:
/// `SEQUENCE { SEQUENCE { id-ecPublicKey, namedCurve }, BIT STRING (00 ‖ point) }`, nothing after it.
///
/// # Errors
///
/// [`EcdhError::MalformedKey`] for anything that is not that shape, [`EcdhError::UnknownCurve`] for an EC
/// key on another curve (or with explicit parameters).
pub fn spki_point(der: &[u8]) -> Result<(EcdhCurve, &[u8]), EcdhError> {
    let malformed = |what: &'static str| EcdhError::MalformedKey(what.into());
    let (outer, rest) = der_element(der, 0x30).ok_or_else(|| malformed("not a DER SubjectPublicKeyInfo"))?;
    if !rest.is_empty() {
        return Err(malformed("bytes after the SubjectPublicKeyInfo"));
    }
    let (algorithm, rest) = der_element(outer, 0x30).ok_or_else(|| malformed("no AlgorithmIdentifier"))?;
    let (bits, rest) = der_element(rest, 0x03).ok_or_else(|| malformed("no public key BIT STRING"))?;
    if !rest.is_empty() {
        return Err(malformed("bytes after the public key"));
    }
    let parameters = algorithm
        .strip_prefix(&EC_PUBLIC_KEY_OID[..])
        .ok_or_else(|| malformed("not an elliptic-curve public key (id-ecPublicKey)"))?;
    let curve = EcdhCurve::ALL.into_iter().find(|c| c.oid_der() == parameters).ok_or(EcdhError::UnknownCurve)?;
    let point = bits.strip_prefix(&[0x00][..]).ok_or_else(|| malformed("a BIT STRING with unused bits"))?;
    Ok((curve, point))
}

/// A DER SubjectPublicKeyInfo for `point` (a SEC 1 point) on `curve`: for tests and fuzz seeds, which build
/// hostile keys with it.
#[cfg(any(test, feature = "fuzzing"))]
pub fn spki_der(curve: EcdhCurve, point: &[u8]) -> Vec<u8> {
    let mut algorithm = EC_PUBLIC_KEY_OID.to_vec();
    algorithm.extend_from_slice(curve.oid_der());
    let mut bits = vec![0x00];
    bits.extend_from_slice(point);
    let mut body = der_wrap(0x30, &algorithm);
    body.extend_from_slice(&der_wrap(0x03, &bits));
    der_wrap(0x30, &body)
}

/// One DER element of tag `tag` at the start of `input` (definite length of at most two length bytes, the
/// most an EC key needs): its content and what follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    let (&len_byte, rest) = rest.split_first()?;
    if first != tag {
        return None;
    }
    let (len, rest) = match len_byte {
        0..=0x7f => (usize::from(len_byte), rest),
        0x81 => (usize::from(*rest.first()?), &rest[1..]),
        0x82 => (usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])), &rest[2..]),
        _ => return None,
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(any(test, feature = "fuzzing"))]
fn der_wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        len @ 0..=0x7f => out.push(len as u8),
        len @ 0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        len => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_those_of_the_mpl_constants() {
        let sizes: Vec<_> =
            EcdhCurve::ALL.iter().map(|c| (c.compressed_len(), c.provider_info_len(), c.kdf_name())).collect();
        // `ECDH_PUBLIC_KEY_COMPRESSED_LEN_*` and `ECDH_PROVIDER_INFO_*_LEN` of MPL 1.11's Constants.py.
        assert_eq!(sizes, [(33, 75, "p256"), (49, 107, "p384"), (67, 143, "p521")]);
        assert_eq!(EcdhCiphertext::len_for(32), 112);
    }

    #[test]
    fn provider_info_round_trips_and_refuses_every_bad_length_and_version() {
        let (recipient, sender) = ([2u8; 33], [3u8; 33]);
        let bytes = EcdhProviderInfo { recipient: &recipient, sender: &sender }.to_bytes();
        assert_eq!(bytes.len(), 75);
        assert_eq!(&bytes[..5], &[1, 0, 0, 0, 33]);
        let parsed = EcdhProviderInfo::parse(EcdhCurve::P256, &bytes).unwrap();
        assert_eq!((parsed.recipient, parsed.sender), (&recipient[..], &sender[..]));
        assert!(matches!(EcdhProviderInfo::parse(EcdhCurve::P384, &bytes), Err(EcdhError::ProviderInfo { .. })));
        for len in 0..bytes.len() + 2 {
            let mut info = bytes.clone();
            info.resize(len, 0);
            assert_eq!(EcdhProviderInfo::parse(EcdhCurve::P256, &info).is_ok(), len == 75, "{len}");
        }
        let mut version = bytes.clone();
        version[0] = 2;
        assert_eq!(
            EcdhProviderInfo::parse(EcdhCurve::P256, &version),
            Err(EcdhError::ProviderInfo { offset: 0, what: "unknown keyring version (only 1 is defined)" })
        );
        // Same total length, lengths shifted: 32 + 34.
        let mut shifted = bytes.clone();
        shifted[4] = 32;
        assert!(matches!(
            EcdhProviderInfo::parse(EcdhCurve::P256, &shifted),
            Err(EcdhError::ProviderInfo { offset: 1, .. })
        ));
        let mut huge = bytes;
        huge[38..42].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            EcdhProviderInfo::parse(EcdhCurve::P256, &huge),
            Err(EcdhError::ProviderInfo { offset: 38, .. })
        ));
    }

    #[test]
    fn ciphertext_must_have_its_exact_length() {
        let bytes: Vec<u8> = (0..96).collect();
        let parsed = EcdhCiphertext::parse(16, &bytes).unwrap();
        assert_eq!((parsed.salt[0], parsed.commitment_key[0], parsed.wrapped_key[0], parsed.tag[0]), (0, 32, 64, 80));
        for len in [0, 68, 95, 97, 200] {
            assert_eq!(
                EcdhCiphertext::parse(16, &bytes.iter().copied().cycle().take(len).collect::<Vec<_>>()),
                Err(EcdhError::CiphertextLength { len, expected: 96 })
            );
        }
    }

    #[test]
    fn fixed_info_is_laid_out_as_the_mpl_serializes_it() {
        let info = fixed_info(EcdhCurve::P521, b"S", b"R", b"");
        assert_eq!(info, b"ecdh-key-derivation\x00p521\x00HMAC_SHA384\x00SR\x00\x01\x00");
    }

    #[test]
    fn spki_round_trips_and_refuses_other_keys() {
        for curve in EcdhCurve::ALL {
            let point = vec![4u8; 1 + 2 * curve.field_len()];
            let der = spki_der(curve, &point);
            // `ECDH_PUBLIC_KEY_LEN_ECC_NIST_*` of MPL 1.11: 91, 120, 158.
            assert_eq!(der.len(), [91, 120, 158][EcdhCurve::ALL.iter().position(|c| *c == curve).unwrap()]);
            assert_eq!(spki_point(&der), Ok((curve, &point[..])));
            let mut trailing = der.clone();
            trailing.push(0);
            assert!(matches!(spki_point(&trailing), Err(EcdhError::MalformedKey(_))));
            for cut in 0..der.len() {
                assert!(spki_point(&der[..cut]).is_err(), "{curve} cut at {cut}");
            }
        }
        // secp256k1 (1.3.132.0.10): an EC key, but not one of ours.
        let mut k1 = EC_PUBLIC_KEY_OID.to_vec();
        k1.extend_from_slice(&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]);
        let mut body = der_wrap(0x30, &k1);
        body.extend_from_slice(&der_wrap(0x03, &[0; 34]));
        assert_eq!(spki_point(&der_wrap(0x30, &body)), Err(EcdhError::UnknownCurve));
        assert_eq!(EcdhCurve::from_name("ECC_NIST_P521"), Some(EcdhCurve::P521));
        assert_eq!(EcdhCurve::from_name("P-384"), Some(EcdhCurve::P384));
        assert_eq!(EcdhCurve::from_name("p512"), None);
    }
}
