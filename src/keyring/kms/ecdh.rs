//! The AWS KMS ECDH keyring (feature `kms`; ESDK specification `framework/aws-kms/aws-kms-ecdh-keyring.md`,
//! design note `docs/design/issue-29-keyrings.md` §3): the raw ECDH keyring's EDK, with the shared secret
//! agreed by KMS `DeriveSharedSecret` so that the private key never leaves KMS.
//!
//! The EDK (provider info, KDF, fixed info, zero-IV wrap) is byte for byte the raw ECDH keyring's; only the
//! provider id differs (`aws-kms-ecdh`), and both keyrings read both ids: the raw keyring holding the same
//! private key reads what this one writes, and the other way round. The shared code is in `ecdh_edk.rs`.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::api::KmsApi;
use super::arn::KmsArn;
use super::calls::Kms;
use super::runtime::on_runtime;
use crate::crypto::DataKey;
use crate::crypto::ecdh::{EcdhPublicKey, EcdhWrappingKeys};
use crate::error::{EcdhError, Error, Reason, Result, Retry};
use crate::format::ecdh::{self, EcdhCurve, KMS_ECDH_PROVIDER_ID};
use crate::format::edk::EncryptedDataKey;
use crate::keyring::ecdh_edk::{self, EcdhEdk, Peer};
use crate::keyring::{DecryptionMaterials, EncryptionMaterials};

/// The AWS KMS ECDH keyring: ECDH between a KMS key of usage `KEY_AGREEMENT` (curve P-256, P-384 or
/// P-521) and another party's public key, the shared secret agreed by KMS `DeriveSharedSecret`. Writes EDKs
/// of provider id `aws-kms-ecdh`; reads `aws-kms-ecdh` and `raw-ecdh` (the same format).
///
/// | constructor | scheme | encrypt | decrypt |
/// |---|---|---|---|
/// | [`new`](Self::new) | `KmsPrivateKeyToStaticPublicKey` | as the sender, to the recipient | EDKs between the two keys, either way round |
/// | [`decrypt_from`](Self::decrypt_from) | the same, named for the recipient | to the sender | only EDKs the pinned sender wrote to us: **sender authentication** |
/// | [`discovery`](Self::discovery) | `KmsPublicKeyDiscovery` | refused | EDKs to our key from **any** sender |
///
/// Sender authentication holds only for `KmsPrivateKeyToStaticPublicKey` on decrypt, configured with the
/// expected sender's public key. Discovery accepts any sender. Static-static ECDH gives no
/// non-repudiation: the recipient can compute the same key and forge a message "from" the sender. In a
/// message for several recipients without a signing suite, any recipient can alter the body: use a signed
/// suite there.
///
/// KMS calls: at construction one `GetPublicKey` for the KMS key's own public key, unless it is given
/// ([`with_public_key`](Self::with_public_key)); one `DeriveSharedSecret` per encrypt, and per EDK tried on
/// decrypt — only for EDKs that passed every local check (provider info, keys, curve, ciphertext length).
///
/// ```no_run
/// # async fn run() -> kms_envelope::Result<()> {
/// use kms_envelope::keyring::kms::AwsKmsEcdhKeyring;
/// use kms_envelope::{DecryptOptions, EcdhCurve, EcdhPublicKey};
///
/// let client = aws_sdk_kms::Client::new(&aws_config::load_from_env().await);
/// let ours = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// let sender = EcdhPublicKey::from_pem(EcdhCurve::P256, &std::fs::read("sender.pem")?)?;
/// // Decrypts only what the holder of sender.pem's private key wrote to our KMS key.
/// let keyring = AwsKmsEcdhKeyring::decrypt_from(client, ours, sender).await?;
/// # let message = Vec::new();
/// let plaintext = kms_envelope::decrypt(&keyring, &DecryptOptions::new(), &message)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AwsKmsEcdhKeyring {
    /// The KMS key's ARN: the `KeyId` of every call, and what KMS must report back.
    key_arn: String,
    /// The KMS key's public key.
    own: EcdhPublicKey,
    /// The other party's public key (`KmsPrivateKeyToStaticPublicKey`), or none (discovery).
    peer: Option<EcdhPublicKey>,
    kms: Kms,
}

impl fmt::Debug for AwsKmsEcdhKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsEcdhKeyring")
            .field("scheme", &self.scheme_name())
            .field("key_arn", &self.key_arn)
            .field("own", &self.own)
            .field("peer", &self.peer)
            .finish()
    }
}

