//! Valid, authenticated messages whose plaintext is not what the caller asked for (not a tar bundle, not a
//! JSON object of strings, not of the caller's type): the parsers of decrypted data must say what is wrong
//! and where without quoting it. Each plaintext carries a marker secret that must appear in no error
//! (`Display` or `Debug`), no log line and no CLI stderr.
#![cfg(feature = "bundle")]

use std::fs;

use kms_envelope::OutputOptions;
use kms_envelope::bundle::{decrypt_directory, unpack_verified};
use kms_envelope::{DecryptOptions, Decryptor, EncryptOptions, Encryptor, Error, RawAesKeyring};

const MARKER: &str = "hunter2-m4rker-5ecret";
/// A secret that serde would quote as a number.
const NUMERIC_MARKER: &str = "8675309123";

const NS: &str = "pipeline";
const NAME: &str = "key-1";
const KEY: [u8; 32] = [0x42; 32];

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new(NS, NAME, &KEY).unwrap()
}

fn encrypt(plaintext: &[u8]) -> Vec<u8> {
    let mut encryptor = Encryptor::new(&keyring(), &EncryptOptions::new().frame_length(1024), Vec::new()).unwrap();
    std::io::Write::write_all(&mut encryptor, plaintext).unwrap();
    encryptor.finish().unwrap()
}

/// An encrypted `.env` file: the tar reader takes its first 512 bytes for a header.
fn dot_env() -> Vec<u8> {
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!("DB_PASSWORD_{i}={MARKER}\nAPI_KEY_{i}=sk-{MARKER}\n"));
    }
    text.into_bytes()
}

/// A tar header with a valid checksum whose name and size field hold the marker: the reader fails on the
/// size and names the entry in its message.
fn bad_size_field() -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..MARKER.len()].copy_from_slice(MARKER.as_bytes());
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o600);
    header.as_old_mut().size.copy_from_slice(&MARKER.as_bytes()[..12]);
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    tar.extend_from_slice(&[0; 1024]);
    tar
}

/// A GNU long-name entry holding the marker, then a header whose size field is not a number: the reader
/// names the entry by its long name when it fails.
fn bad_entry_after_long_name() -> Vec<u8> {
    let mut long_name = tar::Header::new_gnu();
    long_name.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    long_name.set_entry_type(tar::EntryType::GNULongName);
    long_name.set_size(MARKER.len() as u64 + 1);
    long_name.set_mode(0o600);
    long_name.set_cksum();
    let mut tar = long_name.as_bytes().to_vec();
    let mut name = MARKER.as_bytes().to_vec();
    name.resize(512, 0);
    tar.extend_from_slice(&name);
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..4].copy_from_slice(b"file");
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o600);
    header.as_gnu_mut().unwrap().size.copy_from_slice(b"not-a-size!!");
    header.set_cksum();
    tar.extend_from_slice(header.as_bytes());
    tar.extend_from_slice(&[0; 1024]);
    tar
}

fn not_bundles() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a .env file", dot_env()),
        ("a bad size field", bad_size_field()),
        ("a long name, then a bad size field", bad_entry_after_long_name()),
    ]
}

fn assert_no_marker(what: &str, text: &str) {
    for marker in [MARKER, &MARKER[..8], NUMERIC_MARKER] {
        assert!(!text.contains(marker), "{what} quotes the decrypted data ({marker}): {text}");
    }
}

fn assert_quiet_error(what: &str, err: &Error) {
    assert_no_marker(what, &err.to_string());
    assert_no_marker(what, &format!("{err:?}"));
}

