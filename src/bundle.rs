//! Directory bundles: a directory packed as a tar stream inside one message, and unpacked so that nothing
//! appears at the destination until the whole message verified.
//!
//! Packing is reproducible (sorted entries, mtime 0, uid/gid 0) and refuses symlinks and special files.
//! Unpacking writes into a fresh 0700 staging directory beside the destination, with 0600 files and 0700
//! directories whatever the archive says, rejects absolute paths, `..`, links and devices, and renames the
//! staging directory into place only after the decryptor reached the verified end of the message. On Linux
//! the files themselves have no name until then (`O_TMPFILE`), so a process killed mid-unpack leaves no
//! plaintext behind; its empty staging directory (locked while it lived) is removed by the next unpack to
//! the same destination.

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::escape::clipped;
use crate::format::header::Header;
use crate::keyring::Keyring;
#[cfg(target_os = "linux")]
use crate::stream::file::unnamed::UnnamedFile;
use crate::stream::file::{
    LOCK_ATTEMPTS, OutputOptions, check_directory, lock_in_place, remove_stale_partials, staging_place,
};
use crate::stream::{DecryptOptions, Decryptor, EncryptOptions, Encryptor};

/// What a pack or unpack handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BundleSummary {
    /// Regular files.
    pub files: u64,
    /// Directories, not counting the root.
    pub directories: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

fn bundle_error(what: impl Into<String>) -> Error {
    Error::Bundle(what.into())
}

/// Writes `dir` as a tar stream to `out`.
///
/// # Errors
///
/// [`Error::Bundle`] when `dir` is not a directory or holds a symlink or special file; [`Error::Io`] when
/// reading `dir` or writing `out` fails.
pub fn pack_directory(dir: &Path, out: impl Write) -> Result<BundleSummary> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(bundle_error(format!("{} is not a directory", dir.display())));
    }
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Deterministic);
    let mut summary = BundleSummary::default();
    pack_into(&mut builder, dir, Path::new(""), &mut summary)?;
    builder.into_inner()?.flush()?;
    Ok(summary)
}

fn pack_into<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    relative: &Path,
    summary: &mut BundleSummary,
) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(root.join(relative))?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = relative.join(entry.file_name());
        let file_type = entry.file_type()?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if file_type.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o700);
            header.set_size(0);
            builder.append_data(&mut header, &name, io::empty())?;
            summary.directories += 1;
            pack_into(builder, root, &name, summary)?;
        } else if file_type.is_file() {
            let file = File::open(entry.path())?;
            let len = file.metadata()?.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o600);
            header.set_size(len);
            // `take` guards against a file that grows while it is packed: the header promised `len` bytes.
            builder.append_data(&mut header, &name, file.take(len))?;
            summary.files += 1;
            summary.bytes += len;
        } else {
            return Err(bundle_error(format!(
                "{} is a symlink or special file; bundles hold only regular files and directories",
                entry.path().display()
            )));
        }
    }
    Ok(())
}

/// Packs `dir` and encrypts it into one message written to `out`; returns `out` and what was packed.
/// [`decrypt_directory`] (or `kms-envelope unbundle`, or the Lambda decryptor) reverses it; see there for
/// an example.
///
/// # Errors
///
/// `dir` is not a directory or holds a symlink or special file ([`Error::Bundle`]), an I/O error, or the
/// keyring fails to make a data key.
pub fn encrypt_directory<W: Write>(
    keyring: &dyn Keyring,
    options: &EncryptOptions,
    dir: &Path,
    out: W,
) -> Result<(W, BundleSummary)> {
    let mut encryptor = Encryptor::new(keyring, options, out)?;
    let summary = pack_directory(dir, &mut encryptor)?;
    Ok((encryptor.finish()?, summary))
}

/// The path of an archive entry below the unpack root, or why it is refused.
fn safe_relative(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(bundle_error(format!("entry {} leaves the destination", clipped(&path.to_string_lossy()))));
            }
        }
    }
    Ok(out)
}

fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// The decrypted bytes the tar reader consumed, and the input's own failure if it had one: the tar crate's
/// errors quote the bytes they could not parse (a `.env` file unbundled by mistake puts its passwords in
/// the error), so every error the reader raises is replaced by [`not_a_bundle`] unless it is the input's.
#[derive(Default)]
struct ReadState {
    offset: u64,
    input_failure: Option<io::Error>,
    headers: HeaderWatch,
}

/// The longest GNU long name or link, or pax header, unpacked. The tar reader holds each such entry in
/// memory whole, as long as its header says, before the entry it describes: the limit keeps a message from
/// choosing that allocation. Far above `PATH_MAX` (4,096 on Linux), which no unpacked path can exceed.
const MAX_EXTENSION_LEN: u64 = 64 << 10;

/// Follows the tar headers in the bytes the tar reader consumes (it reads the stream strictly in order,
/// skipping by reading), to refuse an oversized extension entry at its header, before any of it is
/// buffered. Sizes are read as the tar reader reads them, a pax `size` record included, so both agree on
/// where each header is.
struct HeaderWatch {
    /// Bytes seen so far.
    offset: u64,
    /// Where the next header starts.
    next_header: u64,
    header: Zeroizing<[u8; 512]>,
    /// A pax header's body being collected (it may override the next entry's size), and its length.
    pax: Option<(Zeroizing<Vec<u8>>, usize)>,
    /// The `size` record of the last pax header, for the next entry that is not an extension.
    pax_size: Option<u64>,
    /// End of archive, or a header the tar reader itself will refuse: nothing more to follow.
    done: bool,
}

impl Default for HeaderWatch {
    fn default() -> Self {
        Self { offset: 0, next_header: 0, header: Zeroizing::new([0; 512]), pax: None, pax_size: None, done: false }
    }
}

impl HeaderWatch {
    fn feed(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() && !self.done {
            let header_end = self.next_header + 512;
            let n = if self.offset < self.next_header {
                let n = data.len().min(usize::try_from(self.next_header - self.offset).unwrap_or(usize::MAX));
                if let Some((body, len)) = &mut self.pax {
                    let room = *len - body.len();
                    body.extend_from_slice(&data[..n.min(room)]);
                }
                n
            } else {
                let at = (self.offset - self.next_header) as usize;
                let n = data.len().min(512 - at);
                self.header[at..at + n].copy_from_slice(&data[..n]);
                n
            };
            self.offset += n as u64;
            data = &data[n..];
            if self.offset == header_end {
                self.on_header()?;
            }
        }
        Ok(())
    }

    fn on_header(&mut self) -> Result<()> {
        if let Some((body, _)) = self.pax.take() {
            self.pax_size = pax_size(&body);
        }
        if self.header.iter().all(|&b| b == 0) {
            self.done = true;
            return Ok(());
        }
        let header = tar::Header::from_byte_slice(&self.header[..]);
        let Ok(mut size) = header.entry_size() else {
            self.done = true;
            return Ok(());
        };
        let kind = header.entry_type();
        if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions() {
            if size > MAX_EXTENSION_LEN {
                return Err(bundle_error(format!(
                    "an archive extension entry ({kind:?}) of {size} bytes, over the {MAX_EXTENSION_LEN} unpacked"
                )));
            }
            if kind.is_pax_local_extensions() {
                let len = size as usize;
                self.pax = Some((Zeroizing::new(Vec::with_capacity(len)), len));
            }
        } else if !kind.is_pax_global_extensions()
            && let Some(pax_size) = self.pax_size.take()
        {
            size = pax_size;
        }
        match size.checked_add(511).and_then(|padded| self.offset.checked_add(padded & !511)) {
            Some(next) => self.next_header = next,
            None => self.done = true,
        }
        Ok(())
    }
}

