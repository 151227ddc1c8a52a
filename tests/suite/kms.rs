//! AWS KMS keyrings against real components: moto (started by scripts/test.sh) through the real
//! `aws-sdk-kms` client, the Python ESDK's KMS keyrings pointed at the same moto, and a stub endpoint for
//! retries and timeouts. Without moto the moto tests print "SKIPPED: moto not running" (and fail under
//! CI=true); the stub tests always run.
//!
//! moto gaps, covered by the unit tests' KMS double in src/keyring/kms/tests.rs instead: moto never reports
//! disabled (or pending-deletion) keys, cannot decrypt under multi-Region keys, and answers a ciphertext
//! sent to the wrong key with AccessDenied rather than IncorrectKeyException.
#![cfg(feature = "kms")]

use crate::support;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::config::retry::RetryConfig;
use kms_envelope::keyring::kms::{PROVIDER_ID, Region as KmsRegion};
use kms_envelope::{
    AwsKmsKeyring, DecryptOptions, Decryptor, DiscoveryFilter, EncryptOptions, Encryptor, Error, KmsClients,
    MultiKeyring, RawAesKeyring, decrypt, encrypt,
};
use support::{Moto, PythonPeer, Reply, StubKms, account_of, kms_answer, within};

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn options() -> EncryptOptions {
    EncryptOptions::new().context("purpose", "kms test").context("tenant", "t-42").frame_length(1024)
}

fn reasons(err: Error) -> Vec<String> {
    match err {
        Error::NoDataKeyDecrypted { reasons, .. } => reasons,
        other => panic!("expected NoDataKeyDecrypted, got {other:?} ({other})"),
    }
}

fn edk_infos(message: &[u8]) -> Vec<String> {
    let header = kms_envelope::Header::read_from(Default::default(), &mut &message[..]).unwrap();
    header
        .encrypted_data_keys()
        .iter()
        .map(|edk| {
            assert_eq!(edk.provider_id, PROVIDER_ID);
            String::from_utf8(edk.provider_info.clone()).unwrap()
        })
        .collect()
}

// ------------------------------------------------------------------------------------------- moto

#[test]
fn one_key_round_trip_from_synchronous_code() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.create_key();
    let keyring = moto.clients().keyring(&key).unwrap();
    let data = plaintext(5000);
    let message = encrypt(&keyring, &options(), &data).unwrap();
    assert_eq!(edk_infos(&message), [key.as_str()], "provider info is the key ARN");
    let out = decrypt(&keyring, &DecryptOptions::new().context("tenant", "t-42"), &message).unwrap();
    assert_eq!(*out.plaintext, data);
}

#[test]
fn three_keys_round_trip_and_each_key_decrypts_alone() {
    let Some(moto) = Moto::get() else { return };
    let keys = moto.create_keys(3);
    let clients = moto.clients();
    let data = plaintext(3000);
    let message = encrypt(&clients.multi_keyring(&keys).unwrap(), &options(), &data).unwrap();
    assert_eq!(edk_infos(&message), keys);
    for key in &keys {
        let out = decrypt(&clients.keyring(key).unwrap(), &DecryptOptions::new(), &message).unwrap();
        assert_eq!(*out.plaintext, data, "key {key} alone");
    }
    let out = decrypt(&clients.multi_keyring(&keys).unwrap(), &DecryptOptions::new(), &message).unwrap();
    assert_eq!(*out.plaintext, data);
}

#[test]
fn alias_encrypts_under_the_key_arn_and_the_arn_decrypts() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.create_key();
    let alias = moto.create_alias(&key);
    let clients = moto.clients();
    let message = encrypt(&clients.keyring(&alias).unwrap(), &options(), b"via alias").unwrap();
    assert_eq!(edk_infos(&message), [key.as_str()]);
    let out = decrypt(&clients.keyring(&key).unwrap(), &DecryptOptions::new(), &message).unwrap();
    assert_eq!(&out.plaintext[..], b"via alias");
    let err = decrypt(&clients.keyring(&alias).unwrap(), &DecryptOptions::new(), &message).unwrap_err();
    assert!(reasons(err)[0].contains("strict decrypt needs the key ARN"));
}

