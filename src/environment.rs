//! Secrets as environment variables: the two forms a secrets message may hold (a JSON object of strings,
//! or dotenv `NAME=value` lines), the names it may set, and the names it may not set without the
//! operator's say-so. Used by `kms-envelope exec` and by the Lambda extension's exec wrapper.
//!
//! # The dotenv subset
//!
//! A plaintext whose first non-blank byte is `{` is JSON (an object whose values are strings); anything
//! else is read as dotenv lines, UTF-8, split at `\n` (a `\r` before it is dropped). Each line is one of:
//!
//! - blank (spaces and tabs only), or a comment: `#` as its first non-blank character;
//! - `NAME=value`, after optional leading blanks and an optional `export ` (the word and blanks). `NAME`
//!   is a valid name ([`EnvName`]) followed directly by `=`. The value is
//!   - empty, or unquoted: no blanks, quotes, `` ` ``, `$`, `\` or `#` in it (Node's `dotenv` cuts
//!     `p#q` at the `#`, sh keeps it); trailing blanks are dropped;
//!   - `'single quoted'`: taken literally, no `'` inside;
//!   - `"double quoted"`: with the escapes `\\`, `\"`, `` \` `` and `\$` (which sh and the dotenv
//!     libraries read alike), no other backslash, and no unescaped `$` or `` ` ``.
//!
//!   After a closing quote come only blanks, optionally followed by a `#` comment.
//!
//! Everything else is refused, not guessed at: `$VAR` expansion, `\n` escapes (dotenv libraries turn
//! them into a newline, sh does not), a quote that does not close on its line (multi-line values belong
//! in the JSON form), a name given twice. A refusal names the line, never its text.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::error::Category;
use zeroize::{Zeroize, Zeroizing};

use crate::escape::Escaped;

/// A secret string: zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// The secret's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// A name a secrets message may give an environment variable: ASCII letters, digits and `_`, not
/// starting with a digit (the portable set of POSIX, and what every shell can name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EnvName(String);

impl EnvName {
    /// `name`, if it is a valid name.
    ///
    /// # Errors
    ///
    /// [`EnvError::InvalidName`], which shows the name escaped.
    pub fn new(name: &str) -> Result<Self, EnvError> {
        let mut bytes = name.bytes();
        let valid = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if valid { Ok(Self(name.to_owned())) } else { Err(EnvError::InvalidName { name: name.to_owned() }) }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Variables a secrets message may not set unless the operator allows each by name: they make a program
/// load or run other code (dynamic linker, shells, interpreters, pagers and editors), change which
/// program runs or which credentials and endpoints the AWS SDKs use, or are Lambda's own. "An existing
/// variable wins" does not protect these: most are usually unset. A pattern ending in `*` matches every
/// name with that prefix. A deny-list cannot be complete; it covers what is known to load code.
pub const DENIED_NAMES: &[&str] = &[
    // The dynamic linker (glibc, musl, macOS) and glibc's own loaders.
    "LD_*",
    "DYLD_*",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "MALLOC_*",
    // Which program runs, and shells: startup files, options, prompts, word splitting.
    "PATH",
    "HOME",
    // Where programs read their configuration instead of HOME (git's core.pager, core.fsmonitor, ...).
    "XDG_CONFIG_*",
    "BASH_ENV",
    "ENV",
    "BASH_FUNC_*",
    "BASHOPTS",
    "SHELLOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "CDPATH",
    "ZDOTDIR",
    // Interpreters and runtimes: options, module paths, startup code.
    "PYTHON*",
    "NODE_*",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "GEM_*",
    "DOTNET_*",
    "CORECLR_*",
    "COMPlus_*",
    // Code in the value itself (`LUA_INIT`, `ERL_AFLAGS="-eval ..."`), or a configuration that loads a
    // library or runs a shell: OpenSSL engines and providers, php.ini, npm's config (read in either case).
    "LUA_INIT*",
    "LUA_PATH*",
    "LUA_CPATH*",
    "ERL_*",
    "ELIXIR_ERL_OPTIONS",
    "OPENSSL_*",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    "TCLLIBPATH",
    "npm_config_*",
    "NPM_CONFIG_*",
    "SHELL",
    // Programs other programs start.
    "GIT_*",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "BROWSER",
    "LESSOPEN",
    "LESSCLOSE",
    "MANPAGER",
    "SYSTEMD_PAGER",
    "SSH_ASKPASS",
    "SUDO_ASKPASS",
    // Where TLS libraries write every session's keys.
    "SSLKEYLOGFILE",
    // AWS credentials, endpoints and configuration; Lambda's runtime and this tool's own.
    "AWS_*",
    "_AWS_*",
    "_HANDLER",
    "_X_AMZN_*",
    "LAMBDA_*",
    "KMS_ENVELOPE_*",
];

/// The pattern of [`DENIED_NAMES`] that `name` matches, if any.
pub fn denied_by(name: &str) -> Option<&'static str> {
    DENIED_NAMES.iter().copied().find(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *pattern,
    })
}

