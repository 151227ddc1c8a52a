//! Tokio adapters: [`AsyncEncryptor`] (an `AsyncWrite`) and [`AsyncDecryptor`] (an `AsyncRead`), behind the
//! `async` feature.
//!
//! They run the very same [`Encryptor`] and [`Decryptor`] (framing, release rules, worker pool) on a thread
//! of tokio's blocking pool, one per stream, which talks to the async side through bounded channels of
//! reused buffers and does its I/O on the async reader or writer through the runtime's handle. No crypto and
//! no blocking I/O ever runs on an executor thread, and the number of concurrent streams is limited by the
//! blocking pool (512 threads by default), not by the executor's workers: a current-thread runtime serves
//! as many streams as a multi-threaded one. The keyring (KMS) runs on the caller's task.

use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use super::cmm::{open_header, prepare_encrypt};
use super::{DecryptOptions, Decryptor, EncryptOptions, Encryptor};
use crate::error::{Error, Result};
use crate::format::context::EncryptionContext;
use crate::format::header::{Header, HeaderDecoder};
use crate::keyring::Keyring;

/// Bytes per buffer between the async side and the stream's thread.
const BUFFER: usize = 256 << 10;
/// Buffers per stream: the bound on what is in transit.
const BUFFERS: usize = 4;

type Buffer = Zeroizing<Vec<u8>>;

/// A blocking `Read` over an `AsyncRead`, for the stream's thread (never an executor thread).
struct BlockingReader<R> {
    handle: Handle,
    inner: R,
}

impl<R: AsyncRead + Unpin> Read for BlockingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.handle.block_on(self.inner.read(buf))
    }
}

/// A blocking `Write` over an `AsyncWrite`, for the stream's thread.
struct BlockingWriter<W> {
    handle: Handle,
    inner: W,
}