/// The `size` record of a pax header, as the tar reader reads it.
fn pax_size(body: &[u8]) -> Option<u64> {
    for extension in tar::PaxExtensions::new(body) {
        let extension = extension.ok()?;
        if extension.key() == Ok("size") {
            return extension.value().ok()?.parse().ok();
        }
    }
    None
}

struct TrackedReader<R> {
    inner: R,
    state: Rc<RefCell<ReadState>>,
}

impl<R: Read> Read for TrackedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                let mut state = self.state.borrow_mut();
                state.offset += n as u64;
                if let Err(refused) = state.headers.feed(&buf[..n]) {
                    state.input_failure = Some(io::Error::other(refused));
                    return Err(io::Error::other("the archive was refused"));
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.state.borrow_mut().input_failure = Some(e);
                Err(io::Error::new(kind, "the decrypted stream failed"))
            }
        }
    }
}

/// The one error for a decrypted stream the tar reader cannot parse. It must not include the reader's own
/// message: that quotes the decrypted bytes.
fn not_a_bundle(offset: u64) -> Error {
    bundle_error(format!("the decrypted message is not a kms-envelope bundle (tar): byte offset {offset}"))
}

/// Turns an error the tar reader returned into ours: the input's failure (a decryptor error, a read
/// error) when there was one, and otherwise [`not_a_bundle`] at the offset reached.
fn reader_error(state: &RefCell<ReadState>, _quotes_plaintext: io::Error) -> Error {
    let mut state = state.borrow_mut();
    match state.input_failure.take() {
        Some(failure) => Error::from_io(failure),
        None => not_a_bundle(state.offset),
    }
}

/// Unpacks a tar stream into `root`, an empty directory this process created. On Linux the files get
/// their names only once `input` reached its end (for a [`Decryptor`], once the whole message verified),
/// up to 128 at a time.
///
/// # Errors
///
/// [`Error::Bundle`] when the stream is not a tar archive (the message names a byte offset, never the
/// bytes), an entry leaves `root` (`..`, an absolute path) or appears twice, an entry is neither a regular
/// file nor a directory, or non-zero data follows the end of the archive; the error `input` itself raised
/// (for a [`Decryptor`], its authentication or format error); [`Error::Io`] when writing under `root` fails.
pub fn unpack_into(input: impl Read, root: &Path) -> Result<BundleSummary> {
    let state = Rc::new(RefCell::new(ReadState::default()));
    let mut archive = tar::Archive::new(TrackedReader { inner: input, state: state.clone() });
    let mut summary = BundleSummary::default();
    #[cfg(target_os = "linux")]
    let mut unnamed = Vec::new();
    for entry in archive.entries().map_err(|e| reader_error(&state, e))? {
        let mut entry = entry.map_err(|e| reader_error(&state, e))?;
        let relative = safe_relative(&entry.path().map_err(|e| reader_error(&state, e))?)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = root.join(&relative);
        // Parents come from this archive, inside a directory only we write to, so they cannot be links.
        let mut dir = root.to_path_buf();
        for part in relative.parent().into_iter().flat_map(Path::components) {
            dir.push(part);
            if !dir.is_dir() {
                create_private_dir(&dir)?;
                summary.directories += 1;
            }
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                if !target.is_dir() {
                    create_private_dir(&target)?;
                    summary.directories += 1;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                #[cfg(target_os = "linux")]
                if let Some(mut file) = create_unnamed(&dir, &mut unnamed)? {
                    summary.bytes += copy_entry(&mut entry, file.file_mut(), &state)?;
                    summary.files += 1;
                    unnamed.push((file, relative));
                    if unnamed.len() >= MAX_UNNAMED {
                        link_unnamed(&mut unnamed)?;
                    }
                    continue;
                }
                let mut options = OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&target).map_err(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        bundle_error(format!("entry {} appears twice", clipped(&relative.to_string_lossy())))
                    } else {
                        Error::Io(e)
                    }
                })?;
                summary.bytes += copy_entry(&mut entry, &mut file, &state)?;
                summary.files += 1;
            }
            other => {
                return Err(bundle_error(format!(
                    "entry {} is a {other:?}; only regular files and directories are unpacked",
                    clipped(&relative.to_string_lossy())
                )));
            }
        }
    }
    // Whatever follows the end-of-archive marker must still be read, so that the decryptor verifies the
    // rest of the message; it may only be zero padding.
    let mut rest = archive.into_inner();
    let mut buf = [0u8; 8192];
    loop {
        let n = rest.read(&mut buf).map_err(|e| reader_error(&state, e))?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(bundle_error("data after the end of the archive"));
        }
    }
    // The input reached its end: for a decryptor, the whole message verified.
    #[cfg(target_os = "linux")]
    link_unnamed(&mut unnamed)?;
    Ok(summary)
}

