//! What went wrong in a KMS call, in words a user can act on.
//!
//! The SDK's errors are classified once, here, by their AWS error code (service errors) or by where they
//! arose (timeouts, connection, credentials, region). Keyrings prefix the operation and key.

use std::fmt;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::operation::RequestId;

use crate::error::Retry;

/// The kinds of failure a user can tell apart and act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KmsErrorKind {
    /// The caller may not use the key for this operation.
    AccessDenied,
    /// The credentials were rejected (unknown key id, bad secret, expired session).
    InvalidCredentials,
    /// No credentials could be found at all.
    NoCredentials,
    /// No region is configured, so there is no endpoint to call.
    NoRegion,
    /// The key (or alias) does not exist in this account and region.
    NotFound,
    /// The key is disabled.
    Disabled,
    /// The key is pending deletion, pending import or otherwise unusable.
    InvalidState,
    /// KMS cannot decrypt the ciphertext: wrong encryption context or a corrupt encrypted data key.
    InvalidCiphertext,
    /// The ciphertext was encrypted under another key than the `KeyId` given.
    IncorrectKey,
    /// The key cannot encrypt/decrypt (an asymmetric or HMAC key).
    InvalidKeyUsage,
    /// A grant token was rejected.
    InvalidGrantToken,
    /// KMS throttled the request, and the SDK's retries did not get through.
    Throttled,
    /// The call or an attempt timed out.
    Timeout,
    /// KMS had an internal failure or a dependency timed out (5xx), beyond the retries.
    Unavailable,
    /// The endpoint could not be reached.
    Network,
    /// The endpoint URL is not usable.
    BadEndpoint,
    /// KMS rejected the request as malformed.
    InvalidRequest,
    /// Anything else.
    Other,
}

/// A failed KMS call. Never holds key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KmsError {
    pub kind: KmsErrorKind,
    /// The AWS error code, for service errors.
    pub code: Option<String>,
    /// The service's message, or the SDK's error chain.
    pub detail: String,
    /// The AWS request id, for support cases.
    pub request_id: Option<String>,
}

impl KmsError {
    /// An error of `kind` with a detail text (for test doubles).
    #[cfg(test)]
    pub fn new(kind: KmsErrorKind, detail: impl Into<String>) -> Self {
        Self { kind, code: None, detail: detail.into(), request_id: None }
    }

    /// Classifies an SDK error.
    pub fn from_sdk<E>(err: SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let request_id = err.request_id().map(str::to_owned);
        let chain = error_chain(&err);
        let (kind, code, detail) = match &err {
            SdkError::ServiceError(service) => {
                let code = service.err().code().map(str::to_owned);
                let message = service.err().message().unwrap_or("").to_owned();
                let kind = match code.as_deref() {
                    Some(code) => kind_of_code(code),
                    None if service.raw().status().as_u16() >= 500 => KmsErrorKind::Unavailable,
                    None => KmsErrorKind::Other,
                };
                (kind, code, if message.is_empty() { chain } else { message })
            }
            SdkError::TimeoutError(_) => (KmsErrorKind::Timeout, None, chain),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => (KmsErrorKind::Timeout, None, chain),
            SdkError::DispatchFailure(failure) if failure.is_io() => (KmsErrorKind::Network, None, chain),
            SdkError::ConstructionFailure(_) | SdkError::DispatchFailure(_) => (kind_of_chain(&chain), None, chain),
            SdkError::ResponseError(_) => (KmsErrorKind::Other, None, format!("unreadable response: {chain}")),
            _ => (KmsErrorKind::Other, None, chain),
        };
        Self { kind, code, detail, request_id }
    }

    /// Whether a later try may get through: throttled, timed out, KMS unavailable (a 5xx) or not reached.
    pub fn retry(&self) -> Retry {
        match self.kind {
            KmsErrorKind::Throttled | KmsErrorKind::Timeout | KmsErrorKind::Unavailable | KmsErrorKind::Network => {
                Retry::Later
            }
            KmsErrorKind::AccessDenied
            | KmsErrorKind::InvalidCredentials
            | KmsErrorKind::NoCredentials
            | KmsErrorKind::NoRegion
            | KmsErrorKind::NotFound
            | KmsErrorKind::Disabled
            | KmsErrorKind::InvalidState
            | KmsErrorKind::InvalidCiphertext
            | KmsErrorKind::IncorrectKey
            | KmsErrorKind::InvalidKeyUsage
            | KmsErrorKind::InvalidGrantToken
            | KmsErrorKind::BadEndpoint
            | KmsErrorKind::InvalidRequest
            | KmsErrorKind::Other => Retry::Never,
        }
    }

