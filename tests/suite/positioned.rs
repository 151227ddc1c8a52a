//! File-to-file encrypt and decrypt at known offsets (`stream::positioned`): the same messages and the same
//! plaintext as the streaming path at every size around frame and job boundaries, on one thread and on
//! several; and a message damaged anywhere leaves nothing at the destination.

use std::fs::{self, File};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use kms_envelope::stream::file::PendingFile;
use kms_envelope::stream::positioned::{FileDecryptor, FileError, encrypt_file, encrypt_file_at};
use kms_envelope::{AlgorithmSuite, DecryptOptions, EncryptOptions, Error, RawAesKeyring};

const FRAME: usize = 32;
/// A regular frame on the wire: sequence number, IV, body, tag.
const REGULAR: usize = 4 + 12 + FRAME + 16;

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("positioned", "key", &[0x5a; 32]).unwrap()
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Three frames per job, workers from the first byte (or none).
fn encrypt_options(threads: usize) -> EncryptOptions {
    EncryptOptions::new().frame_length(FRAME as u32).threads(threads).parallel_threshold(0).job_length(3 * FRAME)
}

fn decrypt_options(threads: usize) -> DecryptOptions {
    DecryptOptions::new().threads(threads).parallel_threshold(0).job_length(3 * FRAME)
}

/// Sizes at, around and between frame and job boundaries.
fn sizes() -> Vec<usize> {
    let mut sizes = vec![0, 1, 2];
    for frames in [1, 2, 3, 4, 6, 7, 9, 10, 30] {
        let at = frames * FRAME;
        sizes.extend([at - 1, at, at + 1]);
    }
    sizes
}

fn encrypt_to(dir: &Path, name: &str, pt: &[u8], options: &EncryptOptions) -> Result<Vec<u8>, FileError> {
    let input = dir.join(format!("{name}.in"));
    fs::write(&input, pt).unwrap();
    let destination = dir.join(name);
    let mut pending = PendingFile::create(&destination, true).unwrap();
    let file = File::open(&input).unwrap();
    encrypt_file(&keyring(), options, &file, &mut pending, &|_| {})?;
    pending.commit(false, true).unwrap();
    Ok(fs::read(&destination).unwrap())
}

/// Decrypts `message` from a file into `dir/out` and returns the plaintext, or the error after checking
/// that nothing is at the destination.
fn decrypt_file(dir: &Path, message: &[u8], options: &DecryptOptions) -> Result<Vec<u8>, FileError> {
    let input = dir.join("message");
    fs::write(&input, message).unwrap();
    let destination = dir.join("out");
    let _ = fs::remove_file(&destination);
    let mut pending = PendingFile::create(&destination, false).unwrap();
    let decrypted = FileDecryptor::new(&keyring(), options, File::open(&input).unwrap())
        .map_err(FileError::Input)
        .and_then(|decryptor| decryptor.decrypt_into(&mut pending, &|_| {}));
    match decrypted {
        Ok(_) => {
            pending.commit(false, false).unwrap();
            Ok(fs::read(&destination).unwrap())
        }
        Err(e) => {
            drop(pending);
            assert!(!destination.exists(), "a failed decrypt left {}", destination.display());
            let mut left: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
            left.sort();
            assert_eq!(left, ["message"], "a failed decrypt left something beside its input");
            Err(e)
        }
    }
}

#[test]
fn file_messages_equal_the_streaming_paths_at_every_boundary() {
    let dir = tempfile::tempdir().unwrap();
    for threads in [1, 3] {
        for len in sizes() {
            let pt = plaintext(len);
            let message = encrypt_to(dir.path(), "ct", &pt, &encrypt_options(threads)).unwrap();
            let streamed = kms_envelope::encrypt(&keyring(), &encrypt_options(1), &pt).unwrap();
            assert_eq!(message.len(), streamed.len(), "{len} bytes, {threads} threads");
            // The single-thread streaming decryptor checks every frame's place, length and order.
            let opened = kms_envelope::decrypt(&keyring(), &decrypt_options(1), &message).unwrap();
            assert_eq!(&opened.plaintext[..], &pt[..], "{len} bytes, {threads} threads");

            let work = tempfile::tempdir().unwrap();
            let from_file = decrypt_file(work.path(), &streamed, &decrypt_options(threads)).unwrap();
            assert_eq!(from_file, pt, "{len} bytes, {threads} threads");
        }
    }
}

