//! Re-encrypting a message held in a regular file into a [`PendingFile`] without a central copy loop:
//! worker threads each read a run of the source's frames (`pread`), open them with the source's content
//! key, seal the same plaintext as the new message's frames with the new content key, and write those
//! where they belong in the new message (`pwrite`). It takes unsigned framed sources re-encrypted into
//! unsigned suites; anything else (a signed source or target, whose signature hashes the body in order; a
//! non-framed source; a body whose length fits no layout) goes through the streaming re-encryption, which
//! also reports precisely what is wrong with a malformed body. A frame that fails here is reported by the
//! caller as the streaming decryptor, run over the source again (decrypting only), tells it: a frame out of
//! place as such, not as a tag that failed.
//!
//! # Where each byte goes
//!
//! The source's layout follows from its frame length and its body's length (one layout fits at most, as
//! for positioned decrypt); the new message's follows from the plaintext length and the target frame
//! length, which is the one the target options give (64 KiB by default), exactly as the streaming
//! re-encryption would use. So the new message is the same, byte for byte, as the one the streaming path
//! seals from the same prepared header and keys: the frame lengths of the two messages are independent,
//! and a job maps its plaintext range back to the source frames that cover it. A job is a run of target
//! frames; it reads every source frame its plaintext overlaps, so where the two frame lengths differ, a
//! source frame that straddles two jobs is read and opened by both (jobs hold at least one source frame's
//! worth of plaintext, so at most two frames per job are opened twice). With equal frame lengths a job's
//! frames line up with the source's and are opened and sealed in place in one buffer.
//!
//! # Keys, IVs and tags
//!
//! * Source frames are only opened, with the source's content key, each against its own sequence number
//!   (the one its position implies, also checked in its first four bytes) and, for the final frame, the
//!   prefix its position and the body's length imply: a frame moved, repeated, dropped or cut fails.
//! * Target frames are sealed under the new message's content key, which [`prepare_encrypt`] derived
//!   from a data key the target keyring made and a fresh random message id, as for any encrypt. Regular
//!   frame `n` (from 1) is sealed with IV `frame_iv(n)` and AAD (new message id, "regular", `n`, its
//!   length); the final frame with the sequence number after the last regular one, IV `frame_iv` of it,
//!   the final-frame marker before it and AAD (new message id, "final", its sequence number, its length).
//!   The header, already written, used the zero IV under that key.
//! * Every target sequence number is sealed exactly once: the regular frames are split into disjoint
//!   runs, one job each, and the final frame is sealed once by the caller's thread at the end; a target
//!   layout whose sequence numbers would reach the final-frame marker is refused before anything is
//!   sealed. So no (key, IV) pair of the new key repeats. Once a frame has been sealed nothing is ever
//!   retried with these keys: a failure is an error, never a fallback to the streaming path (which would
//!   seal the same sequence numbers again, over possibly other plaintext if the source changed).
//! * Each target tag binds its frame's ciphertext to the new message id (so to the new header, whose tag
//!   covers that id and the key commitment), its sequence number, its kind and its length: the new message
//!   cannot be cut, reordered or spliced without a reader noticing, as for any message we write.
//!
//! # Nothing is released before the whole source verified
//!
//! Jobs write their target frames before other jobs have verified their source frames: that releases
//! nothing. Plaintext never leaves the workers' buffers (which are wiped when they grow and when they are
//! dropped); only ciphertext under the new key is written, into a [`PendingFile`] that has no name (or a
//! temp name, mode 0600) until the caller commits it, which it does only after this returned `Ok`. The
//! new message's final frame is sealed and written only after every regular job succeeded, which means
//! every source frame except the final one verified, and after the source's final frame verified and the
//! source turned out not to have grown. Without its final frame no ESDK accepts the message, so even a
//! temp file left by a crash holds nothing a reader takes as a message.
//!
//! # Memory
//!
//! Each thread holds one buffer, reused from job to job: the source frames of its run and the target
//! frames of its run, which is at most about two job lengths plus two source frames. It is reserved at
//! that size on the thread's first job, never grown by a copy (which would hold two blocks at once: 73
//! instead of 58 MiB for frames a byte under 16 MiB). With the defaults
//! (64 KiB frames in and out, 512 KiB jobs) that is one in-place buffer of eight frames, 512 KiB and 256
//! bytes, per thread. The threads are the target options' (past their threshold), no more than fit in the
//! source limits' `max_frame_buffers` (40 MiB by default); a job that alone would not fit there (source
//! frames of many MiB, or target frames of a few bytes beside long source frames) sends the message
//! through the streaming path.

