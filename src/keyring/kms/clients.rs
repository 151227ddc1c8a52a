//! One AWS configuration, one KMS client per region, and the KMS keyrings built from them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;

use super::arn::{KmsArn, Region, check_key_identifier};
use super::discovery::{AwsKmsDiscoveryKeyring, DiscoveryFilter};
use super::mrk::{AwsKmsMrkDiscoveryKeyring, AwsKmsMrkKeyring};
use super::runtime::on_runtime;
use super::strict::AwsKmsKeyring;
use crate::error::{Error, Result};
use crate::keyring::{MultiKeyring, block_on};

/// Per-attempt timeout of a KMS call unless the configuration or [`KmsClients::with_timeouts`] sets one.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of a KMS call with all its retries, unless configured otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How many per-region clients [`KmsClients`] keeps; the least recently used is dropped past this. A
/// message can name keys in many regions, so the cache must not grow with what messages ask for.
pub const MAX_CACHED_CLIENTS: usize = 16;

/// KMS clients for every region, from one AWS configuration (credentials, endpoint, retries, timeouts).
///
/// Clients are built on first use and cached per region (at most [`MAX_CACHED_CLIENTS`], least recently
/// used dropped first); clones share the cache. A client is only ever built for a [`Region`], whose
/// constructor refuses anything that is not a well-formed region of a known partition. Retries follow the SDK's
/// standard mode (throttling, 5xx and transient network errors, 3 attempts in all, with backoff) unless
/// the configuration says otherwise; each call is bounded by a per-attempt and a total timeout.
///
/// ```no_run
/// # fn main() -> Result<(), kms_envelope::Error> {
/// use kms_envelope::{DecryptOptions, DiscoveryFilter, EncryptOptions, KmsClients};
///
/// let kms = KmsClients::from_env_blocking()?; // once per process; clones share the clients
/// let generator = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// let other = "arn:aws:kms:eu-west-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321";
/// let keyring = kms.multi_keyring(&[generator, other])?; // GenerateDataKey, then Encrypt in eu-west-1
/// let message = kms_envelope::encrypt(&keyring, &EncryptOptions::new(), b"secret")?;
///
/// // Decrypt with any one key (its ARN), or by discovery limited to an account.
/// let by_key = kms_envelope::decrypt(&kms.keyring(other)?, &DecryptOptions::new(), &message)?;
/// let filter = DiscoveryFilter::new(kms.partition(), ["111122223333"])?;
/// let by_discovery = kms_envelope::decrypt(&kms.discovery_keyring(Some(filter)), &DecryptOptions::new(), &message)?;
/// assert_eq!(by_key.plaintext, by_discovery.plaintext);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KmsClients {
    config: SdkConfig,
    attempt_timeout: Option<Duration>,
    call_timeout: Option<Duration>,
    retry: Option<RetryConfig>,
    grant_tokens: Vec<String>,
    cache: Arc<Mutex<ClientCache>>,
}

impl fmt::Debug for KmsClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsClients")
            .field("default_region", &self.default_region())
            .field("endpoint_url", &self.config.endpoint_url())
            .field("attempt_timeout", &self.attempt_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("max_attempts", &self.retry.as_ref().map(RetryConfig::max_attempts))
            .field("grant_tokens", &self.grant_tokens.len())
            .finish()
    }
}

