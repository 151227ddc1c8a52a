//! `kms-envelope edit`, with scripted editors (small sh scripts given as EDITOR): each records the path it
//! was given, so every test can check that the plaintext's directory is gone afterwards.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Scratch, args, expect, raw};

/// A directory on a memory filesystem for the plaintext (given as XDG_RUNTIME_DIR), or the flags that let
/// edit use the scratch directory's `tmp` where this machine has none (`/dev/shm` not a tmpfs).
struct Place {
    runtime: Option<tempfile::TempDir>,
}

impl Place {
    fn new() -> Self {
        let tmpfs = std::process::Command::new("stat")
            .args(["-f", "-c", "%T", "/dev/shm"])
            .output()
            .is_ok_and(|out| out.stdout.starts_with(b"tmpfs") || out.stdout.starts_with(b"ramfs"));
        Self { runtime: tmpfs.then(|| tempfile::tempdir_in("/dev/shm").unwrap()) }
    }
}

/// An editor script at `name` in the scratch directory: it appends the path it was given to `editor-saw`,
/// then runs `body` (with the path in "$1").
fn editor(s: &Scratch, name: &str, body: &str) -> PathBuf {
    let path = s.path(name);
    let saw = s.path("editor-saw");
    fs::write(&path, format!("#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n{body}\n", saw.display())).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

/// `kms-envelope edit` with `editor` as EDITOR (VISUAL unset), the plaintext placed as `place` says.
fn edit(s: &Scratch, place: &Place, editor: &Path) -> assert_cmd::Command {
    let mut cmd = s.cmd();
    cmd.arg("edit").env("EDITOR", editor).env_remove("VISUAL").env("TMPDIR", s.path("tmp"));
    fs::create_dir_all(s.path("tmp")).unwrap();
    match &place.runtime {
        Some(dir) => cmd.env("XDG_RUNTIME_DIR", dir.path()),
        None => cmd.arg("--allow-disk"),
    };
    cmd
}

/// The paths the editor was given, each checked gone with its directory (and nothing left in the
/// runtime directory).
fn assert_plaintext_gone(s: &Scratch, place: &Place) -> Vec<PathBuf> {
    let saw: Vec<PathBuf> =
        fs::read_to_string(s.path("editor-saw")).unwrap_or_default().lines().map(PathBuf::from).collect();
    for path in &saw {
        let dir = path.parent().unwrap();
        assert!(!dir.exists(), "the plaintext directory {} is still there", dir.display());
    }
    if let Some(runtime) = &place.runtime {
        assert_eq!(fs::read_dir(runtime.path()).unwrap().count(), 0, "left in the runtime directory");
    }
    saw
}

fn header(path: &Path) -> kms_envelope::Header {
    let message = fs::read(path).unwrap();
    kms_envelope::Header::read_from(Default::default(), &mut &message[..]).unwrap()
}

fn decrypted(s: &Scratch, file: &str) -> Vec<u8> {
    expect(s.cmd().args(args(&[&["decrypt"], &raw("wrapping.key"), &[file, "-"]])), 0).0
}

/// `text` encrypted into `file` with the raw key, context purpose=test and 512-byte frames, plus `extra`.
fn encrypted(s: &Scratch, file: &str, text: &[u8], extra: &[&str]) {
    s.write("plain", text);
    let flags = ["--context", "purpose=test", "--frame-length", "512"];
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &flags, extra, &["plain", file]])), 0);
    fs::remove_file(s.path("plain")).unwrap();
}

#[test]
fn a_change_is_encrypted_again_with_the_same_context_suite_and_frames_and_a_fresh_message_id() {
    let (s, place) = (Scratch::new(), Place::new());
    encrypted(&s, "notes.enc", b"old secret\n", &[]);
    let before = header(&s.path("notes.enc"));
    let ed = editor(&s, "ed.sh", "printf 'new secret\\n' > \"$1\"");
    let (stdout, stderr) = expect(edit(&s, &place, &ed).args(args(&[&raw("wrapping.key"), &["notes.enc"]])), 0);
    assert!(stdout.is_empty() && stderr.contains("notes.enc: re-encrypted"), "{stderr}");
    assert_eq!(decrypted(&s, "notes.enc"), b"new secret\n");
    let after = header(&s.path("notes.enc"));
    assert_eq!(after.encryption_context().get("purpose"), Some("test"));
    assert_eq!(after.encryption_context().len(), before.encryption_context().len());
    assert_eq!((after.suite(), after.frame_length()), (before.suite(), 512));
    assert_ne!(after.message_id(), before.message_id());
    #[cfg(unix)]
    assert_eq!(super::mode(&s.path("notes.enc")), 0o600);
    let saw = assert_plaintext_gone(&s, &place);
    assert_eq!(saw.len(), 1);
    // The editor was given the name without .enc, in a directory of its own.
    assert_eq!(saw[0].file_name().unwrap(), "notes");
    if let Some(runtime) = &place.runtime {
        assert_eq!(saw[0].parent().unwrap().parent().unwrap(), runtime.path());
    }
}