use std::fs::File;
use std::io;
use std::sync::Mutex;
use std::sync::PoisonError;

use super::cmm::{OpenedHeader, PreparedEncryption};
use super::options::{DecryptOptions, EncryptOptions, Parallelism};
use super::positioned::{Scratch, Sink, read_at, read_exact_at, run_jobs};
use super::whole::{
    FINAL_PREFIX, Layout, REGULAR_PREFIX, open_final_in_place, open_regular_in_place, seal_final_in_place,
    seal_regular_in_place, threads_for,
};
use crate::crypto::AeadKey;
use crate::error::{Error, Result};
use crate::format::header::{ContentType, Header, MessageId, TAG_LEN};

#[cfg(doc)]
use super::cmm::prepare_encrypt;
#[cfg(doc)]
use super::file::PendingFile;

/// Re-encrypts the body of the message in `input` (whose header is `header`, opened as `opened`;
/// `input_len` bytes long when its metadata was read) into `output`, as the message `prepared`
/// describes, and returns the plaintext's length once every source frame verified and the whole new
/// message was written.
///
/// `Ok(None)` means this path does not take the message (see the module documentation): nothing was
/// written or sealed, and the caller re-encrypts with the streaming path from the same header, keys and
/// prepared message. On an error, `output` holds a message without its final frame at most: drop it.
#[allow(clippy::too_many_arguments)]
pub(super) fn reencrypt_file(
    header: &Header,
    opened: &OpenedHeader,
    source_options: &DecryptOptions,
    prepared: &PreparedEncryption,
    target_options: &EncryptOptions,
    input: &File,
    input_len: u64,
    output: Sink<'_>,
) -> Result<Option<u64>> {
    let applies = cfg!(unix)
        && opened.verifier.is_none()
        && prepared.signer.is_none()
        && header.content_type() == ContentType::Framed;
    if !applies {
        return Ok(None);
    }
    let body_start = header.as_bytes().len() as u64;
    let Some(source) = input_len
        .checked_sub(body_start)
        .and_then(|len| usize::try_from(len).ok())
        .and_then(|len| Layout::for_body(header.frame_length() as usize, len))
    else {
        return Ok(None);
    };
    let mut prefix = [0u8; FINAL_PREFIX];
    read_exact_at(input, &mut prefix, body_start + (source.regular * source.stride()) as u64).map_err(changed)?;
    if !source.final_prefix_matches(&prefix) {
        return Ok(None);
    }
    let plaintext_len = source.plaintext_len();
    let declared = target_options.max_plaintext_length;
    let Some(target) = Layout::for_plaintext(prepared.frame_length as usize, plaintext_len)
        .filter(|_| declared.is_none_or(|max| plaintext_len as u64 <= max))
    else {
        // A bound the plaintext passes, or too many frames: the streaming path reports it.
        return Ok(None);
    };

    let job = Reseal {
        source: Side { key: &opened.keys.content, id: header.message_id(), layout: source },
        target: Side { key: &prepared.keys.content, id: &prepared.message_id, layout: target },
        input,
        body_start,
        output,
        target_body_start: prepared.header.len() as u64,
    };
    let per_job = frames_per_job(&target_options.parallelism, &source, &target);
    let budget = source_options.limits.max_frame_buffers;
    let Some(threads) = budget.checked_div(job.buffer_bound(per_job)).filter(|&fit| fit > 0) else {
        // One job alone passes the budget (huge source frames, or tiny target frames beside long source
        // ones): the streaming path holds a frame or two at a time instead.
        return Ok(None);
    };
    let jobs = target.regular.div_ceil(per_job);
    let threads = threads_for(&target_options.parallelism, target.body_len()).min(threads).min(jobs);
    output.write(&prepared.header, 0).map_err(Error::from_io)?;
    let failed = Mutex::new(None::<u32>);
    let note = |sequence: u32| {
        let mut failed = failed.lock().unwrap_or_else(PoisonError::into_inner);
        *failed = Some(failed.map_or(sequence, |earlier| earlier.min(sequence)));
    };
    // A job's buffer varies by a source frame (where its plaintext straddles two): sized for the largest job
    // from the first, so that it never grows by a copy holding the old and the new block at once.
    let largest = job.buffer_bound(per_job).min(source.body_len().saturating_add(target.body_len()));
    let regular = |j: usize, scratch: &mut Scratch| -> io::Result<bool> {
        scratch.reserve(largest)?;
        let first = j * per_job;
        let frames = Frames::Regular { first, count: per_job.min(target.regular - first) };
        Ok(job.run(frames, scratch, &|| Ok(()))?.map_err(note).is_ok())
    };
    let all_regular_verified = run_jobs(threads, jobs, regular).map_err(Error::from_io)?;
    // The final frame last, on this thread: sealed only once every other job succeeded, after the source's
    // final frame verified and the source was found not to have grown.
    let no_more_input = || {
        let mut probe = [0u8; 1];
        match read_at(input, &mut probe, input_len)? {
            0 => Ok(()),
            _ => Err(changed(io::ErrorKind::UnexpectedEof.into())),
        }
    };
    if all_regular_verified
        && let Err(sequence) =
            job.run(Frames::Final, &mut Scratch::default(), &no_more_input).map_err(Error::from_io)?
    {
        note(sequence);
    }
    match failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
        Some(sequence) => Err(Error::FrameAuthentication { sequence }),
        None => Ok(Some(plaintext_len as u64)),
    }
}

