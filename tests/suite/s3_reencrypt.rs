//! Re-encryption from S3 object to S3 object (`S3Object::reencrypt_from_blocking`), against S3 in moto:
//! every size, to another key and in place, a tampered source, and a writer that replaces the object while it
//! is re-encrypted in place. Without moto a test prints "SKIPPED: ..." (and fails under CI=true).
#![cfg(feature = "s3")]

use crate::fake_http;
use crate::support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture};
use kms_envelope::s3::{Listing, MIN_PART_SIZE, S3Object, TransferOptions};
use kms_envelope::{
    DecryptOptions, EncryptOptions, EncryptedDataKey, Error, Keyring, RawAesKeyring, ReencryptOptions, decrypt,
};
use support::Moto;

fn old_keyring() -> RawAesKeyring {
    RawAesKeyring::new("kms-envelope-s3", "key-2025", &[7; 32]).unwrap()
}

fn new_keyring() -> RawAesKeyring {
    RawAesKeyring::new("kms-envelope-s3", "key-2026", &[9; 32]).unwrap()
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i as u32).wrapping_mul(2654435761) >> 13) as u8).collect()
}

struct Env {
    moto: Moto,
    bucket: String,
    runtime: tokio::runtime::Runtime,
}

impl Env {
    fn new(test: &str) -> Option<Self> {
        let moto = Moto::get()?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let bucket = format!("reenc-{test}-{}-{unique}", std::process::id()).replace('_', "-");
        let env = Self { moto, bucket, runtime };
        env.runtime.block_on(env.client().create_bucket().bucket(&env.bucket).send()).expect("CreateBucket in moto");
        Some(env)
    }

    fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.moto.config()).force_path_style(true).build();
        aws_sdk_s3::Client::from_conf(config)
    }

    fn object(&self, key: &str) -> S3Object {
        S3Object::new(self.client(), &self.bucket, key)
    }

    fn put(&self, key: &str, body: Vec<u8>) {
        let put = self.client().put_object().bucket(&self.bucket).key(key).body(body.into()).send();
        self.runtime.block_on(put).expect("PutObject in moto");
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.get_in(&self.bucket, key)
    }

    fn get_in(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let got = self.runtime.block_on(self.client().get_object().bucket(bucket).key(key).send()).ok()?;
        Some(self.runtime.block_on(got.body.collect()).unwrap().into_bytes().to_vec())
    }

    /// Another bucket, created in moto.
    fn other_bucket(&self, suffix: &str) -> String {
        let bucket = format!("{}-{suffix}", self.bucket);
        self.runtime.block_on(self.client().create_bucket().bucket(&bucket).send()).expect("CreateBucket in moto");
        bucket
    }

    /// Whether `key` (of this bucket or `bucket`) holds `plaintext` under the new key, and the old key no
    /// longer opens it.
    fn assert_rotated(&self, bucket: &str, key: &str, plaintext: &[u8]) {
        let message = self.get_in(bucket, key).unwrap_or_else(|| panic!("no object {key:?} in {bucket}"));
        let opened = decrypt(&new_keyring(), &DecryptOptions::new(), &message);
        assert_eq!(&opened.unwrap_or_else(|e| panic!("{key:?}: {e}")).plaintext[..], plaintext, "{key:?}");
        assert!(decrypt(&old_keyring(), &DecryptOptions::new(), &message).is_err(), "{key:?}");
    }

    fn uploads_in_progress(&self) -> usize {
        let listed = self.runtime.block_on(self.client().list_multipart_uploads().bucket(&self.bucket).send());
        listed.expect("ListMultipartUploads").uploads().len()
    }

    /// Encrypts `plaintext` under the old key into `key` (parts of 5 MiB, the smallest).
    fn source(&self, key: &str, plaintext: &[u8]) {
        let transfer = TransferOptions::new().part_size(MIN_PART_SIZE);
        let handle = self.runtime.handle().clone();
        let options = EncryptOptions::new().frame_length(4096);
        self.object(key).encrypt_from_blocking(handle, &old_keyring(), &options, &transfer, plaintext).unwrap();
    }

    /// `kms-envelope reencrypt` from the old raw key to the new one, run in `work` (where the key files are
    /// written) against this moto; asserts the exit code, returns stdout and stderr.
    #[cfg(feature = "cli")]
    fn cli(&self, work: &std::path::Path, extra: &[&str], code: i32) -> (String, String) {
        std::fs::write(work.join("old.key"), [7u8; 32]).unwrap();
        std::fs::write(work.join("new.key"), [9u8; 32]).unwrap();
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("kms-envelope"));
        cmd.current_dir(work);
        cmd.env("AWS_ENDPOINT_URL_S3", &self.moto.endpoint).env("AWS_ACCESS_KEY_ID", "testing");
        cmd.env("AWS_SECRET_ACCESS_KEY", "testing").env("AWS_REGION", support::REGION);
        cmd.env("AWS_EC2_METADATA_DISABLED", "true").env_remove("AWS_PROFILE").env_remove("AWS_ENDPOINT_URL");
        cmd.args(["reencrypt", "--raw-key-file", "old.key", "--key-namespace", "kms-envelope-s3", "--key-name"]);
        cmd.args(["key-2025", "--new-raw-key-file", "new.key", "--new-key-namespace", "kms-envelope-s3"]);
        cmd.args(["--new-key-name", "key-2026"]).args(extra);
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }

    fn reencrypt(&self, from: &str, to: &str, target: &dyn Keyring) -> Result<kms_envelope::s3::Uploaded, Error> {
        self.reencrypt_with(self.client(), from, to, target)
    }

    /// [`reencrypt`](Self::reencrypt) through `client`.
    fn reencrypt_with(
        &self,
        client: aws_sdk_s3::Client,
        from: &str,
        to: &str,
        target: &dyn Keyring,
    ) -> Result<kms_envelope::s3::Uploaded, Error> {
        let transfer = TransferOptions::new().part_size(MIN_PART_SIZE);
        let handle = self.runtime.handle().clone();
        let options = ReencryptOptions::new();
        let source = S3Object::new(client.clone(), &self.bucket, from);
        S3Object::new(client, &self.bucket, to).reencrypt_from_blocking(
            handle,
            &source,
            &old_keyring(),
            target,
            &options,
            &transfer,
            Arc::new(AtomicBool::new(false)),
        )
    }
}