#[test]
fn unchanged_text_rewrites_nothing() {
    let (s, place) = (Scratch::new(), Place::new());
    encrypted(&s, "notes.enc", b"same\n", &[]);
    let (bytes, modified) =
        (fs::read(s.path("notes.enc")).unwrap(), fs::metadata(s.path("notes.enc")).unwrap().modified().unwrap());
    // Read and written back as it was: the same bytes under a new inode, as an editor's plain save makes.
    let ed = editor(&s, "ed.sh", "cat \"$1\" > \"$1.new\" && mv \"$1.new\" \"$1\"");
    let (_, stderr) = expect(edit(&s, &place, &ed).args(args(&[&raw("wrapping.key"), &["notes.enc"]])), 0);
    assert!(stderr.contains("unchanged; left as it was"), "{stderr}");
    assert_eq!(fs::read(s.path("notes.enc")).unwrap(), bytes);
    assert_eq!(fs::metadata(s.path("notes.enc")).unwrap().modified().unwrap(), modified);
    assert_eq!(assert_plaintext_gone(&s, &place).len(), 1);
}

#[test]
fn an_editor_that_saves_by_rename_is_read_back_by_path() {
    let (s, place) = (Scratch::new(), Place::new());
    encrypted(&s, "notes.enc", b"first\n", &[]);
    let ed = editor(&s, "ed.sh", "printf 'renamed in\\n' > \"$1.swp\" && mv \"$1.swp\" \"$1\"");
    expect(edit(&s, &place, &ed).args(args(&[&raw("wrapping.key"), &["notes.enc"]])), 0);
    assert_eq!(decrypted(&s, "notes.enc"), b"renamed in\n");
    assert_plaintext_gone(&s, &place);
}

#[test]
fn an_editor_that_fails_or_is_killed_leaves_the_message_as_it_was() {
    for (body, said) in [
        ("printf 'half done\\n' > \"$1\"; exit 1", "exited with status 1"),
        ("printf 'half done\\n' > \"$1\"; kill -9 $$", "was killed by a signal"),
    ] {
        let (s, place) = (Scratch::new(), Place::new());
        encrypted(&s, "notes.enc", b"kept\n", &[]);
        let bytes = fs::read(s.path("notes.enc")).unwrap();
        let ed = editor(&s, "ed.sh", body);
        let (_, stderr) = expect(edit(&s, &place, &ed).args(args(&[&raw("wrapping.key"), &["notes.enc"]])), 4);
        assert!(stderr.contains(said) && stderr.contains("notes.enc left as it was"), "{stderr}");
        assert!(!stderr.contains("half done"), "{stderr}");
        assert_eq!(fs::read(s.path("notes.enc")).unwrap(), bytes);
        assert_eq!(assert_plaintext_gone(&s, &place).len(), 1);
    }
}

