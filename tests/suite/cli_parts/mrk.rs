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
    assert_eq!(edk_arns(&s, "east.esdk"), [keys.east.as_str()]);

    let before = keys.proxy.log().len();
    let (out, _) = keys.run(&s, &["decrypt", "--kms-key", &keys.west, "east.esdk", "-"], 0);
    assert_eq!(out, b"replicated secret");
    assert_eq!(keys.calls_since(before), [format!("Decrypt {WEST} {}", keys.west)], "the replica's region only");

    // The replica wraps in its own region; the us-east-1 key then decrypts that message in us-east-1.
    let before = keys.proxy.log().len();
    keys.run(&s, &["encrypt", "--kms-key", &keys.west, "pt", "west.esdk"], 0);
    assert_eq!(keys.calls_since(before), [format!("GenerateDataKey {WEST} {}", keys.west)]);
    assert_eq!(edk_arns(&s, "west.esdk"), [keys.west.as_str()]);
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

/// `message` with every `from` replaced by `to` (of the same length): an EDK's key ARN naming another
/// region, as whoever writes a message may write it. The header no longer authenticates, which is checked
/// only once a data key was unwrapped: what matters here is which calls the keyring makes first.
fn renamed(message: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let (mut out, mut rest) = (Vec::new(), message);
    while let Some(at) = rest.windows(from.len()).position(|w| w == from.as_bytes()) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to.as_bytes());
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    assert_ne!(out, message, "{from} not in the message");
    out
}

/// README, AWS KMS: "`--kms-discovery` calls KMS only in the configured region, or in each `--kms-region`
/// given: a multi-Region key through its replica there, any other key only if it is in one of them".
/// A message under the us-east-1 MRK decrypts by discovery in us-east-1 (the configured region) and, with
/// `--kms-region eu-west-1`, through the replica's ARN in eu-west-1 alone; a single-Region us-east-1 key
/// is not asked from eu-west-1 (exit 3, no call) but is with both regions named; a message naming a key in
/// a region nobody named (us-west-2), or a region that is no region (`127.0.0.1`, `evil-1../`), gets no
/// call at all, or (a multi-Region key) only its replica's in the named region.
#[test]
fn discovery_calls_only_the_configured_region_or_the_regions_named() {
    let Some(moto) = Moto::get() else { return };
    let keys = Replicated::new(&moto);
    let single = moto.create_key();
    let account = single.split(':').nth(4).unwrap().to_owned();
    let s = Scratch::new();
    s.write("pt", b"found by discovery");
    keys.run(&s, &["encrypt", "--kms-key", &keys.east, "pt", "mrk.esdk"], 0);
    keys.run(&s, &["encrypt", "--kms-key", &single, "pt", "single.esdk"], 0);
    let discover = |extra: &[&str], message: &str, output: &str, code: i32| {
        let before = keys.proxy.log().len();
        let all = [&["decrypt", "--kms-discovery", "--account", &account][..], extra, &[message, output]].concat();
        let (out, stderr) = keys.run(&s, &all, code);
        (out, stderr, keys.calls_since(before))
    };

    let (out, _, calls) = discover(&[], "mrk.esdk", "-", 0);
    assert_eq!((out.as_slice(), calls), (&b"found by discovery"[..], vec![format!("Decrypt us-east-1 {}", keys.east)]));
    let (out, _, calls) = discover(&["--kms-region", WEST], "mrk.esdk", "-", 0);
    assert_eq!(out, b"found by discovery");
    assert_eq!(calls, [format!("Decrypt {WEST} {}", keys.west)], "the replica in the region named, only");

    let (_, stderr, calls) = discover(&["--kms-region", WEST], "single.esdk", "out", 3);
    assert!(stderr.contains(&format!("key {single} is a single-region key in us-east-1")), "{stderr}");
    assert_eq!(calls, Vec::<String>::new());
    let (out, _, calls) = discover(&["--kms-region", WEST, "--kms-region", "us-east-1"], "single.esdk", "-", 0);
    assert_eq!((out.as_slice(), calls), (&b"found by discovery"[..], vec![format!("Decrypt us-east-1 {single}")]));

    // Whatever region a message names, no call goes anywhere but the regions named.
    let message = fs::read(s.path("single.esdk")).unwrap();
    for region in ["us-west-2", "127.0.0.1", "evil-1../"] {
        s.write("forged.esdk", &renamed(&message, "us-east-1", region));
        for extra in [&[][..], &["--kms-region", WEST][..]] {
            let (_, stderr, calls) = discover(extra, "forged.esdk", "out", 3);
            assert_eq!(calls, Vec::<String>::new(), "{region} {extra:?}: {stderr}");
        }
    }
    let message = fs::read(s.path("mrk.esdk")).unwrap();
    s.write("forged.esdk", &renamed(&message, "us-east-1", "us-west-2"));
    let (_, stderr, calls) = discover(&["--kms-region", WEST], "forged.esdk", "out", 1);
    assert_eq!(calls, [format!("Decrypt {WEST} {}", keys.west)], "{stderr}");
    assert!(!s.path("out").exists());
}

