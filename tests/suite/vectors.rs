//! The official AWS Encryption SDK decrypt vectors (vendored in `tests/vectors/`), read through their manifests.
//!
//! Every test whose keys are raw AES keys must decrypt to its plaintext; tests that need KMS, RSA or ECDH
//! keys are counted as unsupported offline and reported, never silently dropped. The Python ESDK's
//! commitment vectors run with the data key they publish.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture};
use kms_envelope::{
    CommitmentPolicy, DataKey, DecryptOptions, EncryptedDataKey, Error, Keyring, MultiKeyring, RawAesKeyring,
};
use serde_json::Value;

#[derive(Default, Debug)]
struct Tally {
    /// (set, suite) -> (passed, failed, unsupported)
    by_suite: BTreeMap<(String, String), (u32, u32, u32)>,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, set: &str, suite: &str, outcome: Result<(), String>, supported: bool, id: &str) {
        let entry = self.by_suite.entry((set.to_string(), suite.to_string())).or_default();
        match (supported, outcome) {
            (false, _) => entry.2 += 1,
            (true, Ok(())) => entry.0 += 1,
            (true, Err(e)) => {
                entry.1 += 1;
                self.failures.push(format!("{set}/{id} (suite {suite}): {e}"));
            }
        }
    }

    fn totals(&self) -> (u32, u32, u32) {
        self.by_suite.values().fold((0, 0, 0), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2))
    }

    fn print(&self) {
        eprintln!("{:<14} {:<6} {:>7} {:>7} {:>12}", "set", "suite", "passed", "failed", "unsupported");
        for ((set, suite), (p, f, u)) in &self.by_suite {
            eprintln!("{set:<14} {suite:<6} {p:>7} {f:>7} {u:>12}");
        }
        let (p, f, u) = self.totals();
        eprintln!("vectors: {p} passed, {f} failed, {u} unsupported (not raw AES: KMS/RSA/ECDH keys)");
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn file_uri(dir: &Path, uri: &str) -> Vec<u8> {
    let rel = uri.strip_prefix("file://").unwrap_or_else(|| panic!("unexpected URI {uri}"));
    fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A raw AES keyring from a key entry of keys.json, or `None` for any other kind of key.
fn raw_aes_keyring(keys: &Value, key_name: &str, provider_id: &str) -> Option<RawAesKeyring> {
    let key = &keys["keys"][key_name];
    if key["type"] != "symmetric" || key["algorithm"] != "aes" {
        return None;
    }
    assert_eq!(key["encoding"], "base64", "key {key_name}");
    let material = BASE64.decode(key["material"].as_str()?).expect("base64 key material");
    let name = key["key-id"].as_str()?;
    Some(RawAesKeyring::new(provider_id, name, &material).expect("valid raw AES key"))
}

fn context_of(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect())
        .unwrap_or_default()
}

fn check(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    ciphertext: &[u8],
    expected: Result<Vec<u8>, ()>,
) -> Result<(), String> {
    let got = kms_envelope::decrypt(keyring, options, ciphertext);
    match (got, expected) {
        (Ok(d), Ok(want)) if *d.plaintext == want => Ok(()),
        (Ok(d), Ok(want)) => Err(format!("plaintext differs: {} bytes, expected {}", d.plaintext.len(), want.len())),
        (Err(e), Ok(_)) => Err(format!("decrypt failed: {e}")),
        (Err(_), Err(())) => Ok(()),
        (Ok(_), Err(())) => Err("decrypt succeeded but the vector expects an error".into()),
    }
}

fn allow_all() -> DecryptOptions {
    DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt)
}

/// awses-decrypt v4 (`net-v4`, `net-v4-valid`): a list of master keys, all used together.
/// Builds the keyring for one master key / raw key description of a manifest, or `None` if this runner
/// does not handle that kind of key. The second value is the tally's label for it.
type KeyBuilder = fn(&Value, &Value) -> Option<(Box<dyn Keyring>, String)>;

