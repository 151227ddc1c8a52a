//! `edit`: a message's plaintext in `$VISUAL` / `$EDITOR`, then the message replaced by its re-encryption.
//!
//! The plaintext is written into a fresh 0700 directory on a memory filesystem (tmpfs or ramfs:
//! `$XDG_RUNTIME_DIR`, else `/dev/shm`; a disk only with `--allow-disk`), the editor runs on it, and the file
//! is read back by its path once the editor exited: an editor that saves by writing a new file and renaming
//! it over the old one leaves a new file under that name. The new message keeps the source's suite (a legacy
//! one upgraded to the committing suite of its kind), encryption context (less `aws-crypto-public-key`, which
//! a signed suite writes anew) and frame length, under the key flags' keys, which must be able to wrap: that
//! is checked, with one throwaway data key, before the editor opens. FILE is replaced atomically (a 0600 temp
//! file renamed over it), an S3 object only while its ETag is still the one read. Unchanged text writes
//! nothing. Whatever happens, every file in the directory is overwritten with zeros and removed with it.

use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kms_envelope::escape::escaped;
use kms_envelope::stream::DEFAULT_FRAME_LENGTH;
use kms_envelope::stream::default_target_suite;
use kms_envelope::{
    AlgorithmSuite, ContentType, DecryptLimits, DecryptOptions, EncryptOptions, EncryptionContext, Header, Keyring,
    TargetKeys, Zeroizing,
};

use super::args::EditArgs;
use super::exit::{Code, Failure};
use super::inspect::describe;
use super::keys;
use super::location::Location;
use super::offered::{Recording, shortened};

/// The largest message, and the largest edited text, `edit` holds: both are in memory at once (a person's
/// file, not a data set; `reencrypt` streams larger ones).
const MAX_EDIT_LEN: u64 = 64 << 20;

/// The context key a signed suite stores its verification key under: the new message gets its own.
const PUBLIC_KEY_CONTEXT_KEY: &str = "aws-crypto-public-key";

pub fn run(args: &EditArgs) -> Result<(), Failure> {
    let shown = escaped(&args.file.arg());
    let root = scratch_root(args.allow_disk)?;
    let target = wrapping_keys(args)?;
    let source = Recording::new(keys::for_decrypt(&args.keys, &args.discovery)?);
    let original = Original::read(&args.file)?;
    let limits = DecryptLimits {
        max_encrypted_data_keys: Some(kms_envelope::RECOMMENDED_MAX_ENCRYPTED_DATA_KEYS),
        ..DecryptLimits::default()
    };
    let options = DecryptOptions::new().commitment_policy(args.commitment_policy.0).limits(limits);
    let decrypted = kms_envelope::decrypt(&source, &options, original.message())
        .map_err(|e| source.explain(Failure::reading(e).with_file(&shown)))?;
    // Before the editor opens: the keys wrap (one throwaway data key), and keep every key the message has.
    let target_keys = TargetKeys::of(target.as_ref()).map_err(|e| {
        Failure::writing(e).with_note("the key flags could not wrap a data key, which edit needs to write the message")
    })?;
    check_kept_keys(&decrypted.header, &target_keys, args.drop_key).map_err(|f| f.with_file(&shown))?;
    let (suite, new_options) = kept_settings(&decrypted.header);
    let secrets = is_secrets(&decrypted.plaintext).is_ok();
    let name = plaintext_name(&args.file.arg());
    let Some(edited) = edit_plaintext(&root, &name, &decrypted.plaintext, secrets, &shown)? else {
        eprintln!("kms-envelope: {shown}: unchanged; left as it was");
        return Ok(());
    };
    let message = kms_envelope::encrypt(target.as_ref(), &new_options, &edited)
        .map_err(|e| Failure::writing(e).with_file(&shown).with_note("left as it was"))?;
    original.replace(&message)?;
    eprintln!("kms-envelope: {shown}: re-encrypted (suite 0x{:04X}, a fresh data key)", suite.id());
    Ok(())
}

