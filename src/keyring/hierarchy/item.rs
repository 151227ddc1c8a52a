//! Branch key store items, version 1 layout (specification `branch-key-store.md` §Record Format; the
//! Material Providers Library's `Structure.BranchKeyItem?`): what a valid item is, and the KMS encryption
//! context each item's key is bound to (design note §1.5).
//!
//! Everything here is checked before any KMS call: an item that is not valid, is of another
//! `hierarchy-version`, or names another KMS key never reaches KMS.

use std::collections::BTreeMap;

use super::BranchKeyVersion;
use super::ddb_api::{Attr, Item};
use super::store::BranchKeyStoreError;
use crate::keyring::kms::KmsArn;

/// Partition key: the branch key id.
pub(crate) const BRANCH_KEY_ID: &str = "branch-key-id";
/// Sort key: `branch:ACTIVE`, `branch:version:<uuid>` or `beacon:ACTIVE`.
pub(crate) const TYPE: &str = "type";
/// On the active item only: `branch:version:<uuid>` of the active version.
pub(crate) const VERSION: &str = "version";
/// The KMS ciphertext of the 32-byte key.
pub(crate) const ENC: &str = "enc";
/// The KMS key's ARN.
pub(crate) const KMS_ARN: &str = "kms-arn";
/// When the version was created.
pub(crate) const CREATE_TIME: &str = "create-time";
/// The layout version: `1` (a number).
pub(crate) const HIERARCHY_VERSION: &str = "hierarchy-version";
/// Only in the encryption context, never in an item: the logical key store name.
pub(crate) const TABLE_NAME: &str = "tablename";
/// Prefix of the custom encryption context attributes.
pub(crate) const CUSTOM_PREFIX: &str = "aws-crypto-ec:";

/// The `type` of the active item.
pub(crate) const TYPE_ACTIVE: &str = "branch:ACTIVE";
/// The `type` of the beacon key's item.
pub(crate) const TYPE_BEACON: &str = "beacon:ACTIVE";
/// Prefix of a version's `type` (and of the active item's `version`).
pub(crate) const VERSION_PREFIX: &str = "branch:version:";

/// KMS ciphertexts are 1 to 6144 bytes (the Material Providers Library's `KMS.IsValid_CiphertextType`).
const MAX_CIPHERTEXT: usize = 6144;

/// An item that passed the version 1 checks.
#[derive(Debug)]
pub(crate) struct BranchKeyItem {
    /// The version this item holds (for the active item, the active version).
    pub version: BranchKeyVersion,
    /// The encrypted key.
    pub enc: Vec<u8>,
    /// The encryption context the key is bound to: every attribute but `enc`, as text, plus `tablename`.
    pub context: BTreeMap<String, String>,
}

impl BranchKeyItem {
    /// The custom encryption context: the `aws-crypto-ec:` attributes, prefix removed.
    pub fn custom_context(&self) -> BTreeMap<String, String> {
        custom_context(&self.context)
    }
}

/// The custom encryption context in an item's context.
pub(crate) fn custom_context(context: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    context
        .iter()
        .filter_map(|(name, value)| Some((name.strip_prefix(CUSTOM_PREFIX)?.to_owned(), value.clone())))
        .collect()
}

/// Which item the store asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wanted<'a> {
    /// `branch:ACTIVE`.
    Active,
    /// `branch:version:<version>`.
    Version(&'a BranchKeyVersion),
}

impl Wanted<'_> {
    /// The sort key.
    pub fn type_value(&self) -> String {
        match self {
            Self::Active => TYPE_ACTIVE.to_owned(),
            Self::Version(version) => format!("{VERSION_PREFIX}{version}"),
        }
    }
}

