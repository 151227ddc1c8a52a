//! The `kms-envelope` command line, run as a process: every subcommand, every exit code, files, stdin and
//! stdout, directories, and AWS KMS keys through moto (scripts/test.sh starts it; without it the KMS tests
//! print "SKIPPED" and fail under CI=true).
#![cfg(feature = "cli")]

use crate::common;
#[path = "cli_parts/completions.rs"]
mod completions;
#[cfg(feature = "aws-lc")]
#[path = "cli_parts/ecdh.rs"]
mod ecdh;
#[path = "cli_parts/edit.rs"]
mod edit;
#[cfg(unix)]
#[path = "cli_parts/exec.rs"]
mod exec;
#[path = "cli_parts/git_textconv.rs"]
mod git_textconv;
#[cfg(feature = "kms")]
use crate::support;

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

const NS: &str = "pipeline";
const NAME: &str = "key-1";

/// A scratch directory with a raw key file in it.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("wrapping.key"), [0x42u8; 32]).unwrap();
        fs::write(dir.path().join("other.key"), [0x17u8; 32]).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, data).unwrap();
        path
    }

    /// `kms-envelope` run in the scratch directory, with no AWS configuration from outside.
    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("kms-envelope").unwrap();
        cmd.current_dir(self.dir.path());
        for var in ["AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS", "AWS_SESSION_TOKEN"] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    }
}

/// The raw key triple for `file` (relative to the scratch directory).
fn raw(file: &str) -> Vec<&str> {
    vec!["--raw-key-file", file, "--key-namespace", NS, "--key-name", NAME]
}

fn args<'a>(parts: &[&[&'a str]]) -> Vec<&'a str> {
    parts.concat()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `cmd`, asserts the exit code and that stderr is exactly one line (when failing); returns stdout.
fn expect(cmd: &mut Command, code: i32) -> (Vec<u8>, String) {
    let out = cmd.output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    if code != 0 && !is_parse_error(&stderr) {
        assert_eq!(stderr.lines().count(), 1, "one line on stderr per failure: {stderr:?}");
        assert!(stderr.starts_with("kms-envelope: "), "{stderr}");
    }
    (out.stdout, stderr)
}

/// A command line clap refused (exit 2): its own message and hint, several lines by design. Every other
/// failure, usage errors found after parsing included, is one `kms-envelope: ` line.
fn is_parse_error(stderr: &str) -> bool {
    stderr.starts_with("error: ") && stderr.trim_end().ends_with("For more information, try '--help'.")
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn encrypt_then_decrypt_files_with_context() {
    let s = Scratch::new();
    let data = plaintext(200_000);
    s.write("secrets.json", &data);
    expect(
        s.cmd().args(args(&[
            &["encrypt"],
            &raw("wrapping.key"),
            &["--context", "app=billing", "--frame-length", "4096", "--threads", "2", "secrets.json", "m.esdk"],
        ])),
        0,
    );
    let message = fs::read(s.path("m.esdk")).unwrap();
    assert_eq!(&message[..3], &[0x02, 0x04, 0x78], "v2 header, suite 0x0478");
    expect(
        s.cmd().args(args(&[
            &["decrypt"],
            &raw("wrapping.key"),
            &["--context", "app=billing", "--require-context-key", "app", "--threads", "1", "m.esdk", "out.json"],
        ])),
        0,
    );
    assert_eq!(fs::read(s.path("out.json")).unwrap(), data);
    #[cfg(unix)]
    assert_eq!(mode(&s.path("out.json")), 0o600, "decrypted outputs are 0600");
    let leftovers: Vec<_> = fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "no temp files left: {leftovers:?}");
}

#[test]
fn stdin_to_stdout_and_back() {
    let s = Scratch::new();
    let data = plaintext(70_000);
    let (message, stderr) =
        expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["-", "-"]])).write_stdin(data.clone()), 0);
    assert!(stderr.is_empty(), "nothing but data: {stderr}");
    let (plain, stderr) =
        expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["-", "-"]])).write_stdin(message), 0);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(plain, data);
}

/// `kms-envelope` as a plain process in the scratch directory, for stdin and stdout other than
/// `assert_cmd`'s pipes.
fn process(s: &Scratch, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("kms-envelope"));
    cmd.current_dir(s.dir.path()).args(args).stderr(std::process::Stdio::piped());
    cmd
}

/// The CLI widens a stdin or stdout pipe, and must leave anything else alone: here stdin and stdout are
/// regular files, the file-to-file round trip of `-`.
#[test]
fn stdin_and_stdout_redirected_to_files() {
    let s = Scratch::new();
    let data = plaintext(300_000);
    let input = s.write("in", &data);
    let run = |args: &[&str], from: &Path, to: &Path| {
        let out = process(&s, args)
            .stdin(fs::File::open(from).unwrap())
            .stdout(fs::File::create(to).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    };
    run(&args(&[&["encrypt"], &raw("wrapping.key"), &["-", "-"]]), &input, &s.path("msg"));
    run(&args(&[&["decrypt"], &raw("wrapping.key"), &["-", "-"]]), &s.path("msg"), &s.path("back"));
    assert_eq!(fs::read(s.path("back")).unwrap(), data);
}

/// A file holding `before\n`, opened for writing at its end (or for appending), as the shell hands
/// `{ echo before; kms-envelope ...; echo after; } > out` (or `>> out`) to each command.
#[cfg(unix)]
fn stdout_file_after_a_line(path: &Path, append: bool) -> fs::File {
    use std::io::Seek;
    fs::write(path, b"before\n").unwrap();
    let mut file = fs::OpenOptions::new().write(true).append(append).open(path).unwrap();
    file.seek(std::io::SeekFrom::End(0)).unwrap();
    file
}

/// stdout redirected to a file (the positioned path: workers write their frames in place) or appended to
/// (`>>`, which must stream: Linux appends every positioned write), for an unsigned and a signed suite: the
/// message and the plaintext land where stdout's position was, and the position ends after them, where the
/// next command of the group writes.
#[cfg(unix)]
#[test]
fn stdout_redirected_to_a_file_takes_the_output_at_its_position() {
    use std::io::Write;
    let s = Scratch::new();
    let data = plaintext(3 << 20);
    s.write("pt", &data);
    for (append, suite) in [(false, "0x0478"), (true, "0x0478"), (false, "0x0578")] {
        let what = format!("append {append}, suite {suite}");
        let mut out = stdout_file_after_a_line(&s.path("ct"), append);
        let encrypt =
            args(&[&["encrypt"], &raw("wrapping.key"), &["--suite", suite, "--frame-length", "4096", "pt", "-"]]);
        let run = process(&s, &encrypt).stdout(out.try_clone().unwrap()).output().unwrap();
        assert!(run.status.success(), "{what}: {}", stderr_of(&run));
        out.write_all(b"after\n").unwrap();
        let written = fs::read(s.path("ct")).unwrap();
        assert!(written.starts_with(b"before\n") && written.ends_with(b"after\n"), "{what}");
        s.write("msg", &written[7..written.len() - 6]);

        let mut out = stdout_file_after_a_line(&s.path("back"), append);
        let decrypt = args(&[&["decrypt"], &raw("wrapping.key"), &["msg", "-"]]);
        let run = process(&s, &decrypt).stdout(out.try_clone().unwrap()).output().unwrap();
        assert!(run.status.success(), "{what}: {}", stderr_of(&run));
        out.write_all(b"after\n").unwrap();
        let back = fs::read(s.path("back")).unwrap();
        assert!(back == [&b"before\n"[..], &data, b"after\n"].concat(), "{what}: the plaintext differs");
    }
}

/// A message that fails to verify, decrypted to stdout redirected to a file: the file is cut back to what
/// it held before, so no frame of it (verified or not) is left to be mistaken for output.
#[cfg(unix)]
#[test]
fn a_failed_decrypt_to_a_stdout_file_leaves_it_as_it_was() {
    let s = Scratch::new();
    s.write("pt", &plaintext(3 << 20));
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["--frame-length", "4096", "pt", "ct"]])), 0);
    let mut message = fs::read(s.path("ct")).unwrap();
    let middle = message.len() / 2;
    message[middle] ^= 0x80;
    s.write("bad", &message);
    let out = stdout_file_after_a_line(&s.path("out"), false);
    let run = process(&s, &args(&[&["decrypt"], &raw("wrapping.key"), &["bad", "-"]])).stdout(out).output().unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", stderr_of(&run));
    assert!(stderr_of(&run).contains("authentication failed"), "{}", stderr_of(&run));
    assert_eq!(fs::read(s.path("out")).unwrap(), b"before\n");
}

/// stdout that is the input file itself (`encrypt pt - 1<>pt`, `encrypt - - < pt 1<>pt`, `decrypt msg - 1<>msg`,
/// `decrypt msg - >> msg`, or through a hard link) is refused before anything is read or written, as `cat`
/// refuses "input file is output file": a message is longer than its plaintext, so encrypt wrote over input
/// it had not read yet and exited 0 with a message of its own output; decrypt wrote over, or appended
/// plaintext to, the message it was reading.
#[cfg(unix)]
#[test]
fn stdout_that_is_the_input_file_is_refused_untouched() {
    let s = Scratch::new();
    let data = plaintext(300 << 10);
    s.write("pt", &data);
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["--frame-length", "4096", "pt", "ct"]])), 0);
    let message = fs::read(s.path("ct")).unwrap();
    fs::hard_link(s.path("ct"), s.path("ct-link")).unwrap();
    let cases: [(&str, &str, bool, bool, &str); 5] = [
        ("encrypt", "pt", false, false, "pt"),
        ("encrypt", "pt", true, false, "pt"),
        ("decrypt", "ct", false, false, "ct"),
        ("decrypt", "ct", false, true, "ct"),
        ("decrypt", "ct", false, false, "ct-link"),
    ];
    for (command, input, from_stdin, append, stdout) in cases {
        let what = format!("{command} {input} (stdin {from_stdin}), stdout {stdout} (append {append})");
        let out = fs::OpenOptions::new().read(true).write(!append).append(append).open(s.path(stdout)).unwrap();
        let mut cmd =
            process(&s, &args(&[&[command], &raw("wrapping.key"), &[if from_stdin { "-" } else { input }, "-"]]));
        if from_stdin {
            cmd.stdin(fs::File::open(s.path(input)).unwrap());
        }
        let run = cmd.stdout(out).output().unwrap();
        let stderr = stderr_of(&run);
        assert_eq!(run.status.code(), Some(2), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        assert!(fs::read(s.path("pt")).unwrap() == data, "{what}: the plaintext file changed");
        assert!(fs::read(s.path("ct")).unwrap() == message, "{what}: the message file changed");
    }
}

