//! AWS KMS key identifiers: the ARN grammar, multi-Region keys and the "MRK match" rule (format notes §11).

use std::fmt;
use std::str::FromStr;

use crate::escape::{Escaped, clipped};

/// The AWS partitions this crate knows, with the region prefixes of each (the AWS SDKs' `partitions.json`:
/// a region of partition `P` is `<prefix>-<name>-<number>` for one of `P`'s prefixes).
///
/// A region outside these is refused, in configuration and in messages alike: the AWS SDK for Rust builds
/// the KMS host name from the region without checking it, so an unchecked region read from a message
/// chooses the host that receives the caller's signed request. A new partition or region prefix needs a
/// release of this crate.
const PARTITIONS: [(&str, &[&str]); 8] = [
    ("aws", &["us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx"]),
    ("aws-cn", &["cn"]),
    ("aws-us-gov", &["us-gov"]),
    ("aws-iso", &["us-iso"]),
    ("aws-iso-b", &["us-isob"]),
    ("aws-iso-e", &["eu-isoe"]),
    ("aws-iso-f", &["us-isof"]),
    ("aws-eusc", &["eusc-de"]),
];

/// Whether `partition` is one of the AWS partitions this crate knows (`aws`, `aws-cn`, `aws-us-gov`, the
/// `aws-iso*` partitions, `aws-eusc`).
pub fn is_known_partition(partition: &str) -> bool {
    PARTITIONS.iter().any(|(id, _)| *id == partition)
}

/// A well-formed AWS region name, such as `us-east-1` or `cn-northwest-1`, in a known partition.
///
/// [`parse`](Self::parse) is the only way to make one, so a `Region` is safe to put in a host name: only
/// lowercase ASCII letters, digits and `-`, at most [`MAX_LEN`](Self::MAX_LEN) bytes, in the shape
/// `<partition prefix>-<name>-<number>`. It is the only region type a KMS client is built from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region {
    name: String,
    partition: &'static str,
}

impl Region {
    /// The longest region name accepted (today's longest, `ap-southeast-5`-like names, are about 15).
    pub const MAX_LEN: usize = 32;

    /// Checks `name` against the region grammar of the known partitions.
    ///
    /// # Errors
    ///
    /// [`InvalidRegion`] when `name` is empty, longer than [`MAX_LEN`](Self::MAX_LEN), holds a byte other
    /// than a lowercase letter, digit or `-`, or is not `<prefix>-<name>-<number>` with a known partition's
    /// prefix.
    pub fn parse(name: &str) -> Result<Self, InvalidRegion> {
        let invalid = |reason| InvalidRegion { input: clipped(name).into_owned(), reason };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(invalid("it is longer than any AWS region name"));
        }
        if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(invalid("only lowercase letters, digits and '-' may appear in a region name"));
        }
        let partition = PARTITIONS
            .iter()
            .find(|(_, prefixes)| {
                prefixes.iter().any(|prefix| {
                    name.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('-')).is_some_and(is_name_and_number)
                })
            })
            .map(|(id, _)| *id)
            .ok_or_else(|| invalid("it is not <prefix>-<name>-<number> with the prefix of a known AWS partition"))?;
        Ok(Self { name: name.to_owned(), partition })
    }

    /// The region name.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The partition the region belongs to (`aws`, `aws-cn`, ...).
    pub fn partition(&self) -> &'static str {
        self.partition
    }
}

/// `east-1`: a name of lowercase letters, `-`, and a number of one or two digits.
fn is_name_and_number(rest: &str) -> bool {
    let Some((name, number)) = rest.split_once('-') else { return false };
    (1..=16).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase())
        && (1..=2).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for Region {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl FromStr for Region {
    type Err = InvalidRegion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why a string is not an AWS region name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRegion {
    input: String,
    reason: &'static str,
}

impl fmt::Display for InvalidRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\" is not an AWS region: {}", Escaped(&self.input), self.reason)
    }
}

impl std::error::Error for InvalidRegion {}

