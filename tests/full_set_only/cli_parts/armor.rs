//! Text armor (`encrypt --armor`, armored input read without a flag): the bytes `aws-encryption-cli --encode`
//! writes and `--decode` reads, both ways; and, without the peer, malformed armor, `--range`, parallel
//! decryption and `inspect` of armored messages.

use std::fs;
use std::process::Output;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{Local, Peers, THEIR_RAW, cat, ok, our_raw, plaintext, strs};

/// What both CLIs write as armor: standard base64 of the whole message, `=` padded, one line, no final newline.
#[track_caller]
fn assert_esdk_armor(text: &[u8], whose: &str) {
    assert!(!text.is_empty(), "{whose}: empty");
    assert!(
        text.iter().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)),
        "{whose}: only the standard alphabet and padding, no newline: {:?}",
        String::from_utf8_lossy(&text[text.len().saturating_sub(8)..])
    );
    let message = STANDARD.decode(text).expect("standard, padded base64");
    assert_eq!(STANDARD.encode(&message).as_bytes(), text, "{whose}: canonical");
    assert!(matches!(message[0], 1 | 2), "{whose}: armor of a binary message");
}

#[test]
fn ours_armored_decodes_with_theirs_and_theirs_encoded_decrypts_with_ours() {
    let Some(p) = Peers::new() else { return };
    for (n, len) in [0usize, 1, 2, 3, 4096, 300_001].into_iter().enumerate() {
        let data = plaintext(len, n as u8);
        fs::write(p.path("pt"), &data).unwrap();
        let (ours, theirs) = (format!("o{n}.b64"), format!("t{n}.b64"));

        // Ours, as a file and on stdout, decrypts with theirs under --decode.
        let args = cat(&[&["encrypt", "--armor", "--frame-length", "1000", "--context", "stage=prod"], &our_raw()]);
        ok(p.ours(&strs(&cat(&[&strs(&args), &["pt", &ours]])), None));
        let text = fs::read(p.path(&ours)).unwrap();
        assert_esdk_armor(&text, "ours");
        let piped = ok(p.ours(&strs(&cat(&[&strs(&args), &["-", "-"]])), Some(&data)));
        assert_esdk_armor(&piped, "ours on stdout");
        for (what, input, stdin) in [("file", ours.as_str(), None), ("stdin", "-", Some(&piped[..]))] {
            let args = cat(&[&["-d", "--decode", "-i", input, "-o", "-", "-c", "stage=prod"], &THEIR_RAW]);
            assert_eq!(
                ok(p.theirs(&strs(&args), stdin)),
                data,
                "ours --armor ({what}) -> theirs --decode, {len} bytes"
            );
        }

        // Theirs under --encode: the same shape, and ours reads it with no flag, from a file and from stdin.
        let args = cat(&[&["-e", "--encode", "-i", "pt", "-o", &theirs, "-c", "stage=prod"], &THEIR_RAW]);
        ok(p.theirs(&strs(&args), None));
        let text = fs::read(p.path(&theirs)).unwrap();
        assert_esdk_armor(&text, "theirs");
        let args = cat(&[&["decrypt", "--context", "stage=prod"], &our_raw(), &[&theirs, "-"]]);
        assert_eq!(ok(p.ours(&strs(&args), None)), data, "theirs --encode -> ours, {len} bytes");
        let args = cat(&[&["decrypt"], &our_raw(), &["-", "-"]]);
        assert_eq!(ok(p.ours(&strs(&args), Some(&text))), data, "theirs --encode -> ours on stdin");
    }

    // Re-encrypted: their armored message to armor of ours, which theirs decodes.
    let args = cat(&[&["reencrypt", "--armor"], &our_raw(), &["--new-raw-key-file", "wrapping.key"]]);
    let args = cat(&[&strs(&args), &["--new-key-namespace", "pipeline-ns", "--new-key-name", "pipeline-key"]]);
    ok(p.ours(&strs(&cat(&[&strs(&args), &["t5.b64", "r.b64"]])), None));
    assert_esdk_armor(&fs::read(p.path("r.b64")).unwrap(), "reencrypt --armor");
    let args = cat(&[&["-d", "--decode", "-i", "r.b64", "-o", "-"], &THEIR_RAW]);
    assert_eq!(ok(p.theirs(&strs(&args), None)), plaintext(300_001, 5), "reencrypted armor -> theirs");
}

impl Local {
    /// `kms-envelope decrypt` of `input` into `output` with the raw key.
    fn decrypt(&self, extra: &[&str], input: &str, output: &str) -> Output {
        self.ours(&strs(&cat(&[&["decrypt"], &our_raw(), extra, &[input, output]])), None)
    }

    /// The armored message of `data` (frames of `frame` bytes) at `name`.
    fn armored(&self, data: &[u8], frame: &str, name: &str) -> Vec<u8> {
        fs::write(self.path("pt"), data).unwrap();
        ok(self
            .ours(&strs(&cat(&[&["encrypt", "--armor", "--frame-length", frame], &our_raw(), &["pt", name]])), None));
        fs::read(self.path(name)).unwrap()
    }
}

#[track_caller]
fn refused(out: &Output, code: i32, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(says), "{stderr}");
}

