//! The Hierarchical keyring's encrypted data key (`aws-kms-hierarchy`), byte for byte as the AWS Material
//! Providers Library writes it (design note `docs/design/issue-29-keyrings.md` §1.1 and §1.3):
//!
//! - provider id: `aws-kms-hierarchy`;
//! - provider info: the branch key id, UTF-8, nothing else;
//! - ciphertext: `salt(16) ‖ iv(12) ‖ version(16) ‖ wrapped data key(N) ‖ tag(16)`, N the suite's key length,
//!   the version being the 16 bytes of the branch key version's UUID (RFC 4122 order);
//! - AES-GCM additional data: `"aws-kms-hierarchy" ‖ branch key id ‖ version(16) ‖ serialized context`,
//!   without separators (the serialized context is empty for an empty context).
//!
//! Nothing here calls a cipher; the keyring derives the wrapping key and seals.

use std::fmt;
use std::str::FromStr;

use super::header::{IV_LEN, TAG_LEN};

/// The provider id of every Hierarchical keyring's EDK.
pub const PROVIDER_ID: &str = "aws-kms-hierarchy";

/// Bytes of the random salt the wrapping key is derived with.
pub const SALT_LEN: usize = 16;

/// Bytes of a branch key version in the ciphertext.
pub const VERSION_LEN: usize = 16;

/// Ciphertext bytes besides the wrapped data key: salt, IV, version and tag (60).
pub const OVERHEAD: usize = SALT_LEN + IV_LEN + VERSION_LEN + TAG_LEN;

/// A branch key version: a UUID, carried as its 16 bytes in an EDK and as text (`8-4-4-4-12` hexadecimal
/// digits, written in lowercase) by branch key stores.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchKeyVersion([u8; VERSION_LEN]);

/// Text that is not a UUID in its hyphenated form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a branch key version must be a UUID (8-4-4-4-12 hexadecimal digits)")]
pub struct InvalidBranchKeyVersion;

/// Positions of the hyphens in the 36-character text form.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

impl BranchKeyVersion {
    /// The version whose UUID is these 16 bytes (any 16 bytes are one).
    pub fn from_bytes(bytes: [u8; VERSION_LEN]) -> Self {
        Self(bytes)
    }

    /// The UUID's 16 bytes, as the EDK carries them.
    pub fn as_bytes(&self) -> &[u8; VERSION_LEN] {
        &self.0
    }
}

impl FromStr for BranchKeyVersion {
    type Err = InvalidBranchKeyVersion;

    /// Parses the hyphenated form, digits in either case (as Python's `uuid.UUID` does).
    fn from_str(text: &str) -> Result<Self, InvalidBranchKeyVersion> {
        let text = text.as_bytes();
        if text.len() != 36 || HYPHENS.iter().any(|&at| text[at] != b'-') {
            return Err(InvalidBranchKeyVersion);
        }
        let mut digits = text.iter().enumerate().filter(|(at, _)| !HYPHENS.contains(at)).map(|(_, &c)| c);
        let mut bytes = [0u8; VERSION_LEN];
        for byte in &mut bytes {
            let (Some(high), Some(low)) = (digits.next(), digits.next()) else { return Err(InvalidBranchKeyVersion) };
            let digit = |c: u8| (c as char).to_digit(16).ok_or(InvalidBranchKeyVersion);
            *byte = (digit(high)? << 4 | digit(low)?) as u8;
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for BranchKeyVersion {
    /// The hyphenated lowercase form, as the Material Providers Library writes versions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BranchKeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BranchKeyVersion({self})")
    }
}

/// The parts of an `aws-kms-hierarchy` EDK ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedDataKey<'a> {
    /// The salt the wrapping key was derived with.
    pub salt: [u8; SALT_LEN],
    /// The AES-GCM IV.
    pub iv: [u8; IV_LEN],
    /// The branch key version the wrapping key was derived from.
    pub version: BranchKeyVersion,
    /// The encrypted data key.
    pub ciphertext: &'a [u8],
    /// The AES-GCM tag.
    pub tag: [u8; TAG_LEN],
}

/// An EDK ciphertext of another length than a data key of the message's suite gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ciphertext is {len} bytes, expected {expected} (60 + the suite's {key_len}-byte data key)")]
pub struct WrongCiphertextLength {
    /// The ciphertext's length.
    pub len: usize,
    /// What it must be.
    pub expected: usize,
    /// The suite's data key length.
    pub key_len: usize,
}

impl<'a> WrappedDataKey<'a> {
    /// Splits an EDK ciphertext meant to hold a data key of `key_len` bytes. The length must be exactly
    /// [`OVERHEAD`] + `key_len`: the Material Providers Library checks the same, but only after fetching the
    /// branch key; checking first spares the store a call for a malformed EDK.
    pub fn parse(bytes: &'a [u8], key_len: usize) -> Result<Self, WrongCiphertextLength> {
        let expected = OVERHEAD + key_len;
        if bytes.len() != expected {
            return Err(WrongCiphertextLength { len: bytes.len(), expected, key_len });
        }
        let (salt, rest) = bytes.split_at(SALT_LEN);
        let (iv, rest) = rest.split_at(IV_LEN);
        let (version, rest) = rest.split_at(VERSION_LEN);
        let (ciphertext, tag) = rest.split_at(key_len);
        fn array<const N: usize>(part: &[u8]) -> [u8; N] {
            part.try_into().expect("split at the array's length")
        }
        Ok(Self {
            salt: array(salt),
            iv: array(iv),
            version: BranchKeyVersion(array(version)),
            ciphertext,
            tag: array(tag),
        })
    }

