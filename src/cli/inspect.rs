//! `inspect`: a message's header as text or JSON, read without any key and without calling KMS.

use std::fmt::Write as _;
use std::io::Write;

use kms_envelope::{
    AlgorithmSuite, ContentType, DecryptLimits, EncryptedDataKey, Header, Kdf, MessageFormat, MessageLayout,
    SignatureAlgorithm,
};

use super::args::InspectArgs;
use super::exit::Failure;
use super::io::{check_stdout_is_not_input, open_header_message};

/// Raw AES provider info ends with the tag length in bits (128) and the IV length (12), then the IV.
const RAW_AES_TRAILER: [u8; 8] = [0, 0, 0, 0x80, 0, 0, 0, 12];
const RAW_AES_TRAILER_LEN: usize = RAW_AES_TRAILER.len() + 12;

pub fn run(args: &InspectArgs) -> Result<(), Failure> {
    let mut input = open_header_message(&args.input)?;
    check_stdout_is_not_input(&args.input, &input)?;
    // Inspect describes what is there, so only the limits that bound memory apply.
    let limits = DecryptLimits {
        max_frame_length: u32::MAX,
        max_encrypted_data_keys: args.max_encrypted_data_keys,
        ..DecryptLimits::default()
    };
    let header =
        Header::read_from(limits, &mut input.reader).map_err(|e| Failure::reading(e).with_file(&input.name))?;
    let text = if args.json { json(&header) } else { human(&input.name, &header) };
    let text = with_layout(text, args.json, &header, input.file.as_ref().and(input.size));
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::io("cannot write to stdout".into(), e))
}

/// Who wrapped a data key, as far as the header tells without a key.
enum Wrapper<'a> {
    Kms {
        arn: &'a str,
    },
    KmsRsa {
        arn: &'a str,
    },
    RawAes {
        name: &'a str,
    },
    /// Raw RSA EDKs carry nothing but the key name: a text name with a ciphertext as long as a common RSA
    /// modulus is most likely one.
    RawRsa {
        name: &'a str,
        bits: usize,
    },
    Other {
        info: &'a [u8],
    },
}

fn wrapper(edk: &EncryptedDataKey) -> Wrapper<'_> {
    let info = &edk.provider_info;
    if edk.provider_id == "aws-kms"
        && let Ok(arn) = std::str::from_utf8(info)
    {
        return Wrapper::Kms { arn };
    }
    if edk.provider_id == "aws-kms-rsa"
        && let Ok(arn) = std::str::from_utf8(info)
    {
        return Wrapper::KmsRsa { arn };
    }
    if info.len() >= RAW_AES_TRAILER_LEN {
        let (name, trailer) = info.split_at(info.len() - RAW_AES_TRAILER_LEN);
        if trailer[..RAW_AES_TRAILER.len()] == RAW_AES_TRAILER
            && let Ok(name) = std::str::from_utf8(name)
        {
            return Wrapper::RawAes { name };
        }
    }
    if matches!(edk.ciphertext.len(), 256 | 384 | 512)
        && let Ok(name) = std::str::from_utf8(info)
        && !name.is_empty()
    {
        return Wrapper::RawRsa { name, bits: edk.ciphertext.len() * 8 };
    }
    Wrapper::Other { info }
}

/// The key that wrapped `edk`, as far as its header entry names it: a KMS key's ARN, a raw key's name.
pub fn key_id(edk: &EncryptedDataKey) -> Option<&str> {
    match wrapper(edk) {
        Wrapper::Kms { arn } | Wrapper::KmsRsa { arn } => Some(arn),
        Wrapper::RawAes { name } | Wrapper::RawRsa { name, .. } => Some(name),
        Wrapper::Other { .. } => None,
    }
}

/// Who wrapped `edk`, for people: its provider id and key name or ARN, quoted with Rust's escapes, so that no
/// byte of a crafted header reaches a terminal as a control sequence.
pub fn describe(edk: &EncryptedDataKey) -> String {
    let id = &edk.provider_id;
    match wrapper(edk) {
        Wrapper::Kms { arn } => format!("provider {id:?}, AWS KMS key {arn:?}"),
        Wrapper::KmsRsa { arn } => format!("provider {id:?}, AWS KMS RSA key {arn:?}"),
        Wrapper::RawRsa { name, bits } => {
            format!("provider {id:?}, raw RSA key name {name:?} (a {bits}-bit key, by its size)")
        }
        Wrapper::RawAes { name } => format!("provider {id:?}, raw AES key name {name:?}"),
        Wrapper::Other { info } => format!("provider {id:?}, provider info {}", hex(info)),
    }
}

fn describe_suite(suite: AlgorithmSuite) -> String {
    let mut parts = vec![format!("AES-{}-GCM", suite.key_len() * 8)];
    parts.push(
        match suite.kdf() {
            Kdf::Identity => "no KDF",
            Kdf::HkdfSha256 => "HKDF-SHA256",
            Kdf::HkdfSha384 => "HKDF-SHA384",
            Kdf::HkdfSha512Commit => "HKDF-SHA512, key commitment",
        }
        .to_owned(),
    );
    parts.push(
        match suite.signature() {
            None => "unsigned",
            Some(SignatureAlgorithm::EcdsaP256Sha256) => "ECDSA P-256 signature",
            Some(SignatureAlgorithm::EcdsaP384Sha384) => "ECDSA P-384 signature",
        }
        .to_owned(),
    );
    parts.join(", ")
}

