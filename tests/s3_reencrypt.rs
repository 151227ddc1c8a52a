//! Re-encryption from S3 object to S3 object (`S3Object::reencrypt_from_blocking`), against S3 in moto:
//! every size, to another key and in place, a tampered source, and a writer that replaces the object while it
//! is re-encrypted in place. Without moto a test prints "SKIPPED: ..." (and fails under CI=true).
#![cfg(feature = "s3")]

mod common;
#[path = "common/kms.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture};
use kms_envelope::s3::{MIN_PART_SIZE, S3Object, TransferOptions};
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
        let got = self.runtime.block_on(self.client().get_object().bucket(&self.bucket).key(key).send()).ok()?;
        Some(self.runtime.block_on(got.body.collect()).unwrap().into_bytes().to_vec())
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

    fn reencrypt(&self, from: &str, to: &str, target: &dyn Keyring) -> Result<kms_envelope::s3::Uploaded, Error> {
        let transfer = TransferOptions::new().part_size(MIN_PART_SIZE);
        let handle = self.runtime.handle().clone();
        let options = ReencryptOptions::new();
        let source = self.object(from);
        self.object(to).reencrypt_from_blocking(
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
    std::fs::write(work.path().join("old.key"), [7u8; 32]).unwrap();
    std::fs::write(work.path().join("new.key"), [9u8; 32]).unwrap();
    let run = |extra: &[&str], code: i32| -> String {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("kms-envelope"));
        cmd.current_dir(work.path());
        cmd.env("AWS_ENDPOINT_URL_S3", &env.moto.endpoint).env("AWS_ACCESS_KEY_ID", "testing");
        cmd.env("AWS_SECRET_ACCESS_KEY", "testing").env("AWS_REGION", support::REGION);
        cmd.env("AWS_EC2_METADATA_DISABLED", "true").env_remove("AWS_PROFILE").env_remove("AWS_ENDPOINT_URL");
        cmd.args(["reencrypt", "--raw-key-file", "old.key", "--key-namespace", "kms-envelope-s3", "--key-name"]);
        cmd.args(["key-2025", "--new-raw-key-file", "new.key", "--new-key-namespace", "kms-envelope-s3"]);
        cmd.args(["--new-key-name", "key-2026"]).args(extra);
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {stderr}");
        stderr
    };
    let (src, dst) = (format!("s3://{}/src", env.bucket), format!("s3://{}/dst", env.bucket));
    run(&[&src, &dst], 0);
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
