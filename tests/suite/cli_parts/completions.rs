//! `kms-envelope completions SHELL` and `kms-envelope man`: every subcommand and every long flag that
//! `--help` shows is in each completion script and in the man page, where that subcommand's flags go; the
//! scripts load in their shells and complete; the man page renders.
//!
//! The expected names come from the `--help` text a user reads, not from the clap definition the generators
//! read, so a subcommand or flag the generated output lost (or hid) fails here.

use std::process::{Command as Process, Stdio};

use assert_cmd::Command;

use super::common;

const SHELLS: [&str; 3] = ["bash", "zsh", "fish"];

fn stdout(args: &[&str]) -> String {
    let out = Command::cargo_bin("kms-envelope").unwrap().args(args).output().unwrap();
    assert!(out.status.success(), "kms-envelope {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands `kms-envelope --help` lists (without clap's `help`).
fn subcommands() -> Vec<String> {
    let help = stdout(&["--help"]);
    let listed = help.split("Commands:\n").nth(1).expect("--help lists Commands:");
    let subs: Vec<String> = listed
        .lines()
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(subs.len() >= 10, "too few subcommands parsed from --help: {subs:?}");
    subs
}

/// The long flags `kms-envelope SUB --help` defines: the first `--flag` of each option line (indented 2 or 6
/// spaces; the prose under it is indented further and names other flags too).
fn long_flags(sub: &str) -> Vec<String> {
    let help = stdout(&[sub, "--help"]);
    let options = help.split("Options:\n").nth(1).expect("--help has Options:");
    let flags: Vec<String> = options
        .lines()
        .filter(|line| {
            let indent = line.len() - line.trim_start().len();
            (indent == 2 || indent == 6) && line.trim_start().starts_with('-')
        })
        .filter_map(|line| line.split([' ', ',']).find(|word| word.starts_with("--")))
        .map(|flag| flag.to_owned())
        .collect();
    assert!(flags.contains(&"--help".to_owned()), "{sub}: no --help among {flags:?}");
    flags
}

/// `word` occurs in `text` with no name character (letter, digit, `-`, `_`) on either side.
fn has_word(text: &str, word: &str) -> bool {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word)
        .any(|(at, _)| !text[..at].ends_with(name_char) && !text[at + word.len()..].starts_with(name_char))
}

/// The part of `script` (for `shell`) that completes `sub`'s options, and whether it offers `flag`.
fn offers(shell: &str, script: &str, sub: &str, flag: &str) -> bool {
    let name = flag.trim_start_matches('-');
    match shell {
        // The case arm of SUB: `kms__envelope__subcmd__SUB)` and then its `opts="..."` line; clap_complete
        // writes a `-` in SUB as `__subcmd__` (`branch-key`: `kms__envelope__subcmd__branch__subcmd__key`).
        "bash" => script
            .split(&format!("kms__envelope__subcmd__{})\n", sub.replace('-', "__subcmd__")))
            .nth(1)
            .and_then(|arm| arm.lines().next())
            .is_some_and(|opts| opts.trim_start().starts_with("opts=") && has_word(opts, flag)),
        // `complete -c kms-envelope -n "__fish_kms_envelope_using_subcommand SUB" -l NAME ...`
        "fish" => script
            .lines()
            .any(|line| line.contains(&format!("using_subcommand {sub}\"")) && line.contains(&format!(" -l {name} "))),
        // The `(SUB)` block of `_arguments` specs, each line one spec: `'*--NAME=[help]...'`.
        "zsh" => script
            .lines()
            .skip_while(|line| line.trim() != format!("({sub})"))
            .take_while(|line| line.trim() != ";;")
            .any(|spec| {
                let spec = spec.trim_start_matches(['\'', '*']);
                spec.strip_prefix(flag).is_some_and(|rest| rest.starts_with(['=', '[', '\'']))
            }),
        _ => unreachable!(),
    }
}

/// The man page's section on `sub` (from its `.SH "KMS-ENVELOPE SUB"` to the next `.SH`), roff's `\-`
/// read as `-`.
fn man_section(page: &str, sub: &str) -> Option<String> {
    let heading = format!(".SH \"KMS-ENVELOPE {}\"\n", sub.to_uppercase());
    let section = page.split(&heading).nth(1)?.split("\n.SH ").next()?;
    Some(section.replace("\\-", "-"))
}

#[test]
fn every_subcommand_and_flag_of_help_is_in_each_completion_script_and_the_man_page() {
    let scripts: Vec<(&str, String)> = SHELLS.iter().map(|shell| (*shell, stdout(&["completions", shell]))).collect();
    let page = stdout(&["man"]);
    let mut missing = Vec::new();
    for sub in subcommands() {
        let bash_top = scripts[0].1.split("kms__envelope)\n").nth(1).and_then(|arm| arm.lines().next()).unwrap_or("");
        if !has_word(bash_top, &sub) {
            missing.push(format!("bash: subcommand {sub}"));
        }
        if !scripts[1].1.contains(&format!("'{sub}:")) {
            missing.push(format!("zsh: subcommand {sub}"));
        }
        if !scripts[2].1.contains(&format!("needs_command\" -f -a \"{sub}\"")) {
            missing.push(format!("fish: subcommand {sub}"));
        }
        let section = man_section(&page, &sub);
        if section.is_none() {
            missing.push(format!("man: section on {sub}"));
        }
        for flag in long_flags(&sub) {
            for (shell, script) in &scripts {
                if !offers(shell, script, &sub, &flag) {
                    missing.push(format!("{shell}: {sub} {flag}"));
                }
            }
            // An option's definition in the man page: `\fB--NAME\fR`.
            if section.as_ref().is_some_and(|text| !text.contains(&format!("\\fB{flag}\\fR"))) {
                missing.push(format!("man: {sub} {flag}"));
            }
        }
    }
    assert!(missing.is_empty(), "missing from the generated output:\n{}", missing.join("\n"));
}

/// A flag `SUB --help` does not show is not offered either: a public key cannot unwrap, so decrypt and
/// unbundle hide --rsa-public-key, which encrypt shows and offers; a build without `rsa` hides it everywhere.
#[test]
fn a_flag_help_hides_is_not_completed() {
    let flag = "--rsa-public-key";
    for (shell, script) in SHELLS.map(|shell| (shell, stdout(&["completions", shell]))) {
        for (sub, shown) in [("encrypt", cfg!(feature = "rsa")), ("decrypt", false), ("unbundle", false)] {
            assert_eq!(long_flags(sub).contains(&flag.to_owned()), shown, "{sub} --help");
            assert_eq!(offers(shell, &script, sub, flag), shown, "{shell}: {sub} {flag}");
        }
    }
}

/// Runs `script` in `shell`, or reports the shell missing (a failure under CI).
fn run_in(shell: &str, args: &[&str], script: &str) -> Option<String> {
    let Ok(out) = Process::new(shell).args(args).arg(script).stdin(Stdio::null()).output() else {
        return common::missing(shell);
    };
    assert!(
        out.status.success(),
        "{shell} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// The bash script loads, registers a completion for kms-envelope, and completes a subcommand's option
/// after the subcommand (what clap-rs/clap#6421 broke for a binary name with a hyphen).
#[test]
fn bash_completion_loads_and_completes_a_subcommands_option() {
    let bin = assert_cmd::cargo::cargo_bin("kms-envelope");
    let script = format!(
        "source <('{}' completions bash) && complete -p kms-envelope && \
         COMP_WORDS=(kms-envelope decrypt --raw-k) && COMP_CWORD=2 && \
         _kms__envelope kms-envelope --raw-k decrypt && echo \"reply: ${{COMPREPLY[*]}}\"",
        bin.display()
    );
    let out = run_in("bash", &["-c"], &script).expect("bash is needed by the tests themselves");
    assert!(out.contains("kms-envelope"), "complete -p: {out}");
    assert!(out.contains("reply: --raw-key-file\n"), "completion after `decrypt --raw-k`: {out}");
}

/// The zsh and fish scripts parse in their shells (each skipped, loudly, where the shell is not
/// installed and CI is not set).
#[test]
fn zsh_and_fish_completions_parse() {
    let script = |shell: &str| {
        let path = std::env::temp_dir().join(format!("kms-envelope-completion-{}.{shell}", std::process::id()));
        std::fs::write(&path, stdout(&["completions", shell])).unwrap();
        path
    };
    let zsh = script("zsh");
    run_in("zsh", &["-n"], zsh.to_str().unwrap());
    let fish = script("fish");
    run_in("fish", &["--no-execute"], fish.to_str().unwrap());
    std::fs::remove_file(zsh).unwrap();
    std::fs::remove_file(fish).unwrap();
}

/// The man page renders without a warning from groff.
#[test]
fn man_page_renders() {
    let page = std::env::temp_dir().join(format!("kms-envelope-{}.1", std::process::id()));
    std::fs::write(&page, stdout(&["man"])).unwrap();
    let rendered =
        run_in("sh", &["-c"], &format!("groff -man -Tutf8 -ww '{}' 2>&1 >/dev/null; echo rendered", page.display()));
    std::fs::remove_file(&page).unwrap();
    if let Some(warnings) = rendered {
        assert_eq!(warnings, "rendered\n", "groff warnings");
    }
}
