//! Encryptors and decryptors over `Write`/`Read`, one-shot helpers over byte slices, and decryption into
//! a file that appears only once the whole message verified.

#[cfg(feature = "async")]
pub mod async_io;
mod cmm;
pub mod decrypt;
pub mod encrypt;
pub mod file;
pub mod options;
mod pipeline;

use std::io::Write;

use zeroize::Zeroizing;

#[cfg(feature = "async")]
pub use async_io::{AsyncDecryptor, AsyncEncryptor};
pub use decrypt::Decryptor;
pub use encrypt::Encryptor;
pub use options::{
    DEFAULT_FRAME_LENGTH, DEFAULT_JOB_LENGTH, DEFAULT_PARALLEL_THRESHOLD, DecryptOptions, EncryptOptions,
};

use crate::error::{Error, Result};
use crate::format::header::Header;
use crate::keyring::Keyring;

/// Encrypts `plaintext` into one message.
pub fn encrypt(keyring: &dyn Keyring, options: &EncryptOptions, plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut encryptor = Encryptor::new(keyring, options, Vec::with_capacity(plaintext.len() + 1024))?;
    encryptor.write_all(plaintext)?;
    encryptor.finish()
}

/// A fully verified plaintext and the header it came with.
#[derive(Debug)]
pub struct Decrypted {
    /// The plaintext; zeroized on drop.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The authenticated header.
    pub header: Header,
}

/// Decrypts a whole message held in memory. Nothing is returned unless every check passed.
pub fn decrypt(keyring: &dyn Keyring, options: &DecryptOptions, message: &[u8]) -> Result<Decrypted> {
    let mut decryptor = Decryptor::new(keyring, options, message)?;
    let mut plaintext = Zeroizing::new(Vec::with_capacity(message.len()));
    std::io::Read::read_to_end(&mut decryptor, &mut plaintext).map_err(Error::from_io)?;
    Ok(Decrypted { plaintext, header: decryptor.header().clone() })
}