#[test]
fn a_secrets_message_edited_into_invalid_json_is_refused_without_a_terminal() {
    let (s, place) = (Scratch::new(), Place::new());
    encrypted(&s, "secrets.json.enc", br#"{"DB_PASSWORD": "hunter2-old-marker"}"#, &[]);
    let bytes = fs::read(s.path("secrets.json.enc")).unwrap();
    let ed = editor(&s, "ed.sh", "printf '{\"DB_PASSWORD\": \"hunter2-new-marker\",}' > \"$1\"");
    let (_, stderr) = expect(edit(&s, &place, &ed).args(args(&[&raw("wrapping.key"), &["secrets.json.enc"]])), 1);
    assert!(stderr.contains("not a JSON object of strings") && stderr.contains("left as it was"), "{stderr}");
    assert!(!stderr.contains("hunter2") && !stderr.contains("DB_PASSWORD"), "{stderr}");
    assert_eq!(fs::read(s.path("secrets.json.enc")).unwrap(), bytes);
    // Once, not again: stdin is no terminal.
    assert_eq!(
        assert_plaintext_gone(&s, &place),
        [PathBuf::from(fs::read_to_string(s.path("editor-saw")).unwrap().trim_end())]
    );
    assert!(fs::read_to_string(s.path("editor-saw")).unwrap().ends_with("/secrets.json\n"));

    // Valid JSON of strings is written; a message that was no JSON to start with is not checked.
    let ed = editor(&s, "ok.sh", "printf '{\"DB_PASSWORD\": \"new\"}' > \"$1\"");
    expect(edit(&s, &place, &ed).args(args(&[&raw("wrapping.key"), &["secrets.json.enc"]])), 0);
    assert_eq!(decrypted(&s, "secrets.json.enc"), br#"{"DB_PASSWORD": "new"}"#);
    encrypted(&s, "notes.enc", b"plain text\n", &[]);
    let ed = editor(&s, "brace.sh", "printf '{not json' > \"$1\"");
    expect(edit(&s, &place, &ed).args(args(&[&raw("wrapping.key"), &["notes.enc"]])), 0);
    assert_eq!(decrypted(&s, "notes.enc"), b"{not json");
    assert_plaintext_gone(&s, &place);
}

#[test]
fn keys_that_would_drop_a_data_key_are_refused_before_the_editor_opens_unless_drop_key() {
    let (s, place) = (Scratch::new(), Place::new());
    let second = ["--raw-key-file", "other.key", "--key-namespace", super::NS, "--key-name", "key-2"];
    encrypted(&s, "notes.enc", b"two keys\n", &second);
    let bytes = fs::read(s.path("notes.enc")).unwrap();
    let ed = editor(&s, "ed.sh", "printf 'one key\\n' > \"$1\"");
    let (_, stderr) = expect(edit(&s, &place, &ed).args(args(&[&raw("wrapping.key"), &["notes.enc"]])), 2);
    assert!(stderr.contains("\"key-2\"") && stderr.contains("--drop-key"), "{stderr}");
    assert!(!s.path("editor-saw").exists(), "the editor ran");
    assert_eq!(fs::read(s.path("notes.enc")).unwrap(), bytes);

    // Both keys given: both kept.
    let both = args(&[&raw("wrapping.key"), &second, &["notes.enc"]]);
    expect(edit(&s, &place, &ed).args(&both), 0);
    assert_eq!(header(&s.path("notes.enc")).encrypted_data_keys().len(), 2);
    // --drop-key: the other key no longer opens it.
    let ed = editor(&s, "ed2.sh", "printf 'dropped\\n' > \"$1\"");
    expect(edit(&s, &place, &ed).args(args(&[&raw("wrapping.key"), &["--drop-key", "notes.enc"]])), 0);
    assert_eq!(header(&s.path("notes.enc")).encrypted_data_keys().len(), 1);
    assert_eq!(decrypted(&s, "notes.enc"), b"dropped\n");
    let other = ["--raw-key-file", "other.key", "--key-namespace", super::NS, "--key-name", "key-2"];
    expect(s.cmd().args(args(&[&["decrypt"], &other, &["notes.enc", "-"]])), 3);
    assert_plaintext_gone(&s, &place);
}

#[cfg(feature = "kms")]
#[test]
fn a_discovery_only_key_set_is_refused_before_the_editor_opens() {
    let (s, place) = (Scratch::new(), Place::new());
    encrypted(&s, "notes.enc", b"text\n", &[]);
    let ed = editor(&s, "ed.sh", "printf 'x' > \"$1\"");
    let (_, stderr) = expect(edit(&s, &place, &ed).args(["--kms-discovery", "notes.enc"]), 2);
    assert!(stderr.contains("--kms-discovery only unwraps"), "{stderr}");
    assert!(!s.path("editor-saw").exists(), "the editor ran");
}

#[test]
fn legacy_messages_are_upgraded_to_the_committing_suite_of_their_kind() {
    for (legacy, upgraded) in [("0x0178", 0x0478), ("0x0378", 0x0578)] {
        let (s, place) = (Scratch::new(), Place::new());
        let flags = ["--suite", legacy, "--commitment-policy", "forbid-encrypt-allow-decrypt"];
        encrypted(&s, "old.enc", b"legacy\n", &flags);
        let old_key = header(&s.path("old.enc")).encryption_context().get("aws-crypto-public-key").map(str::to_owned);
        let ed = editor(&s, "ed.sh", "printf 'upgraded\\n' > \"$1\"");
        let mut cmd = edit(&s, &place, &ed);
        // Refused by default, as reencrypt does: a legacy message is read only when asked.
        expect(cmd.args(args(&[&raw("wrapping.key"), &["old.enc"]])), 1);
        let mut cmd = edit(&s, &place, &ed);
        let policy = ["--commitment-policy", "require-encrypt-allow-decrypt"];
        expect(cmd.args(args(&[&raw("wrapping.key"), &policy, &["old.enc"]])), 0);
        let after = header(&s.path("old.enc"));
        assert_eq!(after.suite().id(), upgraded);
        assert_eq!(after.encryption_context().get("purpose"), Some("test"));
        // A signed message gets its own verification key, not the old one.
        let new_key = after.encryption_context().get("aws-crypto-public-key").map(str::to_owned);
        assert_eq!(new_key.is_some(), old_key.is_some());
        assert!(old_key.is_none() || new_key != old_key);
        assert_eq!(decrypted(&s, "old.enc"), b"upgraded\n");
        assert_plaintext_gone(&s, &place);
    }
}

#[test]
fn vim_is_run_without_swap_backup_undo_or_viminfo_files() {
    let (s, place) = (Scratch::new(), Place::new());
    encrypted(&s, "notes.enc", b"text\n", &[]);
    let bin = s.path("bin");
    fs::create_dir(&bin).unwrap();
    // A `vim` on PATH that records its arguments and edits its last one.
    let fake = editor(
        &s,
        "bin/vim",
        "printf '%s\\n' \"$@\" > \"$(dirname \"$0\")/../vim-args\"; for last; do :; done; printf 'by vim\\n' > \"$last\"",
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = edit(&s, &place, &fake);
    cmd.env("EDITOR", "vim").env("PATH", path);
    expect(cmd.args(args(&[&raw("wrapping.key"), &["notes.enc"]])), 0);
    let seen = fs::read_to_string(s.path("vim-args")).unwrap();
    let seen: Vec<&str> = seen.lines().collect();
    assert_eq!(seen[..5], ["-n", "-i", "NONE", "-c", "set nobackup nowritebackup noundofile noswapfile viminfo="]);
    assert_eq!(decrypted(&s, "notes.enc"), b"by vim\n");
    assert_plaintext_gone(&s, &place);
}

#[test]
fn allow_disk_edits_where_no_memory_filesystem_is_required() {
    let s = Scratch::new();
    encrypted(&s, "notes.enc", b"text\n", &[]);
    let ed = editor(&s, "ed.sh", "printf 'on disk ok\\n' > \"$1\"");
    let mut cmd = edit(&s, &Place { runtime: None }, &ed);
    expect(cmd.args(args(&[&raw("wrapping.key"), &["notes.enc"]])), 0);
    assert_eq!(decrypted(&s, "notes.enc"), b"on disk ok\n");
    assert_eq!(assert_plaintext_gone(&s, &Place { runtime: None }).len(), 1);
}

/// SIGTERM while the editor runs: passed on to the editor, the plaintext wiped, the message untouched, and
/// the exit status of a process killed by SIGTERM.
#[cfg(unix)]
#[test]
fn sigterm_while_the_editor_runs_wipes_the_plaintext_and_leaves_the_message() {
    let (s, place) = (Scratch::new(), Place::new());
    encrypted(&s, "notes.enc", b"kept\n", &[]);
    let bytes = fs::read(s.path("notes.enc")).unwrap();
    let ed = editor(&s, "ed.sh", "printf 'unsaved\\n' > \"$1\"; exec sleep 60");
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("kms-envelope"));
    cmd.current_dir(s.path("")).arg("edit").args(raw("wrapping.key")).arg("notes.enc");
    cmd.env("EDITOR", &ed).env_remove("VISUAL").env("TMPDIR", s.path("tmp"));
    fs::create_dir_all(s.path("tmp")).unwrap();
    match &place.runtime {
        Some(dir) => cmd.env("XDG_RUNTIME_DIR", dir.path()),
        None => cmd.arg("--allow-disk"),
    };
    let child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Waits (without a time limit the test depends on) until the editor has started.
    while !s.path("editor-saw").exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 15), "{stderr}");
    assert!(!stderr.contains("unsaved"), "{stderr}");
    assert_eq!(fs::read(s.path("notes.enc")).unwrap(), bytes);
    assert_plaintext_gone(&s, &place);
}

