//! What keyrings read and fill in.

use std::collections::BTreeSet;

use crate::crypto::DataKey;
use crate::error::{Error, Result};
use crate::format::context::EncryptionContext;
use crate::format::edk::EncryptedDataKey;
use crate::format::suite::AlgorithmSuite;

/// Materials for one message being encrypted.
#[derive(Debug)]
pub struct EncryptionMaterials {
    suite: AlgorithmSuite,
    context: EncryptionContext,
    required_context_keys: BTreeSet<String>,
    data_key: Option<DataKey>,
    edks: Vec<EncryptedDataKey>,
    max_plaintext_length: Option<u64>,
}

impl EncryptionMaterials {
    /// Materials with no data key yet. `context` is the full context keyrings authenticate: it includes
    /// `aws-crypto-public-key` for signed suites and the required-context pairs.
    pub fn new(suite: AlgorithmSuite, context: EncryptionContext, required_context_keys: BTreeSet<String>) -> Self {
        Self { suite, context, required_context_keys, data_key: None, edks: Vec::new(), max_plaintext_length: None }
    }

    /// Declares that the message holds at most `length` plaintext bytes (the encryptor enforces it), which
    /// a [`CachingKeyring`](super::CachingKeyring) needs to count bytes per data key.
    pub fn with_max_plaintext_length(mut self, length: Option<u64>) -> Self {
        self.max_plaintext_length = length;
        self
    }

    /// The most plaintext bytes the message may hold, when known before encrypting.
    pub fn max_plaintext_length(&self) -> Option<u64> {
        self.max_plaintext_length
    }

    /// The suite the message uses.
    pub fn suite(&self) -> AlgorithmSuite {
        self.suite
    }

    /// The full encryption context (what KMS and the raw-AES AAD see).
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.context
    }

    /// Keys whose pairs are authenticated but not stored in the header.
    pub fn required_context_keys(&self) -> &BTreeSet<String> {
        &self.required_context_keys
    }

    /// The data key, once a generator has set it.
    pub fn data_key(&self) -> Option<&DataKey> {
        self.data_key.as_ref()
    }

    /// Sets the data key.
    ///
    /// # Errors
    ///
    /// [`Error::Keyring`] when a data key is already set, or when `key`'s length is not the suite's key
    /// length.
    pub fn set_data_key(&mut self, key: DataKey) -> Result<()> {
        if self.data_key.is_some() {
            return Err(Error::Keyring("a data key was already generated".into()));
        }
        check_len(self.suite, &key)?;
        self.data_key = Some(key);
        Ok(())
    }

    /// Adds an encrypted copy of the data key.
    pub fn add_encrypted_data_key(&mut self, edk: EncryptedDataKey) {
        self.edks.push(edk);
    }

    /// The encrypted data keys so far.
    pub fn encrypted_data_keys(&self) -> &[EncryptedDataKey] {
        &self.edks
    }

    pub(crate) fn into_parts(self) -> (EncryptionContext, BTreeSet<String>, Option<DataKey>, Vec<EncryptedDataKey>) {
        (self.context, self.required_context_keys, self.data_key, self.edks)
    }
}

/// Materials for one message being decrypted.
#[derive(Debug)]
pub struct DecryptionMaterials {
    suite: AlgorithmSuite,
    context: EncryptionContext,
    required_context_keys: BTreeSet<String>,
    data_key: Option<DataKey>,
}

impl DecryptionMaterials {
    /// Materials with no data key yet; `context` is the header context merged with the reproduced context.
    pub fn new(suite: AlgorithmSuite, context: EncryptionContext, required_context_keys: BTreeSet<String>) -> Self {
        Self { suite, context, required_context_keys, data_key: None }
    }

    /// The message's suite.
    pub fn suite(&self) -> AlgorithmSuite {
        self.suite
    }

    /// The encryption context keyrings authenticate.
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.context
    }

    /// Keys whose pairs were reproduced by the caller rather than stored in the header.
    pub fn required_context_keys(&self) -> &BTreeSet<String> {
        &self.required_context_keys
    }

    /// The recovered data key.
    pub fn data_key(&self) -> Option<&DataKey> {
        self.data_key.as_ref()
    }

    /// Sets the recovered data key.
    ///
    /// # Errors
    ///
    /// [`Error::Keyring`] when a data key is already set, or when `key`'s length is not the suite's key
    /// length.
    pub fn set_data_key(&mut self, key: DataKey) -> Result<()> {
        if self.data_key.is_some() {
            return Err(Error::Keyring("the data key was already decrypted".into()));
        }
        check_len(self.suite, &key)?;
        self.data_key = Some(key);
        Ok(())
    }

    /// Fails if a data key is already set: a keyring's `on_decrypt` starts with this, since the
    /// specification forbids decrypting into materials that already hold a key.
    ///
    /// # Errors
    ///
    /// [`Error::Keyring`] when a data key is already set.
    pub fn require_no_data_key(&self) -> Result<()> {
        match self.data_key {
            Some(_) => Err(Error::Keyring("decryption materials already hold a data key".into())),
            None => Ok(()),
        }
    }

    pub(crate) fn take_data_key(&mut self) -> Option<DataKey> {
        self.data_key.take()
    }
}

fn check_len(suite: AlgorithmSuite, key: &DataKey) -> Result<()> {
    if key.len() != suite.key_len() {
        return Err(Error::Keyring(
            format!("data key of {} bytes does not fit suite {suite}, which needs {}", key.len(), suite.key_len())
                .into(),
        ));
    }
    Ok(())
}
