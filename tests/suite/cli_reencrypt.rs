//! `kms-envelope reencrypt`, run as a process: files, in place, trees, stdin and stdout, `--dry-run`, the
//! exit codes of a tampered source and a wrong key, and a move from a raw key to a KMS key (moto).
#![cfg(feature = "cli")]

#[cfg(feature = "kms")]
use crate::support;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

const NS: &str = "pipeline";

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("old.key"), [0x42u8; 32]).unwrap();
        fs::write(dir.path().join("new.key"), [0x17u8; 32]).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("kms-envelope").unwrap();
        cmd.current_dir(self.dir.path());
        for var in ["AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS", "AWS_SESSION_TOKEN"] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    }

    /// Runs `args`, asserts the exit code, returns (stdout, stderr).
    fn run(&self, args: &[&str], code: i32) -> (Vec<u8>, String) {
        let out = self.cmd().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: stderr: {stderr}");
        (out.stdout, stderr)
    }

    /// Encrypts `plaintext` under the old key into `name` (signed, small frames: several of them).
    fn message(&self, name: &str, plaintext: &[u8]) -> PathBuf {
        fs::write(self.path("plain.tmp"), plaintext).unwrap();
        let args = [&OLD[..], &["--suite", "0x0578", "--frame-length", "512", "--context", "app=billing"]].concat();
        self.run(&[&["encrypt"][..], &args, &["plain.tmp", name]].concat(), 0);
        fs::remove_file(self.path("plain.tmp")).unwrap();
        self.path(name)
    }

    fn listing(&self) -> Vec<String> {
        listing(self.dir.path())
    }

    /// `line` run by `sh` in the scratch directory.
    fn cmd_sh(&self, line: &str) -> std::process::Output {
        std::process::Command::new("sh").arg("-c").arg(line).current_dir(self.dir.path()).output().unwrap()
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

const OLD: [&str; 6] = ["--raw-key-file", "old.key", "--key-namespace", NS, "--key-name", "key-2025"];
const NEW: [&str; 6] = ["--new-raw-key-file", "new.key", "--new-key-namespace", NS, "--new-key-name", "key-2026"];
const NEW_AS_DECRYPT: [&str; 6] = ["--raw-key-file", "new.key", "--key-namespace", NS, "--key-name", "key-2026"];

fn plaintext() -> Vec<u8> {
    (0..5000u32).map(|i| (i % 241) as u8).collect()
}

fn reencrypt(parts: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["reencrypt".into()];
    args.extend(OLD.iter().chain(&NEW).map(|s| s.to_string()));
    args.extend(parts.iter().map(|s| s.to_string()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The README's promise: the new message decrypts with the new key alone, keeps the context and the
/// signed kind; the old key gets exit 3.
#[test]
fn a_file_reencrypted_decrypts_with_the_new_key_alone() {
    let s = Scratch::new();
    s.message("secrets.esdk", &plaintext());
    s.run(&strs(&reencrypt(&["secrets.esdk", "rotated.esdk"])), 0);
    assert_eq!(fs::metadata(s.path("rotated.esdk")).unwrap().permissions().mode() & 0o777, 0o600);
    let (out, _) =
        s.run(&[&["decrypt"][..], &NEW_AS_DECRYPT, &["--context", "app=billing", "rotated.esdk", "-"]].concat(), 0);
    assert_eq!(out, plaintext());
    let (_, stderr) = s.run(&[&["decrypt"][..], &OLD, &["rotated.esdk", "-"]].concat(), 3);
    assert!(stderr.contains("rotated.esdk") && stderr.contains("key-2026"), "{stderr}");
    let (json, _) = s.run(&["inspect", "--json", "rotated.esdk"], 0);
    let header: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(header["suite"]["id"], "0x0578", "{header}");

    // An existing OUTPUT is refused without --force, untouched.
    let before = fs::read(s.path("rotated.esdk")).unwrap();
    let (_, stderr) = s.run(&strs(&reencrypt(&["secrets.esdk", "rotated.esdk"])), 4);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(fs::read(s.path("rotated.esdk")).unwrap(), before);
    s.run(&strs(&reencrypt(&["--force", "secrets.esdk", "rotated.esdk"])), 0);
    assert_ne!(fs::read(s.path("rotated.esdk")).unwrap(), before, "a fresh data key and message id");
}

#[test]
fn in_place_replaces_the_file_and_output_equal_to_input_is_refused() {
    let s = Scratch::new();
    let path = s.message("secrets.esdk", &plaintext());
    let original = fs::read(&path).unwrap();
    let (_, stderr) = s.run(&strs(&reencrypt(&["secrets.esdk", "./secrets.esdk"])), 2);
    assert!(stderr.contains("--in-place"), "{stderr}");
    s.run(&strs(&reencrypt(&["--force", "secrets.esdk", "./secrets.esdk"])), 2);
    assert_eq!(fs::read(&path).unwrap(), original);
    s.run(&strs(&reencrypt(&["--in-place", "secrets.esdk"])), 0);
    assert_eq!(s.listing(), ["new.key", "old.key", "secrets.esdk"]);
    let (out, _) = s.run(&[&["decrypt"][..], &NEW_AS_DECRYPT, &["secrets.esdk", "-"]].concat(), 0);
    assert_eq!(out, plaintext());

    // A retried run: the file, which the new key now opens, is left as it is; --force re-encrypts it.
    let rotated = fs::read(&path).unwrap();
    let (_, stderr) = s.run(&strs(&reencrypt(&["--in-place", "--verify-all-keys", "secrets.esdk"])), 0);
    assert!(stderr.contains("already under the new keys"), "{stderr}");
    assert_eq!(fs::read(&path).unwrap(), rotated);
    let again = [&["reencrypt"][..], &NEW_AS_DECRYPT, &NEW, &["--in-place", "--force", "secrets.esdk"]].concat();
    s.run(&again, 0);
    assert_ne!(fs::read(&path).unwrap(), rotated, "a new data key under the same key");
    // A header that names the new key but that the new key does not open is no reason to skip: it is the
    // old key that opens it, and it is re-encrypted.
    let planted = s.message("planted.esdk", b"planted");
    let mut bytes = fs::read(&planted).unwrap();
    let (at, len) = (find(&bytes, b"key-2025"), "key-2025".len());
    bytes[at..at + len].copy_from_slice(b"key-2026");
    fs::write(&planted, &bytes).unwrap();
    let (_, stderr) = s.run(&strs(&reencrypt(&["--in-place", "planted.esdk"])), 3);
    assert!(!stderr.contains("already under"), "{stderr}");
}

/// In place, a message whose header is the new keys' own but whose body was cut short is not "already
/// done" by default: the whole message is authenticated (exit 1, the file untouched); `--skip-check header`
/// leaves it as it is and says that the body was not read.
#[test]
fn in_place_skips_only_what_authenticates_in_full_unless_told_header() {
    let s = Scratch::new();
    let path = s.message("cut.esdk", &plaintext());
    s.run(&strs(&reencrypt(&["--in-place", "cut.esdk"])), 0);
    let mut bytes = fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 700);
    fs::write(&path, &bytes).unwrap();
    let (_, stderr) = s.run(&strs(&reencrypt(&["--in-place", "cut.esdk"])), 1);
    assert!(!stderr.contains("already under"), "{stderr}");
    assert_eq!(fs::read(&path).unwrap(), bytes);
    let (_, stderr) = s.run(&strs(&reencrypt(&["--in-place", "--skip-check", "header", "cut.esdk"])), 0);
    assert!(stderr.contains("already under the new keys (header authenticated; body not read)"), "{stderr}");
    assert_eq!(fs::read(&path).unwrap(), bytes);
    assert_eq!(s.listing(), ["cut.esdk", "new.key", "old.key"]);
    for flag in [&["--skip-check", "header"][..], &["--verify-all-keys"]] {
        let (_, stderr) = s.run(&strs(&reencrypt(&[flag, &["cut.esdk", "x.esdk"]].concat())), 2);
        assert!(stderr.contains("add --in-place"), "{flag:?}: {stderr}");
    }
    assert!(!s.path("x.esdk").exists());
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).expect("present")
}

/// A tampered source (exit 1) or a wrong unwrapping key (exit 3): nothing written, the source untouched, in
/// place or not; to stdout, what came out is no complete message.
#[test]
fn a_tampered_source_or_a_wrong_key_writes_nothing() {
    let s = Scratch::new();
    let path = s.message("secrets.esdk", &plaintext());
    let mut tampered = fs::read(&path).unwrap();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    fs::write(&path, &tampered).unwrap();
    let before = s.listing();
    let (_, stderr) = s.run(&strs(&reencrypt(&["secrets.esdk", "rotated.esdk"])), 1);
    assert!(stderr.contains("secrets.esdk") && stderr.contains("authenticat"), "{stderr}");
    assert_eq!(s.listing(), before);
    s.run(&strs(&reencrypt(&["--in-place", "secrets.esdk"])), 1);
    assert_eq!(fs::read(&path).unwrap(), tampered);
    assert_eq!(s.listing(), before);

    let (partial, _) = s.run(&strs(&reencrypt(&["secrets.esdk", "-"])), 1);
    fs::write(s.path("partial.esdk"), &partial).unwrap();
    s.run(&[&["decrypt"][..], &NEW_AS_DECRYPT, &["partial.esdk", "out"]].concat(), 1);
    assert!(!s.path("out").exists());
    fs::remove_file(s.path("partial.esdk")).unwrap();

    s.message("good.esdk", &plaintext());
    let wrong = ["--raw-key-file", "new.key", "--key-namespace", NS, "--key-name", "key-2025"];
    let args = [&["reencrypt"][..], &wrong, &NEW, &["good.esdk", "rotated.esdk"]].concat();
    let (_, stderr) = s.run(&args, 3);
    assert!(stderr.contains("key-2025"), "exit 3 names the data keys the message has: {stderr}");
    assert!(!s.path("rotated.esdk").exists());
}

/// stdin to stdout: a pipeline step.
#[test]
fn stdin_to_stdout() {
    let s = Scratch::new();
    let path = s.message("secrets.esdk", &plaintext());
    let out = s.cmd().args(strs(&reencrypt(&["-", "-"]))).pipe_stdin(&path).unwrap().output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    fs::write(s.path("rotated.esdk"), &out.stdout).unwrap();
    let (plain, _) = s.run(&[&["decrypt"][..], &NEW_AS_DECRYPT, &["rotated.esdk", "-"]].concat(), 0);
    assert_eq!(plain, plaintext());
}

/// A tree, into another directory with the same names, and in place; a file that is no message fails on
/// its own line and the others are still done.
#[test]
fn a_tree_into_another_directory_and_in_place() {
    let s = Scratch::new();
    fs::create_dir_all(s.path("tree/sub")).unwrap();
    s.message("tree/a.esdk", b"first");
    s.message("tree/sub/b.esdk", b"second");
    fs::write(s.path("tree/sub/not-a-message"), b"hello").unwrap();
    let (_, stderr) = s.run(&strs(&reencrypt(&["-r", "tree", "rotated"])), 1);
    assert!(stderr.contains("not-a-message") && stderr.contains("1 of 3 files failed"), "{stderr}");
    for (name, want) in [("rotated/a.esdk", &b"first"[..]), ("rotated/sub/b.esdk", b"second")] {
        let (out, _) = s.run(&[&["decrypt"][..], &NEW_AS_DECRYPT, &[name, "-"]].concat(), 0);
        assert_eq!(out, want, "{name}");
    }
    assert_eq!(listing(&s.path("rotated/sub")), ["b.esdk"]);

    fs::remove_file(s.path("tree/sub/not-a-message")).unwrap();
    s.run(&strs(&reencrypt(&["-r", "--in-place", "tree"])), 0);
    let (out, _) = s.run(&[&["decrypt"][..], &NEW_AS_DECRYPT, &["tree/sub/b.esdk", "-"]].concat(), 0);
    assert_eq!(out, b"second");
    assert_eq!(listing(&s.path("tree/sub")), ["b.esdk"]);
}

/// `--dry-run` reads headers only: no key file is even opened (they do not exist here), nothing is written,
/// and each line says that what it shows is unauthenticated; control characters in the header are escaped.
#[test]
fn dry_run_uses_no_key_and_writes_nothing() {
    let s = Scratch::new();
    s.message("secrets.esdk", &plaintext());
    fs::remove_file(s.path("old.key")).unwrap();
    fs::remove_file(s.path("new.key")).unwrap();
    let before = s.listing();
    let (out, _) = s.run(&strs(&reencrypt(&["--dry-run", "secrets.esdk"])), 0);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("unauthenticated") && out.contains("0x0578 -> 0x0578"), "{out}");
    assert!(out.contains("\"key-2025\"") && out.contains("\"key-2026\""), "{out}");
    assert_eq!(s.listing(), before);
}

/// From a raw key to an AWS KMS key (moto), then from that KMS key to another: the README's rotation.
#[cfg(feature = "kms")]
#[test]
fn from_a_raw_key_to_kms_and_on_to_another_kms_key() {
    use support::Moto;
    let Some(moto) = Moto::get() else { return };
    let (first, second) = (moto.create_key(), moto.create_key());
    let s = Scratch::new();
    s.message("secrets.esdk", &plaintext());
    let with_moto = |args: &[&str], code: i32| {
        let out = s
            .cmd()
            .env("AWS_ENDPOINT_URL_KMS", &moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        out.stdout
    };
    with_moto(&[&["reencrypt"][..], &OLD, &["--new-kms-key", &first, "--in-place", "secrets.esdk"]].concat(), 0);
    with_moto(&["reencrypt", "--kms-key", &first, "--new-kms-key", &second, "--in-place", "secrets.esdk"], 0);
    assert_eq!(with_moto(&["decrypt", "--kms-key", &second, "secrets.esdk", "-"], 0), plaintext());
    with_moto(&["decrypt", "--kms-key", &first, "secrets.esdk", "-"], 3);
}

/// What an outside review found (each was exit 0 before): a key file as stdout or OUTPUT, a hard-linked
/// file in place, a suite without commitment, stdin in place, one new pair given two values.
#[test]
fn key_files_hard_links_and_command_line_mistakes_are_refused() {
    let s = Scratch::new();
    let path = s.message("secrets.esdk", &plaintext());
    let keys = (fs::read(s.path("old.key")).unwrap(), fs::read(s.path("new.key")).unwrap());
    for key in ["old.key", "new.key"] {
        let line =
            format!("{} {} secrets.esdk - 1<> {key}", env!("CARGO_BIN_EXE_kms-envelope"), reencrypt(&[]).join(" "));
        let out = s.cmd_sh(&line);
        assert_eq!(out.status.code(), Some(2), "stdout {key}: {}", String::from_utf8_lossy(&out.stderr));
        let (_, stderr) = s.run(&strs(&reencrypt(&["--force", "secrets.esdk", key])), 2);
        assert!(stderr.contains("key file"), "{stderr}");
    }
    assert_eq!((fs::read(s.path("old.key")).unwrap(), fs::read(s.path("new.key")).unwrap()), keys);

    fs::hard_link(&path, s.path("link.esdk")).unwrap();
    let original = fs::read(&path).unwrap();
    let (_, stderr) = s.run(&strs(&reencrypt(&["--in-place", "secrets.esdk"])), 4);
    assert!(stderr.contains("2 hard links"), "{stderr}");
    assert_eq!(fs::read(&path).unwrap(), original);
    s.run(&strs(&reencrypt(&["--in-place", "--force", "secrets.esdk"])), 0);
    assert_eq!(fs::read(s.path("link.esdk")).unwrap(), original, "the other name keeps the old message");

    let (_, stderr) = s.run(&strs(&reencrypt(&["--suite", "0x0178", "link.esdk", "x.esdk"])), 2);
    assert!(stderr.contains("key commitment"), "{stderr}");
    s.run(&strs(&reencrypt(&["--in-place", "-"])), 2);
    s.run(&strs(&reencrypt(&["--new-context", "a=1", "--new-require-context", "a=2", "link.esdk", "x.esdk"])), 2);
    assert!(!s.path("x.esdk").exists());
}

/// A mistake in the new keys is named as the user typed it (`--new-key-name`, not decrypt's `--key-name`),
/// and in the old keys without the prefix; nothing is written either way.
#[test]
fn errors_in_the_new_keys_name_the_new_options() {
    let s = Scratch::new();
    s.message("m.esdk", &plaintext());
    fs::write(s.path("new.hex"), "zz").unwrap();
    let new_cases: [(&[&str], &[&str]); 4] = [
        (&["--new-raw-key-file", "new.key"], &["--new-key-namespace", "--new-key-name", "--new-raw-key-file"]),
        (&["--new-key-name", "x"], &["--new-key-namespace", "--new-key-name"]),
        (
            &[
                "--new-raw-key-file",
                "new.hex",
                "--new-key-namespace",
                NS,
                "--new-key-name",
                "k",
                "--new-key-encoding",
                "hex",
            ],
            &["--new-key-encoding hex"],
        ),
        (&[], &["no new key given", "--new-raw-key-file"]),
    ];
    for (new, named) in new_cases {
        let args = [&["reencrypt"][..], &OLD, new, &["m.esdk", "out.esdk"]].concat();
        let (_, stderr) = s.run(&args, 2);
        for option in named {
            assert!(stderr.contains(option), "{new:?}: {option} not named: {stderr}");
        }
        assert!(!stderr.contains(" --key-") && !stderr.contains(" --raw-key-file"), "{new:?}: {stderr}");
    }
    let args =
        [&["reencrypt", "--raw-key-file", "old.key", "--key-name", "key-2025"][..], &NEW, &["m.esdk", "out.esdk"]]
            .concat();
    let (_, stderr) = s.run(&args, 2);
    assert!(stderr.contains("one --key-namespace") && !stderr.contains("--new-"), "{stderr}");
    assert!(!s.path("out.esdk").exists());
}

/// `-r --cache-max-age` reuses new data keys across files (two files per key with --cache-max-messages 2)
/// only for an unsigned target; a signed target (the default for signed sources) makes one per file.
#[test]
fn a_tree_reuses_new_data_keys_only_when_asked_and_unsigned() {
    let s = Scratch::new();
    fs::create_dir(s.path("src")).unwrap();
    for i in 0..5 {
        s.message(&format!("src/m{i}"), &plaintext()[i..]);
    }
    let distinct_edks = |dir: &str| {
        let mut edks = std::collections::HashSet::new();
        for name in listing(&s.path(dir)) {
            let message = fs::read(s.path(dir).join(name)).unwrap();
            let header = kms_envelope::Header::read_from(Default::default(), &mut &message[..]).unwrap();
            edks.insert(header.encrypted_data_keys().to_vec());
        }
        edks.len()
    };
    let cache = ["--cache-max-age", "600", "--cache-max-messages", "2"];
    s.run(&strs(&reencrypt(&[&["-r", "--suite", "0x0478"][..], &cache, &["src", "cached"]].concat())), 0);
    assert_eq!(distinct_edks("cached"), 3, "five files, two per data key");
    s.run(&strs(&reencrypt(&["-r", "--suite", "0x0478", "src", "plain"])), 0);
    assert_eq!(distinct_edks("plain"), 5, "without --cache-max-age a data key per file");
    s.run(&strs(&reencrypt(&[&["-r"][..], &cache, &["src", "signed"]].concat())), 0);
    assert_eq!(distinct_edks("signed"), 5, "a signed target caches nothing");
    for dir in ["cached", "plain", "signed"] {
        for i in 0..5 {
            let message = format!("{dir}/m{i}");
            let args = [&["decrypt"][..], &NEW_AS_DECRYPT, &["--context", "app=billing", &message, "-"]].concat();
            assert_eq!(s.run(&args, 0).0, plaintext()[i..], "{dir}/m{i}");
        }
    }
    let (_, stderr) = s.run(&strs(&reencrypt(&[&cache[..], &["src/m0", "x"]].concat())), 2);
    assert!(stderr.contains("--recursive"), "{stderr}");
}

/// A source that is no regular file (a pipe named /dev/stdin) is read to its end: its size is no bound.
#[test]
fn a_source_that_is_a_pipe_by_name() {
    let s = Scratch::new();
    let path = s.message("secrets.esdk", &plaintext());
    let out =
        s.cmd().args(strs(&reencrypt(&["/dev/stdin", "rotated.esdk"]))).pipe_stdin(&path).unwrap().output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (plain, _) = s.run(&[&["decrypt"][..], &NEW_AS_DECRYPT, &["rotated.esdk", "-"]].concat(), 0);
    assert_eq!(plain, plaintext());
}

/// A symbolic link to a directory inside OUTPUT is not written through, by reencrypt or decrypt; a file
/// name with control characters reaches --dry-run's stdout escaped.
#[test]
fn trees_neither_follow_links_in_output_nor_print_raw_names() {
    let s = Scratch::new();
    fs::create_dir_all(s.path("tree/sub")).unwrap();
    fs::create_dir_all(s.path("out")).unwrap();
    fs::create_dir_all(s.path("elsewhere")).unwrap();
    s.message("tree/sub/b.esdk", b"second");
    std::os::unix::fs::symlink("../elsewhere", s.path("out/sub")).unwrap();
    let (_, stderr) = s.run(&strs(&reencrypt(&["-r", "tree", "out"])), 4);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    let decrypt = [&["decrypt", "-r"][..], &OLD, &["tree", "out"]].concat();
    s.run(&decrypt, 4);
    assert_eq!(listing(&s.path("elsewhere")), Vec::<String>::new());

    let evil = "evil\u{1b}]0;PWNED\u{7}\nline.esdk";
    fs::rename(s.path("tree/sub/b.esdk"), s.path("tree/sub").join(evil)).unwrap();
    let (out, _) = s.run(&strs(&reencrypt(&["--dry-run", "-r", "tree"])), 0);
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}') && out.lines().count() == 1, "{out:?}");
    // In place twice: the second run's "already under the new keys" line names the file escaped too.
    s.run(&strs(&reencrypt(&["-r", "--in-place", "tree"])), 0);
    let (_, stderr) = s.run(&strs(&reencrypt(&["-r", "--in-place", "tree"])), 0);
    assert!(stderr.contains("already under the new keys"), "{stderr}");
    assert!(!stderr.contains('\u{1b}') && !stderr.contains('\u{7}') && stderr.lines().count() == 1, "{stderr:?}");
}

/// In place as root, a file owned by someone else keeps its owner (the service reading it keeps access).
#[test]
fn in_place_keeps_the_owner() {
    use std::os::unix::fs::MetadataExt as _;
    let s = Scratch::new();
    let path = s.message("secrets.esdk", &plaintext());
    let me = fs::metadata(&path).unwrap().uid();
    let owner = if me == 0 { 65534 } else { me };
    if me == 0 {
        std::os::unix::fs::chown(&path, Some(owner), Some(owner)).unwrap();
    }
    s.run(&strs(&reencrypt(&["--in-place", "secrets.esdk"])), 0);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (owner, 0o600));
}

