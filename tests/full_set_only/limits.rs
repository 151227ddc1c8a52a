//! The README's limits table, pinned: with the defaults a user gets (`DecryptOptions::new()`), a message
//! exactly at each limit decrypts and one a byte (or a key) over it is refused with `LimitExceeded`. The
//! non-framed body limit needs a non-framed message, which only the Python ESDK writes:
//! `tests/suite/interop_python.rs` pins it.

use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture};
use kms_envelope::{
    DecryptLimits, DecryptOptions, Decryptor, EncryptOptions, EncryptedDataKey, Error, FRAME_OVERHEAD, Keyring,
    RawAesKeyring, decrypt, encrypt,
};

const DEFAULTS: DecryptLimits = DecryptLimits::DEFAULT;

fn raw_aes() -> RawAesKeyring {
    RawAesKeyring::new("limits", "key", &[7; 32]).unwrap()
}

/// Raw AES, plus EDKs of another provider that only make the header longer: one per entry of `padding`,
/// with a ciphertext of that many bytes.
struct Padded {
    inner: RawAesKeyring,
    padding: Vec<usize>,
}

impl Keyring for Padded {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        Box::pin(async move {
            let mut materials = self.inner.on_encrypt(materials).await?;
            for (i, &len) in self.padding.iter().enumerate() {
                materials.add_encrypted_data_key(EncryptedDataKey {
                    provider_id: "padding".into(),
                    provider_info: (i as u32).to_be_bytes().to_vec(),
                    ciphertext: vec![0xa5; len],
                });
            }
            Ok(materials)
        })
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        self.inner.on_decrypt(materials, edks)
    }
}

fn padded(padding: Vec<usize>) -> Vec<u8> {
    encrypt(&Padded { inner: raw_aes(), padding }, &EncryptOptions::new(), b"at the limit").unwrap()
}

/// The header length of `message`, read with no header limit.
fn header_len(message: &[u8]) -> usize {
    let unlimited = DecryptLimits { max_header_len: usize::MAX, ..DEFAULTS };
    decrypt(&raw_aes(), &DecryptOptions::new().limits(unlimited), message).unwrap().header.as_bytes().len()
}

fn assert_limit_exceeded(result: kms_envelope::Result<kms_envelope::Decrypted>, which: &str, value: u64, max: u64) {
    match result {
        Err(Error::LimitExceeded { limit, value: v, max: m }) => {
            assert_eq!((limit, v, m), (which, value, max));
        }
        Err(other) => panic!("{which}: expected LimitExceeded, got {other}"),
        Ok(_) => panic!("{which}: a message over the limit decrypted"),
    }
}

#[test]
fn the_defaults_are_the_readme_table() {
    assert_eq!(DecryptLimits::default(), DEFAULTS);
    assert_eq!(DEFAULTS.max_frame_length, 16 << 20);
    assert_eq!(DEFAULTS.max_header_len, 4 << 20);
    assert_eq!(DEFAULTS.max_nonframed_body_len, 64 << 20);
    assert_eq!(DEFAULTS.max_encrypted_data_keys, None);
    assert_eq!(DEFAULTS.max_frame_buffers, 40 << 20);
    // Two frames of the longest length accepted fit: one read or written while the other is opened.
    assert!(2 * (DEFAULTS.max_frame_length as usize + FRAME_OVERHEAD) <= DEFAULTS.max_frame_buffers);
}

#[test]
fn a_frame_the_frame_buffers_cannot_hold_is_refused_before_the_keyring() {
    let frame = 1u32 << 20;
    let needed = frame as usize + FRAME_OVERHEAD;
    let message = encrypt(&raw_aes(), &EncryptOptions::new().frame_length(frame), b"one short final frame").unwrap();
    let fits = DecryptOptions::new().limits(DecryptLimits { max_frame_buffers: needed, ..DEFAULTS });
    assert_eq!(&*decrypt(&raw_aes(), &fits, &message).unwrap().plaintext, b"one short final frame");

    // A wrong key: had the keyring run, the error would be that no key decrypted the data key.
    let wrong_key = RawAesKeyring::new("limits", "key", &[8; 32]).unwrap();
    let short = DecryptOptions::new().limits(DecryptLimits { max_frame_buffers: needed - 1, ..DEFAULTS });
    let (which, value, max) = ("frame buffer (frame length + 28 bytes)", needed as u64, needed as u64 - 1);
    assert_limit_exceeded(decrypt(&wrong_key, &short, &message), which, value, max);
    match Decryptor::new(&wrong_key, &short, &message[..]) {
        Err(Error::LimitExceeded { limit, .. }) => assert_eq!(limit, which),
        other => panic!("the streaming decryptor: {:?}", other.map(drop)),
    }
}

#[test]
fn frame_length_16_mib_is_accepted_and_one_byte_more_refused() {
    let max = DEFAULTS.max_frame_length;
    let plaintext = b"one short final frame".to_vec();
    let at = encrypt(&raw_aes(), &EncryptOptions::new().frame_length(max), &plaintext).unwrap();
    let decrypted = decrypt(&raw_aes(), &DecryptOptions::new(), &at).unwrap();
    assert_eq!((decrypted.header.frame_length(), &*decrypted.plaintext), (max, &plaintext));
    let over = encrypt(&raw_aes(), &EncryptOptions::new().frame_length(max + 1), &plaintext).unwrap();
    assert_limit_exceeded(
        decrypt(&raw_aes(), &DecryptOptions::new(), &over),
        "frame length",
        u64::from(max) + 1,
        max.into(),
    );
}

#[test]
fn a_4_mib_header_is_accepted_and_one_byte_more_refused() {
    let max = DEFAULTS.max_header_len;
    // EDKs of 60,000-byte ciphertexts fill most of it; the last one's length then lands it exactly.
    let mut padding = vec![60_000; max / 60_100];
    padding.push(0);
    let with_empty = header_len(&padded(padding.clone()));
    let last = padding.len() - 1;
    padding[last] = max - with_empty;
    assert!(padding[last] < 65_536, "{padding:?}");
    let at = padded(padding.clone());
    assert_eq!(header_len(&at), max);
    let decrypted = decrypt(&raw_aes(), &DecryptOptions::new(), &at).unwrap();
    assert_eq!(&*decrypted.plaintext, b"at the limit");

    padding[last] += 1;
    let over = padded(padding);
    assert_eq!(header_len(&over), max + 1);
    // Refused at the header's last field, the one that would take it past the limit, before it is read.
    let max = max as u64;
    assert_limit_exceeded(decrypt(&raw_aes(), &DecryptOptions::new(), &over), "header length", max + 1, max);
}

/// No EDK limit by default, like the ESDK: a header with the format's maximum, 65,535 EDKs, decrypts. (The
/// CLI and the Lambda decryptor apply `RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS`; `tests/suite/cli.rs` and
/// `tests/hostile_kms.rs` pin that one.)
#[test]
fn no_edk_limit_by_default_up_to_the_formats_65535() {
    let message = padded(vec![1; 65_534]);
    let decrypted = decrypt(&raw_aes(), &DecryptOptions::new(), &message).unwrap();
    assert_eq!(decrypted.header.encrypted_data_keys().len(), 65_535);
    // The same message with the recommended limit set is refused at the count, before any keyring runs.
    let limits = DecryptLimits { max_encrypted_data_keys: Some(10), ..DEFAULTS };
    assert_limit_exceeded(
        decrypt(&raw_aes(), &DecryptOptions::new().limits(limits), &message),
        "encrypted data key count",
        65_535,
        10,
    );
}
