//! Encryption context: the string map authenticated with every message (format notes §4).

use std::collections::BTreeMap;
use std::collections::btree_map;

use crate::error::{Error, Result};

/// The reserved key under which signed suites carry the verification key.
pub const PUBLIC_KEY_CONTEXT_KEY: &str = "aws-crypto-public-key";

/// Prefix reserved for the SDK; callers may not use it.
pub const RESERVED_PREFIX: &str = "aws-crypto-";

/// An encryption context: UTF-8 keys to UTF-8 values, kept in the canonical order (by the keys' UTF-8
/// bytes, which is `String`'s `Ord`).
///
/// Stored in the header unencrypted and authenticated with the message: a decryptor can require pairs
/// ([`DecryptOptions::context`](crate::DecryptOptions::context)) so that a message made for one purpose is
/// refused for another.
///
/// ```
/// use kms_envelope::{DecryptOptions, EncryptOptions, EncryptionContext, RawAesKeyring};
///
/// # fn main() -> Result<(), kms_envelope::Error> {
/// let context: EncryptionContext = [("tenant", "acme"), ("purpose", "backup")].into_iter().collect();
/// assert_eq!(context.iter().next(), Some(("purpose", "backup"))); // canonical order
///
/// let keyring = RawAesKeyring::new("my-service", "secrets-key-1", &[0x42u8; 32])?;
/// let options = EncryptOptions::new().encryption_context(context);
/// let message = kms_envelope::encrypt(&keyring, &options, b"database password")?;
///
/// let decrypted = kms_envelope::decrypt(&keyring, &DecryptOptions::new().context("tenant", "acme"), &message)?;
/// assert_eq!(decrypted.header.encryption_context().get("purpose"), Some("backup"));
/// assert!(kms_envelope::decrypt(&keyring, &DecryptOptions::new().context("tenant", "other"), &message).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a pair, returning the previous value for the key.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(key.into(), value.into())
    }

    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Removes a pair.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// Whether the context holds `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Fails if a caller-supplied key uses the reserved `aws-crypto-` prefix.
    ///
    /// Not part of the API's promises (see the crate docs, "API promises"): for the crate's own tests and
    /// the fuzz targets, which build and take apart headers by hand.
    #[doc(hidden)]
    pub fn check_no_reserved_keys(&self) -> Result<()> {
        match self.0.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
            Some(key) => {
                Err(Error::EncryptionContext(format!("key {key:?} uses the reserved prefix {RESERVED_PREFIX:?}")))
            }
            None => Ok(()),
        }
    }

    /// The canonical serialization without the u16 length prefix: empty for an empty context, otherwise
    /// u16 count then (u16 len, key, u16 len, value) per pair: the bytes a keyring binds as AAD (the raw AES
    /// keyring authenticates its wrapped data key with them), and which every ESDK computes the same way.
    ///
    /// # Errors
    ///
    /// [`Error::EncryptionContext`] when the context would not fit a header: more than 65535 pairs, a key
    /// or value over 65535 bytes, or more than 65535 bytes in all.
    pub fn serialize(&self) -> Result<Vec<u8>> {
        if self.0.is_empty() {
            return Ok(Vec::new());
        }
        let too_big = |what: String| Error::EncryptionContext(what);
        let count = u16::try_from(self.0.len())
            .map_err(|_| too_big(format!("{} pairs, at most 65535 allowed", self.0.len())))?;
        let mut out = Vec::new();
        out.extend_from_slice(&count.to_be_bytes());
        for (key, value) in &self.0 {
            for field in [key, value] {
                let len = u16::try_from(field.len())
                    .map_err(|_| too_big(format!("an entry of {} bytes, at most 65535 allowed", field.len())))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(field.as_bytes());
            }
        }
        if out.len() > usize::from(u16::MAX) {
            return Err(too_big(format!("serializes to {} bytes, at most 65535 allowed", out.len())));
        }
        Ok(out)
    }

    /// Parses the AAD-section payload (the bytes after the u16 length). `offset` is where `bytes` start in the
    /// message, for error messages. Accepts `00 00` (count 0) as empty, as the official implementation does.
    ///
    /// Not part of the API's promises (see the crate docs, "API promises"): for the crate's own tests and
    /// the fuzz targets, which build and take apart headers by hand.
    #[doc(hidden)]
    pub fn parse(bytes: &[u8], offset: u64) -> Result<Self> {
        let mut map = BTreeMap::new();
        if bytes.is_empty() {
            return Ok(Self(map));
        }
        let mut cursor = Cursor { bytes, pos: 0, base: offset };
        let count = cursor.u16()?;
        if count == 0 {
            if bytes.len() == 2 {
                return Ok(Self(map));
            }
            return Err(Error::malformed(offset, "encryption context has count 0 but a non-empty body"));
        }
        for _ in 0..count {
            let key_at = cursor.offset();
            let key = cursor.string("encryption context key")?;
            let value = cursor.string("encryption context value")?;
            if map.insert(key, value).is_some() {
                return Err(Error::malformed(key_at, "duplicate encryption context key"));
            }
        }
        if cursor.pos != bytes.len() {
            return Err(Error::malformed(
                cursor.offset(),
                "encryption context pairs do not fill the AAD section exactly",
            ));
        }
        Ok(Self(map))
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: u64,
}