/// What a KMS ARN names: a key or an alias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// `key/<key id>`.
    Key,
    /// `alias/<alias name>`. Never a multi-Region key, whatever the name.
    Alias,
}

impl ResourceType {
    fn as_str(self) -> &'static str {
        match self {
            ResourceType::Key => "key",
            ResourceType::Alias => "alias",
        }
    }
}

/// A parsed and validated AWS KMS ARN: `arn:<partition>:kms:<region>:<account>:<key|alias>/<id>`.
///
/// Every field is checked, because a message's ARN is read before anything is authenticated and its region
/// picks the KMS endpoint: the partition is a known one, the region a [`Region`] of that partition, the
/// account twelve digits, and the id a key id (a UUID, or `mrk-` and 32 hex digits for a multi-Region key)
/// or an alias name (1 to 256 letters, digits, `/`, `_` and `-`).
///
/// ```
/// use kms_envelope::keyring::kms::KmsArn;
///
/// # fn main() -> Result<(), kms_envelope::keyring::kms::InvalidArn> {
/// let arn = KmsArn::parse("arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab")?;
/// assert_eq!(arn.region().as_str(), "eu-west-1");
/// assert!(arn.is_multi_region_key());
///
/// // A region is part of the KMS host name: one that is not an AWS region is refused.
/// assert!(KmsArn::parse("arn:aws:kms:evil.example:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab").is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KmsArn {
    partition: &'static str,
    region: Region,
    account: String,
    resource_type: ResourceType,
    resource_id: String,
}

/// Why a string is not a KMS ARN. Its `Display` shows the input escaped and clipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidArn {
    input: String,
    reason: String,
}

impl fmt::Display for InvalidArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\" is not an AWS KMS ARN: {}", Escaped(&self.input), self.reason)
    }
}

impl std::error::Error for InvalidArn {}

impl KmsArn {
    /// The longest ARN accepted: the longest alias ARN KMS allows, with room to spare.
    pub const MAX_LEN: usize = 512;

