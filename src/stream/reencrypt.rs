//! Re-encryption: one message read, its plaintext sealed into a new message under a fresh data key, in one
//! streaming pass with the plaintext only in the two pipelines' wiped buffers.
//!
//! # Why a whole new message, never a new header
//!
//! Swapping the encrypted data keys of a v2 header and keeping its body looks cheaper, since a frame's
//! AAD does not cover the EDK list. But the v2 header tag is AES-GCM under the message's content key with
//! the fixed all-zero IV: a second header for the same data key would seal other AAD under the same
//! (key, IV) pair, and from the two public tags anyone holding both versions (an old object version, a
//! backup) can solve for GHASH's key and then forge any frame of the message. So this module never writes
//! a header for an existing data key. (A v1 header stores its IV, so a v1-only rewrap with a fresh IV would
//! be sound; it is not worth a second code path.)
//!
//! # Keys and IVs
//!
//! * The source is opened exactly as [`Decryptor`] opens any message: its content key is only ever used to
//!   verify, never to seal.
//! * The new message is prepared exactly as [`Encryptor::new`] prepares one: the target keyring generates
//!   (or, through a [`CachingKeyring`](crate::CachingKeyring), reuses) a data key, and a fresh random
//!   message id goes into the key derivation, so the new content key is one no earlier message used, as
//!   for any encrypt. Its IVs are the header's zero IV and the frame sequence numbers, each used once under
//!   that key.
//! * The two content keys are independent (HKDF over different data keys, or over different message ids),
//!   so the old and new messages never share a (key, IV) pair, however often a message is re-encrypted.
//!
//! # When the new message is complete
//!
//! The [`Decryptor`] releases a frame's plaintext only after its tag verified, and the source's final frame
//! only after the end of input, and for signed suites the footer signature, checked out. The new message's
//! final frame (and footer) is sealed and written only after that, by [`Encryptor::finish`]. So on any
//! failure of the source the output lacks its final frame, which every ESDK rejects, and the file and S3
//! variants never commit it at all. The file variant's positioned path for unsigned framed messages
//! (`reencrypt_file.rs`) keeps the same rule without the streaming pipelines and argues its own keys and
//! IVs in its module documentation.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use super::cmm::{OpenedHeader, PreparedEncryption, open_header, open_header_with, prepare_encrypt};
use super::file::{OutputOptions, PendingFile};
use super::options::{DecryptOptions, EncryptOptions};
use super::positioned::Sink;
use super::reencrypt_file::reencrypt_file;
use super::{Decryptor, Encryptor};
use crate::error::{Error, Result};
use crate::escape::Escaped;
use crate::format::context::{EncryptionContext, RESERVED_PREFIX};
use crate::format::edk::EncryptedDataKey;
use crate::format::header::{Header, HeaderDecoder, MessageId};
use crate::format::suite::AlgorithmSuite;
#[cfg(doc)]
use crate::format::suite::CommitmentPolicy;
use crate::keyring::{EncryptionMaterials, Keyring, block_on};

/// How a message is re-encrypted: how the source is read, and what the new message looks like.
///
/// The defaults: the source is read with the default [`DecryptOptions`], whose policy reads committing
/// messages only; the new message keeps the source's encryption context and uses the committing suite of
/// the source's kind (0x0578 for a signed source, 0x0478 otherwise) with [`EncryptOptions`]' defaults
/// (64 KiB frames).
///
/// To upgrade legacy (non-committing) messages, read them under
/// [`CommitmentPolicy::RequireEncryptAllowDecrypt`]: explicitly, because a non-committing message may
/// decrypt to different plaintexts under different data keys, and re-encrypting one turns whichever
/// plaintext this reader got into a committing message that no longer shows that doubt.
///
/// ```
/// use kms_envelope::{DecryptOptions, EncryptOptions, RawAesKeyring, ReencryptOptions, decrypt, encrypt, reencrypt};
///
/// fn main() -> Result<(), kms_envelope::Error> {
///     let old_key = RawAesKeyring::new("my-service", "key-2025", &[0x42; 32])?;
///     let new_key = RawAesKeyring::new("my-service", "key-2026", &[0x17; 32])?;
///     let message = encrypt(&old_key, &EncryptOptions::new().context("app", "billing"), b"db password")?;
///
///     let mut rotated = Vec::new();
///     let report = reencrypt(&old_key, &new_key, &ReencryptOptions::new(), &message[..], &mut rotated)?;
///     assert_eq!(report.plaintext_length, 11);
///
///     let decrypted = decrypt(&new_key, &DecryptOptions::new(), &rotated)?;
///     assert_eq!(&decrypted.plaintext[..], b"db password");
///     assert_eq!(decrypted.header.encryption_context().get("app"), Some("billing")); // kept
///     assert!(decrypt(&old_key, &DecryptOptions::new(), &rotated).is_err()); // a new data key
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct ReencryptOptions {
    pub(crate) source: DecryptOptions,
    pub(crate) target: EncryptOptions,
    pub(crate) keep_context: bool,
}