impl<W: AsyncWrite + Unpin> Write for BlockingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.handle.block_on(self.inner.write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.handle.block_on(self.inner.write_all(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.handle.block_on(self.inner.flush())
    }
}

/// The runtime whose blocking pool runs the stream's thread; outside one, a typed error where tokio's
/// `Handle::current` would panic.
fn current_runtime(caller: &str) -> Result<Handle> {
    Handle::try_current().map_err(|_| {
        Error::Config(format!(
            "{caller} was polled outside a tokio runtime; it runs the stream on the runtime's blocking pool"
        ))
    })
}

fn task_gone() -> io::Error {
    io::Error::other("the stream's thread ended unexpectedly")
}

fn joined<T>(result: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    result.map_err(|e| Error::Io(io::Error::other(format!("the stream's thread failed: {e}"))))?
}

enum ToEncryptor {
    Data(Buffer),
    Finish,
}

/// Encrypts into an ESDK message written to an `AsyncWrite`; the async counterpart of [`Encryptor`].
///
/// You **must** call [`finish`](Self::finish) (or `shutdown`, which also shuts the output down): it writes
/// the final frame and, for signed suites, the signature. Dropped without it, the message is incomplete and
/// every decryptor rejects it.
pub struct AsyncEncryptor<W> {
    to_thread: mpsc::UnboundedSender<ToEncryptor>,
    free: mpsc::Receiver<Buffer>,
    allocated: usize,
    current: Option<Buffer>,
    thread: Option<JoinHandle<Result<W>>>,
    /// The output, back from the thread after the final frame, while `poll_shutdown` shuts it down.
    output: Option<W>,
}

impl<W> std::fmt::Debug for AsyncEncryptor<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncEncryptor").finish_non_exhaustive()
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> AsyncEncryptor<W> {
    /// Asks `keyring` for a data key (on this task), then starts the stream's thread, which writes the header.
    /// Must be polled within a tokio runtime, whose blocking pool runs the stream's thread.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when polled outside a tokio runtime, before the keyring is asked for anything.
    /// What the keyring returns when it cannot produce a data key (for KMS, [`Error::Keyring`] with the
    /// call's [`Reason`](crate::Reason)); [`Error::CommitmentPolicy`], [`Error::EncryptionContext`] or
    /// [`Error::Config`] for options that cannot make a message. Errors writing the header to `output`
    /// come from writes or [`finish`](Self::finish).
    pub async fn new(keyring: &dyn Keyring, options: &EncryptOptions, output: W) -> Result<Self> {
        // Before the keyring: a KMS data key asked for and then dropped would be a call for nothing.
        let handle = current_runtime("AsyncEncryptor::new")?;
        let prepared = prepare_encrypt(keyring, options, None).await?;
        let (to_thread, mut from_caller) = mpsc::unbounded_channel::<ToEncryptor>();
        let (give_back, free) = mpsc::channel::<Buffer>(BUFFERS);
        let options = options.clone();
        let thread = tokio::task::spawn_blocking(move || -> Result<W> {
            let output = BlockingWriter { handle, inner: output };
            let mut encryptor = Encryptor::with_prepared(prepared, &options, output)?;
            while let Some(message) = from_caller.blocking_recv() {
                match message {
                    ToEncryptor::Data(mut buf) => {
                        encryptor.write_all(&buf)?;
                        buf.clear();
                        // The caller may be gone; then the buffer is simply dropped.
                        let _ = give_back.try_send(buf);
                    }
                    ToEncryptor::Finish => return Ok(encryptor.finish()?.inner),
                }
            }
            Err(Error::Config("the async encryptor was dropped without finish; the message is incomplete".into()))
        });
        Ok(Self { to_thread, free, allocated: 0, current: None, thread: Some(thread), output: None })
    }

    /// Writes the final frame and, for signed suites, the footer; flushes and returns the output.
    ///
    /// # Errors
    ///
    /// The first error the stream met: [`Error::Io`] when writing or flushing `output` failed (the message
    /// is incomplete), or when the stream's thread ended without finishing.
    pub async fn finish(mut self) -> Result<W> {
        self.send_current();
        let _ = self.to_thread.send(ToEncryptor::Finish);
        let thread = self.thread.take().ok_or_else(|| Error::Io(task_gone()))?;
        joined(thread.await)
    }

    fn send_current(&mut self) {
        if let Some(buf) = self.current.take() {
            if !buf.is_empty() {
                let _ = self.to_thread.send(ToEncryptor::Data(buf));
            } else {
                self.current = Some(buf);
            }
        }
    }

    /// The stream's thread has stopped early: its error.
    fn poll_thread_error(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(thread) = self.thread.as_mut() else { return Poll::Ready(task_gone()) };
        let result = ready!(Pin::new(thread).poll(cx));
        self.thread = None;
        Poll::Ready(match joined(result) {
            Err(e) => e.into(),
            Ok(_) => task_gone(),
        })
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> AsyncWrite for AsyncEncryptor<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.thread.is_none() {
            return Poll::Ready(Err(io::Error::other("the encryptor was already finished")));
        }
        if this.current.is_none() {
            if this.allocated < BUFFERS {
                this.allocated += 1;
                this.current = Some(Zeroizing::new(Vec::with_capacity(BUFFER)));
            } else {
                match ready!(this.free.poll_recv(cx)) {
                    Some(buf) => this.current = Some(buf),
                    None => return Poll::Ready(Err(ready!(this.poll_thread_error(cx)))),
                }
            }
        }
        let buf = this.current.as_mut().expect("set above");
        let n = (BUFFER - buf.len()).min(data.len());
        buf.extend_from_slice(&data[..n]);
        if buf.len() == BUFFER {
            this.send_current();
        }
        Poll::Ready(Ok(n))
    }

    /// Hands the buffered bytes to the stream's thread. Frames reach the output as they fill; the message
    /// is complete only after `finish` or `shutdown`.
    fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.send_current();
        Poll::Ready(Ok(()))
    }

    /// Finishes the message (final frame, signature), then shuts the output down.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(thread) = this.thread.as_mut() {
            if this.output.is_none() {
                if let Some(buf) = this.current.take().filter(|b| !b.is_empty()) {
                    let _ = this.to_thread.send(ToEncryptor::Data(buf));
                }
                let _ = this.to_thread.send(ToEncryptor::Finish);
            }
            let result = ready!(Pin::new(thread).poll(cx));
            this.thread = None;
            this.output = Some(joined(result)?);
        }
        match this.output.as_mut() {
            Some(output) => Pin::new(output).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

enum FromDecryptor {
    Data(Buffer),
    Done,
    Failed(Error),
}

/// Decrypts an ESDK message read from an `AsyncRead`; the async counterpart of [`Decryptor`], with the same
/// release rules: `read` yields plaintext only after it authenticated, and the plaintext is complete and
/// authentic only once `read` reached the end (0 bytes) without an error.
pub struct AsyncDecryptor {
    header: Header,
    context: EncryptionContext,
    from_thread: mpsc::Receiver<FromDecryptor>,
    give_back: mpsc::UnboundedSender<Buffer>,
    current: Option<(Buffer, usize)>,
    complete: bool,
    failed: Option<String>,
    _thread: JoinHandle<()>,
}

impl std::fmt::Debug for AsyncDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncDecryptor").field("message_id", self.header.message_id()).finish_non_exhaustive()
    }
}

