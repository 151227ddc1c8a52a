//! RSA encryption of data keys (feature `rsa`), on AWS-LC through `aws-lc-rs`.
//!
//! Not the RustCrypto `rsa` crate: it has an unfixed timing side channel (RUSTSEC-2023-0071), and AWS-LC is
//! linked anyway wherever the AWS SDK is. AWS-LC clears the memory of a private key when it frees it.
//!
//! OAEP goes through `aws-lc-rs`. PKCS #1 v1.5 is decrypt-only, with implicit rejection ([`pkcs1`]), on
//! AWS-LC's raw private operation ([`raw`]), which `aws-lc-rs` does not offer.

pub mod pkcs1;
mod raw;

use std::fmt;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OAEP_SHA512_MGF1SHA512, OaepAlgorithm,
    OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The RSA padding schemes of the ESDK's raw RSA keyring. OAEP uses MGF1 with the same hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RsaPadding {
    /// PKCS #1 v1.5: decrypt-only, to read messages written with it; encrypting with it is refused
    /// ([`Error::DecryptOnlyRsaPadding`]). Decrypted with implicit rejection (`src/crypto/rsa/pkcs1.rs`),
    /// so that no failure tells a padding oracle whether the padding was valid; a wrong key is then
    /// reported as a key commitment or header authentication failure.
    Pkcs1V15,
    /// OAEP with SHA-1 and MGF1 with SHA-1.
    OaepSha1,
    /// OAEP with SHA-256 and MGF1 with SHA-256.
    OaepSha256,
    /// OAEP with SHA-384 and MGF1 with SHA-384.
    OaepSha384,
    /// OAEP with SHA-512 and MGF1 with SHA-512.
    OaepSha512,
}

impl RsaPadding {
    /// Every padding scheme.
    pub const ALL: [RsaPadding; 5] = [
        RsaPadding::Pkcs1V15,
        RsaPadding::OaepSha1,
        RsaPadding::OaepSha256,
        RsaPadding::OaepSha384,
        RsaPadding::OaepSha512,
    ];

    /// The scheme's name on our command line: `pkcs1`, `oaep-sha1`, `oaep-sha256`, `oaep-sha384`, `oaep-sha512`.
    pub fn name(self) -> &'static str {
        match self {
            RsaPadding::Pkcs1V15 => "pkcs1",
            RsaPadding::OaepSha1 => "oaep-sha1",
            RsaPadding::OaepSha256 => "oaep-sha256",
            RsaPadding::OaepSha384 => "oaep-sha384",
            RsaPadding::OaepSha512 => "oaep-sha512",
        }
    }

    /// The scheme named `name` (see [`name`](Self::name)).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    fn oaep(self) -> Option<&'static OaepAlgorithm> {
        match self {
            RsaPadding::Pkcs1V15 => None,
            RsaPadding::OaepSha1 => Some(&OAEP_SHA1_MGF1SHA1),
            RsaPadding::OaepSha256 => Some(&OAEP_SHA256_MGF1SHA256),
            RsaPadding::OaepSha384 => Some(&OAEP_SHA384_MGF1SHA384),
            RsaPadding::OaepSha512 => Some(&OAEP_SHA512_MGF1SHA512),
        }
    }
}

impl fmt::Display for RsaPadding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An RSA public key of at least [`MIN_RSA_BITS`].
pub struct RsaPublicKey(PublicEncryptingKey);

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaPublicKey({} bits)", self.0.key_size_bits())
    }
}

impl RsaPublicKey {
    /// From PEM: `PUBLIC KEY` (X.509 SubjectPublicKeyInfo) or `RSA PUBLIC KEY` (PKCS #1).
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let (label, der) = pem_decode(pem)?;
        let der = match label.as_str() {
            "PUBLIC KEY" => der,
            "RSA PUBLIC KEY" => Zeroizing::new(spki_from_pkcs1(&der)),
            other => return Err(key_error(format!("a PEM public key is PUBLIC KEY or RSA PUBLIC KEY, not {other}"))),
        };
        Self::from_der(&der)
    }

    /// From DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let content = one_der_structure(der, "public")?;
        let key = PublicEncryptingKey::from_der(der).map_err(|e| rejected("public", &e))?;
        check_rsa_encryption_spki(content)?;
        check_size(key.key_size_bits())?;
        Ok(Self(key))
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.0.key_size_bits()
    }

    /// Encrypts `plaintext` (a data key) with `padding`, which must be OAEP: PKCS #1 v1.5 is decrypt-only
    /// ([`Error::DecryptOnlyRsaPadding`]).
    pub fn encrypt(&self, padding: RsaPadding, plaintext: &[u8]) -> Result<Vec<u8>> {
        let algorithm = padding.oaep().ok_or(Error::DecryptOnlyRsaPadding)?;
        let mut out = vec![0u8; self.0.key_size_bytes()];
        let failed = |_| Error::Keyring(format!("RSA {padding} encryption of the data key failed").into());
        let key = OaepPublicEncryptingKey::new(self.0.clone()).map_err(failed)?;
        let len = key.encrypt(algorithm, plaintext, &mut out, None).map_err(failed)?.len();
        out.truncate(len);
        Ok(out)
    }
}

