//! AES-GCM through RustCrypto `aes-gcm` (the default backend).

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aes::Aes192;
use aes_gcm::{AeadInOut, Aes128Gcm, Aes256Gcm, AesGcm, KeyInit, Nonce, Tag};

use super::Rejected;
use crate::crypto::scrub::scrubbed;
use crate::format::header::{IV_LEN, TAG_LEN};

/// The backend's name, for benchmarks and diagnostics.
pub(crate) const BACKEND: &str = "aes-gcm (RustCrypto)";

type Aes192Gcm = AesGcm<Aes192, U12>;

/// An expanded AES-GCM key; the key schedule is zeroized on drop (the `zeroize` feature of `aes-gcm`).
pub(crate) enum GcmKey {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
    Aes256(Box<Aes256Gcm>),
}

macro_rules! dispatch {
    ($key:expr, $cipher:ident => $body:expr) => {
        match $key {
            GcmKey::Aes128($cipher) => $body,
            GcmKey::Aes192($cipher) => $body,
            GcmKey::Aes256($cipher) => $body,
        }
    };
}

impl GcmKey {
    /// Expands a 16, 24 or 32-byte key; `None` for any other length.
    pub(crate) fn new(key: &[u8]) -> Option<Self> {
        // The schedule is expanded on the stack and moved into its box: the copy left behind is wiped.
        scrubbed(|| {
            Some(match key.len() {
                16 => GcmKey::Aes128(Box::new(Aes128Gcm::new_from_slice(key).ok()?)),
                24 => GcmKey::Aes192(Box::new(Aes192Gcm::new_from_slice(key).ok()?)),
                32 => GcmKey::Aes256(Box::new(Aes256Gcm::new_from_slice(key).ok()?)),
                _ => return None,
            })
        })
    }

    pub(crate) fn seal_in_place(&self, iv: &[u8; IV_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let nonce = Nonce::<U12>::from(*iv);
        let tag: Tag = scrubbed(|| dispatch!(self, c => c.encrypt_inout_detached(&nonce, aad, buf.into())))
            // Only plaintexts over 64 GiB fail, and no frame is that long.
            .expect("AES-GCM plaintext within the 2^36-byte limit");
        tag.into()
    }

    pub(crate) fn open_in_place(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Rejected> {
        let nonce = Nonce::<U12>::from(*iv);
        let tag = Tag::from(*tag);
        scrubbed(|| dispatch!(self, c => c.decrypt_inout_detached(&nonce, aad, buf.into(), &tag))).map_err(|_| Rejected)
    }

    /// Opens `ciphertext` into `out` (of the same length, checked by the caller) in one pass: the tag is
    /// checked over `ciphertext` before anything is written to `out`.
    pub(crate) fn open_to(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
        out: &mut [u8],
    ) -> Result<(), Rejected> {
        let nonce = Nonce::<U12>::from(*iv);
        let tag = Tag::from(*tag);
        let buf = InOutBuf::new(ciphertext, out).map_err(|_| Rejected)?;
        scrubbed(|| dispatch!(self, c => c.decrypt_inout_detached(&nonce, aad, buf, &tag))).map_err(|_| Rejected)
    }

    pub(crate) fn open_in_place_tag_after(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<(), Rejected> {
        let at = buf.len().checked_sub(TAG_LEN).ok_or(Rejected)?;
        let (body, tag) = buf.split_at_mut(at);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().expect("split at TAG_LEN from the end");
        self.open_in_place(iv, aad, body, &tag)
    }
}