/// How many unpacked files stay unnamed (two descriptors each: the file and its directory) until the input
/// verified; past that, or when the process runs out of descriptors, they are named in the staging
/// directory, which the next run cleans up if this process is killed. Lambda allows 1,024 descriptors.
#[cfg(target_os = "linux")]
const MAX_UNNAMED: usize = 128;

/// An unnamed file in `dir`; when this process is out of descriptors, the files held so far are named
/// first, which frees theirs.
#[cfg(target_os = "linux")]
fn create_unnamed(dir: &Path, unnamed: &mut Vec<(UnnamedFile, PathBuf)>) -> Result<Option<UnnamedFile>> {
    let out_of_descriptors = rustix::io::Errno::MFILE.raw_os_error();
    match UnnamedFile::create_in(dir) {
        Err(e) if e.raw_os_error() == Some(out_of_descriptors) && !unnamed.is_empty() => {
            link_unnamed(unnamed)?;
            Ok(UnnamedFile::create_in(dir)?)
        }
        created => Ok(created?),
    }
}

/// Gives the unnamed files their names in the staging tree, in archive order.
#[cfg(target_os = "linux")]
fn link_unnamed(unnamed: &mut Vec<(UnnamedFile, PathBuf)>) -> Result<()> {
    for (file, relative) in unnamed.drain(..) {
        let name = relative.file_name().unwrap_or_default();
        file.link_as(name).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                bundle_error(format!("entry {} appears twice", clipped(&relative.to_string_lossy())))
            } else {
                Error::Io(e)
            }
        })?;
    }
    Ok(())
}

/// Copies one entry's content, telling the reader's errors (sanitized) from the file's (plain I/O).
fn copy_entry(entry: &mut impl Read, file: &mut File, state: &RefCell<ReadState>) -> Result<u64> {
    let mut buf = Zeroizing::new(vec![0u8; 64 << 10]);
    let mut copied = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(reader_error(state, e)),
        };
        file.write_all(&buf[..n])?;
        copied += n as u64;
    }
}

/// Decrypts a directory bundle into `destination`, which appears (0700, files 0600) only after the whole
/// message verified. An existing destination directory is replaced only with [`OutputOptions::overwrite`];
/// a symlink or a non-directory there is an error. On any error nothing new is left behind. The unpacked
/// files are not flushed to disk: [`OutputOptions::sync`] applies to single files only.
///
/// # Errors
///
/// The destination is refused (see above), the message fails to decrypt or verify, the archive holds an
/// entry this crate refuses ([`Error::Bundle`]), or an I/O error.
///
/// ```
/// use kms_envelope::bundle::{decrypt_directory, encrypt_directory};
/// use kms_envelope::{DecryptOptions, EncryptOptions, OutputOptions, RawAesKeyring};
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let keyring = RawAesKeyring::new("deploy", "bundle-key-1", &[0x42; 32])?;
///     let work = tempfile::tempdir()?;
///     let secrets = work.path().join("secrets");
///     std::fs::create_dir(&secrets)?;
///     std::fs::write(secrets.join("db.env"), "DB_PASSWORD=hunter2\n")?;
///
///     let options = EncryptOptions::new().context("app", "billing");
///     let (message, summary) = encrypt_directory(&keyring, &options, &secrets, Vec::new())?;
///     assert_eq!(summary.files, 1);
///
///     let restored = work.path().join("restored");
///     let options = DecryptOptions::new().context("app", "billing");
///     decrypt_directory(&keyring, &options, &message[..], &restored, &OutputOptions::new())?;
///     assert_eq!(std::fs::read(restored.join("db.env"))?, b"DB_PASSWORD=hunter2\n");
///     Ok(())
/// }
/// ```
pub fn decrypt_directory(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    input: impl Read,
    destination: &Path,
    output: &OutputOptions,
) -> Result<(Header, BundleSummary)> {
    check_directory_destination(destination, output.overwrites())?;
    let decryptor = Decryptor::new(keyring, options, input)?;
    unpack_verified(decryptor, destination, output)
}