/// The keyring the new message is written under: the key flags, which must hold a key that wraps
/// (`--kms-discovery` only unwraps).
fn wrapping_keys(args: &EditArgs) -> Result<Box<dyn Keyring>, Failure> {
    keys::for_encrypt(&args.keys).map_err(|failure| {
        if args.discovery.kms_discovery {
            Failure::usage(
                "edit writes the message again under the key flags, and --kms-discovery only unwraps: name the \
                 keys to wrap the new data key with (--kms-key ID, --raw-key-file PATH, ...)"
                    .into(),
            )
        } else {
            failure
        }
    })
}

/// Refuses new keys that would leave out a key the message's data key is wrapped under (whoever opens the
/// message with that key could no longer open the edited one), unless `drop_key`.
fn check_kept_keys(header: &Header, target: &TargetKeys, drop_key: bool) -> Result<(), Failure> {
    let dropped: Vec<String> = header
        .encrypted_data_keys()
        .iter()
        .filter(|edk| !target.wraps_like(edk))
        .map(|edk| shortened(describe(edk)))
        .collect();
    if dropped.is_empty() || drop_key {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "the key flags do not wrap under {} the message has ({}): give {} too, or --drop-key to leave {} out",
        super::plural(dropped.len(), "a key", "keys"),
        dropped.join("; "),
        super::plural(dropped.len(), "it", "them"),
        super::plural(dropped.len(), "it", "them"),
    )))
}

/// The new message's suite, context and frame length: the source's, a legacy suite upgraded to the
/// committing suite of its kind, and `aws-crypto-public-key` left for the encryptor to write anew.
fn kept_settings(header: &Header) -> (AlgorithmSuite, EncryptOptions) {
    let suite = header.suite();
    let suite = if suite.is_committing() { suite } else { default_target_suite(suite) };
    let context: EncryptionContext =
        header.encryption_context().iter().filter(|(k, _)| *k != PUBLIC_KEY_CONTEXT_KEY).collect();
    let frame_length = match header.content_type() {
        ContentType::Framed => header.frame_length(),
        _ => DEFAULT_FRAME_LENGTH,
    };
    (suite, EncryptOptions::new().suite(suite).encryption_context(context).frame_length(frame_length))
}

/// Whether `text` is a JSON secrets message's plaintext (an object of strings, as the Lambda decryptor and
/// `exec` read it); the error says where it is not, without quoting it.
fn is_secrets(text: &[u8]) -> Result<(), String> {
    use serde_json::error::Category;
    use zeroize::Zeroize as _;
    match serde_json::from_slice::<std::collections::BTreeMap<String, String>>(text) {
        Ok(values) => {
            for (mut name, mut value) in values {
                name.zeroize();
                value.zeroize();
            }
            Ok(())
        }
        Err(e) => {
            let kind = match e.classify() {
                Category::Syntax => "not valid JSON",
                Category::Eof => "the JSON ends early",
                Category::Data => "a value that is not a string",
                Category::Io => "a read error",
            };
            Err(format!("{kind} at line {} column {}", e.line(), e.column()))
        }
    }
}

/// The name the plaintext file gets: FILE's last component less `.encrypted` or `.enc` (so that the editor
/// recognises `secrets.json`), with anything but letters, digits, `.`, `_` and `-` replaced.
fn plaintext_name(file: &str) -> String {
    let last = file.rsplit('/').next().unwrap_or_default();
    let stem = last.strip_suffix(".encrypted").or_else(|| last.strip_suffix(".enc")).unwrap_or(last);
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    match name.trim_start_matches('.') {
        "" => "plaintext".to_owned(),
        name => name.to_owned(),
    }
}

