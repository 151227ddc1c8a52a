//! AES-GCM, in place and detached: the one operation every frame needs. The provider behind it is chosen by
//! cargo feature (see [`backend_name`]); this file is the boundary the rest of the crate sees.

use std::sync::Arc;

use super::backend::GcmKey;
use crate::error::{Error, Result};
use crate::format::header::{IV_LEN, TAG_LEN};

/// An AES-GCM key of 16, 24 or 32 bytes, expanded once and used for every frame of a message. The expanded
/// key schedule is zeroized when the last clone is dropped. Clones share the expanded key, so that the
/// workers of a parallel stream use one key schedule.
#[derive(Clone)]
pub struct AeadKey(Arc<GcmKey>);

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey(<redacted>)")
    }
}

/// The tag did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticationFailed;

/// The AES-GCM provider compiled in: `"aes-gcm (RustCrypto)"`, `"aws-lc-rs"` or `"aws-lc-rs (FIPS)"`.
pub fn backend_name() -> &'static str {
    super::backend::BACKEND
}

impl AeadKey {
    /// Expands `key`, which must be 16, 24 or 32 bytes.
    pub fn new(key: &[u8]) -> Result<Self> {
        GcmKey::new(key)
            .map(|k| Self(Arc::new(k)))
            .ok_or_else(|| Error::Config(format!("AES key of {} bytes; 16, 24 or 32 required", key.len())))
    }

    /// Encrypts `buf` in place and returns the tag. The caller guarantees that `iv` is never reused with
    /// this key: frames use their sequence number, wrapped keys a fresh random IV.
    pub fn seal_in_place(&self, iv: &[u8; IV_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        self.0.seal_in_place(iv, aad, buf)
    }

    /// Verifies `tag` and decrypts `buf` in place. On failure `buf` must be treated as garbage and never
    /// released: it holds no plaintext with the default backend, and unspecified bytes with AWS-LC.
    pub fn open_in_place(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthenticationFailed> {
        self.0.open_in_place(iv, aad, buf, tag).map_err(|_| AuthenticationFailed)
    }

    /// Verifies `tag` and decrypts `ciphertext` into `out`, which must be as long (else the open fails),
    /// reading the ciphertext where it is rather than copying it into `out` first where the backend allows
    /// (both do, outside FIPS mode). On failure `out` must be treated as garbage and never released.
    pub fn open_to(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
        out: &mut [u8],
    ) -> Result<(), AuthenticationFailed> {
        if ciphertext.len() != out.len() {
            return Err(AuthenticationFailed);
        }
        self.0.open_to(iv, aad, ciphertext, tag, out).map_err(|_| AuthenticationFailed)
    }

    /// Like [`open_in_place`](Self::open_in_place) for `ciphertext || tag` held in one buffer, as frames are
    /// read; the plaintext ends up in `buf[..buf.len() - TAG_LEN]`. The fastest open each backend allows.
    pub fn open_in_place_tag_after(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<(), AuthenticationFailed> {
        self.0.open_in_place_tag_after(iv, aad, buf).map_err(|_| AuthenticationFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// NIST GCM test vector (gcmEncryptExtIV256.rsp, Count 0 with PTlen 128): an external known answer.
    #[test]
    fn aes256_gcm_known_answer() {
        let key = AeadKey::new(&hex("31bdadd96698c204aa9ce1448ea94ae1fb4a9a0b3c9d773b51bb1822666b8f22")).unwrap();
        let iv: [u8; 12] = hex("0d18e06c7c725ac9e362e1ce").try_into().unwrap();
        let mut buf = hex("2db5168e932556f8089a0622981d017d");
        let tag = key.seal_in_place(&iv, &[], &mut buf);
        assert_eq!(buf, hex("fa4362189661d163fcd6a56d8bf0405a"));
        assert_eq!(tag.to_vec(), hex("d636ac1bbedd5cc3ee727dc2ab4a9489"));
        key.open_in_place(&iv, &[], &mut buf, &tag).unwrap();
        assert_eq!(buf, hex("2db5168e932556f8089a0622981d017d"));
        let mut bad = tag;
        bad[0] ^= 1;
        assert_eq!(key.open_in_place(&iv, &[], &mut buf, &bad), Err(AuthenticationFailed));
        assert!(AeadKey::new(&[0; 20]).is_err());

        let ciphertext = hex("fa4362189661d163fcd6a56d8bf0405a");
        let mut out = [0u8; 16];
        key.open_to(&iv, &[], &ciphertext, &tag, &mut out).unwrap();
        assert_eq!(out.to_vec(), hex("2db5168e932556f8089a0622981d017d"));
        assert_eq!(key.open_to(&iv, &[], &ciphertext, &bad, &mut out), Err(AuthenticationFailed));
        assert_eq!(key.open_to(&iv, &[], &ciphertext, &tag, &mut [0u8; 15]), Err(AuthenticationFailed));
        assert_eq!(key.open_to(&iv, b"other aad", &ciphertext, &tag, &mut out), Err(AuthenticationFailed));
    }

    /// The tag-after open agrees with the detached one, refuses a flipped bit, and every key size works.
    #[test]
    fn tag_after_open_and_all_key_sizes() {
        for len in [16, 24, 32] {
            let key = AeadKey::new(&vec![7u8; len]).unwrap();
            let iv = [3u8; IV_LEN];
            let mut buf = b"frame body bytes".to_vec();
            let tag = key.seal_in_place(&iv, b"aad", &mut buf);
            buf.extend_from_slice(&tag);
            let mut bad = buf.clone();
            key.open_in_place_tag_after(&iv, b"aad", &mut buf).unwrap();
            assert_eq!(&buf[..16], b"frame body bytes");
            bad[3] ^= 1;
            assert_eq!(key.open_in_place_tag_after(&iv, b"aad", &mut bad), Err(AuthenticationFailed));
            assert_eq!(key.open_in_place_tag_after(&iv, b"aad", &mut [0u8; 5]), Err(AuthenticationFailed));
        }
    }
}
