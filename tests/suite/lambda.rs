//! The Lambda cold-start decryptor against real components: AWS KMS and S3 in moto (started by
//! scripts/test.sh), the `lambda_cold_start` example as a child process (killed, or under a file size
//! limit), a 1 MiB tmpfs for the space check, and AWS's Runtime Interface Emulator running the example.
//! Without a peer a test prints "SKIPPED: ..." (and fails under CI=true).
#![cfg(all(feature = "lambda", feature = "s3"))]

use crate::common;
use crate::fake_s3;
use crate::rie;
use crate::support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture};
use kms_envelope::lambda::{BundleSpec, ColdStart, Landed, Source};
use kms_envelope::{DecryptOptions, EncryptOptions, EncryptedDataKey, Encryptor, Error, Keyring};
use rie::Rie;
use support::Moto;

#[path = "cli_parts/lambda_mrk.rs"]
mod mrk;

// ------------------------------------------------------------------------------------------- helpers

/// A real KMS keyring underneath, counting the decrypt calls that reach it and keeping the data keys it
/// recovered (for the test that looks for them in the logs).
struct Counting {
    inner: Arc<dyn Keyring>,
    decrypts: AtomicUsize,
    data_keys: Mutex<Vec<Vec<u8>>>,
}

impl Counting {
    fn new(inner: impl Keyring + 'static) -> Arc<Self> {
        Arc::new(Self { inner: Arc::new(inner), decrypts: AtomicUsize::new(0), data_keys: Mutex::default() })
    }

    fn calls(&self) -> usize {
        self.decrypts.load(Ordering::SeqCst)
    }
}

impl Keyring for Counting {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        self.inner.on_encrypt(materials)
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        self.decrypts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let materials = self.inner.on_decrypt(materials, edks).await?;
            if let Some(key) = materials.data_key() {
                self.data_keys.lock().unwrap().push(key.as_bytes().to_vec());
            }
            Ok(materials)
        })
    }
}

/// One moto key and the clients around it, fresh per test so tests can run in parallel.
struct Env {
    moto: Moto,
    key_arn: String,
    bucket: String,
    work: tempfile::TempDir,
}

impl Env {
    fn new() -> Option<Self> {
        let moto = Moto::get()?;
        let key_arn = moto.create_key();
        let bucket = format!("kms-envelope-lambda-{}", key_arn.rsplit('/').next().unwrap());
        let s3 = Self::s3_for(&moto);
        support::run(s3.create_bucket().bucket(&bucket).send()).expect("CreateBucket in moto");
        Some(Self { moto, key_arn, bucket, work: tempfile::tempdir().unwrap() })
    }

    fn s3_for(moto: &Moto) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&moto.config()).force_path_style(true).build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// A fresh S3 client (its connection pool belongs to the runtime it is first used on).
    fn s3(&self) -> aws_sdk_s3::Client {
        Self::s3_for(&self.moto)
    }

    /// A fresh strict KMS keyring for the test key, counting its decrypt calls.
    fn keyring(&self) -> Arc<Counting> {
        Counting::new(self.moto.clients().keyring(&self.key_arn).unwrap())
    }

    fn put(&self, key: &str, body: Vec<u8>) -> String {
        let put = self.s3().put_object().bucket(&self.bucket).key(key).body(body.into()).send();
        support::run(put).expect("PutObject in moto");
        format!("s3://{}/{key}", self.bucket)
    }

    /// A directory of the work dir, created.
    fn dir(&self, name: &str) -> PathBuf {
        let dir = self.work.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Environment variables for the example: this moto, fake credentials, nothing from the host.
    fn child_env(&self, command: &mut Command) {
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWS_") || name.to_string_lossy().starts_with("KMS_ENVELOPE_") {
                command.env_remove(name);
            }
        }
        command
            .env("AWS_ENDPOINT_URL", &self.moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", support::REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("KMS_ENVELOPE_KMS_KEY_ARN", &self.key_arn)
            .env("KMS_ENVELOPE_CONTEXT", "purpose=lambda test");
    }
}

fn options() -> EncryptOptions {
    EncryptOptions::new().context("purpose", "lambda test").frame_length(4096)
}

fn decrypt_options() -> DecryptOptions {
    DecryptOptions::new().context("purpose", "lambda test")
}

fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(seed as u32 % 31) as u8 ^ seed).collect()
}

fn encrypt(keyring: &dyn Keyring, options: &EncryptOptions, bytes: &[u8]) -> Vec<u8> {
    let mut encryptor = Encryptor::new(keyring, options, Vec::new()).unwrap();
    encryptor.write_all(bytes).unwrap();
    encryptor.finish().unwrap()
}

/// A small tree: two files, one nested.
fn sample_tree(dir: &Path) {
    fs::create_dir_all(dir.join("nested")).unwrap();
    fs::write(dir.join("server.pem"), plaintext(100_000, 3)).unwrap();
    fs::write(dir.join("nested/ca.pem"), b"-----BEGIN CERTIFICATE-----").unwrap();
}

fn encrypt_tree(keyring: &dyn Keyring, dir: &Path) -> Vec<u8> {
    kms_envelope::bundle::encrypt_directory(keyring, &options(), dir, Vec::new()).unwrap().0
}

/// Every path under `dir`, relative, sorted (hidden files included).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for entry in entries.map(Result::unwrap) {
            let path = entry.path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Names under `dir` that hold unverified plaintext: temp files and staging directories.
