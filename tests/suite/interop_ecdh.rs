//! The raw ECDH keyring against the Python Material Providers Library's (through tests/peers/esdk_peer.py),
//! both ways, for every scheme and curve; keys are generated at test time by Python's `cryptography`.
#![cfg(feature = "aws-lc")]

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kms_envelope::{DecryptOptions, EcdhCurve, EcdhPrivateKey, EcdhPublicKey, EncryptOptions, Keyring, RawEcdhKeyring};

/// Writes, per curve, two key pairs `{curve}-a` (the sender) and `{curve}-b` (the recipient): PKCS #8 PEM
/// private keys (`.pem`), DER SubjectPublicKeyInfo public keys (`.der`), and the recipient's key also as
/// SEC 1 `EC PRIVATE KEY` PEM (`-sec1.pem`).
fn keys(python: &Path, dir: &Path) {
    let script = r#"
import sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import ec
d = sys.argv[1]
def write(name, data):
    open(d + "/" + name, "wb").write(data)
for curve, name in [(ec.SECP256R1(), "ECC_NIST_P256"), (ec.SECP384R1(), "ECC_NIST_P384"), (ec.SECP521R1(), "ECC_NIST_P521")]:
    for role in ["a", "b"]:
        k = ec.generate_private_key(curve)
        write(f"{name}-{role}.pem", k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
        write(f"{name}-{role}-sec1.pem", k.private_bytes(s.Encoding.PEM, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption()))
        write(f"{name}-{role}.der", k.public_key().public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo))
"#;
    let out = Command::new(python).args(["-c", script]).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

struct Curve<'a> {
    curve: EcdhCurve,
    dir: &'a Path,
}

impl Curve<'_> {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}-{name}", self.curve.mpl_name()))
    }

    fn private(&self, role: &str) -> EcdhPrivateKey {
        // The recipient's key is read from its SEC 1 form, the sender's from PKCS #8: both forms are read.
        let file = if role == "b" { format!("{role}-sec1.pem") } else { format!("{role}.pem") };
        EcdhPrivateKey::from_pem(self.curve, &fs::read(self.file(&file)).unwrap()).unwrap()
    }

    fn public(&self, role: &str) -> EcdhPublicKey {
        EcdhPublicKey::from_der(self.curve, &fs::read(self.file(&format!("{role}.der"))).unwrap()).unwrap()
    }

    /// The peer's keyring arguments for `scheme`: static = sender a to recipient b (or, `pinned`, b reading
    /// from a), ephemeral = to b, discovery = as b.
    fn peer_args(&self, scheme: &str, pinned: bool) -> Vec<String> {
        let (private, public) = match (scheme, pinned) {
            ("static", false) => (Some("a.pem"), Some("b.der")),
            ("static", true) => (Some("b.pem"), Some("a.der")),
            ("ephemeral", _) => (None, Some("b.der")),
            _ => (Some("b.pem"), None),
        };
        let mut args = vec!["--ecdh-scheme".into(), scheme.into(), "--ecdh-curve".into(), self.curve.mpl_name().into()];
        if let Some(private) = private {
            args.extend(["--ecdh-private-pem".into(), self.file(private).display().to_string()]);
        }
        if let Some(public) = public {
            args.extend(["--ecdh-public-der".into(), self.file(public).display().to_string()]);
        }
        args
    }
}

const CONTEXT: [(&str, &str); 2] = [("purpose", "ecdh interop"), ("клиент", "значение ✓")];

fn context_json() -> String {
    serde_json::to_string(&CONTEXT.iter().copied().collect::<std::collections::BTreeMap<_, _>>()).unwrap()
}

fn run_batch(python: &Path, jobs: &[Vec<String>]) -> Vec<Result<(), String>> {
    common::python_batch(python, jobs)
}

fn job(op: &str, input: &Path, output: &Path, keyring: Vec<String>) -> Vec<String> {
    let mut args =
        vec![op.into(), "--in".into(), input.display().to_string(), "--out".into(), output.display().to_string()];
    args.extend(["--context-json".into(), context_json()]);
    args.extend(keyring);
    args
}