/// Refuses `name` if it is on [`DENIED_NAMES`] and not in `allowed` (the operator's `--allow-name`s).
///
/// # Errors
///
/// [`EnvError::Denied`].
pub fn check_denied(name: &EnvName, allowed: &[String]) -> Result<(), EnvError> {
    match denied_by(name.as_str()) {
        Some(pattern) if !allowed.iter().any(|a| a == name.as_str()) => {
            Err(EnvError::Denied { name: name.clone(), pattern })
        }
        _ => Ok(()),
    }
}

/// Why decrypted secrets cannot become environment variables. Never carries a value.
#[derive(Debug)]
#[non_exhaustive]
pub enum EnvError {
    /// The plaintext is neither a JSON object of strings nor dotenv lines; `reason` is fixed text and a
    /// position (a line, or a JSON line and column).
    NotSecrets {
        /// What is wrong, and where.
        reason: String,
    },
    /// A name that is not a valid environment variable name ([`EnvName`]).
    InvalidName {
        /// The name as given (shown escaped).
        name: String,
    },
    /// A name given twice in one message.
    Duplicate {
        /// The name.
        name: EnvName,
    },
    /// A value holding a NUL byte, which no environment can carry.
    Nul {
        /// The name of the variable.
        name: EnvName,
    },
    /// A name on [`DENIED_NAMES`] that the operator did not allow.
    Denied {
        /// The name.
        name: EnvName,
        /// The pattern it matched.
        pattern: &'static str,
    },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSecrets { reason } => {
                write!(f, "not a secrets message (a JSON object of strings, or dotenv NAME=value lines): {reason}")
            }
            Self::InvalidName { name } => write!(
                f,
                "secret name \"{}\" is not a valid environment variable name (ASCII letters, digits and _, not \
                 starting with a digit)",
                Escaped(name)
            ),
            Self::Duplicate { name } => write!(f, "secret name {} is given twice", name.as_str()),
            Self::Nul { name } => {
                write!(f, "the value of {} holds a NUL byte, which no environment can carry", name.as_str())
            }
            Self::Denied { name, pattern } => write!(
                f,
                "refusing to set {}: names matching {pattern} change what a program loads or runs",
                name.as_str()
            ),
        }
    }
}

impl std::error::Error for EnvError {}

/// Decrypted secrets in the order the message gives them: a JSON object (its first non-blank byte is `{`)
/// or dotenv lines (see the [module documentation](self)). Names are valid and unique, values hold no NUL.
///
/// # Errors
///
/// [`EnvError::NotSecrets`], [`EnvError::InvalidName`], [`EnvError::Duplicate`], [`EnvError::Nul`].
pub fn parse_secrets(plaintext: &[u8]) -> Result<Vec<(EnvName, SecretString)>, EnvError> {
    let secrets =
        if plaintext.trim_ascii_start().starts_with(b"{") { parse_json(plaintext)? } else { parse_dotenv(plaintext)? };
    let mut seen = BTreeSet::new();
    for (name, value) in &secrets {
        if !seen.insert(name.as_str()) {
            return Err(EnvError::Duplicate { name: name.clone() });
        }
        if value.expose().contains('\0') {
            return Err(EnvError::Nul { name: name.clone() });
        }
    }
    Ok(secrets)
}