impl KmsClients {
    /// Clients from `config`, as loaded by `aws_config` or built by hand.
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            config: config.clone(),
            attempt_timeout: None,
            call_timeout: None,
            retry: None,
            grant_tokens: Vec::new(),
            cache: Arc::default(),
        }
    }

    /// Clients from the environment, the way every AWS SDK finds it (`aws_config::load_defaults`):
    /// `AWS_REGION`, `AWS_PROFILE` and the shared config files, credentials from the environment, profile,
    /// SSO, web identity or instance role, and `AWS_ENDPOINT_URL_KMS` (or `AWS_ENDPOINT_URL`) if set.
    /// Credentials are resolved on the first KMS call, not here.
    ///
    /// # Errors
    ///
    /// [`Error::Keyring`] when, outside a tokio runtime, the fallback runtime cannot start, or when loading
    /// the configuration panicked or was cancelled by its runtime's shutdown. Missing credentials or region
    /// are not an error here.
    pub async fn from_env() -> Result<Self> {
        let config = on_runtime(aws_config::load_defaults(BehaviorVersion::latest())).await?;
        Ok(Self::new(&config))
    }

    /// [`from_env`](Self::from_env) for synchronous code. Do not call it on an async runtime's thread.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_env_blocking() -> Result<Self> {
        block_on(Self::from_env())
    }

    /// Sets the timeout of each attempt and of a whole call including its retries (defaults: the
    /// configuration's, else [`DEFAULT_ATTEMPT_TIMEOUT`](super::DEFAULT_ATTEMPT_TIMEOUT) and
    /// [`DEFAULT_CALL_TIMEOUT`](super::DEFAULT_CALL_TIMEOUT)).
    pub fn with_timeouts(mut self, attempt: Duration, call: Duration) -> Self {
        self.attempt_timeout = Some(attempt);
        self.call_timeout = Some(call);
        self.cache = Arc::default();
        self
    }

    /// Sets how many attempts a call may make in all (1 disables retries).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        let retry =
            self.retry.take().or_else(|| self.config.retry_config().cloned()).unwrap_or_else(RetryConfig::standard);
        self.retry = Some(retry.with_max_attempts(attempts.max(1)));
        self.cache = Arc::default();
        self
    }

    /// Replaces the retry configuration (mode, attempts, backoff).
    pub fn with_retry_config(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self.cache = Arc::default();
        self
    }

    /// Grant tokens for every keyring built from here on.
    pub fn with_grant_tokens(mut self, tokens: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.grant_tokens = tokens.into_iter().map(Into::into).collect();
        self
    }

    /// The AWS configuration the clients are built from (the branch key store builds its DynamoDB client
    /// from it).
    #[cfg(feature = "hierarchy-ddb")]
    pub(crate) fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    /// The grant tokens given with [`with_grant_tokens`](Self::with_grant_tokens).
    #[cfg(feature = "hierarchy-ddb")]
    pub(crate) fn grant_tokens(&self) -> &[String] {
        &self.grant_tokens
    }

    /// The configuration's region, used for keys not given as ARNs.
    pub fn default_region(&self) -> Option<&str> {
        self.config.region().map(aws_config::Region::as_ref)
    }

    /// The partition of the default region (`aws`, `aws-cn`, `aws-us-gov`, ...), for a [`DiscoveryFilter`];
    /// `aws` if no region is configured or it is not a well-formed region.
    pub fn partition(&self) -> &'static str {
        self.default_region().and_then(|name| Region::parse(name).ok()).map_or("aws", |region| region.partition())
    }

    /// The configuration's region, checked: a configured region that is not well-formed is an error, not a
    /// host name.
    fn checked_default_region(&self) -> Result<Region> {
        let name = self.default_region().ok_or_else(no_region)?;
        Region::parse(name).map_err(|err| Error::Config(format!("the configured AWS region: {err}")))
    }

    /// The client for `region`, or for the default region if `None`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `region` is `None` and no region is configured, or the configured one is not
    /// a well-formed region.
    pub fn client(&self, region: Option<&Region>) -> Result<aws_sdk_kms::Client> {
        let default;
        let region = match region {
            Some(region) => region,
            None => {
                default = self.checked_default_region()?;
                &default
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = cache.get(region) {
            return Ok(client);
        }
        let client = aws_sdk_kms::Client::from_conf(self.client_config(region));
        cache.insert(region.clone(), client.clone());
        Ok(client)
    }

    /// How many clients the cache holds now (at most [`MAX_CACHED_CLIENTS`]).
    pub fn cached_clients(&self) -> usize {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    fn client_config(&self, region: &Region) -> aws_sdk_kms::Config {
        let base = self.config.timeout_config().cloned().unwrap_or_else(|| TimeoutConfig::builder().build());
        let timeouts = base
            .to_builder()
            .operation_attempt_timeout(
                self.attempt_timeout.or(base.operation_attempt_timeout()).unwrap_or(DEFAULT_ATTEMPT_TIMEOUT),
            )
            .operation_timeout(self.call_timeout.or(base.operation_timeout()).unwrap_or(DEFAULT_CALL_TIMEOUT))
            .build();
        let mut builder = aws_sdk_kms::config::Builder::from(&self.config)
            .region(aws_config::Region::new(region.as_str().to_owned()))
            .timeout_config(timeouts);
        if let Some(retry) = &self.retry {
            builder = builder.retry_config(retry.clone());
        }
        builder.build()
    }

    /// The client for `key_id`: the ARN's region, else the default region.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `key_id` is not a KMS key identifier (empty, an ARN that does not parse, or
    /// neither `alias/NAME` nor a key id), or, for a key not given as an ARN, as [`client`](Self::client)
    /// says for the default region.
    pub fn client_for_key(&self, key_id: &str) -> Result<aws_sdk_kms::Client> {
        let arn = check_key_identifier(key_id).map_err(Error::Config)?;
        self.client(arn.as_ref().map(KmsArn::region))
    }

    /// A strict keyring for `key_id` (key ARN, key id, alias name or alias ARN).
    ///
    /// # Errors
    ///
    /// [`Error::Config`], as [`client_for_key`](Self::client_for_key) says.
    pub fn keyring(&self, key_id: &str) -> Result<AwsKmsKeyring> {
        Ok(AwsKmsKeyring::new(self.client_for_key(key_id)?, key_id)?.with_grant_tokens(self.grant_tokens.clone()))
    }

    /// An MRK-aware strict keyring for `key_id`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`], as [`client_for_key`](Self::client_for_key) says.
    pub fn mrk_keyring(&self, key_id: &str) -> Result<AwsKmsMrkKeyring> {
        Ok(AwsKmsMrkKeyring::new(self.client_for_key(key_id)?, key_id)?.with_grant_tokens(self.grant_tokens.clone()))
    }

    /// Strict keyrings for `key_ids` in one multi-keyring: the first is the generator, each other key adds
    /// an `Encrypt`. On decrypt, each key is tried in order until one decrypts.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `key_ids` is empty, or for the first key that
    /// [`client_for_key`](Self::client_for_key) refuses.
    pub fn multi_keyring(&self, key_ids: &[impl AsRef<str>]) -> Result<MultiKeyring> {
        let (first, rest) = key_ids.split_first().ok_or_else(|| Error::Config("no AWS KMS key given".into()))?;
        let mut multi = MultiKeyring::new(self.keyring(first.as_ref())?);
        for key_id in rest {
            multi = multi.with_child(self.keyring(key_id.as_ref())?);
        }
        Ok(multi)
    }

    /// An AWS KMS RSA keyring for `key_arn` (a key ARN of an RSA key with usage `ENCRYPT_DECRYPT`), with a
    /// client in the key's region. It fetches the public key with `GetPublicKey` on its first encrypt;
    /// give it with [`AwsKmsRsaKeyring::with_public_key_pem`](super::AwsKmsRsaKeyring::with_public_key_pem)
    /// to avoid that call.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `key_arn` is not a key ARN (an alias or a bare key id is refused).
    #[cfg(feature = "rsa")]
    pub fn rsa_keyring(&self, key_arn: &str, algorithm: super::KmsRsaAlgorithm) -> Result<super::AwsKmsRsaKeyring> {
        Ok(super::AwsKmsRsaKeyring::new(self.client_for_key(key_arn)?, key_arn, algorithm)?
            .with_grant_tokens(self.grant_tokens.clone()))
    }

    /// MRK-aware strict keyrings for `key_ids` in one multi-keyring. Two replicas of one multi-Region key
    /// are refused: they would wrap the data key twice under the same key.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when two of `key_ids` are replicas of one multi-Region key, `key_ids` is empty, or
    /// for the first key that [`client_for_key`](Self::client_for_key) refuses.
    pub fn mrk_multi_keyring(&self, key_ids: &[impl AsRef<str>]) -> Result<MultiKeyring> {
        refuse_mrk_replicas(key_ids)?;
        let (first, rest) = key_ids.split_first().ok_or_else(|| Error::Config("no AWS KMS key given".into()))?;
        let mut multi = MultiKeyring::new(self.mrk_keyring(first.as_ref())?);
        for key_id in rest {
            multi = multi.with_child(self.mrk_keyring(key_id.as_ref())?);
        }
        Ok(multi)
    }

    /// A discovery keyring that calls each key in the key's own region, optionally filtered.
    ///
    /// The message chooses the region (and so the KMS endpoint) of each call, among well-formed regions of
    /// known partitions (of the filter's partition, with a filter). To pin discovery to regions you name,
    /// add [`AwsKmsDiscoveryKeyring::with_regions`]; to call one region only, use
    /// [`mrk_discovery_keyring`](Self::mrk_discovery_keyring).
    pub fn discovery_keyring(&self, filter: Option<DiscoveryFilter>) -> AwsKmsDiscoveryKeyring {
        let keyring = AwsKmsDiscoveryKeyring::per_region(self.clone(), self.grant_tokens.clone());
        match filter {
            Some(filter) => keyring.with_filter(filter),
            None => keyring,
        }
    }

    /// An MRK-aware discovery keyring bound to `region` (default: the configuration's).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `region` is not a well-formed region, or it is `None` and no well-formed
    /// region is configured.
    pub fn mrk_discovery_keyring(
        &self,
        region: Option<&str>,
        filter: Option<DiscoveryFilter>,
    ) -> Result<AwsKmsMrkDiscoveryKeyring> {
        let region =
            region.map(|name| Region::parse(name).map_err(|err| Error::Config(err.to_string()))).transpose()?;
        let keyring =
            AwsKmsMrkDiscoveryKeyring::new(self.client(region.as_ref())?)?.with_grant_tokens(self.grant_tokens.clone());
        Ok(match filter {
            Some(filter) => keyring.with_filter(filter),
            None => keyring,
        })
    }

    /// MRK-aware discovery keyrings for several regions, tried in order, in one multi-keyring (decrypt only).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `regions` is empty or one of them is not a well-formed region.
    pub fn mrk_discovery_multi_keyring(
        &self,
        regions: &[impl AsRef<str>],
        filter: Option<DiscoveryFilter>,
    ) -> Result<MultiKeyring> {
        if regions.is_empty() {
            return Err(Error::Config("no region given for MRK discovery".into()));
        }
        let mut multi = MultiKeyring::without_generator();
        for region in regions {
            multi = multi.with_child(self.mrk_discovery_keyring(Some(region.as_ref()), filter.clone())?);
        }
        Ok(multi)
    }
}

/// Refuses two replicas of one multi-Region key among `key_ids` (the MRK-aware multi-keyring's rule):
/// together they would wrap the data key twice under what is one key, and on decrypt each would ask KMS
/// for the same EDK.
///
/// # Errors
///
/// [`Error::Config`] naming the first two identifiers (key ARNs or bare `mrk-` ids) of the same
/// multi-Region key.
pub fn refuse_mrk_replicas(key_ids: &[impl AsRef<str>]) -> Result<()> {
    let mrk_id = |key_id: &str| match check_key_identifier(key_id) {
        Ok(Some(arn)) if arn.is_multi_region_key() => Some(arn.resource_id().to_owned()),
        Ok(None) if key_id.starts_with("mrk-") => Some(key_id.to_owned()),
        _ => None,
    };
    let mut seen = BTreeMap::new();
    for key_id in key_ids.iter().map(AsRef::as_ref) {
        if let Some(other) = mrk_id(key_id).and_then(|id| seen.insert(id, key_id)) {
            return Err(Error::Config(format!("{other} and {key_id} are replicas of the same multi-Region key")));
        }
    }
    Ok(())
}

/// The most grant tokens one KMS request may carry.
pub const MAX_GRANT_TOKENS: usize = 10;

/// The longest grant token KMS accepts, in characters.
const MAX_GRANT_TOKEN_LEN: usize = 8192;

/// Checks grant tokens before any call, as KMS would refuse them: at most [`MAX_GRANT_TOKENS`], each from 1
/// to 8192 printable ASCII characters. The error names a token by its position, never by its text.
///
/// # Errors
///
/// [`Error::Config`] when more than [`MAX_GRANT_TOKENS`] are given, or a token is empty, longer than 8192
/// bytes, or holds a character other than printable ASCII (spaces included).
pub fn check_grant_tokens(tokens: &[impl AsRef<str>]) -> Result<()> {
    if tokens.len() > MAX_GRANT_TOKENS {
        return Err(Error::Config(format!(
            "{} grant tokens given; a KMS request takes at most {MAX_GRANT_TOKENS}",
            tokens.len()
        )));
    }
    for (n, token) in tokens.iter().map(AsRef::as_ref).enumerate() {
        let printable = token.bytes().all(|b| b.is_ascii_graphic());
        if token.is_empty() || token.len() > MAX_GRANT_TOKEN_LEN || !printable {
            return Err(Error::Config(format!(
                "grant token {} is not one: a grant token is 1 to {MAX_GRANT_TOKEN_LEN} printable ASCII characters \
                 without spaces",
                n + 1
            )));
        }
    }
    Ok(())
}

fn no_region() -> Error {
    Error::Config(
        "no AWS region configured: set AWS_REGION (or a region in the AWS profile), or give the key as an ARN".into(),
    )
}

/// Per-region clients, bounded: the least recently used is dropped when a new one would exceed
/// [`MAX_CACHED_CLIENTS`].
#[derive(Default)]
struct ClientCache {
    clients: HashMap<Region, (aws_sdk_kms::Client, u64)>,
    clock: u64,
}

impl ClientCache {
    fn get(&mut self, region: &Region) -> Option<aws_sdk_kms::Client> {
        self.clock += 1;
        let clock = self.clock;
        self.clients.get_mut(region).map(|(client, used)| {
            *used = clock;
            client.clone()
        })
    }

    fn insert(&mut self, region: Region, client: aws_sdk_kms::Client) {
        if self.clients.len() >= MAX_CACHED_CLIENTS
            && let Some(oldest) = self.clients.iter().min_by_key(|(_, (_, used))| *used).map(|(r, _)| r.clone())
        {
            self.clients.remove(&oldest);
        }
        self.clock += 1;
        self.clients.insert(region, (client, self.clock));
    }

    fn len(&self) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(region: Option<&str>) -> KmsClients {
        let mut config = SdkConfig::builder().behavior_version(BehaviorVersion::latest());
        if let Some(region) = region {
            config = config.region(aws_config::Region::new(region.to_owned()));
        }
        KmsClients::new(&config.build())
    }

    const MRK_E: &str = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    const MRK_W: &str = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";

    #[test]
    fn clients_follow_the_key_region_and_are_cached() {
        let kms = clients(Some("us-east-1")).with_timeouts(Duration::from_secs(2), Duration::from_secs(5));
        let west = kms.client_for_key(MRK_W).unwrap();
        assert_eq!(west.config().region().unwrap().as_ref(), "eu-west-1");
        assert_eq!(kms.client_for_key("alias/x").unwrap().config().region().unwrap().as_ref(), "us-east-1");
        let timeouts = west.config().timeout_config().unwrap();
        assert_eq!(timeouts.operation_attempt_timeout(), Some(Duration::from_secs(2)));
        assert_eq!(timeouts.operation_timeout(), Some(Duration::from_secs(5)));
        assert_eq!(kms.cached_clients(), 2);
        kms.client(Some(&Region::parse("eu-west-1").unwrap())).unwrap();
        assert_eq!(kms.cached_clients(), 2, "cached");

        let retried = clients(Some("us-east-1")).with_max_attempts(5).client(None).unwrap();
        assert_eq!(retried.config().retry_config().unwrap().max_attempts(), 5);
        let defaults = clients(Some("us-east-1")).client(None).unwrap();
        assert_eq!(
            defaults.config().timeout_config().unwrap().operation_attempt_timeout(),
            Some(DEFAULT_ATTEMPT_TIMEOUT)
        );
    }

    #[test]
    fn no_region_is_a_configuration_error_unless_the_key_is_an_arn() {
        let kms = clients(None);
        let err = kms.keyring("alias/x").unwrap_err();
        assert!(matches!(err, Error::Config(ref m) if m.contains("AWS_REGION")), "{err}");
        assert!(kms.keyring(MRK_E).is_ok());
        assert!(kms.mrk_discovery_keyring(None, None).is_err());
        assert!(kms.multi_keyring(&[] as &[&str]).is_err());
        assert!(kms.keyring("").is_err());
    }

    #[test]
    fn mrk_multi_keyring_refuses_two_replicas() {
        let kms = clients(Some("us-east-1"));
        let err = kms.mrk_multi_keyring(&[MRK_E, MRK_W]).unwrap_err();
        assert!(err.to_string().contains("replicas of the same multi-Region key"), "{err}");
        assert!(kms.mrk_multi_keyring(&[MRK_E, "alias/other"]).is_ok());
        assert!(kms.multi_keyring(&[MRK_E, MRK_W]).is_ok(), "the plain strict keyrings allow it");
    }

    #[test]
    fn partitions() {
        assert_eq!(clients(Some("us-east-1")).partition(), "aws");
        assert_eq!(clients(Some("cn-northwest-1")).partition(), "aws-cn");
        assert_eq!(clients(Some("us-gov-west-1")).partition(), "aws-us-gov");
        assert_eq!(clients(Some("x@127.0.0.1/")).partition(), "aws");
        assert_eq!(clients(None).partition(), "aws");
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_the_recently_used() {
        let kms = clients(Some("us-east-1"));
        let first = Region::parse("us-east-1").unwrap();
        kms.client(Some(&first)).unwrap();
        for i in 0..40 {
            let region = Region::parse(&format!("eu-region{}-{}", (b'a' + (i / 10) as u8) as char, i % 10)).unwrap();
            kms.client(Some(&region)).unwrap();
            kms.client(Some(&first)).unwrap();
            assert!(kms.cached_clients() <= MAX_CACHED_CLIENTS);
        }
        assert_eq!(kms.cached_clients(), MAX_CACHED_CLIENTS);
        assert!(kms.cache.lock().unwrap().clients.contains_key(&first), "the most used region stays");
    }

    #[test]
    fn a_configured_region_that_is_not_one_is_refused() {
        let kms = clients(Some("x@127.0.0.1/"));
        let err = kms.client(None).unwrap_err();
        assert!(matches!(err, Error::Config(ref m) if m.contains("is not an AWS region")), "{err}");
        assert!(kms.keyring("alias/x").is_err());
        assert!(kms.mrk_discovery_keyring(Some("evil.example/"), None).is_err());
        assert_eq!(kms.cached_clients(), 0);
    }
}
