//! A small JSON object of secrets, decrypted into memory only.

use std::collections::BTreeMap;
use std::fmt;
use std::process::Command;

use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

pub use crate::environment::SecretString;
use crate::environment::Unquoted;
use crate::error::{Error, Result};

/// Secrets decrypted from a JSON object of strings (`{"DB_PASSWORD": "…", "API_KEY": "…"}`). The decrypted
/// JSON and every value are zeroized on drop; `Debug` shows only the names.
pub struct Secrets {
    json: Zeroizing<Vec<u8>>,
    values: BTreeMap<String, SecretString>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets").field("names", &self.values.keys().collect::<Vec<_>>()).finish()
    }
}

impl Secrets {
    /// Parses a decrypted JSON object whose values are strings.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `json` is not a JSON object whose values are all strings; the message gives
    /// the parser's position, never the JSON's text.
    pub fn from_json(json: Zeroizing<Vec<u8>>) -> Result<Self> {
        let values: BTreeMap<String, SecretString> = serde_json::from_slice(&json)
            .map_err(|e| Error::Config(format!("secrets bundle is not a JSON object of strings: {}", Unquoted(&e))))?;
        Ok(Self { json, values })
    }

    /// The secret called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(SecretString::expose)
    }

    /// The names of the secrets.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Deserializes the whole object into the caller's type. Zeroizing the result is the caller's business;
    /// [`SecretString`] fields do it for them.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the object does not deserialize into `T`; the message does not quote the JSON.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.json)
            .map_err(|e| Error::Config(format!("secrets bundle does not fit the type: {}", Unquoted(&e))))
    }

    /// Adds every secret to the environment of a child process, for programs that read only environment
    /// variables: `secrets.apply_to(&mut Command::new("legacy-tool")).spawn()`.
    ///
    /// This process's own environment is left alone. Changing it with `std::env::set_var` is sound only
    /// while no other thread reads it, which a tokio runtime (or any library that starts a thread) makes
    /// impossible to promise; the child's environment is built by `Command` at spawn time instead. The
    /// copies `Command` keeps are not zeroized, so drop it once the child is spawned, and prefer
    /// [`get`](Self::get) where the code is yours.
    pub fn apply_to<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command.envs(self.values.iter().map(|(name, value)| (name, value.expose())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_access_and_redacted_debug() {
        let secrets = Secrets::from_json(Zeroizing::new(br#"{"DB_PASSWORD":"hunter2","API":"k"}"#.to_vec())).unwrap();
        assert_eq!(secrets.get("DB_PASSWORD"), Some("hunter2"));
        assert_eq!(secrets.names().collect::<Vec<_>>(), ["API", "DB_PASSWORD"]);
        let debug = format!("{secrets:?}");
        assert!(debug.contains("DB_PASSWORD") && !debug.contains("hunter2"), "{debug}");

        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(rename = "DB_PASSWORD")]
            db_password: SecretString,
        }
        let config: Config = secrets.deserialize().unwrap();
        assert_eq!(config.db_password.expose(), "hunter2");
        assert_eq!(format!("{:?}", config.db_password), "SecretString(<redacted>)");
        assert!(Secrets::from_json(Zeroizing::new(br#"{"n": 1}"#.to_vec())).is_err());
        let err = Secrets::from_json(Zeroizing::new(br#"{"k": "hunter2""#.to_vec())).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn apply_to_reaches_the_child_and_not_this_process() {
        let secrets =
            Secrets::from_json(Zeroizing::new(br#"{"KMS_ENVELOPE_TEST_SECRET":"hunter2"}"#.to_vec())).unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", "printf %s \"$KMS_ENVELOPE_TEST_SECRET\""]);
        let output = secrets.apply_to(&mut command).output().unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout, b"hunter2");
        assert!(std::env::var_os("KMS_ENVELOPE_TEST_SECRET").is_none());
    }
}