/// stdout that is a key file (`encrypt --raw-key-file k in - 1<>k`, or the same through a hard link) is
/// refused before anything is written: the message would replace the key it needs, often its only copy.
/// Likewise `bundle dir - > dir/out`, whose bundle would contain a partial copy of itself.
#[cfg(unix)]
#[test]
fn stdout_that_is_a_key_file_or_inside_the_bundled_directory_is_refused() {
    let s = Scratch::new();
    let data = plaintext(100 << 10);
    s.write("pt", &data);
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "ct"]])), 0);
    let key = fs::read(s.path("wrapping.key")).unwrap();
    fs::hard_link(s.path("wrapping.key"), s.path("key-link")).unwrap();
    for (command, input, stdout) in
        [("encrypt", "pt", "wrapping.key"), ("encrypt", "pt", "key-link"), ("decrypt", "ct", "wrapping.key")]
    {
        let what = format!("{command} {input}, stdout {stdout}");
        let out = fs::OpenOptions::new().read(true).write(true).open(s.path(stdout)).unwrap();
        let run = process(&s, &args(&[&[command], &raw("wrapping.key"), &[input, "-"]])).stdout(out).output().unwrap();
        let stderr = stderr_of(&run);
        assert_eq!(run.status.code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains("key file"), "{what}: {stderr}");
        assert!(fs::read(s.path("wrapping.key")).unwrap() == key, "{what}: the key file changed");
    }

    fs::create_dir_all(s.path("dir/sub")).unwrap();
    fs::write(s.path("dir/sub/a"), b"a").unwrap();
    let run = process(&s, &args(&[&["bundle"], &raw("wrapping.key"), &["dir", "-"]]))
        .stdout(fs::File::create(s.path("dir/sub/out.b")).unwrap())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "{}", stderr_of(&run));
    assert!(stderr_of(&run).contains("contain itself"), "{}", stderr_of(&run));
    assert_eq!(fs::read(s.path("dir/sub/out.b")).unwrap(), b"");
    // Outside the directory, the same command bundles.
    let run = process(&s, &args(&[&["bundle"], &raw("wrapping.key"), &["dir", "-"]]))
        .stdout(fs::File::create(s.path("out.b")).unwrap())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    assert!(fs::metadata(s.path("out.b")).unwrap().len() > 0);
}

/// A stdin or stdout pipe is widened to 1 MiB (or the system's limit), so that the writer does not sleep
/// after every 64 KiB frame; the pipe keeps its size after the process, where the test reads it.
#[cfg(target_os = "linux")]
#[test]
fn stdin_and_stdout_pipes_are_widened() {
    use std::io::{Read, Write};
    let s = Scratch::new();
    let max: usize = fs::read_to_string("/proc/sys/fs/pipe-max-size").unwrap().trim().parse().unwrap();
    // Never narrowed: a system whose limit is under the default 64 KiB keeps the default.
    let expected = max.clamp(64 << 10, 1 << 20);
    let data = plaintext(300_000);

    let (stdin_reader, mut stdin_writer) = std::io::pipe().unwrap();
    let encrypt =
        process(&s, &args(&[&["encrypt"], &raw("wrapping.key"), &["-", "msg"]])).stdin(stdin_reader).spawn().unwrap();
    stdin_writer.write_all(&data).unwrap();
    let stdin_size = rustix::pipe::fcntl_getpipe_size(&stdin_writer).unwrap();
    drop(stdin_writer);
    let out = encrypt.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    let (mut stdout_reader, stdout_writer) = std::io::pipe().unwrap();
    let decrypt =
        process(&s, &args(&[&["decrypt"], &raw("wrapping.key"), &["msg", "-"]])).stdout(stdout_writer).spawn().unwrap();
    let mut back = Vec::new();
    stdout_reader.read_to_end(&mut back).unwrap();
    let out = decrypt.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(back, data);
    assert_eq!(stdin_size, expected, "stdin pipe");
    assert_eq!(rustix::pipe::fcntl_getpipe_size(&stdout_reader).unwrap(), expected, "stdout pipe");
}

#[test]
fn outputs_are_never_overwritten_without_force() {
    let s = Scratch::new();
    s.write("pt", b"new");
    s.write("ct", b"precious");
    let (_, stderr) = expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "ct"]])), 4);
    assert!(stderr.contains("ct") && stderr.contains("--force"), "{stderr}");
    assert_eq!(fs::read(s.path("ct")).unwrap(), b"precious");
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["--force", "pt", "ct"]])), 0);
    assert_ne!(fs::read(s.path("ct")).unwrap(), b"precious", "--force replaced the ciphertext");
    s.write("out", b"older content");
    let (_, stderr) = expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["ct", "out"]])), 4);
    assert!(stderr.contains("out: already exists (use --force to replace it)"), "{stderr}");
    assert_eq!(fs::read(s.path("out")).unwrap(), b"older content");
    expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["--force", "ct", "out"]])), 0);
    assert_eq!(fs::read(s.path("out")).unwrap(), b"new", "--force replaced the plaintext");
}

/// Context written by whoever made the message, with C0, C1 (`U+009B` is CSI), DEL and bidirectional
/// overrides in it: `inspect` shows it, as text and as JSON, without one of those characters reaching the
/// terminal, and the JSON still decodes to the exact strings.
#[test]
fn inspect_never_prints_terminal_controls_from_the_context() {
    let s = Scratch::new();
    s.write("pt", b"x");
    let hostile = "k\x1b[2J\u{9b}31m\u{7f}\u{202e}gpj.exe\u{2066}\u{200f}";
    let pair = format!("{hostile}={hostile}");
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["--context", &pair, "pt", "ct"]])), 0);
    for json in [false, true] {
        let mut cmd = s.cmd();
        cmd.arg("inspect");
        if json {
            cmd.arg("--json");
        }
        let (out, _) = expect(cmd.arg("ct"), 0);
        let text = String::from_utf8(out).unwrap();
        let unsafe_chars: Vec<char> = text
            .chars()
            .filter(|&c| {
                (c != '\n' && c.is_control())
                    || matches!(c, '\u{200e}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            })
            .collect();
        assert!(unsafe_chars.is_empty(), "json={json}: {unsafe_chars:?} reach the terminal in {text:?}");
        if json {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["encryption_context"][hostile], hostile, "{text}");
        }
    }
}

#[test]
fn inspect_prints_the_header_without_a_key() {
    let s = Scratch::new();
    s.write("pt", &plaintext(5000));
    expect(
        s.cmd().args(args(&[
            &["encrypt"],
            &raw("wrapping.key"),
            &["--raw-key-file", "other.key", "--key-namespace", "b", "--key-name", "second"],
            &["--suite", "0x0578", "--frame-length", "1024", "--context", "stage=prod", "pt", "ct"],
        ])),
        0,
    );
    let (text, _) = expect(s.cmd().args(["inspect", "ct"]), 0);
    let text = String::from_utf8(text).unwrap();
    for needle in [
        "0x0578",
        "ECDSA P-384",
        "frame length:       1024",
        "\"stage\" = \"prod\"",
        "aws-crypto-public-key",
        "encrypted data keys: 2",
        "raw AES key name \"key-1\"",
        "not authenticated",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let message = fs::read(s.path("ct")).unwrap();
    let (json, _) = expect(s.cmd().args(["inspect", "--json", "-"]).write_stdin(message.clone()), 0);
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["suite"]["id"], "0x0578");
    assert_eq!(v["suite"]["signed"], true);
    assert_eq!(v["version"], 2);
    assert_eq!(v["frame_length"], 1024);
    assert_eq!(v["content_type"], "framed");
    assert_eq!(v["encryption_context"]["stage"], "prod");
    assert_eq!(v["message_id"].as_str().unwrap(), common::hex(&message[3..35]));
    let edks = v["encrypted_data_keys"].as_array().unwrap();
    assert_eq!(edks.len(), 2);
    assert_eq!(edks[0]["provider_id"], NS);
    assert_eq!(edks[0]["kind"], "raw-aes");
    assert_eq!(edks[0]["key_name"], NAME);

    // Inspect reads the header only: a cut body is fine, a cut header is not.
    s.write("head", &message[..message.len() - 200]);
    expect(s.cmd().args(["inspect", "head"]), 0);
    s.write("cut", &message[..40]);
    let (_, stderr) = expect(s.cmd().args(["inspect", "cut"]), 1);
    assert!(stderr.contains("cut") && stderr.contains("truncated"), "{stderr}");
    let (_, stderr) = expect(s.cmd().args(["inspect", "--max-encrypted-data-keys", "1", "ct"]), 1);
    assert!(stderr.contains("encrypted data key"), "{stderr}");
    let (_, stderr) = expect(s.cmd().args(["inspect", "missing"]), 4);
    assert!(stderr.contains("cannot open missing"), "{stderr}");
}

#[test]
fn invalid_or_tampered_messages_exit_1_and_leave_nothing() {
    let s = Scratch::new();
    s.write("pt", &plaintext(10_000));
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["--frame-length", "512", "pt", "ct"]])), 0);
    let mut message = fs::read(s.path("ct")).unwrap();
    let last = message.len() - 5;
    message[last] ^= 1;
    s.write("bad", &message);
    let (_, stderr) = expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["bad", "out"]])), 1);
    assert!(stderr.contains("bad:") && stderr.contains("authentication failed"), "{stderr}");
    assert!(!s.path("out").exists(), "nothing at OUTPUT after a failure");
    s.write("junk", b"not a message at all");
    let (_, stderr) = expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["junk", "out"]])), 1);
    assert!(stderr.contains("junk:"), "{stderr}");
    assert!(!s.path("out").exists());
    // A context that differs, and a required key the message lacks.
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["--context", "a=1", "pt", "ct2"]])), 0);
    let (_, stderr) =
        expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["--context", "a=2", "ct2", "out"]])), 1);
    assert!(stderr.contains("ct2:") && stderr.contains("\"a\""), "{stderr}");
    let (_, stderr) = expect(
        s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["--require-context-key", "owner", "ct2", "out"]])),
        1,
    );
    assert!(stderr.contains("owner"), "{stderr}");
    assert!(!s.path("out").exists());
    expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["--require-context-key", "a", "ct2", "out"]])), 0);
    // Committing-only policy refuses a legacy suite; the allow policy reads it.
    expect(
        s.cmd().args(args(&[
            &["encrypt"],
            &raw("wrapping.key"),
            &["--suite", "0x0178", "--commitment-policy", "forbid-encrypt-allow-decrypt", "pt", "v1"],
        ])),
        0,
    );
    let (_, stderr) = expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["v1", "v1.out"]])), 1);
    assert!(stderr.contains("v1: message uses non-committing suite 0x0178"), "{stderr}");
    assert!(!s.path("v1.out").exists());
    expect(
        s.cmd().args(args(&[
            &["decrypt"],
            &raw("wrapping.key"),
            &["--commitment-policy", "require-encrypt-allow-decrypt", "v1", "v1.out"],
        ])),
        0,
    );
    // A signed message under --unsigned-only.
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["--suite", "0x0578", "pt", "signed"]])), 0);
    let (_, stderr) =
        expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["--unsigned-only", "signed", "x"]])), 1);
    assert!(stderr.contains("signed: message uses signed suite 0x0578"), "{stderr}");
    assert!(!s.path("x").exists());
}