impl Default for ReencryptOptions {
    fn default() -> Self {
        Self { source: DecryptOptions::new(), target: EncryptOptions::new(), keep_context: true }
    }
}

impl ReencryptOptions {
    /// The defaults (see the type's documentation).
    pub fn new() -> Self {
        Self::default()
    }

    /// How the source is read: commitment policy, limits, the expected and the required context pairs
    /// (which a source encrypted with required pairs needs), threads.
    pub fn source(mut self, options: DecryptOptions) -> Self {
        self.source = options;
        self
    }

    /// What the new message looks like: frame length, threads, commitment policy, a declared plaintext
    /// bound (which a caching target keyring needs), and the suite if one is set there (otherwise the
    /// committing suite of the source's kind). Its encryption context is used only with
    /// [`keep_context(false)`](Self::keep_context); with the default it adds pairs to the kept context.
    pub fn target(mut self, options: EncryptOptions) -> Self {
        self.target = options;
        self
    }

    /// Whether the new message keeps the source's encryption context (default: yes).
    ///
    /// Kept means: the pairs stored in the source's header, except the `aws-crypto-` pairs the format
    /// itself adds (a signed suite's public key), plus the required pairs given to
    /// [`source`](Self::source)'s [`DecryptOptions::context`] that the header does not store, which stay
    /// required (authenticated, not stored) in the new message. The target options' own pairs are added;
    /// one that names a kept key with another value is refused rather than silently changing the context.
    /// `false` uses the target options' context alone.
    pub fn keep_context(mut self, keep: bool) -> Self {
        self.keep_context = keep;
        self
    }
}

/// What [`reencrypt`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Reencrypted {
    /// The source's authenticated header.
    pub source: Header,
    /// The suite of the new message.
    pub suite: AlgorithmSuite,
    /// The new message's id.
    pub message_id: MessageId,
    /// Plaintext bytes carried over.
    pub plaintext_length: u64,
}

/// The suite a re-encrypted message uses when the options name none: the committing suite of the
/// source's kind, so that a legacy message is upgraded and a signed one stays signed.
pub fn default_target_suite(source: AlgorithmSuite) -> AlgorithmSuite {
    if source.signature().is_some() {
        AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384
    } else {
        AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY
    }
}

/// Decrypts the message read from `input` with `source_keyring` and writes it to `output` as a new message
/// under a fresh data key from `target_keyring`, in one pass (both pipelines run on their worker threads
/// at once). The new message's final frame is written only after the whole source verified, signature
/// included; on any error `output` holds at most a message without its final frame, which no ESDK
/// accepts (the file variant, [`reencrypt_path`], leaves nothing).
///
/// # Errors
///
/// Whatever decrypting the source fails with (no source key unwraps its data key, a tampered or truncated
/// message, a policy or context mismatch, a limit), whatever encrypting fails with (the target keyring, a
/// suite the target policy forbids), a kept context key given another value, or an I/O error.
pub fn reencrypt<R: Read, W: Write>(
    source_keyring: &dyn Keyring,
    target_keyring: &dyn Keyring,
    options: &ReencryptOptions,
    mut input: R,
    output: W,
) -> Result<Reencrypted> {
    let header = HeaderDecoder::read_from(options.source.limits, &mut input)?;
    let (opened, target, prepared) = open_and_prepare(source_keyring, target_keyring, options, &header)?;
    stream_body(header, opened, prepared, options, &target, input, output)
}