/// A raw AES key, labelled by nothing (the suite labels the row).
fn aes_key(keys: &Value, desc: &Value) -> Option<(Box<dyn Keyring>, String)> {
    if desc["type"] != "raw" || desc["encryption-algorithm"] != "aes" {
        return None;
    }
    let keyring = raw_aes_keyring(keys, desc["key"].as_str()?, desc["provider-id"].as_str()?)?;
    Some((Box::new(keyring), String::new()))
}

fn run_v4(dir: &Path, set: &str, tally: &mut Tally, build: KeyBuilder) {
    let manifest = read_json(&dir.join("manifest.json"));
    let keys = read_json(&dir.join("keys.json"));
    for (id, test) in manifest["tests"].as_object().unwrap() {
        let ciphertext = file_uri(dir, test["ciphertext"].as_str().unwrap());
        let suite = format!(
            "{:02x}{:02x}",
            ciphertext[if ciphertext[0] == 1 { 2 } else { 1 }],
            ciphertext[if ciphertext[0] == 1 { 3 } else { 2 }]
        );
        let master_keys = test["master-keys"].as_array().unwrap();
        let keyrings: Option<Vec<(Box<dyn Keyring>, String)>> = master_keys.iter().map(|mk| build(&keys, mk)).collect();
        let Some(keyrings) = keyrings else {
            tally.record(set, &suite, Ok(()), false, id);
            continue;
        };
        let label = format!("{suite}{}", keyrings[0].1);
        let mut keyrings = keyrings.into_iter().map(|(k, _)| k);
        let mut multi = MultiKeyring::new(BoxedKeyring(keyrings.next().unwrap()));
        for k in keyrings {
            multi = multi.with_child(BoxedKeyring(k));
        }
        let mut options = allow_all();
        let required = test["cmm"] == "RequiredEncryptionContext";
        for (k, v) in context_of(&test["encryption-context"]) {
            if required {
                options = options.require_context_key(k.clone());
            }
            options = options.context(k, v);
        }
        let expected = match test["result"].get("output") {
            Some(out) => Ok(file_uri(dir, out["plaintext"].as_str().unwrap())),
            None => Err(()),
        };
        tally.record(set, &label, check(&multi, &options, &ciphertext, expected), true, id);
    }
}

/// A boxed keyring as a keyring, for the multi-keyring.
struct BoxedKeyring(Box<dyn Keyring>);

impl Keyring for BoxedKeyring {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        self.0.on_encrypt(materials)
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        self.0.on_decrypt(materials, edks)
    }
}

fn v5_keyring(
    keys: &Value,
    desc: &Value,
    required: &mut Vec<String>,
    build: KeyBuilder,
) -> Option<(Box<dyn Keyring>, String)> {
    match desc["type"].as_str()? {
        "raw" | "aws-kms-hierarchy" | "raw-ecdh" => build(keys, desc),
        "multi-keyring" => {
            let mut label = String::new();
            let mut multi = match desc.get("generator") {
                Some(g) if !g.is_null() => {
                    let (generator, l) = v5_keyring(keys, g, required, build)?;
                    label = l;
                    MultiKeyring::new(BoxedKeyring(generator))
                }
                _ => MultiKeyring::without_generator(),
            };
            for child in desc["childKeyrings"].as_array().into_iter().flatten() {
                let (child, l) = v5_keyring(keys, child, required, build)?;
                if label.is_empty() {
                    label = l;
                }
                multi = multi.with_child(BoxedKeyring(child));
            }
            Some((Box::new(multi), label))
        }
        "required-encryption-context-cmm" => {
            required.extend(
                desc["requiredEncryptionContextKeys"].as_array()?.iter().map(|k| k.as_str().unwrap().to_string()),
            );
            v5_keyring(keys, &desc["underlying"], required, build)
        }
        _ => None,
    }
}

