//! Keyring behaviour against a KMS double: the call sequence and parameters, the response checks, and the
//! faults moto cannot produce (disabled keys, multi-Region keys, a wrong key in the response, throttling).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use super::api::{CallParams, Decrypted, Encrypted, Generated, KmsApi, KmsFuture};
use super::arn::KmsArn;
use super::error::{KmsError, KmsErrorKind};
use super::*;
use crate::error::Error;
use crate::format::context::EncryptionContext;
use crate::format::edk::EncryptedDataKey;
use crate::format::suite::AlgorithmSuite;
use crate::keyring::{DecryptionMaterials, EncryptionMaterials, Keyring, MultiKeyring, RawAesKeyring, block_on};

const SUITE: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;
const ACCOUNT: &str = "111122223333";
const KEY_A: &str = "arn:aws:kms:us-east-1:111122223333:key/aaaaaaaa-1111-2222-3333-444444444444";
const KEY_B: &str = "arn:aws:kms:us-east-1:111122223333:key/bbbbbbbb-1111-2222-3333-444444444444";
const KEY_C: &str = "arn:aws:kms:us-east-1:111122223333:key/cccccccc-1111-2222-3333-444444444444";
const KEY_W: &str = "arn:aws:kms:eu-west-1:111122223333:key/dddddddd-1111-2222-3333-444444444444";
const MRK_E: &str = "arn:aws:kms:us-east-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef";
const MRK_W: &str = "arn:aws:kms:eu-west-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef";
const OTHER_ACCOUNT_KEY: &str = "arn:aws:kms:us-east-1:444455556666:key/eeeeeeee-1111-2222-3333-444444444444";

#[derive(Clone, Debug, PartialEq, Eq)]
struct Call {
    op: &'static str,
    params: CallParams,
}

/// A KMS in one region. Ciphertexts are `account/key-id \0 context \0 plaintext`, so replicas of a
/// multi-Region key (same account and id) decrypt each other's, as in KMS.
struct FakeKms {
    region: String,
    keys: HashSet<String>,
    aliases: HashMap<String, String>,
    disabled: Mutex<HashSet<String>>,
    calls: Mutex<Vec<Call>>,
    faults: Mutex<VecDeque<KmsError>>,
    answer_key_id: Mutex<Option<String>>,
    answer_len: Mutex<Option<usize>>,
}

impl FakeKms {
    fn new(region: &str, keys: &[&str]) -> Arc<Self> {
        Arc::new(Self {
            region: region.into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            aliases: [("alias/a".to_string(), KEY_A.to_string())].into_iter().collect(),
            disabled: Mutex::default(),
            calls: Mutex::default(),
            faults: Mutex::default(),
            answer_key_id: Mutex::default(),
            answer_len: Mutex::default(),
        })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn ops(&self) -> Vec<&'static str> {
        self.calls().iter().map(|c| c.op).collect()
    }

    fn fail_next(&self, kind: KmsErrorKind, code: &str) {
        let err =
            KmsError { kind, code: Some(code.into()), detail: format!("{code} from the double"), request_id: None };
        self.faults.lock().unwrap().push_back(err);
    }

    fn resolve(&self, key_id: &str) -> Result<String, KmsError> {
        let arn = self.aliases.get(key_id).cloned().unwrap_or_else(|| key_id.to_string());
        let arn = if arn.starts_with("arn:") {
            arn
        } else {
            self.keys.iter().find(|k| k.ends_with(&format!("/{arn}"))).cloned().unwrap_or(arn)
        };
        let in_region = KmsArn::parse(&arn).is_ok_and(|a| a.region().as_str() == self.region);
        if !self.keys.contains(&arn) || !in_region {
            return Err(KmsError::new(KmsErrorKind::NotFound, format!("Key '{key_id}' does not exist")));
        }
        if self.disabled.lock().unwrap().contains(&arn) {
            return Err(KmsError::new(KmsErrorKind::Disabled, format!("{arn} is disabled.")));
        }
        Ok(arn)
    }

    fn identity(arn: &str) -> String {
        let arn = KmsArn::parse(arn).unwrap();
        format!("{}/{}", arn.account(), arn.resource_id())
    }

    fn context_text(params: &CallParams) -> String {
        let mut pairs: Vec<_> = params.context.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        pairs.join("&")
    }