#[test]
fn signed_messages_go_through_the_streaming_path_into_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let signed = encrypt_options(2).suite(AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384);
    let pt = plaintext(10 * FRAME + 5);
    let message = encrypt_to(dir.path(), "ct", &pt, &signed).unwrap();
    assert_eq!(&kms_envelope::decrypt(&keyring(), &decrypt_options(1), &message).unwrap().plaintext[..], &pt[..]);
    let work = tempfile::tempdir().unwrap();
    assert_eq!(decrypt_file(work.path(), &message, &decrypt_options(2)).unwrap(), pt);
}

#[test]
fn progress_counts_every_input_byte_once() {
    let dir = tempfile::tempdir().unwrap();
    let pt = plaintext(20 * FRAME + 7);
    let input = dir.path().join("pt");
    fs::write(&input, &pt).unwrap();
    let counted = AtomicU64::new(0);
    let count = |n| {
        counted.fetch_add(n, Ordering::Relaxed);
    };
    let mut pending = PendingFile::create(&dir.path().join("ct"), false).unwrap();
    encrypt_file(&keyring(), &encrypt_options(3), &File::open(&input).unwrap(), &mut pending, &count).unwrap();
    pending.commit(false, false).unwrap();
    assert_eq!(counted.swap(0, Ordering::Relaxed), pt.len() as u64);

    let message = fs::read(dir.path().join("ct")).unwrap();
    let decryptor = FileDecryptor::new(&keyring(), &decrypt_options(3), File::open(dir.path().join("ct")).unwrap());
    let decryptor = decryptor.unwrap();
    let header_len = decryptor.header().as_bytes().len();
    let mut pending = PendingFile::create(&dir.path().join("out"), false).unwrap();
    decryptor.decrypt_into(&mut pending, &count).unwrap();
    assert_eq!(counted.load(Ordering::Relaxed), (message.len() - header_len) as u64);
}

/// The message of `frames` regular frames and a short final one, and the length of its header.
fn message_and_header(frames: usize) -> (Vec<u8>, Vec<u8>, usize) {
    let pt = plaintext(frames * FRAME + 5);
    let message = kms_envelope::encrypt(&keyring(), &encrypt_options(1), &pt).unwrap();
    let header_len = message.len() - frames * REGULAR - (4 + 4 + 12 + 4 + 5 + 16);
    (pt, message, header_len)
}

#[test]
fn a_tampered_frame_anywhere_leaves_nothing_at_the_destination() {
    let (_, message, header_len) = message_and_header(12);
    for threads in [1, 3] {
        // A byte of the ciphertext or tag of the first, a middle and the last regular frame, and of the
        // final frame; a sequence number and an IV.
        let body_bytes = [20, 5 * REGULAR + 30, 11 * REGULAR + REGULAR - 1, 12 * REGULAR + 30];
        for at in body_bytes.into_iter().chain([6 * REGULAR + 3, 7 * REGULAR + 8]) {
            let mut bad = message.clone();
            bad[header_len + at] ^= 0x01;
            let dir = tempfile::tempdir().unwrap();
            let err = decrypt_file(dir.path(), &bad, &decrypt_options(threads)).unwrap_err();
            assert!(matches!(err, FileError::Input(_)), "byte {at}, {threads} threads: {err:?}");
        }
        // Two frames swapped.
        let mut swapped = message.clone();
        let (a, b) = (header_len + 4 * REGULAR, header_len + 5 * REGULAR);
        let frame_a = swapped[a..a + REGULAR].to_vec();
        swapped.copy_within(b..b + REGULAR, a);
        swapped[b..b + REGULAR].copy_from_slice(&frame_a);
        let dir = tempfile::tempdir().unwrap();
        let err = decrypt_file(dir.path(), &swapped, &decrypt_options(threads)).unwrap_err().into_inner();
        assert!(matches!(err, Error::Malformed { .. } | Error::FrameAuthentication { .. }), "{err:?}");
    }
}

