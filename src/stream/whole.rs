//! Whole messages held in memory, on every core: the one-shot [`encrypt`](super::encrypt) and
//! [`decrypt`](super::decrypt) with scoped threads that read the input slice and write the output slice
//! directly, with no job buffers in between.
//!
//! In a framed body every regular frame has the same length, so frame `i` sits at a position known in
//! advance and the work splits without a pass over the frames first. This path takes every unsigned framed
//! message, on the caller's thread alone below the parallel threshold (so a small message costs no job
//! buffer, queue or thread); signed ones (whose footer hashes the whole message in order) and everything
//! else go through the streaming encryptor and decryptor. On decrypt, anything this path does
//! not accept (a frame out of place, a tag that fails) sends the message through the streaming decryptor,
//! which reports exactly the error it always reports; either way nothing is returned unless every frame
//! verified.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use zeroize::{Zeroize, Zeroizing};

use super::options::Parallelism;
use crate::crypto::AeadKey;
use crate::format::frame::{BlockKind, BodyAad, FINAL_FRAME_MARKER, frame_iv};
use crate::format::header::{IV_LEN, MessageId, TAG_LEN};

/// A regular frame's bytes besides its body: sequence number, IV, tag.
pub(super) const REGULAR_OVERHEAD: usize = 4 + IV_LEN + TAG_LEN;
/// The final frame's prefix: marker, sequence number, IV, body length.
pub(super) const FINAL_PREFIX: usize = 4 + 4 + IV_LEN + 4;

/// The length of the framed body that frames of `frame_len` bytes make of `plaintext_len` bytes (the
/// frames' overhead is what makes an upload's part count; a third of a 64-byte frame is overhead).
/// Saturates rather than overflows, for a length only planned with.
#[cfg(feature = "s3")]
pub(crate) fn framed_body_len(frame_len: u32, plaintext_len: u64) -> u64 {
    let regular = plaintext_len / u64::from(frame_len.max(1));
    let overhead = regular.saturating_mul(REGULAR_OVERHEAD as u64) + (FINAL_PREFIX + TAG_LEN) as u64;
    plaintext_len.saturating_add(overhead)
}

/// The frames of a body of `plaintext_len` bytes: `regular` full frames and a final frame of `last`
/// bytes (empty when the plaintext is an exact multiple of the frame length, as the encryptor writes it).
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    pub frame_len: usize,
    pub regular: usize,
    pub last: usize,
}

impl Layout {
    pub(super) fn for_plaintext(frame_len: usize, plaintext_len: usize) -> Option<Self> {
        let regular = plaintext_len / frame_len;
        Self::checked(frame_len, regular, plaintext_len - regular * frame_len)
    }

    /// The only layout a body of `body_len` bytes can have, if any.
    pub(super) fn for_body(frame_len: usize, body_len: usize) -> Option<Self> {
        let rest = body_len.checked_sub(FINAL_PREFIX + TAG_LEN)?;
        let stride = frame_len.checked_add(REGULAR_OVERHEAD)?;
        Self::checked(frame_len, rest / stride, rest % stride).filter(|l| l.last <= frame_len)
    }

    /// Refuses layouts whose sequence numbers would reach the final-frame marker; the streaming path
    /// reports those.
    fn checked(frame_len: usize, regular: usize, last: usize) -> Option<Self> {
        let final_sequence = u32::try_from(regular.checked_add(1)?).ok()?;
        (frame_len > 0 && final_sequence < FINAL_FRAME_MARKER).then_some(Self { frame_len, regular, last })
    }

    pub(super) fn stride(&self) -> usize {
        self.frame_len + REGULAR_OVERHEAD
    }

    pub(super) fn body_len(&self) -> usize {
        self.regular * self.stride() + FINAL_PREFIX + self.last + TAG_LEN
    }

    pub(super) fn plaintext_len(&self) -> usize {
        self.regular * self.frame_len + self.last
    }

    pub(super) fn final_sequence(&self) -> u32 {
        self.regular as u32 + 1
    }

    /// Whether `final_frame` starts with the prefix this layout's final frame must have: the marker, the
    /// sequence number after the regular frames, and the length the body's size leaves for it.
    pub(super) fn final_prefix_matches(&self, final_frame: &[u8]) -> bool {
        final_frame.len() >= FINAL_PREFIX
            && final_frame[..4] == FINAL_FRAME_MARKER.to_be_bytes()
            && final_frame[4..8] == self.final_sequence().to_be_bytes()
            && final_frame[8 + IV_LEN..FINAL_PREFIX] == (self.last as u32).to_be_bytes()
    }

    /// Regular frames per unit of work.
    pub(super) fn frames_per_job(&self, parallelism: &Parallelism) -> usize {
        (parallelism.job_length / self.frame_len).max(1)
    }
}

