//! `--metadata-output`: audit records with the field names and values of `aws-encryption-cli
//! --metadata-output` for the fields both write, compared with its records both ways; and, without the
//! peer, records only for verified messages, stdout refused beside data on stdout, append and overwrite,
//! one line per file of a tree, and JSON that stays valid for hostile context bytes.

use std::fs;
use std::process::{Command, Output};

use serde_json::Value;

use super::{Local, Peers, THEIR_RAW, cat, ok, our_raw, plaintext, run, strs};

/// The records in `text`, one JSON object per line.
fn records(text: &[u8]) -> Vec<Value> {
    String::from_utf8(text.to_vec())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

/// `aws-encryption-cli ARGS` with its metadata kept (`Peers::theirs` suppresses it).
fn theirs_with_metadata(p: &Peers, args: &[&str]) -> Output {
    let mut cmd = Command::new(&p.esdk);
    p.env(&mut cmd);
    cmd.args(args);
    run(cmd, None)
}

/// The header fields both CLIs write, with the same names and encodings.
const SHARED_HEADER: [&str; 7] =
    ["algorithm", "content_type", "encrypted_data_keys", "encryption_context", "frame_length", "message_id", "version"];

/// `record`'s shared header fields, its wrapping keys reduced to what both write (`key_provider`).
fn shared(record: &Value) -> Vec<(String, Value)> {
    let header = &record["header"];
    SHARED_HEADER
        .iter()
        .map(|&field| {
            let mut value = header[field].clone();
            if field == "encrypted_data_keys" {
                value = Value::Array(value.as_array().unwrap().iter().map(|edk| edk["key_provider"].clone()).collect());
            }
            assert!(!value.is_null(), "{field} missing from {record}");
            (field.to_owned(), value)
        })
        .collect()
}

#[test]
fn records_match_theirs_both_ways() {
    let Some(p) = Peers::new() else { return };
    fs::write(p.path("pt"), plaintext(10_000, 4)).unwrap();
    let context = ["-c", "stage=prod", "team=infra"];

    // Theirs encrypts and decrypts with records; ours decrypts the same message with one.
    let args = cat(&[&["-e", "-i", "pt", "-o", "t.ct", "--metadata-output", "theirs.json"], &context, &THEIR_RAW]);
    ok(theirs_with_metadata(&p, &strs(&args)));
    let args = cat(&[&["-d", "-i", "t.ct", "-o", "t.theirs", "--metadata-output", "theirs.json"], &THEIR_RAW]);
    ok(theirs_with_metadata(&p, &strs(&args)));
    let args = cat(&[&["decrypt", "--metadata-output", "ours.json"], &our_raw(), &["t.ct", "t.ours"]]);
    ok(p.ours(&strs(&args), None));
    let theirs = records(&fs::read(p.path("theirs.json")).unwrap());
    let ours = records(&fs::read(p.path("ours.json")).unwrap());
    assert_eq!((theirs.len(), ours.len()), (2, 1), "their CLI appends: one line per run");
    assert_eq!(shared(&ours[0]), shared(&theirs[0]), "their encrypt record and our decrypt record");
    assert_eq!(shared(&ours[0]), shared(&theirs[1]), "their decrypt record and ours");
    assert_eq!(ours[0]["mode"], "decrypt");
    assert_eq!(ours[0]["input"], theirs[1]["input"], "the same absolute path");
    assert_eq!(ours[0]["input"], p.path("t.ct").to_str().unwrap());
    assert_eq!(ours[0]["output"], p.path("t.ours").to_str().unwrap());
    assert_eq!(ours[0]["header"]["encryption_context"]["team"], "infra");

    // Ours encrypts with a record; theirs decrypts with one.
    let args = cat(&[&["encrypt", "--metadata-output", "ours.json", "--overwrite-metadata"], &our_raw()]);
    let args = cat(&[&strs(&args), &["--context", "stage=prod", "--context", "team=infra", "pt", "o.ct"]]);
    ok(p.ours(&strs(&args), None));
    let args = cat(&[&["-d", "-i", "o.ct", "-o", "o.theirs", "--metadata-output", "theirs2.json"], &THEIR_RAW]);
    ok(theirs_with_metadata(&p, &strs(&args)));
    let ours = records(&fs::read(p.path("ours.json")).unwrap());
    let theirs = records(&fs::read(p.path("theirs2.json")).unwrap());
    assert_eq!(ours.len(), 1, "--overwrite-metadata replaced the file");
    assert_eq!(shared(&ours[0]), shared(&theirs[0]), "our encrypt record and their decrypt record");
    assert_eq!((&ours[0]["mode"], &ours[0]["output"]), (&Value::from("encrypt"), &theirs[0]["input"]));
    assert_eq!(ours[0]["input"], p.path("pt").to_str().unwrap());
}

impl Local {
    /// `kms-envelope COMMAND` with the raw key, then `args`.
    fn with_key(&self, command: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        self.ours(&strs(&cat(&[&[command], &our_raw(), args])), stdin)
    }

    fn records(&self, name: &str) -> Vec<Value> {
        records(&fs::read(self.path(name)).unwrap_or_default())
    }
}

/// In the plaintexts below, and never in a record.
const MARKER: &str = "PLAINTEXT-MARKER-7f3a";

#[test]
fn decrypt_records_only_verified_messages() {
    let l = Local::new();
    fs::write(l.path("pt"), format!("{MARKER} {}", "x".repeat(200_000))).unwrap();
    ok(l.with_key("encrypt", &["--frame-length", "4096", "pt", "m"], None));
    let mut tampered = fs::read(l.path("m")).unwrap();
    let last = tampered.len() - 20;
    tampered[last] ^= 1;
    fs::write(l.path("bad"), &tampered).unwrap();
    // To a file and to stdout: the header verifies and the early frames are released to stdout, but the
    // message fails, so it has no record.
    for output in ["out", "-"] {
        let out = l.with_key("decrypt", &["--metadata-output", "audit.json", "bad", output], None);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(l.records("audit.json").is_empty(), "no record for a message that failed (OUTPUT {output})");
    }
    ok(l.with_key("decrypt", &["--metadata-output", "audit.json", "m", "out"], None));
    ok(l.with_key("decrypt", &["--metadata-output", "audit.json", "--force", "m", "out"], None));
    let audit = l.records("audit.json");
    assert_eq!(audit.len(), 2, "appended, one line per run");
    assert_eq!(audit[1]["verified"], true);
    let text = fs::read_to_string(l.path("audit.json")).unwrap();
    assert!(!text.contains(MARKER), "no plaintext in a record");

    // Records on stdout beside data on stdout are refused before anything is read.
    let out = l.with_key("decrypt", &["--metadata-output", "-", "m", "-"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let out = l.with_key("encrypt", &["--metadata-output", "-", "pt", "-"], None);
    assert_eq!(out.status.code(), Some(2));
    // Records on stdout, data to a file: one line on stdout.
    let out = ok(l.with_key("decrypt", &["--metadata-output", "-", "--force", "m", "out"], None));
    assert_eq!(records(&out).len(), 1);
}

#[test]
fn records_for_stdin_stdout_trees_and_hostile_contexts() {
    let l = Local::new();
    // A context that would break a hand-written JSON line or act on a terminal: quotes, backslashes, a
    // newline, an escape sequence, a C1 CSI and a bidirectional override.
    let hostile = "a\"b\\c\nd\u{1b}[31me\u{9b}f\u{202e}g";
    let pair = format!("k{hostile}={hostile}");
    let args = ["--context", &pair, "--metadata-output", "enc.json", "-", "-"];
    let message = ok(l.with_key("encrypt", &args, Some(MARKER.as_bytes())));
    let out = l.with_key("decrypt", &["--metadata-output", "dec.json", "-", "-"], Some(&message));
    assert_eq!(ok(out), MARKER.as_bytes());
    let (enc, dec) = (l.records("enc.json"), l.records("dec.json"));
    for (record, mode) in [(&enc[0], "encrypt"), (&dec[0], "decrypt")] {
        assert_eq!(record["mode"], mode);
        assert_eq!(record["input"], "<stdin>");
        assert_eq!(record["output"], "<stdout>");
        assert_eq!(record["header"]["encryption_context"][format!("k{hostile}")], hostile);
    }
    assert_eq!(enc[0]["header"]["message_id"], dec[0]["header"]["message_id"]);
    let text = fs::read_to_string(l.path("enc.json")).unwrap();
    assert!(!text.chars().any(|c| c.is_control() && c != '\n' || c == '\u{202e}'), "escaped: {text:?}");
    assert_eq!(text.lines().count(), 1);

    // A raw key name (written into the EDK's provider info) that is hostile too.
    let key = ["--raw-key-file", "wrapping.key", "--key-namespace", "ns\u{1b}]0;x\u{7}", "--key-name", hostile];
    let args = cat(&[&["encrypt", "--metadata-output", "key.json"], &key, &["-", "-"]]);
    let message = ok(l.ours(&strs(&args), Some(MARKER.as_bytes())));
    let args = cat(&[&["decrypt", "--metadata-output", "key.json"], &key, &["-", "-"]]);
    assert_eq!(ok(l.ours(&strs(&args), Some(&message))), MARKER.as_bytes());
    let text = fs::read_to_string(l.path("key.json")).unwrap();
    assert!(!text.chars().any(|c| c.is_control() && c != '\n' || c == '\u{202e}'), "escaped: {text:?}");
    for record in records(text.as_bytes()) {
        let edk = &record["header"]["encrypted_data_keys"][0];
        assert_eq!(edk["key_id"], hostile);
        let provider = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            edk["key_provider"]["provider_id"].as_str().unwrap(),
        );
        assert_eq!(provider.unwrap(), "ns\u{1b}]0;x\u{7}".as_bytes());
    }

    // A tree: one record per file, each naming its input and output.
    fs::create_dir_all(l.path("src/sub")).unwrap();
    for name in ["a", "sub/b", "sub/c"] {
        fs::write(l.path(&format!("src/{name}")), name).unwrap();
    }
    ok(l.with_key("encrypt", &["--recursive", "--metadata-output", "tree.json", "src", "enc"], None));
    ok(l.with_key("decrypt", &["--recursive", "--metadata-output", "tree.json", "enc", "dec"], None));
    let records = l.records("tree.json");
    assert_eq!(records.len(), 6);
    for record in &records {
        let (input, output) = (record["input"].as_str().unwrap(), record["output"].as_str().unwrap());
        let plain = if record["mode"] == "encrypt" { input } else { output };
        assert!(fs::read(plain).is_ok() && fs::read(input).is_ok() && fs::read(output).is_ok(), "{record}");
    }
}

#[cfg(unix)]
#[test]
fn records_never_go_to_the_input_the_output_or_a_key_file() {
    let l = Local::new();
    fs::write(l.path("pt"), MARKER).unwrap();
    ok(l.with_key("encrypt", &["pt", "m"], None));
    let key = fs::read(l.path("wrapping.key")).unwrap();
    let message = fs::read(l.path("m")).unwrap();
    std::os::unix::fs::symlink("pt", l.path("pt.link")).unwrap();
    // `--overwrite-metadata` truncates its file before anything is read: the plaintext, the message or
    // the key would be gone. Through another name (a link) too; and a file both would create.
    for (command, records, input, output) in [
        ("encrypt", "pt", "pt", "m2"),
        ("encrypt", "pt.link", "pt", "m2"),
        ("encrypt", "wrapping.key", "pt", "m2"),
        ("encrypt", "new", "pt", "new"),
        ("decrypt", "m", "m", "out"),
        ("decrypt", "out", "m", "out"),
        ("decrypt", "wrapping.key", "m", "out2"),
    ] {
        let args = ["--metadata-output", records, "--overwrite-metadata", input, output];
        let out = l.with_key(command, &args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command} {args:?}: {stderr}");
        assert!(stderr.contains("--metadata-output"), "{stderr}");
        assert_eq!(fs::read(l.path("pt")).unwrap(), MARKER.as_bytes(), "{command} {args:?}");
        assert_eq!(fs::read(l.path("wrapping.key")).unwrap(), key, "{command} {args:?}");
        assert_eq!(fs::read(l.path("m")).unwrap(), message, "{command} {args:?}");
        assert!(!l.path("m2").exists() && !l.path("out2").exists() && !l.path("new").exists());
    }
}
