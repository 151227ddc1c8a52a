//! Building the keyring from the key flags: raw AES keys and AWS KMS keys in command-line order, and KMS
//! discovery on decrypt.

use std::path::Path;
use std::sync::Arc;

use kms_envelope::{Keyring, MultiKeyring, RawAesKeyring, Zeroizing};

use super::args::{DiscoveryArgs, KeyArgs, KeyEncoding, KeySource, LocalKey, LocalKind};
#[cfg(feature = "kms")]
use super::exit::Code;
use super::exit::Failure;

/// What to give when no key was given, naming only the key kinds this build has.
const NO_KEY: &str = if cfg!(all(feature = "kms", feature = "rsa")) {
    "no key given: use --kms-key ID, --raw-key-file PATH or --rsa-public-key/--rsa-private-key PEM (each of these \
     two with --key-namespace NS --key-name NAME)"
} else if cfg!(feature = "kms") {
    "no key given: use --kms-key ID, or --raw-key-file PATH with --key-namespace NS --key-name NAME"
} else if cfg!(feature = "rsa") {
    "no key given: use --raw-key-file PATH or --rsa-public-key/--rsa-private-key PEM, each with --key-namespace NS \
     --key-name NAME"
} else {
    "no key given: use --raw-key-file PATH --key-namespace NS --key-name NAME"
};

/// The keyring for encrypt: the first key on the command line generates the data key.
pub fn for_encrypt(keys: &KeyArgs) -> Result<Box<dyn Keyring>, Failure> {
    let mut all = build(keys, None)?.into_iter();
    let no_key = || match keys.flag_prefix {
        "" => NO_KEY.to_owned(),
        prefix => format!(
            "no new key given: {}",
            NO_KEY["no key given: ".len()..]
                .replace("--rsa-public-key/--rsa-private-key", "--rsa-public-key")
                .replace("--", &format!("--{prefix}"))
        ),
    };
    let first = all.next().ok_or_else(|| Failure::usage(no_key()))?;
    if all.len() == 0 {
        return Ok(Box::new(first));
    }
    Ok(Box::new(all.fold(MultiKeyring::new(first), MultiKeyring::with_shared_child)))
}

/// The keyring for decrypt: every key (and discovery) is tried in command-line order, discovery last.
pub fn for_decrypt(keys: &KeyArgs, discovery: &DiscoveryArgs) -> Result<Box<dyn Keyring>, Failure> {
    let mut all = build(keys, Some(discovery))?;
    match all.len() {
        0 if cfg!(feature = "kms") => Err(Failure::usage(format!("{NO_KEY}, or --kms-discovery"))),
        0 => Err(Failure::usage(NO_KEY.into())),
        1 => Ok(Box::new(all.remove(0))),
        _ => Ok(Box::new(all.into_iter().fold(MultiKeyring::without_generator(), MultiKeyring::with_shared_child))),
    }
}

/// The keys of [`for_decrypt`] one by one, in the order it tries them: each local, KMS and KMS RSA key
/// in command-line order, then discovery. For `exec`, which must know which one unwrapped.
pub fn each_for_decrypt(keys: &KeyArgs, discovery: &DiscoveryArgs) -> Result<Vec<Arc<dyn Keyring>>, Failure> {
    build(keys, Some(discovery))
}

