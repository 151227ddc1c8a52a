//! The mutation suite: messages made by us and by the Python ESDK (0x0478 and 0x0578, several frames) are
//! damaged in every way we can enumerate: every single-byte change, every truncation, frame swaps and
//! duplications, final-frame marker removal, and edits of the header's frame length, content type, EDK count
//! and EDK field lengths. Every case must fail with an error (no panic), and the plaintext handed out
//! before the error must be a prefix of the true plaintext made of whole verified frames.

use crate::common;

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};

use kms_envelope::{
    AlgorithmSuite, DecryptLimits, DecryptOptions, Decryptor, EncryptOptions, Error, Header, RawAesKeyring,
};

const KEY: [u8; 32] = [0x3c; 32];
const FRAME: usize = 128;
const PLAINTEXT_LEN: usize = FRAME * 4 + 57;

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("mutation", "key", &KEY).unwrap()
}

fn plaintext() -> Vec<u8> {
    (0..PLAINTEXT_LEN).map(|i| (i * 7 + 3) as u8).collect()
}

struct Subject {
    name: String,
    message: Vec<u8>,
    header_len: usize,
    edk_count_at: usize,
}

impl Subject {
    fn new(name: String, message: Vec<u8>) -> Self {
        let header = Header::read_from(DecryptLimits::default(), &mut &message[..]).unwrap();
        let header_len = header.as_bytes().len();
        // Version, (v1 type,) suite, message id, AAD length and AAD come before the EDK count.
        let id_end = if message[0] == 1 { 4 + 16 } else { 3 + 32 };
        let aad_len = u16::from_be_bytes([message[id_end], message[id_end + 1]]) as usize;
        Self { name, message, header_len, edk_count_at: id_end + 2 + aad_len }
    }

    /// (start, end) of each frame, the last one being the final frame.
    fn frames(&self) -> Vec<(usize, usize)> {
        let regular = 4 + 12 + FRAME + 16;
        let mut at = self.header_len;
        let mut out = Vec::new();
        loop {
            if self.message[at..at + 4] == [0xff; 4] {
                let len = u32::from_be_bytes(self.message[at + 20..at + 24].try_into().unwrap()) as usize;
                out.push((at, at + 24 + len + 16));
                return out;
            }
            out.push((at, at + regular));
            at += regular;
        }
    }
}

/// Decrypts through the streaming API's `read`; returns the released bytes and the error, or panics on a
/// panic.
fn attempt(message: &[u8]) -> (Vec<u8>, Option<Error>) {
    catch_unwind(AssertUnwindSafe(|| {
        let options = DecryptOptions::new();
        let mut released = Vec::new();
        let mut decryptor = match Decryptor::new(&keyring(), &options, message) {
            Ok(d) => d,
            Err(e) => return (released, Some(e)),
        };
        let mut buf = [0u8; 1000];
        loop {
            match decryptor.read(&mut buf) {
                Ok(0) => return (released, None),
                Ok(n) => released.extend_from_slice(&buf[..n]),
                Err(e) => return (released, Some(Error::from_io(e))),
            }
        }
    }))
    .unwrap_or_else(|_| panic!("decrypt panicked"))
}

/// The same through `Decryptor::write_to`, which writes frames straight from the decryptor's buffers.
fn attempt_write_to(message: &[u8]) -> (Vec<u8>, Option<Error>) {
    catch_unwind(AssertUnwindSafe(|| {
        let mut released = Vec::new();
        let result = Decryptor::new(&keyring(), &DecryptOptions::new(), message)
            .and_then(|mut decryptor| decryptor.write_to(&mut released).map_err(Error::from_io));
        (released, result.err())
    }))
    .unwrap_or_else(|_| panic!("write_to panicked"))
}

