//! The AWS configuration the cold start builds its own KMS and S3 clients from: the standard environment,
//! with timeouts that fit Lambda's Init phase.
//!
//! An on-demand function's Init phase (extensions, runtime, the cold start before the handler) has 10 s.
//! Without timeouts, a connection that never completes or an answer that never begins holds the cold start
//! until Lambda kills the environment at those 10 s, with no message saying which request hung. With them, a
//! stuck attempt is cut off while there is time for the SDK's retry on a new connection, and a call that
//! cannot get through fails with its own error within the phase. Within a region, connecting (TCP and TLS)
//! to KMS or S3 takes milliseconds, KMS `Decrypt` answers in tens of milliseconds and S3 sends a first byte
//! in under 100 ms: each timeout is some 30 times what a healthy request takes at its slowest.
//!
//! The timeouts end where an answer's headers arrive: an S3 body that follows is cut off by the S3 module's
//! [`Deadline`](crate::s3::Deadline) for its size, and retried there.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;

/// Setting up a connection, TCP and TLS.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// From a request's last byte sent to its answer's first (its headers).
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// One attempt of a call, all told: connecting, sending, the answer's headers.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);
/// A call with its retries: two attempts and the backoff between them, under the Init phase's 10 s.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(9);

/// [`CONNECT_TIMEOUT`], [`READ_TIMEOUT`], [`ATTEMPT_TIMEOUT`] and [`CALL_TIMEOUT`].
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(CALL_TIMEOUT)
        .build()
}

/// The AWS configuration of the environment (region, credentials, endpoints, as `aws_config::load_defaults`
/// finds them) with [`timeouts`], for the KMS and S3 clients of a cold start.
pub async fn load_aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts()).load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two attempts and the largest first backoff of the SDK's standard retry (1 s) fit in the call
    /// timeout, and the call in the Init phase.
    #[test]
    fn two_attempts_fit_in_a_call_and_a_call_in_the_init_phase() {
        assert!(ATTEMPT_TIMEOUT * 2 + Duration::from_secs(1) <= CALL_TIMEOUT);
        assert!(CALL_TIMEOUT < Duration::from_secs(10));
        let config = timeouts();
        assert_eq!(config.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(config.read_timeout(), Some(READ_TIMEOUT));
    }
}
