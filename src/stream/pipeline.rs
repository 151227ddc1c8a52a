//! The frame pipeline: consecutive frames grouped into jobs, sealed or opened in place by a pool of worker
//! threads, and handed back strictly in submission order, with a bounded number of jobs in flight.
//!
//! Frames are independent (a frame's IV and AAD depend only on its sequence number), so only the crypto is
//! spread over threads. Everything with an order (the frame counter, the final-frame rule, the signature
//! hash, reading and writing) stays on the caller's thread, exactly as in the single-thread path. A job is
//! one reusable buffer holding its frames the way they travel (encrypt: the wire format; decrypt:
//! `ciphertext || tag` per frame), so there is no copy between read, crypt and write, and no allocation per
//! frame once the first jobs have grown to size.
//!
//! Until the stream passes [`Parallelism::threshold`] bytes (or with one thread) there is no pool: each job
//! holds one frame and runs on the caller's thread as soon as it is submitted.
//!
//! Memory is bounded in bytes, not jobs: every job that exists (in flight, held by the caller, or free for
//! reuse) is at most one job's worth of frames, and no more jobs exist than fit in the byte budget. Long
//! frames mean fewer jobs and so fewer threads, down to one job at a time on the caller's thread.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use zeroize::Zeroizing;

use super::buffer;
use super::options::Parallelism;
use crate::crypto::AeadKey;
use crate::error::{Error, Result};
use crate::format::frame::{BlockKind, BodyAad};
use crate::format::header::{IV_LEN, MessageId, TAG_LEN};

/// Bytes a job buffer reserves up front at most; a job of larger frames grows as data arrives, so a header
/// that promises huge frames costs nothing until the bytes are there.
const MAX_RESERVE: usize = 4 << 20;

/// Which way the workers run AES-GCM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Encrypt each frame body in place and write its tag after it.
    Seal,
    /// Verify each frame's tag and decrypt its body in place, stopping at the first failure.
    Open,
}

/// One frame of a job: its body is `buf[start..start + len]`, its tag the `TAG_LEN` bytes after.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameSlot {
    pub sequence: u32,
    pub kind: BlockKind,
    pub iv: [u8; IV_LEN],
    pub start: usize,
    pub len: usize,
}

impl FrameSlot {
    /// The body (plaintext or ciphertext, depending on the stage).
    pub fn body(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.len
    }
}

/// Consecutive frames of one message in one buffer. Reused from job to job; the buffer is zeroized on drop.
pub(crate) struct Job {
    pub buf: Zeroizing<Vec<u8>>,
    /// The most bytes of frames this job holds: its buffer grows no further.
    pub cap: usize,
    pub frames: Vec<FrameSlot>,
    /// After [`Direction::Open`]: how many leading frames verified (all of them unless one failed). Frames
    /// from the first failure on hold no plaintext that may be released.
    pub verified: usize,
    /// The worker panicked while running this job; its buffer is garbage.
    crashed: bool,
}

impl Job {
    /// A job with no buffer yet, which allocates nothing: a placeholder.
    pub fn empty() -> Self {
        Self { buf: Zeroizing::new(Vec::new()), cap: 0, frames: Vec::new(), verified: 0, crashed: false }
    }

    fn clear(&mut self) {
        // Stale bytes are overwritten by the next job's data, and the whole capacity is zeroized on drop.
        self.buf.clear();
        self.frames.clear();
        self.verified = 0;
        self.crashed = false;
    }

    /// Whether the job's frames all verified (after opening).
    pub fn all_verified(&self) -> bool {
        self.verified == self.frames.len()
    }

    fn run(&mut self, crypt: &Crypt) {
        let Self { buf, frames, verified, .. } = self;
        *verified = 0;
        for frame in frames.iter() {
            let aad = BodyAad::new(&crypt.message_id, frame.kind, frame.sequence, frame.len as u64);
            match crypt.direction {
                Direction::Seal => {
                    let tag = crypt.key.seal_in_place(&frame.iv, aad.as_bytes(), &mut buf[frame.body()]);
                    buf[frame.start + frame.len..frame.start + frame.len + TAG_LEN].copy_from_slice(&tag);
                }
                Direction::Open => {
                    let whole = &mut buf[frame.start..frame.start + frame.len + TAG_LEN];
                    if crypt.key.open_in_place_tag_after(&frame.iv, aad.as_bytes(), whole).is_err() {
                        return;
                    }
                }
            }
            *verified += 1;
        }
    }
}

/// What every job of a stream shares.
struct Crypt {
    key: AeadKey,
    message_id: MessageId,
    direction: Direction,
}

/// How many frames a job holds and how many jobs may exist at once, for a stream of frames of one length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Frames per job once the workers run.
    pub frames_per_job: usize,
    /// Jobs (of `frames_per_job` frames) that fit in the budget at once; at least 1.
    pub jobs: usize,
}

