//! No RSA private key is left in freed memory by reading a PEM key file: this binary's global allocator
//! looks into every block freed (and every block a `realloc` leaves, as if it always moved) for pieces of
//! the private key, in base64 as the PEM has them and in DER as they are decoded, while the key is read in
//! both PEM forms. AWS-LC's own allocations do not go through this allocator; it clears them itself.
// Built only with `rsa` (required-features in Cargo.toml).

use std::sync::Mutex;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use base64::Engine as _;
use kms_envelope::RawRsaKeyring;
use kms_envelope::RsaPadding;
use zeroize::Zeroizing;

#[path = "common/scan_alloc.rs"]
mod scan_alloc;
use scan_alloc::{Scanning, freed_matching};

/// The pieces of the private key looked for; set before the scan starts, so the allocator never waits on
/// a lock someone allocating holds. Not on the heap: a freed copy of them would be found too.
static MARKERS: Mutex<[[u8; 16]; 3]> = Mutex::new([[0; 16]; 3]);

#[global_allocator]
static ALLOCATOR: Scanning = Scanning::new(holds_a_piece);

fn holds_a_piece(block: &[u8]) -> bool {
    let markers = MARKERS.try_lock().expect("markers are not locked while scanning");
    markers.iter().any(|m| block.windows(m.len()).any(|w| w == m))
}

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
        let mut read = false;
        let hits = freed_matching(|| {
            read = RawRsaKeyring::from_private_key_pem("ns", "name", RsaPadding::OaepSha256, &pem).is_ok();
        });
        let label = String::from_utf8_lossy(&pem[..30]).into_owned();
        assert!(read, "{label}");
        assert_eq!(hits, 0, "freed blocks held the private key reading {label}");
    }
    // Control: a plain Vec holding a piece of the key, grown by realloc, is seen.
    let control = freed_matching(|| {
        let mut grown = Vec::with_capacity(16);
        grown.extend_from_slice(&pkcs1[1000..1016]);
        grown.reserve(1 << 16);
        drop(Zeroizing::new(grown));
    });
    assert!(control > 0, "the allocator saw no key piece in a grown Vec: the scan is broken");
}
