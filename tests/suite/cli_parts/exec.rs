//! `kms-envelope exec`: secrets messages into a command's environment, the command executed in our place.

use std::fs;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;

use super::{Scratch, args, expect, raw};

/// A value no stderr may ever show.
const MARKER: &str = "hunter2-exec-marker";

impl Scratch {
    /// `plaintext` encrypted under the scratch's raw key into `name`.
    fn secrets(&self, name: &str, plaintext: &str) {
        self.write("plain.tmp", plaintext.as_bytes());
        expect(self.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["plain.tmp", name]])), 0);
        fs::remove_file(self.path("plain.tmp")).unwrap();
    }

    /// `kms-envelope exec` with the raw key, `secrets` and `command` after `--`, with no `DB_*` or `API_*`
    /// variables from outside.
    fn exec(&self, options: &[&str], secrets: &[&str], command: &[&str]) -> assert_cmd::Command {
        let mut cmd = self.cmd();
        cmd.args(args(&[&["exec"], &raw("wrapping.key"), options, secrets, &["--"], command]));
        for var in ["DB_PASSWORD", "API_KEY", "REGION"] {
            cmd.env_remove(var);
        }
        cmd
    }
}

/// The value of `name` in `env`'s output.
fn var<'a>(env: &'a str, name: &str) -> Option<&'a str> {
    env.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
}