    /// The error as a sentence about `operation` (e.g. `Decrypt`): what happened, then what to do.
    pub fn describe(&self, operation: &str) -> String {
        let hint = match self.kind {
            KmsErrorKind::AccessDenied => format!(
                "access denied: grant the caller kms:{operation} on this key (key policy, IAM policy or grant; \
                 conditions on the encryption context apply too)"
            ),
            KmsErrorKind::InvalidCredentials => {
                "the AWS credentials were rejected (unknown access key, wrong secret or expired session): \
                 refresh them"
                    .into()
            }
            KmsErrorKind::NoCredentials => {
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 AWS_PROFILE, or run with an instance or task role"
                    .into()
            }
            KmsErrorKind::NoRegion => {
                "no AWS region configured: set AWS_REGION (or a region in the profile), or use a key ARN".into()
            }
            KmsErrorKind::NotFound => {
                "key not found: check the key id or alias, and that the account and region are the key's".into()
            }
            KmsErrorKind::Disabled => "the key is disabled: enable it (kms:EnableKey) or use another key".into(),
            KmsErrorKind::InvalidState => {
                "the key is not usable in its current state (pending deletion, pending import or unavailable): \
                 cancel the deletion or use another key"
                    .into()
            }
            KmsErrorKind::InvalidCiphertext => {
                "KMS rejected the ciphertext: the encryption context differs from the one used to encrypt, \
                 or the encrypted data key is corrupt"
                    .into()
            }
            KmsErrorKind::IncorrectKey => {
                "wrong key: the data key was encrypted under a different KMS key than the one requested".into()
            }
            KmsErrorKind::InvalidKeyUsage => {
                "the key cannot be used to encrypt and decrypt (asymmetric or HMAC key?): use a symmetric \
                 encryption key"
                    .into()
            }
            KmsErrorKind::InvalidGrantToken => "a grant token was rejected: check the configured grant tokens".into(),
            KmsErrorKind::Throttled => {
                "throttled by KMS, and the SDK's retries did not get through: lower the request rate or ask for \
                 a higher KMS request quota"
                    .into()
            }
            KmsErrorKind::Timeout => {
                "timed out: check the network path to the KMS endpoint, or raise the KMS call timeout".into()
            }
            KmsErrorKind::Unavailable => "KMS is temporarily unavailable, beyond the SDK's retries: try again".into(),
            KmsErrorKind::Network => "could not reach the KMS endpoint: check the network, proxy and endpoint".into(),
            KmsErrorKind::BadEndpoint => {
                "the KMS endpoint URL is not usable: check AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL or the configured \
                 endpoint"
                    .into()
            }
            KmsErrorKind::InvalidRequest => "KMS rejected the request as invalid".into(),
            KmsErrorKind::Other => "the call failed".into(),
        };
        let mut out = format!("{hint} ({self})");
        if out.len() > 2000 {
            let mut cut = 2000;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("...)");
        }
        out
    }
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.detail)?,
            None => f.write_str(&self.detail)?,
        }
        if let Some(id) = &self.request_id {
            write!(f, "; request id {id}")?;
        }
        Ok(())
    }
}

/// The kind of a KMS service error, by its AWS error code.
pub(crate) fn kind_of_code(code: &str) -> KmsErrorKind {
    match code {
        "AccessDeniedException" | "AccessDenied" => KmsErrorKind::AccessDenied,
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidClientTokenId"
        | "IncompleteSignature"
        | "MissingAuthenticationToken" => KmsErrorKind::InvalidCredentials,
        "NotFoundException" => KmsErrorKind::NotFound,
        "DisabledException" => KmsErrorKind::Disabled,
        "KMSInvalidStateException" => KmsErrorKind::InvalidState,
        "InvalidCiphertextException" => KmsErrorKind::InvalidCiphertext,
        "IncorrectKeyException" => KmsErrorKind::IncorrectKey,
        "InvalidKeyUsageException" => KmsErrorKind::InvalidKeyUsage,
        "InvalidGrantTokenException" => KmsErrorKind::InvalidGrantToken,
        "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException" => KmsErrorKind::Throttled,
        "KMSInternalException"
        | "KeyUnavailableException"
        | "DependencyTimeoutException"
        | "ServiceUnavailable"
        | "InternalFailure" => KmsErrorKind::Unavailable,
        "ValidationException" | "InvalidArnException" | "SerializationException" => KmsErrorKind::InvalidRequest,
        _ => KmsErrorKind::Other,
    }
}