impl AwsKmsEcdhKeyring {
    /// `KmsPrivateKeyToStaticPublicKey` from the sender's side: encrypts from the KMS key `key_arn` to
    /// `recipient`, and decrypts EDKs between the two keys in either direction. Calls `GetPublicKey` once
    /// for the KMS key's public key, which must be a `KEY_AGREEMENT` key on `recipient`'s curve.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `key_arn` is not a key ARN (KMS answers with the ARN, which must equal it);
    /// [`Error::Keyring`] when `GetPublicKey` fails or answers for another key, another usage or no key;
    /// [`Error::Ecdh`] when the key is on another curve.
    pub async fn new(
        client: aws_sdk_kms::Client,
        key_arn: impl Into<String>,
        recipient: EcdhPublicKey,
    ) -> Result<Self> {
        Self::static_with_api(Arc::new(client), key_arn.into(), None, recipient).await
    }

    /// `KmsPrivateKeyToStaticPublicKey` from the recipient's side, pinning the sender: decrypts only EDKs
    /// agreed between the KMS key `key_arn` and `expected_sender`, so a message it decrypts was wrapped by
    /// the holder of `expected_sender`'s private key — or by us (no non-repudiation). It encrypts to
    /// `expected_sender`. One `GetPublicKey` call, as [`new`](Self::new).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub async fn decrypt_from(
        client: aws_sdk_kms::Client,
        key_arn: impl Into<String>,
        expected_sender: EcdhPublicKey,
    ) -> Result<Self> {
        Self::new(client, key_arn, expected_sender).await
    }

    /// `KmsPrivateKeyToStaticPublicKey` with the KMS key's public key given (`own`, from `aws kms
    /// get-public-key`): no KMS call at construction.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `key_arn` is not a key ARN; [`Error::Ecdh`] when the keys' curves differ.
    pub fn with_public_key(
        client: aws_sdk_kms::Client,
        key_arn: impl Into<String>,
        own: EcdhPublicKey,
        peer: EcdhPublicKey,
    ) -> Result<Self> {
        let kms = Kms { api: Arc::new(client), grant_tokens: Vec::new() };
        Self::checked(kms, key_arn.into(), own, Some(peer))
    }

    /// `KmsPublicKeyDiscovery`: decrypts every EDK addressed to the KMS key `key_arn` (on `curve`), whoever
    /// the sender. Decrypt-only. Calls `GetPublicKey` once, as [`new`](Self::new).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub async fn discovery(client: aws_sdk_kms::Client, key_arn: impl Into<String>, curve: EcdhCurve) -> Result<Self> {
        Self::discovery_with_api(Arc::new(client), key_arn.into(), curve).await
    }

    /// `KmsPublicKeyDiscovery` with the KMS key's public key given (`own`, from `aws kms get-public-key`): no
    /// KMS call at construction (the Lambda decryptor's cold start makes none before it decrypts).
    /// Decrypt-only, as [`discovery`](Self::discovery).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `key_arn` is not a key ARN.
    pub fn discovery_with_public_key(
        client: aws_sdk_kms::Client,
        key_arn: impl Into<String>,
        own: EcdhPublicKey,
    ) -> Result<Self> {
        let kms = Kms { api: Arc::new(client), grant_tokens: Vec::new() };
        Self::checked(kms, key_arn.into(), own, None)
    }

    /// Grant tokens sent with every later call.
    pub fn with_grant_tokens(mut self, tokens: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.kms.grant_tokens = tokens.into_iter().map(Into::into).collect();
        self
    }

    /// The KMS key's ARN.
    pub fn key_arn(&self) -> &str {
        &self.key_arn
    }

    /// The curve of the keyring's keys.
    pub fn curve(&self) -> EcdhCurve {
        self.own.curve()
    }

    /// The KMS key's public key.
    pub fn public_key(&self) -> &EcdhPublicKey {
        &self.own
    }

    /// The key agreement scheme's name in the Material Providers Library: `KmsPrivateKeyToStaticPublicKey`
    /// or `KmsPublicKeyDiscovery`.
    pub fn scheme_name(&self) -> &'static str {
        match self.peer {
            Some(_) => "KmsPrivateKeyToStaticPublicKey",
            None => "KmsPublicKeyDiscovery",
        }
    }

    pub(super) async fn static_with_api(
        api: Arc<dyn KmsApi>,
        key_arn: String,
        own: Option<EcdhPublicKey>,
        peer: EcdhPublicKey,
    ) -> Result<Self> {
        let kms = Kms { api, grant_tokens: Vec::new() };
        check_arn(&key_arn)?;
        let own = match own {
            Some(own) => own,
            None => kms_public_key(&kms, &key_arn, peer.curve()).await?,
        };
        Self::checked(kms, key_arn, own, Some(peer))
    }

    pub(super) async fn discovery_with_api(api: Arc<dyn KmsApi>, key_arn: String, curve: EcdhCurve) -> Result<Self> {
        let kms = Kms { api, grant_tokens: Vec::new() };
        check_arn(&key_arn)?;
        let own = kms_public_key(&kms, &key_arn, curve).await?;
        Self::checked(kms, key_arn, own, None)
    }

    fn checked(kms: Kms, key_arn: String, own: EcdhPublicKey, peer: Option<EcdhPublicKey>) -> Result<Self> {
        check_arn(&key_arn)?;
        if let Some(peer) = &peer
            && peer.curve() != own.curve()
        {
            return Err(EcdhError::CurveMismatch { expected: own.curve(), found: peer.curve() }.into());
        }
        Ok(Self { key_arn, own, peer, kms })
    }

    fn name(&self) -> String {
        format!("AWS KMS ECDH {} ({}) with key {}", self.scheme_name(), self.curve(), self.key_arn)
    }

    /// Z between the KMS key and `peer`, by `DeriveSharedSecret`, with the answer checked: KMS names our
    /// key, says ECDH, and returns a secret of the curve's field length. On failure, the reason and
    /// whether trying again may help.
    async fn shared_secret(&self, peer: &EcdhPublicKey) -> Result<std::result::Result<Zeroizing<Vec<u8>>, Reason>> {
        let call =
            self.kms.api.derive_shared_secret(self.key_arn.clone(), self.kms.grant_tokens.clone(), peer.to_spki_der()?);
        let out = match on_runtime(call).await? {
            Ok(out) => out,
            Err(err) => return Ok(Err(Reason::new(err.describe("DeriveSharedSecret"), err.retry()))),
        };
        let refused = |what: &str| Ok(Err(Reason::new(format!("DeriveSharedSecret: {what}"), Retry::Never)));
        if out.key_id.as_deref() != Some(self.key_arn.as_str()) {
            return refused("KMS reports another key agreed the secret; it is not used");
        }
        if !out.ecdh {
            return refused("KMS reports a key agreement algorithm other than ECDH");
        }
        let Some(secret) = out.secret else { return refused("KMS returned no shared secret") };
        if secret.len() != self.curve().field_len() {
            return refused(&EcdhError::SharedSecretLength { len: secret.len(), curve: self.curve() }.to_string());
        }
        Ok(Ok(secret))
    }

    async fn encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        let Some(peer) = &self.peer else {
            return Err(EcdhError::SchemeCannotEncrypt(self.scheme_name()).into());
        };
        let context = materials.encryption_context().serialize()?;
        let z = self
            .shared_secret(peer)
            .await?
            .map_err(|reason| Error::Keyring(Reason::new(format!("{}: {reason}", self.name()), reason.retry())))?;
        let curve = self.curve();
        let edk = ecdh_edk::wrap_data_key(
            &self.own,
            peer,
            ecdh_edk::data_key_to_wrap(&mut materials)?.as_bytes(),
            &context,
            KMS_ECDH_PROVIDER_ID,
            |fixed_info, salt| EcdhWrappingKeys::from_shared_secret(curve, &z, fixed_info, salt),
        )?;
        materials.add_encrypted_data_key(edk);
        Ok(materials)
    }

    async fn decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        materials.require_no_data_key()?;
        let name = self.name();
        let peer = match &self.peer {
            Some(peer) => Peer::Static(peer),
            None => Peer::Sender,
        };
        let (context, key_len) = ecdh_edk::context_and_key_len(&materials)?;
        let (mut reasons, mut retry) = (Vec::new(), Retry::Never);
        for (index, edk) in ecdh_edk::ecdh_edks(edks) {
            // Every local check first: a hostile or foreign EDK costs no KMS call.
            let candidate = match EcdhEdk::select(&self.own, peer, edk, &context, key_len) {
                Ok(Some(candidate)) => candidate,
                Ok(None) => {
                    reasons.push(format!("{name}: EDK {index} is for other keys"));
                    continue;
                }
                Err(err) => {
                    reasons.push(format!("{name}: EDK {index}: {err}"));
                    continue;
                }
            };
            let z = match self.shared_secret(&candidate.peer).await? {
                Ok(z) => z,
                Err(reason) => {
                    retry = retry.or(reason.retry());
                    reasons.push(format!("{name}: EDK {index}: {reason}"));
                    continue;
                }
            };
            let curve = candidate.peer.curve();
            match candidate.open(|fixed_info, salt| EcdhWrappingKeys::from_shared_secret(curve, &z, fixed_info, salt)) {
                Ok(key) => {
                    materials.set_data_key(DataKey::new(key.to_vec()))?;
                    return Ok(materials);
                }
                Err(err) => reasons.push(format!("{name}: EDK {index}: {err}")),
            }
        }
        if reasons.is_empty() {
            reasons.push(format!("{name}: no raw-ecdh or aws-kms-ecdh encrypted data key"));
        }
        Err(Error::NoDataKeyDecrypted { reasons, retry })
    }
}