fn partials(dir: &Path) -> Vec<String> {
    tree(dir).into_iter().filter(|p| p.ends_with(".partial") || p.ends_with(".old")).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Runs a cold start to its end, on a runtime of its own.
fn run(cold_start: &ColdStart) -> kms_envelope::Result<Vec<Landed>> {
    runtime().block_on(cold_start.run()).map(<[Landed]>::to_vec)
}

fn cold_start(keyring: &Arc<Counting>, root: &Path, task_root: &Path) -> ColdStart {
    ColdStart::with_shared_keyring(keyring.clone()).options(decrypt_options()).root(root).task_root(task_root)
}

/// The `lambda_cold_start` example, which `cargo test` builds next to the test binaries.
fn example() -> Option<PathBuf> {
    let path = std::env::var_os("KMS_ENVELOPE_LAMBDA_EXAMPLE").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join("examples/lambda_cold_start")
    });
    if path.is_file() {
        Some(path)
    } else {
        common::missing(&format!(
            "the lambda_cold_start example ({}; `cargo test --features lambda,s3` builds it, `--test suite` \
             alone does not)",
            path.display()
        ))
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ------------------------------------------------------------------------------------- happy paths

#[test]
fn file_and_directory_bundles_from_the_package_and_from_s3() {
    let Some(env) = Env::new() else { return };
    let setup = env.keyring();
    let package = env.dir("package");
    let tree_src = env.dir("tree");
    sample_tree(&tree_src);
    let config = plaintext(300_000, 1);
    let blob = plaintext(70_000, 2);
    fs::write(package.join("config.json.esdk"), encrypt(&*setup, &options(), &config)).unwrap();
    fs::write(package.join("tree.esdk"), encrypt_tree(&*setup, &tree_src)).unwrap();
    let s3_file = env.put("bundles/p=1/blob.esdk", encrypt(&*setup, &options(), &blob));
    let s3_tree = env.put("bundles/tree.esdk", encrypt_tree(&*setup, &tree_src));

    let root = env.dir("tmp");
    let keyring = env.keyring();
    let cold = cold_start(&keyring, &root, &package)
        .s3_client(env.s3())
        .bundle(BundleSpec::file("config.json.esdk", "app/config.json").unwrap())
        .bundle(BundleSpec::directory("tree.esdk", "certs").unwrap())
        .bundle(BundleSpec::file(&s3_file, root.join("blob.bin").to_str().unwrap()).unwrap())
        .bundle(BundleSpec::directory(&s3_tree, "s3certs").unwrap());
    let landed = run(&cold).unwrap();

    assert_eq!(keyring.calls(), 4, "one KMS Decrypt per bundle");
    assert_eq!(landed.len(), 4);
    // Each made a KMS call, so each took some time to unwrap, within its total.
    let timed = |l: &Landed| !l.reused && l.unwrap_time > Duration::ZERO && l.total_time >= l.unwrap_time;
    assert!(landed.iter().all(timed), "{landed:?}");
    assert_eq!(landed[0].destination, root.join("app/config.json"));
    assert_eq!(landed[0].bytes, 300_000);
    assert_eq!(landed[2].bytes, 70_000);
    assert_eq!(landed[1].bytes, 100_000 + 27);
    assert_eq!(fs::read(root.join("app/config.json")).unwrap(), config);
    assert_eq!(fs::read(root.join("blob.bin")).unwrap(), blob);
    for certs in ["certs", "s3certs"] {
        assert_eq!(fs::read(root.join(certs).join("server.pem")).unwrap(), plaintext(100_000, 3));
        assert_eq!(fs::read(root.join(certs).join("nested/ca.pem")).unwrap(), b"-----BEGIN CERTIFICATE-----");
        assert_eq!(mode(&root.join(certs)), 0o700);
        assert_eq!(mode(&root.join(certs).join("server.pem")), 0o600);
    }
    assert_eq!(mode(&root.join("app/config.json")), 0o600);
    assert_eq!(mode(&root.join("app")), 0o700);
    assert_eq!(partials(&root), Vec::<String>::new());

    // The same cold start again in this process: the first result, no new call.
    assert_eq!(runtime().block_on(cold.run()).unwrap().len(), 4);
    assert_eq!(keyring.calls(), 4);
}

#[test]
fn json_secrets_bundle_into_memory_only() {
    let Some(env) = Env::new() else { return };
    let setup = env.keyring();
    let package = env.dir("package");
    let json = br#"{"DB_PASSWORD": "correct horse battery staple", "API_KEY": "k-123"}"#;
    fs::write(package.join("secrets.json.esdk"), encrypt(&*setup, &options(), json)).unwrap();
    let s3_source = env.put("secrets.json.esdk", encrypt(&*setup, &options(), json));

    let root = env.dir("tmp");
    let keyring = env.keyring();
    let cold = cold_start(&keyring, &root, &package).s3_client(env.s3());
    let rt = runtime();
    for source in [Source::parse("secrets.json.esdk").unwrap(), Source::parse(&s3_source).unwrap()] {
        let secrets = rt.block_on(cold.load_secrets(&source)).unwrap();
        assert_eq!(secrets.get("DB_PASSWORD"), Some("correct horse battery staple"));
        assert_eq!(secrets.names().collect::<Vec<_>>(), ["API_KEY", "DB_PASSWORD"]);
        assert!(!format!("{secrets:?}").contains("horse"));
    }
    // The free function, given the keyring and options directly.
    let path = Source::Path(package.join("secrets.json.esdk"));
    let secrets = rt.block_on(kms_envelope::lambda::load_secrets(keyring.clone(), decrypt_options(), &path)).unwrap();
    assert_eq!(secrets.get("API_KEY"), Some("k-123"));
    assert_eq!(keyring.calls(), 3);
    assert_eq!(tree(&root), Vec::<String>::new(), "nothing touches the disk");

    // The wrong expected context is refused.
    let wrong = ColdStart::with_shared_keyring(keyring.clone()).options(DecryptOptions::new().context("purpose", "x"));
    let err = rt.block_on(wrong.load_secrets(&path)).unwrap_err();
    assert!(!err.to_string().contains("horse"), "{err}");
}

#[test]
fn warm_start_reuses_what_is_in_place_with_zero_kms_calls() {
    let Some(env) = Env::new() else { return };
    let setup = env.keyring();
    let package = env.dir("package");
    let tree_src = env.dir("tree");
    sample_tree(&tree_src);
    fs::write(package.join("a.esdk"), encrypt(&*setup, &options(), &plaintext(50_000, 5))).unwrap();
    let s3_file = env.put("b.esdk", encrypt(&*setup, &options(), &plaintext(60_000, 6)));
    let s3_tree = env.put("t.esdk", encrypt_tree(&*setup, &tree_src));
    let root = env.dir("tmp");
    let specs = [
        BundleSpec::file("a.esdk", "a.bin").unwrap(),
        BundleSpec::file(&s3_file, "b.bin").unwrap(),
        BundleSpec::directory(&s3_tree, "t").unwrap(),
    ];
    let start = |keyring: &Arc<Counting>| {
        specs.iter().cloned().fold(cold_start(keyring, &root, &package).s3_client(env.s3()), ColdStart::bundle)
    };

    let cold = env.keyring();
    let first = run(&start(&cold)).unwrap();
    assert_eq!(cold.calls(), 3);
    assert!(first.iter().all(|l| !l.reused));

    // A new process in the same execution environment: same /tmp, new ColdStart, new keyring.
    let warm = env.keyring();
    let second = run(&start(&warm)).unwrap();
    assert_eq!(warm.calls(), 0, "a warm start makes no KMS call");
    assert!(second.iter().all(|l| l.reused), "{second:?}");
    assert_eq!(second[0].bytes, 50_000);
    assert_eq!(fs::read(root.join("b.bin")).unwrap(), plaintext(60_000, 6));

    // A changed bundle is decrypted again; a destination changed behind our back too.
    fs::write(package.join("a.esdk"), encrypt(&*setup, &options(), &plaintext(50_001, 7))).unwrap();
    fs::write(root.join("b.bin"), b"tampered").unwrap();
    let third_keyring = env.keyring();
    let third = run(&start(&third_keyring)).unwrap();
    assert_eq!(third_keyring.calls(), 2, "{third:?}");
    assert_eq!((third[0].reused, third[1].reused, third[2].reused), (false, false, true));
    assert_eq!(fs::read(root.join("a.bin")).unwrap(), plaintext(50_001, 7));
    assert_eq!(fs::read(root.join("b.bin")).unwrap(), plaintext(60_000, 6));

    // Same-length edits in place, of a file and of a file inside a directory bundle, right after the
    // run: both are decrypted again, the untouched one is reused.
    let edit_in_place = |path: &Path| {
        let mut file = fs::OpenOptions::new().write(true).open(path).unwrap();
        file.write_all(b"EDITED").unwrap();
    };
    edit_in_place(&root.join("a.bin"));
    edit_in_place(&root.join("t/server.pem"));
    let fourth_keyring = env.keyring();
    let fourth = run(&start(&fourth_keyring)).unwrap();
    assert_eq!(fourth_keyring.calls(), 2, "{fourth:?}");
    assert_eq!((fourth[0].reused, fourth[1].reused, fourth[2].reused), (false, true, false));
    assert_eq!(fs::read(root.join("a.bin")).unwrap(), plaintext(50_001, 7));
    assert_eq!(fs::read(root.join("t/server.pem")).unwrap(), plaintext(100_000, 3));

    // Untouched since: a warm start reuses all three with no KMS call.
    let fifth_keyring = env.keyring();
    let fifth = run(&start(&fifth_keyring)).unwrap();
    assert_eq!(fifth_keyring.calls(), 0, "{fifth:?}");
    assert!(fifth.iter().all(|l| l.reused), "{fifth:?}");

    // The S3 object replaced by another of the same length: only its ETag says so. Decrypted again.
    env.put("b.esdk", encrypt(&*setup, &options(), &plaintext(60_000, 8)));
    let sixth_keyring = env.keyring();
    let sixth = run(&start(&sixth_keyring)).unwrap();
    assert_eq!(sixth_keyring.calls(), 1, "{sixth:?}");
    assert_eq!((sixth[0].reused, sixth[1].reused, sixth[2].reused), (true, false, true));
    assert_eq!(fs::read(root.join("b.bin")).unwrap(), plaintext(60_000, 8));
}

/// A directory bundle whose tree lost an entry, or had one renamed, since it landed is decrypted again;
/// the untouched tree is reused.
#[test]
fn a_directory_bundle_with_an_entry_removed_or_renamed_is_decrypted_again() {
    let work = tempfile::tempdir().unwrap();
    let (package, root, tree_src) = (work.path().join("package"), work.path().join("root"), work.path().join("tree"));
    fs::create_dir_all(&package).unwrap();
    fs::create_dir_all(&root).unwrap();
    sample_tree(&tree_src);
    fs::write(package.join("t.esdk"), encrypt_tree(&raw_keyring(), &tree_src)).unwrap();
    let start = |keyring: &Arc<Counting>| {
        cold_start(keyring, &root, &package).bundle(BundleSpec::directory("t.esdk", "t").unwrap())
    };
    let first = Counting::new(raw_keyring());
    run(&start(&first)).unwrap();
    assert_eq!(first.calls(), 1);

    type Change<'a> = (&'a str, &'a dyn Fn(&Path));
    let changes: [Change; 2] = [
        ("removed", &|t: &Path| fs::remove_file(t.join("nested/ca.pem")).unwrap()),
        ("renamed", &|t: &Path| fs::rename(t.join("nested/ca.pem"), t.join("nested/ca.pem.bak")).unwrap()),
    ];
    for (change, apply) in changes {
        let untouched = Counting::new(raw_keyring());
        assert!(run(&start(&untouched)).unwrap()[0].reused, "{change}: the control");
        assert_eq!(untouched.calls(), 0, "{change}: the control");
        apply(&root.join("t"));
        let keyring = Counting::new(raw_keyring());
        let again = run(&start(&keyring)).unwrap();
        assert_eq!((keyring.calls(), again[0].reused), (1, false), "an entry {change}: {again:?}");
        assert_eq!(tree(&root.join("t")), tree(&tree_src), "an entry {change}");
        assert_eq!(fs::read(root.join("t/nested/ca.pem")).unwrap(), b"-----BEGIN CERTIFICATE-----");
    }
}

/// Every variable of the README's configuration table, given a bad value, fails with a `Config` error
/// whose message names that variable (the keys' variables when their keyring is built).
#[test]
fn a_bad_value_of_each_configuration_variable_is_a_config_error_naming_it() {
    use kms_envelope::lambda::EnvConfig;
    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const MRK: &str = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    let aws = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build();
    let kms = kms_envelope::KmsClients::new(&aws);
    let good = [("KMS_ENVELOPE_BUNDLES", "a.esdk=a"), ("KMS_ENVELOPE_KMS_KEY_ARN", ARN)];
    let rsa = [("KMS_ENVELOPE_BUNDLES", "a.esdk=a"), ("KMS_ENVELOPE_KMS_RSA_KEY_ARN", ARN)];
    let discovery = [
        ("KMS_ENVELOPE_BUNDLES", "a.esdk=a"),
        ("KMS_ENVELOPE_KMS_DISCOVERY", "true"),
        ("KMS_ENVELOPE_KMS_ACCOUNTS", "*"),
    ];
    // (the variables besides the bad one, the variable, its bad value)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (&good, "KMS_ENVELOPE_BUNDLES", "a.esdk"),
        (&good, "KMS_ENVELOPE_BUNDLES", "a.esdk="),
        (&good, "KMS_ENVELOPE_BUNDLES", "s3://bucket=a"),
        (&good, "KMS_ENVELOPE_BUNDLES", "s3:///key=a"),
        (&good, "KMS_ENVELOPE_SECRETS", "s3://bucket"),
        (&good, "KMS_ENVELOPE_SECRETS", "s3://bucket/"),
        (&good, "KMS_ENVELOPE_KMS_KEY_ARN", "not a key"),
        (&good, "KMS_ENVELOPE_KMS_KEY_ARN", "arn:aws:kms:us-east-1:1:key/x"),
        (&good, "KMS_ENVELOPE_KMS_KEY_ARN", &format!("{ARN},alias/")),
        (&good[..1], "KMS_ENVELOPE_KMS_DISCOVERY", "yes"),
        (&discovery, "KMS_ENVELOPE_KMS_ACCOUNTS", "12"),
        (&discovery, "KMS_ENVELOPE_KMS_ACCOUNTS", ","),
        (&good, "KMS_ENVELOPE_CONTEXT", "novalue"),
        (&good, "KMS_ENVELOPE_CONTEXT", "k=1,k=2"),
        (&good, "KMS_ENVELOPE_CONTEXT", "{\"k\": 1}"),
        (&rsa[..1], "KMS_ENVELOPE_KMS_RSA_KEY_ARN", "not a key"),
        (&rsa, "KMS_ENVELOPE_KMS_RSA_ALGORITHM", "RSAES_PKCS1_V1_5"),
        (&good, "KMS_ENVELOPE_ROOT", "tmp"),
        (&good, "KMS_ENVELOPE_MAX_ENCRYPTED_DATA_KEYS", "0"),
        (&good, "KMS_ENVELOPE_MAX_ENCRYPTED_DATA_KEYS", "ten"),
        (&good, "KMS_ENVELOPE_MAX_ENCRYPTED_DATA_KEYS", "65536"),
        (&good, "KMS_ENVELOPE_KMS_REGIONS", "eu-west-1"),
        (&discovery, "KMS_ENVELOPE_KMS_REGIONS", "evil.example/"),
        (&good, "KMS_ENVELOPE_KMS_GRANT_TOKENS", "a token with spaces"),
        (&good, "KMS_ENVELOPE_KMS_KEY_ARN", &format!("{MRK},{}", MRK.replace("us-east-1", "eu-west-1"))),
    ];
    for (others, variable, value) in cases {
        let vars: Vec<(&str, &str)> = others.iter().copied().chain([(*variable, *value)]).collect();
        let lookup = |name: &str| vars.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned());
        let err = match EnvConfig::from_lookup(lookup) {
            Ok(config) => config.keyring(&kms).err().unwrap_or_else(|| panic!("{variable}={value:?} was accepted")),
            Err(err) => err,
        };
        let Error::Config(message) = &err else { panic!("{variable}={value:?}: not a Config error: {err:?}") };
        assert!(message.contains(variable), "{variable}={value:?}: {message:?} does not name the variable");
    }
}