/// Opens the source's header with `source_keyring` and prepares the new message with `target_keyring`:
/// the source's keys, the new message's options, and its header and keys.
fn open_and_prepare(
    source_keyring: &dyn Keyring,
    target_keyring: &dyn Keyring,
    options: &ReencryptOptions,
    header: &Header,
) -> Result<(OpenedHeader, EncryptOptions, PreparedEncryption)> {
    let opened = block_on(open_header(source_keyring, &options.source, header))?;
    let target = target_options(options, header, &opened.context)?;
    let prepared = block_on(prepare_encrypt(target_keyring, &target, target.max_plaintext_length))?;
    Ok((opened, target, prepared))
}

/// Re-encrypts the body that `input` holds after `header` into `output` through the streaming decryptor
/// and encryptor, from the new message's header on.
fn stream_body<R: Read, W: Write>(
    header: Header,
    opened: OpenedHeader,
    prepared: PreparedEncryption,
    options: &ReencryptOptions,
    target: &EncryptOptions,
    input: R,
    output: W,
) -> Result<Reencrypted> {
    let (suite, message_id) = (prepared.suite, prepared.message_id);
    let mut decryptor = Decryptor::with_opened(header, opened, &options.source, input);
    let mut encryptor = Encryptor::with_prepared(prepared, target, output)?;
    let plaintext_length = decryptor.write_to(&mut encryptor).map_err(Error::from_io)?;
    encryptor.finish()?;
    Ok(Reencrypted { source: decryptor.header().clone(), suite, message_id, plaintext_length })
}

/// Re-encrypts the message in the file `source` into the file `destination`, which appears (mode 0600,
/// atomically, synced unless [`OutputOptions::sync`] is off) only once the whole source verified and the
/// new message is complete; on any error nothing new is left at `destination`.
///
/// `destination` may be `source` itself (with [`OutputOptions::overwrite`]): the file is replaced in one
/// rename (keeping its owner and group where this process may set them; the mode is 0600), and refused if
/// another file took the source's name while it was being read. Other hard links to it keep the old
/// message. Unless the target
/// options declare a plaintext bound, the source's length is declared (a message's plaintext is shorter),
/// so that a [`CachingKeyring`](crate::CachingKeyring) as the target keyring can reuse its data key.
///
/// An unsigned framed source re-encrypted into an unsigned suite (0x0478 to 0x0478, the default for it)
/// takes no copy loop: worker threads (the target options' threads) each read a run of source frames at
/// its offset, open them, seal their plaintext as the new message's frames (of the target frame length,
/// the same bytes the streaming path writes) and write those at their offsets; the new message's final
/// frame is written last, once every source frame verified. Signed sources or targets (whose signature
/// hashes the body in order) and non-framed sources are streamed.
///
/// ```
/// use kms_envelope::{DecryptOptions, EncryptOptions, OutputOptions, RawAesKeyring, ReencryptOptions};
/// use kms_envelope::{decrypt, encrypt, reencrypt_path};
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let old_key = RawAesKeyring::new("my-service", "key-2025", &[0x42; 32])?;
///     let new_key = RawAesKeyring::new("my-service", "key-2026", &[0x17; 32])?;
///     let dir = tempfile::tempdir()?;
///     let path = dir.path().join("secrets.esdk");
///     std::fs::write(&path, encrypt(&old_key, &EncryptOptions::new(), b"tls key")?)?;
///
///     let in_place = OutputOptions::new().overwrite(true);
///     reencrypt_path(&old_key, &new_key, &ReencryptOptions::new(), &path, &path, &in_place)?;
///     assert_eq!(&decrypt(&new_key, &DecryptOptions::new(), &std::fs::read(&path)?)?.plaintext[..], b"tls key");
///     Ok(())
/// }
/// ```
///
/// # Errors
///
/// Those of [`reencrypt`], an existing `destination` without [`OutputOptions::overwrite`], a symlink
/// there, or a source replaced while it was read.
pub fn reencrypt_path(
    source_keyring: &dyn Keyring,
    target_keyring: &dyn Keyring,
    options: &ReencryptOptions,
    source: &Path,
    destination: &Path,
    output: &OutputOptions,
) -> Result<Reencrypted> {
    let mut input = File::open(source)?;
    let read = input.metadata()?;
    let mut declared = options.clone();
    if declared.target.max_plaintext_length.is_none() && read.is_file() {
        declared.target.max_plaintext_length = Some(read.len());
    }
    let mut pending = PendingFile::create(destination, output.overwrites())?;
    #[cfg(unix)]
    if same_path(source, destination) {
        // In place, the file keeps its owner and group where this process may give them (as root, or as
        // its owner with a group of its own); the mode stays 0600.
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::fchown(pending.file(), Some(read.uid()), Some(read.gid()));
    }
    if output.syncs() {
        pending.sync_while_writing();
    }
    let header = HeaderDecoder::read_from(declared.source.limits, &mut input)?;
    let (opened, target, prepared) = open_and_prepare(source_keyring, target_keyring, &declared, &header)?;
    let fused = match read.is_file() {
        true => {
            let sink = Sink::pending(&pending);
            match reencrypt_file(&header, &opened, &declared.source, &prepared, &target, &input, read.len(), sink) {
                Err(failed @ Error::FrameAuthentication { .. }) => {
                    return Err(streamed_error(header, opened, &declared.source, &input, failed));
                }
                fused => fused?,
            }
        }
        false => None,
    };
    let report = match fused {
        Some(plaintext_length) => {
            let (suite, message_id) = (prepared.suite, prepared.message_id);
            Reencrypted { source: header, suite, message_id, plaintext_length }
        }
        None => stream_body(header, opened, prepared, &declared, &target, &input, &mut pending)?,
    };
    if !still_the_file_read(source, destination, &read)? {
        return Err(Error::Io(std::io::Error::other(
            "the source was replaced while it was re-encrypted; nothing was written",
        )));
    }
    pending.commit(output.syncs(), output.overwrites())?;
    Ok(report)
}

