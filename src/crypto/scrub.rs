//! Stack wiping around the RustCrypto code that handles secrets.
//!
//! RustCrypto's generic code (AES-GCM, HMAC, SHA-2) is compiled with this crate's own opt-level, and
//! unoptimized it keeps blocks of plaintext and key material in stack temporaries, where they stay after it
//! returns. The next value built on that stack and moved to the heap whole (`Box::new`, `Arc::new`: a
//! channel's shared state, a map node) copies them along in its padding, into a heap block that is freed as
//! it is; optimized code builds such values in place, which hid this until `tests/freed_memory.rs` ran at
//! opt-level 0. [`scrubbed`] runs such an operation in a frame of its own and zeroes the stack below it
//! afterwards, whatever the optimizer kept, unwinding included.

/// Stack bytes [`scrubbed`] wipes below its frame: more than the AES-GCM code was measured to write (on
/// x86_64: 26 KiB with the crate at opt-level 0 and its dependencies at 1, 8.5 KiB with both at 1).
/// Twice that with debug assertions, the mark of a debug build, where the dependencies may be unoptimized
/// too and nobody measured the depth; a release build pays for 32 KiB (a memset of about 1 µs per call:
/// negligible next to a 64 KiB frame, some 10% of a 4 KiB one).
const SCRUB_BYTES: usize = if cfg!(debug_assertions) { 64 << 10 } else { 32 << 10 };

/// Runs `secret_work` (an AES-GCM operation, a key expansion, a key derivation), then wipes the stack it
/// ran on, also when it panics.
pub(crate) fn scrubbed<T>(secret_work: impl FnOnce() -> T) -> T {
    /// Wipes on drop, so that a panic unwinding out of `secret_work` wipes too: the panic's own payload
    /// and the frames that catch it are built on the same stack.
    struct WipeOnDrop;
    impl Drop for WipeOnDrop {
        fn drop(&mut self) {
            wipe_stack();
        }
    }
    let _wipe = WipeOnDrop;
    below_this_frame(secret_work)
}

/// Runs `f` in a frame of its own, so that everything it puts on the stack lies below its caller's
/// frame, where [`wipe_stack`] (called from that same frame) reaches, even when the work is inlined
/// into `f`.
#[inline(never)]
fn below_this_frame<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// Zeroes `SCRUB_BYTES` of stack right below the caller's frame. A memset that `black_box` keeps (the
/// compiler must assume the zeroed array is read), rather than `zeroize`'s volatile stores, which
/// cost five times as much on every frame.
#[inline(never)]
fn wipe_stack() {
    let mut area = [0u8; SCRUB_BYTES];
    std::hint::black_box(&mut area);
}