/// Writes `plaintext` into a fresh directory under `root`, runs the editor on it until it leaves text that
/// may be written, and returns that text, or `None` when it is unchanged. The directory is wiped and gone
/// when this returns, whatever happened.
fn edit_plaintext(
    root: &Path,
    name: &str,
    plaintext: &[u8],
    secrets: bool,
    shown: &str,
) -> Result<Option<Zeroizing<Vec<u8>>>, Failure> {
    // Caught before the directory exists, released after it is gone (drop order: last declared first).
    let signals = Signals::catch().map_err(|e| Failure::io("cannot handle signals".into(), e))?;
    let scratch = Scratch::create(root, name, plaintext)?;
    let editor = Editor::from_env();
    let edited = loop {
        editor.run(scratch.file(), &signals).map_err(|f| f.with_note(&format!("{shown} left as it was")))?;
        let edited = read_edited(scratch.file())?;
        if edited[..] == plaintext[..] {
            break None;
        }
        match (secrets, is_secrets(&edited)) {
            (true, Err(reason)) => {
                let reason = format!("the edited text is not a JSON object of strings, as the message held ({reason})");
                let again = ask_to_edit_again(&reason, shown);
                // A Ctrl-C at the question is an answer too.
                if let Some(status) = signals.caught_status() {
                    return Err(Failure::interrupted(format!("interrupted; {shown} left as it was"), status));
                }
                if !again {
                    return Err(Failure::new(Code::InvalidMessage, format!("{reason}; {shown} left as it was")));
                }
            }
            _ => break Some(edited),
        }
    };
    if let Some(status) = signals.caught_status() {
        return Err(Failure::interrupted(format!("interrupted; {shown} left as it was"), status));
    }
    drop(scratch);
    signals.release().map_err(|status| Failure::interrupted(format!("interrupted; {shown} left as it was"), status))?;
    Ok(edited)
}

/// On a terminal, asks whether to open the editor again after `reason`; elsewhere (a script, CI) never.
fn ask_to_edit_again(reason: &str, shown: &str) -> bool {
    if !io::stdin().is_terminal() || !io::stderr().is_terminal() {
        return false;
    }
    eprint!("kms-envelope: {reason}.\nEdit again? (n leaves {shown} as it was) [Y/n] ");
    let mut answer = String::new();
    match io::stdin().read_line(&mut answer) {
        Ok(0) | Err(_) => false,
        Ok(_) => !answer.trim().eq_ignore_ascii_case("n"),
    }
}

/// The edited file, read by its path (a new file, if the editor saved by rename), at most [`MAX_EDIT_LEN`].
fn read_edited(path: &Path) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let gone =
        |e: io::Error| Failure::io("cannot read the edited text back (the original is left as it was)".into(), e);
    let file = File::open(path).map_err(gone)?;
    let len = file.metadata().map_err(gone)?.len();
    if len > MAX_EDIT_LEN {
        return Err(Failure::new(
            Code::Io,
            format!(
                "the edited text is over {} MiB, more than edit holds; the original is left as it was",
                MAX_EDIT_LEN >> 20
            ),
        ));
    }
    // Room for all of it up front: a reallocation would free an unwiped copy.
    let mut text = Zeroizing::new(Vec::with_capacity(len as usize + 1));
    file.take(MAX_EDIT_LEN + 1).read_to_end(&mut text).map_err(gone)?;
    if text.len() as u64 > MAX_EDIT_LEN {
        return Err(Failure::new(
            Code::Io,
            "the edited text grew past what edit holds; the original is left as it was".into(),
        ));
    }
    Ok(text)
}

/// What kind of filesystem a candidate directory for the plaintext is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// tmpfs or ramfs: the plaintext stays in memory (or swap, if swap is on).
    Memory,
    /// Anything else, or a kind that cannot be told.
    Disk,
    /// The directory does not exist or cannot be queried.
    Absent,
    /// `$XDG_RUNTIME_DIR` that is not this user's alone: owned by another user, writable by others, or below
    /// a directory another user could rename it in. Its owner could move the plaintext directory away and
    /// put one of their own in its place, which the plaintext would then be written to and read back from.
    NotPrivate,
}

