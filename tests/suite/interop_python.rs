//! Interop with the official AWS Encryption SDK for Python (4.x, through tests/peers/esdk_peer.py), in both
//! directions, with raw AES keys. Under CI=true a missing Python peer fails the run.

use crate::common;
#[cfg(all(feature = "kms", feature = "rsa"))]
use crate::support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kms_envelope::{
    AlgorithmSuite, CommitmentPolicy, DecryptOptions, EncryptOptions, EncryptionContext, Error, RawAesKeyring,
};

const WRAPPING_KEY: [u8; 32] = [
    0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81, 0x1f, 0x35, 0x2c,
    0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4,
];
const NAMESPACE: &str = "kms-envelope-interop";
const KEY_NAME: &str = "aes-256 ключ";

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new(NAMESPACE, KEY_NAME, &WRAPPING_KEY).unwrap()
}

fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i as u32).wrapping_mul(2654435761) >> 13) as u8 ^ seed).collect()
}

fn context_json(context: &EncryptionContext) -> String {
    let pairs: Vec<String> = context
        .iter()
        .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), serde_json::to_string(v).unwrap()))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

struct Peer {
    python: PathBuf,
    dir: tempfile::TempDir,
}

impl Peer {
    fn new() -> Option<Self> {
        Some(Self { python: common::python()?, dir: tempfile::tempdir().unwrap() })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the peer with the interop key; returns Ok(()) or its one-line error.
    fn run(&self, op: &str, input: &Path, output: &Path, extra: &[String]) -> Result<(), String> {
        let args = Self::args(op, input, output, extra);
        let out = Command::new(&self.python).arg(common::peer_script()).args(&args).output().unwrap();
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_string()) }
    }

    /// Runs many commands (as for [`run`](Self::run)) in one peer process (`esdk_peer.py batch`): the SDK
    /// import, most of a short command's time, is paid once. One result per job, in order.
    fn batch(&self, jobs: &[(&str, PathBuf, PathBuf, Vec<String>)]) -> Vec<Result<(), String>> {
        let command_lines: Vec<Vec<String>> =
            jobs.iter().map(|(op, input, output, extra)| Self::args(op, input, output, extra)).collect();
        self.batch_command_lines(&command_lines)
    }

    /// Like [`batch`](Self::batch) for whole command lines, which name their own keys.
    fn batch_command_lines(&self, jobs: &[Vec<String>]) -> Vec<Result<(), String>> {
        common::peer_batch_jobs(&self.python, jobs)
    }

    fn args(op: &str, input: &Path, output: &Path, extra: &[String]) -> Vec<String> {
        Self::args_with_key(op, input, output, &WRAPPING_KEY, KEY_NAME, extra)
    }

    /// A command line for the raw AES key `key` named `name` (in [`NAMESPACE`]).
    fn args_with_key(op: &str, input: &Path, output: &Path, key: &[u8], name: &str, extra: &[String]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            op.into(),
            "--in".into(),
            input.display().to_string(),
            "--out".into(),
            output.display().to_string(),
            "--raw-key-hex".into(),
            common::hex(key),
            "--key-namespace".into(),
            NAMESPACE.into(),
            "--key-name".into(),
            name.into(),
        ];
        args.extend_from_slice(extra);
        args
    }
}

fn contexts() -> Vec<EncryptionContext> {
    vec![
        EncryptionContext::new(),
        [("purpose", "interop"), ("клиент", "значение ✓"), ("\u{10000}key", "astral"), ("\u{FF61}key", "bmp")]
            .into_iter()
            .collect(),
    ]
}

fn cases(frame_lengths: &[u32]) -> Vec<(u32, usize, usize)> {
    let mut cases = Vec::new();
    for &frame in frame_lengths {
        let f = frame as usize;
        let mut sizes = vec![0, 1, f.saturating_sub(1), f, f + 1, 3 * f];
        if frame >= 4096 {
            sizes.push(3 << 20);
        }
        sizes.sort_unstable();
        sizes.dedup();
        for size in sizes {
            for ctx in 0..contexts().len() {
                cases.push((frame, size, ctx));
            }
        }
    }
    cases
}

/// These interop tests run on the AES-GCM backend this build is for: RustCrypto in the raw-key builds
/// (`--no-default-features`), AWS-LC in the full one; scripts/test.sh runs this file in every set.
#[test]
fn runs_on_the_aes_gcm_backend_its_features_ask_for() {
    common::assert_expected_aes_gcm_backend();
}