/// 0 B, 1 B, one part (a single PutObject) and many parts, to another key and in place: the new object
/// decrypts with the new key alone, and no upload is left open.
#[test]
fn objects_of_every_size_to_another_key_and_in_place() {
    let Some(env) = Env::new("sizes") else { return };
    for len in [0usize, 1, 100 << 10, 12 << 20] {
        let pt = plaintext(len);
        let (source, other) = (format!("src-{len}"), format!("dst-{len}"));
        env.source(&source, &pt);
        let uploaded = env.reencrypt(&source, &other, &new_keyring()).unwrap();
        assert_eq!(uploaded.parts > 0, len > MIN_PART_SIZE, "{len} bytes: {} parts", uploaded.parts);
        env.reencrypt(&source, &source, &new_keyring()).unwrap();
        for key in [&other, &source] {
            let message = env.get(key).unwrap();
            assert_eq!(&decrypt(&new_keyring(), &DecryptOptions::new(), &message).unwrap().plaintext[..], &pt[..]);
            assert!(decrypt(&old_keyring(), &DecryptOptions::new(), &message).is_err(), "{key}");
        }
    }
    assert_eq!(env.uploads_in_progress(), 0);
}

/// A tampered source (one bit in the middle of a 12 MiB message): no object at the destination, no upload
/// left open, and in place the object is as it was.
#[test]
fn a_tampered_source_leaves_no_object_and_no_upload() {
    let Some(env) = Env::new("tampered") else { return };
    env.source("src", &plaintext(12 << 20));
    let mut message = env.get("src").unwrap();
    let middle = message.len() / 2;
    message[middle] ^= 1;
    env.put("src", message.clone());
    let failed = env.reencrypt("src", "dst", &new_keyring());
    assert!(matches!(failed, Err(Error::FrameAuthentication { .. })), "{failed:?}");
    assert_eq!(env.get("dst"), None);
    assert!(env.reencrypt("src", "src", &new_keyring()).is_err());
    assert_eq!(env.get("src").unwrap(), message);
    assert_eq!(env.uploads_in_progress(), 0);
}

/// The target keyring, called after the source was read and before the upload, stands in for another
/// writer: it replaces the object (through a client of its own, on a thread of its own).
struct ReplacesTheObject {
    inner: RawAesKeyring,
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
}

impl Keyring for ReplacesTheObject {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let put = client.put_object().bucket(bucket).key(key).body(b"another writer".to_vec().into()).send();
            runtime.block_on(put).expect("PutObject in moto");
        })
        .join()
        .unwrap();
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

/// In place, the new object replaces the old one only if its ETag is still the one read: a writer who
/// replaced it meanwhile wins (moto honours If-Match on PutObject; on CompleteMultipartUpload it does not,
/// so this runs with a one-part message).
#[test]
fn in_place_a_writer_who_replaced_the_object_meanwhile_wins() {
    let Some(env) = Env::new("race") else { return };
    env.source("src", &plaintext(100 << 10));
    let target =
        ReplacesTheObject { inner: new_keyring(), client: env.client(), bucket: env.bucket.clone(), key: "src".into() };
    let failed = env.reencrypt("src", "src", &target);
    let text = failed.as_ref().map_err(ToString::to_string).unwrap_err();
    assert!(text.contains("changed while it was re-encrypted"), "{text}");
    assert_eq!(env.get("src").unwrap(), b"another writer");
}

