//! Key derivation in counter mode with HMAC (NIST SP 800-108r1 §4.1), exactly as the AWS Material Providers
//! Library's `KdfCtr` computes it: the Hierarchical keyring's wrapping key (HMAC-SHA-256, 32 bytes, the
//! 16-byte EDK salt as context) and the ECDH keyrings' shared keying material (HMAC-SHA-384, 64 bytes, the
//! 32-byte EDK salt as context). See `docs/design/issue-29-keyrings.md` §1.2 and §2.4.
//!
//! Block `i` (from 1) is `HMAC(key, u32_be(i) ‖ label ‖ 0x00 ‖ context ‖ u32_be(8 · L))`, and the output is
//! the first `L` bytes of the blocks in order. Each block is an independent HMAC under the same key, so a
//! keyed state is cloned per block; HKDF (RFC 5869) chains blocks and puts the counter last, so the `hkdf`
//! crate cannot express this.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384};
use zeroize::Zeroizing;

use super::scrub::scrubbed;

/// The HMAC a derivation runs on: the only two the Material Providers Library allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KdfCtrDigest {
    /// HMAC-SHA-256 (32-byte blocks): the Hierarchical keyring.
    Sha256,
    /// HMAC-SHA-384 (48-byte blocks): the ECDH keyrings.
    Sha384,
}

/// Fills `okm` with `okm.len()` bytes derived from `key` under `label` and `context`.
///
/// `okm` is at most a few blocks long in every caller (32 or 64 bytes); the encoded length
/// `8 · okm.len()` must fit in a `u32`, which every caller's fixed-size buffer guarantees (checked in debug
/// builds). Every intermediate block is wiped.
pub fn derive(digest: KdfCtrDigest, key: &[u8], label: &[u8], context: &[u8], okm: &mut [u8]) {
    debug_assert!(u32::try_from(okm.len() * 8).is_ok());
    let length_bits = ((okm.len() as u64 * 8) as u32).to_be_bytes();
    // HMAC copies the key (a branch key, an ECDH shared secret) through stack temporaries (crypto::scrub).
    scrubbed(|| match digest {
        KdfCtrDigest::Sha256 => blocks::<Hmac<Sha256>>(key, label, context, &length_bits, okm),
        KdfCtrDigest::Sha384 => blocks::<Hmac<Sha384>>(key, label, context, &length_bits, okm),
    })
}

fn blocks<M: Mac + KeyInit + Clone>(key: &[u8], label: &[u8], context: &[u8], length_bits: &[u8; 4], okm: &mut [u8]) {
    // HMAC takes a key of any length (longer ones are hashed first), so this never fails.
    let Ok(keyed) = <M as KeyInit>::new_from_slice(key) else { unreachable!("HMAC accepts keys of every length") };
    for (index, chunk) in okm.chunks_mut(M::output_size()).enumerate() {
        let counter = (index as u32 + 1).to_be_bytes();
        let mut mac = keyed.clone();
        mac.update(&counter);
        mac.update(label);
        mac.update(&[0]);
        mac.update(context);
        mac.update(length_bits);
        let block = Zeroizing::new(mac.finalize().into_bytes());
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn range(start: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| start.wrapping_add(i as u8)).collect()
    }

    // Expected outputs from the Python Material Providers Library 1.11.3 (the test venv):
    // `AwsCryptographicPrimitives(CryptoConfig()).kdf_counter_mode(KdfCtrInput(digest_algorithm, ikm,
    // expected_length, purpose=label, nonce=context))`, never from this code.

    #[test]
    fn hierarchy_wrapping_key_matches_the_mpl() {
        let mut okm = [0u8; 32];
        derive(KdfCtrDigest::Sha256, &range(0, 32), b"aws-kms-hierarchy", &range(100, 16), &mut okm);
        assert_eq!(hex(&okm), "158fc6a614fd99d6004e1fe18a50b033eebdf21f70d63f2b8af9a1def888d927");
    }

    #[test]
    fn ecdh_keying_material_of_two_blocks_matches_the_mpl() {
        let mut okm = [0u8; 64];
        derive(KdfCtrDigest::Sha384, &range(0, 48), b"ecdh-key-derivation\x00p384", &range(200, 32), &mut okm);
        assert_eq!(
            hex(&okm),
            "2205590b1f9b0bdf915d58c6772c9680fac99048428b1f096595dd3a8f99eac0\
             bb9ecda1a1680dbebb3f1dcbd7f3f9181db3f688662bc404e86a8c27805cc78e"
        );
    }

    #[test]
    fn a_p521_length_shared_secret_matches_the_mpl() {
        let mut okm = [0u8; 64];
        derive(KdfCtrDigest::Sha384, &range(0, 66), b"ecdh-key-derivation\x00p521", &range(200, 32), &mut okm);
        assert_eq!(
            hex(&okm),
            "d7a9211e3e96cbec5b42f2f6c73f16df1a61ffb7d0fbcac29743f88cab450ff2\
             70332168abf445bfad9542c8b3142eb0dbb5aa147f54c3207f2059172d177f0e"
        );
    }
}