/// An S3 bucket in moto for the `s3://` tests, and a runtime for the test's own requests.
#[cfg(feature = "s3")]
struct Bucket {
    moto: super::support::Moto,
    name: String,
    runtime: tokio::runtime::Runtime,
}

#[cfg(feature = "s3")]
impl Bucket {
    fn new(test: &str) -> Option<Self> {
        let moto = super::support::Moto::get()?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("edit-{test}-{}-{unique}", std::process::id());
        let bucket = Self { moto, name, runtime };
        bucket.runtime.block_on(bucket.client().create_bucket().bucket(&bucket.name).send()).expect("CreateBucket");
        Some(bucket)
    }

    fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.moto.config()).force_path_style(true).build();
        aws_sdk_s3::Client::from_conf(config)
    }

    fn put(&self, key: &str, body: Vec<u8>) {
        let put = self.client().put_object().bucket(&self.name).key(key).content_type("text/x-notes").body(body.into());
        self.runtime.block_on(put.send()).expect("PutObject");
    }

    fn get(&self, key: &str) -> (Vec<u8>, Option<String>) {
        let got = self.runtime.block_on(self.client().get_object().bucket(&self.name).key(key).send()).unwrap();
        let content_type = got.content_type().map(str::to_owned);
        (self.runtime.block_on(got.body.collect()).unwrap().into_bytes().to_vec(), content_type)
    }

    /// `edit` against this moto.
    fn edit(&self, s: &Scratch, place: &Place, editor: &Path) -> assert_cmd::Command {
        let mut cmd = edit(s, place, editor);
        cmd.env("AWS_ENDPOINT_URL_S3", &self.moto.endpoint).env("AWS_ACCESS_KEY_ID", "testing");
        cmd.env("AWS_SECRET_ACCESS_KEY", "testing").env("AWS_REGION", super::support::REGION);
        cmd
    }
}

