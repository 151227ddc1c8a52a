//! The seed corpora of every target: messages from our own encryptor and hand-built ones (every suite,
//! framed and non-framed, under the fuzz keyring, plus their truncations at each frame boundary), and the
//! official test-vector ciphertexts listed in `raw-aes-index.tsv` (other keys: they exercise parsing up
//! to the keyring). Written to `<corpus>/<target>/`, overwriting files of the same name.

use std::fs;
use std::path::{Path, PathBuf};

use kms_envelope::format::header::HeaderDecoder;
use kms_envelope::{AlgorithmSuite, DecryptLimits, EncryptionContext};

use crate::{Mutation, craft_message, craft_message_full_final, encrypt, plaintext, reference_messages, segments};

/// Set to a corpus directory, makes any fuzz target binary write the seed corpora there and exit instead
/// of fuzzing (see [`init`](crate::init)): seeding then costs no build of its own.
pub const SEED_ENV: &str = "KMS_ENVELOPE_FUZZ_WRITE_SEEDS";
/// The official test vectors for [`SEED_ENV`] (optional).
pub const VECTORS_ENV: &str = "KMS_ENVELOPE_FUZZ_VECTORS";

/// Seeds are named `seed-*`, apart from what libFuzzer adds (named by content hash).
fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(format!("seed-{name}")), bytes)
        .unwrap_or_else(|e| panic!("writing {}/{name}: {e}", dir.display()));
}

/// ARNs and regions, well-formed and hostile, for the `arn` target.
fn write_arn_seeds(dir: &Path) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let seeds = [
        "us-east-1",
        "eusc-de-east-1",
        "us-isob-east-1",
        "x@127.0.0.1/",
        "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        "arn:aws-cn:kms:cn-north-1:111122223333:alias/my/alias_name-1",
        "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:x@127.0.0.1/:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab\narn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
    ];
    for (i, seed) in seeds.iter().enumerate() {
        write(dir, &format!("arn-{i}"), seed.as_bytes());
    }
}

/// For the `ecdh` target: a provider info, a ciphertext and a SubjectPublicKeyInfo of the right shapes (the
/// point of each SPKI is not on its curve: the fuzzer finds the structure, the AWS-LC check refuses it),
/// each behind the selector byte of its curve and key length.
fn write_ecdh_seeds(dir: &Path) {
    use kms_envelope::EcdhCurve;
    use kms_envelope::format::ecdh::{EcdhProviderInfo, spki_der};
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    for (selector, curve) in EcdhCurve::ALL.into_iter().enumerate() {
        let selector = selector as u8;
        let (recipient, sender) = (vec![2; curve.compressed_len()], vec![3; curve.compressed_len()]);
        let info = EcdhProviderInfo { recipient: &recipient, sender: &sender }.to_bytes();
        write(dir, &format!("ecdh-info-{curve}"), &[&[selector][..], &info].concat());
        let spki = spki_der(curve, &vec![4; 1 + 2 * curve.field_len()]);
        write(dir, &format!("ecdh-spki-{curve}"), &[&[selector][..], &spki].concat());
    }
    // Selector 6: P-256 and 32-byte data keys.
    write(dir, "ecdh-ciphertext", &[&[6u8][..], &[0x33; 112]].concat());
    // Selector 6: a Hierarchical keyring's ciphertext for a 32-byte data key (salt, IV, version, key, tag).
    write(dir, "hierarchy-ciphertext", &[&[6u8][..], &[0x44; 92]].concat());
    write(dir, "hierarchy-version", b"\x06e9ce18a3-edb5-4272-9f86-1cacb7997ff6");
    // Selector 15: P-256, 32-byte data keys, provider id aws-kms-ecdh; the sender key P-256's generator
    // (a valid point), then a ciphertext of the right length (the ECDH decrypt path, feature aws-lc).
    let generator = "036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";
    let generator: Vec<u8> =
        (0..generator.len()).step_by(2).map(|i| u8::from_str_radix(&generator[i..i + 2], 16).unwrap()).collect();
    write(dir, "ecdh-kms-edk", &[&[15u8][..], &generator, &[0x33; 112]].concat());
}

