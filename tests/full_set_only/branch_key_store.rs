//! The DynamoDB branch key store (issue #29) over moto's DynamoDB and KMS: create the table, create and
//! version branch keys, read them, and the Hierarchical keyring through the store; then hostile store
//! items, each refused with a typed error, and, through the counting proxy, no DynamoDB or KMS call for
//! what can be refused first.
#![cfg(feature = "hierarchy-ddb")]

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use kms_envelope::keyring::block_on;
use kms_envelope::keyring::hierarchy::{
    BranchKeyMaterials, BranchKeyStore, BranchKeyStoreError, BranchKeyVersion, DynamoDbBranchKeyStore,
    HierarchicalKeyring, StaticBranchKeyStore,
};
use kms_envelope::{DecryptOptions, EncryptOptions, Error, KmsClients};

use crate::support::{CountingProxy, Moto, run};

const GET_ITEM: &str = "DynamoDB_20120810.GetItem";
const TRANSACT: &str = "DynamoDB_20120810.TransactWriteItems";
const TTL: Duration = Duration::from_secs(600);

/// A fresh table and KMS key in moto, and a store on them whose calls go through a counting proxy.
struct Fixture {
    moto: Moto,
    proxy: CountingProxy,
    key: String,
    table: String,
}

impl Fixture {
    fn new() -> Option<Self> {
        let moto = Moto::get()?;
        let proxy = CountingProxy::start(&moto.endpoint);
        let key = moto.create_key();
        let table = format!("branch-keys-{}", key.rsplit('/').next().unwrap());
        let fixture = Self { moto, proxy, key, table };
        assert!(fixture.direct_store("store").create_table_blocking().unwrap(), "a new table");
        assert!(!fixture.direct_store("store").create_table_blocking().unwrap(), "the table exists now");
        Some(fixture)
    }

    /// A store called `name` whose calls go through the proxy.
    fn store(&self, name: &str) -> DynamoDbBranchKeyStore {
        DynamoDbBranchKeyStore::from_clients(&self.proxy.clients(), &self.table, &self.key, name).unwrap()
    }

    /// A store called `name` that calls moto directly (uncounted).
    fn direct_store(&self, name: &str) -> DynamoDbBranchKeyStore {
        DynamoDbBranchKeyStore::from_clients(&self.moto.clients(), &self.table, &self.key, name).unwrap()
    }

    /// Calls through the proxy to KMS (every operation but DynamoDB's).
    fn kms_calls(&self) -> usize {
        ["Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncrypt"]
            .iter()
            .map(|operation| self.proxy.calls(operation))
            .sum()
    }

    /// The item (`branch-key-id`, `type`) as moto holds it.
    fn item(&self, id: &str, item_type: &str) -> Option<std::collections::HashMap<String, AttributeValue>> {
        let ddb = aws_sdk_dynamodb::Client::new(&self.moto.config());
        let call = ddb
            .get_item()
            .table_name(&self.table)
            .key("branch-key-id", AttributeValue::S(id.into()))
            .key("type", AttributeValue::S(item_type.into()))
            .send();
        run(call).unwrap().item
    }

    /// Sets attribute `name` of the active item of `id` to `value`, as someone with write access could.
    fn edit_active(&self, id: &str, name: &str, value: AttributeValue) {
        let ddb = aws_sdk_dynamodb::Client::new(&self.moto.config());
        let call = ddb
            .update_item()
            .table_name(&self.table)
            .key("branch-key-id", AttributeValue::S(id.into()))
            .key("type", AttributeValue::S("branch:ACTIVE".into()))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", name)
            .expression_attribute_values(":v", value)
            .send();
        run(call).unwrap();
    }
}

fn active(store: &DynamoDbBranchKeyStore, id: &str) -> Result<BranchKeyMaterials, BranchKeyStoreError> {
    block_on(store.get_active(id))
}

fn roundtrip(encrypt_with: &HierarchicalKeyring, decrypt_with: &HierarchicalKeyring, plaintext: &[u8]) {
    let message = kms_envelope::encrypt(encrypt_with, &EncryptOptions::new(), plaintext).unwrap();
    let decrypted = kms_envelope::decrypt(decrypt_with, &DecryptOptions::new(), &message).unwrap();
    assert_eq!(&decrypted.plaintext[..], plaintext);
}