    /// Parses and validates `input` (see the type's documentation for what is checked).
    ///
    /// # Errors
    ///
    /// [`InvalidArn`], whose reason names the first check that failed: longer than
    /// [`MAX_LEN`](Self::MAX_LEN), not six `:`-separated non-empty parts, not `arn`, an unknown partition,
    /// a service other than `kms`, an invalid region or one outside the partition, an account that is not
    /// twelve digits, a resource that is not `key/<id>` or `alias/<name>` with a valid id or name.
    pub fn parse(input: &str) -> Result<Self, InvalidArn> {
        let invalid = |reason: &str| InvalidArn { input: clipped(input).into_owned(), reason: reason.to_owned() };
        if input.len() > Self::MAX_LEN {
            return Err(invalid("it is longer than any KMS ARN"));
        }
        let parts: Vec<&str> = input.split(':').collect();
        if parts.len() != 6 {
            return Err(invalid("expected six ':'-separated parts"));
        }
        if parts.iter().any(|part| part.is_empty()) {
            return Err(invalid("a part is empty"));
        }
        if parts[0] != "arn" {
            return Err(invalid("it does not start with \"arn\""));
        }
        let partition = PARTITIONS
            .iter()
            .map(|(id, _)| *id)
            .find(|id| *id == parts[1])
            .ok_or_else(|| invalid("the partition is not a known AWS partition"))?;
        if parts[2] != "kms" {
            return Err(invalid("the service is not \"kms\""));
        }
        let region = Region::parse(parts[3]).map_err(|err| invalid(&format!("the region: {}", err.reason)))?;
        if region.partition() != partition {
            return Err(invalid(&format!("region {region} is not in partition {partition}")));
        }
        let account = parts[4];
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the account is not twelve digits"));
        }
        let (kind, id) = parts[5].split_once('/').ok_or_else(|| invalid("the resource has no '/'"))?;
        let resource_type = match kind {
            "key" => ResourceType::Key,
            "alias" => ResourceType::Alias,
            _ => return Err(invalid("the resource type is neither \"key\" nor \"alias\"")),
        };
        if id.is_empty() {
            return Err(invalid("the resource id is empty"));
        }
        match resource_type {
            ResourceType::Key if !is_key_id(id) => {
                return Err(invalid("the key id is neither a UUID nor mrk- and 32 hex digits"));
            }
            ResourceType::Alias if !is_alias_name(id) => {
                return Err(invalid("the alias name is not 1 to 256 letters, digits, '/', '_' or '-'"));
            }
            _ => {}
        }
        Ok(Self { partition, region, account: account.to_owned(), resource_type, resource_id: id.to_owned() })
    }

    /// Parses `input` and requires a key ARN (not an alias ARN), as every encrypted data key holds.
    ///
    /// # Errors
    ///
    /// [`InvalidArn`] as [`parse`](Self::parse) says, or when `input` is an alias ARN.
    pub fn parse_key(input: &str) -> Result<Self, InvalidArn> {
        let arn = Self::parse(input)?;
        if arn.resource_type != ResourceType::Key {
            return Err(InvalidArn {
                input: clipped(input).into_owned(),
                reason: "it names an alias, not a key".into(),
            });
        }
        Ok(arn)
    }

    /// The partition: `aws`, `aws-cn`, `aws-us-gov`, ...
    pub fn partition(&self) -> &str {
        self.partition
    }

    /// The region, e.g. `us-east-1`.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The account id.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Key or alias.
    pub fn resource_type(&self) -> ResourceType {
        self.resource_type
    }

    /// The key id or alias name (without `key/` or `alias/`).
    pub fn resource_id(&self) -> &str {
        &self.resource_id
    }

    /// Whether this names a multi-Region key: a key (never an alias) whose id starts with `mrk-`.
    pub fn is_multi_region_key(&self) -> bool {
        self.resource_type == ResourceType::Key && self.resource_id.starts_with("mrk-")
    }

    /// The same ARN in another region of its partition: how an MRK discovery keyring asks its local
    /// replica. `None` if `region` is in another partition.
    pub fn in_region(&self, region: &Region) -> Option<Self> {
        (region.partition() == self.partition).then(|| Self { region: region.clone(), ..self.clone() })
    }
}

/// `1234abcd-12ab-34cd-56ef-1234567890ab` or `mrk-` and 32 hex digits: the key ids KMS issues.
fn is_key_id(id: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(mrk) = id.strip_prefix("mrk-") {
        return mrk.len() == 32 && hex(mrk);
    }
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| hex(g))
}

/// KMS alias names: 1 to 256 of `[a-zA-Z0-9/_-]`.
fn is_alias_name(name: &str) -> bool {
    (1..=256).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
}

impl fmt::Display for KmsArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:kms:{}:{}:{}/{}",
            self.partition,
            self.region,
            self.account,
            self.resource_type.as_str(),
            self.resource_id
        )
    }
}

impl FromStr for KmsArn {
    type Err = InvalidArn;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Whether `identifier` names a multi-Region key: a key ARN or a bare key id starting with `mrk-`.
/// Aliases never do.
pub fn is_multi_region_identifier(identifier: &str) -> bool {
    if identifier.starts_with("arn:") {
        return KmsArn::parse(identifier).is_ok_and(|arn| arn.is_multi_region_key());
    }
    identifier.starts_with("mrk-")
}

/// The ESDK's "MRK match" for decrypt: the identifiers are identical, or both are multi-Region key ARNs
/// that differ at most in their region (replicas of one key).
pub fn mrk_match(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (KmsArn::parse(a), KmsArn::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.is_multi_region_key()
                && b.is_multi_region_key()
                && a.partition == b.partition
                && a.account == b.account
                && a.resource_type == b.resource_type
                && a.resource_id == b.resource_id
        }
        _ => false,
    }
}

