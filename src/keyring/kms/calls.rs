//! The KMS calls every keyring makes, with the response checks of format notes §11.

use std::collections::HashMap;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::PROVIDER_ID;
use super::api::{CallParams, KmsApi};
use super::arn::KmsArn;
use super::runtime::on_runtime;
use crate::crypto::DataKey;
use crate::error::{Error, Reason, Result, Retry};
use crate::escape::clipped;
use crate::format::context::EncryptionContext;
use crate::format::edk::EncryptedDataKey;
use crate::keyring::{DecryptionMaterials, EncryptionMaterials};

/// A KMS client and the grant tokens to send with each call.
#[derive(Clone)]
pub(super) struct Kms {
    pub api: Arc<dyn KmsApi>,
    pub grant_tokens: Vec<String>,
}

impl Kms {
    fn params(&self, key_id: &str, context: &EncryptionContext) -> CallParams {
        CallParams {
            key_id: key_id.to_owned(),
            context: context.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<HashMap<_, _>>(),
            grant_tokens: self.grant_tokens.clone(),
        }
    }

    /// The region of the client, if it has one.
    pub fn region(&self) -> Option<String> {
        self.api.region()
    }

    /// `GenerateDataKey` under `key_id`: sets the data key and adds its EDK.
    pub async fn generate(&self, key_id: &str, materials: &mut EncryptionMaterials) -> Result<()> {
        let key_len = materials.suite().key_len();
        let call = self.api.generate_data_key(self.params(key_id, materials.encryption_context()), key_len);
        let mut out = on_runtime(call)
            .await?
            .map_err(|err| encrypt_error("GenerateDataKey", key_id, err.describe("GenerateDataKey"), err.retry()))?;
        if out.plaintext.len() != key_len {
            return Err(encrypt_error(
                "GenerateDataKey",
                key_id,
                format!("KMS returned a data key of {} bytes, the suite needs {key_len}", out.plaintext.len()),
                Retry::Never,
            ));
        }
        let arn = returned_key_arn("GenerateDataKey", key_id, out.key_id)?;
        materials.set_data_key(DataKey::new(std::mem::take(&mut *out.plaintext)))?;
        materials.add_encrypted_data_key(edk(arn, out.ciphertext));
        Ok(())
    }

    /// `Encrypt` of the materials' data key under `key_id`: adds its EDK.
    pub async fn wrap(&self, key_id: &str, materials: &mut EncryptionMaterials) -> Result<()> {
        let data_key = materials.data_key().ok_or_else(|| Error::Keyring("no data key to encrypt".into()))?;
        let plaintext = Zeroizing::new(data_key.as_bytes().to_vec());
        let call = self.api.encrypt(self.params(key_id, materials.encryption_context()), plaintext);
        let out = on_runtime(call)
            .await?
            .map_err(|err| encrypt_error("Encrypt", key_id, err.describe("Encrypt"), err.retry()))?;
        let arn = returned_key_arn("Encrypt", key_id, out.key_id)?;
        materials.add_encrypted_data_key(edk(arn, out.ciphertext));
        Ok(())
    }

    /// `Decrypt` of one EDK with `KeyId` = `request_key_id`. On failure, the reason to report for this EDK,
    /// and whether a later try may get through.
    pub async fn unwrap(
        &self,
        request_key_id: &str,
        materials: &DecryptionMaterials,
        edk: &EncryptedDataKey,
    ) -> Result<DataKey, Reason> {
        let key_len = materials.suite().key_len();
        let call =
            self.api.decrypt(self.params(request_key_id, materials.encryption_context()), edk.ciphertext.clone());
        let fail = |what: String| Reason::from(format!("AWS KMS Decrypt with key {request_key_id}: {what}"));
        let mut out = match on_runtime(call).await {
            Ok(Ok(out)) => out,
            Ok(Err(err)) => {
                let text = format!("AWS KMS Decrypt with key {request_key_id}: {}", err.describe("Decrypt"));
                return Err(Reason::new(text, err.retry()));
            }
            Err(err) => return Err(fail(err.to_string())),
        };
        match out.key_id.as_deref() {
            Some(got) if got == request_key_id => {}
            got => {
                return Err(fail(format!(
                    "wrong key: KMS reports it decrypted with key {}, not the key requested; the data key is not \
                     used",
                    clipped(got.unwrap_or("(none)"))
                )));
            }
        }
        if out.plaintext.len() != key_len {
            return Err(fail(format!(
                "KMS returned a data key of {} bytes, the message's suite needs {key_len}",
                out.plaintext.len()
            )));
        }
        Ok(DataKey::new(std::mem::take(&mut *out.plaintext)))
    }
}

fn encrypt_error(operation: &str, key_id: &str, what: String, retry: Retry) -> Error {
    Error::Keyring(Reason::new(format!("AWS KMS {operation} with key {key_id}: {what}"), retry))
}

/// The response `KeyId`, which must be a key ARN: it becomes the EDK's provider info.
fn returned_key_arn(operation: &str, key_id: &str, returned: Option<String>) -> Result<String> {
    match returned {
        Some(arn) if KmsArn::parse_key(&arn).is_ok() => Ok(arn),
        Some(other) => Err(encrypt_error(
            operation,
            key_id,
            format!("KMS returned \"{}\", which is not a key ARN", clipped(&other)),
            Retry::Never,
        )),
        None => Err(encrypt_error(operation, key_id, "KMS returned no key ARN".into(), Retry::Never)),
    }
}

fn edk(arn: String, ciphertext: Vec<u8>) -> EncryptedDataKey {
    EncryptedDataKey { provider_id: PROVIDER_ID.to_owned(), provider_info: arn.into_bytes(), ciphertext }
}

/// The key ARN in an EDK's provider info: `Ok(None)` if the EDK is not from a KMS keyring. A KMS EDK whose
/// provider info is not a key ARN fails the whole keyring (format notes §11), as a corrupt header would.
pub(super) fn edk_key_arn(edk: &EncryptedDataKey) -> Result<Option<(KmsArn, &str)>> {
    if edk.provider_id != PROVIDER_ID {
        return Ok(None);
    }
    let info = std::str::from_utf8(&edk.provider_info)
        .map_err(|_| Error::Keyring("an aws-kms encrypted data key's provider info is not UTF-8".into()))?;
    let arn = KmsArn::parse_key(info)
        .map_err(|err| Error::Keyring(format!("an aws-kms encrypted data key names no key ARN: {err}").into()))?;
    Ok(Some((arn, info)))
}

/// The reason given for an EDK some other keyring wrote.
pub(super) fn not_kms(keyring: &str, edk: &EncryptedDataKey) -> String {
    format!("{keyring}: skipped an encrypted data key of provider \"{}\"", clipped(&edk.provider_id))
}
