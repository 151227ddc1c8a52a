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
use kms_envelope::s3::TransferOptions;
use lambda_runtime::{LambdaEvent, service_fn};

async fn run() -> Result<(), lambda_runtime::Error> {
    let config = BatchConfig::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let function =
        BatchFunction::new(config, &KmsClients::new(&aws), aws_sdk_s3::Client::new(&aws), TransferOptions::new())?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<BatchInvocation>| {
        let function = function.clone();
        async move { Ok::<BatchResponse, lambda_runtime::Error>(function.handle(event.payload).await) }
    }))
    .await
}

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