/// A JSON object of strings, in the order written (a duplicate name is refused by the caller).
fn parse_json(plaintext: &[u8]) -> Result<Vec<(EnvName, SecretString)>, EnvError> {
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(String, SecretString)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object of strings")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::new();
            while let Some((name, value)) = map.next_entry::<String, SecretString>()? {
                pairs.push((name, value));
            }
            Ok(pairs)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(plaintext);
    let pairs = deserializer
        .deserialize_map(Pairs)
        .and_then(|pairs| deserializer.end().map(|()| pairs))
        .map_err(|e| EnvError::NotSecrets { reason: Unquoted(&e).to_string() })?;
    pairs.into_iter().map(|(name, value)| Ok((EnvName::new(&name)?, value))).collect()
}

/// Dotenv lines as the [module documentation](self) defines them.
fn parse_dotenv(plaintext: &[u8]) -> Result<Vec<(EnvName, SecretString)>, EnvError> {
    let text = std::str::from_utf8(plaintext).map_err(|e| EnvError::NotSecrets {
        reason: format!(
            "not UTF-8 (line {})",
            plaintext[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1
        ),
    })?;
    let mut secrets = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let refused = |why: &str| EnvError::NotSecrets { reason: format!("line {}: {why}", n + 1) };
        let line = line.trim_start_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start_matches([' ', '\t']),
            _ => line,
        };
        let Some((name, value)) = line.split_once('=') else {
            return Err(refused("not NAME=value, a comment or a blank line"));
        };
        // The text before `=` is shown only when it is a name: on a line that is not `NAME=value` it may
        // be part of a value (a base64 or PEM line ends in `=` padding, `user: pw=...`).
        let name = EnvName::new(name).map_err(|_| {
            refused("the text before = is not a valid environment variable name (not shown: it may be part of a value)")
        })?;
        let value = dotenv_value(value).map_err(refused)?;
        secrets.push((name, value));
    }
    Ok(secrets)
}

/// The value after `NAME=`, or why it is refused (fixed text: never the value).
fn dotenv_value(raw: &str) -> Result<SecretString, &'static str> {
    let blank = |c: char| c == ' ' || c == '\t';
    // What may follow a closing quote: blanks, then nothing or a comment.
    let after_quote = |rest: &str| {
        let rest = rest.trim_start_matches(blank);
        if rest.is_empty() || rest.starts_with('#') { Ok(()) } else { Err("text after the closing quote") }
    };
    let mut value = Zeroizing::new(String::with_capacity(raw.len()));
    if let Some(quoted) = raw.strip_prefix('\'') {
        let end = quoted.find('\'').ok_or("a single quote that does not close on its line")?;
        after_quote(&quoted[end + 1..])?;
        value.push_str(&quoted[..end]);
    } else if let Some(quoted) = raw.strip_prefix('"') {
        let mut chars = quoted.char_indices();
        loop {
            match chars.next() {
                None => return Err("a double quote that does not close on its line"),
                Some((at, '"')) => {
                    after_quote(&quoted[at + 1..])?;
                    break;
                }
                Some((_, '\\')) => match chars.next() {
                    Some((_, c @ ('\\' | '"' | '`' | '$'))) => value.push(c),
                    _ => return Err("a backslash escape other than \\\\, \\\", \\` or \\$ (for a newline use JSON)"),
                },
                Some((_, '$')) => return Err("$ in a double-quoted value (no expansion is done: write \\$)"),
                Some((_, '`')) => return Err("` in a double-quoted value (no command is run: write \\`)"),
                Some((_, c)) => value.push(c),
            }
        }
    } else {
        let unquoted = raw.trim_end_matches(blank);
        if unquoted.contains([' ', '\t', '\'', '"', '`', '$', '\\', '#']) {
            return Err("an unquoted value with a blank, quote, `, $, \\ or # (quote it)");
        }
        value.push_str(unquoted);
    }
    Ok(SecretString(std::mem::take(&mut *value)))
}

/// What kind of JSON error happened and where, without serde's own message: that quotes the decrypted
/// values it met (`invalid type: string "hunter2", expected ...`) and names unknown fields.
pub(crate) struct Unquoted<'a>(pub(crate) &'a serde_json::Error);