/// `statfs` magic numbers of the memory filesystems (linux/magic.h).
#[cfg(target_os = "linux")]
const TMPFS_MAGIC: i64 = 0x0102_1994;
#[cfg(target_os = "linux")]
const RAMFS_MAGIC: i64 = 0x8584_58f6;

#[cfg(target_os = "linux")]
fn place_of(dir: &Path) -> Place {
    match rustix::fs::statfs(dir) {
        #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs between targets.
        Ok(fs) if matches!(fs.f_type as i64, TMPFS_MAGIC | RAMFS_MAGIC) => Place::Memory,
        Ok(_) => Place::Disk,
        Err(_) => Place::Absent,
    }
}

#[cfg(not(target_os = "linux"))]
fn place_of(dir: &Path) -> Place {
    if dir.is_dir() { Place::Disk } else { Place::Absent }
}

/// Where the plaintext directory goes: `$XDG_RUNTIME_DIR` or `/dev/shm` on a memory filesystem, else (with
/// `--allow-disk`) the system's temp directory.
fn scratch_root(allow_disk: bool) -> Result<PathBuf, Failure> {
    let mut candidates = Vec::new();
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_absolute()) {
        // The XDG spec says it must be the user's own, 0700; a variable may say anything. By its resolved
        // path, so that a link cannot be pointed elsewhere once checked.
        candidates.push(match private_dir(&runtime) {
            Some(resolved) => (place_of(&resolved), resolved),
            None => (Place::NotPrivate, runtime),
        });
    }
    // World-writable, but sticky: no other user can rename the directory made in it.
    candidates.push((place_of(Path::new("/dev/shm")), PathBuf::from("/dev/shm")));
    let placed: Vec<(PathBuf, Place)> = candidates.into_iter().map(|(p, d)| (d, p)).collect();
    choose_root(&placed, allow_disk, std::env::temp_dir()).map_err(Failure::usage)
}

/// `dir` resolved through links, if only this user (and root) can change what is in it: it is owned by
/// this user and writable by no one else, and every directory above it is owned by this user or root and
/// is writable by no one else or sticky (as `/tmp` is). `None` otherwise, or when it cannot be checked.
#[cfg(unix)]
fn private_dir(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    const OTHERS_WRITE: u32 = 0o022;
    const STICKY: u32 = 0o1000;
    let me = rustix::process::geteuid().as_raw();
    let resolved = fs::canonicalize(dir).ok()?;
    let own = fs::metadata(&resolved).ok()?;
    if !own.is_dir() || own.uid() != me || own.mode() & OTHERS_WRITE != 0 {
        return None;
    }
    for parent in resolved.ancestors().skip(1) {
        let meta = fs::metadata(parent).ok()?;
        let mode = meta.mode();
        if (meta.uid() != me && meta.uid() != 0) || (mode & OTHERS_WRITE != 0 && mode & STICKY == 0) {
            return None;
        }
    }
    Some(resolved)
}

#[cfg(not(unix))]
fn private_dir(dir: &Path) -> Option<PathBuf> {
    fs::canonicalize(dir).ok()
}

/// The first candidate on a memory filesystem; else `disk` if `allow_disk`; else why not.
fn choose_root(candidates: &[(PathBuf, Place)], allow_disk: bool, disk: PathBuf) -> Result<PathBuf, String> {
    if let Some((dir, _)) = candidates.iter().find(|(_, place)| *place == Place::Memory) {
        return Ok(dir.clone());
    }
    if allow_disk {
        return Ok(disk);
    }
    let checked: Vec<String> = candidates
        .iter()
        .map(|(dir, place)| {
            let what = match place {
                Place::Absent => "absent",
                Place::NotPrivate => "not private: owned by another user or writable by others",
                _ => "not tmpfs or ramfs",
            };
            format!("{} ({what})", escaped(&dir.to_string_lossy()))
        })
        .collect();
    Err(format!(
        "no memory filesystem for the plaintext: {}; --allow-disk writes it to {} instead (wiped afterwards, but \
         a disk may keep copies)",
        checked.join(", "),
        escaped(&disk.to_string_lossy())
    ))
}