/// Checks that `key_id` is something KMS accepts as a key identifier: a key or alias ARN, `alias/<name>`,
/// or a bare key id. Returns the parsed ARN if it is one.
#[cfg_attr(not(feature = "kms"), allow(dead_code))]
pub(crate) fn check_key_identifier(key_id: &str) -> Result<Option<KmsArn>, String> {
    if key_id.is_empty() {
        return Err("the KMS key identifier is empty".into());
    }
    if key_id.starts_with("arn:") {
        return KmsArn::parse(key_id).map(Some).map_err(|err| err.to_string());
    }
    let well_formed = match key_id.strip_prefix("alias/") {
        Some(alias) => is_alias_name(alias),
        None => is_key_id(key_id),
    };
    if !well_formed {
        return Err(format!(
            "\"{}\" is not a KMS key identifier (expected a key ARN, an alias ARN, alias/NAME or a key id)",
            Escaped(&clipped(key_id))
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const MRK_W: &str = "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    const MRK_E: &str = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";

    fn region(name: &str) -> Region {
        Region::parse(name).unwrap()
    }

    #[test]
    fn parses_and_prints_key_and_alias_arns() {
        let arn = KmsArn::parse(KEY).unwrap();
        assert_eq!(
            (arn.partition(), arn.region().as_str(), arn.account(), arn.resource_type()),
            ("aws", "us-west-2", "111122223333", ResourceType::Key)
        );
        assert_eq!(arn.resource_id(), "1234abcd-12ab-34cd-56ef-1234567890ab");
        assert_eq!(arn.to_string(), KEY);
        assert!(!arn.is_multi_region_key());

        let alias = KmsArn::parse("arn:aws-cn:kms:cn-north-1:111122223333:alias/mrk-looks/like_one").unwrap();
        assert_eq!(alias.resource_type(), ResourceType::Alias);
        assert_eq!(alias.resource_id(), "mrk-looks/like_one");
        assert!(!alias.is_multi_region_key(), "an alias is never an MRK");
        assert!(KmsArn::parse_key(&alias.to_string()).is_err());
        assert_eq!(alias.to_string().parse::<KmsArn>().unwrap(), alias);
    }

    #[test]
    fn rejects_what_the_grammar_rejects() {
        for bad in [
            "",
            "arn:aws:kms:us-west-2:111122223333",
            "arn:aws:kms:us-west-2:111122223333:key/a:b",
            "arx:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn::kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:s3:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms::111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-west-2::key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-west-2:111122223333:",
            "arn:aws:kms:us-west-2:111122223333:key",
            "arn:aws:kms:us-west-2:111122223333:key/",
            "arn:aws:kms:us-west-2:111122223333:grant/1234abcd-12ab-34cd-56ef-1234567890ab",
            // Fields the ESDK grammar lets through but no KMS key can have.
            "arn:aws:kms:us-west-2:11112222333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-west-2:1111222233334:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-west-2:11112222333x:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-west-2:111122223333:key/abc",
            "arn:aws:kms:us-west-2:111122223333:key/mrk-1234",
            "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab/x",
            "arn:aws:kms:us-west-2:111122223333:alias/a b",
            "arn:evil:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws-cn:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:cn-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ] {
            let err = KmsArn::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("is not an AWS KMS ARN"), "{err}");
        }
    }

    /// Regions that would change the host of `https://kms.{region}.amazonaws.com`, or are not AWS's.
    pub(crate) const HOSTILE_REGIONS: &[&str] = &[
        "x@127.0.0.1/",
        "evil.example/",
        "us-east-1.evil#",
        "us-east-1%2e",
        "%2e",
        "US-EAST-1",
        "us-east-1/",
        "us-east-1?",
        "127.0.0.1",
        "localhost",
        "us-east-1\u{0}",
        "us-eaſt-1",
        "us-east-1 ",
        "us-east-123",
        "us--1",
        "us-east-",
        "-east-1",
        "zz-east-1",
    ];

    #[test]
    fn hostile_regions_are_refused_everywhere() {
        let long_label = format!("us-{}-1", "a".repeat(200));
        for bad in HOSTILE_REGIONS.iter().copied().chain([long_label.as_str()]) {
            let err = Region::parse(bad).expect_err(bad);
            assert!(!err.to_string().chars().any(char::is_control), "{err}");
            let arn = format!("arn:aws:kms:{bad}:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab");
            KmsArn::parse(&arn).expect_err(&arn);
        }
    }

    #[test]
    fn regions_of_every_known_partition() {
        for (name, partition) in [
            ("us-east-1", "aws"),
            ("ap-southeast-5", "aws"),
            ("mx-central-1", "aws"),
            ("il-central-1", "aws"),
            ("cn-northwest-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("us-isof-south-1", "aws-iso-f"),
            ("eusc-de-east-1", "aws-eusc"),
        ] {
            assert_eq!(region(name).partition(), partition, "{name}");
            assert!(is_known_partition(partition));
            let arn = format!("arn:{partition}:kms:{name}:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab");
            assert_eq!(KmsArn::parse(&arn).unwrap().region().as_str(), name);
        }
        assert!(!is_known_partition("aws-evil"));
    }

    #[test]
    fn errors_escape_and_clip_the_input() {
        let err = KmsArn::parse("arn:aws:kms:\x1b[2J\x07:111122223333:key/x").unwrap_err().to_string();
        assert!(err.contains("\\u{1b}[2J\\u{7}"), "{err}");
        let err = KmsArn::parse(&format!("arn:aws:kms:{}", "a".repeat(100_000))).unwrap_err().to_string();
        assert!(err.len() < 600, "{} bytes", err.len());
    }

    #[test]
    fn mrk_match_ignores_only_the_region_of_multi_region_keys() {
        assert!(mrk_match(KEY, KEY));
        assert!(mrk_match("alias/x", "alias/x"));
        assert!(mrk_match(MRK_W, MRK_E));
        let key_in_eu = KmsArn::parse(KEY).unwrap().in_region(&region("eu-west-1")).unwrap().to_string();
        assert!(!mrk_match(KEY, &key_in_eu));
        assert!(!mrk_match(MRK_W, &MRK_E.replace("111122223333", "444455556666")));
        assert!(!mrk_match(MRK_W, &MRK_E.replace(":aws:", ":aws-cn:")));
        assert!(!mrk_match(MRK_W, "mrk-1234abcd12ab34cd56ef1234567890ab"), "a bare id is not an ARN");
        let alias_w = "arn:aws:kms:us-west-2:111122223333:alias/mrk-1234abcd12ab34cd56ef1234567890ab";
        let alias_e = "arn:aws:kms:eu-west-1:111122223333:alias/mrk-1234abcd12ab34cd56ef1234567890ab";
        assert!(!mrk_match(alias_w, alias_e));
        assert!(is_multi_region_identifier(MRK_E));
        assert!(is_multi_region_identifier("mrk-abc"));
        assert!(!is_multi_region_identifier(alias_w));
        assert!(!is_multi_region_identifier("alias/mrk-abc"));
        assert_eq!(KmsArn::parse(MRK_W).unwrap().in_region(&region("eu-west-1")).unwrap().to_string(), MRK_E);
        assert_eq!(KmsArn::parse(MRK_W).unwrap().in_region(&region("cn-north-1")), None, "another partition");
    }

    #[test]
    fn key_identifiers() {
        assert!(check_key_identifier(KEY).unwrap().is_some());
        assert!(check_key_identifier("alias/my-key").unwrap().is_none());
        assert!(check_key_identifier("1234abcd-12ab-34cd-56ef-1234567890ab").unwrap().is_none());
        assert!(check_key_identifier("mrk-1234abcd12ab34cd56ef1234567890ab").unwrap().is_none());
        assert!(check_key_identifier("").is_err());
        assert!(check_key_identifier("arn:aws:kms:us-west-2:111122223333").is_err());
        assert!(check_key_identifier("key id with spaces").is_err());
        assert!(check_key_identifier("alias/").is_err());
        assert!(check_key_identifier("alias/\u{1b}").is_err());
    }
}
