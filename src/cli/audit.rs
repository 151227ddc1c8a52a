//! `--metadata-output`: one JSON line per message encrypted or decrypted, an audit record in the shape of
//! `aws-encryption-cli --metadata-output` (its field names and encodings where it has the field).
//!
//! A record says which message (id, suite, frame length), under which encryption context and which
//! wrapping keys (provider id and key info, base64 as the ESDK CLI writes them, and the key's name or ARN
//! as JSON text), went from which input to which output. It never holds plaintext, a data key or a
//! wrapped data key. Decrypt writes a message's record only once the whole message verified: the ESDK CLI
//! writes it after the header, before the body is read, so a message that then fails still has a record.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use kms_envelope::{AlgorithmSuite, ContentType, Header, MessageFormat};

use super::args::MetadataArgs;
use super::exit::{Code, Failure};
use super::inspect::{json_str, key_id};
use super::location::Location;
use kms_envelope::escape::escaped;

/// What was done to the message, as the record's `mode` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Encrypt,
    Decrypt,
}

/// Where the records of this run go.
pub struct Audit {
    mode: Mode,
    out: RefCell<Box<dyn Write>>,
    /// The name records are written to, for failures.
    name: String,
}

impl Audit {
    /// The audit of a run whose data goes to `data_output` (`None` for the trees of `--recursive`), or
    /// `None` without `--metadata-output`. Refuses records on stdout when the data goes there too (they
    /// would mix). The file is appended to, as the ESDK CLI does, unless `--overwrite-metadata`; it is
    /// created 0600. Refuses a file that is one of `kept` (INPUT, OUTPUT and the key files, as given):
    /// appended to, or truncated by `--overwrite-metadata` before anything is read, it would be destroyed.
    pub fn open<'a>(
        args: &MetadataArgs,
        mode: Mode,
        data_output: Option<&Location>,
        kept: impl IntoIterator<Item = &'a Path>,
    ) -> Result<Option<Self>, Failure> {
        let path = match &args.metadata_output {
            None => return Ok(None),
            Some(Location::Stdio) => {
                if data_output == Some(&Location::Stdio) {
                    return Err(Failure::usage(
                        "--metadata-output - and OUTPUT - would mix the records with the data on stdout: give one \
                         of them a file"
                            .into(),
                    ));
                }
                let out: Box<dyn Write> = Box::new(std::io::stdout());
                return Ok(Some(Self { mode, out: RefCell::new(out), name: "stdout".into() }));
            }
            Some(Location::S3(name)) => {
                return Err(Failure::usage(format!(
                    "--metadata-output {}: must be a local file or - (stdout); records are not written to S3",
                    escaped(name.as_str())
                )));
            }
            Some(Location::File(path)) => path.as_path(),
        };
        if let Some(other) = kept.into_iter().find(|other| same_file(path, other)) {
            return Err(Failure::usage(format!(
                "--metadata-output {} is {}, which the run reads or writes: give the records a file of their own",
                escaped(&path.to_string_lossy()),
                escaped(&other.to_string_lossy())
            )));
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true);
        if args.overwrite_metadata {
            options.write(true).truncate(true);
        } else {
            options.append(true);
        }
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(|e| Failure::io(format!("--metadata-output {}", shown(path)), e))?;
        Ok(Some(Self { mode, out: RefCell::new(Box::new(file)), name: shown(path) }))
    }

    /// Writes the record of `header`'s message, read from `input` and written to `output`, as one line.
    pub fn record(&self, input: &Location, output: &Location, header: &Header) -> Result<(), Failure> {
        let line = record(self.mode, input, output, header);
        let mut out = self.out.borrow_mut();
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Failure::new(Code::Io, format!("cannot write the audit record to {}: {e}", self.name)))
    }
}

/// The files a run reads or writes besides the records: INPUT and OUTPUT when they are paths (not `-` or
/// `s3://`), and the key files.
pub fn kept_files<'a>(
    input: &'a Location,
    output: &'a Location,
    keys: impl Iterator<Item = &'a std::path::PathBuf>,
) -> impl Iterator<Item = &'a Path> {
    [input, output].into_iter().filter_map(Location::local_path).chain(keys.map(|key| key.as_path()))
}