#[test]
fn create_key_writes_the_three_items_and_get_active_and_get_version_read_them() {
    let Some(f) = Fixture::new() else { return };
    let store = f.store("store");
    let id = store.create_key_blocking(None, &BTreeMap::new()).unwrap();
    assert!(id.parse::<BranchKeyVersion>().is_ok(), "a random UUID as id: {id}");
    assert_eq!(
        (f.proxy.calls("GenerateDataKeyWithoutPlaintext"), f.proxy.calls("ReEncrypt"), f.proxy.calls(TRANSACT)),
        (2, 1, 1),
        "CreateKey: the key, its active copy, the beacon key, one transaction"
    );

    let materials = active(&store, &id).unwrap();
    let version = *materials.version();
    let stored = f.item(&id, "branch:ACTIVE").expect("the active item");
    assert_eq!(stored["version"], AttributeValue::S(format!("branch:version:{version}")));
    assert_eq!(stored["hierarchy-version"], AttributeValue::N("1".into()));
    assert_eq!(stored["kms-arn"], AttributeValue::S(f.key.clone()));
    assert!(!stored.contains_key("tablename"));
    assert!(f.item(&id, &format!("branch:version:{version}")).is_some(), "the version item");
    assert!(f.item(&id, "beacon:ACTIVE").is_some(), "the beacon item");

    let again = block_on(store.get_version(&id, &version)).unwrap();
    assert_eq!((again.branch_key_id(), again.version()), (id.as_str(), &version));
    assert_eq!((f.proxy.calls(GET_ITEM), f.proxy.calls("Decrypt")), (2, 2));

    // The same key: what one keyring (active version) encrypts, another (that version) decrypts.
    let writer = HierarchicalKeyring::new(f.store("store"), &id, TTL).unwrap();
    let reader = HierarchicalKeyring::new(f.store("store"), &id, TTL).unwrap();
    roundtrip(&writer, &reader, b"through DynamoDB");
}

#[test]
fn a_custom_id_needs_a_context_and_the_context_is_kept_on_every_version() {
    let Some(f) = Fixture::new() else { return };
    let store = f.store("store");
    let refused = block_on(store.create_key(Some("tenant-7"), &BTreeMap::new())).unwrap_err();
    assert!(matches!(refused, BranchKeyStoreError::InvalidRequest(_)), "{refused}");
    assert_eq!(f.kms_calls() + f.proxy.calls(TRANSACT), 0, "refused before any call");

    let context = BTreeMap::from([("department".to_owned(), "payroll".to_owned())]);
    assert_eq!(store.create_key_blocking(Some("tenant-7"), &context).unwrap(), "tenant-7");
    let stored = f.item("tenant-7", "branch:ACTIVE").unwrap();
    assert_eq!(stored["aws-crypto-ec:department"], AttributeValue::S("payroll".into()));
    assert_eq!(active(&store, "tenant-7").unwrap().custom_context(), &context);

    let taken = block_on(store.create_key(Some("tenant-7"), &context)).unwrap_err();
    assert!(matches!(taken, BranchKeyStoreError::AlreadyExists { .. }), "{taken}");

    let version = store.version_key_blocking("tenant-7").unwrap();
    let materials = active(&store, "tenant-7").unwrap();
    assert_eq!((materials.version(), materials.custom_context()), (&version, &context));
}

#[test]
fn version_key_makes_a_new_active_version_and_old_messages_still_decrypt() {
    let Some(f) = Fixture::new() else { return };
    let store = f.store("store");
    let id = store.create_key_blocking(None, &BTreeMap::new()).unwrap();
    let old = *active(&store, &id).unwrap().version();
    let writer = HierarchicalKeyring::new(f.store("store"), &id, TTL).unwrap();
    let old_message = kms_envelope::encrypt(&writer, &EncryptOptions::new(), b"old").unwrap();

    let reencrypts = f.proxy.calls("ReEncrypt");
    let new = store.version_key_blocking(&id).unwrap();
    assert_ne!(new, old);
    assert_eq!(f.proxy.calls("ReEncrypt") - reencrypts, 2, "one to authenticate the active item, one for the new");
    assert_eq!(active(&store, &id).unwrap().version(), &new);
    assert!(f.item(&id, &format!("branch:version:{old}")).is_some(), "the old version stays");

    let fresh = HierarchicalKeyring::new(f.store("store"), &id, TTL).unwrap();
    let decrypted = kms_envelope::decrypt(&fresh, &DecryptOptions::new(), &old_message).unwrap();
    assert_eq!(&decrypted.plaintext[..], b"old");
    let new_message = kms_envelope::encrypt(&fresh, &EncryptOptions::new(), b"new").unwrap();
    // The EDK carries the version's 16 bytes: the new message names the new version.
    let at =
        |message: &[u8], version: &BranchKeyVersion| message.windows(16).any(|window| window == version.as_bytes());
    assert!(at(&new_message, &new) && !at(&new_message, &old));
    assert!(at(&old_message, &old));
}

