//! A global allocator for the freed-memory tests: it looks into every block freed (and every block a
//! `realloc` leaves, as if it always moved) for a secret, while an operation runs. A test binary installs it
//! with `#[global_allocator] static ALLOCATOR: Scanning = Scanning::new(holds_secret);` and asks
//! [`freed_matching`] how many freed blocks still held the secret.
//!
//! To find where a hit comes from, set `SCAN_BACKTRACE=1` (and pass `--nocapture`) for a test that calls
//! [`trace_if_asked`]: every freed block that holds the secret, counted or not (frees outside
//! [`freed_matching`] too), is printed with its size and a backtrace of where it was freed. Tracing also
//! hands out every new block zeroed, so a hit is something written into that very block (a copy of the
//! secret, or stack bytes moved in with a value's padding), never what an earlier owner of the memory left.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static SCANNING: AtomicBool = AtomicBool::new(false);
static TRACING: AtomicBool = AtomicBool::new(false);
static HITS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set while this thread prints a hit: the backtrace allocates and frees, and its blocks may hold
    /// the secret too (moved in from the stack), which must neither count nor recurse.
    static PRINTING: Cell<bool> = const { Cell::new(false) };
}

/// Turns tracing on if `SCAN_BACKTRACE` is set (see the module documentation).
pub fn trace_if_asked() {
    TRACING.store(std::env::var_os("SCAN_BACKTRACE").is_some(), Ordering::SeqCst);
}

/// Forwards to `System`, counting freed blocks for which `holds` is true while a scan runs. `holds` runs
/// inside the allocator: it must not allocate, nor wait on a lock an allocating thread may hold.
pub struct Scanning {
    holds: fn(&[u8]) -> bool,
}

impl Scanning {
    pub const fn new(holds: fn(&[u8]) -> bool) -> Self {
        Self { holds }
    }

    /// Counts a block about to go back to the allocator if it still holds the secret, and prints it when
    /// tracing.
    ///
    /// # Safety
    /// `ptr` is a live block of `size` bytes.
    unsafe fn check(&self, ptr: *mut u8, size: usize) {
        let (scanning, tracing) = (SCANNING.load(Ordering::Relaxed), TRACING.load(Ordering::Relaxed));
        if !(scanning || tracing) || PRINTING.with(Cell::get) {
            return;
        }
        // SAFETY: the caller's contract; reading our own block as u8.
        let block = unsafe { std::slice::from_raw_parts(ptr, size) };
        if !(self.holds)(block) {
            return;
        }
        if scanning {
            HITS.fetch_add(1, Ordering::Relaxed);
        }
        if tracing {
            PRINTING.with(|printing| printing.set(true));
            let trace = std::backtrace::Backtrace::force_capture();
            eprintln!("==== a freed block of {size} bytes held the secret (counted: {scanning}), freed at:\n{trace}");
            drop(trace);
            PRINTING.with(|printing| printing.set(false));
        }
    }

    /// A new block from `System`: zeroed when tracing (see the module documentation).
    ///
    /// # Safety
    /// As [`GlobalAlloc::alloc`].
    unsafe fn fresh(layout: Layout) -> *mut u8 {
        unsafe { if TRACING.load(Ordering::Relaxed) { System.alloc_zeroed(layout) } else { System.alloc(layout) } }
    }
}

// SAFETY: every call is forwarded to `System`; `realloc` is alloc + copy + dealloc, which the trait allows.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { Self::fresh(layout) }
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
            let new = Self::fresh(new_layout);
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
