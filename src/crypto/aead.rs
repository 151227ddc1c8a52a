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

    /// Known answers with additional data, for the AES-128 and AES-192 keys the raw AES keyring wraps with
    /// (the NIST file above covers AES-256 without AAD only). Source: D. McGrew and J. Viega, "The
    /// Galois/Counter Mode of Operation (GCM)", revised submission to NIST (2005), Appendix B, Test Cases 3
    /// and 4 (AES-128), 9 and 10 (AES-192), 16 (AES-256); 4, 10 and 16 carry 20 bytes of AAD and a 60-byte
    /// plaintext. Each answer is checked through every operation of whichever backend this build compiles.
    #[test]
    fn gcm_paper_known_answers_with_aad_every_key_size() {
        const K128: &str = "feffe9928665731c6d6a8f9467308308";
        const K192: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c";
        const K256: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
        const IV: &str = "cafebabefacedbaddecaf888";
        const AAD: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
        const P: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
        // (test case, key, AAD, plaintext length, ciphertext, tag)
        let cases: [(u32, &str, &str, usize, &str, &str); 5] = [
            (
                3,
                K128,
                "",
                64,
                "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
                "4d5c2af327cd64a62cf35abd2ba6fab4",
            ),
            (
                4,
                K128,
                AAD,
                60,
                "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                "5bc94fbc3221a5db94fae95ae7121a47",
            ),
            (
                9,
                K192,
                "",
                64,
                "3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c7d773d00c144c525ac619d18c84a3f4718e2448b2fe324d9ccda2710acade256",
                "9924a7c8587336bfb118024db8674a14",
            ),
            (
                10,
                K192,
                AAD,
                60,
                "3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c7d773d00c144c525ac619d18c84a3f4718e2448b2fe324d9ccda2710",
                "2519498e80f1478f37ba55bd6d27618c",
            ),
            (
                16,
                K256,
                AAD,
                60,
                "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                "76fc6ece0f4e1768cddf8853bb2d551b",
            ),
        ];
        let iv: [u8; IV_LEN] = hex(IV).try_into().unwrap();
        for (case, key, aad, len, ciphertext, tag) in cases {
            let what = format!("GCM test case {case} on {}", backend_name());
            let key = AeadKey::new(&hex(key)).unwrap();
            let (aad, plaintext, ciphertext) = (hex(aad), hex(&P[..2 * len]), hex(ciphertext));
            let tag: [u8; TAG_LEN] = hex(tag).try_into().unwrap();

            let mut buf = plaintext.clone();
            assert_eq!(key.seal_in_place(&iv, &aad, &mut buf), tag, "{what}: tag");
            assert_eq!(buf, ciphertext, "{what}: ciphertext");
            key.open_in_place(&iv, &aad, &mut buf, &tag).unwrap();
            assert_eq!(buf, plaintext, "{what}: open_in_place");

            let mut out = vec![0u8; len];
            key.open_to(&iv, &aad, &ciphertext, &tag, &mut out).unwrap();
            assert_eq!(out, plaintext, "{what}: open_to");

            let mut joined = [ciphertext.as_slice(), &tag].concat();
            key.open_in_place_tag_after(&iv, &aad, &mut joined).unwrap();
            assert_eq!(joined[..len], plaintext, "{what}: open_in_place_tag_after");

            // The AAD is authenticated: one flipped bit of it (or its absence) fails every open.
            let mut other_aad = aad.clone();
            match other_aad.first_mut() {
                Some(byte) => *byte ^= 1,
                None => other_aad.push(0),
            }
            let mut buf = ciphertext.clone();
            assert_eq!(key.open_in_place(&iv, &other_aad, &mut buf, &tag), Err(AuthenticationFailed), "{what}");
            assert_eq!(key.open_to(&iv, &other_aad, &ciphertext, &tag, &mut out), Err(AuthenticationFailed), "{what}");
        }
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