    fn seal(arn: &str, params: &CallParams, plaintext: &[u8]) -> Vec<u8> {
        let mut out = format!("{}\0{}\0", Self::identity(arn), Self::context_text(params)).into_bytes();
        out.extend_from_slice(plaintext);
        out
    }

    fn start(&self, op: &'static str, params: &CallParams) -> Result<String, KmsError> {
        self.calls.lock().unwrap().push(Call { op, params: params.clone() });
        if let Some(err) = self.faults.lock().unwrap().pop_front() {
            return Err(err);
        }
        self.resolve(&params.key_id)
    }
}

impl KmsApi for FakeKms {
    fn region(&self) -> Option<String> {
        Some(self.region.clone())
    }

    fn generate_data_key(&self, params: CallParams, number_of_bytes: usize) -> KmsFuture<Generated> {
        let result = self.start("GenerateDataKey", &params).map(|arn| {
            let plaintext: Vec<u8> = (0..number_of_bytes).map(|i| i as u8 ^ 0x5a).collect();
            let ciphertext = Self::seal(&arn, &params, &plaintext);
            let len = self.answer_len.lock().unwrap().unwrap_or(number_of_bytes);
            Generated { key_id: Some(arn), plaintext: Zeroizing::new(plaintext[..len].to_vec()), ciphertext }
        });
        Box::pin(async move { result })
    }

    fn encrypt(&self, params: CallParams, plaintext: Zeroizing<Vec<u8>>) -> KmsFuture<Encrypted> {
        let result = self
            .start("Encrypt", &params)
            .map(|arn| Encrypted { ciphertext: Self::seal(&arn, &params, &plaintext), key_id: Some(arn) });
        Box::pin(async move { result })
    }

    fn decrypt(&self, params: CallParams, ciphertext: Vec<u8>) -> KmsFuture<Decrypted> {
        let result = self.start("Decrypt", &params).and_then(|arn| {
            let mut parts = ciphertext.splitn(3, |&b| b == 0);
            let (identity, context, plaintext) = (parts.next().unwrap(), parts.next(), parts.next());
            if identity != Self::identity(&arn).as_bytes() {
                return Err(KmsError::new(
                    KmsErrorKind::IncorrectKey,
                    "The key ID in the request does not identify the key that encrypted the ciphertext",
                ));
            }
            if context != Some(Self::context_text(&params).as_bytes()) {
                return Err(KmsError::new(KmsErrorKind::InvalidCiphertext, ""));
            }
            let plaintext = plaintext.unwrap_or_default();
            let len = self.answer_len.lock().unwrap().unwrap_or(plaintext.len());
            let key_id = self.answer_key_id.lock().unwrap().clone().unwrap_or(arn);
            Ok(Decrypted { key_id: Some(key_id), plaintext: Zeroizing::new(plaintext[..len].to_vec()) })
        });
        Box::pin(async move { result })
    }
}

fn context() -> EncryptionContext {
    [("purpose", "unit test"), ("tenant", "t-1")].into_iter().collect()
}

fn encrypt_with(keyring: &dyn Keyring) -> crate::Result<EncryptionMaterials> {
    block_on(keyring.on_encrypt(EncryptionMaterials::new(SUITE, context(), Default::default())))
}

fn decrypt_with(keyring: &dyn Keyring, edks: &[EncryptedDataKey]) -> crate::Result<DecryptionMaterials> {
    block_on(keyring.on_decrypt(DecryptionMaterials::new(SUITE, context(), Default::default()), edks))
}

fn strict(kms: &Arc<FakeKms>, key: &str) -> AwsKmsKeyring {
    AwsKmsKeyring::with_api(kms.clone(), key.into()).unwrap()
}

fn reasons(err: Error) -> Vec<String> {
    match err {
        Error::NoDataKeyDecrypted { reasons, .. } => reasons,
        other => panic!("expected NoDataKeyDecrypted, got {other:?}"),
    }
}