#[test]
fn a_truncated_or_extended_message_leaves_nothing_at_the_destination() {
    let (_, message, header_len) = message_and_header(12);
    for threads in [1, 3] {
        let body_len = message.len() - header_len;
        // Mid-frame, at a frame boundary, inside the final frame's prefix, one byte short.
        for cut in [7 * REGULAR + 20, 7 * REGULAR, 12 * REGULAR + 3, body_len - 1] {
            let dir = tempfile::tempdir().unwrap();
            let err = decrypt_file(dir.path(), &message[..header_len + cut], &decrypt_options(threads)).unwrap_err();
            let err = err.into_inner();
            assert!(matches!(err, Error::Truncated { .. }), "cut at {cut}, {threads} threads: {err:?}");
        }
        let mut longer = message.clone();
        longer.push(0);
        let dir = tempfile::tempdir().unwrap();
        let err = decrypt_file(dir.path(), &longer, &decrypt_options(threads)).unwrap_err().into_inner();
        assert!(matches!(err, Error::TrailingData { .. }), "{threads} threads: {err:?}");
    }
}

#[cfg(feature = "cli")]
#[test]
fn the_cli_decrypts_files_at_known_offsets_and_leaves_nothing_on_a_bad_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    fs::write(path("wrapping.key"), [0x42u8; 32]).unwrap();
    let pt = plaintext(3 << 20);
    fs::write(path("pt"), &pt).unwrap();
    let raw = ["--raw-key-file", "wrapping.key", "--key-namespace", "ns", "--key-name", "k"];
    let exec = |verb: &str, rest: &[&str]| {
        let mut cmd = assert_cmd::Command::cargo_bin("kms-envelope").unwrap();
        cmd.current_dir(dir.path()).arg(verb).args(raw).args(rest).output().unwrap()
    };
    let out = exec("encrypt", &["--frame-length", "4096", "--no-fsync", "pt", "ct"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = exec("decrypt", &["ct", "back"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(path("back")).unwrap(), pt);

    let mut message = fs::read(path("ct")).unwrap();
    let middle = message.len() / 2;
    message[middle] ^= 0x80;
    fs::write(path("bad"), &message).unwrap();
    let out = exec("decrypt", &["bad", "out"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad:") && stderr.contains("authentication failed"), "{stderr}");
    let mut left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["back", "bad", "ct", "pt", "wrapping.key"]);
}

/// Jobs of several 64 KiB plaintext writes each (the decryptor splits a job's `pwrite`), and a last job
/// that ends inside one of them: the plaintext lands at the right offsets.
#[test]
fn jobs_longer_than_one_plaintext_write_land_whole() {
    let frame = 4096;
    let pt = plaintext(5 * (256 << 10) + 3 * frame + 17);
    let options = EncryptOptions::new().frame_length(frame as u32).threads(1);
    let message = kms_envelope::encrypt(&keyring(), &options, &pt).unwrap();
    for threads in [1, 3] {
        let decrypt = DecryptOptions::new().threads(threads).parallel_threshold(0).job_length(256 << 10);
        let work = tempfile::tempdir().unwrap();
        let from_file = decrypt_file(work.path(), &message, &decrypt).unwrap();
        assert!(from_file == pt, "{threads} threads: the plaintext differs");
    }
}

/// A file that already holds `prefix`, opened for writing (appending when `append`), as `> file` after an
/// earlier write, or `>> file`, would give a command.
fn output_after(path: &Path, prefix: &[u8], append: bool) -> File {
    fs::write(path, prefix).unwrap();
    fs::OpenOptions::new().write(true).append(append).open(path).unwrap()
}

/// Into a file the caller opened (stdout redirected to a file), from an offset on: the message and the
/// plaintext land after what the file held, byte for byte what the streaming path makes of them, at every
/// boundary, on one thread and several; the lengths returned are theirs.
#[test]
fn messages_and_plaintext_land_at_an_offset_in_a_callers_file() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = b"earlier output\n";
    for threads in [1, 3] {
        for len in sizes() {
            let pt = plaintext(len);
            fs::write(dir.path().join("pt"), &pt).unwrap();
            let out = output_after(&dir.path().join("ct"), prefix, false);
            let input = File::open(dir.path().join("pt")).unwrap();
            let at = prefix.len() as u64;
            let written = encrypt_file_at(&keyring(), &encrypt_options(threads), &input, &out, at, &|_| {}).unwrap();
            let file = fs::read(dir.path().join("ct")).unwrap();
            assert_eq!(&file[..prefix.len()], prefix, "{len} bytes, {threads} threads");
            let message = &file[prefix.len()..];
            assert_eq!(written, message.len() as u64, "{len} bytes, {threads} threads");
            let back = kms_envelope::decrypt(&keyring(), &DecryptOptions::new(), message).unwrap();
            assert!(back.plaintext[..] == pt[..], "{len} bytes, {threads} threads: the plaintext differs");

            fs::write(dir.path().join("msg"), message).unwrap();
            let out = output_after(&dir.path().join("back"), prefix, false);
            let message_file = File::open(dir.path().join("msg")).unwrap();
            let decryptor = FileDecryptor::new(&keyring(), &decrypt_options(threads), message_file).unwrap();
            let (_, plain_len) = decryptor.decrypt_into_at(&out, at, &|_| {}).unwrap();
            let file = fs::read(dir.path().join("back")).unwrap();
            assert_eq!(plain_len, len as u64, "{len} bytes, {threads} threads");
            assert!(
                file[..prefix.len()] == prefix[..] && file[prefix.len()..] == pt[..],
                "{len} bytes, {threads} threads"
            );
        }
    }
}

/// A failed decrypt into a caller's file cuts it back to where the plaintext began: no verified frame of a
/// message that failed stays behind (the streaming path would leave the frames before the bad one).
#[test]
fn a_failed_decrypt_at_an_offset_leaves_the_file_as_it_was() {
    let (_, message, header_len) = message_and_header(12);
    let dir = tempfile::tempdir().unwrap();
    let prefix = b"kept";
    for threads in [1, 3] {
        for at in [20, 5 * REGULAR + 30, 12 * REGULAR + 30] {
            let mut bad = message.clone();
            bad[header_len + at] ^= 0x01;
            fs::write(dir.path().join("bad"), &bad).unwrap();
            let out = output_after(&dir.path().join("out"), prefix, false);
            let decryptor =
                FileDecryptor::new(&keyring(), &decrypt_options(threads), File::open(dir.path().join("bad")).unwrap())
                    .unwrap();
            let err = decryptor.decrypt_into_at(&out, prefix.len() as u64, &|_| {}).unwrap_err();
            assert!(matches!(err, FileError::Input(Error::FrameAuthentication { .. })), "byte {at}: {err:?}");
            assert_eq!(fs::read(dir.path().join("out")).unwrap(), prefix, "byte {at}, {threads} threads");
        }
    }
}

/// A failed decrypt into a caller's file over bytes it held past the offset (`1<> file`): what lay between
/// the offset and the old end was written over and cannot come back, but the file is cut back to its old
/// length, so no plaintext of the failed message is left past it.
#[test]
fn a_failed_decrypt_over_a_files_bytes_leaves_no_plaintext_past_its_old_end() {
    let (_, message, header_len) = message_and_header(12);
    let dir = tempfile::tempdir().unwrap();
    let held = [&b"kept"[..], &[b'x'; 2 * FRAME]].concat();
    for threads in [1, 3] {
        for at in [5 * REGULAR + 30, 12 * REGULAR + 30] {
            let mut bad = message.clone();
            bad[header_len + at] ^= 0x01;
            fs::write(dir.path().join("bad"), &bad).unwrap();
            let out = output_after(&dir.path().join("out"), &held, false);
            let decryptor =
                FileDecryptor::new(&keyring(), &decrypt_options(threads), File::open(dir.path().join("bad")).unwrap())
                    .unwrap();
            let err = decryptor.decrypt_into_at(&out, 4, &|_| {}).unwrap_err();
            assert!(matches!(err, FileError::Input(Error::FrameAuthentication { .. })), "byte {at}: {err:?}");
            let file = fs::read(dir.path().join("out")).unwrap();
            assert_eq!(file.len(), held.len(), "byte {at}, {threads} threads: plaintext past the old end");
            assert_eq!(&file[..4], b"kept", "byte {at}, {threads} threads");
        }
    }
}

/// `>>`: Linux puts every positioned write of a file opened for appending at its end, so such a file is
/// refused before anything is written (the CLI streams into it instead).
#[test]
fn a_file_open_for_appending_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let pt = plaintext(10 * FRAME);
    fs::write(dir.path().join("pt"), &pt).unwrap();
    let input = File::open(dir.path().join("pt")).unwrap();
    let out = output_after(&dir.path().join("ct"), b"log", true);
    let err = encrypt_file_at(&keyring(), &encrypt_options(3), &input, &out, 3, &|_| {}).unwrap_err();
    assert!(matches!(err, FileError::Output(Error::Io(_))), "{err:?}");
    assert_eq!(fs::read(dir.path().join("ct")).unwrap(), b"log");

    let message = kms_envelope::encrypt(&keyring(), &encrypt_options(1), &pt).unwrap();
    fs::write(dir.path().join("msg"), &message).unwrap();
    let decryptor =
        FileDecryptor::new(&keyring(), &decrypt_options(3), File::open(dir.path().join("msg")).unwrap()).unwrap();
    let err = decryptor.decrypt_into_at(&out, 3, &|_| {}).unwrap_err();
    assert!(matches!(err, FileError::Output(Error::Io(_))), "{err:?}");
    assert_eq!(fs::read(dir.path().join("ct")).unwrap(), b"log");
}

/// An offset no file position can reach (past `i64::MAX`, up to `u64::MAX`): both calls fail before writing,
/// and the offset arithmetic does not wrap, so no worker's frame lands near the file's start instead.
#[test]
fn an_offset_past_what_a_file_can_hold_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let pt = plaintext(30 * FRAME);
    fs::write(dir.path().join("pt"), &pt).unwrap();
    let message = kms_envelope::encrypt(&keyring(), &encrypt_options(1), &pt).unwrap();
    fs::write(dir.path().join("msg"), &message).unwrap();
    let kept = vec![b'k'; 40 * FRAME];
    for threads in [1, 3] {
        for at in [u64::MAX, u64::MAX - 50, 1 << 63] {
            let what = format!("offset {at}, {threads} threads");
            let out = output_after(&dir.path().join("ct"), &kept, false);
            let input = File::open(dir.path().join("pt")).unwrap();
            let err = encrypt_file_at(&keyring(), &encrypt_options(threads), &input, &out, at, &|_| {}).unwrap_err();
            assert!(matches!(err, FileError::Output(Error::Io(_))), "{what}: {err:?}");
            assert!(fs::read(dir.path().join("ct")).unwrap() == kept, "{what}: the file changed");

            let out = output_after(&dir.path().join("back"), &kept, false);
            let message_file = File::open(dir.path().join("msg")).unwrap();
            let decryptor = FileDecryptor::new(&keyring(), &decrypt_options(threads), message_file).unwrap();
            let err = decryptor.decrypt_into_at(&out, at, &|_| {}).unwrap_err();
            assert!(matches!(err, FileError::Output(Error::Io(_))), "{what}: {err:?}");
            assert!(fs::read(dir.path().join("back")).unwrap() == kept, "{what}: the file changed");
        }
    }
}