/// The plaintext's directory (0700) and file (0600): on drop, every regular file in the directory is
/// overwritten with zeros and the directory removed.
struct Scratch {
    dir: PathBuf,
    file: PathBuf,
}

impl Scratch {
    fn create(root: &Path, name: &str, plaintext: &[u8]) -> Result<Self, Failure> {
        let failed = |e: io::Error| Failure::io(format!("cannot write the plaintext under {}", root.display()), e);
        let mut builder = tempfile::Builder::new();
        builder.prefix("kms-envelope-edit.");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            builder.permissions(fs::Permissions::from_mode(0o700));
        }
        let dir = builder.tempdir_in(root).map_err(failed)?.keep();
        let scratch = Self { file: dir.join(name), dir };
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&scratch.file).map_err(failed)?;
        file.write_all(plaintext).map_err(failed)?;
        Ok(scratch)
    }

    fn file(&self) -> &Path {
        &self.file
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        wipe_tree(&self.dir);
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("kms-envelope: cannot remove the plaintext directory {}: {e}", self.dir.display());
        }
    }
}

/// Overwrites every regular file below `dir` with zeros (what an editor left beside the plaintext too:
/// backups, swap files), without following symbolic links.
fn wipe_tree(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => wipe_tree(&entry.path()),
            Ok(kind) if kind.is_file() => {
                if let Err(e) = wipe_file(&entry.path()) {
                    eprintln!("kms-envelope: cannot overwrite {}: {e}", entry.path().display());
                }
            }
            _ => {}
        }
    }
}

fn wipe_file(path: &Path) -> io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).open(path)?;
    let zeros = [0u8; 64 << 10];
    let mut left = file.metadata()?.len();
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_data()
}

/// The editor: `$VISUAL`, else `$EDITOR`, else `vi`, run much as git runs it (`sh -c 'exec $EDITOR "$@"'`,
/// so the variable may hold options and quotes), with vim and neovim told to keep no swap, backup, undo or
/// viminfo file.
struct Editor {
    command: String,
}

/// What vim and neovim are given: no swap file (`-n`), no viminfo/shada (`-i NONE`), and no backup or
/// undo file when writing (set after the user's vimrc, which may turn them on).
const VIM_HARDENING: &str = "-n -i NONE -c 'set nobackup nowritebackup noundofile noswapfile viminfo='";

impl Editor {
    fn from_env() -> Self {
        let set = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let command = set("VISUAL").or_else(|| set("EDITOR")).unwrap_or_else(|| "vi".to_owned());
        Self { command }
    }

    /// The shell script that runs the editor on `"$@"`. `exec`, so that the editor is our child itself: a
    /// SIGTERM passed on reaches it, and a signal that kills it is seen as such.
    fn script(&self) -> String {
        if is_vim(&self.command) {
            format!("exec {} {VIM_HARDENING} \"$@\"", self.command)
        } else {
            format!("exec {} \"$@\"", self.command)
        }
    }

    /// Runs the editor on `file` and waits for it. While it runs, SIGINT and SIGQUIT are the editor's (the
    /// terminal sends them to both); SIGTERM or SIGHUP is passed on to it and ends the edit.
    fn run(&self, file: &Path, signals: &Signals) -> Result<(), Failure> {
        let name = self.command.split_whitespace().next().unwrap_or("editor");
        let shown = escaped(name);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(self.script())
            .arg(name)
            .arg(file)
            .spawn()
            .map_err(|e| Failure::io(format!("cannot run the editor {shown}"), e))?;
        let status =
            wait_for(&mut child, signals).map_err(|e| Failure::io(format!("waiting for the editor {shown}"), e))?;
        if let Some(status) = signals.caught_status() {
            return Err(Failure::interrupted("interrupted while the editor ran".into(), status));
        }
        match status.code() {
            Some(0) => Ok(()),
            Some(code) => Err(Failure::new(Code::Io, format!("the editor {shown} exited with status {code}"))),
            None => Err(Failure::new(Code::Io, format!("the editor {shown} was killed by a signal ({status})"))),
        }
    }
}

