//! `kms-envelope-batch`: the S3 Batch Operations function (see `kms_envelope::lambda::batch`), a Lambda
//! function on the `provided.al2023` runtime whose handler answers each Batch invocation with one result per
//! task. Its profiles come from `KMS_ENVELOPE_BATCH_PROFILES`; a job names one, nothing more.
//!
//! The configuration is read and checked once, at init: a bad one fails the init phase with one line that
//! names the variable, so no task runs under a half-understood configuration. A task's failure never fails
//! the invocation: it is that task's `TemporaryFailure` or `PermanentFailure`.

use kms_envelope::KmsClients;
use kms_envelope::escape::OneLine;
use kms_envelope::lambda::batch::{BatchConfig, BatchFunction, BatchInvocation, BatchResponse};
use kms_envelope::lambda::env;
use lambda_runtime::{LambdaEvent, service_fn};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

async fn run() -> Result<(), lambda_runtime::Error> {
    let config = BatchConfig::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    // KMS_ENVELOPE_S3_PART_SIZE and KMS_ENVELOPE_S3_CONCURRENCY, or defaults that fit the function's memory.
    let transfer = env::transfer_options(|name| std::env::var(name).ok())?;
    // KMS_ENVELOPE_KMS_GRANT_TOKENS, as the decryptor reads it: sent with every KMS call of every profile.
    let grant_tokens = env::parse_grant_tokens(std::env::var(env::GRANT_TOKENS_VAR).ok().as_deref())?;
    let kms = KmsClients::new(&aws).with_grant_tokens(grant_tokens.0);
    let function = BatchFunction::new(config, &kms, aws_sdk_s3::Client::new(&aws), transfer)?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<BatchInvocation>| {
        let function = function.clone();
        async move {
            let deadline = deadline_instant(event.context.deadline);
            Ok::<BatchResponse, lambda_runtime::Error>(function.handle_until(event.payload, Some(deadline)).await)
        }
    }))
    .await
}

/// The invocation's deadline (milliseconds since the Unix epoch, as the runtime API gives it) on this
/// process's monotonic clock.
fn deadline_instant(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |now| now.as_millis());
    let left = u128::from(deadline_ms).saturating_sub(now_ms);
    Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX).min(LAMBDA_MAX_MS))
}

/// Longer than any invocation (900 s), so that a nonsense deadline cannot overflow an `Instant`.
const LAMBDA_MAX_MS: u64 = 3_600_000;

fn main() -> std::process::ExitCode {
    let ran = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Into::into)
        .and_then(|runtime| runtime.block_on(run()));
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kms-envelope-batch: {}", OneLine(&error.to_string()));
            std::process::ExitCode::FAILURE
        }
    }
}