#[test]
fn key_access_failures_exit_3() {
    let s = Scratch::new();
    s.write("pt", b"secret");
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "ct"]])), 0);
    let (_, stderr) = expect(s.cmd().args(args(&[&["decrypt"], &raw("other.key"), &["ct", "out"]])), 3);
    assert!(stderr.contains("ct:") && stderr.contains("no keyring could decrypt"), "{stderr}");
    let wrong_name = ["--raw-key-file", "wrapping.key", "--key-namespace", NS, "--key-name", "nope"];
    let (_, stderr) = expect(s.cmd().args(args(&[&["decrypt"], &wrong_name, &["ct", "out"]])), 3);
    assert!(stderr.contains(&format!("raw AES key name \"{NAME}\"")), "the name the message has: {stderr}");
    assert!(!s.path("out").exists());
}

#[test]
fn usage_errors_exit_2() {
    let s = Scratch::new();
    s.write("pt", b"x");
    s.write("short.key", &[1u8; 7]);
    // Each case with what its message must say: a refusal for another reason would pass on the code alone.
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["encrypt", "pt", "ct"], "no key given"),
        (vec!["decrypt", "pt", "out"], "no key given"),
        (vec!["encrypt", "--raw-key-file", "wrapping.key", "pt", "ct"], "(got 1 key, 0 namespaces, 0 names)"),
        (args(&[&["encrypt"], &raw("wrapping.key"), &["--context", "novalue", "pt", "ct"]]), "expected K=V"),
        (
            args(&[&["encrypt"], &raw("wrapping.key"), &["--suite", "0x9999", "pt", "ct"]]),
            "unsupported algorithm suite",
        ),
        (args(&[&["encrypt"], &raw("wrapping.key"), &["--frame-length", "0", "pt", "ct"]]), "'--frame-length <N>'"),
        (args(&[&["encrypt"], &raw("wrapping.key"), &["--threads", "0", "pt", "ct"]]), "'--threads <N>'"),
        (args(&[&["encrypt"], &raw("short.key"), &["pt", "ct"]]), "key file short.key: 7 bytes"),
        // discovery cannot encrypt
        (args(&[&["encrypt"], &raw("wrapping.key"), &["--kms-discovery", "pt", "ct"]]), "'--kms-discovery'"),
        // --account needs discovery
        (args(&[&["decrypt"], &raw("wrapping.key"), &["--account", "111122223333", "pt", "out"]]), "--kms-discovery"),
        (
            args(&[&["encrypt"], &raw("wrapping.key"), &["--commitment-policy", "sometimes", "pt", "ct"]]),
            "unknown commitment policy",
        ),
        // a directory without --recursive
        (args(&[&["encrypt"], &raw("wrapping.key"), &[".", "ct"]]), ". is a directory: use --recursive"),
        // --suffix needs --recursive
        (args(&[&["encrypt"], &raw("wrapping.key"), &["--suffix", ".x", "pt", "ct"]]), "--recursive"),
        // a reserved context key
        (
            args(&[&["encrypt"], &raw("wrapping.key"), &["--context", "aws-crypto-x=1", "pt", "ct"]]),
            "uses the reserved prefix \"aws-crypto-\"",
        ),
        (vec!["inspect"], "<INPUT>"),
        (vec!["frobnicate"], "unrecognized subcommand 'frobnicate'"),
    ];
    let mut ours = 0;
    for (case, reason) in cases {
        let out = s.cmd().args(&case).output().unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{case:?}: {stderr}");
        assert!(stderr.contains(reason), "{case:?}: {reason:?} not in {stderr}");
        if !is_parse_error(&stderr) {
            ours += 1;
            assert_eq!(stderr.lines().count(), 1, "{case:?}: one line on stderr: {stderr:?}");
            assert!(stderr.starts_with("kms-envelope: "), "{case:?}: {stderr}");
        }
        assert!(!s.path("ct").exists(), "{case:?} left an output");
    }
    // The short key, the reserved context key, discovery on encrypt, --account, --suffix, a directory...
    assert!(ours >= 6, "only {ours} cases reached the CLI's own checks");
    // --help documents the exit codes.
    for sub in ["encrypt", "decrypt", "inspect", "bundle", "unbundle"] {
        let out = s.cmd().args([sub, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success() && help.contains("3  key access failed") && help.contains("4  I/O"), "{help}");
    }
}

#[test]
fn io_failures_exit_4() {
    let s = Scratch::new();
    let (_, stderr) = expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["missing", "ct"]])), 4);
    assert!(stderr.contains("missing"), "{stderr}");
    s.write("pt", b"x");
    let (_, stderr) = expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "no/such/dir/ct"]])), 4);
    assert!(stderr.contains("no/such/dir/ct"), "{stderr}");
    // A missing key file is an unusable key file: a usage error (2), as the README's table says.
    let (_, stderr) = expect(s.cmd().args(args(&[&["encrypt"], &raw("absent.key"), &["pt", "ct"]])), 2);
    assert!(stderr.contains("cannot read key file absent.key"), "{stderr}");
    let (_, stderr) = expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["missing", "out"]])), 4);
    assert!(stderr.contains("cannot open missing"), "{stderr}");
    assert!(!s.path("ct").exists() && !s.path("out").exists());
}

#[test]
fn several_raw_keys_the_first_generates() {
    let s = Scratch::new();
    s.write("pt", b"for two teams");
    let second = ["--raw-key-file", "other.key", "--key-namespace", "team-b", "--key-name", "k"];
    expect(s.cmd().args(args(&[&["encrypt"], &second, &raw("wrapping.key"), &["pt", "ct"]])), 0);
    let (json, _) = expect(s.cmd().args(["inspect", "--json", "ct"]), 0);
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["encrypted_data_keys"][0]["provider_id"], "team-b", "command-line order: the first generates");
    assert_eq!(v["encrypted_data_keys"][1]["provider_id"], NS);
    let (out, _) = expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["ct", "-"]])), 0);
    assert_eq!(out, b"for two teams");
    let (out, _) = expect(s.cmd().args(args(&[&["decrypt"], &second, &["ct", "-"]])), 0);
    assert_eq!(out, b"for two teams");
}

#[test]
fn max_encrypted_data_keys_on_both_sides() {
    let s = Scratch::new();
    s.write("pt", b"x");
    let second = ["--raw-key-file", "other.key", "--key-namespace", "b", "--key-name", "k"];
    let (_, stderr) = expect(
        s.cmd().args(args(&[
            &["encrypt"],
            &raw("wrapping.key"),
            &second,
            &["--max-encrypted-data-keys", "1", "pt", "c"],
        ])),
        2,
    );
    assert!(stderr.contains("c: encrypted data key count is 2, over the configured limit of 1"), "{stderr}");
    assert!(!s.path("c").exists());
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &second, &["pt", "ct"]])), 0);
    let (_, stderr) = expect(
        s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["--max-encrypted-data-keys", "1", "ct", "out"]])),
        1,
    );
    assert!(stderr.contains("encrypted data key count"), "{stderr}");
}

fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push((path.strip_prefix(root).unwrap().display().to_string(), fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("certs/inner")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("app.env"), b"A=1\n").unwrap();
    fs::write(root.join("certs/tls.pem"), plaintext(5000)).unwrap();
    fs::write(root.join("certs/inner/deep.bin"), plaintext(70_000)).unwrap();
    fs::write(root.join("zero"), b"").unwrap();
}

#[test]
fn recursive_refuses_s3_names_before_touching_anything() {
    let s = Scratch::new();
    make_tree(&s.path("src"));
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["--recursive", "src", "enc"]])), 0);
    for (verb, input, output) in [("encrypt", "src", "s3://bucket/p"), ("decrypt", "enc", "s3://bucket/q")] {
        let (_, stderr) =
            expect(s.cmd().args(args(&[&[verb], &raw("wrapping.key"), &["--recursive", input, output]])), 2);
        assert!(stderr.contains("--recursive works on local directories"), "{stderr}");
    }
    let (_, stderr) =
        expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["--recursive", "s3://b/k", "out"]])), 2);
    assert!(stderr.contains("not on s3://b/k"), "{stderr}");
    // Nothing was taken as a relative path: no `./s3:` tree, no output directory.
    assert!(!s.path("s3:").exists() && !s.path("out").exists());
}

#[test]
fn recursive_mirrors_the_tree_one_message_per_file() {
    let s = Scratch::new();
    let src = s.path("src");
    make_tree(&src);
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["--recursive", "src", "enc"]])), 0);
    let encrypted: Vec<String> = tree(&s.path("enc")).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        encrypted,
        ["app.env.encrypted", "certs/inner/deep.bin.encrypted", "certs/tls.pem.encrypted", "zero.encrypted"]
    );
    // Each is a message of its own.
    expect(s.cmd().args(["inspect", "enc/certs/tls.pem.encrypted"]), 0);
    expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["-r", "enc", "dec"]])), 0);
    assert_eq!(tree(&s.path("dec")), tree(&src));
    #[cfg(unix)]
    assert_eq!(mode(&s.path("dec/certs/tls.pem")), 0o600);

    // A second run refuses to overwrite, file by file, and names each; --force replaces.
    let (_, stderr) = expect_lines(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["-r", "enc", "dec"]])), 4);
    assert_eq!(stderr.lines().count(), 5, "one line per file, then the summary: {stderr}");
    assert!(stderr.contains("dec/certs/tls.pem: already exists"), "{stderr}");
    expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["-r", "--force", "enc", "dec"]])), 0);

    // --suffix on both sides.
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["-r", "--suffix", ".esdk", "src", "enc2"]])), 0);
    assert!(s.path("enc2/certs/tls.pem.esdk").is_file());
    expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["-r", "--suffix", "", "enc2", "dec2"]])), 0);
    let dec2: Vec<String> = tree(&s.path("dec2")).into_iter().map(|(n, _)| n).collect();
    assert!(dec2.contains(&"certs/tls.pem.esdk".to_string()), "{dec2:?}");

    // A bad file among good ones: the others are decrypted, the bad one named, exit 1.
    let mut bad = fs::read(s.path("enc/app.env.encrypted")).unwrap();
    let at = bad.len() - 3;
    bad[at] ^= 0x80;
    fs::write(s.path("enc/app.env.encrypted"), bad).unwrap();
    let (_, stderr) =
        expect_lines(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["-r", "enc", "dec3"]])), 1);
    assert!(stderr.contains("enc/app.env.encrypted:"), "{stderr}");
    assert!(stderr.contains("1 of 4 files failed"), "{stderr}");
    assert!(!s.path("dec3/app.env").exists());
    assert!(s.path("dec3/certs/tls.pem").is_file());
}

