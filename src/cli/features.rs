//! What a build without some cargo features lacks: their options stay parsed (so that a script written for
//! the full build fails plainly rather than on "unexpected argument"), are hidden from `--help`, and are
//! refused here with the feature that brings them and how to install a build that has it.

use super::args::{DiscoveryArgs, KeyArgs};
use super::exit::Failure;

/// How to install the build with every key kind and `s3://`, as the README's "Install" section says.
const INSTALL_FULL: &str = "cargo install --path . --locked";

/// `what` needs `feature`, which this build was made without: a usage error (exit 2) saying how to get it.
pub fn missing(feature: &str, what: &str) -> Failure {
    Failure::usage(format!(
        "{what}: this kms-envelope was built without the `{feature}` feature; install with `{INSTALL_FULL}` \
         (default features)"
    ))
}

/// Refuses, before any key file is read, the key options of a feature this build does not have.
pub fn check_keys(keys: &KeyArgs, discovery: Option<&DiscoveryArgs>) -> Result<(), Failure> {
    let kms_rsa = !keys.kms_rsa_key.is_empty() || !keys.kms_rsa_public_key.is_empty();
    if !cfg!(feature = "kms") {
        if !keys.kms_key.is_empty() {
            return Err(missing("kms", &keys.flag("kms-key")));
        }
        if discovery.is_some_and(|d| d.kms_discovery || !d.kms_region.is_empty()) {
            return Err(missing("kms", "--kms-discovery"));
        }
        if kms_rsa {
            return Err(missing("kms", &keys.flag("kms-rsa-key")));
        }
        if !keys.grant_token.is_empty() {
            return Err(missing("kms", &keys.flag("grant-token")));
        }
    }
    if !cfg!(feature = "kms") && keys.ecdh.kms_ecdh_key.is_some() {
        return Err(missing("kms", "--kms-ecdh-key"));
    }
    if !cfg!(feature = "aws-lc") && keys.ecdh.any() {
        return Err(missing("aws-lc", "--ecdh-curve"));
    }
    if !cfg!(feature = "rsa") {
        if !keys.rsa_public_key.is_empty() {
            return Err(missing("rsa", &keys.flag("rsa-public-key")));
        }
        if !keys.rsa_private_key.is_empty() {
            return Err(missing("rsa", &keys.flag("rsa-private-key")));
        }
        if kms_rsa {
            return Err(missing("rsa", &keys.flag("kms-rsa-key")));
        }
    }
    Ok(())
}