/// Writes every target's seeds under `corpus`; `vectors` is the official test-vector folder, if any.
pub fn write_all(corpus: &Path, vectors: Option<&Path>) {
    write_arn_seeds(&corpus.join("arn"));
    write_ecdh_seeds(&corpus.join("ecdh"));
    let dirs: Vec<PathBuf> =
        ["header", "context", "decrypt", "decrypt_default_limits", "mutate", "mutate_parallel", "range"]
            .iter()
            .map(|t| corpus.join(t))
            .collect();
    for d in &dirs {
        fs::create_dir_all(d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    }
    let [header_dir, context_dir, decrypt_dir, default_dir, mutate_dir, parallel_dir, range_dir] = &dirs[..] else {
        unreachable!()
    };

    // Whole messages: ours (every suite through the encryptor, and hand-built non-framed and
    // empty-final-frame ones), then the official vectors.
    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    for &suite in AlgorithmSuite::ALL {
        for (frame_length, len) in [(1u32, 3usize), (4, 10), (16, 32), (64, 0), (4096, 100)] {
            messages.push((
                format!("ours-{:04x}-f{frame_length}-n{len}", suite.id()),
                encrypt(suite, frame_length, &plaintext(len)),
            ));
        }
        for (frame_length, len) in [(0u32, 0usize), (0, 17), (8, 16)] {
            messages.push((
                format!("crafted-{:04x}-f{frame_length}-n{len}", suite.id()),
                craft_message(suite, frame_length, &plaintext(len)),
            ));
        }
        // Full-length final frames, as the Python ESDK 4.x writes exact multiples.
        for (frame_length, len) in [(4u32, 4usize), (8, 16), (16, 48)] {
            messages.push((
                format!("crafted-full-final-{:04x}-f{frame_length}-n{len}", suite.id()),
                craft_message_full_final(suite, frame_length, &plaintext(len)),
            ));
        }
    }
    let ours = messages.len();
    if let Some(vectors) = &vectors {
        let index = fs::read_to_string(vectors.join("raw-aes-index.tsv"))
            .unwrap_or_else(|e| panic!("reading {}/raw-aes-index.tsv: {e}", vectors.display()));
        let mut lines = index.lines();
        let columns: Vec<&str> = lines.next().expect("a header line").split('\t').collect();
        let col = |name: &str| columns.iter().position(|c| *c == name).unwrap_or_else(|| panic!("no {name} column"));
        let (set, ciphertext) = (col("set"), col("ciphertext"));
        for line in lines.filter(|l| !l.is_empty()) {
            let fields: Vec<&str> = line.split('\t').collect();
            let path = vectors.join(fields[set]).join(fields[ciphertext]);
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let file = Path::new(fields[ciphertext]).file_name().unwrap().to_string_lossy().into_owned();
            messages.push((format!("vector-{}-{file}", fields[set]), bytes));
        }
    }

    for (i, (name, message)) in messages.iter().enumerate() {
        write(decrypt_dir, name, message);
        write(default_dir, name, message);
        let Ok(header) = HeaderDecoder::read_from(DecryptLimits::default(), &mut &message[..]) else {
            panic!("{name}: the seed's header does not decode");
        };
        write(header_dir, name, header.as_bytes());
        // The AAD section: the bytes after the u16 length that follows version, suite and message id.
        let id_end = if message[0] == 1 { 2 + 2 + 16 } else { 1 + 2 + 32 };
        let aad_len = usize::from(u16::from_be_bytes([message[id_end], message[id_end + 1]]));
        write(context_dir, name, &message[id_end + 2..id_end + 2 + aad_len]);
        // Our messages' layout, cut at every segment boundary: truncations for the decrypt targets.
        if i < ours {
            let (segs, _) = segments(message);
            for (j, s) in segs.iter().enumerate().skip(1) {
                write(decrypt_dir, &format!("{name}-cut{j}"), &message[..s.start]);
                write(default_dir, &format!("{name}-cut{j}"), &message[..s.start]);
            }
        }
    }
    let contexts: Vec<EncryptionContext> = vec![
        EncryptionContext::new(),
        [("k", "v")].into_iter().collect(),
        [("a", ""), ("", "b"), ("\u{10000}", "x"), ("\u{FF61}", "y")].into_iter().collect(),
        (0..40).map(|i| (format!("key-{i:02}"), "v".repeat(i))).collect(),
    ];
    for (i, c) in contexts.iter().enumerate() {
        write(context_dir, &format!("built-{i}"), &c.serialize().unwrap());
    }
    write(context_dir, "count-zero", &[0, 0]);

    // Mutation programs over each reference message: none, then one of each kind.
    let refs = reference_messages();
    for (i, r) in refs.iter().enumerate() {
        let frames = r.segments.len() - 2;
        let programs: Vec<(&str, Vec<Mutation>)> = vec![
            ("noop", vec![]),
            ("flip-tag", vec![Mutation::Flip { at: r.segments[0].end - 1, mask: 1 }]),
            ("flip-body", vec![Mutation::Flip { at: r.segments[1].start + 20, mask: 0x40 }]),
            ("truncate-last", vec![Mutation::Truncate { len: r.message.len() - 1 }]),
            ("insert-end", vec![Mutation::Insert { at: r.message.len(), bytes: vec![0] }]),
            ("delete-frame", vec![Mutation::DeleteSegment { segment: 1 }]),
            ("duplicate-frame", vec![Mutation::DuplicateSegment { segment: 1, before: 2 }]),
            ("swap-frames", vec![Mutation::SwapSegments { i: 1, j: frames.max(1) }]),
            ("foreign-frame", vec![Mutation::SpliceForeign { from: i + 1, segment: 1, before: 1 }]),
            ("frame-length", vec![Mutation::SetU32 { at: r.segments[0].end - 16 - 32 - 4, value: 0x00FF_FFFF }]),
            ("swap-ranges", vec![Mutation::SwapRanges { a: r.segments[1].start, a_len: 4, gap: 8, b_len: 4 }]),
        ];
        for (what, program) in programs {
            let mut input = vec![i as u8, (i * 7 % 32) as u8];
            program.iter().for_each(|m| m.encode(&mut input));
            write(mutate_dir, &format!("{}-{what}", r.name), &input);
            // The same programs with other job lengths for the pipeline (high bits of byte 1).
            input[1] = (input[1] % 32) | (((i as u8 * 3) % 8) << 5);
            write(parallel_dir, &format!("{}-{what}", r.name), &input);
            // The same programs read by range: the first byte, the middle, the tail (see `check_range`).
            let len = r.plaintext.len() as u16;
            for (n, (start, end)) in
                [(0u16, 1u16), (len / 2, len / 2 + 3), (len.saturating_sub(2), len)].into_iter().enumerate()
            {
                let mut ranged = [start.to_be_bytes(), end.to_be_bytes()].concat();
                ranged.extend_from_slice(&input);
                write(range_dir, &format!("{}-{what}-{n}", r.name), &ranged);
            }
        }
    }
    for d in &dirs {
        let names: Vec<_> = fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.file_name()).collect();
        let seeds = names.iter().filter(|n| n.to_string_lossy().starts_with("seed-")).count();
        eprintln!("seed: {seeds} seeds in {} ({} files in all)", d.display(), names.len());
    }
}
