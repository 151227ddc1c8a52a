//! CLI papercuts a newcomer met (issue 17): binary output to a terminal, key file encodings and their
//! errors, a missing key file's exit code, a missing output directory named as given, a closed stdout
//! pipe, and `decrypt --help` about decrypt.
#![cfg(feature = "cli")]

use crate::common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_kms-envelope");
const KEY: [u8; 32] = [0x42; 32];

fn raw_key_args(key_file: &Path) -> Vec<String> {
    ["--raw-key-file", &key_file.to_string_lossy(), "--key-namespace", "ns", "--key-name", "k"]
        .map(String::from)
        .to_vec()
}

/// Exit status, stdout, stderr.
type Outcome = (Option<i32>, Vec<u8>, String);

struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Self {
        let scratch = Self(tempfile::tempdir().unwrap());
        fs::write(scratch.path("wrapping.key"), KEY).unwrap();
        fs::write(scratch.path("plain.txt"), b"db_password=hunter2\n").unwrap();
        scratch
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// Runs the CLI with `args`; returns (status code, stdout, stderr).
    fn run(&self, args: &[String]) -> Outcome {
        let out = Command::new(BIN).args(args).current_dir(self.0.path()).stdin(Stdio::null()).output().unwrap();
        (out.status.code(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// `kms-envelope COMMAND <raw key key_file> EXTRA.. INPUT OUTPUT`.
    fn with_key(&self, command: &str, key_file: &Path, extra: &[&str], input: &str, output: &str) -> Outcome {
        let mut args = vec![command.to_owned()];
        args.extend(raw_key_args(key_file));
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend([input.to_owned(), output.to_owned()]);
        self.run(&args)
    }

    fn encrypt(&self, key_file: &Path, extra: &[&str], input: &str, output: &str) -> Outcome {
        self.with_key("encrypt", key_file, extra, input, output)
    }

    fn decrypt(&self, key_file: &Path, extra: &[&str], input: &str, output: &str) -> Outcome {
        self.with_key("decrypt", key_file, extra, input, output)
    }
}

/// `script` (util-linux) runs a command with a pseudo-terminal as its stdin, stdout and stderr.
fn script_available() -> bool {
    Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success())
}

fn on_a_terminal(scratch: &Scratch, command: &str) -> (Option<i32>, String) {
    let out = Command::new("script")
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .current_dir(scratch.0.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn an_encrypted_message_is_not_written_to_a_terminal_unless_forced() {
    if !script_available() {
        let _: Option<()> = common::missing("`script` from util-linux (for a pty)");
        return;
    }
    let scratch = Scratch::new();
    let encrypt = format!("{BIN} encrypt --raw-key-file wrapping.key --key-namespace ns --key-name k plain.txt -");
    let (code, shown) = on_a_terminal(&scratch, &encrypt);
    assert_eq!(code, Some(2), "refused as a usage error; the terminal showed: {shown}");
    assert!(shown.contains("refusing to write an encrypted message to a terminal"), "{shown}");

    let (code, shown) = on_a_terminal(&scratch, &format!("{encrypt} --force"));
    assert_eq!(code, Some(0), "--force writes it anyway: {shown}");

    let bundle = format!("{BIN} bundle --raw-key-file wrapping.key --key-namespace ns --key-name k . -");
    let (code, shown) = on_a_terminal(&scratch, &bundle);
    assert_eq!(code, Some(2), "bundle too: {shown}");
    assert!(shown.contains("refusing to write an encrypted message to a terminal"), "bundle: {shown}");

    // A pipe or a file is not a terminal: no refusal (the control).
    let (code, message, stderr) = scratch.encrypt(&scratch.path("wrapping.key"), &[], "plain.txt", "-");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!message.is_empty());
}

#[test]
fn key_files_in_hex_and_base64_are_read_with_key_encoding() {
    let scratch = Scratch::new();
    let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    fs::write(scratch.path("key.hex"), format!("{hex}\n")).unwrap();
    fs::write(scratch.path("key.b64"), "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=\n").unwrap();

    let (code, _, stderr) = scratch.encrypt(&scratch.path("key.hex"), &["--key-encoding", "hex"], "plain.txt", "m.hex");
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) =
        scratch.encrypt(&scratch.path("key.b64"), &["--key-encoding", "base64"], "plain.txt", "m.b64");
    assert_eq!(code, Some(0), "{stderr}");
    // Both are the same key as the raw file: the raw key decrypts what they encrypted.
    for message in ["m.hex", "m.b64"] {
        let (code, plain, stderr) = scratch.decrypt(&scratch.path("wrapping.key"), &[], message, "-");
        assert_eq!(code, Some(0), "{message}: {stderr}");
        assert_eq!(plain, b"db_password=hunter2\n");
    }

    // Without --key-encoding the hex file is 65 bytes: refused (exit 2) with the way out.
    let (code, _, stderr) = scratch.encrypt(&scratch.path("key.hex"), &[], "plain.txt", "m2");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("65 bytes") && stderr.contains("looks like hex"), "{stderr}");
    assert!(stderr.contains("--key-encoding hex") && stderr.contains("xxd -r -p"), "{stderr}");
    let (code, _, stderr) = scratch.encrypt(&scratch.path("key.b64"), &[], "plain.txt", "m3");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("looks like base64") && stderr.contains("base64 -d"), "{stderr}");
    // Hex that is not hex.
    let (code, _, stderr) = scratch.encrypt(&scratch.path("key.b64"), &["--key-encoding", "hex"], "plain.txt", "m4");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not hexadecimal"), "{stderr}");
    assert!(!scratch.path("m2").exists() && !scratch.path("m3").exists() && !scratch.path("m4").exists());
}