/// Waits for `child`, passing SIGTERM or SIGHUP on to it, and letting SIGINT and SIGQUIT go (they reached
/// the editor from the terminal too, which handles them: vim cancels a command on Ctrl-C).
fn wait_for(child: &mut Child, signals: &Signals) -> io::Result<ExitStatus> {
    let mut passed_on = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if !passed_on && let Some(signal) = signals.terminating() {
            #[cfg(unix)]
            {
                use rustix::process::{Pid, Signal, kill_process};
                let _ = signal;
                let _ = kill_process(Pid::from_child(child), Signal::TERM);
            }
            #[cfg(not(unix))]
            let _ = (signal, child.kill());
            passed_on = true;
        }
        signals.forget_interactive();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the editor command runs vim or neovim: its first word's file name, or for `vi`, what `vi` on
/// `PATH` resolves to (Debian's `vi` is vim through two links).
fn is_vim(command: &str) -> bool {
    let Some(program) = command.split_whitespace().next() else { return false };
    let vim_name = |name: &str| {
        matches!(name, "vim" | "nvim" | "gvim" | "vimx" | "mvim" | "rvim" | "vimdiff") || name.starts_with("vim.")
    };
    let file_name = |path: &Path| path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = file_name(Path::new(program));
    if vim_name(&name) {
        return true;
    }
    if name != "vi" {
        return false;
    }
    let resolved = if program.contains('/') {
        fs::canonicalize(program).ok()
    } else {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("vi"))
            .find(|path| path.is_file())
            .and_then(|path| fs::canonicalize(path).ok())
    };
    resolved.is_some_and(|path| vim_name(&file_name(&path)))
}

/// SIGHUP, SIGINT, SIGQUIT and SIGTERM, caught while the plaintext is on a filesystem, so that it is wiped
/// before the process ends (a SIGKILL cannot be caught: then the directory stays until it is removed or
/// the memory filesystem goes, at the next boot). Released, each signal takes its default action again.
struct Signals {
    caught: Arc<AtomicUsize>,
    default_action: Arc<AtomicBool>,
    #[cfg(unix)]
    actions: Vec<signal_hook::SigId>,
}

#[cfg(unix)]
const CAUGHT: [i32; 4] = [
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGQUIT,
    signal_hook::consts::SIGTERM,
];

impl Signals {
    fn catch() -> io::Result<Self> {
        let caught = Arc::new(AtomicUsize::new(0));
        let default_action = Arc::new(AtomicBool::new(false));
        #[cfg(unix)]
        {
            use signal_hook::flag;
            let mut actions = Vec::new();
            // Not the ones this process was started ignoring (`nohup`).
            for signal in CAUGHT.into_iter().filter(|&signal| !super::signals::ignored(signal)) {
                let number = usize::try_from(signal).expect("signal numbers are positive");
                actions.push(flag::register_conditional_default(signal, default_action.clone())?);
                actions.push(flag::register_usize(signal, caught.clone(), number)?);
            }
            Ok(Self { caught, default_action, actions })
        }
        #[cfg(not(unix))]
        Ok(Self { caught, default_action })
    }

    /// SIGTERM or SIGHUP, if one arrived.
    fn terminating(&self) -> Option<i32> {
        #[cfg(unix)]
        {
            let signal = i32::try_from(self.caught.load(Ordering::SeqCst)).ok()?;
            [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP].contains(&signal).then_some(signal)
        }
        #[cfg(not(unix))]
        None
    }