#[test]
fn generator_calls_generate_data_key_and_decrypt_sets_key_id_context_and_grant_tokens() {
    let kms = FakeKms::new("us-east-1", &[KEY_A]);
    let keyring = strict(&kms, KEY_A).with_grant_tokens(["grant-1", "grant-2"]);
    let enc = encrypt_with(&keyring).unwrap();
    let edk = &enc.encrypted_data_keys()[0];
    assert_eq!((edk.provider_id.as_str(), edk.provider_info.as_slice()), (PROVIDER_ID, KEY_A.as_bytes()));
    assert_eq!(enc.data_key().unwrap().len(), 32);

    let dec = decrypt_with(&keyring, enc.encrypted_data_keys()).unwrap();
    assert_eq!(dec.data_key(), enc.data_key());
    let calls = kms.calls();
    assert_eq!(kms.ops(), ["GenerateDataKey", "Decrypt"], "one call per encrypt, one per decrypt");
    let expected_context: HashMap<String, String> =
        context().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for call in &calls {
        assert_eq!(call.params.key_id, KEY_A);
        assert_eq!(call.params.context, expected_context);
        assert_eq!(call.params.grant_tokens, ["grant-1", "grant-2"]);
    }
}

#[test]
fn alias_encrypts_under_the_key_arn_but_strict_decrypt_needs_the_arn() {
    let kms = FakeKms::new("us-east-1", &[KEY_A]);
    let enc = encrypt_with(&strict(&kms, "alias/a")).unwrap();
    assert_eq!(enc.encrypted_data_keys()[0].provider_info, KEY_A.as_bytes(), "provider info is the returned ARN");
    let err = decrypt_with(&strict(&kms, "alias/a"), enc.encrypted_data_keys()).unwrap_err();
    assert!(reasons(err)[0].contains("strict decrypt needs the key ARN"));
    assert!(decrypt_with(&strict(&kms, KEY_A), enc.encrypted_data_keys()).is_ok());
}

#[test]
fn three_keys_one_generate_two_encrypts_and_each_key_decrypts_alone_with_one_call() {
    let kms = FakeKms::new("us-east-1", &[KEY_A, KEY_B, KEY_C]);
    let multi = MultiKeyring::new(strict(&kms, KEY_A)).with_child(strict(&kms, KEY_B)).with_child(strict(&kms, KEY_C));
    let enc = encrypt_with(&multi).unwrap();
    assert_eq!(kms.ops(), ["GenerateDataKey", "Encrypt", "Encrypt"]);
    let infos: Vec<&[u8]> = enc.encrypted_data_keys().iter().map(|e| e.provider_info.as_slice()).collect();
    assert_eq!(infos, [KEY_A.as_bytes(), KEY_B.as_bytes(), KEY_C.as_bytes()]);
    for key in [KEY_A, KEY_B, KEY_C] {
        kms.calls.lock().unwrap().clear();
        let dec = decrypt_with(&strict(&kms, key), enc.encrypted_data_keys()).unwrap();
        assert_eq!(dec.data_key(), enc.data_key());
        assert_eq!(kms.calls().len(), 1, "only the EDK of {key} is sent to KMS");
        assert_eq!(kms.calls()[0].params.key_id, key);
    }
}

#[test]
fn local_data_key_uses_encrypt_only() {
    let kms = FakeKms::new("us-east-1", &[KEY_A, KEY_B]);
    let keyring = strict(&kms, KEY_A).generate_data_key_locally();
    let multi = MultiKeyring::new(keyring).with_child(strict(&kms, KEY_B));
    let enc = encrypt_with(&multi).unwrap();
    assert_eq!(kms.ops(), ["Encrypt", "Encrypt"]);
    let dec = decrypt_with(&strict(&kms, KEY_A), enc.encrypted_data_keys()).unwrap();
    assert_eq!(dec.data_key(), enc.data_key());
}