/// The error the streaming decryptor reports for the body that follows `header` in `input` (whose position
/// is right after the header), where the positioned re-encryption failed with `failed`: the first thing
/// wrong in the message's order, a frame out of place told as such rather than as a tag that failed, the
/// same error [`reencrypt`] gives for these bytes. It only decrypts (into nothing), never seals. If the
/// body now reads whole (the file changed back meanwhile), `failed` stands.
fn streamed_error(
    header: Header,
    opened: OpenedHeader,
    options: &DecryptOptions,
    input: &File,
    failed: Error,
) -> Error {
    let mut decryptor = Decryptor::with_opened(header, opened, options, input);
    match std::io::copy(&mut decryptor, &mut std::io::sink()) {
        Ok(_) => failed,
        Err(e) => Error::from_io(e),
    }
}

/// Whether, when `destination` is `source`, the name still leads to the file that was read (a writer that
/// replaced it meanwhile wins; its file is not overwritten with our copy of the old one).
fn still_the_file_read(source: &Path, destination: &Path, read: &std::fs::Metadata) -> Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let now = match std::fs::symlink_metadata(destination) {
            Ok(now) => now,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(!same_path(source, destination)),
            Err(e) => return Err(Error::Io(e)),
        };
        let replaced = (now.dev(), now.ino()) != (read.dev(), read.ino());
        let rewritten = now.len() != read.len() || now.mtime() != read.mtime() || now.mtime_nsec() != read.mtime_nsec();
        Ok(!(same_path(source, destination) && (replaced || rewritten)))
    }
    #[cfg(not(unix))]
    {
        let _ = (source, destination, read);
        Ok(true)
    }
}

/// Whether two paths name the same directory entry (the same parent directory and file name).
#[cfg(unix)]
fn same_path(a: &Path, b: &Path) -> bool {
    let parent =
        |p: &Path| p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).canonicalize().ok();
    a.file_name() == b.file_name() && parent(a).is_some() && parent(a) == parent(b)
}

