//! Where a bundle lands: its destination's parent directory, reached from the root one directory at a
//! time and held open while the bundle is written, so that the directory written into is the directory
//! that was checked.
//!
//! Each directory on the way is opened with `openat(O_NOFOLLOW | O_DIRECTORY)` relative to the one before
//! it (a missing one is made 0700 with `mkdirat`), and must belong to this process's user and be writable
//! by no one else: on a shared host or a mounted EFS, another user who can write into a directory on the
//! way can swap an entry for a link between a check and the write it was meant to protect. The root
//! itself may instead be a sticky directory owned by root or by this user (`/tmp`, mode 1777), where no
//! other user can rename or remove what this user created.
//!
//! The code that writes (`PendingFile`, `bundle::unpack_verified`, the reuse marker) takes paths. It is
//! handed `/proc/self/fd/N/NAME`, which the kernel resolves through the open handle `N` (a "magic link"
//! to the very directory opened), not by walking the names from the root again.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// An open handle on a destination's checked parent directory, and the destination's name in it.
#[derive(Debug)]
pub(crate) struct Place {
    dir: OwnedFd,
    /// The directory's path, for messages and for [`Landed`](super::Landed) only.
    dir_path: PathBuf,
    name: OsString,
}

/// An entry's identity: what `discard` compares before removing, so that it removes only what a run
/// put there (a planted entry, or one that replaced ours, has another inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Inode {
    dev: u64,
    ino: u64,
    /// The `S_IFMT` bits of its mode.
    file_type: u32,
}

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// What a destination must be, if something is already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    File,
    Directory,
}

fn unsafe_place(path: &Path, reason: impl Into<String>) -> Error {
    Error::UnsafeDestination { path: path.to_path_buf(), reason: reason.into() }
}

fn io_at(path: &Path, e: impl Into<io::Error>) -> Error {
    let e = e.into();
    Error::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// Opens the directory `name` in `parent` without following a link; with `create`, makes it (0700)
/// first when it is missing. `None`: missing and not created.
fn open_dir(parent: &impl AsFd, name: &OsStr, path: &Path, create: bool) -> Result<Option<OwnedFd>> {
    loop {
        match rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => return Ok(Some(fd)),
            // With O_DIRECTORY, Linux reports a link as ENOTDIR: told apart by a look that does not follow.
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let is_link = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|stat| stat.st_mode & S_IFMT == S_IFLNK);
                let reason = if is_link { "it is a symbolic link" } else { "it is not a directory" };
                return Err(unsafe_place(path, reason));
            }
            Err(Errno::NOENT) if create => match rustix::fs::mkdirat(parent, name, Mode::RWXU) {
                // Made by someone else in between: opened and checked like any existing directory.
                Ok(()) | Err(Errno::EXIST) => continue,
                Err(e) => return Err(io_at(path, e)),
            },
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(io_at(path, e)),
        }
    }
}

/// Refuses a directory another user owns or can write into; a sticky root owned by root or by us
/// (`/tmp`) is accepted.
fn check_owner(dir: &OwnedFd, path: &Path, is_root: bool) -> Result<()> {
    let stat = rustix::fs::fstat(dir).map_err(|e| io_at(path, e))?;
    let ours = rustix::process::geteuid().as_raw();
    let sticky = stat.st_mode & 0o1000 != 0;
    if is_root && sticky && (stat.st_uid == ours || stat.st_uid == 0) {
        return Ok(());
    }
    if stat.st_uid != ours {
        return Err(unsafe_place(
            path,
            format!("it is owned by uid {}, not by this process's uid {ours}", stat.st_uid),
        ));
    }
    if stat.st_mode & 0o022 != 0 {
        return Err(unsafe_place(
            path,
            format!("it is writable by group or others (mode {:o})", stat.st_mode & 0o7777),
        ));
    }
    Ok(())
}