/// `edit s3://...`: the object replaced (its content type kept), or, when another writer replaced it while
/// the editor ran, left as that writer made it (If-Match on the ETag read).
#[cfg(feature = "s3")]
#[test]
fn an_s3_object_is_replaced_only_if_its_etag_is_unchanged() {
    let Some(bucket) = Bucket::new("etag") else { return };
    let (s, place) = (Scratch::new(), Place::new());
    encrypted(&s, "notes.enc", b"in s3\n", &[]);
    bucket.put("notes.enc", fs::read(s.path("notes.enc")).unwrap());
    let url = format!("s3://{}/notes.enc", bucket.name);
    let ed = editor(&s, "ed.sh", "printf 'edited in s3\\n' > \"$1\"");
    expect(bucket.edit(&s, &place, &ed).args(args(&[&raw("wrapping.key"), &[url.as_str()]])), 0);
    let (message, content_type) = bucket.get("notes.enc");
    assert_eq!(content_type.as_deref(), Some("text/x-notes"));
    s.write("got.enc", &message);
    assert_eq!(decrypted(&s, "got.enc"), b"edited in s3\n");

    // The editor waits, with its text saved, until the test has replaced the object.
    let (ready, go) = (s.path("ready"), s.path("go"));
    let body = format!(
        "printf 'lost edit\\n' > \"$1\"; : > '{}'; while [ ! -e '{}' ]; do sleep 0.05; done",
        ready.display(),
        go.display()
    );
    let ed = editor(&s, "slow.sh", &body);
    let mut cmd = bucket.edit(&s, &place, &ed);
    cmd.args(args(&[&raw("wrapping.key"), &[url.as_str()]]));
    let running = std::thread::spawn(move || cmd.output().unwrap());
    // (An edit that failed before its editor ran ends the wait too, and the assertions below say why.)
    while !ready.exists() && !running.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    bucket.put("notes.enc", b"another writer".to_vec());
    fs::write(&go, b"").unwrap();
    let out = running.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("ETag no longer matches") && stderr.contains("the edit was not written"), "{stderr}");
    assert!(!stderr.contains("lost edit"), "{stderr}");
    assert_eq!(bucket.get("notes.enc").0, b"another writer");
    assert_plaintext_gone(&s, &place);
}