/// `-r` over S3 refuses, before any key or request (there is no S3 endpoint here): a prefix without its
/// trailing slash (S3 compares strings: `s3://b/p` would take `p-old/`), prefixes of one bucket that overlap
/// (equal, one inside the other, the whole bucket: the listing would meet the run's own outputs), and S3
/// at one end only.
#[cfg(feature = "s3")]
#[test]
fn s3_prefix_mistakes_are_refused() {
    let s = Scratch::new();
    for (args, says) in [
        (&["-r", "s3://b/p", "s3://c/q/"][..], "the prefix does not end in /"),
        (&["-r", "s3://b/p/", "s3://c/q"], "the prefix does not end in /"),
        (&["-r", "--in-place", "s3://b/p"], "the prefix does not end in /"),
        (&["-r", "s3://b", "s3://c/"], "no / after the bucket"),
        (&["-r", "s3://b/p/", "s3://b/p/"], "overlap"),
        (&["-r", "s3://b/p/", "s3://b/p/rotated/"], "overlap"),
        (&["-r", "s3://b/p/sub/", "s3://b/p/"], "overlap"),
        (&["-r", "s3://b/", "s3://b/rotated/"], "overlap"),
        (&["--dry-run", "-r", "s3://b/p/", "s3://b/p/x/"], "overlap"),
        (&["-r", "s3://b/p/", "rotated"], "not between S3 and files"),
        (&["-r", "rotated", "s3://b/p/"], "not between S3 and files"),
    ] {
        let (_, stderr) = s.run(&strs(&reencrypt(args)), 2);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(s.listing(), ["new.key", "old.key"]);
}