fn version(header: &Header) -> u8 {
    match header.suite().message_format() {
        MessageFormat::V1 => 1,
        MessageFormat::V2 => 2,
    }
}

fn content_type(header: &Header) -> &'static str {
    match header.content_type() {
        ContentType::Framed => "framed",
        ContentType::NonFramed => "non-framed",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Text for people. Strings from the header are quoted with Rust's escapes, so no byte of a crafted
/// header can reach the terminal as a control sequence.
fn human(name: &str, header: &Header) -> String {
    let mut out = String::new();
    let suite = header.suite();
    let _ = writeln!(out, "message:            {name:?}");
    let _ = writeln!(out, "format version:     {}", version(header));
    let _ = writeln!(out, "algorithm suite:    {suite} ({})", describe_suite(suite));
    let _ = writeln!(out, "message id:         {}", header.message_id());
    let _ = writeln!(out, "content type:       {}", content_type(header));
    let _ = writeln!(out, "frame length:       {}", header.frame_length());
    let context = header.encryption_context();
    let _ = writeln!(out, "encryption context: {} pair(s)", context.len());
    for (k, v) in context.iter() {
        let _ = writeln!(out, "  {k:?} = {v:?}");
    }
    let edks = header.encrypted_data_keys();
    let _ = writeln!(out, "encrypted data keys: {}", edks.len());
    for (n, edk) in edks.iter().enumerate() {
        let _ = writeln!(out, "  {}. {}", n + 1, describe(edk));
    }
    out.push_str("(read without a key: the header is not authenticated)\n");
    out
}

/// JSON for machines: one object, keys in a fixed order.
fn json(header: &Header) -> String {
    let suite = header.suite();
    let mut out = String::from("{");
    let _ = write!(out, "\"version\":{}", version(header));
    let _ = write!(
        out,
        ",\"suite\":{{\"id\":\"0x{:04X}\",\"description\":{},\"committing\":{},\"signed\":{}}}",
        suite.id(),
        json_str(&describe_suite(suite)),
        suite.is_committing(),
        suite.signature().is_some()
    );
    let _ = write!(out, ",\"message_id\":\"{}\"", header.message_id());
    let _ = write!(out, ",\"content_type\":\"{}\"", content_type(header));
    let _ = write!(out, ",\"frame_length\":{}", header.frame_length());
    out.push_str(",\"encryption_context\":{");
    for (n, (k, v)) in header.encryption_context().iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{}", json_str(k), json_str(v));
    }
    out.push_str("},\"encrypted_data_keys\":[");
    for (n, edk) in header.encrypted_data_keys().iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"provider_id\":{}", json_str(&edk.provider_id));
        let _ = match wrapper(edk) {
            Wrapper::Kms { arn } => write!(out, ",\"kind\":\"aws-kms\",\"key_arn\":{}}}", json_str(arn)),
            Wrapper::KmsRsa { arn } => write!(out, ",\"kind\":\"aws-kms-rsa\",\"key_arn\":{}}}", json_str(arn)),
            Wrapper::RawRsa { name, bits } => {
                write!(out, ",\"kind\":\"raw-rsa\",\"key_name\":{},\"rsa_bits\":{bits}}}", json_str(name))
            }
            Wrapper::RawAes { name } => write!(out, ",\"kind\":\"raw-aes\",\"key_name\":{}}}", json_str(name)),
            Wrapper::Other { info } => write!(out, ",\"kind\":\"other\",\"provider_info_hex\":\"{}\"}}", hex(info)),
        };
    }
    out.push_str("],\"authenticated\":false}\n");
    out
}

/// Adds the plaintext length and frame count to `text` when the input is a regular file of `size` bytes
/// holding an unsigned framed message (whose length alone fixes them; a signed message's footer varies in
/// length). Unauthenticated like the rest: what the message holds if it is intact.
fn with_layout(mut text: String, json: bool, header: &Header, size: Option<u64>) -> String {
    let Some(layout) = size.and_then(|size| MessageLayout::new(header, size).ok()) else { return text };
    let (plaintext, frames) = (layout.plaintext_len(), layout.frame_count());
    if json {
        text.truncate(text.trim_end().len() - 1);
        let _ = writeln!(text, ",\"layout\":{{\"plaintext_length\":{plaintext},\"frame_count\":{frames}}}}}");
    } else {
        let _ = writeln!(text, "plaintext length:   {plaintext} bytes in {frames} frame(s) (from the file's length)");
    }
    text
}

/// `s` as a JSON string, with controls and bidirectional characters escaped.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // C1 controls and bidirectional overrides are valid JSON unescaped, but act on a terminal
            // (`U+009B` is CSI) or make one key read as another; every character `needs_escape` flags
            // is in the BMP, so four hex digits suffice.
            c if kms_envelope::escape::needs_escape(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_and_controls() {
        assert_eq!(json_str("a\"b\\c\n\u{1b}é"), "\"a\\\"b\\\\c\\n\\u001bé\"");
        assert_eq!(json_str("\u{9b}\u{202e}\u{2066}\u{7f}"), "\"\\u009b\\u202e\\u2066\\u007f\"");
    }
}