impl Plan {
    /// The plan for frames of `frame_len` plaintext bytes that take `frame_bytes` bytes each in a job, with
    /// at most `budget` bytes of jobs: the configured job length, shortened so that two jobs fit if one
    /// frame each would, and as many jobs as fit (one even if its single frame does not: the caller
    /// refuses frames that must fit).
    pub fn new(parallelism: &Parallelism, frame_len: usize, frame_bytes: usize, budget: usize) -> Self {
        let frame_bytes = frame_bytes.max(1);
        let wanted = (parallelism.job_length / frame_len.max(1)).max(1);
        let frames_per_job = wanted.min(budget / 2 / frame_bytes).max(1);
        let jobs = (budget / frame_bytes.saturating_mul(frames_per_job)).max(1);
        Self { frames_per_job, jobs }
    }

    /// Threads worth starting to keep `jobs` jobs busy besides the caller's: none below two jobs.
    pub fn threads(&self, parallelism: &Parallelism) -> usize {
        if self.jobs < 2 { 1 } else { parallelism.threads.min(self.jobs) }
    }

    /// How many jobs may exist at once with the workers running: two per worker and one more, as many as
    /// fit in the budget.
    fn slots(&self, parallelism: &Parallelism) -> usize {
        (2 * self.threads(parallelism) + 1).min(self.jobs)
    }
}

/// Jobs submitted in order, run inline or by workers, returned in order.
pub(crate) struct Pipeline {
    crypt: Arc<Crypt>,
    parallelism: Parallelism,
    plan: Plan,
    /// Bytes one frame takes in a job.
    frame_bytes: usize,
    pool: Option<Pool>,
    /// Set once starting the workers failed: the stream stays on the caller's thread.
    no_pool: bool,
    next_id: u64,
    next_out: u64,
    /// Jobs that ran, by id, until their turn comes.
    done: BTreeMap<u64, Job>,
    free: Vec<Job>,
}

impl Pipeline {
    /// A pipeline for frames of `frame_len` plaintext bytes, each taking `frame_bytes` bytes in a job, that
    /// keeps its jobs within `budget` bytes (or to one job, if one frame is larger).
    pub fn new(
        key: AeadKey,
        message_id: MessageId,
        direction: Direction,
        parallelism: Parallelism,
        frame_len: usize,
        frame_bytes: usize,
        budget: usize,
    ) -> Self {
        let plan = Plan::new(&parallelism, frame_len, frame_bytes, budget);
        Self {
            crypt: Arc::new(Crypt { key, message_id, direction }),
            parallelism,
            plan,
            frame_bytes,
            pool: None,
            no_pool: plan.threads(&parallelism) < 2,
            next_id: 0,
            next_out: 0,
            done: BTreeMap::new(),
            free: Vec::new(),
        }
    }

    /// Starts the workers once the stream has passed the threshold. If threads cannot be started the
    /// stream simply continues on the caller's thread.
    pub fn maybe_start(&mut self, body_bytes: u64) {
        if self.no_pool || self.pool.is_some() || body_bytes < self.parallelism.threshold {
            return;
        }
        match Pool::start(self.plan.threads(&self.parallelism), self.slots(), &self.crypt) {
            Ok(pool) => self.pool = Some(pool),
            Err(_) => self.no_pool = true,
        }
    }

    /// Whether the workers are running.
    pub fn is_parallel(&self) -> bool {
        self.pool.is_some()
    }

    /// How many jobs may exist at once with the workers running ([`Plan::slots`]). Every job that exists is
    /// in flight, held by the caller, or free: the caller holds at most one, and takes a new one only when
    /// fewer than this are in flight.
    fn slots(&self) -> usize {
        self.plan.slots(&self.parallelism)
    }

    /// How many frames the next job should hold.
    pub fn frames_per_job(&self) -> usize {
        if self.is_parallel() { self.plan.frames_per_job } else { 1 }
    }

    /// The bytes a job of [`frames_per_job`](Self::frames_per_job) frames takes.
    pub fn job_bytes(&self) -> usize {
        self.frames_per_job().saturating_mul(self.frame_bytes)
    }

    /// An empty job, recycled if one is free, with room for the frames it should hold (up to a cap: a job
    /// of long frames grows as data arrives, up to its size). Fails, rather than aborting, if memory is
    /// short.
    pub fn take_job(&mut self) -> Result<Job> {
        let cap = self.job_bytes();
        let mut job = self.free.pop().unwrap_or_else(Job::empty);
        job.cap = cap;
        // The recycled buffer holds the stale plaintext of its last job: it must not be freed by `realloc`.
        buffer::try_reserve_within(&mut job.buf, cap.min(MAX_RESERVE), cap)?;
        Ok(job)
    }

    /// Returns a job whose bytes were consumed; it is wiped and reused.
    pub fn recycle(&mut self, mut job: Job) {
        job.clear();
        self.free.push(job);
    }

    /// Jobs submitted and not yet returned by [`next`](Self::next).
    pub fn in_flight(&self) -> usize {
        (self.next_id - self.next_out) as usize
    }

    /// Whether the caller must take a job back before submitting another: the bound on memory.
    pub fn is_full(&self) -> bool {
        let slots = if self.is_parallel() { self.slots() } else { 1 };
        self.in_flight() >= slots
    }