// ------------------------------------------------------------------------------------------ faults

/// Asserts a failed run left nothing: no destination, no temp file, no staging directory, no marker.
fn assert_nothing_left(root: &Path, destination: &str) {
    assert!(fs::symlink_metadata(root.join(destination)).is_err(), "{destination} exists: {:?}", tree(root));
    assert_eq!(partials(root), Vec::<String>::new(), "unverified plaintext left behind");
    let name = Path::new(destination).file_name().unwrap().to_string_lossy();
    let marker = root.join(destination).with_file_name(format!(".{name}.kms-envelope"));
    assert!(!marker.exists(), "a marker survived: {:?}", tree(root));
}

/// A way to damage a message: what it is, the damage, the error it must cause.
type Damage<'a> = (&'a str, &'a dyn Fn(&[u8]) -> Vec<u8>, fn(&Error) -> bool);

/// A file bundle and a directory bundle, written with `options`, are landed damaged each way in `damages`:
/// each fails with its error after one KMS call and leaves nothing under the root (no destination, temp,
/// staging directory or marker). The intact bundles then land.
fn damaged_bundles_leave_nothing_and_the_good_ones_then_land(options: &EncryptOptions, damages: &[Damage]) {
    let Some(env) = Env::new() else { return };
    let setup = env.keyring();
    let package = env.dir("package");
    let tree_src = env.dir("tree");
    sample_tree(&tree_src);
    let good_file = encrypt(&*setup, options, &plaintext(200_000, 9));
    let good_tree = kms_envelope::bundle::encrypt_directory(&*setup, options, &tree_src, Vec::new()).unwrap().0;
    let root = env.dir("tmp");
    for (what, damage, expected) in damages {
        fs::write(package.join("file.esdk"), damage(&good_file[..])).unwrap();
        fs::write(package.join("tree.esdk"), damage(&good_tree[..])).unwrap();
        for (spec, destination) in [
            (BundleSpec::file("file.esdk", "file.bin").unwrap(), "file.bin"),
            (BundleSpec::directory("tree.esdk", "tree").unwrap(), "tree"),
        ] {
            let keyring = env.keyring();
            let err = run(&cold_start(&keyring, &root, &package).bundle(spec)).unwrap_err();
            assert!(expected(&err), "{destination} with {what}: {err:?}");
            assert_eq!(keyring.calls(), 1);
            assert_nothing_left(&root, destination);
            assert_eq!(tree(&root), Vec::<String>::new(), "{destination} with {what}");
        }
    }

    fs::write(package.join("file.esdk"), &good_file).unwrap();
    fs::write(package.join("tree.esdk"), &good_tree).unwrap();
    let keyring = env.keyring();
    let cold = cold_start(&keyring, &root, &package)
        .bundle(BundleSpec::file("file.esdk", "file.bin").unwrap())
        .bundle(BundleSpec::directory("tree.esdk", "tree").unwrap());
    run(&cold).unwrap();
    assert_eq!(fs::read(root.join("file.bin")).unwrap(), plaintext(200_000, 9));
    assert_eq!(fs::read(root.join("tree/server.pem")).unwrap(), plaintext(100_000, 3));
}