/// The threads for a whole message of `body_len` body bytes: the configured number past the threshold,
/// else only the caller's.
pub(super) fn threads_for(parallelism: &Parallelism, body_len: usize) -> usize {
    if parallelism.threads > 1 && body_len as u64 >= parallelism.threshold { parallelism.threads } else { 1 }
}

/// Runs `work` on each item, on `threads` threads in all (the caller's among them), handing items out one
/// at a time so that a slow core does not hold the rest back. Stops handing out items once `stop` is set.
fn run_on_threads<T: Send>(threads: usize, items: Vec<T>, stop: &AtomicBool, work: impl Fn(T) + Sync) {
    if threads <= 1 {
        // A small message: no queue, no scope, no thread.
        for item in items {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            work(item);
        }
        return;
    }
    let queue = Mutex::new(items.into_iter());
    let drain = || {
        while !stop.load(Ordering::Relaxed) {
            // A panic in `work` propagates out of the scope; the queue lock is never held across it.
            let Some(item) = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next() else {
                return;
            };
            work(item);
        }
    };
    on_threads("kms-envelope-whole", threads, drain);
}

/// Runs `drain` on `threads` threads in all: the caller's, and `threads - 1` named `{name}-{i}` (one that
/// cannot start leaves its share to the others). Every thread has exited when this returns: each is joined,
/// not merely waited for as `std::thread::scope` does (its threads may still be running their exit when it
/// returns); a panic in one is resumed here once all are joined.
pub(super) fn on_threads(name: &str, threads: usize, drain: impl Fn() + Sync) {
    std::thread::scope(|scope| {
        let drain = &drain;
        let spawned: Vec<_> = (1..threads)
            .filter_map(|i| std::thread::Builder::new().name(format!("{name}-{i}")).spawn_scoped(scope, drain).ok())
            .collect();
        drain();
        let panics: Vec<_> = spawned.into_iter().filter_map(|thread| thread.join().err()).collect();
        if let Some(panic) = panics.into_iter().next() {
            std::panic::resume_unwind(panic);
        }
    });
}

/// Replaces the contents of `message` with `header` and the body sealed from `plaintext`, and returns
/// true; or returns false, `message` untouched, if this path does not apply (then the streaming encryptor
/// must). The suite must be unsigned. Only bytes past the old length of `message` are zeroed first, so a
/// reused buffer costs no extra pass.
pub(crate) fn encrypt(
    key: &AeadKey,
    message_id: &MessageId,
    header: &[u8],
    frame_len: u32,
    parallelism: &Parallelism,
    plaintext: &[u8],
    message: &mut Vec<u8>,
) -> bool {
    let Some(layout) = Layout::for_plaintext(frame_len as usize, plaintext.len()) else { return false };
    let threads = threads_for(parallelism, layout.body_len());
    message.resize(header.len() + layout.body_len(), 0);
    message[..header.len()].copy_from_slice(header);
    let (regular, last) = message[header.len()..].split_at_mut(layout.regular * layout.stride());
    let (regular_plain, last_plain) = plaintext.split_at(layout.regular * layout.frame_len);

    let per_job = layout.frames_per_job(parallelism);
    let mut jobs: Vec<Job<&mut [u8], &[u8]>> = regular
        .chunks_mut(per_job * layout.stride())
        .zip(regular_plain.chunks(per_job * layout.frame_len))
        .enumerate()
        .map(|(j, (out, input))| Job { first: (j * per_job) as u32 + 1, out, input, last: false })
        .collect();
    jobs.push(Job { first: layout.final_sequence(), out: last, input: last_plain, last: true });

    let seal = |job: Job<&mut [u8], &[u8]>| {
        if job.last {
            seal_final(key, message_id, job.first, job.input, job.out);
            return;
        }
        let frames = job.out.chunks_mut(layout.stride()).zip(job.input.chunks(layout.frame_len));
        for (sequence, (out, input)) in (job.first..).zip(frames) {
            seal_regular(key, message_id, sequence, input, out);
        }
    };
    run_on_threads(threads, jobs, &AtomicBool::new(false), seal);
    true
}

/// One unit of work: consecutive frames from sequence number `first` (or the final frame, if `last`).
struct Job<O, I> {
    first: u32,
    out: O,
    input: I,
    last: bool,
}

/// Seals regular frame `sequence` from `input` into `out`, its whole wire form (sequence number, IV, body,
/// tag).
pub(super) fn seal_regular(key: &AeadKey, message_id: &MessageId, sequence: u32, input: &[u8], out: &mut [u8]) {
    out[REGULAR_PREFIX..REGULAR_PREFIX + input.len()].copy_from_slice(input);
    seal_regular_in_place(key, message_id, sequence, out);
}

