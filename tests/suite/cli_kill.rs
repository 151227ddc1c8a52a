//! The command line killed with SIGKILL mid-`decrypt` and mid-`unbundle`: no file holding decrypted bytes
//! may remain beside the destination, neither after the kill nor after the rerun that follows.
//!
//! Deterministic, not a race on timing: the test streams the message into the process's stdin, stops
//! feeding partway through (the message is never finished, so the process cannot complete), waits until
//! the process has written some megabytes of plaintext (seen through its open descriptors in /proc), and
//! only then kills it.
#![cfg(all(feature = "cli", target_os = "linux"))]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kms_envelope::{EncryptOptions, Encryptor, RawAesKeyring};

const NS: &str = "pipeline";
const NAME: &str = "key-1";
const KEY: [u8; 32] = [0x42; 32];
/// Every plaintext in this file is this line repeated: a file holding it holds decrypted bytes.
const MARKER: &[u8] = b"kms-envelope sigkill marker: decrypted bytes\n";
/// Plaintext streamed in before the feeding stops.
const FED: usize = 32 << 20;
/// Plaintext the process must have written to disk before the kill.
const WRITTEN: u64 = 4 << 20;

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new(NS, NAME, &KEY).unwrap()
}

fn options() -> EncryptOptions {
    EncryptOptions::new().frame_length(64 << 10)
}

fn marker_bytes(len: usize) -> Vec<u8> {
    MARKER.iter().copied().cycle().take(len).collect()
}

fn command(work: &Path, sub: &str, input: &str, output: &str) -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("kms-envelope"));
    command
        .current_dir(work)
        .args([sub, "--quiet", "--force", "--raw-key-file", "wrapping.key", "--key-namespace", NS, "--key-name", NAME])
        .args([input, output])
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

/// Every regular file under `dir` (hidden ones included) that holds decrypted bytes.
fn files_with_plaintext(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            found.extend(files_with_plaintext(&path));
        } else if kind.is_file() && fs::read(&path).unwrap().windows(MARKER.len()).any(|w| w == MARKER) {
            found.push(path);
        }
    }
    found
}

/// The most bytes in any file the process `pid` has open below `dir` (named or not).
fn bytes_written_below(pid: u32, dir: &Path) -> u64 {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    fds.flatten()
        .filter(|fd| fs::read_link(fd.path()).is_ok_and(|target| target.starts_with(dir)))
        .filter_map(|fd| fs::metadata(fd.path()).ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .max()
        .unwrap_or(0)
}

/// Streams the first `FED` bytes of plaintext (after `preamble`) as a message into `stdin`, and keeps the
/// message open, unfinished, until `stop` is dropped.
fn feed(stdin: ChildStdin, preamble: Vec<u8>, stop: mpsc::Receiver<()>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut encryptor = Encryptor::new(&keyring(), &options(), stdin).unwrap();
        encryptor.write_all(&preamble).unwrap();
        let chunk = marker_bytes(1 << 20);
        for _ in 0..FED / chunk.len() {
            if encryptor.write_all(&chunk).is_err() {
                return; // killed early: the test reports why
            }
        }
        let _ = encryptor.flush();
        let _ = stop.recv();
    })
}

/// Runs `command` on a message that never ends, kills it with SIGKILL once it wrote `WRITTEN` bytes of
/// plaintext below `out`, and returns how many it had written.
fn kill_mid_write(mut command: Command, preamble: Vec<u8>, out: &Path) -> u64 {
    let mut child: Child = command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (keep_open, stop) = mpsc::channel();
    let feeder = feed(child.stdin.take().unwrap(), preamble, stop);
    // Only a bound for a broken build: the kill itself waits for the bytes, not for a time.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut written = 0;
    while written < WRITTEN && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(5));
        written = bytes_written_below(child.id(), out);
    }
    let exited = child.try_wait().unwrap();
    child.kill().unwrap(); // SIGKILL: no destructor, no cleanup
    let status = child.wait().unwrap();
    drop(keep_open);
    feeder.join().unwrap();
    assert!(exited.is_none(), "the process ended on its own ({status}) before the kill");
    assert!(written >= WRITTEN, "the process wrote only {written} bytes of plaintext below {}", out.display());
    written
}

fn scratch() -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("wrapping.key"), KEY).unwrap();
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    (work, out)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn encrypt(plaintext: &[u8]) -> Vec<u8> {
    let mut encryptor = Encryptor::new(&keyring(), &options(), Vec::new()).unwrap();
    encryptor.write_all(plaintext).unwrap();
    encryptor.finish().unwrap()
}

#[test]
fn decrypt_killed_mid_write_leaves_no_plaintext_beside_the_destination() {
    let (work, out) = scratch();
    kill_mid_write(command(work.path(), "decrypt", "-", "out/plain.bin"), Vec::new(), &out);
    assert_eq!(files_with_plaintext(&out), Vec::<PathBuf>::new(), "after the kill: {:?}", names(&out));
    assert!(!out.join("plain.bin").exists(), "the destination appeared without a verified message");

    // What a kill leaves where no unnamed file can be made (or what an older version left): the rerun
    // must remove it.
    fs::write(out.join(".plain.bin.Stale9.partial"), marker_bytes(1 << 16)).unwrap();
    let plaintext = marker_bytes(1 << 20);
    fs::write(work.path().join("whole.esdk"), encrypt(&plaintext)).unwrap();
    let rerun = command(work.path(), "decrypt", "whole.esdk", "out/plain.bin").output().unwrap();
    assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
    assert_eq!(names(&out), ["plain.bin"], "after the rerun");
    assert!(fs::read(out.join("plain.bin")).unwrap() == plaintext);
}

#[test]
fn unbundle_killed_mid_write_leaves_no_plaintext_beside_the_destination() {
    let (work, out) = scratch();
    // A bundle announcing one 1 GiB file, of which only the first `FED` bytes ever arrive.
    let mut header = tar::Header::new_gnu();
    header.set_path("big.bin").unwrap();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o600);
    header.set_size(1 << 30);
    header.set_cksum();
    kill_mid_write(command(work.path(), "unbundle", "-", "out/tree"), header.as_bytes().to_vec(), &out);
    assert_eq!(files_with_plaintext(&out), Vec::<PathBuf>::new(), "after the kill: {:?}", names(&out));
    assert!(!out.join("tree").exists(), "the destination appeared without a verified message");

    fs::create_dir(out.join(".tree.Stale9.partial")).unwrap();
    fs::write(out.join(".tree.Stale9.partial/big.bin"), marker_bytes(1 << 16)).unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("big.bin"), marker_bytes(1 << 20)).unwrap();
    let bundle = kms_envelope::bundle::encrypt_directory(&keyring(), &options(), &src, Vec::new()).unwrap().0;
    fs::write(work.path().join("tree.esdk"), bundle).unwrap();
    let rerun = command(work.path(), "unbundle", "tree.esdk", "out/tree").output().unwrap();
    assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
    assert_eq!(names(&out), ["tree"], "after the rerun");
    assert!(fs::read(out.join("tree/big.bin")).unwrap() == marker_bytes(1 << 20));
}