/// Flips one bit `from_end` bytes before the end of a message.
fn flip_from_end(message: &[u8], from_end: usize) -> Vec<u8> {
    let mut bad = message.to_vec();
    let at = bad.len() - from_end;
    bad[at] ^= 1;
    bad
}

#[test]
fn a_tampered_last_frame_leaves_nothing_and_the_good_bundle_then_lands() {
    // 5 bytes from the end: inside the final frame's tag (suite 0x0478: no signature after it).
    let tamper = |message: &[u8]| flip_from_end(message, 5);
    damaged_bundles_leave_nothing_and_the_good_ones_then_land(
        &options(),
        &[("a tampered tag", &tamper, |e| matches!(e, Error::FrameAuthentication { .. }))],
    );
}

/// Signed bundles (0x0578) with a wrong signature or a cut footer: every frame authenticates, so all the
/// plaintext was decrypted before the footer is checked, and still nothing may land.
#[test]
fn signed_bundles_with_a_bad_signature_or_a_cut_footer_leave_nothing() {
    let signed = options().suite(kms_envelope::AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384);
    let bad_signature = |message: &[u8]| flip_from_end(message, 1);
    let cut_footer = |message: &[u8]| message[..message.len() - 20].to_vec();
    damaged_bundles_leave_nothing_and_the_good_ones_then_land(
        &signed,
        &[
            ("a bad signature", &bad_signature, |e| matches!(e, Error::SignatureVerification)),
            ("a cut footer", &cut_footer, |e| matches!(e, Error::Truncated { .. })),
        ],
    );
}

/// The example in `--once` mode for `bundles` (KMS_ENVELOPE_BUNDLES), with the root and package given.
fn example_command(env: &Env, example: &Path, bundles: &str, root: &Path, package: &Path) -> Command {
    let mut command = Command::new(example);
    env.child_env(&mut command);
    command
        .arg("--once")
        .env("KMS_ENVELOPE_BUNDLES", bundles)
        .env("KMS_ENVELOPE_ROOT", root)
        .env("LAMBDA_TASK_ROOT", package)
        .env("RUST_LOG", "info");
    command
}