/// The encrypted data keys of each message file below `dir`, in path order.
fn edks_below(dir: &Path) -> Vec<Vec<kms_envelope::EncryptedDataKey>> {
    tree(dir)
        .into_iter()
        .map(|(name, _)| {
            let message = fs::read(dir.join(name)).unwrap();
            let header = kms_envelope::Header::read_from(Default::default(), &mut &message[..]).unwrap();
            header.encrypted_data_keys().to_vec()
        })
        .collect()
}

#[test]
fn recursive_reuses_data_keys_only_when_asked() {
    let s = Scratch::new();
    fs::create_dir(s.path("src")).unwrap();
    for i in 0..5 {
        s.write(&format!("src/f{i}"), &plaintext(100 + i));
    }
    let distinct = |dir: &str| edks_below(&s.path(dir)).into_iter().collect::<std::collections::HashSet<_>>().len();

    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["-r", "src", "plain"]])), 0);
    assert_eq!(distinct("plain"), 5, "without --cache-max-age every file has a data key of its own");

    let cached = ["-r", "--cache-max-age", "600", "--cache-max-messages", "2", "src", "cached"];
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &cached])), 0);
    assert_eq!(distinct("cached"), 3, "two files per data key");
    expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["-r", "cached", "dec"]])), 0);
    assert_eq!(tree(&s.path("dec")), tree(&s.path("src")));

    expect(
        s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["-r", "--cache-max-age", "600", "src", "all"]])),
        0,
    );
    assert_eq!(distinct("all"), 1);

    // Opt-in only, and a max age is required.
    let no_age = ["-r", "--cache-max-messages", "2", "src", "x"];
    for (extra, reason) in [
        (&no_age[..], "--cache-max-age <SECONDS>"),
        (&["--cache-max-age", "6", "src/f1", "x"][..], "--recursive"),
        (&["-r", "--cache-max-age", "0", "src", "x"][..], "invalid value '0' for '--cache-max-age"),
    ] {
        let (_, stderr) = expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), extra])), 2);
        assert!(stderr.contains(reason), "{extra:?}: {stderr}");
    }
    assert!(!s.path("x").exists());
}

/// Like `expect`, for commands that print several failure lines (one per file).
fn expect_lines(cmd: &mut Command, code: i32) -> (Vec<u8>, String) {
    let out = cmd.output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.lines().all(|l| l.starts_with("kms-envelope: ")), "{stderr}");
    (out.stdout, stderr)
}

#[cfg(unix)]
#[test]
fn recursive_does_not_follow_symlinks() {
    let s = Scratch::new();
    make_tree(&s.path("src"));
    std::os::unix::fs::symlink("/etc/hostname", s.path("src/link")).unwrap();
    let (_, stderr) = expect_lines(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["-r", "src", "enc"]])), 4);
    assert!(stderr.contains("src/link: is a symbolic link"), "{stderr}");
    assert!(s.path("enc/app.env.encrypted").is_file(), "the regular files are still done");
    assert!(!s.path("enc/link.encrypted").exists());
}

#[test]
fn bundle_and_unbundle_a_directory() {
    let s = Scratch::new();
    make_tree(&s.path("src"));
    expect(s.cmd().args(args(&[&["bundle"], &raw("wrapping.key"), &["--context", "kind=bundle", "src", "b.esdk"]])), 0);
    let (json, _) = expect(s.cmd().args(["inspect", "--json", "b.esdk"]), 0);
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["encryption_context"]["kind"], "bundle");
    expect(
        s.cmd().args(args(&[&["unbundle"], &raw("wrapping.key"), &["--context", "kind=bundle", "b.esdk", "out"]])),
        0,
    );
    assert_eq!(tree(&s.path("out")), tree(&s.path("src")));
    assert!(s.path("out/empty").is_dir());
    #[cfg(unix)]
    assert_eq!(mode(&s.path("out")), 0o700);
    // Existing destination: refused without --force, replaced with it.
    let (_, stderr) = expect(s.cmd().args(args(&[&["unbundle"], &raw("wrapping.key"), &["b.esdk", "out"]])), 4);
    assert!(stderr.contains("already exists"), "{stderr}");
    expect(s.cmd().args(args(&[&["unbundle"], &raw("wrapping.key"), &["--force", "b.esdk", "out"]])), 0);
    // stdout / stdin.
    let (message, _) = expect(s.cmd().args(args(&[&["bundle"], &raw("wrapping.key"), &["src", "-"]])), 0);
    expect(s.cmd().args(args(&[&["unbundle"], &raw("wrapping.key"), &["-", "out2"]])).write_stdin(message.clone()), 0);
    assert_eq!(tree(&s.path("out2")), tree(&s.path("src")));
    // Wrong key, tampering, not a directory.
    let (_, stderr) = expect(s.cmd().args(args(&[&["unbundle"], &raw("other.key"), &["b.esdk", "out3"]])), 3);
    assert!(stderr.contains("no keyring could decrypt a data key"), "{stderr}");
    let mut bad = message;
    let at = bad.len() - 2;
    bad[at] ^= 1;
    let (_, stderr) =
        expect(s.cmd().args(args(&[&["unbundle"], &raw("wrapping.key"), &["-", "out3"]])).write_stdin(bad), 1);
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert!(!s.path("out3").exists(), "nothing appears after a failure");
    let (_, stderr) = expect(s.cmd().args(args(&[&["bundle"], &raw("wrapping.key"), &["b.esdk", "b2"]])), 2);
    assert!(stderr.contains("b.esdk: not a directory"), "{stderr}");
    let (_, stderr) = expect(s.cmd().args(args(&[&["bundle"], &raw("wrapping.key"), &["nowhere", "b2"]])), 4);
    assert!(stderr.contains("cannot open nowhere"), "{stderr}");
    assert!(!s.path("b2").exists());
}

/// Every name in `dir`, hidden ones included, sorted: what a failed command may have left behind.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Signed messages (0x0578) whose signature is wrong or whose footer is cut: every frame authenticates, so
/// the plaintext was all decrypted before the footer is read. `decrypt` to a file and `unbundle` must
/// still leave nothing: no output, no temp file, no staging directory.
#[test]
fn signed_messages_with_a_bad_signature_or_a_cut_footer_leave_nothing() {
    let s = Scratch::new();
    s.write("pt", &plaintext(300_000));
    make_tree(&s.path("src"));
    let signed = ["--suite", "0x0578", "--frame-length", "4096"];
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &signed, &["pt", "ct"]])), 0);
    expect(s.cmd().args(args(&[&["bundle"], &raw("wrapping.key"), &signed, &["src", "b.esdk"]])), 0);
    let (json, _) = expect(s.cmd().args(["inspect", "--json", "ct"]), 0);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&json).unwrap()["suite"]["signed"], true);
    let work = s.path("work");
    for (input, command, output) in [("ct", "decrypt", "out"), ("b.esdk", "unbundle", "out-dir")] {
        let message = fs::read(s.path(input)).unwrap();
        let mut bad_signature = message.clone();
        let last = bad_signature.len() - 1;
        bad_signature[last] ^= 1; // the signature's last byte
        let cut_footer = message[..message.len() - 20].to_vec();
        for (what, bad, reason) in
            [("a bad signature", bad_signature, "signature"), ("a cut footer", cut_footer, "truncated")]
        {
            fs::create_dir_all(&work).unwrap();
            fs::write(work.join("message"), &bad).unwrap();
            let mut cmd = s.cmd();
            cmd.current_dir(&work).args(args(&[&[command], &raw("../wrapping.key"), &["message", output]]));
            let (_, stderr) = expect(&mut cmd, 1);
            assert!(stderr.to_lowercase().contains(reason), "{command} with {what}: {stderr}");
            assert_eq!(names_in(&work), ["message"], "{command} with {what} left something behind");
            fs::remove_dir_all(&work).unwrap();
        }
        // The same message intact goes through: the failures above are the signature's.
        fs::create_dir_all(&work).unwrap();
        fs::write(work.join("message"), &message).unwrap();
        let mut cmd = s.cmd();
        expect(cmd.current_dir(&work).args(args(&[&[command], &raw("../wrapping.key"), &["message", output]])), 0);
        assert_eq!(names_in(&work), ["message", output]);
        fs::remove_dir_all(&work).unwrap();
    }
}

/// `decrypt` and `unbundle` onto a symlink (to a file, to a directory), with and without `--force`:
/// refused before anything is written, the link and what it points to untouched.
#[cfg(unix)]
#[test]
fn decrypt_and_unbundle_refuse_a_symlinked_output() {
    use std::os::unix::fs::symlink;
    let s = Scratch::new();
    s.write("pt", b"attacker-chosen plaintext");
    make_tree(&s.path("src"));
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "ct"]])), 0);
    expect(s.cmd().args(args(&[&["bundle"], &raw("wrapping.key"), &["src", "b.esdk"]])), 0);
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["-r", "src", "enc"]])), 0);
    s.write("victim", b"precious");
    fs::create_dir(s.path("victim-dir")).unwrap();
    s.write("victim-dir/keep", b"kept");
    symlink("victim", s.path("file-link")).unwrap();
    symlink("victim-dir", s.path("dir-link")).unwrap();
    for force in [&[][..], &["--force"][..]] {
        let (_, stderr) =
            expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), force, &["ct", "file-link"]])), 4);
        assert!(stderr.contains("file-link: is a symbolic link"), "{force:?}: {stderr}");
        let (_, stderr) =
            expect(s.cmd().args(args(&[&["unbundle"], &raw("wrapping.key"), force, &["b.esdk", "dir-link"]])), 4);
        assert!(stderr.contains("dir-link: exists and is not a directory"), "{force:?}: {stderr}");
        let (_, stderr) =
            expect(s.cmd().args(args(&[&["unbundle"], &raw("wrapping.key"), force, &["b.esdk", "file-link"]])), 4);
        assert!(stderr.contains("file-link: exists and is not a directory"), "{force:?}: {stderr}");
        let (_, stderr) = expect_lines(
            s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), force, &["-r", "enc", "dir-link"]])),
            2,
        );
        assert!(stderr.contains("dir-link"), "{force:?}: {stderr}");
    }
    assert_eq!(fs::read(s.path("victim")).unwrap(), b"precious");
    assert_eq!(names_in(&s.path("victim-dir")), ["keep"]);
    for link in ["file-link", "dir-link"] {
        assert!(fs::symlink_metadata(s.path(link)).unwrap().file_type().is_symlink(), "{link} was replaced");
    }
}

/// `--max-frame-length`: a message framed at exactly the limit decrypts, one byte over is refused (exit 1)
/// before any output appears.
#[test]
fn max_frame_length_refuses_one_byte_over_and_accepts_the_limit() {
    let s = Scratch::new();
    s.write("pt", &plaintext(20_000));
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["--frame-length", "4097", "pt", "ct"]])), 0);
    let (_, stderr) = expect(
        s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["--max-frame-length", "4096", "ct", "out"]])),
        1,
    );
    assert!(stderr.contains("4097") && stderr.contains("4096"), "{stderr}");
    assert!(!s.path("out").exists());
    expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["--max-frame-length", "4097", "ct", "out"]])), 0);
    assert_eq!(fs::read(s.path("out")).unwrap(), plaintext(20_000));
}

