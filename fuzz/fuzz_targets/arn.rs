//! The KMS ARN and region grammar on arbitrary text: the region of an ARN read from a message becomes part
//! of a host name, so whatever the parsers accept must be safe there. Never a panic; an accepted region is
//! lowercase ASCII letters, digits and '-', no longer than `Region::MAX_LEN`, and in the partition the ARN
//! names; an accepted ARN prints back exactly as it was read.
#![no_main]

use kms_envelope::keyring::kms::arn::{self, KmsArn, Region};
use libfuzzer_sys::fuzz_target;

fn assert_host_safe(region: &Region) {
    let name = region.as_str();
    assert!(!name.is_empty() && name.len() <= Region::MAX_LEN, "{name:?}");
    assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{name:?}");
    assert!(!name.starts_with('-') && !name.ends_with('-') && !name.contains("--"), "{name:?}");
    assert!(arn::is_known_partition(region.partition()));
    assert_eq!(Region::parse(name).as_ref(), Ok(region), "parsing is not idempotent");
}

fuzz_target!(init: kms_envelope_fuzz::init(), |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(region) = Region::parse(text) {
        assert_eq!(region.as_str(), text);
        assert_host_safe(&region);
    }
    let (a, b) = text.split_once('\n').unwrap_or((text, text));
    let _ = arn::mrk_match(a, b);
    let _ = arn::is_multi_region_identifier(text);
    match KmsArn::parse(text) {
        Ok(parsed) => {
            assert_eq!(parsed.to_string(), text, "an accepted ARN must print back as read");
            assert_host_safe(parsed.region());
            assert_eq!(parsed.region().partition(), parsed.partition());
            assert_eq!(parsed.account().len(), 12);
            assert_eq!(KmsArn::parse_key(text).is_ok(), parsed.resource_type() == arn::ResourceType::Key);
            if let Ok(other) = Region::parse("us-west-2")
                && let Some(moved) = parsed.in_region(&other)
            {
                assert_eq!(KmsArn::parse(&moved.to_string()).as_ref(), Ok(&moved));
            }
        }
        Err(err) => {
            let shown = err.to_string();
            assert!(!shown.chars().any(char::is_control), "unescaped error: {shown:?}");
            assert!(shown.len() <= 4 * 512, "error of {} bytes", shown.len());
        }
    }
});
