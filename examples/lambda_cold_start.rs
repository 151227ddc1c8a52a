//! A Lambda function that decrypts its bundles at cold start, before the runtime loop, and whose handler
//! then reads the plaintext from `/tmp`.
//!
//! Everything is configured by environment variables (see `kms_envelope::lambda::env`):
//!
//! ```text
//! KMS_ENVELOPE_BUNDLES=config/app.json.esdk=app.json,s3://my-bucket/certs.esdk=certs/
//! KMS_ENVELOPE_SECRETS=secrets.json.esdk            # optional: JSON secrets, kept in memory only
//! KMS_ENVELOPE_KMS_KEY_ARN=arn:aws:kms:us-east-1:111122223333:key/...
//! KMS_ENVELOPE_CONTEXT=purpose=config,stage=prod
//! ```
//!
//! Build it for Lambda with `cargo lambda build --release --example lambda_cold_start --features lambda,s3`
//! (or any musl/glibc build named `bootstrap`) and deploy it on the `provided.al2023` runtime.
//!
//! The handler answers three kinds of events, to show that the plaintext is there:
//! * `{}`: the bundles, where they landed, their size, and whether this environment reused them;
//! * `{"path": "certs/server.pem"}`: the size and SHA-256 of that file under the root;
//! * `{"secret": "DB_PASSWORD"}`: whether the secret exists and the SHA-256 of its value (never the value).
//!
//! `lambda_cold_start --once` decrypts, prints one JSON line per bundle and exits without starting the
//! runtime loop: handy to try the configuration outside Lambda (the tests and the benchmark use it).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use kms_envelope::KmsClients;
use kms_envelope::lambda::{ColdStart, EnvConfig, Landed, Secrets};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// What the handler needs: filled once, before the first invocation.
struct State {
    root: PathBuf,
    landed: Vec<Landed>,
    secrets: Option<Secrets>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn landed_json(landed: &Landed) -> Value {
    json!({
        "destination": landed.destination,
        "bytes": landed.bytes,
        "reused": landed.reused,
        "unwrap_ms": landed.unwrap_time.as_secs_f64() * 1e3,
        "total_ms": landed.total_time.as_secs_f64() * 1e3,
    })
}

async fn handler(state: &State, event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
    let (event, _context) = event.into_parts();
    if let Some(path) = event.get("path").and_then(Value::as_str) {
        let relative = Path::new(path);
        if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!("path {path:?} must be relative to the root, without ..").into());
        }
        let bytes = tokio::fs::read(state.root.join(relative)).await?;
        return Ok(json!({ "path": path, "bytes": bytes.len(), "sha256": sha256_hex(&bytes) }));
    }
    if let Some(name) = event.get("secret").and_then(Value::as_str) {
        let value = state.secrets.as_ref().and_then(|s| s.get(name));
        return Ok(
            json!({ "secret": name, "present": value.is_some(), "sha256": value.map(|v| sha256_hex(v.as_bytes())) }),
        );
    }
    Ok(json!({
        "bundles": state.landed.iter().map(landed_json).collect::<Vec<_>>(),
        "secrets": state.secrets.as_ref().map(|s| s.names().collect::<Vec<_>>()),
    }))
}

/// Decrypts everything the environment names: the bundles onto disk, the secrets into memory.
async fn cold_start(config: &EnvConfig) -> kms_envelope::Result<(Vec<Landed>, Option<Secrets>)> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let keyring = config.keyring(&KmsClients::new(&aws))?;
    let cold_start: ColdStart = config.cold_start(keyring).s3_client(aws_sdk_s3::Client::new(&aws));
    // The secrets and the bundles are decrypted concurrently: one KMS call each, in parallel.
    let secrets = async {
        match &config.secrets {
            Some(source) => cold_start.load_secrets(source).await.map(Some),
            None => Ok(None),
        }
    };
    let (landed, secrets) = tokio::join!(cold_start.run(), secrets);
    Ok((landed?.to_vec(), secrets?))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // Logs go to stderr (CloudWatch in Lambda); RUST_LOG overrides the level. Nothing secret is logged.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .init();

    let config = EnvConfig::from_env()?;
    let (landed, secrets) = cold_start(&config).await?;

    if std::env::args().nth(1).as_deref() == Some("--once") {
        for landed in &landed {
            println!("{}", landed_json(landed));
        }
        if let Some(secrets) = &secrets {
            println!("{}", json!({ "secrets": secrets.names().collect::<Vec<_>>() }));
        }
        return Ok(());
    }

    let state = Arc::new(State { root: config.root.clone(), landed, secrets });
    lambda_runtime::run(service_fn(move |event| {
        let state = state.clone();
        async move { handler(&state, event).await }
    }))
    .await
}