#[test]
fn library_unbundle_of_a_message_that_is_not_a_bundle_quotes_nothing() {
    let work = tempfile::tempdir().unwrap();
    for (what, plaintext) in not_bundles() {
        let message = encrypt(&plaintext);
        let out = work.path().join("out");
        let err = decrypt_directory(&keyring(), &DecryptOptions::new(), &message[..], &out, &OutputOptions::new())
            .unwrap_err();
        assert_quiet_error(what, &err);
        assert!(matches!(&err, Error::Bundle(_)), "{what}: {err:?}");
        assert!(err.to_string().contains("not a kms-envelope bundle (tar): byte offset"), "{what}: {err}");

        let decryptor = Decryptor::new(&keyring(), &DecryptOptions::new(), &message[..]).unwrap();
        let err = unpack_verified(decryptor, &out, &OutputOptions::new()).unwrap_err();
        assert_quiet_error(what, &err);
        assert!(!out.exists());
        assert_eq!(fs::read_dir(work.path()).unwrap().count(), 0, "{what}: nothing is left behind");
    }
}

#[test]
fn a_tampered_frame_inside_a_bundle_still_reads_as_the_frame_failure() {
    // The reader's own failures are not hidden behind "not a bundle".
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("big"), vec![7u8; 10_000]).unwrap();
    let options = EncryptOptions::new().frame_length(1024);
    let (mut message, _) = kms_envelope::bundle::encrypt_directory(&keyring(), &options, &src, Vec::new()).unwrap();
    let at = message.len() / 2;
    message[at] ^= 1;
    let err = decrypt_directory(
        &keyring(),
        &DecryptOptions::new(),
        &message[..],
        &work.path().join("out"),
        &OutputOptions::new(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::FrameAuthentication { .. }), "{err:?}");
}

