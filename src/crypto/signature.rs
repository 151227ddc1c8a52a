//! Message signatures (format notes §9): an ephemeral ECDSA key per message, the public half in the
//! encryption context, the hash streamed over every byte before the footer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use p256::ecdsa as ecdsa_p256;
use p384::ecdsa as ecdsa_p384;
use p384::ecdsa::signature::hazmat::{PrehashVerifier, RandomizedPrehashSigner};
use p384::elliptic_curve::Generate as _;
use sha2::{Digest, Sha256, Sha384};

use crate::error::{Error, Result};
use crate::format::suite::SignatureAlgorithm;

/// A running hash of the signed bytes.
#[derive(Clone)]
enum MessageHash {
    Sha256(Sha256),
    Sha384(Sha384),
}

impl MessageHash {
    fn new(alg: SignatureAlgorithm) -> Self {
        match alg {
            SignatureAlgorithm::EcdsaP256Sha256 => MessageHash::Sha256(Sha256::new()),
            SignatureAlgorithm::EcdsaP384Sha384 => MessageHash::Sha384(Sha384::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            MessageHash::Sha256(h) => h.update(bytes),
            MessageHash::Sha384(h) => h.update(bytes),
        }
    }

    fn finalize(self) -> Vec<u8> {
        match self {
            MessageHash::Sha256(h) => h.finalize().to_vec(),
            MessageHash::Sha384(h) => h.finalize().to_vec(),
        }
    }
}

enum SigningKey {
    P256(ecdsa_p256::SigningKey),
    P384(ecdsa_p384::SigningKey),
}

/// Signs one message: created before the header (its public key goes in the encryption context), fed
/// every byte written, consumed by [`MessageSigner::sign`]. The private key is zeroized on drop.
pub struct MessageSigner {
    key: SigningKey,
    hash: MessageHash,
}

impl std::fmt::Debug for MessageSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageSigner(<redacted>)")
    }
}

impl MessageSigner {
    /// A fresh ephemeral key pair.
    pub fn generate(alg: SignatureAlgorithm) -> Self {
        let mut rng = rand::rng();
        let key = match alg {
            SignatureAlgorithm::EcdsaP256Sha256 => {
                SigningKey::P256(ecdsa_p256::SigningKey::generate_from_rng(&mut rng))
            }
            SignatureAlgorithm::EcdsaP384Sha384 => {
                SigningKey::P384(ecdsa_p384::SigningKey::generate_from_rng(&mut rng))
            }
        };
        Self { key, hash: MessageHash::new(alg) }
    }

    /// The value of `aws-crypto-public-key`: standard base64 of the compressed public point.
    pub fn public_key_base64(&self) -> String {
        match &self.key {
            SigningKey::P256(k) => BASE64.encode(k.verifying_key().to_sec1_point(true).as_bytes()),
            SigningKey::P384(k) => BASE64.encode(k.verifying_key().to_sec1_point(true).as_bytes()),
        }
    }

    /// Feeds signed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
    }

    /// The DER signature over everything fed, of the conventional length (71 bytes for P-256, 103 for
    /// P-384) that every ESDK writes: signing is randomized, so it retries until the length fits.
    pub fn sign(self) -> Result<Vec<u8>> {
        let digest = self.hash.finalize();
        let mut rng = rand::rng();
        let fail = |_| Error::Config("ECDSA signing failed".into());
        for _ in 0..256 {
            let der: Vec<u8> = match &self.key {
                SigningKey::P256(k) => {
                    let sig: ecdsa_p256::DerSignature = k.sign_prehash_with_rng(&mut rng, &digest).map_err(fail)?;
                    sig.as_bytes().to_vec()
                }
                SigningKey::P384(k) => {
                    let sig: ecdsa_p384::DerSignature = k.sign_prehash_with_rng(&mut rng, &digest).map_err(fail)?;
                    sig.as_bytes().to_vec()
                }
            };
            let want = match self.key {
                SigningKey::P256(_) => 71,
                SigningKey::P384(_) => 103,
            };
            if der.len() == want {
                return Ok(der);
            }
        }
        // Each attempt has the conventional length with probability about 1/4; 256 misses do not happen.
        Err(Error::Config("could not produce a conventional-length ECDSA signature".into()))
    }
}