/// FILE rewritten by someone else while the editor ran: their file stays, the edit is not written.
#[test]
fn a_file_changed_while_it_was_edited_is_left_as_the_other_writer_made_it() {
    let (s, place) = (Scratch::new(), Place::new());
    encrypted(&s, "notes.enc", b"mine\n", &[]);
    let body = format!("printf 'lost edit\\n' > \"$1\"; printf 'theirs' > '{}'", s.path("notes.enc").display());
    let ed = editor(&s, "ed.sh", &body);
    let (_, stderr) = expect(edit(&s, &place, &ed).args(args(&[&raw("wrapping.key"), &["notes.enc"]])), 4);
    assert!(stderr.contains("changed while it was edited") && !stderr.contains("lost edit"), "{stderr}");
    assert_eq!(fs::read(s.path("notes.enc")).unwrap(), b"theirs");
    assert_plaintext_gone(&s, &place);
}

/// On a terminal (a pty from util-linux `script`), invalid JSON opens the editor again when the answer is
/// yes, and ends the edit, the message as it was, when it is no. The editor writes a number where a string
/// belongs the first time, a string the second.
#[cfg(target_os = "linux")]
#[test]
fn on_a_terminal_invalid_json_reopens_the_editor_until_the_answer_is_no() {
    use std::io::Write as _;
    if std::process::Command::new("script").arg("--version").output().is_err() {
        super::common::missing::<()>("util-linux script (a pseudo-terminal)");
        return;
    }
    for (answer, code, text) in [("y", 0, &br#"{"A": "2"}"#[..]), ("n", 1, &br#"{"A": "1"}"#[..])] {
        let (s, place) = (Scratch::new(), Place::new());
        encrypted(&s, "s.enc", br#"{"A": "1"}"#, &[]);
        let body = format!(
            "if [ \"$(grep -c . '{}')\" = 1 ]; then printf '{{\"A\": 2}}' > \"$1\"; else printf '{{\"A\": \"2\"}}' > \"$1\"; fi",
            s.path("editor-saw").display()
        );
        let ed = editor(&s, "ed.sh", &body);
        let bin = assert_cmd::cargo::cargo_bin("kms-envelope");
        let allow_disk = if place.runtime.is_none() { "--allow-disk" } else { "" };
        let line = format!("'{}' edit {} {allow_disk} s.enc", bin.display(), raw("wrapping.key").join(" "));
        let mut script = std::process::Command::new("script");
        script.current_dir(s.path("")).args(["-qec", &line, "/dev/null"]).env("EDITOR", &ed).env_remove("VISUAL");
        script.env("TMPDIR", s.path("tmp")).env("AWS_EC2_METADATA_DISABLED", "true");
        fs::create_dir_all(s.path("tmp")).unwrap();
        if let Some(dir) = &place.runtime {
            script.env("XDG_RUNTIME_DIR", dir.path());
        }
        let mut child = script
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{answer}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{answer}: {shown}");
        assert!(shown.contains("Edit again?") && !shown.contains("\"2\"}"), "{shown}");
        let runs = if answer == "y" { 2 } else { 1 };
        assert_eq!(assert_plaintext_gone(&s, &place).len(), runs);
        assert_eq!(decrypted(&s, "s.enc"), text);
    }
}

/// A FILE (and an editor) whose names hold terminal controls reach stderr escaped, and the plaintext file
/// the editor gets has a plain name.
#[test]
fn names_with_terminal_controls_are_escaped() {
    let (s, place) = (Scratch::new(), Place::new());
    let hostile = "notes\u{1b}]0;owned\u{7}.enc";
    encrypted(&s, hostile, b"text\n", &[]);
    // The success line, printed by edit itself (failures go through Failure's one-line escaping too).
    let ed = editor(&s, "ok.sh", "printf 'new\\n' > \"$1\"");
    let (_, stderr) = expect(edit(&s, &place, &ed).args(args(&[&raw("wrapping.key"), &[hostile]])), 0);
    assert!(stderr.contains("re-encrypted") && !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'), "{stderr:?}");
    fs::remove_file(s.path("editor-saw")).unwrap();
    let ed = editor(&s, "ed\u{1b}[2J.sh", "exit 3");
    let (_, stderr) = expect(edit(&s, &place, &ed).args(args(&[&raw("wrapping.key"), &[hostile]])), 4);
    assert!(!stderr.contains('\u{1b}') && !stderr.contains('\u{7}'), "{stderr:?}");
    assert!(stderr.contains("exited with status 3"), "{stderr}");
    let saw = assert_plaintext_gone(&s, &place);
    assert_eq!(saw[0].file_name().unwrap(), "notes__0_owned_");
}