#[cfg(feature = "cli")]
#[test]
fn cli_unbundle_of_a_message_that_is_not_a_bundle_quotes_nothing_on_stderr() {
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("wrapping.key"), KEY).unwrap();
    for (what, plaintext) in not_bundles() {
        fs::write(work.path().join("m.esdk"), encrypt(&plaintext)).unwrap();
        let out = assert_cmd::Command::cargo_bin("kms-envelope")
            .unwrap()
            .current_dir(work.path())
            .args(["unbundle", "--raw-key-file", "wrapping.key", "--key-namespace", NS, "--key-name", NAME])
            .args(["m.esdk", "out"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_no_marker(what, &stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains("not a kms-envelope bundle"), "{what}: {stderr}");
        assert_no_marker(what, &String::from_utf8_lossy(&out.stdout));
        assert!(!work.path().join("out").exists());
    }
}

#[cfg(feature = "lambda")]
mod lambda {
    use std::path::Path;
    use std::sync::{Arc, Mutex, OnceLock};

    use super::*;
    use kms_envelope::lambda::{BundleSpec, ColdStart, Secrets, Source};
    use zeroize::Zeroizing;

    /// Everything `tracing` writes in this test binary, from every thread.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logs() -> &'static Captured {
        static LOGS: OnceLock<Captured> = OnceLock::new();
        LOGS.get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("only this helper installs a subscriber");
            captured
        })
    }

    fn assert_logs_quiet(what: &str) {
        let logs = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
        assert!(!logs.is_empty(), "the subscriber captured nothing: the check would be vacuous");
        assert_no_marker(what, &logs);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    fn cold_start(root: &Path, package: &Path) -> ColdStart {
        ColdStart::new(keyring()).root(root).task_root(package)
    }

    #[test]
    fn lambda_directory_bundle_that_is_not_a_bundle_quotes_nothing() {
        // In a process of its own: the subscriber that captures the logs is process-wide.
        crate::common::in_own_process(
            "plaintext_in_errors::lambda::lambda_directory_bundle_that_is_not_a_bundle_quotes_nothing",
            lambda_directory_bundle_that_is_not_a_bundle_quotes_nothing_alone,
        );
    }

    fn lambda_directory_bundle_that_is_not_a_bundle_quotes_nothing_alone() {
        logs();
        let work = tempfile::tempdir().unwrap();
        let (package, root) = (work.path().join("package"), work.path().join("tmp"));
        fs::create_dir_all(&package).unwrap();
        fs::create_dir_all(&root).unwrap();
        for (i, (what, plaintext)) in not_bundles().into_iter().enumerate() {
            let name = format!("m{i}.esdk");
            fs::write(package.join(&name), encrypt(&plaintext)).unwrap();
            let cold = cold_start(&root, &package).bundle(BundleSpec::directory(&name, "tree").unwrap());
            let err = runtime().block_on(cold.run()).unwrap_err();
            assert_quiet_error(what, &err);
            assert!(matches!(&err, Error::Bundle(_)), "{what}: {err:?}");
            assert!(!root.join("tree").exists());
        }
        // A good bundle logs, so the log check below is not vacuous.
        let src = work.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("ok"), b"fine").unwrap();
        let good =
            kms_envelope::bundle::encrypt_directory(&keyring(), &EncryptOptions::new(), &src, Vec::new()).unwrap();
        fs::write(package.join("good.esdk"), good.0).unwrap();
        let cold = cold_start(&root, &package).bundle(BundleSpec::directory("good.esdk", "tree").unwrap());
        runtime().block_on(cold.run()).unwrap();
        assert_logs_quiet("the Lambda directory path's logs");
    }

    #[test]
    fn lambda_secrets_that_are_not_a_json_object_of_strings_quote_nothing() {
        // In a process of its own: the subscriber that captures the logs is process-wide.
        crate::common::in_own_process(
            "plaintext_in_errors::lambda::lambda_secrets_that_are_not_a_json_object_of_strings_quote_nothing",
            lambda_secrets_that_are_not_a_json_object_of_strings_quote_nothing_alone,
        );
    }

    fn lambda_secrets_that_are_not_a_json_object_of_strings_quote_nothing_alone() {
        logs();
        let work = tempfile::tempdir().unwrap();
        let (package, root) = (work.path().join("package"), work.path().join("tmp"));
        fs::create_dir_all(&package).unwrap();
        let cases = [
            ("a .env file", dot_env()),
            ("a number where a string belongs", format!(r#"{{"PIN": {NUMERIC_MARKER}}}"#).into_bytes()),
            ("a list where a string belongs", format!(r#"{{"DB": ["{MARKER}"]}}"#).into_bytes()),
            ("unterminated JSON", format!(r#"{{"DB": "{MARKER}"#).into_bytes()),
            ("bad escape", format!(r#"{{"DB": "{MARKER}\q"}}"#).into_bytes()),
        ];
        for (i, (what, plaintext)) in cases.into_iter().enumerate() {
            let name = format!("s{i}.esdk");
            fs::write(package.join(&name), encrypt(&plaintext)).unwrap();
            let cold = cold_start(&root, &package);
            let err = runtime().block_on(cold.load_secrets(&Source::parse(&name).unwrap())).unwrap_err();
            assert_quiet_error(what, &err);
            assert!(matches!(&err, Error::Config(m) if m.contains("line 1")), "{what}: {err:?}");
        }
        // A good secrets bundle logs, so the log check below is not vacuous.
        fs::write(package.join("good.esdk"), encrypt(br#"{"OK": "fine"}"#)).unwrap();
        let cold = cold_start(&root, &package);
        runtime().block_on(cold.load_secrets(&Source::parse("good.esdk").unwrap())).unwrap();
        assert_logs_quiet("the Lambda secrets path's logs");
    }

    #[test]
    fn secrets_that_do_not_fit_the_callers_type_quote_nothing() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Config {
            port: Option<u16>,
            mode: Option<Mode>,
        }
        #[derive(Debug, serde::Deserialize)]
        enum Mode {
            Fast,
        }
        for (what, json) in [
            ("a string where a number belongs", format!(r#"{{"port": "{MARKER}"}}"#)),
            ("an unknown variant", format!(r#"{{"mode": "{MARKER}"}}"#)),
            ("an unknown field", format!(r#"{{"{MARKER}": "x"}}"#)),
        ] {
            let secrets = Secrets::from_json(Zeroizing::new(json.into_bytes())).unwrap();
            let err = secrets.deserialize::<Config>().unwrap_err();
            assert_quiet_error(what, &err);
            assert!(err.to_string().contains("does not fit the type"), "{what}: {err}");
        }
    }
}