/// `--kms-region` takes a region and nothing else, checked by the library's one region grammar before
/// anything runs (a region chooses the endpoint, `kms.REGION.amazonaws.com`): each of these is exit 2 with
/// the value escaped, and no KMS call. Without `--kms-region` and without a configured region, discovery
/// is a usage error that says how to give one; `--kms-region` without `--kms-discovery` too.
#[test]
fn kms_region_takes_a_region_and_nothing_else() {
    let Some(moto) = Moto::get() else { return };
    let keys = Replicated::new(&moto);
    let s = Scratch::new();
    s.write("pt", b"x");
    keys.run(&s, &["encrypt", "--kms-key", &keys.east, "pt", "ct"], 0);
    for region in ["evil-1", "us-east-1.evil.example/", "x@127.0.0.1/", "US-EAST-1", "us-east-1\u{1b}[2J", ""] {
        let (_, stderr) = keys.run(&s, &["decrypt", "--kms-discovery", "--kms-region", region, "ct", "out"], 2);
        assert!(stderr.contains("is not an AWS region"), "{region:?}: {stderr}");
        assert!(!stderr.contains('\u{1b}'), "{region:?}: unescaped: {stderr:?}");
    }
    let (_, stderr) = keys.run(&s, &["decrypt", "--kms-region", WEST, "--kms-key", &keys.east, "ct", "out"], 2);
    assert!(stderr.contains("--kms-discovery"), "{stderr}");
    let mut cmd = s.cmd();
    with_kms_endpoint(&mut cmd, &keys.proxy.url);
    let (_, stderr) = expect(
        cmd.env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env("AWS_CONFIG_FILE", s.path("no-config"))
            .args(["decrypt", "--kms-discovery", "ct", "out"]),
        2,
    );
    assert!(stderr.contains("give --kms-region REGION or set AWS_REGION"), "{stderr}");
    assert!(keys.proxy.log().len() == 1 && !s.path("out").exists(), "only the encrypt called KMS");
}

/// The grant tokens of each call, as the proxy recorded them.
fn grant_tokens(call: &KmsCall) -> Vec<String> {
    let tokens = call.body["GrantTokens"].as_array().cloned().unwrap_or_default();
    tokens.iter().map(|t| t.as_str().unwrap().to_owned()).collect()
}

/// README, AWS KMS: "`--grant-token TOKEN` (repeatable, at most 10) goes with every KMS call of the keys
/// on its side; `reencrypt` takes `--new-grant-token` for the new keys". Encrypt under two keys sends the
/// tokens with both calls; decrypt by key and by discovery with its own; reencrypt the source's with the
/// `Decrypt` and the new ones with the `GenerateDataKey`. A token is never printed: not in a KMS failure's
/// line (exit 3), nor when refused (an eleventh, one with a space: exit 2 naming its position), nor with
/// keys that make no KMS call (exit 2).
#[test]
fn grant_tokens_reach_every_kms_call_of_their_side_and_are_never_printed() {
    let Some(moto) = Moto::get() else { return };
    let keys = Replicated::new(&moto);
    let other = moto.create_key();
    let s = Scratch::new();
    s.write("pt", b"granted");
    let marker = "GRANT-TOKEN-MARKER-7f3a";
    let (a, b) = (format!("{marker}-a"), format!("{marker}-b"));
    let calls = |from: usize| -> Vec<(String, Vec<String>)> {
        keys.proxy.log()[from..].iter().map(|c| (c.operation.clone(), grant_tokens(c))).collect()
    };

    let before = keys.proxy.log().len();
    let key_args = ["--kms-key", keys.east.as_str(), "--kms-key", other.as_str()];
    keys.run(&s, &[&["encrypt"][..], &key_args, &["--grant-token", &a, "--grant-token", &b, "pt", "ct"]].concat(), 0);
    let both = vec![a.clone(), b.clone()];
    assert_eq!(calls(before), [("GenerateDataKey".into(), both.clone()), ("Encrypt".into(), both)]);

    for key in [&["--kms-key", keys.west.as_str()][..], &["--kms-discovery", "--kms-region", WEST][..]] {
        let before = keys.proxy.log().len();
        let (out, _) = keys.run(&s, &[&["decrypt"][..], key, &["--grant-token", &a, "ct", "-"]].concat(), 0);
        assert_eq!(out, b"granted");
        assert_eq!(calls(before), [("Decrypt".into(), vec![a.clone()])], "{key:?}");
    }

    let before = keys.proxy.log().len();
    keys.run(
        &s,
        &[
            "reencrypt",
            "--kms-key",
            &other,
            "--grant-token",
            &a,
            "--new-kms-key",
            &keys.west,
            "--new-grant-token",
            &b,
            "ct",
            "re",
        ],
        0,
    );
    assert_eq!(calls(before), [("Decrypt".into(), vec![a.clone()]), ("GenerateDataKey".into(), vec![b.clone()])]);

    // Failures never show a token.
    let missing = moto.create_key().replace("us-east-1", "us-west-2");
    let eleven: Vec<String> = (0..11).map(|n| format!("{marker}-{n}")).collect();
    let eleven: Vec<&str> = eleven.iter().flat_map(|t| ["--grant-token", t.as_str()]).collect();
    let spaced = format!("{marker} with a space");
    let failures: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["decrypt", "--kms-key", &missing, "--grant-token", &a, "ct", "out"], 3, "no keyring could decrypt"),
        (vec!["encrypt", "--kms-key", &missing, "--grant-token", &a, "pt", "out"], 3, &missing),
        ([&["encrypt", "--kms-key", &other][..], &eleven, &["pt", "out"]].concat(), 2, "at most 10"),
        (
            vec!["decrypt", "--kms-key", &other, "--grant-token", &a, "--grant-token", &spaced, "ct", "out"],
            2,
            "grant token 2",
        ),
        ([&["encrypt", "--grant-token", &a][..], &raw("wrapping.key"), &["pt", "out"]].concat(), 2, "no KMS call"),
    ];
    for (args, code, expected) in failures {
        let (_, stderr) = keys.run(&s, &args, code);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains(marker), "{args:?}: a grant token printed: {stderr}");
        assert!(!s.path("out").exists());
    }
}