/// A read error of the source: one that ends early means it shrank (or grew) while it was read.
fn changed(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::other("the source file changed length while it was re-encrypted; nothing was written")
    } else {
        e
    }
}

/// Target frames per job: the configured job length, and at least one source frame's worth of plaintext
/// (so that a source frame is opened by two jobs at most).
fn frames_per_job(parallelism: &Parallelism, source: &Layout, target: &Layout) -> usize {
    let wanted = parallelism.job_length.max(source.frame_len) / target.frame_len;
    wanted.max(1)
}

/// One message's side of a re-encryption: its content key, id and body layout.
struct Side<'a> {
    key: &'a AeadKey,
    id: &'a MessageId,
    layout: Layout,
}

/// The frames of one job: a run of the target's regular frames, or its final frame.
#[derive(Clone, Copy)]
enum Frames {
    Regular { first: usize, count: usize },
    Final,
}

/// Everything a job needs: both sides, where the source's body starts in `input`, and where the target's
/// body starts in `output`.
struct Reseal<'a> {
    source: Side<'a>,
    target: Side<'a>,
    input: &'a File,
    body_start: u64,
    output: Sink<'a>,
    target_body_start: u64,
}

impl Reseal<'_> {
    /// The most bytes a job of `per_job` target frames holds: its source frames and its target frames.
    fn buffer_bound(&self, per_job: usize) -> usize {
        let (source, target) = (&self.source.layout, &self.target.layout);
        let span = per_job.saturating_mul(target.frame_len);
        let source_frames = (span / source.frame_len).saturating_add(2);
        source_frames
            .saturating_mul(source.stride() + FINAL_PREFIX)
            .saturating_add(per_job.saturating_mul(target.stride()))
    }

    /// Reads, opens and re-seals `frames`, and writes them. `before_write` runs after every source frame of
    /// the job verified, before anything of it is sealed. `Ok(Err(sequence))` if source frame `sequence`
    /// did not verify (nothing of the job is then sealed or written).
    fn run(
        &self,
        frames: Frames,
        scratch: &mut Scratch,
        before_write: &dyn Fn() -> io::Result<()>,
    ) -> io::Result<std::result::Result<(), u32>> {
        let (source, target) = (&self.source.layout, &self.target.layout);
        let plaintext_len = source.plaintext_len();
        // The job's plaintext, and the source frames (by index; the final one is `source.regular`) over it.
        let (from, to, target_len, target_at) = match frames {
            Frames::Regular { first, count } => {
                (first * target.frame_len, (first + count) * target.frame_len, count * target.stride(), first)
            }
            Frames::Final => {
                let final_len = FINAL_PREFIX + target.last + TAG_LEN;
                (target.regular * target.frame_len, plaintext_len, final_len, target.regular)
            }
        };
        let first_source = (from / source.frame_len).min(source.regular);
        let last_source = match frames {
            Frames::Final => source.regular,
            Frames::Regular { .. } => ((to - 1) / source.frame_len).min(source.regular),
        };
        let with_final = last_source == source.regular;
        let regular_sources = last_source + usize::from(!with_final) - first_source;
        let source_len =
            regular_sources * source.stride() + if with_final { FINAL_PREFIX + source.last + TAG_LEN } else { 0 };
        let in_place = source.frame_len == target.frame_len && !with_final && matches!(frames, Frames::Regular { .. });
        let buf = scratch.sized(source_len + if in_place { 0 } else { target_len })?;
        let (wire, sealed) = buf.split_at_mut(source_len);
        let source_at = self.body_start + (first_source * source.stride()) as u64;
        read_exact_at(self.input, wire, source_at).map_err(changed)?;

        let (regular_wire, final_wire) = wire.split_at_mut(regular_sources * source.stride());
        for (index, frame) in (first_source..).zip(regular_wire.chunks_mut(source.stride())) {
            let sequence = index as u32 + 1;
            if !open_regular_in_place(self.source.key, self.source.id, sequence, frame) {
                return Ok(Err(sequence));
            }
        }
        if with_final {
            let sequence = source.final_sequence();
            let (prefix, rest) = final_wire.split_at_mut(FINAL_PREFIX);
            let prefix: &[u8; FINAL_PREFIX] = (&*prefix).try_into().expect("a FINAL_PREFIX-byte range");
            // Read again by this job: checked again, the file may have changed since the layout was found.
            if !source.final_prefix_matches(prefix)
                || !open_final_in_place(self.source.key, self.source.id, sequence, prefix, rest)
            {
                return Ok(Err(sequence));
            }
        }
        before_write()?;

        let out = if in_place {
            for (sequence, frame) in (target_at as u32 + 1..).zip(wire.chunks_mut(target.stride())) {
                seal_regular_in_place(self.target.key, self.target.id, sequence, frame);
            }
            &*wire
        } else {
            let opened = Opened { wire, first: first_source, source, regular: regular_sources };
            match frames {
                Frames::Regular { .. } => {
                    for (i, frame) in sealed.chunks_mut(target.stride()).enumerate() {
                        let body = &mut frame[REGULAR_PREFIX..REGULAR_PREFIX + target.frame_len];
                        opened.copy_plaintext(from + i * target.frame_len, body);
                        let sequence = (target_at + i) as u32 + 1;
                        seal_regular_in_place(self.target.key, self.target.id, sequence, frame);
                    }
                }
                Frames::Final => {
                    opened.copy_plaintext(from, &mut sealed[FINAL_PREFIX..FINAL_PREFIX + target.last]);
                    seal_final_in_place(self.target.key, self.target.id, target.final_sequence(), sealed);
                }
            }
            &*sealed
        };
        self.output.write(out, self.target_body_start + (target_at * target.stride()) as u64)?;
        Ok(Ok(()))
    }
}

