//! The ESDK's default cryptographic materials manager: from options and a keyring to the keys of one
//! message, with every policy and context check (format notes §12, §13, §7).

use crate::crypto::kdf::V1Info;
use crate::crypto::signature::{MessageSigner, MessageVerifier};
use crate::crypto::{DataKey, MessageKeys};
use crate::error::{Error, Result, Retry};
use crate::format::context::{EncryptionContext, PUBLIC_KEY_CONTEXT_KEY};
use crate::format::edk::EncryptedDataKey;
use crate::format::header::{self, ContentType, Header, HeaderBody, IV_LEN, MessageId};
use crate::format::suite::AlgorithmSuite;
use crate::keyring::{DecryptionMaterials, EncryptionMaterials, Keyring};

use super::options::{DecryptOptions, EncryptOptions};

/// Everything an encryptor needs after the keyring ran: the serialized header and the message keys.
pub(crate) struct PreparedEncryption {
    pub header: Vec<u8>,
    pub suite: AlgorithmSuite,
    pub message_id: MessageId,
    pub frame_length: u32,
    pub keys: MessageKeys,
    pub signer: Option<MessageSigner>,
}

/// `plaintext_length` is the most plaintext the caller will let through, if it enforces a bound (keyrings
/// that count bytes per data key rely on it).
pub(crate) async fn prepare_encrypt(
    keyring: &dyn Keyring,
    options: &EncryptOptions,
    plaintext_length: Option<u64>,
) -> Result<PreparedEncryption> {
    options.context.check_no_reserved_keys()?;
    if options.frame_length == 0 {
        return Err(Error::Config("frame length must be at least 1".into()));
    }
    let suite = options.suite.unwrap_or_else(|| options.policy.default_suite());
    options.policy.check_encrypt(suite)?;

    let mut context = options.context.clone();
    let signer = suite.signature().map(MessageSigner::generate);
    if let Some(signer) = &signer {
        context.insert(PUBLIC_KEY_CONTEXT_KEY, signer.public_key_base64());
    }
    let materials = EncryptionMaterials::new(suite, context, options.required_context_keys.clone())
        .with_max_plaintext_length(plaintext_length);
    let materials = keyring.on_encrypt(materials).await?;
    let (context, required_keys, data_key, edks) = materials.into_parts();
    let data_key = data_key.ok_or_else(|| Error::Keyring("no keyring generated a data key".into()))?;
    if edks.is_empty() {
        return Err(Error::Keyring("the keyring produced no encrypted data key".into()));
    }
    if let Some(max) = options.max_encrypted_data_keys.filter(|&max| edks.len() > usize::from(max)) {
        return Err(Error::LimitExceeded {
            limit: "encrypted data key count",
            value: edks.len() as u64,
            max: max.into(),
        });
    }

    let message_id = MessageId::random(suite.message_format());
    let keys = MessageKeys::derive(suite, &data_key, &message_id, V1Info::Standard)?;
    drop(data_key);
    let (stored, authenticated_only) = split_required(&context, &required_keys);
    let body = HeaderBody {
        suite,
        message_id,
        stored_context: &stored,
        edks: &edks,
        frame_length: options.frame_length,
        commitment: keys.commitment,
    }
    .serialize()?;
    let mut aad = body.clone();
    aad.extend_from_slice(&authenticated_only.serialize()?);
    let tag = keys.content.seal_in_place(&[0u8; IV_LEN], &aad, &mut []);
    let header = header::assemble(body, suite, &tag);
    Ok(PreparedEncryption { header, suite, message_id, frame_length: options.frame_length, keys, signer })
}

/// The message's EDKs with repeats removed (first occurrence kept, order unchanged). A message may list one
/// EDK many times; trying it again could only repeat a KMS call that already failed, so each distinct EDK
/// costs at most one attempt per keyring.
fn distinct_edks(edks: &[EncryptedDataKey]) -> Vec<EncryptedDataKey> {
    let mut seen = std::collections::HashSet::with_capacity(edks.len());
    edks.iter().filter(|edk| seen.insert(*edk)).cloned().collect()
}

/// Splits a context into the pairs stored in the header and the required pairs that are only authenticated.
fn split_required(
    context: &EncryptionContext,
    required: &std::collections::BTreeSet<String>,
) -> (EncryptionContext, EncryptionContext) {
    let (only_auth, stored): (Vec<_>, Vec<_>) = context.iter().partition(|(k, _)| required.contains(*k));
    (stored.into_iter().collect(), only_auth.into_iter().collect())
}

