//! Every KMS key kind in the Lambda decryptor's configuration: a multi-Region key's replica named in
//! `KMS_ENVELOPE_KMS_KEY_ARN`, discovery in `KMS_ENVELOPE_KMS_REGIONS`, `KMS_ENVELOPE_KMS_GRANT_TOKENS`;
//! KMS is moto behind the proxy that plays a replicated multi-Region key and records each call's signed
//! region and body (see `CountingProxy::present_as_mrk`).

use super::support::{CountingProxy, KmsCall};
use super::*;
use kms_envelope::lambda::EnvConfig;

/// The context [`options`] encrypts with, as the decryptor's variable gives it.
const CONTEXT: (&str, &str) = ("KMS_ENVELOPE_CONTEXT", "purpose=lambda test");

/// `operation region KeyId GrantTokens` of a call.
fn described(call: &KmsCall) -> String {
    let tokens: Vec<&str> =
        call.body["GrantTokens"].as_array().map(|t| t.iter().filter_map(|t| t.as_str()).collect()).unwrap_or_default();
    format!("{} {} {} {tokens:?}", call.operation, call.region, call.body["KeyId"].as_str().unwrap_or("-"))
}

/// README, Lambda configuration: "`KMS_ENVELOPE_KMS_KEY_ARN` ... an `mrk-` key's ARN also decrypts what
/// its replicas wrapped, with a call in its own region"; "`KMS_ENVELOPE_KMS_REGIONS`: the regions discovery
/// calls"; "`KMS_ENVELOPE_KMS_GRANT_TOKENS` ... sent with every KMS call". A bundle encrypted under the
/// us-east-1 key lands with the eu-west-1 replica's ARN configured (one `Decrypt` in eu-west-1 with the
/// tokens), and by discovery in eu-west-1 (the replica's ARN, eu-west-1 only); a single-Region us-east-1
/// key's bundle is refused by discovery in eu-west-1 with no call, and lands with us-east-1 named too.
#[test]
fn the_decryptor_takes_replicas_discovery_regions_and_grant_tokens() {
    let Some(moto) = Moto::get() else { return };
    let proxy = CountingProxy::start(&moto.endpoint);
    let arns = proxy.present_as_mrk(&moto.create_key(), &["eu-west-1"]);
    let (east, west) = (&arns[0], &arns[1]);
    let single = moto.create_key();
    let dir = tempfile::tempdir().unwrap();
    let kms = proxy.clients();
    for (name, key) in [("mrk.esdk", east), ("single.esdk", &single)] {
        let message = encrypt(&kms.mrk_keyring(key).unwrap(), &options(), b"cold start config");
        fs::write(dir.path().join(name), message).unwrap();
    }
    let land = |source: &str, vars: &[(&str, &str)]| {
        let root = dir.path().join(format!("root-{}", proxy.log().len()));
        let bundles = format!("{}=config.json", dir.path().join(source).display());
        let root_text = root.display().to_string();
        let all: Vec<(&str, &str)> =
            [&[("KMS_ENVELOPE_BUNDLES", bundles.as_str()), ("KMS_ENVELOPE_ROOT", &root_text), CONTEXT][..], vars]
                .concat();
        let config =
            EnvConfig::from_lookup(|n| all.iter().find(|(k, _)| *k == n).map(|(_, v)| (*v).to_owned())).unwrap();
        let before = proxy.log().len();
        let cold_start = config.cold_start(config.keyring(&kms).unwrap());
        let landed = cold_start.run_blocking().map(|_| fs::read(root.join("config.json")).unwrap());
        let calls: Vec<String> = proxy.log()[before..].iter().map(described).collect();
        (landed, calls)
    };
    let tokens = ("KMS_ENVELOPE_KMS_GRANT_TOKENS", "grant-a,grant-b");
    let granted = r#"["grant-a", "grant-b"]"#;

    let (landed, calls) = land("mrk.esdk", &[("KMS_ENVELOPE_KMS_KEY_ARN", west), tokens]);
    assert_eq!(landed.unwrap(), b"cold start config");
    assert_eq!(calls, [format!("Decrypt eu-west-1 {west} {granted}")]);

    let discovery = [("KMS_ENVELOPE_KMS_DISCOVERY", "true"), ("KMS_ENVELOPE_KMS_ACCOUNTS", "*"), tokens];
    let in_west = [&discovery[..], &[("KMS_ENVELOPE_KMS_REGIONS", "eu-west-1")]].concat();
    let (landed, calls) = land("mrk.esdk", &in_west);
    assert_eq!(landed.unwrap(), b"cold start config");
    assert_eq!(calls, [format!("Decrypt eu-west-1 {west} {granted}")], "the replica, in the region named only");

    let (landed, calls) = land("single.esdk", &in_west);
    let err = landed.unwrap_err().to_string();
    assert!(err.contains("is a single-region key in us-east-1"), "{err}");
    assert_eq!(calls, Vec::<String>::new());
    let both = [&discovery[..], &[("KMS_ENVELOPE_KMS_REGIONS", "eu-west-1,us-east-1")]].concat();
    let (landed, calls) = land("single.esdk", &both);
    assert_eq!(landed.unwrap(), b"cold start config");
    assert_eq!(calls, [format!("Decrypt us-east-1 {single} {granted}")]);
}