#[test]
fn malformed_armor_is_refused_and_leaves_no_output() {
    let l = Local::new();
    let text = l.armored(&plaintext(10_000, 1), "4096", "m.b64");
    // A byte that is not base64 (a URL-safe '-'), at a known offset inside the body.
    let mut bad = text.clone();
    bad[100] = b'-';
    // Cut inside a 4-character group, and cut at a group boundary (then the message itself is cut short).
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("bad char", bad, "malformed base64 armor at byte 100 of the text: byte 0x2D is not standard base64"),
        ("cut in a group", text[..text.len() - 1].to_vec(), "the text ends inside a 4-character group"),
        ("cut at a group", text[..text.len() - 8].to_vec(), "truncated"),
        // After a padded last group the text must end; after an unpadded one the bytes follow the message.
        (
            "text after the end",
            [&text[..], b"QUJD"].concat(),
            if text.ends_with(b"=") { "text after the padded last group" } else { "trailing data" },
        ),
    ];
    for (what, armor, says) in cases {
        fs::write(l.path("bad.b64"), &armor).unwrap();
        let out = l.decrypt(&[], "bad.b64", "out");
        refused(&out, 1, says);
        assert!(!l.path("out").exists(), "{what}: nothing left at OUTPUT");
        let out = l.ours(&strs(&cat(&[&["decrypt"], &our_raw(), &["-", "-"]])), Some(&armor));
        assert_eq!(out.status.code(), Some(1), "{what} on stdin: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Wrapped at 76 columns with a final newline (what `base64` writes) and indented: whitespace is skipped.
    let wrapped: Vec<u8> = text.chunks(76).flat_map(|line| [b"  ", line, b"\n"].concat()).collect();
    fs::write(l.path("wrapped.b64"), wrapped).unwrap();
    ok(l.decrypt(&[], "wrapped.b64", "unwrapped"));
    assert_eq!(fs::read(l.path("unwrapped")).unwrap(), plaintext(10_000, 1));
}

#[test]
fn armored_input_takes_the_sequential_path_and_refuses_range() {
    let l = Local::new();
    // 3 MB in 4 KiB frames: past the parallel threshold, so the frames are opened on several threads.
    let data = plaintext(3_000_000, 2);
    l.armored(&data, "4096", "big.b64");
    for threads in ["1", "4"] {
        let out = format!("big.{threads}");
        ok(l.decrypt(&["--threads", threads], "big.b64", &out));
        assert_eq!(fs::read(l.path(&out)).unwrap(), data, "--threads {threads}");
    }
    let out = l.decrypt(&["--range", "10-20"], "big.b64", "range");
    refused(&out, 2, "--range reads the binary message at known offsets, and this is base64 armor");
    assert!(!l.path("range").exists());
    // The same message in binary takes the range.
    let binary = STANDARD.decode(fs::read(l.path("big.b64")).unwrap()).unwrap();
    fs::write(l.path("big.bin"), binary).unwrap();
    ok(l.decrypt(&["--range", "10-20"], "big.bin", "range"));
    assert_eq!(fs::read(l.path("range")).unwrap(), data[10..=20]);
}

#[test]
fn inspect_and_reencrypt_read_armor() {
    let l = Local::new();
    let text = l.armored(&plaintext(5000, 3), "1000", "m.b64");
    fs::write(l.path("m.bin"), STANDARD.decode(&text).unwrap()).unwrap();
    let armored = String::from_utf8(ok(l.ours(&["inspect", "--json", "m.b64"], None))).unwrap();
    let binary = String::from_utf8(ok(l.ours(&["inspect", "--json", "m.bin"], None))).unwrap();
    // The same header; the layout (from the file's length) only for the binary file.
    assert!(binary.contains(r#","layout":{"plaintext_length":5000"#), "{binary}");
    assert_eq!(armored.trim_end(), format!("{}}}", &binary[..binary.find(r#","layout""#).unwrap()]));
    let piped = String::from_utf8(ok(l.ours(&["inspect", "-"], Some(&text)))).unwrap();
    assert!(piped.contains("format version:     2"), "{piped}");

    // In place, an armored file stays armored; to OUTPUT, binary unless --armor.
    let new_key = ["--new-raw-key-file", "wrapping.key", "--new-key-namespace", "ns2", "--new-key-name", "k2"];
    ok(l.ours(&strs(&cat(&[&["reencrypt", "--in-place"], &our_raw(), &new_key, &["m.b64"]])), None));
    let rotated = fs::read(l.path("m.b64")).unwrap();
    assert_esdk_armor(&rotated, "reencrypt --in-place of armor");
    assert_ne!(rotated, text);
    ok(l.ours(&strs(&cat(&[&["reencrypt"], &our_raw(), &new_key, &["m.bin", "m2.bin"]])), None));
    assert!(matches!(fs::read(l.path("m2.bin")).unwrap()[0], 1 | 2), "binary to binary");
    let new_raw = ["--raw-key-file", "wrapping.key", "--key-namespace", "ns2", "--key-name", "k2"];
    let out = l.ours(&strs(&cat(&[&["decrypt"], &new_raw, &["m.b64", "-"]])), None);
    assert_eq!(ok(out), plaintext(5000, 3), "the rotated armor decrypts under the new key");
}