#[test]
fn locally_generated_data_key_round_trip() {
    let Some(moto) = Moto::get() else { return };
    let keys = moto.create_keys(2);
    let clients = moto.clients();
    let generator = clients.keyring(&keys[0]).unwrap().generate_data_key_locally();
    let multi = MultiKeyring::new(generator).with_child(clients.keyring(&keys[1]).unwrap());
    let message = encrypt(&multi, &options(), b"no plaintext key from KMS").unwrap();
    for key in &keys {
        let out = decrypt(&clients.keyring(key).unwrap(), &DecryptOptions::new(), &message).unwrap();
        assert_eq!(&out.plaintext[..], b"no plaintext key from KMS");
    }
}

#[test]
fn wrong_encryption_context_is_reported() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.create_key();
    let keyring = moto.clients().keyring(&key).unwrap();
    // A required pair is not stored in the header: only KMS (and header auth) can tell a wrong value.
    let message = encrypt(&keyring, &options().required_context("order", "1001"), b"pay 10").unwrap();
    let wrong = DecryptOptions::new().context("order", "1002").require_context_key("order");
    let reasons = reasons(decrypt(&keyring, &wrong, &message).unwrap_err());
    assert!(reasons[0].contains("InvalidCiphertextException"), "{reasons:?}");
    assert!(reasons[0].contains("the encryption context differs from the one used to encrypt"), "{reasons:?}");
    let right = DecryptOptions::new().context("order", "1001").require_context_key("order");
    assert_eq!(&decrypt(&keyring, &right, &message).unwrap().plaintext[..], b"pay 10");
}

#[test]
fn wrong_key_is_reported() {
    let Some(moto) = Moto::get() else { return };
    let keys = moto.create_keys(2);
    let clients = moto.clients();
    let message = encrypt(&clients.keyring(&keys[0]).unwrap(), &options(), b"for key 0").unwrap();

    // The usual case: the message names another key, so no call is made.
    let reasons_b =
        reasons(decrypt(&clients.keyring(&keys[1]).unwrap(), &DecryptOptions::new(), &message).unwrap_err());
    assert_eq!(reasons_b.len(), 1);
    assert!(reasons_b[0].contains(&format!("the message's data key under {} is for another key", keys[0])));

    // A message whose EDK names key 1 but was encrypted under key 0: KMS itself refuses. Real KMS says
    // IncorrectKeyException (unit-tested with the double); moto says AccessDenied.
    let mut forged = message.clone();
    let at = forged.windows(keys[0].len()).position(|w| w == keys[0].as_bytes()).unwrap();
    forged[at..at + keys[1].len()].copy_from_slice(keys[1].as_bytes());
    let reasons = reasons(decrypt(&clients.keyring(&keys[1]).unwrap(), &DecryptOptions::new(), &forged).unwrap_err());
    assert!(reasons[0].contains(&format!("AWS KMS Decrypt with key {}", keys[1])), "{reasons:?}");
    assert!(reasons[0].contains("access denied") || reasons[0].contains("wrong key"), "{reasons:?}");
}

#[test]
fn missing_key_is_reported_as_not_found() {
    let Some(moto) = Moto::get() else { return };
    let clients = moto.clients();
    let err = encrypt(&clients.keyring("alias/kms-envelope-no-such-key").unwrap(), &options(), b"x").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Keyring(_)), "{err:?}");
    assert!(
        text.contains("GenerateDataKey") && text.contains("key not found") && text.contains("NotFoundException"),
        "{text}"
    );
}

#[test]
fn discovery_round_trip_and_filter_mismatch() {
    let Some(moto) = Moto::get() else { return };
    let keys = moto.create_keys(2);
    let clients = moto.clients();
    let message = encrypt(&clients.multi_keyring(&keys).unwrap(), &options(), b"discover me").unwrap();
    let account = account_of(&keys[0]);

    let open = clients.discovery_keyring(None);
    assert_eq!(&decrypt(&open, &DecryptOptions::new(), &message).unwrap().plaintext[..], b"discover me");
    let filtered = clients.discovery_keyring(Some(DiscoveryFilter::new(clients.partition(), [account]).unwrap()));
    assert_eq!(&decrypt(&filtered, &DecryptOptions::new(), &message).unwrap().plaintext[..], b"discover me");

    let elsewhere = clients.discovery_keyring(Some(DiscoveryFilter::new("aws", ["999988887777"]).unwrap()));
    let reasons = reasons(decrypt(&elsewhere, &DecryptOptions::new(), &message).unwrap_err());
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().all(|r| r.contains("not one the discovery filter allows (999988887777)")), "{reasons:?}");

    let err = encrypt(&open, &options(), b"x").unwrap_err();
    assert!(err.to_string().contains("discovery keyring cannot encrypt"), "{err}");
}