fn run_v5(dir: &Path, set: &str, tally: &mut Tally, build: KeyBuilder) {
    let manifest = read_json(&dir.join("decrypt-manifest.json"));
    let keys = read_json(&dir.join("keys.json"));
    for (id, test) in manifest["tests"].as_object().unwrap() {
        let scenario = &test["decryption-scenario"];
        let suite = scenario["algorithmSuiteId"].as_str().unwrap_or("?").to_lowercase();
        let mut required = Vec::new();
        let Some((keyring, label)) = v5_keyring(&keys, &scenario["decryptKeyDescription"], &mut required, build) else {
            tally.record(set, &suite, Ok(()), false, id);
            continue;
        };
        let ciphertext = file_uri(dir, scenario["ciphertext"].as_str().unwrap());
        let mut options = allow_all();
        for (k, v) in context_of(&scenario["reproduced-encryption-context"]) {
            options = options.context(k, v);
        }
        for k in required {
            options = options.require_context_key(k);
        }
        let expected = match scenario["type"].as_str() {
            Some("positive-esdk") => Ok(file_uri(dir, scenario["result"].as_str().unwrap())),
            _ => Err(()),
        };
        tally.record(
            set,
            &format!("{suite}{label}"),
            check(keyring.as_ref(), &options, &ciphertext, expected),
            true,
            id,
        );
    }
}

/// The vectors run on the AES-GCM backend this build is for: RustCrypto in the raw-key builds
/// (`--no-default-features`), AWS-LC in the full one; scripts/test.sh runs this file in every set.
#[test]
fn runs_on_the_aes_gcm_backend_its_features_ask_for() {
    common::assert_expected_aes_gcm_backend();
}

#[test]
fn every_raw_aes_vector_decrypts() {
    let Some(dir) = common::vectors_dir() else { return };
    let mut tally = Tally::default();
    run_v4(&dir.join("net-v4"), "net-v4", &mut tally, aes_key);
    run_v4(&dir.join("net-v4-valid"), "net-v4-valid", &mut tally, aes_key);
    run_v5(&dir.join("dafny-v5"), "dafny-v5", &mut tally, aes_key);
    tally.print();
    assert!(tally.failures.is_empty(), "failed vectors:\n{}", tally.failures.join("\n"));
    let index = fs::read_to_string(dir.join("raw-aes-index.tsv")).unwrap();
    let listed = index.lines().skip(1).filter(|l| !l.trim().is_empty()).count() as u32;
    let (passed, _, _) = tally.totals();
    assert_eq!(passed, listed, "the manifests yielded {passed} raw-AES tests, the index lists {listed}");

    // What the README promises ("all 170 raw-AES vectors pass, across all 11 suites"), per suite: a suite
    // whose vectors stop being found or start being skipped fails here, not only the total.
    let mut per_suite: BTreeMap<String, u32> = BTreeMap::new();
    for ((_, label), (passed, _, _)) in &tally.by_suite {
        *per_suite.entry(label.get(..4).unwrap_or(label).to_owned()).or_default() += passed;
    }
    let per_suite: Vec<(&str, u32)> = per_suite.iter().map(|(suite, n)| (suite.as_str(), *n)).collect();
    assert_eq!(
        per_suite,
        [
            ("0014", 16),
            ("0046", 16),
            ("0078", 16),
            ("0114", 15),
            ("0146", 15),
            ("0178", 15),
            ("0214", 15),
            ("0346", 15),
            ("0378", 15),
            ("0478", 16),
            ("0578", 16),
        ],
        "raw-AES vectors passed per suite"
    );
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let claim = readme.split_once(" raw-AES vectors pass, across all ").map(|(before, after)| {
        let total = before.rsplit(' ').next().unwrap().parse::<usize>().unwrap();
        let suites = after.split(' ').next().unwrap().parse::<usize>().unwrap();
        (total, suites)
    });
    let total = per_suite.iter().map(|(_, n)| *n as usize).sum::<usize>();
    assert_eq!(claim, Some((total, per_suite.len())), "the README's raw-AES vector claim");
}

/// Hands out the data key the vector publishes, as the Python ESDK's own test does.
struct PublishedDataKey(Vec<u8>);

impl Keyring for PublishedDataKey {
    fn on_encrypt<'a>(&'a self, _: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        Box::pin(async { Err(Error::Config("decrypt only".into())) })
    }

    fn on_decrypt<'a>(
        &'a self,
        mut materials: DecryptionMaterials,
        _: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        Box::pin(async move {
            materials.set_data_key(DataKey::new(self.0.clone()))?;
            Ok(materials)
        })
    }
}