    /// Forgets a SIGINT or SIGQUIT: while the editor runs, it is the editor's.
    fn forget_interactive(&self) {
        #[cfg(unix)]
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGQUIT] {
            let _ = self.caught.compare_exchange(signal as usize, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// The exit status of a process killed by the signal that arrived, if one did (128 + its number).
    fn caught_status(&self) -> Option<u8> {
        match self.caught.load(Ordering::SeqCst) {
            0 => None,
            signal => u8::try_from(128 + signal).ok(),
        }
    }

    /// Gives each signal its default action back; `Err` with the exit status if one arrived meanwhile.
    fn release(self) -> Result<(), u8> {
        let status = self.caught_status();
        drop(self);
        status.map_or(Ok(()), Err)
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // Default first: a signal from here on ends the process, as it would have without us.
        self.default_action.store(true, Ordering::SeqCst);
        #[cfg(unix)]
        for action in self.actions.drain(..) {
            signal_hook::low_level::unregister(action);
        }
    }
}

/// The message being edited, as read, and how to replace it.
enum Original {
    File {
        path: PathBuf,
        message: Vec<u8>,
    },
    #[cfg(feature = "s3")]
    S3 {
        object: super::io::PinnedObject,
        message: Vec<u8>,
    },
}

impl Original {
    /// The message at `location`: `-` is the file of that name (edit replaces what it read).
    fn read(location: &Location) -> Result<Self, Failure> {
        if let Location::S3(name) = location {
            #[cfg(feature = "s3")]
            {
                let (object, message) = super::io::PinnedObject::read(name.url()?, MAX_EDIT_LEN)?;
                return Ok(Self::S3 { object, message });
            }
            #[cfg(not(feature = "s3"))]
            name.check()?;
        }
        let path = location.path().to_path_buf();
        let shown = escaped(&location.arg());
        let meta = fs::symlink_metadata(&path).map_err(|e| Failure::io(format!("cannot open {shown}"), e))?;
        if !meta.is_file() {
            // Replaced by a rename, a symbolic link would become a file and its target keep the old message.
            let what = if meta.file_type().is_symlink() { "a symbolic link" } else { "not a regular file" };
            return Err(Failure::new(Code::Io, format!("{shown}: is {what}; edit replaces a regular file")));
        }
        if meta.len() > MAX_EDIT_LEN {
            return Err(Failure::new(
                Code::Io,
                format!("{shown}: over {} MiB, more than edit holds in memory", MAX_EDIT_LEN >> 20),
            ));
        }
        let message = fs::read(&path).map_err(|e| Failure::io(format!("cannot read {shown}"), e))?;
        Ok(Self::File { path, message })
    }

    fn message(&self) -> &[u8] {
        match self {
            Self::File { message, .. } => message,
            #[cfg(feature = "s3")]
            Self::S3 { message, .. } => message,
        }
    }

    /// Replaces the message by `message`: a 0600 temp file beside it, synced, renamed over it, if the file
    /// still holds the message that was read (checked just before; a write in between is not seen).
    fn replace(&self, message: &[u8]) -> Result<(), Failure> {
        match self {
            Self::File { path, message: read } => {
                let shown = escaped(&path.to_string_lossy());
                let failed = |e: kms_envelope::Error| Failure::writing(e).with_file(&shown).with_note("left as it was");
                // As an S3 object's ETag is: whoever wrote FILE while the editor ran wins.
                if fs::read(path).ok().as_deref() != Some(&read[..]) {
                    return Err(Failure::new(
                        Code::Io,
                        format!(
                            "{shown}: changed while it was edited; left as the other writer made it, the edit was not written"
                        ),
                    ));
                }
                let mut pending = kms_envelope::stream::file::PendingFile::create(path, true).map_err(failed)?;
                pending.write_all(message).map_err(|e| failed(kms_envelope::Error::Io(e)))?;
                pending.commit(true, true).map_err(failed)
            }
            #[cfg(feature = "s3")]
            Self::S3 { object, .. } => object.replace(message).map_err(|f| f.with_note("the edit was not written")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plaintext_goes_to_the_first_memory_filesystem_or_to_disk_only_when_allowed() {
        let (runtime, shm, tmp) = (PathBuf::from("/run/user/1000"), PathBuf::from("/dev/shm"), PathBuf::from("/tmp"));
        let both = [(runtime.clone(), Place::Memory), (shm.clone(), Place::Memory)];
        assert_eq!(choose_root(&both, false, tmp.clone()), Ok(runtime.clone()));
        let runtime_on_disk = [(runtime.clone(), Place::Disk), (shm.clone(), Place::Memory)];
        assert_eq!(choose_root(&runtime_on_disk, false, tmp.clone()), Ok(shm.clone()));
        let none = [(runtime.clone(), Place::Disk), (shm.clone(), Place::Absent)];
        let refused = choose_root(&none, false, tmp.clone()).unwrap_err();
        assert!(refused.contains("/run/user/1000 (not tmpfs or ramfs)"), "{refused}");
        assert!(refused.contains("/dev/shm (absent)") && refused.contains("--allow-disk"), "{refused}");
        assert_eq!(choose_root(&none, true, tmp.clone()), Ok(tmp.clone()));
        // A memory filesystem is still preferred with --allow-disk.
        assert_eq!(choose_root(&runtime_on_disk, true, tmp), Ok(shm));
    }

    #[cfg(unix)]
    #[test]
    fn a_runtime_dir_others_can_write_or_do_not_own_is_not_used() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("run");
        fs::create_dir(&dir).unwrap();
        let set_mode = |path: &Path, mode| fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        set_mode(base.path(), 0o700);
        set_mode(&dir, 0o700);
        assert_eq!(private_dir(&dir), Some(fs::canonicalize(&dir).unwrap()));
        // Through a link: the resolved directory is what gets used.
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert_eq!(private_dir(&link), Some(fs::canonicalize(&dir).unwrap()));
        set_mode(&dir, 0o777);
        assert_eq!(private_dir(&dir), None);
        set_mode(&dir, 0o700);
        // A parent others can write without the sticky bit: they could rename the directory.
        set_mode(base.path(), 0o777);
        assert_eq!(private_dir(&dir), None);
        set_mode(base.path(), 0o1777);
        assert!(private_dir(&dir).is_some());
        // Owned by someone else (only root can make one to test with).
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            assert_eq!(private_dir(&dir), None);
        }
        let refused = choose_root(&[(dir.clone(), Place::NotPrivate)], false, PathBuf::from("/tmp")).unwrap_err();
        assert!(refused.contains("not private"), "{refused}");
    }

    #[test]
    fn plaintext_names_keep_the_extension_the_editor_knows_and_nothing_else() {
        assert_eq!(plaintext_name("conf/secrets.json.enc"), "secrets.json");
        assert_eq!(plaintext_name("s3://bucket/app/.env.encrypted"), "env");
        assert_eq!(plaintext_name("a b\u{1b}[31m.txt"), "a_b__31m.txt");
        assert_eq!(plaintext_name("dir/.enc"), "plaintext");
    }

    #[test]
    fn vim_is_recognised_by_its_name_and_other_editors_are_left_alone() {
        assert!(is_vim("vim"));
        assert!(is_vim("/usr/bin/nvim -p"));
        assert!(is_vim("vim.basic"));
        assert!(!is_vim("nano"));
        assert!(!is_vim("code --wait"));
        assert!(!is_vim("/opt/vimlike/emacs"));
        assert!(Editor { command: "nvim".into() }.script().starts_with("exec nvim -n -i NONE -c 'set nobackup"));
        assert_eq!(Editor { command: "code --wait".into() }.script(), "exec code --wait \"$@\"");
    }

    #[test]
    fn a_secrets_check_names_where_the_text_fails_without_quoting_it() {
        assert!(is_secrets(br#"{"DB_PASSWORD": "hunter2"}"#).is_ok());
        let reason = is_secrets(b"{\"DB_PASSWORD\": \"hunter2\",\n}").unwrap_err();
        assert!(reason.starts_with("not valid JSON at line 2"), "{reason}");
        let reason = is_secrets(br#"{"DB_PASSWORD": 12345678}"#).unwrap_err();
        assert!(!reason.contains("12345678") && !reason.contains("DB_PASSWORD"), "{reason}");
    }
}
