//! The ECDH key options: raw ECDH round trips for each scheme through the command line, the sender pin on
//! decrypt, and the combinations that cannot work refused before any key file is read.

use super::*;

/// Writes `{name}.pem` (PKCS #8 private key), `{name}.pub.pem` (PEM public key) and `{name}.pub.der` (DER
/// SubjectPublicKeyInfo) for a fresh key pair on `curve`, made by AWS-LC directly (not by the crate).
fn key_pair(s: &Scratch, name: &str, curve: &'static aws_lc_rs::agreement::Algorithm) {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use base64::Engine as _;
    let key = aws_lc_rs::agreement::PrivateKey::generate(curve).unwrap();
    let pem = |label: &str, der: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    };
    let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&key).unwrap();
    let spki = key.compute_public_key().unwrap().as_der().unwrap();
    s.write(&format!("{name}.pem"), pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes());
    s.write(&format!("{name}.pub.pem"), pem("PUBLIC KEY", spki.as_ref()).as_bytes());
    s.write(&format!("{name}.pub.der"), spki.as_ref());
}

/// Static a→b read by b pinned to a (public key as PEM and as DER) and by discovery, and by a itself;
/// ephemeral →b read by discovery; b pinned to another sender refuses a's message (exit 3).
#[test]
fn raw_ecdh_round_trips_and_the_sender_pin_holds() {
    let s = Scratch::new();
    let pt = plaintext(3000);
    s.write("plain", &pt);
    for (curve, algorithm) in [("p256", &aws_lc_rs::agreement::ECDH_P256), ("p521", &aws_lc_rs::agreement::ECDH_P521)] {
        for name in ["a", "b", "c"] {
            key_pair(&s, name, algorithm);
        }
        let c = ["--ecdh-curve", curve];
        let encrypt = |keys: &[&str], out: &str| {
            expect(s.cmd().args(args(&[&["encrypt"], &c, keys, &["plain", out]])), 0);
        };
        let decrypt = |keys: &[&str], input: &str, code: i32| {
            let _ = fs::remove_file(s.path("out"));
            let (_, stderr) = expect(s.cmd().args(args(&[&["decrypt"], &c, keys, &[input, "out"]])), code);
            if code == 0 {
                assert_eq!(fs::read(s.path("out")).unwrap(), pt, "{curve} {keys:?} {input}");
            }
            stderr
        };
        encrypt(&["--ecdh-private", "a.pem", "--ecdh-peer-public", "b.pub.der"], "static.esdk");
        encrypt(&["--ecdh-ephemeral", "--ecdh-peer-public", "b.pub.pem"], "ephemeral.esdk");
        decrypt(&["--ecdh-private", "b.pem", "--ecdh-sender-public", "a.pub.pem"], "static.esdk", 0);
        decrypt(&["--ecdh-private", "b.pem", "--ecdh-sender-public", "a.pub.der"], "static.esdk", 0);
        decrypt(&["--ecdh-private", "a.pem", "--ecdh-peer-public", "b.pub.der"], "static.esdk", 0);
        decrypt(&["--ecdh-private", "b.pem", "--ecdh-discovery"], "static.esdk", 0);
        decrypt(&["--ecdh-private", "b.pem", "--ecdh-discovery"], "ephemeral.esdk", 0);
        let stderr = decrypt(&["--ecdh-private", "b.pem", "--ecdh-sender-public", "c.pub.pem"], "static.esdk", 3);
        assert!(stderr.contains("is for other keys"), "{stderr}");
        let stderr = decrypt(&["--ecdh-private", "c.pem", "--ecdh-discovery"], "ephemeral.esdk", 3);
        assert!(stderr.contains("is for other keys"), "{stderr}");
        for file in ["static.esdk", "ephemeral.esdk"] {
            fs::remove_file(s.path(file)).unwrap();
        }
    }
}

/// What cannot work is a usage error (exit 2) naming the fix, before any key file is read (the key files
/// named here do not exist).
#[test]
fn ecdh_options_that_cannot_work_are_refused() {
    let s = Scratch::new();
    s.write("plain", b"x");
    for (op, keys, says) in [
        ("encrypt", &["--ecdh-private", "no.pem", "--ecdh-peer-public", "no.der"][..], "need --ecdh-curve"),
        ("encrypt", &["--ecdh-curve", "p384", "--ecdh-private", "no.pem", "--ecdh-discovery"], "decrypts only"),
        ("decrypt", &["--ecdh-curve", "p384", "--ecdh-ephemeral", "--ecdh-peer-public", "no.der"], "encrypts only"),
        ("decrypt", &["--ecdh-curve", "p384", "--ecdh-private", "no.pem"], "--ecdh-sender-public FILE"),
        ("encrypt", &["--ecdh-curve", "p384", "--ecdh-private", "no.pem"], "--ecdh-peer-public FILE"),
        (
            "decrypt",
            &["--ecdh-curve", "p384", "--ecdh-private", "no.pem", "--ecdh-discovery", "--ecdh-sender-public", "no.der"],
            "any sender",
        ),
        (
            "encrypt",
            &["--ecdh-curve", "p384", "--ecdh-peer-public", "no.der"],
            "--ecdh-private PEM-FILE or --kms-ecdh-key",
        ),
        (
            "encrypt",
            &["--ecdh-curve", "p384", "--ecdh-ephemeral", "--ecdh-private", "no.pem", "--ecdh-peer-public", "no.der"],
            "takes no --ecdh-private",
        ),
    ] {
        let (_, stderr) = expect(s.cmd().args(args(&[&[op], keys, &["plain", "out"]])), 2);
        assert!(stderr.contains(says), "{op} {keys:?}: {stderr}");
    }
    // A key on another curve than --ecdh-curve.
    key_pair(&s, "a", &aws_lc_rs::agreement::ECDH_P256);
    let keys = ["--ecdh-curve", "p384", "--ecdh-ephemeral", "--ecdh-peer-public", "a.pub.der"];
    let (_, stderr) = expect(s.cmd().args(args(&[&["encrypt"], &keys, &["plain", "out"]])), 2);
    assert!(stderr.contains("the key is on P-256, but P-384 is configured"), "{stderr}");
}