impl Place {
    /// Opens the parent of `destination` (an absolute path under `root`), making missing directories on
    /// the way (the root too) 0700, and checks that what stands at the destination, if anything, is no
    /// link and is of the `expected` kind. Refused with [`Error::UnsafeDestination`] naming the path.
    pub(crate) fn open(root: &Path, destination: &Path, expected: Expect) -> Result<Self> {
        let Some(place) = Self::walk(root, destination, true)? else {
            // A walk that creates what is missing only stops at an error.
            return Err(io_at(destination, io::Error::from(io::ErrorKind::NotFound)));
        };
        let found = place.inode(&place.name).map_err(|e| io_at(&place.destination(), e))?;
        let refused = match (found.map(|inode| inode.file_type), expected) {
            (None, _) | (Some(S_IFREG), Expect::File) | (Some(S_IFDIR), Expect::Directory) => None,
            (Some(S_IFLNK), _) => Some("it is a symbolic link; refusing to write through it"),
            (Some(S_IFDIR), Expect::File) => Some("it is a directory, not a file"),
            (Some(_), Expect::File) => Some("it is not a regular file"),
            (Some(_), Expect::Directory) => Some("it is not a directory"),
        };
        if let Some(refused) = refused {
            return Err(unsafe_place(&place.destination(), refused));
        }
        // In a sticky root another user may take the names first; a landing could not replace what they
        // own, and would find out only after decrypting (a KMS call per cold start), so refuse up front.
        let ours = rustix::process::geteuid().as_raw();
        for name in [place.name.clone(), super::reuse::marker_name(&place.name)] {
            match rustix::fs::statat(&place.dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if stat.st_uid != ours => {
                    let reason = format!("it belongs to another user (uid {})", stat.st_uid);
                    return Err(unsafe_place(&place.dir_path.join(&name), reason));
                }
                Ok(_) | Err(Errno::NOENT) => {}
                Err(e) => return Err(io_at(&place.dir_path.join(&name), e)),
            }
        }
        Ok(place)
    }

