//! Secret hygiene: nothing secret in `Debug` output or error messages, and decrypted outputs are private
//! whatever the umask. And API hygiene: the message format's internals stay outside the public API.

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
    // In a process of its own: the umask is process-wide, and the other tests run beside this one.
    crate::common::in_own_process(
        "hygiene::decrypted_files_are_0600_even_under_a_permissive_umask",
        decrypted_files_are_0600_even_under_a_permissive_umask_alone,
    );
}

fn decrypted_files_are_0600_even_under_a_permissive_umask_alone() {
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

/// `format` and `crypto` are public only with feature `fuzzing`. The tests run with it (tests/suite/handmade.rs
/// needs it), so nothing else would notice a `pub mod` that lost its cfg and put the internals back under
/// the semver promise, or a doc example, README block or CLI source that names them (it passes here and
/// fails for a user, who builds without the feature).
#[test]
fn format_internals_are_public_only_with_fuzzing() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let lines: Vec<&str> = lib.lines().map(str::trim).collect();
    for module in ["format", "crypto"] {
        let declared: Vec<(&str, &str)> = lines
            .windows(2)
            .filter(|pair| pair[1].ends_with(&format!("mod {module};")))
            .map(|pair| (pair[0], pair[1]))
            .collect();
        let public = format!("pub mod {module};");
        let private = format!("pub(crate) mod {module};");
        assert_eq!(
            declared,
            [
                (r#"#[cfg(feature = "fuzzing")]"#, public.as_str()),
                (r#"#[cfg(not(feature = "fuzzing"))]"#, private.as_str())
            ],
            "src/lib.rs must declare `{module}` public under cfg(feature = \"fuzzing\") only"
        );
    }

    let mut files = vec![root.join("README.md")];
    let mut dirs = vec![root.join("src"), root.join("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                // The internals may name themselves in their own docs, which only `fuzzing` documents.
                if !(path.ends_with("src/format") || path.ends_with("src/crypto")) {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.contains("kms_envelope::format") && !line.contains("kms_envelope::crypto"),
                "{}:{}: names an internal module, which users cannot: {line}",
                file.display(),
                n + 1
            );
        }
    }
}

/// What an INPUT or OUTPUT is (`-`, a path, `s3://`) is decided in one file, `src/cli/location.rs`, once
/// (issue #30): no other CLI source compares an argument with `"-"` or looks for an `s3://` prefix, so a
/// new subcommand gets every refusal of its pair from there rather than re-testing strings in its own order.
/// Comments, help text and test modules may name the forms.
#[test]
fn only_the_cli_location_module_tells_what_an_input_or_output_is() {
    let cli = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let tests = [r#"== "-""#, r#"!= "-""#, r#""s3://")"#, r#""s3://{"#, "is_s3("];
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&cli).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|name| name == "location.rs") || path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.lines().take_while(|line| line.trim() != "#[cfg(test)]");
        for (n, line) in code.enumerate().filter(|(_, line)| !line.trim_start().starts_with("//")) {
            if tests.iter().any(|test| line.contains(test)) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "string tests of a location outside src/cli/location.rs:\n{}", found.join("\n"));
}