/// Checks `item`, read for branch key `branch_key_id` as `wanted`, against the version 1 layout and the
/// store's KMS key, and builds the encryption context of its key under `logical_name`.
///
/// # Errors
///
/// [`BranchKeyStoreError::UnsupportedHierarchyVersion`] for a `hierarchy-version` other than 1 (checked
/// first: another layout is not "invalid"); [`BranchKeyStoreError::InvalidItem`] for anything else wrong;
/// [`BranchKeyStoreError::KmsKeyMismatch`] for a valid item under another KMS key.
pub(crate) fn check(
    item: Item,
    branch_key_id: &str,
    wanted: Wanted<'_>,
    logical_name: &str,
    kms_key_arn: &str,
) -> Result<BranchKeyItem, BranchKeyStoreError> {
    let invalid = |reason: String| BranchKeyStoreError::InvalidItem { branch_key_id: branch_key_id.to_owned(), reason };
    match item.get(HIERARCHY_VERSION) {
        Some(Attr::N(n)) if n == "1" => {}
        Some(Attr::N(n)) => {
            return Err(BranchKeyStoreError::UnsupportedHierarchyVersion {
                branch_key_id: branch_key_id.to_owned(),
                hierarchy_version: n.clone(),
            });
        }
        other => return Err(invalid(format!("{HIERARCHY_VERSION} is {}, not a number", describe(other)))),
    }
    if item.contains_key(TABLE_NAME) {
        return Err(invalid(format!("it has a {TABLE_NAME} attribute")));
    }
    let mut context = BTreeMap::new();
    let mut enc = None;
    for (name, value) in item {
        match (name.as_str(), value) {
            (ENC, Attr::B(bytes)) if (1..=MAX_CIPHERTEXT).contains(&bytes.len()) => enc = Some(bytes),
            (ENC, Attr::B(bytes)) => return Err(invalid(format!("{ENC} is {} bytes, not 1 to 6144", bytes.len()))),
            (HIERARCHY_VERSION, Attr::N(n)) => {
                context.insert(name, n);
            }
            (_, Attr::S(text)) if name != ENC => {
                context.insert(name, text);
            }
            (_, value) => return Err(invalid(format!("{name} is {}", describe(Some(&value))))),
        }
    }
    let enc = enc.ok_or_else(|| invalid(format!("{ENC} is missing")))?;
    for required in [BRANCH_KEY_ID, TYPE, KMS_ARN, CREATE_TIME] {
        if !context.contains_key(required) {
            return Err(invalid(format!("{required} is missing or not a string")));
        }
    }
    if context[BRANCH_KEY_ID] != branch_key_id {
        return Err(BranchKeyStoreError::WrongBranchKey {
            branch_key_id: branch_key_id.to_owned(),
            version: match wanted {
                Wanted::Active => None,
                Wanted::Version(version) => Some(*version),
            },
        });
    }
    let item_type = &context[TYPE];
    let version_text = match (wanted, item_type.as_str(), context.get(VERSION)) {
        (Wanted::Active, TYPE_ACTIVE, Some(version)) => version
            .strip_prefix(VERSION_PREFIX)
            .ok_or_else(|| invalid(format!("{VERSION} does not start with {VERSION_PREFIX}")))?,
        (Wanted::Active, TYPE_ACTIVE, None) => return Err(invalid(format!("the active item has no {VERSION}"))),
        (Wanted::Version(_), _, Some(_)) => return Err(invalid(format!("a version item with a {VERSION}"))),
        (Wanted::Version(_), item_type, None) if item_type == wanted.type_value() => &item_type[VERSION_PREFIX.len()..],
        _ => return Err(invalid(format!("{TYPE} is {item_type:?}, not {:?}", wanted.type_value()))),
    };
    let version: BranchKeyVersion =
        version_text.parse().map_err(|_| invalid(format!("version {version_text:?} is not a UUID")))?;
    let item_key_arn = &context[KMS_ARN];
    if KmsArn::parse_key(item_key_arn).is_err() {
        return Err(invalid(format!("{KMS_ARN} {item_key_arn:?} is not a KMS key ARN")));
    }
    if item_key_arn != kms_key_arn {
        return Err(BranchKeyStoreError::KmsKeyMismatch {
            branch_key_id: branch_key_id.to_owned(),
            item_key_arn: item_key_arn.clone(),
            configured_key_arn: kms_key_arn.to_owned(),
        });
    }
    context.insert(TABLE_NAME.to_owned(), logical_name.to_owned());
    Ok(BranchKeyItem { version, enc, context })
}