fn check_directory_destination(destination: &Path, overwrite: bool) -> Result<()> {
    match fs::symlink_metadata(destination) {
        Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
            Err(bundle_error(format!("{} exists and is not a directory", destination.display())))
        }
        Ok(_) if !overwrite => Err(Error::Io(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", destination.display()),
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(e)),
    }
}

/// Unpacks the bundle a decryptor (header already authenticated) yields into `destination`, staged and
/// renamed into place only once the decryptor reached the verified end of the message.
///
/// # Errors
///
/// [`Error::Bundle`] when `destination` exists and is not a directory, or as [`unpack_into`] says;
/// [`Error::Io`] of kind `AlreadyExists` when `destination` exists and `output` does not allow overwriting,
/// and any other I/O error while staging or renaming; [`Error::Truncated`] when the tar archive ended but the
/// message did not; the decryptor's own errors ([`Error::FrameAuthentication`], [`Error::Truncated`],
/// [`Error::SignatureVerification`], ...).
pub fn unpack_verified<R: Read>(
    mut decryptor: Decryptor<R>,
    destination: &Path,
    output: &OutputOptions,
) -> Result<(Header, BundleSummary)> {
    let overwrite = output.overwrites();
    check_directory_destination(destination, overwrite)?;
    let (parent, prefix) = staging_place(destination);
    check_directory(parent)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".partial");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    remove_stale_partials(destination);
    let mut staged = None;
    for _ in 0..LOCK_ATTEMPTS {
        let staging = builder.tempdir_in(parent)?;
        // Locked while this process lives, so that another run's cleanup leaves it alone.
        let lock = File::open(staging.path())?;
        if lock_in_place(staging.path(), &lock)? {
            staged = Some((staging, lock));
            break;
        }
    }
    let Some((staging, _staging_lock)) = staged else {
        return Err(Error::Io(io::Error::other(format!(
            "{}: another process keeps removing this output's staging directory",
            destination.display()
        ))));
    };

    let summary = unpack_into(&mut decryptor, staging.path())?;
    if !decryptor.is_complete() {
        return Err(Error::Truncated { offset: 0, section: "bundle" });
    }
    let header = decryptor.header().clone();

    // A directory cannot be renamed over a non-empty one: move the old one aside first, and put it back
    // if the new one cannot take its place. `staging` still owns (and on error removes) the new tree.
    let mut _replaced_lock = None;
    let replaced = if destination.exists() {
        // Locked (best effort) before it gets a name the cleanup matches, so that no other run removes it
        // while it may still have to be put back.
        _replaced_lock = File::open(destination).ok().filter(|f| f.try_lock().is_ok());
        let old = parent.join(format!("{prefix}{}.old", header.message_id()));
        fs::rename(destination, &old)?;
        Some(old)
    } else {
        None
    };
    if let Err(e) = fs::rename(staging.path(), destination) {
        if let Some(old) = &replaced {
            let _ = fs::rename(old, destination);
        }
        return Err(Error::Io(e));
    }
    // Renamed away: nothing is left at the staging path for the guard to remove.
    let _ = staging.keep();
    if let Some(old) = replaced {
        fs::remove_dir_all(old)?;
    }
    Ok((header, summary))
}