#[test]
fn raw_aes_and_kms_in_one_multi_keyring() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.create_key();
    let clients = moto.clients();
    let raw = || RawAesKeyring::new("kms-envelope-tests", "raw key", &[9; 32]).unwrap();
    for generator_is_kms in [true, false] {
        let multi = if generator_is_kms {
            MultiKeyring::new(clients.keyring(&key).unwrap()).with_child(raw())
        } else {
            MultiKeyring::new(raw()).with_child(clients.keyring(&key).unwrap())
        };
        let message = encrypt(&multi, &options(), b"either key").unwrap();
        let by_kms = decrypt(&clients.keyring(&key).unwrap(), &DecryptOptions::new(), &message).unwrap();
        let by_raw = decrypt(&raw(), &DecryptOptions::new(), &message).unwrap();
        assert_eq!((&by_kms.plaintext[..], &by_raw.plaintext[..]), (&b"either key"[..], &b"either key"[..]));
    }
}

#[test]
fn missing_credentials_and_region_are_reported() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.create_key();
    let no_credentials = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .build();
    let keyring = KmsClients::new(&no_credentials).keyring(&key).unwrap();
    let err = encrypt(&keyring, &options(), b"x").unwrap_err().to_string();
    assert!(err.contains("no AWS credentials found"), "{err}");

    let mut no_region = moto.config().into_builder();
    no_region.set_region(None);
    let no_region = no_region.build();
    let err = KmsClients::new(&no_region).keyring("alias/anything").unwrap_err().to_string();
    assert!(err.contains("no AWS region configured"), "{err}");
    // A client built by hand without a region fails on the call, with the same advice.
    let keyring = AwsKmsKeyring::new(aws_sdk_kms::Client::new(&no_region), &key).unwrap();
    let err = encrypt(&keyring, &options(), b"x").unwrap_err().to_string();
    assert!(err.contains("no AWS region configured"), "{err}");
}

#[test]
fn clients_from_the_environment_reach_moto() {
    let Some(moto) = Moto::get() else { return };
    if std::env::var("AWS_ENDPOINT_URL_KMS").ok().as_deref() != Some(moto.endpoint.as_str()) {
        panic!("AWS_ENDPOINT_URL_KMS must point at moto ({}) when KMS_ENVELOPE_MOTO_ENDPOINT is set", moto.endpoint);
    }
    let key = moto.create_key();
    let clients = KmsClients::from_env_blocking().unwrap();
    assert_eq!(clients.default_region(), Some(support::REGION));
    let keyring = clients.keyring(&key).unwrap();
    let message = encrypt(&keyring, &options(), b"from env").unwrap();
    assert_eq!(&decrypt(&keyring, &DecryptOptions::new(), &message).unwrap().plaintext[..], b"from env");
}

// ---------------------------------------------------------------------------------- concurrency

const CONCURRENT: usize = 64;

/// Encrypts one message per task and decrypts each `CONCURRENT` times at once with the async API, all on
/// `runtime`; every task awaits KMS concurrently.
fn many_concurrent_operations(runtime: tokio::runtime::Runtime, moto: Moto, key: String) {
    runtime.block_on(async move {
        let keyring = Arc::new(moto.clients().keyring(&key).unwrap());
        let data = Arc::new(plaintext(2000));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..CONCURRENT {
            let (keyring, data) = (keyring.clone(), data.clone());
            tasks.spawn(async move {
                let options = options().context("task", i.to_string());
                let mut encryptor = Encryptor::new_async(&*keyring, &options, Vec::new()).await?;
                encryptor.write_all(&data)?;
                let message = encryptor.finish()?;
                let decryptor = Decryptor::new_async(&*keyring, &DecryptOptions::new(), &message[..]).await?;
                assert_eq!(decryptor.header().encryption_context().get("task"), Some(i.to_string().as_str()));
                decryptor.read_all()
            });
        }
        let mut done = 0;
        while let Some(result) = tasks.join_next().await {
            assert_eq!(result.unwrap().unwrap(), *data);
            done += 1;
        }
        assert_eq!(done, CONCURRENT);
    });
}

#[test]
fn many_concurrent_operations_on_a_current_thread_runtime() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.create_key();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    within(Duration::from_secs(120), "64 concurrent encrypt+decrypt on a current-thread runtime", move || {
        many_concurrent_operations(runtime, moto, key)
    });
}