/// `kms-envelope reencrypt` with `s3://` objects: in place (a retried run leaves the object alone), into
/// another object, and the mistakes refused (S3 to a file, OUTPUT naming INPUT).
#[cfg(feature = "cli")]
#[test]
fn the_cli_reencrypts_objects_in_place_and_into_others() {
    let Some(env) = Env::new("cli") else { return };
    let pt = plaintext(300 << 10);
    env.source("src", &pt);
    let work = tempfile::tempdir().unwrap();
    let run = |extra: &[&str], code: i32| env.cli(work.path(), extra, code).1;
    let (src, dst) = (format!("s3://{}/src", env.bucket), format!("s3://{}/dst", env.bucket));
    run(&[&src, &dst], 0);
    // README, S3: into another object, an existing one is replaced only with --force (it was, silently).
    let first = env.get("dst").unwrap();
    let stderr = run(&[&src, &dst], 4);
    assert_eq!(stderr, format!("kms-envelope: {dst}: already exists (use --force to replace it)\n"));
    assert_eq!(env.get("dst").unwrap(), first, "replaced without --force");
    run(&["--force", &src, &dst], 0);
    assert_ne!(env.get("dst").unwrap(), first, "--force did not replace it");
    run(&["--in-place", &src], 0);
    for key in ["src", "dst"] {
        let message = env.get(key).unwrap();
        assert_eq!(&decrypt(&new_keyring(), &DecryptOptions::new(), &message).unwrap().plaintext[..], &pt[..], "{key}");
    }
    let rotated = env.get("src").unwrap();
    let stderr = run(&["--in-place", &src], 0);
    assert!(stderr.contains("already under the new keys"), "{stderr}");
    assert_eq!(env.get("src").unwrap(), rotated, "a retried run changed the object");
    run(&[&src, "local.esdk"], 2);
    run(&[&src, &src], 2);
    assert!(!work.path().join("local.esdk").exists());
    assert_eq!(env.uploads_in_progress(), 0);
}

/// `--dry-run` refuses an S3 OUTPUT that exists as the run does (exit 4, without --force), where it used to
/// answer "would re-encrypt" and exit 0: into one object, and under a prefix on the line of the source whose
/// target exists. With --force, or in place, it describes the change. Nothing is written.
#[cfg(feature = "cli")]
#[test]
fn a_dry_run_refuses_an_existing_s3_output_as_the_run_does() {
    let Some(env) = Env::new("dry-out") else { return };
    for key in ["src/a", "src/b"] {
        env.source(key, b"dry");
    }
    env.put("dst", b"kept".to_vec());
    env.put("out/b", b"kept".to_vec());
    let work = tempfile::tempdir().unwrap();
    let url = |key: &str| format!("s3://{}/{key}", env.bucket);
    let would = "would re-encrypt (from its unauthenticated header)";

    let (out, stderr) = env.cli(work.path(), &["--dry-run", &url("src/a"), &url("dst")], 4);
    assert_eq!(stderr, format!("kms-envelope: {}: already exists (use --force to replace it)\n", url("dst")));
    assert!(!out.contains(would), "{out}");
    let (out, _) = env.cli(work.path(), &["--dry-run", "--force", &url("src/a"), &url("dst")], 0);
    assert!(out.contains(would), "{out}");
    env.cli(work.path(), &["--dry-run", &url("src/a"), &url("absent")], 0);
    env.cli(work.path(), &["--dry-run", "--in-place", &url("src/a")], 0);
    env.cli(work.path(), &["--dry-run", &url("src/a")], 0);

    let (out, stderr) = env.cli(work.path(), &["--dry-run", "-r", &url("src/"), &url("out/")], 4);
    assert!(stderr.contains(&format!("{}: already exists (use --force to replace it)", url("out/b"))), "{stderr}");
    assert_eq!(out.matches(would).count(), 1, "{out}");
    assert!(out.contains(&url("src/a")) && !out.contains(&url("src/b")), "{out}");
    // With --force, without OUTPUT, in place: nothing is refused.
    let (src, out) = (url("src/"), url("out/"));
    let lines: [&[&str]; 3] =
        [&["--force", src.as_str(), out.as_str()], &[src.as_str()], &["--in-place", src.as_str()]];
    for line in lines {
        let (out, _) = env.cli(work.path(), &[&["--dry-run", "-r"][..], line].concat(), 0);
        assert_eq!(out.matches(would).count(), 2, "{line:?}: {out}");
    }

    assert_eq!(
        [env.get("dst"), env.get("out/b"), env.get("out/a")],
        [Some(b"kept".to_vec()), Some(b"kept".to_vec()), None]
    );
}

/// What an object carries besides its bytes survives its re-encryption, in place and into another object,
/// as one PutObject and as a multipart upload: content type, user metadata, storage class and tags (with
/// characters a Tagging header must encode).
#[test]
fn content_type_metadata_storage_class_and_tags_are_carried_over() {
    use aws_sdk_s3::types::{StorageClass, Tag, Tagging};
    let Some(env) = Env::new("carried") else { return };
    for (name, len) in [("small", 100usize << 10), ("large", 12 << 20)] {
        env.source(name, &plaintext(len));
        let message = env.get(name).unwrap();
        let put = env
            .client()
            .put_object()
            .bucket(&env.bucket)
            .key(name)
            .body(message.into())
            .content_type("application/x-esdk")
            .metadata("owner", "team-a")
            .storage_class(StorageClass::StandardIa);
        env.runtime.block_on(put.send()).unwrap();
        let tags = Tagging::builder()
            .tag_set(Tag::builder().key("project").value("a b+c=d/e:f@g").build().unwrap())
            .tag_set(Tag::builder().key("tier").value("gold").build().unwrap())
            .build()
            .unwrap();
        let tagged = env.client().put_object_tagging().bucket(&env.bucket).key(name).tagging(tags).send();
        env.runtime.block_on(tagged).unwrap();
        let other = format!("{name}-copy");
        env.reencrypt(name, &other, &new_keyring()).unwrap();
        env.reencrypt(name, name, &new_keyring()).unwrap();
        for key in [name, other.as_str()] {
            let head = env.runtime.block_on(env.client().head_object().bucket(&env.bucket).key(key).send()).unwrap();
            assert_eq!(head.content_type(), Some("application/x-esdk"), "{key}");
            assert_eq!(head.metadata().and_then(|m| m.get("owner")).map(String::as_str), Some("team-a"), "{key}");
            assert_eq!(head.storage_class(), Some(&StorageClass::StandardIa), "{key}");
            let tags = env.runtime.block_on(env.client().get_object_tagging().bucket(&env.bucket).key(key).send());
            let mut tags: Vec<(String, String)> =
                tags.unwrap().tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
            tags.sort();
            assert_eq!(tags, [("project".into(), "a b+c=d/e:f@g".into()), ("tier".into(), "gold".into())], "{key}");
            let message = env.get(key).unwrap();
            assert_eq!(
                &decrypt(&new_keyring(), &DecryptOptions::new(), &message).unwrap().plaintext[..],
                &plaintext(len)[..]
            );
        }
    }
}