#[test]
fn disabled_key_is_reported_on_encrypt_and_decrypt() {
    let kms = FakeKms::new("us-east-1", &[KEY_A]);
    let enc = encrypt_with(&strict(&kms, KEY_A)).unwrap();
    kms.disabled.lock().unwrap().insert(KEY_A.into());
    let err = encrypt_with(&strict(&kms, KEY_A)).unwrap_err();
    assert!(matches!(err, Error::Keyring(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("GenerateDataKey") && text.contains(KEY_A) && text.contains("disabled"), "{text}");
    let err = decrypt_with(&strict(&kms, KEY_A), enc.encrypted_data_keys()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("the key is disabled: enable it"), "{text}");
}

#[test]
fn wrong_key_in_the_response_is_refused() {
    let kms = FakeKms::new("us-east-1", &[KEY_A]);
    let enc = encrypt_with(&strict(&kms, KEY_A)).unwrap();
    *kms.answer_key_id.lock().unwrap() = Some(KEY_B.into());
    let reasons = reasons(decrypt_with(&strict(&kms, KEY_A), enc.encrypted_data_keys()).unwrap_err());
    assert!(reasons[0].contains("wrong key") && reasons[0].contains(KEY_B), "{reasons:?}");

    // Discovery checks the response against the requested key too.
    let reasons = reasons_of(decrypt_with(&AwsKmsDiscoveryKeyring::with_api(kms.clone()), enc.encrypted_data_keys()));
    assert!(reasons[0].contains("wrong key"), "{reasons:?}");
}

/// The `KeyId` of a response is the endpoint's to choose: a reason quotes at most 256 bytes of it.
#[test]
fn a_huge_key_id_in_the_response_is_quoted_clipped() {
    let kms = FakeKms::new("us-east-1", &[KEY_A]);
    let enc = encrypt_with(&strict(&kms, KEY_A)).unwrap();
    *kms.answer_key_id.lock().unwrap() = Some("\x1b[2J".repeat(50_000));
    let reasons = reasons(decrypt_with(&strict(&kms, KEY_A), enc.encrypted_data_keys()).unwrap_err());
    assert!(reasons[0].len() < 1024, "a reason of {} bytes", reasons[0].len());
    assert!(reasons[0].contains("\x1b[2J… (199744 more bytes), not the key requested"), "{}", reasons[0]);
}

fn reasons_of<T: std::fmt::Debug>(result: crate::Result<T>) -> Vec<String> {
    reasons(result.unwrap_err())
}

#[test]
fn kms_refusing_the_key_id_for_the_ciphertext_is_a_wrong_key_error() {
    // Real KMS answers IncorrectKeyException; moto answers AccessDenied instead.
    let kms = FakeKms::new("us-east-1", &[KEY_A, KEY_B]);
    let enc = encrypt_with(&strict(&kms, KEY_A)).unwrap();
    let mut edks = enc.encrypted_data_keys().to_vec();
    edks[0].provider_info = KEY_B.as_bytes().to_vec();
    let reasons = reasons_of(decrypt_with(&strict(&kms, KEY_B), &edks));
    assert!(reasons[0].contains("wrong key: the data key was encrypted under a different KMS key"), "{reasons:?}");
}

#[test]
fn response_lengths_are_checked() {
    let kms = FakeKms::new("us-east-1", &[KEY_A]);
    let enc = encrypt_with(&strict(&kms, KEY_A)).unwrap();
    *kms.answer_len.lock().unwrap() = Some(16);
    let err = encrypt_with(&strict(&kms, KEY_A)).unwrap_err();
    assert!(err.to_string().contains("data key of 16 bytes, the suite needs 32"), "{err}");
    let reasons = reasons_of(decrypt_with(&strict(&kms, KEY_A), enc.encrypted_data_keys()));
    assert!(reasons[0].contains("16 bytes"), "{reasons:?}");
}

#[test]
fn wrong_context_reaches_kms_and_says_so() {
    let kms = FakeKms::new("us-east-1", &[KEY_A]);
    let enc = encrypt_with(&strict(&kms, KEY_A)).unwrap();
    let other: EncryptionContext = [("purpose", "something else")].into_iter().collect();
    let err = block_on(
        strict(&kms, KEY_A)
            .on_decrypt(DecryptionMaterials::new(SUITE, other, Default::default()), enc.encrypted_data_keys()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("the encryption context differs"), "{err}");
}

#[test]
fn throttling_beyond_the_retries_is_reported_and_the_next_call_works() {
    let kms = FakeKms::new("us-east-1", &[KEY_A]);
    kms.fail_next(KmsErrorKind::Throttled, "ThrottlingException");
    let err = encrypt_with(&strict(&kms, KEY_A)).unwrap_err();
    assert!(err.to_string().contains("throttled by KMS"), "{err}");
    assert!(err.is_transient(), "a throttled GenerateDataKey may pass later: {err:?}");
    assert!(encrypt_with(&strict(&kms, KEY_A)).is_ok());
}

#[test]
fn a_malformed_kms_edk_fails_the_keyring_before_any_call() {
    let kms = FakeKms::new("us-east-1", &[KEY_A]);
    let enc = encrypt_with(&strict(&kms, KEY_A)).unwrap();
    kms.calls.lock().unwrap().clear();
    let mut edks = vec![EncryptedDataKey {
        provider_id: PROVIDER_ID.into(),
        provider_info: b"arn:aws:kms:us-east-1:111122223333:alias/not-a-key".to_vec(),
        ciphertext: vec![1, 2, 3],
    }];
    edks.extend_from_slice(enc.encrypted_data_keys());
    for keyring in [&strict(&kms, KEY_A) as &dyn Keyring, &AwsKmsDiscoveryKeyring::with_api(kms.clone())] {
        let err = decrypt_with(keyring, &edks).unwrap_err();
        assert!(matches!(err, Error::Keyring(ref m) if m.contains("names no key ARN")), "{err:?}");
    }
    assert!(kms.calls().is_empty());
}

#[test]
fn edks_of_other_keyrings_and_keys_are_skipped_with_reasons() {
    let kms = FakeKms::new("us-east-1", &[KEY_A, KEY_B]);
    let raw = RawAesKeyring::new("ns", "raw", &[7; 32]).unwrap();
    let multi = MultiKeyring::new(raw).with_child(strict(&kms, KEY_A));
    let enc = encrypt_with(&multi).unwrap();
    let reasons = reasons_of(decrypt_with(&strict(&kms, KEY_B), enc.encrypted_data_keys()));
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("provider \"ns\""));
    assert!(reasons[1].contains(&format!("data key under {KEY_A} is for another key")), "{reasons:?}");
    assert_eq!(kms.ops(), ["Encrypt"], "no Decrypt call for a key that does not match");
}

#[test]
fn discovery_tries_each_key_in_order_and_honours_the_filter() {
    let kms = FakeKms::new("us-east-1", &[KEY_A, KEY_B, OTHER_ACCOUNT_KEY]);
    let multi = MultiKeyring::new(strict(&kms, OTHER_ACCOUNT_KEY)).with_child(strict(&kms, KEY_B));
    let enc = encrypt_with(&multi).unwrap();
    kms.calls.lock().unwrap().clear();

    let discovery = AwsKmsDiscoveryKeyring::with_api(kms.clone());
    assert!(decrypt_with(&discovery, enc.encrypted_data_keys()).is_ok());
    assert_eq!(kms.calls()[0].params.key_id, OTHER_ACCOUNT_KEY, "KeyId is the provider-info ARN");

    kms.calls.lock().unwrap().clear();
    let filtered = discovery.clone().with_filter(DiscoveryFilter::new("aws", [ACCOUNT]).unwrap());
    assert!(decrypt_with(&filtered, enc.encrypted_data_keys()).is_ok());
    assert_eq!(kms.calls().len(), 1);
    assert_eq!(kms.calls()[0].params.key_id, KEY_B, "the other account's key is never sent to KMS");

    let wrong_account = discovery.clone().with_filter(DiscoveryFilter::new("aws", ["999999999999"]).unwrap());
    let reasons = reasons_of(decrypt_with(&wrong_account, enc.encrypted_data_keys()));
    assert!(reasons.iter().all(|r| r.contains("not one the discovery filter allows (999999999999)")), "{reasons:?}");
    let wrong_partition = discovery.with_filter(DiscoveryFilter::new("aws-cn", [ACCOUNT]).unwrap());
    let reasons = reasons_of(decrypt_with(&wrong_partition, enc.encrypted_data_keys()));
    assert!(reasons[0].contains("partition aws, the discovery filter allows aws-cn"), "{reasons:?}");

    assert!(encrypt_with(&AwsKmsDiscoveryKeyring::with_api(kms.clone())).is_err(), "discovery cannot encrypt");
    assert!(DiscoveryFilter::new("aws", Vec::<String>::new()).is_err());
    assert!(DiscoveryFilter::new("", [ACCOUNT]).is_err());
}

#[test]
fn discovery_continues_after_a_failed_call() {
    let kms = FakeKms::new("us-east-1", &[KEY_A, KEY_B]);
    let multi = MultiKeyring::new(strict(&kms, KEY_A)).with_child(strict(&kms, KEY_B));
    let enc = encrypt_with(&multi).unwrap();
    kms.calls.lock().unwrap().clear();
    kms.fail_next(KmsErrorKind::AccessDenied, "AccessDeniedException");
    let dec = decrypt_with(&AwsKmsDiscoveryKeyring::with_api(kms.clone()), enc.encrypted_data_keys()).unwrap();
    assert_eq!(dec.data_key(), enc.data_key());
    assert_eq!(kms.ops(), ["Decrypt", "Decrypt"], "a failed EDK costs one more call");
}

#[test]
fn mrk_strict_keyring_decrypts_a_replica_edk_with_its_own_key() {
    let east = FakeKms::new("us-east-1", &[MRK_E]);
    let west = FakeKms::new("eu-west-1", &[MRK_W]);
    let enc = encrypt_with(&AwsKmsMrkKeyring::with_api(east.clone(), MRK_E.into()).unwrap()).unwrap();
    assert_eq!(enc.encrypted_data_keys()[0].provider_info, MRK_E.as_bytes());

    let mrk = AwsKmsMrkKeyring::with_api(west.clone(), MRK_W.into()).unwrap();
    let dec = decrypt_with(&mrk, enc.encrypted_data_keys()).unwrap();
    assert_eq!(dec.data_key(), enc.data_key());
    assert_eq!(west.calls()[0].params.key_id, MRK_W, "decrypted by the configured replica");

    let plain = strict(&west, MRK_W);
    let reasons = reasons_of(decrypt_with(&plain, enc.encrypted_data_keys()));
    assert!(reasons[0].contains("is for another key"), "the non-MRK keyring does not match replicas");
}

#[test]
fn mrk_discovery_substitutes_its_region_and_skips_foreign_single_region_keys() {
    let east = FakeKms::new("us-east-1", &[MRK_E, KEY_A]);
    let west = FakeKms::new("eu-west-1", &[MRK_W, KEY_W]);
    let enc = encrypt_with(&MultiKeyring::new(strict(&east, KEY_A)).with_child(strict(&east, MRK_E))).unwrap();

    let discovery = AwsKmsMrkDiscoveryKeyring::with_api(west.clone()).unwrap();
    assert_eq!(discovery.region(), "eu-west-1");
    let dec = decrypt_with(&discovery, enc.encrypted_data_keys()).unwrap();
    assert_eq!(dec.data_key(), enc.data_key());
    let calls = west.calls();
    assert_eq!(calls.len(), 1, "the us-east-1 single-region key is not tried from eu-west-1");
    assert_eq!(calls[0].params.key_id, MRK_W, "the MRK ARN with its region replaced");

    let only_single = encrypt_with(&strict(&east, KEY_A)).unwrap();
    let reasons = reasons_of(decrypt_with(&discovery, only_single.encrypted_data_keys()));
    assert!(reasons[0].contains("single-region key in us-east-1"), "{reasons:?}");

    let filtered = discovery.with_filter(DiscoveryFilter::new("aws", ["999999999999"]).unwrap());
    assert!(decrypt_with(&filtered, enc.encrypted_data_keys()).is_err());
    assert!(encrypt_with(&filtered).is_err(), "discovery cannot encrypt");
}

#[test]
fn debug_output_shows_no_secrets() {
    let kms = FakeKms::new("us-east-1", &[KEY_A]);
    let keyring = strict(&kms, KEY_A).with_grant_tokens(["secret-grant-token"]);
    let debug = format!("{keyring:?}");
    assert!(debug.contains(KEY_A) && !debug.contains("secret-grant-token"), "{debug}");
    let enc = encrypt_with(&keyring).unwrap();
    let debug = format!("{enc:?}");
    assert!(debug.contains("redacted") && !debug.contains("90, 91"), "{debug}");
    let mrk = AwsKmsMrkDiscoveryKeyring::with_api(kms.clone()).unwrap().with_grant_tokens(["secret-grant-token"]);
    assert!(!format!("{mrk:?}").contains("secret-grant-token"));
}

#[test]
fn keyrings_and_their_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let kms = FakeKms::new("us-east-1", &[KEY_A]);
    let keyring = strict(&kms, KEY_A);
    send_sync(&keyring);
    send_sync(&AwsKmsDiscoveryKeyring::with_api(kms.clone()));
    let future = keyring.on_encrypt(EncryptionMaterials::new(SUITE, context(), Default::default()));
    send(&future);
    assert!(AwsKmsKeyring::with_api(kms.clone(), String::new()).is_err());
    assert!(AwsKmsKeyring::with_api(kms.clone(), "arn:aws:kms:bad".into()).is_err());
    let err = AwsKmsKeyring::with_api(kms, KEY_W.into()).unwrap_err();
    assert!(err.to_string().contains("is in region eu-west-1, but the client is for us-east-1"), "{err}");
}