impl fmt::Display for Unquoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0.classify() {
            Category::Syntax => "not valid JSON",
            Category::Eof => "the JSON ends early",
            Category::Data => "a value of the wrong type or shape",
            Category::Io => "read error",
        };
        write!(f, "{kind} at line {} column {}", self.0.line(), self.0.column())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Result<Vec<(String, String)>, String> {
        parse_secrets(text.as_bytes())
            .map(|v| v.into_iter().map(|(n, s)| (n.as_str().to_owned(), s.expose().to_owned())).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn dotenv_forms_that_sh_and_dotenv_read_alike() {
        let text =
            "# comment\n\n  export A=1\r\nB='x y $z \\n'  # c\nC=\"q \\\" \\\\ \\$ \\`\"\nD=\nE='p#q'\n\tF=tail  \n";
        let want = [("A", "1"), ("B", "x y $z \\n"), ("C", "q \" \\ $ `"), ("D", ""), ("E", "p#q"), ("F", "tail")];
        let want: Vec<_> = want.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        assert_eq!(pairs(text).unwrap(), want);
    }

    #[test]
    fn dotenv_refuses_what_it_does_not_parse_without_quoting_it() {
        for (text, line) in [
            ("A=1\nhunter2\n", "line 2"),
            ("A=hunter2 # c", "line 1"),
            ("A=\"hunter2", "line 1"),
            ("A='hunter2", "line 1"),
            ("A=\"hunter2\\n\"", "line 1"),
            ("A=\"$hunter2\"", "line 1"),
            ("A='hunter2' x", "line 1"),
            ("A = hunter2", "line 1"),
            // A line of a PEM or base64 value that ends in padding: the text before `=` is no name.
            ("A=1\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC+hunter2/x==\n", "line 2"),
            ("db_password: hunter2=1", "line 1"),
            ("A=$hunter2", "line 1"),
            // Node's dotenv reads this as "p", sh and python-dotenv as "p#hunter2".
            ("A=p#hunter2", "line 1"),
        ] {
            let err = pairs(text).unwrap_err();
            assert!(err.contains(line) && !err.contains("hunter2"), "{text:?}: {err}");
        }
        assert!(pairs("A=1\nA=2").unwrap_err().contains("twice"));
        assert!(pairs("1A=x").unwrap_err().contains("line 1"));
    }

    #[test]
    fn json_keeps_order_and_refuses_without_values() {
        assert_eq!(pairs(r#" {"B":"2","A":"1"}"#).unwrap(), [("B".into(), "2".into()), ("A".into(), "1".into())]);
        for text in [r#"{"A":1}"#, r#"{"A":"hunter2""#, r#"{"A":"hunter2"} x"#, r#"{"A":"x","A":"hunter2"}"#] {
            let err = pairs(text).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = pairs("{\"a-\\u001b[2J\":\"hunter2\"}").unwrap_err();
        assert!(err.contains("a-\\u{1b}[2J") || err.contains("a-\\x1b[2J"), "{err}");
        assert!(!err.contains('\u{1b}') && !err.contains("hunter2"));
        assert!(pairs(r#"{"A":"x\u0000hunter2"}"#).unwrap_err().contains("NUL"));
    }

    #[test]
    fn deny_list_patterns_and_allowed_names() {
        for name in [
            "LD_PRELOAD",
            "DYLD_INSERT_LIBRARIES",
            "PATH",
            "AWS_SECRET_ACCESS_KEY",
            "PYTHONSTARTUP",
            "_HANDLER",
            // Code in the value, or a configuration that loads a library or runs a shell.
            "LUA_INIT",
            "LUA_INIT_5_4",
            "ERL_AFLAGS",
            "ERL_ZFLAGS",
            "OPENSSL_CONF",
            "PHPRC",
            "npm_config_script_shell",
            "NPM_CONFIG_NODE_OPTIONS",
            "SHELL",
            "SSLKEYLOGFILE",
            "XDG_CONFIG_HOME",
            "XDG_CONFIG_DIRS",
        ] {
            assert!(denied_by(name).is_some(), "{name}");
        }
        for name in ["DB_PASSWORD", "PATHS", "API_KEY", "LD"] {
            assert_eq!(denied_by(name), None, "{name}");
        }
        let name = EnvName::new("NODE_OPTIONS").unwrap();
        assert!(check_denied(&name, &[]).is_err());
        assert!(check_denied(&name, &["NODE_OPTIONS".into()]).is_ok());
    }
}