/// The new message's options: the target's, with the suite defaulted by the source's kind and the kept
/// context merged in. `authenticated` is the context the source was authenticated with (header pairs plus
/// reproduced required pairs).
fn target_options(
    options: &ReencryptOptions,
    header: &Header,
    authenticated: &EncryptionContext,
) -> Result<EncryptOptions> {
    let mut target = options.target.clone();
    if target.suite.is_none() {
        target.suite = Some(default_target_suite(header.suite()));
    }
    if !options.keep_context {
        return Ok(target);
    }
    let stored = header.encryption_context();
    let mut context = EncryptionContext::new();
    for (key, value) in authenticated.iter().filter(|(key, _)| !key.starts_with(RESERVED_PREFIX)) {
        context.insert(key, value);
        if stored.get(key).is_none() {
            target.required_context_keys.insert(key.to_string());
        }
    }
    for (key, value) in options.target.context.iter() {
        match context.get(key) {
            Some(kept) if kept != value => {
                return Err(Error::Config(format!(
                    "encryption context key \"{}\" is kept from the source with another value; to change it, \
                     replace the whole context (keep_context(false))",
                    Escaped(key)
                )));
            }
            _ => {
                context.insert(key, value);
            }
        }
    }
    target.context = context;
    Ok(target)
}

/// The keys a target keyring wraps new data keys under, as [`rotation_status`] compares them with a
/// message's encrypted data keys: provider id and provider info, without a raw AES key's per-key IV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetKeys {
    keys: BTreeSet<(String, Vec<u8>)>,
}

impl TargetKeys {
    /// Asks `keyring` once to make and wrap a throwaway data key (for a KMS keyring, one GenerateDataKey
    /// call) and records the keys it wrapped it under. Do it once per run, not per message.
    ///
    /// # Errors
    ///
    /// The keyring fails to make or wrap the data key.
    pub fn of(keyring: &dyn Keyring) -> Result<Self> {
        let suite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;
        let materials = EncryptionMaterials::new(suite, EncryptionContext::new(), BTreeSet::new());
        let materials = block_on(keyring.on_encrypt(materials))?;
        Ok(Self { keys: materials.encrypted_data_keys().iter().map(wrapping_key).collect() })
    }

    /// Whether these keys wrap data keys under the key that wrapped `edk` (the same provider id and key,
    /// as [`rotation_status`] compares them): a message re-encrypted under these keys keeps a data key
    /// for whoever could unwrap `edk`.
    pub fn wraps_like(&self, edk: &EncryptedDataKey) -> bool {
        self.keys.contains(&wrapping_key(edk))
    }
}

/// An EDK's wrapping key as [`TargetKeys`] records it. A raw AES EDK's provider info ends in its tag length
/// (128 bits), IV length (12) and IV, which differ per message; the key name before them does not.
fn wrapping_key(edk: &EncryptedDataKey) -> (String, Vec<u8>) {
    const RAW_AES_LENGTHS: [u8; 8] = [0, 0, 0, 128, 0, 0, 0, 12];
    let info = &edk.provider_info[..];
    let name = match info.len().checked_sub(20) {
        Some(at) if info[at..at + 8] == RAW_AES_LENGTHS => &info[..at],
        _ => info,
    };
    (edk.provider_id.clone(), name.to_vec())
}

/// Whether a message still needs re-encrypting: see [`rotation_status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rotation {
    /// The new keys alone opened it (the data key unwrapped, the key commitment and the header tag
    /// verified), its data keys are exactly the new keys', and its suite and context are what
    /// re-encrypting would give: nothing to do.
    Done,
    /// It still needs re-encrypting, for this reason.
    Needed(&'static str),
}

/// How much of a message [`rotation_status_with`] authenticates before it answers [`Rotation::Done`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipCheck {
    /// The header only (a ranged read, one unwrap): the data key, the key commitment and the header tag.
    /// A message whose body was cut short or damaged after the header passes: "done" then only says
    /// that its header is the new keys' own.
    Header,
    /// The whole message: the header as [`Header`](Self::Header), then every frame's tag and, for a
    /// signed suite, the signature, read to the end with the plaintext thrown away (the same unwrap:
    /// one KMS call or a cache hit). "Done" then says the message decrypts with the new keys, which is
    /// what retiring the old key needs.
    #[default]
    Full,
}

