//! Secret hygiene: nothing secret in `Debug` output or error messages, and decrypted outputs are private
//! whatever the umask.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use kms_envelope::OutputOptions;
use kms_envelope::{DataKey, DecryptOptions, Decryptor, EncryptOptions, Encryptor, RawAesKeyring, decrypt_to_path};

const KEY: [u8; 32] = [0xab; 32];

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("hygiene", "key", &KEY).unwrap()
}

/// Eight key bytes in a row, as `Debug` would print them in a byte list or as hex, or the plaintext.
///
/// Eight bytes, not two: the message id, commitment and tags printed in a header are random, and a random
/// byte string of a few hundred bytes holds `ab ab` somewhere about one run in a hundred (CI saw it), while
/// eight in a row turn up by chance about once in 2^60.
fn leaks(text: &str) -> bool {
    text.contains(&["171"; 8].join(", ")) || text.to_lowercase().contains(&"ab".repeat(8)) || text.contains("hunter2")
}

#[test]
fn debug_output_and_errors_carry_no_secret() {
    let samples = [
        format!("{:?}", keyring()),
        format!("{:?}", DataKey::new(KEY.to_vec())),
        format!("{:?}", Encryptor::new(&keyring(), &EncryptOptions::new(), Vec::new()).unwrap()),
    ];
    let message = kms_envelope::encrypt(&keyring(), &EncryptOptions::new(), b"hunter2").unwrap();
    let decryptor = Decryptor::new(&keyring(), &DecryptOptions::new(), &message[..]).unwrap();
    let decrypted = kms_envelope::decrypt(&keyring(), &DecryptOptions::new(), &message).unwrap();
    let mut tampered = message.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let errors = [
        kms_envelope::decrypt(&keyring(), &DecryptOptions::new(), &tampered).unwrap_err().to_string(),
        kms_envelope::decrypt(
            &RawAesKeyring::new("hygiene", "key", &[1; 32]).unwrap(),
            &DecryptOptions::new(),
            &message,
        )
        .unwrap_err()
        .to_string(),
    ];
    for text in
        samples.iter().chain([format!("{decryptor:?}"), format!("{:?}", decrypted.header)].iter()).chain(&errors)
    {
        assert!(!leaks(text), "secret material in: {text}");
    }
    assert_eq!(&*decrypted.plaintext, b"hunter2");
}

#[test]
fn decrypted_files_are_0600_even_under_a_permissive_umask() {
    // The only test in this binary that touches the umask, which is process-wide.
    let previous = rustix::process::umask(rustix::fs::Mode::empty());
    let dir = tempfile::tempdir().unwrap();
    let mut encryptor = Encryptor::new(&keyring(), &EncryptOptions::new(), Vec::new()).unwrap();
    encryptor.write_all(b"secret").unwrap();
    let message = encryptor.finish().unwrap();
    let out = dir.path().join("plain");
    decrypt_to_path(&keyring(), &DecryptOptions::new(), &message[..], &out, &OutputOptions::new().sync(false)).unwrap();
    rustix::process::umask(previous);
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&out).unwrap(), b"secret");
}