/// A key file that is all base64 padding, or far too large (a sparse file here; `/dev/urandom` given by
/// mistake is the same case without an end), is refused as a usage error: no panic, no allocation the size
/// of the file, no key bytes in the message.
#[test]
fn key_files_of_padding_only_or_too_large_are_refused_plainly() {
    let scratch = Scratch::new();
    fs::write(scratch.path("padding.key"), "========\n").unwrap();
    let big = fs::File::create(scratch.path("big.key")).unwrap();
    big.set_len(1 << 30).unwrap();
    let (code, _, stderr) = scratch.encrypt(&scratch.path("padding.key"), &[], "plain.txt", "m1");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("9 bytes after raw decoding") && !stderr.contains("panicked"), "{stderr}");
    let (code, _, stderr) = scratch.encrypt(&scratch.path("big.key"), &[], "plain.txt", "m2");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("big.key holds more than 1024 KiB: not a key"), "{stderr}");
    assert!(!scratch.path("m1").exists() && !scratch.path("m2").exists());
}

#[test]
fn a_missing_key_file_is_a_usage_error() {
    let scratch = Scratch::new();
    let (code, _, stderr) = scratch.encrypt(&scratch.path("no-such.key"), &[], "plain.txt", "out");
    assert_eq!(code, Some(2), "the README's table puts an unusable key file under 2: {stderr}");
    assert!(stderr.contains("no-such.key"), "{stderr}");
    let (code, _, stderr) = scratch.decrypt(&scratch.path("no-such.key"), &[], "plain.txt", "out");
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn a_missing_output_directory_is_named_as_given() {
    let scratch = Scratch::new();
    let (code, _, stderr) = scratch.encrypt(&scratch.path("wrapping.key"), &[], "plain.txt", "missing/out.esdk");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("missing/out.esdk") && stderr.contains("directory missing does not exist"), "{stderr}");
    assert!(!stderr.contains(".partial") && !stderr.contains(".out.esdk."), "no temp name: {stderr}");

    let (code, _, stderr) = scratch.encrypt(&scratch.path("wrapping.key"), &[], "plain.txt", "message");
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = scratch.decrypt(&scratch.path("wrapping.key"), &[], "message", "missing/plain.txt");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("directory missing does not exist") && !stderr.contains(".partial"), "{stderr}");

    let (code, _, stderr) = scratch.with_key("unbundle", &scratch.path("wrapping.key"), &[], "message", "missing/dir");
    assert_eq!(code, Some(4), "the README's table puts a missing output directory under 4: {stderr}");
    assert!(stderr.contains("directory missing does not exist") && !stderr.contains(".partial"), "{stderr}");
    assert!(!scratch.path("missing").exists(), "nothing was created");
}

#[test]
fn a_closed_stdout_pipe_ends_quietly_with_the_sigpipe_status() {
    let scratch = Scratch::new();
    // Far more than a pipe holds, so that the CLI is still writing when its reader goes away.
    fs::write(scratch.path("big"), vec![7u8; 4 << 20]).unwrap();
    for command in ["encrypt", "decrypt"] {
        let input = if command == "encrypt" {
            "big".to_owned()
        } else {
            let (code, _, stderr) = scratch.encrypt(&scratch.path("wrapping.key"), &["--force"], "big", "big.esdk");
            assert_eq!(code, Some(0), "{stderr}");
            "big.esdk".to_owned()
        };
        let mut args = vec![command.to_owned()];
        args.extend(raw_key_args(&scratch.path("wrapping.key")));
        args.extend([input, "-".to_owned()]);
        let mut child = Command::new(BIN)
            .args(&args)
            .current_dir(scratch.0.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader goes away, as `head` does
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(141), "{command}: 128 + SIGPIPE, as a shell shows for cat; stderr: {stderr}");
        assert_eq!(stderr, "", "{command}: nothing to say about a reader that stopped reading");
    }
}