#[test]
fn the_file_size_limit_hit_mid_write_leaves_nothing_and_a_rerun_succeeds() {
    let Some(env) = Env::new() else { return };
    let Some(example) = example() else { return };
    let setup = env.keyring();
    let package = env.dir("package");
    let tree_src = env.dir("tree");
    fs::write(tree_src.join("big.bin"), plaintext(2 << 20, 4)).unwrap();
    let big = plaintext(2 << 20, 10);
    fs::write(package.join("big.esdk"), encrypt(&*setup, &options(), &big)).unwrap();
    fs::write(package.join("tree.esdk"), encrypt_tree(&*setup, &tree_src)).unwrap();
    let root = env.dir("tmp");

    for (bundles, destination) in [("big.esdk=big.bin", "big.bin"), ("tree.esdk=tree/", "tree")] {
        // 1024 blocks (of 512 bytes in dash, of 1024 in bash): at most half the plaintext. SIGXFSZ ignored,
        // so write() fails with EFBIG instead of killing the process.
        let mut limited = example_command(&env, &example, bundles, &root, &package);
        let program = limited.get_program().to_owned();
        let args: Vec<_> = limited.get_args().map(ToOwned::to_owned).collect();
        let mut shell = Command::new("sh");
        shell.arg("-c").arg(r#"trap '' XFSZ; ulimit -f 1024 && exec "$0" "$@""#).arg(program).args(args);
        for (name, value) in limited.get_envs() {
            match value {
                Some(value) => shell.env(name, value),
                None => shell.env_remove(name),
            };
        }
        limited = shell;
        let out = limited.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bundles}: the limited run succeeded: {stderr}");
        assert!(stderr.to_lowercase().contains("file too large"), "{bundles}: {stderr}");
        assert_nothing_left(&root, destination);

        let out = example_command(&env, &example, bundles, &root, &package).output().unwrap();
        assert!(out.status.success(), "{bundles}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(partials(&root), Vec::<String>::new());
    }
    assert_eq!(fs::read(root.join("big.bin")).unwrap(), big);
    assert_eq!(fs::read(root.join("tree/big.bin")).unwrap(), plaintext(2 << 20, 4));
}

/// Waits until the process writes some plaintext into a file below `dir`: an unnamed one (`O_TMPFILE`, seen
/// only through the process's descriptors) or a named temp file.
fn wait_for_partial(dir: &Path, child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let fds = fs::read_dir(format!("/proc/{}/fd", child.id())).into_iter().flatten().flatten();
        let started = fds
            .filter(|fd| fs::read_link(fd.path()).is_ok_and(|target| target.starts_with(dir)))
            .any(|fd| fs::metadata(fd.path()).is_ok_and(|m| m.is_file() && m.len() > 256 * 1024));
        if started {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Regular files with content under `dir` (hidden ones included) that belong to `destination`: it, or
/// anything staged for it.
fn files_with_content(dir: &Path, destination: &str) -> Vec<String> {
    let hidden = format!(".{destination}.");
    tree(dir)
        .into_iter()
        .filter(|p| p.starts_with(destination) || p.starts_with(&hidden))
        .filter(|p| fs::symlink_metadata(dir.join(p)).is_ok_and(|m| m.is_file() && m.len() > 0))
        .collect()
}

#[test]
fn a_process_killed_mid_decrypt_leaves_no_destination_and_a_rerun_cleans_up_and_succeeds() {
    let Some(env) = Env::new() else { return };
    let Some(example) = example() else { return };
    let setup = env.keyring();
    let package = env.dir("package");
    let tree_src = env.dir("tree");
    let big = plaintext(4 << 20, 11);
    fs::write(tree_src.join("big.bin"), &big).unwrap();
    let file_message = encrypt(&*setup, &options().frame_length(65536), &big);
    let tree_message =
        kms_envelope::bundle::encrypt_directory(&*setup, &options().frame_length(65536), &tree_src, Vec::new())
            .unwrap()
            .0;
    let s3 = fake_s3::TricklingS3::start(vec![("big.esdk", file_message), ("tree.esdk", tree_message)]);
    let root = env.dir("tmp");

    for (bundles, destination) in
        [("s3://trickling/big.esdk=big.bin", "big.bin"), ("s3://trickling/tree.esdk=tree/", "tree")]
    {
        let mut child = example_command(&env, &example, bundles, &root, &package)
            .env("AWS_ENDPOINT_URL_S3", &s3.url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let caught = wait_for_partial(&root, &mut child, Duration::from_secs(120));
        // Still running: the rest of the message has not come (and will not, at this rate).
        let running = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL: no destructor, no cleanup
        let out = child.wait_with_output().unwrap();
        assert!(caught && running, "{bundles}: never saw the decrypt in progress: {}", stderr_text(&out.stderr));
        assert!(fs::symlink_metadata(root.join(destination)).is_err(), "{destination} exists after the kill");
        // The plaintext was in unnamed files, which the kernel freed with the process; at most an empty
        // staging directory is left, for the rerun to clean.
        assert_eq!(
            files_with_content(&root, destination),
            Vec::<String>::new(),
            "{bundles}: plaintext left after the kill"
        );

        let out = example_command(&env, &example, bundles, &root, &package)
            .env("AWS_ENDPOINT_URL_S3", &s3.url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{bundles}: {}", stderr_text(&out.stderr));
        assert_eq!(partials(&root), Vec::<String>::new(), "the rerun removed the leftovers");
    }
    assert_eq!(fs::read(root.join("big.bin")).unwrap(), big);
    assert_eq!(fs::read(root.join("tree/big.bin")).unwrap(), big);
}

fn stderr_text(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr).into_owned()
}

#[test]
fn planted_symlinks_are_refused_before_any_kms_call() {
    let Some(env) = Env::new() else { return };
    let setup = env.keyring();
    let package = env.dir("package");
    let tree_src = env.dir("tree");
    sample_tree(&tree_src);
    fs::write(package.join("file.esdk"), encrypt(&*setup, &options(), b"secret")).unwrap();
    fs::write(package.join("tree.esdk"), encrypt_tree(&*setup, &tree_src)).unwrap();
    let root = env.dir("tmp");
    let outside = env.dir("outside");
    fs::write(outside.join("victim"), b"keep me").unwrap();
    symlink(outside.join("victim"), root.join("file.bin")).unwrap();
    symlink(&outside, root.join("tree")).unwrap();
    symlink(&outside, root.join("linked")).unwrap();

    for spec in [
        BundleSpec::file("file.esdk", "file.bin").unwrap(),
        BundleSpec::directory("tree.esdk", "tree").unwrap(),
        BundleSpec::file("file.esdk", "linked/file.bin").unwrap(),
        BundleSpec::directory("tree.esdk", "linked/tree").unwrap(),
    ] {
        let keyring = env.keyring();
        let err = run(&cold_start(&keyring, &root, &package).bundle(spec.clone())).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{spec:?}: {err}");
        assert_eq!(keyring.calls(), 0, "{spec:?}: refused before KMS");
    }
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"keep me");
    assert_eq!(tree(&outside), ["victim"]);
    assert_eq!(partials(&root), Vec::<String>::new());
}

/// The extension's path after a failed run: `discard` removes the destinations. A link planted on the way
/// (the failure's very cause here) must not lead it outside the root, and what stands at a destination
/// but is not of the bundle's kind (a directory where a file bundle goes) was never landed by it.
#[test]
fn discard_after_a_refused_link_removes_nothing_outside_the_root() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("victim.json"), b"keep me").unwrap();
    fs::write(outside.path().join(".victim.json.kms-envelope"), b"keep me too").unwrap();
    fs::create_dir(outside.path().join("tree")).unwrap();
    fs::write(outside.path().join("tree/a"), b"keep").unwrap();
    symlink(outside.path(), root.path().join("linked")).unwrap();
    fs::create_dir(root.path().join("own")).unwrap();
    fs::write(root.path().join("own/data"), b"the function's own").unwrap();

    let keyring = kms_envelope::RawAesKeyring::new("ns", "k", &[7; 32]).unwrap();
    let cold = ColdStart::new(keyring)
        .root(root.path())
        .bundle(BundleSpec::file("missing.esdk", "linked/victim.json").unwrap())
        .bundle(BundleSpec::directory("missing.esdk", "linked/tree").unwrap())
        .bundle(BundleSpec::file("missing.esdk", "own").unwrap());
    run(&cold).unwrap_err();
    cold.discard().unwrap();
    assert_eq!(fs::read(outside.path().join("victim.json")).unwrap(), b"keep me");
    assert_eq!(fs::read(outside.path().join(".victim.json.kms-envelope")).unwrap(), b"keep me too");
    assert_eq!(fs::read(outside.path().join("tree/a")).unwrap(), b"keep");
    assert_eq!(fs::read(root.path().join("own/data")).unwrap(), b"the function's own");
}

/// A destination that names the root itself (`/tmp`, `/tmp/.`) would make a directory bundle replace the
/// whole root, staged in its parent, and `discard` remove the root with everything in it.
#[test]
fn a_destination_that_is_the_root_itself_is_refused_and_discard_keeps_the_root() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("other"), b"not a bundle's").unwrap();
    let dot = root.path().join(".");
    for destination in [root.path(), dot.as_path()] {
        let keyring = kms_envelope::RawAesKeyring::new("ns", "k", &[7; 32]).unwrap();
        let cold = ColdStart::new(keyring)
            .root(root.path())
            .bundle(BundleSpec::directory("missing.esdk", destination).unwrap());
        let err = run(&cold).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{}: {err:?}", destination.display());
        let _ = cold.discard();
        assert_eq!(fs::read(root.path().join("other")).unwrap(), b"not a bundle's", "{}", destination.display());
    }
}