#[test]
fn the_keyring_fetches_each_version_once_per_ttl() {
    let Some(f) = Fixture::new() else { return };
    let id = f.direct_store("store").create_key_blocking(None, &BTreeMap::new()).unwrap();
    let writer = HierarchicalKeyring::new(f.store("store"), &id, TTL).unwrap();
    let reader = HierarchicalKeyring::new(f.store("store"), &id, TTL).unwrap();
    let messages: Vec<Vec<u8>> =
        (0..5).map(|i| kms_envelope::encrypt(&writer, &EncryptOptions::new(), &[i; 100]).unwrap()).collect();
    for (i, message) in messages.iter().enumerate() {
        let decrypted = kms_envelope::decrypt(&reader, &DecryptOptions::new(), message).unwrap();
        assert_eq!(decrypted.plaintext[..], [i as u8; 100]);
    }
    assert_eq!((f.proxy.calls(GET_ITEM), f.proxy.calls("Decrypt")), (2, 2), "one per keyring");
}

// ------------------------------------------------------------------------------------ hostile

#[test]
fn an_id_or_version_not_in_the_store_costs_one_get_item_and_no_kms_call() {
    let Some(f) = Fixture::new() else { return };
    let store = f.store("store");
    let missing = active(&store, "no-such-key").unwrap_err();
    assert!(matches!(&missing, BranchKeyStoreError::NotFound { version: None, .. }), "{missing}");
    assert_eq!((f.proxy.calls(GET_ITEM), f.kms_calls()), (1, 0));

    // A message under a version the store does not hold (written with an in-memory copy of the id).
    let id = f.direct_store("store").create_key_blocking(None, &BTreeMap::new()).unwrap();
    let stray: BranchKeyVersion = "0f63fb6b-8a4e-4e8c-9c4f-4e8ae9a1c6f1".parse().unwrap();
    let offline =
        StaticBranchKeyStore::new("store").with_active(BranchKeyMaterials::new(&id, stray, &[7; 32]).unwrap());
    let writer = HierarchicalKeyring::new(offline, &id, TTL).unwrap();
    let message = kms_envelope::encrypt(&writer, &EncryptOptions::new(), b"stray").unwrap();
    let reader = HierarchicalKeyring::new(f.store("store"), &id, TTL).unwrap();
    let err = kms_envelope::decrypt(&reader, &DecryptOptions::new(), &message).unwrap_err();
    assert!(matches!(err, Error::NoDataKeyDecrypted { .. }), "{err}");
    assert!(err.to_string().contains("not found"), "{err}");
    assert_eq!((f.proxy.calls(GET_ITEM), f.kms_calls()), (2, 0));
}

#[test]
fn an_edited_item_or_another_logical_name_is_refused_by_kms() {
    let Some(f) = Fixture::new() else { return };
    let id = f.direct_store("store").create_key_blocking(None, &BTreeMap::new()).unwrap();
    let renamed = active(&f.store("other-name"), &id).unwrap_err();
    assert!(matches!(renamed, BranchKeyStoreError::ItemContextMismatch { .. }), "{renamed}");
    assert_eq!(f.proxy.calls("Decrypt"), 1);

    // moto binds the context as concatenated k‖v pairs: change a value's bytes, not a boundary.
    f.edit_active(&id, "create-time", AttributeValue::S("2001-01-01T00:00:00.000000Z".into()));
    let edited = active(&f.store("store"), &id).unwrap_err();
    assert!(matches!(edited, BranchKeyStoreError::ItemContextMismatch { .. }), "{edited}");
    let keyring = HierarchicalKeyring::new(f.store("store"), &id, TTL).unwrap();
    let err = kms_envelope::encrypt(&keyring, &EncryptOptions::new(), b"x").unwrap_err();
    assert!(matches!(err, Error::Keyring(_)) && err.to_string().contains("KMS refused the store item"), "{err}");
}