#[test]
fn many_concurrent_operations_on_a_two_worker_runtime() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.create_key();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    within(Duration::from_secs(120), "64 concurrent encrypt+decrypt on a 2-worker runtime", move || {
        many_concurrent_operations(runtime, moto, key)
    });
}

#[test]
fn sync_api_from_many_threads_and_from_spawn_blocking() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.create_key();
    let keyring = Arc::new(moto.clients().keyring(&key).unwrap());
    let message = Arc::new(encrypt(&*keyring, &options(), b"shared").unwrap());
    let (k, m) = (keyring.clone(), message.clone());
    within(Duration::from_secs(120), "16 threads decrypting with the blocking API", move || {
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (k, m) = (k.clone(), m.clone());
                std::thread::spawn(move || decrypt(&*k, &DecryptOptions::new(), &m).unwrap().plaintext.to_vec())
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap(), b"shared");
        }
    });
    // The blocking API inside spawn_blocking: the call goes to the user's (current-thread) runtime, whose
    // thread is free because it only awaits the blocking task.
    let moto2 = moto.clone();
    within(Duration::from_secs(60), "the blocking API in spawn_blocking on a current-thread runtime", move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let keyring = moto2.clients().keyring(&key).unwrap();
        let blocking = async move {
            tokio::task::spawn_blocking(move || decrypt(&keyring, &DecryptOptions::new(), &message)).await
        };
        let out = runtime.block_on(blocking).unwrap().unwrap();
        assert_eq!(&out.plaintext[..], b"shared");
    });
}

// --------------------------------------------------------------------------------- Python interop

#[test]
fn rust_encrypts_with_three_keys_python_decrypts() {
    let Some(moto) = Moto::get() else { return };
    let Some(peer) = PythonPeer::get(&moto) else { return };
    let keys = moto.create_keys(3);
    let dir = tempfile::tempdir().unwrap();
    let (ct, pt) = (dir.path().join("ct"), dir.path().join("pt"));
    let data = plaintext(70_000);
    let message = encrypt(&moto.clients().multi_keyring(&keys).unwrap(), &options(), &data).unwrap();
    std::fs::write(&ct, &message).unwrap();
    let (ct, pt) = (ct.to_str().unwrap(), pt.to_str().unwrap());
    let context = r#"{"purpose":"kms test","tenant":"t-42"}"#;

    // Python decrypts with each key alone, with discovery, and (the oracle can fail) with another key, all in
    // one peer process: each decryption is a job of its own, as separate as with a process per decryption.
    let other = moto.create_key();
    let account = account_of(&keys[0]);
    let outs: Vec<String> = (0..keys.len() + 2).map(|i| format!("{pt}-{i}")).collect();
    let mut jobs: Vec<Vec<&str>> = keys
        .iter()
        .zip(&outs)
        .map(|(key, out)| vec!["decrypt", "--in", ct, "--out", out, "--kms-key", key, "--context-json", context])
        .collect();
    let discovery = &outs[keys.len()];
    jobs.push(vec!["decrypt", "--in", ct, "--out", discovery, "--kms-discovery", "--kms-discovery-account", &account]);
    jobs.push(vec!["decrypt", "--in", ct, "--out", &outs[keys.len() + 1], "--kms-key", &other]);
    let mut results = peer.batch(&jobs);
    let err = results.pop().unwrap().unwrap_err();
    assert!(err.contains("esdk_peer decrypt failed"), "the oracle can fail: {err}");
    for ((result, out), who) in results.into_iter().zip(&outs).zip(keys.iter().chain([&"discovery".to_owned()])) {
        result.unwrap_or_else(|err| panic!("Python, {who}: {err}"));
        assert_eq!(std::fs::read(out).unwrap(), data, "Python, {who}");
    }
}