/// Source frames opened in place in one buffer: `regular` regular frames from index `first`, then the
/// final frame if the buffer holds more.
struct Opened<'a> {
    wire: &'a [u8],
    first: usize,
    source: &'a Layout,
    regular: usize,
}

impl Opened<'_> {
    /// Fills `out` with the plaintext from offset `from` on (which these frames must cover).
    fn copy_plaintext(&self, mut from: usize, out: &mut [u8]) {
        let (frame_len, stride) = (self.source.frame_len, self.source.stride());
        let mut filled = 0;
        while filled < out.len() {
            let index = from / frame_len - self.first;
            let within = from % frame_len;
            let body = if index < self.regular {
                &self.wire[index * stride + REGULAR_PREFIX..index * stride + REGULAR_PREFIX + frame_len]
            } else {
                let at = self.regular * stride + FINAL_PREFIX;
                &self.wire[at..at + self.source.last]
            };
            let n = (body.len() - within).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&body[within..within + n]);
            filled += n;
            from += n;
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::fs;
    use std::io::Read as _;

    use super::*;
    use crate::format::header::HeaderDecoder;
    use crate::format::limits::DecryptLimits;
    use crate::keyring::{RawAesKeyring, block_on};
    use crate::stream::cmm::{open_header, prepare_encrypt};
    use crate::stream::file::PendingFile;
    use crate::stream::whole::{self, REGULAR_OVERHEAD, seal_final, seal_regular};

    /// The source's frame length.
    const FRAME: usize = 32;

    fn old_key() -> RawAesKeyring {
        RawAesKeyring::new("reseal", "old", &[0x5a; 32]).unwrap()
    }

    fn new_key() -> RawAesKeyring {
        RawAesKeyring::new("reseal", "new", &[0xa5; 32]).unwrap()
    }

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// A message of `plaintext` in `FRAME`-byte frames under the old key, built frame by frame so that its
    /// final frame can be a full one (`full_final`, with no empty final frame after the regular ones).
    fn source(plaintext: &[u8], full_final: bool) -> Vec<u8> {
        let options = EncryptOptions::new().frame_length(FRAME as u32);
        let prepared = block_on(prepare_encrypt(&old_key(), &options, None)).unwrap();
        let (key, id) = (&prepared.keys.content, &prepared.message_id);
        let mut regular = plaintext.len() / FRAME;
        if full_final && regular > 0 && plaintext.len().is_multiple_of(FRAME) {
            regular -= 1;
        }
        let mut message = prepared.header.clone();
        for (i, body) in plaintext[..regular * FRAME].chunks(FRAME).enumerate() {
            let mut frame = vec![0u8; FRAME + REGULAR_OVERHEAD];
            seal_regular(key, id, i as u32 + 1, body, &mut frame);
            message.extend_from_slice(&frame);
        }
        let last = &plaintext[regular * FRAME..];
        let mut frame = vec![0u8; FINAL_PREFIX + last.len() + TAG_LEN];
        seal_final(key, id, regular as u32 + 1, last, &mut frame);
        message.extend_from_slice(&frame);
        message
    }

    /// What [`reencrypt_file`] made of `message`, held in a file `input_len` bytes long when "measured":
    /// its verdict, the bytes it wrote, and the new message's prepared header and keys.
    fn reseal(
        message: &[u8],
        input_len: u64,
        target: &EncryptOptions,
    ) -> (Result<Option<u64>>, Vec<u8>, PreparedEncryption) {
        reseal_with(&DecryptOptions::new(), message, input_len, target)
    }

    /// [`reseal`] with the source read with `source_options`.
    fn reseal_with(
        source_options: &DecryptOptions,
        message: &[u8],
        input_len: u64,
        target: &EncryptOptions,
    ) -> (Result<Option<u64>>, Vec<u8>, PreparedEncryption) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("source"), message).unwrap();
        let input = File::open(dir.path().join("source")).unwrap();
        let header = HeaderDecoder::read_from(source_options.limits, &mut &message[..]).unwrap();
        let opened = block_on(open_header(&old_key(), source_options, &header)).unwrap();
        let prepared = block_on(prepare_encrypt(&new_key(), target, None)).unwrap();
        let pending = PendingFile::create(&dir.path().join("target"), false).unwrap();
        let sink = Sink::pending(&pending);
        let verdict = reencrypt_file(&header, &opened, source_options, &prepared, target, &input, input_len, sink);
        let mut written = Vec::new();
        pending.positioned().0.read_to_end(&mut written).unwrap();
        (verdict, written, prepared)
    }

    /// The new message the one-shot encryptor seals from `plaintext` with `prepared`'s header and keys.
    fn one_shot(prepared: &PreparedEncryption, plaintext: &[u8]) -> Vec<u8> {
        let mut expected = Vec::new();
        let (key, id, frame) = (&prepared.keys.content, &prepared.message_id, prepared.frame_length);
        let parallelism = Parallelism { threads: 1, threshold: 0, job_length: 1 };
        assert!(whole::encrypt(key, id, &prepared.header, frame, &parallelism, plaintext, &mut expected));
        expected
    }

    fn target(frame_len: usize, threads: usize, job_frames: usize) -> EncryptOptions {
        EncryptOptions::new()
            .frame_length(frame_len as u32)
            .threads(threads)
            .parallel_threshold(0)
            .job_length(job_frames * frame_len)
    }

    #[test]
    fn resealed_files_are_the_one_shot_messages_byte_for_byte() {
        let lens = [0, 1, FRAME - 1, FRAME, FRAME + 1, 3 * FRAME, 7 * FRAME + 3, 9 * FRAME, 300 * FRAME + 1];
        // The same frame length (in place), shorter, longer, and not a divisor or multiple of the source's.
        let frames = [FRAME, 7, 4 * FRAME, 45];
        for (threads, job_frames) in [(1, 1), (3, 1), (3, 5)] {
            for frame_len in frames {
                for len in lens {
                    for full_final in [false, true] {
                        let pt = plaintext(len);
                        let message = source(&pt, full_final);
                        let options = target(frame_len, threads, job_frames);
                        let (verdict, written, prepared) = reseal(&message, message.len() as u64, &options);
                        let what = format!(
                            "{len} bytes, full final frame {full_final}, target frames of {frame_len}, \
                             {threads} threads, {job_frames} frames per job"
                        );
                        assert_eq!(verdict.unwrap(), Some(len as u64), "{what}");
                        assert!(written == one_shot(&prepared, &pt), "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_source_frame_that_fails_is_reported_and_the_final_frame_never_written() {
        let pt = plaintext(20 * FRAME + 5);
        let message = source(&pt, false);
        let stride = FRAME + REGULAR_OVERHEAD;
        let final_at = message.len() - (FINAL_PREFIX + 5 + TAG_LEN);
        let tenth = final_at - 10 * stride;
        let mut swapped = message.clone();
        swapped[tenth..tenth + stride].copy_from_slice(&message[tenth + stride..tenth + 2 * stride]);
        swapped[tenth + stride..tenth + 2 * stride].copy_from_slice(&message[tenth..tenth + stride]);
        let mut last_sequence = message.clone();
        last_sequence[final_at + 7] ^= 1;
        let cases: Vec<(&str, Vec<u8>, u32)> = vec![
            ("a middle frame's body", flip(&message, tenth + 20), 11),
            ("a middle frame's tag", flip(&message, tenth + stride - 1), 11),
            ("two frames swapped", swapped, 11),
            ("the final frame's body", flip(&message, final_at + FINAL_PREFIX + 1), 21),
            ("the final frame's tag", flip(&message, message.len() - 1), 21),
        ];
        for frame_len in [FRAME, 45] {
            for threads in [1, 3] {
                for (what, tampered, sequence) in &cases {
                    let options = target(frame_len, threads, 2);
                    let (verdict, written, prepared) = reseal(tampered, tampered.len() as u64, &options);
                    let what = format!("{what}, target frames of {frame_len}, {threads} threads");
                    assert!(
                        matches!(verdict, Err(Error::FrameAuthentication { sequence: s }) if s == *sequence),
                        "{what}: {verdict:?}"
                    );
                    let expected = one_shot(&prepared, &pt);
                    let target_final = FINAL_PREFIX + pt.len() % frame_len + TAG_LEN;
                    assert!(written.len() <= expected.len() - target_final, "{what}: the final frame was written");
                }
            }
        }
    }

    fn flip(message: &[u8], at: usize) -> Vec<u8> {
        let mut flipped = message.to_vec();
        flipped[at] ^= 1;
        flipped
    }

    #[test]
    fn bodies_of_no_layout_go_to_the_streaming_path_with_nothing_written() {
        let message = source(&plaintext(10 * FRAME + 5), false);
        let stride = FRAME + REGULAR_OVERHEAD;
        let mut longer = message.clone();
        longer.push(0);
        // One frame short: the frame where the final one should be is a regular one.
        let mut frame_short = message[..message.len() - (FINAL_PREFIX + 5 + TAG_LEN) - stride].to_vec();
        frame_short.extend_from_slice(&message[message.len() - (FINAL_PREFIX + 5 + TAG_LEN)..]);
        let cases = [
            ("a byte short", message[..message.len() - 1].to_vec()),
            ("a frame's worth short", message[..message.len() - stride].to_vec()),
            ("a regular frame left out", frame_short),
            ("a byte more", longer),
        ];
        for (what, body) in cases {
            let (verdict, written, _) = reseal(&body, body.len() as u64, &target(FRAME, 2, 2));
            assert!(matches!(verdict, Ok(None)), "{what}: {verdict:?}");
            assert!(written.is_empty(), "{what}: wrote {} bytes", written.len());
        }
        // A budget one job of 45-byte target frames (at least one 32-byte source frame's worth, and
        // overhead) does not fit in.
        let tight = DecryptOptions::new().limits(DecryptLimits { max_frame_buffers: 100, ..DecryptLimits::DEFAULT });
        let (verdict, written, _) = reseal_with(&tight, &message, message.len() as u64, &target(45, 2, 1));
        assert!(matches!(verdict, Ok(None)) && written.is_empty(), "a job past the budget: {verdict:?}");
        let bound = target(FRAME, 2, 2).max_plaintext_length(Some(10 * FRAME as u64));
        let (verdict, written, _) = reseal(&message, message.len() as u64, &bound);
        assert!(matches!(verdict, Ok(None)) && written.is_empty(), "a declared bound the plaintext passes");
    }

    #[test]
    fn a_source_that_changes_length_while_read_fails() {
        let message = source(&plaintext(10 * FRAME + 5), false);
        // The file measured at the message's length but holding a byte more: it grew after it was measured.
        let mut grown = message.clone();
        grown.push(0);
        let (verdict, written, prepared) = reseal(&grown, message.len() as u64, &target(FRAME, 2, 2));
        assert!(matches!(&verdict, Err(Error::Io(e)) if e.to_string().contains("changed length")), "{verdict:?}");
        let expected_len = one_shot(&prepared, &plaintext(10 * FRAME + 5)).len();
        assert!(written.len() < expected_len, "the final frame was written");
        // Measured at the message's length but holding 10 bytes less: it shrank.
        let shrunk = &message[..message.len() - 10];
        let (verdict, _, _) = reseal(shrunk, message.len() as u64, &target(FRAME, 2, 2));
        assert!(matches!(&verdict, Err(Error::Io(e)) if e.to_string().contains("changed length")), "{verdict:?}");
    }
}