/// KMS answers with the key's ARN, which must equal the configured id: so only a key ARN will do.
fn check_arn(key_arn: &str) -> Result<()> {
    KmsArn::parse_key(key_arn).map(|_| ()).map_err(|err| {
        Error::Config(format!("AWS KMS ECDH keyring: {err} (a key ARN is required: aliases and key ids are not)"))
    })
}

/// The public key of the KMS key `key_arn`, by `GetPublicKey`, checked: KMS names that key, its usage is
/// `KEY_AGREEMENT`, and the key is a valid point on `curve`.
async fn kms_public_key(kms: &Kms, key_arn: &str, curve: EcdhCurve) -> Result<EcdhPublicKey> {
    let call = kms.api.get_agreement_public_key(key_arn.to_owned(), kms.grant_tokens.clone());
    let fail = |what: String, retry: Retry| {
        Error::Keyring(Reason::new(format!("AWS KMS ECDH keyring: GetPublicKey with key {key_arn}: {what}"), retry))
    };
    let out = on_runtime(call).await?.map_err(|err| fail(err.describe("GetPublicKey"), err.retry()))?;
    if out.key_id.as_deref() != Some(key_arn) {
        return Err(fail("KMS answered for another key".into(), Retry::Never));
    }
    if !out.key_agreement {
        return Err(fail("the key's usage is not KEY_AGREEMENT".into(), Retry::Never));
    }
    let der = out.public_key.ok_or_else(|| fail("KMS returned no public key".into(), Retry::Never))?;
    let (found, _) = ecdh::spki_point(&der)?;
    if found != curve {
        return Err(EcdhError::CurveMismatch { expected: curve, found }.into());
    }
    Ok(EcdhPublicKey::from_der(curve, &der)?)
}