/// A raw-key cold start into `root` with bundles from `package` (no KMS needed), and a message for it.
fn raw_cold_start(root: &Path, package: &Path) -> ColdStart {
    ColdStart::new(raw_keyring()).root(root).task_root(package)
}

fn raw_keyring() -> kms_envelope::RawAesKeyring {
    kms_envelope::RawAesKeyring::new("ns", "k", &[7; 32]).unwrap()
}

/// A root that is a link, or a link or a non-directory on the way, is refused before anything is written
/// through it; the link at the destination itself is refused too.
#[test]
fn a_planted_link_at_the_root_on_the_way_or_at_the_destination_is_never_followed() {
    let work = tempfile::tempdir().unwrap();
    let (package, outside, real) = (work.path().join("package"), work.path().join("outside"), work.path().join("real"));
    for dir in [&package, &outside, &real] {
        fs::create_dir(dir).unwrap();
    }
    fs::write(package.join("a.esdk"), encrypt(&raw_keyring(), &EncryptOptions::new(), b"secret")).unwrap();
    symlink(&outside, work.path().join("linked-root")).unwrap();
    symlink(&outside, real.join("linked-dir")).unwrap();
    symlink(outside.join("victim"), real.join("linked-file")).unwrap();

    let linked_root = work.path().join("linked-root");
    for (root, destination) in [
        (linked_root.as_path(), "a.bin"),
        (real.as_path(), "linked-dir/a.bin"),
        (real.as_path(), "linked-dir/deeper/a.bin"),
        (real.as_path(), "linked-file"),
    ] {
        let cold = raw_cold_start(root, &package).bundle(BundleSpec::file("a.esdk", destination).unwrap());
        let err = run(&cold).unwrap_err();
        assert!(
            matches!(err, Error::UnsafeDestination { .. }) && err.to_string().contains("symbolic link"),
            "{destination} under {}: {err:?}",
            root.display()
        );
        assert_eq!(tree(&outside), Vec::<String>::new(), "written through a link: {destination}");
    }
}

/// On a shared host (or EFS), a directory another user owns or can write into is one they can swap for a
/// link mid-write: refused, naming it. The tests run as root, which can give a directory away.
#[test]
fn a_directory_writable_by_others_or_owned_by_another_user_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let (package, root) = (work.path().join("package"), work.path().join("root"));
    fs::create_dir(&package).unwrap();
    fs::create_dir_all(root.join("shared")).unwrap();
    fs::write(package.join("a.esdk"), encrypt(&raw_keyring(), &EncryptOptions::new(), b"secret")).unwrap();
    let attempt = |destination: &str| {
        run(&raw_cold_start(&root, &package).bundle(BundleSpec::file("a.esdk", destination).unwrap()))
    };

    for mode in [0o777, 0o775, 0o757] {
        fs::set_permissions(root.join("shared"), fs::Permissions::from_mode(mode)).unwrap();
        let err = attempt("shared/a.bin").unwrap_err();
        assert!(
            matches!(err, Error::UnsafeDestination { ref path, .. } if path.ends_with("shared")),
            "mode {mode:o}: {err:?}"
        );
        assert!(err.to_string().contains("writable by group or others"), "{err}");
    }
    fs::set_permissions(root.join("shared"), fs::Permissions::from_mode(0o755)).unwrap();
    attempt("shared/a.bin").unwrap();

    // A world-writable root without the sticky bit, too.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    assert!(matches!(attempt("b.bin").unwrap_err(), Error::UnsafeDestination { .. }));
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();

    if rustix::process::geteuid().is_root() {
        fs::create_dir(root.join("theirs")).unwrap();
        std::os::unix::fs::chown(root.join("theirs"), Some(54321), None).unwrap();
        let err = attempt("theirs/a.bin").unwrap_err();
        assert!(err.to_string().contains("owned by uid 54321"), "{err}");
        assert_eq!(tree(&root.join("theirs")), Vec::<String>::new());
    }
}

/// `discard` removes what the run landed, and nothing else: not a FIFO planted at a destination (the
/// cause of the failure here), not a file that took a landed one's name since.
#[test]
fn discard_removes_only_what_the_run_landed() {
    let work = tempfile::tempdir().unwrap();
    let (package, root) = (work.path().join("package"), work.path().join("root"));
    fs::create_dir(&package).unwrap();
    fs::create_dir(&root).unwrap();
    fs::write(package.join("a.esdk"), encrypt(&raw_keyring(), &EncryptOptions::new(), b"secret")).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, root.join("fifo.bin"), rustix::fs::FileType::Fifo, rustix::fs::Mode::RUSR, 0)
        .unwrap();
    let cold = raw_cold_start(&root, &package)
        .bundle(BundleSpec::file("a.esdk", "landed.bin").unwrap())
        .bundle(BundleSpec::file("a.esdk", "replaced.bin").unwrap())
        .bundle(BundleSpec::file("a.esdk", "fifo.bin").unwrap());
    run(&cold).unwrap_err();
    assert_eq!(fs::read(root.join("landed.bin")).unwrap(), b"secret");
    fs::rename(root.join("replaced.bin"), work.path().join("moved-away")).unwrap();
    fs::write(root.join("replaced.bin"), b"not the run's").unwrap();

    cold.discard().unwrap();
    assert_eq!(tree(&root), ["fifo.bin", "replaced.bin"]);
    assert!(fs::symlink_metadata(root.join("fifo.bin")).unwrap().file_type().is_fifo());
    assert_eq!(fs::read(root.join("replaced.bin")).unwrap(), b"not the run's");
}

