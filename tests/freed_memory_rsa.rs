//! No RSA private key is left in freed memory by reading a PEM key file: this binary's global allocator
//! looks into every block freed (and every block a `realloc` leaves, as if it always moved) for pieces of
//! the private key, in base64 as the PEM has them and in DER as they are decoded, while the key is read in
//! both PEM forms. AWS-LC's own allocations do not go through this allocator; it clears them itself.
#![cfg(feature = "rsa")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use base64::Engine as _;
use kms_envelope::RawRsaKeyring;
use kms_envelope::crypto::rsa::RsaPadding;
use zeroize::Zeroizing;

static SCANNING: AtomicBool = AtomicBool::new(false);
static HITS: AtomicUsize = AtomicUsize::new(0);
/// The pieces of the private key looked for; set before the scan starts, so the allocator never waits on
/// a lock someone allocating holds. Not on the heap: a freed copy of them would be found too.
static MARKERS: Mutex<[[u8; 16]; 3]> = Mutex::new([[0; 16]; 3]);

struct Scanning;

fn holds(block: &[u8], marker: &[u8; 16]) -> bool {
    block.windows(marker.len()).any(|w| w == marker)
}

impl Scanning {
    /// Counts a block about to go back to the allocator if it still holds a piece of the key.
    ///
    /// # Safety
    /// `ptr` is a live block of `size` bytes.
    unsafe fn check(ptr: *mut u8, size: usize) {
        if SCANNING.load(Ordering::Relaxed) {
            // SAFETY: the caller's contract; reading our own block as u8.
            let block = unsafe { std::slice::from_raw_parts(ptr, size) };
            let markers = MARKERS.try_lock().expect("markers are not locked while scanning");
            if markers.iter().any(|m| holds(block, m)) {
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
            Self::check(ptr, layout.size());
            System.dealloc(ptr, layout)
        }
    }

    /// Always moves, so that a grow `System` would have done in place is still seen.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = System.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                Self::check(ptr, layout.size());
                System.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[global_allocator]
static ALLOCATOR: Scanning = Scanning;

/// PEM text of `der` under `label`, in a buffer allocated once (so the test itself frees no copy).
fn pem(label: &str, der: &[u8]) -> Zeroizing<Vec<u8>> {
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = Zeroizing::new(Vec::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 64));
    out.extend_from_slice(format!("-----BEGIN {label}-----\n").as_bytes());
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("-----END {label}-----\n").as_bytes());
    out
}

fn piece(bytes: &[u8], at: usize) -> [u8; 16] {
    bytes[at..at + 16].try_into().unwrap()
}

#[test]
fn reading_a_private_key_pem_frees_no_copy_of_the_key() {
    let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = Zeroizing::new(key.as_der().unwrap().as_ref().to_vec());
    // PrivateKeyInfo: SEQUENCE, version, the 15-byte AlgorithmIdentifier, then OCTET STRING (long form).
    assert_eq!(pkcs8[22..24], [0x04, 0x82], "a 2048-bit PKCS #8 key's layout");
    let pkcs1 = Zeroizing::new(pkcs8[26..].to_vec());
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&pkcs8[..]));
    for pem in [pem("PRIVATE KEY", &pkcs8), pem("RSA PRIVATE KEY", &pkcs1)] {
        // The private exponent and primes are past the modulus (the first ~300 bytes): look 600 and 1000
        // bytes in, and the same bytes in base64 (4 characters per 3 bytes).
        *MARKERS.lock().unwrap() = [piece(&pkcs1, 600), piece(&pkcs1, 1000), piece(b64.as_bytes(), 800)];
        HITS.store(0, Ordering::SeqCst);
        SCANNING.store(true, Ordering::SeqCst);
        let read = RawRsaKeyring::from_private_key_pem("ns", "name", RsaPadding::OaepSha256, &pem).is_ok();
        SCANNING.store(false, Ordering::SeqCst);
        let label = String::from_utf8_lossy(&pem[..30]).into_owned();
        assert!(read, "{label}");
        assert_eq!(HITS.load(Ordering::SeqCst), 0, "freed blocks held the private key reading {label}");
    }
}