/// Ours → Python and Python → ours, for each curve: static (the Python keyring reading as the sender
/// and as the recipient pinned to the sender, ours likewise, and discovery), ephemeral (read by discovery).
#[test]
fn every_scheme_and_curve_interoperates_with_the_python_mpl_both_ways() {
    let Some(python) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    keys(&python, dir.path());
    let plaintext: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
    let pt = dir.path().join("plaintext");
    fs::write(&pt, &plaintext).unwrap();
    let curves: Vec<Curve<'_>> = EcdhCurve::ALL.into_iter().map(|curve| Curve { curve, dir: dir.path() }).collect();
    let mut options = EncryptOptions::new();
    for (k, v) in CONTEXT {
        options = options.context(k, v);
    }

    // Python encrypts (static a→b, ephemeral →b); we write ours (static a→b, ephemeral →b).
    let mut jobs = Vec::new();
    for c in &curves {
        for scheme in ["static", "ephemeral"] {
            let ours: Box<dyn Keyring> = match scheme {
                "static" => Box::new(RawEcdhKeyring::static_keys(c.private("a"), c.public("b")).unwrap()),
                _ => Box::new(RawEcdhKeyring::ephemeral(c.public("b"))),
            };
            let message = kms_envelope::encrypt(&ours, &options, &plaintext).unwrap();
            fs::write(c.file(&format!("ours-{scheme}.esdk")), message).unwrap();
            jobs.push(job("encrypt", &pt, &c.file(&format!("python-{scheme}.esdk")), c.peer_args(scheme, false)));
        }
    }
    for (result, args) in run_batch(&python, &jobs).into_iter().zip(&jobs) {
        assert_eq!(result, Ok(()), "{args:?}");
    }

    // Python decrypts ours; we decrypt Python's, each with every keyring that may read it.
    let mut jobs = Vec::new();
    let mut readers: Vec<String> = Vec::new();
    for c in &curves {
        for (scheme, python_readers) in [
            ("static", &[("static", false), ("static", true), ("discovery", false)][..]),
            ("ephemeral", &[("discovery", false)]),
        ] {
            let ours = c.file(&format!("ours-{scheme}.esdk"));
            for &(reader, pinned) in python_readers {
                let out = c.file(&format!("ours-{scheme}-by-{reader}-{pinned}.out"));
                jobs.push(job("decrypt", &ours, &out, c.peer_args(reader, pinned)));
                readers.push(out.display().to_string());
            }
            let theirs = fs::read(c.file(&format!("python-{scheme}.esdk"))).unwrap();
            let mut our_readers: Vec<(&str, RawEcdhKeyring)> =
                vec![("discovery", RawEcdhKeyring::discovery(c.private("b")))];
            if scheme == "static" {
                our_readers.push(("static", RawEcdhKeyring::static_keys(c.private("a"), c.public("b")).unwrap()));
                our_readers.push(("pinned", RawEcdhKeyring::decrypt_from(c.private("b"), c.public("a")).unwrap()));
            }
            for (name, reader) in our_readers {
                let decrypted = kms_envelope::decrypt(&reader, &DecryptOptions::new(), &theirs)
                    .unwrap_or_else(|e| panic!("{} python {scheme} read by our {name}: {e}", c.curve));
                assert_eq!(*decrypted.plaintext, plaintext, "{} python {scheme} read by our {name}", c.curve);
            }
            // A recipient pinned to another sender refuses Python's static message.
            if scheme == "static" {
                let wrong = RawEcdhKeyring::decrypt_from(c.private("b"), c.public("b")).unwrap();
                assert!(kms_envelope::decrypt(&wrong, &DecryptOptions::new(), &theirs).is_err());
            }
        }
    }
    for ((result, args), out) in run_batch(&python, &jobs).into_iter().zip(&jobs).zip(&readers) {
        assert_eq!(result, Ok(()), "{args:?}");
        assert_eq!(fs::read(out).unwrap(), plaintext, "{out}");
    }
    assert_eq!(jobs.len(), 3 * 4);
}