/// Where a regular frame's body starts in its wire form (after the sequence number and the IV).
pub(super) const REGULAR_PREFIX: usize = 4 + IV_LEN;

/// Seals regular frame `sequence` in `frame`, its whole wire form, whose body already holds the plaintext
/// (read there directly by the caller, so that it is not copied): writes the prefix, encrypts the body in
/// place and writes the tag.
pub(super) fn seal_regular_in_place(key: &AeadKey, message_id: &MessageId, sequence: u32, frame: &mut [u8]) {
    let iv = frame_iv(sequence);
    frame[..4].copy_from_slice(&sequence.to_be_bytes());
    frame[4..REGULAR_PREFIX].copy_from_slice(&iv);
    let body_len = frame.len() - REGULAR_PREFIX - TAG_LEN;
    let (body, tag) = frame[REGULAR_PREFIX..].split_at_mut(body_len);
    let aad = BodyAad::new(message_id, BlockKind::Regular, sequence, body_len as u64);
    tag.copy_from_slice(&key.seal_in_place(&iv, aad.as_bytes(), body));
}

/// Seals the final frame `sequence` from `input` into `out`, its whole wire form (prefix, body, tag).
pub(super) fn seal_final(key: &AeadKey, message_id: &MessageId, sequence: u32, input: &[u8], out: &mut [u8]) {
    out[FINAL_PREFIX..FINAL_PREFIX + input.len()].copy_from_slice(input);
    seal_final_in_place(key, message_id, sequence, out);
}

/// Seals the final frame `sequence` in `frame`, its whole wire form, whose body already holds the
/// plaintext: writes the prefix, encrypts the body in place and writes the tag.
pub(super) fn seal_final_in_place(key: &AeadKey, message_id: &MessageId, sequence: u32, frame: &mut [u8]) {
    let (prefix, rest) = frame.split_at_mut(FINAL_PREFIX);
    let body_len = rest.len() - TAG_LEN;
    let iv = frame_iv(sequence);
    prefix[..4].copy_from_slice(&FINAL_FRAME_MARKER.to_be_bytes());
    prefix[4..8].copy_from_slice(&sequence.to_be_bytes());
    prefix[8..8 + IV_LEN].copy_from_slice(&iv);
    prefix[8 + IV_LEN..].copy_from_slice(&(body_len as u32).to_be_bytes());
    let (body, tag) = rest.split_at_mut(body_len);
    let aad = BodyAad::new(message_id, BlockKind::Final, sequence, body_len as u64);
    tag.copy_from_slice(&key.seal_in_place(&iv, aad.as_bytes(), body));
}

/// Replaces the contents of `plaintext` with the plaintext of the framed body `body` of an unsigned
/// message and returns true; or returns false if this path does not apply or anything about the body is
/// wrong (then the streaming decryptor must run, and reports the error), with `plaintext` wiped and empty.
/// True only if every frame verified.
pub(crate) fn decrypt(
    key: &AeadKey,
    message_id: &MessageId,
    frame_len: u32,
    parallelism: &Parallelism,
    body: &[u8],
    plaintext: &mut Zeroizing<Vec<u8>>,
) -> bool {
    let threads = threads_for(parallelism, body.len());
    let Some(layout) = Layout::for_body(frame_len as usize, body.len()) else { return false };
    let (regular, last) = body.split_at(layout.regular * layout.stride());
    if !layout.final_prefix_matches(last) {
        return false;
    }

    plaintext.clear();
    super::buffer::reserve_exact(plaintext, layout.plaintext_len());
    plaintext.resize(layout.plaintext_len(), 0);
    let (regular_plain, last_plain) = plaintext.split_at_mut(layout.regular * layout.frame_len);
    let per_job = layout.frames_per_job(parallelism);
    let mut jobs: Vec<Job<&mut [u8], &[u8]>> = regular_plain
        .chunks_mut(per_job * layout.frame_len)
        .zip(regular.chunks(per_job * layout.stride()))
        .enumerate()
        .map(|(j, (out, input))| Job { first: (j * per_job) as u32 + 1, out, input, last: false })
        .collect();
    jobs.push(Job { first: layout.final_sequence(), out: last_plain, input: last, last: true });

    let failed = AtomicBool::new(false);
    let open = |job: Job<&mut [u8], &[u8]>| {
        let verified = if job.last {
            open_final(key, message_id, job.first, job.input, job.out)
        } else {
            let frames = job.out.chunks_mut(layout.frame_len).zip(job.input.chunks(layout.stride()));
            (job.first..)
                .zip(frames)
                .all(|(sequence, (out, input))| open_regular(key, message_id, sequence, input, out))
        };
        if !verified {
            failed.store(true, Ordering::Relaxed);
        }
    };
    run_on_threads(threads, jobs, &failed, open);
    if failed.load(Ordering::Relaxed) {
        // Frames that verified and frames that did not: none of it may be seen.
        plaintext.zeroize();
        return false;
    }
    true
}

