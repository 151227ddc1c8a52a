//! `--recursive`: one message per file, the output tree mirroring the input tree.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

use super::exit::{Code, Failure};

/// One file to process.
pub struct Job {
    pub input: PathBuf,
    pub output: PathBuf,
}

/// The work of one `--recursive` run.
pub struct Plan {
    /// The files to process, in order.
    jobs: Vec<Job>,
    /// Entries refused while walking (symlinks, special files), each a failure of its own.
    problems: Vec<Failure>,
    /// OUTPUT, created by [`run`] (even for an empty tree) if it does not exist yet.
    output_root: PathBuf,
}

/// Lists the regular files below `input_root` (sorted, depth first) with their outputs below `output_root`,
/// named by `rename`. Symlinks and special files are not followed: each is a failure of its own. The
/// output tree is skipped if it lies inside the input tree. Nothing is created yet: a run that fails
/// before [`run`] (a key that cannot be read) leaves no directory behind.
pub fn plan(input_root: &Path, output_root: &Path, rename: &dyn Fn(&OsStr) -> OsString) -> Result<Plan, Failure> {
    let meta = fs::metadata(input_root).map_err(|e| Failure::io(format!("cannot open {}", input_root.display()), e))?;
    if !meta.is_dir() {
        return Err(Failure::usage(format!("{}: --recursive needs a directory as INPUT", input_root.display())));
    }
    match fs::symlink_metadata(output_root) {
        Ok(m) if !m.is_dir() => {
            return Err(Failure::usage(format!(
                "{}: --recursive needs a directory (or a path to create) as OUTPUT",
                output_root.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Failure::io(format!("cannot open {}", output_root.display()), e)),
    }
    let skip = fs::canonicalize(output_root).ok();
    if skip.as_deref() == fs::canonicalize(input_root).ok().as_deref() {
        return Err(Failure::usage("INPUT and OUTPUT are the same directory".into()));
    }
    let mut jobs = Vec::new();
    let mut problems = Vec::new();
    walk(input_root, output_root, skip.as_deref(), rename, &mut jobs, &mut problems)?;
    Ok(Plan { jobs, problems, output_root: output_root.to_owned() })
}

/// The regular files below `root`, each its own output (`reencrypt --in-place --recursive`).
pub fn plan_in_place(root: &Path) -> Result<Plan, Failure> {
    let meta = fs::metadata(root).map_err(|e| Failure::io(format!("cannot open {}", root.display()), e))?;
    if !meta.is_dir() {
        return Err(Failure::usage(format!("{}: --recursive needs a directory as INPUT", root.display())));
    }
    let (mut jobs, mut problems) = (Vec::new(), Vec::new());
    walk(root, root, None, &|name| name.to_os_string(), &mut jobs, &mut problems)?;
    Ok(Plan { jobs, problems, output_root: root.to_owned() })
}

impl Plan {
    /// The files to process, in order.
    pub fn inputs(&self) -> impl Iterator<Item = &Path> {
        self.jobs.iter().map(|job| job.input.as_path())
    }
}

fn walk(
    dir: &Path,
    out_dir: &Path,
    skip: Option<&Path>,
    rename: &dyn Fn(&OsStr) -> OsString,
    jobs: &mut Vec<Job>,
    problems: &mut Vec<Failure>,
) -> Result<(), Failure> {
    let read = |e| Failure::io(format!("cannot read directory {}", dir.display()), e);
    let mut entries: Vec<_> = fs::read_dir(dir).map_err(read)?.collect::<Result<_, _>>().map_err(read)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| Failure::io(format!("cannot stat {}", path.display()), e))?;
        if file_type.is_dir() {
            if skip.is_some() && fs::canonicalize(&path).ok().as_deref() == skip {
                continue;
            }
            walk(&path, &out_dir.join(entry.file_name()), skip, rename, jobs, problems)?;
        } else if file_type.is_file() {
            jobs.push(Job { output: out_dir.join(rename(&entry.file_name())), input: path });
        } else {
            problems.push(Failure::new(
                Code::Io,
                format!("{}: is a symbolic link or special file; not followed", path.display()),
            ));
        }
    }
    Ok(())
}

/// Creates `path` and the parents it lacks, each with mode 0700, and adds each directory it made to
/// `created`, parents first.
fn create_dirs(path: &Path, created: &mut Vec<PathBuf>) -> Result<(), Failure> {
    let missing: Vec<&Path> =
        path.ancestors().take_while(|dir| !dir.as_os_str().is_empty() && fs::symlink_metadata(dir).is_err()).collect();
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    for dir in missing.into_iter().rev() {
        builder.create(dir).map_err(|e| Failure::io(format!("cannot create directory {}", dir.display()), e))?;
        created.push(dir.to_owned());
    }
    Ok(())
}

/// Runs `each` over the jobs, reporting each failure on its own line and going on with the rest. Fails
/// with the exit code of the first failure, after removing the directories it created that stayed empty
/// (those of the files that failed): a failed run leaves no empty tree.
pub fn run(plan: Plan, mut each: impl FnMut(&Job) -> Result<(), Failure>) -> Result<(), Failure> {
    let Plan { jobs, problems, output_root } = plan;
    let mut created = Vec::new();
    create_dirs(&output_root, &mut created)?;
    let total = jobs.len() + problems.len();
    let mut first: Option<Code> = problems.first().map(Failure::code);
    let mut failed = problems.len();
    for problem in problems {
        eprintln!("kms-envelope: {problem}");
    }
    for job in &jobs {
        let result = check_no_symlink_below(&output_root, &job.output)
            .and_then(|()| match job.output.parent() {
                Some(parent) if !parent.is_dir() => create_dirs(parent, &mut created),
                _ => Ok(()),
            })
            .and_then(|()| each(job));
        if let Err(failure) = result {
            eprintln!("kms-envelope: {failure}");
            first.get_or_insert(failure.code());
            failed += 1;
        }
    }
    let Some(code) = first else { return Ok(()) };
    // Children were created after their parents: in reverse, each is removed before its parent is tried.
    // `remove_dir` removes only an empty directory.
    for dir in created.iter().rev() {
        let _ = fs::remove_dir(dir);
    }
    Err(Failure::new(code, format!("{failed} of {total} {} failed", super::plural(total, "file", "files"))))
}

/// Refuses an output whose directories below `root` include a symbolic link (one put in the output tree
/// would carry outputs, plaintext on decrypt, to wherever it points).
fn check_no_symlink_below(root: &Path, output: &Path) -> Result<(), Failure> {
    let Some(parent) = output.parent() else { return Ok(()) };
    for dir in parent.ancestors().take_while(|dir| *dir != root && dir.starts_with(root)) {
        if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Failure::new(
                Code::Io,
                format!("{}: is a symbolic link in the output tree; refusing to write through it", dir.display()),
            ));
        }
    }
    Ok(())
}

/// The decrypt output name: `name.encrypted` becomes `name`, anything else gets `.decrypted`.
pub fn decrypted_name(name: &OsStr) -> OsString {
    let text = name.to_string_lossy();
    match text.strip_suffix(".encrypted") {
        Some(stem) if !stem.is_empty() && text.len() == name.len() => stem.into(),
        _ => {
            let mut out = name.to_os_string();
            out.push(".decrypted");
            out
        }
    }
}

/// `name` with `suffix` appended.
pub fn with_suffix(name: &OsStr, suffix: &str) -> OsString {
    let mut out = name.to_os_string();
    out.push(suffix);
    out
}