#[test]
fn decrypt_help_speaks_of_decrypting() {
    let scratch = Scratch::new();
    let (code, help, _) = scratch.run(&["decrypt".into(), "--help".into()]);
    assert_eq!(code, Some(0));
    let help = String::from_utf8(help).unwrap();
    assert!(!help.contains("generates the data key"), "a decrypt generates no data key:\n{help}");
    assert!(help.contains("tried in command-line order"), "{help}");
    assert!(help.contains("cannot tell a wrong --context pair"), "{help}");
    let (_, help, _) = scratch.run(&["encrypt".into(), "--help".into()]);
    assert!(String::from_utf8(help).unwrap().contains("generates the data key"), "encrypt keeps it");
}

/// Papercuts of issue 24: an existing directory as OUTPUT is named as one, not met with "use --force".
#[test]
fn a_directory_as_output_is_called_a_directory() {
    let scratch = Scratch::new();
    fs::create_dir(scratch.path("outdir")).unwrap();
    let (code, _, stderr) = scratch.encrypt(&scratch.path("wrapping.key"), &[], "plain.txt", "message");
    assert_eq!(code, Some(0), "{stderr}");
    for force in [&[][..], &["--force"][..]] {
        let (code, _, stderr) = scratch.encrypt(&scratch.path("wrapping.key"), force, "plain.txt", "outdir");
        assert_eq!(code, Some(2), "{force:?}: {stderr}");
        assert!(stderr.contains("outdir: is a directory") && !stderr.contains("--force"), "{force:?}: {stderr}");
        let (code, _, stderr) = scratch.decrypt(&scratch.path("wrapping.key"), force, "message", "outdir");
        assert_eq!(code, Some(2), "{force:?}: {stderr}");
        assert!(stderr.contains("outdir: is a directory") && !stderr.contains("--force"), "{force:?}: {stderr}");
    }
    assert_eq!(fs::read_dir(scratch.path("outdir")).unwrap().count(), 0, "nothing was written into it");
}

#[test]
fn unbundle_into_a_missing_parent_names_the_destination_and_how_to_create_it() {
    let scratch = Scratch::new();
    fs::create_dir(scratch.path("tree")).unwrap();
    fs::write(scratch.path("tree/a"), b"a").unwrap();
    let (code, _, stderr) = scratch.with_key("bundle", &scratch.path("wrapping.key"), &[], "tree", "tree.bundle");
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) =
        scratch.with_key("unbundle", &scratch.path("wrapping.key"), &[], "tree.bundle", "missing/deeper/dir");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("missing/deeper/dir:"), "the destination is named: {stderr}");
    assert!(stderr.contains("mkdir -p missing/deeper"), "how to create the parent: {stderr}");
    assert!(!scratch.path("missing").exists());
}

/// `--range START-END` reads as an HTTP range does: an END past the plaintext is cut to its end; a START
/// past the end is an error that quotes the range as the user wrote it.
#[test]
fn range_end_past_the_plaintext_is_clamped_and_errors_quote_the_range() {
    let scratch = Scratch::new();
    let (code, _, stderr) = scratch.encrypt(&scratch.path("wrapping.key"), &[], "plain.txt", "message");
    assert_eq!(code, Some(0), "{stderr}");
    let (code, plain, stderr) = scratch.decrypt(&scratch.path("wrapping.key"), &["--range", "3-999"], "message", "-");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(plain, b"password=hunter2\n", "bytes 3 to the end");
    let (code, _, stderr) = scratch.decrypt(&scratch.path("wrapping.key"), &["--range", "21-30"], "message", "out");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--range 21-30") && stderr.contains("20 bytes"), "{stderr}");
    assert!(!scratch.path("out").exists());
    let (code, _, stderr) = scratch.decrypt(&scratch.path("wrapping.key"), &["--range", "9-4"], "message", "out");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("9-4"), "{stderr}");
}

fn help_of(scratch: &Scratch, command: &str) -> String {
    let (code, help, stderr) = scratch.run(&[command.into(), "--help".into()]);
    assert_eq!(code, Some(0), "{stderr}");
    String::from_utf8(help).unwrap()
}

