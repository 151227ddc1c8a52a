//! The README's git recipe: `.gitattributes` `*.enc diff=kms-envelope` and a `textconv` that runs
//! `kms-envelope decrypt FILE -`, in a temporary repository: `git diff` and `git log -p` show the plaintext
//! lines, and no decrypted text is cached under `refs/notes/textconv/` (no `cachetextconv`).

use std::path::Path;
use std::process::Command;

use super::{NAME, NS, Scratch, args, expect, raw};

/// `git` in `repo`, with no system or user configuration (HOME is the scratch directory).
fn git(s: &Scratch, repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(repo).env("HOME", s.path("")).env("GIT_CONFIG_NOSYSTEM", "1").env("GIT_CONFIG_GLOBAL", "/dev/null");
    cmd.env("GIT_AUTHOR_NAME", "t").env("GIT_AUTHOR_EMAIL", "t@example.com");
    cmd.env("GIT_COMMITTER_NAME", "t").env("GIT_COMMITTER_EMAIL", "t@example.com").env("GIT_PAGER", "cat");
    cmd
}

/// Runs `git` with `args`; asserts success, returns stdout.
fn run(s: &Scratch, repo: &Path, args: &[&str]) -> String {
    let out = git(s, repo).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn has_git() -> bool {
    Command::new("git").arg("--version").output().is_ok_and(|out| out.status.success())
}

#[test]
fn git_diff_and_log_show_decrypted_lines_and_cache_nothing() {
    if !has_git() {
        super::common::missing::<()>("git");
        return;
    }
    let s = Scratch::new();
    let repo = s.path("repo");
    std::fs::create_dir(&repo).unwrap();
    run(&s, &repo, &["init", "-q"]);
    // The recipe, as the README gives it (with this build's binary and the test's raw key).
    std::fs::write(repo.join(".gitattributes"), "*.enc diff=kms-envelope\n").unwrap();
    let textconv = format!(
        "sh -c '\"{}\" decrypt --raw-key-file \"{}\" --key-namespace {NS} --key-name {NAME} \"$1\" -' -",
        assert_cmd::cargo::cargo_bin("kms-envelope").display(),
        s.path("wrapping.key").display()
    );
    run(&s, &repo, &["config", "diff.kms-envelope.textconv", &textconv]);

    let encrypt = |text: &str| {
        s.write("plain", text.as_bytes());
        let output = repo.join("secrets.enc");
        let output = output.to_str().unwrap();
        expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["--force", "plain", output]])), 0);
    };
    encrypt("host=db.internal\npassword=first-marker\n");
    run(&s, &repo, &["add", "."]);
    run(&s, &repo, &["commit", "-q", "-m", "first"]);
    encrypt("host=db.internal\npassword=second-marker\n");

    let diff = run(&s, &repo, &["diff"]);
    assert!(diff.contains("\n-password=first-marker\n") && diff.contains("\n+password=second-marker\n"), "{diff}");
    assert!(diff.contains("\n host=db.internal\n"), "{diff}");
    // Without the driver, git sees two binary files: the lines above came from the textconv.
    let raw_diff = run(&s, &repo, &["diff", "--no-textconv"]);
    assert!(raw_diff.contains("Binary files") && !raw_diff.contains("marker"), "{raw_diff}");

    run(&s, &repo, &["commit", "-q", "-a", "-m", "second"]);
    let log = run(&s, &repo, &["log", "-p"]);
    assert!(log.contains("\n+password=first-marker\n"), "{log}");
    assert!(log.contains("\n-password=first-marker\n+password=second-marker\n"), "{log}");
    // Nothing decrypted was cached where a push could take it.
    assert_eq!(run(&s, &repo, &["for-each-ref", "refs/notes/"]), "");
}
