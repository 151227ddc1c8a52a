//! PEM key files (RFC 7468): the label and the DER of the first block, for the RSA and ECDH keys.

use base64::Engine as _;
use zeroize::Zeroizing;

/// Why an encrypted PEM key is refused.
pub(crate) const ENCRYPTED: &str = "encrypted PEM keys are not supported; decrypt the key file first";

/// The label and DER of the first PEM block in `pem`.
pub(crate) fn decode(pem: &[u8]) -> Result<(String, Zeroizing<Vec<u8>>), String> {
    let text = std::str::from_utf8(pem).map_err(|_| "the PEM file is not text".to_owned())?;
    let start = text.find("-----BEGIN ").ok_or_else(|| "no -----BEGIN line: not a PEM file".to_owned())?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let (label, rest) = rest.split_once("-----").ok_or_else(|| "a malformed -----BEGIN line".to_owned())?;
    let end_line = format!("-----END {label}-----");
    let body = rest.split(end_line.as_str()).next().filter(|_| rest.contains(&end_line));
    let body = body.ok_or_else(|| format!("no {end_line} line"))?;
    if body.contains("Proc-Type:") || body.contains("DEK-Info:") {
        return Err(ENCRYPTED.into());
    }
    // Sized up front: a String grown by pushing frees each smaller copy of the key unwiped.
    let mut b64 = Zeroizing::new(String::with_capacity(body.len()));
    b64.extend(body.chars().filter(|c| !c.is_ascii_whitespace()));
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| format!("the {label} block is not valid base64"))?;
    Ok((label.to_owned(), Zeroizing::new(der)))
}