/// A listing follows continuation tokens: 1,005 objects (moto, as S3, answers at most 1,000 keys a page) come
/// back in two pages or more, every key once, in key order; a key that merely starts like the prefix
/// (`many-beside`) is not among them.
#[test]
fn a_listing_follows_continuation_tokens_past_1000_keys() {
    let Some(env) = Env::new("many") else { return };
    let keys: Vec<String> = (0..1005).map(|i| format!("many/{i:04}")).collect();
    env.runtime.block_on(async {
        let mut puts = tokio::task::JoinSet::new();
        for chunk in keys.chunks(64) {
            let (client, bucket, chunk) = (env.client(), env.bucket.clone(), chunk.to_vec());
            puts.spawn(async move {
                for key in chunk {
                    client.put_object().bucket(&bucket).key(key).body(b"x".to_vec().into()).send().await.unwrap();
                }
            });
        }
        while let Some(put) = puts.join_next().await {
            put.unwrap();
        }
    });
    env.put("many-beside", Vec::new());
    let mut listing = Listing::new(env.client(), &env.bucket, "many/");
    let (mut pages, mut listed) = (0, Vec::new());
    while let Some(page) = env.runtime.block_on(listing.next_page()).unwrap() {
        pages += 1;
        listed.extend(page.into_iter().map(|object| (object.key, object.size)));
    }
    assert!(pages >= 2, "{pages} pages");
    let expected: Vec<(String, Option<u64>)> = keys.into_iter().map(|key| (key, Some(1))).collect();
    assert_eq!(listed, expected);

    // The CLI meets every one of them (none is a message, so each fails on its own line).
    #[cfg(feature = "cli")]
    {
        let work = tempfile::tempdir().unwrap();
        let to = format!("s3://{}-none/", env.bucket);
        let (_, stderr) = env.cli(work.path(), &["-r", &format!("s3://{}/many/", env.bucket), &to], 1);
        assert!(stderr.contains("1005 of 1005 objects failed"), "{}", &stderr[stderr.len().saturating_sub(500)..]);
    }
}

