//! Re-encryption (`reencrypt`, `reencrypt_path`): checked by the official vectors as sources and the Python
//! ESDK as the reader of what comes out, which gets the new key alone.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture};
use kms_envelope::{
    AlgorithmSuite, CommitmentPolicy, DecryptOptions, EncryptOptions, EncryptedDataKey, Error, Keyring, MultiKeyring,
    OutputOptions, RawAesKeyring, ReencryptOptions, decrypt, encrypt, reencrypt, reencrypt_path,
};
use serde_json::Value;

const NEW_NAMESPACE: &str = "kms-envelope-rotation";
const NEW_NAME: &str = "key-2026";
const NEW_KEY: [u8; 32] = [
    0x8b, 0x21, 0x3d, 0x04, 0xf0, 0x5e, 0x9a, 0x77, 0x12, 0xc4, 0x6e, 0x31, 0xaa, 0x0d, 0x58, 0xe2, 0x47, 0x9f, 0x3b,
    0x60, 0xd1, 0x2c, 0x85, 0x1a, 0x73, 0xbe, 0x09, 0xf4, 0x66, 0x38, 0xcd, 0x5b,
];

fn new_keyring() -> RawAesKeyring {
    RawAesKeyring::new(NEW_NAMESPACE, NEW_NAME, &NEW_KEY).unwrap()
}

fn old_keyring() -> RawAesKeyring {
    RawAesKeyring::new("kms-envelope-rotation", "key-2025", &[0x42; 32]).unwrap()
}

/// One success row of `tests/vectors/raw-aes-index.tsv`.
struct Row {
    set: String,
    suite: String,
    required_cmm: bool,
    ciphertext: PathBuf,
    plaintext: PathBuf,
    keyring: MultiKeyring,
    /// (material, namespace, name) of each key, for the Python peer.
    keys: Vec<(Vec<u8>, String, String)>,
    reproduced: Vec<(String, String)>,
}

fn rows() -> Vec<Row> {
    let dir = common::vectors_dir().unwrap();
    let index = fs::read_to_string(dir.join("raw-aes-index.tsv")).unwrap();
    let mut rows = Vec::new();
    for line in index.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f[3], "success", "the index lists only vectors that decrypt");
        let set_dir = dir.join(f[0]);
        let keys: Value = serde_json::from_str(&fs::read_to_string(set_dir.join("keys.json")).unwrap()).unwrap();
        let raw_keys: Vec<(Vec<u8>, String, String)> = f[7]
            .split(',')
            .zip(f[8].split(','))
            .map(|(key, provider)| {
                let entry = &keys["keys"][key.strip_prefix("keys.json:").unwrap()];
                let material = base64::engine::general_purpose::STANDARD.decode(entry["material"].as_str().unwrap());
                (material.unwrap(), provider.to_owned(), entry["key-id"].as_str().unwrap().to_owned())
            })
            .collect();
        let mut keyrings =
            raw_keys.iter().map(|(material, provider, name)| RawAesKeyring::new(provider, name, material).unwrap());
        let mut keyring = MultiKeyring::new(keyrings.next().unwrap());
        for k in keyrings {
            keyring = keyring.with_child(k);
        }
        // The last column is a JSON object, quoted TSV-style (doubled quotes) when not empty.
        let json = f[10].trim_matches('"').replace("\"\"", "\"");
        let reproduced: serde_json::Map<String, Value> = serde_json::from_str(&json).unwrap();
        rows.push(Row {
            set: f[0].into(),
            suite: f[1].into(),
            required_cmm: f[4] == "RequiredEncryptionContext",
            ciphertext: set_dir.join(f[5]),
            plaintext: set_dir.join(f[6]),
            keyring,
            keys: raw_keys,
            reproduced: reproduced.into_iter().map(|(k, v)| (k, v.as_str().unwrap().to_owned())).collect(),
        });
    }
    rows
}

fn context_json(pairs: &[(String, String)]) -> String {
    let map: serde_json::Map<String, Value> = pairs.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
    serde_json::to_string(&map).unwrap()
}

fn source_options(row: &Row) -> DecryptOptions {
    let mut options = DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
    for (k, v) in &row.reproduced {
        if row.required_cmm {
            options = options.require_context_key(k.clone());
        }
        options = options.context(k.clone(), v.clone());
    }
    options
}

/// A Python peer command line that decrypts `input` into `output` with the new key alone (and, if given,
/// the reproduced context), writing the header it read to `header`.
fn python_decrypt(input: &Path, output: &Path, header: &Path, context: Option<String>) -> Vec<String> {
    let new_key = [(NEW_KEY.to_vec(), NEW_NAMESPACE.to_owned(), NEW_NAME.to_owned())];
    python_decrypt_with(&new_key, "require-encrypt-require-decrypt", input, output, header, context)
}

/// [`python_decrypt`] with other keys (material, namespace, name) and commitment policy.
fn python_decrypt_with(
    keys: &[(Vec<u8>, String, String)],
    policy: &str,
    input: &Path,
    output: &Path,
    header: &Path,
    context: Option<String>,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "decrypt".into(),
        "--in".into(),
        input.display().to_string(),
        "--out".into(),
        output.display().to_string(),
        "--header-out".into(),
        header.display().to_string(),
        "--commitment-policy".into(),
        policy.into(),
    ];
    for (material, namespace, name) in keys {
        args.extend(["--raw-key-hex".into(), common::hex(material), "--key-namespace".into(), namespace.clone()]);
        args.extend(["--key-name".into(), name.clone()]);
    }
    if let Some(context) = context {
        args.extend(["--context-json".into(), context]);
    }
    args
}