    /// The ciphertext bytes, as [`parse`](Self::parse) reads them.
    pub fn to_bytes(&self) -> Vec<u8> {
        [&self.salt[..], &self.iv, self.version.as_bytes(), self.ciphertext, &self.tag].concat()
    }
}

/// The AES-GCM additional data that binds a wrapped data key to its branch key id, version and the message's
/// encryption context (`serialized_context`: the context's canonical serialization, empty when it is).
pub fn wrapping_aad(branch_key_id: &str, version: &BranchKeyVersion, serialized_context: &[u8]) -> Vec<u8> {
    [PROVIDER_ID.as_bytes(), branch_key_id.as_bytes(), version.as_bytes(), serialized_context].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The version and branch key id of `static-branch-key-1` in tests/vectors/dafny-v5/keys.json; the bytes
    // are Python's `uuid.UUID("e9ce18a3-edb5-4272-9f86-1cacb7997ff6").bytes`.
    const VERSION: &str = "e9ce18a3-edb5-4272-9f86-1cacb7997ff6";
    const VERSION_BYTES: [u8; 16] =
        [0xe9, 0xce, 0x18, 0xa3, 0xed, 0xb5, 0x42, 0x72, 0x9f, 0x86, 0x1c, 0xac, 0xb7, 0x99, 0x7f, 0xf6];

    #[test]
    fn versions_read_and_write_the_uuid_text_form() {
        let version: BranchKeyVersion = VERSION.parse().unwrap();
        assert_eq!(version.as_bytes(), &VERSION_BYTES);
        assert_eq!(version.to_string(), VERSION);
        assert_eq!(VERSION.to_uppercase().parse::<BranchKeyVersion>(), Ok(version));
        assert_eq!(BranchKeyVersion::from_bytes(VERSION_BYTES), version);
    }

    #[test]
    fn text_that_is_not_a_hyphenated_uuid_is_refused() {
        for bad in [
            "",
            "e9ce18a3edb542729f861cacb7997ff6",          // no hyphens
            "e9ce18a3-edb5-4272-9f86-1cacb7997ff",       // one digit short
            "e9ce18a3-edb5-4272-9f86-1cacb7997ff6a",     // one too many
            "e9ce18a3-edb5-4272-9f86_1cacb7997ff6",      // wrong separator
            "e9ce18a3-edb5-4272-9f86-1cacb7997fg6",      // not hexadecimal
            "+9ce18a3-edb5-4272-9f86-1cacb7997ff6",      // a sign `from_str_radix` would take
            "e9ce18a3-edb5-4272-9f86-1cacb7997ff\u{e9}", // multi-byte character
        ] {
            assert_eq!(bad.parse::<BranchKeyVersion>(), Err(InvalidBranchKeyVersion), "{bad:?}");
        }
    }

    #[test]
    fn ciphertext_layout_and_exact_length() {
        let bytes: Vec<u8> = (0..60 + 24).map(|i| i as u8).collect();
        let parts = WrappedDataKey::parse(&bytes, 24).unwrap();
        assert_eq!(parts.salt, <[u8; 16]>::try_from(&bytes[..16]).unwrap());
        assert_eq!(parts.iv, <[u8; 12]>::try_from(&bytes[16..28]).unwrap());
        assert_eq!(parts.version.as_bytes()[..], bytes[28..44]);
        assert_eq!(parts.ciphertext, &bytes[44..68]);
        assert_eq!(parts.tag[..], bytes[68..]);
        assert_eq!(parts.to_bytes(), bytes);
        let long = [0u8; 100];
        for (len, key_len) in [(83, 24), (85, 24), (0, 16), (44, 16), (75, 16), (77, 16), (92, 16), (91, 32), (93, 32)]
        {
            let err = WrappedDataKey::parse(&long[..len], key_len).unwrap_err();
            assert_eq!(err, WrongCiphertextLength { len, expected: 60 + key_len, key_len });
        }
    }

    #[test]
    fn aad_is_the_four_parts_concatenated() {
        let version: BranchKeyVersion = VERSION.parse().unwrap();
        let aad = wrapping_aad("id", &version, &[0, 1, 0, 1, b'k', 0, 1, b'v']);
        let mut expected = b"aws-kms-hierarchyid".to_vec();
        expected.extend_from_slice(&VERSION_BYTES);
        expected.extend_from_slice(&[0, 1, 0, 1, b'k', 0, 1, b'v']);
        assert_eq!(aad, expected);
    }
}