/// An RSA private key of at least [`MIN_RSA_BITS`]. Never printed; AWS-LC clears it when dropped.
pub struct RsaPrivateKey(PrivateDecryptingKey);

impl fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaPrivateKey({} bits, <redacted>)", self.0.key_size_bits())
    }
}

impl RsaPrivateKey {
    /// From PEM: `PRIVATE KEY` (PKCS #8) or `RSA PRIVATE KEY` (PKCS #1). Encrypted PEM is not supported.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let (label, der) = pem_decode(pem)?;
        let der = match label.as_str() {
            "PRIVATE KEY" => der,
            "RSA PRIVATE KEY" => pkcs8_from_pkcs1(&der),
            "ENCRYPTED PRIVATE KEY" => return Err(encrypted_pem()),
            other => {
                return Err(key_error(format!("a PEM private key is PRIVATE KEY or RSA PRIVATE KEY, not {other}")));
            }
        };
        Self::from_pkcs8_der(&der)
    }

    /// From DER PKCS #8.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        one_der_structure(der, "private")?;
        let key = PrivateDecryptingKey::from_pkcs8(der).map_err(|e| rejected("private", &e))?;
        check_size(key.key_size_bits())?;
        Ok(Self(key))
    }

    /// The public half, for encrypting.
    pub fn public_key(&self) -> RsaPublicKey {
        RsaPublicKey(self.0.public_key())
    }

    /// Decrypts `ciphertext` (an EDK's) with `padding`, which must be OAEP. PKCS #1 v1.5 always fails
    /// here: an error on a bad padding is the oracle it must not give; it goes through
    /// [`Pkcs1V15Decryptor`](pkcs1::Pkcs1V15Decryptor) instead.
    pub fn decrypt(&self, padding: RsaPadding, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, RsaDecryptFailed> {
        let algorithm = padding.oaep().ok_or(RsaDecryptFailed)?;
        let mut out = Zeroizing::new(vec![0u8; self.0.key_size_bytes()]);
        let key = OaepPrivateDecryptingKey::new(self.0.clone()).map_err(|_| RsaDecryptFailed)?;
        let len = key.decrypt(algorithm, ciphertext, &mut out, None).map_err(|_| RsaDecryptFailed)?.len();
        out.truncate(len);
        Ok(out)
    }

    /// The key as PKCS #8 DER, re-encoded by AWS-LC (so the same for every PEM form of a key); wiped on
    /// drop.
    fn pkcs8_der(&self) -> Result<Pkcs8V1Der<'static>> {
        self.0.as_der().map_err(|_| key_error("AWS-LC could not encode the private key".into()))
    }
}

/// RSA decryption failed. Deliberately without detail: which padding check failed is what a padding oracle
/// would want to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RsaDecryptFailed;

impl fmt::Display for RsaDecryptFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RSA decryption failed")
    }
}

impl std::error::Error for RsaDecryptFailed {}

fn encrypted_pem() -> Error {
    key_error(super::pem::ENCRYPTED.into())
}

fn pem_decode(pem: &[u8]) -> Result<(String, Zeroizing<Vec<u8>>)> {
    super::pem::decode(pem).map_err(key_error)
}

fn key_error(what: String) -> Error {
    Error::Config(format!("RSA key: {what}"))
}

/// AWS-LC's reason for refusing a key, in words: it refuses keys under 2048 bits itself.
fn rejected(kind: &str, err: &aws_lc_rs::error::KeyRejected) -> Error {
    match err.to_string().as_str() {
        "TooSmall" => {
            key_error(format!("keys under {MIN_RSA_BITS} bits are too weak; at least {MIN_RSA_BITS} are required"))
        }
        "TooLarge" => key_error("the key is larger than AWS-LC supports".into()),
        reason => key_error(format!("not an RSA {kind} key ({reason})")),
    }
}