/// The type of an attribute, for an error.
fn describe(value: Option<&Attr>) -> &'static str {
    match value {
        None => "missing",
        Some(Attr::S(_)) => "a string",
        Some(Attr::N(_)) => "a number",
        Some(Attr::B(_)) => "binary",
        Some(Attr::Other(name)) => name,
    }
}

/// The item that stores `enc` under `context` (an encryption context built by this module): every pair but
/// `tablename` as an attribute, `hierarchy-version` as a number.
pub(crate) fn item_of(context: &BTreeMap<String, String>, enc: Vec<u8>) -> Item {
    let mut item: Item = context
        .iter()
        .filter(|(name, _)| name.as_str() != TABLE_NAME)
        .map(|(name, value)| {
            let value = if name == HIERARCHY_VERSION { Attr::N(value.clone()) } else { Attr::S(value.clone()) };
            (name.clone(), value)
        })
        .collect();
    item.insert(ENC.to_owned(), Attr::B(enc));
    item
}

/// The encryption context of a new version item (`DECRYPT_ONLY`): branch key id, type, creation time,
/// logical name, KMS key, hierarchy version and the custom context under its prefix.
pub(crate) fn version_context(
    branch_key_id: &str,
    version: &BranchKeyVersion,
    create_time: &str,
    logical_name: &str,
    kms_key_arn: &str,
    custom: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut context: BTreeMap<String, String> =
        custom.iter().map(|(name, value)| (format!("{CUSTOM_PREFIX}{name}"), value.clone())).collect();
    for (name, value) in [
        (BRANCH_KEY_ID, branch_key_id.to_owned()),
        (TYPE, format!("{VERSION_PREFIX}{version}")),
        (CREATE_TIME, create_time.to_owned()),
        (TABLE_NAME, logical_name.to_owned()),
        (KMS_ARN, kms_key_arn.to_owned()),
        (HIERARCHY_VERSION, "1".to_owned()),
    ] {
        context.insert(name.to_owned(), value);
    }
    context
}

/// The active item's context for the version whose context is `version_context`.
pub(crate) fn active_context(version_context: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut context = version_context.clone();
    let version = context.insert(TYPE.to_owned(), TYPE_ACTIVE.to_owned()).unwrap_or_default();
    context.insert(VERSION.to_owned(), version);
    context
}

/// The beacon key's context for the version whose context is `version_context`.
pub(crate) fn beacon_context(version_context: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut context = version_context.clone();
    context.insert(TYPE.to_owned(), TYPE_BEACON.to_owned());
    context
}

