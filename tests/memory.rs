//! Memory of the `kms-envelope` process on messages with long frames: the frame buffers stay within
//! `DecryptLimits::max_frame_buffers` (40 MiB) whatever `--threads` says, on the file path (positioned reads
//! and writes) and the stream path alike (base64 armor included), and a process short of memory fails with exit 4 ("out of
//! memory") instead of aborting. Peak RSS is the child's own, as `wait4` reports it.
// Built only with `cli` (required-features in Cargo.toml).
#![cfg(target_os = "linux")]

use std::fs::{self, File};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

/// The frame length of the messages: the default `max_frame_length`.
const FRAME: u64 = 16 << 20;
/// The peak RSS no run may pass: the frame buffers plus the process itself.
const MAX_RSS_MIB: u64 = 64;

/// `kms-envelope` with a raw key in `dir`, and no AWS configuration from outside.
fn cli(dir: &Path) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("kms-envelope"));
    cmd.current_dir(dir).env("AWS_EC2_METADATA_DISABLED", "true").stdin(Stdio::null());
    cmd
}

const RAW: [&str; 6] = ["--raw-key-file", "wrapping.key", "--key-namespace", "memory", "--key-name", "k"];

/// A scratch directory with the key file.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("wrapping.key"), [0x42u8; 32]).unwrap();
    dir
}

/// `len` zero bytes in the file `name`, without writing them (a sparse file).
fn zeros(dir: &Path, name: &str, len: u64) {
    File::create(dir.join(name)).unwrap().set_len(len).unwrap();
}

/// Runs `cmd` to its end: its exit status, its stderr and its own peak RSS in MiB.
// The child is reaped by `wait4` (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run(cmd: &mut Command) -> (ExitStatus, String, u64) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data, for which all zeros is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for (`child` is never waited on: dropping it does not wait).
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    // Linux reports ru_maxrss in KiB.
    (ExitStatus::from_raw(status), stderr, usage.ru_maxrss as u64 / 1024)
}

#[test]
fn sixteen_mib_frames_on_8_and_64_threads_stay_under_64_mib() {
    let dir = scratch();
    let d = dir.path();
    zeros(d, "plain", 200 << 20);
    let frame = FRAME.to_string();
    let mut peaks = Vec::new();
    let mut measure = |what: String, cmd: &mut Command| {
        let (status, stderr, rss) = run(cmd);
        assert!(status.success(), "{what}: {status}: {stderr}");
        peaks.push((what, rss));
    };

    // The encrypt side too: a long frame length chosen by the user, on many threads.
    let encrypt = ["encrypt", "--frame-length", &frame, "--quiet", "--no-fsync", "--threads", "64", "plain", "msg"];
    measure("encrypt, 64 threads".into(), cli(d).args(encrypt).args(RAW));
    // Base64 armor, written and read as it streams (267 MiB of text).
    let armored = ["encrypt", "--armor", "--frame-length", &frame, "--quiet", "--no-fsync", "plain", "msg.b64"];
    measure("encrypt --armor".into(), cli(d).args(armored).args(RAW));
    let armored = ["decrypt", "--quiet", "--threads", "8", "msg.b64", "-"];
    measure("decrypt of armor, 8 threads".into(), cli(d).args(armored).args(RAW).stdout(Stdio::null()));
    for threads in ["8", "64"] {
        let to_file = ["decrypt", "--quiet", "--no-fsync", "--threads", threads, "msg", "out"];
        measure(format!("decrypt file to file, {threads} threads"), cli(d).args(to_file).args(RAW));
        assert_eq!(fs::metadata(d.join("out")).unwrap().len(), 200 << 20);
        fs::remove_file(d.join("out")).unwrap();
        // stdout that is not a regular file: the streaming decryptor.
        let streamed = ["decrypt", "--quiet", "--threads", threads, "msg", "-"];
        measure(format!("decrypt streamed, {threads} threads"), cli(d).args(streamed).args(RAW).stdout(Stdio::null()));
    }
    println!("peak RSS in MiB: {peaks:?}");
    let over: Vec<_> = peaks.iter().filter(|(_, rss)| *rss > MAX_RSS_MIB).collect();
    assert!(over.is_empty(), "peak RSS over {MAX_RSS_MIB} MiB: {over:?} (all: {peaks:?})");
}

