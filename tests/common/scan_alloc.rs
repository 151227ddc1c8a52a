//! A global allocator for the freed-memory tests: it looks into every block freed (and every block a
//! `realloc` leaves, as if it always moved) for a secret, while an operation runs. A test binary installs it
//! with `#[global_allocator] static ALLOCATOR: Scanning = Scanning::new(holds_secret);` and asks
//! [`freed_matching`] how many freed blocks still held the secret.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static SCANNING: AtomicBool = AtomicBool::new(false);
static HITS: AtomicUsize = AtomicUsize::new(0);

/// Forwards to `System`, counting freed blocks for which `holds` is true while a scan runs. `holds` runs
/// inside the allocator: it must not allocate, nor wait on a lock an allocating thread may hold.
pub struct Scanning {
    holds: fn(&[u8]) -> bool,
}

impl Scanning {
    pub const fn new(holds: fn(&[u8]) -> bool) -> Self {
        Self { holds }
    }

    /// Counts a block about to go back to the allocator if it still holds the secret.
    ///
    /// # Safety
    /// `ptr` is a live block of `size` bytes.
    unsafe fn check(&self, ptr: *mut u8, size: usize) {
        if SCANNING.load(Ordering::Relaxed) {
            // SAFETY: the caller's contract; reading our own block as u8.
            let block = unsafe { std::slice::from_raw_parts(ptr, size) };
            if (self.holds)(block) {
                HITS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

// SAFETY: every call is forwarded to `System`; `realloc` is alloc + copy + dealloc, which the trait allows.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe {
            self.check(ptr, layout.size());
            System.dealloc(ptr, layout)
        }
    }

    /// Always moves, so that a grow that `System` would have done in place is still seen: whether the
    /// old block is freed is the allocator's choice, not something the crate may count on.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = System.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.check(ptr, layout.size());
                System.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// Runs `operation` with the scan on and returns how many freed blocks held the secret. Everything the
/// operation allocates must be dropped inside it.
pub fn freed_matching(operation: impl FnOnce()) -> usize {
    HITS.store(0, Ordering::SeqCst);
    SCANNING.store(true, Ordering::SeqCst);
    operation();
    SCANNING.store(false, Ordering::SeqCst);
    HITS.load(Ordering::SeqCst)
}
