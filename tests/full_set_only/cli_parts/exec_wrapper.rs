//! The layer's exec wrapper (`/opt/kms-envelope-exec-wrapper`, which runs `kms-envelope-extension --exec --
//! "$@"`): the secrets in the runtime's environment. Under the emulator with a Python function that reads
//! `os.environ`, and alone (the extension binary with a stub KMS) for its refusals.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;

use kms_envelope::{EncryptOptions, Encryptor};

use super::{Alone, Function, Peers, SECRET, STUB_KEY_ARN, ok_json, sha};

/// The function: it reads its configuration from `os.environ` at init, knowing nothing of kms-envelope.
const WRAPPED_HANDLER: &str = r#"
import hashlib, os
DB_PASSWORD = os.environ.get("DB_PASSWORD")
def handler(event, context):
    return {"db_password_sha256": DB_PASSWORD and hashlib.sha256(DB_PASSWORD.encode()).hexdigest(),
            "api_key": os.environ.get("API_KEY"),
            "root": sorted(os.listdir(os.environ["KMS_ENVELOPE_ROOT"]))}
"#;

/// Where the layer puts the wrapper, and the value the function's owner gives `AWS_LAMBDA_EXEC_WRAPPER`.
const WRAPPER: &str = "/opt/kms-envelope-exec-wrapper";

#[test]
fn a_python_function_started_through_the_wrapper_finds_its_secrets_in_os_environ_and_no_file() {
    let Some(peers) = Peers::get() else { return };
    let function = Function::new(peers);
    let wrapper = function.path("opt/kms-envelope-exec-wrapper");
    fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kms-envelope-exec-wrapper"), &wrapper).unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(function.path("task/wrapped.py"), WRAPPED_HANDLER).unwrap();
    let secrets = format!(r#"{{"DB_PASSWORD": "{SECRET}", "API_KEY": "from-secrets"}}"#);
    fs::write(function.path("task/secrets.esdk"), function.encrypt(secrets.as_bytes())).unwrap();
    // The function's own configuration sets API_KEY: it wins over the secret.
    let vars = [("AWS_LAMBDA_EXEC_WRAPPER", WRAPPER), ("API_KEY", "from-configuration")];
    let rie = function.start_as(&vars, Some(WRAPPER), "wrapped.handler");
    let answer = ok_json(&rie);
    let (log, left) = rie.stop();
    assert_eq!(answer["db_password_sha256"], sha(SECRET.as_bytes()), "{answer}\n{log}");
    assert_eq!(answer["api_key"], "from-configuration", "{answer}");
    assert_eq!(answer["root"], serde_json::json!([]), "the extension wrote no secrets file: {answer}");
    assert!(left.is_empty(), "{left:?}");
    assert!(log.contains("left to the exec wrapper") && log.contains("2 secret(s) in the environment"), "{log}");
    assert!(!log.contains(SECRET), "the secret reached the log:\n{log}");
}

/// `plaintext` encrypted for the stub KMS into `task/NAME`.
fn write_alone(alone: &Alone, name: &str, plaintext: &str) {
    let keyring = alone.kms.clients().keyring(STUB_KEY_ARN).unwrap();
    let mut encryptor = Encryptor::new(&keyring, &EncryptOptions::new(), Vec::new()).unwrap();
    std::io::Write::write_all(&mut encryptor, plaintext.as_bytes()).unwrap();
    fs::write(alone.work.path().join("task").join(name), encryptor.finish().unwrap()).unwrap();
}

#[test]
fn the_wrapper_mode_executes_the_command_with_the_secrets_and_writes_nothing() {
    let alone = Alone::new();
    let print = ["--exec", "--", "sh", "-c", "printf %s \"$DB_PASSWORD\"; kill -TERM $$"];
    let only_secrets = [("KMS_ENVELOPE_BUNDLES", "")];
    let ended = alone.run_with(&print, None, &only_secrets);
    assert_eq!(ended.stdout, SECRET, "{}", ended.stderr);
    assert_eq!(ended.status.signal(), Some(15), "the runtime is our process: {:?}", ended.status);
    assert!(ended.listing.is_empty(), "{:?}", ended.listing);
    assert!(!ended.stderr.contains(SECRET), "{}", ended.stderr);
    let ended = alone.run_with(&print, None, &[("KMS_ENVELOPE_BUNDLES", ""), ("DB_PASSWORD", "own")]);
    assert_eq!(ended.stdout, "own", "the function's own variable wins");
}

#[test]
fn the_wrapper_mode_refuses_snapstart_denied_names_bad_secrets_and_public_key_writers() {
    let alone = Alone::new();
    write_alone(&alone, "denied.esdk", &format!(r#"{{"LD_PRELOAD": "{SECRET}"}}"#));
    let run = ["--exec", "--", "echo", "ran"];
    for (vars, expected) in [
        (vec![("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")], "snap-start"),
        (vec![("KMS_ENVELOPE_SECRETS", "denied.esdk")], "refusing to set LD_PRELOAD"),
        (vec![("KMS_ENVELOPE_SECRETS", "not-json.esdk")], "not a JSON object of strings"),
        (
            vec![
                ("KMS_ENVELOPE_KMS_KEY_ARN", ""),
                ("KMS_ENVELOPE_KMS_DISCOVERY", "true"),
                ("KMS_ENVELOPE_KMS_ACCOUNTS", "*"),
            ],
            "KMS_ENVELOPE_EXEC_ALLOW_PUBLIC_KEY_WRITERS",
        ),
        (
            // ECDH with no sender pinned: refused before the key file (absent here) is read.
            vec![
                ("KMS_ENVELOPE_KMS_KEY_ARN", ""),
                ("KMS_ENVELOPE_ECDH_CURVE", "p256"),
                ("KMS_ENVELOPE_ECDH_PRIVATE_KEY_FILE", "/nonexistent/own.pem"),
            ],
            "KMS_ENVELOPE_EXEC_ALLOW_PUBLIC_KEY_WRITERS",
        ),
    ] {
        let ended = alone.run_with(&run, None, &vars);
        assert_eq!(ended.status.code(), Some(1), "{vars:?}: {}", ended.stderr);
        assert!(ended.stdout.is_empty(), "the runtime must not start: {vars:?}");
        assert!(ended.stderr.contains(expected), "{expected:?} not in {}", ended.stderr);
        assert!(!ended.stderr.contains(SECRET), "{}", ended.stderr);
    }
    let allowed = [("KMS_ENVELOPE_SECRETS", "denied.esdk"), ("KMS_ENVELOPE_EXEC_ALLOW_NAMES", "LD_PRELOAD")];
    let ended = alone.run_with(&["--exec", "--", "sh", "-c", "test -n \"$LD_PRELOAD\" && echo set"], None, &allowed);
    // The dynamic linker itself complains about the preload that does not exist; the shell still runs.
    assert_eq!(ended.stdout, "set\n", "{}", ended.stderr);
}