    /// Hands `job` to the workers, or runs it right away when there are none.
    pub fn submit(&mut self, mut job: Job) {
        let id = self.next_id;
        self.next_id += 1;
        match &self.pool {
            Some(pool) => pool.submit(id, job),
            None => {
                job.run(&self.crypt);
                self.done.insert(id, job);
            }
        }
    }

    /// The oldest job in flight once it ran, or `None` if none is in flight. While waiting, the caller's
    /// thread runs queued jobs itself rather than sit idle.
    pub fn next(&mut self) -> Result<Option<Job>> {
        if self.in_flight() == 0 {
            return Ok(None);
        }
        let want = self.next_out;
        loop {
            if let Some(job) = self.done.remove(&want) {
                self.next_out += 1;
                if job.crashed {
                    return Err(worker_failed());
                }
                return Ok(Some(job));
            }
            let pool = self.pool.as_ref().ok_or_else(worker_failed)?;
            let (id, job) = match pool.steal() {
                Some((id, mut job)) => {
                    job.run(&self.crypt);
                    (id, job)
                }
                None => pool.results.recv().map_err(|_| worker_failed())?,
            };
            self.done.insert(id, job);
        }
    }
}

fn worker_failed() -> Error {
    Error::Io(std::io::Error::other("a crypto worker thread failed"))
}

type Message = (u64, Job);

/// N persistent worker threads for one stream, joined on drop.
struct Pool {
    jobs: Option<SyncSender<Message>>,
    queue: Arc<Mutex<Receiver<Message>>>,
    results: Receiver<Message>,
    cancel: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start(threads: usize, slots: usize, crypt: &Arc<Crypt>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::sync_channel::<Message>(slots);
        let queue = Arc::new(Mutex::new(queue));
        let (done, results) = mpsc::channel::<Message>();
        let cancel = Arc::new(AtomicBool::new(false));
        let mut pool = Self { jobs: Some(jobs), queue, results, cancel, workers: Vec::with_capacity(threads) };
        for i in 0..threads {
            let (queue, done, cancel, crypt) =
                (Arc::clone(&pool.queue), done.clone(), Arc::clone(&pool.cancel), Arc::clone(crypt));
            let worker = std::thread::Builder::new()
                .name(format!("kms-envelope-crypto-{i}"))
                .spawn(move || work(&queue, &done, &cancel, &crypt))?;
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    fn submit(&self, id: u64, job: Job) {
        // The channel holds as many jobs as may be in flight, so this never waits; the workers outlive the
        // sender, so it cannot fail (a failed send drops the job, and `next` then reports the worker error).
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send((id, job));
        }
    }

    /// A queued job no worker has taken yet, if any.
    fn steal(&self) -> Option<Message> {
        self.queue.try_lock().ok()?.try_recv().ok()
    }
}

fn work(queue: &Mutex<Receiver<Message>>, done: &mpsc::Sender<Message>, cancel: &AtomicBool, crypt: &Crypt) {
    loop {
        let message = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((id, mut job)) = message else { return };
        if cancel.load(Ordering::Relaxed) {
            continue; // the stream is gone: drop (and so zeroize) the job unprocessed
        }
        job.crashed = catch_unwind(AssertUnwindSafe(|| job.run(crypt))).is_err();
        if done.send((id, job)).is_err() {
            return;
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        drop(self.jobs.take());
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::options::DEFAULT_JOB_LENGTH;

    #[test]
    fn the_jobs_that_may_exist_fit_in_the_budget_whatever_the_threads() {
        let budget = 40 << 20;
        for frame_len in [1usize, 100, 4096, 65536, 1 << 20, 5 << 20, 13 << 20, 16 << 20, 20 << 20, 64 << 20] {
            for threads in [1usize, 2, 8, 64, 100_000] {
                for job_length in [1, DEFAULT_JOB_LENGTH, 1 << 30] {
                    let parallelism = Parallelism { threads, threshold: 0, job_length };
                    let frame_bytes = frame_len + TAG_LEN;
                    let plan = Plan::new(&parallelism, frame_len, frame_bytes, budget);
                    let what = format!("{frame_len}-byte frames, {threads} threads, {job_length}-byte jobs: {plan:?}");
                    let job = plan.frames_per_job * frame_bytes;
                    if frame_bytes <= budget {
                        assert!(plan.slots(&parallelism) * job <= budget, "{what}");
                    } else {
                        assert_eq!((plan.frames_per_job, plan.threads(&parallelism)), (1, 1), "{what}");
                    }
                    if threads > 1 && 2 * frame_bytes <= budget {
                        assert!(plan.threads(&parallelism) >= 2, "two frames fit, so two threads work: {what}");
                    }
                }
            }
        }
        // The default: 512 KiB jobs of 64 KiB frames, two per thread and one more, up to 39 threads.
        let parallelism = Parallelism { threads: 39, threshold: 0, job_length: DEFAULT_JOB_LENGTH };
        let plan = Plan::new(&parallelism, 65536, 65536 + TAG_LEN, budget);
        assert_eq!((plan.frames_per_job, plan.slots(&parallelism), plan.threads(&parallelism)), (8, 79, 39));
    }
}