/// `reencrypt -r` over a prefix: into another bucket's prefix with the same relative keys (spaces, `+`,
/// `%` and non-ASCII characters included), a folder marker skipped, an object that is no message failing
/// on its own line while the others are done (exit 1, a count at the end), and keys that merely start
/// like the prefix left alone; `--dry-run` lists without writing; then in place, and a retried run that
/// leaves every object as it is.
#[cfg(feature = "cli")]
#[test]
fn the_cli_reencrypts_a_prefix_into_another_and_in_place() {
    let Some(env) = Env::new("prefix") else { return };
    let work = tempfile::tempdir().unwrap();
    let odd = "src/with space+plus%25percent/\u{e9}t\u{e9} \u{6771}\u{4eac}.bin";
    let sources = [("src/a", plaintext(1000)), ("src/sub/b", plaintext(70 << 10)), (odd, plaintext(3))];
    for (key, pt) in &sources {
        env.source(key, pt);
    }
    env.put("src/dir/", Vec::new());
    env.put("src/junk", b"not a message".to_vec());
    env.source("srcx", b"beside");
    env.source("src-other/x", b"beside");
    let beside = [env.get("srcx").unwrap(), env.get("src-other/x").unwrap()];
    let target = env.other_bucket("dst");
    let (from, to) = (format!("s3://{}/src/", env.bucket), format!("s3://{target}/dst/"));

    let (out, stderr) = env.cli(work.path(), &["--dry-run", "-r", &from], 1);
    assert_eq!(
        out.lines().filter(|line| line.contains("would re-encrypt (from its unauthenticated header)")).count(),
        3,
        "{out}"
    );
    assert!(stderr.contains("src/junk") && stderr.contains("src/dir/: a folder marker"), "{stderr}");

    let (_, stderr) = env.cli(work.path(), &["-r", &from, &to], 1);
    assert!(
        stderr.contains(
            "1 of 4 objects failed (3 re-encrypted, 0 already under the new keys, 1 failed, 1 folder marker skipped)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("src/sub/b: re-encrypted into s3://{target}/dst/sub/b")), "{stderr}");
    for (key, pt) in &sources {
        env.assert_rotated(&target, &key.replacen("src/", "dst/", 1), pt);
    }
    // README, S3: a target object that exists is replaced only with --force; it counts as failed.
    let written: Vec<_> =
        sources.iter().map(|(key, _)| env.get_in(&target, &key.replacen("src/", "dst/", 1))).collect();
    let (_, stderr) = env.cli(work.path(), &["-r", &from, &to], 4);
    assert!(stderr.contains(&format!("s3://{target}/dst/a: already exists (use --force to replace it)")), "{stderr}");
    assert!(stderr.contains("4 of 4 objects failed (0 re-encrypted"), "{stderr}");
    let again: Vec<_> = sources.iter().map(|(key, _)| env.get_in(&target, &key.replacen("src/", "dst/", 1))).collect();
    assert_eq!(again, written, "replaced without --force");
    assert_eq!(env.get_in(&target, "dst/junk"), None);
    assert_eq!(env.get_in(&target, "dst/dir/"), None);

    env.runtime.block_on(env.client().delete_object().bucket(&env.bucket).key("src/junk").send()).unwrap();
    let (_, stderr) = env.cli(work.path(), &["-r", "--in-place", &from], 0);
    assert!(stderr.contains("3 re-encrypted, 0 already under the new keys, 0 failed"), "{stderr}");
    let rotated: Vec<Vec<u8>> = sources.iter().map(|(key, _)| env.get(key).unwrap()).collect();
    for (key, pt) in &sources {
        env.assert_rotated(&env.bucket, key, pt);
    }
    assert_eq!([env.get("srcx").unwrap(), env.get("src-other/x").unwrap()], beside);

    let (_, stderr) = env.cli(work.path(), &["-r", "--in-place", &from], 0);
    assert_eq!(stderr.matches("already under the new keys (authenticated in full)").count(), 3, "{stderr}");
    assert!(stderr.contains("0 re-encrypted, 3 already under the new keys"), "{stderr}");
    let again: Vec<Vec<u8>> = sources.iter().map(|(key, _)| env.get(key).unwrap()).collect();
    assert_eq!(again, rotated, "a retried run changed an object");
    assert_eq!(env.uploads_in_progress(), 0);
}

/// Keys are whoever writes the bucket's choice: one with an ANSI escape and a bell, one with a carriage
/// return that would overwrite its line with a forged one (no message: its failure line names it), and ones
/// with `..`, `//` and `.` after the prefix. Every key reaches stderr escaped; each object lands at exactly
/// the target prefix plus its relative key (S3 keys are strings, never paths), and nothing appears in the
/// working directory.
#[cfg(feature = "cli")]
#[test]
fn hostile_keys_are_printed_escaped_and_stay_under_the_target_prefix() {
    let Some(env) = Env::new("hostile") else { return };
    let work = tempfile::tempdir().unwrap();
    let messages = ["src/\u{1b}[31mred\u{7}", "src//../../etc/passwd", "src/../outside", "src/./x//y"];
    for key in messages {
        env.source(key, key.as_bytes());
    }
    env.put("src/evil\rkms-envelope: forged line", b"not a message".to_vec());
    let (from, to) = (format!("s3://{}/src/", env.bucket), format!("s3://{}/dst/", env.bucket));
    let (_, stderr) = env.cli(work.path(), &["-r", &from, &to], 1);
    assert!(!stderr.contains(['\u{1b}', '\u{7}', '\r']), "{stderr:?}");
    assert!(stderr.contains("src/\\u{1b}[31mred\\u{7}: re-encrypted into"), "{stderr}");
    assert!(stderr.contains("evil\\rkms-envelope: forged line"), "{stderr}");
    assert!(stderr.contains("1 of 5 objects failed"), "{stderr}");
    for key in messages {
        env.assert_rotated(&env.bucket, &key.replacen("src/", "dst/", 1), key.as_bytes());
    }
    let mut local: Vec<_> = std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    local.sort();
    assert_eq!(local, ["new.key", "old.key"]);

    let (out, _) = env.cli(work.path(), &["--dry-run", "-r", &from], 1);
    assert!(!out.contains('\u{1b}') && out.lines().count() == 4, "{out:?}");
}

/// CRC32C (Castagnoli, reflected, as S3 computes it), bit by bit: the reference the test holds S3's value
/// to, itself checked against the catalogue's check value for "123456789".
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// Records the body of every `CompleteMultipartUpload` a client sends: moto takes no part checksum from
/// it, S3 requires one for each part of an upload created with a checksum algorithm.
#[derive(Clone, Debug, Default)]
struct CompletionBodies(Arc<std::sync::Mutex<Vec<String>>>);

impl aws_sdk_s3::config::Intercept for CompletionBodies {
    fn name(&self) -> &'static str {
        "CompletionBodies"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let body = context.request().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
        if body.contains("<CompleteMultipartUpload") {
            self.0.lock().unwrap().push(body.into_owned());
        }
        Ok(())
    }
}

/// The additional checksum survives re-encryption, in place and into another object, as one PutObject and
/// as a multipart upload (parts of 5 MiB), for CRC32C and SHA256: HeadObject with checksums enabled shows
/// the source's algorithm, with a value of the new bytes (the whole message for one PutObject; for a
/// multipart upload, S3's composite: the checksum of the parts' checksums). moto computes a multipart
/// object's value itself, CRC32C as CRC32 unless its optional `crc32c` module is installed (it is not
/// here), so there only the algorithm is held to for CRC32C; and it takes no part checksums on completion,
/// which S3 requires, so the `CompleteMultipartUpload` sent is held to carrying each part's, of its bytes.
#[test]
fn the_checksum_algorithm_is_carried_over_with_a_value_of_the_new_bytes() {
    use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
    use base64::Engine as _;
    use sha2::Digest as _;
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let Some(env) = Env::new("checksum") else { return };
    let completions = CompletionBodies::default();
    let config = aws_sdk_s3::config::Builder::from(&env.moto.config()).force_path_style(true);
    let client = aws_sdk_s3::Client::from_conf(config.interceptor(completions.clone()).build());
    for algorithm in [ChecksumAlgorithm::Crc32C, ChecksumAlgorithm::Sha256] {
        let checksum = |bytes: &[u8]| match algorithm {
            ChecksumAlgorithm::Crc32C => crc32c(bytes).to_be_bytes().to_vec(),
            _ => sha2::Sha256::digest(bytes).to_vec(),
        };
        for (size, len) in [("small", 100usize << 10), ("large", 12 << 20)] {
            let name = format!("{}-{size}", algorithm.as_str());
            env.source(&name, &plaintext(len));
            let message = env.get(&name).unwrap();
            let put = env.client().put_object().bucket(&env.bucket).key(&name).body(message.into());
            env.runtime.block_on(put.checksum_algorithm(algorithm.clone()).send()).unwrap();
            let other = format!("{name}-copy");
            for key in [other.as_str(), name.as_str()] {
                let uploaded = env.reencrypt_with(client.clone(), &name, key, &new_keyring()).unwrap();
                assert_eq!(uploaded.parts > 0, len > MIN_PART_SIZE, "{key}");
                let head = env.client().head_object().bucket(&env.bucket).key(key).checksum_mode(ChecksumMode::Enabled);
                let head = env.runtime.block_on(head.send()).unwrap();
                let value = match algorithm {
                    ChecksumAlgorithm::Crc32C => head.checksum_crc32_c(),
                    _ => head.checksum_sha256(),
                };
                let value = value.unwrap_or_else(|| panic!("{key}: no {} checksum: {head:?}", algorithm.as_str()));
                let message = env.get(key).unwrap();
                env.assert_rotated(&env.bucket, key, &plaintext(len));
                let completion = completions.0.lock().unwrap().pop();
                assert_eq!(completion.is_some(), len > MIN_PART_SIZE, "{key}");
                if let Some(completion) = completion {
                    let element = format!("Checksum{}", algorithm.as_str());
                    for part in message.chunks(MIN_PART_SIZE) {
                        let expected = format!("<{element}>{}</{element}>", b64(&checksum(part)));
                        assert!(completion.contains(&expected), "{key}: no {expected} in {completion}");
                    }
                    let parts = message.len().div_ceil(MIN_PART_SIZE);
                    assert_eq!(completion.matches(&format!("<{element}>")).count(), parts, "{completion}");
                }
                if len <= MIN_PART_SIZE {
                    assert_eq!(value, b64(&checksum(&message)), "{key}");
                } else if algorithm == ChecksumAlgorithm::Sha256 {
                    let parts: Vec<u8> = message.chunks(MIN_PART_SIZE).flat_map(&checksum).collect();
                    let composite = b64(&checksum(&parts));
                    let parts = message.len().div_ceil(MIN_PART_SIZE);
                    assert!(value == composite || value == format!("{composite}-{parts}"), "{key}: {value}");
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------- a hostile S3

/// One page of a fake `ListObjectsV2` answer: `(key as sent, size)` pairs, whether it claims to be
/// truncated, and the next token it gives (if any).
struct FakePage {
    contents: Vec<(String, String)>,
    truncated: bool,
    next: Option<String>,
}

/// A fake S3 endpoint (no moto) whose `ListObjectsV2` answers are `page(token asked for)`, its keys said to
/// be URL-encoded; any other request gets a 404 `NoSuchKey` whose message holds a carriage return, an ESC
/// (as the character reference XML allows for neither) and a bidirectional override.
fn hostile_s3(page: impl Fn(Option<&str>) -> FakePage + Send + Sync + 'static) -> fake_http::FakeServer {
    fake_http::FakeServer::start(move |request| {
        let query = request.path.split_once('?').map_or("", |(_, q)| q);
        if request.method != "GET" || !query.contains("list-type=2") {
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message>gone&#13;\
                        kms-envelope: forged \u{202e}txt.exe</Message><RequestId>r\u{1b}[2J</RequestId></Error>";
            return Some(fake_http::response(404, &[("content-type", "application/xml")], body.as_bytes()));
        }
        let token = query.split('&').find_map(|pair| pair.strip_prefix("continuation-token="));
        let FakePage { contents, truncated, next } = page(token);
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Name>b</Name><Prefix>src/</Prefix><KeyCount>{}</KeyCount><MaxKeys>1000</MaxKeys>\
             <EncodingType>url</EncodingType><IsTruncated>{truncated}</IsTruncated>",
            contents.len()
        );
        if let Some(next) = next {
            xml.push_str(&format!("<NextContinuationToken>{next}</NextContinuationToken>"));
        }
        for (key, size) in contents {
            xml.push_str(&format!("<Contents><Key>{key}</Key><Size>{size}</Size></Contents>"));
        }
        xml.push_str("</ListBucketResult>");
        Some(fake_http::response(200, &[("content-type", "application/xml")], xml.as_bytes()))
    })
}

fn fake_client(server: &fake_http::FakeServer) -> aws_sdk_s3::Client {
    let config = support::sdk_config(&format!("http://{}", server.address));
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build())
}

/// The pages of `listing`, at most `most` of them, and how it ended (`Ok` if it ended by itself).
fn pages_of(mut listing: Listing, most: usize) -> (Vec<Vec<String>>, Result<bool, Error>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut pages = Vec::new();
    for _ in 0..most {
        match runtime.block_on(listing.next_page()) {
            Ok(Some(page)) => pages.push(page.into_iter().map(|object| object.key).collect()),
            Ok(None) => return (pages, Ok(true)),
            Err(error) => return (pages, Err(error)),
        }
    }
    (pages, Ok(false))
}

fn one_key(key: &str) -> Vec<(String, String)> {
    vec![(key.to_owned(), "5".to_owned())]
}

/// A listing whose continuation tokens cycle (A, then B, then A again) would never end, and would
/// visit the same objects again and again: it is an error once a token comes back, not only when one
/// repeats at once.
#[test]
fn attack_a_listing_whose_tokens_cycle_ends_in_an_error() {
    let server = hostile_s3(|token| {
        let next = match token {
            None | Some("B") => "A",
            _ => "B",
        };
        FakePage {
            contents: one_key(&format!("src/{}", token.unwrap_or("first"))),
            truncated: true,
            next: Some(next.into()),
        }
    });
    let (pages, ended) = pages_of(Listing::new(fake_client(&server), "b", "src/"), 10);
    let error = ended.expect_err("a cycle of tokens was followed for 10 pages");
    assert!(pages.len() <= 3, "{pages:?}");
    assert!(error.to_string().contains("continuation token"), "{error}");
}

/// A page that says it is truncated but gives no token to go on with: the rest of the prefix cannot be
/// listed, and taking it for the end would report a rotation complete that skipped objects.
#[test]
fn attack_a_listing_truncated_without_a_token_is_an_error() {
    let server = hostile_s3(|_| FakePage { contents: one_key("src/a"), truncated: true, next: None });
    let (pages, ended) = pages_of(Listing::new(fake_client(&server), "b", "src/"), 10);
    let error = ended.expect_err("a truncated listing was taken as complete");
    assert!(pages.is_empty() || pages == [vec!["src/a".to_owned()]], "{pages:?}");
    assert!(error.to_string().contains("truncated"), "{error}");
}

/// A token given on a page that says it is not truncated is the end (S3 gives none then; one that does
/// is not followed).
#[test]
fn attack_a_token_on_a_last_page_is_not_followed() {
    let server = hostile_s3(|token| FakePage {
        contents: one_key(&format!("src/{}", token.unwrap_or("first"))),
        truncated: false,
        next: Some("more".into()),
    });
    let (pages, ended) = pages_of(Listing::new(fake_client(&server), "b", "src/"), 10);
    assert!(ended.unwrap(), "the listing did not end");
    assert_eq!(pages, [vec!["src/first".to_owned()]]);
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());
}

/// Keys that are not valid URL encoding (a `%` without two hex digits, bytes that are not UTF-8) are a
/// typed error that shows nothing unescaped; keys with control characters, NUL, `..` and a bidirectional
/// override, and a 64 KiB key, decode as given; a negative size is no size (so an "empty" key ending in
/// `/` with it is no folder marker), and one past what S3 can hold fails the page cleanly.
#[test]
fn attack_listed_keys_decode_or_fail_cleanly() {
    let long_key = format!("src/{}", "k".repeat(64 << 10));
    let sent = ["src/%1B%5B31mred%07%0D%00", "src/..%2F..%2Fetc%2Fpasswd", "src/%E2%80%AEtxt.exe", &long_key, "src/d/"];
    let contents: Vec<(String, String)> =
        sent.iter().map(|key| (key.to_string(), if key.ends_with('/') { "-1" } else { "5" }.to_string())).collect();
    let server = hostile_s3(move |_| FakePage { contents: contents.clone(), truncated: false, next: None });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut listing = Listing::new(fake_client(&server), "b", "src/");
    let page = runtime.block_on(listing.next_page()).unwrap().unwrap();
    let keys: Vec<&str> = page.iter().map(|object| object.key.as_str()).collect();
    assert_eq!(
        keys,
        ["src/\u{1b}[31mred\u{7}\r\0", "src/../../etc/passwd", "src/\u{202e}txt.exe", &long_key, "src/d/"]
    );
    assert_eq!(page[4].size, None);
    assert!(!page[4].is_folder_marker());
    assert_eq!(runtime.block_on(listing.next_page()).unwrap(), None);

    let server = hostile_s3(|_| FakePage {
        contents: vec![("src/a".into(), "99999999999999999999999".into())],
        truncated: false,
        next: None,
    });
    let (_, ended) = pages_of(Listing::new(fake_client(&server), "b", "src/"), 10);
    let error = ended.expect_err("a size past 2^63 was taken").to_string();
    assert!(error.contains("ListObjectsV2 s3://b/src/"), "{error}");

    for bad in ["src/%", "src/%4", "src/%zz%1B", "src/%FF%1B[2J", "src/%C3"] {
        let server = hostile_s3(move |_| FakePage { contents: one_key(bad), truncated: false, next: None });
        let (_, ended) = pages_of(Listing::new(fake_client(&server), "b", "src/"), 10);
        let error = ended.expect_err(bad).to_string();
        assert!(!error.contains(['\u{1b}', '\r', '\0']), "{error:?}");
        assert!(error.contains("ListObjectsV2 s3://b/src/"), "{error}");
    }
}

/// `kms-envelope reencrypt` from the old raw key to the new one against the fake endpoint `server`, run in
/// `work`: its exit code and stderr.
#[cfg(feature = "cli")]
fn cli_against(server: &fake_http::FakeServer, work: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    std::fs::write(work.join("old.key"), [7u8; 32]).unwrap();
    std::fs::write(work.join("new.key"), [9u8; 32]).unwrap();
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("kms-envelope"));
    cmd.current_dir(work).env("AWS_ENDPOINT_URL_S3", format!("http://{}", server.address));
    cmd.env("AWS_ACCESS_KEY_ID", "testing").env("AWS_SECRET_ACCESS_KEY", "testing");
    cmd.env("AWS_REGION", support::REGION).env("AWS_EC2_METADATA_DISABLED", "true");
    cmd.env("AWS_MAX_ATTEMPTS", "1").env_remove("AWS_PROFILE").env_remove("AWS_ENDPOINT_URL");
    cmd.args(["reencrypt", "--raw-key-file", "old.key", "--key-namespace", "kms-envelope-s3", "--key-name"]);
    cmd.args(["key-2025", "--new-raw-key-file", "new.key", "--new-key-namespace", "kms-envelope-s3"]);
    cmd.args(["--new-key-name", "key-2026"]).args(extra);
    let out = cmd.output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The CLI over a hostile endpoint: listed keys outside the prefix asked for (`srcx`, `other/..`) are
/// refused without a request about them; keys with an ESC, a carriage return and a bidirectional override,
/// and the endpoint's error message and request id with the same, reach stderr escaped; nothing is
/// written (no PUT or POST); a listing page that fails (a key that is not URL encoding) ends the run with
/// a failure, escaped too. In place and into another prefix alike.
#[cfg(feature = "cli")]
#[test]
fn attack_a_hostile_endpoint_gets_escaped_lines_and_no_write_outside_the_prefix() {
    let server = hostile_s3(|token| match token {
        None => FakePage {
            contents: vec![
                ("srcx%1B%5B2J".into(), "5".into()),
                ("other%2F..%2Fsrc%2Fa".into(), "5".into()),
                ("src%2F%1B%5B31mred%0Dkms-envelope%3A+forged%E2%80%AE".into(), "5".into()),
            ],
            truncated: true,
            next: Some("p2".into()),
        },
        Some(_) => FakePage { contents: one_key("src/%zz%1B"), truncated: false, next: None },
    });
    let work = tempfile::tempdir().unwrap();
    for extra in [&["-r", "s3://b/src/", "s3://b/dst/"][..], &["-r", "--in-place", "s3://b/src/"]] {
        let (code, stderr) = cli_against(&server, work.path(), extra);
        assert!(code.is_some_and(|c| c != 0), "{extra:?}: {code:?} {stderr}");
        assert!(!stderr.contains(['\u{1b}', '\r', '\u{202e}']), "{extra:?}: {stderr:?}");
        assert!(stderr.contains("s3://b/srcx\\u{1b}[2J: listed, but not under s3://b/src/"), "{stderr}");
        assert!(stderr.contains("s3://b/other/../src/a: listed, but not under"), "{stderr}");
        assert!(stderr.contains("red\\rkms-envelope: forged"), "{stderr}");
        assert!(stderr.contains("ListObjectsV2 s3://b/src/"), "{stderr}");
        // Escaped once: a key's ESC reads `\u{1b}` in every line, never `\\u{1b}`.
        assert!(!stderr.contains("\\\\u{"), "escaped twice: {stderr}");
    }
    let requests = server.requests();
    assert!(requests.iter().all(|r| r.starts_with("GET ") || r.starts_with("HEAD ")), "{requests:?}");
    assert!(!requests.iter().any(|r| r.contains("srcx") || r.contains("other")), "{requests:?}");
}

/// `--dry-run -r` over a hostile endpoint: a listed key outside the prefix asked for is refused on its
/// line, as the run itself refuses it, without a request about it (the dry run would otherwise read, and
/// describe as "would re-encrypt", an object the run would never touch).
#[cfg(feature = "cli")]
#[test]
fn attack_a_dry_run_does_not_read_keys_outside_the_prefix() {
    let server = hostile_s3(|_| FakePage {
        contents: vec![("srcx%1B%5B2J".into(), "5".into()), ("src/a".into(), "5".into())],
        truncated: false,
        next: None,
    });
    let work = tempfile::tempdir().unwrap();
    let (code, stderr) = cli_against(&server, work.path(), &["--dry-run", "-r", "s3://b/src/"]);
    assert!(code.is_some_and(|c| c != 0), "{code:?} {stderr}");
    assert!(!stderr.contains(['\u{1b}', '\r', '\u{202e}']), "{stderr:?}");
    assert!(stderr.contains("s3://b/srcx\\u{1b}[2J: listed, but not under s3://b/src/"), "{stderr}");
    let requests = server.requests();
    assert!(!requests.iter().any(|r| r.contains("srcx")), "{requests:?}");
    assert!(requests.iter().any(|r| r.contains("/b/src/a")), "{requests:?}");
}