/// `--recursive` tries every file and exits with the code of the first failure in its (sorted) order, not
/// the last one's or the largest.
#[test]
fn recursive_exits_with_the_first_failures_code() {
    let s = Scratch::new();
    fs::create_dir(s.path("src")).unwrap();
    for name in ["a", "b", "c"] {
        s.write(&format!("src/{name}"), name.as_bytes());
    }
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["-r", "src", "enc"]])), 0);
    let mut tampered = fs::read(s.path("enc/a.encrypted")).unwrap();
    let at = tampered.len() - 3;
    tampered[at] ^= 1;
    expect(s.cmd().args(args(&[&["encrypt"], &raw("other.key"), &["src/a", "other"]])), 0);
    let other_key = fs::read(s.path("other")).unwrap();
    // a: tampered (1), b: good, c: another key (3); then the other way round.
    for (a, c, code) in [(&tampered, &other_key, 1), (&other_key, &tampered, 3)] {
        fs::write(s.path("enc/a.encrypted"), a).unwrap();
        fs::write(s.path("enc/c.encrypted"), c).unwrap();
        let _ = fs::remove_dir_all(s.path("dec"));
        let (_, stderr) =
            expect_lines(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["-r", "enc", "dec"]])), code);
        assert!(stderr.contains("2 of 3 files failed"), "{stderr}");
        assert_eq!(names_in(&s.path("dec")), ["b"], "{stderr}");
    }
}

/// `inspect`'s text form: a key namespace, key name and file name with terminal controls are shown
/// escaped (the context is covered above), exactly as `Escaped` writes them.
#[test]
fn inspect_text_escapes_key_names_and_the_file_name() {
    let s = Scratch::new();
    s.write("pt", b"x");
    let (namespace, name) = ("ns\x1b]0;pwned\x07", "key\u{9b}2J\u{202e}");
    let key = ["--raw-key-file", "wrapping.key", "--key-namespace", namespace, "--key-name", name];
    let file = "ct\x1b[1m";
    expect(s.cmd().args(args(&[&["encrypt"], &key, &["pt", file]])), 0);
    let (out, _) = expect(s.cmd().args(["inspect", file]), 0);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.chars().any(|c| (c != '\n' && c.is_control()) || c == '\u{202e}'), "{text:?}");
    for shown in [
        r#"message:            "ct\u{1b}[1m""#,
        r#"provider "ns\u{1b}]0;pwned\u{7}", raw AES key name "key\u{9b}2J\u{202e}""#,
    ] {
        assert!(text.contains(shown), "{shown:?} not in {text}");
    }
}

/// README, rules for every subcommand: "An existing output is never replaced unless `--force`."; exit status
/// 4: "an output exists without `--force`". `bundle` onto an existing file is refused with exit 4, naming
/// the file and `--force`, and leaves that file byte for byte as it was with nothing new beside it; `--force`
/// replaces it with a bundle that unbundles. A directory as OUTPUT is exit 2 ("a directory as `OUTPUT`"),
/// `--force` or not, and stays empty.
#[test]
fn bundle_onto_an_existing_output_is_refused_without_force() {
    let s = Scratch::new();
    make_tree(&s.path("src"));
    let precious: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    s.write("b.esdk", &precious);
    let before = names_in(s.dir.path());
    let (_, stderr) = expect(s.cmd().args(args(&[&["bundle"], &raw("wrapping.key"), &["src", "b.esdk"]])), 4);
    assert!(stderr.contains("b.esdk: already exists (use --force to replace it)"), "{stderr}");
    assert!(fs::read(s.path("b.esdk")).unwrap() == precious, "the existing file changed");
    assert_eq!(names_in(s.dir.path()), before, "nothing was left beside it");

    expect(s.cmd().args(args(&[&["bundle"], &raw("wrapping.key"), &["--force", "src", "b.esdk"]])), 0);
    expect(s.cmd().args(args(&[&["unbundle"], &raw("wrapping.key"), &["b.esdk", "out"]])), 0);
    assert_eq!(tree(&s.path("out")), tree(&s.path("src")), "--force wrote the bundle");

    fs::create_dir(s.path("outdir")).unwrap();
    for force in [&[][..], &["--force"][..]] {
        let (_, stderr) =
            expect(s.cmd().args(args(&[&["bundle"], &raw("wrapping.key"), force, &["src", "outdir"]])), 2);
        assert!(stderr.contains("outdir: is a directory"), "{force:?}: {stderr}");
        assert!(names_in(&s.path("outdir")).is_empty(), "{force:?}: something was written into it");
    }
}

/// `PROGRAM ARGS` run by `sh` under `umask UMASK` (the umask a child inherits), in the scratch directory.
#[cfg(unix)]
fn under_umask(s: &Scratch, umask: &str, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.current_dir(s.dir.path()).args(["-c", "umask \"$1\" && shift && exec \"$@\"", "sh", umask, program]).args(args);
    cmd
}

/// README, rules for every subcommand: "File outputs are written to a 0600 temp file beside the destination
/// and renamed into place"; and "Decrypted files are 0600". Every file `encrypt` writes (from a file, from
/// stdin, one per file with `--recursive`, over an existing 0644 file with `--force`), `bundle`'s and
/// `decrypt`'s are mode 0600 under umask 022 and under umask 000, where a file created 0666 and left to the
/// umask would be world-writable (the `touch` control shows the umask reached the child).
#[cfg(unix)]
#[test]
fn every_file_output_is_0600_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    const BIN: &str = env!("CARGO_BIN_EXE_kms-envelope");
    let s = Scratch::new();
    make_tree(&s.path("src"));
    s.write("pt", &plaintext(100_000));
    for umask in ["000", "022"] {
        let run = |args: Vec<&str>| {
            let out = under_umask(&s, umask, BIN, &args).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "umask {umask}, {args:?}: {}", stderr_of(&out));
        };
        let old = format!("old-{umask}");
        s.write(&old, b"older");
        fs::set_permissions(s.path(&old), fs::Permissions::from_mode(0o644)).unwrap();
        let (file, piped, tree_out, bundle, plain) = (
            format!("file-{umask}"),
            format!("piped-{umask}"),
            format!("enc-{umask}"),
            format!("b-{umask}"),
            format!("plain-{umask}"),
        );
        run(args(&[&["encrypt"], &raw("wrapping.key"), &["pt", &file]]));
        let out = under_umask(&s, umask, BIN, &args(&[&["encrypt"], &raw("wrapping.key"), &["-", &piped]]))
            .write_stdin(plaintext(70_000))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "umask {umask}, stdin: {}", stderr_of(&out));
        run(args(&[&["encrypt"], &raw("wrapping.key"), &["--recursive", "src", &tree_out]]));
        run(args(&[&["encrypt"], &raw("wrapping.key"), &["--force", "pt", &old]]));
        run(args(&[&["bundle"], &raw("wrapping.key"), &["src", &bundle]]));
        run(args(&[&["decrypt"], &raw("wrapping.key"), &[&file, &plain]]));
        let control = format!("control-{umask}");
        assert!(under_umask(&s, umask, "touch", &[&control]).output().unwrap().status.success());
        let umasked = if umask == "000" { "666" } else { "644" };
        assert_eq!(format!("{:o}", mode(&s.path(&control))), umasked, "the control: umask {umask} reached the child");
        let encrypted_tree: Vec<String> =
            tree(&s.path(&tree_out)).into_iter().map(|(name, _)| format!("{tree_out}/{name}")).collect();
        assert_eq!(encrypted_tree.len(), 4);
        for output in [&file, &piped, &old, &bundle, &plain].into_iter().cloned().chain(encrypted_tree) {
            assert_eq!(format!("{:o}", mode(&s.path(&output))), "600", "umask {umask}: {output}");
        }
    }
}

/// README, Exit status: "a pair the message does not store (one encrypted with `--require-context`, or one
/// it never had) is checked only by the key: a raw AES key binds the whole context to its wrapped data key,
/// so with a wrong pair it fails to unwrap exactly as another key would, exit 3". Through the CLI: the
/// required pair with another value, and a pair the message never had, are exit 3 naming the file and
/// the unwrap failure, with no output and nothing beside it; the right pair decrypts, and a stored key
/// given another value is exit 1 (the contrast the README draws).
#[test]
fn a_wrong_unstored_context_pair_is_exit_3_and_leaves_nothing() {
    let s = Scratch::new();
    s.write("pt", b"tenant data");
    let stored_and_required = ["--context", "app=billing", "--require-context", "tenant=a"];
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &stored_and_required, &["pt", "ct"]])), 0);
    let (json, _) = expect(s.cmd().args(["inspect", "--json", "ct"]), 0);
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["encryption_context"], serde_json::json!({"app": "billing"}), "tenant is not stored");
    let before = names_in(s.dir.path());
    for (what, pairs) in [
        ("the required pair with another value", &["--context", "tenant=b"][..]),
        ("a pair the message never had", &["--context", "tenant=a", "--context", "region=eu"][..]),
    ] {
        let (_, stderr) = expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), pairs, &["ct", "out"]])), 3);
        assert!(stderr.contains("ct: no keyring could decrypt a data key"), "{what}: {stderr}");
        assert_eq!(names_in(s.dir.path()), before, "{what}: an output or a temp file was left");
    }
    let (_, stderr) =
        expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["--context", "app=other", "ct", "out"]])), 1);
    assert!(stderr.contains("ct:") && stderr.contains("\"app\""), "{stderr}");
    assert_eq!(names_in(s.dir.path()), before);
    let (out, _) =
        expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["--context", "tenant=a", "ct", "-"]])), 0);
    assert_eq!(out, b"tenant data");
}

// ------------------------------------------------------------------------------------------ AWS KMS

#[cfg(feature = "kms")]
#[path = "cli_parts/mrk.rs"]
mod mrk;

#[cfg(feature = "kms")]
mod kms {
    use super::*;
    use support::{Moto, account_of};

    /// Runs `kms-envelope ARGS` in `s` against moto, as `expect` does.
    fn expect_with_moto(s: &Scratch, moto: &Moto, args: &[&str], code: i32) -> (Vec<u8>, String) {
        let mut cmd = s.cmd();
        with_moto(&mut cmd, moto);
        expect(cmd.args(args), code)
    }

    fn with_moto(cmd: &mut Command, moto: &Moto) {
        with_kms_endpoint(cmd, &moto.endpoint);
    }