/// Verifies and decrypts regular frame `sequence`, whose whole wire form is `input`, into `out`; false if
/// its sequence number or its tag is wrong.
pub(super) fn open_regular(key: &AeadKey, message_id: &MessageId, sequence: u32, input: &[u8], out: &mut [u8]) -> bool {
    let iv = input[4..4 + IV_LEN].try_into().expect("a 12-byte range");
    input[..4] == sequence.to_be_bytes()
        && open_frame(key, message_id, BlockKind::Regular, sequence, iv, &input[4 + IV_LEN..], out)
}

/// Verifies and decrypts regular frame `sequence` in place in `frame`, its whole wire form; its plaintext
/// is then `frame[REGULAR_PREFIX..frame.len() - TAG_LEN]`. False if its sequence number or its tag is
/// wrong (then the body is garbage, never to be released).
pub(super) fn open_regular_in_place(key: &AeadKey, message_id: &MessageId, sequence: u32, frame: &mut [u8]) -> bool {
    let iv: [u8; IV_LEN] = frame[4..REGULAR_PREFIX].try_into().expect("a 12-byte range");
    let body_len = frame.len() - REGULAR_PREFIX - TAG_LEN;
    let aad = BodyAad::new(message_id, BlockKind::Regular, sequence, body_len as u64);
    frame[..4] == sequence.to_be_bytes()
        && key.open_in_place_tag_after(&iv, aad.as_bytes(), &mut frame[REGULAR_PREFIX..]).is_ok()
}

/// Verifies and decrypts in place the final frame `sequence`, whose prefix (checked by
/// [`Layout::final_prefix_matches`]) is `prefix` and whose `body || tag` is `rest`; its plaintext is then
/// `rest[..rest.len() - TAG_LEN]`. False if its tag is wrong.
pub(super) fn open_final_in_place(
    key: &AeadKey,
    message_id: &MessageId,
    sequence: u32,
    prefix: &[u8; FINAL_PREFIX],
    rest: &mut [u8],
) -> bool {
    let iv: [u8; IV_LEN] = prefix[8..8 + IV_LEN].try_into().expect("a 12-byte range");
    let aad = BodyAad::new(message_id, BlockKind::Final, sequence, (rest.len() - TAG_LEN) as u64);
    key.open_in_place_tag_after(&iv, aad.as_bytes(), rest).is_ok()
}

/// Verifies and decrypts the final frame `sequence`, whose whole wire form (prefix checked by
/// [`Layout::final_prefix_matches`]) is `input`, into `out`; false if its tag is wrong.
pub(super) fn open_final(key: &AeadKey, message_id: &MessageId, sequence: u32, input: &[u8], out: &mut [u8]) -> bool {
    let iv = input[8..8 + IV_LEN].try_into().expect("a 12-byte range");
    open_frame(key, message_id, BlockKind::Final, sequence, iv, &input[FINAL_PREFIX..], out)
}

/// Verifies and decrypts `input` (`ciphertext || tag`) into `out`; false if the tag does not verify.
fn open_frame(
    key: &AeadKey,
    message_id: &MessageId,
    kind: BlockKind,
    sequence: u32,
    iv: [u8; IV_LEN],
    input: &[u8],
    out: &mut [u8],
) -> bool {
    let (ciphertext, tag) = input.split_at(out.len());
    let tag: &[u8; TAG_LEN] = tag.try_into().expect("the layout leaves exactly a tag");
    let aad = BodyAad::new(message_id, kind, sequence, out.len() as u64);
    key.open_to(&iv, aad.as_bytes(), ciphertext, tag, out).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_encryptor_and_find_the_only_final_frame() {
        for frame_len in [1usize, 7, 64] {
            for len in 0..300 {
                let layout = Layout::for_plaintext(frame_len, len).unwrap();
                assert_eq!(layout.plaintext_len(), len);
                assert!(layout.last < frame_len, "an exact multiple ends with an empty final frame");
                let found = Layout::for_body(frame_len, layout.body_len()).unwrap();
                assert_eq!((found.regular, found.last), (layout.regular, layout.last));
            }
            // A final frame as long as the frame length (the other encoding of an exact multiple).
            let full = Layout { frame_len, regular: 2, last: frame_len };
            let found = Layout::for_body(frame_len, full.body_len()).unwrap();
            assert_eq!((found.regular, found.last), (2, frame_len));
        }
        assert!(Layout::for_body(64, FINAL_PREFIX + TAG_LEN - 1).is_none());
        assert!(Layout::for_plaintext(1, FINAL_FRAME_MARKER as usize).is_none());
    }
}
