//! Directory bundles: round trip, private modes, and hostile archives that must leave nothing behind.
#![cfg(feature = "bundle")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kms_envelope::OutputOptions;
use kms_envelope::bundle::{decrypt_directory, encrypt_directory};
use kms_envelope::{DecryptOptions, EncryptOptions, Encryptor, Error, RawAesKeyring};

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("bundle", "key", &[0x77; 32]).unwrap()
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn a_directory_round_trips_with_private_modes() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("certs/nested")).unwrap();
    fs::write(src.join("config.json"), br#"{"db":"postgres://x"}"#).unwrap();
    fs::write(src.join("certs/server.pem"), vec![b'p'; 100_000]).unwrap();
    fs::write(src.join("certs/nested/empty"), b"").unwrap();
    fs::set_permissions(src.join("config.json"), fs::Permissions::from_mode(0o644)).unwrap();

    let options = EncryptOptions::new().frame_length(4096);
    let (message, packed) = encrypt_directory(&keyring(), &options, &src, Vec::new()).unwrap();
    assert_eq!((packed.files, packed.directories, packed.bytes), (3, 2, 100_021));

    let out = work.path().join("out");
    let (_, unpacked) =
        decrypt_directory(&keyring(), &DecryptOptions::new(), &message[..], &out, &OutputOptions::new()).unwrap();
    assert_eq!(unpacked.files, 3);
    assert_eq!(fs::read(out.join("config.json")).unwrap(), br#"{"db":"postgres://x"}"#);
    assert_eq!(fs::read(out.join("certs/server.pem")).unwrap().len(), 100_000);
    assert_eq!(fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(fs::metadata(out.join("certs")).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(fs::metadata(out.join("config.json")).unwrap().permissions().mode() & 0o777, 0o600);

    // An existing destination is kept unless overwrite is asked for: a file only it holds is still there after
    // the refusal, and gone once it was replaced.
    fs::write(out.join("only-here"), b"kept").unwrap();
    let err =
        decrypt_directory(&keyring(), &DecryptOptions::new(), &message[..], &out, &OutputOptions::new()).unwrap_err();
    assert!(matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::AlreadyExists), "{err:?}");
    assert_eq!(fs::read(out.join("only-here")).unwrap(), b"kept", "the refused destination was touched");
    decrypt_directory(&keyring(), &DecryptOptions::new(), &message[..], &out, &OutputOptions::new().overwrite(true))
        .unwrap();
    assert!(!out.join("only-here").exists(), "overwrite replaced the destination");
    assert_eq!(leftovers(work.path()).len(), 2, "{:?}", leftovers(work.path()));
}

/// A tar stream with one raw entry whose name and type the test chooses, bypassing the tar crate's checks.
fn hostile_tar(name: &[u8], kind: tar::EntryType, link: Option<&[u8]>) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    }
    header.set_entry_type(kind);
    header.set_mode(0o644);
    let data: &[u8] = if kind == tar::EntryType::Regular { b"pwned" } else { b"" };
    header.set_size(data.len() as u64);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, data).unwrap();
    builder.into_inner().unwrap()
}

fn encrypt_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut enc = Encryptor::new(&keyring(), &EncryptOptions::new(), Vec::new()).unwrap();
    std::io::Write::write_all(&mut enc, bytes).unwrap();
    enc.finish().unwrap()
}

/// An archive entry: raw name, type, link target.
type Entry = (&'static [u8], tar::EntryType, Option<&'static [u8]>);

#[test]
fn hostile_entries_are_refused_and_leave_nothing() {
    let cases: [Entry; 6] = [
        (b"../escape", tar::EntryType::Regular, None),
        (b"a/../../escape", tar::EntryType::Regular, None),
        (b"/etc/evil", tar::EntryType::Regular, None),
        (b"link", tar::EntryType::Symlink, Some(b"/etc/passwd")),
        (b"hard", tar::EntryType::Link, Some(b"/etc/passwd")),
        (b"dev", tar::EntryType::Char, None),
    ];
    let leaves = "leaves the destination";
    let not_unpacked = "only regular files and directories are unpacked";
    let reasons = [leaves, leaves, leaves, not_unpacked, not_unpacked, not_unpacked];
    for ((name, kind, link), reason) in cases.into_iter().zip(reasons) {
        let work = tempfile::tempdir().unwrap();
        let message = encrypt_bytes(&hostile_tar(name, kind, link));
        let out = work.path().join("out");
        let err = decrypt_directory(&keyring(), &DecryptOptions::new(), &message[..], &out, &OutputOptions::new())
            .unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, Error::Bundle(_)), "{}: {err}", String::from_utf8_lossy(name));
        assert!(shown.contains(reason), "{}: {shown}", String::from_utf8_lossy(name));
        assert!(leftovers(work.path()).is_empty(), "{:?}", leftovers(work.path()));
        assert!(!work.path().parent().unwrap().join("escape").exists());
    }
}