#[test]
fn the_command_sees_the_secrets_and_a_later_file_overrides_an_earlier_one() {
    let s = Scratch::new();
    s.secrets("app.json.esdk", &format!(r#"{{"DB_PASSWORD": "{MARKER}", "API_KEY": "from-json"}}"#));
    s.secrets("local.env.esdk", "# overrides for this host\nexport API_KEY='from dotenv'\nREGION=eu-west-1\n");
    let (stdout, _) = expect(&mut s.exec(&[], &["app.json.esdk", "local.env.esdk"], &["env"]), 0);
    let env = String::from_utf8(stdout).unwrap();
    assert_eq!(var(&env, "DB_PASSWORD"), Some(MARKER));
    assert_eq!(var(&env, "API_KEY"), Some("from dotenv"));
    assert_eq!(var(&env, "REGION"), Some("eu-west-1"));
    // The other order: the JSON file comes last and wins.
    let (stdout, _) = expect(&mut s.exec(&[], &["local.env.esdk", "app.json.esdk"], &["env"]), 0);
    assert_eq!(var(&String::from_utf8(stdout).unwrap(), "API_KEY"), Some("from-json"));
}

#[test]
fn an_existing_variable_wins_unless_override() {
    let s = Scratch::new();
    s.secrets("app.env.esdk", &format!("DB_PASSWORD={MARKER}\nAPI_KEY=secret\n"));
    let print = ["sh", "-c", "printf '%s|%s' \"$DB_PASSWORD\" \"$API_KEY\""];
    let (stdout, _) = expect(s.exec(&[], &["app.env.esdk"], &print).env("DB_PASSWORD", "from-outside"), 0);
    assert_eq!(stdout, b"from-outside|secret");
    // Set but empty is set.
    let (stdout, _) = expect(s.exec(&[], &["app.env.esdk"], &print).env("DB_PASSWORD", ""), 0);
    assert_eq!(stdout, b"|secret");
    let (stdout, _) = expect(s.exec(&["--override"], &["app.env.esdk"], &print).env("DB_PASSWORD", "outside"), 0);
    assert_eq!(stdout, format!("{MARKER}|secret").as_bytes());
}

#[test]
fn a_denied_name_is_refused_by_name_without_its_value_unless_allowed() {
    let s = Scratch::new();
    for (name, file) in [("LD_PRELOAD", "ld.env.esdk"), ("PATH", "path.env.esdk"), ("AWS_ACCESS_KEY_ID", "aws.esdk")] {
        s.secrets(file, &format!("API_KEY=fine\n{name}={MARKER}\n"));
        let (stdout, stderr) = expect(&mut s.exec(&[], &[file], &["echo", "ran"]), 2);
        assert!(stdout.is_empty(), "the command must not run");
        assert!(stderr.contains(&format!("refusing to set {name}")) && stderr.contains("--allow-name"), "{stderr}");
        assert!(!stderr.contains(MARKER), "{stderr}");
    }
    // Even when the environment already has the name (it would win): the message is refused as a whole.
    expect(s.exec(&[], &["ld.env.esdk"], &["true"]).env("LD_PRELOAD", ""), 2);
    s.secrets("node.esdk", r#"{"NODE_OPTIONS": "--max-old-space-size=64"}"#);
    let (stdout, _) =
        expect(&mut s.exec(&["--allow-name", "NODE_OPTIONS"], &["node.esdk"], &["printenv", "NODE_OPTIONS"]), 0);
    assert_eq!(stdout, b"--max-old-space-size=64\n");
}

#[test]
fn an_invalid_name_is_refused_escaped_without_its_value() {
    let s = Scratch::new();
    s.secrets("json.esdk", &format!("{{\"DB-\\u001b[2JPASSWORD\": \"{MARKER}\"}}"));
    let (stdout, stderr) = expect(&mut s.exec(&[], &["json.esdk"], &["echo", "ran"]), 1);
    assert!(stdout.is_empty());
    assert!(stderr.contains("json.esdk: secret name \"DB-\\u{1b}[2JPASSWORD\" is not a valid"), "{stderr}");
    assert!(!stderr.contains('\u{1b}') && !stderr.contains(MARKER), "{stderr}");
    s.secrets("dotenv.esdk", &format!("1ST={MARKER}\n"));
    let (_, stderr) = expect(&mut s.exec(&[], &["dotenv.esdk"], &["echo", "ran"]), 1);
    assert!(stderr.contains("line 1: the text before = is not a valid") && !stderr.contains(MARKER), "{stderr}");
    // A dotenv line that is not NAME=value: what comes before its `=` may be a value (a base64 line's
    // padding), so it is not shown.
    s.secrets("padded.esdk", &format!("A=1\n{MARKER}+/x==\n"));
    let (_, stderr) = expect(&mut s.exec(&[], &["padded.esdk"], &["echo", "ran"]), 1);
    assert!(stderr.contains("line 2: the text before =") && !stderr.contains(MARKER), "{stderr}");
}

#[test]
fn a_message_that_is_not_secrets_is_refused_without_quoting_it() {
    let s = Scratch::new();
    for (file, plaintext) in [
        ("text.esdk", format!("just some text with {MARKER}\n")),
        ("unquoted.esdk", format!("DB_PASSWORD={MARKER} # trailing comment\n")),
        ("expansion.esdk", format!("DB_PASSWORD=\"${{HOME}}{MARKER}\"\n")),
        ("array.esdk", format!("[\"{MARKER}\"]")),
        ("number.esdk", format!("{{\"DB_PASSWORD\": 1, \"X\": \"{MARKER}\"}}")),
    ] {
        s.secrets(file, &plaintext);
        let (stdout, stderr) = expect(&mut s.exec(&[], &[file], &["echo", "ran"]), 1);
        assert!(stdout.is_empty());
        assert!(stderr.contains(&format!("{file}: not a secrets message")), "{stderr}");
        assert!(!stderr.contains(MARKER), "{stderr}");
    }
    // Binary plaintext (a bundle, say) too.
    s.write("binary", &[0xff, 0xfe, 0, 1, 2]);
    expect(s.cmd().args(args(&[&["encrypt"], &raw("wrapping.key"), &["binary", "binary.esdk"]])), 0);
    let (_, stderr) = expect(&mut s.exec(&[], &["binary.esdk"], &["echo", "ran"]), 1);
    assert!(stderr.contains("not UTF-8"), "{stderr}");
}

#[test]
fn the_exit_status_is_the_commands_and_a_missing_command_is_127() {
    let s = Scratch::new();
    s.secrets("app.env.esdk", "API_KEY=x\n");
    let out = s.exec(&[], &["app.env.esdk"], &["sh", "-c", "echo out; echo err >&2; exit 42"]).output().unwrap();
    assert_eq!((out.status.code(), &out.stdout[..], &out.stderr[..]), (Some(42), &b"out\n"[..], &b"err\n"[..]));
    let out = s.exec(&[], &["app.env.esdk"], &["no-such-command-kms-envelope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    let out = s.exec(&[], &["app.env.esdk"], &["./app.env.esdk"]).output().unwrap();
    assert_eq!(out.status.code(), Some(126), "not executable");
}

/// No parent is left: the command has the pid of the process we spawned (`$$` of `sh -c` is its own pid), and
/// its death by SIGTERM is what our wait sees, not an exit status a parent turned it into.
#[test]
fn the_command_replaces_the_process_and_its_signal_reaches_the_waiter() {
    let s = Scratch::new();
    s.secrets("app.env.esdk", "API_KEY=x\n");
    use assert_cmd::cargo::CommandCargoExt as _;
    let mut cmd = std::process::Command::cargo_bin("kms-envelope").unwrap();
    cmd.current_dir(s.dir.path()).env("AWS_EC2_METADATA_DISABLED", "true");
    cmd.args(args(&[&["exec"], &raw("wrapping.key"), &["app.env.esdk", "--", "sh", "-c", "echo $$; kill -TERM $$"]]));
    let child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), pid.to_string(), "the command runs as our process");
    assert_eq!(out.status.signal(), Some(15), "{:?}", out.status);
}

/// The secrets reach the command without a file: TMPDIR and the working directory hold afterwards exactly
/// what they held before.
#[test]
fn no_file_is_written() {
    let s = Scratch::new();
    s.secrets("app.json.esdk", &format!(r#"{{"DB_PASSWORD": "{MARKER}"}}"#));
    let tmp = tempfile::tempdir().unwrap();
    let listing = |dir: &Path| {
        let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        names
    };
    let before = listing(s.dir.path());
    let (stdout, _) =
        expect(s.exec(&[], &["app.json.esdk"], &["printenv", "DB_PASSWORD"]).env("TMPDIR", tmp.path()), 0);
    assert_eq!(stdout, format!("{MARKER}\n").as_bytes());
    assert_eq!(listing(tmp.path()), Vec::<std::ffi::OsString>::new(), "TMPDIR stays empty");
    assert_eq!(listing(s.dir.path()), before, "the working directory is unchanged");
}

#[test]
fn stdin_is_not_a_secrets_source() {
    let s = Scratch::new();
    let (_, stderr) = expect(&mut s.exec(&[], &["-"], &["true"]), 2);
    assert!(stderr.contains("COMMAND gets this process's stdin"), "{stderr}");
}

/// A message an RSA key unwraps could have been written by anyone with its public key: refused unless
/// --allow-public-key-writers. With an AES key beside it, a message under the AES key is accepted: what
/// counts is the key that unwrapped, not the keys given.
#[cfg(feature = "rsa")]
#[test]
fn secrets_an_rsa_key_unwrapped_need_allow_public_key_writers() {
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
    use base64::Engine as _;
    let s = Scratch::new();
    let der = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap().as_der().unwrap();
    let pem = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    s.write("rsa.pem", format!("-----BEGIN PRIVATE KEY-----\n{pem}\n-----END PRIVATE KEY-----\n").as_bytes());
    let rsa = ["--rsa-private-key", "rsa.pem", "--key-namespace", "rsa", "--key-name", "r1"];
    s.write("plain", format!("DB_PASSWORD={MARKER}\n").as_bytes());
    expect(s.cmd().args(args(&[&["encrypt"], &rsa, &["plain", "rsa.esdk"]])), 0);
    s.secrets("aes.esdk", "API_KEY=from-aes\n");
    let run = |extra: &[&str], file: &str| {
        let mut cmd = s.cmd();
        cmd.args(args(&[&["exec"], &raw("wrapping.key"), &rsa, extra, &[file, "--", "env"]]));
        cmd
    };
    let (stdout, stderr) = expect(&mut run(&[], "rsa.esdk"), 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("unwrapped by --rsa-private-key rsa.pem") && !stderr.contains(MARKER), "{stderr}");
    let (stdout, _) = expect(&mut run(&["--allow-public-key-writers"], "rsa.esdk"), 0);
    assert_eq!(var(&String::from_utf8(stdout).unwrap(), "DB_PASSWORD"), Some(MARKER));
    let (stdout, _) = expect(&mut run(&[], "aes.esdk"), 0);
    assert_eq!(var(&String::from_utf8(stdout).unwrap(), "API_KEY"), Some("from-aes"));
}

/// From S3, with KMS keys (moto): discovery without --account is anyone's to write to and needs
/// --allow-public-key-writers; with the key's account, or the key itself, it is accepted.
#[cfg(all(feature = "kms", feature = "s3"))]
#[test]
fn secrets_from_s3_under_kms_and_discovery_needs_an_account() {
    let Some(moto) = super::support::Moto::get() else { return };
    let key = moto.create_key();
    let bucket = format!("exec-{}", key.rsplit('/').next().unwrap());
    let s3 =
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&moto.config()).force_path_style(true).build());
    super::support::run(s3.create_bucket().bucket(&bucket).send()).expect("CreateBucket in moto");
    let s = Scratch::new();
    let with_moto = |cmd: &mut assert_cmd::Command| {
        cmd.env("AWS_ENDPOINT_URL_KMS", &moto.endpoint)
            .env("AWS_ENDPOINT_URL_S3", &moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("DB_PASSWORD");
    };
    s.write("plain", format!("DB_PASSWORD={MARKER}\n").as_bytes());
    let object = format!("s3://{bucket}/app.env.esdk");
    let mut encrypt = s.cmd();
    with_moto(encrypt.args(["encrypt", "--kms-key", &key, "plain", &object]));
    expect(&mut encrypt, 0);
    let account = super::support::account_of(&key);
    for (keys, code) in [
        (vec!["--kms-key", key.as_str()], 0),
        (vec!["--kms-discovery", "--account", account.as_str()], 0),
        (vec!["--kms-discovery"], 2),
        (vec!["--kms-discovery", "--allow-public-key-writers"], 0),
    ] {
        let mut cmd = s.cmd();
        with_moto(cmd.args(args(&[&["exec"], &keys, &[&object, "--", "printenv", "DB_PASSWORD"]])));
        let (stdout, stderr) = expect(&mut cmd, code);
        if code == 0 {
            assert_eq!(stdout, format!("{MARKER}\n").as_bytes(), "{keys:?}");
        } else {
            assert!(stderr.contains("--kms-discovery without --account") && !stderr.contains(MARKER), "{stderr}");
        }
    }
}

#[test]
fn armored_secrets_are_read_like_binary_ones() {
    let s = Scratch::new();
    s.write("plain.tmp", format!("DB_PASSWORD={MARKER}\n").as_bytes());
    let encrypt = args(&[&["encrypt", "--armor"], &raw("wrapping.key"), &["plain.tmp", "app.env.b64"]]);
    expect(s.cmd().args(encrypt), 0);
    assert!(fs::read(s.path("app.env.b64")).unwrap().iter().all(u8::is_ascii_graphic), "armor is text");
    let (stdout, _) = expect(&mut s.exec(&[], &["app.env.b64"], &["printenv", "DB_PASSWORD"]), 0);
    assert_eq!(stdout, format!("{MARKER}\n").as_bytes());
}
