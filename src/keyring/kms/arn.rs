//! AWS KMS key identifiers: the ARN grammar, multi-Region keys and the "MRK match" rule (format notes §11).

use std::fmt;
use std::str::FromStr;

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

/// A parsed AWS KMS ARN: `arn:<partition>:kms:<region>:<account>:<key|alias>/<id>`.
///
/// The grammar is the ESDK's: six colon-separated parts, all non-empty, service `kms`, and a resource
/// of type `key` or `alias` whose id (everything after the first `/`) is non-empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KmsArn {
    partition: String,
    region: String,
    account: String,
    resource_type: ResourceType,
    resource_id: String,
}

/// Why a string is not a KMS ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidArn {
    input: String,
    reason: &'static str,
}

impl fmt::Display for InvalidArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not an AWS KMS ARN: {}", self.input, self.reason)
    }
}

impl std::error::Error for InvalidArn {}

impl KmsArn {
    /// Parses `input` by the ESDK's ARN grammar.
    pub fn parse(input: &str) -> Result<Self, InvalidArn> {
        let invalid = |reason| InvalidArn { input: input.chars().take(2048).collect(), reason };
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
        if parts[2] != "kms" {
            return Err(invalid("the service is not \"kms\""));
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
        Ok(Self {
            partition: parts[1].to_owned(),
            region: parts[3].to_owned(),
            account: parts[4].to_owned(),
            resource_type,
            resource_id: id.to_owned(),
        })
    }

    /// Parses `input` and requires a key ARN (not an alias ARN), as every encrypted data key holds.
    pub fn parse_key(input: &str) -> Result<Self, InvalidArn> {
        let arn = Self::parse(input)?;
        if arn.resource_type != ResourceType::Key {
            return Err(InvalidArn { input: input.to_owned(), reason: "it names an alias, not a key" });
        }
        Ok(arn)
    }

    /// The partition: `aws`, `aws-cn`, `aws-us-gov`, ...
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The region, e.g. `us-east-1`.
    pub fn region(&self) -> &str {
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

    /// The same ARN in another region: how an MRK discovery keyring asks its local replica.
    pub fn in_region(&self, region: &str) -> Self {
        Self { region: region.to_owned(), ..self.clone() }
    }
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
pub(crate) fn check_key_identifier(key_id: &str) -> Result<Option<KmsArn>, String> {
    if key_id.is_empty() {
        return Err("the KMS key identifier is empty".into());
    }
    if key_id.starts_with("arn:") {
        return KmsArn::parse(key_id).map(Some).map_err(|err| err.to_string());
    }
    if key_id.contains(':') || key_id.chars().any(char::is_whitespace) {
        return Err(format!(
            "{key_id:?} is not a KMS key identifier (expected a key ARN, an alias ARN, alias/NAME or a key id)"
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

    #[test]
    fn parses_and_prints_key_and_alias_arns() {
        let arn = KmsArn::parse(KEY).unwrap();
        assert_eq!(
            (arn.partition(), arn.region(), arn.account(), arn.resource_type()),
            ("aws", "us-west-2", "111122223333", ResourceType::Key)
        );
        assert_eq!(arn.resource_id(), "1234abcd-12ab-34cd-56ef-1234567890ab");
        assert_eq!(arn.to_string(), KEY);
        assert!(!arn.is_multi_region_key());

        let alias = KmsArn::parse("arn:aws-cn:kms:cn-north-1:1:alias/mrk-looks/like/one").unwrap();
        assert_eq!(alias.resource_type(), ResourceType::Alias);
        assert_eq!(alias.resource_id(), "mrk-looks/like/one");
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
            "arx:aws:kms:us-west-2:111122223333:key/abc",
            "arn::kms:us-west-2:111122223333:key/abc",
            "arn:aws:s3:us-west-2:111122223333:key/abc",
            "arn:aws:kms::111122223333:key/abc",
            "arn:aws:kms:us-west-2::key/abc",
            "arn:aws:kms:us-west-2:111122223333:",
            "arn:aws:kms:us-west-2:111122223333:key",
            "arn:aws:kms:us-west-2:111122223333:key/",
            "arn:aws:kms:us-west-2:111122223333:grant/abc",
        ] {
            let err = KmsArn::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("is not an AWS KMS ARN"), "{err}");
        }
    }

    #[test]
    fn mrk_match_ignores_only_the_region_of_multi_region_keys() {
        assert!(mrk_match(KEY, KEY));
        assert!(mrk_match("alias/x", "alias/x"));
        assert!(mrk_match(MRK_W, MRK_E));
        assert!(!mrk_match(KEY, &KmsArn::parse(KEY).unwrap().in_region("eu-west-1").to_string()));
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
        assert_eq!(KmsArn::parse(MRK_W).unwrap().in_region("eu-west-1").to_string(), MRK_E);
    }

    #[test]
    fn key_identifiers() {
        assert!(check_key_identifier(KEY).unwrap().is_some());
        assert!(check_key_identifier("alias/my-key").unwrap().is_none());
        assert!(check_key_identifier("1234abcd-12ab-34cd-56ef-1234567890ab").unwrap().is_none());
        assert!(check_key_identifier("").is_err());
        assert!(check_key_identifier("arn:aws:kms:us-west-2:111122223333").is_err());
        assert!(check_key_identifier("key id with spaces").is_err());
    }
}