impl Cursor<'_> {
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| Error::malformed(self.offset(), "encryption context field runs past the AAD section"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = usize::from(self.u16()?);
        let at = self.offset();
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| Error::malformed(at, format!("{what} is not valid UTF-8")))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EncryptionContext {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl<'a> IntoIterator for &'a EncryptionContext {
    type Item = (&'a String, &'a String);
    type IntoIter = btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_context_serializes_to_nothing() {
        assert!(EncryptionContext::new().serialize().unwrap().is_empty());
        assert!(EncryptionContext::parse(&[], 0).unwrap().is_empty());
        assert!(EncryptionContext::parse(&[0, 0], 0).unwrap().is_empty());
        assert!(EncryptionContext::parse(&[0, 0, 1], 0).is_err());
    }

    #[test]
    fn pairs_sort_by_utf8_bytes_not_utf16() {
        // U+FF61 sorts before U+10000 in UTF-16 code units but after it in UTF-8 bytes.
        let ec: EncryptionContext = [("\u{10000}", "a"), ("\u{FF61}", "b"), ("B", "c")].into_iter().collect();
        let keys: Vec<_> = ec.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["B", "\u{FF61}", "\u{10000}"]);
        let bytes = ec.serialize().unwrap();
        assert_eq!(&bytes[..2], &[0, 3]);
        assert_eq!(EncryptionContext::parse(&bytes, 0).unwrap(), ec);
    }

    #[test]
    fn duplicates_bad_utf8_and_overruns_are_malformed() {
        let dup = [0, 2, 0, 1, b'a', 0, 0, 0, 1, b'a', 0, 0];
        assert!(matches!(EncryptionContext::parse(&dup, 10), Err(Error::Malformed { offset: 17, .. })));
        let bad_utf8 = [0, 1, 0, 1, 0xFF, 0, 0];
        assert!(EncryptionContext::parse(&bad_utf8, 0).is_err());
        let overrun = [0, 1, 0, 9, b'a'];
        assert!(EncryptionContext::parse(&overrun, 0).is_err());
        let short = [0, 1, 0, 1, b'a', 0, 0, 0xAA];
        assert!(EncryptionContext::parse(&short, 0).is_err());
    }

    #[test]
    fn reserved_prefix_and_oversize_are_refused() {
        let ec: EncryptionContext = [("aws-crypto-x", "v")].into_iter().collect();
        assert!(ec.check_no_reserved_keys().is_err());
        let big: EncryptionContext = [("k", "v".repeat(70_000))].into_iter().collect();
        assert!(big.serialize().is_err());
        let many: EncryptionContext = (0..20_000).map(|i| (format!("k{i}"), "v")).collect();
        assert!(many.serialize().is_err());
    }
}