    /// Opens the parent of `destination` as `open` does, but makes nothing: `None` when a directory on
    /// the way is missing, a link, not a directory or not safe (what a run put there cannot be there).
    pub(crate) fn find(root: &Path, destination: &Path) -> Result<Option<Self>> {
        match Self::walk(root, destination, false) {
            Ok(found) => Ok(found),
            Err(Error::UnsafeDestination { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn walk(root: &Path, destination: &Path, create: bool) -> Result<Option<Self>> {
        let (Ok(relative), Some(name)) = (destination.strip_prefix(root), destination.file_name()) else {
            return Err(Error::Config(format!("{} is not under the root {}", destination.display(), root.display())));
        };
        // The root's own parents are the caller's choice and trusted; the root is opened from its parent
        // so that a trailing slash cannot make the kernel follow a link at the root itself.
        let mut dir = match (root.parent(), root.file_name()) {
            (Some(parent), Some(root_name)) => {
                let parent_dir = rustix::fs::open(parent, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty())
                    .map_err(|e| io_at(parent, e))?;
                match open_dir(&parent_dir, root_name, root, create)? {
                    Some(dir) => dir,
                    None => return Ok(None),
                }
            }
            _ => rustix::fs::open(root, DIR_FLAGS, Mode::empty()).map_err(|e| io_at(root, e))?,
        };
        check_owner(&dir, root, true)?;
        let mut dir_path = root.to_path_buf();
        let parents: Vec<_> = relative.parent().map(Path::components).into_iter().flatten().collect();
        for component in parents {
            let Component::Normal(part) = component else {
                return Err(Error::Config(format!("{} is not a plain path", destination.display())));
            };
            dir_path.push(part);
            dir = match open_dir(&dir, part, &dir_path, create)? {
                Some(dir) => dir,
                None => return Ok(None),
            };
            check_owner(&dir, &dir_path, false)?;
        }
        let place = Self { dir, dir_path, name: name.to_os_string() };
        if rustix::fs::stat(place.dir_through_handle()).is_err() {
            return Err(Error::Config(format!(
                "writing under {} needs /proc mounted (paths are resolved through /proc/self/fd)",
                root.display()
            )));
        }
        Ok(Some(place))
    }

    /// The destination's real path, for messages and for the caller.
    pub(crate) fn destination(&self) -> PathBuf {
        self.dir_path.join(&self.name)
    }

    /// The destination's name.
    pub(crate) fn name(&self) -> &OsStr {
        &self.name
    }

    /// The directory, as a path the kernel resolves through the open handle.
    pub(crate) fn dir_through_handle(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd()))
    }

    /// `name` in the directory, as a path the kernel resolves through the open handle.
    pub(crate) fn through_handle(&self, name: &OsStr) -> PathBuf {
        self.dir_through_handle().join(name)
    }

    /// The identity of `name` in the directory, without following a link; `None` if nothing is there.
    pub(crate) fn inode(&self, name: &OsStr) -> io::Result<Option<Inode>> {
        match rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Inode { dev: stat.st_dev, ino: stat.st_ino, file_type: stat.st_mode & S_IFMT })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `name` from the directory if it is still `inode` (a whole tree for a directory; std's
    /// `remove_dir_all` never follows a link); anything else there is left alone.
    pub(crate) fn remove_if_same(&self, name: &OsStr, inode: Inode) -> io::Result<()> {
        if self.inode(name)? != Some(inode) {
            return Ok(());
        }
        let removed = if inode.file_type == S_IFDIR {
            std::fs::remove_dir_all(self.through_handle(name))
        } else {
            rustix::fs::unlinkat(&self.dir, name, AtFlags::empty()).map_err(io::Error::from)
        };
        match removed {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// An error from code that was handed paths through the handle, naming the real directory instead.
    pub(crate) fn real_paths(&self, error: Error) -> Error {
        let through = self.dir_through_handle().display().to_string();
        let real = self.dir_path.display().to_string();
        match error {
            Error::Io(e) if e.to_string().contains(&through) => {
                Error::Io(io::Error::new(e.kind(), e.to_string().replace(&through, &real)))
            }
            Error::Bundle(text) => Error::Bundle(text.replace(&through, &real)),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn refused(result: Result<Place>) -> String {
        match result {
            Err(e @ Error::UnsafeDestination { .. }) => e.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_link_at_the_root_on_the_way_or_at_the_destination_is_refused() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        let outside = work.path().join("outside");
        fs::create_dir_all(root.join("real")).unwrap();
        fs::create_dir(&outside).unwrap();
        symlink(&outside, work.path().join("linked-root")).unwrap();
        symlink(&outside, root.join("linked")).unwrap();
        symlink(outside.join("victim"), root.join("real/file")).unwrap();

        let linked_root = work.path().join("linked-root");
        let err = refused(Place::open(&linked_root, &linked_root.join("x"), Expect::File));
        assert!(err.contains("symbolic link") && err.contains("linked-root"), "{err}");
        // A trailing slash would make a plain `open(O_NOFOLLOW)` follow the link.
        let slashed = PathBuf::from(format!("{}/", linked_root.display()));
        refused(Place::open(&slashed, &linked_root.join("x"), Expect::File));
        let err = refused(Place::open(&root, &root.join("linked/deeper/x"), Expect::File));
        assert!(err.contains("symbolic link") && err.contains("linked"), "{err}");
        let err = refused(Place::open(&root, &root.join("real/file"), Expect::File));
        assert!(err.contains("symbolic link"), "{err}");
        refused(Place::open(&root, &root.join("linked"), Expect::Directory));
        // Nothing was made through the links.
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        assert!(Place::find(&root, &root.join("linked/x")).unwrap().is_none());

        let place = Place::open(&root, &root.join("new/deeper/x"), Expect::File).unwrap();
        assert_eq!(place.destination(), root.join("new/deeper/x"));
        assert_eq!(fs::metadata(root.join("new/deeper")).unwrap().permissions().mode() & 0o777, 0o700);
        fs::write(place.through_handle(place.name()), b"through the handle").unwrap();
        assert_eq!(fs::read(root.join("new/deeper/x")).unwrap(), b"through the handle");
    }

    #[test]
    fn the_handle_keeps_writing_into_the_checked_directory_after_a_swap() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        let outside = work.path().join("outside");
        fs::create_dir_all(root.join("app")).unwrap();
        fs::create_dir(&outside).unwrap();
        let place = Place::open(&root, &root.join("app/config.json"), Expect::File).unwrap();
        // What another writer of the root could do between the check and the write.
        fs::rename(root.join("app"), root.join("moved")).unwrap();
        symlink(&outside, root.join("app")).unwrap();
        fs::write(place.through_handle(place.name()), b"x").unwrap();
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "written through the planted link");
        assert_eq!(fs::read(root.join("moved/config.json")).unwrap(), b"x");
    }

    #[test]
    fn a_directory_others_can_write_or_another_user_owns_is_refused() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        fs::create_dir_all(root.join("shared")).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(root.join("shared"), fs::Permissions::from_mode(0o777)).unwrap();
        let err = refused(Place::open(&root, &root.join("shared/x"), Expect::File));
        assert!(err.contains("writable by group or others") && err.contains("shared"), "{err}");
        fs::set_permissions(root.join("shared"), fs::Permissions::from_mode(0o770)).unwrap();
        refused(Place::open(&root, &root.join("shared/x"), Expect::File));
        fs::set_permissions(root.join("shared"), fs::Permissions::from_mode(0o755)).unwrap();
        Place::open(&root, &root.join("shared/x"), Expect::File).unwrap();

        // A group-writable root, and a non-sticky world-writable one, are refused too.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
        refused(Place::open(&root, &root.join("x"), Expect::File));
        // Sticky, like /tmp: accepted as the root (others cannot rename or remove our entries)...
        fs::set_permissions(&root, fs::Permissions::from_mode(0o1777)).unwrap();
        Place::open(&root, &root.join("x"), Expect::File).unwrap();
        // ...but not below it.
        fs::set_permissions(root.join("shared"), fs::Permissions::from_mode(0o1777)).unwrap();
        refused(Place::open(&root, &root.join("shared/x"), Expect::File));
        fs::set_permissions(root.join("shared"), fs::Permissions::from_mode(0o700)).unwrap();

        // Owned by another user (the tests run as root, which can give it away).
        if rustix::process::geteuid().is_root() {
            let other = Some(rustix::process::Uid::from_raw(54321));
            rustix::fs::chown(root.join("shared"), other, None).unwrap();
            let err = refused(Place::open(&root, &root.join("shared/x"), Expect::File));
            assert!(err.contains("uid 54321"), "{err}");

            // In a sticky root, another user's entry at the destination or at its marker (taken first).
            fs::set_permissions(&root, fs::Permissions::from_mode(0o1777)).unwrap();
            for planted in ["taken", ".taken.kms-envelope"] {
                fs::write(root.join(planted), b"theirs").unwrap();
                rustix::fs::chown(root.join(planted), other, None).unwrap();
                let err = refused(Place::open(&root, &root.join("taken"), Expect::File));
                assert!(err.contains("another user (uid 54321)") && err.contains(planted), "{planted}: {err}");
                fs::remove_file(root.join(planted)).unwrap();
            }
            Place::open(&root, &root.join("taken"), Expect::File).unwrap();
        }
    }

    #[test]
    fn a_path_with_controls_is_named_escaped() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        fs::create_dir_all(root.join("bad\x1b[2Jname")).unwrap();
        fs::set_permissions(root.join("bad\x1b[2Jname"), fs::Permissions::from_mode(0o777)).unwrap();
        let err = refused(Place::open(&root, &root.join("bad\x1b[2Jname/x"), Expect::File));
        assert!(!err.contains('\x1b') && err.contains("bad\\u{1b}[2Jname"), "{err}");
    }

    #[test]
    fn only_the_same_inode_is_removed() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("ours"), b"1").unwrap();
        let place = Place::open(&root, &root.join("ours"), Expect::File).unwrap();
        let ours = place.inode(place.name()).unwrap().unwrap();
        fs::rename(root.join("ours"), root.join("kept")).unwrap();
        fs::write(root.join("ours"), b"planted").unwrap();
        place.remove_if_same(place.name(), ours).unwrap();
        assert_eq!(fs::read(root.join("ours")).unwrap(), b"planted");
        fs::rename(root.join("kept"), root.join("ours")).unwrap();
        place.remove_if_same(place.name(), ours).unwrap();
        assert!(!root.join("ours").exists());
    }
}