    /// Test credentials, us-east-1, and `endpoint` for KMS in every region.
    pub(super) fn with_kms_endpoint(cmd: &mut Command, endpoint: &str) {
        cmd.env("AWS_ENDPOINT_URL_KMS", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1");
    }

    #[test]
    fn kms_keys_strict_and_discovery() {
        let Some(moto) = Moto::get() else { return };
        let (a, b) = (moto.create_key(), moto.create_key());
        let alias = moto.create_alias(&b);
        let s = Scratch::new();
        s.write("pt", b"deploy secret");
        let run = |args: &[&str], code: i32| expect_with_moto(&s, &moto, args, code);
        // Two KMS keys and a raw key: the first given generates; inspect shows each, without KMS calls.
        run(&args(&[&["encrypt", "--kms-key", &a, "--kms-key", &alias], &raw("wrapping.key"), &["pt", "ct"]]), 0);
        let (json, _) =
            expect(s.cmd().env("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:1").args(["inspect", "--json", "ct"]), 0);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let edks = v["encrypted_data_keys"].as_array().unwrap();
        assert_eq!(edks.len(), 3);
        assert_eq!(edks[0]["key_arn"], a.as_str());
        assert_eq!(edks[1]["key_arn"], b.as_str(), "the alias resolves to its key's ARN");
        assert_eq!(edks[2]["key_name"], NAME);

        // Strict with either key, discovery with and without an account filter, or the raw key alone.
        for keys in [vec!["--kms-key", a.as_str()], vec!["--kms-key", b.as_str()], vec!["--kms-discovery"]] {
            let (out, _) = run(&args(&[&["decrypt"], &keys, &["ct", "-"]]), 0);
            assert_eq!(out, b"deploy secret", "{keys:?}");
        }
        let account = account_of(&a);
        let (out, _) = run(&["decrypt", "--kms-discovery", "--account", &account, "ct", "-"], 0);
        assert_eq!(out, b"deploy secret");
        let (out, _) = expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &["ct", "-"]])), 0);
        assert_eq!(out, b"deploy secret", "the raw key alone needs no KMS");

        // Another account, another key: exit 3, naming the file.
        let (_, stderr) = run(&["decrypt", "--kms-discovery", "--account", "111122223333", "ct", "out"], 3);
        assert!(stderr.contains("ct:") && stderr.contains("111122223333"), "{stderr}");
        let c = moto.create_key();
        let (_, stderr) = run(&["decrypt", "--kms-key", &c, "ct", "out"], 3);
        assert!(stderr.contains("ct: no keyring could decrypt a data key") && stderr.contains(&a), "{stderr}");
        assert!(!s.path("out").exists());

        // A raw key first makes the raw key the generator.
        run(&args(&[&["encrypt"], &raw("wrapping.key"), &["--kms-key", &a, "pt", "ct2"]]), 0);
        let (json, _) = expect(s.cmd().args(["inspect", "--json", "ct2"]), 0);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["encrypted_data_keys"][0]["kind"], "raw-aes");
        assert_eq!(v["encrypted_data_keys"][1]["key_arn"], a.as_str());
    }

    #[test]
    fn kms_failures_exit_3() {
        let Some(moto) = Moto::get() else { return };
        let s = Scratch::new();
        s.write("pt", b"x");
        let mut cmd = s.cmd();
        with_moto(&mut cmd, &moto);
        let missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
        let (_, stderr) = expect(cmd.args(["encrypt", "--kms-key", missing, "pt", "ct"]), 3);
        assert!(stderr.contains(missing), "{stderr}");
        // Nothing listens on port 1: a connection failure is key access too.
        let mut cmd = s.cmd();
        with_moto(&mut cmd, &moto);
        expect(
            cmd.env("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:1").args(["encrypt", "--kms-key", missing, "pt", "ct"]),
            3,
        );
        assert!(!s.path("ct").exists());
        // A malformed key id is a usage error.
        let mut cmd = s.cmd();
        with_moto(&mut cmd, &moto);
        let (_, stderr) = expect(cmd.args(["encrypt", "--kms-key", "arn:aws:kms:nonsense", "pt", "ct"]), 2);
        assert!(stderr.contains("\"arn:aws:kms:nonsense\" is not an AWS KMS ARN"), "{stderr}");
        assert!(!s.path("ct").exists());
    }

    /// What KMS answers, as the CLI's exit code: a local endpoint speaking the KMS JSON protocol answers
    /// `Decrypt` with each error; no credentials at all, and no region, need no endpoint.
    #[test]
    fn kms_errors_credentials_and_region_as_exit_codes() {
        use support::{Reply, StubKms, kms_answer};
        const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let s = Scratch::new();
        s.write("pt", b"x");
        // No stub would hand out credentials or a region: the command must find none in the environment
        // or in a config file either.
        let bare = |endpoint: &str| {
            let mut cmd = s.cmd();
            for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"] {
                cmd.env_remove(var);
            }
            for var in ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"] {
                cmd.env_remove(var);
            }
            cmd.env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
                .env("HOME", s.path("no-home"))
                .env("AWS_CONFIG_FILE", s.path("no-config"))
                .env("AWS_SHARED_CREDENTIALS_FILE", s.path("no-credentials"))
                .env("AWS_ENDPOINT_URL_KMS", endpoint)
                // One attempt: throttling is retried otherwise, with backoff, for nothing this test needs.
                .env("AWS_MAX_ATTEMPTS", "1");
            cmd
        };
        let configured = |endpoint: &str| {
            let mut cmd = bare(endpoint);
            cmd.env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_REGION", "us-east-1");
            cmd
        };
        let good = StubKms::start(|_, operation, body| kms_answer(operation, body));
        expect(configured(&good.url).args(["encrypt", "--kms-key", ARN, "pt", "ct"]), 0);
        let (out, _) = expect(configured(&good.url).args(["decrypt", "--kms-key", ARN, "ct", "-"]), 0);
        assert_eq!(out, b"x", "the stub round-trips, so the failures below are the errors'");

        for (code, message) in [
            ("AccessDeniedException", "User is not authorized to perform kms:Decrypt"),
            ("ThrottlingException", "Rate exceeded"),
        ] {
            let stub = StubKms::start(move |_, _, _| Reply::error(400, code, message));
            let (_, stderr) = expect(configured(&stub.url).args(["decrypt", "--kms-key", ARN, "ct", "out"]), 3);
            assert!(stderr.contains("ct:") && stderr.contains(code), "{code}: {stderr}");
            assert_eq!(stub.requests(), ["Decrypt"], "{code}");
            assert!(!s.path("out").exists());
        }

        // No credentials anywhere: key access (3), before any request.
        let requests = good.requests().len();
        let (_, stderr) =
            expect(bare(&good.url).env("AWS_REGION", "us-east-1").args(["decrypt", "--kms-key", ARN, "ct", "out"]), 3);
        assert!(stderr.to_lowercase().contains("credentials"), "{stderr}");
        // No region anywhere, and a key that names none (an alias): usage (2), one line.
        let (_, stderr) = expect(
            configured(&good.url).env_remove("AWS_REGION").args([
                "encrypt",
                "--kms-key",
                "alias/deploy-secrets",
                "pt",
                "ct2",
            ]),
            2,
        );
        assert!(stderr.to_lowercase().contains("region"), "{stderr}");
        assert!(!s.path("ct2").exists() && !s.path("out").exists());
        assert_eq!(good.requests().len(), requests, "no request without credentials or region");
    }

    /// README, Keys: "`--kms-key ID` | an AWS KMS key: key ARN, key id, alias name or alias ARN". A bare key
    /// id and an alias ARN each encrypt, and the message names the key by its key ARN, as `inspect` shows it
    /// in the README (`AWS KMS key "arn:aws:kms:…:key/…"`); that ARN decrypts it. Decrypt is strict on the
    /// ARN the message names, so the key id or the alias ARN given to `decrypt` is exit 3, saying why and
    /// naming the ARN to give, with no output.
    #[test]
    fn kms_key_as_a_bare_key_id_or_an_alias_arn() {
        let Some(moto) = Moto::get() else { return };
        let arn = moto.create_key();
        let key_id = arn.rsplit('/').next().unwrap().to_owned();
        let alias_arn = format!("arn:aws:kms:us-east-1:{}:{}", account_of(&arn), moto.create_alias(&arn));
        let s = Scratch::new();
        s.write("pt", b"named two ways");
        let run = |args: &[&str], code: i32| expect_with_moto(&s, &moto, args, code);
        for (what, id) in [("key id", &key_id), ("alias ARN", &alias_arn)] {
            run(&["encrypt", "--kms-key", id, "--force", "pt", "ct"], 0);
            let (json, _) = expect(s.cmd().args(["inspect", "--json", "ct"]), 0);
            let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let edks = v["encrypted_data_keys"].as_array().unwrap();
            assert_eq!(edks.len(), 1, "{what}");
            assert_eq!(
                (&edks[0]["provider_id"], &edks[0]["key_arn"]),
                (&"aws-kms".into(), &arn.as_str().into()),
                "{what}"
            );
            let (text, _) = expect(s.cmd().args(["inspect", "ct"]), 0);
            let text = String::from_utf8(text).unwrap();
            assert!(text.contains(&format!("1. provider \"aws-kms\", AWS KMS key \"{arn}\"")), "{what}: {text}");
            let (out, _) = run(&["decrypt", "--kms-key", &arn, "ct", "-"], 0);
            assert_eq!(out, b"named two ways", "{what}");
            let (_, stderr) = run(&["decrypt", "--kms-key", id, "ct", "out"], 3);
            assert!(stderr.contains("strict decrypt needs the key ARN") && stderr.contains(&arn), "{what}: {stderr}");
            assert!(!s.path("out").exists(), "{what}");
        }
    }

    /// README, Keys: "`--account ID` (with `--kms-discovery`) | only keys of these accounts (repeatable);
    /// `--partition` defaults to the region's (`aws`)". The partition is the other half of the discovery
    /// filter: with `--partition aws-cn` a message under an `aws` key is refused before any KMS call (exit 3,
    /// both partitions named, no output), with `--partition aws` it decrypts; without `--partition` the
    /// configured region's partition applies (`aws-cn` for `cn-north-1`), which `--partition aws` overrides.
    /// An unknown partition, or `--partition` without `--account`, is a usage error.
    #[test]
    fn partition_is_the_partition_the_discovery_filter_allows() {
        let Some(moto) = Moto::get() else { return };
        let arn = moto.create_key();
        let account = account_of(&arn);
        let s = Scratch::new();
        s.write("pt", b"partitioned");
        let run = |region: &str, extra: &[&str], output: &str, code: i32| {
            let mut cmd = s.cmd();
            with_moto(&mut cmd, &moto);
            cmd.env("AWS_REGION", region).env("AWS_DEFAULT_REGION", region);
            cmd.args(["decrypt", "--kms-discovery", "--account", &account]).args(extra).args(["ct", output]);
            expect(&mut cmd, code)
        };
        let mut encrypt = s.cmd();
        with_moto(&mut encrypt, &moto);
        expect(encrypt.args(["encrypt", "--kms-key", &arn, "pt", "ct"]), 0);

        let refused = "is in partition aws, the discovery filter allows aws-cn";
        let (_, stderr) = run("us-east-1", &["--partition", "aws-cn"], "out", 3);
        assert!(stderr.contains("ct:") && stderr.contains(refused), "{stderr}");
        let (out, _) = run("us-east-1", &["--partition", "aws"], "-", 0);
        assert_eq!(out, b"partitioned");
        let (out, _) = run("us-east-1", &[], "-", 0);
        assert_eq!(out, b"partitioned", "the default in us-east-1 is aws");
        let (_, stderr) = run("cn-north-1", &[], "out", 3);
        assert!(stderr.contains(refused), "the default in cn-north-1 is aws-cn: {stderr}");
        // Discovery calls the configured region only: the us-east-1 key needs its region named.
        let (out, _) = run("cn-north-1", &["--partition", "aws", "--kms-region", "us-east-1"], "-", 0);
        assert_eq!(out, b"partitioned", "--partition overrides the region's");
        let (_, stderr) = run("us-east-1", &["--partition", "aws-mars"], "out", 2);
        assert!(stderr.contains("\"aws-mars\" is not a known AWS partition"), "{stderr}");
        let mut cmd = s.cmd();
        with_moto(&mut cmd, &moto);
        let (_, stderr) = expect(cmd.args(["decrypt", "--kms-discovery", "--partition", "aws", "ct", "out"]), 2);
        assert!(stderr.contains("--account"), "{stderr}");
        assert!(!s.path("out").exists());
    }

    /// README, Exit status: a pair the message does not store "is checked only by the key ... AWS KMS keys do
    /// the same (KMS refuses the `Decrypt`)". A KMS key (moto, which binds the context to its ciphertext as
    /// KMS does) with the required pair given another value: exit 3 naming the file and KMS's refusal, no
    /// output; the right pair decrypts.
    #[test]
    fn a_wrong_unstored_context_pair_under_a_kms_key_is_exit_3() {
        let Some(moto) = Moto::get() else { return };
        let arn = moto.create_key();
        let s = Scratch::new();
        s.write("pt", b"tenant data");
        let run = |args: &[&str], code: i32| expect_with_moto(&s, &moto, args, code);
        run(&["encrypt", "--kms-key", &arn, "--require-context", "tenant=a", "pt", "ct"], 0);
        let before = names_in(s.dir.path());
        let (_, stderr) = run(&["decrypt", "--kms-key", &arn, "--context", "tenant=b", "ct", "out"], 3);
        assert!(stderr.contains("ct: no keyring could decrypt a data key"), "{stderr}");
        assert!(stderr.contains("InvalidCiphertextException"), "KMS refused the Decrypt: {stderr}");
        assert_eq!(names_in(s.dir.path()), before, "an output or a temp file was left");
        let (out, _) = run(&["decrypt", "--kms-key", &arn, "--context", "tenant=a", "ct", "-"], 0);
        assert_eq!(out, b"tenant data");
    }

    /// README, Keys: "`--kms-rsa-key ARN [--kms-rsa-public-key PEM]` | an AWS KMS RSA key (`ENCRYPT_DECRYPT`):
    /// encrypt locally with its public key (from the PEM, or `GetPublicKey`), decrypt with KMS `Decrypt`;
    /// `--kms-rsa-algorithm RSAES_OAEP_SHA_256` (default) or `RSAES_OAEP_SHA_1`". moto's `Decrypt` cannot
    /// open an RSA ciphertext, so KMS here is a stub holding the private key that does what KMS does: OAEP
    /// with the algorithm the request names. A message encrypted with one algorithm decrypts with that one
    /// only (the other is exit 3, no output); no flag means SHA-256 on both sides; encrypting with the PEM
    /// makes no KMS call; an unknown algorithm is exit 2.
    #[cfg(feature = "rsa")]
    #[test]
    fn kms_rsa_algorithm_decrypts_only_what_it_encrypted() {
        use std::sync::{Arc, Mutex};

        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::KeySize;
        use base64::Engine as _;
        use base64::engine::general_purpose::STANDARD as B64;
        use support::{StubKms, rsa_kms_answer};
        const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/2b5a4c8e-7d1f-4e3a-9c6b-0a1b2c3d4e5f";
        let private = aws_lc_rs::rsa::PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let spki = B64.encode(private.public_key().as_der().unwrap().as_ref());
        let lines: Vec<&str> = spki.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).unwrap()).collect();
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"));
        let asked = Arc::new(Mutex::new(Vec::<String>::new()));
        let asked_in_stub = asked.clone();
        let kms = StubKms::start(move |_, operation, body| {
            let algorithm = body["EncryptionAlgorithm"].as_str().unwrap_or("").to_owned();
            asked_in_stub.lock().unwrap().push(format!("{operation} {algorithm}"));
            rsa_kms_answer(&private, ARN, operation, body)
        });
        let s = Scratch::new();
        s.write("public.pem", pem.as_bytes());
        s.write("pt", b"for the KMS RSA key");
        let run = |args: &[&str], code: i32| {
            let mut cmd = s.cmd();
            cmd.env("AWS_ENDPOINT_URL_KMS", &kms.url)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_MAX_ATTEMPTS", "1");
            expect(cmd.args(args), code)
        };
        let key = ["--kms-rsa-key", ARN];
        run(&args(&[&["encrypt"], &key, &["--kms-rsa-public-key", "public.pem", "pt", "sha256"]]), 0);
        let sha1 = ["--kms-rsa-algorithm", "RSAES_OAEP_SHA_1"];
        run(&args(&[&["encrypt"], &key, &sha1, &["--kms-rsa-public-key", "public.pem", "pt", "sha1"]]), 0);
        assert!(kms.requests().is_empty(), "encrypting with the PEM needs no KMS: {:?}", kms.requests());

        let sha256 = ["--kms-rsa-algorithm", "RSAES_OAEP_SHA_256"];
        for (message, right, wrong) in [("sha256", &sha256[..], &sha1[..]), ("sha1", &sha1[..], &[][..])] {
            let (out, _) = run(&args(&[&["decrypt"], &key, right, &[message, "-"]]), 0);
            assert_eq!(out, b"for the KMS RSA key", "{message} with {right:?}");
            let (_, stderr) = run(&args(&[&["decrypt"], &key, wrong, &[message, "out"]]), 3);
            assert!(stderr.contains(&format!("{message}: no keyring could decrypt a data key")), "{stderr}");
            assert!(stderr.contains("InvalidCiphertextException"), "{message} with {wrong:?}: {stderr}");
            assert!(!s.path("out").exists(), "{message} with {wrong:?}");
        }
        let asked = asked.lock().unwrap().clone();
        let expected = ["RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"];
        assert_eq!(asked, expected.map(|a| format!("Decrypt {a}")), "the algorithm given, or the default, reaches KMS");

        let (_, stderr) = run(
            &args(&[
                &["encrypt"],
                &key,
                &["--kms-rsa-algorithm", "RSAES_OAEP_SHA_512"],
                &["--kms-rsa-public-key", "public.pem", "pt", "x"],
            ]),
            2,
        );
        assert!(stderr.contains("expected RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1"), "{stderr}");
        assert!(!s.path("x").exists());
    }
}

