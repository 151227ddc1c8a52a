//! AES-GCM through AWS-LC (`aws-lc-rs`), selected by the `aws-lc` feature; with `fips`, AWS-LC's FIPS
//! module.

use aws_lc_rs::aead::{AES_128_GCM, AES_192_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::Rejected;
use crate::format::header::{IV_LEN, TAG_LEN};

/// The backend's name, for benchmarks and diagnostics.
#[cfg(not(feature = "fips"))]
pub(crate) const BACKEND: &str = "aws-lc-rs";
/// The backend's name, for benchmarks and diagnostics.
#[cfg(feature = "fips")]
pub(crate) const BACKEND: &str = "aws-lc-rs (FIPS)";

/// An expanded AES-GCM key. AWS-LC zeroizes the key schedule when the key is freed.
pub(crate) struct GcmKey(LessSafeKey);

impl GcmKey {
    /// Expands a 16, 24 or 32-byte key; `None` for any other length.
    pub(crate) fn new(key: &[u8]) -> Option<Self> {
        let alg = match key.len() {
            16 => &AES_128_GCM,
            24 => &AES_192_GCM,
            32 => &AES_256_GCM,
            _ => return None,
        };
        Some(Self(LessSafeKey::new(UnboundKey::new(alg, key).ok()?)))
    }

    pub(crate) fn seal_in_place(&self, iv: &[u8; IV_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*iv), Aad::from(aad), buf)
            // AWS-LC refuses only inputs over the GCM limit of 2^36 - 32 bytes, and no frame is that long.
            .expect("AES-GCM plaintext within the 2^36-byte limit");
        tag.as_ref().try_into().expect("AES-GCM tags are 16 bytes")
    }

    pub(crate) fn open_in_place(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Rejected> {
        let nonce = Nonce::assume_unique_for_key(*iv);
        #[cfg(feature = "fips")]
        {
            // FIPS mode forbids the separate-tag open: join ciphertext and tag (only headers and wrapped
            // keys come this way; frames use `open_in_place_tag_after`).
            let mut joined = zeroize::Zeroizing::new(Vec::with_capacity(buf.len() + TAG_LEN));
            joined.extend_from_slice(buf);
            joined.extend_from_slice(tag);
            self.0.open_in_place(nonce, Aad::from(aad), &mut joined).map_err(|_| Rejected)?;
            buf.copy_from_slice(&joined[..buf.len()]);
            Ok(())
        }
        #[cfg(not(feature = "fips"))]
        {
            self.0.open_in_place_separate_tag(nonce, Aad::from(aad), tag, buf).map(drop).map_err(|_| Rejected)
        }
    }

    /// Opens `ciphertext` into `out` (of the same length, checked by the caller). Outside FIPS mode in one
    /// pass (AWS-LC's gather open); FIPS mode allows only the tag-appended open, so it copies first.
    pub(crate) fn open_to(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
        out: &mut [u8],
    ) -> Result<(), Rejected> {
        #[cfg(feature = "fips")]
        {
            out.copy_from_slice(ciphertext);
            self.open_in_place(iv, aad, out, tag)
        }
        #[cfg(not(feature = "fips"))]
        {
            let nonce = Nonce::assume_unique_for_key(*iv);
            self.0.open_separate_gather(nonce, Aad::from(aad), ciphertext, tag, out).map_err(|_| Rejected)
        }
    }

    /// Opens `ciphertext || tag` in place. Outside FIPS mode this takes the separate-tag path, which avoids
    /// AWS-LC's internal copy (24-45% faster on 64 KiB-1 MiB frames); FIPS mode allows only the
    /// tag-appended `open_in_place`.
    pub(crate) fn open_in_place_tag_after(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<(), Rejected> {
        let nonce = Nonce::assume_unique_for_key(*iv);
        #[cfg(feature = "fips")]
        {
            self.0.open_in_place(nonce, Aad::from(aad), buf).map(drop).map_err(|_| Rejected)
        }
        #[cfg(not(feature = "fips"))]
        {
            let at = buf.len().checked_sub(TAG_LEN).ok_or(Rejected)?;
            let (body, tag) = buf.split_at_mut(at);
            self.0.open_in_place_separate_tag(nonce, Aad::from(aad), tag, body).map(drop).map_err(|_| Rejected)
        }
    }
}