/// Help texts shared between subcommands say what holds for each one.
#[test]
fn help_texts_fit_their_subcommand() {
    let scratch = Scratch::new();
    for command in ["decrypt", "unbundle"] {
        let help = help_of(&scratch, command);
        assert!(!help.contains("write an encrypted message"), "{command} --force writes no message:\n{help}");
        assert!(help.contains("--force") && help.contains("Replace"), "{help}");
        assert!(!help.contains("--rsa-public-key"), "{command} cannot use a public key:\n{help}");
        assert!(!help.contains("so encrypt needs no AWS access"), "{command}:\n{help}");
        assert!(help.contains("require-encrypt-allow-decrypt") && help.contains("forbid-encrypt-allow-decrypt"));
    }
    for command in ["encrypt", "bundle"] {
        let help = help_of(&scratch, command);
        assert!(help.contains("write an encrypted message even to a terminal"), "{help}");
        for value in ["0x0014", "0x0178", "0x0478", "0x0578", "forbid-encrypt-allow-decrypt"] {
            assert!(help.contains(value), "{command}: {value} is listed:\n{help}");
        }
    }
}

/// Suite ids are hexadecimal with `0x`, as `inspect` prints them: `578` (which could be read as decimal) is
/// refused, naming the id it probably meant.
#[test]
fn suite_ids_need_their_0x() {
    let scratch = Scratch::new();
    let (code, _, stderr) = scratch.encrypt(&scratch.path("wrapping.key"), &["--suite", "578"], "plain.txt", "m1");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("0x0578"), "{stderr}");
    assert!(!scratch.path("m1").exists());
    let (code, _, stderr) = scratch.encrypt(&scratch.path("wrapping.key"), &["--suite", "0x578"], "plain.txt", "m2");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(&fs::read(scratch.path("m2")).unwrap()[..3], &[2, 0x05, 0x78]);
}

/// A `decrypt --recursive` whose files all fail leaves none of the directories it created, and its summary
/// and the key-count message speak English ("1 of 1 file", "1 key").
#[test]
fn a_failed_recursive_decrypt_leaves_no_empty_directories() {
    let scratch = Scratch::new();
    fs::create_dir_all(scratch.path("in/a/b")).unwrap();
    fs::write(scratch.path("in/a/b/x.encrypted"), b"not a message").unwrap();
    let (code, _, stderr) = scratch.decrypt(&scratch.path("wrapping.key"), &["--recursive"], "in", "out");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("1 of 1 file failed"), "{stderr}");
    assert!(!scratch.path("out").exists(), "out/a/b, all empty, were removed");
    // A directory that existed before stays.
    fs::create_dir(scratch.path("kept")).unwrap();
    let (code, _, stderr) = scratch.decrypt(&scratch.path("wrapping.key"), &["--recursive"], "in", "kept");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("1 of 1 file failed"), "{stderr}");
    assert!(scratch.path("kept").is_dir() && !scratch.path("kept/a").exists());

    let mut args = vec!["encrypt".to_owned()];
    args.extend(raw_key_args(&scratch.path("wrapping.key")));
    args.extend(["--key-namespace", "ns2", "plain.txt", "m"].map(String::from));
    let (code, _, stderr) = scratch.run(&args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("(got 1 key, 2 namespaces, 1 name)"), "{stderr}");
}

/// A raw key whose name the message does not have says which names it has, escaped: they come from the
/// message, unauthenticated.
#[test]
fn a_wrong_raw_key_name_lists_the_names_the_message_has() {
    let scratch = Scratch::new();
    let key = scratch.path("wrapping.key").to_string_lossy().into_owned();
    let encrypt = ["encrypt", "--raw-key-file", &key, "--key-namespace", "ns", "--key-name", "k\x1b[31m", "plain.txt"];
    let (code, _, stderr) =
        scratch.run(&[&encrypt[..], &["m"]].concat().into_iter().map(String::from).collect::<Vec<_>>());
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = scratch.decrypt(&scratch.path("wrapping.key"), &[], "m", "out");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("key name"), "{stderr}");
    assert!(stderr.contains(r"k\u{1b}[31m"), "the message's key name, escaped: {stderr}");
    assert!(!stderr.contains('\x1b'), "no raw escape reaches the terminal: {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // A name of 6,000 control characters is listed cut short: a failure stays a line, not a copy of the
    // header (each control character would be written as 8 escaped bytes).
    let long = "\x01".repeat(6000);
    let encrypt = ["encrypt", "--raw-key-file", &key, "--key-namespace", "ns", "--key-name", &long, "plain.txt"];
    let (code, _, stderr) =
        scratch.run(&[&encrypt[..], &["long"]].concat().into_iter().map(String::from).collect::<Vec<_>>());
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = scratch.decrypt(&scratch.path("wrapping.key"), &[], "long", "out");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("more bytes)"), "the long name is cut: {}", &stderr[..stderr.len().min(2000)]);
    assert!(stderr.len() < 2000, "{} bytes of stderr for one failure", stderr.len());
}