/// `--version` names the AES-GCM backend: AWS-LC wherever the build links it anyway (kms, rsa), RustCrypto in
/// a raw-key-only build.
#[test]
fn version_names_the_aes_gcm_backend() {
    let out = Command::cargo_bin("kms-envelope").unwrap().arg("--version").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    // Not cfg!(feature = "aws-lc") alone: a kms build must have it whatever Cargo.toml says today.
    let links_aws_lc = cfg!(feature = "kms") || cfg!(feature = "rsa") || cfg!(feature = "aws-lc");
    let expected = if links_aws_lc { "aws-lc-rs" } else { "aes-gcm (RustCrypto)" };
    assert!(text.starts_with("kms-envelope ") && text.contains(&format!("(AES-GCM: {expected}")), "{text}");
}

/// `--no-fsync` writes the same verified output (durability is what it trades, which a test cannot see).
#[test]
fn no_fsync_writes_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, [9u8; 32]).unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, vec![5u8; 300_000]).unwrap();
    let keys = ["--raw-key-file", key.to_str().unwrap(), "--key-namespace", "n", "--key-name", "k"];
    let run = |args: &[&str]| {
        let out = Command::cargo_bin("kms-envelope").unwrap().args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let message = dir.path().join("m");
    let back = dir.path().join("back");
    run(&[&["encrypt", "--no-fsync"][..], &keys, &[input.to_str().unwrap(), message.to_str().unwrap()]].concat());
    run(&[&["decrypt", "--no-fsync"][..], &keys, &[message.to_str().unwrap(), back.to_str().unwrap()]].concat());
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&input).unwrap());
}

/// A build without `kms`, `rsa` or `s3` (the raw-key-only CLI) neither offers their options and `s3://`
/// paths in --help nor takes them for something else: each is refused (exit 2) naming the feature it needs
/// and the install command that brings it. A build with them lists them (the control).
#[test]
fn options_of_features_left_out_are_not_offered_and_say_how_to_get_them() {
    let s = Scratch::new();
    s.write("pt", b"x");
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "ct"]])), 0);
    let help_of = |sub: &str| {
        let out = s.cmd().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let helps: Vec<String> = ["encrypt", "decrypt", "inspect", "bundle", "unbundle"].map(help_of).to_vec();
    let all = helps.concat();
    let features: [(bool, &str, &[&str]); 3] = [
        (cfg!(feature = "kms"), "kms", &["--kms-key", "--kms-discovery", "--kms-rsa-key", "AWS_REGION"]),
        (cfg!(feature = "rsa"), "rsa", &["--rsa-private-key", "--rsa-padding"]),
        (cfg!(feature = "s3"), "s3", &["s3://"]),
    ];
    for (built, _, words) in features {
        for word in words {
            assert_eq!(all.contains(word), built, "{word:?} in --help, built {built}:\n{all}");
        }
    }
    let uses: [(bool, &str, Vec<&str>); 5] = [
        (cfg!(feature = "kms"), "kms", args(&[&["encrypt", "--kms-key", "alias/x"], &["pt", "-"]])),
        (cfg!(feature = "kms"), "kms", args(&[&["decrypt", "--kms-discovery"], &["ct", "out"]])),
        (cfg!(feature = "rsa"), "rsa", args(&[&["decrypt", "--rsa-private-key", "wrapping.key"], &["ct", "out"]])),
        (cfg!(feature = "s3"), "s3", args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "s3://bucket/key"]])),
        (cfg!(feature = "s3"), "s3", args(&[&["decrypt"], &raw("wrapping.key"), &["s3://bucket/key", "out"]])),
    ];
    for (built, feature, case) in uses {
        if built {
            continue;
        }
        let (_, stderr) = expect(s.cmd().args(&case), 2);
        assert!(stderr.contains(&format!("built without the `{feature}` feature")), "{case:?}: {stderr}");
        assert!(stderr.contains("cargo install --path . --locked"), "{case:?}: the install command: {stderr}");
        assert!(!s.path("out").exists());
    }
}