/// The input file as the output (the same `File`, or another handle on it): the workers would write over
/// input other workers have not read yet, so both calls refuse it before writing, and the file keeps its bytes.
#[test]
fn the_input_file_as_the_output_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let pt = plaintext(30 * FRAME);
    let message = kms_envelope::encrypt(&keyring(), &encrypt_options(1), &pt).unwrap();
    let open = |name: &str| fs::OpenOptions::new().read(true).write(true).open(dir.path().join(name)).unwrap();
    for threads in [1, 3] {
        for same_handle in [true, false] {
            let what = format!("{threads} threads, same handle {same_handle}");
            fs::write(dir.path().join("pt"), &pt).unwrap();
            let input = open("pt");
            let output = if same_handle { input.try_clone().unwrap() } else { open("pt") };
            let err = encrypt_file_at(&keyring(), &encrypt_options(threads), &input, &output, 0, &|_| {}).unwrap_err();
            assert!(matches!(err, FileError::Output(Error::Io(_))), "{what}: {err:?}");
            assert!(fs::read(dir.path().join("pt")).unwrap() == pt, "{what}: the input changed");

            fs::write(dir.path().join("msg"), &message).unwrap();
            let input = open("msg");
            let output = if same_handle { input.try_clone().unwrap() } else { open("msg") };
            let decryptor = FileDecryptor::new(&keyring(), &decrypt_options(threads), input).unwrap();
            let err = decryptor.decrypt_into_at(&output, 0, &|_| {}).unwrap_err();
            assert!(matches!(err, FileError::Output(Error::Io(_))), "{what}: {err:?}");
            assert!(fs::read(dir.path().join("msg")).unwrap() == message, "{what}: the message changed");
        }
    }
}