/// The PKCS #8 DER inside a `PRIVATE KEY` PEM file.
#[cfg(feature = "kms")]
fn pem_der(pem: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = std::str::from_utf8(pem).unwrap().lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

/// The AWS KMS ECDH keyring against the Python MPL's raw ECDH keyring holding the KMS key's private key
/// (key pair `a`; the KMS endpoint is a local stub doing the real ECDH, through the real SDK): our
/// `aws-kms-ecdh` message is read by Python as recipient `b` (pinned to `a`, and by discovery) and as
/// the sender `a` itself; Python's `raw-ecdh` messages a→b and b→a are read by our KMS keyring (as the
/// sender, pinned to `b`, and by discovery).
#[cfg(feature = "kms")]
#[test]
fn the_kms_ecdh_keyring_interoperates_with_the_python_raw_ecdh_keyring() {
    use kms_envelope::AwsKmsEcdhKeyring;
    use kms_envelope::keyring::block_on;
    let Some(python) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    keys(&python, dir.path());
    let plaintext = b"kms ecdh interop".repeat(100);
    let pt = dir.path().join("plaintext");
    fs::write(&pt, &plaintext).unwrap();
    let arn = "arn:aws:kms:us-east-1:111122223333:key/aaaaaaaa-1111-2222-3333-444444444444";
    let mut options = EncryptOptions::new();
    for (k, v) in CONTEXT {
        options = options.context(k, v);
    }
    let curves: Vec<Curve<'_>> = EcdhCurve::ALL.into_iter().map(|curve| Curve { curve, dir: dir.path() }).collect();
    let mut stubs = Vec::new();
    let mut jobs = Vec::new();
    for c in &curves {
        let algorithm = match c.curve {
            EcdhCurve::P256 => &aws_lc_rs::agreement::ECDH_P256,
            EcdhCurve::P384 => &aws_lc_rs::agreement::ECDH_P384,
            EcdhCurve::P521 => &aws_lc_rs::agreement::ECDH_P521,
        };
        let der = pem_der(&fs::read(c.file("a.pem")).unwrap());
        let key = aws_lc_rs::agreement::PrivateKey::from_private_key_der(algorithm, &der).unwrap();
        let stub =
            crate::support::StubKms::start(move |_, op, body| crate::support::ecdh_kms_answer(&key, arn, op, body));
        let client = aws_sdk_kms::Client::new(&crate::support::sdk_config(&stub.url));
        let keyring = block_on(AwsKmsEcdhKeyring::new(client.clone(), arn, c.public("b"))).unwrap();
        assert_eq!(keyring.public_key(), &c.public("a"));
        fs::write(c.file("kms.esdk"), kms_envelope::encrypt(&keyring, &options, &plaintext).unwrap()).unwrap();
        for (name, scheme, pinned) in
            [("pinned", "static", true), ("sender", "static", false), ("discovery", "discovery", false)]
        {
            jobs.push(job(
                "decrypt",
                &c.file("kms.esdk"),
                &c.file(&format!("kms-by-{name}.out")),
                c.peer_args(scheme, pinned),
            ));
        }
        // Python writes raw-ecdh a→b and b→a.
        jobs.push(job("encrypt", &pt, &c.file("py-ab.esdk"), c.peer_args("static", false)));
        jobs.push(job("encrypt", &pt, &c.file("py-ba.esdk"), c.peer_args("static", true)));
        stubs.push((stub, client, keyring));
    }
    for (result, args) in run_batch(&python, &jobs).into_iter().zip(&jobs) {
        assert_eq!(result, Ok(()), "{args:?}");
    }
    for (c, (stub, client, sender)) in curves.iter().zip(stubs) {
        for name in ["pinned", "sender", "discovery"] {
            assert_eq!(fs::read(c.file(&format!("kms-by-{name}.out"))).unwrap(), plaintext, "{} {name}", c.curve);
        }
        let pinned = block_on(AwsKmsEcdhKeyring::decrypt_from(client.clone(), arn, c.public("b"))).unwrap();
        let discovery = block_on(AwsKmsEcdhKeyring::discovery(client, arn, c.curve)).unwrap();
        for (file, reader) in [("py-ab.esdk", &sender), ("py-ba.esdk", &pinned), ("py-ba.esdk", &discovery)] {
            let message = fs::read(c.file(file)).unwrap();
            let decrypted = kms_envelope::decrypt(reader, &DecryptOptions::new(), &message)
                .unwrap_or_else(|e| panic!("{} python {file} read by our {}: {e}", c.curve, reader.scheme_name()));
            assert_eq!(*decrypted.plaintext, plaintext);
        }
        let calls = stub.requests();
        assert_eq!(calls.iter().filter(|c| *c == "GetPublicKey").count(), 3, "{calls:?}");
        assert_eq!(calls.iter().filter(|c| *c == "DeriveSharedSecret").count(), 4, "{calls:?}");
    }
}

/// The Lambda decryptor's AWS KMS ECDH variables (`KMS_ENVELOPE_ECDH_KMS_KEY_ARN` with the key's public key
/// file, and the sender pin): what the pinned sender wrote to the KMS key decrypts through KMS
/// `DeriveSharedSecret` (a local stub holding the key pair), another sender's message is refused without a
/// KMS call, and building the keyring made none.
#[cfg(feature = "lambda")]
#[test]
fn the_lambda_kms_ecdh_variables_read_only_the_pinned_senders_messages() {
    use aws_lc_rs::encoding::AsDer as _;
    use kms_envelope::lambda::env::{
        BUNDLES_VAR, ECDH_CURVE_VAR, ECDH_KMS_KEY_ARN_VAR, ECDH_KMS_PUBLIC_KEY_FILE_VAR,
        ECDH_SENDER_PUBLIC_KEY_FILE_VAR, EnvConfig,
    };
    let arn = "arn:aws:kms:us-east-1:111122223333:key/bbbbbbbb-1111-2222-3333-444444444444";
    let dir = tempfile::tempdir().unwrap();
    let kms_private = aws_lc_rs::agreement::PrivateKey::generate(&aws_lc_rs::agreement::ECDH_P256).unwrap();
    let kms_public_der = kms_private.compute_public_key().unwrap().as_der().unwrap().as_ref().to_vec();
    let kms_public = EcdhPublicKey::from_der(EcdhCurve::P256, &kms_public_der).unwrap();
    let [sender, stranger] = [(); 2].map(|()| EcdhPrivateKey::generate(EcdhCurve::P256).unwrap());
    let (kms_file, sender_file) = (dir.path().join("kms.der"), dir.path().join("sender.der"));
    fs::write(&kms_file, &kms_public_der).unwrap();
    fs::write(&sender_file, sender.public_key().to_spki_der().unwrap()).unwrap();
    let options = EncryptOptions::new();
    let message =
        kms_envelope::encrypt(&RawEcdhKeyring::static_keys(sender, kms_public.clone()).unwrap(), &options, b"cold")
            .unwrap();
    let forged =
        kms_envelope::encrypt(&RawEcdhKeyring::static_keys(stranger, kms_public).unwrap(), &options, b"forged")
            .unwrap();
    let stub =
        crate::support::StubKms::start(move |_, op, body| crate::support::ecdh_kms_answer(&kms_private, arn, op, body));

    let vars = [
        (BUNDLES_VAR, "a.esdk=a".to_owned()),
        (ECDH_CURVE_VAR, "p256".to_owned()),
        (ECDH_KMS_KEY_ARN_VAR, arn.to_owned()),
        (ECDH_KMS_PUBLIC_KEY_FILE_VAR, kms_file.display().to_string()),
        (ECDH_SENDER_PUBLIC_KEY_FILE_VAR, sender_file.display().to_string()),
    ];
    let config =
        EnvConfig::from_lookup(|name| vars.iter().find(|(var, _)| *var == name).map(|(_, value)| value.clone()))
            .unwrap();
    let keyring = config.keyring(&stub.clients()).unwrap();
    assert_eq!(stub.requests(), Vec::<String>::new(), "building the keyring called KMS");
    let decrypted = kms_envelope::decrypt(&*keyring, &DecryptOptions::new(), &message).unwrap();
    assert_eq!(&*decrypted.plaintext, b"cold");
    assert!(kms_envelope::decrypt(&*keyring, &DecryptOptions::new(), &forged).is_err(), "another sender's message");
    assert_eq!(stub.requests(), ["DeriveSharedSecret"], "one call, for the pinned sender's EDK only");
}

/// The raw ECDH keyring composes as issue #29 asks: required-encryption-context pairs (bound through the
/// wrapping, not stored in the header: a wrong reproduced pair unwraps nothing) and the caching keyring,
/// which makes one ECDH wrap for several messages, each of which the pinned reader decrypts.
#[test]
fn raw_ecdh_composes_with_required_context_and_the_caching_keyring() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use kms_envelope::{CacheLimits, CachingKeyring, MaterialsCache};

    let curve = EcdhCurve::P384;
    let [sender, recipient] = [(); 2].map(|()| EcdhPrivateKey::generate(curve).unwrap());
    let (sender_public, recipient_public) = (sender.public_key().clone(), recipient.public_key().clone());
    let writer = RawEcdhKeyring::static_keys(sender, recipient_public).unwrap();
    let reader = RawEcdhKeyring::decrypt_from(recipient, sender_public).unwrap();
    let options = EncryptOptions::new().required_context("tenant", "acme");
    let decrypt = DecryptOptions::new().context("tenant", "acme").require_context_key("tenant");
    let wrong = DecryptOptions::new().context("tenant", "other").require_context_key("tenant");

    let message = kms_envelope::encrypt(&writer, &options, b"payload").unwrap();
    assert_eq!(&kms_envelope::decrypt(&reader, &decrypt, &message).unwrap().plaintext[..], b"payload");
    assert!(kms_envelope::decrypt(&reader, &wrong, &message).is_err(), "another required pair");

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = common::CountingKeyring { inner: writer, calls: calls.clone() };
    let limits = CacheLimits::new(Duration::from_secs(600));
    let caching = CachingKeyring::new(counted, Arc::new(MaterialsCache::new(8)), limits).unwrap();
    for i in 0..3 {
        let plaintext = format!("message {i}");
        let message = kms_envelope::encrypt(&caching, &options, plaintext.as_bytes()).unwrap();
        assert_eq!(kms_envelope::decrypt(&reader, &decrypt, &message).unwrap().plaintext[..], *plaintext.as_bytes());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one ECDH wrap for the three messages");
}
