//! Encrypted data keys: what each keyring leaves in the header (format notes §5).

use std::fmt;

use crate::error::{Error, Result};

/// One encrypted copy of the message's data key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EncryptedDataKey {
    /// Which kind of keyring wrote it: `aws-kms`, or a raw keyring's namespace.
    pub provider_id: String,
    /// Keyring-specific: the KMS key ARN, or the raw-AES key name, IV and lengths.
    pub provider_info: Vec<u8>,
    /// The wrapped data key.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for EncryptedDataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedDataKey")
            .field("provider_id", &self.provider_id)
            .field("provider_info", &String::from_utf8_lossy(&self.provider_info))
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

impl EncryptedDataKey {
    /// Appends the entry as written in the header: three u16-length-prefixed fields.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) -> Result<()> {
        for field in [self.provider_id.as_bytes(), &self.provider_info, &self.ciphertext] {
            let len = u16::try_from(field.len()).map_err(|_| {
                Error::Keyring(format!("an encrypted data key field of {} bytes exceeds 65535", field.len()).into())
            })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
        Ok(())
    }
}