#[test]
fn python_encrypts_with_two_keys_rust_decrypts() {
    let Some(moto) = Moto::get() else { return };
    let Some(peer) = PythonPeer::get(&moto) else { return };
    let keys = moto.create_keys(2);
    let dir = tempfile::tempdir().unwrap();
    let (pt, ct) = (dir.path().join("pt"), dir.path().join("ct"));
    let data = plaintext(10_000);
    std::fs::write(&pt, &data).unwrap();
    let (pt_s, ct_s) = (pt.to_str().unwrap(), ct.to_str().unwrap());
    peer.run(&[
        "encrypt",
        "--in",
        pt_s,
        "--out",
        ct_s,
        "--kms-key",
        &keys[0],
        "--kms-key",
        &keys[1],
        "--context-json",
        r#"{"origin":"python"}"#,
    ])
    .unwrap();
    let message = std::fs::read(&ct).unwrap();
    let mut infos = edk_infos(&message);
    infos.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(infos, expected);

    let clients = moto.clients();
    let expect = DecryptOptions::new().context("origin", "python");
    for key in &keys {
        let out = decrypt(&clients.keyring(key).unwrap(), &expect, &message).unwrap();
        assert_eq!(*out.plaintext, data, "Rust, key {key}");
    }
    let filter = DiscoveryFilter::new("aws", [account_of(&keys[0])]).unwrap();
    let out = decrypt(&clients.discovery_keyring(Some(filter)), &expect, &message).unwrap();
    assert_eq!(*out.plaintext, data, "Rust discovery");
    let other = clients.keyring(&moto.create_key()).unwrap();
    assert!(matches!(decrypt(&other, &expect, &message), Err(Error::NoDataKeyDecrypted { .. })));
}

// ----------------------------------------------------------------------- stub endpoint: retries, counts

const STUB_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/5a5a5a5a-1111-2222-3333-444444444444";
const STUB_KEY_2: &str = "arn:aws:kms:us-east-1:111122223333:key/6b6b6b6b-1111-2222-3333-444444444444";
const STUB_KEY_3: &str = "arn:aws:kms:us-east-1:111122223333:key/7c7c7c7c-1111-2222-3333-444444444444";
const STUB_KEY_WEST: &str = "arn:aws:kms:eu-west-1:111122223333:key/8d8d8d8d-1111-2222-3333-444444444444";

fn fast_retries(stub: &StubKms) -> KmsClients {
    stub.clients()
        .with_retry_config(RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(5)))
}

#[test]
fn kms_calls_per_encrypt_and_decrypt() {
    let stub = StubKms::start(|_, op, body| kms_answer(op, body));
    let clients = fast_retries(&stub);
    let message =
        encrypt(&clients.multi_keyring(&[STUB_KEY, STUB_KEY_2, STUB_KEY_3]).unwrap(), &options(), b"x").unwrap();
    assert_eq!(stub.requests(), ["GenerateDataKey", "Encrypt", "Encrypt"], "one call per key on encrypt");
    decrypt(&clients.keyring(STUB_KEY_2).unwrap(), &DecryptOptions::new(), &message).unwrap();
    decrypt(&clients.discovery_keyring(None), &DecryptOptions::new(), &message).unwrap();
    assert_eq!(stub.requests()[3..], ["Decrypt", "Decrypt"], "one call per decrypt, strict or discovery");
    let local = clients.keyring(STUB_KEY).unwrap().generate_data_key_locally();
    encrypt(&local, &options(), b"x").unwrap();
    assert_eq!(stub.requests()[5..], ["Encrypt"]);
}

/// The README's pin for a discovery keyring: `discovery_keyring(filter).with_regions([...])`. A key in a
/// region outside the list never reaches KMS, and no client is built for that region.
#[test]
fn discovery_with_regions_never_calls_a_key_outside_the_list() {
    let key_ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = key_ids.clone();
    let stub = StubKms::start(move |_, op, body| {
        seen.lock().unwrap().push(format!("{op} {}", body["KeyId"].as_str().unwrap_or("")));
        kms_answer(op, body)
    });
    // The eu-west-1 EDK comes first, so discovery without the pin would try it first.
    let message =
        encrypt(&stub.clients().multi_keyring(&[STUB_KEY_WEST, STUB_KEY]).unwrap(), &options(), b"x").unwrap();
    key_ids.lock().unwrap().clear();

    let east = KmsRegion::parse("us-east-1").unwrap();
    let clients = stub.clients();
    let pinned = clients.discovery_keyring(None).with_regions([east]);
    let out = decrypt(&pinned, &DecryptOptions::new(), &message).unwrap();
    assert_eq!(&out.plaintext[..], b"x");
    assert_eq!(*key_ids.lock().unwrap(), [format!("Decrypt {STUB_KEY}")], "the eu-west-1 key is never sent");
    assert_eq!(clients.cached_clients(), 1, "no client is built for eu-west-1");

    key_ids.lock().unwrap().clear();
    let elsewhere = KmsRegion::parse("ap-south-1").unwrap();
    let pinned = stub.clients().discovery_keyring(None).with_regions([elsewhere]);
    let reasons = reasons(decrypt(&pinned, &DecryptOptions::new(), &message).unwrap_err());
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().all(|r| r.contains("in a region this keyring is not allowed to call")), "{reasons:?}");
    assert!(key_ids.lock().unwrap().is_empty(), "no KMS call for a key outside the list");
}