#[test]
fn a_tampered_bundle_or_a_symlinked_destination_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("secret"), vec![1u8; 200_000]).unwrap();
    let (mut message, _) =
        encrypt_directory(&keyring(), &EncryptOptions::new().frame_length(4096), &src, Vec::new()).unwrap();
    let last = message.len() - 3;
    message[last] ^= 1;
    let out = work.path().join("out");
    let err =
        decrypt_directory(&keyring(), &DecryptOptions::new(), &message[..], &out, &OutputOptions::new()).unwrap_err();
    assert!(matches!(err, Error::FrameAuthentication { .. }), "{err:?}");
    assert_eq!(leftovers(work.path()), ["src"]);

    let target = work.path().join("elsewhere");
    fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&target, &out).unwrap();
    message[last] ^= 1;
    let err = decrypt_directory(
        &keyring(),
        &DecryptOptions::new(),
        &message[..],
        &out,
        &OutputOptions::new().overwrite(true),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Bundle(_)), "{err}");
    assert!(err.to_string().contains("exists and is not a directory"), "{err}");
    assert!(fs::read_dir(&target).unwrap().next().is_none());
}

#[test]
fn an_entry_that_appears_twice_is_refused_and_leaves_nothing() {
    for second in [tar::EntryType::Regular, tar::EntryType::Directory] {
        let mut builder = tar::Builder::new(Vec::new());
        for kind in [tar::EntryType::Regular, second] {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(0o600);
            let data: &[u8] = if kind == tar::EntryType::Regular { b"twice" } else { b"" };
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, "twice", data).unwrap();
        }
        let message = encrypt_bytes(&builder.into_inner().unwrap());
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out");
        let err = decrypt_directory(&keyring(), &DecryptOptions::new(), &message[..], &out, &OutputOptions::new())
            .unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{second:?}: {err}");
        assert!(leftovers(work.path()).is_empty(), "{:?}", leftovers(work.path()));
    }
}

#[test]
fn more_files_than_stay_unnamed_all_land() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    // More than the unpacker keeps as unnamed files at once (128), in two directories.
    for i in 0..300 {
        fs::write(src.join(format!("f{i:03}")), format!("file {i}")).unwrap();
        fs::write(src.join(format!("d/g{i:03}")), format!("deeper {i}")).unwrap();
    }
    let (message, _) = encrypt_directory(&keyring(), &EncryptOptions::new(), &src, Vec::new()).unwrap();
    let out = work.path().join("out");
    let (_, unpacked) =
        decrypt_directory(&keyring(), &DecryptOptions::new(), &message[..], &out, &OutputOptions::new()).unwrap();
    assert_eq!(unpacked.files, 600);
    for i in 0..300 {
        assert_eq!(fs::read_to_string(out.join(format!("f{i:03}"))).unwrap(), format!("file {i}"));
        assert_eq!(fs::read_to_string(out.join(format!("d/g{i:03}"))).unwrap(), format!("deeper {i}"));
    }
    assert_eq!(fs::metadata(out.join("d/g000")).unwrap().permissions().mode() & 0o777, 0o600);
}

/// A ustar header block of `kind` whose size field says `size`.
fn header_block(name: &str, kind: tar::EntryType, size: u64) -> Vec<u8> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name).unwrap();
    header.set_entry_type(kind);
    header.set_mode(0o600);
    header.set_size(size);
    header.set_cksum();
    header.as_bytes().to_vec()
}

/// `data` padded to whole 512-byte blocks.
fn blocks(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out.resize(data.len().div_ceil(512) * 512, 0);
    out
}

/// A pax record `len key=value\n`, its length counting itself.
fn pax_record(key: &str, value: &str) -> String {
    let rest = format!(" {key}={value}\n");
    let mut len = rest.len() + 1;
    while format!("{len}{rest}").len() != len {
        len = format!("{len}{rest}").len();
    }
    format!("{len}{rest}")
}

/// A reader that counts what was read from it.
struct Counting<'a>(&'a [u8], std::rc::Rc<std::cell::Cell<usize>>);

impl std::io::Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::io::Read::read(&mut self.0, buf)?;
        self.1.set(self.1.get() + n);
        Ok(n)
    }
}

/// The tar reader holds a GNU long name or link, or a pax header, in memory whole, as long as its header
/// says: a bundle with an 8 MiB one is refused at that header, before its body is read.
#[test]
fn oversized_archive_extensions_are_refused_before_they_are_read() {
    let big = 8 << 20;
    for kind in [tar::EntryType::GNULongName, tar::EntryType::GNULongLink, tar::EntryType::XHeader] {
        let mut archive = header_block("ext", kind, big as u64);
        archive.extend(blocks(&vec![b'a'; big]));
        archive.extend(header_block("file", tar::EntryType::Regular, 4));
        archive.extend(blocks(b"data"));
        archive.extend([0; 1024]);
        let work = tempfile::tempdir().unwrap();
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let err = kms_envelope::bundle::unpack_into(Counting(&archive, read.clone()), work.path()).unwrap_err();
        assert!(matches!(&err, Error::Bundle(m) if m.contains("extension")), "{kind:?}: {err}");
        assert!(read.get() < 1 << 20, "{kind:?}: {} bytes read before the refusal", read.get());
        assert!(leftovers(work.path()).is_empty());
    }
}