/// `inspect` refuses stdout that is the message it reads (`inspect m >> m`), as encrypt and decrypt do:
/// the header text would be appended to the message, which then fails to decrypt.
#[cfg(unix)]
#[test]
fn inspect_refuses_stdout_that_is_its_input() {
    let s = Scratch::new();
    s.write("pt", b"inspect me");
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "ct"]])), 0);
    let message = fs::read(s.path("ct")).unwrap();
    for (from_stdin, append) in [(false, true), (false, false), (true, true)] {
        let what = format!("stdin {from_stdin}, append {append}");
        let out = fs::OpenOptions::new().read(true).write(!append).append(append).open(s.path("ct")).unwrap();
        let mut cmd = process(&s, &["inspect", if from_stdin { "-" } else { "ct" }]);
        if from_stdin {
            cmd.stdin(fs::File::open(s.path("ct")).unwrap());
        }
        let run = cmd.stdout(out).output().unwrap();
        let stderr = stderr_of(&run);
        assert_eq!(run.status.code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains("stdout is the input file"), "{what}: {stderr}");
        assert!(fs::read(s.path("ct")).unwrap() == message, "{what}: the message changed");
    }
    // Another file as stdout: the header is printed (the control).
    let run = process(&s, &["inspect", "ct"]).stdout(fs::File::create(s.path("header.txt")).unwrap()).output().unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    assert!(fs::read_to_string(s.path("header.txt")).unwrap().contains("algorithm suite"));
}

/// A key file named as OUTPUT is refused with exit 2 even with `--force`, through any name (a hard link
/// too), by encrypt, decrypt and bundle: writing a message or plaintext over a wrapping key destroys it.
#[test]
fn a_key_file_is_never_an_output_even_with_force() {
    let s = Scratch::new();
    s.write("pt", b"payload");
    fs::create_dir(s.path("dir")).unwrap();
    s.write("dir/a", b"a");
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "ct"]])), 0);
    fs::hard_link(s.path("wrapping.key"), s.path("alias.key")).unwrap();
    let key = fs::read(s.path("wrapping.key")).unwrap();
    for output in ["wrapping.key", "alias.key"] {
        for command in [
            args(&[&["encrypt", "--force"], &raw("wrapping.key"), &["pt", output]]),
            args(&[&["decrypt", "--force"], &raw("wrapping.key"), &["ct", output]]),
            args(&[&["bundle", "--force"], &raw("wrapping.key"), &["dir", output]]),
        ] {
            let (_, stderr) = expect(s.cmd().args(&command), 2);
            assert!(stderr.contains("is the key file"), "{command:?}: {stderr}");
            assert_eq!(fs::read(s.path("wrapping.key")).unwrap(), key, "{command:?} changed the key");
        }
    }
}

/// README, S3: "Key files and `DIRECTORY` are local paths: an `s3://` name there is refused, never taken for
/// a relative path `s3:/...`" (exit 2, before any file is read), in every build. It broke before: the
/// name was opened as the local path `s3:/b/...` (a missing key file; a bundle of, or unbundle into, it).
#[test]
fn s3_names_where_only_local_paths_go_are_refused_by_name() {
    let s = Scratch::new();
    make_tree(&s.path("src"));
    s.write("pt", b"x");
    let new_raw = ["--new-raw-key-file", "s3://b/new.key", "--new-key-namespace", NS, "--new-key-name", NAME];
    let cases: [(Vec<&str>, &str); 5] = [
        (args(&[&["bundle"], &raw("wrapping.key"), &["s3://b/dir", "out.b"]]), "DIRECTORY s3://b/dir"),
        (args(&[&["unbundle"], &raw("wrapping.key"), &["in.b", "s3://b/dir"]]), "DIRECTORY s3://b/dir"),
        (args(&[&["encrypt"], &raw("s3://b/wrapping.key"), &["pt", "ct"]]), "--raw-key-file s3://b/wrapping.key"),
        (args(&[&["decrypt"], &raw("s3://b/wrapping.key"), &["ct", "out"]]), "--raw-key-file s3://b/wrapping.key"),
        (args(&[&["reencrypt"], &raw("wrapping.key"), &new_raw, &["ct", "out"]]), "--new-raw-key-file s3://b/new.key"),
    ];
    for (case, named) in cases {
        let (_, stderr) = expect(s.cmd().args(&case), 2);
        assert!(stderr.contains(&format!("{named}: must be a local path")), "{case:?}: {stderr}");
    }
    assert!(!s.path("s3:").exists() && !s.path("out.b").exists() && !s.path("ct").exists());
}

/// README, S3, "What `s3://BUCKET/KEY` may hold": an access-point ARN in the bucket position, and a key (or
/// `-r` prefix) typed with a `.`, `..` or empty segment or a trailing `/`, are refused (exit 2) before any
/// request. The endpoint is a closed port, so a request would have failed with exit 4: it broke before,
/// when each was sent as it was (the ARN cut at its `/`, `a/../k` a key of its own).
#[cfg(feature = "s3")]
#[test]
fn s3_names_the_cli_does_not_support_are_refused_before_any_request() {
    let s = Scratch::new();
    s.write("pt", b"x");
    make_tree(&s.path("src"));
    let arn = "s3://arn:aws:s3:us-east-1:123456789012:accesspoint/ap/key";
    let new_raw = ["--new-raw-key-file", "other.key", "--new-key-namespace", NS, "--new-key-name", NAME];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (args(&[&["encrypt"], &raw("wrapping.key"), &["pt", arn]]), "access-point ARN"),
        (args(&[&["decrypt"], &raw("wrapping.key"), &[arn, "out"]]), "access-point ARN"),
        (
            args(&[
                &["reencrypt"],
                &raw("wrapping.key"),
                &new_raw,
                &["-r", "s3://arn:aws:s3:us-east-1:1:accesspoint/ap/p/", "s3://b/q/"],
            ]),
            "access-point ARN",
        ),
        (args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "s3://b/logs/../k"]]), ". or .. segment"),
        (args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "s3://b/./k"]]), ". or .. segment"),
        (args(&[&["decrypt"], &raw("wrapping.key"), &["s3://b/a/..", "out"]]), ". or .. segment"),
        (args(&[&["inspect"], &["s3://b/a//k"]]), "empty segment"),
        (args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "s3://b//k"]]), "empty segment"),
        (args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "s3://b/dir/"]]), "ends in /"),
        (args(&[&["bundle"], &raw("wrapping.key"), &["src", "s3://b/x/../y"]]), ". or .. segment"),
        (args(&[&["unbundle"], &raw("wrapping.key"), &["s3://b/x//y", "out"]]), "empty segment"),
        (args(&[&["reencrypt"], &raw("wrapping.key"), &new_raw, &["s3://b/k", "s3://b/../k"]]), ". or .. segment"),
        (
            args(&[&["reencrypt"], &raw("wrapping.key"), &new_raw, &["-r", "s3://b/p/../", "s3://b/q/"]]),
            ". or .. segment",
        ),
        (args(&[&["reencrypt"], &raw("wrapping.key"), &new_raw, &["-r", "s3://b/p//", "s3://b/q/"]]), "empty segment"),
    ];
    for (case, why) in cases {
        let mut cmd = s.cmd();
        cmd.env("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9").env("AWS_MAX_ATTEMPTS", "1");
        cmd.env("AWS_ACCESS_KEY_ID", "testing").env("AWS_SECRET_ACCESS_KEY", "testing").env("AWS_REGION", "us-east-1");
        let (_, stderr) = expect(cmd.args(&case), 2);
        assert!(stderr.contains(why), "{case:?}: {stderr}");
    }
    assert!(!s.path("s3:").exists() && !s.path("out").exists());
}

/// An S3 failure is one line: the SDK's chain of messages, never the `Debug` dump of its error structure
/// that `DisplayErrorContext` appends (`DispatchFailure(DispatchFailure { source: ConnectorError { ...`).
/// It broke before: each of these lines carried that dump.
#[cfg(feature = "s3")]
#[test]
fn an_unreachable_s3_endpoint_is_one_line_without_the_sdk_debug_dump() {
    let s = Scratch::new();
    s.write("pt", b"x");
    for case in [
        args(&[&["encrypt"], &raw("wrapping.key"), &["pt", "s3://b/k"]]),
        args(&[&["decrypt"], &raw("wrapping.key"), &["s3://b/k", "out"]]),
        args(&[&["inspect"], &["s3://b/k"]]),
    ] {
        let mut cmd = s.cmd();
        cmd.env("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9").env("AWS_MAX_ATTEMPTS", "1");
        cmd.env("AWS_ACCESS_KEY_ID", "testing").env("AWS_SECRET_ACCESS_KEY", "testing").env("AWS_REGION", "us-east-1");
        let (_, stderr) = expect(cmd.args(&case), 4);
        assert!(stderr.contains("Connection refused"), "{case:?}: {stderr}");
        assert!(!stderr.contains("DispatchFailure") && !stderr.contains(" { "), "{case:?}: {stderr}");
    }
}

/// `--s3-part-size` and `--s3-concurrency` on every subcommand that moves S3 objects: a size outside S3's
/// part limits, a malformed one or a concurrency out of 1..=64 is a usage error (exit 2) that says the
/// limits, before any key or file is touched; `--help` states the library's defaults.
#[cfg(feature = "s3")]
#[test]
fn s3_transfer_flags_are_validated_and_their_help_states_the_defaults() {
    use kms_envelope::s3::{DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE};
    let s = Scratch::new();
    let commands: [&[&str]; 5] = [
        &["encrypt", "pt", "s3://b/k"],
        &["decrypt", "s3://b/k", "out"],
        &["reencrypt", "s3://b/k", "s3://b/k2"],
        &["bundle", "dir", "s3://b/k"],
        &["unbundle", "s3://b/k", "dir"],
    ];
    for command in commands {
        for (flag, value, says) in [
            ("--s3-part-size", "4MiB", "5MiB to 5GiB"),
            ("--s3-part-size", "6GiB", "5MiB to 5GiB"),
            ("--s3-part-size", "8 parts", "16MiB, 8M or 8388608"),
            ("--s3-part-size", "8TiB", "16MiB, 8M or 8388608"),
            ("--s3-concurrency", "0", "from 1 to 64"),
            ("--s3-concurrency", "65", "from 1 to 64"),
            ("--s3-concurrency", "many", "from 1 to 64"),
        ] {
            let what = format!("{command:?} {flag} {value}");
            let run = s.cmd().args(command).args(raw("wrapping.key")).args([flag, value]).output().unwrap();
            let stderr = stderr_of(&run);
            assert_eq!(run.status.code(), Some(2), "{what}: {stderr}");
            assert!(stderr.contains(flag) && stderr.contains(says), "{what}: {stderr}");
        }
        let help = s.cmd().args([command[0], "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
        let part = format!("[default: {}MiB", DEFAULT_PART_SIZE >> 20);
        let concurrency = format!("[default: {DEFAULT_CONCURRENCY}]");
        assert!(help.contains(&part) && help.contains(&concurrency), "{command:?} --help: {help}");
    }
}