/// A timestamp as the Material Providers Library writes `create-time`: ISO 8601, UTC, microseconds
/// (`2026-12-07T01:02:03.456789Z`).
pub(crate) fn create_time(now: std::time::SystemTime) -> String {
    let since = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/e9ce18a3-edb5-4272-9f86-1cacb7997ff6";
    const V: &str = "0f63fb6b-8a4e-4e8c-9c4f-4e8ae9a1c6f1";

    fn active_item() -> Item {
        let version = V.parse().unwrap();
        let custom = BTreeMap::from([("tenant".to_owned(), "7".to_owned())]);
        let context = version_context("bk", &version, "2026-12-07T00:00:00.000000Z", "store", ARN, &custom);
        item_of(&active_context(&context), vec![1, 2, 3])
    }

    #[test]
    fn a_valid_active_item_gives_its_context_with_the_logical_name() {
        let checked = check(active_item(), "bk", Wanted::Active, "store", ARN).unwrap();
        assert_eq!(checked.version.to_string(), V);
        assert_eq!(checked.enc, [1, 2, 3]);
        assert_eq!(checked.context[TABLE_NAME], "store");
        assert_eq!(checked.context[HIERARCHY_VERSION], "1");
        assert_eq!(checked.context[VERSION], format!("branch:version:{V}"));
        assert_eq!(checked.context["aws-crypto-ec:tenant"], "7");
        assert_eq!(checked.custom_context(), BTreeMap::from([("tenant".to_owned(), "7".to_owned())]));
        assert!(!checked.context.contains_key(ENC));
    }

    #[test]
    fn every_layout_fault_is_a_typed_refusal() {
        let err = |edit: &dyn Fn(&mut Item)| {
            let mut item = active_item();
            edit(&mut item);
            check(item, "bk", Wanted::Active, "store", ARN).unwrap_err()
        };
        let unsupported = err(&|item| {
            item.insert(HIERARCHY_VERSION.into(), Attr::N("2".into()));
        });
        assert!(
            matches!(&unsupported, BranchKeyStoreError::UnsupportedHierarchyVersion { hierarchy_version, .. } if hierarchy_version == "2")
        );
        let other_key = err(&|item| {
            item.insert(KMS_ARN.into(), Attr::S(ARN.replace("e9ce", "aaaa")));
        });
        assert!(matches!(other_key, BranchKeyStoreError::KmsKeyMismatch { .. }), "{other_key}");
        type Edit = dyn Fn(&mut Item);
        let invalid: [(&str, &Edit); 8] = [
            ("hierarchy-version as a string", &|item| {
                item.insert(HIERARCHY_VERSION.into(), Attr::S("1".into()));
            }),
            ("no enc", &|item| {
                item.remove(ENC);
            }),
            ("empty enc", &|item| {
                item.insert(ENC.into(), Attr::B(Vec::new()));
            }),
            ("a tablename", &|item| {
                item.insert(TABLE_NAME.into(), Attr::S("store".into()));
            }),
            ("a list", &|item| {
                item.insert("extra".into(), Attr::Other("L"));
            }),
            ("no version", &|item| {
                item.remove(VERSION);
            }),
            ("a beacon", &|item| {
                item.insert(TYPE.into(), Attr::S(TYPE_BEACON.into()));
            }),
            ("not a UUID", &|item| {
                item.insert(VERSION.into(), Attr::S("branch:version:\x1b[31m".into()));
            }),
        ];
        for (what, edit) in invalid {
            let refused = err(edit);
            assert!(matches!(refused, BranchKeyStoreError::InvalidItem { .. }), "{what}: {refused}");
            assert!(!refused.to_string().contains('\x1b'), "{what}: {refused}");
        }
    }

    #[test]
    fn a_version_item_must_be_the_version_asked_for() {
        let version: BranchKeyVersion = V.parse().unwrap();
        let context = version_context("bk", &version, "t", "store", ARN, &BTreeMap::new());
        let item = item_of(&context, vec![9]);
        assert!(check(item.clone(), "bk", Wanted::Version(&version), "store", ARN).is_ok());
        let other: BranchKeyVersion = V.replace("0f63", "1f63").parse().unwrap();
        let refused = check(item.clone(), "bk", Wanted::Version(&other), "store", ARN).unwrap_err();
        assert!(matches!(refused, BranchKeyStoreError::InvalidItem { .. }), "{refused}");
        let refused = check(item, "other", Wanted::Version(&version), "store", ARN).unwrap_err();
        assert!(matches!(refused, BranchKeyStoreError::WrongBranchKey { .. }), "{refused}");
    }

    #[test]
    fn create_time_is_iso_8601_with_microseconds() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::new(1_796_605_323, 456_789_000);
        // date -u -d @1796605323 +%Y-%m-%dT%H:%M:%S: 2026-12-07T01:02:03
        assert_eq!(create_time(at), "2026-12-07T01:02:03.456789Z");
        assert_eq!(
            create_time(std::time::UNIX_EPOCH + std::time::Duration::new(951_782_400, 0)),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}