fn build(keys: &KeyArgs, discovery: Option<&DiscoveryArgs>) -> Result<Vec<Arc<dyn Keyring>>, Failure> {
    super::features::check_keys(keys, discovery)?;
    let local = keys.local_keys()?;
    // Checked here, not per --kms-rsa-key: without any --kms-rsa-key a public key file would be ignored.
    let pems = &keys.kms_rsa_public_key;
    if !pems.is_empty() && pems.len() != keys.kms_rsa_key.len() {
        return Err(Failure::usage(format!(
            "give one {} for each {}, or none",
            keys.flag("kms-rsa-public-key"),
            keys.flag("kms-rsa-key")
        )));
    }
    let wants_discovery = discovery.is_some_and(|d| d.kms_discovery);
    // Encrypting under KMS RSA keys whose public keys are given needs no AWS access at all.
    let rsa_needs_kms = !keys.kms_rsa_key.is_empty() && (discovery.is_some() || keys.kms_rsa_public_key.is_empty());
    let ecdh_needs_kms = keys.ecdh.kms_ecdh_key.is_some();
    #[cfg(feature = "kms")]
    let kms = if keys.kms_key.is_empty()
        && !wants_discovery
        && !rsa_needs_kms
        && !ecdh_needs_kms
        && keys.branch_key_id.is_none()
    {
        if !keys.grant_token.is_empty() {
            return Err(Failure::usage(format!(
                "{}: these keys make no KMS call to send it with",
                keys.flag("grant-token")
            )));
        }
        None
    } else {
        let tokens: Vec<&str> = keys.grant_token.iter().map(|token| token.0.as_str()).collect();
        kms_envelope::keyring::kms::check_grant_tokens(&tokens)
            .map_err(|e| Failure::usage(format!("{}: {e}", keys.flag("grant-token"))))?;
        Some(
            kms_envelope::KmsClients::from_env_blocking()
                .map_err(|e| Failure::new(Code::KeyAccess, format!("AWS configuration: {e}")))?
                .with_grant_tokens(tokens),
        )
    };
    #[cfg(not(feature = "hierarchy-ddb"))]
    if keys.branch_key_id.is_some() {
        return Err(super::features::missing("hierarchy-ddb", &keys.flag("branch-key-id")));
    }
    #[cfg(not(feature = "kms"))]
    if !keys.kms_key.is_empty() || wants_discovery || rsa_needs_kms || !keys.kms_rsa_key.is_empty() || ecdh_needs_kms {
        return Err(super::features::missing("kms", &keys.flag("kms-key")));
    }

    // `order` is empty when the arguments did not come from the command line (it is filled from the
    // matches); then raw keys come first.
    let order: Vec<KeySource> = if keys.order.is_empty() {
        (0..local.len())
            .map(KeySource::Raw)
            .chain((0..keys.kms_key.len()).map(KeySource::Kms))
            .chain((0..keys.kms_rsa_key.len()).map(KeySource::KmsRsa))
            .collect()
    } else {
        keys.order.clone()
    };
    // Every --kms-key is MRK-aware, as in the ESDK CLI: two replicas of one multi-Region key are one key.
    #[cfg(feature = "kms")]
    kms_envelope::keyring::kms::refuse_mrk_replicas(&keys.kms_key)
        .map_err(|e| Failure::usage(format!("{}: {e}", keys.flag("kms-key"))))?;
    let mut out: Vec<Arc<dyn Keyring>> = Vec::with_capacity(order.len() + 1);
    for source in order {
        match source {
            KeySource::Raw(n) => out.push(local_keyring(&local[n], keys)?),
            KeySource::Kms(n) => {
                #[cfg(feature = "kms")]
                {
                    let id = &keys.kms_key[n];
                    let clients = kms.as_ref().expect("clients exist when a KMS key is given");
                    // MRK-aware: on decrypt, a replica of the key in another region matches too, and is
                    // decrypted by this key, in this key's region.
                    let keyring = clients.mrk_keyring(id).map_err(|e| config_failure(e, &keys.flag("kms-key"), id))?;
                    out.push(Arc::new(keyring));
                }
                #[cfg(not(feature = "kms"))]
                let _ = n;
            }
            KeySource::KmsRsa(n) => {
                #[cfg(all(feature = "kms", feature = "rsa"))]
                out.push(kms_rsa_keyring(keys, n, kms.as_ref())?);
                #[cfg(not(all(feature = "kms", feature = "rsa")))]
                {
                    let _ = n;
                    return Err(super::features::missing(
                        if cfg!(feature = "kms") { "rsa" } else { "kms" },
                        &keys.flag("kms-rsa-key"),
                    ));
                }
            }
        }
    }
    if keys.ecdh.any() {
        #[cfg(all(feature = "aws-lc", feature = "kms"))]
        out.push(ecdh_keyring(keys, discovery.is_some(), kms.as_ref())?);
        #[cfg(all(feature = "aws-lc", not(feature = "kms")))]
        out.push(ecdh_keyring(keys, discovery.is_some())?);
    }
    // The Hierarchical keyring after the keys above: with other keys, the first of those generates.
    #[cfg(feature = "hierarchy-ddb")]
    if let (Some(id), Some(clients)) = (&keys.branch_key_id, &kms) {
        out.push(Arc::new(hierarchical_keyring(keys, id, clients)?));
    }
    #[cfg(feature = "kms")]
    if let (Some(discovery), Some(clients)) = (discovery.filter(|d| d.kms_discovery), &kms) {
        let filter = if discovery.account.is_empty() {
            None
        } else {
            let partition = discovery.partition.clone().unwrap_or_else(|| clients.partition().to_owned());
            Some(
                kms_envelope::DiscoveryFilter::new(partition, discovery.account.iter().cloned())
                    .map_err(|e| Failure::usage(e.to_string()))?,
            )
        };
        out.push(discovery_keyring(clients, &discovery.kms_region, filter)?);
    }
    Ok(out)
}