/// The keys of an authenticated header, and the verifier for its footer if the suite signs.
pub(crate) struct OpenedHeader {
    pub keys: MessageKeys,
    pub verifier: Option<MessageVerifier>,
    /// The context the keyring saw: header pairs plus reproduced required pairs.
    pub context: EncryptionContext,
}

/// Checks policy and context, recovers the data key, derives keys, verifies commitment and header tag.
pub(crate) async fn open_header(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    header: &Header,
) -> Result<OpenedHeader> {
    open_header_with(keyring, options, header, &distinct_edks(header.encrypted_data_keys())).await
}

/// [`open_header`], offering the keyring only `edks` (some of the header's) to unwrap the data key from.
pub(crate) async fn open_header_with(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    header: &Header,
    edks: &[EncryptedDataKey],
) -> Result<OpenedHeader> {
    let suite = header.suite();
    if header.content_type() == ContentType::Framed {
        // Before the keyring: a frame that cannot be buffered is refused without a KMS call.
        options.limits.check_frame_fits(header.frame_length())?;
    }
    options.policy.check_decrypt(suite)?;
    if options.unsigned_only && suite.signature().is_some() {
        return Err(Error::SignedMessageRefused(suite.id()));
    }

    // Merge the reproduced context: shared keys must agree, the others were required pairs on encrypt.
    let mut context = header.encryption_context().clone();
    let mut required = std::collections::BTreeSet::new();
    for (key, value) in options.reproduced_context.iter() {
        match header.encryption_context().get(key) {
            Some(stored) if stored == value => {}
            Some(_) => {
                return Err(Error::ContextMismatch { key: key.into(), detail: "the message has a different value" });
            }
            None => {
                context.insert(key, value);
                required.insert(key.to_string());
            }
        }
    }
    for key in &options.required_context_keys {
        if !options.reproduced_context.contains_key(key) {
            return Err(Error::ContextMismatch { key: key.clone(), detail: "required key was not reproduced" });
        }
    }

    let verifier = match (suite.signature(), context.get(PUBLIC_KEY_CONTEXT_KEY)) {
        (Some(alg), Some(public)) => Some(MessageVerifier::from_public_key_base64(alg, public)?),
        (Some(_), None) => {
            return Err(Error::EncryptionContext(format!(
                "signed suite {suite} but no {PUBLIC_KEY_CONTEXT_KEY} in the encryption context"
            )));
        }
        (None, Some(_)) => {
            return Err(Error::EncryptionContext(format!("unsigned suite {suite} carries {PUBLIC_KEY_CONTEXT_KEY}")));
        }
        (None, None) => None,
    };

    let materials = DecryptionMaterials::new(suite, context.clone(), required.clone());
    let mut materials = keyring.on_decrypt(materials, edks).await?;
    let data_key = materials
        .take_data_key()
        .ok_or_else(|| Error::NoDataKeyDecrypted { reasons: Vec::new(), retry: Retry::Never })?;

    let only_auth: EncryptionContext = context.iter().filter(|(k, _)| required.contains(*k)).collect();
    let keys = match authenticate(header, &data_key, &only_auth, V1Info::Standard, false) {
        Err(Error::HeaderAuthentication) if options.net_v4_0_0_retry => {
            authenticate(header, &data_key, &only_auth, V1Info::NetV400, true)?
        }
        other => other?,
    };
    Ok(OpenedHeader { keys, verifier, context })
}

fn authenticate(
    header: &Header,
    data_key: &DataKey,
    only_auth: &EncryptionContext,
    info: V1Info,
    always_count: bool,
) -> Result<MessageKeys> {
    let keys = MessageKeys::derive(header.suite(), data_key, header.message_id(), info)?;
    keys.verify_commitment(header.commitment())?;
    let mut aad = header.body_bytes().to_vec();
    if always_count && only_auth.is_empty() {
        // .NET 4.0.0 wrote the count even for an empty set.
        aad.extend_from_slice(&[0, 0]);
    } else {
        aad.extend_from_slice(&only_auth.serialize()?);
    }
    keys.content
        .open_in_place(header.header_iv(), &aad, &mut [], header.auth_tag())
        .map_err(|_| Error::HeaderAuthentication)?;
    Ok(keys)
}
