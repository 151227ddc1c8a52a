//! The progress bar: on stderr when it is a terminal and the input is over 64 MiB, never when stderr is a
//! pipe, never with --quiet, never for small inputs, and never on stdout. The terminal is a pty made by
//! `script` (util-linux); without it the test prints "SKIPPED" (and fails under CI=true).
#![cfg(all(feature = "cli", unix))]

use crate::common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_kms-envelope");
/// Just over the 64 MiB threshold.
const BIG: u64 = (64 << 20) + 4096;

fn script() -> Option<&'static str> {
    let found = Command::new("script")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found { Some("script") } else { common::missing("`script` from util-linux (for a pty)") }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `kms-envelope ARGS` in `dir` with stdin, stdout and stderr on a fresh pty; returns what the
/// terminal showed and whether the command succeeded.
fn on_terminal(dir: &Path, args: &[&str]) -> (String, bool) {
    let line = std::iter::once(BIN).chain(args.iter().copied()).map(quote).collect::<Vec<_>>().join(" ");
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(dir)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.success())
}

/// The same, with stderr (and stdout) a pipe.
fn piped(dir: &Path, args: &[&str]) -> (String, String, bool) {
    let out = Command::new(BIN).args(args).current_dir(dir).stdin(Stdio::null()).output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn progress_bar_only_on_a_terminal() {
    let Some(_) = script() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("k"), [7u8; 32]).unwrap();
    fs::File::create(d.join("big")).unwrap().set_len(BIG).unwrap();
    fs::write(d.join("small"), vec![1u8; 1 << 20]).unwrap();
    let keys = ["--raw-key-file", "k", "--key-namespace", "ns", "--key-name", "n"];
    let cmd = |op: &str, rest: &[&'static str]| -> Vec<&'static str> {
        let op: &'static str = if op == "encrypt" { "encrypt" } else { "decrypt" };
        [&[op][..], &keys[..], rest].concat()
    };

    // A terminal and a big input: the bar, with the file name, bytes, rate and ETA.
    let (shown, success) = on_terminal(d, &cmd("encrypt", &["big", "big.esdk"]));
    assert!(success, "{shown}");
    for needle in ["big", "64.00 MiB", "ETA", "/s"] {
        assert!(shown.contains(needle), "{needle:?} missing from the terminal:\n{shown:?}");
    }
    assert!(shown.contains("[=="), "a bar is drawn: {shown:?}");

    // Decrypt too; the bar counts the message's bytes.
    let (shown, success) = on_terminal(d, &cmd("decrypt", &["big.esdk", "big.out"]));
    assert!(success && shown.contains("big.esdk") && shown.contains("ETA"), "{shown:?}");
    assert_eq!(fs::metadata(d.join("big.out")).unwrap().len(), BIG);

    // --quiet, or a small input: nothing on the terminal at all.
    let (shown, success) = on_terminal(d, &cmd("encrypt", &["--quiet", "big", "q.esdk"]));
    assert!(success && shown.trim().is_empty(), "--quiet: {shown:?}");
    let (shown, success) = on_terminal(d, &cmd("encrypt", &["small", "small.esdk"]));
    assert!(success && shown.trim().is_empty(), "small input: {shown:?}");

    // stderr a pipe: no bar, and stdout carries only the message.
    let (_, stderr, success) = piped(d, &cmd("encrypt", &["big", "p.esdk"]));
    assert!(success && stderr.is_empty(), "piped stderr: {stderr:?}");
    let (stdout, stderr, success) = piped(d, &cmd("decrypt", &["p.esdk", "-"]));
    assert!(success && stderr.is_empty(), "{stderr:?}");
    assert_eq!(stdout.len() as u64, BIG);
    assert!(stdout.bytes().all(|b| b == 0), "stdout holds the plaintext only");
}

/// The bar's label is the input's file name, which may come from elsewhere (a tree of received messages
/// decrypted with --recursive): its controls are escaped as in error lines, not sent to the terminal.
#[test]
fn the_bar_shows_a_hostile_file_name_escaped() {
    let Some(_) = script() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("k"), [7u8; 32]).unwrap();
    let name = "big\x1b]0;pwned\x07\u{9b}2J";
    fs::File::create(d.join(name)).unwrap().set_len(BIG).unwrap();
    let keys = ["--raw-key-file", "k", "--key-namespace", "ns", "--key-name", "n"];
    let (shown, success) = on_terminal(d, &[&["encrypt"][..], &keys[..], &[name, "out.esdk"]].concat());
    assert!(success && shown.contains("ETA"), "{shown:?}");
    assert!(shown.contains(r"big\u{1b}]0;pwned\u{7}\u{9b}2J"), "the name is shown escaped: {shown:?}");
    for raw in ["\x1b]0;", "\x07", "\u{9b}"] {
        assert!(!shown.contains(raw), "{raw:?} from the file name reached the terminal: {shown:?}");
    }
}

/// Ctrl-C (SIGINT) while the bar is drawn ends the bar's line before the process dies, so that the shell's
/// prompt does not start in the middle of it; the process then dies of the signal (exit 130 in a shell).
/// `timeout -s INT` sends the signal to the command alone, as the terminal would to its foreground job.
#[test]
fn ctrl_c_ends_the_bar_line() {
    let Some(_) = script() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("k"), [7u8; 32]).unwrap();
    // Sparse and large enough to be still encrypting when the signal comes.
    fs::File::create(d.join("huge")).unwrap().set_len(16 << 30).unwrap();
    let keys = ["--raw-key-file", "k", "--key-namespace", "ns", "--key-name", "n"];
    // --preserve-status: without it `timeout` exits 124 whatever the command did, so the status would say
    // nothing about how the CLI ended.
    let line = format!("timeout --preserve-status -s INT 3 {} encrypt {} huge huge.esdk", quote(BIN), keys.join(" "));
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(d)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(shown.contains("ETA"), "the bar was drawn before the signal: {shown:?}");
    // README, Exit status: outside an S3 upload SIGINT "end[s] the process as usual": killed by it, which
    // `script -e` reports as a shell does, 128 + 2.
    assert_eq!(out.status.code(), Some(130), "the signal stopped it: {shown:?}");
    assert!(
        shown.ends_with('\n'),
        "the terminal is left at the start of a line: {:?}",
        &shown[shown.len().saturating_sub(200)..]
    );
    assert!(!d.join("huge.esdk").exists(), "no output");
}