#[test]
fn python_decrypts_what_we_encrypt() {
    let Some(peer) = Peer::new() else { return };
    let items = cases(&[1, 4096, 65536]);
    let mut jobs = Vec::new();
    for &(frame, size, ctx) in &items {
        let context = &contexts()[ctx];
        let pt = plaintext(size, frame as u8);
        let mut options = EncryptOptions::new().frame_length(frame).encryption_context(context.clone());
        if ctx % 2 == 0 {
            // Sealed on two threads from the first byte: the one-shot whole-message path.
            options = options.threads(2).parallel_threshold(0);
        }
        let message = kms_envelope::encrypt(&keyring(), &options, &pt).unwrap();
        let tag = format!("ours-{frame}-{size}-{ctx}");
        let (ct, out) = (peer.path(&format!("{tag}.ct")), peer.path(&format!("{tag}.pt")));
        fs::write(&ct, &message).unwrap();
        jobs.push(("decrypt", ct, out, vec!["--context-json".into(), context_json(context)]));
    }
    let mut failures = Vec::new();
    for (((frame, size, ctx), (_, _, out, _)), result) in items.iter().zip(&jobs).zip(peer.batch(&jobs)) {
        let tag = format!("ours-{frame}-{size}-{ctx}");
        match result {
            Err(e) => failures.push(format!("{tag}: Python refused our message: {e}")),
            Ok(()) if fs::read(out).unwrap() != plaintext(*size, *frame as u8) => {
                failures.push(format!("{tag}: Python decrypted a different plaintext"))
            }
            Ok(()) => {}
        }
    }
    eprintln!("python decrypted our messages: {} cases, {} failures", items.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn we_decrypt_what_python_encrypts() {
    let Some(peer) = Peer::new() else { return };
    // The Python ESDK encrypts only frame lengths that are multiples of its block size, so no 1 here.
    let items = cases(&[4096, 65536]);
    let mut jobs = Vec::new();
    for &(frame, size, ctx) in &items {
        let tag = format!("python-{frame}-{size}-{ctx}");
        let (input, ct) = (peer.path(&format!("{tag}.pt")), peer.path(&format!("{tag}.ct")));
        fs::write(&input, plaintext(size, 0x33 ^ frame as u8)).unwrap();
        let extra = vec![
            "--suite".into(),
            "0x0478".into(),
            "--frame-length".into(),
            frame.to_string(),
            "--context-json".into(),
            context_json(&contexts()[ctx]),
        ];
        jobs.push(("encrypt", input, ct, extra));
    }
    let results = peer.batch(&jobs);
    let check = |&(frame, size, ctx): &(u32, usize, usize), ct: &Path, result: Result<(), String>| {
        let tag = format!("python-{frame}-{size}-{ctx}");
        result.map_err(|e| format!("{tag}: Python failed to encrypt: {e}"))?;
        let context = &contexts()[ctx];
        let message = fs::read(ct).unwrap();
        let mut options = DecryptOptions::new();
        if ctx % 2 == 0 {
            options = options.threads(2).parallel_threshold(0);
        }
        for (k, v) in context.iter() {
            options = options.context(k, v);
        }
        let decrypted =
            kms_envelope::decrypt(&keyring(), &options, &message).map_err(|e| format!("{tag}: we refused: {e}"))?;
        if *decrypted.plaintext != plaintext(size, 0x33 ^ frame as u8) {
            return Err(format!("{tag}: we decrypted a different plaintext"));
        }
        if decrypted.header.frame_length() != frame || decrypted.header.suite().id() != 0x0478 {
            return Err(format!("{tag}: header differs from what Python was asked to write"));
        }
        Ok(())
    };
    let failures: Vec<String> = items
        .iter()
        .zip(&jobs)
        .zip(results)
        .filter_map(|((item, (_, _, ct, _)), result)| check(item, ct, result).err())
        .collect();
    eprintln!("we decrypted Python's messages: {} cases, {} failures", items.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every suite but the two above (v1 headers: 0x0014 ... 0x0178; P-256 and P-384 footers: 0x0214, 0x0346,
/// 0x0378), and 0x0478/0x0578 again, under raw AES wrapping keys of 16, 24 and 32 bytes, both ways:
/// - Python decrypts what we encrypt, and reports the suite it read in the header; the non-committing
///   suites need Python's require-encrypt-allow-decrypt policy, and its default policy refuses them;
/// - we decrypt what Python encrypts with the same suite and key.
///
/// The tally is by the suite Python read and the key size, against a table written out here: a suite
/// dropped from the list, or one our encryptor silently replaces, fails it.
#[test]
fn every_suite_and_wrapping_key_size_interoperates_both_ways() {
    const SUITES: [u16; 11] = [0x0014, 0x0046, 0x0078, 0x0114, 0x0146, 0x0178, 0x0214, 0x0346, 0x0378, 0x0478, 0x0578];
    const KEY_LENS: [usize; 3] = [16, 24, 32];
    const SIZES: [usize; 3] = [0, 1, 5000];
    let Some(peer) = Peer::new() else { return };
    let key_name = |key_len: usize| format!("aes-{} ключ", key_len * 8);
    let allow_decrypt = || vec!["--commitment-policy".to_owned(), "require-encrypt-allow-decrypt".to_owned()];

    /// One decrypt by Python: `expect` is the plaintext, or `None` where Python must refuse.
    struct Job {
        tag: String,
        key_len: usize,
        suite: u16,
        expect: Option<Vec<u8>>,
        output: PathBuf,
        header: PathBuf,
    }
    let (mut jobs, mut command_lines) = (Vec::new(), Vec::new());
    for key_len in KEY_LENS {
        let key = &WRAPPING_KEY[..key_len];
        let keyring = RawAesKeyring::new(NAMESPACE, key_name(key_len), key).unwrap();
        for suite_id in SUITES {
            let suite = AlgorithmSuite::from_id(suite_id).unwrap();
            let policy = if suite.is_committing() {
                CommitmentPolicy::RequireEncryptRequireDecrypt
            } else {
                CommitmentPolicy::ForbidEncryptAllowDecrypt
            };
            for (i, size) in SIZES.into_iter().enumerate() {
                let context = &contexts()[i % 2];
                let pt = plaintext(size, suite_id as u8 ^ key_len as u8);
                let options = EncryptOptions::new()
                    .suite(suite)
                    .commitment_policy(policy)
                    .frame_length(4096)
                    .encryption_context(context.clone());
                let message = kms_envelope::encrypt(&keyring, &options, &pt).unwrap();
                let tag = format!("ours-{suite_id:04x}-aes{}-{size}", key_len * 8);
                let (ct, out, header) = (
                    peer.path(&format!("{tag}.ct")),
                    peer.path(&format!("{tag}.pt")),
                    peer.path(&format!("{tag}.json")),
                );
                fs::write(&ct, &message).unwrap();
                let mut extra = vec!["--context-json".to_owned(), context_json(context), "--header-out".to_owned()];
                extra.push(header.display().to_string());
                if !suite.is_committing() {
                    // Python's default policy (require-require) must refuse it: the policy is really applied.
                    if i == 0 {
                        let refused = peer.path(&format!("{tag}.refused"));
                        let args = Peer::args_with_key("decrypt", &ct, &refused, key, &key_name(key_len), &[]);
                        command_lines.push(args);
                        let header = peer.path(&format!("{tag}.refused.json"));
                        jobs.push(Job {
                            tag: format!("{tag} (default policy)"),
                            key_len,
                            suite: suite_id,
                            expect: None,
                            output: refused,
                            header,
                        });
                    }
                    extra.extend(allow_decrypt());
                }
                command_lines.push(Peer::args_with_key("decrypt", &ct, &out, key, &key_name(key_len), &extra));
                jobs.push(Job { tag, key_len, suite: suite_id, expect: Some(pt), output: out, header });
            }
        }
    }
    let results = peer.batch_command_lines(&command_lines);
    let mut failures = Vec::new();
    let mut tally: std::collections::BTreeMap<(String, usize), u32> = Default::default();
    let mut refused = 0;
    for (job, result) in jobs.iter().zip(results) {
        match (&job.expect, result) {
            (None, Err(e)) if e.contains("Commitment") || e.contains("commitment") => refused += 1,
            (None, Err(e)) => failures.push(format!("{}: Python refused, but not for the policy: {e}", job.tag)),
            (None, Ok(())) => {
                failures.push(format!("{}: Python decrypted a non-committing suite under require-require", job.tag))
            }
            (Some(_), Err(e)) => failures.push(format!("{}: Python refused our message: {e}", job.tag)),
            (Some(pt), Ok(())) => {
                let summary: serde_json::Value = serde_json::from_slice(&fs::read(&job.header).unwrap()).unwrap();
                let read = summary["suite"].as_str().unwrap_or("?").to_owned();
                if fs::read(&job.output).unwrap() != *pt {
                    failures.push(format!("{}: Python decrypted a different plaintext", job.tag));
                } else if read != format!("0x{:04X}", job.suite) {
                    failures.push(format!("{}: Python read suite {read}", job.tag));
                }
                *tally.entry((read, job.key_len)).or_default() += 1;
            }
        }
    }

    // Python -> us: one message per suite and key size.
    let input = peer.path("python-every-suite.pt");
    let pt = plaintext(5000, 0x77);
    fs::write(&input, &pt).unwrap();
    let mut ours_read = 0;
    let mut python_jobs = Vec::new();
    for key_len in KEY_LENS {
        for suite_id in SUITES {
            let ct = peer.path(&format!("python-{suite_id:04x}-aes{}.ct", key_len * 8));
            let mut extra = vec!["--suite".to_owned(), format!("0x{suite_id:04x}"), "--context-json".to_owned()];
            extra.push(context_json(&contexts()[1]));
            if !AlgorithmSuite::from_id(suite_id).unwrap().is_committing() {
                extra.extend(["--commitment-policy".to_owned(), "forbid-encrypt-allow-decrypt".to_owned()]);
            }
            python_jobs.push(Peer::args_with_key(
                "encrypt",
                &input,
                &ct,
                &WRAPPING_KEY[..key_len],
                &key_name(key_len),
                &extra,
            ));
        }
    }
    let python_results = peer.batch_command_lines(&python_jobs);
    let mut i = 0;
    for key_len in KEY_LENS {
        let keyring = RawAesKeyring::new(NAMESPACE, key_name(key_len), &WRAPPING_KEY[..key_len]).unwrap();
        for suite_id in SUITES {
            let tag = format!("python-{suite_id:04x}-aes{}", key_len * 8);
            let result = &python_results[i];
            i += 1;
            if let Err(e) = result {
                failures.push(format!("{tag}: Python failed to encrypt: {e}"));
                continue;
            }
            let message = fs::read(peer.path(&format!("{tag}.ct"))).unwrap();
            let mut options = DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
            for (k, v) in contexts()[1].iter() {
                options = options.context(k, v);
            }
            match kms_envelope::decrypt(&keyring, &options, &message) {
                Ok(d) if *d.plaintext == pt && d.header.suite().id() == suite_id => ours_read += 1,
                Ok(d) => failures.push(format!("{tag}: we read suite {} / another plaintext", d.header.suite())),
                Err(e) => failures.push(format!("{tag}: we refused: {e}")),
            }
        }
    }

    for ((suite, key_len), n) in &tally {
        eprintln!("python decrypted ours: suite {suite}, AES-{} wrapping key: {n} messages", key_len * 8);
    }
    eprintln!(
        "python refused {refused} non-committing messages under its default policy; we decrypted {ours_read} of \
         Python's; {} failures",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let expected: Vec<(String, usize, u32)> =
        ["0x0014", "0x0046", "0x0078", "0x0114", "0x0146", "0x0178", "0x0214", "0x0346", "0x0378", "0x0478", "0x0578"]
            .iter()
            .flat_map(|suite| [16, 24, 32].map(|key_len| (suite.to_string(), key_len, 3)))
            .collect();
    let got: Vec<(String, usize, u32)> = tally.into_iter().map(|((s, k), n)| (s, k, n)).collect();
    assert_eq!(got, expected, "messages Python decrypted, per suite it read and wrapping key size");
    assert_eq!((refused, ours_read), (27, 33), "refusals under Python's default policy, Python's messages we read");
}

/// Python's default suite is the signed 0x0578; ours must read it, and Python must read our 0x0578.
#[test]
fn signed_messages_interoperate_both_ways() {
    let Some(peer) = Peer::new() else { return };
    let pt = plaintext(200_000, 7);
    let input = peer.path("signed.pt");
    fs::write(&input, &pt).unwrap();

    // Python with its defaults (suite 0x0578, frame length 4096) -> us.
    let ct = peer.path("python-default.ct");
    peer.run("encrypt", &input, &ct, &["--context-json".into(), r#"{"a":"b"}"#.into()]).unwrap();
    let message = fs::read(&ct).unwrap();
    let decrypted = kms_envelope::decrypt(&keyring(), &DecryptOptions::new(), &message).unwrap();
    assert_eq!(decrypted.header.suite(), AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384);
    assert_eq!(*decrypted.plaintext, pt);
    assert!(decrypted.header.encryption_context().contains_key("aws-crypto-public-key"));

    // Unsigned-only mode refuses it right after the header.
    let err = kms_envelope::decrypt(&keyring(), &DecryptOptions::new().unsigned_only(true), &message).unwrap_err();
    assert!(matches!(err, Error::SignedMessageRefused(0x0578)), "{err}");

    // Us (0x0578) -> Python.
    let options =
        EncryptOptions::new().suite(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384).context("a", "b");
    let ours = kms_envelope::encrypt(&keyring(), &options, &pt).unwrap();
    let (ct, out) = (peer.path("ours-signed.ct"), peer.path("ours-signed.out"));
    fs::write(&ct, &ours).unwrap();
    peer.run("decrypt", &ct, &out, &["--context-json".into(), r#"{"a":"b"}"#.into()]).unwrap();
    assert_eq!(fs::read(&out).unwrap(), pt);

    // A single flipped bit in our signature makes Python refuse it too: the footer is really checked.
    let mut bad = ours.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    fs::write(&ct, &bad).unwrap();
    let err = peer.run("decrypt", &ct, &out, &[]).unwrap_err();
    assert!(err.contains("InvalidSignature"), "Python refused the message, but not for its signature: {err}");
}

/// The README's non-framed body limit (64 MiB by default), pinned here because only the Python ESDK writes
/// non-framed messages: a body of exactly 64 MiB decrypts with the default limits, one a byte longer is
/// refused at its length field.
#[test]
fn non_framed_bodies_of_64_mib_are_accepted_and_one_byte_more_refused() {
    let Some(peer) = Peer::new() else { return };
    let max = kms_envelope::DecryptLimits::DEFAULT.max_nonframed_body_len;
    let (input, ct) = (peer.path("nonframed.pt"), peer.path("nonframed.ct"));
    for len in [max, max + 1] {
        let pt = plaintext(len as usize, 0x5a);
        fs::write(&input, &pt).unwrap();
        let extra = ["--suite".into(), "0x0478".into(), "--frame-length".into(), "0".into()];
        peer.run("encrypt", &input, &ct, &extra).unwrap();
        let message = fs::read(&ct).unwrap();
        let result = kms_envelope::decrypt(&keyring(), &DecryptOptions::new(), &message);
        if len == max {
            let decrypted = result.unwrap();
            assert_eq!(decrypted.header.content_type(), kms_envelope::ContentType::NonFramed);
            assert!(*decrypted.plaintext == pt, "the 64 MiB body decrypted to something else");
        } else {
            let Err(err) = result else { panic!("a non-framed body over the limit decrypted") };
            assert!(
                matches!(err, Error::LimitExceeded { limit: "non-framed body length", value, max: m } if value == len && m == max),
                "{err:?}"
            );
        }
    }
}

/// Legacy suites written by Python under the forbid policy: accepted under allow-decrypt, refused by default.
#[test]
fn legacy_python_messages_follow_the_commitment_policy() {
    let Some(peer) = Peer::new() else { return };
    let pt = plaintext(10_000, 9);
    let input = peer.path("legacy.pt");
    fs::write(&input, &pt).unwrap();
    for suite in ["0x0178", "0x0378"] {
        let ct = peer.path(&format!("legacy-{suite}.ct"));
        let extra =
            ["--suite".into(), suite.into(), "--commitment-policy".into(), "forbid-encrypt-allow-decrypt".into()];
        peer.run("encrypt", &input, &ct, &extra).unwrap();
        let message = fs::read(&ct).unwrap();
        let err = kms_envelope::decrypt(&keyring(), &DecryptOptions::new(), &message).unwrap_err();
        assert!(
            matches!(err, Error::CommitmentPolicy(ref m) if m.contains("require-encrypt-allow-decrypt")),
            "{suite}: {err}"
        );
        let options = DecryptOptions::new().commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
        let decrypted = kms_envelope::decrypt(&keyring(), &options, &message).unwrap();
        assert_eq!(*decrypted.plaintext, pt, "{suite}");
        assert_eq!(format!("{}", decrypted.header.suite()), suite.to_uppercase().replace("0X", "0x"));
    }
}

/// The CLI decrypts Python's default output (signed 0x0578), and our CLI's output decrypts with Python.
#[cfg(feature = "cli")]
#[test]
fn cli_and_python_interoperate() {
    let Some(peer) = Peer::new() else { return };
    let pt = plaintext(70_000, 3);
    let input = peer.path("cli.pt");
    fs::write(&input, &pt).unwrap();
    let key_file = peer.path("key.bin");
    fs::write(&key_file, WRAPPING_KEY).unwrap();
    let key_args = |cmd: &mut assert_cmd::Command| {
        cmd.arg("--raw-key-file").arg(&key_file).args(["--key-namespace", NAMESPACE, "--key-name", KEY_NAME]);
    };

    let ct = peer.path("python-cli.ct");
    peer.run("encrypt", &input, &ct, &[]).unwrap();
    let out = peer.path("cli.out");
    let mut cmd = assert_cmd::Command::cargo_bin("kms-envelope").unwrap();
    cmd.arg("decrypt");
    key_args(&mut cmd);
    cmd.arg(&ct).arg(&out).assert().success();
    assert_eq!(fs::read(&out).unwrap(), pt);

    let ours = peer.path("cli-ours.ct");
    let mut cmd = assert_cmd::Command::cargo_bin("kms-envelope").unwrap();
    cmd.args(["encrypt", "--suite", "0x0578", "--context", "stage=prod"]);
    key_args(&mut cmd);
    cmd.arg(&input).arg(&ours).assert().success();
    let back = peer.path("cli-ours.out");
    peer.run("decrypt", &ours, &back, &["--context-json".into(), r#"{"stage":"prod"}"#.into()]).unwrap();
    assert_eq!(fs::read(&back).unwrap(), pt);
}

/// README: "Encrypt defaults to suite **0x0478** (...) with 64 KiB frames", and `--frame-length N`
/// "(default 65536)": the headers of messages made with the default options, by the library and by the
/// CLI, as the Python SDK parses them.
#[test]
fn the_defaults_are_the_readmes_suite_and_64_kib_frames_as_python_reads_them() {
    let Some(peer) = Peer::new() else { return };
    let pt = plaintext(150_000, 11);
    let input = peer.path("defaults.pt");
    fs::write(&input, &pt).unwrap();
    let library = peer.path("defaults-library.ct");
    fs::write(&library, kms_envelope::encrypt(&keyring(), &EncryptOptions::new(), &pt).unwrap()).unwrap();
    let key_file = peer.path("defaults-key.bin");
    fs::write(&key_file, WRAPPING_KEY).unwrap();
    let cli = peer.path("defaults-cli.ct");
    assert_cmd::Command::cargo_bin("kms-envelope")
        .unwrap()
        .arg("encrypt")
        .arg("--raw-key-file")
        .arg(&key_file)
        .args(["--key-namespace", NAMESPACE, "--key-name", KEY_NAME])
        .arg(&input)
        .arg(&cli)
        .assert()
        .success();

    let made = [("the library", library), ("the CLI", cli)];
    let jobs: Vec<_> = made
        .iter()
        .map(|(_, message)| {
            let header = message.with_extension("json");
            let output = message.with_extension("out");
            ("decrypt", message.clone(), output, vec!["--header-out".to_owned(), header.display().to_string()])
        })
        .collect();
    for ((who, _), (result, (_, _, output, extra))) in made.iter().zip(peer.batch(&jobs).into_iter().zip(&jobs)) {
        result.unwrap_or_else(|e| panic!("Python refused the message {who} made with the defaults: {e}"));
        assert!(fs::read(output).unwrap() == pt, "{who}: Python decrypted something else");
        let summary: serde_json::Value = serde_json::from_slice(&fs::read(&extra[1]).unwrap()).unwrap();
        assert_eq!(summary["frame_length"], 65536, "{who}: {summary}");
        assert_eq!(summary["suite"], "0x0478", "{who}: {summary}");
    }
}

/// An RSA-2048 key pair written by Python's `cryptography`: the private key as PKCS #8 PEM, the public key
/// as `PUBLIC KEY` (SubjectPublicKeyInfo) and as `RSA PUBLIC KEY` (PKCS #1, `PublicFormat.PKCS1`) PEM.
#[cfg(feature = "rsa")]
struct RsaKeyFiles {
    private: PathBuf,
    public_spki: PathBuf,
    public_pkcs1: PathBuf,
}

#[cfg(feature = "rsa")]
impl RsaKeyFiles {
    fn generate(peer: &Peer) -> Self {
        let script = r#"
import sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import rsa
k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
open(sys.argv[1], "wb").write(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
open(sys.argv[2], "wb").write(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
open(sys.argv[3], "wb").write(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.PKCS1))
"#;
        let files = Self {
            private: peer.path("rsa.pem"),
            public_spki: peer.path("rsa-spki.pem"),
            public_pkcs1: peer.path("rsa-pkcs1.pem"),
        };
        let out = Command::new(&peer.python)
            .args(["-c", script])
            .args([&files.private, &files.public_spki, &files.public_pkcs1])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let pkcs1 = fs::read_to_string(&files.public_pkcs1).unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PUBLIC KEY-----\n"), "not a PKCS #1 PEM: {pkcs1}");
        files
    }
}

/// Our raw RSA keyring reads an `RSA PUBLIC KEY` (PKCS #1) PEM, as Python's `cryptography` writes it, and
/// what it encrypts under that key the Python MPL's raw RSA keyring decrypts with the private key.
#[cfg(feature = "rsa")]
#[test]
fn raw_rsa_keyring_reads_pkcs1_public_keys_and_python_decrypts() {
    use kms_envelope::{RawRsaKeyring, RsaPadding};
    let Some(peer) = Peer::new() else { return };
    let keys = RsaKeyFiles::generate(&peer);
    let pt = plaintext(3000, 0x15);
    let mut command_lines = Vec::new();
    for (padding, name) in [(RsaPadding::OaepSha256, "oaep-sha256"), (RsaPadding::OaepSha1, "oaep-sha1")] {
        let pem = fs::read(&keys.public_pkcs1).unwrap();
        let keyring = RawRsaKeyring::from_public_key_pem(NAMESPACE, "rsa-pkcs1", padding, &pem).unwrap();
        let message = kms_envelope::encrypt(&keyring, &EncryptOptions::new().context("k", "v"), &pt).unwrap();
        let (ct, out) = (peer.path(&format!("pkcs1-{name}.ct")), peer.path(&format!("pkcs1-{name}.pt")));
        fs::write(&ct, message).unwrap();
        command_lines.push(
            [
                "decrypt",
                "--in",
                &ct.display().to_string(),
                "--out",
                &out.display().to_string(),
                "--rsa-private-pem",
                &keys.private.display().to_string(),
                "--rsa-padding",
                name,
                "--key-namespace",
                NAMESPACE,
                "--key-name",
                "rsa-pkcs1",
                "--context-json",
                r#"{"k":"v"}"#,
            ]
            .map(String::from)
            .to_vec(),
        );
    }
    for (args, result) in command_lines.iter().zip(peer.batch_command_lines(&command_lines)) {
        result.unwrap_or_else(|e| panic!("Python refused our message under a PKCS #1 public key: {e}"));
        assert_eq!(fs::read(&args[4]).unwrap(), pt);
    }
}

/// The AWS KMS RSA keyring's encrypted data key (RSA-OAEP of the SHA-384 digest of the serialized encryption
/// context followed by the data key) against the Python MPL's AWS KMS RSA keyring, both ways, for both KMS
/// algorithms, with an empty and a non-empty context:
/// - the MPL encrypts with the public key alone (no KMS client); we decrypt through KMS `Decrypt`;
/// - we encrypt with the public key alone (as `RSA PUBLIC KEY` PEM, then as `PUBLIC KEY`); the MPL decrypts
///   through KMS `Decrypt`.
///
/// moto cannot be the KMS here: its `Decrypt` (moto 5.2) reads every ciphertext as its own symmetric
/// format and refuses an RSA one (`InvalidCiphertextException`). The KMS both sides call is a local stub that holds the private key and
/// does what KMS `Decrypt` does for an RSA key: RSA-OAEP with the requested algorithm, for its key id only.
#[cfg(all(feature = "kms", feature = "rsa"))]
#[test]
fn kms_rsa_keyring_interoperates_with_the_python_mpl_both_ways() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use kms_envelope::keyring::kms::{AwsKmsRsaKeyring, KmsRsaAlgorithm, RSA_PROVIDER_ID};
    use support::{Reply, StubKms};

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/2b5a4c8e-7d1f-4e3a-9c6b-0a1b2c3d4e5f";
    let Some(peer) = Peer::new() else { return };
    let keys = RsaKeyFiles::generate(&peer);
    let pem = fs::read_to_string(&keys.private).unwrap();
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let private = aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(&B64.decode(der).unwrap()).unwrap();
    let kms = StubKms::start(move |_, operation, body| {
        if operation != "Decrypt" {
            return Reply::error(400, "UnsupportedOperationException", operation);
        }
        if body["KeyId"] != ARN {
            return Reply::error(400, "NotFoundException", "no such key");
        }
        let algorithm = body["EncryptionAlgorithm"].as_str().unwrap_or("");
        let oaep = match algorithm {
            "RSAES_OAEP_SHA_1" => &aws_lc_rs::rsa::OAEP_SHA1_MGF1SHA1,
            "RSAES_OAEP_SHA_256" => &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
            _ => return Reply::error(400, "InvalidKeyUsageException", "not an RSA encryption algorithm"),
        };
        let ciphertext = B64.decode(body["CiphertextBlob"].as_str().unwrap_or("")).unwrap_or_default();
        let key = aws_lc_rs::rsa::OaepPrivateDecryptingKey::new(private.clone()).unwrap();
        let mut out = vec![0u8; key.min_output_size()];
        match key.decrypt(oaep, &ciphertext, &mut out, None) {
            Ok(plaintext) => Reply::Json(
                200,
                serde_json::json!({"KeyId": ARN, "Plaintext": B64.encode(plaintext), "EncryptionAlgorithm": algorithm})
                    .to_string(),
            ),
            Err(_) => Reply::error(400, "InvalidCiphertextException", ""),
        }
    });
    let clients = kms.clients();
    let pt = plaintext(70_000, 0x2a);
    let input = peer.path("kms-rsa.pt");
    fs::write(&input, &pt).unwrap();

    let algorithms =
        [(KmsRsaAlgorithm::OaepSha1, "RSAES_OAEP_SHA_1"), (KmsRsaAlgorithm::OaepSha256, "RSAES_OAEP_SHA_256")];
    let rsa_args = |op: &str, input: &Path, output: &Path, algorithm: &str, context: &EncryptionContext| {
        let mut args = [op, "--in", &input.display().to_string(), "--out", &output.display().to_string()]
            .map(String::from)
            .to_vec();
        args.extend(["--kms-rsa-key", ARN, "--kms-rsa-algorithm", algorithm].map(String::from));
        args.extend(["--context-json".to_owned(), context_json(context)]);
        if op == "encrypt" {
            args.extend(["--kms-rsa-public-pem".to_owned(), keys.public_spki.display().to_string()]);
            args.extend(["--suite", "0x0478"].map(String::from));
        } else {
            args.extend(["--kms-endpoint".to_owned(), kms.url.clone()]);
        }
        args
    };

    // Python (public key only) -> us (KMS Decrypt).
    let mut python_encrypts = Vec::new();
    let mut cases = Vec::new();
    for (algorithm, name) in algorithms {
        for (c, context) in contexts().into_iter().enumerate() {
            let ct = peer.path(&format!("python-kms-rsa-{name}-{c}.ct"));
            python_encrypts.push(rsa_args("encrypt", &input, &ct, name, &context));
            cases.push((algorithm, context, ct));
        }
    }
    for ((algorithm, context, ct), result) in cases.iter().zip(peer.batch_command_lines(&python_encrypts)) {
        result.unwrap_or_else(|e| panic!("Python failed to encrypt with its KMS RSA keyring: {e}"));
        let message = fs::read(ct).unwrap();
        let keyring = clients.rsa_keyring(ARN, *algorithm).unwrap();
        let mut options = DecryptOptions::new();
        for (k, v) in context.iter() {
            options = options.context(k, v);
        }
        let decrypted = kms_envelope::decrypt(&keyring, &options, &message)
            .unwrap_or_else(|e| panic!("{algorithm}, context {context:?}: we refused Python's message: {e}"));
        assert!(*decrypted.plaintext == pt, "{algorithm}: another plaintext");
        let edks = decrypted.header.encrypted_data_keys();
        assert_eq!(edks.len(), 1);
        assert_eq!((edks[0].provider_id.as_str(), edks[0].provider_info.as_slice()), (RSA_PROVIDER_ID, ARN.as_bytes()));
    }
    assert_eq!(kms.requests(), vec!["Decrypt"; 4], "one KMS Decrypt per message of Python's");

    // Us (public key only, PKCS #1 and SPKI PEM) -> Python (KMS Decrypt).
    let mut python_decrypts = Vec::new();
    for (i, (algorithm, name)) in algorithms.into_iter().enumerate() {
        let public = if i == 0 { &keys.public_pkcs1 } else { &keys.public_spki };
        let keyring = AwsKmsRsaKeyring::encrypt_only(ARN, algorithm, &fs::read(public).unwrap()).unwrap();
        for (c, context) in contexts().into_iter().enumerate() {
            let options = EncryptOptions::new().encryption_context(context.clone());
            let message = kms_envelope::encrypt(&keyring, &options, &pt).unwrap();
            let (ct, out) =
                (peer.path(&format!("ours-kms-rsa-{name}-{c}.ct")), peer.path(&format!("ours-kms-rsa-{name}-{c}.pt")));
            fs::write(&ct, message).unwrap();
            python_decrypts.push((rsa_args("decrypt", &ct, &out, name, &context), out));
        }
    }
    let command_lines: Vec<Vec<String>> = python_decrypts.iter().map(|(args, _)| args.clone()).collect();
    for ((args, out), result) in python_decrypts.iter().zip(peer.batch_command_lines(&command_lines)) {
        result.unwrap_or_else(|e| panic!("Python's KMS RSA keyring refused our message ({args:?}): {e}"));
        assert!(fs::read(out).unwrap() == pt, "Python decrypted another plaintext");
    }
    assert_eq!(kms.requests(), vec!["Decrypt"; 8], "one KMS Decrypt per message of ours");
    eprintln!(
        "KMS RSA: 4 messages Python -> us, 4 us -> Python (RSAES_OAEP_SHA_1 and _256, empty and non-empty context)"
    );
}