/// The same through the one-shot `decrypt_into` on two threads from the first byte (the whole-message path),
/// into a buffer holding an earlier plaintext: the plaintext if it accepted the message, else the error,
/// after checking that nothing is left in the buffer.
fn attempt_whole(message: &[u8]) -> Result<Vec<u8>, Error> {
    catch_unwind(AssertUnwindSafe(|| {
        let options = DecryptOptions::new().threads(2).parallel_threshold(0).job_length(2 * FRAME);
        let mut out = zeroize::Zeroizing::new(plaintext());
        let result = kms_envelope::decrypt_into(&keyring(), &options, message, &mut out);
        assert!(result.is_ok() || out.is_empty(), "decrypt_into left {} bytes after an error", out.len());
        result.map(|_| out.to_vec())
    }))
    .unwrap_or_else(|_| panic!("one-shot decrypt panicked"))
}

#[derive(Default)]
struct Tally {
    cases: usize,
    failures: Vec<String>,
}

impl Tally {
    fn check(&mut self, subject: &Subject, what: &str, mutated: &[u8]) {
        self.cases += 1;
        let (released, err) = attempt(mutated);
        let (written, write_err) = attempt_write_to(mutated);
        let whole = attempt_whole(mutated);
        let pt = plaintext();
        if whole.as_ref().map_err(Error::to_string) != err.as_ref().map_or(Ok(&released), |e| Err(e.to_string())) {
            self.failures.push(format!(
                "{}: {what}: the one-shot decrypt gave {:?}, the stream {} bytes and {err:?}",
                subject.name,
                whole.map(|p| p.len()),
                released.len()
            ));
        } else if written != released || write_err.as_ref().map(Error::to_string) != err.as_ref().map(Error::to_string)
        {
            self.failures.push(format!(
                "{}: {what}: write_to gave {} bytes and {write_err:?}, read {} bytes and {err:?}",
                subject.name,
                written.len(),
                released.len()
            ));
        } else if err.is_none() {
            self.failures.push(format!("{}: {what}: accepted", subject.name));
        } else if !pt.starts_with(&released) || released.len() % FRAME != 0 {
            self.failures.push(format!(
                "{}: {what}: released {} bytes that are not whole verified frames",
                subject.name,
                released.len()
            ));
        } else if released.len() > FRAME * 4 {
            self.failures.push(format!("{}: {what}: released the final frame", subject.name));
        }
    }
}

fn subjects() -> Vec<Subject> {
    let pt = plaintext();
    let mut out = Vec::new();
    for suite in [
        AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
    ] {
        let options = EncryptOptions::new().suite(suite).frame_length(FRAME as u32).context("tenant", "mutation");
        out.push(Subject::new(format!("ours-{suite}"), kms_envelope::encrypt(&keyring(), &options, &pt).unwrap()));
    }
    if let Some(python) = common::python() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("pt");
        std::fs::write(&input, &pt).unwrap();
        let suites = ["0x0478", "0x0578"];
        let ct = |suite: &str| dir.path().join(format!("{suite}.ct"));
        let (input, key, frame) = (input.to_str().unwrap(), common::hex(&KEY), FRAME.to_string());
        // Both encryptions in one peer process: one SDK import instead of two.
        let jobs: Vec<Vec<String>> = suites
            .iter()
            .map(|suite| {
                let ct = ct(suite);
                [
                    "encrypt",
                    "--in",
                    input,
                    "--out",
                    ct.to_str().unwrap(),
                    "--raw-key-hex",
                    &key,
                    "--key-namespace",
                    "mutation",
                    "--key-name",
                    "key",
                    "--suite",
                    suite,
                    "--frame-length",
                    &frame,
                    "--context-json",
                    r#"{"tenant":"mutation"}"#,
                ]
                .map(str::to_owned)
                .to_vec()
            })
            .collect();
        for (suite, result) in suites.into_iter().zip(common::python_batch(&python, &jobs)) {
            result.unwrap_or_else(|err| panic!("Python encrypt failed: {err}"));
            out.push(Subject::new(format!("python-{suite}"), std::fs::read(ct(suite)).unwrap()));
        }
    }
    out
}