/// A bundle that fails to verify never gets a marker, even when it carries the message id of the one that
/// landed before it: the marker's identity is taken from the verified header, after the last frame.
#[test]
fn a_tampered_message_with_a_landed_ones_id_records_no_marker() {
    let work = tempfile::tempdir().unwrap();
    let (package, root) = (work.path().join("package"), work.path().join("root"));
    fs::create_dir(&package).unwrap();
    let message = encrypt(&raw_keyring(), &EncryptOptions::new().frame_length(4096), &plaintext(20_000, 5));
    fs::write(package.join("a.esdk"), &message).unwrap();
    let marker = root.join(".a.bin.kms-envelope");
    let cold = || raw_cold_start(&root, &package).bundle(BundleSpec::file("a.esdk", "a.bin").unwrap());
    run(&cold()).unwrap();
    assert!(marker.is_file());

    // Same header (so the same message id), the final frame's tag flipped; the destination edited, so
    // that the old marker no longer vouches for it.
    fs::write(package.join("a.esdk"), flip_from_end(&message, 5)).unwrap();
    fs::write(root.join("a.bin"), b"edited").unwrap();
    for _ in 0..2 {
        let err = run(&cold()).unwrap_err();
        assert!(matches!(err, Error::FrameAuthentication { .. }), "{err:?}");
        assert!(!marker.exists(), "a marker for a message that failed to verify");
    }
}

/// An S3 object served without an ETag has nothing that tells one version from the next: it is decrypted
/// again on every start, and no marker is written for it.
#[test]
fn an_s3_object_without_an_etag_is_never_reused() {
    let Some(env) = Env::new() else { return };
    let setup = env.keyring();
    let package = env.dir("package");
    let root = env.dir("tmp");
    let s3 =
        fake_s3::TricklingS3::without_etag(vec![("plain.esdk", encrypt(&*setup, &options(), &plaintext(30_000, 4)))]);
    for round in 0..2 {
        let config = aws_sdk_s3::config::Builder::from(&env.moto.config()).endpoint_url(&s3.url).force_path_style(true);
        let keyring = env.keyring();
        let cold = cold_start(&keyring, &root, &package)
            .s3_client(aws_sdk_s3::Client::from_conf(config.build()))
            .bundle(BundleSpec::file("s3://any-bucket/plain.esdk", "plain.bin").unwrap());
        let landed = run(&cold).unwrap();
        assert!(!landed[0].reused, "round {round}: reused without an ETag");
        assert_eq!(keyring.calls(), 1, "round {round}");
        assert_eq!(fs::read(root.join("plain.bin")).unwrap(), plaintext(30_000, 4));
        assert!(!root.join(".plain.bin.kms-envelope").exists(), "round {round}: a marker without an ETag");
    }
}

/// A tar stream with one entry named `name`, written raw so the tar crate's own checks don't stop it.
fn tar_with_entry(name: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(5);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, &b"pwned"[..]).unwrap();
    builder.into_inner().unwrap()
}

#[test]
fn an_archive_entry_with_dotdot_is_refused_and_leaves_nothing() {
    let Some(env) = Env::new() else { return };
    let setup = env.keyring();
    let package = env.dir("package");
    let root = env.dir("tmp");
    for (i, name) in [&b"../escape"[..], b"a/../../escape", b"/abs-escape"].into_iter().enumerate() {
        fs::write(package.join(format!("evil{i}.esdk")), encrypt(&*setup, &options(), &tar_with_entry(name))).unwrap();
        let keyring = env.keyring();
        let spec = BundleSpec::directory(&format!("evil{i}.esdk"), "sub/tree").unwrap();
        let err = run(&cold_start(&keyring, &root, &package).bundle(spec)).unwrap_err();
        assert!(matches!(err, Error::Bundle(ref m) if m.contains("leaves the destination")), "{err:?}");
        assert_nothing_left(&root, "sub/tree");
    }
    assert!(!env.work.path().join("escape").exists() && !root.join("escape").exists());
    assert!(!Path::new("/abs-escape").exists());
}