crate::keyring::keyring_by_async_methods!(AwsKmsEcdhKeyring);

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use aws_lc_rs::agreement::{self, ECDH_P256, ECDH_P384, ECDH_P521, UnparsedPublicKey};
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};

    use super::*;
    use crate::crypto::ecdh::EcdhPrivateKey;
    use crate::keyring::ecdh_edk::test_support::{
        assert_two_edks_differ, decrypt, encrypt, point_not_on_curve, reasons,
    };
    use crate::keyring::kms::api::{
        AgreementPublicKey, CallParams, Decrypted, Encrypted, Generated, KmsFuture, SharedSecret,
    };
    use crate::keyring::kms::error::{KmsError, KmsErrorKind};
    use crate::keyring::{Keyring, RawEcdhKeyring, block_on};

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/aaaaaaaa-1111-2222-3333-444444444444";
    const OTHER: &str = "arn:aws:kms:us-east-1:111122223333:key/bbbbbbbb-1111-2222-3333-444444444444";

    fn algorithm(curve: EcdhCurve) -> &'static agreement::Algorithm {
        match curve {
            EcdhCurve::P256 => &ECDH_P256,
            EcdhCurve::P384 => &ECDH_P384,
            EcdhCurve::P521 => &ECDH_P521,
        }
    }

    /// A rewrite of a KMS answer.
    type Tamper<T> = fn(&mut T);

    /// KMS with one key agreement key whose private half does the real ECDH, as KMS would (moto has no
    /// `DeriveSharedSecret`). Answers can be rewritten, as a broken or hostile KMS might.
    struct EcdhKms {
        curve: EcdhCurve,
        key: agreement::PrivateKey,
        calls: Mutex<Vec<&'static str>>,
        tamper_secret: Mutex<Option<Tamper<SharedSecret>>>,
        tamper_public: Option<Tamper<AgreementPublicKey>>,
    }

    impl EcdhKms {
        fn new(curve: EcdhCurve) -> Self {
            Self {
                curve,
                key: agreement::PrivateKey::generate(algorithm(curve)).unwrap(),
                calls: Mutex::default(),
                tamper_secret: Mutex::default(),
                tamper_public: None,
            }
        }

        fn spki(&self) -> Vec<u8> {
            self.key.compute_public_key().unwrap().as_der().unwrap().as_ref().to_vec()
        }

        /// The same private key, as the raw keyring (or the Python peer) would hold it.
        fn private_copy(&self) -> EcdhPrivateKey {
            let der = AsDer::<Pkcs8V1Der>::as_der(&self.key).unwrap();
            EcdhPrivateKey::from_der(self.curve, der.as_ref()).unwrap()
        }

        fn public(&self) -> EcdhPublicKey {
            EcdhPublicKey::from_der(self.curve, &self.spki()).unwrap()
        }

        fn count(&self, op: &str) -> usize {
            self.calls.lock().unwrap().iter().filter(|c| **c == op).count()
        }
    }

    impl KmsApi for EcdhKms {
        fn region(&self) -> Option<String> {
            Some("us-east-1".into())
        }

        fn generate_data_key(&self, _: CallParams, _: usize) -> KmsFuture<Generated> {
            unreachable!("a key agreement key cannot generate data keys")
        }

        fn encrypt(&self, _: CallParams, _: Zeroizing<Vec<u8>>) -> KmsFuture<Encrypted> {
            unreachable!("a key agreement key cannot encrypt")
        }

        fn decrypt(&self, _: CallParams, _: Vec<u8>) -> KmsFuture<Decrypted> {
            unreachable!("a key agreement key cannot decrypt")
        }

        fn get_agreement_public_key(&self, key_id: String, _: Vec<String>) -> KmsFuture<AgreementPublicKey> {
            self.calls.lock().unwrap().push("GetPublicKey");
            let mut out =
                AgreementPublicKey { key_id: Some(key_id), key_agreement: true, public_key: Some(self.spki()) };
            if let Some(tamper) = self.tamper_public {
                tamper(&mut out);
            }
            Box::pin(async move { Ok(out) })
        }

        fn derive_shared_secret(&self, key_id: String, _: Vec<String>, public_key: Vec<u8>) -> KmsFuture<SharedSecret> {
            self.calls.lock().unwrap().push("DeriveSharedSecret");
            if key_id != ARN {
                return Box::pin(async { Err(KmsError::new(KmsErrorKind::NotFound, "no such key")) });
            }
            // KMS takes the peer's key as SubjectPublicKeyInfo only.
            assert_eq!(ecdh::spki_point(&public_key).unwrap().0, self.curve);
            let peer = UnparsedPublicKey::new(algorithm(self.curve), public_key);
            let secret = agreement::agree(&self.key, peer, (), |z| Ok(Zeroizing::new(z.to_vec()))).unwrap();
            let mut out = SharedSecret { key_id: Some(key_id), ecdh: true, secret: Some(secret) };
            if let Some(tamper) = *self.tamper_secret.lock().unwrap() {
                tamper(&mut out);
            }
            Box::pin(async move { Ok(out) })
        }
    }

    fn keyring(kms: &Arc<EcdhKms>, peer: EcdhPublicKey) -> AwsKmsEcdhKeyring {
        block_on(AwsKmsEcdhKeyring::static_with_api(kms.clone(), ARN.into(), None, peer)).unwrap()
    }

    fn discovery(kms: &Arc<EcdhKms>) -> AwsKmsEcdhKeyring {
        block_on(AwsKmsEcdhKeyring::discovery_with_api(kms.clone(), ARN.into(), kms.curve)).unwrap()
    }

    /// Both directions on every curve: the KMS key as sender (the recipient's raw keyring reads it, by
    /// discovery and with the KMS key pinned as sender), and as recipient (a raw sender's EDK read by the
    /// KMS keyring, pinned and by discovery); the sender reads its own message.
    #[test]
    fn every_curve_and_scheme_round_trips_with_the_raw_keyring_both_ways() {
        for curve in EcdhCurve::ALL {
            let kms = Arc::new(EcdhKms::new(curve));
            let other = EcdhPrivateKey::generate(curve).unwrap();
            let other_copy = || EcdhPrivateKey::from_der(curve, &other.pkcs8_der_for_tests()).unwrap();
            let sender = keyring(&kms, other.public_key().clone());
            assert_eq!(sender.public_key(), &kms.public());
            assert_eq!((kms.count("GetPublicKey"), kms.count("DeriveSharedSecret")), (1, 0));

            let materials = encrypt(&sender).unwrap();
            let edks = materials.encrypted_data_keys();
            assert_eq!(edks[0].provider_id, "aws-kms-ecdh");
            assert_eq!(edks[0].provider_info.len(), curve.provider_info_len());
            assert_eq!(kms.count("DeriveSharedSecret"), 1);
            // The raw keyring holding the KMS key's private key reads it too (what the Python interop checks).
            let same_key = RawEcdhKeyring::static_keys(kms.private_copy(), other.public_key().clone()).unwrap();
            let readers: [&dyn Keyring; 4] = [
                &sender,
                &same_key,
                &RawEcdhKeyring::discovery(other_copy()),
                &RawEcdhKeyring::decrypt_from(other_copy(), kms.public()).unwrap(),
            ];
            for reader in readers {
                assert_eq!(decrypt(reader, edks).unwrap().data_key(), materials.data_key(), "{curve}");
            }

            // A raw sender writes to the KMS key: the pinned KMS keyring and KMS discovery read it.
            let raw = encrypt(&RawEcdhKeyring::static_keys(other_copy(), kms.public()).unwrap()).unwrap();
            let pinned = keyring(&kms, other.public_key().clone());
            for reader in [&pinned, &discovery(&kms)] {
                let read = decrypt(reader, raw.encrypted_data_keys()).unwrap();
                assert_eq!(read.data_key(), raw.data_key(), "{curve} {}", reader.scheme_name());
            }
            let err = encrypt(&discovery(&kms)).unwrap_err();
            assert!(matches!(err, Error::Ecdh(EcdhError::SchemeCannotEncrypt("KmsPublicKeyDiscovery"))), "{err:?}");

            // Pinned to a stranger: refused, without a KMS call.
            let stranger = keyring(&kms, EcdhPrivateKey::generate(curve).unwrap().public_key().clone());
            let calls = kms.count("DeriveSharedSecret");
            assert!(reasons(&stranger, raw.encrypted_data_keys()).contains("EDK 0 is for other keys"));
            assert_eq!(kms.count("DeriveSharedSecret"), calls);
        }
    }

    /// The zero IV rests on a fresh salt per EDK, with KMS's Z fixed for the key pair: two encryptions
    /// differ in salt, commitment key and wrapped key (a fixed salt fails this).
    #[test]
    fn two_encryptions_differ_in_salt_commitment_key_and_edk() {
        let kms = Arc::new(EcdhKms::new(EcdhCurve::P256));
        assert_two_edks_differ(&keyring(&kms, EcdhPrivateKey::generate(EcdhCurve::P256).unwrap().public_key().clone()));
    }

    /// Hostile EDKs (bad provider info, a sender point off the curve or of another curve, a wrong
    /// ciphertext length, another curve's EDK) get typed reasons and cost no `DeriveSharedSecret` call.
    #[test]
    fn hostile_edks_are_refused_before_any_kms_call() {
        let curve = EcdhCurve::P384;
        let kms = Arc::new(EcdhKms::new(curve));
        let reader = discovery(&kms);
        let writer = RawEcdhKeyring::ephemeral(kms.public());
        let edk = encrypt(&writer).unwrap().encrypted_data_keys()[0].clone();
        let sender_at = 1 + 4 + curve.compressed_len() + 4;
        let mutate = |f: &dyn Fn(&mut EncryptedDataKey)| {
            let mut edk = edk.clone();
            f(&mut edk);
            edk
        };
        let not_on_curve = point_not_on_curve(curve);
        let p256 = encrypt(&RawEcdhKeyring::ephemeral(
            EcdhPrivateKey::generate(EcdhCurve::P256).unwrap().public_key().clone(),
        ))
        .unwrap()
        .encrypted_data_keys()[0]
            .clone();
        let hostile = [
            (mutate(&|e| e.provider_info.push(0)), "length does not fit the curve"),
            (mutate(&|e| e.provider_info[0] = 2), "unknown keyring version"),
            (mutate(&|e| e.provider_info[1..5].copy_from_slice(&u32::MAX.to_be_bytes())), "public key length"),
            (mutate(&|e| e.provider_info[sender_at..].copy_from_slice(&not_on_curve)), "not a point on P-384"),
            (mutate(&|e| e.provider_info[sender_at] = 0x05), "not a SEC 1 point"),
            (mutate(&|e| e.provider_info[sender_at + 1..].fill(0xff)), "not a point on P-384"),
            (mutate(&|e| e.ciphertext.pop().map(drop).unwrap()), "111 bytes, 112 expected"),
            (p256, "length does not fit the curve"),
        ];
        for (edk, says) in hostile {
            let all = reasons(&reader, std::slice::from_ref(&edk));
            assert!(all.contains(says), "{says}: {all}");
        }
        assert_eq!(kms.count("DeriveSharedSecret"), 0, "no hostile EDK reached KMS");

        // An EDK that passes every local check does reach KMS; an altered salt then fails the commitment.
        let salt = mutate(&|e| e.ciphertext[0] ^= 1);
        assert!(reasons(&reader, &[salt]).contains("commitment key"));
        assert_eq!(kms.count("DeriveSharedSecret"), 1);
        assert!(decrypt(&reader, &[edk]).is_ok());
    }

    /// KMS answers are checked: another KeyId, another algorithm, no secret or one of the wrong length is
    /// refused on encrypt and decrypt; so is a `GetPublicKey` answer for another key, another usage, no key,
    /// or a key on another curve. An alias is refused before any call.
    #[test]
    fn kms_answers_are_checked() {
        let curve = EcdhCurve::P256;
        let peer = EcdhPrivateKey::generate(curve).unwrap();
        let honest = Arc::new(EcdhKms::new(curve));
        let edks = encrypt(
            &RawEcdhKeyring::static_keys(
                EcdhPrivateKey::from_der(curve, &peer.pkcs8_der_for_tests()).unwrap(),
                honest.public(),
            )
            .unwrap(),
        )
        .unwrap()
        .encrypted_data_keys()
        .to_vec();
        let tampers: [(Tamper<SharedSecret>, &str); 5] = [
            (|s| s.key_id = Some(OTHER.into()), "another key agreed the secret"),
            (|s| s.key_id = None, "another key agreed the secret"),
            (|s| s.ecdh = false, "other than ECDH"),
            (|s| s.secret = None, "no shared secret"),
            (|s| s.secret.as_mut().unwrap().push(0), "33 bytes, not the length of a P-256 field element"),
        ];
        let keyring = keyring(&honest, peer.public_key().clone());
        for (tamper, says) in tampers {
            *honest.tamper_secret.lock().unwrap() = Some(tamper);
            let err = encrypt(&keyring).unwrap_err().to_string();
            assert!(err.contains(says), "{says}: {err}");
            let all = reasons(&keyring, &edks);
            assert!(all.contains(says), "{says}: {all}");
        }
        *honest.tamper_secret.lock().unwrap() = None;
        assert!(decrypt(&keyring, &edks).is_ok(), "the same EDK, honestly answered");

        let publics: [(Tamper<AgreementPublicKey>, &str); 4] = [
            (|p| p.key_id = Some(OTHER.into()), "answered for another key"),
            (|p| p.key_agreement = false, "not KEY_AGREEMENT"),
            (|p| p.public_key = None, "no public key"),
            (
                |p| {
                    let other = agreement::PrivateKey::generate(&ECDH_P384).unwrap();
                    p.public_key = Some(other.compute_public_key().unwrap().as_der().unwrap().as_ref().to_vec());
                },
                "the key is on P-384, but P-256 is configured",
            ),
        ];
        for (tamper, says) in publics {
            let kms = Arc::new(EcdhKms { tamper_public: Some(tamper), ..EcdhKms::new(curve) });
            let err = block_on(AwsKmsEcdhKeyring::static_with_api(kms, ARN.into(), None, peer.public_key().clone()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
        let kms = Arc::new(EcdhKms::new(curve));
        let alias = "arn:aws:kms:us-east-1:111122223333:alias/ecdh";
        assert!(block_on(AwsKmsEcdhKeyring::discovery_with_api(kms.clone(), alias.into(), curve)).is_err());
        assert_eq!(kms.calls.lock().unwrap().len(), 0);
    }
}