/// Whether the message that `input` starts with is already what [`reencrypt`] with `options` and
/// `target_keyring` would make of it, so that a retried job can skip it. Only its header is read: this is
/// [`rotation_status_with`] and [`SkipCheck::Header`].
///
/// The answer is never taken from header fields alone, since anyone who can write the file or object can
/// plant a header naming the new keys: it is [`Rotation::Done`] only once `target_keyring` unwrapped the
/// data key and the key commitment and header tag verified, with the message's encrypted data keys exactly
/// `target_keys` (a leftover old key means not done). That unwraps one data key (one KMS call, or a cache
/// hit). With `verify_all_keys`, each data key the message holds must unwrap on its own to the committed
/// data key (one call per key): without it, a writer who can encrypt under one new key could add a
/// garbage copy for another new key, which a reader holding only that key could not use.
///
/// # Errors
///
/// The header cannot be read (not a message, a limit, I/O); a key service failure that a retry may cure
/// ([`Error::is_transient`]: KMS throttled, timed out, unavailable), since then the answer is unknown. A
/// key that fails to unwrap for good is not an error but [`Rotation::Needed`].
pub fn rotation_status<R: Read>(
    target_keyring: &dyn Keyring,
    target_keys: &TargetKeys,
    options: &ReencryptOptions,
    verify_all_keys: bool,
    input: R,
) -> Result<Rotation> {
    rotation_status_with(target_keyring, target_keys, options, verify_all_keys, SkipCheck::Header, input)
}

/// [`rotation_status`] that authenticates as much of the message as `check` says: with
/// [`SkipCheck::Full`], [`Rotation::Done`] also needs every frame and the signature to verify, so that
/// "done" means the message decrypts with the new keys (a body planted or damaged after a good header is
/// not done).
///
/// # Errors
///
/// Those of [`rotation_status`]; with [`SkipCheck::Full`], a message whose header passed but whose body
/// does not authenticate (a frame, the signature, cut short, trailing data) is the decryption's error:
/// re-encrypting it could not succeed either.
pub fn rotation_status_with<R: Read>(
    target_keyring: &dyn Keyring,
    target_keys: &TargetKeys,
    options: &ReencryptOptions,
    verify_all_keys: bool,
    check: SkipCheck,
    mut input: R,
) -> Result<Rotation> {
    let header = HeaderDecoder::read_from(options.source.limits, &mut input)?;
    let suite = options.target.suite.unwrap_or_else(|| default_target_suite(header.suite()));
    if header.suite() != suite {
        return Ok(Rotation::Needed("its suite is not the new one"));
    }
    let keys: BTreeSet<(String, Vec<u8>)> = header.encrypted_data_keys().iter().map(wrapping_key).collect();
    if keys != target_keys.keys {
        return Ok(Rotation::Needed("its data keys are not exactly the new keys'"));
    }
    let opened = match block_on(open_header(target_keyring, &options.source, &header)) {
        Ok(opened) => opened,
        // KMS throttled or timed out: the answer is unknown, not "needed" (which would send an object that
        // is done to the source keys, which no longer open it).
        Err(error) if error.is_transient() => return Err(error),
        Err(_) => return Ok(Rotation::Needed("the new keys do not open it")),
    };
    let target = target_options(options, &header, &opened.context)?;
    let kept: EncryptionContext = opened.context.iter().filter(|(key, _)| !key.starts_with(RESERVED_PREFIX)).collect();
    let unstored: BTreeSet<String> = opened
        .context
        .iter()
        .filter(|(key, _)| header.encryption_context().get(key).is_none())
        .map(|(key, _)| key.to_owned())
        .collect();
    if kept != target.context || unstored != target.required_context_keys {
        return Ok(Rotation::Needed("its encryption context is not the new one"));
    }
    if verify_all_keys {
        for edk in header.encrypted_data_keys() {
            let one = std::slice::from_ref(edk);
            match block_on(open_header_with(target_keyring, &options.source, &header, one)) {
                Ok(_) => {}
                Err(error) if error.is_transient() => return Err(error),
                Err(_) => return Ok(Rotation::Needed("one of its data keys does not unwrap with the new keys")),
            }
        }
    }
    if check == SkipCheck::Full {
        let mut body = Decryptor::with_opened(header, opened, &options.source, input);
        body.write_to(std::io::sink()).map_err(Error::from_io)?;
    }
    Ok(Rotation::Done)
}