/// A 1 MiB tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: PathBuf) -> Option<Self> {
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"]).arg(&at).output();
        match out {
            Ok(out) if out.status.success() => Some(Self(at)),
            Ok(out) => common::missing(&format!(
                "a 1 MiB tmpfs for the space check (mount: {})",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => common::missing(&format!("a 1 MiB tmpfs for the space check (mount: {e})")),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn not_enough_space_fails_before_kms_and_names_the_setting() {
    let Some(env) = Env::new() else { return };
    let setup = env.keyring();
    let package = env.dir("package");
    fs::write(package.join("big.esdk"), encrypt(&*setup, &options(), &plaintext(2 << 20, 12))).unwrap();
    fs::write(package.join("small.esdk"), encrypt(&*setup, &options(), &plaintext(100_000, 13))).unwrap();
    let s3_big = env.put("big.esdk", encrypt(&*setup, &options(), &plaintext(2 << 20, 12)));
    let Some(tmpfs) = Tmpfs::mount(env.dir("tiny")) else { return };
    let root = tmpfs.0.clone();

    for spec in [BundleSpec::file("big.esdk", "big.bin").unwrap(), BundleSpec::directory(&s3_big, "big").unwrap()] {
        let keyring = env.keyring();
        let cold = cold_start(&keyring, &root, &package).s3_client(env.s3()).bundle(spec.clone());
        let err = run(&cold).unwrap_err();
        assert!(matches!(err, Error::Io(ref e) if e.kind() == std::io::ErrorKind::StorageFull), "{spec:?}: {err:?}");
        assert!(err.to_string().contains("ephemeral storage"), "{err}");
        assert_eq!(keyring.calls(), 0, "refused before KMS");
        assert_eq!(tree(&root), Vec::<String>::new());
    }
    // What fits still lands there.
    let keyring = env.keyring();
    run(&cold_start(&keyring, &root, &package).bundle(BundleSpec::file("small.esdk", "small.bin").unwrap())).unwrap();
    assert_eq!(fs::read(root.join("small.bin")).unwrap(), plaintext(100_000, 13));
}

#[test]
fn overlapping_destinations_are_a_configuration_error() {
    let root = tempfile::tempdir().unwrap();
    for (a, b) in [("x", "x"), ("certs", "certs/a.pem"), ("/tmp/never/a", "a")] {
        let keyring = kms_envelope::RawAesKeyring::new("ns", "k", &[7; 32]).unwrap();
        let cold = ColdStart::new(keyring)
            .root(root.path())
            .bundle(BundleSpec::directory("a.esdk", a).unwrap())
            .bundle(BundleSpec::file("b.esdk", b).unwrap());
        let err = run(&cold).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{a} {b}: {err:?}");
    }
}

// ------------------------------------------------------------------------------------ observability

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn logs_at_trace_level_hold_spans_and_figures_but_no_secret() {
    // In a process of its own: tracing caches each call site's interest process-wide, so another test's
    // threads hitting "bundle ready" first can keep it from this test's (scoped) subscriber.
    common::in_own_process("lambda::logs_at_trace_level_hold_spans_and_figures_but_no_secret", logs_at_trace_level);
}

fn logs_at_trace_level() {
    use base64::Engine as _;

    let Some(env) = Env::new() else { return };
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // Not global: other tests run concurrently in this process and would log into it, so a line this test
    // looks for could come from one of them. The cold start logs from this thread and from its runtime's
    // worker and blocking-pool threads, which all get this subscriber as their default when they start
    // (and only those threads: the runtime is this test's own).
    let dispatch = tracing::Dispatch::new(subscriber);
    let _this_thread = tracing::dispatcher::set_default(&dispatch);

    let setup = env.keyring();
    let package = env.dir("package");
    let tree_src = env.dir("tree");
    fs::write(tree_src.join("key.pem"), b"PRIVATE-KEY-tree-2f9c1d").unwrap();
    let file_secret = b"PLAINTEXT-file-8a61c3e0".repeat(100);
    fs::write(package.join("file.esdk"), encrypt(&*setup, &options(), &file_secret)).unwrap();
    let s3_tree = env.put("tree.esdk", encrypt_tree(&*setup, &tree_src));
    let secrets = env.put("secrets.esdk", encrypt(&*setup, &options(), br#"{"DB": "SECRET-json-5be04a"}"#));
    let root = env.dir("tmp");
    let keyring = env.keyring();
    let cold = cold_start(&keyring, &root, &package)
        .s3_client(env.s3())
        .bundle(BundleSpec::file("file.esdk", "file.bin").unwrap())
        .bundle(BundleSpec::directory(&s3_tree, "tree").unwrap());
    let for_threads = dispatch.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // The guard would restore the previous default when dropped; these threads live and die with
            // the runtime, so it stays set for their whole life.
            std::mem::forget(tracing::dispatcher::set_default(&for_threads));
        })
        .build()
        .unwrap();
    rt.block_on(cold.run()).unwrap();
    let loaded = rt.block_on(cold.load_secrets(&Source::parse(&secrets).unwrap())).unwrap();
    assert_eq!(loaded.get("DB"), Some("SECRET-json-5be04a"));
    drop(rt);

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    let lines: Vec<&str> = logs.lines().collect();
    let logged = |parts: &[&str]| lines.iter().any(|line| parts.iter().all(|part| line.contains(part)));
    // One line per bundle, in its span (source and destination), with its figures.
    let file_dest = format!("destination={}", root.join("file.bin").display());
    let tree_dest = format!("destination={}", root.join("tree").display());
    for (source, destination, size) in
        [("source=file.esdk", &file_dest, "bytes=2300"), (s3_tree.as_str(), &tree_dest, "bytes=")]
    {
        let wanted = [source, destination.as_str(), "bundle ready", size, "unwrap_ms=", "total_ms=", "reused=false"];
        assert!(logged(&wanted), "no line with all of {wanted:?}:\n{logs}");
    }
    assert!(logged(&["secrets ready", "secrets=1"]), "secrets line missing:\n{logs}");
    for secret in ["PLAINTEXT-file-8a61c3e0", "PRIVATE-KEY-tree-2f9c1d", "SECRET-json-5be04a"] {
        assert!(!logs.contains(secret), "{secret} was logged");
    }
    let data_keys = keyring.data_keys.lock().unwrap().clone();
    assert_eq!(data_keys.len(), 3);
    for key in data_keys {
        let forms = [common::hex(&key), base64::engine::general_purpose::STANDARD.encode(&key), format!("{key:?}")];
        for form in forms {
            assert!(!logs.contains(&form), "a data key was logged ({form})");
        }
    }
}

// ------------------------------------------------------------------------- Runtime Interface Emulator

#[test]
fn the_example_runs_under_the_runtime_interface_emulator() {
    let Some(env) = Env::new() else { return };
    let Some(example) = example() else { return };
    let Some(rie) = rie::emulator() else { return };
    let setup = env.keyring();
    let package = env.dir("package");
    let tree_src = env.dir("tree");
    sample_tree(&tree_src);
    let config = plaintext(123_456, 14);
    fs::write(package.join("config.esdk"), encrypt(&*setup, &options(), &config)).unwrap();
    let s3_tree = env.put("certs.esdk", encrypt_tree(&*setup, &tree_src));
    let secrets = br#"{"DB_PASSWORD": "rie-secret-value-77f1"}"#;
    fs::write(package.join("secrets.esdk"), encrypt(&*setup, &options(), secrets)).unwrap();
    let root = env.dir("tmp");

    let log = env.work.path().join("rie.log");
    let rie = Rie::start(&rie, &example, &log, |command| {
        env.child_env(command);
        command
            .env("KMS_ENVELOPE_BUNDLES", format!("config.esdk=app/config.json,{s3_tree}=certs/"))
            .env("KMS_ENVELOPE_SECRETS", "secrets.esdk")
            .env("KMS_ENVELOPE_ROOT", &root)
            .env("LAMBDA_TASK_ROOT", &package)
            .env("RUST_LOG", "info");
    });
    let invoke = |event: &str| {
        let (status, body) = rie.invoke(event);
        let log = rie.log_text();
        assert_eq!(status, 200, "{event}: {body}\n{log}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_else(|e| panic!("{event}: {e}: {body}\n{log}"))
    };

    let summary = invoke("{}");
    let bundles = summary["bundles"].as_array().unwrap_or_else(|| panic!("{summary}"));
    assert_eq!(bundles.len(), 2, "{summary}");
    assert_eq!(bundles[0]["bytes"], 123_456);
    assert_eq!(bundles[0]["reused"], false);
    assert_eq!(summary["secrets"], serde_json::json!(["DB_PASSWORD"]));

    let file = invoke(r#"{"path": "app/config.json"}"#);
    assert_eq!(file["bytes"], 123_456);
    let sha = |bytes: &[u8]| common::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes));
    assert_eq!(file["sha256"], sha(&config));
    let pem = invoke(r#"{"path": "certs/server.pem"}"#);
    assert_eq!(pem["sha256"], sha(&plaintext(100_000, 3)));
    let secret = invoke(r#"{"secret": "DB_PASSWORD"}"#);
    assert_eq!(secret["present"], true);
    assert_eq!(secret["sha256"], sha(b"rie-secret-value-77f1"));

    let log = fs::read_to_string(&rie.log).unwrap();
    assert!(log.contains("bundle ready"), "{log}");
    assert!(!log.contains("rie-secret-value-77f1"), "a secret reached the function's log");
}