#[test]
fn hierarchy_version_2_is_refused_before_any_kms_call() {
    let Some(f) = Fixture::new() else { return };
    let id = f.direct_store("store").create_key_blocking(None, &BTreeMap::new()).unwrap();
    f.edit_active(&id, "hierarchy-version", AttributeValue::N("2".into()));
    let refused = active(&f.store("store"), &id).unwrap_err();
    assert!(
        matches!(&refused, BranchKeyStoreError::UnsupportedHierarchyVersion { hierarchy_version, .. } if hierarchy_version == "2"),
        "{refused}"
    );
    assert_eq!((f.proxy.calls(GET_ITEM), f.kms_calls()), (1, 0));
    let racer = f.store("store");
    let refused = block_on(racer.version_key(&id)).unwrap_err();
    assert!(matches!(refused, BranchKeyStoreError::UnsupportedHierarchyVersion { .. }), "{refused}");
    assert_eq!((f.kms_calls(), f.proxy.calls(TRANSACT)), (0, 0), "VersionKey refuses it before KMS too");
}

#[test]
fn an_item_under_another_kms_key_is_refused_before_any_kms_call() {
    let Some(f) = Fixture::new() else { return };
    let id = f.direct_store("store").create_key_blocking(None, &BTreeMap::new()).unwrap();
    let other = f.moto.create_key();
    f.edit_active(&id, "kms-arn", AttributeValue::S(other.clone()));
    let refused = active(&f.store("store"), &id).unwrap_err();
    match &refused {
        BranchKeyStoreError::KmsKeyMismatch { item_key_arn, configured_key_arn, .. } => {
            assert_eq!((item_key_arn, configured_key_arn), (&other, &f.key));
        }
        _ => panic!("{refused}"),
    }
    assert_eq!((f.proxy.calls(GET_ITEM), f.kms_calls()), (1, 0));
}

#[test]
fn version_key_racing_another_writer_writes_nothing() {
    let Some(f) = Fixture::new() else { return };
    let id = f.direct_store("store").create_key_blocking(None, &BTreeMap::new()).unwrap();
    // Another writer versions the key between our read (and KMS authentication) and our write.
    let racer = f.direct_store("store");
    let (racer_id, won) = (id.clone(), std::sync::Arc::new(std::sync::Mutex::new(None)));
    let won_by = won.clone();
    f.proxy.before(TRANSACT, move || {
        *won_by.lock().unwrap() = Some(racer.version_key_blocking(&racer_id).unwrap());
    });
    let lost = block_on(f.store("store").version_key(&id)).unwrap_err();
    assert!(matches!(lost, BranchKeyStoreError::VersionRace { .. }), "{lost}");
    assert_eq!(lost.retry(), kms_envelope::Retry::Later);
    let winner = won.lock().unwrap().expect("the racer versioned the key");
    assert_eq!(active(&f.direct_store("store"), &id).unwrap().version(), &winner, "the racer's version is active");
}

#[test]
fn the_store_needs_a_key_arn_and_escapes_what_items_say() {
    let Some(f) = Fixture::new() else { return };
    let clients: KmsClients = f.proxy.clients();
    let alias = DynamoDbBranchKeyStore::from_clients(&clients, &f.table, "alias/branch-keys", "store").unwrap_err();
    assert!(matches!(alias, Error::Config(_)), "{alias}");
    let id = f.direct_store("store").create_key_blocking(None, &BTreeMap::new()).unwrap();
    f.edit_active(&id, "version", AttributeValue::S("branch:version:\u{1b}]0;owned\u{7}".into()));
    let refused = active(&f.store("store"), &id).unwrap_err();
    assert!(matches!(refused, BranchKeyStoreError::InvalidItem { .. }), "{refused}");
    let text = refused.to_string();
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text:?}");
    assert_eq!(f.kms_calls(), 0);
}
