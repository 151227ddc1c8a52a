//! PKCS #1 v1.5 decryption of data keys, with implicit rejection. Decrypt-only: nothing in this crate
//! encrypts with PKCS #1 v1.5 any more; it is kept to read messages other ESDKs (or we) wrote with it.
//!
//! # Why implicit rejection
//!
//! Whoever can submit messages to a PKCS #1 v1.5 decryptor and learn, by any channel, whether an EDK's
//! padding was valid has Bleichenbacher's oracle: about a million chosen ciphertexts decrypt any EDK of the
//! key (and so every message written to it), or sign with the key. Returning one error for every failure
//! is not enough. A valid padding around a wrong key goes on to fail later, at key commitment or header
//! authentication, with another error, another exit status and after more work; the error path itself
//! takes different time than the success path (the Marvin attack, 2023, measured this in most libraries,
//! AWS-LC's `RSA_PKCS1_PADDING` path included, through its error queue).
//!
//! So, as RFC 8017 §7.2.2's note asks and as `draft-irtf-cfrg-rsa-guidance` and OpenSSL 3.2's
//! `RSA_PKCS1_IMPLICIT_REJECTION` do, decryption never fails. When the unpadded block is not
//! `00 02 PS 00 K` with at least eight nonzero `PS` bytes and `K` exactly the data key's length, the result
//! is a synthetic key instead: `HKDF-SHA-256-Expand(secret, label || ciphertext)`, cut to the data key's
//! length, where `secret` is `HKDF-SHA-256-Extract` of the private key's DER, computed once when the
//! keyring is built and wiped on drop. Same ciphertext, same synthetic key, so repeating a query teaches
//! nothing; nobody without the private key can tell it from the key a valid padding would hold. Every
//! message with a bad EDK then takes the same road as one whose EDK holds a wrong key: the key commitment
//! (or, for the legacy suites without commitment, the header tag) fails, with the same error and exit
//! status. OpenSSL picks a synthetic message length too; ours is fixed, the suite's key length, so a
//! valid padding with a plaintext of another length is rejected the same way.
//!
//! # What it guarantees, and what it does not
//!
//! - The RSA private operation is AWS-LC's (`RSA_decrypt` with `RSA_NO_PADDING`, blinded, see
//!   [`raw`](super::raw)); its timing is AWS-LC's to keep constant.
//! - Our unpadding reads every byte of the block, with no branch or early return on its contents
//!   (`subtle`), and picks between the real and the synthetic key byte by byte with a constant-time
//!   select; the synthetic key is computed for every ciphertext, valid or not.
//! - What depends only on the ciphertext's length or on whether it is below the modulus (both public)
//!   may branch: such a ciphertext gets the synthetic key without the private operation.
//! - What happens after the keyring (key derivation, commitment, header tag) is the same work for a real
//!   and a synthetic key, up to the first check that fails; a real key of another message fails there too.
//! - It does not make PKCS #1 v1.5 a good choice: a wrong key or a damaged EDK is now reported as a key
//!   commitment or header authentication failure, never as "this key cannot decrypt it", and the raw RSA
//!   keyring takes the first EDK with its name, since it cannot tell which one was meant. Use OAEP.

use hkdf::Hkdf;
use sha2::Sha256;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::{Zeroize, Zeroizing};

use super::RsaPrivateKey;
use super::raw::RawRsaPrivateKey;
use crate::error::{Error, Result};

/// Domain separation for both HKDF steps: this secret is used for nothing else.
const LABEL: &[u8] = b"kms-envelope RSA PKCS#1 v1.5 implicit rejection";

/// The shortest padding string PKCS #1 v1.5 allows (RFC 8017 §7.2.1).
const MIN_PS_LEN: usize = 8;

/// An RSA private key that unwraps PKCS #1 v1.5 data keys with implicit rejection: it never fails, and
/// returns a synthetic key for a ciphertext that does not hold a data key (see the module documentation).
pub struct Pkcs1V15Decryptor {
    raw: RawRsaPrivateKey,
    /// HKDF-SHA-256 keyed with the rejection secret; `sha2`'s `zeroize` feature wipes its states on drop.
    rejection: Hkdf<Sha256>,
}

impl std::fmt::Debug for Pkcs1V15Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pkcs1V15Decryptor(<redacted>)")
    }
}

