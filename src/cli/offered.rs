//! The data keys a message offered to the keyring: when none of the given keys unwraps one, the failure
//! says which keys the message has (a raw key's name given wrong is the common case), escaped, since they
//! are the message's unauthenticated bytes.

use std::sync::Mutex;

use kms_envelope::keyring::{DecryptionMaterials, EncryptionMaterials, KeyringFuture};
use kms_envelope::{EncryptedDataKey, Keyring};

use super::exit::{Code, Failure};
use super::inspect::describe;

/// At most this many data keys are listed in a failure (the default `--max-encrypted-data-keys`).
const LISTED: usize = 10;

/// At most this many bytes of each data key's description: a message's provider ids and key names may be
/// 64 KiB each, and a failure is one line on a terminal or in CloudWatch, not a copy of the header.
const DESCRIBED: usize = 200;

/// `text` cut to [`DESCRIBED`] bytes (on a character boundary), saying how much was left out.
pub(super) fn shortened(text: String) -> String {
    if text.len() <= DESCRIBED {
        return text;
    }
    let cut = (0..=DESCRIBED).rev().find(|&at| text.is_char_boundary(at)).unwrap_or(0);
    format!("{}... ({} more bytes)", &text[..cut], text.len() - cut)
}

/// A keyring that remembers, described for people, the data keys of the last message it was asked to
/// decrypt.
pub struct Recording {
    inner: Box<dyn Keyring>,
    offered: Mutex<Vec<String>>,
}

impl Recording {
    pub fn new(inner: Box<dyn Keyring>) -> Self {
        Self { inner, offered: Mutex::new(Vec::new()) }
    }

    /// Forgets the last message's data keys: before the next of many sources, so that a failure before its
    /// keys were offered does not name another message's.
    pub fn forget(&self) {
        self.offered.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    /// `failure`, when no key could be used, with the data keys the message offered.
    pub fn explain(&self, failure: Failure) -> Failure {
        let offered = self.offered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if failure.code() != Code::KeyAccess || offered.is_empty() {
            return failure;
        }
        let mut listed = offered.iter().take(LISTED).cloned().collect::<Vec<_>>().join("; ");
        if offered.len() > LISTED {
            listed.push_str(&format!("; and {} more", offered.len() - LISTED));
        }
        let keys = super::plural(offered.len(), "key", "keys");
        failure.with_note(&format!("the message has {} data {keys}: {listed}", offered.len()))
    }
}

impl Keyring for Recording {
    fn on_encrypt<'a>(&'a self, materials: EncryptionMaterials) -> KeyringFuture<'a, EncryptionMaterials> {
        self.inner.on_encrypt(materials)
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        *self.offered.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            edks.iter().map(|edk| shortened(describe(edk))).collect();
        self.inner.on_decrypt(materials, edks)
    }
}
