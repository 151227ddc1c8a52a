//! `PendingFile`: the temp file behind every decrypted or CLI output, with its background writeback.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use kms_envelope::stream::file::{PendingFile, WRITEBACK_EVERY};

/// Names of this process's threads (Linux).
fn thread_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    dir.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok()).collect()
}

fn writeback_running() -> bool {
    // Linux keeps 15 bytes of a thread name: "kms-envelope-wr(iteback)".
    thread_names().iter().any(|n| n.starts_with("kms-envelope-wr"))
}

/// Whether the writeback thread is gone within a few seconds: after `join` the kernel may list the thread
/// in /proc for a moment longer, so an immediate check would be flaky.
fn writeback_stops() -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while writeback_running() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    true
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn writeback_syncs_in_the_background_and_stops_with_the_file() {
    // In a process of its own, so that no other test's writeback thread is mistaken for this one's.
    crate::common::in_own_process(
        "pending_file::writeback_syncs_in_the_background_and_stops_with_the_file",
        writeback_syncs_in_the_background_and_stops_with_the_file_alone,
    );
}

fn writeback_syncs_in_the_background_and_stops_with_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..WRITEBACK_EVERY as usize + (3 << 20)).map(|i| (i % 249) as u8).collect();

    // Committed: the bytes written through the `Write` impl are all there, with the writeback's syncs
    // merged into the final one.
    let out = dir.path().join("kept");
    let mut pending = PendingFile::create(&out, false).unwrap();
    pending.sync_while_writing();
    if cfg!(target_os = "linux") {
        // A new thread carries its creator's name until it first runs and renames itself.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !writeback_running() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(writeback_running(), "no writeback thread");
    }
    for chunk in data.chunks(1 << 20) {
        pending.write_all(chunk).unwrap();
    }
    pending.commit(true, false).unwrap();
    assert!(writeback_stops(), "the writeback thread outlived the commit");
    assert!(std::fs::read(&out).unwrap() == data);
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(entries(dir.path()), ["kept"]);

    // Dropped: the temp file goes, and so does the thread.
    let mut abandoned = PendingFile::create(&dir.path().join("dropped"), false).unwrap();
    abandoned.sync_while_writing();
    for chunk in data.chunks(1 << 20) {
        abandoned.write_all(chunk).unwrap();
    }
    drop(abandoned);
    assert!(writeback_stops(), "the writeback thread outlived the dropped file");
    assert_eq!(entries(dir.path()), ["kept"]);
}

#[test]
fn decrypt_to_path_removes_stale_partials_of_its_destination_but_not_a_live_writers() {
    use kms_envelope::{DecryptOptions, EncryptOptions, Encryptor, OutputOptions, RawAesKeyring, decrypt_to_path};
    let keyring = RawAesKeyring::new("pending", "key", &[7; 32]).unwrap();
    let mut encryptor = Encryptor::new(&keyring, &EncryptOptions::new(), Vec::new()).unwrap();
    encryptor.write_all(b"verified").unwrap();
    let message = encryptor.finish().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    for name in [".out.Stale1.partial", ".out.Live01.partial", ".other.Stale2.partial"] {
        std::fs::write(path(name), b"unverified plaintext").unwrap();
    }
    // Locked through its own open file description, as by another process's writer.
    let live = std::fs::File::open(path(".out.Live01.partial")).unwrap();
    live.lock().unwrap();
    decrypt_to_path(&keyring, &DecryptOptions::new(), &message[..], &path("out"), &OutputOptions::new().sync(false))
        .unwrap();
    let mut left = entries(dir.path());
    left.sort();
    assert_eq!(left, [".other.Stale2.partial", ".out.Live01.partial", "out"]);
    assert_eq!(std::fs::read(path("out")).unwrap(), b"verified");
}