enum VerifyingKey {
    P256(ecdsa_p256::VerifyingKey),
    P384(ecdsa_p384::VerifyingKey),
}

/// Verifies one message's footer: built from `aws-crypto-public-key`, fed every byte before the footer.
pub struct MessageVerifier {
    key: VerifyingKey,
    hash: MessageHash,
}

impl std::fmt::Debug for MessageVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageVerifier")
    }
}

impl MessageVerifier {
    /// Parses the base64 compressed point from the encryption context.
    pub fn from_public_key_base64(alg: SignatureAlgorithm, encoded: &str) -> Result<Self> {
        let bad = || Error::EncryptionContext("aws-crypto-public-key is not a valid public key for the suite".into());
        let bytes = BASE64.decode(encoded).map_err(|_| bad())?;
        let key = match alg {
            SignatureAlgorithm::EcdsaP256Sha256 if bytes.len() == 33 => {
                VerifyingKey::P256(ecdsa_p256::VerifyingKey::from_sec1_bytes(&bytes).map_err(|_| bad())?)
            }
            SignatureAlgorithm::EcdsaP384Sha384 if bytes.len() == 49 => {
                VerifyingKey::P384(ecdsa_p384::VerifyingKey::from_sec1_bytes(&bytes).map_err(|_| bad())?)
            }
            _ => return Err(bad()),
        };
        Ok(Self { key, hash: MessageHash::new(alg) })
    }

    /// Feeds signed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
    }

    /// Checks a DER signature of any valid length over everything fed. High-S signatures are accepted, as
    /// the ESDKs accept them.
    pub fn verify(self, der: &[u8]) -> Result<()> {
        let digest = self.hash.finalize();
        let ok = match &self.key {
            VerifyingKey::P256(k) => {
                ecdsa_p256::DerSignature::from_bytes(der).is_ok_and(|sig| k.verify_prehash(&digest, &sig).is_ok())
            }
            VerifyingKey::P384(k) => {
                ecdsa_p384::DerSignature::from_bytes(der).is_ok_and(|sig| k.verify_prehash(&digest, &sig).is_ok())
            }
        };
        if ok { Ok(()) } else { Err(Error::SignatureVerification) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signer_debugs_without_its_private_key() {
        for alg in [SignatureAlgorithm::EcdsaP256Sha256, SignatureAlgorithm::EcdsaP384Sha384] {
            assert_eq!(format!("{:?}", MessageSigner::generate(alg)), "MessageSigner(<redacted>)");
        }
    }

    #[test]
    fn sign_then_verify_and_tampering_fails() {
        for alg in [SignatureAlgorithm::EcdsaP256Sha256, SignatureAlgorithm::EcdsaP384Sha384] {
            let mut signer = MessageSigner::generate(alg);
            let public = signer.public_key_base64();
            assert_eq!(public.len(), if alg == SignatureAlgorithm::EcdsaP256Sha256 { 44 } else { 68 });
            signer.update(b"header");
            signer.update(b"body");
            let sig = signer.sign().unwrap();
            assert_eq!(sig.len(), if alg == SignatureAlgorithm::EcdsaP256Sha256 { 71 } else { 103 });

            let mut v = MessageVerifier::from_public_key_base64(alg, &public).unwrap();
            v.update(b"headerbody");
            v.verify(&sig).unwrap();

            let mut v = MessageVerifier::from_public_key_base64(alg, &public).unwrap();
            v.update(b"headerbodY");
            assert!(matches!(v.verify(&sig), Err(Error::SignatureVerification)));

            let mut bad = sig.clone();
            bad[10] ^= 1;
            let mut v = MessageVerifier::from_public_key_base64(alg, &public).unwrap();
            v.update(b"headerbody");
            assert!(v.verify(&bad).is_err());
        }
        assert!(MessageVerifier::from_public_key_base64(SignatureAlgorithm::EcdsaP384Sha384, "AAAA").is_err());
    }
}