impl Pkcs1V15Decryptor {
    /// The decryptor for `key`, with its rejection secret derived from the key.
    pub fn new(key: &RsaPrivateKey) -> Result<Self> {
        let der = key.pkcs8_der()?;
        let raw = RawRsaPrivateKey::from_pkcs8_der(der.as_ref())
            .ok_or_else(|| Error::Config("RSA key: AWS-LC refused it for PKCS #1 v1.5 decryption".into()))?;
        // `extract` rather than `new`, which drops the PRK without wiping it.
        let (mut prk, rejection) = Hkdf::<Sha256>::extract(Some(LABEL), der.as_ref());
        prk[..].zeroize();
        Ok(Self { raw, rejection })
    }

    /// The data key of `key_len` bytes in `ciphertext` if its padding is valid and holds exactly that many
    /// bytes, else the synthetic key for `ciphertext`; which one is not revealed by time or result.
    pub fn decrypt_data_key(&self, ciphertext: &[u8], key_len: usize) -> Zeroizing<Vec<u8>> {
        let mut key = self.synthetic_key(ciphertext, key_len);
        // A branch on public facts only: the ciphertext's length and whether it is below the modulus.
        if let Some(block) = self.raw.private_op(ciphertext) {
            let (valid, candidate) = unpad(&block, key_len);
            for (byte, real) in key.iter_mut().zip(candidate) {
                byte.conditional_assign(real, valid);
            }
        }
        key
    }

    /// The key returned for `ciphertext` when it holds no data key of `key_len` bytes.
    fn synthetic_key(&self, ciphertext: &[u8], key_len: usize) -> Zeroizing<Vec<u8>> {
        let mut key = Zeroizing::new(vec![0u8; key_len]);
        self.rejection
            .expand_multi_info(&[LABEL, ciphertext], &mut key)
            .expect("a data key is at most 32 bytes, far below HKDF-SHA-256's 8160");
        key
    }
}

/// Whether `block` is `00 02 PS 00 K` with `PS` at least [`MIN_PS_LEN`] nonzero bytes and `K` exactly
/// `key_len` bytes, and the last `key_len` bytes of `block` (`K` when it is). Reads every byte, with no
/// branch on their values; only the lengths (public) may end it early.
fn unpad(block: &[u8], key_len: usize) -> (Choice, &[u8]) {
    let separator = match block.len().checked_sub(key_len + 1) {
        Some(at) if at >= 2 + MIN_PS_LEN => at,
        _ => return (Choice::from(0), &[]),
    };
    let mut valid = block[0].ct_eq(&0) & block[1].ct_eq(&2) & block[separator].ct_eq(&0);
    for byte in &block[2..separator] {
        valid &= !byte.ct_eq(&0);
    }
    (valid, &block[separator + 1..])
}

#[cfg(test)]
pub(crate) mod tests {
    use aws_lc_rs::rsa::{KeySize, Pkcs1PrivateDecryptingKey, Pkcs1PublicEncryptingKey, PrivateDecryptingKey};

    use super::*;
    use crate::crypto::rsa::{RsaPadding, RsaPublicKey};

    /// A PKCS #1 v1.5 ciphertext of `plaintext`, made by AWS-LC (our own code refuses to make one).
    pub(crate) fn pkcs1_encrypt(key: &PrivateDecryptingKey, plaintext: &[u8]) -> Vec<u8> {
        let public = Pkcs1PublicEncryptingKey::new(key.public_key()).unwrap();
        let mut out = vec![0u8; public.ciphertext_size()];
        let len = public.encrypt(plaintext, &mut out).unwrap().len();
        out.truncate(len);
        out
    }

    /// A ciphertext whose PKCS #1 v1.5 padding AWS-LC's own unpadding rejects: the OAEP encryption of
    /// garbage (its block starts `00 02` about once in 65536 tries, hence the loop).
    pub(crate) fn bad_padding(key: &PrivateDecryptingKey) -> Vec<u8> {
        let pkcs1 = Pkcs1PrivateDecryptingKey::new(key.clone()).unwrap();
        loop {
            let ciphertext = RsaPublicKey(key.public_key()).encrypt(RsaPadding::OaepSha256, &[0x5a; 32]).unwrap();
            let mut out = vec![0u8; pkcs1.min_output_size()];
            if pkcs1.decrypt(&ciphertext, &mut out).is_err() {
                return ciphertext;
            }
        }
    }

