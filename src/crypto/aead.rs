//! AES-GCM, in place and detached: the one operation every frame needs. Backend: RustCrypto `aes-gcm`.

use aes_gcm::aead::consts::U12;
use aes_gcm::aes::Aes192;
use aes_gcm::{AeadInOut, Aes128Gcm, Aes256Gcm, AesGcm, KeyInit, Nonce, Tag};

use crate::error::{Error, Result};
use crate::format::header::{IV_LEN, TAG_LEN};

type Aes192Gcm = AesGcm<Aes192, U12>;

/// An AES-GCM key of 16, 24 or 32 bytes, expanded once and used for every frame of a message. The
/// expanded key schedule is zeroized on drop.
pub enum AeadKey {
    /// AES-128-GCM.
    Aes128(Box<Aes128Gcm>),
    /// AES-192-GCM.
    Aes192(Box<Aes192Gcm>),
    /// AES-256-GCM.
    Aes256(Box<Aes256Gcm>),
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey(<redacted>)")
    }
}

/// The tag did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticationFailed;

macro_rules! dispatch {
    ($key:expr, $cipher:ident => $body:expr) => {
        match $key {
            AeadKey::Aes128($cipher) => $body,
            AeadKey::Aes192($cipher) => $body,
            AeadKey::Aes256($cipher) => $body,
        }
    };
}

impl AeadKey {
    /// Expands `key`, which must be 16, 24 or 32 bytes.
    pub fn new(key: &[u8]) -> Result<Self> {
        let bad = |_| Error::Config(format!("AES key of {} bytes; 16, 24 or 32 required", key.len()));
        Ok(match key.len() {
            16 => AeadKey::Aes128(Box::new(Aes128Gcm::new_from_slice(key).map_err(bad)?)),
            24 => AeadKey::Aes192(Box::new(Aes192Gcm::new_from_slice(key).map_err(bad)?)),
            32 => AeadKey::Aes256(Box::new(Aes256Gcm::new_from_slice(key).map_err(bad)?)),
            n => return Err(Error::Config(format!("AES key of {n} bytes; 16, 24 or 32 required"))),
        })
    }

    /// Encrypts `buf` in place and returns the tag. The caller guarantees that `iv` is never reused with
    /// this key: frames use their sequence number, wrapped keys a fresh random IV.
    pub fn seal_in_place(&self, iv: &[u8; IV_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let nonce = Nonce::<U12>::from(*iv);
        let tag: Tag = dispatch!(self, c => c.encrypt_inout_detached(&nonce, aad, buf.into()))
            // Only plaintexts over 64 GiB fail, and no frame is that long.
            .expect("AES-GCM plaintext within the 2^36-byte limit");
        tag.into()
    }

    /// Verifies `tag` and decrypts `buf` in place. On failure `buf` holds no plaintext (the backend
    /// decrypts only after the tag verified).
    pub fn open_in_place(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthenticationFailed> {
        let nonce = Nonce::<U12>::from(*iv);
        let tag = Tag::from(*tag);
        dispatch!(self, c => c.decrypt_inout_detached(&nonce, aad, buf.into(), &tag)).map_err(|_| AuthenticationFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST GCM test vector (gcmEncryptExtIV256.rsp, Count 0 with PTlen 128): an external known answer.
    #[test]
    fn aes256_gcm_known_answer() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
        };
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
    }
}