/// MRK-aware discovery in `regions`, each in turn, or in the configured region alone: a message never
/// chooses the region (and so the endpoint) of a call.
#[cfg(feature = "kms")]
fn discovery_keyring(
    clients: &kms_envelope::KmsClients,
    regions: &[kms_envelope::keyring::kms::Region],
    filter: Option<kms_envelope::DiscoveryFilter>,
) -> Result<Arc<dyn Keyring>, Failure> {
    if regions.is_empty() {
        let keyring = clients.mrk_discovery_keyring(None, filter).map_err(|e| {
            Failure::usage(format!("--kms-discovery needs a region: give --kms-region REGION or set AWS_REGION ({e})"))
        })?;
        return Ok(Arc::new(keyring));
    }
    let keyring = clients
        .mrk_discovery_multi_keyring(regions, filter)
        .map_err(|e| Failure::usage(format!("--kms-region: {e}")))?;
    Ok(Arc::new(keyring))
}

/// The most a key file may hold: far more than a 16384-bit RSA private key in PEM (about 13 KiB), and
/// little enough that `--raw-key-file /dev/urandom` or a file given by mistake ends in an error, not in an
/// allocation as large as the file (or endless, for a device).
const KEY_FILE_LIMIT: u64 = 1 << 20;

/// Reads a key file. One that cannot be read is an unusable key file: a usage error (exit 2), as the
/// README's exit-code table says, not an I/O failure of the data.
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, Failure> {
    use std::io::Read as _;
    let unreadable = |e: std::io::Error| Failure::usage(format!("cannot read key file {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    // All the room up front, whatever the file (a pipe such as `<(vault read ...)` has no size): a
    // reallocation would free an unwiped copy of the key.
    let mut material = Zeroizing::new(Vec::with_capacity(KEY_FILE_LIMIT as usize + 1));
    file.take(KEY_FILE_LIMIT + 1).read_to_end(&mut material).map_err(unreadable)?;
    if material.len() as u64 > KEY_FILE_LIMIT {
        return Err(Failure::usage(format!(
            "key file {} holds more than {} KiB: not a key",
            path.display(),
            KEY_FILE_LIMIT >> 10
        )));
    }
    Ok(material)
}

/// The AES key a --raw-key-file holds in `encoding`, or why it is unusable, with how to fix it.
///
/// `encoding_flag` is the option that sets the encoding, as the user spells it, for the hints.
pub fn raw_aes_key(material: &[u8], encoding: KeyEncoding, encoding_flag: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    use base64::Engine as _;
    let text = || {
        let mut text = Zeroizing::new(material.to_vec());
        text.retain(|b| !b.is_ascii_whitespace());
        text
    };
    let key = match encoding {
        KeyEncoding::Raw => Zeroizing::new(material.to_vec()),
        KeyEncoding::Hex => {
            let text = text();
            if !text.len().is_multiple_of(2) || !text.iter().all(u8::is_ascii_hexdigit) {
                return Err(format!("not hexadecimal ({encoding_flag} hex): expected pairs of 0-9a-f digits"));
            }
            let digit = |b: u8| (b as char).to_digit(16).map_or(0, |d| d as u8);
            Zeroizing::new(text.chunks(2).map(|pair| digit(pair[0]) << 4 | digit(pair[1])).collect())
        }
        KeyEncoding::Base64 => {
            let text = text();
            // Room for the whole result up front: a reallocation would free an unwiped piece of the key.
            let mut key = Zeroizing::new(Vec::with_capacity(text.len()));
            base64::engine::general_purpose::STANDARD
                .decode_vec(&text[..], &mut key)
                .map_err(|_| format!("not base64 ({encoding_flag} base64)"))?;
            key
        }
    };
    if matches!(key.len(), 16 | 24 | 32) {
        return Ok(key);
    }
    let mut reason =
        format!("{} bytes after {} decoding; an AES key is 16, 24 or 32 bytes", key.len(), encoding_name(encoding));
    if encoding == KeyEncoding::Raw {
        reason.push_str(&format!(" (the file must hold the key itself{})", encoding_hint(material, encoding_flag)));
    }
    Err(reason)
}

fn encoding_name(encoding: KeyEncoding) -> &'static str {
    match encoding {
        KeyEncoding::Raw => "raw",
        KeyEncoding::Hex => "hex",
        KeyEncoding::Base64 => "base64",
    }
}

/// What a raw key file of the wrong length looks like it holds, and how to read or convert it.
fn encoding_hint(material: &[u8], encoding_flag: &str) -> String {
    let trimmed = material.trim_ascii();
    let fits = |decoded: usize| matches!(decoded, 16 | 24 | 32);
    if !trimmed.is_empty()
        && trimmed.iter().all(u8::is_ascii_hexdigit)
        && trimmed.len().is_multiple_of(2)
        && fits(trimmed.len() / 2)
    {
        format!("; this one looks like hex: add {encoding_flag} hex, or convert it with `xxd -r -p KEY > KEY.bin`")
    } else if !trimmed.is_empty()
        && trimmed.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        && trimmed.len().is_multiple_of(4)
        && fits((trimmed.len() / 4 * 3).saturating_sub(trimmed.iter().rev().take_while(|&&b| b == b'=').count()))
    {
        format!(
            "; this one looks like base64: add {encoding_flag} base64, or convert it with `base64 -d KEY > KEY.bin`"
        )
    } else {
        format!(", e.g. `head -c 32 /dev/urandom > KEY`; for a hex or base64 file add {encoding_flag} hex or base64")
    }
}

fn local_keyring(key: &LocalKey, keys: &KeyArgs) -> Result<Arc<dyn Keyring>, Failure> {
    let rsa_padding = keys.rsa_padding.as_str();
    let LocalKey { kind, path, namespace, name } = key;
    let material = read_key_file(path)?;
    let refused = |e: kms_envelope::Error| Failure::usage(format!("key file {}: {e}", path.display()));
    match kind {
        LocalKind::Aes => {
            let key = raw_aes_key(&material, keys.key_encoding, &keys.flag("key-encoding"))
                .map_err(|reason| Failure::usage(format!("key file {}: {reason}", path.display())))?;
            Ok(Arc::new(RawAesKeyring::new(namespace.as_str(), name.as_str(), &key).map_err(refused)?))
        }
        #[cfg(feature = "rsa")]
        LocalKind::RsaPublic | LocalKind::RsaPrivate => {
            use kms_envelope::RawRsaKeyring;
            use kms_envelope::RsaPadding;
            let padding = RsaPadding::from_name(rsa_padding).ok_or_else(|| {
                Failure::usage(format!(
                    "{} {rsa_padding:?}: expected oaep-sha256, oaep-sha1, oaep-sha384, oaep-sha512 or pkcs1 \
                     (decrypt only)",
                    keys.flag("rsa-padding")
                ))
            })?;
            let keyring = if *kind == LocalKind::RsaPublic {
                RawRsaKeyring::from_public_key_pem(namespace.as_str(), name.as_str(), padding, &material)
            } else {
                RawRsaKeyring::from_private_key_pem(namespace.as_str(), name.as_str(), padding, &material)
            };
            Ok(Arc::new(keyring.map_err(refused)?))
        }
        #[cfg(not(feature = "rsa"))]
        LocalKind::RsaPublic | LocalKind::RsaPrivate => {
            let _ = rsa_padding;
            Err(super::features::missing("rsa", &keys.flag("rsa-public-key")))
        }
    }
}

/// The ECDH keyring of the `--ecdh-*` options (raw, or AWS KMS with `--kms-ecdh-key`), every combination
/// that cannot work refused before any key file is read or KMS called.
#[cfg(feature = "aws-lc")]
fn ecdh_keyring(
    keys: &KeyArgs,
    decrypt: bool,
    #[cfg(feature = "kms")] clients: Option<&kms_envelope::KmsClients>,
) -> Result<Arc<dyn Keyring>, Failure> {
    use kms_envelope::{EcdhCurve, EcdhPrivateKey, EcdhPublicKey, RawEcdhKeyring};
    let e = &keys.ecdh;
    let curve: EcdhCurve = e
        .ecdh_curve
        .ok_or_else(|| Failure::usage("the ECDH options need --ecdh-curve p256, p384 or p521".into()))?
        .into();
    let refuse = |why: &str| Err(Failure::usage(why.to_owned()));
    if e.ecdh_ephemeral && decrypt {
        return refuse("--ecdh-ephemeral encrypts only: decrypt with --ecdh-private and --ecdh-discovery");
    }
    if e.ecdh_discovery && !decrypt {
        return refuse("--ecdh-discovery decrypts only: encrypt to --ecdh-peer-public");
    }
    if e.ecdh_discovery && e.ecdh_peer_public.is_some() {
        return refuse(
            "--ecdh-discovery reads messages from any sender: drop --ecdh-sender-public, or drop --ecdh-discovery \
             to read only that sender's messages",
        );
    }
    if e.ecdh_ephemeral && (e.ecdh_private.is_some() || e.kms_ecdh_key.is_some()) {
        return refuse(
            "--ecdh-ephemeral makes a fresh key pair per message: it takes no --ecdh-private or --kms-ecdh-key",
        );
    }
    if e.ecdh_peer_public.is_none() && !e.ecdh_discovery {
        return refuse(if decrypt {
            "ECDH decrypt needs --ecdh-sender-public FILE (the expected sender) or --ecdh-discovery (any sender)"
        } else {
            "ECDH encrypt needs --ecdh-peer-public FILE (the recipient's public key)"
        });
    }
    if e.ecdh_private.is_none() && e.kms_ecdh_key.is_none() && !e.ecdh_ephemeral {
        return refuse(
            "ECDH needs our key: --ecdh-private PEM-FILE or --kms-ecdh-key ARN (or, to encrypt, --ecdh-ephemeral)",
        );
    }
    let peer = match &e.ecdh_peer_public {
        Some(path) => {
            let material = read_key_file(path)?;
            let key = if material.trim_ascii_start().starts_with(b"-----BEGIN") {
                EcdhPublicKey::from_pem(curve, &material)
            } else {
                EcdhPublicKey::from_der(curve, &material)
            };
            Some(key.map_err(|err| Failure::usage(format!("key file {}: {err}", path.display())))?)
        }
        None => None,
    };
    if let Some(arn) = &e.kms_ecdh_key {
        #[cfg(feature = "kms")]
        {
            use kms_envelope::AwsKmsEcdhKeyring;
            use kms_envelope::keyring::block_on;
            let clients = clients.expect("clients exist when a KMS ECDH key is given");
            let client = clients.client_for_key(arn).map_err(|err| config_failure(err, "--kms-ecdh-key", arn))?;
            let keyring = match peer {
                Some(peer) => block_on(AwsKmsEcdhKeyring::new(client, arn.as_str(), peer)),
                None => block_on(AwsKmsEcdhKeyring::discovery(client, arn.as_str(), curve)),
            };
            let tokens = keys.grant_token.iter().map(|token| token.0.clone());
            let keyring = keyring.map_err(|err| config_failure(err, "--kms-ecdh-key", arn))?.with_grant_tokens(tokens);
            return Ok(Arc::new(keyring));
        }
        #[cfg(not(feature = "kms"))]
        return Err(super::features::missing("kms", &format!("--kms-ecdh-key {arn}")));
    }
    let private = match &e.ecdh_private {
        Some(path) => {
            let material = read_key_file(path)?;
            let key = EcdhPrivateKey::from_pem(curve, &material)
                .map_err(|err| Failure::usage(format!("key file {}: {err}", path.display())))?;
            Some(key)
        }
        None => None,
    };
    let keyring = match (private, peer) {
        (Some(own), Some(peer)) => RawEcdhKeyring::static_keys(own, peer)
            .map_err(|err| Failure::usage(format!("--ecdh-private and --ecdh-peer-public: {err}")))?,
        (None, Some(peer)) => RawEcdhKeyring::ephemeral(peer),
        (Some(own), None) => RawEcdhKeyring::discovery(own),
        (None, None) => unreachable!("refused above"),
    };
    Ok(Arc::new(keyring))
}

/// The n-th --kms-rsa-key: from its PEM alone when given on encrypt, else with a KMS client.
#[cfg(all(feature = "kms", feature = "rsa"))]
fn kms_rsa_keyring(
    keys: &KeyArgs,
    n: usize,
    clients: Option<&kms_envelope::KmsClients>,
) -> Result<Arc<dyn Keyring>, Failure> {
    use kms_envelope::keyring::kms::{AwsKmsRsaKeyring, KmsRsaAlgorithm};
    let arn = &keys.kms_rsa_key[n];
    let algorithm = KmsRsaAlgorithm::from_name(&keys.kms_rsa_algorithm).ok_or_else(|| {
        Failure::usage(format!(
            "{} {:?}: expected RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1",
            keys.flag("kms-rsa-algorithm"),
            keys.kms_rsa_algorithm
        ))
    })?;
    let pem = match keys.kms_rsa_public_key.get(n) {
        Some(path) => Some(read_key_file(path)?),
        None => None,
    };
    let keyring = match (clients, &pem) {
        (None, Some(pem)) => AwsKmsRsaKeyring::encrypt_only(arn.as_str(), algorithm, pem),
        (Some(clients), Some(pem)) => clients.rsa_keyring(arn, algorithm).and_then(|k| k.with_public_key_pem(pem)),
        (Some(clients), None) => clients.rsa_keyring(arn, algorithm),
        (None, None) => unreachable!("clients exist when a KMS RSA key has no public key file"),
    };
    Ok(Arc::new(keyring.map_err(|e| config_failure(e, &keys.flag("kms-rsa-key"), arn))?))
}

/// A KMS key id the keyring refuses (malformed ARN) is a usage error; anything else is key access.
#[cfg(feature = "kms")]
fn config_failure(err: kms_envelope::Error, flag: &str, id: &str) -> Failure {
    let code = if matches!(err, kms_envelope::Error::Config(_)) { Code::Usage } else { Code::KeyAccess };
    Failure::new(code, format!("{flag} {id}: {err}"))
}

/// The Hierarchical keyring of --branch-key-id over its DynamoDB store.
#[cfg(feature = "hierarchy-ddb")]
fn hierarchical_keyring(
    keys: &KeyArgs,
    id: &str,
    clients: &kms_envelope::KmsClients,
) -> Result<kms_envelope::keyring::HierarchicalKeyring, Failure> {
    use kms_envelope::keyring::hierarchy::DynamoDbBranchKeyStore;
    let (table, kms_key) = match (&keys.branch_key_table, &keys.branch_key_kms) {
        (Some(table), Some(kms_key)) => (table, kms_key),
        _ => return Err(Failure::usage("--branch-key-id needs --branch-key-table and --branch-key-kms".into())),
    };
    let name = keys.branch_key_logical_name.as_deref().unwrap_or(table);
    let store = DynamoDbBranchKeyStore::from_clients(clients, table, kms_key, name)
        .map_err(|e| config_failure(e, "--branch-key-kms", kms_key))?;
    let ttl = std::time::Duration::from_secs(keys.branch_key_cache_ttl);
    kms_envelope::keyring::HierarchicalKeyring::new(store, id, ttl)
        .map_err(|e| config_failure(e, "--branch-key-id", id))
}
