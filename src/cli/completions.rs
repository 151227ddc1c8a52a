//! `kms-envelope completions SHELL` and `kms-envelope man`: shell completions and the man page, generated
//! from the same clap definition that parses the command line, so that neither can miss a subcommand or a
//! flag, nor offer one that `--help` does not show.

use std::io::Write;

use clap::Command;
use clap::builder::Resettable::Reset;
use clap_complete::Shell;

use super::exit::Failure;

/// The name the completions complete and the man page documents.
const BIN: &str = "kms-envelope";

/// Writes the completion script for `shell` to stdout.
pub fn completions(cli: Command, shell: Shell) -> Result<(), Failure> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut visible_only(cli), BIN, &mut out);
    if shell == Shell::Bash {
        out = fix_bash_hyphen(&out);
    }
    write_stdout(&out)
}

/// The bash script with its subcommand states spelt as its dispatch loop spells them. clap_complete
/// (clap-rs/clap#6421, open in 4.6.12) escapes a hyphen in the binary's name as a subcommand separator in
/// the `case` arms but not in the loop, so after `kms-envelope SUBCOMMAND` no arm matched and no option was
/// ever completed. No subcommand name holds a hyphen, so this one prefix is the whole difference.
fn fix_bash_hyphen(script: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(script).replace("kms__subcmd__envelope__subcmd__", "kms__envelope__subcmd__").into_bytes()
}

/// Writes the man page, kms-envelope(1), to stdout as roff: the top-level page, then a section per
/// subcommand with its synopsis, description, options and notes, then the exit status.
pub fn man(cli: Command) -> Result<(), Failure> {
    let mut cli = cli;
    // Gives each subcommand its full name ("kms-envelope encrypt") for its synopsis.
    cli.build();
    let page = clap_mangen::Man::new(cli.clone());
    let mut out = Vec::new();
    let render = |out: &mut Vec<u8>| -> std::io::Result<()> {
        page.render_title(out)?;
        page.render_name_section(out)?;
        page.render_synopsis_section(out)?;
        page.render_description_section(out)?;
        for sub in cli.get_subcommands().filter(|sub| is_documented(sub)) {
            writeln!(out, ".SH \"{}\"", sub.get_bin_name().unwrap_or(sub.get_name()).to_uppercase())?;
            let sub_page = clap_mangen::Man::new(sub.clone());
            let mut sections = Vec::new();
            sub_page.render_synopsis_section(&mut sections)?;
            sub_page.render_description_section(&mut sections)?;
            sub_page.render_options_section(&mut sections)?;
            if sub.get_after_help().is_some() {
                sub_page.render_extra_section(&mut sections)?;
            }
            demote_sections(&sections, out);
        }
        // The top-level after-help: the exit status, which every subcommand shares.
        page.render_extra_section(out)?;
        page.render_version_section(out)
    };
    render(&mut out).map_err(|e| Failure::io("man page".to_owned(), e))?;
    write_stdout(&out)
}

/// A subcommand the man page and completions present: not hidden, and not clap's own `help`.
fn is_documented(sub: &Command) -> bool {
    !sub.is_hide_set() && sub.get_name() != "help"
}

/// `roff` with its section headings (`.SH`) turned into subsection headings (`.SS`), to nest a subcommand's
/// sections under its own heading. The roff writer escapes text lines that start with a dot, so a line
/// starting `.SH ` is always a heading.
fn demote_sections(roff: &[u8], out: &mut Vec<u8>) {
    for line in roff.split_inclusive(|&b| b == b'\n') {
        match line.strip_prefix(b".SH ") {
            Some(rest) => {
                out.extend_from_slice(b".SS ");
                out.extend_from_slice(rest);
            }
            None => out.extend_from_slice(line),
        }
    }
}

/// `cli` with only what `--help` shows: clap's completion generators also offer hidden arguments, which
/// here are the flags of features this build lacks and flags a subcommand does not take. The copies keep
/// names, help and value hints, which is all completion uses; the relations between arguments (requires,
/// conflicts) are dropped, since a removed argument may be named in them.
fn visible_only(cli: Command) -> Command {
    let mut cli = cli;
    cli.build();
    let subs: Vec<Command> = cli.get_subcommands().filter(|sub| is_documented(sub)).map(visible_args).collect();
    visible_args(&cli).subcommands(subs)
}

/// A fresh command named as `command`, with its about text and its visible arguments.
fn visible_args(command: &Command) -> Command {
    let mut copy = Command::new(command.get_name().to_owned())
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true);
    if let Some(about) = command.get_about() {
        copy = copy.about(about.clone());
    }
    if let Some(version) = command.get_version() {
        copy = copy.version(version.to_owned());
    }
    let args = command.get_arguments().filter(|arg| !arg.is_hide_set()).map(|arg| {
        arg.clone()
            .requires(Reset)
            .conflicts_with(Reset)
            .overrides_with(Reset)
            .required_unless_present(Reset)
            .group(Reset)
            .required(false)
    });
    copy.args(args)
}

/// Writes the generated text in one piece (generation itself cannot fail halfway through stdout).
fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).map_err(|e| Failure::io("stdout".to_owned(), e))
}