/// `kms-envelope decrypt --threads 1 msg out` with its address space limited to `limit` bytes.
fn decrypt_within(dir: &Path, msg: &str, limit: u64) -> (ExitStatus, String) {
    let mut cmd = cli(dir);
    cmd.args(["decrypt", "--quiet", "--no-fsync", "--force", "--threads", "1", msg, "out"]).args(RAW);
    let rlimit = rustix::process::Rlimit { current: Some(limit), maximum: Some(limit) };
    // SAFETY: the closure only makes one system call, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || Ok(rustix::process::setrlimit(rustix::process::Resource::As, rlimit)?));
    }
    let (status, stderr, _) = run(&mut cmd);
    (status, stderr)
}

#[test]
fn a_process_short_of_memory_for_a_frame_fails_with_exit_4_instead_of_aborting() {
    let dir = scratch();
    let d = dir.path();
    let frame = FRAME.to_string();
    // The same header and path twice: a message of one short final frame, and one of two full 16 MiB frames.
    zeros(d, "short", 10);
    zeros(d, "long", 2 * FRAME + 5);
    for (plain, msg) in [("short", "short.msg"), ("long", "long.msg")] {
        let encrypt = ["encrypt", "--frame-length", &frame, "--quiet", "--no-fsync", "--threads", "1", plain, msg];
        let (status, stderr, _) = run(cli(d).args(encrypt).args(RAW));
        assert!(status.success(), "{stderr}");
    }
    // The least address space (to 4 MiB) in which the short message decrypts: the process without frames.
    let (mut fails, mut works) = (0u64, 4u64 << 30);
    assert!(decrypt_within(d, "short.msg", works).0.success());
    while works - fails > 4 << 20 {
        let mid = (fails + works) / 2;
        if decrypt_within(d, "short.msg", mid).0.success() { works = mid } else { fails = mid }
    }

    // 8 MiB more is not room for a 16 MiB frame: a clean failure, exit 4, no abort and no plaintext.
    fs::remove_file(d.join("out")).unwrap();
    let (status, stderr) = decrypt_within(d, "long.msg", works + (8 << 20));
    assert_eq!(status.signal(), None, "killed by a signal: {stderr}");
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("out of memory: cannot allocate a buffer of"), "{stderr}");
    assert!(!d.join("out").exists());
    // 48 MiB more is: the frame fits, and the message decrypts.
    let (status, stderr) = decrypt_within(d, "long.msg", works + (48 << 20));
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(fs::metadata(d.join("out")).unwrap().len(), 2 * FRAME + 5);
}

/// `kms-envelope reencrypt` of a file whose frames are one byte under 16 MiB (so that jobs of the new
/// message's default 64 KiB frames straddle two of them), on 8 threads: the fused positioned path (file to
/// file) stays under the same 64 MiB as decrypt, as the streaming re-encryption (stdin to stdout) does.
#[test]
fn attack_reencrypt_of_frames_just_under_16_mib_stays_under_64_mib() {
    let dir = scratch();
    let d = dir.path();
    fs::write(d.join("new.key"), [0x17u8; 32]).unwrap();
    zeros(d, "plain", 100 << 20);
    let frame = (FRAME - 1).to_string();
    let encrypt = ["encrypt", "--frame-length", &frame, "--quiet", "--no-fsync", "--threads", "2", "plain", "msg"];
    let (status, stderr, _) = run(cli(d).args(encrypt).args(RAW));
    assert!(status.success(), "{stderr}");
    let new = ["--new-raw-key-file", "new.key", "--new-key-namespace", "memory", "--new-key-name", "new"];
    let mut to_file = cli(d);
    to_file.args(["reencrypt", "--threads", "8"]).args(RAW).args(new);
    to_file.args(["--quiet", "--no-fsync", "msg", "out"]);
    let (status, stderr, file_rss) = run(&mut to_file);
    assert!(status.success(), "{stderr}");
    let mut streamed = cli(d);
    streamed.args(["reencrypt", "--threads", "8"]).args(RAW).args(new).args(["--quiet", "-", "-"]);
    streamed.stdin(File::open(d.join("msg")).unwrap()).stdout(Stdio::null());
    let (status, stderr, streamed_rss) = run(&mut streamed);
    assert!(status.success(), "{stderr}");
    println!("peak RSS in MiB: file to file {file_rss}, streamed {streamed_rss}");
    assert!(streamed_rss <= MAX_RSS_MIB, "streamed: {streamed_rss} MiB");
    assert!(file_rss <= MAX_RSS_MIB, "file to file: {file_rss} MiB (streamed: {streamed_rss} MiB)");
}