    #[test]
    fn a_valid_padding_yields_the_data_key_and_anything_else_a_synthetic_one() {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let decryptor = Pkcs1V15Decryptor::new(&RsaPrivateKey(key.clone())).unwrap();
        for len in [16, 24, 32] {
            let data_key: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
            assert_eq!(&*decryptor.decrypt_data_key(&pkcs1_encrypt(&key, &data_key), len), &data_key[..]);
        }
        // Bad padding, a valid padding of the wrong length, a short ciphertext, one above the modulus: each
        // yields a key of the asked length that is not the one encrypted.
        let short = pkcs1_encrypt(&key, &[7u8; 5]);
        for ciphertext in [bad_padding(&key), short.clone(), vec![1u8; 17], vec![0xff; 256]] {
            let synthetic = decryptor.decrypt_data_key(&ciphertext, 32);
            assert_eq!(synthetic.len(), 32);
            assert_ne!(&synthetic[..5], &[7u8; 5]);
            assert_ne!(&synthetic[..], &[0u8; 32]);
        }
        // A valid padding around 16 bytes is a 16-byte data key, not the tail of a 32-byte one.
        let sixteen = pkcs1_encrypt(&key, &[9u8; 16]);
        assert_ne!(&decryptor.decrypt_data_key(&sixteen, 32)[16..], &[9u8; 16]);
        assert_eq!(&*decryptor.decrypt_data_key(&sixteen, 16), &[9u8; 16]);
    }

    #[test]
    fn the_synthetic_key_is_the_same_for_the_same_edk_and_differs_otherwise() {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let decryptor = Pkcs1V15Decryptor::new(&RsaPrivateKey(key.clone())).unwrap();
        let (a, b) = (bad_padding(&key), bad_padding(&key));
        assert_ne!(a, b, "OAEP is randomised");
        let first = decryptor.decrypt_data_key(&a, 32);
        assert_eq!(first, decryptor.decrypt_data_key(&a, 32), "same EDK, same key");
        assert_ne!(first, decryptor.decrypt_data_key(&b, 32), "another EDK, another key");
        // The same key loaded again (another parse, the same DER) gives the same synthetic key; another
        // private key gives another.
        let again = Pkcs1V15Decryptor::new(&RsaPrivateKey(key.clone())).unwrap();
        assert_eq!(first, again.decrypt_data_key(&a, 32));
        let other = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let other = Pkcs1V15Decryptor::new(&RsaPrivateKey(other)).unwrap();
        assert_ne!(first, other.decrypt_data_key(&a, 32));
        assert!(format!("{decryptor:?}").contains("redacted"));
    }

    /// `00 02`, `ps_len` bytes 0x11, `00`, `key_len` bytes 0x22: a valid block when `ps_len` >= 8.
    fn block(ps_len: usize, key_len: usize) -> Vec<u8> {
        [&[0u8, 2][..], &vec![0x11; ps_len], &[0], &vec![0x22; key_len]].concat()
    }

    /// Each rule of the block, broken alone, rejects it; the block RFC 8017 accepts is accepted.
    #[test]
    fn unpad_checks_every_rule() {
        let good = block(256 - 35, 32);
        let (valid, key) = unpad(&good, 32);
        assert!(bool::from(valid));
        assert_eq!(key, &[0x22; 32]);
        for (at, value) in [(0, 1), (1, 1), (1, 0), (2, 0), (9, 0), (256 - 34, 0), (256 - 33, 0x33)] {
            let mut block = good.clone();
            block[at] = value;
            assert!(!bool::from(unpad(&block, 32).0), "byte {at} = {value}");
        }
        // The separator sits elsewhere for another length.
        assert!(!bool::from(unpad(&good, 31).0));
        assert!(!bool::from(unpad(&good, 33).0));
        assert!(bool::from(unpad(&block(8, 32), 32).0), "exactly 8 padding bytes");
        assert!(!bool::from(unpad(&block(7, 32), 32).0), "7 padding bytes");
        assert!(!bool::from(unpad(&[0, 2, 0], 32).0), "a block too short for the key");
    }
}