/// Refuses bytes after the key's outer SEQUENCE, which AWS-LC ignores: a key file is one key, and bytes
/// after it mean it is not the file the user thinks.
fn one_der_structure<'a>(der: &'a [u8], kind: &str) -> Result<&'a [u8]> {
    let not_one = || key_error(format!("not an RSA {kind} key (not one DER structure)"));
    let (&first, rest) = der.split_first().ok_or_else(not_one)?;
    let (&len_byte, rest) = rest.split_first().ok_or_else(not_one)?;
    if first != 0x30 {
        return Err(not_one());
    }
    let (len, rest) = match len_byte {
        0..=0x7f => (usize::from(len_byte), rest),
        0x81..=0x84 => {
            let n = usize::from(len_byte & 0x7f);
            let bytes = rest.get(..n).ok_or_else(not_one)?;
            (bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)), &rest[n..])
        }
        _ => return Err(not_one()),
    };
    if len != rest.len() {
        return Err(not_one());
    }
    Ok(rest)
}

/// The `rsaEncryption` AlgorithmIdentifier's OID, as it starts a SubjectPublicKeyInfo's content. An RSA-PSS
/// key (`id-RSASSA-PSS`) is for signatures only: AWS-LC loads one but cannot encrypt with it.
const RSA_ENCRYPTION_OID: [u8; 11] = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

fn check_rsa_encryption_spki(content: &[u8]) -> Result<()> {
    // content: SEQUENCE (AlgorithmIdentifier) { OID, params }, BIT STRING.
    let algorithm_oid = content.get(2..2 + RSA_ENCRYPTION_OID.len());
    if content.first() != Some(&0x30) || algorithm_oid != Some(&RSA_ENCRYPTION_OID[..]) {
        return Err(key_error(
            "not an RSA encryption key (an RSA-PSS or non-RSA public key cannot wrap data keys)".into(),
        ));
    }
    Ok(())
}

fn check_size(bits: usize) -> Result<()> {
    if bits < MIN_RSA_BITS {
        return Err(key_error(format!("{bits}-bit keys are too weak; at least {MIN_RSA_BITS} bits are required")));
    }
    Ok(())
}

/// DER: a tag, its length, and `content`.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    // Sized up front, so that wrapping a private key never reallocates (a moved-from copy is not wiped).
    let mut out = Vec::with_capacity(content.len() + 2 + size_of::<usize>());
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// AlgorithmIdentifier { rsaEncryption, NULL }.
const RSA_ALGORITHM_ID: [u8; 15] =
    [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];

/// PKCS #8 PrivateKeyInfo around a PKCS #1 RSAPrivateKey (version 0, rsaEncryption).
fn pkcs8_from_pkcs1(pkcs1: &[u8]) -> Zeroizing<Vec<u8>> {
    let key = Zeroizing::new(der(0x04, pkcs1));
    let mut body = Zeroizing::new(Vec::with_capacity(3 + RSA_ALGORITHM_ID.len() + key.len()));
    body.extend_from_slice(&[0x02, 0x01, 0x00]);
    body.extend_from_slice(&RSA_ALGORITHM_ID);
    body.extend_from_slice(&key);
    Zeroizing::new(der(0x30, &body))
}