/// The error and its sources, by their `Display` only, each cut before anything that could show a request
/// or response body: some SDK errors print the whole request, and an `Encrypt` request holds the data key.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    const WITHHELD: [&str; 5] = ["Request {", "SdkBody", "body:", "Plaintext", "Response {"];
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(err) = next {
        let mut text = err.to_string();
        if let Some(cut) = WITHHELD.iter().filter_map(|marker| text.find(marker)).min() {
            text.truncate(cut);
            text.push_str("[request details withheld]");
        }
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// The kind of a failure before any response, from the SDK's error chain (credentials and region errors
/// have no code of their own).
fn kind_of_chain(chain: &str) -> KmsErrorKind {
    let lower = chain.to_ascii_lowercase();
    if lower.contains("credential") {
        KmsErrorKind::NoCredentials
    } else if lower.contains("region") {
        KmsErrorKind::NoRegion
    } else if lower.contains("endpoint") {
        KmsErrorKind::BadEndpoint
    } else if lower.contains("timeout") || lower.contains("timed out") {
        KmsErrorKind::Timeout
    } else if lower.contains("connect") || lower.contains("dns") || lower.contains("dispatch") {
        KmsErrorKind::Network
    } else {
        KmsErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_actionable_code_has_its_kind_and_hint() {
        let cases = [
            ("AccessDeniedException", KmsErrorKind::AccessDenied, "kms:Decrypt"),
            ("UnrecognizedClientException", KmsErrorKind::InvalidCredentials, "credentials were rejected"),
            ("NotFoundException", KmsErrorKind::NotFound, "key not found"),
            ("DisabledException", KmsErrorKind::Disabled, "disabled"),
            ("KMSInvalidStateException", KmsErrorKind::InvalidState, "pending deletion"),
            ("InvalidCiphertextException", KmsErrorKind::InvalidCiphertext, "encryption context differs"),
            ("IncorrectKeyException", KmsErrorKind::IncorrectKey, "wrong key"),
            ("ThrottlingException", KmsErrorKind::Throttled, "throttled"),
            ("KMSInternalException", KmsErrorKind::Unavailable, "temporarily unavailable"),
            ("InvalidKeyUsageException", KmsErrorKind::InvalidKeyUsage, "symmetric"),
        ];
        for (code, kind, hint) in cases {
            assert_eq!(kind_of_code(code), kind, "{code}");
            let err = KmsError { kind, code: Some(code.into()), detail: "msg".into(), request_id: Some("r-1".into()) };
            let text = err.describe("Decrypt");
            assert!(text.contains(hint) && text.contains(code) && text.contains("r-1"), "{text}");
        }
        assert_eq!(kind_of_code("SomethingNew"), KmsErrorKind::Other);
    }

    #[test]
    fn only_throttling_timeouts_outages_and_unreached_endpoints_may_pass_later() {
        let later = [KmsErrorKind::Throttled, KmsErrorKind::Timeout, KmsErrorKind::Unavailable, KmsErrorKind::Network];
        for kind in later {
            assert_eq!(KmsError::new(kind, "").retry(), Retry::Later, "{kind:?}");
        }
        for code in ["NotFoundException", "AccessDeniedException", "InvalidCiphertextException", "DisabledException"] {
            // The service's words do not count, only its code.
            let err = KmsError { code: Some(code.into()), ..KmsError::new(kind_of_code(code), "timeout: SlowDown") };
            assert_eq!(err.retry(), Retry::Never, "{code}");
        }
    }

    #[test]
    fn chains_without_codes() {
        assert_eq!(kind_of_chain("failed to load credentials: no providers in chain"), KmsErrorKind::NoCredentials);
        assert_eq!(kind_of_chain("A region must be set when sending requests to KMS."), KmsErrorKind::NoRegion);
        assert_eq!(kind_of_chain("io error: connection refused (dispatch failure)"), KmsErrorKind::Network);
        let leak =
            std::io::Error::other("failed to apply endpoint to `Request { body: {\"Plaintext\":\"c2VjcmV0\"} }`");
        let chain = error_chain(&leak);
        assert!(!chain.contains("c2VjcmV0") && chain.contains("withheld"), "{chain}");
        assert_eq!(kind_of_chain(&chain), KmsErrorKind::BadEndpoint);
        let long = KmsError::new(KmsErrorKind::Other, "é".repeat(3000)).describe("Encrypt");
        assert!(long.len() <= 2004 && long.ends_with("...)"), "{}", long.len());
    }
}
