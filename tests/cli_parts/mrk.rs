//! Every KMS key kind from the command line: multi-Region keys (`--kms-key` is MRK-aware, as in the ESDK
//! CLI), MRK-aware discovery bound to the regions `--kms-region` names, and `--grant-token`. KMS is moto
//! with a key replicated into a second region, shown as a multi-Region key by a proxy that records the
//! region each request was signed for (moto is one endpoint for every region, so the region a call went to
//! is its signature's credential scope, which is also what selects moto's regional backend; see
//! `CountingProxy::present_as_mrk` for why moto's own multi-Region keys cannot be used).

use super::kms::with_kms_endpoint;
use super::support::{CountingProxy, KmsCall, Moto};
use super::*;

/// The replica region of the tests' multi-Region keys (the primary is in us-east-1).
const WEST: &str = "eu-west-1";

/// A multi-Region key in us-east-1, its replica in eu-west-1, and a proxy to moto that records calls.
struct Replicated {
    east: String,
    west: String,
    proxy: CountingProxy,
}

impl Replicated {
    fn new(moto: &Moto) -> Self {
        let proxy = CountingProxy::start(&moto.endpoint);
        let arns = proxy.present_as_mrk(&moto.create_key(), &[WEST]);
        let (east, west) = (arns[0].clone(), arns[1].clone());
        assert!(east.contains(":us-east-1:") && east.contains(":key/mrk-"), "{east}");
        assert_eq!(west, east.replace("us-east-1", WEST));
        Self { east, west, proxy }
    }

    /// `kms-envelope ARGS` in `s`, KMS through the proxy; asserts the exit code as `expect` does.
    fn run(&self, s: &Scratch, args: &[&str], code: i32) -> (Vec<u8>, String) {
        let mut cmd = s.cmd();
        with_kms_endpoint(&mut cmd, &self.proxy.url);
        expect(cmd.args(args), code)
    }

    /// The calls recorded from `from` on, as `operation region KeyId`.
    fn calls_since(&self, from: usize) -> Vec<String> {
        self.proxy.log()[from..].iter().map(described).collect()
    }
}

fn described(call: &KmsCall) -> String {
    format!("{} {} {}", call.operation, call.region, call.body["KeyId"].as_str().unwrap_or("-"))
}

/// The key ARNs of the message's EDKs, as `inspect --json` shows them.
fn edk_arns(s: &Scratch, message: &str) -> Vec<String> {
    let (json, _) = expect(s.cmd().args(["inspect", "--json", message]), 0);
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    v["encrypted_data_keys"].as_array().unwrap().iter().map(|e| e["key_arn"].as_str().unwrap().to_owned()).collect()
}

/// README, AWS KMS, multi-Region keys: "`--kms-key` is MRK-aware: an `mrk-` key ARN decrypts what any
/// replica of the key wrapped, with one `Decrypt` in the region of the ARN given". Encrypted under the
/// us-east-1 key, decrypted with `--kms-key` naming the eu-west-1 replica: one `Decrypt`, signed for
/// eu-west-1, with the replica's ARN, and none to us-east-1. Encrypting with the replica's ARN wraps in its
/// region. Both replicas given at once are one key twice (exit 2); a single-Region key named in another
/// region is not a replica (exit 3, no call).
#[test]
fn an_mrk_arn_decrypts_what_its_replica_in_another_region_wrapped() {
    let Some(moto) = Moto::get() else { return };
    let keys = Replicated::new(&moto);
    let s = Scratch::new();
    s.write("pt", b"replicated secret");

    keys.run(&s, &["encrypt", "--kms-key", &keys.east, "pt", "east.esdk"], 0);
    assert_eq!(keys.calls_since(0), [format!("GenerateDataKey us-east-1 {}", keys.east)]);
    assert_eq!(edk_arns(&s, "east.esdk"), [keys.east.clone()]);

    let before = keys.proxy.log().len();
    let (out, _) = keys.run(&s, &["decrypt", "--kms-key", &keys.west, "east.esdk", "-"], 0);
    assert_eq!(out, b"replicated secret");
    assert_eq!(keys.calls_since(before), [format!("Decrypt {WEST} {}", keys.west)], "the replica's region only");

    // The replica wraps in its own region; the us-east-1 key then decrypts that message in us-east-1.
    let before = keys.proxy.log().len();
    keys.run(&s, &["encrypt", "--kms-key", &keys.west, "pt", "west.esdk"], 0);
    assert_eq!(keys.calls_since(before), [format!("GenerateDataKey {WEST} {}", keys.west)]);
    assert_eq!(edk_arns(&s, "west.esdk"), [keys.west.clone()]);
    let (out, _) = keys.run(&s, &["decrypt", "--kms-key", &keys.east, "west.esdk", "-"], 0);
    assert_eq!(out, b"replicated secret");

    // Two replicas of one key, on either side: a usage error before any call.
    let before = keys.proxy.log().len();
    for sub in [&["encrypt", "pt", "twice.esdk"], &["decrypt", "east.esdk", "out"]] {
        let (_, stderr) =
            keys.run(&s, &[&sub[..1], &["--kms-key", &keys.east, "--kms-key", &keys.west], &sub[1..]].concat(), 2);
        assert!(stderr.contains("replicas of the same multi-Region key"), "{stderr}");
    }
    assert!(!s.path("twice.esdk").exists() && !s.path("out").exists());
    assert_eq!(keys.calls_since(before), Vec::<String>::new());

    // A single-Region key is not replicated: its ARN with another region names no key of this message.
    let single = moto.create_key();
    keys.run(&s, &["encrypt", "--kms-key", &single, "pt", "single.esdk"], 0);
    let elsewhere = single.replace("us-east-1", WEST);
    let before = keys.proxy.log().len();
    let (_, stderr) = keys.run(&s, &["decrypt", "--kms-key", &elsewhere, "single.esdk", "out"], 3);
    assert!(stderr.contains("single.esdk: no keyring could decrypt a data key"), "{stderr}");
    assert!(stderr.contains(&format!("under {single} is for another key")), "{stderr}");
    assert_eq!(keys.calls_since(before), Vec::<String>::new(), "no KMS call for a key that does not match");
    assert!(!s.path("out").exists());
}