/// SubjectPublicKeyInfo around a PKCS #1 RSAPublicKey.
fn spki_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    let mut bits = vec![0x00];
    bits.extend_from_slice(pkcs1);
    let mut body = RSA_ALGORITHM_ID.to_vec();
    body.extend_from_slice(&der(0x03, &bits));
    der(0x30, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_oaep_padding_round_trips_and_a_wrong_padding_fails() {
        let key = PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let private = RsaPrivateKey(key.clone());
        let public = private.public_key();
        let pkcs1 = pkcs1::Pkcs1V15Decryptor::new(&private).unwrap();
        for padding in RsaPadding::ALL {
            assert_eq!(RsaPadding::from_name(padding.name()), Some(padding));
            if padding == RsaPadding::Pkcs1V15 {
                continue;
            }
            let ciphertext = public.encrypt(padding, &[7u8; 32]).unwrap();
            assert_eq!(ciphertext.len(), 256);
            assert_eq!(&*private.decrypt(padding, &ciphertext).unwrap(), &[7u8; 32]);
            for other in RsaPadding::ALL.into_iter().filter(|&p| p != padding) {
                assert!(private.decrypt(other, &ciphertext).is_err(), "{padding} read as {other}");
            }
            // Read as PKCS #1 v1.5 it yields a synthetic key (about one block in 2^16 has a valid padding
            // around other bytes), never the data key.
            assert_ne!(&*pkcs1.decrypt_data_key(&ciphertext, 32), &[7u8; 32]);
        }
        assert!(private.decrypt(RsaPadding::OaepSha256, &[1u8; 17]).is_err());
        assert!(format!("{private:?}").contains("redacted"));
    }

    /// PKCS #1 v1.5 is decrypt-only: encrypting is refused with the error that says to use OAEP, and
    /// `decrypt` refuses it too (it would be an oracle); a real PKCS #1 v1.5 EDK still decrypts.
    #[test]
    fn pkcs1_is_decrypt_only() {
        let key = PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let private = RsaPrivateKey(key.clone());
        let err = private.public_key().encrypt(RsaPadding::Pkcs1V15, &[7u8; 32]).unwrap_err();
        assert!(matches!(err, Error::DecryptOnlyRsaPadding), "{err:?}");
        assert!(err.to_string().contains("oaep-sha256"), "{err}");
        let ciphertext = pkcs1::tests::pkcs1_encrypt(&key, &[7u8; 32]);
        assert_eq!(private.decrypt(RsaPadding::Pkcs1V15, &ciphertext), Err(RsaDecryptFailed));
        let decryptor = pkcs1::Pkcs1V15Decryptor::new(&private).unwrap();
        assert_eq!(&*decryptor.decrypt_data_key(&ciphertext, 32), &[7u8; 32]);
    }

    #[test]
    fn bytes_after_the_key_are_refused() {
        let private = PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = aws_lc_rs::encoding::AsDer::as_der(&private).unwrap().as_ref().to_vec();
        assert!(RsaPrivateKey::from_pkcs8_der(&pkcs8).is_ok());
        let public = aws_lc_rs::encoding::AsDer::as_der(&private.public_key()).unwrap().as_ref().to_vec();
        assert!(RsaPublicKey::from_der(&public).is_ok());
        for (mut der, is_private) in [(pkcs8, true), (public, false)] {
            der.extend_from_slice(&[0, 0]);
            let err = if is_private {
                RsaPrivateKey::from_pkcs8_der(&der).unwrap_err()
            } else {
                RsaPublicKey::from_der(&der).unwrap_err()
            };
            assert!(err.to_string().contains("not one DER structure"), "{err}");
            der.truncate(der.len() - 3);
            assert!(if is_private {
                RsaPrivateKey::from_pkcs8_der(&der).is_err()
            } else {
                RsaPublicKey::from_der(&der).is_err()
            });
        }
        assert!(RsaPublicKey::from_der(&[]).is_err() && RsaPublicKey::from_der(&[0x30, 0x85, 0, 0, 0, 0, 1]).is_err());
    }

    /// `openssl genpkey -algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048 | openssl pkey -pubout`: a
    /// signature-only key that AWS-LC loads but cannot encrypt with.
    const RSA_PSS_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIDALBgkqhkiG9w0BAQoDggEPADCCAQoCggEBAKsBQkNSNZHdR7uaD0Ilnr7K\n\
p5ow6v8ENkN8CMJPzHzkHfkPACvL3uZd7MRPZHk6zeFUi456FVlc2M2KM9xP+XcV\n\
8jmYUdVvLWFNXN9faEDN1oc7laDZBPQZH4a5nHiPQfHBcVdksuIybFsx4GN9Dwms\n\
DYJgmTwoNGsxHiABinUpbxT3MjT7D6E3aBh0ouMZWzRB5oysRvHT3UXtzxCDWlNV\n\
RcZ6DAQ3o4cu2mx2KJV9lcRYSTnS8ntKPt0R9HQPT3o+LgMMzJZPlE471WlLUTeu\n\
//0qhJvJ3fRSMIz4GJu5DkMMOLptTsAU0IxCavsOCr2iX/PG1h0+iWJQvcTOpucC\n\
AwEAAQ==\n\
-----END PUBLIC KEY-----\n\
";

    #[test]
    fn an_rsa_pss_public_key_is_refused_when_loaded() {
        let err = RsaPublicKey::from_pem(RSA_PSS_PUBLIC_PEM.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("not an RSA encryption key"), "{err}");
    }

    #[test]
    fn pem_errors_are_clear() {
        for (pem, says) in [
            (&b"not a pem"[..], "not a PEM file"),
            (b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n", "not valid base64"),
            (b"-----BEGIN PRIVATE KEY-----\nAAAA\n", "no -----END PRIVATE KEY----- line"),
            (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not CERTIFICATE"),
            (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted PEM"),
            (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not an RSA private key"),
        ] {
            let err = RsaPrivateKey::from_pem(pem).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