#[test]
fn throttled_first_attempts_of_encrypt_and_decrypt_succeed_on_retry() {
    // Requests 0 and 2 are the first attempts of GenerateDataKey and of Decrypt.
    let stub = StubKms::start(|n, op, body| match n {
        0 | 2 => Reply::error(400, "ThrottlingException", "Rate exceeded"),
        _ => kms_answer(op, body),
    });
    let keyring = fast_retries(&stub).keyring(STUB_KEY).unwrap();
    let message = encrypt(&keyring, &options(), b"after a retry").unwrap();
    let out = decrypt(&keyring, &DecryptOptions::new(), &message).unwrap();
    assert_eq!(&out.plaintext[..], b"after a retry");
    assert_eq!(stub.requests(), ["GenerateDataKey", "GenerateDataKey", "Decrypt", "Decrypt"]);
}

#[test]
fn server_errors_are_retried() {
    let stub = StubKms::start(|n, op, body| match n {
        0 => Reply::error(500, "KMSInternalException", "oops"),
        1 => Reply::Json(503, "{}".into()),
        _ => kms_answer(op, body),
    });
    encrypt(&fast_retries(&stub).keyring(STUB_KEY).unwrap(), &options(), b"x").unwrap();
    assert_eq!(stub.requests().len(), 3);
}

#[test]
fn permanent_errors_are_not_retried() {
    for (code, hint) in [
        ("AccessDeniedException", "access denied: grant the caller kms:GenerateDataKey"),
        ("DisabledException", "the key is disabled"),
        ("NotFoundException", "key not found"),
    ] {
        let stub = StubKms::start(move |_, _, _| Reply::error(400, code, "no"));
        let err = encrypt(&fast_retries(&stub).keyring(STUB_KEY).unwrap(), &options(), b"x").unwrap_err().to_string();
        assert!(err.contains(hint) && err.contains(code) && err.contains("request id stub-0"), "{err}");
        assert_eq!(stub.requests().len(), 1, "{code} is not retried");
    }
    let stub = StubKms::start(|n, op, body| match n {
        0 => kms_answer(op, body),
        _ => Reply::error(400, "InvalidCiphertextException", ""),
    });
    let keyring = fast_retries(&stub).keyring(STUB_KEY).unwrap();
    let message = encrypt(&keyring, &options(), b"x").unwrap();
    let reasons = reasons(decrypt(&keyring, &DecryptOptions::new(), &message).unwrap_err());
    assert!(reasons[0].contains("encryption context differs"), "{reasons:?}");
    assert_eq!(stub.requests().len(), 2);
}

#[test]
fn persistent_throttling_stops_after_the_configured_attempts() {
    // Four, not the SDK's default three: the count shows the configured number is the one obeyed.
    let stub = StubKms::start(|_, _, _| Reply::error(400, "ThrottlingException", "Rate exceeded"));
    let clients = fast_retries(&stub).with_max_attempts(4);
    let err = encrypt(&clients.keyring(STUB_KEY).unwrap(), &options(), b"x").unwrap_err().to_string();
    assert!(err.contains("throttled by KMS"), "{err}");
    assert_eq!(stub.requests(), ["GenerateDataKey"; 4], "four attempts, then the throttling error: {err}");
    let stub = StubKms::start(|_, _, _| Reply::error(400, "ThrottlingException", "Rate exceeded"));
    let clients = fast_retries(&stub).with_max_attempts(1);
    assert!(encrypt(&clients.keyring(STUB_KEY).unwrap(), &options(), b"x").is_err());
    assert_eq!(stub.requests().len(), 1, "max attempts 1 disables retries");
}