fn python_batch(jobs: &[Vec<String>]) -> Option<Vec<Result<(), String>>> {
    Some(common::python_batch(&common::python()?, jobs))
}

/// Whether a suite id (hex, as in the index) signs: ECDSA suites are 0x0214 and up (v1) and 0x0578 (v2).
fn signs(suite: &str) -> bool {
    matches!(suite, "0214" | "0346" | "0378" | "0578")
}

/// The issue's first test: every offline vector, re-encrypted to a new raw AES key, decrypts in the Python
/// ESDK with that key alone to the expected plaintext, in the committing suite of the source's kind, with
/// the source's context; the source's keys no longer open it.
#[test]
fn every_raw_aes_vector_reencrypted_decrypts_in_python_with_the_new_key_alone() {
    let rows = rows();
    assert_eq!(rows.len(), 170, "the index's raw-AES vectors");
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let source = fs::read(&row.ciphertext).unwrap();
        let options = ReencryptOptions::new().source(source_options(row));
        let mut rotated = Vec::new();
        let report = reencrypt(&row.keyring, &new_keyring(), &options, &source[..], &mut rotated)
            .unwrap_or_else(|e| panic!("{} {} {}: {e}", row.set, row.suite, row.ciphertext.display()));
        assert_eq!(report.plaintext_length, fs::metadata(&row.plaintext).unwrap().len());
        let old = kms_envelope::decrypt(&row.keyring, &source_options(row), &rotated);
        assert!(matches!(old, Err(Error::NoDataKeyDecrypted { .. })), "the old keys open the new message: {old:?}");
        let path = dir.path().join(format!("{i}.esdk"));
        fs::write(&path, &rotated).unwrap();
        let context = (!row.reproduced.is_empty()).then(|| context_json(&row.reproduced));
        let (out, json) = (dir.path().join(format!("{i}.out")), dir.path().join(format!("{i}.json")));
        jobs.push(python_decrypt(&path, &out, &json, context.clone()));
        // The source's header as Python reads it: which pairs it stores.
        let (out, json) = (dir.path().join(format!("{i}.src.out")), dir.path().join(format!("{i}.src.json")));
        let policy = "require-encrypt-allow-decrypt";
        jobs.push(python_decrypt_with(&row.keys, policy, &row.ciphertext, &out, &json, context));
    }
    let Some(results) = python_batch(&jobs) else { return };
    let mut failures = Vec::new();
    let mut required_all_stored = 0;
    for (i, (row, result)) in rows.iter().zip(results.chunks(2)).enumerate() {
        let what = format!("{} {} {}", row.set, row.suite, row.ciphertext.display());
        if let Err(e) = &result[0] {
            failures.push(format!("{what}: Python refused it: {e}"));
            continue;
        }
        if let Err(e) = &result[1] {
            failures.push(format!("{what}: Python refused the source: {e}"));
            continue;
        }
        if fs::read(dir.path().join(format!("{i}.out"))).unwrap() != fs::read(&row.plaintext).unwrap() {
            failures.push(format!("{what}: another plaintext"));
        }
        let header: Value =
            serde_json::from_str(&fs::read_to_string(dir.path().join(format!("{i}.json"))).unwrap()).unwrap();
        let want_suite = if signs(&row.suite) { "0x0578" } else { "0x0478" };
        if header["suite"] != want_suite {
            failures.push(format!("{what}: suite {}, expected {want_suite}", header["suite"]));
        }
        let edks = header["encrypted_data_keys"].as_array().unwrap();
        if edks.len() != 1 || edks[0]["provider_id"] != NEW_NAMESPACE {
            failures.push(format!("{what}: EDKs {edks:?}, expected the new key's alone"));
        }
        // The pairs the source stores stay stored (its aws-crypto- pairs aside: a signed target makes its own
        // public key), and the required pairs it does not store stay unstored.
        let source: Value =
            serde_json::from_str(&fs::read_to_string(dir.path().join(format!("{i}.src.json"))).unwrap()).unwrap();
        let user_pairs = |header: &Value| -> BTreeMap<String, Value> {
            let pairs = header["encryption_context"].as_object().unwrap();
            pairs.iter().filter(|(k, _)| !k.starts_with("aws-crypto-")).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        if user_pairs(&header) != user_pairs(&source) {
            let (new, old) = (user_pairs(&header), user_pairs(&source));
            failures.push(format!("{what}: stored pairs {new:?}, the source stores {old:?}"));
        }
        let public_key = header["encryption_context"].get("aws-crypto-public-key");
        let old_public_key = source["encryption_context"].get("aws-crypto-public-key");
        if public_key.is_some() != signs(&row.suite) || (public_key.is_some() && public_key == old_public_key) {
            failures.push(format!("{what}: public key pair {public_key:?} for a source of suite {}", row.suite));
        }
        if row.required_cmm && row.reproduced.iter().all(|(k, _)| source["encryption_context"].get(k).is_some()) {
            required_all_stored += 1;
        }
    }
    eprintln!("re-encrypted {} vectors, {} failures", rows.len(), failures.len());
    // Some vectors' required pairs are not stored: those show above that an unstored pair stays unstored.
    let required_rows = rows.iter().filter(|r| r.required_cmm).count();
    assert!(required_all_stored < required_rows, "no vector has an unstored required pair");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Sources the vectors do not have: non-framed bodies and legacy suites, written by the Python ESDK, come
/// out as framed committing messages that Python decrypts with the new key.
#[test]
fn python_non_framed_and_legacy_messages_reencrypt() {
    if common::python().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plaintext: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let input = dir.path().join("plain");
    fs::write(&input, &plaintext).unwrap();
    let old_key = [0x42u8; 32];
    let cases =
        [("0x0478", "0"), ("0x0578", "0"), ("0x0078", "0"), ("0x0378", "0"), ("0x0178", "4096"), ("0x0014", "4096")];
    let mut jobs = Vec::new();
    for (suite, frame) in cases {
        let out = dir.path().join(format!("{suite}-{frame}.src"));
        let policy = if suite >= "0x0478" { "require-encrypt-require-decrypt" } else { "forbid-encrypt-allow-decrypt" };
        let key = if suite == "0x0014" { &old_key[..16] } else { &old_key[..] };
        jobs.push(vec![
            "encrypt".into(),
            "--in".into(),
            input.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--raw-key-hex".into(),
            common::hex(key),
            "--key-namespace".into(),
            "kms-envelope-rotation".into(),
            "--key-name".into(),
            "key-2025".into(),
            "--suite".into(),
            suite.into(),
            "--frame-length".into(),
            frame.into(),
            "--commitment-policy".into(),
            policy.into(),
            "--context-json".into(),
            r#"{"purpose":"rotation"}"#.into(),
        ]);
    }
    let results = python_batch(&jobs).unwrap();
    let mut decrypts = Vec::new();
    for ((suite, frame), result) in cases.iter().zip(results) {
        result.unwrap_or_else(|e| panic!("Python encrypt {suite} frame {frame}: {e}"));
        let source = fs::read(dir.path().join(format!("{suite}-{frame}.src"))).unwrap();
        let key = if *suite == "0x0014" { &old_key[..16] } else { &old_key[..] };
        let old = RawAesKeyring::new("kms-envelope-rotation", "key-2025", key).unwrap();
        let mut rotated = Vec::new();
        let allow = DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
        reencrypt(&old, &new_keyring(), &ReencryptOptions::new().source(allow), &source[..], &mut rotated)
            .unwrap_or_else(|e| panic!("reencrypt {suite} frame {frame}: {e}"));
        let path = dir.path().join(format!("{suite}-{frame}.new"));
        fs::write(&path, &rotated).unwrap();
        let context = Some(r#"{"purpose":"rotation"}"#.to_owned());
        decrypts.push(python_decrypt(&path, &path.with_extension("out"), &path.with_extension("json"), context));
    }
    for ((suite, frame), result) in cases.iter().zip(python_batch(&decrypts).unwrap()) {
        result.unwrap_or_else(|e| panic!("Python decrypt of re-encrypted {suite} frame {frame}: {e}"));
        let path = dir.path().join(format!("{suite}-{frame}.new"));
        assert_eq!(fs::read(path.with_extension("out")).unwrap(), plaintext, "{suite} frame {frame}");
        let header: Value = serde_json::from_str(&fs::read_to_string(path.with_extension("json")).unwrap()).unwrap();
        let signed = matches!(*suite, "0x0578" | "0x0378");
        assert_eq!(header["suite"], if signed { "0x0578" } else { "0x0478" }, "{suite} frame {frame}");
        assert_eq!(header["frame_length"], 65536, "{suite} frame {frame}: the default frame length");
        assert_eq!(header["content_type"], 2, "{suite} frame {frame}: framed");
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// A signed source of several frames, and where its header, a middle frame and its signature lie.
fn signed_source() -> (Vec<u8>, Vec<u8>) {
    let plaintext: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let options = EncryptOptions::new()
        .suite(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384)
        .frame_length(1024)
        .context("purpose", "rotation");
    (encrypt(&old_keyring(), &options, &plaintext).unwrap(), plaintext)
}

/// A tampered source (a header byte, a middle frame's ciphertext, the signature) or a wrong unwrapping key:
/// re-encrypting into a file fails, nothing appears beside the source, the source is untouched; into a
/// plain `Write`, the output holds no final frame, so no reader accepts it.
#[test]
fn a_tampered_source_or_a_wrong_key_writes_nothing() {
    let (message, _) = signed_source();
    let len = message.len();
    // The header is well over 100 bytes (a 97-byte public key in the context); the body starts after it.
    let cases: [(&str, usize); 3] = [("header", 60), ("middle frame", len / 2), ("signature", len - 10)];
    for (what, at) in cases {
        let mut tampered = message.clone();
        tampered[at] ^= 0x01;
        let dir = tempfile::tempdir().unwrap();
        let (source, destination) = (dir.path().join("source.esdk"), dir.path().join("rotated.esdk"));
        fs::write(&source, &tampered).unwrap();
        let before = listing(dir.path());
        let result = reencrypt_path(
            &old_keyring(),
            &new_keyring(),
            &ReencryptOptions::new(),
            &source,
            &destination,
            &OutputOptions::new(),
        );
        assert!(result.is_err(), "{what}: re-encrypted a tampered message");
        assert_eq!(listing(dir.path()), before, "{what}: something was left beside the source");
        assert_eq!(fs::read(&source).unwrap(), tampered, "{what}: the source changed");

        let in_place = OutputOptions::new().overwrite(true);
        assert!(
            reencrypt_path(&old_keyring(), &new_keyring(), &ReencryptOptions::new(), &source, &source, &in_place)
                .is_err()
        );
        assert_eq!(fs::read(&source).unwrap(), tampered, "{what}: in place, the source changed");
        assert_eq!(listing(dir.path()), before, "{what}: in place, something was left");

        let mut written = Vec::new();
        assert!(
            reencrypt(&old_keyring(), &new_keyring(), &ReencryptOptions::new(), &tampered[..], &mut written).is_err()
        );
        assert!(
            decrypt(&new_keyring(), &DecryptOptions::new(), &written).is_err(),
            "{what}: a complete message came out"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let (source, destination) = (dir.path().join("source.esdk"), dir.path().join("rotated.esdk"));
    fs::write(&source, &message).unwrap();
    let wrong = RawAesKeyring::new("kms-envelope-rotation", "key-2025", &[0x43; 32]).unwrap();
    let result =
        reencrypt_path(&wrong, &new_keyring(), &ReencryptOptions::new(), &source, &destination, &OutputOptions::new());
    assert!(matches!(result, Err(Error::NoDataKeyDecrypted { .. })), "{result:?}");
    assert_eq!(listing(dir.path()), ["source.esdk"]);
}

/// In place: the file is replaced by a message under the new key alone, once; without `overwrite` it is
/// refused and left as it was.
#[test]
fn in_place_replaces_the_file_only_with_overwrite() {
    let (message, plaintext) = signed_source();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.esdk");
    fs::write(&path, &message).unwrap();
    let refused =
        reencrypt_path(&old_keyring(), &new_keyring(), &ReencryptOptions::new(), &path, &path, &OutputOptions::new());
    assert!(refused.is_err());
    assert_eq!(fs::read(&path).unwrap(), message);

    let in_place = OutputOptions::new().overwrite(true);
    let report =
        reencrypt_path(&old_keyring(), &new_keyring(), &ReencryptOptions::new(), &path, &path, &in_place).unwrap();
    assert_eq!(report.plaintext_length, plaintext.len() as u64);
    let rotated = fs::read(&path).unwrap();
    assert_eq!(&decrypt(&new_keyring(), &DecryptOptions::new(), &rotated).unwrap().plaintext[..], &plaintext[..]);
    assert!(decrypt(&old_keyring(), &DecryptOptions::new(), &rotated).is_err());
    assert_eq!(listing(dir.path()), ["secrets.esdk"]);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn in_place_leaves_a_file_that_replaced_the_source_meanwhile() {
    let (message, _) = signed_source();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.esdk");
    fs::write(&path, &message).unwrap();
    let target = ChangesTheSource { inner: new_keyring(), source: path.clone(), change: Change::Replace };
    let in_place = OutputOptions::new().overwrite(true);
    let result = reencrypt_path(&old_keyring(), &target, &ReencryptOptions::new(), &path, &path, &in_place);
    assert!(result.is_err(), "overwrote a file another writer put there");
    assert_eq!(fs::read(&path).unwrap(), b"another writer's file");
    assert_eq!(listing(dir.path()), ["secrets.esdk"]);
}

/// The kept context: stored pairs stay stored, required pairs (given to the source options) stay required,
/// the target's own pairs are added, a target pair that changes a kept value is refused, and
/// `keep_context(false)` uses the target's context alone.
#[test]
fn the_context_is_kept_extended_or_replaced_as_asked() {
    let source_options = EncryptOptions::new().context("stored", "s").required_context("required", "r");
    let message = encrypt(&old_keyring(), &source_options, b"payload").unwrap();
    let read = ReencryptOptions::new().source(DecryptOptions::new().context("required", "r"));

    let mut kept = Vec::new();
    reencrypt(
        &old_keyring(),
        &new_keyring(),
        &read.clone().target(EncryptOptions::new().context("added", "a")),
        &message[..],
        &mut kept,
    )
    .unwrap();
    let opened = decrypt(&new_keyring(), &DecryptOptions::new().context("required", "r"), &kept).unwrap();
    let stored = opened.header.encryption_context();
    assert_eq!((stored.get("stored"), stored.get("added"), stored.get("required")), (Some("s"), Some("a"), None));
    assert!(decrypt(&new_keyring(), &DecryptOptions::new(), &kept).is_err(), "the required pair is no longer required");

    let conflicting = read.clone().target(EncryptOptions::new().context("stored", "changed"));
    let refused = reencrypt(&old_keyring(), &new_keyring(), &conflicting, &message[..], &mut Vec::new());
    assert!(matches!(refused, Err(Error::Config(ref m)) if m.contains("\"stored\"")), "{refused:?}");

    let mut replaced = Vec::new();
    let replace = read.target(EncryptOptions::new().context("only", "o")).keep_context(false);
    reencrypt(&old_keyring(), &new_keyring(), &replace, &message[..], &mut replaced).unwrap();
    let opened = decrypt(&new_keyring(), &DecryptOptions::new(), &replaced).unwrap();
    let pairs: Vec<(&str, &str)> = opened.header.encryption_context().iter().collect();
    assert_eq!(pairs, [("only", "o")]);

    // Without the required pair the source does not open at all.
    let unread = reencrypt(&old_keyring(), &new_keyring(), &ReencryptOptions::new(), &message[..], &mut Vec::new());
    assert!(unread.is_err());
}

/// An explicit target suite wins over the default (a signed source may become unsigned only this way),
/// and a legacy source is read only under an allow-decrypt policy the caller asks for.
#[test]
fn an_explicit_suite_and_a_strict_source_policy_apply() {
    let (message, plaintext) = signed_source();
    let unsigned =
        ReencryptOptions::new().target(EncryptOptions::new().suite(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY));
    let mut out = Vec::new();
    let report = reencrypt(&old_keyring(), &new_keyring(), &unsigned, &message[..], &mut out).unwrap();
    assert_eq!(report.suite.id(), 0x0478);
    assert_eq!(&out[1..3], &[0x04, 0x78], "the suite id on the wire");
    let strict = DecryptOptions::new().unsigned_only(true);
    assert_eq!(&decrypt(&new_keyring(), &strict, &out).unwrap().plaintext[..], &plaintext[..]);

    let legacy_options = EncryptOptions::new()
        .commitment_policy(CommitmentPolicy::ForbidEncryptAllowDecrypt)
        .suite(AlgorithmSuite::AES_256_GCM_IV12_TAG16_HKDF_SHA256);
    let legacy = encrypt(&old_keyring(), &legacy_options, b"old").unwrap();
    let refused = reencrypt(&old_keyring(), &new_keyring(), &ReencryptOptions::new(), &legacy[..], &mut Vec::new());
    assert!(matches!(refused, Err(Error::CommitmentPolicy(_))), "a legacy source read by default: {refused:?}");
    let allow = DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
    let mut upgraded = Vec::new();
    reencrypt(&old_keyring(), &new_keyring(), &ReencryptOptions::new().source(allow), &legacy[..], &mut upgraded)
        .unwrap();
    assert_eq!(&upgraded[1..3], &[0x04, 0x78]);
}

/// A keyring that adds, after the real ones, a garbage copy of the data key that claims to be wrapped by
/// `impostor`'s key: what a writer who can encrypt under one new key could plant for another.
struct PlantsGarbageFor {
    real: MultiKeyring,
    impostor: RawAesKeyring,
}

impl Keyring for PlantsGarbageFor {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        Box::pin(async move {
            let mut real = self.real.on_encrypt(materials).await?;
            // The impostor's EDK shape (its provider id and key name, a fresh IV), with a ciphertext that
            // unwraps to nothing.
            let suite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;
            let shape = EncryptionMaterials::new(suite, Default::default(), Default::default());
            let shape = self.impostor.on_encrypt(shape).await?;
            let mut garbage = shape.encrypted_data_keys()[0].clone();
            garbage.ciphertext.iter_mut().for_each(|b| *b ^= 0x5a);
            real.add_encrypted_data_key(garbage);
            Ok(real)
        })
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        self.real.on_decrypt(materials, edks)
    }
}

/// The skip check of a retried job: done only once the new keys authenticated the header, with exactly the
/// new keys' data keys, the target suite and context; `verify_all_keys` catches a planted garbage copy.
#[test]
fn rotation_status_is_done_only_when_authenticated_under_exactly_the_new_keys() {
    use kms_envelope::{Rotation, TargetKeys, rotation_status};
    let second = || RawAesKeyring::new("kms-envelope-rotation", "dr-key", &[0x99; 32]).unwrap();
    let both = || MultiKeyring::new(new_keyring()).with_child(second());
    let target = TargetKeys::of(&both()).unwrap();
    let options = ReencryptOptions::new();
    let status =
        |message: &[u8], verify_all: bool| rotation_status(&both(), &target, &options, verify_all, message).unwrap();

    let (source, _) = signed_source();
    assert!(matches!(status(&source, false), Rotation::Needed(_)), "under the old key");
    let mut rotated = Vec::new();
    reencrypt(&old_keyring(), &both(), &options, &source[..], &mut rotated).unwrap();
    assert_eq!(status(&rotated, false), Rotation::Done);
    assert_eq!(status(&rotated, true), Rotation::Done);

    // One of the new keys missing, an old key left over, another suite, another context: not done.
    let signed = EncryptOptions::new()
        .suite(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384)
        .context("purpose", "rotation");
    let only_one = encrypt(&new_keyring(), &signed, b"x").unwrap();
    assert_eq!(status(&only_one, false), Rotation::Needed("its data keys are not exactly the new keys'"));
    let leftover = encrypt(&both().with_child(old_keyring()), &signed, b"x").unwrap();
    assert_eq!(status(&leftover, false), Rotation::Needed("its data keys are not exactly the new keys'"));
    let unsigned = encrypt(&both(), &EncryptOptions::new().context("purpose", "rotation"), b"x").unwrap();
    assert!(matches!(status(&unsigned, false), Rotation::Done), "an unsigned message stays unsigned");
    let other_suite =
        ReencryptOptions::new().target(EncryptOptions::new().suite(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY));
    let signed_message = encrypt(&both(), &signed, b"x").unwrap();
    assert_eq!(
        rotation_status(&both(), &target, &other_suite, false, &signed_message[..]).unwrap(),
        Rotation::Needed("its suite is not the new one")
    );
    let more_context = ReencryptOptions::new().target(EncryptOptions::new().context("added", "a"));
    assert_eq!(
        rotation_status(&both(), &target, &more_context, false, &signed_message[..]).unwrap(),
        Rotation::Needed("its encryption context is not the new one")
    );

    // A writer who can encrypt under one new key adds a garbage copy for the other: only verify_all_keys
    // finds it.
    let planted =
        encrypt(&PlantsGarbageFor { real: MultiKeyring::new(new_keyring()), impostor: second() }, &signed, b"x")
            .unwrap();
    assert_eq!(status(&planted, false), Rotation::Done, "one new key authenticates it; the other's copy is not tried");
    assert_eq!(status(&planted, true), Rotation::Needed("one of its data keys does not unwrap with the new keys"));

    // A header that names the new key, planted by a writer without it: the new key does not open it.
    let impostor_only = PlantsGarbageFor { real: MultiKeyring::new(old_keyring()), impostor: new_keyring() };
    let forged = encrypt(&impostor_only, &signed, b"x").unwrap();
    let forged_target = TargetKeys::of(&MultiKeyring::new(old_keyring()).with_child(new_keyring())).unwrap();
    let with_new = |m: &[u8]| rotation_status(&new_keyring(), &forged_target, &options, false, m).unwrap();
    assert_eq!(with_new(&forged), Rotation::Needed("the new keys do not open it"));
}

/// An unsigned framed source in a regular file takes the positioned path (workers re-seal runs of frames
/// at known offsets): whatever the sizes around the frame length, the source's frame length against the
/// target's, whoever wrote the source (us, or the Python ESDK with its own encoding of a last full frame),
/// the new message decrypts, here and in the Python ESDK with the new key alone, to the source's plaintext.
#[test]
fn unsigned_file_sources_decrypt_after_reencryption_here_and_in_python() {
    const FRAME: usize = 4096;
    let dir = tempfile::tempdir().unwrap();
    let lens = [0, 1, FRAME - 1, FRAME, FRAME + 1, 3 * FRAME, 100 * FRAME + 7];
    let ours = EncryptOptions::new().frame_length(FRAME as u32).threads(1).context("purpose", "rotation");
    let mut sources = Vec::new();
    let mut python_encrypts = Vec::new();
    for len in lens {
        let plaintext: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
        let (plain, ours_path) = (dir.path().join(format!("{len}.plain")), dir.path().join(format!("{len}.ours")));
        fs::write(&plain, &plaintext).unwrap();
        fs::write(&ours_path, encrypt(&old_keyring(), &ours, &plaintext).unwrap()).unwrap();
        sources.push((ours_path, plaintext.clone()));
        let python_path = dir.path().join(format!("{len}.python"));
        python_encrypts.push(vec![
            "encrypt".into(),
            "--in".into(),
            plain.display().to_string(),
            "--out".into(),
            python_path.display().to_string(),
            "--raw-key-hex".into(),
            common::hex(&[0x42; 32]),
            "--key-namespace".into(),
            "kms-envelope-rotation".into(),
            "--key-name".into(),
            "key-2025".into(),
            "--suite".into(),
            "0x0478".into(),
            "--frame-length".into(),
            FRAME.to_string(),
            "--context-json".into(),
            r#"{"purpose":"rotation"}"#.into(),
        ]);
        sources.push((python_path, plaintext));
    }
    let python = python_batch(&python_encrypts);
    if let Some(results) = &python {
        for (len, result) in lens.iter().zip(results) {
            result.as_ref().unwrap_or_else(|e| panic!("Python encrypt of {len} bytes: {e}"));
        }
    } else {
        sources.retain(|(path, _)| path.extension().unwrap() == "ours");
    }
    // The default target (64 KiB frames), the source's frame length (opened and sealed in place), and a
    // length that is neither a divisor nor a multiple of it; on two threads from the first byte, in short jobs.
    let targets = [
        ReencryptOptions::new(),
        ReencryptOptions::new().target(
            EncryptOptions::new().frame_length(FRAME as u32).threads(2).parallel_threshold(0).job_length(3 * FRAME),
        ),
        ReencryptOptions::new().target(EncryptOptions::new().frame_length(1000).threads(2).parallel_threshold(0)),
    ];
    let mut decrypts = Vec::new();
    let mut expected = Vec::new();
    for (t, options) in targets.iter().enumerate() {
        for (source, plaintext) in &sources {
            let destination = source.with_extension(format!("{}.t{t}", source.extension().unwrap().to_str().unwrap()));
            let report =
                reencrypt_path(&old_keyring(), &new_keyring(), options, source, &destination, &OutputOptions::new())
                    .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
            assert_eq!(report.plaintext_length, plaintext.len() as u64);
            let rotated = fs::read(&destination).unwrap();
            let decrypted = decrypt(&new_keyring(), &DecryptOptions::new(), &rotated).unwrap();
            assert!(decrypted.plaintext[..] == plaintext[..], "{}: another plaintext", destination.display());
            assert_eq!(decrypted.header.encryption_context().get("purpose"), Some("rotation"));
            let context = Some(r#"{"purpose":"rotation"}"#.to_owned());
            let out = destination.with_extension("out");
            decrypts.push(python_decrypt(&destination, &out, &destination.with_extension("json"), context));
            expected.push((out, plaintext.clone()));
        }
    }
    let Some(results) = python_batch(&decrypts) else { return };
    for ((out, plaintext), result) in expected.iter().zip(results) {
        result.unwrap_or_else(|e| panic!("Python decrypt of {}: {e}", out.display()));
        assert!(fs::read(out).unwrap() == *plaintext, "{}: Python read another plaintext", out.display());
    }
}

/// An unsigned source of ten frames and a final one, and its plaintext.
fn unsigned_source() -> (Vec<u8>, Vec<u8>) {
    let plaintext: Vec<u8> = (0..10_500u32).map(|i| (i % 251) as u8).collect();
    let options = EncryptOptions::new().frame_length(1024).context("purpose", "rotation");
    (encrypt(&old_keyring(), &options, &plaintext).unwrap(), plaintext)
}

/// Re-encrypts `source` into a file beside it, and in place, on two threads in jobs of one 1 KiB frame:
/// both must fail with nothing left beside the source and the source unchanged. Returns the first error.
fn refused_with_nothing_left(what: &str, dir: &Path, source_bytes: &[u8], target: &dyn Keyring) -> Error {
    let source = dir.join("source.esdk");
    fs::write(&source, source_bytes).unwrap();
    let before = listing(dir);
    let options = ReencryptOptions::new()
        .target(EncryptOptions::new().frame_length(1024).threads(2).parallel_threshold(0).job_length(1024));
    let destination = dir.join("rotated.esdk");
    let error = reencrypt_path(&old_keyring(), target, &options, &source, &destination, &OutputOptions::new())
        .expect_err(&format!("{what}: re-encrypted"));
    assert_eq!(listing(dir), before, "{what}: something was left beside the source");
    let in_place = OutputOptions::new().overwrite(true);
    fs::write(&source, source_bytes).unwrap();
    assert!(reencrypt_path(&old_keyring(), target, &options, &source, &source, &in_place).is_err(), "{what}");
    assert_eq!(listing(dir), before, "{what}: in place, something was left");
    error
}

/// Unsigned sources in files (the positioned path): a tampered middle or final frame, two frames swapped,
/// a truncated body, a body a byte too long, and a source that is a final frame alone: nothing is linked,
/// no temp file remains, the source is untouched, and the error says what is wrong.
#[test]
fn a_tampered_or_truncated_unsigned_file_source_writes_nothing() {
    let (message, _) = unsigned_source();
    let final_at = message.len() - (4 + 4 + 12 + 4 + 260 + 16);
    let stride = 4 + 12 + 1024 + 16;
    let mut swapped = message.clone();
    let (fifth, sixth) = (final_at - 6 * stride, final_at - 5 * stride);
    swapped[fifth..sixth].copy_from_slice(&message[sixth..sixth + stride]);
    swapped[sixth..sixth + stride].copy_from_slice(&message[fifth..sixth]);
    let flip = |at: usize| {
        let mut m = message.clone();
        m[at] ^= 1;
        m
    };
    let mut longer = message.clone();
    longer.push(0);
    let final_only = encrypt(&old_keyring(), &EncryptOptions::new().frame_length(1024), &[7u8; 1000]).unwrap();
    let final_only_tampered = {
        let mut m = final_only.clone();
        let at = m.len() - 20;
        m[at] ^= 1;
        m
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a middle frame", flip(final_at - 5 * stride + 100)),
        ("the final frame", flip(final_at + 30)),
        ("two frames swapped", swapped),
        ("the final frame's tag", flip(message.len() - 1)),
        ("the final frame alone", final_only_tampered),
        ("a frame's worth short", message[..message.len() - stride].to_vec()),
        ("a byte short", message[..message.len() - 1].to_vec()),
        ("a byte too long", longer),
    ];
    for (what, tampered) in cases {
        let dir = tempfile::tempdir().unwrap();
        let error = refused_with_nothing_left(what, dir.path(), &tampered, &new_keyring());
        let expected = match what {
            "a frame's worth short" | "a byte short" => matches!(error, Error::Truncated { .. }),
            "a byte too long" => matches!(error, Error::TrailingData { .. }),
            // Told as the stream tells it: a frame out of place, not a tag that failed.
            "two frames swapped" => error.to_string().contains("frame sequence number 6, expected 5"),
            _ => matches!(error, Error::FrameAuthentication { .. }),
        };
        assert!(expected, "{what}: {error:?}");
    }
    // The untampered final frame alone re-encrypts.
    let dir = tempfile::tempdir().unwrap();
    let (source, destination) = (dir.path().join("source.esdk"), dir.path().join("rotated.esdk"));
    fs::write(&source, &final_only).unwrap();
    reencrypt_path(
        &old_keyring(),
        &new_keyring(),
        &ReencryptOptions::new(),
        &source,
        &destination,
        &OutputOptions::new(),
    )
    .unwrap();
    let rotated = fs::read(&destination).unwrap();
    assert_eq!(&decrypt(&new_keyring(), &DecryptOptions::new(), &rotated).unwrap().plaintext[..], &[7u8; 1000][..]);
}

/// How [`ChangesTheSource`] changes the source file: replaced by another file, or changed in place (same
/// inode and name).
#[derive(Clone, Copy, Debug)]
enum Change {
    /// Another file takes its name.
    Replace,
    /// Appends a byte.
    Grow,
    /// Cuts the last 10 bytes.
    Shrink,
    /// Flips a byte of the sixth frame.
    Flip,
}

/// A target keyring that, when asked for the new data key (after the source's header was read and its
/// length measured, before any frame is read or anything written), changes the source file: another
/// writer at work.
struct ChangesTheSource {
    inner: RawAesKeyring,
    source: PathBuf,
    change: Change,
}

impl Keyring for ChangesTheSource {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        use std::os::unix::fs::FileExt as _;
        let open = || fs::OpenOptions::new().read(true).write(true).open(&self.source).unwrap();
        let len = fs::metadata(&self.source).unwrap().len();
        match self.change {
            Change::Replace => {
                let other = self.source.with_extension("other");
                fs::write(&other, b"another writer's file").unwrap();
                fs::rename(&other, &self.source).unwrap();
            }
            Change::Grow => open().write_all_at(&[0], len).unwrap(),
            Change::Shrink => open().set_len(len - 10).unwrap(),
            Change::Flip => {
                let mut byte = [0u8];
                let at = len - 5 * 1056 - 100;
                open().read_exact_at(&mut byte, at).unwrap();
                open().write_all_at(&[byte[0] ^ 1], at).unwrap();
            }
        }
        self.inner.on_encrypt(materials)
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        self.inner.on_decrypt(materials, edks)
    }
}

/// A source that grows, shrinks or changes a frame in place while it is re-encrypted: refused, nothing left.
#[test]
fn an_unsigned_file_source_changed_while_read_writes_nothing() {
    let (message, _) = unsigned_source();
    for change in [Change::Grow, Change::Shrink, Change::Flip] {
        let dir = tempfile::tempdir().unwrap();
        let target = ChangesTheSource { inner: new_keyring(), source: dir.path().join("source.esdk"), change };
        let what = format!("{change:?}");
        let error = refused_with_nothing_left(&what, dir.path(), &message, &target);
        let expected = match change {
            Change::Flip => matches!(error, Error::FrameAuthentication { sequence: 6 }),
            _ => error.to_string().contains("changed length"),
        };
        assert!(expected, "{what}: {error}");
    }
}

/// The full skip check (`SkipCheck::Full`) on messages under exactly the new keys whose body is not what
/// the header promises: a signed message with a flipped signature byte, one with bytes after its end, one
/// cut inside its signature: each is an error, never `Done`; the header-only check takes the first two
/// for done, which is why the full check is the default. A 3 MiB message under the new keys is `Done` in
/// full.
#[test]
fn attack_the_full_skip_check_refuses_a_bad_signature_trailing_bytes_and_a_cut() {
    use kms_envelope::{Rotation, SkipCheck, TargetKeys, rotation_status_with};
    let target = TargetKeys::of(&new_keyring()).unwrap();
    let options = ReencryptOptions::new();
    let check = |options: &ReencryptOptions, how: SkipCheck, message: &[u8]| {
        rotation_status_with(&new_keyring(), &target, options, false, how, message)
    };
    let signed = EncryptOptions::new()
        .suite(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384)
        .frame_length(1024)
        .context("purpose", "rotation");
    let plaintext: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let whole = encrypt(&new_keyring(), &signed, &plaintext).unwrap();
    assert_eq!(check(&options, SkipCheck::Full, &whole).unwrap(), Rotation::Done);

    let mut bad_signature = whole.clone();
    *bad_signature.last_mut().unwrap() ^= 1;
    let mut trailing = whole.clone();
    trailing.extend_from_slice(b"\0trailing");
    let cut = &whole[..whole.len() - 10];
    for (what, message) in [("a bad signature", &bad_signature[..]), ("trailing bytes", &trailing[..]), ("cut", cut)] {
        let verdict = check(&options, SkipCheck::Full, message);
        assert!(verdict.is_err(), "{what}: {verdict:?}");
    }
    assert_eq!(check(&options, SkipCheck::Header, &bad_signature).unwrap(), Rotation::Done);
}

/// The full skip check reads a body under the reader's limits: a non-framed message (the Python ESDK's,
/// frame length 0) under exactly the new key, 70,000 bytes, is `Done` with the default limits, and with
/// `max_nonframed_body_len` of 65,536 (a limit only the body can meet, not the header) it is the limit's
/// error, not `Done` and not a buffer of the whole body.
#[test]
fn attack_the_full_skip_check_honours_the_non_framed_body_limit() {
    use kms_envelope::{DecryptLimits, Rotation, SkipCheck, TargetKeys, rotation_status_with};
    if common::python().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("plain");
    fs::write(&input, (0..70_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
    let out = dir.path().join("non-framed");
    let job: Vec<String> = [
        "encrypt",
        "--in",
        &input.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--raw-key-hex",
        &common::hex(&NEW_KEY),
        "--key-namespace",
        NEW_NAMESPACE,
        "--key-name",
        NEW_NAME,
        "--suite",
        "0x0478",
        "--frame-length",
        "0",
        "--commitment-policy",
        "require-encrypt-require-decrypt",
    ]
    .map(String::from)
    .to_vec();
    python_batch(&[job]).unwrap().remove(0).unwrap_or_else(|e| panic!("Python encrypt: {e}"));
    let message = fs::read(&out).unwrap();
    let target = TargetKeys::of(&new_keyring()).unwrap();
    let check = |options: &ReencryptOptions, how: SkipCheck| {
        rotation_status_with(&new_keyring(), &target, options, false, how, &message[..])
    };
    assert_eq!(check(&ReencryptOptions::new(), SkipCheck::Full).unwrap(), Rotation::Done);
    let small = DecryptLimits { max_nonframed_body_len: 65_536, ..DecryptLimits::DEFAULT };
    let tight = ReencryptOptions::new().source(DecryptOptions::new().limits(small));
    assert_eq!(check(&tight, SkipCheck::Header).unwrap(), Rotation::Done, "the header alone meets no limit");
    let verdict = check(&tight, SkipCheck::Full);
    assert!(matches!(verdict, Err(Error::LimitExceeded { .. })), "{verdict:?}");
}