/// Whether `a` and `b` name one file: the same device and inode when both exist (through any name or
/// link), else the same absolute path (a file both would create).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return (a.dev(), a.ino()) == (b.dev(), b.ino());
        }
    }
    matches!((std::path::absolute(a), std::path::absolute(b)), (Ok(a), Ok(b)) if a == b)
}

/// A path as the records and failures show it.
fn shown(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// An input or output as the ESDK CLI names it: `<stdin>` or `<stdout>` (`stdio`) for `-`, an absolute path
/// for a file (not resolved through links), an S3 object as given.
fn location(at: &Location, stdio: &str) -> String {
    match at {
        Location::Stdio => stdio.to_owned(),
        Location::S3(name) => name.as_str().to_owned(),
        Location::File(path) => std::path::absolute(path).map_or_else(|_| shown(path), |path| shown(&path)),
    }
}

/// The suite's name in the ESDK (`aws_encryption_sdk.identifiers.Algorithm`), which the ESDK CLI writes.
fn esdk_name(suite: AlgorithmSuite) -> &'static str {
    match suite.id() {
        0x0014 => "AES_128_GCM_IV12_TAG16",
        0x0046 => "AES_192_GCM_IV12_TAG16",
        0x0078 => "AES_256_GCM_IV12_TAG16",
        0x0114 => "AES_128_GCM_IV12_TAG16_HKDF_SHA256",
        0x0146 => "AES_192_GCM_IV12_TAG16_HKDF_SHA256",
        0x0178 => "AES_256_GCM_IV12_TAG16_HKDF_SHA256",
        0x0214 => "AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256",
        0x0346 => "AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384",
        0x0378 => "AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384",
        0x0478 => "AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
        0x0578 => "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384",
        _ => "unknown",
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One record, keys sorted (as the ESDK CLI's `json.dumps(..., sort_keys=True)`), ending in a newline.
/// Every string from the message goes through [`json_str`] (the encryption context is UTF-8 by the
/// format; controls and bidirectional characters are escaped) or base64.
fn record(mode: Mode, input: &Location, output: &Location, header: &Header) -> String {
    let suite = header.suite();
    let mut keys: Vec<_> = header.encrypted_data_keys().iter().collect();
    // The ESDK CLI's order: by provider id, then key info, as bytes.
    keys.sort_by(|a, b| {
        (a.provider_id.as_bytes(), &a.provider_info).cmp(&(b.provider_id.as_bytes(), &b.provider_info))
    });
    let mut out = String::from("{\"header\": {");
    let _ = write!(out, "\"algorithm\": {}", json_str(esdk_name(suite)));
    let content_type = match header.content_type() {
        ContentType::NonFramed => 1,
        ContentType::Framed => 2,
    };
    let _ = write!(out, ", \"content_type\": {content_type}, \"encrypted_data_keys\": [");
    for (n, edk) in keys.iter().enumerate() {
        let sep = if n > 0 { ", " } else { "" };
        let id = key_id(edk).map_or_else(|| "null".to_owned(), json_str);
        let _ = write!(
            out,
            "{sep}{{\"key_id\": {id}, \"key_provider\": {{\"key_info\": \"{}\", \"provider_id\": \"{}\"}}}}",
            b64(&edk.provider_info),
            b64(edk.provider_id.as_bytes())
        );
    }
    out.push_str("], \"encryption_context\": {");
    for (n, (k, v)) in header.encryption_context().iter().enumerate() {
        let sep = if n > 0 { ", " } else { "" };
        let _ = write!(out, "{sep}{}: {}", json_str(k), json_str(v));
    }
    let version = match suite.message_format() {
        MessageFormat::V1 => "1.0",
        MessageFormat::V2 => "2.0",
    };
    let _ = write!(
        out,
        "}}, \"frame_length\": {}, \"message_id\": \"{}\", \"suite_id\": \"0x{:04X}\", \"version\": \"{version}\"}}",
        header.frame_length(),
        b64(header.message_id().as_bytes()),
        suite.id()
    );
    let (mode, verified) = match mode {
        Mode::Encrypt => ("encrypt", ""),
        Mode::Decrypt => ("decrypt", ", \"verified\": true"),
    };
    let _ = writeln!(
        out,
        ", \"input\": {}, \"mode\": \"{mode}\", \"output\": {}{verified}}}",
        json_str(&location(input, "<stdin>")),
        json_str(&location(output, "<stdout>"))
    );
    out
}
