//! Where KMS calls run: on the caller's tokio runtime if there is one, else on one shared runtime of ours.
//!
//! The AWS SDK needs a tokio runtime (timers, sockets). Keyring futures, though, are also driven by the
//! blocking stream API's tiny executor ([`crate::keyring::block_on`]), which is no runtime at all. So each
//! KMS call is spawned as a task and its `JoinHandle`, which any executor can await, is what the keyring
//! awaits:
//!
//! * inside a tokio runtime (any flavour), the task goes to that runtime and no other runtime exists;
//!   awaiting never blocks a thread, so a current-thread runtime keeps serving every other task;
//! * outside one, it goes to a multi-thread runtime of two workers, created on first use and shared by
//!   every later call in the process (never one runtime per call).

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Name of the fallback runtime's worker threads.
pub(crate) const FALLBACK_THREAD_NAME: &str = "kms-envelope-kms";

static FALLBACK: OnceLock<Result<Runtime, String>> = OnceLock::new();

fn fallback() -> Result<&'static Runtime> {
    let runtime = FALLBACK.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(FALLBACK_THREAD_NAME)
            .enable_all()
            .build()
            .map_err(|err| err.to_string())
    });
    runtime
        .as_ref()
        .map_err(|err| Error::Keyring(format!("cannot start the tokio runtime for AWS KMS calls: {err}").into()))
}

/// The runtime a KMS call should run on: the current one, else the shared fallback.
fn handle() -> Result<Handle> {
    match Handle::try_current() {
        Ok(handle) => Ok(handle),
        Err(_) => Ok(fallback()?.handle().clone()),
    }
}

/// Aborts the task if the awaiting future is dropped, so that an abandoned decrypt stops its KMS call.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = std::result::Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// Runs `future` on a tokio runtime (see the module docs) and returns its output. Works from any executor.
pub(crate) async fn on_runtime<T, F>(future: F) -> Result<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let task = AbortOnDrop(handle()?.spawn(future));
    task.await.map_err(|err| match err.try_into_panic() {
        Ok(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Error::Keyring(
                format!(
                    "an AWS KMS call panicked: {message} (if the tokio runtime was built without enable_all(), the SDK \
                 has no timers or sockets)"
                )
                .into(),
            )
        }
        Err(_) => Error::Keyring("an AWS KMS call was cancelled (its tokio runtime is shutting down)".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::block_on;

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    #[test]
    fn without_a_runtime_calls_run_on_the_shared_fallback() {
        let first = block_on(on_runtime(async { thread_name() })).unwrap();
        assert_eq!(first, FALLBACK_THREAD_NAME);
        let before = fallback().unwrap() as *const Runtime;
        let second = block_on(on_runtime(async { thread_name() })).unwrap();
        assert_eq!(second, FALLBACK_THREAD_NAME);
        assert_eq!(before, fallback().unwrap() as *const Runtime, "one runtime for every call");
    }

    #[test]
    fn inside_a_runtime_calls_run_on_it() {
        let current = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let here = std::thread::current().id();
        let ran_on = current.block_on(on_runtime(async { std::thread::current().id() })).unwrap();
        assert_eq!(ran_on, here, "a current-thread runtime runs the call on its own thread");

        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("user-runtime")
            .enable_all()
            .build()
            .unwrap();
        let name = multi.block_on(async { on_runtime(async { thread_name() }).await.unwrap() });
        assert_eq!(name, "user-runtime");
    }

    #[test]
    fn a_panicking_call_is_an_error_with_the_panic_message() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let err = runtime.block_on(on_runtime(async { panic!("no reactor here") })).unwrap_err();
        assert!(err.to_string().contains("panicked: no reactor here"), "{err}");
    }

    #[test]
    fn dropping_the_caller_aborts_the_call() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        runtime.block_on(async {
            let call = on_runtime(async move {
                std::future::pending::<()>().await;
                drop(tx);
            });
            let mut call = Box::pin(call);
            // Poll once so the task is spawned, then drop the caller.
            let _ = futures_poll_once(call.as_mut()).await;
            drop(call);
            tokio::task::yield_now().await;
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(got, Err(std::sync::mpsc::RecvTimeoutError::Disconnected), "the task was aborted");
    }

    async fn futures_poll_once<F: Future + Unpin>(mut future: F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut future).poll(cx))).await
    }
}
