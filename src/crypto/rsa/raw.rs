//! The raw RSA private operation, `c^d mod n` with no padding check, taken from AWS-LC itself: `aws-lc-rs`
//! offers RSA decryption only with its own PKCS #1 v1.5 or OAEP unpadding. The crate's one `unsafe` module.
//!
//! AWS-LC's own advice (`include/openssl/rsa.h`, `RSA_decrypt`): PKCS #1 v1.5 decryption of attacker-supplied
//! ciphertexts "should be implemented with `RSA_NO_PADDING`, not `RSA_PKCS1_PADDING`", with the padding
//! checked by the caller in constant time. Its `RSA_PKCS1_PADDING` path returns early, through the error
//! queue, when the padding is invalid, which is the timing difference the Marvin attack measures.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

// The same AWS-LC that `aws-lc-rs` links: its FIPS module under the `fips` feature.
#[cfg(feature = "fips")]
use aws_lc_fips_sys as ffi;
#[cfg(not(feature = "fips"))]
use aws_lc_sys as ffi;
use zeroize::Zeroizing;

/// An RSA private key held by AWS-LC, for the raw private operation only. AWS-LC wipes it when freed.
pub(super) struct RawRsaPrivateKey {
    rsa: NonNull<ffi::RSA>,
    /// The modulus size in bytes.
    size: usize,
}

// SAFETY: the key is owned (one reference, freed once in `Drop`) and never mutated after parsing; AWS-LC
// documents its encryption and decryption functions, `RSA_decrypt` among them, as "non-mutating for
// thread-safety purposes" that "may be used concurrently" (`include/openssl/rsa.h`): blinding values and
// the Montgomery context are taken under the key's own lock.
unsafe impl Send for RawRsaPrivateKey {}
// SAFETY: as for `Send`.
unsafe impl Sync for RawRsaPrivateKey {}

impl RawRsaPrivateKey {
    /// Parses a PKCS #8 RSA private key; `None` if AWS-LC refuses it (our caller has already accepted the
    /// same bytes through `aws-lc-rs`, so this is not expected).
    pub(super) fn from_pkcs8_der(der: &[u8]) -> Option<Self> {
        let mut cbs = MaybeUninit::<ffi::CBS>::uninit();
        // SAFETY: `CBS_init` initialises `cbs` to borrow `der`, which outlives it; `EVP_parse_private_key`
        // reads through it and returns an owned key or null.
        let pkey = unsafe {
            ffi::CBS_init(cbs.as_mut_ptr(), der.as_ptr(), der.len());
            ffi::EVP_parse_private_key(cbs.as_mut_ptr())
        };
        if pkey.is_null() {
            clear_errors();
            return None;
        }
        // SAFETY: `pkey` is a valid key we own. `EVP_PKEY_get1_RSA` takes a reference of its own (or returns
        // null for a key that is not RSA), so the RSA key outlives `pkey`, which is freed exactly once here.
        let rsa = unsafe {
            let rsa = ffi::EVP_PKEY_get1_RSA(pkey);
            ffi::EVP_PKEY_free(pkey);
            rsa
        };
        let Some(rsa) = NonNull::new(rsa) else {
            clear_errors();
            return None;
        };
        // SAFETY: `rsa` is a valid key.
        let size = unsafe { ffi::RSA_size(rsa.as_ptr()) } as usize;
        Some(Self { rsa, size })
    }

    /// `ciphertext^d mod n`, big-endian in exactly as many bytes as the modulus. `None` when `ciphertext`
    /// is not the modulus's length or not below the modulus: facts about the ciphertext and public key
    /// alone, which say nothing about the plaintext.
    pub(super) fn private_op(&self, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if ciphertext.len() != self.size {
            return None;
        }
        let mut out = Zeroizing::new(vec![0u8; self.size]);
        let mut out_len = 0usize;
        // aws-lc-sys declares the constant as `i32`, a bindgen-built aws-lc-fips-sys maybe as `u32`.
        #[allow(clippy::unnecessary_cast)]
        let no_padding = ffi::RSA_NO_PADDING as c_int;
        // SAFETY: `out` holds `RSA_size` bytes, the `max_out` given; `ciphertext` is valid for its length;
        // the key is valid, and `RSA_decrypt` may run concurrently (see `Sync`).
        let ok = unsafe {
            ffi::RSA_decrypt(
                self.rsa.as_ptr(),
                &mut out_len,
                out.as_mut_ptr(),
                out.len(),
                ciphertext.as_ptr(),
                ciphertext.len(),
                no_padding,
            )
        };
        if ok != 1 || out_len != self.size {
            clear_errors();
            return None;
        }
        Some(out)
    }
}

impl Drop for RawRsaPrivateKey {
    fn drop(&mut self) {
        // SAFETY: we own this reference and release it once.
        unsafe { ffi::RSA_free(self.rsa.as_ptr()) }
    }
}

/// Empties this thread's AWS-LC error queue, so a refused input leaves nothing for a later caller to read.
fn clear_errors() {
    // SAFETY: no arguments; touches only this thread's error queue.
    unsafe { ffi::ERR_clear_error() }
}