#[test]
fn a_call_that_hangs_times_out() {
    let stub = StubKms::start(|_, _, _| Reply::Hang);
    let clients =
        fast_retries(&stub).with_max_attempts(2).with_timeouts(Duration::from_millis(300), Duration::from_secs(5));
    // The attempt timeout shows in the error and in the retried request; `within` only guards against a
    // hang (how fast it gives up is a benchmark's business, not a test's).
    let keyring = clients.keyring(STUB_KEY).unwrap();
    let err = support::within(Duration::from_secs(120), "a hanging KMS call", move || {
        encrypt(&keyring, &options(), b"x").unwrap_err().to_string()
    });
    assert!(err.contains("timed out"), "{err}");
    assert_eq!(stub.requests().len(), 2, "a timed-out attempt is retried");
}

// -------------------------------------------------------------------------------- cold process

/// Decrypts one message in a fresh process (this test binary re-run as a child): environment loading,
/// the shared runtime, a new connection and the `Decrypt` call. Prints the wall time for the notes.
#[test]
fn cold_process_decrypt() {
    if let Ok(path) = std::env::var("KMS_ENVELOPE_COLD_CHILD") {
        let started = Instant::now();
        let key = std::env::var("KMS_ENVELOPE_COLD_KEY").unwrap();
        let message = std::fs::read(path).unwrap();
        let keyring = KmsClients::from_env_blocking().unwrap().keyring(&key).unwrap();
        let out = decrypt(&keyring, &DecryptOptions::new(), &message).unwrap();
        assert_eq!(&out.plaintext[..], b"cold");
        eprintln!("COLD-CHILD in-process {} ms", started.elapsed().as_millis());
        return;
    }
    let Some(moto) = Moto::get() else { return };
    let key = moto.create_key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("message");
    std::fs::write(&path, encrypt(&moto.clients().keyring(&key).unwrap(), &options(), b"cold").unwrap()).unwrap();
    let started = Instant::now();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kms::cold_process_decrypt", "--nocapture", "--test-threads=1"])
        .env("KMS_ENVELOPE_COLD_CHILD", &path)
        .env("KMS_ENVELOPE_COLD_KEY", &key)
        .env("AWS_ENDPOINT_URL_KMS", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", support::REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("COLD-CHILD"), "child failed: {stderr}");
    let inside = stderr.lines().find(|l| l.starts_with("COLD-CHILD")).unwrap_or_default();
    eprintln!("cold-process decrypt against moto: {} ms wall ({inside})", wall.as_millis());
}

/// The KMS RSA keyring against moto: `GetPublicKey` (once) and local encryption under the key's public key.
/// moto cannot decrypt RSA ciphertexts (its `Decrypt` expects its own symmetric format), so the decrypt side
/// is tested in `src/keyring/kms/rsa.rs` against a KMS double that holds a real RSA key pair.
#[cfg(feature = "rsa")]
#[test]
fn kms_rsa_keyring_encrypts_under_the_public_key_moto_serves() {
    use kms_envelope::keyring::kms::{KmsRsaAlgorithm, RSA_PROVIDER_ID};
    let Some(moto) = Moto::get() else { return };
    let arn = moto.create_rsa_key();
    let keyring = moto.clients().rsa_keyring(&arn, KmsRsaAlgorithm::OaepSha256).unwrap();
    for _ in 0..3 {
        let message = kms_envelope::encrypt(&keyring, &options(), &plaintext(100)).unwrap();
        let header =
            kms_envelope::Header::read_from(kms_envelope::DecryptLimits::default(), &mut &message[..]).unwrap();
        let edk = &header.encrypted_data_keys()[0];
        assert_eq!((edk.provider_id.as_str(), edk.provider_info.as_slice()), (RSA_PROVIDER_ID, arn.as_bytes()));
        assert_eq!(edk.ciphertext.len(), 256, "RSA-2048 ciphertext");
    }
}

/// GetPublicKey of a SIGN_VERIFY RSA key answers a public key too; encrypting under it would write messages
/// no one can ever decrypt, so the keyring refuses it.
#[cfg(feature = "rsa")]
#[test]
fn kms_rsa_keyring_refuses_a_signing_key() {
    use kms_envelope::keyring::kms::KmsRsaAlgorithm;
    let Some(moto) = Moto::get() else { return };
    let arn = moto.create_rsa_key_for(aws_sdk_kms::types::KeyUsageType::SignVerify);
    let keyring = moto.clients().rsa_keyring(&arn, KmsRsaAlgorithm::OaepSha256).unwrap();
    let err = kms_envelope::encrypt(&keyring, &options(), &plaintext(100)).unwrap_err();
    assert!(err.to_string().contains("SIGN_VERIFY, not ENCRYPT_DECRYPT"), "{err}");
}