impl AsyncDecryptor {
    /// Reads the header (on the blocking pool), authenticates it with `keyring` (on this task), then starts
    /// the stream's thread. Must be polled within a tokio runtime, whose blocking pool runs that thread.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when polled outside a tokio runtime, before `input` is read. Otherwise as
    /// [`Decryptor::new`](crate::Decryptor::new): a malformed, truncated or oversized header, a suite
    /// the options refuse, a context that does not match, no keyring able to unwrap a data key, a header
    /// that fails to authenticate, or [`Error::Io`] reading `input`. Errors of the body come from reads.
    pub async fn new<R>(keyring: &dyn Keyring, options: &DecryptOptions, input: R) -> Result<Self>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let handle = current_runtime("AsyncDecryptor::new")?;
        let limits = options.limits;
        let (header, input) = joined(
            tokio::task::spawn_blocking(move || {
                let mut input = BlockingReader { handle, inner: input };
                HeaderDecoder::read_from(limits, &mut input).map(|header| (header, input))
            })
            .await,
        )?;
        let opened = open_header(keyring, options, &header).await?;
        let context = opened.context.clone();
        let (to_caller, from_thread) = mpsc::channel::<FromDecryptor>(BUFFERS);
        let (give_back, mut free) = mpsc::unbounded_channel::<Buffer>();
        let (header_copy, options) = (header.clone(), options.clone());
        let thread = tokio::task::spawn_blocking(move || {
            let mut decryptor = Decryptor::with_opened(header_copy, opened, &options, input);
            let mut allocated = 0;
            loop {
                let mut buf = match free.try_recv() {
                    Ok(buf) => buf,
                    Err(_) if allocated < BUFFERS => {
                        allocated += 1;
                        Zeroizing::new(Vec::with_capacity(BUFFER))
                    }
                    Err(_) => match free.blocking_recv() {
                        Some(buf) => buf,
                        None => return, // the caller is gone
                    },
                };
                buf.resize(BUFFER, 0);
                let (n, error) = read_some(&mut decryptor, &mut buf);
                buf.truncate(n);
                if n > 0 && to_caller.blocking_send(FromDecryptor::Data(buf)).is_err() {
                    return;
                }
                match error {
                    Some(e) => {
                        let _ = to_caller.blocking_send(FromDecryptor::Failed(Error::from_io(e)));
                        return;
                    }
                    None if n == 0 => {
                        let _ = to_caller.blocking_send(FromDecryptor::Done);
                        return;
                    }
                    None => {}
                }
            }
        });
        Ok(Self {
            header,
            context,
            from_thread,
            give_back,
            current: None,
            complete: false,
            failed: None,
            _thread: thread,
        })
    }

    /// The authenticated header: suite, message id, stored encryption context, EDK providers.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The encryption context the message was authenticated with.
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.context
    }

    /// Whether the whole message has been verified and read (the last read returned 0 bytes).
    pub fn is_complete(&self) -> bool {
        self.complete && self.current.is_none()
    }
}

/// Fills as much of `buf` as the decryptor releases, up to its end or its first error, which is returned
/// beside the bytes released before it.
fn read_some<R: Read>(decryptor: &mut Decryptor<R>, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match decryptor.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

impl AsyncRead for AsyncDecryptor {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some((buf, at)) = this.current.as_mut() {
                let n = (buf.len() - *at).min(out.remaining());
                out.put_slice(&buf[*at..*at + n]);
                *at += n;
                if *at == buf.len() {
                    let (buf, _) = this.current.take().expect("checked above");
                    let _ = this.give_back.send(buf);
                }
                if n > 0 || out.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            if this.complete {
                return Poll::Ready(Ok(()));
            }
            if let Some(what) = &this.failed {
                return Poll::Ready(Err(io::Error::other(format!("decryption already failed: {what}"))));
            }
            match ready!(this.from_thread.poll_recv(cx)) {
                Some(FromDecryptor::Data(buf)) => this.current = Some((buf, 0)),
                Some(FromDecryptor::Done) => this.complete = true,
                Some(FromDecryptor::Failed(e)) => {
                    this.failed = Some(e.to_string());
                    return Poll::Ready(Err(e.into()));
                }
                None => {
                    this.failed = Some(task_gone().to_string());
                    return Poll::Ready(Err(task_gone()));
                }
            }
        }
    }
}