/// Extensions of ordinary sizes still unpack, and a pax `size` record (which overrides the header's) is
/// followed: the long name after such an entry is found where the tar reader finds it.
#[test]
fn long_names_and_pax_sizes_still_unpack() {
    let long = format!("{}/{}", "d".repeat(150), "f".repeat(200));
    // The entry's data reads as a GNU long-name header of 8 MiB to a parser that misses the pax size.
    let decoy = header_block("decoy", tar::EntryType::GNULongName, 8 << 20);
    let body = &decoy[..32];
    let mut archive = Vec::new();
    let pax = pax_record("size", &body.len().to_string());
    archive.extend(header_block("pax", tar::EntryType::XHeader, pax.len() as u64));
    archive.extend(blocks(pax.as_bytes()));
    // The header says 0 bytes: only the pax record tells where the next header is.
    archive.extend(header_block("sized", tar::EntryType::Regular, 0));
    archive.extend(&decoy);
    let name = format!("{long}\0");
    archive.extend(header_block("././@LongLink", tar::EntryType::GNULongName, name.len() as u64));
    archive.extend(blocks(name.as_bytes()));
    archive.extend(header_block("short", tar::EntryType::Regular, 4));
    archive.extend(blocks(b"data"));
    archive.extend([0; 1024]);
    let work = tempfile::tempdir().unwrap();
    let summary = kms_envelope::bundle::unpack_into(&archive[..], work.path()).unwrap();
    assert_eq!(summary.files, 2);
    assert_eq!(fs::read(work.path().join("sized")).unwrap(), body);
    assert_eq!(fs::read(work.path().join(&long)).unwrap(), b"data");
}

/// The README: "regular files and directories only". A symlink to a file, a symlink to a directory and a
/// FIFO each make packing fail with a Bundle error naming the entry (and a FIFO is never opened, so packing
/// does not block on it).
#[test]
fn symlinks_and_fifos_are_refused_when_packing() {
    use kms_envelope::bundle::pack_directory;
    let work = tempfile::tempdir().unwrap();
    for (case, plant) in [
        (
            "a symlink to a file",
            &(|dir: &Path| std::os::unix::fs::symlink("config.json", dir.join("z"))) as &dyn Fn(&Path) -> _,
        ),
        ("a symlink to a directory", &|dir: &Path| std::os::unix::fs::symlink("certs", dir.join("z"))),
        ("a FIFO", &|dir: &Path| {
            let status = std::process::Command::new("mkfifo").arg(dir.join("z")).status()?;
            assert!(status.success(), "mkfifo");
            Ok(())
        }),
    ] {
        let src = work.path().join(case.replace(' ', "-"));
        fs::create_dir_all(src.join("certs")).unwrap();
        fs::write(src.join("config.json"), b"{}").unwrap();
        plant(&src).unwrap();
        let err = pack_directory(&src, Vec::new()).unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, Error::Bundle(_)), "{case}: {err:?}");
        assert!(shown.contains("symlink or special file") && shown.contains("/z"), "{case}: {shown}");
    }
}

/// The README: "a reproducible tar stream inside: sorted, mtime 0". The same files made in another order,
/// with other mtimes and modes, pack to the same bytes.
#[test]
fn the_same_tree_packs_to_the_same_bytes_whatever_its_order_times_and_modes() {
    use kms_envelope::bundle::pack_directory;
    let work = tempfile::tempdir().unwrap();
    let names = ["b.pem", "a.json", "c/z", "c/y", "d"];
    let make = |dir: &Path, order: &[usize], mtime_s: u64, mode: u32| {
        for &i in order {
            let path = dir.join(names[i]);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, names[i].as_bytes()).unwrap();
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime_s);
            fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    let (first, second) = (work.path().join("first"), work.path().join("second"));
    make(&first, &[0, 1, 2, 3, 4], 1_000_000_000, 0o600);
    make(&second, &[4, 3, 2, 1, 0], 1_700_000_000, 0o644);
    let (mut first_tar, mut second_tar) = (Vec::new(), Vec::new());
    pack_directory(&first, &mut first_tar).unwrap();
    pack_directory(&second, &mut second_tar).unwrap();
    assert!(!first_tar.is_empty());
    assert!(first_tar == second_tar, "the two trees packed to different bytes");
    // The entries come in name order, whatever order they were made in.
    let mut archive = tar::Archive::new(&first_tar[..]);
    let listed: Vec<String> =
        archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(listed, ["a.json", "b.pem", "c", "c/y", "c/z", "d"]);
}