#[test]
fn python_commitment_vectors_give_their_expected_result() {
    let Some(dir) = common::vectors_dir() else { return };
    let doc = read_json(&dir.join("commitment/commitment-test-vectors.json"));
    let tests = doc["tests"].as_array().unwrap();
    let (mut passed, mut rejected) = (0, 0);
    let mut failures = Vec::new();
    for (i, t) in tests.iter().enumerate() {
        let ciphertext = BASE64.decode(t["ciphertext"].as_str().unwrap()).unwrap();
        let dek = BASE64.decode(t["decrypted-dek"].as_str().unwrap()).unwrap();
        let result = kms_envelope::decrypt(&PublishedDataKey(dek), &DecryptOptions::new(), &ciphertext);
        let expect_ok = t["status"].as_bool().unwrap();
        match (result, expect_ok) {
            (Ok(d), true) => {
                let want: String =
                    t["plaintext-frames"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
                if *d.plaintext == want.as_bytes() {
                    passed += 1;
                } else {
                    failures.push(format!("test {}: wrong plaintext", i + 1));
                }
            }
            (Err(Error::CommitmentMismatch), false) => rejected += 1,
            (Err(e), false) => failures.push(format!("test {}: expected a commitment mismatch, got {e}", i + 1)),
            (Err(e), true) => failures.push(format!("test {}: {e}", i + 1)),
            (Ok(_), false) => failures.push(format!("test {}: decrypted but must fail", i + 1)),
        }
    }
    eprintln!("commitment vectors: {passed} decrypted, {rejected} rejected as expected, {} failed", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!((tests.len(), rejected), (46, 5));
}

/// A raw RSA key (private or public), labelled by its padding: `/oaep-sha512`, `/pkcs1`, ...
#[cfg(feature = "rsa")]
fn rsa_key(keys: &Value, desc: &Value) -> Option<(Box<dyn Keyring>, String)> {
    use kms_envelope::RawRsaKeyring;
    use kms_envelope::RsaPadding;
    if desc["type"] != "raw" || desc["encryption-algorithm"] != "rsa" {
        return None;
    }
    let padding = match (desc["padding-algorithm"].as_str()?, desc["padding-hash"].as_str()) {
        ("pkcs1", _) => RsaPadding::Pkcs1V15,
        ("oaep-mgf1", Some("sha1")) => RsaPadding::OaepSha1,
        ("oaep-mgf1", Some("sha256")) => RsaPadding::OaepSha256,
        ("oaep-mgf1", Some("sha384")) => RsaPadding::OaepSha384,
        ("oaep-mgf1", Some("sha512")) => RsaPadding::OaepSha512,
        other => panic!("unknown RSA padding {other:?}"),
    };
    let key = &keys["keys"][desc["key"].as_str()?];
    assert_eq!((key["algorithm"].as_str(), key["encoding"].as_str()), (Some("rsa"), Some("pem")));
    let (namespace, name) = (desc["provider-id"].as_str()?, key["key-id"].as_str()?);
    let pem = key["material"].as_str()?.as_bytes();
    let keyring = match key["type"].as_str()? {
        "private" => RawRsaKeyring::from_private_key_pem(namespace, name, padding, pem),
        "public" => RawRsaKeyring::from_public_key_pem(namespace, name, padding, pem),
        other => panic!("unknown RSA key type {other}"),
    }
    .expect("a valid RSA key");
    Some((Box::new(keyring), format!("/{padding}")))
}

/// Every raw-RSA vector of every set decrypts (issue 16: 121 in all, 66 in net-v4 and 55 in dafny-v5),
/// counted per set and padding, so a newly "unsupported" one fails the count.
#[cfg(feature = "rsa")]
#[test]
fn every_raw_rsa_vector_decrypts() {
    let Some(dir) = common::vectors_dir() else { return };
    let mut tally = Tally::default();
    run_v4(&dir.join("net-v4"), "net-v4", &mut tally, rsa_key);
    run_v5(&dir.join("dafny-v5"), "dafny-v5", &mut tally, rsa_key);
    tally.print();
    assert!(tally.failures.is_empty(), "failed vectors:\n{}", tally.failures.join("\n"));
    let mut per_padding: BTreeMap<(String, String), u32> = BTreeMap::new();
    for ((set, label), (passed, _, _)) in &tally.by_suite {
        if let Some((_, padding)) = label.split_once('/') {
            *per_padding.entry((set.clone(), padding.to_owned())).or_default() += passed;
        }
    }
    let counts: Vec<(&str, &str, u32)> = per_padding.iter().map(|((s, p), n)| (s.as_str(), p.as_str(), *n)).collect();
    assert_eq!(
        counts,
        [
            ("dafny-v5", "oaep-sha1", 11),
            ("dafny-v5", "oaep-sha256", 11),
            ("dafny-v5", "oaep-sha384", 11),
            ("dafny-v5", "oaep-sha512", 11),
            ("dafny-v5", "pkcs1", 11),
            ("net-v4", "oaep-sha512", 66),
        ],
        "raw-RSA vectors per set and padding (labelled by the first key of each test)"
    );
    assert_eq!(counts.iter().map(|c| c.2).sum::<u32>(), 121);
}

/// A Hierarchical keyring over a static store holding the one branch key version of a `static-branch-key`
/// entry (`key-id`, `branchKeyVersion`, `branchKey`), labelled `/hierarchy`.
fn hierarchy_key(keys: &Value, desc: &Value) -> Option<(Box<dyn Keyring>, String)> {
    use kms_envelope::keyring::hierarchy::{BranchKeyMaterials, HierarchicalKeyring, StaticBranchKeyStore};
    if desc["type"] != "aws-kms-hierarchy" {
        return None;
    }
    let key = &keys["keys"][desc["key"].as_str()?];
    assert_eq!(key["type"], "static-branch-key");
    let id = key["key-id"].as_str()?;
    let version = key["branchKeyVersion"].as_str()?.parse().expect("a UUID version");
    let branch_key = BASE64.decode(key["branchKey"].as_str()?).expect("base64 branch key");
    let materials = BranchKeyMaterials::new(id, version, &branch_key).expect("a 32-byte branch key");
    let store = StaticBranchKeyStore::new("vectors").with_active(materials);
    let keyring = HierarchicalKeyring::new(store, id, std::time::Duration::from_secs(60)).expect("a keyring");
    Some((Box::new(keyring), "/hierarchy".into()))
}

/// Every `aws-kms-hierarchy` vector decrypts (issue 29: 11 in dafny-v5, one per suite, all written with the
/// static branch key), counted per suite, so a newly "unsupported" or missing one fails the count.
#[test]
fn every_hierarchy_vector_decrypts() {
    let Some(dir) = common::vectors_dir() else { return };
    let mut tally = Tally::default();
    run_v5(&dir.join("dafny-v5"), "dafny-v5", &mut tally, hierarchy_key);
    tally.print();
    assert!(tally.failures.is_empty(), "failed vectors:\n{}", tally.failures.join("\n"));
    let per_suite: Vec<(&str, u32)> = tally
        .by_suite
        .iter()
        .filter_map(|((_, label), (passed, _, _))| Some((label.strip_suffix("/hierarchy")?, *passed)))
        .collect();
    let suites = ["0014", "0046", "0078", "0114", "0146", "0178", "0214", "0346", "0378", "0478", "0578"];
    assert_eq!(per_suite, suites.map(|suite| (suite, 1)), "aws-kms-hierarchy vectors passed per suite");
}

/// The raw ECDH keyring of a `raw-ecdh` description, labelled by scheme and curve: `/static/ecc-256`,
/// `/discovery/ecc-384`, ... `pin_sender` reads the static ones from the recipient's side, pinned to the
/// sender's public key, instead of the harness's orientation (the sender reading its own message).
#[cfg(feature = "aws-lc")]
fn ecdh_key(keys: &Value, desc: &Value, pin_sender: bool) -> Option<(Box<dyn Keyring>, String)> {
    use kms_envelope::{EcdhCurve, EcdhPrivateKey, EcdhPublicKey, RawEcdhKeyring};
    if desc["type"] != "raw-ecdh" {
        return None;
    }
    let (schema, curve_name) = (desc["schema"].as_str()?, desc["ecc-curve"].as_str()?);
    let curve = match curve_name {
        "ecc-256" => EcdhCurve::P256,
        "ecc-384" => EcdhCurve::P384,
        "ecc-521" => EcdhCurve::P521,
        other => panic!("unknown ECDH curve {other}"),
    };
    let entry = &keys["keys"][desc["recipient"].as_str()?];
    assert_eq!(
        (entry["type"].as_str(), entry["public-key-encoding"].as_str()),
        (Some("ecc-private"), Some("base64-der"))
    );
    let private = |field: &str| EcdhPrivateKey::from_pem(curve, entry[field].as_str().unwrap().as_bytes()).unwrap();
    let public =
        |field: &str| EcdhPublicKey::from_der(curve, &BASE64.decode(entry[field].as_str().unwrap()).unwrap()).unwrap();
    let keyring = match (schema, pin_sender) {
        // The MPL harness's orientation: the sender's private key and the recipient's public key.
        ("static", false) => {
            RawEcdhKeyring::static_keys(private("sender-material"), public(desc["recipient-public-key"].as_str()?))
        }
        ("static", true) => {
            RawEcdhKeyring::decrypt_from(private("recipient-material"), public(desc["sender-public-key"].as_str()?))
        }
        ("discovery", _) => Ok(RawEcdhKeyring::discovery(private("recipient-material"))),
        (other, _) => panic!("unknown ECDH schema {other}"),
    }
    .expect("keys on one curve");
    Some((Box::new(keyring), format!("/{schema}/{curve_name}")))
}

#[cfg(feature = "aws-lc")]
fn ecdh_key_as_harness(keys: &Value, desc: &Value) -> Option<(Box<dyn Keyring>, String)> {
    ecdh_key(keys, desc, false)
}

#[cfg(feature = "aws-lc")]
fn ecdh_key_pinned(keys: &Value, desc: &Value) -> Option<(Box<dyn Keyring>, String)> {
    ecdh_key(keys, desc, true)
}

/// Every raw-ECDH vector of dafny-v5 decrypts (issue 29: 99, 33 static and 66 discovery, 11 suites by 3
/// curves each), counted per schema and curve so that a newly "unsupported" one fails the count; the 33
/// static ones also from the recipient's side with the sender pinned.
#[cfg(feature = "aws-lc")]
#[test]
fn every_raw_ecdh_vector_decrypts() {
    let Some(dir) = common::vectors_dir() else { return };
    for pin_sender in [false, true] {
        let mut tally = Tally::default();
        let build: KeyBuilder = if pin_sender { ecdh_key_pinned } else { ecdh_key_as_harness };
        run_v5(&dir.join("dafny-v5"), "dafny-v5", &mut tally, build);
        tally.print();
        assert!(tally.failures.is_empty(), "failed vectors:\n{}", tally.failures.join("\n"));
        let mut per_key: BTreeMap<String, u32> = BTreeMap::new();
        for ((_, label), (passed, _, _)) in &tally.by_suite {
            if let Some((_, key)) = label.split_once('/') {
                *per_key.entry(key.to_owned()).or_default() += passed;
            }
        }
        let counts: Vec<(&str, u32)> = per_key.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        assert_eq!(
            counts,
            [
                ("discovery/ecc-256", 22),
                ("discovery/ecc-384", 22),
                ("discovery/ecc-521", 22),
                ("static/ecc-256", 11),
                ("static/ecc-384", 11),
                ("static/ecc-521", 11),
            ],
            "raw-ECDH vectors per schema and curve (pinned sender: {pin_sender})"
        );
    }
}

/// The 66 `aws-kms-ecdh` vectors of dafny-v5 (33 static, 33 discovery) need the network: their keys entries
/// name real KMS keys in us-west-2 (`sender-material`, `recipient-material`) and publish only the public
/// keys, so no double can hold their private keys. The runner counts them as unsupported offline, like the
/// other KMS vectors; this test pins why, so that a set that publishes the private keys (then they belong
/// in a run through the KMS double) or drops the vectors is noticed.
#[test]
fn the_aws_kms_ecdh_vectors_need_the_network() {
    let Some(dir) = common::vectors_dir() else { return };
    let set = dir.join("dafny-v5");
    let (manifest, keys) = (read_json(&set.join("decrypt-manifest.json")), read_json(&set.join("keys.json")));
    let mut per_key: BTreeMap<(String, String), u32> = BTreeMap::new();
    for test in manifest["tests"].as_object().unwrap().values() {
        let desc = &test["decryption-scenario"]["decryptKeyDescription"];
        if desc["type"] != "aws-kms-ecdh" {
            continue;
        }
        let entry = &keys["keys"][desc["recipient"].as_str().unwrap()];
        assert_eq!(entry["type"], "aws-kms-ecdh");
        for field in ["sender-material", "recipient-material"] {
            let material = entry[field].as_str().unwrap();
            assert!(material.starts_with("arn:aws:kms:us-west-2:") && !material.contains("PRIVATE KEY"), "{material}");
        }
        let key = (desc["schema"].as_str().unwrap().to_owned(), desc["ecc-curve"].as_str().unwrap().to_owned());
        *per_key.entry(key).or_default() += 1;
    }
    let counts: Vec<(&str, &str, u32)> = per_key.iter().map(|((s, c), n)| (s.as_str(), c.as_str(), *n)).collect();
    assert_eq!(
        counts,
        [
            ("discovery", "us-west-2-256-ecc", 11),
            ("discovery", "us-west-2-384-ecc", 11),
            ("discovery", "us-west-2-521-ecc", 11),
            ("static", "us-west-2-256-ecc", 11),
            ("static", "us-west-2-384-ecc", 11),
            ("static", "us-west-2-521-ecc", 11),
        ],
        "aws-kms-ecdh vectors (needing the network) per schema and key"
    );
}

/// The commitment vectors through `reencrypt`: the five that must fail are refused with nothing written
/// (no byte to a writer, no file and no temporary file in the destination's directory); the others come
/// out under the new key with their published plaintext.
#[test]
fn reencrypt_refuses_the_must_fail_commitment_vectors_and_writes_nothing() {
    use kms_envelope::{OutputOptions, ReencryptOptions, reencrypt, reencrypt_path};
    let Some(dir) = common::vectors_dir() else { return };
    let doc = read_json(&dir.join("commitment/commitment-test-vectors.json"));
    let new = RawAesKeyring::new("rotation", "key-2026", &[0x17; 32]).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (mut refused, mut rotated) = (0, 0);
    for (i, t) in doc["tests"].as_array().unwrap().iter().enumerate() {
        let ciphertext = BASE64.decode(t["ciphertext"].as_str().unwrap()).unwrap();
        let source = PublishedDataKey(BASE64.decode(t["decrypted-dek"].as_str().unwrap()).unwrap());
        let options = ReencryptOptions::new();
        let mut written = Vec::new();
        let streamed = reencrypt(&source, &new, &options, &ciphertext[..], &mut written);
        let input = out.path().join(format!("{i}.src"));
        fs::write(&input, &ciphertext).unwrap();
        let destination = out.path().join(format!("{i}.new"));
        let to_file = reencrypt_path(&source, &new, &options, &input, &destination, &OutputOptions::new());
        fs::remove_file(&input).unwrap();
        if t["status"].as_bool().unwrap() {
            streamed.unwrap_or_else(|e| panic!("test {}: {e}", i + 1));
            to_file.unwrap_or_else(|e| panic!("test {}: {e}", i + 1));
            let want: String = t["plaintext-frames"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
            for message in [written, fs::read(&destination).unwrap()] {
                let plain = kms_envelope::decrypt(&new, &DecryptOptions::new(), &message).unwrap();
                assert_eq!(*plain.plaintext, want.as_bytes(), "test {}", i + 1);
            }
            fs::remove_file(&destination).unwrap();
            rotated += 1;
        } else {
            assert!(matches!(streamed, Err(Error::CommitmentMismatch)), "test {}: {streamed:?}", i + 1);
            assert!(matches!(to_file, Err(Error::CommitmentMismatch)), "test {}: {to_file:?}", i + 1);
            assert!(written.is_empty(), "test {}: {} bytes written", i + 1, written.len());
            refused += 1;
        }
        let left: Vec<_> = fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "test {}: left behind {left:?}", i + 1);
    }
    assert_eq!((rotated, refused), (41, 5));
}