#[test]
fn every_mutation_is_rejected_with_only_verified_frames_released() {
    let mut tally = Tally::default();
    let subjects = subjects();
    let subject_count = subjects.len();
    for subject in subjects {
        let m = &subject.message;
        let (released, err) = attempt(m);
        assert!(err.is_none(), "{}: the unmutated message must decrypt: {err:?}", subject.name);
        assert_eq!(released, plaintext(), "{}", subject.name);

        for i in 0..m.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = m.clone();
                bad[i] ^= mask;
                tally.check(&subject, &format!("byte {i} ^ {mask:#04x}"), &bad);
            }
        }
        for cut in 0..m.len() {
            tally.check(&subject, &format!("truncated to {cut}"), &m[..cut]);
        }
        let frames = subject.frames();
        assert_eq!(frames.len(), 5, "{}", subject.name);
        let body_end = frames.last().unwrap().1;
        for i in 0..frames.len() - 2 {
            let (a, b) = (frames[i], frames[i + 1]);
            let mut swapped = m[..a.0].to_vec();
            swapped.extend_from_slice(&m[b.0..b.1]);
            swapped.extend_from_slice(&m[a.0..a.1]);
            swapped.extend_from_slice(&m[b.1..]);
            tally.check(&subject, &format!("frames {} and {} swapped", i + 1, i + 2), &swapped);
        }
        for (i, &(start, end)) in frames.iter().enumerate() {
            let mut duplicated = m[..end].to_vec();
            duplicated.extend_from_slice(&m[start..end]);
            duplicated.extend_from_slice(&m[end..]);
            tally.check(&subject, &format!("frame {} duplicated", i + 1), &duplicated);
        }
        let (final_start, _) = *frames.last().unwrap();
        let mut unmarked = m[..final_start].to_vec();
        unmarked.extend_from_slice(&m[final_start + 4..]);
        tally.check(&subject, "final-frame marker removed", &unmarked);
        let mut trailing = m.clone();
        trailing.push(0);
        tally.check(&subject, "one trailing byte", &trailing);
        let _ = body_end;

        // Header fields, rewritten to values a hostile producer would choose.
        let frame_len_at = subject.header_len - 16 - 32 - 4; // v2: ... frame length, commitment, tag
        let content_type_at = frame_len_at - 1;
        for value in [0u32, 1, FRAME as u32 - 1, FRAME as u32 + 1, 1 << 24, u32::MAX] {
            let mut bad = m.clone();
            bad[frame_len_at..frame_len_at + 4].copy_from_slice(&value.to_be_bytes());
            tally.check(&subject, &format!("frame length {value}"), &bad);
        }
        for value in [0u8, 1, 3, 0xff] {
            let mut bad = m.clone();
            bad[content_type_at] = value;
            tally.check(&subject, &format!("content type {value}"), &bad);
        }
        for value in [0u16, 2, 0xffff] {
            let mut bad = m.clone();
            bad[subject.edk_count_at..subject.edk_count_at + 2].copy_from_slice(&value.to_be_bytes());
            tally.check(&subject, &format!("EDK count {value}"), &bad);
        }
        let mut field_at = subject.edk_count_at + 2;
        for field in ["provider id", "provider info", "ciphertext"] {
            let len = u16::from_be_bytes([m[field_at], m[field_at + 1]]);
            for value in [0u16, len.wrapping_sub(1), len + 1, 0xffff] {
                let mut bad = m.clone();
                bad[field_at..field_at + 2].copy_from_slice(&value.to_be_bytes());
                tally.check(&subject, &format!("EDK {field} length {value}"), &bad);
            }
            field_at += 2 + len as usize;
        }
    }
    eprintln!("mutation suite: {} cases, {} failures", tally.cases, tally.failures.len());
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n"));
    assert!(tally.cases > 4_000 * subject_count, "only {} cases ran for {subject_count} messages", tally.cases);
}