/// `--kms-ecdh-key` against a stub KMS that does the real ECDH with key pair `a`'s private key: encrypt to
/// `b`, read by `b`'s raw key pinned to `a`; `b`'s raw message to `a` read by the KMS key pinned to `b` and
/// by `--ecdh-discovery`; pinned to another sender, refused with no DeriveSharedSecret call.
#[cfg(feature = "kms")]
#[test]
fn kms_ecdh_key_round_trips_with_raw_keys() {
    let s = Scratch::new();
    let pt = plaintext(2000);
    s.write("plain", &pt);
    let curve = &aws_lc_rs::agreement::ECDH_P384;
    for name in ["a", "b", "c"] {
        key_pair(&s, name, curve);
    }
    let pem = fs::read_to_string(s.path("a.pem")).unwrap();
    let der = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>(),
    )
    .unwrap();
    let key = aws_lc_rs::agreement::PrivateKey::from_private_key_der(curve, &der).unwrap();
    let arn = "arn:aws:kms:us-east-1:111122223333:key/aaaaaaaa-1111-2222-3333-444444444444";
    let stub = support::StubKms::start(move |_, op, body| support::ecdh_kms_answer(&key, arn, op, body));
    let run = |parts: &[&[&str]], code: i32| {
        let mut cmd = s.cmd();
        super::kms::with_kms_endpoint(&mut cmd, &stub.url);
        expect(cmd.args(args(&[parts, &[&["--ecdh-curve", "p384"]]].concat())), code).1
    };
    let kms = ["--kms-ecdh-key", arn];
    run(&[&["encrypt"], &kms, &["--ecdh-peer-public", "b.pub.der", "plain", "kms.esdk"]], 0);
    run(&[&["decrypt"], &["--ecdh-private", "b.pem", "--ecdh-sender-public", "a.pub.pem", "kms.esdk", "out1"]], 0);
    run(&[&["encrypt"], &["--ecdh-private", "b.pem", "--ecdh-peer-public", "a.pub.pem", "plain", "raw.esdk"]], 0);
    run(&[&["decrypt"], &kms, &["--ecdh-sender-public", "b.pub.pem", "raw.esdk", "out2"]], 0);
    run(&[&["decrypt"], &kms, &["--ecdh-discovery", "raw.esdk", "out3"]], 0);
    for out in ["out1", "out2", "out3"] {
        assert_eq!(fs::read(s.path(out)).unwrap(), pt, "{out}");
    }
    let before = stub.requests().iter().filter(|r| *r == "DeriveSharedSecret").count();
    let stderr = run(&[&["decrypt"], &kms, &["--ecdh-sender-public", "c.pub.pem", "raw.esdk", "out4"]], 3);
    assert!(stderr.contains("is for other keys"), "{stderr}");
    assert_eq!(stub.requests().iter().filter(|r| *r == "DeriveSharedSecret").count(), before);
}

/// `exec` trusts an ECDH key pinned to its sender; by discovery anyone with our public key could have
/// written the secrets, so they need --allow-public-key-writers, as an RSA key's do.
#[cfg(unix)]
#[test]
fn exec_needs_allow_public_key_writers_for_ecdh_discovery_only() {
    let s = Scratch::new();
    for name in ["a", "b"] {
        key_pair(&s, name, &aws_lc_rs::agreement::ECDH_P256);
    }
    s.write("plain", b"DB_PASSWORD=ecdh-marker-7f3\n");
    let c = ["--ecdh-curve", "p256"];
    let static_keys = ["--ecdh-private", "a.pem", "--ecdh-peer-public", "b.pub.der"];
    expect(s.cmd().args(args(&[&["encrypt"], &c, &static_keys, &["plain", "s.esdk"]])), 0);
    let pinned = ["--ecdh-private", "b.pem", "--ecdh-sender-public", "a.pub.pem"];
    let (stdout, _) = expect(s.cmd().args(args(&[&["exec"], &c, &pinned, &["s.esdk", "--", "env"]])), 0);
    assert!(String::from_utf8(stdout).unwrap().contains("DB_PASSWORD=ecdh-marker-7f3"));
    let discovery = ["--ecdh-private", "b.pem", "--ecdh-discovery"];
    let (stdout, stderr) = expect(s.cmd().args(args(&[&["exec"], &c, &discovery, &["s.esdk", "--", "env"]])), 2);
    assert!(stdout.is_empty() && stderr.contains("unwrapped by --ecdh-private with --ecdh-discovery"), "{stderr}");
    let allow = ["--allow-public-key-writers", "s.esdk", "--", "env"];
    let (stdout, _) = expect(s.cmd().args(args(&[&["exec"], &c, &discovery, &allow])), 0);
    assert!(String::from_utf8(stdout).unwrap().contains("DB_PASSWORD=ecdh-marker-7f3"));
}
